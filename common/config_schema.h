/* config_schema.h - inside the configuration module only: the schema's
 * types (config_schema.c holds the tables) and the one mapping walker
 * (config.c) that reads every section of the file through them. Other
 * modules use config.h (config_schema_docs lists the schema); this header
 * is shared by config.c, config_schema.c and config_find.c. See config.c
 * for the design. */
#ifndef TM_CONFIG_SCHEMA_H
#define TM_CONFIG_SCHEMA_H

#include <stddef.h>
#include <yaml.h>

#include "config.h"

/* One load: the file's name (for "FILE:LINE:COL: message"), its YAML
 * tree and where errors go. */
struct config_loader {
    const char *file;
    yaml_document_t doc;
    struct tm_error *err;
};

/* What a key's value is, and how it is read (config.c, set_value). */
enum config_type {
    CONFIG_STRING,         /* char *: ${VAR} expanded, not empty */
    CONFIG_DURATION,       /* int64_t ms: 250ms, 1.5s, 5m, 24h, 7d */
    CONFIG_DURATION_OFF,   /* the same, or `off` (0) */
    CONFIG_COUNT,          /* uint32_t, 1 or more */
    CONFIG_WHOLE,          /* uint32_t, 0 or more */
    CONFIG_BOOL,           /* int: true/yes or false/no */
    CONFIG_SIZE,           /* uint64_t bytes: 512MiB, 1GiB, 100MB */
    CONFIG_RATIO,          /* double from 0 to 1000, or `off` (0) */
    CONFIG_CRON,           /* char * text at offset, its struct cron at aux */
    CONFIG_ENUM,           /* int: the index of the value in values[] */
    CONFIG_SECTION,        /* a mapping, walked with .section over the struct at offset */
    CONFIG_CUSTOM,         /* read by .parse (lists, key files) */
};

/* A key only some variants of a section take (a bit of .variants). */
enum {
    CONFIG_SQLITE = 1, CONFIG_REDIS = 2,   /* database entries */
    CONFIG_FILE = 1, CONFIG_S3 = 2,        /* replicas */
};

/* Key flags. CONFIG_DIR: a setting of a `dir:` entry (documented in its
 * table; its default applies to `dir:` entries only). */
enum { CONFIG_DIR = 1 };

struct config_section;

/* One accepted key: everything the parser, the error hints and the docs
 * check know about it. */
struct config_key {
    const char *key;
    enum config_type type;
    size_t offset;               /* of its value in the section's struct */
    size_t aux;                  /* CONFIG_CRON: offset of the struct cron; CONFIG_CUSTOM: its own */
    unsigned variants;           /* 0: every variant of the section, else a mask */
    unsigned flags;              /* CONFIG_DIR */
    const char *def;             /* the default as written in the file (a section's: "{}"),
                                    set when the key is not given; NULL: none, or one the
                                    section's finish works out (doc says which) */
    const char *doc;             /* one line; docs/configuration.md has the whole text */
    const char *heading;         /* the docs table listing it, when not its section's */
    const struct config_section *section;   /* CONFIG_SECTION */
    const char *const *values;              /* CONFIG_ENUM, NULL-terminated */
    /* CONFIG_CUSTOM: reads value into the struct at field. */
    int (*parse)(struct config_loader *ld, const struct config_key *key, yaml_node_t *value, void *field);
    /* Further checks once the type's own passed. */
    int (*check)(struct config_loader *ld, yaml_node_t *value, void *field);
};

#define CONFIG_KEYS_MAX 24

/* Where each key of a walked mapping was given (NULL: not given), by
 * its index in the section's table. */
struct config_seen {
    yaml_node_t *key[CONFIG_KEYS_MAX];
    yaml_node_t *value[CONFIG_KEYS_MAX];
};

/* One mapping of the file (a variant of it, for database entries and
 * replicas, which share one key table). */
struct config_section {
    const char *title;           /* "s3 replica": hints ("s3 replica keys are: ...") and docs */
    const char *where;           /* "unknown key 'x' in WHERE"; NULL at the top level */
    const char *not_mapping;     /* the message when the value is not a mapping */
    const char *shape_hint;      /* its hint, and that of the section's own checks */
    int has_enabled;             /* `off` is allowed: the int at enabled_offset says which */
    size_t enabled_offset;
    unsigned variant;            /* the bit of this variant, 0 for a section without */
    const struct config_key *keys;
    size_t key_count;
    /* Checks across keys and defaults that depend on others, after the
     * walk (the literal defaults are already set). */
    int (*finish)(struct config_loader *ld, yaml_node_t *node, void *base, const struct config_seen *seen);
    const char *heading;         /* docs/configuration.md: the heading of its keys' table */
};

/* The top-level section and every section reachable from it, for the
 * docs check (config_schema_docs). */
extern const struct config_section config_root_section;
extern const struct config_section *const config_sections[];
extern const size_t config_section_count;

/* "FILE:LINE:COL: message" at node, with an optional hint; returns -1. */
int config_fail_at(struct config_loader *ld, const yaml_node_t *node, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reads node, a mapping of section's keys (or `off` where allowed),
 * into base: each key by its type, then the defaults of the keys not
 * given, then the section's finish. Fails at the first mistake. */
int config_walk(struct config_loader *ld, const struct config_section *section, yaml_node_t *node, void *base);

/* The defaults of the keys not given whose flags are `flags` exactly
 * (0: every key but the `dir:` settings). node: the place to report. */
int config_apply_defaults(struct config_loader *ld, const struct config_section *section, yaml_node_t *node,
                          void *base, const struct config_seen *seen, unsigned flags);

/* The key node where `key` was given in a walked mapping, or NULL. */
yaml_node_t *config_seen_key(const struct config_section *section, const struct config_seen *seen,
                             const char *key);

/* The value node of `key` in a walked mapping, or NULL. */
yaml_node_t *config_seen_value(const struct config_section *section, const struct config_seen *seen,
                               const char *key);

/* db's state directory, from cfg's state-dir or beside it (config_find.c). */
int config_db_state_dir(const struct config *cfg, struct config_db *db, struct tm_error *err);

/* Databases found under `dir:` entries (config_find.c). */
struct config_tenants *config_tenants_new(void);
void config_tenants_free(struct config_tenants *tenants);

/* The string value of key's node, ${VAR} expanded, into *out (freeing
 * what was there); fails unless it is a non-empty scalar. */
int config_get_string(struct config_loader *ld, yaml_node_t *node, const char *key, char **out);
/* The key node of the pair `key` of a mapping, or NULL. */
yaml_node_t *config_find_pair(struct config_loader *ld, yaml_node_t *mapping, const char *key, yaml_node_t **value);
/* A key given twice in one mapping is a mistake. */
int config_unique_keys(struct config_loader *ld, yaml_node_t *node);
int config_out_of_memory(struct config_loader *ld);

#endif
