/* targets.c - resolving a command's NAME argument to databases: names,
 * names under `dir:` entries found on their replica, globs; and opening
 * the replica a command reads from (targets.h). */
#include "targets.h"

#include "archive.h"
#include "log.h"
#include "names.h"
#include "storage/storage.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    if (targets_open_replica(entry, replica, &st, err) != 0)
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

int targets_begin(struct targets_iter *it, const struct config *cfg, const char *pattern, const char *replica,
                  enum targets_walk walk, struct tm_error *err)
{
    *it = (struct targets_iter){.replica = replica, .walk = walk};
    return targets_select(cfg, pattern, replica, &it->selected, err);
}

int targets_next(struct targets_iter *it, const struct config_db **db, size_t *replica)
{
    while (it->next_db < it->selected.count) {
        const struct config_db *candidate = it->selected.dbs[it->next_db];
        if (it->walk == TARGETS_ONE_REPLICA) {
            it->next_db++;
            it->matched++;
            *db = candidate;
            *replica = TARGETS_ANY_REPLICA;
            return 1;
        }
        size_t r = it->next_replica++;
        if (r >= candidate->replica_count) {
            it->next_db++;
            it->next_replica = 0;
        } else if (config_replica_selected(candidate, r, it->replica)) {
            it->matched++;
            *db = candidate;
            *replica = r;
            return 1;
        }
    }
    return 0;
}

int targets_end(struct targets_iter *it, struct tm_error *err)
{
    int rc = 0;
    if (it->walk == TARGETS_EACH_REPLICA && it->replica && it->matched == 0)
        rc = targets_no_replica(err, it->selected.count == 1 ? it->selected.dbs[0]->name : NULL, it->replica);
    targets_release(&it->selected);
    return rc;
}

int targets_no_replica(struct tm_error *err, const char *db, const char *replica)
{
    if (db)
        tm_error_setc(err, TM_ERR_NOT_FOUND, "database '%s' has no replica '%s'", db, replica);
    else
        tm_error_setc(err, TM_ERR_NOT_FOUND, "no database selected has a replica '%s'", replica);
    return tm_error_hint(err, "give a replica name from the configuration or its index (0 = first)");
}

/* Opens one replica for reading and proves it answers; `patient` when no
 * other replica would be tried after it. */
static int open_reachable(const struct config_db *db, const struct config_replica *rep, int patient,
                          struct storage **out, struct tm_error *err)
{
    struct stat st;
    if (rep->type == REPLICA_FILE && (stat(rep->path, &st) != 0 || !S_ISDIR(st.st_mode))) {
        tm_error_setc(err, TM_ERR_NOT_FOUND, "replica '%s': directory '%s' does not exist", rep->name, rep->path);
        return tm_error_hint(err, "check 'path' of replica '%s' of database '%s' in the configuration",
                             rep->name, db->name);
    }
    if (storage_open_replica(rep, out, err) != 0)
        return -1;
    struct storage_check check;
    if (storage_check(*out, patient, &check, err) != 0) {
        storage_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int targets_open_replica(const struct config_db *db, const char *replica, struct storage **out,
                         struct tm_error *err)
{
    if (replica) {
        for (size_t i = 0; i < db->replica_count; i++)
            if (config_replica_selected(db, i, replica))
                return open_reachable(db, &db->replicas[i], 1, out, err);
        return targets_no_replica(err, db->name, replica);
    }
    /* The first replica that answers. */
    for (size_t i = 0; i < db->replica_count; i++) {
        if (open_reachable(db, &db->replicas[i], i + 1 == db->replica_count, out, err) == 0) {
            if (i > 0)
                log_warn("using replica '%s': the ones before it are unreachable", db->replicas[i].name);
            return 0;
        }
        if (i + 1 < db->replica_count)
            log_warn("replica '%s' unusable: %s", db->replicas[i].name, err->msg);
    }
    return -1;
}
