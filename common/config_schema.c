/* config_schema.c - the configuration's schema: every section of the
 * YAML file as a table of its keys (type, field, default, variants,
 * check, one line of documentation), and each section's finish (checks
 * across keys, defaults that depend on others). config.c walks them; the
 * design is described there. docs/configuration.md documents each table
 * under the heading named here, and tests/unit/test_config.c checks it. */
#include "config.h"
#include "config_schema.h"

#include "crypto.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEYS(table) .keys = table, .key_count = sizeof table / sizeof *table
#define FIELD(type, member) offsetof(struct type, member)

/* ---- checks of single values --------------------------------------------- */

static int is_url(const char *text)
{
    return strncmp(text, "https://", 8) == 0 || strncmp(text, "http://", 7) == 0;
}

static const struct config_section alerts_section, metrics_section;

static int check_webhook(struct config_loader *ld, yaml_node_t *value, void *field)
{
    if (is_url(*(char **)field))
        return 0;
    return config_fail_at(ld, value, alerts_section.shape_hint, "'webhook' must be an http:// or https:// URL");
}

static int check_listen(struct config_loader *ld, yaml_node_t *value, void *field)
{
    const char *listen = *(char **)field, *colon = strrchr(listen, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || colon == listen || *end || port < 1 || port > 65535)
        return config_fail_at(ld, value, metrics_section.shape_hint, "'listen' must be HOST:PORT, e.g. 127.0.0.1:9187");
    return 0;
}

/* Checks that `path` holds a key now, so a typo is found at load time. */
static int probe_key_file(struct config_loader *ld, yaml_node_t *node, const char *path, int want_public)
{
    struct crypto_keyring *probe = NULL;
    struct tm_error key_err;
    if (crypto_keyring_new(&probe, &key_err) != 0 || crypto_keyring_add_file(probe, path, &key_err) != 0) {
        crypto_keyring_free(probe);
        return config_fail_at(ld, node, key_err.hint[0] ? key_err.hint : NULL, "%s", key_err.msg);
    }
    int is_public = crypto_keyring_public_only(probe);
    crypto_keyring_free(probe);
    if (want_public && !is_public)
        return config_fail_at(ld, node, "give the FILE.pub written by 'tidemark keygen --pair -o FILE'; the secret "
                              "key belongs on the restore host only",
                              "'recipient-file' must hold a public key, and '%s' holds a secret key", path);
    if (!want_public && is_public)
        return config_fail_at(ld, node, "a public key goes under 'recipient-file'; 'key-file' takes keys that can decrypt",
                              "'key-file' '%s' holds only a public key", path);
    return 0;
}

static int check_recipient_file(struct config_loader *ld, yaml_node_t *value, void *field)
{
    return probe_key_file(ld, value, *(char **)field, 1);
}

/* key-file: PATH | [PATH, ...] into the struct config at field. */
static int parse_key_files(struct config_loader *ld, const struct config_key *key, yaml_node_t *node, void *field)
{
    struct config *cfg = field;
    yaml_node_item_t single = (yaml_node_item_t)(node - ld->doc.nodes.start) + 1;
    yaml_node_item_t *first = &single, *last = &single + 1;
    if (node->type == YAML_SEQUENCE_NODE) {
        first = node->data.sequence.items.start;
        last = node->data.sequence.items.top;
        if (first == last)
            return config_fail_at(ld, node, NULL, "'%s' is an empty list", key->key);
    }
    for (yaml_node_item_t *item = first; item < last; item++) {
        yaml_node_t *entry = yaml_document_get_node(&ld->doc, *item);
        char *path = NULL;
        if (config_get_string(ld, entry, key->key, &path) != 0)
            return -1;
        char **grown = realloc(cfg->key_files, (cfg->key_file_count + 1) * sizeof *grown);
        if (!grown) {
            free(path);
            return config_out_of_memory(ld);
        }
        cfg->key_files = grown;
        cfg->key_files[cfg->key_file_count++] = path;
        if (probe_key_file(ld, entry, path, 0) != 0)
            return -1;
    }
    return 0;
}

/* ---- encryption ------------------------------------------------------------ */

static const char encryption_hint[] =
    "write 'encryption: { key-file: /etc/tidemark/key }' (from 'tidemark keygen'), "
    "'encryption: { recipient-file: /etc/tidemark/backup.pub }' (from 'tidemark keygen --pair') or 'encryption: none'";
static const char encryption_shape[] = "'encryption' must be 'none' or a mapping with 'key-file' and/or 'recipient-file'";

static int finish_encryption(struct config_loader *ld, yaml_node_t *node, void *base, const struct config_seen *seen)
{
    const struct config *cfg = base;
    (void)seen;
    if (!cfg->key_file_count && !cfg->recipient_file)
        return config_fail_at(ld, node, encryption_hint, "'encryption' has neither 'key-file' nor 'recipient-file'");
    return 0;
}

static const struct config_key encryption_keys[] = {
    {.key = "key-file", .type = CONFIG_CUSTOM, .parse = parse_key_files,
     .doc = "keys that decrypt (PATH or a list); without recipient-file the first also encrypts"},
    {.key = "recipient-file", .type = CONFIG_STRING, .offset = FIELD(config, recipient_file),
     .check = check_recipient_file, .doc = "the public key new backups are sealed to"},
};

static const struct config_section encryption_section = {
    .title = "encryption", .where = "'encryption'", .not_mapping = encryption_shape, .shape_hint = encryption_hint,
    KEYS(encryption_keys), .finish = finish_encryption, .heading = "## Encryption",
};

/* `none`, or the mapping. */
static int parse_encryption(struct config_loader *ld, const struct config_key *key, yaml_node_t *node, void *field)
{
    struct config *cfg = field;
    (void)key;
    if (node->type != YAML_SCALAR_NODE)
        return config_walk(ld, &encryption_section, node, cfg);
    if (strcmp((const char *)node->data.scalar.value, "none") != 0)
        return config_fail_at(ld, node, encryption_hint, "%s", encryption_shape);
    cfg->encryption_none = 1;
    return 0;
}

/* ---- metrics, alerts, retention, drill, snapshot ------------------------------ */

static const struct config_key metrics_keys[] = {
    {.key = "listen", .type = CONFIG_STRING, .offset = FIELD(config, metrics_listen), .check = check_listen,
     .doc = "HOST:PORT of the Prometheus metrics and /healthz endpoint"},
};

static const struct config_section metrics_section = {
    .title = "metrics", .where = "'metrics'", .shape_hint = "write 'metrics: { listen: 127.0.0.1:9187 }'",
    KEYS(metrics_keys), .heading = "### `metrics`",
};

static const struct config_key alerts_keys[] = {
    {.key = "webhook", .type = CONFIG_STRING, .offset = FIELD(config_alerts, webhook), .check = check_webhook,
     .doc = "URL that alerts are POSTed to as JSON"},
    {.key = "command", .type = CONFIG_STRING, .offset = FIELD(config_alerts, command),
     .doc = "program run for each alert, with TIDEMARK_* variables"},
    {.key = "failure-after", .type = CONFIG_DURATION, .offset = FIELD(config_alerts, failure_after_ms), .def = "30s",
     .doc = "a replica (or the capture) failing this long fires"},
    {.key = "lag-threshold", .type = CONFIG_DURATION, .offset = FIELD(config_alerts, lag_threshold_ms), .def = "60s",
     .doc = "replication lag above this fires"},
    {.key = "reminder", .type = CONFIG_DURATION, .offset = FIELD(config_alerts, reminder_ms), .def = "1h",
     .doc = "an incident is repeated this often while it lasts"},
    {.key = "missing-alert-after", .type = CONFIG_DURATION_OFF, .def = "10m",
     .offset = FIELD(config_alerts, missing_alert_after_ms), .doc = "the default of every database's"},
};

static const struct config_section alerts_section = {
    .title = "alerts", .where = "'alerts'", .shape_hint =
        "write 'alerts: { webhook: URL, command: PATH, failure-after: 30s, lag-threshold: 60s, reminder: 1h, "
        "missing-alert-after: 10m }'",
    KEYS(alerts_keys), .heading = "### `alerts`",
};

static const struct config_key retention_keys[] = {
    {.key = "daily", .type = CONFIG_WHOLE, .offset = FIELD(config_retention, daily), .def = "7",
     .doc = "the newest snapshot of each of the last N days that have one"},
    {.key = "weekly", .type = CONFIG_WHOLE, .offset = FIELD(config_retention, weekly), .def = "4",
     .doc = "... of the last N ISO weeks"},
    {.key = "monthly", .type = CONFIG_WHOLE, .offset = FIELD(config_retention, monthly), .def = "12",
     .doc = "... of the last N months"},
    {.key = "yearly", .type = CONFIG_WHOLE, .offset = FIELD(config_retention, yearly), .def = "7",
     .doc = "... of the last N years"},
    {.key = "point-in-time", .type = CONFIG_DURATION, .offset = FIELD(config_retention, point_in_time_ms),
     .def = "7d", .doc = "every second of this last window stays restorable"},
};

static const struct config_section retention_section = {
    .title = "retention", .where = "'retention'", .has_enabled = 1,
    .enabled_offset = FIELD(config_retention, enabled), .shape_hint =
        "write 'retention: { daily: 7, weekly: 4, monthly: 12, yearly: 7, point-in-time: 7d }' or 'retention: off'",
    KEYS(retention_keys), .heading = "## Retention",
};

/* A sqld namespace is addressed by the first label of a Host header
 * (sqld routes a request by it): letters, digits, '-' and '_', no dot. */
static int namespace_ok(const char *name)
{
    if (!name[0] || strlen(name) > 63)
        return 0;
    for (const char *p = name; *p; p++)
        if (!(*p == '-' || *p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

static const char publish_hint[] =
    "write 'publish: /srv/staging/app.db' (a file the copy replaces) or 'publish: { sqld-admin: "
    "http://127.0.0.1:9090, sqld-url: http://127.0.0.1:8080, namespace: staging }'";

static int check_publish_url(struct config_loader *ld, yaml_node_t *value, void *field)
{
    if (is_url(*(char **)field))
        return 0;
    return config_fail_at(ld, value, publish_hint, "'%s' must be an http:// or https:// URL", *(char **)field);
}

/* All three keys; a staging namespace is never `default` (sqld's create
 * loads nothing into an existing `default` and still answers 200). */
static int finish_publish_sqld(struct config_loader *ld, yaml_node_t *node, void *base, const struct config_seen *seen)
{
    struct config_publish_sqld *sqld = base;
    (void)seen;
    if (!sqld->admin_url || !sqld->http_url || !sqld->name)
        return config_fail_at(ld, node, publish_hint, "'publish' to sqld needs 'sqld-admin', 'sqld-url' and "
                              "'namespace'");
    if (strcmp(sqld->name, "default") == 0)
        return config_fail_at(ld, node, "name a staging namespace, e.g. 'namespace: staging': the drill deletes "
                              "and recreates it each time", "'publish' never replaces the 'default' namespace");
    if (!namespace_ok(sqld->name))
        return config_fail_at(ld, node, "namespaces may use letters, digits, '-' and '_' (up to 63)",
                              "invalid namespace '%s'", sqld->name);
    return 0;
}

static const struct config_key publish_sqld_keys[] = {
    {.key = "sqld-admin", .type = CONFIG_STRING, .offset = FIELD(config_publish_sqld, admin_url),
     .check = check_publish_url, .doc = "sqld's admin API (--admin-listen-addr) as a URL"},
    {.key = "sqld-url", .type = CONFIG_STRING, .offset = FIELD(config_publish_sqld, http_url),
     .check = check_publish_url, .doc = "sqld's HTTP API, where the first query is sent"},
    {.key = "namespace", .type = CONFIG_STRING, .offset = FIELD(config_publish_sqld, name),
     .doc = "the staging namespace, deleted and created from the copy (never default)"},
};

static const struct config_section publish_sqld_section = {
    .title = "publish", .where = "'publish'", .shape_hint = publish_hint, KEYS(publish_sqld_keys),
    .finish = finish_publish_sqld, .heading = "### `publish` to a staging sqld namespace",
};

/* publish: PATH | { sqld-admin, sqld-url, namespace } into the struct
 * config_drill at field. */
static int parse_publish(struct config_loader *ld, const struct config_key *key, yaml_node_t *node, void *field)
{
    struct config_drill *drill = field;
    if (node->type == YAML_MAPPING_NODE)
        return config_walk(ld, &publish_sqld_section, node, &drill->publish_sqld);
    if (node->type != YAML_SCALAR_NODE)
        return config_fail_at(ld, node, publish_hint, "'publish' must be a file path or a mapping");
    if (config_get_string(ld, node, key->key, &drill->publish_file) != 0)
        return -1;
    if (drill->publish_file[0] != '/')
        return config_fail_at(ld, node, publish_hint, "'publish' must be an absolute path");
    return 0;
}

static int check_after_timeout(struct config_loader *ld, yaml_node_t *value, void *field)
{
    if (*(int64_t *)field >= 1000)
        return 0;
    return config_fail_at(ld, value, "e.g. 'after-timeout: 5m'", "'after-timeout' must be 1s or more");
}

static const struct config_key drill_keys[] = {
    {.key = "schedule", .type = CONFIG_CRON, .offset = FIELD(config_drill, schedule),
     .aux = FIELD(config_drill, cron), .def = "0 4 1 * *", .doc = "when drills run (cron, UTC)"},
    {.key = "staging", .type = CONFIG_STRING, .offset = FIELD(config_drill, staging),
     .def = "/var/tmp/tidemark-drill", .doc = "where the scratch copy is restored"},
    {.key = "check-sql", .type = CONFIG_STRING, .offset = FIELD(config_drill, check_sql),
     .doc = "a query that must succeed and return a row"},
    {.key = "publish", .type = CONFIG_CUSTOM, .parse = parse_publish,
     .doc = "leave the copy for staging: a file PATH it replaces, or a sqld namespace"},
    {.key = "after", .type = CONFIG_STRING, .offset = FIELD(config_drill, after),
     .doc = "a command run after publishing (staging's smoke test); failing fails the drill"},
    {.key = "after-timeout", .type = CONFIG_DURATION, .offset = FIELD(config_drill, after_timeout_ms), .def = "5m",
     .check = check_after_timeout, .doc = "after is killed at this time, and the drill fails"},
};

static const struct config_section drill_section = {
    .title = "drill", .where = "'drill'", .has_enabled = 1, .enabled_offset = FIELD(config_drill, enabled),
    .shape_hint = "write 'drill: { schedule: \"0 4 1 * *\", staging: /var/tmp/tidemark-drill, "
                  "check-sql: \"SELECT count(*) FROM users\" }' or 'drill: off'",
    KEYS(drill_keys), .heading = "## Drills",
};

static const struct config_section snapshot_section;

/* The schedule and the WAL ratio not given get defaults that depend on
 * the entry (db_defaults); note which were. */
static int finish_snapshot(struct config_loader *ld, yaml_node_t *node, void *base, const struct config_seen *seen)
{
    struct config_db *db = base;
    (void)ld, (void)node;
    db->snapshot_cron_set = config_seen_key(&snapshot_section, seen, "schedule") != NULL;
    db->snapshot_wal_ratio_set = config_seen_key(&snapshot_section, seen, "wal-ratio") != NULL;
    return 0;
}

static const struct config_key snapshot_keys[] = {
    {.key = "schedule", .type = CONFIG_CRON, .offset = FIELD(config_db, snapshot_schedule),
     .aux = FIELD(config_db, snapshot_cron), .doc = "base snapshots on this cron schedule (UTC); default "
     "\"0 3 * * *\", Redis \"0 */6 * * *\", none when snapshot-interval is set"},
    {.key = "wal-ratio", .type = CONFIG_RATIO, .offset = FIELD(config_db, snapshot_wal_ratio),
     .doc = "also snapshot once the WAL shipped reaches this x the database size; default 1, Redis off"},
    {.key = "spread", .type = CONFIG_DURATION, .offset = FIELD(config_db, snapshot_spread_ms),
     .doc = "scheduled snapshots are offset by a share of this window; default 0, 1h for a dir: entry"},
};

static const struct config_section snapshot_section = {
    .title = "snapshot", .where = "'snapshot'", .shape_hint =
        "write 'snapshot: { schedule: \"0 3 * * *\", wal-ratio: 1, spread: 1h }' (cron, UTC; a ratio of the "
        "database size, or off; a window the databases' snapshots are spread over)",
    KEYS(snapshot_keys), .finish = finish_snapshot, .heading = "### `snapshot`",
};

/* ---- replicas ---------------------------------------------------------------- */

static int name_ok(const char *name)
{
    if (!name[0] || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

static const struct config_section object_lock_section;

/* mode and retain are both needed; the mode is kept in capitals. */
static int finish_object_lock(struct config_loader *ld, yaml_node_t *node, void *base, const struct config_seen *seen)
{
    struct config_s3 *s3 = base;
    const char *mode = s3->object_lock_mode;
    (void)seen;
    if (!mode || (strcasecmp(mode, "governance") != 0 && strcasecmp(mode, "compliance") != 0))
        return config_fail_at(ld, node, object_lock_section.shape_hint,
                              "'object-lock' needs 'mode: governance' or 'mode: compliance'");
    if (s3->object_lock_retain_ms <= 0)
        return config_fail_at(ld, node, object_lock_section.shape_hint, "'object-lock' needs 'retain: DURATION'");
    for (char *p = s3->object_lock_mode; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    return 0;
}

static const struct config_key object_lock_keys[] = {
    {.key = "mode", .type = CONFIG_STRING, .offset = FIELD(config_s3, object_lock_mode),
     .doc = "governance or compliance"},
    {.key = "retain", .type = CONFIG_DURATION, .offset = FIELD(config_s3, object_lock_retain_ms),
     .doc = "each object is locked until now + this"},
};

static const struct config_section object_lock_section = {
    .title = "object-lock", .where = "'object-lock'", .shape_hint = "write 'object-lock: { mode: governance, retain: 30d }'",
    KEYS(object_lock_keys), .finish = finish_object_lock, .heading = "#### `object-lock`",
};

/* An s3 replica's cross-key checks; its path is a key prefix without
 * leading or trailing '/'. */
static int check_s3(struct config_loader *ld, yaml_node_t *node, struct config_replica *rep)
{
    struct config_s3 *s3 = &rep->s3;
    if (!s3->bucket)
        return config_fail_at(ld, node, "add 'bucket: my-backups'", "replica of type 's3' has no 'bucket'");
    if (s3->stall_timeout_ms < 1000)
        return config_fail_at(ld, node, "give 1s or more (default 20s)", "'stall-timeout' is below one second");
    if (s3->part_size < 5 * 1024 * 1024 || s3->part_size > 5ULL * 1024 * 1024 * 1024)
        return config_fail_at(ld, node, "S3 parts are 5 MiB to 5 GiB", "'part-size' is out of range");
    if (!s3->access_key_id != !s3->secret_access_key)
        return config_fail_at(ld, node, "set both 'access-key-id' and 'secret-access-key', or neither (then the "
                              "environment or ~/.aws/credentials is used)",
                              "replica has only one of 'access-key-id' and 'secret-access-key'");
    if (s3->endpoint && !is_url(s3->endpoint))
        return config_fail_at(ld, node, "write the endpoint as a URL, e.g. https://ACCOUNT.r2.cloudflarestorage.com",
                              "'endpoint' must start with https:// or http://");
    if (rep->path) {
        char *p = rep->path;
        while (*p == '/')
            p++;
        memmove(rep->path, p, strlen(p) + 1);
        size_t len = strlen(rep->path);
        while (len && rep->path[len - 1] == '/')
            rep->path[--len] = '\0';
    }
    return 0;
}

static int finish_replica(struct config_loader *ld, yaml_node_t *node, void *base, const struct config_seen *seen)
{
    struct config_replica *rep = base;
    (void)seen;
    if (rep->type == REPLICA_FILE && !rep->path)
        return config_fail_at(ld, node, "add 'path: /var/backups/tidemark'", "replica of type 'file' has no 'path'");
    if (rep->type == REPLICA_S3 && check_s3(ld, node, rep) != 0)
        return -1;
    if (!rep->name && !(rep->name = strdup(rep->type == REPLICA_S3 ? "s3" : "file")))
        return config_out_of_memory(ld);
    if (!name_ok(rep->name))
        return config_fail_at(ld, node, "names may use letters, digits, '-', '_' and '.'",
                              "invalid replica name '%s'", rep->name);
    return 0;
}

/* `type` is read before the walk, to choose the variant (parse_replica). */
static int parse_type_again(struct config_loader *ld, const struct config_key *key, yaml_node_t *value, void *field)
{
    (void)ld, (void)key, (void)value, (void)field;
    return 0;
}

#define S3_FIELD(member) (FIELD(config_replica, s3) + FIELD(config_s3, member))

static const struct config_key replica_keys[] = {
    {.key = "type", .type = CONFIG_CUSTOM, .parse = parse_type_again, .def = "file", .doc = "file or s3"},
    {.key = "name", .type = CONFIG_STRING, .offset = FIELD(config_replica, name),
     .doc = "name for --replica; default the type"},
    {.key = "bucket", .type = CONFIG_STRING, .offset = S3_FIELD(bucket), .variants = CONFIG_S3,
     .doc = "the bucket"},
    {.key = "path", .type = CONFIG_STRING, .offset = FIELD(config_replica, path),
     .doc = "file: the directory; s3: a key prefix in the bucket"},
    {.key = "region", .type = CONFIG_STRING, .offset = S3_FIELD(region), .variants = CONFIG_S3,
     .doc = "the bucket's region; default AWS_REGION, AWS_DEFAULT_REGION, us-east-1"},
    {.key = "endpoint", .type = CONFIG_STRING, .offset = S3_FIELD(endpoint), .variants = CONFIG_S3,
     .doc = "another provider's S3 endpoint URL"},
    {.key = "force-path-style", .type = CONFIG_BOOL, .offset = S3_FIELD(force_path_style), .variants = CONFIG_S3,
     .def = "false", .doc = "ENDPOINT/BUCKET/KEY instead of BUCKET.HOST/KEY"},
    {.key = "access-key-id", .type = CONFIG_STRING, .offset = S3_FIELD(access_key_id), .variants = CONFIG_S3,
     .doc = "credentials (with secret-access-key); default from the environment or ~/.aws"},
    {.key = "secret-access-key", .type = CONFIG_STRING, .offset = S3_FIELD(secret_access_key),
     .variants = CONFIG_S3, .doc = "credentials (with access-key-id)"},
    {.key = "ca-file", .type = CONFIG_STRING, .offset = S3_FIELD(ca_file), .variants = CONFIG_S3,
     .doc = "a PEM bundle to verify the endpoint's certificate"},
    {.key = "require-versioning", .type = CONFIG_BOOL, .offset = S3_FIELD(require_versioning),
     .variants = CONFIG_S3, .def = "false", .doc = "refuse to start unless the bucket has versioning"},
    {.key = "part-size", .type = CONFIG_SIZE, .offset = S3_FIELD(part_size), .variants = CONFIG_S3,
     .def = "8MiB", .doc = "multipart upload part size, 5 MiB to 5 GiB"},
    {.key = "object-lock", .type = CONFIG_SECTION, .offset = FIELD(config_replica, s3), .variants = CONFIG_S3,
     .section = &object_lock_section, .doc = "S3 Object Lock retention of every object"},
    {.key = "stall-timeout", .type = CONFIG_DURATION, .offset = S3_FIELD(stall_timeout_ms), .variants = CONFIG_S3,
     .def = "20s", .doc = "a request making no progress this long is retried; 1s or more"},
};

#define REPLICA_SECTION(variant_bit, variant_title, variant_heading)                                          \
    {.title = variant_title, .where = "replica", .not_mapping = "a replica must be a mapping",             \
     .shape_hint = "each replica is a mapping such as '- type: file' / '  path: /var/backups/tidemark'", \
     .variant = variant_bit, KEYS(replica_keys), .finish = finish_replica, .heading = variant_heading}

static const struct config_section file_replica_section =
    REPLICA_SECTION(CONFIG_FILE, "file replica", "### `type: file` - a local directory");
static const struct config_section s3_replica_section =
    REPLICA_SECTION(CONFIG_S3, "s3 replica", "### `type: s3` - AWS S3 and S3-compatible storage (R2, GCS, MinIO, ...)");

/* The type chooses the variant, then the walk reads the rest. */
static int parse_replica(struct config_loader *ld, yaml_node_t *node, struct config_replica *rep)
{
    if (node->type != YAML_MAPPING_NODE)
        return config_fail_at(ld, node, file_replica_section.shape_hint, "%s", file_replica_section.not_mapping);
    if (config_unique_keys(ld, node) != 0)
        return -1;
    yaml_node_t *type_node = NULL;
    char *type = NULL;
    if (config_find_pair(ld, node, "type", &type_node) && config_get_string(ld, type_node, "type", &type) != 0)
        return -1;
    rep->type = type && strcmp(type, "s3") == 0 ? REPLICA_S3 : REPLICA_FILE;
    if (type && strcmp(type, "s3") != 0 && strcmp(type, "file") != 0) {
        config_fail_at(ld, type_node, "supported replica types: file, s3", "unknown replica type '%s'", type);
        free(type);
        return -1;
    }
    free(type);
    return config_walk(ld, rep->type == REPLICA_S3 ? &s3_replica_section : &file_replica_section, node, rep);
}

static int parse_replicas(struct config_loader *ld, const struct config_key *key, yaml_node_t *node, void *field)
{
    struct config_db *db = field;
    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail_at(ld, node, NULL, "'%s' must be a list", key->key);
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    db->replicas = calloc(count ? count : 1, sizeof *db->replicas);
    if (!db->replicas)
        return config_out_of_memory(ld);
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[i]);
        db->replica_count++;
        if (parse_replica(ld, item, &db->replicas[i]) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(db->replicas[j].name, db->replicas[i].name) == 0)
                return config_fail_at(ld, item, "give each replica of a database its own 'name'",
                                      "duplicate replica name '%s'", db->replicas[i].name);
    }
    return 0;
}

/* ---- database entries (`dbs:`, `redis:`) ------------------------------------ */

static char *default_db_name(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    char *base = strdup(basename(copy));
    free(copy);
    if (base) {
        char *dot = strrchr(base, '.');
        if (dot && dot != base)
            *dot = '\0';
    }
    return base;
}

/* A `dir:` entry is named after the directory by default. */
static char *default_dir_name(const char *dir)
{
    char *copy = strdup(dir);
    if (!copy)
        return NULL;
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0';
    char *base = strdup(basename(copy));
    free(copy);
    return base;
}

static const struct config_section sqlite_db_section, redis_db_section;

static int dir_entry_defaults(struct config_loader *ld, yaml_node_t *node, struct config_db *db,
                              const struct config_seen *seen)
{
    size_t len = strlen(db->dir);
    while (len > 1 && db->dir[len - 1] == '/')
        db->dir[--len] = '\0';
    if (config_apply_defaults(ld, &sqlite_db_section, node, db, seen, CONFIG_DIR) != 0)
        return -1;
    if (!db->pattern[0] || strchr(db->pattern, '/'))
        return config_fail_at(ld, node, "a pattern matches file names, such as \"*.db\" (use 'recursive: true' for "
                              "sub-directories)", "invalid 'pattern' '%s'", db->pattern);
    return 0;
}

static int finish_redis_entry(struct config_loader *ld, yaml_node_t *node, struct config_db *db)
{
    if (!db->name)
        return config_fail_at(ld, node, "add 'name: cache' (names the backups and the commands' NAME)",
                              "redis entry has no 'name'");
    if (!db->redis_addr)
        return config_fail_at(ld, node, "add 'addr: 127.0.0.1:6379'", "redis entry '%s' has no 'addr'", db->name);
    db->snapshot_wal_ratio_set = 1;   /* no WAL: snapshots by schedule only */
    db->snapshot_wal_ratio = 0;
    return 0;
}

/* A `path:` database or a `dir:` entry, not both. */
static int finish_sqlite_entry(struct config_loader *ld, yaml_node_t *node, struct config_db *db,
                               const struct config_seen *seen)
{
    yaml_node_t *missing_alert = config_seen_key(&sqlite_db_section, seen, "missing-alert-after");
    if (db->path && db->dir)
        return config_fail_at(ld, node, "one entry per 'path' (a database) or per 'dir' (every database in a "
                              "directory)", "database entry has both 'path' and 'dir'");
    if (db->dir && missing_alert)
        return config_fail_at(ld, missing_alert, "databases under 'dir:' are followed once they appear; "
                              "'missing-alert-after' is for a database configured with 'path:'",
                              "'missing-alert-after' goes with 'path:', not 'dir:'");
    if (db->dir)
        return dir_entry_defaults(ld, node, db, seen);
    if (!db->path)
        return config_fail_at(ld, node, "add 'path: /var/lib/app/app.db', or 'dir: /var/lib/app/tenants' for a "
                              "directory of databases", "database entry has no 'path'");
    if (db->pattern || db->recursive || db->max_open || db->idle_after_ms || db->metrics_per_database)
        return config_fail_at(ld, node, "'pattern', 'recursive', 'max-open', 'idle-after' and "
                              "'metrics-per-database' go with 'dir:'",
                              "database entry '%s' has directory settings but no 'dir'", db->path);
    return 0;
}

/* path with its directory resolved (symlinks, "..") when it exists, so
 * that two spellings of one file compare equal; else path as written. */
static void resolved_path(const char *path, char *out, size_t len)
{
    char dir[PATH_MAX], resolved[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *name = slash ? path + (slash - dir) + 1 : path;
    if (slash)
        *slash = '\0';
    if (realpath(slash == dir ? "/" : slash ? dir : ".", resolved))
        snprintf(out, len, "%s/%s", strcmp(resolved, "/") == 0 ? "" : resolved, name);
    else
        snprintf(out, len, "%s", path);
}

/* Whether a drill's publish file is the file of a database backed up
 * (the drill would replace the live database with its restored copy). */
static int publish_is_database(const char *publish, const char *db_path)
{
    char a[PATH_MAX + 256], b[PATH_MAX + 256];
    resolved_path(publish, a, sizeof a);
    resolved_path(db_path, b, sizeof b);
    return strcmp(a, b) == 0;
}

/* publish: a `path:` database's drill only, and never onto it. */
static int check_publish(struct config_loader *ld, yaml_node_t *node, const struct config_db *db,
                         const struct config_seen *seen)
{
    const struct config_drill *drill = &db->drill;
    if (!drill->publish_file && !drill->publish_sqld.name)
        return 0;
    yaml_node_t *at = config_seen_value(db->kind == DB_REDIS ? &redis_db_section : &sqlite_db_section, seen, "drill");
    if (!at)
        at = node;
    if (db->kind == DB_REDIS || db->dir)
        return config_fail_at(ld, at, "a drill of a Redis or 'dir:' entry keeps its scratch copy only",
                              "'publish' goes with a 'path:' database");
    if (drill->publish_file && publish_is_database(drill->publish_file, db->path))
        return config_fail_at(ld, at, "publish to a staging copy, e.g. /srv/staging/app.db",
                              "'publish' '%s' is the database '%s' itself: a drill never replaces it",
                              drill->publish_file, db->name);
    return 0;
}

static int finish_db(struct config_loader *ld, yaml_node_t *node, void *base, const struct config_seen *seen)
{
    struct config_db *db = base;
    if ((db->kind == DB_REDIS ? finish_redis_entry(ld, node, db) : finish_sqlite_entry(ld, node, db, seen)) != 0)
        return -1;
    if (!db->name && !(db->name = db->dir ? default_dir_name(db->dir) : default_db_name(db->path)))
        return config_out_of_memory(ld);
    if (!name_ok(db->name))
        return config_fail_at(ld, node, "names may use letters, digits, '-', '_' and '.'",
                              "invalid database name '%s'", db->name);
    if (check_publish(ld, node, db, seen) != 0)
        return -1;
    yaml_node_t *replicas = config_seen_value(&sqlite_db_section, seen, "replicas");
    if (db->replica_count == 0)
        return config_fail_at(ld, replicas ? replicas : node,
                              "add 'replicas:' with at least '- type: file' and 'path: /var/backups/tidemark'",
                              "database '%s' has no replica", db->name);
    return 0;
}

#define DB_FIELD(member) FIELD(config_db, member)
#define DIR_HEADING "## Directory entry (`dbs[]` with `dir`): a database per tenant"

/* The order of enum tailer_engine (replicator/tailer.h). */
static const char *const db_engines[] = {"auto", "sqlite", "turso", NULL};

static const struct config_key db_keys[] = {
    {.key = "path", .type = CONFIG_STRING, .offset = DB_FIELD(path), .variants = CONFIG_SQLITE,
     .doc = "the SQLite/libSQL database (WAL mode)"},
    {.key = "dir", .type = CONFIG_STRING, .offset = DB_FIELD(dir), .variants = CONFIG_SQLITE, .flags = CONFIG_DIR,
     .heading = DIR_HEADING, .doc = "every database under this directory (instead of path)"},
    {.key = "pattern", .type = CONFIG_STRING, .offset = DB_FIELD(pattern), .variants = CONFIG_SQLITE,
     .flags = CONFIG_DIR, .def = "*.db", .heading = DIR_HEADING, .doc = "which file names are databases (fnmatch)"},
    {.key = "recursive", .type = CONFIG_BOOL, .offset = DB_FIELD(recursive), .variants = CONFIG_SQLITE,
     .flags = CONFIG_DIR, .def = "false", .heading = DIR_HEADING, .doc = "also search sub-directories"},
    {.key = "max-open", .type = CONFIG_COUNT, .offset = DB_FIELD(max_open), .variants = CONFIG_SQLITE,
     .flags = CONFIG_DIR, .def = "128", .heading = DIR_HEADING, .doc = "databases with open files at once"},
    {.key = "idle-after", .type = CONFIG_DURATION, .offset = DB_FIELD(idle_after_ms), .variants = CONFIG_SQLITE,
     .flags = CONFIG_DIR, .def = "60s", .heading = DIR_HEADING, .doc = "an idle database's files are closed after"},
    {.key = "metrics-per-database", .type = CONFIG_BOOL, .offset = DB_FIELD(metrics_per_database),
     .variants = CONFIG_SQLITE, .flags = CONFIG_DIR, .def = "false", .heading = DIR_HEADING,
     .doc = "each database's own metrics instead of sums per entry"},
    {.key = "name", .type = CONFIG_STRING, .offset = DB_FIELD(name),
     .doc = "the name in the archive and on the command line; default from path or dir (Redis: required)"},
    {.key = "addr", .type = CONFIG_STRING, .offset = DB_FIELD(redis_addr), .variants = CONFIG_REDIS,
     .doc = "HOST:PORT of the Redis server"},
    {.key = "username", .type = CONFIG_STRING, .offset = DB_FIELD(redis_username), .variants = CONFIG_REDIS,
     .doc = "ACL user"},
    {.key = "password", .type = CONFIG_STRING, .offset = DB_FIELD(redis_password), .variants = CONFIG_REDIS,
     .doc = "AUTH password"},
    {.key = "sync-interval", .type = CONFIG_DURATION, .offset = DB_FIELD(sync_interval_ms), .def = "1s",
     .doc = "how often new commits become a segment"},
    {.key = "snapshot-interval", .type = CONFIG_DURATION, .offset = DB_FIELD(snapshot_interval_ms),
     .doc = "base snapshots every DURATION as well"},
    {.key = "snapshot", .type = CONFIG_SECTION, .section = &snapshot_section, .doc = "base snapshot schedule"},
    {.key = "engine", .type = CONFIG_ENUM, .offset = DB_FIELD(engine), .variants = CONFIG_SQLITE, .values = db_engines,
     .def = "auto", .doc = "which engine writes the database: auto, sqlite (SQLite, libSQL) or turso (the Turso "
     "engine's multiprocess_wal mode)"},
    {.key = "checkpoint-pages", .type = CONFIG_COUNT, .offset = DB_FIELD(checkpoint_pages), .variants = CONFIG_SQLITE,
     .def = "1000", .doc = "WAL frames shipped past the pin before the sidecar lets go of it"},
    {.key = "deltas", .type = CONFIG_BOOL, .offset = DB_FIELD(deltas), .variants = CONFIG_SQLITE, .def = "true",
     .doc = "write deltas, so that a restore reads few objects"},
    {.key = "missing-alert-after", .type = CONFIG_DURATION_OFF, .offset = DB_FIELD(missing_alert_after_ms),
     .variants = CONFIG_SQLITE, .doc = "a database waited for this long fires; default alerts: { missing-alert-after }"},
    {.key = "retention", .type = CONFIG_SECTION, .offset = DB_FIELD(retention), .section = &retention_section,
     .doc = "this database's own retention; default the top-level one"},
    {.key = "drill", .type = CONFIG_SECTION, .offset = DB_FIELD(drill), .section = &drill_section, .def = "{}",
     .doc = "restore drills"},
    {.key = "replicas", .type = CONFIG_CUSTOM, .parse = parse_replicas, .doc = "the replicas (at least one)"},
};

_Static_assert(sizeof db_keys / sizeof *db_keys <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");
_Static_assert(sizeof replica_keys / sizeof *replica_keys <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");

static const struct config_section sqlite_db_section = {
    .title = "database entry", .where = "database entry",
    .not_mapping = "a database entry must be a mapping with at least 'path'",
    .variant = CONFIG_SQLITE, KEYS(db_keys), .finish = finish_db, .heading = "## Database entry (`dbs[]`)",
};

static const struct config_section redis_db_section = {
    .title = "redis entry", .where = "redis entry", .not_mapping = "a redis entry must be a mapping with 'name' and 'addr'",
    .variant = CONFIG_REDIS, KEYS(db_keys), .finish = finish_db, .heading = "## Redis entry (`redis[]`)",
};

/* `dbs:` (SQLite) or `redis:` (key->aux: enum db_kind): entries appended to cfg->dbs. */
static int parse_dbs(struct config_loader *ld, const struct config_key *key, yaml_node_t *node, void *field)
{
    struct config *cfg = field;
    enum db_kind kind = (enum db_kind)key->aux;
    if (node->type != YAML_SEQUENCE_NODE)
        return config_fail_at(ld, node, kind == DB_REDIS ? "write 'redis:' followed by '  - name: cache' and "
                                                          "'    addr: 127.0.0.1:6379'"
                                                        : "write 'dbs:' followed by '  - path: /var/lib/app/app.db'",
                              "'%s' must be a list", key->key);
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    struct config_db *grown = realloc(cfg->dbs, (cfg->db_count + count + 1) * sizeof *cfg->dbs);
    if (!grown)
        return config_out_of_memory(ld);
    cfg->dbs = grown;
    memset(cfg->dbs + cfg->db_count, 0, (count + 1) * sizeof *cfg->dbs);
    for (size_t n = 0; n < count; n++) {
        yaml_node_t *item = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[n]);
        size_t i = cfg->db_count++;
        struct config_db *db = &cfg->dbs[i];
        db->kind = kind;
        db->retention.enabled = -1;        /* these three: set in db_defaults unless given */
        db->snapshot_spread_ms = -1;
        db->missing_alert_after_ms = -1;
        if (config_walk(ld, kind == DB_REDIS ? &redis_db_section : &sqlite_db_section, item, db) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->dbs[j].name, db->name) == 0)
                return config_fail_at(ld, item, "set a distinct 'name:' on one of them",
                                      "duplicate database name '%s'", db->name);
    }
    return 0;
}

/* ---- the top level ------------------------------------------------------------ */

/* Fills what the database entry left unset and depends on the rest. */
static int db_defaults(struct config_loader *ld, const struct config *cfg, struct config_db *db)
{
    struct tm_error cron_err;
    if (!db->snapshot_cron_set && !db->snapshot_interval_ms) {
        /* SQLite: daily at 03:00 UTC; Redis: a fresh RDB every 6 hours */
        if (!(db->snapshot_schedule = strdup(db->kind == DB_REDIS ? "0 */6 * * *" : "0 3 * * *")))
            return config_out_of_memory(ld);
        cron_parse(db->snapshot_schedule, &db->snapshot_cron, &cron_err);
        db->snapshot_cron_set = 1;
    }
    if (!db->snapshot_wal_ratio_set)
        db->snapshot_wal_ratio = 1.0;
    if (db->snapshot_spread_ms < 0)   /* many databases: not all at 03:00:00 */
        db->snapshot_spread_ms = db->dir ? 3600 * 1000 : 0;
    if (db->retention.enabled < 0)   /* not set on the database */
        db->retention = cfg->retention;
    if (db->missing_alert_after_ms < 0)
        db->missing_alert_after_ms = cfg->alerts.missing_alert_after_ms;
    return 0;
}

static int finish_root(struct config_loader *ld, yaml_node_t *root, void *base, const struct config_seen *seen)
{
    struct config *cfg = base;
    if (!config_seen_key(&config_root_section, seen, "encryption"))
        return config_fail_at(ld, root, "write 'encryption: { key-file: /etc/tidemark/key }' (make the key with "
                              "'tidemark keygen -o /etc/tidemark/key'), or 'encryption: none' to store backups "
                              "unencrypted", "no 'encryption' section: backups are encrypted unless you say otherwise");
    if (cfg->db_count == 0)
        return config_fail_at(ld, root, "add 'dbs:' with at least one '- path: /var/lib/app/app.db' (or 'redis:' "
                              "with '- name: cache' and 'addr: HOST:PORT')", "no database configured");
    for (size_t i = 0; i < cfg->db_count; i++)
        if (config_db_state_dir(cfg, &cfg->dbs[i], ld->err) != 0 || db_defaults(ld, cfg, &cfg->dbs[i]) != 0)
            return -1;
    for (size_t i = 0; i < cfg->db_count; i++)
        for (size_t j = 0; j < cfg->db_count && cfg->dbs[i].drill.publish_file; j++)
            if (cfg->dbs[j].path && publish_is_database(cfg->dbs[i].drill.publish_file, cfg->dbs[j].path))
                return config_fail_at(ld, root, "publish to a staging copy, e.g. /srv/staging/app.db",
                                      "the drill of '%s' publishes to '%s', the database '%s': a drill never "
                                      "replaces a database backed up", cfg->dbs[i].name,
                                      cfg->dbs[i].drill.publish_file, cfg->dbs[j].name);
    return 0;
}

static const char *const log_formats[] = {"logfmt", "json", NULL};

static const struct config_key root_keys[] = {
    {.key = "encryption", .type = CONFIG_CUSTOM, .parse = parse_encryption,
     .doc = "key-file and/or recipient-file, or none written out (required)"},
    {.key = "dbs", .type = CONFIG_CUSTOM, .parse = parse_dbs, .aux = DB_SQLITE,
     .doc = "the SQLite/libSQL databases (this or redis is required)"},
    {.key = "redis", .type = CONFIG_CUSTOM, .parse = parse_dbs, .aux = DB_REDIS, .doc = "the Redis servers"},
    {.key = "state-dir", .type = CONFIG_STRING, .offset = FIELD(config, state_dir),
     .doc = "where each database's spool and position live, as STATE-DIR/NAME"},
    {.key = "spool-limit", .type = CONFIG_SIZE, .offset = FIELD(config, spool_limit), .def = "1GiB",
     .doc = "the most bytes that may wait in one database's spool"},
    {.key = "retention", .type = CONFIG_SECTION, .offset = FIELD(config, retention), .section = &retention_section,
     .def = "{}", .doc = "the default retention of every database"},
    {.key = "metrics", .type = CONFIG_SECTION, .section = &metrics_section, .doc = "the metrics endpoint"},
    {.key = "alerts", .type = CONFIG_SECTION, .offset = FIELD(config, alerts), .section = &alerts_section,
     .def = "{}", .doc = "alert delivery and thresholds"},
    {.key = "log-format", .type = CONFIG_ENUM, .offset = FIELD(config, log_json), .values = log_formats,
     .def = "logfmt", .doc = "logfmt or json"},
};

const struct config_section config_root_section = {
    .title = "top-level", .heading = "## Top level", KEYS(root_keys), .finish = finish_root,
};

/* Every section, each variant once: what docs/configuration.md documents. */
const struct config_section *const config_sections[] = {
    &config_root_section, &encryption_section, &metrics_section, &alerts_section, &sqlite_db_section,
    &redis_db_section, &snapshot_section, &retention_section, &drill_section, &publish_sqld_section,
    &file_replica_section,
    &s3_replica_section, &object_lock_section,
};
const size_t config_section_count = sizeof config_sections / sizeof *config_sections;
