/* lease.h - "a restore is reading this generation": small objects that
 * keep retention away from what a running restore, verify or drill reads.
 *
 * A lease is NAME/leases/<host>-<pid>-<ms>.lease holding the generation
 * and an expiry time; retention deletes nothing in a generation with an
 * unexpired lease. Taking one is best effort (a read-only key cannot
 * write it): the restore goes on, with a warning. Expiry (6 h) covers a
 * process that died without releasing its lease. */
#ifndef TM_LEASE_H
#define TM_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "storage/storage.h"

#define LEASE_HOLD_MS ((int64_t)6 * 3600 * 1000)
/* A lease is two short lines; a bigger object under leases/ is planted or
 * damaged: lease_active fails on it (TM_ERR_CORRUPT) without reading it. */
#define LEASE_RECORD_MAX 4096

/* On success key_out names the lease (for lease_release). */
int lease_take(struct storage *st, const char *db, const char *generation, int64_t now_ms, char *key_out,
               size_t key_len, struct tm_error *err);
void lease_release(struct storage *st, const char *key);

/* The generations with a lease unexpired at now_ms: *out is a malloc'd
 * array of malloc'd strings (lease_list_free). A lease object larger than
 * LEASE_RECORD_MAX fails the call as corrupt, naming it. */
int lease_active(struct storage *st, const char *db, int64_t now_ms, char ***out, size_t *count,
                 struct tm_error *err);
void lease_list_free(char **list, size_t count);

#endif
