/* config_find.c - the configuration's databases by name (config.h): a
 * configured one, or one under a `dir:` entry (a tenant), made on demand
 * and kept with the configuration; where each keeps its state; replica
 * selection; the keyring of the encryption section. */
#include "config.h"
#include "config_schema.h"

#include "names.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The escaped relative path leaves room in a key (ARCHIVE_NAME_MAX) for the rest. */
#define CONFIG_ESCAPED_NAME_MAX 256

/* Databases found under `dir:` entries that commands asked for by name. */
struct config_tenants {
    struct config_db **dbs;
    size_t count;
};

struct config_tenants *config_tenants_new(void)
{
    return calloc(1, sizeof(struct config_tenants));
}

void config_tenants_free(struct config_tenants *tenants)
{
    if (!tenants)
        return;
    for (size_t i = 0; i < tenants->count; i++)
        config_tenant_free(tenants->dbs[i]);
    free(tenants->dbs);
    free(tenants);
}

/* STATE-DIR/NAME, or .FILE-tidemark beside the database (same disk);
 * a `dir:` entry's is the root of its databases' (DIR/.tidemark); a
 * Redis entry's is under /var/lib/tidemark without state-dir. */
int config_db_state_dir(const struct config *cfg, struct config_db *db, struct tm_error *err)
{
    char *dir = NULL, *base = NULL;
    int len;
    if (cfg->state_dir || db->kind == DB_REDIS)
        len = asprintf(&db->state_dir, "%s/%s", cfg->state_dir ? cfg->state_dir : "/var/lib/tidemark", db->name);
    else if (db->dir)
        len = asprintf(&db->state_dir, "%s/.tidemark", db->dir);
    else if ((dir = strdup(db->path)) && (base = strdup(db->path)))
        len = asprintf(&db->state_dir, "%s/.%s-tidemark", dirname(dir), basename(base));
    else
        len = -1;
    free(dir);
    free(base);
    if (len < 0) {
        db->state_dir = NULL;
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    }
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
