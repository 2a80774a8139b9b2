/* targets.c - resolving a command's NAME argument to databases: names,
 * names under `dir:` entries found on their replica, globs (targets.h). */
#include "targets.h"

#include "../common/archive.h"
#include "../common/names.h"
#include "../common/storage/storage.h"
#include "restore.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* Each database is met once: configured names are unique, and a
 * replica lists each database's key component once. */
static int add(struct targets *t, const struct config_db *db, struct tm_error *err)
{
    const struct config_db **grown = realloc(t->dbs, (t->count + 1) * sizeof *grown);
    if (!grown)
        return tm_error_set(err, "out of memory");
    t->dbs = grown;
    t->dbs[t->count++] = db;
    return 0;
}

/* Whether names under ENTRY/ can match pattern at all: its literal part
 * (up to the first glob character) and "ENTRY/" agree as far as both go. */
static int may_match_entry(const char *pattern, const char *entry)
{
    size_t literal = strcspn(pattern, "*?["), entry_len = strlen(entry);
    for (size_t i = 0; i < literal && i <= entry_len; i++)
        if (pattern[i] != (i < entry_len ? entry[i] : '/'))
            return 0;
    return 1;
}

/* Every database of `entry` with backups on the replica, matching pattern. */
static int add_entry_databases(const struct config *cfg, const struct config_db *entry, const char *pattern,
                               const char *replica, struct targets *t, struct tm_error *err)
{
    struct storage *st;
    if (restore_open_replica(entry, replica, &st, err) != 0)
        return -1;
    struct storage_list names;
    int rc = storage_list(st, "", &names, err);
    storage_free(st);
    if (rc != 0)
        return -1;
    size_t prefix_len = strlen(entry->name);
    for (size_t i = 0; rc == 0 && i < names.count; i++) {
        char name[ARCHIVE_NAME_MAX];
        if (!names.entries[i].is_dir || names_unescape(names.entries[i].name, name, sizeof name) != 0 ||
            strncmp(name, entry->name, prefix_len) != 0 || name[prefix_len] != '/')
            continue;
        if (pattern && fnmatch(pattern, name, 0) != 0)
            continue;
        const struct config_db *db = config_find_db(cfg, name, err);
        rc = db ? add(t, db, err) : -1;
    }
    storage_list_release(&names);
    return rc;
}

int targets_select(const struct config *cfg, const char *pattern, const char *replica, struct targets *out,
                   struct tm_error *err)
{
    *out = (struct targets){0};
    int rc = 0;
    if (pattern && !names_is_glob(pattern)) {
        const struct config_db *db = config_find_db(cfg, pattern, err);
        if (!db)
            return -1;
        if (db->dir)   /* a `dir:` entry's name: all of its databases */
            rc = add_entry_databases(cfg, db, NULL, replica, out, err);
        else
            rc = add(out, db, err);
    } else {
        for (size_t i = 0; rc == 0 && i < cfg->db_count; i++) {
            const struct config_db *db = &cfg->dbs[i];
            if (db->dir && (!pattern || may_match_entry(pattern, db->name)))
                rc = add_entry_databases(cfg, db, pattern, replica, out, err);
            else if (!db->dir && (!pattern || fnmatch(pattern, db->name, 0) == 0))
                rc = add(out, db, err);
        }
    }
    if (rc == 0 && pattern && out->count == 0) {
        tm_error_set(err, "no database matches '%s'", pattern);
        rc = tm_error_hint(err, "'tidemark list -c FILE' shows every database with backups");
    }
    if (rc != 0)
        targets_release(out);
    return rc;
}

void targets_release(struct targets *t)
{
    free(t->dbs);
    *t = (struct targets){0};
}
