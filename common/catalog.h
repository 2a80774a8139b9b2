/* catalog.h - what a replica holds for a database, from listings alone
 * (names and sizes; nothing is decrypted): the archive's generations and,
 * in each, its snapshots, segments and deltas. A name proves nothing:
 * catalog_check_snapshots reads each snapshot's header with the key,
 * and decisions (retention) count only what it verified. Names are parsed by
 * layout.h; what an object holds is checked when it is read (archive.h). */
#ifndef TM_CATALOG_H
#define TM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "layout.h"
#include "storage/storage.h"

/* What reading a snapshot's header showed (catalog_check_snapshots);
 * a catalog fresh from the listing has every snapshot UNCHECKED. */
enum catalog_trust {
    CATALOG_UNCHECKED = 0,    /* known from its name only */
    CATALOG_VERIFIED,         /* header read and authenticated with the key, and matches the name */
    CATALOG_ENVELOPE_ONLY,    /* only a public key: a well-formed envelope sealed to a key pair, header unread */
    CATALOG_REJECTED,         /* not a valid snapshot of this place (or not readable with the key): see why */
};

struct catalog_snapshot {
    uint64_t index;
    int64_t time_ms;
    uint64_t size;
    char key[ARCHIVE_NAME_MAX];
    enum catalog_trust trust;
    char why[256];            /* CATALOG_REJECTED: the reader's error */
};

struct catalog_segment {
    uint64_t index;
    int64_t first_ms, last_ms;
    uint64_t size;
    char key[ARCHIVE_NAME_MAX];
};

struct catalog_delta {
    uint64_t first_index, end_index;      /* segments [first, end) */
    int64_t first_ms, last_ms;
    uint64_t size;
    char key[ARCHIVE_NAME_MAX];
};

/* A generation's head (archive.h: struct archive_head), as
 * catalog_check_heads found it. */
enum catalog_head_state {
    CATALOG_HEAD_ABSENT = 0,  /* no head object (written before heads, or deleted) */
    CATALOG_HEAD_LISTED,      /* listed, not read yet */
    CATALOG_HEAD_VERIFIED,    /* read and authenticated with the key: `head` is set */
    CATALOG_HEAD_ENVELOPE_ONLY,/* only a public key: well formed, unread */
    CATALOG_HEAD_REJECTED,    /* not a valid head of this generation: see why */
};

struct archive_head;

struct catalog_generation {
    char id[ARCHIVE_GEN_ID_BYTES + 1];
    enum catalog_head_state head_state;
    char head_key[ARCHIVE_NAME_MAX];
    struct archive_head *head;            /* HEAD_VERIFIED only (owned) */
    char head_why[256];                   /* HEAD_REJECTED: the reader's error */
    struct catalog_delta *deltas;         /* sorted by first_index, then end_index */
    size_t delta_count;
    struct catalog_snapshot *snapshots;   /* sorted by index */
    size_t snapshot_count;
    struct catalog_segment *segments;     /* sorted by index */
    size_t segment_count;
};

struct catalog {
    struct catalog_generation *generations;   /* oldest first */
    size_t generation_count;
};

/* What the archive holds for database `db`. Names layout.h does not
 * parse (temporaries, strays, folders that are not generation ids) are
 * ignored. Fails (err set, *out empty) only when a listing fails: a
 * partial catalog is never returned, since retention plans from it. */
int catalog_load(struct storage *st, const char *db, struct catalog *out, struct tm_error *err);
void catalog_release(struct catalog *cat);

struct crypto_keyring;

/* Reads the payload header of every snapshot of cat (`redis`: Redis
 * snapshots) with key and sets its trust: VERIFIED when the envelope
 * authenticates what was read (with a symmetric key or a secret key,
 * the first encrypted chunk's MAC covers the header; with `encryption:
 * none` the checks are structural only) and the header's generation,
 * index and time match the name; REJECTED (why set) when the object is
 * missing, corrupt, of another kind or under a key we do not hold;
 * ENVELOPE_ONLY when key holds only a public key (a sidecar with a key
 * pair cannot read what it wrote) and the envelope is well formed. Only
 * the header is read (on S3 the first ranged GET). Returns -1 (err set)
 * on an error that says nothing about the object (network, memory): the
 * trust values are then incomplete and must not be acted on. */
int catalog_check_snapshots(struct storage *st, const struct crypto_keyring *key, int redis, struct catalog *cat,
                            struct tm_error *err);

/* The same for one snapshot of generation `generation`. */
int catalog_check_snapshot(struct storage *st, const struct crypto_keyring *key, int redis, const char *generation,
                           struct catalog_snapshot *snap, struct tm_error *err);

/* Reads the head of every generation that has one (one small GET each)
 * with key and sets head_state (and head); -1 (err set) only on an error
 * that says nothing about the object (network, memory). */
int catalog_check_heads(struct storage *st, const struct crypto_keyring *key, struct catalog *cat,
                        struct tm_error *err);

/* The newest time generation `gen`'s object names hold: its last
 * commit (segments, deltas) or snapshot; INT64_MIN when it is empty.
 * Generation ids are stamped by the clock of the host that made them, so
 * after a clock step back ids sort in the wrong order: this is what says
 * which generation holds the newest data (restore's "latest"). */
int64_t catalog_generation_newest_ms(const struct catalog_generation *gen);

#endif
