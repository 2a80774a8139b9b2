/* restore.h - rebuilding a database as of a point in time from one
 * replica (the `tidemark restore` command is cmd_restore.c). */
#ifndef TM_RESTORE_H
#define TM_RESTORE_H

#include <stdint.h>

#include "../common/archive.h"
#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/heads.h"
#include "../common/storage/storage.h"

#define RESTORE_SKIPPED_BYTES 1024
#define RESTORE_TAIL_BYTES 2048

/* What the generations' heads (common/heads.h) said about the archive's
 * end, for the report. */
enum restore_tail {
    RESTORE_TAIL_NO_HEAD = 0,     /* no head at all (an archive written before heads): not checked */
    RESTORE_TAIL_CHECKED,         /* the archive reaches what the newest head names */
    RESTORE_TAIL_GAP_ELSEWHERE,   /* something is missing, but not in what was restored */
    RESTORE_TAIL_ACCEPTED,        /* something is missing at the end: restored what is there
                                     (--accept-missing-tail) */
};

/* SQLite's check of the restored file before it is moved to the output
 * (--integrity-check). The page-level checks (restore.c) run always. */
enum restore_integrity {
    RESTORE_CHECK_FULL = 0,       /* PRAGMA integrity_check (the default) */
    RESTORE_CHECK_QUICK,          /* PRAGMA quick_check */
    RESTORE_CHECK_NONE,           /* no SQLite check */
};

/* Where a restore's time went, in microseconds. fetch: reading objects
 * from the replica; decode: authenticating, decrypting, decompressing and
 * parsing them (busy time, summed over the threads that did it); write:
 * applying pages to the temporary file; fsync: cutting it to size and
 * making it durable; check: the page-level and SQLite checks; total: wall
 * time of the whole restore (plan and rename included). Stages overlap
 * when they run on several threads. */
struct restore_phases {
    int64_t fetch_us, decode_us, write_us, fsync_us, check_us, total_us;
};

/* What a successful restore produced (for the command's report, drills'
 * RPO). */
struct restore_outcome {
    int64_t point_ms;        /* the time the last transaction included was seen (stamped:
                              * docs/design.md "Commit times"), or the snapshot's */
    int64_t snapshot_ms;
    int after_snapshot;      /* transactions after the snapshot are included (point_ms is one's) */
    int reached_target;      /* stopped before a transaction after the target */
    int64_t next_ms;         /* with a target: the first time after it the archive holds (a commit
                              * in the generation restored, else any object's), 0 if none */
    char next_generation[ARCHIVE_GEN_ID_BYTES + 1];   /* where next_ms is */
    size_t generation_count; /* generations in the archive */
    int64_t generation_newest_ms;   /* the newest time in the chosen generation's names */
    int id_order_differs;    /* the generation whose id sorts last among the candidates is another */
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint64_t transactions, segments, deltas;
    uint64_t bytes;          /* the database's size (Redis: the RDB's) */
    uint64_t read_bytes;     /* SQLite: the sizes of the objects applied, the snapshot's included */
    uint32_t pages, page_size;
    int loaded;              /* Redis: checked by loading it into a private redis-server */
    unsigned skipped_count;  /* newer snapshots skipped (missing, damaged, not valid): the restore
                                fell back to an older one */
    char skipped[RESTORE_SKIPPED_BYTES];   /* why, one line per snapshot (each names it) */
    enum restore_tail tail;
    char tail_note[RESTORE_TAIL_BYTES];    /* the head checked, or the findings (one per line) */
    struct restore_phases phases;          /* SQLite restores: where the time went */
};

struct restore_options {
    const char *db_name;
    const char *output;
    const char *replica;     /* name or index; NULL: the first that answers */
    int64_t target_ms;       /* valid when has_target */
    int has_target;
    int force;
    int no_deltas;           /* segments only (--no-deltas) */
    int redis_rdb;           /* Redis: a dump.rdb instead of appendonlydir/ (--format rdb) */
    int accept_missing_tail; /* restore what is there when the heads say the end is missing */
    const char *seen_dir;    /* the configuration's state-dir, or NULL (heads_seen_path) */
    enum restore_integrity integrity;   /* SQLite's check of the result (--integrity-check) */
};

/* "full", "quick" or "none" into *out; -1 for anything else. */
int restore_integrity_parse(const char *text, enum restore_integrity *out);
const char *restore_integrity_name(enum restore_integrity integrity);

#define RESTORE_NOT_YET 2        /* every backup is after the target */

/* Restores database db (SQLite, or a `redis:` entry: redis_restore.h) as
 * opts says, at opts->output. Prints nothing. Returns 0 with *out filled;
 * -1, or RESTORE_NOT_YET when every backup is after the target, with err
 * set (naming the object concerned) and nothing written at the output. */
int restore_database(const struct config_db *db, const struct crypto_keyring *key,
                     const struct restore_options *opts, struct restore_outcome *out, struct tm_error *err);

/* The generation and snapshot a restore to opts' target starts from:
 * the generation whose newest usable snapshot at or before the target is
 * the newest (by the times in the names, which restore checks against the
 * verified headers as it reads them), and that snapshot; without a
 * target, the generation whose names hold the newest time
 * (catalog_generation_newest_ms), never the id that sorts last: ids are
 * stamped by the host's clock when the generation starts. Ties go to
 * the id that sorts last. Snapshots marked CATALOG_REJECTED are left out
 * (the restore marks one so when it fails to apply, and plans again).
 * -1, or RESTORE_NOT_YET, with err set. */
int restore_plan(const struct catalog *cat, const struct restore_options *opts,
                 const struct catalog_generation **gen_out, const struct catalog_snapshot **snap_out,
                 struct tm_error *err);

/* Reads the heads and examines the archive against them (heads_check;
 * a seen record that cannot be read or written is logged as a warning),
 * before the plan. */
int restore_read_heads(struct storage *st, const struct crypto_keyring *key, int redis, struct catalog *cat,
                       const struct restore_options *opts, struct heads_report *report, struct tm_error *err);

/* Once the generation the restore starts from is known (after any
 * fallback), before anything is written at the output: a finding about
 * what a restore from `chosen` to opts' target holds refuses it
 * (TM_ERR_CORRUPT, naming what is missing, with a hint) unless
 * opts->accept_missing_tail: one about `chosen` when the target is at or
 * after the newest time the replica holds of it (or latest); one about a
 * generation the replica lacks when the target is at or after the newest
 * time of the whole archive; one about a generation holding newer data
 * than `chosen` when the target reaches into it. A finding about an older
 * generation, or one holding nothing, leaves the point whole
 * (RESTORE_TAIL_GAP_ELSEWHERE). Fills out->tail and
 * out->tail_note. */
int restore_check_tail(const struct catalog *cat, const struct heads_report *report,
                       const struct restore_options *opts, const struct catalog_generation *chosen,
                       struct restore_outcome *out, struct tm_error *err);

/* The newer snapshots a restore skipped (restore_fall_back). */
struct restore_skips {
    unsigned count;
    char text[RESTORE_SKIPPED_BYTES];    /* why, one line per snapshot (each names it) */
    struct tm_error first;               /* the first one's error */
};

/* After starting from *snap failed with *failure: when the snapshot
 * failed for a reason of its own (missing, damaged, not valid here), notes
 * it in skips, marks it CATALOG_REJECTED in cat and plans again: 1 with
 * *gen and *snap the next older snapshot at or before the target, to try.
 * 0 with err set when the failure is not the snapshot's (err = *failure)
 * or no older snapshot is left (err = the first snapshot's error, with a
 * hint). Both restores (SQLite, Redis) loop on it. */
int restore_fall_back(struct catalog *cat, const struct restore_options *opts, struct restore_skips *skips,
                      const struct tm_error *failure, const struct catalog_generation **gen,
                      const struct catalog_snapshot **snap, struct tm_error *err);

/* What the catalog says about the plan, for the report (the
 * generation_count, generation_newest_ms, id_order_differs, next_ms and
 * next_generation fields of *out): how many generations, the chosen
 * one's newest time and whether the id order would have chosen another,
 * and (with a target) the first time after it in another generation. */
void restore_describe_plan(const struct catalog *cat, const struct catalog_generation *chosen,
                           const struct restore_options *opts, struct restore_outcome *out);

#endif
