/* redis_restore.h - `tidemark restore` for a `redis:` entry.
 *
 * Writes a directory that a stock Redis 7 loads: appendonlydir/ with the
 * base RDB, an incr AOF holding every command received up to the target,
 * and the manifest (`redis-server --appendonly yes --dir DIR`); or, with
 * --format rdb, a single dump.rdb. */
#ifndef TM_REDIS_RESTORE_H
#define TM_REDIS_RESTORE_H

#include "../common/config.h"
#include "../common/crypto.h"
#include "restore.h"

/* restore_database for a `redis:` entry (restore.h): 0 with *out
 * filled; -1 or RESTORE_NOT_YET with err set. Prints nothing. */
int redis_restore(const struct config_db *db, const struct crypto_keyring *key, const struct restore_options *opts,
                  struct restore_outcome *out, struct tm_error *err);

#endif
