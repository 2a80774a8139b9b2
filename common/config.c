/* config.c - loading and validating the YAML configuration (config.h).
 *
 * DESIGN
 *
 * Every key the file accepts is declared once, in the tables of
 * config_schema.c: one table per section (the top level, encryption,
 * metrics, alerts, retention, a database entry, snapshot, drill, a
 * replica, object-lock), one row per key with its type, the field it
 * fills, its default, the variants that take it (a `redis:` entry takes
 * `addr`, a file replica no `bucket`), a further check where the type's
 * own is not enough, and a one-line description. This file holds the one
 * walker that reads any of those sections:
 *
 *   1. the value must be a mapping (or `off` where the section allows it);
 *   2. no key may be given twice;
 *   3. each key is looked up in the table; an unknown one fails with
 *      "unknown key 'x' in SECTION" and a hint built from the same table
 *      ("did you mean 'sync-interval'? database entry keys are: ...");
 *   4. the value is read by its type (string, duration, count, size,
 *      bool, ratio, cron schedule, enum, a nested section, or a custom
 *      reader for lists), then by the key's own check;
 *   5. the keys not given take their default, read by the same code
 *      from the text the table gives ("1s", "8MiB", "{}" for a section);
 *   6. the section's finish runs the checks that involve several keys
 *      and the defaults that depend on others (a database's name, a
 *      Redis entry's schedule), with where each key was given.
 *
 * libyaml loads the file into a document tree whose nodes carry their
 * line and column, so every mistake is reported as "FILE:LINE:COL:
 * message" with a HINT, and nothing starts with a half-valid
 * configuration.
 *
 * The docs: docs/configuration.md has a table of keys per section (the
 * table's heading is in the schema); tests/unit/test_config.c reads it
 * and fails if a key the schema accepts is missing from its table, if
 * the table documents a key that is not accepted, or if a key's row does
 * not state its literal default. The prose stays in the docs; the
 * schema says what must be there (config_schema_docs lists it).
 *
 * The rest of the module: config_schema.c (the tables and the sections'
 * finish), config_find.c (finding databases by name, tenants, keyrings).
 */
#include "config.h"
#include "config_schema.h"

#include "clock.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_fail_at(struct config_loader *ld, const yaml_node_t *node, const char *hint, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    tm_error_setc(ld->err, TM_ERR_REFUSED, "%s:%zu:%zu: %s", ld->file, node->start_mark.line + 1,
                  node->start_mark.column + 1, what);
    if (hint)
        tm_error_hint(ld->err, "%s", hint);
    return -1;
}

int config_out_of_memory(struct config_loader *ld)
{
    return tm_error_setc(ld->err, TM_ERR_NO_MEMORY, "out of memory");
}

/* Appends piece (len bytes) to the growing *out; -1 without memory. */
static int append(char **out, size_t *used, size_t *cap, const char *piece, size_t len)
{
    if (*used + len + 1 > *cap) {
        size_t bigger_cap = (*used + len + 1) * 2;
        char *bigger = realloc(*out, bigger_cap);
        if (!bigger)
            return -1;
        *out = bigger;
        *cap = bigger_cap;
    }
    memcpy(*out + *used, piece, len);
    *used += len;
    (*out)[*used] = '\0';
    return 0;
}

/* The value of ${NAME} at p (p[0..1] == "${"); *next: after the brace.
 * NULL with the error set when unterminated or unset. */
static const char *env_value(struct config_loader *ld, const yaml_node_t *node, const char *text,
                             const char *p, const char **next)
{
    char name[256];
    const char *close = strchr(p + 2, '}');
    size_t name_len = close ? (size_t)(close - p - 2) : 0;
    if (!close || name_len == 0 || name_len >= sizeof name) {
        config_fail_at(ld, node, "write ${NAME} with a closing brace", "unterminated ${ in '%s'", text);
        return NULL;
    }
    memcpy(name, p + 2, name_len);
    name[name_len] = '\0';
    const char *value = getenv(name);
    if (!value)
        config_fail_at(ld, node, "export the variable before starting tidemark",
                       "environment variable '%s' is not set", name);
    *next = close + 1;
    return value;
}

/* Expands ${VAR} in text; returns a malloc'd string or NULL (err set). */
static char *expand_env(struct config_loader *ld, const yaml_node_t *node, const char *text)
{
    size_t cap = strlen(text) + 1, used = 0;
    char *out = calloc(1, cap);
    for (const char *p = text; out && *p;) {
        const char *piece = p, *next = p + 1;
        size_t len = 1;
        if (p[0] == '$' && p[1] == '{') {
            if (!(piece = env_value(ld, node, text, p, &next))) {
                free(out);
                return NULL;
            }
            len = strlen(piece);
        }
        if (append(&out, &used, &cap, piece, len) != 0) {
            free(out);
            out = NULL;
        }
        p = next;
    }
    if (!out)
        config_out_of_memory(ld);
    return out;
}

static const char *scalar(const yaml_node_t *node)
{
    return node && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : NULL;
}

/* A key given twice in one mapping is a mistake (YAML would keep the
 * last silently; we say so). */
int config_unique_keys(struct config_loader *ld, yaml_node_t *node)
{
    for (yaml_node_pair_t *a = node->data.mapping.pairs.start; a < node->data.mapping.pairs.top; a++) {
        yaml_node_t *ka = yaml_document_get_node(&ld->doc, a->key);
        if (!scalar(ka))
            return config_fail_at(ld, ka ? ka : node, NULL, "keys must be plain names");
        for (yaml_node_pair_t *b = node->data.mapping.pairs.start; b < a; b++) {
            yaml_node_t *kb = yaml_document_get_node(&ld->doc, b->key);
            if (strcmp(scalar(ka), scalar(kb)) == 0)
                return config_fail_at(ld, ka, "remove one of them", "'%s' is given twice", scalar(ka));
        }
    }
    return 0;
}

yaml_node_t *config_find_pair(struct config_loader *ld, yaml_node_t *mapping, const char *key, yaml_node_t **value)
{
    for (yaml_node_pair_t *pair = mapping->data.mapping.pairs.start; pair < mapping->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        if (scalar(k) && strcmp(scalar(k), key) == 0) {
            *value = yaml_document_get_node(&ld->doc, pair->value);
            return k;
        }
    }
    return NULL;
}

/* ---- values by type ---------------------------------------------------- */

int config_get_string(struct config_loader *ld, yaml_node_t *node, const char *key, char **out)
{
    if (!scalar(node))
        return config_fail_at(ld, node, NULL, "'%s' must be a string", key);
    char *value = expand_env(ld, node, scalar(node));
    if (!value)
        return -1;
    if (!value[0]) {
        free(value);
        return config_fail_at(ld, node, NULL, "'%s' must not be empty", key);
    }
    free(*out);
    *out = value;
    return 0;
}

static int is_off(const yaml_node_t *node)
{
    const char *text = scalar(node);
    return text && (strcmp(text, "off") == 0 || strcmp(text, "false") == 0);
}

static int get_duration(struct config_loader *ld, yaml_node_t *node, const char *key, int64_t *out)
{
    char *text = NULL;
    if (config_get_string(ld, node, key, &text) != 0)
        return -1;
    struct tm_error parse_err;
    int rc = clock_parse_duration(text, out, &parse_err);
    free(text);
    if (rc != 0)
        return config_fail_at(ld, node, parse_err.hint, "'%s': %s", key, parse_err.msg);
    return 0;
}

/* A positive whole number (a count of pages, of open databases). */
static int get_count(struct config_loader *ld, yaml_node_t *node, const char *key, uint32_t *out)
{
    char *text = NULL;
    if (config_get_string(ld, node, key, &text) != 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    int bad = *end || errno || value == 0 || value > 1000000000UL || text[0] == '-';
    free(text);
    if (bad)
        return config_fail_at(ld, node, NULL, "'%s' must be a positive whole number", key);
    *out = (uint32_t)value;
    return 0;
}

/* A whole number, zero allowed (retention counts). */
static int get_whole(struct config_loader *ld, yaml_node_t *node, const char *key, uint32_t *out)
{
    const char *text = scalar(node) ? scalar(node) : "";
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (!text[0] || *end || errno || value > 100000 || text[0] == '-')
        return config_fail_at(ld, node, NULL, "'%s' must be a whole number (0 or more)", key);
    *out = (uint32_t)value;
    return 0;
}

static int get_bool(struct config_loader *ld, yaml_node_t *node, const char *key, int *out)
{
    const char *text = scalar(node) ? scalar(node) : "";
    if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0)
        *out = 1;
    else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0)
        *out = 0;
    else
        return config_fail_at(ld, node, NULL, "'%s' must be true or false", key);
    return 0;
}

/* Sizes: a whole number with an optional unit B, KB, MB, GB, KiB, MiB, GiB. */
static int get_size(struct config_loader *ld, yaml_node_t *node, const char *key, uint64_t *out)
{
    static const struct { const char *unit; uint64_t bytes; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000},
        {"TB", 1000000000000ULL}, {"KiB", 1024}, {"MiB", 1024 * 1024},
        {"GiB", 1024ULL * 1024 * 1024}, {"TiB", 1024ULL * 1024 * 1024 * 1024}};
    char *text = NULL;
    if (config_get_string(ld, node, key, &text) != 0)
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
        return config_fail_at(ld, node, "write a size such as 512MiB, 1GiB or 100MB", "'%s' is not a valid size", key);
    *out = value * multiplier;
    return 0;
}

/* A non-negative number (0.5, 2), or off (0). */
static int get_ratio(struct config_loader *ld, yaml_node_t *node, const char *key, double *out)
{
    char *text = NULL;
    if (config_get_string(ld, node, key, &text) != 0)
        return -1;
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    int bad = *end || errno || value < 0 || value > 1000 || end == text;
    free(text);
    if (bad)
        return config_fail_at(ld, node, "give a ratio of the database size such as 1 or 0.5, or off",
                              "'%s' must be a number from 0 to 1000, or off", key);
    *out = value;
    return 0;
}

static int get_cron(struct config_loader *ld, yaml_node_t *node, const char *key, char **text, struct cron *out)
{
    if (config_get_string(ld, node, key, text) != 0)
        return -1;
    struct tm_error cron_err;
    if (cron_parse(*text, out, &cron_err) != 0)
        return config_fail_at(ld, node, cron_err.hint, "'%s': %s", key, cron_err.msg);
    return 0;
}

/* One of the key's values, stored as its index. */
static int get_enum(struct config_loader *ld, yaml_node_t *node, const struct config_key *key, int *out)
{
    const char *text = scalar(node) ? scalar(node) : "";
    char choices[256] = "";
    for (int i = 0; key->values[i]; i++) {
        if (strcmp(text, key->values[i]) == 0) {
            *out = i;
            return 0;
        }
        size_t used = strlen(choices);
        snprintf(choices + used, sizeof choices - used, "%s'%s: %s'", i ? " or " : "", key->key, key->values[i]);
    }
    char hint[300];
    snprintf(hint, sizeof hint, "write %s", choices);
    return config_fail_at(ld, node, hint, "unknown %s '%s'", key->key, text);
}

/* Reads value into the section's struct at base, by the key's type. */
static int set_value(struct config_loader *ld, const struct config_key *key, yaml_node_t *value, char *base)
{
    void *field = base + key->offset;
    const char *name = key->key;
    int off = (key->type == CONFIG_DURATION_OFF || key->type == CONFIG_RATIO) && is_off(value);
    int rc;
    switch (key->type) {
    case CONFIG_STRING: rc = config_get_string(ld, value, name, field); break;
    case CONFIG_DURATION_OFF:
    case CONFIG_DURATION:
        if (off)
            *(int64_t *)field = 0;
        rc = off ? 0 : get_duration(ld, value, name, field);
        break;
    case CONFIG_COUNT: rc = get_count(ld, value, name, field); break;
    case CONFIG_WHOLE: rc = get_whole(ld, value, name, field); break;
    case CONFIG_BOOL: rc = get_bool(ld, value, name, field); break;
    case CONFIG_SIZE: rc = get_size(ld, value, name, field); break;
    case CONFIG_RATIO:
        if (off)
            *(double *)field = 0;
        rc = off ? 0 : get_ratio(ld, value, name, field);
        break;
    case CONFIG_CRON: rc = get_cron(ld, value, name, field, (struct cron *)(base + key->aux)); break;
    case CONFIG_ENUM: rc = get_enum(ld, value, key, field); break;
    case CONFIG_SECTION: rc = config_walk(ld, key->section, value, field); break;
    case CONFIG_CUSTOM: rc = key->parse(ld, key, value, field); break;
    default: rc = config_fail_at(ld, value, NULL, "'%s' has no type", name); break;
    }
    if (rc == 0 && key->check)
        rc = key->check(ld, value, field);
    return rc;
}

/* ---- the walker ---------------------------------------------------------- */

static int key_taken(const struct config_section *section, const struct config_key *key)
{
    return !key->variants || (key->variants & section->variant);
}

/* The index of `name` among the keys section takes, or -1. */
static int key_index(const struct config_section *section, const char *name)
{
    for (size_t i = 0; i < section->key_count; i++)
        if (key_taken(section, &section->keys[i]) && strcmp(section->keys[i].key, name) == 0)
            return (int)i;
    return -1;
}

yaml_node_t *config_seen_key(const struct config_section *section, const struct config_seen *seen, const char *key)
{
    int i = key_index(section, key);
    return i < 0 ? NULL : seen->key[i];
}

yaml_node_t *config_seen_value(const struct config_section *section, const struct config_seen *seen, const char *key)
{
    int i = key_index(section, key);
    return i < 0 ? NULL : seen->value[i];
}

/* Levenshtein distance of two short strings (longer ones: SIZE_MAX). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 64 || lb >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] != b[j - 1]);
            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

/* "did you mean 'sync-interval'? database entry keys are: path, ..." */
static void unknown_key_hint(const struct config_section *section, const char *name, char *hint, size_t size)
{
    const char *closest = NULL;
    size_t closest_distance = strlen(name) / 3 + 1, used = 0;
    int other_variant = 0;   /* a key of another kind of entry (a bucket for a file replica) */
    for (size_t i = 0; i < section->key_count; i++) {
        const char *candidate = section->keys[i].key;
        int taken = key_taken(section, &section->keys[i]);
        size_t distance = taken ? edit_distance(name, candidate) : SIZE_MAX;
        other_variant |= !taken && strcmp(name, candidate) == 0;
        if (distance < closest_distance) {
            closest = candidate;
            closest_distance = distance;
        }
    }
    hint[0] = '\0';
    if (other_variant)
        used = (size_t)snprintf(hint, size, "'%s' does not go in a %s; ", name, section->title);
    else if (closest)
        used = (size_t)snprintf(hint, size, "did you mean '%s'? ", closest);
    used += (size_t)snprintf(hint + used, size - used, "%s keys are:", section->title);
    for (size_t i = 0, n = 0; i < section->key_count && used < size; i++)
        if (key_taken(section, &section->keys[i]))
            used += (size_t)snprintf(hint + used, size - used, "%s %s", n++ ? "," : "", section->keys[i].key);
}

static int unknown_key(struct config_loader *ld, const struct config_section *section, yaml_node_t *key_node)
{
    const char *name = scalar(key_node);
    char hint[384];
    unknown_key_hint(section, name, hint, sizeof hint);
    if (!section->where)
        return config_fail_at(ld, key_node, hint, "unknown key '%s'", name);
    return config_fail_at(ld, key_node, hint, "unknown key '%s' in %s", name, section->where);
}

/* A default: its text read as if the file had it, at node's place. */
static int set_default(struct config_loader *ld, const struct config_key *key, yaml_node_t *node, char *base)
{
    if (key->type == CONFIG_SECTION)   /* "{}": the section's own defaults */
        return config_walk(ld, key->section, NULL, base + key->offset);
    yaml_node_t text = {.type = YAML_SCALAR_NODE, .start_mark = node->start_mark};
    text.data.scalar.value = (yaml_char_t *)(uintptr_t)key->def;
    text.data.scalar.length = strlen(key->def);
    return set_value(ld, key, &text, base);
}

int config_apply_defaults(struct config_loader *ld, const struct config_section *section, yaml_node_t *node,
                          void *base, const struct config_seen *seen, unsigned flags)
{
    for (size_t i = 0; i < section->key_count; i++) {
        const struct config_key *key = &section->keys[i];
        if (key->def && !seen->key[i] && key->flags == flags && key_taken(section, key) &&
            set_default(ld, key, node, base) != 0)
            return -1;
    }
    return 0;
}

/* Each pair of the mapping node, by the table; seen notes where. */
static int walk_pairs(struct config_loader *ld, const struct config_section *section, yaml_node_t *node,
                      char *base, struct config_seen *seen)
{
    if (config_unique_keys(ld, node) != 0)
        return -1;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pair->value);
        int i = key_index(section, scalar(k));
        if (i < 0)
            return unknown_key(ld, section, k);
        seen->key[i] = k;
        seen->value[i] = v;
        if (set_value(ld, &section->keys[i], v, base) != 0)
            return -1;
    }
    return 0;
}

/* node NULL: the section is not in the file; its defaults only. */
int config_walk(struct config_loader *ld, const struct config_section *section, yaml_node_t *node, void *base)
{
    struct config_seen seen = {0};
    int *enabled = section->has_enabled ? (int *)((char *)base + section->enabled_offset) : NULL;
    if (enabled)
        *enabled = !(node && is_off(node));
    if (!node || (enabled && !*enabled))   /* `off` keeps the defaults too */
        return config_apply_defaults(ld, section, node ? node : ld->doc.nodes.start, base, &seen, 0);
    if (node->type != YAML_MAPPING_NODE) {
        if (section->not_mapping)
            return config_fail_at(ld, node, section->shape_hint, "%s", section->not_mapping);
        return config_fail_at(ld, node, section->shape_hint, "'%s' must be a mapping%s", section->title,
                              enabled ? " or 'off'" : "");
    }
    if (walk_pairs(ld, section, node, base, &seen) != 0 ||
        config_apply_defaults(ld, section, node, base, &seen, 0) != 0)
        return -1;
    return section->finish ? section->finish(ld, node, base, &seen) : 0;
}

/* ---- the schema as documentation ------------------------------------------ */

static const char *type_name(const struct config_key *key)
{
    static const char *const names[] = {
        [CONFIG_STRING] = "string", [CONFIG_DURATION] = "duration", [CONFIG_DURATION_OFF] = "duration or off",
        [CONFIG_COUNT] = "count", [CONFIG_WHOLE] = "whole number", [CONFIG_BOOL] = "bool", [CONFIG_SIZE] = "size",
        [CONFIG_RATIO] = "ratio or off", [CONFIG_CRON] = "cron schedule", [CONFIG_ENUM] = "enum",
        [CONFIG_SECTION] = "section", [CONFIG_CUSTOM] = "list or custom",
    };
    return names[key->type];
}

size_t config_schema_docs(struct config_key_doc *out, size_t max)
{
    size_t count = 0;
    for (size_t s = 0; s < config_section_count; s++) {
        const struct config_section *section = config_sections[s];
        for (size_t i = 0; i < section->key_count; i++) {
            const struct config_key *key = &section->keys[i];
            if (!key_taken(section, key))
                continue;
            if (count < max)
                out[count] = (struct config_key_doc){
                    .section = section->title, .key = key->key, .type = type_name(key), .def = key->def,
                    .doc = key->doc, .heading = key->heading ? key->heading : section->heading};
            count++;
        }
    }
    return count;
}

/* ---- loading ------------------------------------------------------------- */

static int parse_root(struct config_loader *ld, yaml_node_t *root, struct config *cfg)
{
    if (!root || root->type != YAML_MAPPING_NODE) {
        tm_error_setc(ld->err, TM_ERR_REFUSED, "%s: the configuration must be a mapping with 'encryption' and 'dbs'",
                      ld->file);
        return tm_error_hint(ld->err, "see config/tidemark.example.yml");
    }
    return config_walk(ld, &config_root_section, root, cfg);
}

int config_load(const char *path, struct config **out, struct tm_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        tm_error_setc(err, errno == ENOENT ? TM_ERR_NOT_FOUND : TM_ERR_FAILED, "cannot open configuration '%s': %s",
                      path, strerror(errno));
        return tm_error_hint(err, "pass the file with -c; config/tidemark.example.yml is a starting point");
    }
    struct config *cfg = calloc(1, sizeof *cfg);
    struct config_loader ld = {.file = path, .err = err};
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    int rc = -1;
    if (!cfg || !(cfg->file = strdup(path)) || !(cfg->tenants = config_tenants_new())) {
        config_out_of_memory(&ld);
        goto done_parser;
    }
    if (!yaml_parser_load(&parser, &ld.doc)) {
        tm_error_setc(err, TM_ERR_REFUSED, "%s:%zu:%zu: invalid YAML: %s", path, parser.problem_mark.line + 1,
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

/* A secret's bytes are wiped before its memory is given back. */
static void free_secret(char *secret)
{
    if (secret)
        sodium_memzero(secret, strlen(secret));
    free(secret);
}

static void free_replica(struct config_replica *rep)
{
    free(rep->name);
    free(rep->path);
    free(rep->s3.bucket);
    free(rep->s3.region);
    free(rep->s3.endpoint);
    free(rep->s3.access_key_id);
    free_secret(rep->s3.secret_access_key);
    free(rep->s3.ca_file);
    free(rep->s3.object_lock_mode);
}

static void free_db(struct config_db *db)
{
    for (size_t j = 0; j < db->replica_count; j++)
        free_replica(&db->replicas[j]);
    free(db->state_dir);
    free(db->dir);
    free(db->pattern);
    free(db->snapshot_schedule);
    free(db->drill.schedule);
    free(db->drill.staging);
    free(db->drill.check_sql);
    free(db->drill.publish_file);
    free(db->drill.publish_sqld.admin_url);
    free(db->drill.publish_sqld.http_url);
    free(db->drill.publish_sqld.name);
    free(db->drill.after);
    free(db->replicas);
    free(db->path);
    free(db->name);
    free(db->redis_addr);
    free(db->redis_username);
    free_secret(db->redis_password);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->db_count; i++)
        free_db(&cfg->dbs[i]);
    free(cfg->dbs);
    config_tenants_free(cfg->tenants);
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
