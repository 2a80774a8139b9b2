/* replicate.c - the sidecar daemon: one libev loop drives every database.
 *
 * DESIGN
 *
 * Per database there is a tailer (tailer.c: pins and reads the WAL), a
 * shipper (shipper.c: makes objects and publishes them in the database's
 * spool, spool.c) and one uploader per replica (uploader.c: ships the
 * spool's queue to that replica, on its own). The loop reacts to:
 *
 *  - inotify events: a write to NAME-wal (a watch on the WAL file itself),
 *    or NAME-wal appearing in the database's directory (a watch that sees
 *    only files created, moved in or deleted, so writes to other files
 *    there never wake the loop), arm a 5 ms one-shot timer that scans the
 *    WAL, so each commit is stamped within a few milliseconds of being
 *    written (bursts of writes cost one scan);
 *  - the sync timer (sync-interval): scan, then ship all pending commits as
 *    one segment; every checkpoint-pages frames let go of the pin so that
 *    the application restarts its WAL, and after a tick without commits
 *    checkpoint (PASSIVE) and put the pin where the next writer restarts
 *    the WAL (keep_pin_moving; the sidecar never takes the write lock);
 *  - the yield timer (every 5 ms while the pin may be in the way): an
 *    application's FULL/RESTART/TRUNCATE checkpoint waiting for the pin
 *    makes the sidecar let go of it (on_yield_poll; tailer.c);
 *  - the snapshot schedule (a cron expression in UTC, by default daily at
 *    03:00, through an ev_periodic on the wall clock) and/or the
 *    snapshot-interval timer: a new base snapshot inside the current
 *    generation; one missed while the sidecar was down is taken at start;
 *  - after each snapshot, and daily: retention, in a child process
 *    (`tidemark retention -c FILE NAME`) so the loop never waits on it;
 *    on the drill schedule (default monthly), `tidemark drill` likewise;
 *  - SIGTERM / SIGINT: scan and ship what is committed, then stop.
 *
 * When the tailer or shipper reports that continuity is lost, the database
 * is reopened and a new generation begins with a fresh snapshot.
 *
 * A configured database whose file is missing, empty or in rollback-journal
 * mode (at start, or deleted while followed) waits instead (waiting.c):
 * its sync timer stops, inotify events about the file look at it again,
 * and it starts as above once it is a WAL database.
 *
 * Replicas never hold up capture: commits are released from the WAL once
 * published in the spool (on the database's disk); each replica catches
 * up from its queue, in order, when it can. S3 transfers run on this loop
 * through curl's multi-socket API (common/http.c). When the spool reaches
 * spool-limit, no new segment is made (an alert-level error is logged):
 * the commits stay in the WAL, pinned, until the replicas drain it. On
 * SIGTERM the loop ships what is committed into the spool and waits up to
 * STOP_DRAIN_S for the replicas; what is left is sent at the next start.
 *
 * Databases found under `dir:` entries (a database per tenant) are on the
 * same loop; tenants.c keeps them, asleep while idle. daemon.h holds what
 * the two files share.
 *
 * The loop is single-threaded; all state hangs off `struct replicator`,
 * the daemon's top-level context. */
#include "daemon.h"

#include "../common/clock.h"
#include "../common/cron.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "../common/storage/storage.h"
#include "redis.h"
#include "shipper.h"
#include "spool.h"
#include "tailer.h"
#include "alerts.h"
#include "capture_probe.h"
#include "control.h"
#include "metrics.h"
#include "status.h"
#include "uploader.h"

#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int capture_hidden(struct db_context *ctx);

void report(struct db_context *ctx, const char *what, const struct tm_error *err)
{
    if (err->hint[0])
        log_event(LOG_ERROR, ctx->cfg->name, NULL, "%s: %s (HINT: %s)", what, err->msg, err->hint);
    else
        log_event(LOG_ERROR, ctx->cfg->name, NULL, "%s: %s", what, err->msg);
}

void kick_uploaders(struct db_context *ctx)
{
    for (size_t i = 0; i < ctx->replica_count; i++)
        uploader_kick(&ctx->uploaders[i]);
}

/* True (and logged once per incident) when the spool is at its limit. */
static int spool_is_full(struct db_context *ctx)
{
    uint64_t waiting = spool_bytes(ctx->spool), limit = ctx->owner->cfg->spool_limit;
    int full = waiting >= limit;
    if (full && !ctx->spool_full)
        log_error("%s: ALERT: spool full: %llu bytes wait for replicas (spool-limit %llu); new commits "
                  "stay in the WAL until a replica catches up", ctx->cfg->name,
                  (unsigned long long)waiting, (unsigned long long)limit);
    else if (!full && ctx->spool_full)
        log_info("%s: spool below its limit again; shipping resumes", ctx->cfg->name);
    ctx->spool_full = full;
    return full;
}

static void snapshot_path(const struct db_context *ctx, char *out, size_t len)
{
    snprintf(out, len, "%s/tmp/snapshot-%d.db", spool_dir(ctx->spool), (int)getpid());
}

/* Takes a base snapshot at the tailer's shipped position and stores it at
 * the shipper's current index. Expects the pin to be at that position. */
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

/* The pin was just let go (tailer_unpin): remember the WAL followed and
 * when, for repin_due. */
static void note_unpinned(struct db_context *ctx)
{
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    ctx->unpinned_salt1 = hdr ? hdr->salt1 : 0;
    ctx->unpinned_salt2 = hdr ? hdr->salt2 : 0;
    ctx->unpinned_ms = clock_now_ms();
}

/* Unpinned: whether to pin again now - no checkpoint runs, and the WAL
 * restarted since the pin was let go or REPIN_AFTER_MS passed. *restarted
 * says which. */
static int repin_due(struct db_context *ctx, int *restarted)
{
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    *restarted = !hdr || hdr->salt1 != ctx->unpinned_salt1 || hdr->salt2 != ctx->unpinned_salt2;
    return !tailer_app_checkpointing(ctx->tailer) &&
           (*restarted || clock_now_ms() - ctx->unpinned_ms >= REPIN_AFTER_MS);
}

/* One look while the worker writes: scan, and get out of a waiting
 * checkpoint's way without shipping. Fills `broken` when continuity is
 * lost (the caller restarts once the worker is done). */
static void follow_beside_worker(struct db_context *ctx, char *broken, size_t broken_len)
{
    struct tm_error err;
    struct tailer *t = ctx->tailer;
    int rc = tailer_scan(t, clock_now_ms(), &err);
    if (rc == TAILER_BROKEN) {
        snprintf(broken, broken_len, "%s", err.msg);
        return;
    }
    if (!tailer_pinned(t)) {
        tailer_detach(t, &err);
        int restarted;
        if (repin_due(ctx, &restarted) && tailer_advance_pin(t, &err) == TAILER_OK)
            ctx->pin_moves++;
        return;
    }
    if (!tailer_pin_in_the_way(t))
        return;
    if (tailer_advance_pin(t, &err) == TAILER_OK && !tailer_pin_in_the_way(t)) {
        ctx->pin_moves++;
        return;
    }
    rc = tailer_detach(t, &err);
    if (rc == TAILER_BROKEN)
        snprintf(broken, broken_len, "%s", err.msg);
    if (rc != 0 || tailer_unpin(t) != TAILER_OK)
        return;
    note_unpinned(ctx);
    ctx->yields++;
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
        if (!broken[0])
            follow_beside_worker(ctx, broken, broken_len);
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

static int take_snapshot(struct db_context *ctx, int may_give_way, struct tm_error *err)
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
        ctx->pin_moves++;
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
        restart_database(ctx, broken);
        return rc == 0 ? 0 : -1;
    }
    if (rc == 0) {
        ctx->snapshots++;
        ctx->snapshot_last_bytes = ctx->shipper.bytes_shipped - bytes_before;
        ctx->snapshot_last_seconds = (double)(clock_now_ms() - taken_ms) / 1000.0;
        ctx->snapshot_failing = 0;
    } else {
        ctx->errors_snapshot++;
        ctx->snapshot_failing = 1;
        snprintf(ctx->snapshot_error, sizeof ctx->snapshot_error, "%s", err->msg);
    }
    return rc;
}

/* Ships everything committed so far: 0, 1 when continuity is lost
 * (start a new generation), -1 on errors. */
int ship_all(struct db_context *ctx, struct tm_error *err)
{
    int status = tailer_scan(ctx->tailer, clock_now_ms(), err);
    if (status != TAILER_OK)
        return status < 0 ? -1 : 1;
    status = shipper_ship(&ctx->shipper, ctx->tailer, err);
    return status < 0 ? -1 : status;
}

/* Moves the pin to the WAL's end (tailer.c), shipping first what the
 * move needs shipped. TAILER_OK, TAILER_LATER, 1 (continuity lost) or -1. */
static int move_pin(struct db_context *ctx, struct tm_error *err)
{
    int rc = ship_all(ctx, err);
    if (rc != 0)
        return rc == 1 ? TAILER_BROKEN : -1;
    rc = tailer_advance_pin(ctx->tailer, err);
    if (rc == TAILER_OK) {
        ctx->pin_moves++;
        ctx->checkpoint_floor = tailer_shipped(ctx->tailer).frame;
    }
    return rc;
}

/* Ends the pin (tailer_unpin), so that the application's checkpoint or
 * next writer can restart the WAL, with what is committed shipped or
 * read into memory; when the pin cannot end now, moves it to the end
 * instead. The yield timer pins
 * again once no checkpoint runs (REPIN_AFTER_S later at the earliest). */
static int let_go_of_pin(struct db_context *ctx, int quickly, struct tm_error *err)
{
    /* quickly (a checkpoint waits): what is pending is read into memory
     * and shipped at the next tick; otherwise shipped first */
    int rc = tailer_scan(ctx->tailer, clock_now_ms(), err);
    if (rc != TAILER_OK)
        return rc == TAILER_BROKEN ? TAILER_BROKEN : -1;
    int unpinned = quickly && tailer_detach(ctx->tailer, err) == 0 && tailer_unpin(ctx->tailer) == TAILER_OK;
    if (!unpinned) {
        rc = ship_all(ctx, err);
        if (rc != 0)
            return rc == 1 ? TAILER_BROKEN : -1;
        if (tailer_unpin(ctx->tailer) != TAILER_OK)
            return move_pin(ctx, err);
    }
    note_unpinned(ctx);
    ctx->yield_timer.repeat = YIELD_FAST_POLL_S;   /* read every millisecond while unpinned */
    ev_timer_again(ctx->owner->loop, &ctx->yield_timer);
    ctx->checkpoint_floor = tailer_shipped(ctx->tailer).frame;
    return TAILER_OK;
}

/* Moves the pin to the WAL's end and ships exactly the commits up to
 * it, so that a snapshot of the pin's state belongs at the shipper's
 * next index. TAILER_OK, TAILER_LATER (try again), TAILER_BROKEN, -1. */
static int ship_up_to_pin(struct db_context *ctx, struct tm_error *err)
{
    int rc = move_pin(ctx, err);
    if (rc != TAILER_OK)
        return rc;
    int status = tailer_scan(ctx->tailer, clock_now_ms(), err);
    if (status != TAILER_OK)
        return status < 0 ? -1 : TAILER_BROKEN;
    int exact;
    size_t count = tailer_pending_through_pin(ctx->tailer, &exact);
    if (!exact) {
        tm_error_set(err, "the pin of '%s' is not at a commit the sidecar has read yet", ctx->cfg->path);
        return TAILER_LATER;
    }
    status = shipper_ship_first(&ctx->shipper, ctx->tailer, count, err);
    if (status != SHIPPER_OK)
        return status < 0 ? -1 : TAILER_BROKEN;
    return tailer_pin_at_shipped(ctx->tailer) ? TAILER_OK : TAILER_LATER;
}

/* Postponed this many ticks in a row, a new generation is an error
 * (capture_failing, /healthz). */
#define GENERATION_POSTPONED_LOUD 5

/* New generation: position exactly at the pin's snapshot, and snapshot.
 * 0; TAILER_LATER when commits kept arriving at every attempt to read
 * the pin's place (the caller tries again at the next tick); -1. */
int start_generation(struct db_context *ctx, const char *reason, struct tm_error *err)
{
    int rc = tailer_restart_at_pin(ctx->tailer, err);
    if (rc == TAILER_LATER) {
        /* nothing is captured meanwhile: loud once it lasts */
        ctx->generation_postponed++;
        tm_error_set(err, "new generation postponed %u time(s) (%s): commits arrived at every attempt to read "
                     "the snapshot's place", ctx->generation_postponed, reason);
        log_event(ctx->generation_postponed >= GENERATION_POSTPONED_LOUD ? LOG_ERROR : LOG_INFO, ctx->cfg->name, NULL,
                  "%s", err->msg);
        if (ctx->generation_postponed >= GENERATION_POSTPONED_LOUD)
            note_capture(ctx, "cannot start a new generation", err);
        return rc;
    }
    if (rc != TAILER_OK)
        return rc;
    ctx->generation_postponed = 0;
    ctx->pin_moves++;
    ctx->checkpoint_floor = tailer_shipped(ctx->tailer).frame;
    shipper_new_generation(&ctx->shipper, clock_now_ms());
    log_info("%s: new generation %s (%s)", ctx->cfg->name, ctx->shipper.generation, reason);
    if (take_snapshot(ctx, 0, err) != 0)   /* a new generation does not give way: it is rare */
        return -1;
    ctx->need_generation = 0;
    ctx->generation_started = 1;
    kick_uploaders(ctx);
    return 0;
}

/* After a tailer_resume_* that returned `resumed`: ships what the WAL
 * holds past the position. 1: the archive continues; 0: it does not
 * (start a new generation); -1: error. */
int continue_archive(struct db_context *ctx, int resumed, struct tm_error *err)
{
    if (resumed != 1)
        return resumed < 0 ? -1 : 0;
    int rc = ship_all(ctx, err);
    if (rc < 0)
        return -1;
    if (rc == 0 && tailer_advance_pin(ctx->tailer, err) == TAILER_OK)   /* a pin placed by what is shipped */
        ctx->pin_moves++;
    return rc == 0;
}

/* Opens the tailer and continues the archive where it ends, or starts a
 * new generation when continuity with it cannot be proven. 0, -1, or
 * TAILER_LATER (try again at the next tick). */
int start_database(struct db_context *ctx, struct tm_error *err)
{
    if (!ctx->tailer && tailer_open(ctx->cfg->path, &ctx->tailer, err) != 0)
        return -1;
    if (ctx->need_generation)
        return start_generation(ctx, "continuity with the archive was lost", err);
    struct wal_position pos;
    uint32_t page_size;
    int found;
    if (shipper_resume(&ctx->shipper, &pos, &page_size, &found, err) != 0)
        return -1;
    if (!found) {
        ctx->need_generation = 1;
        return start_generation(ctx, "no resumable archive", err);
    }
    int resumed = tailer_resume_at(ctx->tailer, &pos, page_size, err);
    int continued = continue_archive(ctx, resumed, err);
    if (continued < 0)
        return -1;
    if (continued) {
        log_info("%s: resumed generation %s at segment %llu", ctx->cfg->name,
                 ctx->shipper.generation, (unsigned long long)ctx->shipper.next_index);
        return 0;
    }
    ctx->need_generation = 1;
    return start_generation(ctx, resumed == 1 ? "WAL changed while resuming"
                                              : "the WAL no longer continues the archive", err);
}

void restart_database(struct db_context *ctx, const char *why)
{
    log_warn("%s: %s; reopening and starting a new generation", ctx->cfg->name, why);
    tailer_close(ctx->tailer);
    ctx->tailer = NULL;
    ctx->need_generation = 1;
    if (waiting_check(ctx))   /* deleted: its backups stay; a new generation when it is back */
        return;
    if (capture_hidden(ctx))   /* another engine: reported; the sync tick retries */
        return;
    struct tm_error err;
    int rc = start_database(ctx, &err);
    if (rc != 0 && rc != TAILER_LATER) {
        report(ctx, "cannot start a new generation (will retry)", &err);
        ctx->failing = 1;
        note_capture(ctx, "cannot start a new generation", &err);
        /* a file there that cannot be followed is reported at once; a
         * missing one is waited for */
        ctx->reopen_failing = access(ctx->cfg->path, F_OK) == 0;
    }
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
#define SNAPSHOT_BUSY_RETRY_MS 500
/* Attempts at putting the pin exactly at a commit read and shipped. */
#define SNAPSHOT_PIN_ATTEMPTS 5

static int snapshot_now(struct db_context *ctx, struct tm_error *err);

static void snapshot_if_wal_grew(struct db_context *ctx)
{
    double ratio = ctx->cfg->snapshot_wal_ratio;
    if (ratio <= 0 || ctx->snapshot_due)
        return;
    double threshold = ratio * (double)ctx->shipper.db_pages * tailer_page_size(ctx->tailer);
    if (threshold < WAL_SNAPSHOT_FLOOR_BYTES)
        threshold = WAL_SNAPSHOT_FLOOR_BYTES;
    if ((double)ctx->shipper.wal_bytes_since_snapshot < threshold)
        return;
    log_event(LOG_INFO, ctx->cfg->name, NULL, "%.0f MiB of WAL shipped since the last snapshot (wal-ratio %g): "
              "taking a snapshot", (double)ctx->shipper.wal_bytes_since_snapshot / 1048576.0, ratio);
    ctx->snapshot_due = 1;
}

/* Takes the due snapshot, if any and if its retry time has come. */
static void snapshot_if_due(struct db_context *ctx)
{
    int64_t now = clock_now_ms();
    if (!ctx->snapshot_due || now < ctx->snapshot_not_before_ms)
        return;
    struct tm_error err;
    int rc = snapshot_now(ctx, &err);
    if (rc == 0) {
        ctx->snapshot_due = 0;
        ctx->snapshot_busy_logged = 0;
        return;
    }
    ctx->snapshot_not_before_ms = now + (rc == TAILER_LATER ? SNAPSHOT_BUSY_RETRY_MS : SNAPSHOT_RETRY_MS);
}

/* The scan, ship and checkpoint step run on every sync tick. */
static void watch_wal(struct db_context *ctx);

/* For the capture_failing alert and /healthz: since when the database
 * has not been followed, and why (NULL: it is again). */
void note_capture(struct db_context *ctx, const char *what, const struct tm_error *err)
{
    if (!what) {
        ctx->failing_since_ms = 0;
        ctx->failing_error[0] = '\0';
        return;
    }
    if (!ctx->failing_since_ms)
        ctx->failing_since_ms = clock_now_ms();
    snprintf(ctx->failing_error, sizeof ctx->failing_error, "%s: %s", what, err->msg);
}

static void on_yield_poll(struct ev_loop *loop, ev_timer *w, int revents);

/* The yield timer runs while the pin may be in the way of an
 * application's checkpoint: always, except when the pin is where the
 * WAL can restart (slot 0, the WAL wholly copied into the database: no
 * checkpoint waits for it) and nothing was written since. */
static void update_yield_timer(struct db_context *ctx)
{
    int needed = ctx->tailer && !ctx->need_generation && !tailer_restartable(ctx->tailer);
    if (needed && !ev_is_active(&ctx->yield_timer))
        ev_timer_again(ctx->owner->loop, &ctx->yield_timer);
    else if (!needed && ev_is_active(&ctx->yield_timer))
        ev_timer_stop(ctx->owner->loop, &ctx->yield_timer);
}

/* The pin (tailer.c) on each tick. While the application writes, the
 * pin is let go (or, when the sidecar is behind or the application runs
 * its own RESTART/TRUNCATE checkpoints, moved to the WAL's end) once
 * checkpoint-pages frames are shipped past it, so that the application's
 * own checkpoints copy the WAL into the database and its writer restarts
 * it. Once a tick and a second passed without a commit, the
 * sidecar checkpoints (PASSIVE) and puts the pin where the application's
 * next writer restarts the WAL - unless another process holds the
 * checkpoint or write lock right then (its own checkpoint or
 * transaction: a PASSIVE checkpoint of ours meanwhile would make its
 * checkpoint return busy). */
static void keep_pin_moving(struct db_context *ctx, int quiet)
{
    struct tm_error err;
    int rc = TAILER_OK;
    uint32_t shipped_frame = tailer_shipped(ctx->tailer).frame;
    if (shipped_frame < ctx->checkpoint_floor)
        ctx->checkpoint_floor = 0;   /* the WAL restarted */
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    uint32_t salt1 = hdr ? hdr->salt1 : 0;
    if (quiet) {
        /* once per place: a checkpoint another reader keeps from
         * finishing is not tried again until more is shipped */
        int restartable = 0;
        if (tailer_restartable(ctx->tailer) || tailer_app_busy(ctx->tailer) ||
            clock_now_ms() - ctx->last_active_ms < QUIET_CHECKPOINT_MS ||
            (ctx->quiet_checkpoint_frame == shipped_frame && ctx->quiet_checkpoint_salt1 == salt1))
            return update_yield_timer(ctx);
        ctx->quiet_checkpoint_frame = shipped_frame;
        ctx->quiet_checkpoint_salt1 = salt1;
        rc = tailer_checkpoint(ctx->tailer, &restartable, &err);
        if (rc == 0 && restartable)
            ctx->checkpoints++;
    } else if (shipped_frame >= ctx->checkpoint_floor + ctx->cfg->checkpoint_pages && tailer_pinned(ctx->tailer)) {
        /* As large as the application lets its WAL grow: let it restart.
         * Only while the sidecar keeps up (this tick shipped at most a few
         * checkpoint-pages): the loop must come back within milliseconds
         * to read the old WAL's tail; behind, the pin moves instead. */
        int keeping_up = shipped_frame - ctx->checkpoint_floor <= KEEPING_UP_CHECKPOINTS * ctx->cfg->checkpoint_pages;
        /* an application that runs its own RESTART/TRUNCATE checkpoints
         * restarts the WAL through them (the pin gives way, held safe by
         * its WRITE lock): no window without a pin is opened for it */
        int checkpoints_itself = ctx->last_yield_ms && clock_now_ms() - ctx->last_yield_ms < OWN_CHECKPOINTS_MS;
        rc = keeping_up && !checkpoints_itself ? let_go_of_pin(ctx, 0, &err) : move_pin(ctx, &err);
    }
    kick_uploaders(ctx);
    if (rc == TAILER_BROKEN)
        restart_database(ctx, err.msg);
    else if (rc < 0)
        report(ctx, "cannot move the pin (kept where it was)", &err);
    update_yield_timer(ctx);
}

/* ------------------------------------------------------- capture probe
 * Before a database is (re)opened and on every sync tick: does anything
 * hide its commits from the sidecar (capture_probe.h)? If so its cause is
 * logged once (and when it clears), reported at once on /healthz, in
 * metrics and by the capture_failing alert, and the tailer is closed:
 * nothing is read or checkpointed through a wal-index that does not
 * describe the WAL, and no lock of the sidecar's keeps the other engine
 * out. Returns 1 when the database must not be opened or followed now. */
static int capture_hidden(struct db_context *ctx)
{
    struct tm_error err;
    if (!ctx->probe &&
        capture_probe_new(ctx->cfg->path, ctx->cfg->sync_interval_ms, &ctx->probe, &err) != 0)
        return 0;
    struct capture_view view = {0};
    if (ctx->tailer && tailer_header(ctx->tailer)) {
        size_t count;
        const struct tailer_commit *pending = tailer_pending(ctx->tailer, &count);
        view = (struct capture_view){.has_wal = 1, .hdr = *tailer_header(ctx->tailer),
                                     .committed_end = count ? pending[count - 1].end : tailer_shipped(ctx->tailer),
                                     .wal_index_fd = tailer_wal_index_fd(ctx->tailer)};
    }
    int cause = capture_probe_check(ctx->probe, ctx->tailer ? &view : NULL, clock_now_ms(), &err);
    if (cause <= 0) {
        if (cause < 0)
            log_debug("%s: capture probe: %s", ctx->cfg->name, err.msg);
        if (ctx->capture_cause) {
            log_event(LOG_INFO, ctx->cfg->name, NULL, "the other engine is gone: following the database again");
            note_capture(ctx, NULL, NULL);
        }
        ctx->capture_cause = 0;
        return 0;
    }
    if (cause != ctx->capture_cause)
        report(ctx, "commits cannot be captured", &err);
    ctx->capture_cause = cause;
    note_capture(ctx, "not capturing", &err);
    if (ctx->tailer) {
        tailer_close(ctx->tailer);
        ctx->tailer = NULL;
    }
    return 1;
}
/* ------------------------------------------------- end of capture probe */

static void sync_database(struct db_context *ctx)
{
    struct tm_error err;
    watch_wal(ctx);
    if (capture_hidden(ctx))
        return;
    if (!ctx->tailer || ctx->need_generation) {
        if (waiting_check(ctx))
            return;
        int started = start_database(ctx, &err);
        if (started == TAILER_LATER)
            return;
        if (started != 0) {
            if (!ctx->failing)
                report(ctx, "cannot start (will retry)", &err);
            ctx->failing = 1;
            note_capture(ctx, "cannot start", &err);
            return;
        }
        ctx->failing = 0;
        ctx->reopen_failing = 0;
    }
    int status = tailer_scan(ctx->tailer, clock_now_ms(), &err);
    if (status == TAILER_BROKEN)
        return restart_database(ctx, err.msg);
    if (status < 0) {
        report(ctx, "cannot read the WAL", &err);
        ctx->errors_wal++;
        note_capture(ctx, "cannot read the WAL", &err);
        return;
    }
    if (spool_is_full(ctx))
        return kick_uploaders(ctx);
    uint64_t segments_before = ctx->shipper.segments_shipped;
    status = shipper_ship(&ctx->shipper, ctx->tailer, &err);
    kick_uploaders(ctx);
    if (ctx->shipper.segments_shipped != segments_before)
        ctx->last_active_ms = clock_now_ms();
    if (status == SHIPPER_BROKEN)
        return restart_database(ctx, err.msg);
    if (status < 0) {
        if (!ctx->failing)
            report(ctx, "cannot write to the spool (commits stay pinned in the WAL and will be retried)", &err);
        ctx->errors_spool++;
        ctx->failing = 1;
        note_capture(ctx, "cannot write to the spool", &err);
        return;
    }
    if (ctx->failing)
        log_info("%s: shipping recovered", ctx->cfg->name);
    ctx->failing = 0;
    note_capture(ctx, NULL, NULL);
    snapshot_if_wal_grew(ctx);
    snapshot_if_due(ctx);
    if (!ctx->tailer || ctx->need_generation)
        return;
    keep_pin_moving(ctx, ctx->shipper.segments_shipped == segments_before);
}

static void on_sync(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct db_context *ctx = w->data;
    if (ctx->redis)
        return redis_capture_sync(ctx->redis);
    sync_database(ctx);
}

static void resume_inotify(struct ev_loop *loop, struct replicator *rep);

void on_scan(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct db_context *ctx = w->data;
    resume_inotify(loop, ctx->owner);
    if (!ctx->tailer || ctx->need_generation)
        return;
    struct tm_error err;
    int status = tailer_scan(ctx->tailer, clock_now_ms(), &err);
    if (status == TAILER_BROKEN)
        return restart_database(ctx, err.msg);
    if (status < 0)
        return report(ctx, "cannot read the WAL", &err);
    /* A busy writer filled checkpoint-pages before the next tick: ship and
     * checkpoint now, so that the WAL can restart. While the sidecar pins
     * it, the WAL only grows, and a long WAL slows every commit down (the
     * wal-index SQLite searches grows with it): measured, this alone took
     * a fast writer from 100 % to under 80 % of its speed. */
    size_t count;
    const struct tailer_commit *pending = tailer_pending(ctx->tailer, &count);
    if (count)   /* written: the pin may be in the way again */
        update_yield_timer(ctx);
    if (count && pending[count - 1].end.frame >= ctx->checkpoint_floor + ctx->cfg->checkpoint_pages &&
        tailer_shipped(ctx->tailer).frame >= ctx->checkpoint_floor)
        sync_database(ctx);
}

static void drill_report_path(const struct db_context *ctx, char *out, size_t len)
{
    snprintf(out, len, "%s/last-drill.json", ctx->cfg->state_dir);
}

/* RTO and RPO of the last drill, from its JSON report (drill.c writes
 * it, so its fields are known): the first replica's record. */
static void read_drill_report(struct db_context *ctx)
{
    char path[PATH_MAX + 32], text[4096];
    drill_report_path(ctx, path, sizeof path);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return;
    size_t got = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[got] = '\0';
    const char *rto = strstr(text, "\"rto_ms\": "), *rpo = strstr(text, "\"rpo_ms\": ");
    ctx->drill_rto_ms = rto ? strtoll(rto + 10, NULL, 10) : 0;
    ctx->drill_rpo_ms = rpo ? strtoll(rpo + 10, NULL, 10) : 0;
}

/* Retention and drills run as child processes (`tidemark retention|drill
 * -c FILE NAME`): listing, deleting and restoring on a remote replica can
 * take a while, and the loop must never wait for them. One of each per
 * database at a time; a failure is logged (the child's own errors go to
 * the same stderr). */
static void on_child_done(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct db_context *ctx = w->data;
    ev_child_stop(loop, w);
    const char *what = w == &ctx->drill_child ? "drill" : "retention";
    int ok = WIFEXITED(w->rstatus) && WEXITSTATUS(w->rstatus) == 0;
    if (w == &ctx->drill_child) {
        ctx->drill_failing = !ok;
        ctx->drill_result = ok;
        read_drill_report(ctx);
        ctx->drill_time_ms = clock_now_ms();
        ctx->errors_drill += !ok;
    } else {
        ctx->retention_failing = !ok;
        ctx->errors_retention += !ok;
    }
    if (ok)
        log_info("%s: %s finished", ctx->cfg->name, what);
    else
        log_error("%s: %s failed (exit status %d)%s", ctx->cfg->name, what,
                  WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : -1,
                  w == &ctx->drill_child ? "" : "; nothing is deleted after an error, it runs again after the next snapshot");
}

/* Runs `tidemark COMMAND -c FILE NAME` as a child watched by `watcher`
 * (one at a time). Its standard output goes to report_path (a drill's
 * JSON, for the metrics), or is dropped; errors go to the same stderr. */
void spawn_tidemark(struct replicator *rep, const char *name, const char *command, const char *report_path,
                    ev_child *watcher)
{
    if (ev_is_active(watcher))
        return;
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        log_error("%s: cannot run %s: /proc/self/exe: %s", name, command, strerror(errno));
        return;
    }
    self[len] = '\0';
    pid_t pid = fork();
    if (pid < 0) {
        log_error("%s: cannot run %s: fork: %s", name, command, strerror(errno));
        return;
    }
    if (pid == 0) {
        int out = report_path ? open(report_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                              : open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (out >= 0)
            dup2(out, STDOUT_FILENO);
        if (report_path)
            execl(self, self, command, "-c", rep->cfg->file, name, "--json", (char *)NULL);
        else
            execl(self, self, command, "-c", rep->cfg->file, name, (char *)NULL);
        _exit(127);
    }
    ev_child_set(watcher, pid, 0);
    ev_child_start(rep->loop, watcher);
}

static void spawn_command(struct db_context *ctx, const char *command, ev_child *watcher)
{
    char report_path[PATH_MAX + 32];
    drill_report_path(ctx, report_path, sizeof report_path);
    spawn_tidemark(ctx->owner, ctx->cfg->name, command, watcher == &ctx->drill_child ? report_path : NULL, watcher);
}

static void run_retention(struct db_context *ctx)
{
    if (ctx->cfg->retention.enabled && !ctx->tenants)   /* a directory's: daily, for all of them */
        spawn_command(ctx, "retention", &ctx->retention_child);
}

static void on_drill_schedule(struct ev_loop *loop, ev_periodic *w, int revents)
{
    (void)loop;
    (void)revents;
    struct db_context *ctx = w->data;
    log_info("%s: scheduled restore drill", ctx->cfg->name);
    spawn_command(ctx, "drill", &ctx->drill_child);
}

static ev_tstamp next_drill(ev_periodic *w, ev_tstamp now)
{
    const struct db_context *ctx = w->data;
    int64_t next_ms = cron_next(&ctx->cfg->drill.cron, (int64_t)(now * 1000.0));
    return next_ms < 0 ? now + 1e9 : (ev_tstamp)next_ms / 1000.0;
}

static void on_retention_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run_retention(w->data);
}

/* `tidemark snapshot` clients whose snapshot was postponed: the one
 * just taken is theirs. */
static void answer_postponed_waiters(struct db_context *ctx)
{
    for (size_t i = 0; i < ctx->waiter_count; i++)
        if (!ctx->waiters[i].name[0])
            snprintf(ctx->waiters[i].name, sizeof ctx->waiters[i].name, "%s", spool_last_published(ctx->spool));
}

/* A base snapshot now, in the current generation; 0, TAILER_LATER when
 * commits arrived at every attempt to read the pin's place, or -1 with
 * err set (also reported in the log). */
static int snapshot_now(struct db_context *ctx, struct tm_error *err)
{
    if (!ctx->tailer || ctx->need_generation)
        return tm_error_set(err, "the database is not being replicated right now (see the log)");
    int rc = TAILER_LATER;
    for (int attempt = 0; attempt < SNAPSHOT_PIN_ATTEMPTS && rc == TAILER_LATER; attempt++)
        rc = ship_up_to_pin(ctx, err);
    if (rc == TAILER_LATER) {
        kick_uploaders(ctx);
        if (!ctx->snapshot_busy_logged)
            log_event(LOG_WARN, ctx->cfg->name, NULL, "snapshot postponed (retried every %d ms until it "
                      "succeeds): %s", SNAPSHOT_BUSY_RETRY_MS, err->msg);
        ctx->snapshot_busy_logged = 1;
        return TAILER_LATER;
    }
    if (rc == TAILER_BROKEN) {
        restart_database(ctx, err->msg);   /* the new generation starts with a snapshot */
        return ctx->need_generation ? -1 : 0;
    }
    if (rc == 0)
        rc = take_snapshot(ctx, 1, err);
    kick_uploaders(ctx);
    if (rc == TAILER_LATER) {
        log_debug("%s: snapshot postponed by %d ms: %s", ctx->cfg->name, SNAPSHOT_BUSY_RETRY_MS, err->msg);
        return TAILER_LATER;
    }
    if (rc != 0) {
        report(ctx, "snapshot failed (will retry in a minute)", err);
        return -1;
    }
    answer_postponed_waiters(ctx);
    run_retention(ctx);
    return 0;
}

/* `tidemark snapshot` clients get their answer once no replica still has
 * to take the snapshot (checked every 50 ms while some wait). */
void on_waiters(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct db_context *ctx = w->data;
    for (size_t i = 0; i < ctx->waiter_count;) {
        struct snapshot_waiter *waiter = &ctx->waiters[i];
        if (!waiter->name[0] || spool_pending(ctx->spool, waiter->name)) {   /* not taken yet, or not stored */
            i++;
            continue;
        }
        char key[ARCHIVE_NAME_MAX], line[ARCHIVE_NAME_MAX + 16];
        spool_key_of(waiter->name, key, sizeof key);
        snprintf(line, sizeof line, "stored %s", key);
        control_reply(waiter->client, line);
        *waiter = ctx->waiters[--ctx->waiter_count];
    }
    if (!ctx->waiter_count)
        ev_timer_stop(loop, w);
}

/* `tidemark snapshot`: a snapshot now; the client gets its answer once
 * every replica has it (on_waiters). */
void snapshot_for_client(struct db_context *ctx, struct control_client *client)
{
    if (ctx->waiter_count == SNAPSHOT_WAITERS_MAX)
        return control_reply(client, "error: too many snapshot requests waiting; try again later");
    if (ctx->waiting) {
        char line[sizeof ctx->waiting_reason + 16];
        snprintf(line, sizeof line, "error: %s", ctx->waiting_reason);
        return control_reply(client, line);
    }
    if (!ctx->waiters && !(ctx->waiters = calloc(SNAPSHOT_WAITERS_MAX, sizeof *ctx->waiters)))
        return control_reply(client, "error: out of memory");
    struct tm_error err;
    log_info("%s: snapshot requested through the control socket", ctx->cfg->name);
    int rc = snapshot_now(ctx, &err);
    if (rc == TAILER_LATER) {   /* taken at a later tick; the client waits */
        ctx->snapshot_due = 1;
        ctx->snapshot_not_before_ms = clock_now_ms() + SNAPSHOT_BUSY_RETRY_MS;
        ctx->waiters[ctx->waiter_count++] = (struct snapshot_waiter){.client = client};
        ev_timer_again(ctx->owner->loop, &ctx->waiter_timer);
        return;
    }
    if (rc != 0) {
        char line[900];
        snprintf(line, sizeof line, "error: %s", err.msg);
        return control_reply(client, line);
    }
    struct snapshot_waiter *waiter = &ctx->waiters[ctx->waiter_count++];
    waiter->client = client;
    snprintf(waiter->name, sizeof waiter->name, "%s", spool_last_published(ctx->spool));
    ev_timer_again(ctx->owner->loop, &ctx->waiter_timer);
}

static void on_control_command(void *arg, const char *command, struct control_client *client)
{
    if (strcmp(command, "snapshot") != 0)
        return control_reply(client, "error: unknown command (known: snapshot)");
    snapshot_for_client(arg, client);
}

/* The schedule or the interval asks for a snapshot: for Redis, a new full
 * resynchronisation; for a database, due now (retried until taken). */

/* A database whose newest object is a snapshot has not changed since. */
int unchanged_since_snapshot(const struct db_context *ctx)
{
    const char *last = spool_last_published(ctx->spool);
    size_t len = strlen(last);
    return len > 5 && strcmp(last + len - 5, ".snap") == 0;
}

static void snapshot_requested(struct db_context *ctx)
{
    if (ctx->redis)
        return redis_capture_snapshot(ctx->redis);
    if (ctx->waiting)   /* following it starts with a snapshot */
        return;
    if (ctx->tenants && unchanged_since_snapshot(ctx)) {   /* an idle database writes nothing */
        log_debug("%s: unchanged since its last snapshot: scheduled snapshot skipped", ctx->cfg->name);
        return;
    }
    ctx->snapshot_due = 1;
    ctx->snapshot_not_before_ms = 0;
    if (ctx->tenants && ctx->asleep)
        return wake_later(ctx);   /* taken at its first tick awake */
    snapshot_if_due(ctx);
}

static void on_snapshot_interval(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    snapshot_requested(w->data);
}

static void on_snapshot_schedule(struct ev_loop *loop, ev_periodic *w, int revents)
{
    (void)loop;
    (void)revents;
    snapshot_requested(w->data);
}

/* libev asks when the schedule fires next after `now` (wall clock). */
/* The schedule's next time after after_ms, shifted by this database's
 * share of snapshot: { spread }, fixed by its name, so that thousands of
 * databases on one schedule do not all snapshot in the same second. */
static int64_t next_snapshot_ms(const struct db_context *ctx, int64_t after_ms)
{
    return cron_next_offset(&ctx->cfg->snapshot_cron, after_ms,
                            cron_offset_ms(ctx->cfg->name, ctx->cfg->snapshot_spread_ms));
}

/* libev asks when the schedule fires next after `now` (wall clock). */
static ev_tstamp next_scheduled_snapshot(ev_periodic *w, ev_tstamp now)
{
    const struct db_context *ctx = w->data;
    int64_t next_ms = next_snapshot_ms(ctx, (int64_t)(now * 1000.0));
    return next_ms < 0 ? now + 1e9 : (ev_tstamp)next_ms / 1000.0;
}

/* A snapshot that the schedule or the interval asked for while the
 * sidecar was not running is taken as soon as it is back. */
void catch_up_missed_snapshot(struct db_context *ctx)
{
    int64_t last = ctx->shipper.last_snapshot_ms, now = clock_now_ms();
    int64_t due = INT64_MAX;
    if (ctx->cfg->snapshot_cron_set)
        due = next_snapshot_ms(ctx, last);
    if (ctx->cfg->snapshot_interval_ms && last + ctx->cfg->snapshot_interval_ms < due)
        due = last + ctx->cfg->snapshot_interval_ms;
    if (due < 0 || due > now || (ctx->tenants && unchanged_since_snapshot(ctx)))
        return;
    char when[40];
    clock_format_ms(due, when, sizeof when);
    log_info("%s: the snapshot due at %s was missed while the sidecar was down: taking it now",
             ctx->cfg->name, when);
    if (ctx->redis)   /* the first connection asks for a full resynchronisation */
        return redis_capture_snapshot(ctx->redis);
    struct tm_error err;
    if (snapshot_now(ctx, &err) == TAILER_LATER) {
        ctx->snapshot_due = 1;
        ctx->snapshot_not_before_ms = clock_now_ms() + SNAPSHOT_BUSY_RETRY_MS;
    }
}

/* Watches the WAL file itself for writes, once it exists (retried at
 * every sync tick and when the directory's watch sees it created). */
static void watch_wal(struct db_context *ctx)
{
    if (ctx->wal_watch >= 0 || ctx->tenants)   /* a directory's: its entry's watch */
        return;
    char path[PATH_MAX + NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/%s", ctx->dir, ctx->wal_name);
    ctx->wal_watch = inotify_add_watch(ctx->owner->inotify_fd, path, IN_MODIFY);
}

/* While a scan is pending, the inotify descriptor is not read: the kernel
 * merges the identical events a busy writer produces (one per write), so
 * the loop wakes about once per scan instead of once per WAL write. The
 * scan timer reads it again. */
static void resume_inotify(struct ev_loop *loop, struct replicator *rep)
{
    if (rep->inotify_fd >= 0 && !rep->stop_deadline_ms && !ev_is_active(&rep->inotify_watcher))
        ev_io_start(loop, &rep->inotify_watcher);
}

/* Whether inotify event `ev` concerns database ctx's WAL; keeps the WAL
 * file's watch in step with the file (gone: -1; created again: watched). */
static int wal_event(struct db_context *ctx, const struct inotify_event *ev)
{
    if (ctx->wal_watch >= 0 && ev->wd == ctx->wal_watch) {
        if (ev->mask & IN_IGNORED)
            ctx->wal_watch = -1;
        return (ev->mask & IN_MODIFY) != 0;
    }
    if (ev->wd != ctx->watch || !ev->len || strcmp(ev->name, ctx->wal_name) != 0)
        return 0;
    if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
        if (ctx->wal_watch >= 0)
            inotify_rm_watch(ctx->owner->inotify_fd, ctx->wal_watch);
        ctx->wal_watch = -1;
        watch_wal(ctx);
    }
    return 1;
}

void schedule_scan(struct ev_loop *loop, struct db_context *ctx)
{
    if (!ev_is_active(&ctx->scan_timer)) {
        ev_timer_set(&ctx->scan_timer, SCAN_DELAY_S, 0.);
        ev_timer_start(loop, &ctx->scan_timer);
    }
}


static void on_inotify(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct replicator *rep = w->data;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t len = read(rep->inotify_fd, buf, sizeof buf);
    for (char *p = buf; len > 0 && p < buf + len;) {
        struct inotify_event *ev = (struct inotify_event *)p;
        p += sizeof *ev + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) {
            log_warn("inotify events were lost (queue overflow): looking at every database again");
            tenants_handle_overflow(rep);
            for (size_t i = 0; i < rep->configured_count; i++)
                if (rep->dbs[i]->waiting)
                    waiting_recheck_soon(rep->dbs[i]);
                else if (!rep->dbs[i]->redis)
                    schedule_scan(loop, rep->dbs[i]);
            continue;
        }
        if (tenants_handle_event(rep, ev))
            continue;
        for (size_t i = 0; i < rep->configured_count; i++) {
            struct db_context *ctx = rep->dbs[i];
            int seen = wal_event(ctx, ev);
            seen |= waiting_event(ctx, ev);   /* the database file itself */
            if (seen && ctx->waiting)
                waiting_recheck_soon(ctx);
            else if (seen)
                schedule_scan(loop, ctx);
        }
    }
    /* stop reading while scans are pending (resume_inotify) */
    for (size_t i = 0; i < rep->db_count; i++)
        if (ev_is_active(&rep->dbs[i]->scan_timer)) {
            ev_io_stop(loop, w);
            break;
        }
}

static size_t objects_waiting(const struct replicator *rep)
{
    size_t waiting = 0;
    for (size_t i = 0; i < rep->db_count; i++)
        for (size_t j = 0; j < rep->dbs[i]->replica_count; j++)
            if (!uploader_idle(&rep->dbs[i]->uploaders[j]))
                waiting += spool_queue_length(rep->dbs[i]->spool, j) + 1;
    return waiting;
}

/* Stopping: every 50 ms, check whether the replicas have everything. */
static void on_drain(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct replicator *rep = w->data;
    size_t waiting = objects_waiting(rep);
    if (waiting && clock_now_ms() < rep->stop_deadline_ms)
        return;
    if (waiting && rep->opts && rep->opts->snapshot_once) {
        log_error("the snapshot is safe in the spool, but not every replica has taken it yet; the sidecar "
                  "uploads it when it runs");
        rep->exit_code = 1;
    } else if (waiting) {
        log_warn("stopping with objects still in the spool; they are uploaded at the next start");
    }
    ev_break(loop, EVBREAK_ALL);
}

/* Ships what is committed into the spool, lets the replicas catch up for
 * at most STOP_DRAIN_S, then stops the loop. */
static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    struct replicator *rep = w->data;
    if (ev_is_active(&rep->drain_timer))
        return ev_break(loop, EVBREAK_ALL);   /* a second signal: now */
    log_info("stopping: shipping what is committed");
    ev_io_stop(loop, &rep->inotify_watcher);
    tenants_stop(rep);
    for (size_t i = 0; i < rep->db_count; i++) {
        struct db_context *ctx = rep->dbs[i];
        control_close(ctx->control);
        ctx->control = NULL;
        ctx->waiter_count = 0;
        ev_timer_stop(loop, &ctx->waiter_timer);
        ev_timer_stop(loop, &ctx->sync_timer);
        ev_timer_stop(loop, &ctx->scan_timer);
        ev_timer_stop(loop, &ctx->yield_timer);
        ev_timer_stop(loop, &ctx->snapshot_timer);
        ev_periodic_stop(loop, &ctx->snapshot_periodic);
        ev_timer_stop(loop, &ctx->retention_timer);
        ev_periodic_stop(loop, &ctx->drill_periodic);
        if (ctx->redis) {
            redis_capture_stop(ctx->redis);
            kick_uploaders(ctx);
            continue;
        }
        if (ctx->waiting) {   /* nothing to ship */
            waiting_stop(ctx);
            kick_uploaders(ctx);
            continue;
        }
        if (ctx->tenants && (ctx->asleep || ctx->deleted || sleep_database(ctx, 0) == 0)) {
            kick_uploaders(ctx);   /* everything is shipped; a clean sleep is kept for the next start */
            continue;
        }
        if (!ctx->tailer || ctx->need_generation) {
            rep->exit_code = 1;
            continue;
        }
        struct tm_error err;
        int status = tailer_scan(ctx->tailer, clock_now_ms(), &err);
        if (status == TAILER_OK)
            status = shipper_ship(&ctx->shipper, ctx->tailer, &err);
        size_t left;
        tailer_pending(ctx->tailer, &left);
        if (status != 0 || left) {
            report(ctx, "could not ship everything before stopping", &err);
            rep->exit_code = 1;
        }
        kick_uploaders(ctx);
    }
    rep->stop_deadline_ms = clock_now_ms() + (int64_t)(STOP_DRAIN_S * 1000);
    ev_timer_init(&rep->drain_timer, on_drain, 0., 0.05);
    rep->drain_timer.data = rep;
    ev_timer_again(loop, &rep->drain_timer);
}

/* Refuses what cannot work (bad credentials, missing bucket, versioning
 * required but off); warns about what only weakens the backups; an
 * unreachable replica is not fatal: its objects wait in the spool. */
int check_replica(const struct config_db *db, size_t i, struct storage *replica, struct tm_error *err)
{
    const struct config_replica *cfg = &db->replicas[i];
    struct storage_check check;
    if (storage_check(replica, 0, &check, err) != 0) {
        if (!check.transient)
            return -1;
        log_error("%s: replica '%s' is unreachable: %s (objects wait in the spool)", db->name,
                  cfg->name, err->msg);
        return 0;
    }
    if (check.versioning == 0 && cfg->s3.require_versioning) {
        tm_error_set(err, "replica '%s': bucket '%s' does not have versioning enabled", cfg->name,
                     cfg->s3.bucket);
        return tm_error_hint(err, "enable versioning on the bucket (aws s3api put-bucket-versioning "
                                  "--bucket %s --versioning-configuration Status=Enabled), or set "
                                  "'require-versioning: false'", cfg->s3.bucket);
    }
    if (check.versioning == 0)
        log_warn("%s: replica '%s': bucket '%s' has versioning off: a deleted or overwritten backup "
                 "cannot be recovered (set require-versioning: true to refuse this)",
                 db->name, cfg->name, cfg->s3.bucket);
    else if (check.versioning == 1)
        log_info("%s: replica '%s': bucket versioning is enabled", db->name, cfg->name);
    return 0;
}

static int open_replicas(struct db_context *ctx, struct tm_error *err)
{
    size_t count = ctx->cfg->replica_count;
    ctx->replicas = calloc(count, sizeof *ctx->replicas);
    ctx->uploaders = calloc(count, sizeof *ctx->uploaders);
    const char **names = calloc(count, sizeof *names);
    if (!ctx->replicas || !ctx->uploaders || !names) {
        free(names);
        return tm_error_set(err, "out of memory");
    }
    for (size_t i = 0; i < count; i++)
        names[i] = ctx->cfg->replicas[i].name;
    int replica_added = 0;
    size_t replicas_removed = 0;
    int rc = spool_open(ctx->cfg->state_dir, names, count, 1, &ctx->spool, &replica_added,
                        &replicas_removed, err);
    free(names);
    if (rc != 0)
        return -1;
    if (replicas_removed)
        log_warn("%s: %zu replica(s) no longer configured: their queued objects were dropped from the spool",
                 ctx->cfg->name, replicas_removed);
    if (replica_added) {
        log_info("%s: a replica was added: starting a new generation so that it gets a snapshot",
                 ctx->cfg->name);
        ctx->need_generation = 1;
    }
    for (size_t i = 0; i < count; i++) {
        if (storage_open_replica(&ctx->cfg->replicas[i], &ctx->replicas[i], err) != 0)
            return -1;
        ctx->replica_count++;
        storage_attach(ctx->replicas[i], ctx->owner->http);
        uploader_init(&ctx->uploaders[i], ctx->owner->loop, ctx->spool, i, ctx->replicas[i],
                      ctx->cfg->name, ctx->cfg->replicas[i].name);
        if (check_replica(ctx->cfg, i, ctx->replicas[i], err) != 0)
            return -1;
    }
    size_t queued = 0;
    for (size_t i = 0; i < count; i++)
        queued += spool_queue_length(ctx->spool, i);
    if (queued)
        log_info("%s: %zu object(s) in the spool from before; uploading them first", ctx->cfg->name, queued);
    return 0;
}

/* An application's FULL, RESTART or TRUNCATE checkpoint waits (its busy
 * handler) for the readers it needs gone; when the pin may be one of
 * them, ship what is committed and move the pin out of its way (tailer.c,
 * "Getting out of the application's way"). Polled every YIELD_POLL_S:
 * two fcntl calls when no checkpoint waits. */
static void on_yield_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct db_context *ctx = w->data;

    if (!ctx->tailer || ctx->need_generation)
        return;
    struct tm_error err;
    int rc = TAILER_OK;
    if (!tailer_pinned(ctx->tailer)) {
        /* Unpinned: read every millisecond (a restart's old frames are
         * read before the new WAL overwrites them; only that tail is
         * shipped here) and pin again as soon as the WAL restarted, or
         * after REPIN_AFTER_MS, once no checkpoint runs. */
        rc = tailer_scan(ctx->tailer, clock_now_ms(), &err);
        if (rc == TAILER_OK && !tailer_switching(ctx->tailer))
            tailer_detach(ctx->tailer, &err);   /* no restart can take them now; shipped at the tick */
        if (rc == TAILER_OK && tailer_switching(ctx->tailer))
            rc = ship_all(ctx, &err);
        if (rc == TAILER_OK && tailer_switching(ctx->tailer))
            rc = tailer_scan(ctx->tailer, clock_now_ms(), &err);   /* follow the new WAL */
        int restarted;
        if (rc == TAILER_OK && repin_due(ctx, &restarted)) {
            int pinned = tailer_advance_pin(ctx->tailer, &err);
            if (pinned == TAILER_LATER && ship_all(ctx, &err) == 0)   /* slot 0 needs all shipped */
                pinned = tailer_advance_pin(ctx->tailer, &err);
            log_debug("%s: pin again after %lld ms (%s): %d", ctx->cfg->name,
                      (long long)(clock_now_ms() - ctx->unpinned_ms), restarted ? "restarted" : "timeout", pinned);
            ctx->pin_moves += pinned == TAILER_OK;
        }
        rc = rc == TAILER_OK || rc == TAILER_LATER ? TAILER_OK : rc;
    } else if (tailer_pin_in_the_way(ctx->tailer)) {
        rc = let_go_of_pin(ctx, 1, &err);
        if (rc == TAILER_OK) {
            ctx->yields++;
            ctx->last_yield_ms = clock_now_ms();
            log_debug("%s: pin let go for the application's checkpoint", ctx->cfg->name);
        }
    }
    double period = tailer_pinned(ctx->tailer) ? YIELD_POLL_S : YIELD_FAST_POLL_S;
    if (w->repeat != period) {
        w->repeat = period;
        ev_timer_again(loop, w);
    }
    kick_uploaders(ctx);
    if (rc == TAILER_BROKEN)
        restart_database(ctx, err.msg);
    else if (rc < 0)
        report(ctx, "cannot move the pin for the application's checkpoint", &err);
    else
        update_yield_timer(ctx);
}

/* The sync timer (set, not started) and the snapshot schedules (started). */
void init_sync_and_snapshot_timers(struct replicator *rep, struct db_context *ctx)
{
    const struct config_db *cfg = ctx->cfg;
    double sync_s = (double)cfg->sync_interval_ms / 1000.0;
    ev_timer_init(&ctx->sync_timer, on_sync, sync_s, sync_s);
    ctx->sync_timer.data = ctx;
    ev_timer_init(&ctx->yield_timer, on_yield_poll, YIELD_POLL_S, YIELD_POLL_S);
    ctx->yield_timer.data = ctx;
    if (cfg->snapshot_interval_ms) {
        double snapshot_s = (double)cfg->snapshot_interval_ms / 1000.0;
        ev_timer_init(&ctx->snapshot_timer, on_snapshot_interval, snapshot_s, snapshot_s);
        ctx->snapshot_timer.data = ctx;
        ev_timer_start(rep->loop, &ctx->snapshot_timer);
    }
    if (cfg->snapshot_cron_set) {
        ev_periodic_init(&ctx->snapshot_periodic, on_snapshot_schedule, 0., 0., next_scheduled_snapshot);
        ctx->snapshot_periodic.data = ctx;
        ev_periodic_start(rep->loop, &ctx->snapshot_periodic);
    }
}

/* The sync timer, snapshot schedules, retention and drills: the same for
 * a database and a Redis. */
static void start_common_timers(struct replicator *rep, struct db_context *ctx)
{
    const struct config_db *cfg = ctx->cfg;
    init_sync_and_snapshot_timers(rep, ctx);
    ev_timer_start(rep->loop, &ctx->sync_timer);
    if (!ctx->redis)
        update_yield_timer(ctx);
    ev_child_init(&ctx->retention_child, on_child_done, 0, 0);
    ctx->retention_child.data = ctx;
    ev_child_init(&ctx->drill_child, on_child_done, 0, 0);
    ctx->drill_child.data = ctx;
    ctx->drill_result = -1;
    int drill_can_decrypt = !rep->key || !crypto_keyring_public_only(rep->key);
    if (cfg->drill.enabled && !drill_can_decrypt)
        log_event(LOG_WARN, cfg->name, NULL, "drills are not run by this sidecar: it holds only the public "
                  "key (recipient-file), and a drill must decrypt; run 'tidemark drill --key-file SECRET' "
                  "from the restore host, or set 'drill: off'");
    if (cfg->drill.enabled && drill_can_decrypt) {
        ev_periodic_init(&ctx->drill_periodic, on_drill_schedule, 0., 0., next_drill);
        ctx->drill_periodic.data = ctx;
        ev_periodic_start(rep->loop, &ctx->drill_periodic);
    }
    ev_timer_init(&ctx->retention_timer, on_retention_timer, 60., 86400.);   /* a minute after start, then daily */
    ctx->retention_timer.data = ctx;
    ev_timer_start(rep->loop, &ctx->retention_timer);
}

static void redis_published(void *arg)
{
    kick_uploaders(arg);
}

/* A `redis:` entry: the capture (redis.c) on this loop, the same spool,
 * uploaders, schedules and retention as a database. */
static int setup_redis(struct replicator *rep, struct db_context *ctx, struct tm_error *err)
{
    const struct config_db *cfg = ctx->cfg;
    ctx->shipper = (struct shipper){.db_name = cfg->name, .key = rep->key, .spool = ctx->spool};
    kick_uploaders(ctx);
    struct redis_capture_deps deps = {.loop = rep->loop, .cfg = cfg, .key = rep->key, .spool = ctx->spool,
                                      .counters = &ctx->shipper, .published = redis_published, .arg = ctx};
    if (redis_capture_start(&deps, &ctx->redis, err) != 0)
        return -1;
    if (ctx->shipper.last_snapshot_ms && (!rep->opts || !rep->opts->snapshot_once))
        catch_up_missed_snapshot(ctx);
    start_common_timers(rep, ctx);
    log_info("%s: capturing Redis at %s, segments every %lldms, to %zu replica(s)", cfg->name, cfg->redis_addr,
             (long long)cfg->sync_interval_ms, ctx->replica_count);
    return 0;
}

static int setup_database(struct replicator *rep, struct db_context *ctx,
                          const struct config_db *cfg, struct tm_error *err)
{
    ctx->owner = rep;
    ctx->cfg = cfg;
    ctx->watch = -1;
    ctx->wal_watch = -1;
    ctx->db_watch = -1;
    /* before the spool: its default place is beside the database */
    if (cfg->kind == DB_SQLITE && waiting_check_directory(cfg, err) != 0)
        return -1;
    if (open_replicas(ctx, err) != 0)
        return -1;
    if (cfg->kind == DB_REDIS)
        return setup_redis(rep, ctx, err);
    if (cfg->deltas) {
        char store[PATH_MAX];
        snprintf(store, sizeof store, "%s/delta-pages", cfg->state_dir);
        if (delta_builder_open(store, &ctx->deltas, err) != 0)
            return -1;
    }
    ctx->shipper = (struct shipper){.db_name = cfg->name, .key = rep->key, .spool = ctx->spool,
                                    .deltas = ctx->deltas};
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", cfg->path);
    ctx->dir = strdup(dirname(copy));
    snprintf(copy, sizeof copy, "%s", cfg->path);
    if (!ctx->dir || asprintf(&ctx->wal_name, "%s-wal", basename(copy)) < 0)
        return tm_error_set(err, "out of memory");
    ctx->watch = inotify_add_watch(rep->inotify_fd, ctx->dir, IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE);
    if (ctx->watch < 0)
        return tm_error_set(err, "cannot watch directory '%s': %s", ctx->dir, strerror(errno));
    watch_wal(ctx);
    if (control_listen(rep->loop, cfg->state_dir, on_control_command, ctx, &ctx->control, err) != 0)
        return -1;
    ev_timer_init(&ctx->waiter_timer, on_waiters, 0., 0.05);
    ctx->waiter_timer.data = ctx;
    kick_uploaders(ctx);   /* what the spool held from before goes first */
    int once = rep->opts && rep->opts->snapshot_once;
    int waiting = waiting_check(ctx);   /* not a WAL database yet: followed once it is (waiting.c) */
    if (waiting && once)
        return tm_error_set(err, "nothing to snapshot: %s", ctx->waiting_reason);
    /* another engine holding the files: reported, retried at each sync tick */
    int started = waiting || capture_hidden(ctx) ? 0 : start_database(ctx, err);
    if (started != 0 && started != TAILER_LATER)   /* later: at the first tick */
        return -1;
    ev_timer_init(&ctx->scan_timer, on_scan, SCAN_DELAY_S, 0.);
    ctx->scan_timer.data = ctx;
    start_common_timers(rep, ctx);
    if (waiting)
        ev_timer_stop(rep->loop, &ctx->sync_timer);   /* started again when the wait ends */
    else if (!once)
        catch_up_missed_snapshot(ctx);
    log_info("%s: %s '%s' every %lldms to %zu replica(s)", cfg->name,
             waiting ? "once it is a WAL database, replicating" : "replicating", cfg->path,
             (long long)cfg->sync_interval_ms, ctx->replica_count);
    return 0;
}

/* Frees one database's context; its tailer, spool, uploaders, timers. */
static void free_database(struct replicator *rep, struct db_context *ctx)
{
    for (size_t i = 0; i < ctx->waiter_count; i++)
        control_reply(ctx->waiters[i].client, "error: the database is no longer replicated (deleted)");
    ctx->waiter_count = 0;
    waiting_stop(ctx);
    tailer_close(ctx->tailer);
    capture_probe_free(ctx->probe);
    redis_capture_free(ctx->redis);
    control_close(ctx->control);
    for (size_t j = 0; j < ctx->replica_count; j++) {
        uploader_stop(&ctx->uploaders[j]);
        if (!ctx->tenants)   /* a directory's databases share their entry's */
            storage_free(ctx->replicas[j]);
    }
    if (!ctx->tenants)
        free(ctx->replicas);
    free(ctx->uploaders);
    spool_free(ctx->spool);
    delta_builder_free(ctx->deltas);
    ev_timer_stop(rep->loop, &ctx->sync_timer);
    ev_timer_stop(rep->loop, &ctx->scan_timer);
    ev_timer_stop(rep->loop, &ctx->yield_timer);
    ev_timer_stop(rep->loop, &ctx->snapshot_timer);
    ev_timer_stop(rep->loop, &ctx->retention_timer);
    ev_timer_stop(rep->loop, &ctx->waiter_timer);
    ev_periodic_stop(rep->loop, &ctx->snapshot_periodic);
    ev_periodic_stop(rep->loop, &ctx->drill_periodic);
    free(ctx->relpath);
    free(ctx->dir);
    free(ctx->wal_name);
    free(ctx->waiters);
    config_tenant_free(ctx->own_cfg);
    free(ctx);
}

static void release(struct replicator *rep)
{
    for (size_t i = 0; i < rep->db_count; i++)
        free_database(rep, rep->dbs[i]);
    free(rep->dbs);
    tenants_free(rep);
    metrics_close(rep->metrics);
    ev_timer_stop(rep->loop, &rep->alert_timer);
    alerts_free(rep->alerts);
    free(rep->status);
    free(rep->replica_status);
    http_loop_free(rep->http);
    if (rep->inotify_fd >= 0)
        close(rep->inotify_fd);
    if (rep->entry_lock_fd >= 0)
        close(rep->entry_lock_fd);
}

/* A new context in rep->dbs (zeroed; the caller sets it up). */
struct db_context *add_context(struct replicator *rep)
{
    if (rep->db_count == rep->db_cap) {
        size_t cap = rep->db_cap ? rep->db_cap * 2 : 16;
        struct db_context **grown = realloc(rep->dbs, cap * sizeof *grown);
        if (!grown)
            return NULL;
        rep->dbs = grown;
        rep->db_cap = cap;
    }
    struct db_context *ctx = calloc(1, sizeof *ctx);
    if (ctx)
        rep->dbs[rep->db_count++] = ctx;
    return ctx;
}

/* Takes ctx out of rep->dbs (order of the configured ones kept) and frees it. */
void remove_context(struct replicator *rep, struct db_context *ctx)
{
    for (size_t i = rep->configured_count; i < rep->db_count; i++)
        if (rep->dbs[i] == ctx) {
            rep->dbs[i] = rep->dbs[--rep->db_count];
            break;
        }
    free_database(rep, ctx);
}

/* ---------------------------------------------------------------- status */

static uint64_t file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Age of the oldest commit that `replica` does not have yet: pending in
 * the WAL (not spooled), or in a segment still in its queue. */
static int64_t replica_lag_ms(const struct db_context *ctx, size_t replica, int64_t now_ms)
{
    int64_t oldest = spool_queue_oldest_commit_ms(ctx->spool, replica);
    if (ctx->tailer) {
        size_t pending_count;
        const struct tailer_commit *pending = tailer_pending(ctx->tailer, &pending_count);
        if (pending_count && (!oldest || pending[0].time_ms < oldest))
            oldest = pending[0].time_ms;
    }
    return oldest && now_ms > oldest ? now_ms - oldest : 0;
}

static void fill_db_status(const struct db_context *ctx, struct db_status *out, struct replica_status *replicas,
                           int64_t now_ms)
{
    char wal[PATH_MAX + 8] = "";
    if (ctx->cfg->path && !ctx->asleep)
        snprintf(wal, sizeof wal, "%s-wal", ctx->cfg->path);
    *out = (struct db_status){
        .name = ctx->cfg->name, .entry = ctx->cfg->entry ? ctx->cfg->entry->name : NULL,
        .summed = ctx->cfg->entry && !ctx->cfg->entry->metrics_per_database, .asleep = ctx->asleep, .wal_bytes = file_bytes(wal), .spool_bytes = spool_bytes(ctx->spool),
        .spool_limit = ctx->owner->cfg->spool_limit, .segments_shipped = ctx->shipper.segments_shipped,
        .commits_shipped = ctx->shipper.commits_shipped, .bytes_shipped = ctx->shipper.bytes_shipped,
        .checkpoints = ctx->checkpoints, .snapshots = ctx->snapshots,
        .snapshot_last_bytes = ctx->snapshot_last_bytes, .snapshot_last_seconds = ctx->snapshot_last_seconds,
        .snapshot_last_ms = ctx->shipper.last_snapshot_ms, .snapshot_failing = ctx->snapshot_failing,
        .retention_failing = ctx->retention_failing, .drill_failing = ctx->drill_failing,
        .snapshot_error = ctx->snapshot_error, .errors_wal = ctx->errors_wal, .errors_spool = ctx->errors_spool,
        .errors_snapshot = ctx->errors_snapshot, .errors_retention = ctx->errors_retention,
        .errors_drill = ctx->errors_drill, .drill_result = ctx->drill_result, .drill_time_ms = ctx->drill_time_ms,
        .drill_rto_ms = ctx->drill_rto_ms, .drill_rpo_ms = ctx->drill_rpo_ms,
        .replicas = replicas, .replica_count = ctx->replica_count,
        .capture_failing_since_ms = ctx->redis ? redis_capture_failing_since(ctx->redis) : ctx->failing_since_ms,
        .capture_error = ctx->redis ? redis_capture_error(ctx->redis) : ctx->failing_error,
        .waiting_since_ms = ctx->waiting ? ctx->waiting_since_ms : 0, .waiting_reason = ctx->waiting_reason,
        .missing_alert_after_ms = ctx->cfg->missing_alert_after_ms,
        .capture_cause_named = ctx->capture_cause != 0 || ctx->reopen_failing};
    for (size_t j = 0; j < ctx->replica_count; j++) {
        const struct uploader *u = &ctx->uploaders[j];
        replicas[j] = (struct replica_status){
            .name = ctx->cfg->replicas[j].name, .last_success_ms = u->last_success_ms,
            .failing_since_ms = u->failing_since_ms, .lag_ms = replica_lag_ms(ctx, j, now_ms),
            .objects_uploaded = u->objects_uploaded, .bytes_uploaded = u->bytes_uploaded,
            .failures_total = u->failures_total, .queued = spool_queue_length(ctx->spool, j),
            .last_error = u->failing_since_ms ? u->last_error.msg : ""};
    }
}

/* Room for every database's status (databases come and go). */
static int size_status(struct replicator *rep)
{
    size_t replicas = 0;
    for (size_t i = 0; i < rep->db_count; i++)
        replicas += rep->dbs[i]->replica_count;
    if (rep->db_count > rep->status_cap || !rep->status) {
        size_t cap = rep->db_count + rep->db_count / 2 + 1;
        struct db_status *grown = realloc(rep->status, cap * sizeof *grown);
        if (!grown)
            return -1;
        rep->status = grown;
        rep->status_cap = cap;
    }
    if (replicas > rep->replica_status_cap || !rep->replica_status) {
        size_t cap = replicas + replicas / 2 + 1;
        struct replica_status *grown = realloc(rep->replica_status, cap * sizeof *grown);
        if (!grown)
            return -1;
        rep->replica_status = grown;
        rep->replica_status_cap = cap;
    }
    return 0;
}

static void fill_status(void *arg, const struct db_status **dbs, size_t *count)
{
    struct replicator *rep = arg;
    int64_t now = clock_now_ms();
    *count = 0;
    int sized = size_status(rep);
    *dbs = rep->status;   /* after size_status: it may move the arrays */
    if (sized != 0)
        return;
    struct replica_status *next = rep->replica_status;
    for (size_t i = 0; i < rep->db_count; i++) {
        fill_db_status(rep->dbs[i], &rep->status[i], next, now);
        next += rep->dbs[i]->replica_count;
    }
    *count = rep->db_count;
}

static void on_alert_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct replicator *rep = w->data;
    const struct db_status *dbs;
    size_t count;
    fill_status(rep, &dbs, &count);
    alerts_evaluate(rep->alerts, dbs, count, clock_now_ms());
}

/* Metrics endpoint and alert rules, once every database is set up. */
static int start_monitoring(struct replicator *rep, struct tm_error *err)
{
    if (size_status(rep) != 0)
        return tm_error_set(err, "out of memory");
    if (rep->cfg->metrics_listen &&
        metrics_listen(rep->loop, rep->cfg->metrics_listen, &rep->cfg->alerts, fill_status, rep, &rep->metrics, err) != 0)
        return -1;
    if (alerts_new(rep->loop, rep->http, &rep->cfg->alerts, &rep->alerts, err) != 0)
        return -1;
    ev_timer_init(&rep->alert_timer, on_alert_tick, 1., 1.);
    rep->alert_timer.data = rep;
    ev_timer_start(rep->loop, &rep->alert_timer);
    return 0;
}

/* `tidemark snapshot` without a sidecar: this database only; a snapshot
 * (unless starting it just made one), then wait for the replicas. */
static int run_snapshot_once(struct replicator *rep, struct tm_error *err)
{
    struct db_context *ctx = rep->dbs[0];
    if (!ctx->generation_started && snapshot_now(ctx, err) != 0)
        return -1;
    char key[ARCHIVE_NAME_MAX];
    spool_key_of(spool_last_published(ctx->spool), key, sizeof key);
    log_info("%s: snapshot %s taken; waiting for the replicas", ctx->cfg->name, key);
    rep->stop_deadline_ms = clock_now_ms() + rep->opts->timeout_ms;
    ev_timer_init(&rep->drain_timer, on_drain, 0., 0.05);
    rep->drain_timer.data = rep;
    ev_timer_again(rep->loop, &rep->drain_timer);
    return 0;
}

/* `tidemark snapshot ENTRY/RELPATH` with no sidecar running: that one
 * database, set up as a configured one would be, while this process
 * holds the entry's lock (so that no sidecar starts meanwhile). */
static int setup_tenant_once(struct replicator *rep, const char *name, struct tm_error *err)
{
    const struct config_db *db = config_find_db(rep->cfg, name, err);
    if (!db || !db->entry)
        return db ? 0 : -1;
    if (fsutil_make_dirs(db->entry->state_dir, err) != 0 ||
        spool_take_lock(db->entry->state_dir, &rep->entry_lock_fd, err) != 0)
        return -1;
    struct db_context *ctx = add_context(rep);
    if (!ctx)
        return tm_error_set(err, "out of memory");
    if (setup_database(rep, ctx, db, err) != 0) {
        tm_error_prefix(err, "database '%s': ", name);
        return -1;
    }
    return 0;
}

/* Many databases need many descriptors: the soft limit goes up to the
 * hard one (as Go's runtime does); children get it too, which is harmless. */
static void raise_fd_limit(void)
{
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
}

int replicate_run(const struct config *cfg, const struct crypto_keyring *key,
                  const struct replicate_options *opts)
{
    struct replicator rep = {.cfg = cfg, .key = key, .inotify_fd = -1, .opts = opts, .entry_lock_fd = -1};
    struct tm_error err;
    rep.loop = ev_default_loop(EVFLAG_AUTO);
    raise_fd_limit();
    rep.inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (rep.inotify_fd < 0) {
        tm_error_set(&err, "cannot initialise inotify: %s", strerror(errno));
        tm_error_print(&err);
        release(&rep);
        return 1;
    }
    if (http_loop_new(rep.loop, &rep.http, &err) != 0) {
        tm_error_print(&err);
        release(&rep);
        return 1;
    }
    for (size_t i = 0; i < cfg->db_count; i++) {
        const struct config_db *db = &cfg->dbs[i];
        if (db->dir || (opts && opts->snapshot_once && strcmp(db->name, opts->snapshot_once) != 0))
            continue;
        struct db_context *ctx = add_context(&rep);
        if (!ctx || setup_database(&rep, ctx, db, &err) != 0) {
            if (!ctx)
                tm_error_set(&err, "out of memory");
            tm_error_prefix(&err, "database '%s': ", db->name);
            tm_error_print(&err);
            release(&rep);
            return 1;
        }
    }
    if (opts && opts->snapshot_once && rep.db_count == 0 && setup_tenant_once(&rep, opts->snapshot_once, &err) != 0) {
        tm_error_print(&err);
        release(&rep);
        return 1;
    }
    rep.configured_count = rep.db_count;
    if ((!opts || !opts->snapshot_once) && tenants_start(&rep, &err) != 0) {
        tm_error_print(&err);
        release(&rep);
        return 1;
    }
    if ((!opts || !opts->snapshot_once) && start_monitoring(&rep, &err) != 0) {
        tm_error_print(&err);
        release(&rep);
        return 1;
    }
    if (opts && opts->snapshot_once && (rep.db_count != 1 || run_snapshot_once(&rep, &err) != 0)) {
        if (rep.db_count != 1)
            tm_error_set(&err, "no database named '%s'", opts->snapshot_once);
        tm_error_print(&err);
        release(&rep);
        return 1;
    }
    ev_io_init(&rep.inotify_watcher, on_inotify, rep.inotify_fd, EV_READ);
    rep.inotify_watcher.data = &rep;
    ev_io_start(rep.loop, &rep.inotify_watcher);
    ev_signal_init(&rep.sigterm_watcher, on_stop, SIGTERM);
    rep.sigterm_watcher.data = &rep;
    ev_signal_start(rep.loop, &rep.sigterm_watcher);
    ev_signal_init(&rep.sigint_watcher, on_stop, SIGINT);
    rep.sigint_watcher.data = &rep;
    ev_signal_start(rep.loop, &rep.sigint_watcher);
    log_info("tidemark replicating %zu database(s)", rep.db_count);
    ev_run(rep.loop, 0);
    release(&rep);
    log_info("stopped");
    return rep.exit_code;
}
