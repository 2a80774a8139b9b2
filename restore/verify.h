/* verify.h - the `tidemark verify` command: every object of a replica
 * decrypted and checked, and the archive's structure (chain, order, gaps,
 * times) proven, without writing anything. */
#ifndef TM_VERIFY_H
#define TM_VERIFY_H

#include "../common/config.h"
#include "../common/crypto.h"

struct verify_options {
    const char *db_name;     /* NULL: every database */
    const char *replica;     /* name or index; NULL: every replica */
    int deep;                /* also restore the newest point and integrity_check it */
    int json;
};

/* Exit code: 0 only when every object and every check passed. */
int verify_run(const struct config *cfg, const struct crypto_keyring *key, const struct verify_options *opts);

#endif
