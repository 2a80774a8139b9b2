/* restore.h - the `tidemark restore` command. */
#ifndef TM_RESTORE_H
#define TM_RESTORE_H

#include <stdint.h>

#include "../common/archive.h"
#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/storage/storage.h"

/* What a successful restore produced. */
struct restore_outcome {
    int64_t point_ms;        /* commit time of the last transaction included (or the snapshot's) */
    uint64_t transactions, segments, bytes;
};

struct restore_options {
    const char *db_name;
    const char *output;
    const char *replica;     /* name or index; NULL: the first */
    int64_t target_ms;       /* valid when has_target */
    int has_target;
    int force;
    int quiet;               /* no report on success (verify --deep, drills) */
    int no_deltas;           /* segments only (--no-deltas) */
    int redis_rdb;           /* Redis: a dump.rdb instead of appendonlydir/ (--format rdb) */
    struct restore_outcome *outcome;   /* filled on success when not NULL */
    int skip_not_yet;        /* a database whose first backup is after the target is skipped
                                (restore_run returns RESTORE_EXIT_SKIPPED): restoring many */
};

#define RESTORE_NOT_YET 2        /* restore_plan: every backup is after the target */
#define RESTORE_EXIT_SKIPPED 3

/* Returns the process exit code; prints the outcome or the error. */
int restore_run(const struct config *cfg, const struct crypto_keyring *key,
                const struct restore_options *opts);

/* The generation and snapshot a restore to opts' target starts from:
 * the newest snapshot at or before it, across generations. -1, or
 * RESTORE_NOT_YET, with err set. */
int restore_plan(const struct catalog *cat, const struct restore_options *opts,
                 const struct catalog_generation **gen_out, const struct catalog_snapshot **snap_out,
                 struct tm_error *err);

/* Opens the replica chosen by `replica` (name or 0-based index; NULL for
 * the first) of database db; shared by restore and list. */
int restore_open_replica(const struct config_db *db, const char *replica,
                         struct storage **out, struct tm_error *err);

#endif
