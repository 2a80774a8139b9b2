/* storage/s3_read_ahead.c - an object's next ranges fetched on a thread
 * of their own while the reader decodes the current one.
 *
 * A read (storage/s3.c) fetches an object in ranges of READ_CHUNK bytes,
 * one GET after the other. A restore from S3 decodes each range
 * (authenticates, decrypts, decompresses) before asking for the next, so
 * the network and the CPU took turns: at 1 GiB, 0.71 s of fetching then
 * 0.64 s of decoding, one after the other (docs/performance.md). Once the
 * first range shows an object of more than one range, a thread fetches the
 * next READ_AHEAD_RANGES ranges on a connection of its own (its own curl
 * handle: a handle is never shared between threads), each into a slot;
 * the reader takes them in order and hands the slot's buffer back.
 * Memory stays bounded: READ_AHEAD_RANGES ranges more per object read.
 *
 * Errors travel in order: a range that failed (after the usual retries)
 * is the reader's error when it reaches that range, never before, and the
 * thread fetches nothing after it. Stopping (the reader closed early, a
 * restore that failed) is seen between attempts and between ranges; a
 * range being transferred is finished first.
 *
 * The thread reads only the endpoint (fixed once the storage is open),
 * the key, the sizes, and its slots under the lock. */
#include "s3_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define READ_AHEAD_RANGES 2

enum slot_state { SLOT_FREE, SLOT_READY, SLOT_FAILED };

struct range_slot {
    struct buffer data;
    enum slot_state state;
    struct tm_error err;
};

struct s3_read_ahead {
    struct s3_endpoint *ep;
    char *key;
    uint64_t total;                 /* the object's size */
    size_t range;                   /* bytes per GET */
    CURL *easy;                     /* the thread's */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    /* under lock */
    int stop;
    uint64_t next_offset;           /* of the next range the thread fetches */
    struct range_slot slots[READ_AHEAD_RANGES];   /* range k in slot k % READ_AHEAD_RANGES */
};

static int stopping(struct s3_read_ahead *a)
{
    pthread_mutex_lock(&a->lock);
    int stop = a->stop;
    pthread_mutex_unlock(&a->lock);
    return stop;
}

/* GETs the range at `offset` into `into`, retried as any request, but
 * given up between attempts once stopping. 0 or -1 with err set. */
static int fetch_range(struct s3_read_ahead *a, uint64_t offset, struct buffer *into, struct tm_error *err)
{
    char range[64];
    snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)offset,
             (unsigned long long)(offset + a->range - 1));
    struct response resp = {.error_body = {.max = S3_ERROR_BODY_MAX}, .sink = into};
    into->max = a->range;
    int rc = -2;
    for (int attempt = 0; rc == -2 && attempt < S3_RETRY_ATTEMPTS; attempt++) {
        if (attempt > 0) {
            unsigned delay = s3_retry_delay_ms(attempt - 1);
            struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (stopping(a)) {
            rc = tm_error_set(err, "%s: reading '%s' was stopped", a->ep->display, a->key);
            break;
        }
        struct request req = {.method = "GET", .key = a->key, .range = range, .body = {.fd = -1}};
        rc = s3_perform_tries(a->ep, a->easy, &req, &resp, 1, err);
    }
    free(resp.error_body.data);
    if (rc != 0)
        return -1;
    if (resp.status != 206 || into->len == 0)
        return tm_error_set(err, "%s: object '%s' ended early (or changed) at byte %llu", a->ep->display, a->key,
                            (unsigned long long)offset);
    return 0;
}

static void *read_ahead_thread(void *arg)
{
    struct s3_read_ahead *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!a->stop && a->next_offset < a->total) {
        struct range_slot *slot = &a->slots[(a->next_offset / a->range) % READ_AHEAD_RANGES];
        if (slot->state != SLOT_FREE) {
            pthread_cond_wait(&a->changed, &a->lock);
            continue;
        }
        uint64_t offset = a->next_offset;
        pthread_mutex_unlock(&a->lock);
        struct tm_error err;
        s3_buffer_reset(&slot->data);   /* the slot is the thread's while free */
        int rc = fetch_range(a, offset, &slot->data, &err);
        pthread_mutex_lock(&a->lock);
        slot->state = rc == 0 ? SLOT_READY : SLOT_FAILED;
        if (rc != 0) {
            slot->err = err;
            a->stop = 1;   /* nothing after a failed range */
        }
        a->next_offset += a->range;
        pthread_cond_broadcast(&a->changed);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

int s3_read_ahead_start(struct s3_endpoint *ep, const char *key, uint64_t first_offset, uint64_t total,
                        size_t range, struct s3_read_ahead **out, struct tm_error *err)
{
    struct s3_read_ahead *a = calloc(1, sizeof *a);
    if (!a)
        return tm_error_set(err, "out of memory");
    a->ep = ep;
    a->total = total;
    a->range = range;
    a->next_offset = first_offset;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->changed, NULL);
    if (!(a->key = strdup(key)) || !(a->easy = curl_easy_init())) {
        s3_read_ahead_free(a);
        return tm_error_set(err, "out of memory");
    }
    int rc = pthread_create(&a->thread, NULL, read_ahead_thread, a);
    if (rc != 0) {
        s3_read_ahead_free(a);
        return tm_error_set(err, "cannot start a thread to read '%s': %s", key, strerror(rc));
    }
    a->thread_started = 1;
    *out = a;
    return 0;
}

int s3_read_ahead_take(struct s3_read_ahead *a, uint64_t offset, struct buffer *chunk, struct tm_error *err)
{
    struct range_slot *slot = &a->slots[(offset / a->range) % READ_AHEAD_RANGES];
    pthread_mutex_lock(&a->lock);
    while (slot->state == SLOT_FREE)
        pthread_cond_wait(&a->changed, &a->lock);
    int rc = 0;
    if (slot->state == SLOT_FAILED) {
        *err = slot->err;
        rc = -1;
    } else {
        struct buffer taken = slot->data;   /* the reader's old buffer goes back to the slot */
        slot->data = *chunk;
        *chunk = taken;
        slot->state = SLOT_FREE;
        pthread_cond_broadcast(&a->changed);
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

void s3_read_ahead_free(struct s3_read_ahead *a)
{
    if (!a)
        return;
    if (a->thread_started) {
        pthread_mutex_lock(&a->lock);
        a->stop = 1;
        pthread_cond_broadcast(&a->changed);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->thread, NULL);
    }
    for (size_t i = 0; i < READ_AHEAD_RANGES; i++)
        free(a->slots[i].data.data);
    if (a->easy)
        curl_easy_cleanup(a->easy);
    pthread_cond_destroy(&a->changed);
    pthread_mutex_destroy(&a->lock);
    free(a->key);
    free(a);
}
