/* monitoring.c - the daemon's side of /metrics, /healthz and the alert
 * rules: a snapshot of what the sidecar knows about each database and
 * replica (status.h), filled on demand from the contexts.
 *
 * The metrics endpoint (metrics.c) asks for the snapshot on each request;
 * the alert rules (alerts.c) are evaluated on it every second. The arrays
 * live in struct replicator and grow with the databases (directories'
 * databases come and go); nothing here changes a database's state. */
#include "monitoring.h"

#include "../common/clock.h"
#include "alerts.h"
#include "metrics.h"
#include "redis.h"
#include "spool.h"
#include "status.h"
#include "status_wire.h"
#include "tailer.h"
#include "tenants.h"
#include "uploader.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    if (ctx->cfg->path && !tenants_asleep(ctx))
        snprintf(wal, sizeof wal, "%s-wal", ctx->cfg->path);
    *out = (struct db_status){
        .name = ctx->cfg->name, .entry = ctx->cfg->entry ? ctx->cfg->entry->name : NULL,
        .summed = ctx->cfg->entry && !ctx->cfg->entry->metrics_per_database, .asleep = tenants_asleep(ctx), .wal_bytes = file_bytes(wal), .spool_bytes = spool_bytes(ctx->spool),
        .spool_limit = ctx->owner->cfg->spool_limit, .segments_shipped = ctx->shipper.segments_shipped,
        .commits_shipped = ctx->shipper.commits_shipped, .bytes_shipped = ctx->shipper.bytes_shipped,
        .checkpoints = ctx->checkpoints, .snapshots = ctx->snapshot.taken,
        .snapshot_last_bytes = ctx->snapshot.last_bytes, .snapshot_last_seconds = ctx->snapshot.last_seconds,
        .snapshot_last_ms = ctx->shipper.last_snapshot_ms, .snapshot_failing = ctx->snapshot.failing,
        .retention_failing = ctx->schedule.retention_failing, .drill_failing = ctx->schedule.drill_failing,
        .snapshot_error = ctx->snapshot.error, .errors_wal = ctx->errors_wal, .errors_spool = ctx->errors_spool,
        .errors_snapshot = ctx->snapshot.errors, .errors_retention = ctx->schedule.errors_retention,
        .errors_drill = ctx->schedule.errors_drill, .drill_result = ctx->schedule.drill_result, .drill_time_ms = ctx->schedule.drill_time_ms,
        .drill_rto_ms = ctx->schedule.drill_rto_ms, .drill_rpo_ms = ctx->schedule.drill_rpo_ms,
        .drill_error = ctx->schedule.drill_error,
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

static void write_alert(void *arg, const char *rule, const char *replica, const char *message, int64_t since_ms)
{
    status_wire_alert(arg, rule, replica, message, since_ms);
}

void monitoring_reply_status(struct replicator *rep, monitoring_select_fn select, const void *arg,
                             struct control_client *client)
{
    const struct db_status *dbs;
    size_t count;
    fill_status(rep, &dbs, &count);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return control_reply(client, "error: out of memory");
    int64_t now = clock_now_ms();
    status_wire_begin(out);
    for (size_t i = 0; i < count; i++) {
        if (!select(rep->dbs[i], arg))
            continue;
        status_wire_db(out, &dbs[i], &rep->cfg->alerts, now);
        alerts_each_open(rep->alerts, dbs[i].name, write_alert, out);
        status_wire_replicas(out, &dbs[i], &rep->cfg->alerts, now);
    }
    status_wire_end(out);
    if (fclose(out) != 0 || !text) {
        free(text);
        return control_reply(client, "error: out of memory");
    }
    control_reply_document(client, text, len);
    free(text);
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

int monitoring_start(struct replicator *rep, struct tm_error *err)
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

void monitoring_free(struct replicator *rep)
{
    metrics_close(rep->metrics);
    ev_timer_stop(rep->loop, &rep->alert_timer);
    alerts_free(rep->alerts);
    free(rep->status);
    free(rep->replica_status);
}
