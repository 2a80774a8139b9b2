/* redis.h - capturing a Redis server's writes as a replica does.
 *
 * The sidecar connects to the configured Redis like one of its replicas
 * (AUTH, REPLCONF, PSYNC), needing no access to its files and no change
 * to its configuration. A full resynchronisation's RDB becomes the base
 * snapshot of a new generation, streamed through the spool without being
 * held in memory; the command stream that follows is cut into segments
 * every sync-interval, each command (or MULTI ... EXEC block, never
 * split) stamped with the time it was received. After a dropped
 * connection or a restart the capture asks to continue where the archive
 * ends (PSYNC <replid> <offset+1>); when the master answers FULLRESYNC
 * instead, a new generation starts from the new RDB, never a silent gap.
 * Formats: common/archive.c. The loop, spool and uploaders belong to
 * replicate.c; this module drives one connection on that loop. */
#ifndef TM_REDIS_H
#define TM_REDIS_H

#include <ev.h>

#include "../common/config.h"
#include "../common/crypto.h"
#include "shipper.h"
#include "spool.h"

struct redis_capture;

struct redis_capture_deps {
    struct ev_loop *loop;
    const struct config_db *cfg;
    const struct crypto_keyring *key;    /* NULL: encryption none */
    struct spool *spool;
    /* Publishes the capture's segments and snapshots (shipper.h), and so
     * holds the generation, index, chain and counters, for status. */
    struct shipper *shipper;
    void (*published)(void *arg);        /* an object entered the spool: kick the uploaders */
    void *arg;
    /* spool-limit: at this many bytes waiting in the spool, the capture
     * stops reading the stream and takes no new snapshot (redis.c,
     * SPOOL LIMIT); 0: no limit */
    uint64_t spool_limit;
};

/* Starts connecting (asynchronously); errors are logged and retried. */
int redis_capture_start(const struct redis_capture_deps *deps, struct redis_capture **out,
                        struct tm_error *err);
/* The sync tick: the commands received so far become one segment. */
void redis_capture_sync(struct redis_capture *rc);
/* A fresh base snapshot: a second connection's full resynchronisation
 * starts a new generation, taking over once the current stream has
 * passed its point (no gap; redis.c). */
void redis_capture_snapshot(struct redis_capture *rc);
/* Publishes what is received and closes the connection. */
void redis_capture_stop(struct redis_capture *rc);
void redis_capture_free(struct redis_capture *rc);

/* Since when the capture has not been following the master's stream (0:
 * it is), and the last error. */
int64_t redis_capture_failing_since(const struct redis_capture *rc);
const char *redis_capture_error(const struct redis_capture *rc);

#endif
