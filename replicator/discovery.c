/* discovery.c - finding and following the databases of a `dir:` entry
 * (discovery.h).
 *
 * Two maps: watched directories by inotify watch descriptor (a sorted
 * array: descriptors only grow), and tracked files by relative path (a
 * chained hash table). A tracked path maps to the database the sidecar
 * follows, or to NULL: a file that matched the pattern but was not a
 * database in WAL mode when offered (empty, being created, rollback
 * journal). Such a file is offered again when it or its WAL is created,
 * and at every walk, but not on each of its writes.
 *
 * What an event on a watched directory means, by the name it carries:
 *   NAME-wal written              the database NAME was written
 *   NAME created or moved in      a new database (offered), or a tracked
 *                                 one replaced (treated as written: the
 *                                 tailer sees the new file)
 *   NAME deleted or moved away    the database is gone
 *   DIR created (recursive)       watched and walked
 *   DIR moved away                every database under it is gone
 * Directories whose name starts with '.' are not walked, nor is the
 * entry's own state directory. */
#include "discovery.h"

#include "../common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WATCH_MASK (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MODIFY | IN_ONLYDIR)

struct watched_dir {
    int wd;
    char *relpath;             /* "" for the entry's directory */
};

struct tracked {
    char *relpath;
    void *db;                  /* NULL: matched, but not a database when offered */
    struct tracked *next;
};

struct discovery {
    const struct config_db *entry;
    int inotify_fd;
    struct discovery_events events;
    void *arg;
    struct watched_dir *dirs;  /* sorted by wd */
    size_t dir_count, dir_cap;
    struct tracked **buckets;
    size_t bucket_count, tracked_count;
};

/* ------------------------------------------------------------ the maps */

static size_t hash_path(const char *relpath, size_t buckets)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)relpath; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % buckets);
}

static struct tracked *find_tracked(const struct discovery *d, const char *relpath)
{
    for (struct tracked *t = d->buckets[hash_path(relpath, d->bucket_count)]; t; t = t->next)
        if (strcmp(t->relpath, relpath) == 0)
            return t;
    return NULL;
}

static int grow_buckets(struct discovery *d)
{
    size_t count = d->bucket_count * 2;
    struct tracked **buckets = calloc(count, sizeof *buckets);
    if (!buckets)
        return -1;
    for (size_t i = 0; i < d->bucket_count; i++)
        for (struct tracked *t = d->buckets[i], *next; t; t = next) {
            next = t->next;
            size_t slot = hash_path(t->relpath, count);
            t->next = buckets[slot];
            buckets[slot] = t;
        }
    free(d->buckets);
    d->buckets = buckets;
    d->bucket_count = count;
    return 0;
}

int discovery_track(struct discovery *d, const char *relpath, void *db, struct tm_error *err)
{
    struct tracked *t = find_tracked(d, relpath);
    if (t) {
        t->db = db;
        return 0;
    }
    if (d->tracked_count >= d->bucket_count && grow_buckets(d) != 0)
        return tm_error_set(err, "out of memory");
    t = calloc(1, sizeof *t);
    if (!t || !(t->relpath = strdup(relpath))) {
        free(t);
        return tm_error_set(err, "out of memory");
    }
    t->db = db;
    size_t slot = hash_path(relpath, d->bucket_count);
    t->next = d->buckets[slot];
    d->buckets[slot] = t;
    d->tracked_count++;
    return 0;
}

void discovery_untrack(struct discovery *d, const char *relpath)
{
    for (struct tracked **link = &d->buckets[hash_path(relpath, d->bucket_count)]; *link; link = &(*link)->next) {
        struct tracked *t = *link;
        if (strcmp(t->relpath, relpath) != 0)
            continue;
        *link = t->next;
        free(t->relpath);
        free(t);
        d->tracked_count--;
        return;
    }
}

static struct watched_dir *find_dir(const struct discovery *d, int wd)
{
    size_t low = 0, high = d->dir_count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (d->dirs[mid].wd == wd)
            return &d->dirs[mid];
        if (d->dirs[mid].wd < wd)
            low = mid + 1;
        else
            high = mid;
    }
    return NULL;
}

static int add_dir(struct discovery *d, int wd, const char *relpath, struct tm_error *err)
{
    struct watched_dir *known = find_dir(d, wd);
    char *copy = strdup(relpath);
    if (!copy)
        return tm_error_set(err, "out of memory");
    if (known) {   /* the same directory again (a walk), or moved */
        free(known->relpath);
        known->relpath = copy;
        return 0;
    }
    if (d->dir_count == d->dir_cap) {
        size_t cap = d->dir_cap ? d->dir_cap * 2 : 8;
        struct watched_dir *grown = realloc(d->dirs, cap * sizeof *grown);
        if (!grown) {
            free(copy);
            return tm_error_set(err, "out of memory");
        }
        d->dirs = grown;
        d->dir_cap = cap;
    }
    size_t at = d->dir_count;
    while (at > 0 && d->dirs[at - 1].wd > wd)
        at--;
    memmove(&d->dirs[at + 1], &d->dirs[at], (d->dir_count - at) * sizeof *d->dirs);
    d->dirs[at] = (struct watched_dir){.wd = wd, .relpath = copy};
    d->dir_count++;
    return 0;
}

static void remove_dir(struct discovery *d, struct watched_dir *dir)
{
    free(dir->relpath);
    size_t at = (size_t)(dir - d->dirs);
    memmove(dir, dir + 1, (d->dir_count - at - 1) * sizeof *dir);
    d->dir_count--;
}

/* ------------------------------------------------------------ the walk */

static int ends_with(const char *name, const char *suffix)
{
    size_t len = strlen(name), suffix_len = strlen(suffix);
    return len >= suffix_len && strcmp(name + len - suffix_len, suffix) == 0;
}

/* A database's file name: the pattern, and not one of SQLite's own files. */
static int is_candidate(const struct discovery *d, const char *name)
{
    return fnmatch(d->entry->pattern, name, FNM_PERIOD) == 0 && !ends_with(name, "-wal") &&
           !ends_with(name, "-shm") && !ends_with(name, "-journal");
}

static void join(const char *dir, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s%s%s", dir, dir[0] ? "/" : "", name);
}

static void offer(struct discovery *d, const char *relpath)
{
    const struct tracked *t = find_tracked(d, relpath);
    if (!t || !t->db)
        d->events.found(d->arg, relpath);
}

static int walk(struct discovery *d, const char *relpath, struct tm_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", d->entry->dir, relpath[0] ? "/" : "", relpath);
    if (strcmp(path, d->entry->state_dir) == 0)
        return 0;
    int wd = inotify_add_watch(d->inotify_fd, path, WATCH_MASK);
    if (wd < 0) {
        tm_error_set(err, "cannot watch directory '%s': %s", path, strerror(errno));
        if (errno == ENOSPC)
            tm_error_hint(err, "raise fs.inotify.max_user_watches (sysctl): one watch per directory");
        return -1;
    }
    if (add_dir(d, wd, relpath, err) != 0)
        return -1;
    DIR *listing = opendir(path);
    if (!listing)
        return tm_error_set(err, "cannot list directory '%s': %s", path, strerror(errno));
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(listing));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        char child[PATH_MAX];
        join(relpath, e->d_name, child, sizeof child);
        int is_dir = e->d_type == DT_DIR, is_file = e->d_type == DT_REG;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            char full[PATH_MAX * 2];
            snprintf(full, sizeof full, "%s/%s", path, e->d_name);
            is_dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
            is_file = !is_dir;
        }
        if (is_dir && d->entry->recursive && e->d_name[0] != '.')
            rc = walk(d, child, err);
        else if (is_file && is_candidate(d, e->d_name))
            offer(d, child);
    }
    closedir(listing);
    return rc;
}

int discovery_scan(struct discovery *d, struct tm_error *err)
{
    return walk(d, "", err);
}

/* --------------------------------------------------------------- events */

/* A directory moved away: every database under it is gone. */
static void directory_gone(struct discovery *d, const char *relpath)
{
    size_t len = strlen(relpath);
    for (size_t i = 0; i < d->bucket_count; i++)
        for (struct tracked *t = d->buckets[i], *next; t; t = next) {
            next = t->next;
            if (strncmp(t->relpath, relpath, len) != 0 || t->relpath[len] != '/')
                continue;
            if (t->db)
                d->events.deleted(d->arg, t->db);
            else
                discovery_untrack(d, t->relpath);
        }
}

static void wal_event(struct discovery *d, const char *relpath, uint32_t mask)
{
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(relpath) - 4), relpath);
    const struct tracked *t = find_tracked(d, base);
    if (t && t->db) {
        /* only a write counts: opening a database creates its WAL (the
         * sidecar's own wakes would wake it again) */
        if (mask & IN_MODIFY)
            d->events.written(d->arg, t->db);
        return;
    }
    const char *name = strrchr(base, '/');
    name = name ? name + 1 : base;
    if ((mask & (IN_CREATE | IN_MOVED_TO)) && is_candidate(d, name))
        d->events.found(d->arg, base);   /* a database gets its WAL */
}

static void file_event(struct discovery *d, const char *relpath, uint32_t mask)
{
    const struct tracked *t = find_tracked(d, relpath);
    if (mask & (IN_DELETE | IN_MOVED_FROM)) {
        if (t && t->db)
            d->events.deleted(d->arg, t->db);
        else if (t)
            discovery_untrack(d, relpath);
        return;
    }
    if (t && t->db) {
        if (mask & (IN_CREATE | IN_MOVED_TO))
            d->events.written(d->arg, t->db);   /* replaced: the tailer checks */
        return;
    }
    if ((mask & (IN_CREATE | IN_MOVED_TO)) || (!t && (mask & IN_MODIFY)))
        d->events.found(d->arg, relpath);
}

int discovery_handle(struct discovery *d, const struct inotify_event *ev)
{
    struct watched_dir *dir = find_dir(d, ev->wd);
    if (!dir)
        return 0;
    if (ev->mask & IN_IGNORED) {
        remove_dir(d, dir);
        return 1;
    }
    if (!ev->len || !ev->name[0])
        return 1;
    char relpath[PATH_MAX];
    join(dir->relpath, ev->name, relpath, sizeof relpath);
    if (ev->mask & IN_ISDIR) {
        struct tm_error err;
        if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && d->entry->recursive && ev->name[0] != '.' &&
            walk(d, relpath, &err) != 0)
            log_event(LOG_ERROR, d->entry->name, NULL, "%s", err.msg);
        if (ev->mask & (IN_MOVED_FROM | IN_DELETE))
            directory_gone(d, relpath);
        return 1;
    }
    if (ends_with(ev->name, "-wal"))
        wal_event(d, relpath, ev->mask);
    else if (is_candidate(d, ev->name))
        file_event(d, relpath, ev->mask);
    return 1;
}

void discovery_overflow(struct discovery *d)
{
    struct tm_error err;
    if (discovery_scan(d, &err) != 0)
        log_event(LOG_ERROR, d->entry->name, NULL, "%s", err.msg);
    d->events.overflow(d->arg);
}

/* ------------------------------------------------------------ lifetime */

int discovery_open(const struct config_db *entry, int inotify_fd, const struct discovery_events *events,
                   void *arg, struct discovery **out, struct tm_error *err)
{
    struct discovery *d = calloc(1, sizeof *d);
    if (!d)
        return tm_error_set(err, "out of memory");
    *d = (struct discovery){.entry = entry, .inotify_fd = inotify_fd, .events = *events, .arg = arg,
                            .bucket_count = 64};
    if (!(d->buckets = calloc(d->bucket_count, sizeof *d->buckets))) {
        free(d);
        return tm_error_set(err, "out of memory");
    }
    *out = d;
    return 0;
}

void discovery_free(struct discovery *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->dir_count; i++) {
        inotify_rm_watch(d->inotify_fd, d->dirs[i].wd);
        free(d->dirs[i].relpath);
    }
    free(d->dirs);
    for (size_t i = 0; i < d->bucket_count; i++)
        for (struct tracked *t = d->buckets[i], *next; t; t = next) {
            next = t->next;
            free(t->relpath);
            free(t);
        }
    free(d->buckets);
    free(d);
}
