/* targets.h - which databases a command's NAME argument selects.
 *
 * list, verify, retention, restore and drill take a NAME that is a
 * configured database, a database under a `dir:` entry (ENTRY/RELPATH,
 * whether or not its file still exists), the name of a `dir:` entry
 * itself (all of its databases), or a glob over those names (fnmatch,
 * where a star also matches '/': "tenants/" and a star is every database
 * under `tenants`, at any depth). A `dir:` entry's databases are the ones that
 * have backups on its replica (the one --replica names, else the first
 * that answers): deleted ones stay restorable as long as retention keeps
 * them. */
#ifndef TM_TARGETS_H
#define TM_TARGETS_H

#include <stddef.h>

#include "config.h"
#include "error.h"
#include "storage/storage.h"

struct targets {
    const struct config_db **dbs;   /* owned by the config (config_find_db) */
    size_t count;
};

/* pattern NULL: every configured database and every one found under a
 * `dir:` entry. An error when a pattern matches nothing. */
int targets_select(const struct config *cfg, const char *pattern, const char *replica, struct targets *out,
                   struct tm_error *err);
void targets_release(struct targets *t);

/* Walking the selection for a command: each database, and with
 * TARGETS_EACH_REPLICA each of its replicas that `replica` selects (every
 * one when it is NULL). With TARGETS_ONE_REPLICA the replica is chosen
 * when it is opened (targets_open_replica). */
enum targets_walk { TARGETS_ONE_REPLICA, TARGETS_EACH_REPLICA };

struct targets_iter {
    struct targets selected;
    const char *replica;       /* the command's --replica, or NULL */
    enum targets_walk walk;
    size_t next_db, next_replica;
    size_t matched;            /* replicas yielded */
};

#define TARGETS_ANY_REPLICA ((size_t)-1)

int targets_begin(struct targets_iter *it, const struct config *cfg, const char *pattern, const char *replica,
                  enum targets_walk walk, struct tm_error *err);
/* 1 with the next database and replica index (TARGETS_ANY_REPLICA with
 * TARGETS_ONE_REPLICA), 0 at the end. */
int targets_next(struct targets_iter *it, const struct config_db **db, size_t *replica);
/* Releases the selection. -1 with the "no replica" error when a walk
 * over each replica met none that `replica` names. */
int targets_end(struct targets_iter *it, struct tm_error *err);

/* Opens the replica of db that `replica` names (a name or a 0-based
 * index), or with replica NULL the first one that answers (a warning is
 * logged for each one skipped), and proves it answers. An unknown replica
 * is a TM_ERR_NOT_FOUND error worded as targets_no_replica does. */
int targets_open_replica(const struct config_db *db, const char *replica, struct storage **out,
                         struct tm_error *err);

/* The one wording of "this database has no such replica", with its hint;
 * db NULL: none of several databases has it. */
int targets_no_replica(struct tm_error *err, const char *db, const char *replica);

#endif
