/* database.c - one database's lifecycle on the loop: set up, start,
 * follow (the sync tick and the scan), restart, free.
 *
 * DESIGN
 *
 * Per database there is a tailer (tailer.c: pins and reads the WAL), a
 * shipper (shipper.c: makes objects and publishes them in the database's
 * spool, spool.c) and one uploader per replica (uploader.c: ships the
 * spool's queue to that replica, on its own).
 *
 *  - Start (database_start): open the tailer and continue the archive
 *    where it ends when the WAL provably continues it (its salts and
 *    checksum chain), else start a new generation: a fresh snapshot at
 *    the pin (database_start_generation).
 *  - A write to the WAL (inotify, replicate.c) arms a 5 ms one-shot scan
 *    (database_scan_soon), so that each commit is stamped within a few
 *    milliseconds of being written (bursts of writes cost one scan); a
 *    busy writer that filled checkpoint-pages before the next tick gets
 *    the tick's work at once. Writes also keep the tailer's commit
 *    counter watch going (tailer_watch.c): commits made while the loop
 *    is busy shipping or snapshotting keep the time they were made.
 *  - The sync timer (sync-interval): scan, then ship all pending commits
 *    as one segment, take a due snapshot (snapshots.c), and move the pin
 *    on (pin.c). When the spool reaches spool-limit, no new segment is
 *    made (an alert-level error is logged): the commits stay in the WAL,
 *    pinned, until the replicas drain it.
 *  - Continuity lost (the tailer or the shipper says so): the database is
 *    reopened and a new generation begins (database_restart). A file
 *    that is missing, empty or not in WAL mode waits instead (waiting.c);
 *    another engine hiding the commits (capture_probe.h) closes the
 *    tailer until it is gone.
 *
 * Replicas never hold up capture: commits are released from the WAL once
 * published in the spool (on the database's disk); each replica catches
 * up from its queue, in order, when it can. A `redis:` entry has the same
 * spool, uploaders and schedules, with redis.c's capture in place of the
 * tailer. */
#include "database.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/storage/storage.h"
#include "capture_probe.h"
#include "control.h"
#include "deltas.h"
#include "monitoring.h"
#include "pin.h"
#include "redis.h"
#include "schedules.h"
#include "snapshots.h"
#include "spool.h"
#include "tailer.h"
#include "tenants.h"
#include "uploader.h"
#include "waiting.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

static int capture_hidden(struct db_context *ctx);
static void watch_wal(struct db_context *ctx);

void database_report(struct db_context *ctx, const char *what, const struct tm_error *err)
{
    if (err->hint[0])
        log_event(LOG_ERROR, ctx->cfg->name, NULL, "%s: %s (HINT: %s)", what, err->msg, err->hint);
    else
        log_event(LOG_ERROR, ctx->cfg->name, NULL, "%s: %s", what, err->msg);
}

void database_kick_uploaders(struct db_context *ctx)
{
    for (size_t i = 0; i < ctx->replica_count; i++)
        uploader_kick(&ctx->uploaders[i]);
}

/* A database that cannot be started: failing until it starts. A file
 * there that cannot be followed (not a database, unreadable) is reported
 * at once, however it came (replaced under a running tailer, or found
 * after waiting); a missing one is waited for. */
static void note_start_failure(struct db_context *ctx, const char *what, const struct tm_error *err)
{
    ctx->failing = 1;
    database_note_capture(ctx, what, err);
    ctx->reopen_failing = access(ctx->cfg->path, F_OK) == 0;
}

/* True (and logged once per incident) when the spool is at its limit. */
static int spool_is_full(struct db_context *ctx)
{
    uint64_t waiting = spool_bytes(ctx->spool), limit = ctx->owner->cfg->spool_limit;
    int full = waiting >= limit;
    if (full && !ctx->spool_full)
        log_event(LOG_ERROR, ctx->cfg->name, NULL, "ALERT: spool full: %llu bytes wait for replicas (spool-limit "
                  "%llu); new commits stay in the WAL until a replica catches up", (unsigned long long)waiting,
                  (unsigned long long)limit);
    else if (!full && ctx->spool_full)
        log_event(LOG_INFO, ctx->cfg->name, NULL, "spool below its limit again; shipping resumes");
    ctx->spool_full = full;
    return full;
}

/* Ships what is pending. When the WAL shrank under frames scanned (the
 * Turso engine truncated it between the scan and the ship), scans again
 * (adopting the frames read ahead, or finding continuity lost) and ships
 * once more. SHIPPER_OK, SHIPPER_BROKEN (also a scan's TAILER_BROKEN), -1. */
static int ship_pending(struct db_context *ctx, struct tm_error *err)
{
    int status = shipper_ship(&ctx->shipper, ctx->tailer, err);
    for (int again = 0; status == SHIPPER_RESCAN && again < 2; again++) {
        log_event(LOG_DEBUG, ctx->cfg->name, NULL, "scanning again before shipping: %s", err->msg);
        int scanned = tailer_scan(ctx->tailer, err);
        if (scanned != TAILER_OK)
            return scanned == TAILER_BROKEN ? SHIPPER_BROKEN : -1;
        status = shipper_ship(&ctx->shipper, ctx->tailer, err);
    }
    return status == SHIPPER_RESCAN ? -1 : status;
}

/* Ships everything committed so far: 0, 1 when continuity is lost
 * (start a new generation), -1 on errors. */
int database_ship_all(struct db_context *ctx, struct tm_error *err)
{
    pin_before_shipping(ctx);
    int status = tailer_scan(ctx->tailer, err);
    if (status != TAILER_OK)
        return status < 0 ? -1 : 1;
    status = ship_pending(ctx, err);
    return status < 0 ? -1 : status;
}

/* Postponed this many ticks in a row, a new generation is an error
 * (capture_failing, /healthz). */
#define GENERATION_POSTPONED_LOUD 5

/* New generation: position exactly at the pin's snapshot, and snapshot.
 * 0; TAILER_LATER when commits kept arriving at every attempt to read
 * the pin's place (the caller tries again at the next tick); -1. */
int database_start_generation(struct db_context *ctx, const char *reason, struct tm_error *err)
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
            database_note_capture(ctx, "cannot start a new generation", err);
        return rc;
    }
    if (rc != TAILER_OK)
        return rc;
    ctx->generation_postponed = 0;
    ctx->pin.moves++;
    ctx->pin.checkpoint_floor = tailer_shipped(ctx->tailer).frame;
    shipper_new_generation(&ctx->shipper, clock_now_ms());
    log_event(LOG_INFO, ctx->cfg->name, NULL, "new generation %s (%s)", ctx->shipper.generation, reason);
    if (snapshots_take(ctx, 0, err) != 0)   /* a new generation does not give way: it is rare */
        return -1;
    ctx->need_generation = 0;
    ctx->generation_started = 1;
    database_kick_uploaders(ctx);
    return 0;
}

/* After a tailer_resume_* that returned `resumed`: ships what the WAL
 * holds past the position. 1: the archive continues; 0: it does not
 * (start a new generation); -1: error. */
int database_continue_archive(struct db_context *ctx, int resumed, struct tm_error *err)
{
    if (resumed != 1)
        return resumed < 0 ? -1 : 0;
    int rc = database_ship_all(ctx, err);
    if (rc < 0)
        return -1;
    if (rc == 0 && tailer_advance_pin(ctx->tailer, err) == TAILER_OK)   /* a pin placed by what is shipped */
        ctx->pin.moves++;
    return rc == 0;
}

/* Opens the tailer and continues the archive where it ends, or starts a
 * new generation when continuity with it cannot be proven. 0, -1, or
 * TAILER_LATER (try again at the next tick). */
int database_start(struct db_context *ctx, struct tm_error *err)
{
    if (!ctx->tailer && tailer_open(ctx->cfg->path, (enum tailer_engine)ctx->cfg->engine, &ctx->tailer, err) != 0)
        return -1;
    if (ctx->need_generation)
        return database_start_generation(ctx, "continuity with the archive was lost", err);
    struct wal_position pos;
    uint32_t page_size;
    int found;
    if (shipper_resume(&ctx->shipper, &pos, &page_size, &found, err) != 0)
        return -1;
    if (!found) {
        ctx->need_generation = 1;
        return database_start_generation(ctx, "no resumable archive", err);
    }
    int resumed = tailer_resume_at(ctx->tailer, &pos, page_size, err);
    int continued = database_continue_archive(ctx, resumed, err);
    if (continued < 0)
        return -1;
    if (continued) {
        log_event(LOG_INFO, ctx->cfg->name, NULL, "resumed generation %s at segment %llu", ctx->shipper.generation,
                  (unsigned long long)ctx->shipper.next_index);
        return 0;
    }
    ctx->need_generation = 1;
    return database_start_generation(ctx, resumed == 1 ? "WAL changed while resuming"
                                              : "the WAL no longer continues the archive", err);
}

void database_restart(struct db_context *ctx, const char *why)
{
    log_event(LOG_WARN, ctx->cfg->name, NULL, "%s; reopening and starting a new generation", why);
    tailer_close(ctx->tailer);
    ctx->tailer = NULL;
    ctx->need_generation = 1;
    if (waiting_check(ctx))   /* deleted: its backups stay; a new generation when it is back */
        return;
    if (capture_hidden(ctx))   /* another engine: reported; the sync tick retries */
        return;
    struct tm_error err;
    int rc = database_start(ctx, &err);
    if (rc != 0 && rc != TAILER_LATER) {
        database_report(ctx, "cannot start a new generation (will retry)", &err);
        note_start_failure(ctx, "cannot start a new generation", &err);
    }
}

/* For the capture_failing alert and /healthz: since when the database
 * has not been followed, and why (NULL: it is again). */
void database_note_capture(struct db_context *ctx, const char *what, const struct tm_error *err)
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
        capture_probe_new(ctx->cfg->path, ctx->cfg->sync_interval_ms, ctx->cfg->engine, &ctx->probe, &err) != 0)
        return 0;
    struct capture_view view = {0};
    if (ctx->tailer && tailer_header(ctx->tailer)) {
        size_t count;
        const struct tailer_commit *pending = tailer_pending(ctx->tailer, &count);
        view = (struct capture_view){.has_wal = 1, .hdr = *tailer_header(ctx->tailer),
                                     .committed_end = count ? pending[count - 1].end : tailer_shipped(ctx->tailer),
                                     .wal_index_fd = tailer_wal_index_fd(ctx->tailer),
                                     .turso = tailer_is_turso(ctx->tailer)};
    } else if (ctx->tailer) {
        view.turso = tailer_is_turso(ctx->tailer);
    }
    int cause = capture_probe_check(ctx->probe, ctx->tailer ? &view : NULL, clock_now_ms(), &err);
    if (cause <= 0) {
        if (cause < 0)
            log_event(LOG_DEBUG, ctx->cfg->name, NULL, "capture probe: %s", err.msg);
        if (ctx->capture_cause) {
            log_event(LOG_INFO, ctx->cfg->name, NULL, "what hid the commits is gone: following the database again");
            database_note_capture(ctx, NULL, NULL);
        }
        ctx->capture_cause = 0;
        return 0;
    }
    if (cause != ctx->capture_cause)
        database_report(ctx, "commits cannot be captured", &err);
    ctx->capture_cause = cause;
    database_note_capture(ctx, "not capturing", &err);
    if (ctx->tailer) {
        tailer_close(ctx->tailer);
        ctx->tailer = NULL;
    }
    return 1;
}
/* ------------------------------------------------- end of capture probe */

/* The scan, ship and checkpoint step run on every sync tick. */
static void sync_database(struct db_context *ctx)
{
    struct tm_error err;
    watch_wal(ctx);
    if (capture_hidden(ctx))
        return;
    if (!ctx->tailer || ctx->need_generation) {
        if (waiting_check(ctx))
            return;
        int started = database_start(ctx, &err);
        if (started == TAILER_LATER)
            return;
        if (started != 0) {
            if (!ctx->failing)
                database_report(ctx, "cannot start (will retry)", &err);
            note_start_failure(ctx, "cannot start", &err);
            return;
        }
        ctx->failing = 0;
        ctx->reopen_failing = 0;
    }
    int status = tailer_scan(ctx->tailer, &err);
    if (status == TAILER_BROKEN)
        return database_restart(ctx, err.msg);
    if (status < 0) {
        database_report(ctx, "cannot read the WAL", &err);
        ctx->errors_wal++;
        database_note_capture(ctx, "cannot read the WAL", &err);
        return;
    }
    if (spool_is_full(ctx))
        return database_kick_uploaders(ctx);
    uint64_t segments_before = ctx->shipper.segments_shipped;
    pin_before_shipping(ctx);
    status = ship_pending(ctx, &err);
    database_kick_uploaders(ctx);
    if (ctx->shipper.segments_shipped != segments_before)
        ctx->last_active_ms = clock_now_ms();
    if (status == SHIPPER_BROKEN)
        return database_restart(ctx, err.msg);
    if (status < 0) {
        if (!ctx->failing)
            database_report(ctx, "cannot write to the spool (commits stay pinned in the WAL and will be retried)", &err);
        ctx->errors_spool++;
        ctx->failing = 1;
        database_note_capture(ctx, "cannot write to the spool", &err);
        return;
    }
    if (ctx->failing)
        log_event(LOG_INFO, ctx->cfg->name, NULL, "shipping recovered");
    ctx->failing = 0;
    database_note_capture(ctx, NULL, NULL);
    snapshots_if_wal_grew(ctx);
    snapshots_if_due(ctx);
    if (!ctx->tailer || ctx->need_generation)
        return;
    pin_keep_moving(ctx, ctx->shipper.segments_shipped == segments_before);
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

/* WATCHED, THEN POLLED. An inotify watch on the WAL costs the
 * application on every write it makes (the kernel queues an event, merged
 * with the last one, from inside the application's pwrite): measured, a
 * watch alone, read every 5 ms as the loop reads it, took 4-9 % of the
 * speed of a writer of one-row transactions (../shared/checks, the writer
 * of app-beside-sidecar, 3 alternated runs). So the watch only wakes the
 * sidecar from quiet: at its first event the watch is removed, and the
 * scan timer reads the WAL every SCAN_DELAY_S instead - the pace events
 * gave it anyway, as a burst of events costs one scan - for as long as
 * commits keep coming. After QUIET_POLLS polls in a row without a new
 * commit the watch is added again, before one more scan (a write between
 * that scan and the watch would go unseen otherwise). Whatever stops the
 * polling otherwise (a restart, the tailer closed), the next sync tick
 * watches the WAL again. The Turso route keeps its watch (the engine's
 * frames are read ahead by the tailer's thread: tailer_ahead.c). */
#define QUIET_POLLS 10

/* The application writes: from now on its WAL is polled (see above). */
static void poll_wal(struct db_context *ctx)
{
    if (ctx->wal_watch >= 0)
        inotify_rm_watch(ctx->owner->inotify_fd, ctx->wal_watch);
    ctx->wal_watch = -1;
    ctx->wal_polled = 1;
    ctx->quiet_polls = 0;
}

/* Where the tailer's newest commit ends: pending, else shipped. */
static struct wal_position newest_commit(const struct tailer *t)
{
    size_t count;
    const struct tailer_commit *pending = tailer_pending(t, &count);
    return count ? pending[count - 1].end : tailer_shipped(t);
}

static int same_position(const struct wal_position *a, const struct wal_position *b)
{
    return a->frame == b->frame && a->salt1 == b->salt1 && a->salt2 == b->salt2;
}

/* After a scan that polled the WAL: the next poll, or the watch again
 * once the application has been quiet for QUIET_POLLS polls. */
static void after_poll(struct db_context *ctx, int found_commits)
{
    if (!ctx->wal_polled)
        return;
    ctx->quiet_polls = found_commits ? 0 : ctx->quiet_polls + 1;
    if (ev_is_active(&ctx->scan_timer))
        return;
    ev_timer_set(&ctx->scan_timer, SCAN_DELAY_S, 0.);
    ev_timer_start(ctx->owner->loop, &ctx->scan_timer);
}

static void on_scan(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct db_context *ctx = w->data;
    replicate_resume_inotify(ctx->owner);
    if (ctx->wal_polled && (ctx->quiet_polls >= QUIET_POLLS || !ctx->tailer || ctx->need_generation)) {
        ctx->wal_polled = 0;   /* watched again before this last scan */
        watch_wal(ctx);
    }
    if (!ctx->tailer || ctx->need_generation)
        return;
    struct tm_error err;
    struct wal_position before = newest_commit(ctx->tailer);
    int status = tailer_scan(ctx->tailer, &err);
    if (status == TAILER_BROKEN)
        return database_restart(ctx, err.msg);
    if (status < 0)
        return database_report(ctx, "cannot read the WAL", &err);
    struct wal_position after = newest_commit(ctx->tailer);
    int found_commits = !same_position(&before, &after);
    if (found_commits)
        tailer_watch_writes(ctx->tailer);
    after_poll(ctx, found_commits);
    /* A busy writer filled checkpoint-pages before the next tick: ship and
     * checkpoint now, so that the WAL can restart. While the sidecar pins
     * it, the WAL only grows, and a long WAL slows every commit down (the
     * wal-index SQLite searches grows with it): measured, this alone took
     * a fast writer from 100 % to under 80 % of its speed. */
    size_t count;
    const struct tailer_commit *pending = tailer_pending(ctx->tailer, &count);
    if (count)   /* written: the pin may be in the way again */
        pin_update_yield_timer(ctx);
    if (count && pending[count - 1].end.frame >= ctx->pin.checkpoint_floor + ctx->cfg->checkpoint_pages &&
        tailer_shipped(ctx->tailer).frame >= ctx->pin.checkpoint_floor)
        sync_database(ctx);
}

/* Watches the WAL file itself for writes, once it exists (retried at
 * every sync tick and when the directory's watch sees it created), unless
 * it is being polled. */
static void watch_wal(struct db_context *ctx)
{
    if (ctx->wal_polled && !ev_is_active(&ctx->scan_timer))
        ctx->wal_polled = 0;   /* polling was stopped */
    if (ctx->wal_watch >= 0 || ctx->wal_polled || ctx->tenant)   /* a directory's: its entry's watch */
        return;
    char path[PATH_MAX + NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/%s", ctx->dir, ctx->wal_name);
    ctx->wal_watch = inotify_add_watch(ctx->owner->inotify_fd, path, IN_MODIFY);
}

/* Whether inotify event `ev` concerns database ctx's WAL; keeps the WAL
 * file's watch in step with the file (gone: -1; created again: watched). */
int database_wal_event(struct db_context *ctx, const struct inotify_event *ev)
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

void database_scan_soon(struct db_context *ctx)
{
    if (ctx->tailer && tailer_is_turso(ctx->tailer) && !ctx->need_generation) {
        /* the engine wrote to its WAL (its frames are being read by the
         * tailer's own thread: tailer_ahead.c): poll every millisecond for
         * the commit it publishes, for a while (pin.c) */
        ctx->pin.wal_event_ms = clock_now_ms();
        pin_update_yield_timer(ctx);
        return;
    }
    if (ctx->tailer && !ctx->need_generation)
        tailer_watch_writes(ctx->tailer);   /* stamps stay exact while the loop is busy */
    if (ctx->tailer && !ctx->tenant && !ctx->need_generation)
        poll_wal(ctx);
    if (!ev_is_active(&ctx->scan_timer)) {
        ev_timer_set(&ctx->scan_timer, SCAN_DELAY_S, 0.);
        ev_timer_start(ctx->owner->loop, &ctx->scan_timer);
    }
}

/* Refuses what cannot work (bad credentials, missing bucket, versioning
 * required but off); warns about what only weakens the backups; an
 * unreachable replica is not fatal: its objects wait in the spool. */
int database_check_replica(const struct config_db *db, size_t i, struct storage *replica, struct tm_error *err)
{
    const struct config_replica *cfg = &db->replicas[i];
    struct storage_check check;
    if (storage_check(replica, 0, &check, err) != 0) {
        if (!check.transient)
            return -1;
        log_event(LOG_ERROR, db->name, NULL, "replica '%s' is unreachable: %s (objects wait in the spool)", cfg->name,
                  err->msg);
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
        log_event(LOG_WARN, db->name, NULL, "replica '%s': bucket '%s' has versioning off: a deleted or overwritten "
                  "backup cannot be recovered (set require-versioning: true to refuse this)", cfg->name,
                  cfg->s3.bucket);
    else if (check.versioning == 1)
        log_event(LOG_INFO, db->name, NULL, "replica '%s': bucket versioning is enabled", cfg->name);
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
        log_event(LOG_WARN, ctx->cfg->name, NULL, "%zu replica(s) no longer configured: their queued objects were "
                  "dropped from the spool", replicas_removed);
    if (replica_added) {
        log_event(LOG_INFO, ctx->cfg->name, NULL, "a replica was added: starting a new generation so that it gets a snapshot");
        ctx->need_generation = 1;
    }
    for (size_t i = 0; i < count; i++) {
        if (storage_open_replica(&ctx->cfg->replicas[i], &ctx->replicas[i], err) != 0)
            return -1;
        ctx->replica_count++;
        storage_attach(ctx->replicas[i], ctx->owner->http);
        uploader_init(&ctx->uploaders[i], ctx->owner->loop, ctx->spool, i, ctx->replicas[i],
                      ctx->cfg->name, ctx->cfg->replicas[i].name);
        if (database_check_replica(ctx->cfg, i, ctx->replicas[i], err) != 0)
            return -1;
    }
    size_t queued = 0;
    for (size_t i = 0; i < count; i++)
        queued += spool_queue_length(ctx->spool, i);
    if (queued)
        log_event(LOG_INFO, ctx->cfg->name, NULL, "%zu object(s) in the spool from before; uploading them first", queued);
    return 0;
}

static int is_this_database(const struct db_context *ctx, const void *arg)
{
    return ctx == arg;
}

/* "status" (`tidemark status`) and, for a SQLite database, "snapshot". */
static void on_control_command(void *arg, const char *command, struct control_client *client)
{
    struct db_context *ctx = arg;
    if (strcmp(command, "status") == 0)
        return monitoring_reply_status(ctx->owner, is_this_database, ctx, client);
    if (strcmp(command, "snapshot") != 0)
        return control_reply(client, "error: unknown command (known: snapshot, status)");
    if (ctx->cfg->kind == DB_REDIS)
        return control_reply(client, "error: a Redis entry's snapshots are taken on its schedule");
    snapshots_for_client(ctx, client);
}

/* The sync and yield timers (set, not started) and the snapshot
 * schedules (started). */
static void init_sync_and_snapshot_timers(struct replicator *rep, struct db_context *ctx)
{
    double sync_s = (double)ctx->cfg->sync_interval_ms / 1000.0;
    ev_timer_init(&ctx->sync_timer, on_sync, sync_s, sync_s);
    ctx->sync_timer.data = ctx;
    pin_init_yield_timer(ctx);
    schedules_start_snapshots(rep, ctx);
}

void database_init_timers(struct replicator *rep, struct db_context *ctx)
{
    ev_timer_init(&ctx->scan_timer, on_scan, SCAN_DELAY_S, 0.);
    ctx->scan_timer.data = ctx;
    init_sync_and_snapshot_timers(rep, ctx);
    snapshots_init_waiters(ctx);
}

/* The sync timer, snapshot schedules, retention and drills: the same for
 * a database and a Redis. */
static void start_common_timers(struct replicator *rep, struct db_context *ctx)
{
    init_sync_and_snapshot_timers(rep, ctx);
    ev_timer_start(rep->loop, &ctx->sync_timer);
    if (!ctx->redis)
        pin_update_yield_timer(ctx);
    schedules_start_retention_and_drills(rep, ctx);
}

static void redis_published(void *arg)
{
    database_kick_uploaders(arg);
}

/* A `redis:` entry: the capture (redis.c) on this loop, the same spool,
 * uploaders, schedules and retention as a database. */
static int setup_redis(struct replicator *rep, struct db_context *ctx, struct tm_error *err)
{
    const struct config_db *cfg = ctx->cfg;
    ctx->shipper = (struct shipper){.db_name = cfg->name, .key = rep->key, .spool = ctx->spool};
    database_kick_uploaders(ctx);
    struct redis_capture_deps deps = {.loop = rep->loop, .cfg = cfg, .key = rep->key, .spool = ctx->spool,
                                      .shipper = &ctx->shipper, .published = redis_published, .arg = ctx,
                                      .spool_limit = rep->cfg->spool_limit};
    if (redis_capture_start(&deps, &ctx->redis, err) != 0)
        return -1;
    if (ctx->shipper.last_snapshot_ms && (!rep->opts || !rep->opts->snapshot_once))
        schedules_catch_up(ctx);
    start_common_timers(rep, ctx);
    log_event(LOG_INFO, cfg->name, NULL, "capturing Redis at %s, segments every %lldms, to %zu replica(s)",
              cfg->redis_addr, (long long)cfg->sync_interval_ms, ctx->replica_count);
    return 0;
}

/* The shipper's `beside` while a segment is written on its own thread
 * (shipper_segment.c): the pin kept out of a waiting checkpoint's way
 * (pin.c). Not on the Turso route: its engine never waits for a reader
 * (a checkpoint the pin is in the way of fails at once, and the pin is
 * let go before the engine checkpoints, tailer_turso.c), and its scans
 * adopt WALs read ahead by another thread: nothing to gain there from
 * scanning in the middle of a ship. */
static int beside_a_segment(void *arg, struct tm_error *err)
{
    struct db_context *ctx = arg;
    if (tailer_is_turso(ctx->tailer))
        return 0;
    return pin_follow_beside_worker(ctx, err);
}

int database_setup(struct replicator *rep, struct db_context *ctx,
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
    if (control_listen(rep->loop, cfg->state_dir, on_control_command, ctx, &ctx->control, err) != 0)
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
                                    .deltas = ctx->deltas, .beside = beside_a_segment, .beside_arg = ctx};
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
    snapshots_init_waiters(ctx);
    database_kick_uploaders(ctx);   /* what the spool held from before goes first */
    int once = rep->opts && rep->opts->snapshot_once;
    int waiting = waiting_check(ctx);   /* not a WAL database yet: followed once it is (waiting.c) */
    if (waiting && once)
        return tm_error_set(err, "nothing to snapshot: %s", ctx->waiting_reason);
    /* another engine holding the files: reported, retried at each sync tick */
    int started = waiting || capture_hidden(ctx) ? 0 : database_start(ctx, err);
    if (started != 0 && started != TAILER_LATER)   /* later: at the first tick */
        return -1;
    ev_timer_init(&ctx->scan_timer, on_scan, SCAN_DELAY_S, 0.);
    ctx->scan_timer.data = ctx;
    start_common_timers(rep, ctx);
    if (waiting)
        ev_timer_stop(rep->loop, &ctx->sync_timer);   /* started again when the wait ends */
    else if (!once)
        schedules_catch_up(ctx);
    log_event(LOG_INFO, cfg->name, NULL, "%s '%s' every %lldms to %zu replica(s)",
              waiting ? "once it is a WAL database, replicating" : "replicating", cfg->path,
              (long long)cfg->sync_interval_ms, ctx->replica_count);
    return 0;
}

/* Frees one database's context; its tailer, spool, uploaders, timers. */
void database_free(struct replicator *rep, struct db_context *ctx)
{
    for (size_t i = 0; i < ctx->snapshot.waiter_count; i++)
        control_reply(ctx->snapshot.waiters[i].client, "error: the database is no longer replicated (deleted)");
    ctx->snapshot.waiter_count = 0;
    waiting_stop(ctx);
    tailer_close(ctx->tailer);
    capture_probe_free(ctx->probe);
    redis_capture_free(ctx->redis);
    control_close(ctx->control);
    for (size_t j = 0; j < ctx->replica_count; j++) {
        uploader_stop(&ctx->uploaders[j]);
        if (!ctx->tenant)   /* a directory's databases share their entry's */
            storage_free(ctx->replicas[j]);
    }
    if (!ctx->tenant)
        free(ctx->replicas);
    free(ctx->uploaders);
    spool_free(ctx->spool);
    delta_builder_free(ctx->deltas);
    ev_timer_stop(rep->loop, &ctx->sync_timer);
    ev_timer_stop(rep->loop, &ctx->scan_timer);
    ev_timer_stop(rep->loop, &ctx->pin.yield_timer);
    ev_timer_stop(rep->loop, &ctx->schedule.snapshot_timer);
    ev_timer_stop(rep->loop, &ctx->schedule.retention_timer);
    ev_timer_stop(rep->loop, &ctx->snapshot.waiter_timer);
    ev_periodic_stop(rep->loop, &ctx->schedule.snapshot_periodic);
    ev_periodic_stop(rep->loop, &ctx->schedule.drill_periodic);
    free(ctx->dir);
    free(ctx->wal_name);
    free(ctx->snapshot.waiters);
    tenants_free_state(ctx);
    free(ctx);
}
