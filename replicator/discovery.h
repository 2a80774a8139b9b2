/* discovery.h - the databases of one `dir:` entry: found by walking the
 * directory (and its sub-directories with `recursive`), then followed
 * through inotify as they are created, written and deleted.
 *
 * The sidecar shares one inotify descriptor between every entry and
 * database; the loop hands each event to tenants.c, which offers it to
 * discovery_handle first. Each watched directory costs one inotify watch
 * (no descriptor), whatever the number of databases in it, and every event
 * names the file: a write to TENANT.db-wal wakes that database and no
 * other. */
#ifndef TM_DISCOVERY_H
#define TM_DISCOVERY_H

#include <stddef.h>
#include <sys/inotify.h>

#include "../common/config.h"
#include "../common/error.h"

struct discovery;

struct discovery_events {
    /* A file that matches the pattern and is not tracked: the callee
     * calls discovery_track if it is a database it now follows. */
    void (*found)(void *arg, const char *relpath);
    /* A tracked database's file was deleted or moved away. */
    void (*deleted)(void *arg, void *db);
    /* A tracked database's WAL was written (or created). */
    void (*written)(void *arg, void *db);
    /* Events were lost (the kernel's queue overflowed): walk again, and
     * treat every database as written. */
    void (*overflow)(void *arg);
};

int discovery_open(const struct config_db *entry, int inotify_fd, const struct discovery_events *events,
                   void *arg, struct discovery **out, struct tm_error *err);
void discovery_free(struct discovery *d);

/* Walks the tree: `found` for every matching file not tracked yet,
 * watches for every directory. Also the periodic safety net. */
int discovery_scan(struct discovery *d, struct tm_error *err);

/* Follows database `db` at relpath (events now name it); untrack forgets
 * it (after `deleted`, or when it is released for good). */
int discovery_track(struct discovery *d, const char *relpath, void *db, struct tm_error *err);
void discovery_untrack(struct discovery *d, const char *relpath);

/* 1 when the event belongs to this entry's directories (and was acted
 * on), else 0. IN_Q_OVERFLOW is for every entry: the caller calls
 * discovery_overflow on each. */
int discovery_handle(struct discovery *d, const struct inotify_event *ev);
void discovery_overflow(struct discovery *d);

#endif
