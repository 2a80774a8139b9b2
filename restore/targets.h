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

#include "../common/config.h"
#include "../common/error.h"

struct targets {
    const struct config_db **dbs;   /* owned by the config (config_find_db) */
    size_t count;
};

/* pattern NULL: every configured database and every one found under a
 * `dir:` entry. An error when a pattern matches nothing. */
int targets_select(const struct config *cfg, const char *pattern, const char *replica, struct targets *out,
                   struct tm_error *err);
void targets_release(struct targets *t);

#endif
