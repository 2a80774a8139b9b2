/* spool.c - objects waiting for replicas, on the database's own disk
 * (spool.h).
 *
 * LAYOUT (one directory per database, the "state directory")
 *
 *   incoming/SEQ.FLAT        an object being written or just written
 *   queue/REPLICA/SEQ.FLAT   hard links: what REPLICA still needs
 *   position                 the end of the archive (text, see below)
 *   tmp/                     snapshot staging (emptied at start-up)
 *   delta-pages              the delta builder's page store (deltas.h; not
 *                            the spool's, it only shares the directory)
 *
 * SEQ is a 16-hex-digit sequence number that only grows (it is kept in
 * the position file), so a queue sorted by name is in the order objects
 * were made; FLAT is the object's key with '/' written as '!'. Each
 * object is stored once: every queue holds a hard link to the same inode,
 * and the object's disk space is freed when the last queue lets go.
 *
 * PUBLISHING is the commit point of the archive, in this order:
 *   1. the object is complete and fsync'd in incoming/ (file storage);
 *   2. the position file is replaced (temp, fsync, rename, fsync dir),
 *      naming the object as `last`;
 *   3. the object is linked into every queue, and the queues fsync'd;
 *   4. incoming/SEQ.FLAT is removed.
 * At start-up, an incoming object that the position names as `last` was
 * published: steps 3-4 are completed. Any other incoming object was never
 * published (no replica has seen it, the tailer never acknowledged its
 * commits, which are still in the WAL): it is deleted and made again.
 * So after a crash at any point the archive continues without a gap and
 * no key is ever given two different contents.
 *
 * POSITION file: "key value" lines: seq, last, generation, next-index,
 * chain (hex), wal (valid salt1 salt2 frame checksum0 checksum1),
 * page-size, last-snapshot (ms; for schedules missed while stopped),
 * last-commit (ms: the generation's newest segment's, for its head),
 * redis (replication id and offset the archive ends at; Redis only),
 * archive (the last published object that is not a head: what
 * spool_last_published names).
 *
 * Heads (NAME/generations/GEN/head, archive.h) are published like any
 * object, after the objects they name, so that a replica, which takes its
 * queue in order, never holds a head naming objects it does not have;
 * they do not move the position. */
#include "spool.h"

#include "../common/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct queue {
    char *name;                /* replica name */
    char *dir;
    char **entries;            /* SEQ.FLAT, oldest first, from head */
    size_t head, count, cap;
};

struct spool {
    char *dir;                         /* heap strings: a sidecar may hold thousands of spools */
    char *incoming_dir;
    struct storage *incoming;
    struct queue *queues;
    size_t queue_count;
    uint64_t next_seq;
    char last[ARCHIVE_NAME_MAX + 24];  /* SEQ.FLAT of the last published object */
    char last_archive[ARCHIVE_NAME_MAX + 24];  /* the same, heads left out ("" if none) */
    int has_position;
    struct spool_position position;
    uint64_t bytes;
    int lock_fd;                       /* flock held while open: one sidecar per spool */
};

static void flatten(const char *key, char *out, size_t len)
{
    snprintf(out, len, "%s", key);
    for (char *p = out; *p; p++)
        if (*p == '/')
            *p = '!';
}

static void unflatten(const char *flat, char *out, size_t len)
{
    snprintf(out, len, "%s", flat);
    for (char *p = out; *p; p++)
        if (*p == '!')
            *p = '/';
}

/* ------------------------------------------------------------- position */

static int position_save(struct spool *sp, struct tm_error *err)
{
    const struct spool_position *p = &sp->position;
    char chain_hex[OBJECT_HASH_BYTES * 2 + 1];
    sodium_bin2hex(chain_hex, sizeof chain_hex, p->chain, sizeof p->chain);
    char text[2048], path[PATH_MAX];
    int len = snprintf(text, sizeof text,
                       "seq %" PRIu64 "\nlast %s\ngeneration %s\nnext-index %" PRIu64 "\nchain %s\n"
                       "wal %u %u %u %u %u %u\npage-size %u\nlast-snapshot %" PRId64 "\nlast-commit %" PRId64 "\n",
                       sp->next_seq, sp->last, p->generation, p->next_index, chain_hex, p->wal.valid,
                       p->wal.salt1, p->wal.salt2, p->wal.frame, p->wal.checksum[0], p->wal.checksum[1],
                       p->page_size, p->last_snapshot_ms, p->last_commit_ms);
    if (sp->last_archive[0] && len > 0 && (size_t)len < sizeof text)
        len += snprintf(text + len, sizeof text - (size_t)len, "archive %s\n", sp->last_archive);
    if (p->replid[0] && len > 0 && (size_t)len < sizeof text)
        len += snprintf(text + len, sizeof text - (size_t)len, "redis %s %" PRIu64 "\n", p->replid, p->repl_offset);
    snprintf(path, sizeof path, "%s/position", sp->dir);
    return fsutil_replace_file(path, text, (size_t)len, err);
}

static int position_load(struct spool *sp, struct tm_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/position", sp->dir);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return errno == ENOENT ? 0 : tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
    struct spool_position *p = &sp->position;
    char line[1024], chain_hex[OBJECT_HASH_BYTES * 2 + 2] = "";
    int fields = 0;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "last-snapshot %" SCNd64, &p->last_snapshot_ms) == 1 ||
            sscanf(line, "last-commit %" SCNd64, &p->last_commit_ms) == 1 ||
            sscanf(line, "redis %40s %" SCNu64, p->replid, &p->repl_offset) == 2)
            continue;   /* optional */
        if (sscanf(line, "seq %" SCNu64, &sp->next_seq) == 1 ||
            sscanf(line, "next-index %" SCNu64, &p->next_index) == 1 ||
            sscanf(line, "page-size %u", &p->page_size) == 1 ||
            sscanf(line, "wal %u %u %u %u %u %u", &p->wal.valid, &p->wal.salt1, &p->wal.salt2,
                   &p->wal.frame, &p->wal.checksum[0], &p->wal.checksum[1]) == 6)
            fields++;
        else if (strncmp(line, "last ", 5) == 0 && ++fields)
            snprintf(sp->last, sizeof sp->last, "%s", line + 5);
        else if (strncmp(line, "archive ", 8) == 0)   /* optional */
            snprintf(sp->last_archive, sizeof sp->last_archive, "%s", line + 8);
        else if (strncmp(line, "generation ", 11) == 0 && ++fields)
            snprintf(p->generation, sizeof p->generation, "%s", line + 11);
        else if (strncmp(line, "chain ", 6) == 0 && ++fields)
            snprintf(chain_hex, sizeof chain_hex, "%s", line + 6);
    }
    fclose(fp);
    if (fields != 7 || sodium_hex2bin(p->chain, sizeof p->chain, chain_hex, strlen(chain_hex), NULL,
                                      NULL, NULL) != 0)
        return tm_error_set(err, "spool position file '%s' is damaged", path);
    sp->has_position = 1;
    return 0;
}

/* ------------------------------------------------------------- queues */

static int queue_push(struct queue *q, const char *name)
{
    if (q->head + q->count == q->cap) {
        if (q->head > 0) {   /* reuse the space of entries already done */
            memmove(q->entries, q->entries + q->head, q->count * sizeof *q->entries);
            q->head = 0;
        }
        if (q->count == q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 64;
            char **bigger = realloc(q->entries, cap * sizeof *bigger);
            if (!bigger)
                return -1;
            q->entries = bigger;
            q->cap = cap;
        }
    }
    if (!(q->entries[q->head + q->count] = strdup(name)))
        return -1;
    q->count++;
    return 0;
}

static int name_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads a queue directory. An object linked into n queues adds 1/n of
 * its size per link, so each object counts once in sp->bytes. */
static int queue_load(struct spool *sp, struct queue *q, struct tm_error *err)
{
    DIR *d = opendir(q->dir);
    if (!d)
        return tm_error_set(err, "cannot open '%s': %s", q->dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", q->dir, e->d_name);
        if (stat(path, &st) != 0)
            continue;
        sp->bytes += (uint64_t)st.st_size / (st.st_nlink ? (uint64_t)st.st_nlink : 1);
        if (queue_push(q, e->d_name) != 0)
            rc = tm_error_set(err, "out of memory");
    }
    closedir(d);
    if (rc == 0 && q->count > 1)
        qsort(q->entries + q->head, q->count, sizeof *q->entries, name_compare);
    return rc;
}

static int link_into_queues(struct spool *sp, const char *name, struct tm_error *err)
{
    char source[PATH_MAX], target[PATH_MAX];
    snprintf(source, sizeof source, "%s/%s", sp->incoming_dir, name);
    for (size_t i = 0; i < sp->queue_count; i++) {
        snprintf(target, sizeof target, "%s/%s", sp->queues[i].dir, name);
        if (link(source, target) != 0 && errno != EEXIST)
            return tm_error_set(err, "cannot link '%s' into '%s': %s", source, sp->queues[i].dir,
                                strerror(errno));
        if (fsutil_fsync_dir(sp->queues[i].dir, err) != 0)
            return -1;
    }
    return 0;
}

/* Completes the publication of the last object or drops unpublished ones. */
static int recover_incoming(struct spool *sp, struct tm_error *err)
{
    DIR *d = opendir(sp->incoming_dir);
    if (!d)
        return tm_error_set(err, "cannot open '%s': %s", sp->incoming_dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", sp->incoming_dir, e->d_name);
        if (sp->has_position && strcmp(e->d_name, sp->last) == 0)
            rc = link_into_queues(sp, e->d_name, err);
        if (rc == 0 && unlink(path) != 0)
            rc = tm_error_set(err, "cannot remove '%s': %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

/* Two sidecars on one spool would interleave objects: the second is
 * refused while the first holds the lock (released by the kernel when
 * the process dies, so kill -9 never leaves a stale lock). */
int spool_take_lock(const char *dir, int *fd_out, struct tm_error *err)
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        tm_error_set(err, "another tidemark process is using the state directory '%s'", dir);
        return tm_error_hint(err, "a sidecar is already running for this database ('tidemark snapshot' talks to it)");
    }
    *fd_out = fd;
    return 0;
}

/* ------------------------------------------------------------- public */

/* Removes the files of a directory (snapshot staging left by a process
 * that died; the queue of a replica no longer configured). */
static void clear_dir(const char *tmp_dir)
{
    DIR *d = opendir(tmp_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[PATH_MAX];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Queues of replicas no longer configured: their links would keep
 * objects on disk for ever. Returns how many were removed. */
static size_t remove_stale_queues(struct spool *sp, const char *const *names, size_t count)
{
    char queue_root[PATH_MAX + 8];
    snprintf(queue_root, sizeof queue_root, "%s/queue", sp->dir);
    DIR *d = opendir(queue_root);
    if (!d)
        return 0;
    size_t removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int known = e->d_name[0] == '.';
        for (size_t i = 0; i < count && !known; i++)
            known = strcmp(e->d_name, names[i]) == 0;
        if (known)
            continue;
        char dir[PATH_MAX + 8 + 256];
        snprintf(dir, sizeof dir, "%s/%s", queue_root, e->d_name);
        clear_dir(dir);   /* unlinks every file in it */
        if (rmdir(dir) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

static int open_queues(struct spool *sp, const char *const *names, size_t count, int *added,
                       struct tm_error *err)
{
    sp->queues = calloc(count, sizeof *sp->queues);
    if (!sp->queues)
        return tm_error_set(err, "out of memory");
    for (size_t i = 0; i < count; i++) {
        struct queue *q = &sp->queues[i];
        sp->queue_count++;
        if (!(q->name = strdup(names[i])))
            return tm_error_set(err, "out of memory");
        if (asprintf(&q->dir, "%s/queue/%s", sp->dir, names[i]) < 0) {
            q->dir = NULL;
            return tm_error_set(err, "out of memory");
        }
        struct stat st;
        if (stat(q->dir, &st) != 0 && sp->has_position)
            *added = 1;
        if (fsutil_make_dirs(q->dir, err) != 0)
            return -1;
    }
    return 0;
}

int spool_open(const char *dir, const char *const *replica_names, size_t replica_count, int lock,
               struct spool **out, int *replica_added, size_t *replicas_removed, struct tm_error *err)
{
    *replica_added = 0;
    *replicas_removed = 0;
    struct spool *sp = calloc(1, sizeof *sp);
    if (!sp)
        return tm_error_set(err, "out of memory");
    sp->lock_fd = -1;
    if (!(sp->dir = strdup(dir)) || asprintf(&sp->incoming_dir, "%s/incoming", dir) < 0) {
        sp->incoming_dir = NULL;
        spool_free(sp);
        return tm_error_set(err, "out of memory");
    }
    char tmp_dir[PATH_MAX];
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tmp", dir);
    int rc = fsutil_make_dirs(sp->incoming_dir, err);
    if (rc == 0 && lock)
        rc = spool_take_lock(dir, &sp->lock_fd, err);
    if (rc == 0)
        rc = fsutil_make_dirs(tmp_dir, err);
    if (rc == 0)
        clear_dir(tmp_dir);
    if (rc == 0)
        rc = position_load(sp, err);
    if (rc == 0) {
        *replicas_removed = remove_stale_queues(sp, replica_names, replica_count);
        rc = open_queues(sp, replica_names, replica_count, replica_added, err);
    }
    if (rc == 0)
        rc = recover_incoming(sp, err);
    for (size_t i = 0; rc == 0 && i < sp->queue_count; i++)
        rc = queue_load(sp, &sp->queues[i], err);
    if (rc == 0)
        rc = storage_file_open(sp->incoming_dir, &sp->incoming, err);
    if (rc != 0) {
        tm_error_prefix(err, "spool '%s': ", dir);
        spool_free(sp);
        return -1;
    }
    *out = sp;
    return 0;
}

void spool_free(struct spool *sp)
{
    if (!sp)
        return;
    if (sp->lock_fd >= 0)
        close(sp->lock_fd);   /* releases the flock */
    for (size_t i = 0; i < sp->queue_count; i++) {
        struct queue *q = &sp->queues[i];
        for (size_t j = q->head; j < q->head + q->count; j++)
            free(q->entries[j]);
        free(q->entries);
        free(q->name);
        free(q->dir);
    }
    free(sp->queues);
    storage_free(sp->incoming);
    free(sp->dir);
    free(sp->incoming_dir);
    free(sp);
}

const char *spool_dir(const struct spool *sp) { return sp->dir; }

int spool_position(const struct spool *sp, struct spool_position *out)
{
    if (!sp->has_position)
        return 0;
    *out = sp->position;
    return 1;
}

struct storage *spool_incoming(struct spool *sp) { return sp->incoming; }

void spool_incoming_name(const struct spool *sp, const char *key, char *out, size_t len)
{
    char flat[ARCHIVE_NAME_MAX];
    flatten(key, flat, sizeof flat);
    snprintf(out, len, "%016" PRIx64 ".%s", sp->next_seq, flat);
}

int spool_adopt(struct spool *sp, const char *written_as, const char *key, struct tm_error *err)
{
    char name[ARCHIVE_NAME_MAX + 24], from[PATH_MAX], to[PATH_MAX];
    spool_incoming_name(sp, key, name, sizeof name);
    if (strcmp(name, written_as) == 0)
        return 0;
    snprintf(from, sizeof from, "%s/%s", sp->incoming_dir, written_as);
    snprintf(to, sizeof to, "%s/%s", sp->incoming_dir, name);
    if (rename(from, to) != 0)
        return tm_error_set(err, "cannot rename spool object '%s': %s", from, strerror(errno));
    return 0;
}

static int is_head(const char *key)
{
    size_t len = strlen(key);
    return len > 5 && strcmp(key + len - 5, "/head") == 0;
}

int spool_publish(struct spool *sp, const char *key, const struct spool_position *pos,
                  struct tm_error *err)
{
    char name[ARCHIVE_NAME_MAX + 24], path[PATH_MAX];
    spool_incoming_name(sp, key, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", sp->incoming_dir, name);
    struct stat st;
    if (stat(path, &st) != 0)
        return tm_error_set(err, "spool object '%s' is missing: %s", path, strerror(errno));
    /* 2. the commit point */
    struct spool_position saved_position = sp->position;
    char saved_last[sizeof sp->last], saved_archive[sizeof sp->last_archive];
    memcpy(saved_last, sp->last, sizeof saved_last);
    memcpy(saved_archive, sp->last_archive, sizeof saved_archive);
    int saved_has = sp->has_position;
    sp->position = *pos;
    snprintf(sp->last, sizeof sp->last, "%s", name);
    if (!is_head(key))
        snprintf(sp->last_archive, sizeof sp->last_archive, "%s", name);
    sp->next_seq++;
    sp->has_position = 1;
    if (position_save(sp, err) != 0) {
        sp->position = saved_position;
        memcpy(sp->last, saved_last, sizeof saved_last);
        memcpy(sp->last_archive, saved_archive, sizeof saved_archive);
        sp->next_seq--;
        sp->has_position = saved_has;
        unlink(path);
        return -1;
    }
    /* 3-4. after the commit point a failure is repaired at the next start;
     * the in-memory queues are updated in any case so uploads go on. */
    int rc = link_into_queues(sp, name, err);
    if (rc == 0 && unlink(path) != 0)
        rc = tm_error_set(err, "cannot remove '%s': %s", path, strerror(errno));
    sp->bytes += (uint64_t)st.st_size;
    for (size_t i = 0; i < sp->queue_count; i++)
        if (queue_push(&sp->queues[i], name) != 0 && rc == 0)
            rc = tm_error_set(err, "out of memory");
    return rc;
}

uint64_t spool_bytes(const struct spool *sp) { return sp->bytes; }

size_t spool_queue_length(const struct spool *sp, size_t replica)
{
    return sp->queues[replica].count;
}

int spool_queue_head(const struct spool *sp, size_t replica, char *key, size_t key_len,
                     char *path, size_t path_len)
{
    const struct queue *q = &sp->queues[replica];
    if (q->count == 0)
        return 0;
    const char *name = q->entries[q->head];
    const char *dot = strchr(name, '.');
    unflatten(dot ? dot + 1 : name, key, key_len);
    snprintf(path, path_len, "%s/%s", q->dir, name);
    return 1;
}

int spool_queue_done(struct spool *sp, size_t replica, struct tm_error *err)
{
    struct queue *q = &sp->queues[replica];
    if (q->count == 0)
        return 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", q->dir, q->entries[q->head]);
    struct stat st;
    if (stat(path, &st) == 0 && st.st_nlink <= 1)
        sp->bytes -= (uint64_t)st.st_size <= sp->bytes ? (uint64_t)st.st_size : sp->bytes;
    if (unlink(path) != 0 && errno != ENOENT)
        return tm_error_set(err, "cannot remove '%s': %s", path, strerror(errno));
    free(q->entries[q->head]);
    q->head++;
    q->count--;
    if (q->count == 0)
        q->head = 0;
    return 0;
}

const char *spool_last_published(const struct spool *sp)
{
    return sp->last_archive[0] ? sp->last_archive : sp->last;
}

uint64_t spool_sequence(const struct spool *sp) { return sp->next_seq; }

int spool_pending(const struct spool *sp, const char *name)
{
    for (size_t i = 0; i < sp->queue_count; i++) {
        const struct queue *q = &sp->queues[i];
        if (q->count && strcmp(q->entries[q->head], name) <= 0)
            return 1;   /* queues are in SEQ order: the head is the oldest */
    }
    return 0;
}

void spool_key_of(const char *name, char *key, size_t len)
{
    const char *dot = strchr(name, '.');
    unflatten(dot ? dot + 1 : name, key, len);
}

int64_t spool_queue_oldest_commit_ms(const struct spool *sp, size_t replica)
{
    const struct queue *q = &sp->queues[replica];
    for (size_t i = q->head; i < q->head + q->count; i++) {
        /* SEQ.NAME!generations!GEN!segments!INDEX-FIRSTMS-LASTMS.seg */
        const char *name = q->entries[i];
        const char *last = strrchr(name, '!');
        size_t len = strlen(name);
        if (!last || len < 4 || strcmp(name + len - 4, ".seg") != 0 || !strstr(name, "!segments!"))
            continue;
        const char *dash = strchr(last, '-');
        return dash ? strtoll(dash + 1, NULL, 10) : 0;
    }
    return 0;
}
