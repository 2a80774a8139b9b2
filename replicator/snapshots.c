/* snapshots.c - base snapshots inside the current generation, and the
 * `tidemark snapshot` clients waiting for one.
 *
 * DESIGN
 *
 * A snapshot is taken at the pin: the pin moves to the WAL's end and the
 * commits up to it are shipped (pin_ship_up_to), so that the copy
 * belongs at the shipper's next index. The database is copied under the
 * pin (tailer_snapshot), 256 pages per batch, and gives way between
 * batches when an application's checkpoint waits for the
 * pin: the snapshot stays due and is tried again SNAPSHOT_BUSY_RETRY_MS
 * later (the first snapshot of a new generation does not give way). Once
 * copied, the pin moves on; the compression, encryption and spool write
 * run on a worker thread while the loop's thread keeps following the WAL
 * (pin_follow_beside_worker). A failed snapshot is retried after
 * SNAPSHOT_RETRY_MS; after each one, retention runs (schedules.c).
 *
 * What asks for a snapshot: the schedules (schedules.c), the WAL shipped
 * since the last one (snapshot: { wal-ratio }), a new generation
 * (database.c), and `tidemark snapshot` through the control socket. Its
 * clients are answered once every replica has stored the snapshot
 * (polled every 50 ms while some wait). */
#include "snapshots.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "control.h"
#include "database.h"
#include "pin.h"
#include "schedules.h"
#include "spool.h"
#include "tailer.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void snapshot_path(const struct db_context *ctx, char *out, size_t len)
{
    snprintf(out, len, "%s/tmp/snapshot-%d.db", spool_dir(ctx->spool), (int)getpid());
}

/* A snapshot's compression, encryption and spool write (about 4 ms a
 * MiB) run on a worker thread, while this thread keeps following the
 * WAL: commits are stamped when they happen, and an application's
 * checkpoint that waits for the pin is let through (the pending frames
 * are read into memory first, as nothing can be shipped meanwhile). The
 * two threads share nothing: the worker has the shipper and the spool,
 * this one the tailer. */
struct snapshot_job {
    struct shipper *shipper;
    const char *path;
    uint32_t page_size, pages;
    int64_t taken_ms;
    const struct wal_position *pos;
    int rc;
    struct tm_error err;
    atomic_int done;
};

static void *snapshot_worker(void *arg)
{
    struct snapshot_job *job = arg;
    job->rc = shipper_snapshot(job->shipper, job->path, job->page_size, job->pages, job->taken_ms, job->pos,
                               &job->err);
    atomic_store(&job->done, 1);
    return NULL;
}

static int write_snapshot_beside(struct db_context *ctx, struct snapshot_job *job, char *broken, size_t broken_len)
{
    pthread_t worker;
    atomic_init(&job->done, 0);
    if (pthread_create(&worker, NULL, snapshot_worker, job) != 0) {
        snapshot_worker(job);   /* no thread: write it here */
        return job->rc;
    }
    while (!atomic_load(&job->done)) {
        struct timespec pause = {0, (long)(YIELD_FAST_POLL_S * 1e9)};
        nanosleep(&pause, NULL);
        struct tm_error why;
        if (!broken[0] && pin_follow_beside_worker(ctx, &why))
            snprintf(broken, broken_len, "%s", why.msg);
    }
    pthread_join(worker, NULL);
    return job->rc;
}

/* While a snapshot copies the database: go on unless an application
 * checkpoint waits for the pin (the snapshot is tried again later). */
static int snapshot_may_go_on(void *arg)
{
    struct db_context *ctx = arg;
    return !tailer_pin_in_the_way(ctx->tailer);
}

/* Takes a base snapshot at the tailer's shipped position and stores it at
 * the shipper's current index. Expects the pin to be at that position. */
int snapshots_take(struct db_context *ctx, int may_give_way, struct tm_error *err)
{
    char path[PATH_MAX];
    snapshot_path(ctx, path, sizeof path);
    int64_t taken_ms = clock_now_ms();
    struct wal_position pos = tailer_shipped(ctx->tailer);
    int have_wal = tailer_header(ctx->tailer) != NULL;
    uint32_t pages;
    uint64_t bytes_before = ctx->shipper.bytes_shipped;
    int rc = tailer_snapshot(ctx->tailer, path, &pages, may_give_way ? snapshot_may_go_on : NULL, ctx, err);
    if (rc == TAILER_LATER)
        return rc;
    /* the copy is made: the pin need not stay for the compression */
    if (rc == 0 && tailer_advance_pin(ctx->tailer, err) == TAILER_OK)
        ctx->pin.moves++;
    char broken[sizeof err->msg] = "";
    if (rc == 0) {
        struct snapshot_job job = {.shipper = &ctx->shipper, .path = path, .page_size = tailer_page_size(ctx->tailer),
                                   .pages = pages, .taken_ms = taken_ms, .pos = have_wal ? &pos : NULL};
        rc = write_snapshot_beside(ctx, &job, broken, sizeof broken);
        if (rc != 0)
            *err = job.err;
    }
    unlink(path);
    if (broken[0]) {   /* continuity was lost while the snapshot was written */
        database_restart(ctx, broken);
        return rc == 0 ? 0 : -1;
    }
    if (rc == 0) {
        ctx->snapshot.taken++;
        ctx->snapshot.last_bytes = ctx->shipper.bytes_shipped - bytes_before;
        ctx->snapshot.last_seconds = (double)(clock_now_ms() - taken_ms) / 1000.0;
        ctx->snapshot.failing = 0;
    } else {
        ctx->snapshot.errors++;
        ctx->snapshot.failing = 1;
        snprintf(ctx->snapshot.error, sizeof ctx->snapshot.error, "%s", err->msg);
    }
    return rc;
}

/* snapshot: { wal-ratio }: once the WAL shipped since the newest snapshot
 * reaches that multiple of the database size (and at least 16 MiB), a new
 * snapshot bounds what a restore of the latest point must replay. */
#define WAL_SNAPSHOT_FLOOR_BYTES (16.0 * 1024 * 1024)
/* A due snapshot that failed is retried after SNAPSHOT_RETRY_MS; one that
 * only found the application's writers holding the lock, at the next
 * tick after SNAPSHOT_BUSY_RETRY_MS: it stays due, never skipped until
 * the next scheduled time. */
#define SNAPSHOT_RETRY_MS (60 * 1000)
/* Attempts at putting the pin exactly at a commit read and shipped. */
#define SNAPSHOT_PIN_ATTEMPTS 5

void snapshots_if_wal_grew(struct db_context *ctx)
{
    double ratio = ctx->cfg->snapshot_wal_ratio;
    if (ratio <= 0 || ctx->snapshot.due)
        return;
    double threshold = ratio * (double)ctx->shipper.db_pages * tailer_page_size(ctx->tailer);
    if (threshold < WAL_SNAPSHOT_FLOOR_BYTES)
        threshold = WAL_SNAPSHOT_FLOOR_BYTES;
    if ((double)ctx->shipper.wal_bytes_since_snapshot < threshold)
        return;
    log_event(LOG_INFO, ctx->cfg->name, NULL, "%.0f MiB of WAL shipped since the last snapshot (wal-ratio %g): "
              "taking a snapshot", (double)ctx->shipper.wal_bytes_since_snapshot / 1048576.0, ratio);
    ctx->snapshot.due = 1;
}

/* Takes the due snapshot, if any and if its retry time has come. */
void snapshots_if_due(struct db_context *ctx)
{
    int64_t now = clock_now_ms();
    if (!ctx->snapshot.due || now < ctx->snapshot.not_before_ms)
        return;
    struct tm_error err;
    int rc = snapshots_now(ctx, &err);
    if (rc == 0) {
        ctx->snapshot.due = 0;
        ctx->snapshot.busy_logged = 0;
        return;
    }
    ctx->snapshot.not_before_ms = now + (rc == TAILER_LATER ? SNAPSHOT_BUSY_RETRY_MS : SNAPSHOT_RETRY_MS);
}

/* `tidemark snapshot` clients whose snapshot was postponed: the one
 * just taken is theirs. */
static void answer_postponed_waiters(struct db_context *ctx)
{
    struct snapshot_state *snap = &ctx->snapshot;
    for (size_t i = 0; i < snap->waiter_count; i++)
        if (!snap->waiters[i].name[0])
            snprintf(snap->waiters[i].name, sizeof snap->waiters[i].name, "%s", spool_last_published(ctx->spool));
}

/* A base snapshot now, in the current generation; 0, TAILER_LATER when
 * commits arrived at every attempt to read the pin's place, or -1 with
 * err set (also reported in the log). */
int snapshots_now(struct db_context *ctx, struct tm_error *err)
{
    if (!ctx->tailer || ctx->need_generation)
        return tm_error_set(err, "the database is not being replicated right now (see the log)");
    int rc = TAILER_LATER;
    for (int attempt = 0; attempt < SNAPSHOT_PIN_ATTEMPTS && rc == TAILER_LATER; attempt++)
        rc = pin_ship_up_to(ctx, err);
    if (rc == TAILER_LATER) {
        database_kick_uploaders(ctx);
        if (!ctx->snapshot.busy_logged)
            log_event(LOG_WARN, ctx->cfg->name, NULL, "snapshot postponed (retried every %d ms until it "
                      "succeeds): %s", SNAPSHOT_BUSY_RETRY_MS, err->msg);
        ctx->snapshot.busy_logged = 1;
        return TAILER_LATER;
    }
    if (rc == TAILER_BROKEN) {
        database_restart(ctx, err->msg);   /* the new generation starts with a snapshot */
        return ctx->need_generation ? -1 : 0;
    }
    if (rc == 0)
        rc = snapshots_take(ctx, 1, err);
    database_kick_uploaders(ctx);
    if (rc == TAILER_LATER) {
        log_event(LOG_DEBUG, ctx->cfg->name, NULL, "snapshot postponed by %d ms: %s", SNAPSHOT_BUSY_RETRY_MS, err->msg);
        return TAILER_LATER;
    }
    if (rc != 0) {
        database_report(ctx, "snapshot failed (will retry in a minute)", err);
        return -1;
    }
    answer_postponed_waiters(ctx);
    schedules_run_retention(ctx);
    return 0;
}

/* `tidemark snapshot` clients get their answer once no replica still has
 * to take the snapshot (checked every 50 ms while some wait). */
static void on_waiters(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct db_context *ctx = w->data;
    struct snapshot_state *snap = &ctx->snapshot;
    for (size_t i = 0; i < snap->waiter_count;) {
        struct snapshot_waiter *waiter = &snap->waiters[i];
        if (!waiter->name[0] || spool_pending(ctx->spool, waiter->name)) {   /* not taken yet, or not stored */
            i++;
            continue;
        }
        char key[ARCHIVE_NAME_MAX], line[ARCHIVE_NAME_MAX + 16];
        spool_key_of(waiter->name, key, sizeof key);
        snprintf(line, sizeof line, "stored %s", key);
        control_reply(waiter->client, line);
        *waiter = snap->waiters[--snap->waiter_count];
    }
    if (!snap->waiter_count)
        ev_timer_stop(loop, w);
}

/* `tidemark snapshot`: a snapshot now; the client gets its answer once
 * every replica has it (on_waiters). */
void snapshots_for_client(struct db_context *ctx, struct control_client *client)
{
    struct snapshot_state *snap = &ctx->snapshot;
    if (snap->waiter_count == SNAPSHOT_WAITERS_MAX)
        return control_reply(client, "error: too many snapshot requests waiting; try again later");
    if (ctx->waiting) {
        char line[sizeof ctx->waiting_reason + 16];
        snprintf(line, sizeof line, "error: %s", ctx->waiting_reason);
        return control_reply(client, line);
    }
    if (!snap->waiters && !(snap->waiters = calloc(SNAPSHOT_WAITERS_MAX, sizeof *snap->waiters)))
        return control_reply(client, "error: out of memory");
    struct tm_error err;
    log_event(LOG_INFO, ctx->cfg->name, NULL, "snapshot requested through the control socket");
    int rc = snapshots_now(ctx, &err);
    if (rc == TAILER_LATER) {   /* taken at a later tick; the client waits */
        snap->due = 1;
        snap->not_before_ms = clock_now_ms() + SNAPSHOT_BUSY_RETRY_MS;
        snap->waiters[snap->waiter_count++] = (struct snapshot_waiter){.client = client};
        ev_timer_again(ctx->owner->loop, &snap->waiter_timer);
        return;
    }
    if (rc != 0) {
        char line[900];
        snprintf(line, sizeof line, "error: %s", err.msg);
        return control_reply(client, line);
    }
    struct snapshot_waiter *waiter = &snap->waiters[snap->waiter_count++];
    waiter->client = client;
    snprintf(waiter->name, sizeof waiter->name, "%s", spool_last_published(ctx->spool));
    ev_timer_again(ctx->owner->loop, &snap->waiter_timer);
}

void snapshots_init_waiters(struct db_context *ctx)
{
    ev_timer_init(&ctx->snapshot.waiter_timer, on_waiters, 0., 0.05);
    ctx->snapshot.waiter_timer.data = ctx;
}
