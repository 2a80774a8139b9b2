/* verify.h - checking a replica (the `tidemark verify` command is
 * cmd_verify.c): every object of a replica
 * decrypted and checked, and the archive's structure (chain, order, gaps,
 * times) proven, without writing anything. */
#ifndef TM_VERIFY_H
#define TM_VERIFY_H

#include "../common/config.h"
#include "../common/crypto.h"

/* Where the problems found go, and the counts. */
struct verify_report {
    void (*problem)(void *ctx, const char *object, const char *what);   /* each problem, as found */
    void *ctx;
    size_t objects;          /* objects read and checked */
    size_t problems;
    /* Objects read whose envelope predates the identity binding (versions
     * 1 and 2, object.h): not problems, but nothing ties them to their
     * database or place. note (may be NULL) gets one line per generation
     * holding any. */
    void (*note)(void *ctx, const char *object, const char *what);
    size_t predating;
};

/* Checks replica `replica` (index) of db: every object read, the
 * archive's structure, and with deep the newest point restored into a
 * scratch file and integrity_check'ed; and the archive's end against the
 * generations' heads and the newest head this host saw (common/heads.h;
 * seen_dir: the configuration's state-dir or NULL). Every problem,
 * unreachable replica included, goes to rep->problem with the object it
 * concerns. */
void verify_replica(const struct crypto_keyring *key, const struct config_db *db, size_t replica, int deep,
                    const char *seen_dir, struct verify_report *rep);

#endif
