/* drill.h - restore drills: a real restore test that measures RTO and
 * RPO, recorded in the replica itself (the `tidemark drill` command is
 * cmd_drill.c; the sidecar runs it on the drill schedule). */
#ifndef TM_DRILL_H
#define TM_DRILL_H

#include "../common/config.h"
#include "../common/drill_record.h"
#include "../common/crypto.h"
#include "../common/storage/storage.h"
#include "restore.h"
#include "staging.h"

struct drill_result {
    int ok;
    int64_t started_ms, rto_ms, rpo_ms, point_ms;
    int64_t served_ms;       /* start of the restore to the published copy answering its first
                                query (restore + publish + first query); -1: not published */
    char published[300];     /* where the copy was published: the file's path, or
                                "sqld:NAMESPACE"; "" when it was not (or that failed) */
    int after_ran;           /* `after` was run (or could not be started): after says how it ended */
    struct staging_after_result after;
    char check[128];         /* the check query's first value */
    char error[600];         /* why it failed, the restore's own error included */
    int has_phases;          /* an SQLite database was restored: phases says where the time went */
    uint64_t read_bytes;     /* then: the sizes of the objects it applied (restore_outcome) */
    struct drill_phases phases;
};

/* One drill of db on replica `replica` (index): restore the newest point
 * into the staging directory (SQLite's check of it: integrity), run check-sql, measure RTO and RPO; publish
 * the checked copy (drill: { publish }) and run `after`; remove the
 * scratch copy. A failed publish or `after` fails the drill. The outcome,
 * failures included, is in *out. */
void drill_replica(const struct crypto_keyring *key, const struct config_db *db, size_t replica,
                   enum restore_integrity integrity, struct drill_result *out);

/* Formats the drill's record, one line of JSON (*record, malloc'd, NULL
 * when out of memory), and stores it in the replica it concerns:
 * "NAME/drills/<unix ms>-<replica>.json". */
int drill_store(const struct config_db *db, size_t replica, const struct drill_result *r, char **record,
                struct tm_error *err);

#endif
