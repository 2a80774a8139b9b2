/* drill.h - the `tidemark drill` command: a real restore test that
 * measures RTO and RPO, recorded in the replica itself. */
#ifndef TM_DRILL_H
#define TM_DRILL_H

#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/storage/storage.h"

struct drill_options {
    const char *db_name;     /* required */
    const char *replica;     /* name or index; NULL: every replica */
    int json;
};

/* Exit code: 0 only when every drill passed. */
int drill_run(const struct config *cfg, const struct crypto_keyring *key, const struct drill_options *opts);

/* The newest drill record of db in st (a JSON object, malloc'd), or NULL
 * with *found = 0. For `list`. */
int drill_latest(struct storage *st, const char *db, char **record, int *found, struct tm_error *err);

#endif
