/* uploader.c - one replica's queue, uploaded in order (uploader.h).
 *
 * uploader_kick takes the queue's head from the spool and hands it to
 * storage_put_file. A synchronous driver (file) answers at once and the
 * next object follows, up to BATCH_PER_TURN per turn of the loop and
 * for at most TURN_MS (then the loop's other work, such as getting out
 * of an application checkpoint's way, runs before the next turn); an
 * asynchronous one (S3) calls on_uploaded later. Only one object per
 * replica is in flight, which keeps every replica's archive a prefix of
 * the spool's order: segment N is never stored before segment N-1. */
#include "uploader.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <limits.h>
#include <sodium.h>
#include <stdio.h>

#define BATCH_PER_TURN 64
#define TURN_MS 5
#define BACKOFF_BASE_S 0.5
#define BACKOFF_MAX_S 60.0

static void on_uploaded(void *arg, int rc, const struct tm_error *err);

static double backoff_delay(int failures)
{
    double ceiling = BACKOFF_BASE_S;
    for (int i = 1; i < failures && ceiling < BACKOFF_MAX_S; i++)
        ceiling *= 2;
    if (ceiling > BACKOFF_MAX_S)
        ceiling = BACKOFF_MAX_S;
    /* between half and all of the ceiling */
    return ceiling / 2 + ceiling / 2 * ((double)randombytes_uniform(1001) / 1000.0);
}

static void succeeded(struct uploader *u, uint64_t size)
{
    struct tm_error err;
    if (spool_queue_done(u->spool, u->queue, &err) != 0)
        log_event(LOG_ERROR, u->db_name, u->replica_name, "%s", err.msg);
    u->objects_uploaded++;
    u->bytes_uploaded += size;
    u->last_success_ms = clock_now_ms();
    if (u->failures) {
        log_event(LOG_INFO, u->db_name, u->replica_name, "replica recovered after %.1fs; %zu object(s) still queued",
                  (double)(u->last_success_ms - u->failing_since_ms) / 1000.0,
                 spool_queue_length(u->spool, u->queue));
    }
    u->failures = 0;
    u->failing_since_ms = 0;
}

static void failed(struct uploader *u, const struct tm_error *err)
{
    u->last_error = *err;
    u->failures_total++;
    if (u->failures++ == 0) {
        u->failing_since_ms = clock_now_ms();
        log_event(LOG_ERROR, u->db_name, u->replica_name,
                  "upload failed: %s%s%s (objects wait in the spool; retrying)", err->msg, err->hint[0] ? "; HINT: " : "", err->hint);
    } else if (u->failures % 20 == 0) {
        log_event(LOG_ERROR, u->db_name, u->replica_name, "still failing after %.0fs, %zu object(s) queued: %s",
                  (double)(clock_now_ms() - u->failing_since_ms) / 1000.0,
                  spool_queue_length(u->spool, u->queue), err->msg);
    }
    ev_timer_set(&u->retry_timer, backoff_delay(u->failures), 0.);
    ev_timer_start(u->loop, &u->retry_timer);
}

static uint64_t file_size(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fclose(fp);
    return size > 0 ? (uint64_t)size : 0;
}

/* Uploads up to BATCH_PER_TURN objects, for at most TURN_MS, or until
 * one is in flight. */
static void upload_some(struct uploader *u)
{
    int64_t started_ms = clock_now_ms();
    for (int done = 0; done < BATCH_PER_TURN && (done == 0 || clock_now_ms() - started_ms < TURN_MS); done++) {
        char key[ARCHIVE_NAME_MAX], path[PATH_MAX];
        if (u->busy || ev_is_active(&u->retry_timer) ||
            !spool_queue_head(u->spool, u->queue, key, sizeof key, path, sizeof path))
            return;
        struct tm_error err;
        uint64_t size = file_size(path);
        int rc = storage_put_file(u->replica, key, path, on_uploaded, u, &err);
        if (rc == STORAGE_PENDING) {
            u->busy = 1;
            return;
        }
        if (rc != 0)
            return failed(u, &err);
        log_event(LOG_DEBUG, u->db_name, u->replica_name, "stored %s", key);
        succeeded(u, size);
    }
    if (!uploader_idle(u))
        ev_idle_start(u->loop, &u->continue_idle);
}

static void on_uploaded(void *arg, int rc, const struct tm_error *err)
{
    struct uploader *u = arg;
    u->busy = 0;
    char key[ARCHIVE_NAME_MAX], path[PATH_MAX];
    if (rc != 0)
        return failed(u, err);
    if (spool_queue_head(u->spool, u->queue, key, sizeof key, path, sizeof path)) {
        log_event(LOG_DEBUG, u->db_name, u->replica_name, "stored %s", key);
        succeeded(u, file_size(path));
    }
    upload_some(u);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    upload_some(w->data);
}

static void on_continue(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
    upload_some(w->data);
}

void uploader_init(struct uploader *u, struct ev_loop *loop, struct spool *spool, size_t queue,
                   struct storage *replica, const char *db_name, const char *replica_name)
{
    *u = (struct uploader){.loop = loop, .spool = spool, .queue = queue, .replica = replica,
                           .db_name = db_name, .replica_name = replica_name};
    ev_timer_init(&u->retry_timer, on_retry, 0., 0.);
    u->retry_timer.data = u;
    ev_idle_init(&u->continue_idle, on_continue);
    u->continue_idle.data = u;
}

void uploader_kick(struct uploader *u)
{
    if (!ev_is_active(&u->continue_idle))
        upload_some(u);
}

int uploader_idle(const struct uploader *u)
{
    return !u->busy && spool_queue_length(u->spool, u->queue) == 0;
}

void uploader_stop(struct uploader *u)
{
    ev_timer_stop(u->loop, &u->retry_timer);
    ev_idle_stop(u->loop, &u->continue_idle);
}
