/* page_writer.c - write-back of restored pages (see page_writer.h).
 *
 * Two batches of slots, half of max_bytes each. Slots hold page images;
 * an open-addressing table (twice the slots, linear probing, page number
 * 0 = empty) maps a page number to its slot in the batch being filled.
 * When every slot is taken the batch is handed to a flusher thread, which
 * writes it in page order (so the file is written front to back), each
 * run of consecutive pages with one write from one buffer, while the
 * caller fills the other batch; the table is emptied. A batch is handed
 * over only once the previous one is written, so batches reach the file
 * in order and a later version of a page always lands last. The caller's
 * thread copies pages (user time); the flusher's writes are kernel time:
 * on two cores they overlap. Without a thread (pthread_create failed)
 * batches are written in line. */
#include "page_writer.h"

#include "../common/fsutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* The largest write. Measured on ext4 (Linux 6.18, bench/ 1 GiB restore):
 * pages written 4 KiB at a time cost four times what 64 KiB writes do;
 * but writes much larger than 64 KiB make the page cache use large folios,
 * and every later one-page write into such a folio (the segments' pages,
 * after the snapshot's) walks all its blocks: 1 MiB and 16 MiB writes
 * made the restore's random rewrites three to five times slower. */
#ifndef WRITE_BYTES
#define WRITE_BYTES (64 * 1024)
#endif

/* One set of slots: filled by the caller, or being written out. */
struct batch {
    uint8_t *pages;                 /* capacity x page_size */
    uint32_t *slot_page;            /* page number held by each slot */
    uint32_t *order;                /* slots by page number, when written */
    size_t used;
};

struct page_writer {
    int fd;
    uint32_t page_size;
    size_t capacity;                /* slots per batch */
    struct batch batches[2];
    int filling;                    /* the batch page_writer_put fills */
    uint32_t *table;                /* page number per bucket, 0 = empty (the filling batch's) */
    uint32_t *table_slot;
    size_t table_mask;
    uint64_t pages_put;
    uint8_t *gather;                /* WRITE_BYTES: a run of scattered slots, copied (the flusher's) */
    uint8_t *seen;                  /* one bit per page number put (bit n-1 for page n) */
    size_t seen_bytes;
    /* The flusher thread (none: batches are written in line) */
    int threaded;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int pending;                    /* batch handed over and not written yet, or -1 (under lock) */
    int quit;                       /* under lock */
    int failed;                     /* a write failed: err holds why (under lock) */
    struct tm_error err;
    uint64_t pages_written;         /* under lock */
};

static void *flusher_main(void *arg);

static int batch_alloc(struct batch *b, size_t capacity, uint32_t page_size)
{
    b->pages = malloc(capacity * page_size);
    b->slot_page = malloc(capacity * sizeof *b->slot_page);
    b->order = malloc(capacity * sizeof *b->order);
    return b->pages && b->slot_page && b->order ? 0 : -1;
}

int page_writer_open(int fd, uint32_t page_size, size_t max_bytes, struct page_writer **out,
                     struct tm_error *err)
{
    struct page_writer *pw = calloc(1, sizeof *pw);
    if (!pw)
        return tm_error_set(err, "out of memory");
    pw->fd = fd;
    pw->page_size = page_size;
    pw->pending = -1;
    pw->capacity = max_bytes / 2 / page_size ? max_bytes / 2 / page_size : 1;
    size_t buckets = 1;
    while (buckets < pw->capacity * 2)
        buckets <<= 1;
    pw->table_mask = buckets - 1;
    pw->table = calloc(buckets, sizeof *pw->table);
    pw->table_slot = malloc(buckets * sizeof *pw->table_slot);
    pw->gather = malloc(WRITE_BYTES > page_size ? WRITE_BYTES : page_size);
    if (batch_alloc(&pw->batches[0], pw->capacity, page_size) != 0 ||
        batch_alloc(&pw->batches[1], pw->capacity, page_size) != 0 || !pw->table || !pw->table_slot ||
        !pw->gather) {
        page_writer_free(pw);
        return tm_error_set(err, "out of memory");
    }
    pthread_mutex_init(&pw->lock, NULL);
    pthread_cond_init(&pw->changed, NULL);
    pw->threaded = pthread_create(&pw->thread, NULL, flusher_main, pw) == 0;   /* else: in line */
    *out = pw;
    return 0;
}

void page_writer_free(struct page_writer *pw)
{
    if (!pw)
        return;
    if (pw->threaded) {
        pthread_mutex_lock(&pw->lock);
        pw->quit = 1;
        pthread_cond_broadcast(&pw->changed);
        pthread_mutex_unlock(&pw->lock);
        pthread_join(pw->thread, NULL);
    }
    if (pw->table) {   /* the lock was made */
        pthread_cond_destroy(&pw->changed);
        pthread_mutex_destroy(&pw->lock);
    }
    for (int i = 0; i < 2; i++) {
        free(pw->batches[i].pages);
        free(pw->batches[i].slot_page);
        free(pw->batches[i].order);
    }
    free(pw->table);
    free(pw->table_slot);
    free(pw->seen);
    free(pw->gather);
    free(pw);
}

static size_t bucket_of(const struct page_writer *pw, uint32_t page_number)
{
    return ((size_t)page_number * 2654435761u) & pw->table_mask;
}

static int compare_slots_by_page(const void *a, const void *b, void *ctx)
{
    const uint32_t *slot_page = ctx;
    uint32_t pa = slot_page[*(const uint32_t *)a], pb = slot_page[*(const uint32_t *)b];
    return pa < pb ? -1 : pa > pb;
}

/* Writes the run of consecutive pages held in slots order[0..count-1]
 * (count * page_size <= WRITE_BYTES) with one write: from the slots
 * themselves when they lie one after the other in memory (pages put in
 * order: a snapshot), else gathered into pw->gather. */
static int write_run(struct page_writer *pw, const struct batch *b, const uint32_t *order, size_t count,
                     struct tm_error *err)
{
    uint32_t first_page = b->slot_page[order[0]];
    int contiguous = 1;
    for (size_t i = 1; i < count && contiguous; i++)
        contiguous = order[i] == order[0] + i;
    struct iovec iov = {b->pages + (size_t)order[0] * pw->page_size, count * pw->page_size};
    if (!contiguous) {
        for (size_t i = 0; i < count; i++)
            memcpy(pw->gather + i * pw->page_size, b->pages + (size_t)order[i] * pw->page_size, pw->page_size);
        iov.iov_base = pw->gather;
    }
    if (fsutil_pwritev_all(pw->fd, &iov, 1, (off_t)(first_page - 1) * pw->page_size) != 0)
        return tm_error_set(err, "cannot write the restored file: %s", strerror(errno));
    return 0;
}

/* How many slots from order[start] hold consecutive pages, up to
 * WRITE_BYTES of them. */
static size_t run_length(const struct page_writer *pw, const struct batch *b, const uint32_t *order, size_t start)
{
    size_t max_pages = WRITE_BYTES / pw->page_size ? WRITE_BYTES / pw->page_size : 1;
    uint32_t first_page = b->slot_page[order[start]];
    size_t n = 1;
    while (n < max_pages && start + n < b->used && b->slot_page[order[start + n]] == first_page + n)
        n++;
    return n;
}

/* Writes batch b in page order and empties it. */
static int write_batch(struct page_writer *pw, struct batch *b, struct tm_error *err)
{
    for (size_t i = 0; i < b->used; i++)
        b->order[i] = (uint32_t)i;
    qsort_r(b->order, b->used, sizeof *b->order, compare_slots_by_page, b->slot_page);
    int rc = 0;
    for (size_t start = 0; start < b->used && rc == 0;) {
        size_t count = run_length(pw, b, b->order, start);
        rc = write_run(pw, b, b->order + start, count, err);
        start += count;
    }
    return rc;
}

/* Writes the batch handed over, one at a time, until told to quit. */
static void *flusher_main(void *arg)
{
    struct page_writer *pw = arg;
    pthread_mutex_lock(&pw->lock);
    for (;;) {
        while (pw->pending < 0 && !pw->quit)
            pthread_cond_wait(&pw->changed, &pw->lock);
        if (pw->pending < 0)
            break;
        struct batch *b = &pw->batches[pw->pending];
        int failed = pw->failed;
        pthread_mutex_unlock(&pw->lock);
        struct tm_error err;
        int rc = failed ? 0 : write_batch(pw, b, &err);   /* after a failure nothing more is written */
        pthread_mutex_lock(&pw->lock);
        if (rc != 0 && !pw->failed) {
            pw->failed = 1;
            pw->err = err;
        }
        pw->pages_written += b->used;
        b->used = 0;
        pw->pending = -1;
        pthread_cond_broadcast(&pw->changed);
    }
    pthread_mutex_unlock(&pw->lock);
    return NULL;
}

/* Under the lock: waits for the batch handed over to be written; -1 with
 * err set if any write failed. */
static int wait_written(struct page_writer *pw, struct tm_error *err)
{
    while (pw->pending >= 0)
        pthread_cond_wait(&pw->changed, &pw->lock);
    if (pw->failed) {
        *err = pw->err;
        return -1;
    }
    return 0;
}

/* Hands the filling batch to the flusher (once the previous one is
 * written) and fills the other; in line without a thread. */
static int hand_over(struct page_writer *pw, struct tm_error *err)
{
    struct batch *b = &pw->batches[pw->filling];
    if (!pw->threaded) {
        int rc = write_batch(pw, b, err);
        pw->pages_written += b->used;
        b->used = 0;
        memset(pw->table, 0, (pw->table_mask + 1) * sizeof *pw->table);
        return rc;
    }
    pthread_mutex_lock(&pw->lock);
    int rc = wait_written(pw, err);
    if (rc == 0 && b->used > 0) {
        pw->pending = pw->filling;
        pw->filling ^= 1;
        pthread_cond_broadcast(&pw->changed);
    }
    pthread_mutex_unlock(&pw->lock);
    memset(pw->table, 0, (pw->table_mask + 1) * sizeof *pw->table);
    return rc;
}

int page_writer_flush(struct page_writer *pw, struct tm_error *err)
{
    int rc = hand_over(pw, err);
    if (rc == 0 && pw->threaded) {
        pthread_mutex_lock(&pw->lock);
        rc = wait_written(pw, err);
        pthread_mutex_unlock(&pw->lock);
    }
    return rc;
}

/* Notes that page_number was put (the bitmap grows by doubling). */
static int mark_seen(struct page_writer *pw, uint32_t page_number, struct tm_error *err)
{
    size_t byte = (page_number - 1) / 8;
    if (byte >= pw->seen_bytes) {
        size_t bytes = pw->seen_bytes ? pw->seen_bytes : 4096;
        while (bytes <= byte)
            bytes *= 2;
        uint8_t *seen = realloc(pw->seen, bytes);
        if (!seen)
            return tm_error_set(err, "out of memory");
        memset(seen + pw->seen_bytes, 0, bytes - pw->seen_bytes);
        pw->seen = seen;
        pw->seen_bytes = bytes;
    }
    pw->seen[byte] |= (uint8_t)(1u << ((page_number - 1) % 8));
    return 0;
}

uint32_t page_writer_first_missing(const struct page_writer *pw, uint32_t page_count)
{
    for (uint32_t page = 1; page <= page_count; page++) {
        size_t byte = (page - 1) / 8;
        if (byte < pw->seen_bytes && pw->seen[byte] == 0xff && page % 8 == 1 && page + 7 <= page_count) {
            page += 7;   /* a whole byte of pages seen */
            continue;
        }
        if (byte >= pw->seen_bytes || !(pw->seen[byte] & (1u << ((page - 1) % 8))))
            return page;
    }
    return 0;
}

int page_writer_put(struct page_writer *pw, uint32_t page_number, const uint8_t *page,
                    struct tm_error *err)
{
    if (page_number == 0)
        return tm_error_set(err, "page number 0 in the archive");
    if (mark_seen(pw, page_number, err) != 0)
        return -1;
    pw->pages_put++;
    size_t bucket = bucket_of(pw, page_number);
    while (pw->table[bucket] != 0 && pw->table[bucket] != page_number)
        bucket = (bucket + 1) & pw->table_mask;
    struct batch *b = &pw->batches[pw->filling];
    if (pw->table[bucket] == page_number) {        /* a later version of a page held */
        memcpy(b->pages + (size_t)pw->table_slot[bucket] * pw->page_size, page, pw->page_size);
        return 0;
    }
    if (b->used == pw->capacity) {
        if (hand_over(pw, err) != 0)
            return -1;
        b = &pw->batches[pw->filling];
        bucket = bucket_of(pw, page_number);       /* the table is empty now */
    }
    uint32_t slot = (uint32_t)b->used++;
    pw->table[bucket] = page_number;
    pw->table_slot[bucket] = slot;
    b->slot_page[slot] = page_number;
    memcpy(b->pages + (size_t)slot * pw->page_size, page, pw->page_size);
    return 0;
}

uint64_t page_writer_pages_put(const struct page_writer *pw) { return pw->pages_put; }

uint64_t page_writer_pages_written(const struct page_writer *pw)
{
    struct page_writer *locked = (struct page_writer *)pw;   /* the lock only */
    if (!pw->threaded)
        return pw->pages_written;
    pthread_mutex_lock(&locked->lock);
    uint64_t written = pw->pages_written;
    pthread_mutex_unlock(&locked->lock);
    return written;
}
