/* config.h - the tidemark YAML configuration (docs/configuration.md).
 *
 * config_load parses, expands ${VAR}, fills defaults and validates the
 * whole file; any mistake fails the load with "FILE:LINE:COL: message"
 * and a hint, so nothing ever starts with a half-valid configuration. */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

enum replica_type { REPLICA_FILE };

struct config_replica {
    enum replica_type type;
    char *name;               /* "file" by default, or `name:` */
    char *path;               /* file: root directory */
};

struct config_db {
    char *path;
    char *name;
    int64_t sync_interval_ms;        /* default 1s */
    int64_t snapshot_interval_ms;    /* default 24h */
    uint32_t checkpoint_pages;       /* PASSIVE checkpoint threshold, default 1000 */
    struct config_replica *replicas;
    size_t replica_count;
};

struct config {
    char *file;               /* the configuration file's path */
    int encryption_none;      /* `encryption: none` written explicitly */
    char *key_file;
    char *spool_dir;          /* temporary files of snapshots; default /var/tmp */
    struct config_db *dbs;
    size_t db_count;
};

/* On success *out is owned by the caller (config_free). */
int config_load(const char *path, struct config **out, struct tm_error *err);
void config_free(struct config *cfg);

/* The database called `name`; NULL with err set (listing the names). */
const struct config_db *config_find_db(const struct config *cfg, const char *name,
                                       struct tm_error *err);

#endif
