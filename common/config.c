/* config.c - loading and validating the YAML configuration (config.h).
 *
 * libyaml loads the file into a document tree whose nodes carry their
 * line and column; we walk it with small typed getters that report the
 * exact place of every mistake. Accepted keys:
 *
 *   encryption: none | { key-file: PATH | [PATH...], recipient-file: PATH }
 *   state-dir: PATH            spool-limit: SIZE         retention: RETENTION
 *   metrics: { listen: HOST:PORT }                       log-format: logfmt | json
 *   alerts: { webhook: URL, command: PATH, failure-after, lag-threshold, reminder,
 *             missing-alert-after: DURATION | off }
 *   dbs: [ { path, name, sync-interval, snapshot-interval, missing-alert-after,
 *            snapshot: { schedule: CRON }, checkpoint-pages, retention: RETENTION,
 *            drill: off | { schedule: CRON, staging: PATH, check-sql: SQL },
 *            replicas: [ REPLICA... ] } ]
 *   RETENTION: off | { daily, weekly, monthly, yearly, point-in-time: DURATION }
 *   REPLICA: { type: file, name, path }
 *          | { type: s3, name, bucket, path, region, endpoint,
 *              force-path-style, access-key-id, secret-access-key, ca-file,
 *              require-versioning, part-size, stall-timeout,
 *              object-lock: { mode: governance|compliance, retain: DURATION } }
 */
#include "config.h"

#include "names.h"

#include "clock.h"
#include "crypto.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <libgen.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

/* Databases found under `dir:` entries that commands asked for by name. */
#define CONFIG_ESCAPED_NAME_MAX 256

struct config_tenants {
    struct config_db **dbs;
    size_t count;
};

static int name_ok(const char *name);

struct loader {
    const char *file;
    yaml_document_t doc;
    struct tm_error *err;
};

static int fail_at(struct loader *ld, const yaml_node_t *node, const char *hint,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail_at(struct loader *ld, const yaml_node_t *node, const char *hint,
                   const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    tm_error_set(ld->err, "%s:%zu:%zu: %s", ld->file, node->start_mark.line + 1,
                 node->start_mark.column + 1, what);
    if (hint)
        tm_error_hint(ld->err, "%s", hint);
    return -1;
}

/* Expands ${VAR} in text; returns a malloc'd string or NULL (err set). */
static char *expand_env(struct loader *ld, const yaml_node_t *node, const char *text)
{
    size_t cap = strlen(text) + 1, used = 0;
    char *out = malloc(cap);
    if (!out) {
        tm_error_set(ld->err, "out of memory");
        return NULL;
    }
    for (const char *p = text; *p;) {
        const char *piece = p;
        size_t piece_len = 1;
        char name[256];
        if (p[0] == '$' && p[1] == '{') {
            const char *close = strchr(p + 2, '}');
            size_t name_len = close ? (size_t)(close - p - 2) : 0;
            if (!close || name_len == 0 || name_len >= sizeof name) {
                fail_at(ld, node, "write ${NAME} with a closing brace", "unterminated ${ in '%s'", text);
                free(out);
                return NULL;
            }
            memcpy(name, p + 2, name_len);
            name[name_len] = '\0';
            piece = getenv(name);
            if (!piece) {
                fail_at(ld, node, "export the variable before starting tidemark",
                        "environment variable '%s' is not set", name);
                free(out);
                return NULL;
            }
            piece_len = strlen(piece);
            p = close + 1;
        } else {
            p++;
        }
        if (used + piece_len + 1 > cap) {
            cap = (used + piece_len + 1) * 2;
            char *bigger = realloc(out, cap);
            if (!bigger) {
                free(out);
                tm_error_set(ld->err, "out of memory");
                return NULL;
            }
            out = bigger;
        }
        memcpy(out + used, piece, piece_len);
        used += piece_len;
    }
    out[used] = '\0';
    return out;
}

/* A key given twice in one mapping is a mistake (YAML would keep the
 * last silently; we say so). */
static int unique_keys(struct loader *ld, yaml_node_t *node)
{
    for (yaml_node_pair_t *a = node->data.mapping.pairs.start; a < node->data.mapping.pairs.top; a++) {
        yaml_node_t *ka = yaml_document_get_node(&ld->doc, a->key);
        if (!ka || ka->type != YAML_SCALAR_NODE)
            return fail_at(ld, ka ? ka : node, NULL, "keys must be plain names");
        for (yaml_node_pair_t *b = node->data.mapping.pairs.start; b < a; b++) {
            yaml_node_t *kb = yaml_document_get_node(&ld->doc, b->key);
            if (strcmp((const char *)ka->data.scalar.value, (const char *)kb->data.scalar.value) == 0)
                return fail_at(ld, ka, "remove one of them", "'%s' is given twice", (const char *)ka->data.scalar.value);
        }
    }
    return 0;
}

static int get_string(struct loader *ld, yaml_node_t *node, const char *key, char **out)
{
    if (node->type != YAML_SCALAR_NODE)
        return fail_at(ld, node, NULL, "'%s' must be a string", key);
    char *value = expand_env(ld, node, (const char *)node->data.scalar.value);
    if (!value)
        return -1;
    if (!value[0]) {
        free(value);
        return fail_at(ld, node, NULL, "'%s' must not be empty", key);
    }
    free(*out);
    *out = value;
    return 0;
}

static int get_duration(struct loader *ld, yaml_node_t *node, const char *key, int64_t *out)
{
    char *text = NULL;
    if (get_string(ld, node, key, &text) != 0)
        return -1;
    struct tm_error parse_err;
    int rc = clock_parse_duration(text, out, &parse_err);
    free(text);
    if (rc != 0)
        return fail_at(ld, node, parse_err.hint, "'%s': %s", key, parse_err.msg);
    return 0;
}

static int is_off(const yaml_node_t *node);

/* A duration, or `off` (stored as 0). */
static int get_duration_or_off(struct loader *ld, yaml_node_t *node, const char *key, int64_t *out)
{
    if (is_off(node)) {
        *out = 0;
        return 0;
    }
    return get_duration(ld, node, key, out);
}

static int get_count(struct loader *ld, yaml_node_t *node, const char *key, uint32_t *out)
{
    char *text = NULL;
    if (get_string(ld, node, key, &text) != 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    int bad = *end || errno || value == 0 || value > 1000000000UL || text[0] == '-';
    free(text);
    if (bad)
        return fail_at(ld, node, NULL, "'%s' must be a positive whole number", key);
    *out = (uint32_t)value;
    return 0;
}

static int get_cron(struct loader *ld, yaml_node_t *node, const char *key, char **text,
                    struct cron *out)
{
    if (get_string(ld, node, key, text) != 0)
        return -1;
    struct tm_error cron_err;
    if (cron_parse(*text, out, &cron_err) != 0)
        return fail_at(ld, node, cron_err.hint, "'%s': %s", key, cron_err.msg);
    return 0;
}

/* A whole number, zero allowed. */
static int get_whole(struct loader *ld, yaml_node_t *node, const char *key, uint32_t *out)
{
    const char *text = node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : "";
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (!text[0] || *end || errno || value > 100000 || text[0] == '-')
        return fail_at(ld, node, NULL, "'%s' must be a whole number (0 or more)", key);
    *out = (uint32_t)value;
    return 0;
}

static int is_off(const yaml_node_t *node)
{
    return node->type == YAML_SCALAR_NODE && (strcmp((const char *)node->data.scalar.value, "off") == 0 ||
                                              strcmp((const char *)node->data.scalar.value, "false") == 0);
}

static void retention_defaults(struct config_retention *r)
{
    *r = (struct config_retention){.enabled = 1, .daily = 7, .weekly = 4, .monthly = 12, .yearly = 7,
                                   .point_in_time_ms = 7LL * 86400 * 1000};
}

static int parse_retention(struct loader *ld, yaml_node_t *node, struct config_retention *r)
{
    static const char *hint = "write 'retention: { daily: 7, weekly: 4, monthly: 12, yearly: 7, point-in-time: 7d }' or 'retention: off'";
    if (is_off(node)) {
        r->enabled = 0;
        return 0;
    }
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "'retention' must be a mapping or 'off'");
    retention_defaults(r);
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "daily") == 0)
            rc = get_whole(ld, v, key, &r->daily);
        else if (strcmp(key, "weekly") == 0)
            rc = get_whole(ld, v, key, &r->weekly);
        else if (strcmp(key, "monthly") == 0)
            rc = get_whole(ld, v, key, &r->monthly);
        else if (strcmp(key, "yearly") == 0)
            rc = get_whole(ld, v, key, &r->yearly);
        else if (strcmp(key, "point-in-time") == 0)
            rc = get_duration(ld, v, key, &r->point_in_time_ms);
        else
            rc = fail_at(ld, k, hint, "unknown key '%s' in 'retention'", key);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* A non-negative number (0.5, 2), or off (0). */
static int get_ratio(struct loader *ld, yaml_node_t *node, const char *key, double *out)
{
    if (is_off(node)) {
        *out = 0;
        return 0;
    }
    char *text = NULL;
    if (get_string(ld, node, key, &text) != 0)
        return -1;
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    int bad = *end || errno || value < 0 || value > 1000 || end == text;
    free(text);
    if (bad)
        return fail_at(ld, node, "give a ratio of the database size such as 1 or 0.5, or off",
                       "'%s' must be a number from 0 to 1000, or off", key);
    *out = value;
    return 0;
}

static int parse_snapshot(struct loader *ld, yaml_node_t *node, struct config_db *db)
{
    static const char *hint = "write 'snapshot: { schedule: \"0 3 * * *\", wal-ratio: 1, spread: 1h }' (cron, UTC; a ratio of the database size, or off; a window the databases' snapshots are spread over)";
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "'snapshot' must be a mapping");
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        if (strcmp(key, "wal-ratio") == 0) {
            if (get_ratio(ld, v, key, &db->snapshot_wal_ratio) != 0)
                return -1;
            db->snapshot_wal_ratio_set = 1;
            continue;
        }
        if (strcmp(key, "spread") == 0) {
            if (get_duration(ld, v, key, &db->snapshot_spread_ms) != 0)
                return -1;
            continue;
        }
        if (strcmp(key, "schedule") != 0)
            return fail_at(ld, k, hint, "unknown key '%s' in 'snapshot'", key);
        if (get_cron(ld, v, key, &db->snapshot_schedule, &db->snapshot_cron) != 0)
            return -1;
        db->snapshot_cron_set = 1;
    }
    return 0;
}

static int parse_drill(struct loader *ld, yaml_node_t *node, struct config_drill *drill)
{
    static const char *hint = "write 'drill: { schedule: \"0 4 1 * *\", staging: /var/tmp/tidemark-drill, check-sql: \"SELECT count(*) FROM users\" }' or 'drill: off'";
    if (is_off(node)) {
        drill->enabled = 0;
        return 0;
    }
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "'drill' must be a mapping or 'off'");
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "schedule") == 0)
            rc = get_cron(ld, v, key, &drill->schedule, &drill->cron);
        else if (strcmp(key, "staging") == 0)
            rc = get_string(ld, v, key, &drill->staging);
        else if (strcmp(key, "check-sql") == 0)
            rc = get_string(ld, v, key, &drill->check_sql);
        else
            rc = fail_at(ld, k, hint, "unknown key '%s' in 'drill'", key);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int parse_metrics(struct loader *ld, yaml_node_t *node, struct config *cfg)
{
    static const char *hint = "write 'metrics: { listen: 127.0.0.1:9187 }'";
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "'metrics' must be a mapping");
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        if (strcmp(key, "listen") != 0)
            return fail_at(ld, k, hint, "unknown key '%s' in 'metrics'", key);
        if (get_string(ld, v, key, &cfg->metrics_listen) != 0)
            return -1;
        const char *colon = strrchr(cfg->metrics_listen, ':');
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == cfg->metrics_listen || *end || port < 1 || port > 65535)
            return fail_at(ld, v, hint, "'listen' must be HOST:PORT, e.g. 127.0.0.1:9187");
    }
    return 0;
}

static int parse_alerts(struct loader *ld, yaml_node_t *node, struct config_alerts *alerts)
{
    static const char *hint = "write 'alerts: { webhook: URL, command: PATH, failure-after: 30s, lag-threshold: 60s, "
                              "reminder: 1h, missing-alert-after: 10m }'";
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "'alerts' must be a mapping");
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "webhook") == 0) {
            rc = get_string(ld, v, key, &alerts->webhook);
            if (rc == 0 && strncmp(alerts->webhook, "https://", 8) != 0 && strncmp(alerts->webhook, "http://", 7) != 0)
                rc = fail_at(ld, v, hint, "'webhook' must be an http:// or https:// URL");
        } else if (strcmp(key, "command") == 0)
            rc = get_string(ld, v, key, &alerts->command);
        else if (strcmp(key, "failure-after") == 0)
            rc = get_duration(ld, v, key, &alerts->failure_after_ms);
        else if (strcmp(key, "lag-threshold") == 0)
            rc = get_duration(ld, v, key, &alerts->lag_threshold_ms);
        else if (strcmp(key, "reminder") == 0)
            rc = get_duration(ld, v, key, &alerts->reminder_ms);
        else if (strcmp(key, "missing-alert-after") == 0)
            rc = get_duration_or_off(ld, v, key, &alerts->missing_alert_after_ms);
        else
            rc = fail_at(ld, k, hint, "unknown key '%s' in 'alerts'", key);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Fills what the database entry left unset. */
static int db_defaults(struct loader *ld, const struct config *cfg, struct config_db *db)
{
    struct tm_error cron_err;
    if (!db->snapshot_cron_set && !db->snapshot_interval_ms) {
        /* SQLite: daily at 03:00 UTC; Redis: a fresh RDB every 6 hours */
        if (!(db->snapshot_schedule = strdup(db->kind == DB_REDIS ? "0 */6 * * *" : "0 3 * * *")))
            return tm_error_set(ld->err, "out of memory");
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
    if (!db->drill.schedule) {
        if (!(db->drill.schedule = strdup("0 4 1 * *")))
            return tm_error_set(ld->err, "out of memory");
        cron_parse(db->drill.schedule, &db->drill.cron, &cron_err);
    }
    if (!db->drill.staging && !(db->drill.staging = strdup("/var/tmp/tidemark-drill")))
        return tm_error_set(ld->err, "out of memory");
    return 0;
}

static int get_bool(struct loader *ld, yaml_node_t *node, const char *key, int *out)
{
    const char *text = node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : "";
    if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0)
        *out = 1;
    else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0)
        *out = 0;
    else
        return fail_at(ld, node, NULL, "'%s' must be true or false", key);
    return 0;
}

/* Sizes: a whole number with an optional unit B, KB, MB, GB, KiB, MiB, GiB. */
static int get_size(struct loader *ld, yaml_node_t *node, const char *key, uint64_t *out)
{
    static const struct { const char *unit; uint64_t bytes; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000},
        {"TB", 1000000000000ULL}, {"KiB", 1024}, {"MiB", 1024 * 1024},
        {"GiB", 1024ULL * 1024 * 1024}, {"TiB", 1024ULL * 1024 * 1024 * 1024}};
    char *text = NULL;
    if (get_string(ld, node, key, &text) != 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    while (*end == ' ')
        end++;
    int ok = end != text && text[0] != '-' && errno == 0 && value > 0;
    uint64_t multiplier = 0;
    for (size_t i = 0; ok && i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0)
            multiplier = units[i].bytes;
    free(text);
    if (!ok || !multiplier || value > UINT64_MAX / multiplier)
        return fail_at(ld, node, "write a size such as 512MiB, 1GiB or 100MB", "'%s' is not a valid size", key);
    *out = value * multiplier;
    return 0;
}

static int parse_object_lock(struct loader *ld, yaml_node_t *node, struct config_s3 *s3)
{
    static const char *hint = "write 'object-lock: { mode: governance, retain: 30d }'";
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "'object-lock' must be a mapping");
    char *mode = NULL;
    int rc = 0;
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         rc == 0 && pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        if (strcmp(key, "mode") == 0)
            rc = get_string(ld, v, key, &mode);
        else if (strcmp(key, "retain") == 0)
            rc = get_duration(ld, v, key, &s3->object_lock_retain_ms);
        else
            rc = fail_at(ld, k, hint, "unknown key '%s' in 'object-lock'", key);
    }
    if (rc == 0 && (!mode || (strcasecmp(mode, "governance") != 0 && strcasecmp(mode, "compliance") != 0)))
        rc = fail_at(ld, node, hint, "'object-lock' needs 'mode: governance' or 'mode: compliance'");
    if (rc == 0 && s3->object_lock_retain_ms <= 0)
        rc = fail_at(ld, node, hint, "'object-lock' needs 'retain: DURATION'");
    if (rc == 0) {
        for (char *p = mode; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        s3->object_lock_mode = mode;
        mode = NULL;
    }
    free(mode);
    return rc;
}

/* One key of an s3 replica; 1 when the key is not an s3 key. */
static int parse_s3_key(struct loader *ld, const char *key, yaml_node_t *v, struct config_s3 *s3)
{
    if (strcmp(key, "bucket") == 0)
        return get_string(ld, v, key, &s3->bucket);
    if (strcmp(key, "region") == 0)
        return get_string(ld, v, key, &s3->region);
    if (strcmp(key, "endpoint") == 0)
        return get_string(ld, v, key, &s3->endpoint);
    if (strcmp(key, "force-path-style") == 0)
        return get_bool(ld, v, key, &s3->force_path_style);
    if (strcmp(key, "access-key-id") == 0)
        return get_string(ld, v, key, &s3->access_key_id);
    if (strcmp(key, "secret-access-key") == 0)
        return get_string(ld, v, key, &s3->secret_access_key);
    if (strcmp(key, "ca-file") == 0)
        return get_string(ld, v, key, &s3->ca_file);
    if (strcmp(key, "require-versioning") == 0)
        return get_bool(ld, v, key, &s3->require_versioning);
    if (strcmp(key, "part-size") == 0)
        return get_size(ld, v, key, &s3->part_size);
    if (strcmp(key, "object-lock") == 0)
        return parse_object_lock(ld, v, s3);
    if (strcmp(key, "stall-timeout") == 0)
        return get_duration(ld, v, key, &s3->stall_timeout_ms);
    return 1;
}

#define FILE_KEYS "type, name, path"
#define S3_KEYS "type, name, bucket, path, region, endpoint, force-path-style, access-key-id, " \
                "secret-access-key, ca-file, require-versioning, part-size, object-lock, stall-timeout"

static int check_s3(struct loader *ld, yaml_node_t *node, struct config_replica *rep)
{
    struct config_s3 *s3 = &rep->s3;
    if (!s3->bucket)
        return fail_at(ld, node, "add 'bucket: my-backups'", "replica of type 's3' has no 'bucket'");
    if (!s3->part_size)
        s3->part_size = 8 * 1024 * 1024;
    if (!s3->stall_timeout_ms)
        s3->stall_timeout_ms = 20 * 1000;
    if (s3->stall_timeout_ms < 1000)
        return fail_at(ld, node, "give 1s or more (default 20s)", "'stall-timeout' is below one second");
    if (s3->part_size < 5 * 1024 * 1024 || s3->part_size > 5ULL * 1024 * 1024 * 1024)
        return fail_at(ld, node, "S3 parts are 5 MiB to 5 GiB", "'part-size' is out of range");
    if (!s3->access_key_id != !s3->secret_access_key)
        return fail_at(ld, node, "set both 'access-key-id' and 'secret-access-key', or neither (then the environment or ~/.aws/credentials is used)",
                       "replica has only one of 'access-key-id' and 'secret-access-key'");
    if (s3->endpoint && strncmp(s3->endpoint, "https://", 8) != 0 && strncmp(s3->endpoint, "http://", 7) != 0)
        return fail_at(ld, node, "write the endpoint as a URL, e.g. https://ACCOUNT.r2.cloudflarestorage.com",
                       "'endpoint' must start with https:// or http://");
    if (rep->path) {   /* a key prefix: no leading or trailing '/' */
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

static int parse_replica(struct loader *ld, yaml_node_t *node, struct config_replica *rep)
{
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, "each replica is a mapping such as '- type: file' / '  path: /var/backups/tidemark'",
                       "a replica must be a mapping");
    char *type = NULL;
    yaml_node_t *type_node = node;
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "type") == 0)
            type_node = yaml_document_get_node(&ld->doc, pair->value);
    }
    if (type_node != node && get_string(ld, type_node, "type", &type) != 0)
        return -1;
    if (!type || strcmp(type, "file") == 0)
        rep->type = REPLICA_FILE;
    else if (strcmp(type, "s3") == 0)
        rep->type = REPLICA_S3;
    else {
        fail_at(ld, type_node, "supported replica types: file, s3", "unknown replica type '%s'", type);
        free(type);
        return -1;
    }
    free(type);
    int rc = 0;
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         rc == 0 && pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        if (strcmp(key, "type") == 0)
            continue;
        if (strcmp(key, "path") == 0)
            rc = get_string(ld, v, key, &rep->path);
        else if (strcmp(key, "name") == 0)
            rc = get_string(ld, v, key, &rep->name);
        else if (rep->type != REPLICA_S3 || (rc = parse_s3_key(ld, key, v, &rep->s3)) == 1)
            rc = fail_at(ld, k, rep->type == REPLICA_S3 ? "s3 replica keys are: " S3_KEYS : "file replica keys are: " FILE_KEYS,
                         "unknown key '%s' in replica", key);
    }
    if (rc != 0)
        return -1;
    if (rep->type == REPLICA_FILE && !rep->path)
        return fail_at(ld, node, "add 'path: /var/backups/tidemark'", "replica of type 'file' has no 'path'");
    if (rep->type == REPLICA_S3 && check_s3(ld, node, rep) != 0)
        return -1;
    if (!rep->name && !(rep->name = strdup(rep->type == REPLICA_S3 ? "s3" : "file")))
        return tm_error_set(ld->err, "out of memory");
    if (!name_ok(rep->name))
        return fail_at(ld, node, "names may use letters, digits, '-', '_' and '.'",
                       "invalid replica name '%s'", rep->name);
    return 0;
}

static int parse_replicas(struct loader *ld, yaml_node_t *node, struct config_db *db)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_at(ld, node, NULL, "'replicas' must be a list");
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    db->replicas = calloc(count ? count : 1, sizeof *db->replicas);
    if (!db->replicas)
        return tm_error_set(ld->err, "out of memory");
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[i]);
        db->replica_count++;
        if (parse_replica(ld, item, &db->replicas[i]) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(db->replicas[j].name, db->replicas[i].name) == 0)
                return fail_at(ld, item, "give each replica of a database its own 'name'",
                               "duplicate replica name '%s'", db->replicas[i].name);
    }
    return 0;
}

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

static int dir_entry_defaults(struct loader *ld, yaml_node_t *node, struct config_db *db)
{
    size_t len = strlen(db->dir);
    while (len > 1 && db->dir[len - 1] == '/')
        db->dir[--len] = '\0';
    if (!db->pattern && !(db->pattern = strdup("*.db")))
        return tm_error_set(ld->err, "out of memory");
    if (!db->pattern[0] || strchr(db->pattern, '/'))
        return fail_at(ld, node, "a pattern matches file names, such as \"*.db\" (use 'recursive: true' for sub-directories)",
                       "invalid 'pattern' '%s'", db->pattern);
    if (!db->max_open)
        db->max_open = 128;
    if (!db->idle_after_ms)
        db->idle_after_ms = 60 * 1000;
    return 0;
}

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

static int parse_db(struct loader *ld, yaml_node_t *node, enum db_kind kind, struct config_db *db)
{
    db->kind = kind;
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, NULL, kind == DB_REDIS ? "a redis entry must be a mapping with 'name' and 'addr'"
                                                        : "a database entry must be a mapping with at least 'path'");
    db->sync_interval_ms = 1000;
    db->checkpoint_pages = 1000;
    db->deltas = 1;
    db->drill.enabled = 1;
    db->retention.enabled = -1;
    db->snapshot_spread_ms = -1;
    db->missing_alert_after_ms = -1;
    yaml_node_t *replicas_node = NULL, *missing_alert_node = NULL;
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "path") == 0 && kind == DB_SQLITE)
            rc = get_string(ld, v, key, &db->path);
        else if (strcmp(key, "dir") == 0 && kind == DB_SQLITE)
            rc = get_string(ld, v, key, &db->dir);
        else if (strcmp(key, "pattern") == 0 && kind == DB_SQLITE)
            rc = get_string(ld, v, key, &db->pattern);
        else if (strcmp(key, "recursive") == 0 && kind == DB_SQLITE)
            rc = get_bool(ld, v, key, &db->recursive);
        else if (strcmp(key, "max-open") == 0 && kind == DB_SQLITE)
            rc = get_count(ld, v, key, &db->max_open);
        else if (strcmp(key, "idle-after") == 0 && kind == DB_SQLITE)
            rc = get_duration(ld, v, key, &db->idle_after_ms);
        else if (strcmp(key, "metrics-per-database") == 0 && kind == DB_SQLITE)
            rc = get_bool(ld, v, key, &db->metrics_per_database);
        else if (strcmp(key, "addr") == 0 && kind == DB_REDIS)
            rc = get_string(ld, v, key, &db->redis_addr);
        else if (strcmp(key, "username") == 0 && kind == DB_REDIS)
            rc = get_string(ld, v, key, &db->redis_username);
        else if (strcmp(key, "password") == 0 && kind == DB_REDIS)
            rc = get_string(ld, v, key, &db->redis_password);
        else if (strcmp(key, "name") == 0)
            rc = get_string(ld, v, key, &db->name);
        else if (strcmp(key, "sync-interval") == 0)
            rc = get_duration(ld, v, key, &db->sync_interval_ms);
        else if (strcmp(key, "snapshot-interval") == 0)
            rc = get_duration(ld, v, key, &db->snapshot_interval_ms);
        else if (strcmp(key, "snapshot") == 0)
            rc = parse_snapshot(ld, v, db);
        else if (strcmp(key, "retention") == 0)
            rc = parse_retention(ld, v, &db->retention);
        else if (strcmp(key, "drill") == 0)
            rc = parse_drill(ld, v, &db->drill);
        else if (strcmp(key, "checkpoint-pages") == 0 && kind == DB_SQLITE)
            rc = get_count(ld, v, key, &db->checkpoint_pages);
        else if (strcmp(key, "deltas") == 0 && kind == DB_SQLITE)
            rc = get_bool(ld, v, key, &db->deltas);
        else if (strcmp(key, "missing-alert-after") == 0 && kind == DB_SQLITE) {
            rc = get_duration_or_off(ld, v, key, &db->missing_alert_after_ms);
            missing_alert_node = k;
        }
        else if (strcmp(key, "replicas") == 0) {
            replicas_node = v;
            rc = parse_replicas(ld, v, db);
        } else if (kind == DB_REDIS)
            rc = fail_at(ld, k, "redis keys are: name, addr, username, password, sync-interval, snapshot-interval, snapshot, retention, drill, replicas",
                         "unknown key '%s' in redis entry", key);
        else
            rc = fail_at(ld, k, "database keys are: path (or dir, pattern, recursive, max-open, idle-after, metrics-per-database), name, sync-interval, snapshot-interval, snapshot, checkpoint-pages, deltas, missing-alert-after, retention, drill, replicas",
                         "unknown key '%s' in database entry", key);
        if (rc != 0)
            return -1;
    }
    if (kind == DB_REDIS) {
        if (!db->name)
            return fail_at(ld, node, "add 'name: cache' (names the backups and the commands' NAME)",
                           "redis entry has no 'name'");
        if (!db->redis_addr)
            return fail_at(ld, node, "add 'addr: 127.0.0.1:6379'", "redis entry '%s' has no 'addr'", db->name);
        db->deltas = 0;
        db->snapshot_wal_ratio_set = 1;   /* no WAL: snapshots by schedule only */
        db->snapshot_wal_ratio = 0;
    } else if (db->path && db->dir) {
        return fail_at(ld, node, "one entry per 'path' (a database) or per 'dir' (every database in a directory)",
                       "database entry has both 'path' and 'dir'");
    } else if (db->dir && missing_alert_node) {
        return fail_at(ld, missing_alert_node, "databases under 'dir:' are followed once they appear; "
                       "'missing-alert-after' is for a database configured with 'path:'",
                       "'missing-alert-after' goes with 'path:', not 'dir:'");
    } else if (db->dir) {
        if (dir_entry_defaults(ld, node, db) != 0)
            return -1;
    } else if (!db->path) {
        return fail_at(ld, node, "add 'path: /var/lib/app/app.db', or 'dir: /var/lib/app/tenants' for a directory of databases",
                       "database entry has no 'path'");
    } else if (db->pattern || db->recursive || db->max_open || db->idle_after_ms || db->metrics_per_database) {
        return fail_at(ld, node, "'pattern', 'recursive', 'max-open', 'idle-after' and 'metrics-per-database' go with 'dir:'",
                       "database entry '%s' has directory settings but no 'dir'", db->path);
    }
    if (!db->name && !(db->name = db->dir ? default_dir_name(db->dir) : default_db_name(db->path)))
        return tm_error_set(ld->err, "out of memory");
    if (!name_ok(db->name))
        return fail_at(ld, node, "names may use letters, digits, '-', '_' and '.'",
                       "invalid database name '%s'", db->name);
    if (db->replica_count == 0)
        return fail_at(ld, replicas_node ? replicas_node : node,
                       "add 'replicas:' with at least '- type: file' and 'path: /var/backups/tidemark'",
                       "database '%s' has no replica", db->name);
    return 0;
}

/* `dbs:` (SQLite) or `redis:`: entries appended to cfg->dbs. */
static int parse_dbs(struct loader *ld, yaml_node_t *node, enum db_kind kind, struct config *cfg)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_at(ld, node, kind == DB_REDIS ? "write 'redis:' followed by '  - name: cache' and '    addr: 127.0.0.1:6379'"
                                                  : "write 'dbs:' followed by '  - path: /var/lib/app/app.db'",
                       "'%s' must be a list", kind == DB_REDIS ? "redis" : "dbs");
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    struct config_db *grown = realloc(cfg->dbs, (cfg->db_count + count + 1) * sizeof *cfg->dbs);
    if (!grown)
        return tm_error_set(ld->err, "out of memory");
    cfg->dbs = grown;
    memset(cfg->dbs + cfg->db_count, 0, (count + 1) * sizeof *cfg->dbs);
    for (size_t n = 0; n < count; n++) {
        yaml_node_t *item = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[n]);
        size_t i = cfg->db_count++;
        if (parse_db(ld, item, kind, &cfg->dbs[i]) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->dbs[j].name, cfg->dbs[i].name) == 0)
                return fail_at(ld, item, "set a distinct 'name:' on one of them",
                               "duplicate database name '%s'", cfg->dbs[i].name);
    }
    return 0;
}

/* Checks that `path` holds a key now, so a typo is found at load time. */
static int probe_key_file(struct loader *ld, yaml_node_t *node, const char *path, int want_public)
{
    struct crypto_keyring *probe;
    struct tm_error key_err;
    if (crypto_keyring_new(&probe, &key_err) != 0 || crypto_keyring_add_file(probe, path, &key_err) != 0) {
        crypto_keyring_free(probe);
        return fail_at(ld, node, key_err.hint[0] ? key_err.hint : NULL, "%s", key_err.msg);
    }
    int is_public = crypto_keyring_public_only(probe);
    crypto_keyring_free(probe);
    if (want_public && !is_public)
        return fail_at(ld, node, "give the FILE.pub written by 'tidemark keygen --pair -o FILE'; the secret key belongs on the restore host only",
                       "'recipient-file' must hold a public key, and '%s' holds a secret key", path);
    if (!want_public && is_public)
        return fail_at(ld, node, "a public key goes under 'recipient-file'; 'key-file' takes keys that can decrypt",
                       "'key-file' '%s' holds only a public key", path);
    return 0;
}

/* key-file: PATH | [PATH, ...] */
static int parse_key_files(struct loader *ld, yaml_node_t *node, struct config *cfg)
{
    yaml_node_item_t *first = NULL, *last = NULL;
    yaml_node_item_t single = 0;
    if (node->type == YAML_SEQUENCE_NODE) {
        first = node->data.sequence.items.start;
        last = node->data.sequence.items.top;
        if (first == last)
            return fail_at(ld, node, NULL, "'key-file' is an empty list");
    } else {
        single = (yaml_node_item_t)(node - ld->doc.nodes.start) + 1;
        first = &single;
        last = first + 1;
    }
    for (yaml_node_item_t *item = first; item < last; item++) {
        yaml_node_t *entry = yaml_document_get_node(&ld->doc, *item);
        char *path = NULL;
        if (get_string(ld, entry, "key-file", &path) != 0)
            return -1;
        char **grown = realloc(cfg->key_files, (cfg->key_file_count + 1) * sizeof *grown);
        if (!grown) {
            free(path);
            return fail_at(ld, entry, NULL, "out of memory");
        }
        cfg->key_files = grown;
        cfg->key_files[cfg->key_file_count++] = path;
        if (probe_key_file(ld, entry, path, 0) != 0)
            return -1;
    }
    return 0;
}

static int parse_encryption(struct loader *ld, yaml_node_t *node, struct config *cfg)
{
    static const char *hint =
        "write 'encryption: { key-file: /etc/tidemark/key }' (from 'tidemark keygen'), "
        "'encryption: { recipient-file: /etc/tidemark/backup.pub }' (from 'tidemark keygen --pair') or 'encryption: none'";
    static const char *shape = "'encryption' must be 'none' or a mapping with 'key-file' and/or 'recipient-file'";
    if (node->type == YAML_SCALAR_NODE) {
        if (strcmp((const char *)node->data.scalar.value, "none") != 0)
            return fail_at(ld, node, hint, "%s", shape);
        cfg->encryption_none = 1;
        return 0;
    }
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "%s", shape);
    if (unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "key-file") == 0)
            rc = parse_key_files(ld, v, cfg);
        else if (strcmp(key, "recipient-file") == 0)
            rc = get_string(ld, v, key, &cfg->recipient_file) != 0 ? -1
                 : probe_key_file(ld, v, cfg->recipient_file, 1);
        else
            rc = fail_at(ld, k, hint, "unknown key '%s' in 'encryption'", key);
        if (rc != 0)
            return -1;
    }
    if (!cfg->key_file_count && !cfg->recipient_file)
        return fail_at(ld, node, hint, "'encryption' has neither 'key-file' nor 'recipient-file'");
    return 0;
}

int config_load_keys(const struct config *cfg, char *const *extra_files, size_t extra_count,
                     struct crypto_keyring **out, struct tm_error *err)
{
    *out = NULL;
    if (cfg->encryption_none)
        return 0;
    struct crypto_keyring *keys;
    if (crypto_keyring_new(&keys, err) != 0)
        return -1;
    int rc = 0;
    if (cfg->recipient_file)
        rc = crypto_keyring_add_file(keys, cfg->recipient_file, err);
    for (size_t i = 0; rc == 0 && i < cfg->key_file_count; i++)
        rc = crypto_keyring_add_file(keys, cfg->key_files[i], err);
    for (size_t i = 0; rc == 0 && i < extra_count; i++)
        rc = crypto_keyring_add_file(keys, extra_files[i], err);
    if (rc != 0) {
        crypto_keyring_free(keys);
        return -1;
    }
    *out = keys;
    return 0;
}

/* STATE-DIR/NAME, or .FILE-tidemark beside the database (same disk). */
static int set_state_dir(struct loader *ld, const struct config *cfg, struct config_db *db)
{
    if (db->kind == DB_REDIS) {   /* no file to sit beside */
        if (asprintf(&db->state_dir, "%s/%s", cfg->state_dir ? cfg->state_dir : "/var/lib/tidemark", db->name) < 0) {
            db->state_dir = NULL;
            return tm_error_set(ld->err, "out of memory");
        }
        return 0;
    }
    if (db->dir) {   /* the root of its databases' state directories */
        int len = cfg->state_dir ? asprintf(&db->state_dir, "%s/%s", cfg->state_dir, db->name)
                                 : asprintf(&db->state_dir, "%s/.tidemark", db->dir);
        if (len < 0) {
            db->state_dir = NULL;
            return tm_error_set(ld->err, "out of memory");
        }
        return 0;
    }
    char *copy = strdup(db->path), *copy2 = strdup(db->path);
    int len = -1;
    if (copy && copy2) {
        if (cfg->state_dir)
            len = asprintf(&db->state_dir, "%s/%s", cfg->state_dir, db->name);
        else
            len = asprintf(&db->state_dir, "%s/.%s-tidemark", dirname(copy), basename(copy2));
    }
    free(copy);
    free(copy2);
    if (len < 0) {
        db->state_dir = NULL;
        return tm_error_set(ld->err, "out of memory");
    }
    return 0;
}

static int parse_root(struct loader *ld, yaml_node_t *root, struct config *cfg)
{
    if (!root || root->type != YAML_MAPPING_NODE) {
        tm_error_set(ld->err, "%s: the configuration must be a mapping with 'encryption' and 'dbs'", ld->file);
        return tm_error_hint(ld->err, "see config/tidemark.example.yml");
    }
    int seen_encryption = 0, seen_dbs = 0;
    retention_defaults(&cfg->retention);
    cfg->alerts = (struct config_alerts){.failure_after_ms = 30000, .lag_threshold_ms = 60000,
                                         .reminder_ms = 3600 * 1000, .missing_alert_after_ms = 600 * 1000};
    if (unique_keys(ld, root) != 0)
        return -1;
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "encryption") == 0) {
            seen_encryption = 1;
            rc = parse_encryption(ld, v, cfg);
        } else if (strcmp(key, "dbs") == 0 || strcmp(key, "redis") == 0) {
            seen_dbs = 1;
            rc = parse_dbs(ld, v, strcmp(key, "redis") == 0 ? DB_REDIS : DB_SQLITE, cfg);
        } else if (strcmp(key, "state-dir") == 0) {
            rc = get_string(ld, v, key, &cfg->state_dir);
        } else if (strcmp(key, "spool-limit") == 0) {
            rc = get_size(ld, v, key, &cfg->spool_limit);
        } else if (strcmp(key, "retention") == 0) {
            rc = parse_retention(ld, v, &cfg->retention);
        } else if (strcmp(key, "metrics") == 0) {
            rc = parse_metrics(ld, v, cfg);
        } else if (strcmp(key, "alerts") == 0) {
            rc = parse_alerts(ld, v, &cfg->alerts);
        } else if (strcmp(key, "log-format") == 0) {
            const char *text = v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : "";
            cfg->log_json = strcmp(text, "json") == 0;
            rc = cfg->log_json || strcmp(text, "logfmt") == 0 ? 0
                 : fail_at(ld, v, "write 'log-format: logfmt' or 'log-format: json'", "unknown log format '%s'", text);
        } else {
            rc = fail_at(ld, k, "top-level keys are: encryption, dbs, redis, state-dir, spool-limit, retention, metrics, alerts, log-format", "unknown key '%s'", key);
        }
        if (rc != 0)
            return -1;
    }
    if (!seen_encryption)
        return fail_at(ld, root, "write 'encryption: { key-file: /etc/tidemark/key }' (make the key with 'tidemark keygen -o /etc/tidemark/key'), or 'encryption: none' to store backups unencrypted",
                       "no 'encryption' section: backups are encrypted unless you say otherwise");
    if (!seen_dbs || cfg->db_count == 0)
        return fail_at(ld, root, "add 'dbs:' with at least one '- path: /var/lib/app/app.db' (or 'redis:' with '- name: cache' and 'addr: HOST:PORT')",
                       "no database configured");
    if (!cfg->spool_limit)
        cfg->spool_limit = 1024ULL * 1024 * 1024;
    for (size_t i = 0; i < cfg->db_count; i++)
        if (set_state_dir(ld, cfg, &cfg->dbs[i]) != 0 || db_defaults(ld, cfg, &cfg->dbs[i]) != 0)
            return -1;
    return 0;
}

int config_load(const char *path, struct config **out, struct tm_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        tm_error_set(err, "cannot open configuration '%s': %s", path, strerror(errno));
        return tm_error_hint(err, "pass the file with -c; config/tidemark.example.yml is a starting point");
    }
    struct config *cfg = calloc(1, sizeof *cfg);
    struct loader ld = {.file = path, .err = err};
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    int rc = -1;
    if (!cfg || !(cfg->file = strdup(path)) || !(cfg->tenants = calloc(1, sizeof *cfg->tenants))) {
        tm_error_set(err, "out of memory");
        goto done_parser;
    }
    if (!yaml_parser_load(&parser, &ld.doc)) {
        tm_error_set(err, "%s:%zu:%zu: invalid YAML: %s", path, parser.problem_mark.line + 1,
                     parser.problem_mark.column + 1, parser.problem ? parser.problem : "parse error");
        goto done_parser;
    }
    rc = parse_root(&ld, yaml_document_get_root_node(&ld.doc), cfg);
    yaml_document_delete(&ld.doc);
done_parser:
    yaml_parser_delete(&parser);
    fclose(fp);
    if (rc != 0) {
        config_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->db_count; i++) {
        struct config_db *db = &cfg->dbs[i];
        for (size_t j = 0; j < db->replica_count; j++) {
            struct config_replica *rep = &db->replicas[j];
            free(rep->name);
            free(rep->path);
            free(rep->s3.bucket);
            free(rep->s3.region);
            free(rep->s3.endpoint);
            free(rep->s3.access_key_id);
            if (rep->s3.secret_access_key)
                sodium_memzero(rep->s3.secret_access_key, strlen(rep->s3.secret_access_key));
            free(rep->s3.secret_access_key);
            free(rep->s3.ca_file);
            free(rep->s3.object_lock_mode);
        }
        free(db->state_dir);
        free(db->dir);
        free(db->pattern);
        free(db->snapshot_schedule);
        free(db->drill.schedule);
        free(db->drill.staging);
        free(db->drill.check_sql);
        free(db->replicas);
        free(db->path);
        free(db->name);
        free(db->redis_addr);
        free(db->redis_username);
        if (db->redis_password)
            sodium_memzero(db->redis_password, strlen(db->redis_password));
        free(db->redis_password);
    }
    free(cfg->dbs);
    if (cfg->tenants) {
        for (size_t i = 0; i < cfg->tenants->count; i++)
            config_tenant_free(cfg->tenants->dbs[i]);
        free(cfg->tenants->dbs);
        free(cfg->tenants);
    }
    for (size_t i = 0; i < cfg->key_file_count; i++)
        free(cfg->key_files[i]);
    free(cfg->key_files);
    free(cfg->recipient_file);
    free(cfg->state_dir);
    free(cfg->metrics_listen);
    free(cfg->alerts.webhook);
    free(cfg->alerts.command);
    free(cfg->file);
    free(cfg);
}

int config_replica_selected(const struct config_db *db, size_t index, const char *wanted)
{
    if (!wanted)
        return 1;
    char *end;
    long number = strtol(wanted, &end, 10);
    return strcmp(db->replicas[index].name, wanted) == 0 || (wanted[0] && !*end && number == (long)index);
}

/* Each relative path's component is a plain file name. */
static int relpath_ok(const char *relpath)
{
    if (!relpath[0] || relpath[0] == '/')
        return 0;
    for (const char *part = relpath; part;) {
        const char *slash = strchr(part, '/');
        size_t len = slash ? (size_t)(slash - part) : strlen(part);
        if (len == 0 || (len == 1 && part[0] == '.') || (len == 2 && part[0] == '.' && part[1] == '.'))
            return 0;
        part = slash ? slash + 1 : NULL;
    }
    return 1;
}

int config_tenant_new(const struct config_db *entry, const char *relpath, struct config_db **out,
                      struct tm_error *err)
{
    if (!relpath_ok(relpath))
        return tm_error_set(err, "'%s' is not a relative path under '%s'", relpath, entry->dir);
    /* the escaped name leaves room in a key (ARCHIVE_NAME_MAX) for the rest */
    char escaped[CONFIG_ESCAPED_NAME_MAX + 1];
    size_t room = strlen(entry->name) + 1 < sizeof escaped ? sizeof escaped - strlen(entry->name) - 1 : 0;
    if (names_escape(relpath, escaped, room) != 0)
        return tm_error_set(err, "path '%s' under '%s' is too long to name a database (at most %d bytes, "
                            "escaped)", relpath, entry->dir, CONFIG_ESCAPED_NAME_MAX);
    struct config_db *db = malloc(sizeof *db);
    if (!db)
        return tm_error_set(err, "out of memory");
    *db = *entry;   /* the entry's settings, shared (not owned) */
    db->dir = db->pattern = NULL;
    db->entry = entry;
    db->name = db->path = db->state_dir = NULL;
    if (asprintf(&db->name, "%s/%s", entry->name, relpath) < 0)
        db->name = NULL;
    if (asprintf(&db->path, "%s/%s", entry->dir, relpath) < 0)
        db->path = NULL;
    if (asprintf(&db->state_dir, "%s/%s", entry->state_dir, escaped) < 0)
        db->state_dir = NULL;
    if (!db->name || !db->path || !db->state_dir) {
        config_tenant_free(db);
        return tm_error_set(err, "out of memory");
    }
    *out = db;
    return 0;
}

void config_tenant_free(struct config_db *db)
{
    if (!db)
        return;
    free(db->name);
    free(db->path);
    free(db->state_dir);
    free(db);
}

/* NAME/RELPATH under a `dir:` entry: made once, kept in cfg->tenants. */
static const struct config_db *find_tenant(const struct config *cfg, const char *name, struct tm_error *err)
{
    struct config_tenants *cache = cfg->tenants;
    for (size_t i = 0; i < cache->count; i++)
        if (strcmp(cache->dbs[i]->name, name) == 0)
            return cache->dbs[i];
    const char *slash = strchr(name, '/');
    for (size_t i = 0; i < cfg->db_count; i++) {
        const struct config_db *entry = &cfg->dbs[i];
        if (!entry->dir || strlen(entry->name) != (size_t)(slash - name) ||
            strncmp(entry->name, name, (size_t)(slash - name)) != 0)
            continue;
        struct config_db **grown = realloc(cache->dbs, (cache->count + 1) * sizeof *grown);
        if (!grown) {
            tm_error_set(err, "out of memory");
            return NULL;
        }
        cache->dbs = grown;
        if (config_tenant_new(entry, slash + 1, &cache->dbs[cache->count], err) != 0)
            return NULL;
        return cache->dbs[cache->count++];
    }
    return NULL;
}

const struct config_db *config_find_db(const struct config *cfg, const char *name,
                                       struct tm_error *err)
{
    char names[512] = "";
    if (strchr(name, '/')) {
        err->msg[0] = '\0';
        const struct config_db *tenant = find_tenant(cfg, name, err);
        if (tenant || err->msg[0])
            return tenant;
    }
    for (size_t i = 0; i < cfg->db_count; i++) {
        if (strcmp(cfg->dbs[i].name, name) == 0)
            return &cfg->dbs[i];
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", cfg->dbs[i].name);
    }
    tm_error_set(err, "no database named '%s' in '%s'", name, cfg->file);
    tm_error_hint(err, "configured databases: %s (a directory entry's are NAME/RELATIVE-PATH; globs such as 'tenants/*' select several)", names);
    return NULL;
}
