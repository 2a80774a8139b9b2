/* storage.h - the one interface every replica backend implements.
 *
 * An archive is a tree of objects named by '/'-separated keys relative to
 * the replica's root ("app/generations/<gen>/segments/<name>"). Callers
 * see only this header; each driver (storage/file.c, storage/s3.c) fills a
 * `static const struct storage_driver` table and a constructor.
 *
 * Most operations are synchronous (restore, list, tools). The daemon
 * uploads with storage_put_file, which a network driver attached to the
 * daemon's event loop (storage_attach) runs without blocking: it returns
 * STORAGE_PENDING and calls back from the loop when the object is stored.
 *
 * Guarantees every driver gives:
 *  - a written object appears whole under its key on write_commit, or not
 *    at all (write_abort, crash, error): readers never see a partial one;
 *  - write_commit returns only once the object is durable;
 *  - list returns the immediate children of a "directory" key, sorted by
 *    name, each with its size (objects) or as a sub-directory. */
#ifndef TM_STORAGE_H
#define TM_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../config.h"
#include "../error.h"
#include "../http.h"

#define STORAGE_PENDING 1

/* Completion of storage_put_file: rc 0 stored, -1 failed (err set). */
typedef void (*storage_done_fn)(void *arg, int rc, const struct tm_error *err);

/* What storage_check found out about a replica. */
struct storage_check {
    int versioning;    /* -1 not applicable, 0 off or suspended, 1 enabled */
    int transient;     /* on failure: a network or server error that may pass */
};

struct storage;
struct storage_writer;
struct storage_reader;

struct storage_entry {
    char *name;        /* child name, no '/' */
    uint64_t size;     /* bytes; 0 for directories */
    int is_dir;
};

struct storage_list {
    struct storage_entry *entries;
    size_t count;
    size_t cap;        /* entries allocated (storage_list_add) */
};

struct storage_driver {
    const char *type;
    int (*write_begin)(void *self, const char *key, void **handle, struct tm_error *err);
    int (*write)(void *handle, const void *data, size_t len, struct tm_error *err);
    int (*write_commit)(void *handle, struct tm_error *err);   /* frees handle */
    void (*write_abort)(void *handle);                           /* frees handle */
    int (*read_begin)(void *self, const char *key, void **handle, struct tm_error *err);
    int (*read)(void *handle, void *buf, size_t len, size_t *got, struct tm_error *err);
    void (*read_end)(void *handle);
    int (*list)(void *self, const char *dir, struct storage_list *out, struct tm_error *err);
    int (*remove)(void *self, const char *key, struct tm_error *err);
    void (*free)(void *self);
    /* Optional (NULL: generic versions in storage.c). */
    int (*put_file)(void *self, const char *key, const char *path, storage_done_fn done,
                    void *arg, struct tm_error *err);
    void (*attach)(void *self, struct http_loop *hl);
    int (*check)(void *self, int patient, struct storage_check *out, struct tm_error *err);
    int (*fetch_files)(void *self, const char *const *keys, const int *fds, size_t count,
                       struct tm_error *err);
    int (*remove_many)(void *self, const char *const *keys, size_t count, struct tm_error *err);
    /* read_begin fetching at most `range` bytes per request (a network
     * driver's ranged GETs): what storage_read_capped uses. */
    int (*read_begin_ranged)(void *self, const char *key, size_t range, void **handle, struct tm_error *err);
};

/* A local-directory replica rooted at `root` (created if missing). */
int storage_file_open(const char *root, struct storage **out, struct tm_error *err);
/* An S3-compatible bucket (credentials resolved as AWS tools do). */
int storage_s3_open(const struct config_replica *cfg, struct storage **out, struct tm_error *err);
/* The replica a configuration entry describes. */
int storage_open_replica(const struct config_replica *cfg, struct storage **out,
                         struct tm_error *err);

/* Wraps a driver's state; used by driver constructors only. */
int storage_new(const struct storage_driver *driver, void *self, const char *description,
                struct storage **out, struct tm_error *err);
void storage_free(struct storage *st);
const char *storage_describe(const struct storage *st);   /* "file:/var/backups/x" */

int storage_write_begin(struct storage *st, const char *key, struct storage_writer **out,
                        struct tm_error *err);
int storage_write(struct storage_writer *w, const void *data, size_t len, struct tm_error *err);
/* Publishes the object atomically and durably; frees w in every case. */
int storage_write_commit(struct storage_writer *w, struct tm_error *err);
void storage_write_abort(struct storage_writer *w);

/* A missing object is an error whose message says "does not exist". */
int storage_read_begin(struct storage *st, const char *key, struct storage_reader **out,
                       struct tm_error *err);
/* *got == 0 means end of object. */
int storage_read(struct storage_reader *r, void *buf, size_t len, size_t *got,
                 struct tm_error *err);
void storage_read_end(struct storage_reader *r);

/* A missing directory lists as empty. */
int storage_list(struct storage *st, const char *dir, struct storage_list *out,
                 struct tm_error *err);
void storage_list_release(struct storage_list *list);
/* Adds a copy of `name` to a listing being made (drivers' list); -1 when
 * out of memory. storage_list_release frees what it added. */
int storage_list_add(struct storage_list *out, const char *name, uint64_t size, int is_dir);
int storage_remove(struct storage *st, const char *key, struct tm_error *err);
/* Several objects, in batches where the driver can (S3 DeleteObjects). */
int storage_remove_many(struct storage *st, const char *const *keys, size_t count, struct tm_error *err);

/* Stores the local file `path` as `key` (same bytes). Returns 0 or -1
 * when done at once (done is not called), or STORAGE_PENDING: done will
 * be called from the event loop. */
int storage_put_file(struct storage *st, const char *key, const char *path, storage_done_fn done,
                     void *arg, struct tm_error *err);
/* Network drivers run their transfers on hl's event loop from now on;
 * the others run each storage_put_file on a thread of its own and report
 * it on that loop (the loop never waits for a disk). */
void storage_attach(struct storage *st, struct http_loop *hl);
/* Reachable, writable, credentials accepted; versioning status. A
 * patient check retries transient errors as long as any request does; an
 * impatient one gives up after a second try (to fail over quickly). */
int storage_check(struct storage *st, int patient, struct storage_check *out, struct tm_error *err);

/* Downloads whole objects into the open files fds[i] (empty, writable),
 * several at once where the driver can. NULL: the driver is local and
 * fetching would only copy (storage_fetch_is_useful). */
int storage_fetch_files(struct storage *st, const char *const *keys, const int *fds, size_t count,
                        struct tm_error *err);
int storage_fetch_is_useful(const struct storage *st);
/* Nanoseconds spent so far fetching from st: in storage_read_begin,
 * storage_read and storage_fetch_files, summed over every thread (a
 * restore's "fetch" phase). */
uint64_t storage_read_ns(const struct storage *st);

/* Whole small object into a malloc'd buffer the caller frees (tests, tools). */
int storage_read_all(struct storage *st, const char *key, uint8_t **data, size_t *len,
                     struct tm_error *err);

/* A small record read from the bucket (a lease, a drill record): the
 * whole object into a malloc'd, NUL-terminated buffer the caller frees,
 * reading at most max + 1 bytes: an object longer than max is refused as
 * corrupt (TM_ERR_CORRUPT, naming it), its size never allocated. A
 * missing object fails with TM_ERR_NOT_FOUND as storage_read_begin does. */
int storage_read_capped(struct storage *st, const char *key, size_t max, char **data, size_t *len,
                        struct tm_error *err);

#endif
