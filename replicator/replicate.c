/* replicate.c - the sidecar daemon's loop: one libev loop drives every
 * database.
 *
 * DESIGN
 *
 * `tidemark replicate` sets every configured database up (database.c),
 * the databases of `dir:` entries (tenants.c, asleep while idle), the
 * metrics endpoint and alert rules (monitoring.c), then runs the loop
 * until SIGTERM or SIGINT. All state hangs off `struct replicator`, the
 * daemon's top-level context (daemon.h); the loop is single-threaded
 * (a snapshot's compression runs on a worker thread that shares nothing
 * with it: snapshots.c). What the loop reacts to, and where:
 *
 *  - inotify (here): one descriptor for every watch. A write to NAME-wal
 *    (a watch on the WAL file itself), or NAME-wal appearing in the
 *    database's directory (a watch that sees only files created, moved
 *    in or deleted, so writes to other files there never wake the loop),
 *    arm the database's scan (database_scan_soon); events about a
 *    database file that is not a WAL database yet go to waiting.c, those
 *    of the entries' directories to tenants.c. While a scan is pending
 *    the descriptor is not read, so that the kernel merges a busy
 *    writer's identical events;
 *  - per database: the sync and scan timers (database.c), the yield
 *    timer (pin.c), snapshot schedules, retention and drills
 *    (schedules.c), the control socket (`tidemark snapshot`,
 *    snapshots.c);
 *  - SIGTERM / SIGINT (here): scan and ship what is committed into the
 *    spool, wait up to STOP_DRAIN_S for the replicas, then stop; what is
 *    left is sent at the next start. A second signal stops at once.
 *
 * `tidemark snapshot` with no sidecar running uses the same code: one
 * database set up, one snapshot, then the drain as when stopping. */
#include "daemon.h"

#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "database.h"
#include "monitoring.h"
#include "redis.h"
#include "snapshots.h"
#include "spool.h"
#include "tailer.h"
#include "tenants.h"
#include "uploader.h"
#include "waiting.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <unistd.h>

#define STOP_DRAIN_S 10.0

/* While a scan is pending, the inotify descriptor is not read: the kernel
 * merges the identical events a busy writer produces (one per write), so
 * the loop wakes about once per scan instead of once per WAL write. The
 * scan timer reads it again. */
void replicate_resume_inotify(struct replicator *rep)
{
    if (rep->inotify_fd >= 0 && !rep->stop_deadline_ms && !ev_is_active(&rep->inotify_watcher))
        ev_io_start(rep->loop, &rep->inotify_watcher);
}

/* Events were lost: every database is looked at again. */
static void on_inotify_overflow(struct replicator *rep)
{
    log_warn("inotify events were lost (queue overflow): looking at every database again");
    tenants_handle_overflow(rep);
    for (size_t i = 0; i < rep->configured_count; i++)
        if (rep->dbs[i]->waiting)
            waiting_recheck_soon(rep->dbs[i]);
        else if (!rep->dbs[i]->redis)
            database_scan_soon(rep->dbs[i]);
}

static void on_inotify_event(struct replicator *rep, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return on_inotify_overflow(rep);
    if (tenants_handle_event(rep, ev))
        return;
    for (size_t i = 0; i < rep->configured_count; i++) {
        struct db_context *ctx = rep->dbs[i];
        int seen = database_wal_event(ctx, ev);
        seen |= waiting_event(ctx, ev);   /* the database file itself */
        if (seen && ctx->waiting)
            waiting_recheck_soon(ctx);
        else if (seen)
            database_scan_soon(ctx);
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
        on_inotify_event(rep, ev);
    }
    /* stop reading while scans are pending (replicate_resume_inotify) */
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

/* Checks every 50 ms whether the replicas have everything, until
 * deadline_ms (on_drain). */
static void start_drain(struct replicator *rep, int64_t deadline_ms)
{
    rep->stop_deadline_ms = deadline_ms;
    ev_timer_init(&rep->drain_timer, on_drain, 0., 0.05);
    rep->drain_timer.data = rep;
    ev_timer_again(rep->loop, &rep->drain_timer);
}

/* Stopping: the database's control socket, its waiting clients and
 * every timer of its own. */
static void stop_watchers(struct ev_loop *loop, struct db_context *ctx)
{
    control_close(ctx->control);
    ctx->control = NULL;
    ctx->snapshot.waiter_count = 0;
    ev_timer_stop(loop, &ctx->snapshot.waiter_timer);
    ev_timer_stop(loop, &ctx->sync_timer);
    ev_timer_stop(loop, &ctx->scan_timer);
    ev_timer_stop(loop, &ctx->pin.yield_timer);
    ev_timer_stop(loop, &ctx->schedule.snapshot_timer);
    ev_periodic_stop(loop, &ctx->schedule.snapshot_periodic);
    ev_timer_stop(loop, &ctx->schedule.retention_timer);
    ev_periodic_stop(loop, &ctx->schedule.drill_periodic);
}

/* Stopping: ships what the database has committed into its spool and
 * kicks its uploaders; sets the exit code when something is left. */
static void stop_database(struct replicator *rep, struct db_context *ctx)
{
    stop_watchers(rep->loop, ctx);
    if (ctx->redis) {
        redis_capture_stop(ctx->redis);
        shipper_head_now(&ctx->shipper, clock_now_ms());
        return database_kick_uploaders(ctx);
    }
    if (ctx->waiting) {   /* nothing to ship */
        waiting_stop(ctx);
        return database_kick_uploaders(ctx);
    }
    if (ctx->tenant && tenants_sleep_before_stop(ctx))
        return database_kick_uploaders(ctx);   /* everything is shipped; a clean sleep is kept for the next start */
    if (!ctx->tailer || ctx->need_generation) {
        rep->exit_code = 1;
        return;
    }
    struct tm_error err;
    int status = database_ship_all(ctx, &err);
    size_t left;
    tailer_pending(ctx->tailer, &left);
    if (status == 0 && left)   /* seen while the segment was written: one more */
        status = database_ship_all(ctx, &err);
    tailer_pending(ctx->tailer, &left);
    if (status != 0) {
        database_report(ctx, "could not ship everything before stopping", &err);
        rep->exit_code = 1;
    } else if (left) {
        log_event(LOG_INFO, ctx->cfg->name, NULL, "%zu commit(s) made while stopping stay in the WAL, shipped at the "
                  "next start", left);
    }
    shipper_head_now(&ctx->shipper, clock_now_ms());
    database_kick_uploaders(ctx);
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
    for (size_t i = 0; i < rep->db_count; i++)
        stop_database(rep, rep->dbs[i]);
    start_drain(rep, clock_now_ms() + (int64_t)(STOP_DRAIN_S * 1000));
}

/* Frees everything replicate_run made (also after a failed start). */
static void release(struct replicator *rep)
{
    for (size_t i = 0; i < rep->db_count; i++)
        database_free(rep, rep->dbs[i]);
    free(rep->dbs);
    tenants_free(rep);
    monitoring_free(rep);
    http_loop_free(rep->http);
    if (rep->inotify_fd >= 0)
        close(rep->inotify_fd);
    if (rep->entry_lock_fd >= 0)
        close(rep->entry_lock_fd);
}

struct db_context *replicate_add_context(struct replicator *rep)
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

void replicate_remove_context(struct replicator *rep, struct db_context *ctx)
{
    for (size_t i = rep->configured_count; i < rep->db_count; i++)
        if (rep->dbs[i] == ctx) {
            rep->dbs[i] = rep->dbs[--rep->db_count];
            break;
        }
    database_free(rep, ctx);
}

/* `tidemark snapshot` without a sidecar: this database only; a snapshot
 * (unless starting it just made one), then wait for the replicas. */
static int run_snapshot_once(struct replicator *rep, struct tm_error *err)
{
    struct db_context *ctx = rep->dbs[0];
    if (!ctx->generation_started && snapshots_now(ctx, err) != 0)
        return -1;
    char key[ARCHIVE_NAME_MAX];
    spool_key_of(spool_last_published(ctx->spool), key, sizeof key);
    log_event(LOG_INFO, ctx->cfg->name, NULL, "snapshot %s taken; waiting for the replicas", key);
    shipper_head_now(&ctx->shipper, clock_now_ms());
    start_drain(rep, clock_now_ms() + rep->opts->timeout_ms);
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
    struct db_context *ctx = replicate_add_context(rep);
    if (!ctx)
        return tm_error_set(err, "out of memory");
    if (database_setup(rep, ctx, db, err) != 0) {
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

/* The configured databases: every one, or the one `tidemark snapshot`
 * names. */
static int setup_configured(struct replicator *rep, struct tm_error *err)
{
    const struct replicate_options *opts = rep->opts;
    for (size_t i = 0; i < rep->cfg->db_count; i++) {
        const struct config_db *db = &rep->cfg->dbs[i];
        if (db->dir || (opts && opts->snapshot_once && strcmp(db->name, opts->snapshot_once) != 0))
            continue;
        struct db_context *ctx = replicate_add_context(rep);
        if (!ctx || database_setup(rep, ctx, db, err) != 0) {
            if (!ctx)
                tm_error_set(err, "out of memory");
            tm_error_prefix(err, "database '%s': ", db->name);
            return -1;
        }
    }
    return 0;
}

/* Everything before the loop runs: inotify, the HTTP multi handle, the
 * databases, then the directories and monitoring (the sidecar), or the
 * snapshot (`tidemark snapshot` with no sidecar). 0, or -1 with err set. */
static int setup(struct replicator *rep, struct tm_error *err)
{
    const struct replicate_options *opts = rep->opts;
    int once = opts && opts->snapshot_once;
    rep->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (rep->inotify_fd < 0)
        return tm_error_set(err, "cannot initialise inotify: %s", strerror(errno));
    if (http_loop_new(rep->loop, &rep->http, err) != 0 || setup_configured(rep, err) != 0)
        return -1;
    if (once && rep->db_count == 0 && setup_tenant_once(rep, opts->snapshot_once, err) != 0)
        return -1;
    rep->configured_count = rep->db_count;
    if (!once && (tenants_start(rep, err) != 0 || monitoring_start(rep, err) != 0))
        return -1;
    if (once && rep->db_count != 1)
        return tm_error_set(err, "no database named '%s'", opts->snapshot_once);
    if (once && run_snapshot_once(rep, err) != 0)
        return -1;
    return 0;
}

/* The inotify descriptor and the signals that stop the loop. */
static void start_watchers(struct replicator *rep)
{
    ev_io_init(&rep->inotify_watcher, on_inotify, rep->inotify_fd, EV_READ);
    rep->inotify_watcher.data = rep;
    ev_io_start(rep->loop, &rep->inotify_watcher);
    ev_signal_init(&rep->sigterm_watcher, on_stop, SIGTERM);
    rep->sigterm_watcher.data = rep;
    ev_signal_start(rep->loop, &rep->sigterm_watcher);
    ev_signal_init(&rep->sigint_watcher, on_stop, SIGINT);
    rep->sigint_watcher.data = rep;
    ev_signal_start(rep->loop, &rep->sigint_watcher);
}

int replicate_run(const struct config *cfg, const struct crypto_keyring *key,
                  const struct replicate_options *opts)
{
    struct replicator rep = {.cfg = cfg, .key = key, .inotify_fd = -1, .opts = opts, .entry_lock_fd = -1,
                             .started_ms = clock_now_ms()};
    struct tm_error err;
    rep.loop = ev_default_loop(EVFLAG_AUTO);
    raise_fd_limit();
    if (setup(&rep, &err) != 0) {
        tm_error_print(&err);
        release(&rep);
        return 1;
    }
    start_watchers(&rep);
    log_info("tidemark replicating %zu database(s)", rep.db_count);
    ev_run(rep.loop, 0);
    release(&rep);
    log_info("stopped");
    return rep.exit_code;
}
