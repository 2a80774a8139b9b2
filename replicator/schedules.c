/* schedules.c - what a database does on the clock: snapshots on their
 * schedule, retention and restore drills in child processes.
 *
 * DESIGN
 *
 *  - Snapshots: the snapshot schedule (a cron expression in UTC, by
 *    default daily at 03:00, through an ev_periodic on the wall clock,
 *    each database shifted by its share of snapshot: { spread }) and/or
 *    the snapshot-interval timer make a snapshot due (snapshots.c); for a
 *    Redis, they ask for a full resynchronisation. A directory's database
 *    whose newest object is a snapshot skips it (an idle database writes
 *    nothing); a sleeping one is woken for it. One missed while the
 *    sidecar was down is taken at start (schedules_catch_up).
 *  - Retention after each snapshot and daily, and drills on the drill
 *    schedule (default monthly), run as child processes (`tidemark
 *    retention|drill -c FILE NAME`): listing, deleting and restoring on a
 *    remote replica can take a while, and the loop must never wait for
 *    them. One of each per database at a time; a failure is logged (the
 *    child's own errors go to the same stderr); a drill's JSON report
 *    (STATE-DIR/last-drill.json) gives the metrics their RTO and RPO. */
#include "schedules.h"

#include "../common/clock.h"
#include "../common/cron.h"
#include "../common/drill_record.h"
#include "../common/log.h"
#include "../common/textsafe.h"
#include "redis.h"
#include "snapshots.h"
#include "spool.h"
#include "tailer.h"
#include "tenants.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void drill_report_path(const struct db_context *ctx, char *out, size_t len)
{
    snprintf(out, len, "%s/last-drill.json", ctx->cfg->state_dir);
}

/* RTO and RPO of the last drill, from its JSON report (the first
 * replica's record; common/drill_record.h reads it). */
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
    struct drill_summary drill;
    struct tm_error ignored;   /* what cannot be read stays -1: reported as 0 */
    drill_record_parse(text, &drill, &ignored);
    ctx->schedule.drill_rto_ms = drill.rto_ms < 0 ? 0 : drill.rto_ms;
    ctx->schedule.drill_rpo_ms = drill.rpo_ms < 0 ? 0 : drill.rpo_ms;
    textsafe(drill.error, ctx->schedule.drill_error, sizeof ctx->schedule.drill_error);
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
    const char *what = w == &ctx->schedule.drill_child ? "drill" : "retention";
    int ok = WIFEXITED(w->rstatus) && WEXITSTATUS(w->rstatus) == 0;
    if (w == &ctx->schedule.drill_child) {
        ctx->schedule.drill_error[0] = '\0';
        ctx->schedule.drill_failing = !ok;
        ctx->schedule.drill_result = ok;
        read_drill_report(ctx);
        ctx->schedule.drill_time_ms = clock_now_ms();
        ctx->schedule.errors_drill += !ok;
    } else {
        ctx->schedule.retention_failing = !ok;
        ctx->schedule.errors_retention += !ok;
    }
    if (ok)
        log_event(LOG_INFO, ctx->cfg->name, NULL, "%s finished", what);
    else
        log_event(LOG_ERROR, ctx->cfg->name, NULL, "%s failed (exit status %d)%s", what,
                  WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : -1,
                  w == &ctx->schedule.drill_child ? ""
                                                  : "; nothing is deleted after an error, it runs again after the next "
                                                    "snapshot");
}

/* Runs `tidemark COMMAND -c FILE NAME` as a child watched by `watcher`
 * (one at a time). Its standard output goes to report_path (a drill's
 * JSON, for the metrics), or is dropped; errors go to the same stderr. */
void schedules_spawn_tidemark(struct replicator *rep, const char *name, const char *command, const char *report_path,
                    ev_child *watcher)
{
    if (ev_is_active(watcher))
        return;
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        log_event(LOG_ERROR, name, NULL, "cannot run %s: /proc/self/exe: %s", command, strerror(errno));
        return;
    }
    self[len] = '\0';
    pid_t pid = fork();
    if (pid < 0) {
        log_event(LOG_ERROR, name, NULL, "cannot run %s: fork: %s", command, strerror(errno));
        return;
    }
    if (pid == 0) {
        int out = report_path ? open(report_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
                              : open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (out >= 0)
            dup2(out, STDOUT_FILENO);
        if (report_path)   /* a database's drill: the sidecar raises drill_failed itself */
            execl(self, self, command, "-c", rep->cfg->file, name, "--json", "--no-alert", (char *)NULL);
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
    const char *out = watcher == &ctx->schedule.drill_child ? report_path : NULL;
    schedules_spawn_tidemark(ctx->owner, ctx->cfg->name, command, out, watcher);
}

void schedules_run_retention(struct db_context *ctx)
{
    if (ctx->cfg->retention.enabled && !ctx->tenant)   /* a directory's: daily, for all of them */
        spawn_command(ctx, "retention", &ctx->schedule.retention_child);
}

static void on_drill_schedule(struct ev_loop *loop, ev_periodic *w, int revents)
{
    (void)loop;
    (void)revents;
    struct db_context *ctx = w->data;
    log_event(LOG_INFO, ctx->cfg->name, NULL, "scheduled restore drill");
    spawn_command(ctx, "drill", &ctx->schedule.drill_child);
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
    schedules_run_retention(w->data);
}

/* A database whose newest object is a snapshot has not changed since. */
static int unchanged_since_snapshot(const struct db_context *ctx)
{
    const char *last = spool_last_published(ctx->spool);
    size_t len = strlen(last);
    return len > 5 && strcmp(last + len - 5, ".snap") == 0;
}

/* The schedule or the interval asks for a snapshot: for Redis, a new full
 * resynchronisation; for a database, due now (retried until taken). */
static void snapshot_requested(struct db_context *ctx)
{
    if (ctx->redis)
        return redis_capture_snapshot(ctx->redis);
    if (ctx->waiting)   /* following it starts with a snapshot */
        return;
    if (ctx->tenant && unchanged_since_snapshot(ctx)) {   /* an idle database writes nothing */
        log_event(LOG_DEBUG, ctx->cfg->name, NULL, "unchanged since its last snapshot: scheduled snapshot skipped");
        return;
    }
    ctx->snapshot.due = 1;
    ctx->snapshot.not_before_ms = 0;
    if (tenants_asleep(ctx))
        return tenants_wake_later(ctx);   /* taken at its first tick awake */
    snapshots_if_due(ctx);
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
 * sidecar was not running is taken as soon as it is back. One due since
 * the sidecar started was not missed: the schedule took it or skipped it
 * (a directory's database, unchanged, asleep), even when this runs at a
 * sleeping database's first wake. */
void schedules_catch_up(struct db_context *ctx)
{
    int64_t last = ctx->shipper.last_snapshot_ms, now = clock_now_ms();
    int64_t due = INT64_MAX;
    if (last <= 0)   /* no snapshot yet: the generation that starts takes the first one */
        return;
    if (ctx->cfg->snapshot_cron_set)
        due = next_snapshot_ms(ctx, last);
    if (ctx->cfg->snapshot_interval_ms && last + ctx->cfg->snapshot_interval_ms < due)
        due = last + ctx->cfg->snapshot_interval_ms;
    if (due < 0 || due > now || due >= ctx->owner->started_ms || (ctx->tenant && unchanged_since_snapshot(ctx)))
        return;
    char when[40];
    clock_format_ms(due, when, sizeof when);
    log_event(LOG_INFO, ctx->cfg->name, NULL, "the snapshot due at %s was missed while the sidecar was down: "
              "taking it now", when);
    if (ctx->redis)   /* the first connection asks for a full resynchronisation */
        return redis_capture_snapshot(ctx->redis);
    struct tm_error err;
    if (snapshots_now(ctx, &err) == TAILER_LATER) {
        ctx->snapshot.due = 1;
        ctx->snapshot.not_before_ms = clock_now_ms() + SNAPSHOT_BUSY_RETRY_MS;
    }
}

void schedules_start_snapshots(struct replicator *rep, struct db_context *ctx)
{
    const struct config_db *cfg = ctx->cfg;
    if (cfg->snapshot_interval_ms) {
        double snapshot_s = (double)cfg->snapshot_interval_ms / 1000.0;
        ev_timer_init(&ctx->schedule.snapshot_timer, on_snapshot_interval, snapshot_s, snapshot_s);
        ctx->schedule.snapshot_timer.data = ctx;
        ev_timer_start(rep->loop, &ctx->schedule.snapshot_timer);
    }
    if (cfg->snapshot_cron_set) {
        ev_periodic_init(&ctx->schedule.snapshot_periodic, on_snapshot_schedule, 0., 0., next_scheduled_snapshot);
        ctx->schedule.snapshot_periodic.data = ctx;
        ev_periodic_start(rep->loop, &ctx->schedule.snapshot_periodic);
    }
}

void schedules_start_retention_and_drills(struct replicator *rep, struct db_context *ctx)
{
    const struct config_db *cfg = ctx->cfg;
    ev_child_init(&ctx->schedule.retention_child, on_child_done, 0, 0);
    ctx->schedule.retention_child.data = ctx;
    ev_child_init(&ctx->schedule.drill_child, on_child_done, 0, 0);
    ctx->schedule.drill_child.data = ctx;
    ctx->schedule.drill_result = -1;
    int drill_can_decrypt = !rep->key || !crypto_keyring_public_only(rep->key);
    if (cfg->drill.enabled && !drill_can_decrypt)
        log_event(LOG_WARN, cfg->name, NULL, "drills are not run by this sidecar: it holds only the public "
                  "key (recipient-file), and a drill must decrypt; run 'tidemark drill --key-file SECRET' "
                  "from the restore host, or set 'drill: off'");
    if (cfg->drill.enabled && drill_can_decrypt) {
        ev_periodic_init(&ctx->schedule.drill_periodic, on_drill_schedule, 0., 0., next_drill);
        ctx->schedule.drill_periodic.data = ctx;
        ev_periodic_start(rep->loop, &ctx->schedule.drill_periodic);
    }
    /* a minute after start, then daily */
    ev_timer_init(&ctx->schedule.retention_timer, on_retention_timer, 60., 86400.);
    ctx->schedule.retention_timer.data = ctx;
    ev_timer_start(rep->loop, &ctx->schedule.retention_timer);
}
