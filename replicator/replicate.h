/* replicate.h - the `tidemark replicate` command: the sidecar daemon. */
#ifndef TM_REPLICATE_H
#define TM_REPLICATE_H

#include "../common/config.h"
#include "../common/crypto.h"

#include <stdint.h>

struct replicate_options {
    /* `tidemark snapshot` with no sidecar running: start this database
     * only, take a snapshot, wait until every replica has it (at most
     * timeout_ms), and return. NULL: run as the sidecar. */
    const char *snapshot_once;
    int64_t timeout_ms;
};

/* Runs until SIGTERM/SIGINT, then ships what is committed and returns
 * 0, or 1 if something could not be shipped or a database failed to
 * start. key is NULL for `encryption: none`; opts may be NULL. */
int replicate_run(const struct config *cfg, const struct crypto_keyring *key,
                  const struct replicate_options *opts);

#endif
