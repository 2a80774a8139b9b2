/* config.h - the tidemark YAML configuration (docs/configuration.md).
 *
 * config_load parses, expands ${VAR}, fills defaults and validates the
 * whole file; any mistake fails the load with "FILE:LINE:COL: message"
 * and a hint, so nothing ever starts with a half-valid configuration.
 * Every key is declared once, in the schema of config_schema.c (its type,
 * default, checks and docs table); config.c explains the design. */
#ifndef TM_CONFIG_H
#define TM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cron.h"
#include "crypto.h"
#include "error.h"

enum replica_type { REPLICA_FILE, REPLICA_S3 };

/* An S3-compatible bucket. Unset credentials and region are resolved by
 * storage/s3.c the way every AWS tool does (environment, shared file). */
struct config_s3 {
    char *bucket;
    char *region;             /* NULL: AWS_REGION, AWS_DEFAULT_REGION, us-east-1 */
    char *endpoint;           /* NULL: https://s3.REGION.amazonaws.com */
    int force_path_style;     /* bucket in the path instead of the host name */
    char *access_key_id;
    char *secret_access_key;
    char *ca_file;            /* custom CA bundle for TLS verification */
    int require_versioning;   /* refuse to start unless versioning is enabled */
    uint64_t part_size;       /* multipart part size; default 8 MiB, minimum 5 MiB */
    char *object_lock_mode;   /* NULL, "GOVERNANCE" or "COMPLIANCE" */
    int64_t object_lock_retain_ms;
    int64_t stall_timeout_ms;   /* a transfer making no progress this long is retried; default 20s */
};

struct config_replica {
    enum replica_type type;
    char *name;               /* the type ("file", "s3") by default, or `name:` */
    char *path;               /* file: root directory; s3: key prefix (may be NULL) */
    struct config_s3 s3;
};

/* Grandfather-father-son retention (replicator/retention.c). */
struct config_retention {
    int enabled;                     /* `retention: off` disables it */
    uint32_t daily, weekly, monthly, yearly;   /* default 7, 4, 12, 7 */
    int64_t point_in_time_ms;        /* default 7d */
};

/* Restore drills (restore/drill.c). */
struct config_drill {
    int enabled;                     /* `drill: off` disables the schedule */
    struct cron cron;                /* default "0 4 1 * *" (monthly) */
    char *schedule;
    char *staging;                   /* default /var/tmp/tidemark-drill */
    char *check_sql;                 /* optional query that must return a row */
    /* publish: where the restored copy is left for a staging environment
     * (restore/drill.c); both NULL: nowhere, the scratch copy is deleted */
    char *publish_file;              /* PATH: replaced atomically by the copy */
    struct config_publish_sqld {     /* { sqld-admin, sqld-url, namespace }: a staging namespace */
        char *admin_url;             /* sqld's --admin-listen-addr, as http://HOST:PORT */
        char *http_url;              /* sqld's HTTP API, for the first query */
        char *name;                  /* the namespace, never "default" */
    } publish_sqld;
    char *after;                     /* run through /bin/sh -c after publishing; NULL: none */
    int64_t after_timeout_ms;        /* default 5m: `after` is killed and the drill fails */
};

enum db_kind { DB_SQLITE, DB_REDIS };

struct config_db {
    enum db_kind kind;               /* an entry of `dbs:` or of `redis:` */
    char *path;                      /* SQLite: the database file; Redis: NULL */
    char *name;
    char *redis_addr;                /* Redis: "HOST:PORT" (default port 6379) */
    char *redis_username;            /* Redis: ACL user, or NULL */
    char *redis_password;            /* Redis: password, or NULL (wiped on free) */
    int64_t sync_interval_ms;        /* default 1s */
    int64_t snapshot_interval_ms;    /* 0: none */
    int64_t missing_alert_after_ms;  /* a `path:` database still missing (or not in WAL mode) this
                                        long fires database_missing; 0 (`off`): never; default
                                        alerts: { missing-alert-after } */
    int snapshot_cron_set;           /* snapshot: { schedule } */
    struct cron snapshot_cron;       /* default "0 3 * * *" when no interval is set either */
    char *snapshot_schedule;
    double snapshot_wal_ratio;       /* snapshot once the WAL shipped since the last one
                                        reaches this x the database size; default 1, 0 off */
    int snapshot_wal_ratio_set;
    uint32_t checkpoint_pages;       /* PASSIVE checkpoint threshold, default 1000 */
    int engine;                      /* engine: 0 auto (default), 1 sqlite, 2 turso (enum tailer_engine) */
    int deltas;                      /* write deltas (replicator/deltas.h), default 1 */
    struct config_replica *replicas;
    size_t replica_count;
    char *state_dir;                 /* spool and position of this database; of a `dir:` entry,
                                        the root of its databases' (STATE-DIR/NAME or
                                        DIR/.tidemark) */
    struct config_retention retention;   /* top-level `retention`, or the database's own */
    struct config_drill drill;
    int64_t snapshot_spread_ms;      /* snapshot: { spread }: each database's scheduled snapshot
                                        is offset by a fixed share of this (by its name);
                                        default 0, 1h for a `dir:` entry */
    /* A `dir:` entry (path NULL): every database under `dir` whose file
     * name matches `pattern` is replicated as NAME/RELATIVE-PATH with this
     * entry's settings (replicator/tenants.c). */
    char *dir;
    char *pattern;                   /* fnmatch on the file name; default "*.db" */
    int recursive;                   /* also in sub-directories; default false */
    uint32_t max_open;               /* databases with open files at once; default 128 */
    int64_t idle_after_ms;           /* an idle database's files are closed after; default 60s */
    int metrics_per_database;        /* export each database's series, not sums per entry; default false */
    /* A database found under a `dir:` entry (config_find_db makes them):
     * the entry, whose settings it shares; NULL for a configured one. */
    const struct config_db *entry;
};

struct config_tenants;

/* Monitoring (replicator/metrics.c, replicator/alerts.c). */
struct config_alerts {
    char *webhook;                   /* JSON POST target, or NULL */
    char *command;                   /* program run with TIDEMARK_* variables, or NULL */
    int64_t failure_after_ms;        /* a replica failing this long fires; default 30s */
    int64_t lag_threshold_ms;        /* replication lag above this fires; default 60s */
    int64_t reminder_ms;             /* repeat while an incident lasts; default 1h */
    int64_t missing_alert_after_ms;  /* default of every database's missing-alert-after; 10m, 0 off */
};

struct config {
    char *file;               /* the configuration file's path */
    char *metrics_listen;     /* "127.0.0.1:9187", or NULL: no metrics endpoint */
    struct config_alerts alerts;
    int log_json;             /* log-format: json (default logfmt) */
    int encryption_none;      /* `encryption: none` written explicitly */
    char **key_files;         /* encryption.key-file: keys that decrypt (first also encrypts) */
    size_t key_file_count;
    char *recipient_file;     /* encryption.recipient-file: public key new objects are sealed to */
    char *state_dir;          /* NULL: beside each database (.NAME-tidemark);
                                 Redis entries: /var/lib/tidemark/NAME */
    uint64_t spool_limit;     /* bytes of objects waiting for replicas; default 1 GiB */
    struct config_retention retention;   /* default for every database */
    struct config_db *dbs;
    size_t db_count;
    struct config_tenants *tenants;  /* databases found under `dir:` entries, made on demand */
};

/* On success *out is owned by the caller (config_free). */
int config_load(const char *path, struct config **out, struct tm_error *err);
void config_free(struct config *cfg);

/* The keyring of cfg's encryption section plus `extra_files` (--key-file),
 * NULL for `encryption: none`. New objects are encrypted with the
 * recipient-file if there is one, else the first key-file. */
int config_load_keys(const struct config *cfg, char *const *extra_files, size_t extra_count,
                     struct crypto_keyring **out, struct tm_error *err);

/* Whether replica number `index` of db is the one `wanted` names (its
 * name, or its 0-based index as text); NULL wants every replica. The
 * --replica option of every command. */
int config_replica_selected(const struct config_db *db, size_t index, const char *wanted);

/* The database called `name`; NULL with err set (listing the names).
 * A name ENTRY/RELATIVE-PATH under a `dir:` entry gives that database
 * (whether or not its file still exists), made once and owned by cfg. */
const struct config_db *config_find_db(const struct config *cfg, const char *name,
                                       struct tm_error *err);

/* The database at `relpath` under the `dir:` entry `entry`: its name is
 * ENTRY/RELPATH, its path DIR/RELPATH, its state directory one of the
 * entry's. *out is owned by the caller (config_tenant_free). NULL with
 * err set when relpath is not a plain relative path. */
int config_tenant_new(const struct config_db *entry, const char *relpath, struct config_db **out,
                      struct tm_error *err);
void config_tenant_free(struct config_db *db);

/* The schema (common/config_schema.c), for the documentation and its
 * test: one entry per key each section takes (a key shared by variants,
 * such as a database entry's and a Redis entry's `name`, once each). */
struct config_key_doc {
    const char *section;      /* "top-level", "database entry", "s3 replica", "retention", ... */
    const char *key;
    const char *type;         /* "string", "duration", "size", "section", "list", ... */
    const char *def;          /* the default as written in the file, or NULL (none, or one
                                 that depends on other keys: see doc) */
    const char *doc;          /* one line */
    const char *heading;      /* of the table in docs/configuration.md that lists it */
};

/* Fills up to max entries of out; returns the number of keys. */
size_t config_schema_docs(struct config_key_doc *out, size_t max);

#endif
