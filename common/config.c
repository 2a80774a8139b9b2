/* config.c - loading and validating the YAML configuration (config.h).
 *
 * libyaml loads the file into a document tree whose nodes carry their
 * line and column; we walk it with small typed getters that report the
 * exact place of every mistake. Accepted keys:
 *
 *   encryption: none | { key-file: PATH }
 *   spool-dir: PATH
 *   dbs: [ { path, name, sync-interval, snapshot-interval,
 *            checkpoint-pages, replicas: [ { type: file, name, path } ] } ]
 */
#include "config.h"

#include "clock.h"
#include "crypto.h"

#include <errno.h>
#include <stdarg.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

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

static int parse_replica(struct loader *ld, yaml_node_t *node, struct config_replica *rep)
{
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, "each replica is a mapping such as '- type: file' / '  path: /var/backups/tidemark'",
                       "a replica must be a mapping");
    char *type = NULL;
    int rc = 0;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         rc == 0 && pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        if (strcmp(key, "type") == 0)
            rc = get_string(ld, v, key, &type);
        else if (strcmp(key, "path") == 0)
            rc = get_string(ld, v, key, &rep->path);
        else if (strcmp(key, "name") == 0)
            rc = get_string(ld, v, key, &rep->name);
        else
            rc = fail_at(ld, k, "replica keys are: type, name, path", "unknown key '%s' in replica", key);
    }
    if (rc == 0 && type && strcmp(type, "file") != 0)
        rc = fail_at(ld, node, "supported replica types: file", "unknown replica type '%s'", type);
    free(type);
    if (rc != 0)
        return -1;
    rep->type = REPLICA_FILE;
    if (!rep->path)
        return fail_at(ld, node, "add 'path: /var/backups/tidemark'", "replica of type 'file' has no 'path'");
    if (!rep->name && !(rep->name = strdup("file")))
        return tm_error_set(ld->err, "out of memory");
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

static int parse_db(struct loader *ld, yaml_node_t *node, struct config_db *db)
{
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, NULL, "a database entry must be a mapping with at least 'path'");
    db->sync_interval_ms = 1000;
    db->snapshot_interval_ms = 24LL * 3600 * 1000;
    db->checkpoint_pages = 1000;
    yaml_node_t *replicas_node = NULL;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "path") == 0)
            rc = get_string(ld, v, key, &db->path);
        else if (strcmp(key, "name") == 0)
            rc = get_string(ld, v, key, &db->name);
        else if (strcmp(key, "sync-interval") == 0)
            rc = get_duration(ld, v, key, &db->sync_interval_ms);
        else if (strcmp(key, "snapshot-interval") == 0)
            rc = get_duration(ld, v, key, &db->snapshot_interval_ms);
        else if (strcmp(key, "checkpoint-pages") == 0)
            rc = get_count(ld, v, key, &db->checkpoint_pages);
        else if (strcmp(key, "replicas") == 0) {
            replicas_node = v;
            rc = parse_replicas(ld, v, db);
        } else
            rc = fail_at(ld, k, "database keys are: path, name, sync-interval, snapshot-interval, checkpoint-pages, replicas",
                         "unknown key '%s' in database entry", key);
        if (rc != 0)
            return -1;
    }
    if (!db->path)
        return fail_at(ld, node, "add 'path: /var/lib/app/app.db'", "database entry has no 'path'");
    if (!db->name && !(db->name = default_db_name(db->path)))
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

static int parse_dbs(struct loader *ld, yaml_node_t *node, struct config *cfg)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return fail_at(ld, node, "write 'dbs:' followed by '  - path: /var/lib/app/app.db'",
                       "'dbs' must be a list");
    size_t count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    cfg->dbs = calloc(count ? count : 1, sizeof *cfg->dbs);
    if (!cfg->dbs)
        return tm_error_set(ld->err, "out of memory");
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(&ld->doc, node->data.sequence.items.start[i]);
        cfg->db_count++;
        if (parse_db(ld, item, &cfg->dbs[i]) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->dbs[j].name, cfg->dbs[i].name) == 0)
                return fail_at(ld, item, "set a distinct 'name:' on one of them",
                               "duplicate database name '%s'", cfg->dbs[i].name);
    }
    return 0;
}

static int parse_encryption(struct loader *ld, yaml_node_t *node, struct config *cfg)
{
    static const char *hint =
        "write 'encryption: { key-file: /etc/tidemark/key }' (from 'tidemark keygen') or 'encryption: none'";
    if (node->type == YAML_SCALAR_NODE) {
        if (strcmp((const char *)node->data.scalar.value, "none") != 0)
            return fail_at(ld, node, hint, "'encryption' must be 'none' or a mapping with 'key-file'");
        cfg->encryption_none = 1;
        return 0;
    }
    if (node->type != YAML_MAPPING_NODE)
        return fail_at(ld, node, hint, "'encryption' must be 'none' or a mapping with 'key-file'");
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        if (strcmp(key, "key-file") != 0)
            return fail_at(ld, k, hint, "unknown key '%s' in 'encryption'", key);
        if (get_string(ld, v, key, &cfg->key_file) != 0)
            return -1;
        struct crypto_key *probe;
        struct tm_error key_err;
        if (crypto_key_load(cfg->key_file, &probe, &key_err) != 0)
            return fail_at(ld, v, key_err.hint[0] ? key_err.hint : NULL, "%s", key_err.msg);
        crypto_key_free(probe);
    }
    if (!cfg->key_file)
        return fail_at(ld, node, hint, "'encryption' has no 'key-file'");
    return 0;
}

static int parse_root(struct loader *ld, yaml_node_t *root, struct config *cfg)
{
    if (!root || root->type != YAML_MAPPING_NODE) {
        tm_error_set(ld->err, "%s: the configuration must be a mapping with 'encryption' and 'dbs'", ld->file);
        return tm_error_hint(ld->err, "see config/tidemark.example.yml");
    }
    int seen_encryption = 0, seen_dbs = 0;
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int rc;
        if (strcmp(key, "encryption") == 0) {
            seen_encryption = 1;
            rc = parse_encryption(ld, v, cfg);
        } else if (strcmp(key, "dbs") == 0) {
            seen_dbs = 1;
            rc = parse_dbs(ld, v, cfg);
        } else if (strcmp(key, "spool-dir") == 0) {
            rc = get_string(ld, v, key, &cfg->spool_dir);
        } else {
            rc = fail_at(ld, k, "top-level keys are: encryption, dbs, spool-dir", "unknown key '%s'", key);
        }
        if (rc != 0)
            return -1;
    }
    if (!seen_encryption)
        return fail_at(ld, root, "write 'encryption: { key-file: /etc/tidemark/key }' (make the key with 'tidemark keygen -o /etc/tidemark/key'), or 'encryption: none' to store backups unencrypted",
                       "no 'encryption' section: backups are encrypted unless you say otherwise");
    if (!seen_dbs || cfg->db_count == 0)
        return fail_at(ld, root, "add 'dbs:' with at least one '- path: /var/lib/app/app.db'", "no database configured");
    if (!cfg->spool_dir && !(cfg->spool_dir = strdup("/var/tmp")))
        return tm_error_set(ld->err, "out of memory");
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
    if (!cfg || !(cfg->file = strdup(path))) {
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
            free(db->replicas[j].name);
            free(db->replicas[j].path);
        }
        free(db->replicas);
        free(db->path);
        free(db->name);
    }
    free(cfg->dbs);
    free(cfg->key_file);
    free(cfg->spool_dir);
    free(cfg->file);
    free(cfg);
}

const struct config_db *config_find_db(const struct config *cfg, const char *name,
                                       struct tm_error *err)
{
    char names[512] = "";
    for (size_t i = 0; i < cfg->db_count; i++) {
        if (strcmp(cfg->dbs[i].name, name) == 0)
            return &cfg->dbs[i];
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", cfg->dbs[i].name);
    }
    tm_error_set(err, "no database named '%s' in '%s'", name, cfg->file);
    tm_error_hint(err, "configured databases: %s", names);
    return NULL;
}
