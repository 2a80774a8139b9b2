/* storage.c - dispatch from the storage interface to a driver's table
 * (storage.h), plus helpers every caller shares. Drivers never see each
 * other; callers never see a driver. */
#include "storage.h"

#include "../http.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_BLOCK (256 * 1024)

/* A driver without put_file (file: a copy and two fsyncs, which a
 * loaded disk can make take hundreds of milliseconds) has its uploads
 * run on a thread each once attached to the loop: the loop hears of the
 * end through an ev_async and calls `done` from there, as for a network
 * driver. */
struct put_job {
    struct storage *st;
    char *key, *path;
    storage_done_fn done;
    void *arg;
    int rc;
    struct tm_error err;
    struct put_job *next;
};

struct storage {
    const struct storage_driver *driver;
    void *self;
    char *description;
    struct ev_loop *loop;            /* set by storage_attach: puts run on threads */
    ev_async puts_done;
    pthread_mutex_t puts_lock;
    struct put_job *finished;        /* newest first, under puts_lock */
    int puts_in_flight;              /* under puts_lock */
    _Atomic uint64_t read_ns;        /* time spent in read_begin, read and fetch_files (any thread) */
};

struct storage_writer {
    const struct storage_driver *driver;
    void *handle;
};

struct storage_reader {
    struct storage *st;
    const struct storage_driver *driver;
    void *handle;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t storage_read_ns(const struct storage *st)
{
    return atomic_load(&st->read_ns);
}

int storage_new(const struct storage_driver *driver, void *self, const char *description,
                struct storage **out, struct tm_error *err)
{
    struct storage *st = calloc(1, sizeof *st);
    if (!st || !(st->description = strdup(description))) {
        free(st);
        driver->free(self);
        return tm_error_set(err, "out of memory");
    }
    st->driver = driver;
    st->self = self;
    *out = st;
    return 0;
}

void storage_free(struct storage *st)
{
    if (!st)
        return;
    if (st->loop) {
        for (;;) {   /* a put still running on its thread uses st */
            pthread_mutex_lock(&st->puts_lock);
            int running = st->puts_in_flight;
            pthread_mutex_unlock(&st->puts_lock);
            if (!running)
                break;
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
        ev_async_stop(st->loop, &st->puts_done);
        while (st->finished) {   /* finished, never reported: nobody waits any more */
            struct put_job *job = st->finished;
            st->finished = job->next;
            free(job->key);
            free(job->path);
            free(job);
        }
        pthread_mutex_destroy(&st->puts_lock);
    }
    st->driver->free(st->self);
    free(st->description);
    free(st);
}

const char *storage_describe(const struct storage *st) { return st->description; }

int storage_write_begin(struct storage *st, const char *key, struct storage_writer **out,
                        struct tm_error *err)
{
    struct storage_writer *w = calloc(1, sizeof *w);
    if (!w)
        return tm_error_set(err, "out of memory");
    w->driver = st->driver;
    if (st->driver->write_begin(st->self, key, &w->handle, err) != 0) {
        free(w);
        return -1;
    }
    *out = w;
    return 0;
}

int storage_write(struct storage_writer *w, const void *data, size_t len, struct tm_error *err)
{
    return w->driver->write(w->handle, data, len, err);
}

int storage_write_commit(struct storage_writer *w, struct tm_error *err)
{
    int rc = w->driver->write_commit(w->handle, err);
    free(w);
    return rc;
}

void storage_write_abort(struct storage_writer *w)
{
    if (!w)
        return;
    w->driver->write_abort(w->handle);
    free(w);
}

int storage_read_begin(struct storage *st, const char *key, struct storage_reader **out,
                       struct tm_error *err)
{
    struct storage_reader *r = calloc(1, sizeof *r);
    if (!r)
        return tm_error_set(err, "out of memory");
    r->st = st;
    r->driver = st->driver;
    uint64_t start = now_ns();
    int rc = st->driver->read_begin(st->self, key, &r->handle, err);
    atomic_fetch_add(&st->read_ns, now_ns() - start);
    if (rc != 0) {
        free(r);
        return -1;
    }
    *out = r;
    return 0;
}

int storage_read(struct storage_reader *r, void *buf, size_t len, size_t *got,
                 struct tm_error *err)
{
    uint64_t start = now_ns();
    int rc = r->driver->read(r->handle, buf, len, got, err);
    atomic_fetch_add(&r->st->read_ns, now_ns() - start);
    return rc;
}

void storage_read_end(struct storage_reader *r)
{
    if (!r)
        return;
    r->driver->read_end(r->handle);
    free(r);
}

static int entry_compare(const void *a, const void *b)
{
    return strcmp(((const struct storage_entry *)a)->name,
                  ((const struct storage_entry *)b)->name);
}

int storage_list(struct storage *st, const char *dir, struct storage_list *out,
                 struct tm_error *err)
{
    memset(out, 0, sizeof *out);
    if (st->driver->list(st->self, dir, out, err) != 0)
        return -1;
    if (out->count > 1)
        qsort(out->entries, out->count, sizeof *out->entries, entry_compare);
    return 0;
}

void storage_list_release(struct storage_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->entries[i].name);
    free(list->entries);
    list->entries = NULL;
    list->count = 0;
    list->cap = 0;
}

int storage_list_add(struct storage_list *out, const char *name, uint64_t size, int is_dir)
{
    if (out->count == out->cap) {
        size_t bigger = out->cap ? out->cap * 2 : 64;
        struct storage_entry *grown = realloc(out->entries, bigger * sizeof *grown);
        if (!grown)
            return -1;
        out->entries = grown;
        out->cap = bigger;
    }
    struct storage_entry *e = &out->entries[out->count];
    if (!(e->name = strdup(name)))
        return -1;
    e->size = size;
    e->is_dir = is_dir;
    out->count++;
    return 0;
}

int storage_remove(struct storage *st, const char *key, struct tm_error *err)
{
    return st->driver->remove(st->self, key, err);
}

int storage_remove_many(struct storage *st, const char *const *keys, size_t count, struct tm_error *err)
{
    if (st->driver->remove_many)
        return st->driver->remove_many(st->self, keys, count, err);
    for (size_t i = 0; i < count; i++)
        if (st->driver->remove(st->self, keys[i], err) != 0)
            return tm_error_prefix(err, "deleting '%s': ", keys[i]);
    return 0;
}

int storage_read_all(struct storage *st, const char *key, uint8_t **data, size_t *len,
                     struct tm_error *err)
{
    struct storage_reader *r;
    if (storage_read_begin(st, key, &r, err) != 0)
        return -1;
    size_t cap = 65536, used = 0, got;
    uint8_t *buf = malloc(cap);
    int rc = buf ? 0 : tm_error_set(err, "out of memory");
    while (rc == 0) {
        if (used == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                rc = tm_error_set(err, "out of memory");
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        rc = storage_read(r, buf + used, cap - used, &got, err);
        if (rc == 0 && got == 0)
            break;
        used += got;
    }
    storage_read_end(r);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    *data = buf;
    *len = used;
    return 0;
}

int storage_read_capped(struct storage *st, const char *key, size_t max, char **data, size_t *len,
                        struct tm_error *err)
{
    struct storage_reader *r = NULL;
    if (!st->driver->read_begin_ranged) {
        if (storage_read_begin(st, key, &r, err) != 0)
            return -1;
    } else {   /* a network driver: no byte past max + 1 is fetched */
        if (!(r = calloc(1, sizeof *r)))
            return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
        r->st = st;
        r->driver = st->driver;
        if (st->driver->read_begin_ranged(st->self, key, max + 1, &r->handle, err) != 0) {
            free(r);
            return -1;
        }
    }
    char *buf = malloc(max + 2);   /* max + 1 bytes read at most, and a NUL */
    size_t used = 0, got = 1;
    int rc = buf ? 0 : tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    while (rc == 0 && got > 0 && used <= max) {
        rc = storage_read(r, buf + used, max + 1 - used, &got, err);
        if (rc == 0)
            used += got;
    }
    storage_read_end(r);
    if (rc == 0 && used > max)
        rc = tm_error_setc(err, TM_ERR_CORRUPT, "object '%s' is corrupt: larger than the %zu bytes such a record can hold",
                           key, max);
    if (rc != 0) {
        free(buf);
        return -1;
    }
    buf[used] = '\0';
    *data = buf;
    *len = used;
    return 0;
}

int storage_open_replica(const struct config_replica *cfg, struct storage **out,
                         struct tm_error *err)
{
    if (cfg->type == REPLICA_S3)
        return storage_s3_open(cfg, out, err);
    return storage_file_open(cfg->path, out, err);
}

/* Generic put_file: stream the file through the driver's writer. */
static int copy_file(struct storage *st, const char *key, const char *path, struct tm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
    uint8_t *block = malloc(COPY_BLOCK);
    struct storage_writer *w = NULL;
    int rc = block ? storage_write_begin(st, key, &w, err) : tm_error_set(err, "out of memory");
    while (rc == 0) {
        ssize_t got = read(fd, block, COPY_BLOCK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = tm_error_set(err, "cannot read '%s': %s", path, strerror(errno));
        else if (got == 0)
            break;
        else
            rc = storage_write(w, block, (size_t)got, err);
    }
    close(fd);
    free(block);
    if (rc != 0) {
        storage_write_abort(w);
        return -1;
    }
    return storage_write_commit(w, err);
}

static void *put_on_thread(void *arg)
{
    struct put_job *job = arg;
    struct storage *st = job->st;
    job->rc = copy_file(st, job->key, job->path, &job->err);
    pthread_mutex_lock(&st->puts_lock);
    job->next = st->finished;
    st->finished = job;
    st->puts_in_flight--;
    /* under the lock: once it is released, storage_free may free st */
    ev_async_send(st->loop, &st->puts_done);
    pthread_mutex_unlock(&st->puts_lock);
    return NULL;
}

/* On the loop: report the puts whose thread finished, oldest first. */
static void on_puts_done(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct storage *st = w->data;
    pthread_mutex_lock(&st->puts_lock);
    struct put_job *newest_first = st->finished, *oldest_first = NULL;
    st->finished = NULL;
    pthread_mutex_unlock(&st->puts_lock);
    while (newest_first) {
        struct put_job *job = newest_first;
        newest_first = job->next;
        job->next = oldest_first;
        oldest_first = job;
    }
    while (oldest_first) {
        struct put_job *job = oldest_first;
        oldest_first = job->next;
        job->done(job->arg, job->rc == 0 ? 0 : -1, &job->err);
        free(job->key);
        free(job->path);
        free(job);
    }
}

static int put_file_on_thread(struct storage *st, const char *key, const char *path, storage_done_fn done,
                              void *arg, struct tm_error *err)
{
    struct put_job *job = calloc(1, sizeof *job);
    if (!job || !(job->key = strdup(key)) || !(job->path = strdup(path))) {
        if (job)
            free(job->key);
        free(job);
        return tm_error_set(err, "out of memory");
    }
    *job = (struct put_job){.st = st, .key = job->key, .path = job->path, .done = done, .arg = arg};
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&st->puts_lock);
    st->puts_in_flight++;
    int started = pthread_create(&thread, &attr, put_on_thread, job) == 0;
    if (!started)
        st->puts_in_flight--;
    pthread_mutex_unlock(&st->puts_lock);
    pthread_attr_destroy(&attr);
    if (started)
        return STORAGE_PENDING;
    free(job->key);
    free(job->path);
    free(job);
    return copy_file(st, key, path, err);   /* no thread: here and now */
}

int storage_put_file(struct storage *st, const char *key, const char *path, storage_done_fn done,
                     void *arg, struct tm_error *err)
{
    if (st->driver->put_file)
        return st->driver->put_file(st->self, key, path, done, arg, err);
    if (st->loop)
        return put_file_on_thread(st, key, path, done, arg, err);
    return copy_file(st, key, path, err);
}

void storage_attach(struct storage *st, struct http_loop *hl)
{
    if (st->driver->attach)
        st->driver->attach(st->self, hl);
    if (st->driver->put_file || st->loop)
        return;
    st->loop = http_loop_ev(hl);
    pthread_mutex_init(&st->puts_lock, NULL);
    ev_async_init(&st->puts_done, on_puts_done);
    st->puts_done.data = st;
    ev_async_start(st->loop, &st->puts_done);
}

int storage_check(struct storage *st, int patient, struct storage_check *out, struct tm_error *err)
{
    out->versioning = -1;
    out->transient = 0;
    if (st->driver->check)
        return st->driver->check(st->self, patient, out, err);
    struct storage_list list;   /* a listing proves the replica is readable */
    if (storage_list(st, "", &list, err) != 0)
        return -1;
    storage_list_release(&list);
    return 0;
}

int storage_fetch_is_useful(const struct storage *st)
{
    return st->driver->fetch_files != NULL;
}

/* Generic fetch: one object after the other through the reader. */
static int fetch_one(struct storage *st, const char *key, int fd, struct tm_error *err)
{
    struct storage_reader *r;
    if (storage_read_begin(st, key, &r, err) != 0)
        return -1;
    uint8_t *block = malloc(COPY_BLOCK);
    int rc = block ? 0 : tm_error_set(err, "out of memory");
    size_t got;
    while (rc == 0 && (rc = storage_read(r, block, COPY_BLOCK, &got, err)) == 0 && got > 0)
        for (size_t done = 0; rc == 0 && done < got;) {
            ssize_t put = write(fd, block + done, got - done);
            if (put < 0 && errno != EINTR)
                rc = tm_error_set(err, "cannot write the copy of '%s': %s", key, strerror(errno));
            else if (put > 0)
                done += (size_t)put;
        }
    free(block);
    storage_read_end(r);
    return rc;
}

int storage_fetch_files(struct storage *st, const char *const *keys, const int *fds, size_t count,
                        struct tm_error *err)
{
    if (st->driver->fetch_files) {
        uint64_t start = now_ns();
        int rc = st->driver->fetch_files(st->self, keys, fds, count, err);
        atomic_fetch_add(&st->read_ns, now_ns() - start);
        return rc;
    }
    for (size_t i = 0; i < count; i++)
        if (fetch_one(st, keys[i], fds[i], err) != 0)
            return -1;
    return 0;
}
