/* replicate.h - the `tidemark replicate` command: the sidecar daemon. */
#ifndef TM_REPLICATE_H
#define TM_REPLICATE_H

#include "../common/config.h"
#include "../common/crypto.h"

/* Runs until SIGTERM/SIGINT, then ships what is committed and returns
 * 0, or 1 if something could not be shipped or a database failed to
 * start. key is NULL for `encryption: none`. */
int replicate_run(const struct config *cfg, const struct crypto_key *key);

#endif
