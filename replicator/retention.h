/* retention.h - grandfather-father-son retention of one replica's archive
 * of one database (the `tidemark retention` command is cmd_retention.c).
 *
 * retention_plan decides from the catalogue (names, times, sizes, and
 * what catalog_check_snapshots verified) which snapshots and segments
 * stay and why; retention_apply deletes the rest. Only a snapshot whose
 * header the key verified counts as newest, kept or an anchor: a name
 * planted in the bucket never makes retention delete a real snapshot. Planning is a pure function of the catalogue, the rules and "now",
 * so it is tested over simulated years (tests/unit/test_retention.c). */
#ifndef TM_RETENTION_H
#define TM_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "../common/archive.h"
#include "../common/config.h"
#include "../common/crypto.h"

/* Why an object stays (bit set). */
enum retention_rule {
    KEEP_NEWEST = 1 << 0,         /* the newest snapshot: never deleted */
    KEEP_DAILY = 1 << 1,
    KEEP_WEEKLY = 1 << 2,
    KEEP_MONTHLY = 1 << 3,
    KEEP_YEARLY = 1 << 4,
    KEEP_POINT_IN_TIME = 1 << 5,  /* needed for a second inside the window */
    KEEP_INCOMPLETE = 1 << 6,     /* a generation with no snapshot (yet) */
    KEEP_IN_USE = 1 << 7,         /* a restore, verify or drill reads its generation */
    KEEP_UNVERIFIED = 1 << 8,     /* a snapshot not verified, not older than every kept verified
                                     one: kept (never counted) and reported */
    KEEP_HEAD = 1 << 9,           /* the newest head's end: its newest segment and the run to it */
    KEEP_TAIL_KEPT = 1 << 10,     /* a head: its generation's newest segment stays */
};

struct retention_object {
    const char *key;              /* into the catalogue */
    const char *generation;
    int is_snapshot;
    int is_delta;                 /* planned like the first segment it covers */
    uint64_t index;
    int64_t time_ms;              /* snapshot time, or a segment's last commit */
    uint64_t size;
    unsigned rules;               /* 0: delete */
    int unverified;               /* a snapshot the key did not verify (catalog_check_snapshots) */
    const char *problem;          /* then why (into the catalogue), or "" */
    int is_head;                  /* a generation's head: kept while its newest segment is */
};

struct retention_plan {
    struct retention_object *objects;   /* oldest first */
    size_t count;
    size_t deleted_snapshots, deleted_segments, kept_snapshots, kept_segments;
    size_t deleted_deltas, kept_deltas;
    size_t deleted_heads;
    size_t unverified_snapshots;        /* rejected by catalog_check_snapshots */
    int envelope_only;                  /* some snapshot's header could not be read (public key only) */
    uint64_t deleted_bytes;
    int64_t window_start_ms;            /* every second after it stays restorable */
};

/* Heads (catalog_check_heads, optional): a generation's head is deleted
 * (first, before anything of its generation) exactly when its newest
 * segment is, or, in a generation without segments, when nothing of it
 * stays; so no head ever names a tail retention removed. The newest
 * verified head's end stays restorable (KEEP_HEAD: its newest segment and the run to it).
 *
 * Snapshots a caller did not check (CATALOG_UNCHECKED) are planned from
 * their names, as are ENVELOPE_ONLY ones (the plan says so); REJECTED
 * ones never count: they stay while no kept verified snapshot is newer
 * (they may be a real snapshot we cannot read), and go with the old. */
int retention_plan(const struct catalog *cat, const struct config_retention *rules, int64_t now_ms,
                   struct retention_plan *out, struct tm_error *err);
void retention_plan_release(struct retention_plan *plan);

/* Keeps everything in the generations named (leases of running restores). */
void retention_protect(struct retention_plan *plan, char *const *generations, size_t count);

/* "newest, daily, point-in-time" */
void retention_rules_text(unsigned rules, char *out, size_t len);

/* Deletes what the plan does not keep, oldest first. Stops at the first
 * storage error (what was deleted before stays deleted; nothing kept is
 * ever touched). */
int retention_apply(struct storage *st, const struct retention_plan *plan, size_t *deleted,
                    struct tm_error *err);

#endif
