/* metrics.c - /metrics and /healthz served from the daemon's loop
 * (metrics.h).
 *
 * The HTTP side is deliberately small: each connection is read until the
 * end of the request head (at most 4 KiB, 5 s), answered with one
 * HTTP/1.0 response built in memory, and closed. Rendering reads a
 * status snapshot (status.h) that monitoring.c fills on demand.
 *
 * Nothing here blocks the loop every database shares: the response is
 * written as the socket accepts it (an ev_io for writable, the rest kept
 * in the connection's buffer), and a client that stops reading is closed
 * after 5 s without progress. At most METRICS_CONNECTIONS_MAX connections
 * are open at once; one more is closed at once, and counted
 * (tidemark_metrics_connections_refused_total).
 *
 * Metric names follow Prometheus conventions: prefix tidemark_, units in
 * the name, counters end in _total, labels db and replica. */
#include "metrics.h"
#include "../common/json.h"

#include "../common/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUEST_MAX 4096
#define REQUEST_TIMEOUT_S 5.0   /* to read the request; then without write progress */
#define METRICS_CONNECTIONS_MAX 32

struct metrics_conn;

struct metrics_server {
    struct ev_loop *loop;
    ev_io io;
    int fd;
    const struct config_alerts *thresholds;
    status_fn status;
    void *arg;
    struct metrics_conn *conns;   /* open connections, each owned here until closed */
    size_t conn_count;
    uint64_t refused;             /* connections closed at once: METRICS_CONNECTIONS_MAX were open */
};

struct metrics_conn {
    ev_io io;
    ev_timer timeout;
    struct metrics_server *server;
    struct metrics_conn *next;
    char request[REQUEST_MAX + 1];
    size_t used;
    char *response;               /* head and body, once answered (malloc'd) */
    size_t response_len, sent;
};

/* ---------------------------------------------------------------- render */

static void label_value(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++)
        fprintf(out, *p == '"' || *p == '\\' ? "\\%c" : *p == '\n' ? "\\n" : "%c", *p);
}

static void metric_header(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void db_sample(FILE *out, const char *name, const struct db_status *db, double value)
{
    fprintf(out, "%s{db=\"", name);
    label_value(out, db->name);
    fprintf(out, "\"} %.17g\n", value);
}

static void replica_sample(FILE *out, const char *name, const struct db_status *db,
                           const struct replica_status *r, double value)
{
    fprintf(out, "%s{db=\"", name);
    label_value(out, db->name);
    fprintf(out, "\",replica=\"");
    label_value(out, r->name);
    fprintf(out, "\"} %.17g\n", value);
}

#define DB_METRIC(name, type, help, expr)                                   \
    do {                                                                    \
        metric_header(out, name, type, help);                               \
        for (size_t i = 0; i < count; i++) {                                \
            const struct db_status *db = &dbs[i];                           \
            if (!db->summed)                                                \
                db_sample(out, name, db, (double)(expr));                   \
        }                                                                   \
    } while (0)

#define REPLICA_METRIC(name, type, help, expr)                              \
    do {                                                                    \
        metric_header(out, name, type, help);                               \
        for (size_t i = 0; i < count; i++)                                  \
            for (size_t j = 0; j < (dbs[i].summed ? 0 : dbs[i].replica_count); j++) { \
                const struct replica_status *r = &dbs[i].replicas[j];       \
                replica_sample(out, name, &dbs[i], r, (double)(expr));      \
            }                                                               \
    } while (0)

static void error_samples(FILE *out, const struct db_status *dbs, size_t count)
{
    metric_header(out, "tidemark_errors_total", "counter", "Errors by kind (uploads: see tidemark_replica_upload_failures_total).");
    for (size_t i = 0; i < count; i++) {
        if (dbs[i].summed)
            continue;
        const struct { const char *kind; uint64_t value; } kinds[] = {
            {"wal", dbs[i].errors_wal}, {"spool", dbs[i].errors_spool}, {"snapshot", dbs[i].errors_snapshot},
            {"retention", dbs[i].errors_retention}, {"drill", dbs[i].errors_drill}};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            fprintf(out, "tidemark_errors_total{db=\"");
            label_value(out, dbs[i].name);
            fprintf(out, "\",kind=\"%s\"} %" PRIu64 "\n", kinds[k].kind, kinds[k].value);
        }
    }
}

/* ------------------------------------------------------------ entry sums
 *
 * The databases of a `dir:` entry are exported as sums per entry (label
 * `entry`): thousands of tenants would otherwise be hundreds of thousands
 * of series. `metrics-per-database: true` on the entry exports each of
 * them as any database instead. The alert rules and /healthz still look
 * at every database one by one. */

#define ENTRY_REPLICAS_MAX 8

struct entry_sum {
    const char *entry;
    size_t awake, asleep, capture_down, replica_count;
    uint64_t segments, commits, bytes, errors;
    int64_t oldest_snapshot_ms;      /* the least recent newest snapshot (0: a database has none) */
    int64_t lag_max_ms[ENTRY_REPLICAS_MAX];   /* per replica (an entry's databases share its replicas) */
    size_t failing[ENTRY_REPLICAS_MAX], queued[ENTRY_REPLICAS_MAX];
};

static void add_to_sum(struct entry_sum *sum, const struct db_status *db)
{
    if (db->asleep)
        sum->asleep++;
    else
        sum->awake++;
    sum->capture_down += db->capture_failing_since_ms != 0;
    sum->segments += db->segments_shipped;
    sum->commits += db->commits_shipped;
    sum->bytes += db->bytes_shipped;
    sum->errors += db->errors_wal + db->errors_spool + db->errors_snapshot + db->errors_retention + db->errors_drill;
    if (sum->awake + sum->asleep == 1 || db->snapshot_last_ms < sum->oldest_snapshot_ms)
        sum->oldest_snapshot_ms = db->snapshot_last_ms;
    sum->replica_count = db->replica_count < ENTRY_REPLICAS_MAX ? db->replica_count : ENTRY_REPLICAS_MAX;
    for (size_t j = 0; j < sum->replica_count; j++) {
        const struct replica_status *r = &db->replicas[j];
        if (r->lag_ms > sum->lag_max_ms[j])
            sum->lag_max_ms[j] = r->lag_ms;
        sum->failing[j] += r->failing_since_ms != 0;
        sum->queued[j] += r->queued;
    }
}

/* One sum per entry, in the order entries first appear; *out malloc'd. */
static size_t entry_sums(const struct db_status *dbs, size_t count, struct entry_sum **out)
{
    size_t sums = 0;
    *out = NULL;
    for (size_t i = 0; i < count; i++) {
        if (!dbs[i].summed)
            continue;
        size_t k = 0;
        while (k < sums && strcmp((*out)[k].entry, dbs[i].entry) != 0)
            k++;
        if (k == sums) {
            struct entry_sum *grown = realloc(*out, (sums + 1) * sizeof *grown);
            if (!grown)
                return sums;
            *out = grown;
            (*out)[sums++] = (struct entry_sum){.entry = dbs[i].entry};
        }
        add_to_sum(&(*out)[k], &dbs[i]);
    }
    return sums;
}

static void entry_sample(FILE *out, const char *name, const char *entry, const char *extra_label,
                         const char *extra_value, double value)
{
    fprintf(out, "%s{entry=\"", name);
    label_value(out, entry);
    if (extra_label) {
        fprintf(out, "\",%s=\"", extra_label);
        label_value(out, extra_value);
    }
    fprintf(out, "\"} %.17g\n", value);
}

static void render_entry_sums(const struct db_status *dbs, size_t count, FILE *out)
{
    struct entry_sum *sums;
    size_t n = entry_sums(dbs, count, &sums);
    if (!n)
        return free(sums);
    /* replica names: those of the entry's first database */
    const char *replica_names[ENTRY_REPLICAS_MAX] = {0};
    metric_header(out, "tidemark_entry_databases", "gauge", "Databases followed under a dir: entry, awake (files open) or asleep.");
    for (size_t k = 0; k < n; k++) {
        entry_sample(out, "tidemark_entry_databases", sums[k].entry, "state", "awake", (double)sums[k].awake);
        entry_sample(out, "tidemark_entry_databases", sums[k].entry, "state", "asleep", (double)sums[k].asleep);
    }
#define ENTRY_METRIC(name, type, help, expr)                                \
    do {                                                                    \
        metric_header(out, name, type, help);                               \
        for (size_t k = 0; k < n; k++)                                      \
            entry_sample(out, name, sums[k].entry, NULL, NULL, (double)(expr)); \
    } while (0)
    ENTRY_METRIC("tidemark_entry_capture_down", "gauge", "Databases of the entry the sidecar cannot follow right now.",
                 sums[k].capture_down);
    ENTRY_METRIC("tidemark_entry_segments_shipped_total", "counter", "Segments made, all databases of the entry.",
                 sums[k].segments);
    ENTRY_METRIC("tidemark_entry_commits_shipped_total", "counter", "Transactions shipped, all databases of the entry.",
                 sums[k].commits);
    ENTRY_METRIC("tidemark_entry_shipped_bytes_total", "counter", "Bytes of objects made, all databases of the entry.",
                 sums[k].bytes);
    ENTRY_METRIC("tidemark_entry_errors_total", "counter", "Errors of every kind, all databases of the entry.",
                 sums[k].errors);
    ENTRY_METRIC("tidemark_entry_snapshot_oldest_timestamp_seconds", "gauge",
                 "The least recent of the databases' newest snapshots (Unix time; 0: one has none).",
                 (double)sums[k].oldest_snapshot_ms / 1000.0);
#undef ENTRY_METRIC
    static const struct {
        const char *name, *help;
        int kind;
    } per_replica[] = {
        {"tidemark_entry_replica_lag_max_seconds", "The largest replica lag of the entry's databases: its worst RPO now.", 0},
        {"tidemark_entry_replica_failing", "Databases of the entry whose uploads to the replica fail.", 1},
        {"tidemark_entry_replica_queued_objects", "Objects of the entry's databases waiting for the replica.", 2},
    };
    for (size_t m = 0; m < sizeof per_replica / sizeof *per_replica; m++) {
        metric_header(out, per_replica[m].name, "gauge", per_replica[m].help);
        for (size_t k = 0; k < n; k++) {
            for (size_t i = 0; i < count; i++)   /* the entry's replica names */
                if (dbs[i].summed && strcmp(dbs[i].entry, sums[k].entry) == 0) {
                    for (size_t j = 0; j < sums[k].replica_count; j++)
                        replica_names[j] = dbs[i].replicas[j].name;
                    break;
                }
            for (size_t j = 0; j < sums[k].replica_count; j++) {
                double value = per_replica[m].kind == 0 ? (double)sums[k].lag_max_ms[j] / 1000.0
                               : per_replica[m].kind == 1 ? (double)sums[k].failing[j] : (double)sums[k].queued[j];
                entry_sample(out, per_replica[m].name, sums[k].entry, "replica", replica_names[j], value);
            }
        }
    }
    free(sums);
}

void metrics_render(const struct db_status *dbs, size_t count, int64_t now_ms, FILE *out)
{
    REPLICA_METRIC("tidemark_replica_lag_seconds", "gauge",
                   "Age of the oldest committed transaction not yet on the replica (0 when caught up): the current RPO.",
                   (double)r->lag_ms / 1000.0);
    REPLICA_METRIC("tidemark_replica_last_success_timestamp_seconds", "gauge",
                   "Unix time of the last object stored on the replica (0: none yet).",
                   (double)r->last_success_ms / 1000.0);
    REPLICA_METRIC("tidemark_replica_failing", "gauge", "1 while uploads to the replica fail.",
                   r->failing_since_ms ? 1 : 0);
    REPLICA_METRIC("tidemark_replica_objects_uploaded_total", "counter", "Objects stored on the replica.",
                   r->objects_uploaded);
    REPLICA_METRIC("tidemark_replica_uploaded_bytes_total", "counter", "Bytes stored on the replica.",
                   r->bytes_uploaded);
    REPLICA_METRIC("tidemark_replica_upload_failures_total", "counter", "Failed upload attempts (each is retried).",
                   r->failures_total);
    REPLICA_METRIC("tidemark_replica_queued_objects", "gauge", "Objects waiting in the spool for the replica.",
                   r->queued);
    DB_METRIC("tidemark_capture_up", "gauge",
              "1 while the sidecar follows the database (its WAL, or the Redis replication stream).",
              db->capture_failing_since_ms || db->waiting_since_ms ? 0 : 1);
    DB_METRIC("tidemark_database_waiting", "gauge",
              "1 while a configured database is missing, empty or not in WAL mode: the sidecar waits for it.",
              db->waiting_since_ms ? 1 : 0);
    DB_METRIC("tidemark_database_waiting_seconds", "gauge", "How long the database has been waited for (0: it is not).",
              db->waiting_since_ms ? (double)(now_ms - db->waiting_since_ms) / 1000.0 : 0);
    DB_METRIC("tidemark_spool_bytes", "gauge", "Bytes of objects waiting in the spool for some replica.",
              db->spool_bytes);
    DB_METRIC("tidemark_spool_limit_bytes", "gauge", "The configured spool-limit.", db->spool_limit);
    DB_METRIC("tidemark_wal_bytes", "gauge", "Size of the database's -wal file.", db->wal_bytes);
    DB_METRIC("tidemark_segments_shipped_total", "counter", "Segments made (published in the spool).",
              db->segments_shipped);
    DB_METRIC("tidemark_commits_shipped_total", "counter", "Committed transactions shipped.", db->commits_shipped);
    DB_METRIC("tidemark_shipped_bytes_total", "counter", "Bytes of objects made (before replication).",
              db->bytes_shipped);
    DB_METRIC("tidemark_checkpoints_total", "counter", "Checkpoints run by the sidecar.", db->checkpoints);
    DB_METRIC("tidemark_snapshots_total", "counter", "Base snapshots taken by this process.", db->snapshots);
    DB_METRIC("tidemark_snapshot_last_bytes", "gauge", "Stored size of the last snapshot taken.",
              db->snapshot_last_bytes);
    DB_METRIC("tidemark_snapshot_last_duration_seconds", "gauge", "How long the last snapshot took.",
              db->snapshot_last_seconds);
    DB_METRIC("tidemark_snapshot_last_timestamp_seconds", "gauge", "Unix time of the newest snapshot.",
              (double)db->snapshot_last_ms / 1000.0);
    DB_METRIC("tidemark_drill_last_success", "gauge", "Result of the last drill run by this process (1 ok, 0 failed, -1 none).",
              db->drill_result);
    DB_METRIC("tidemark_drill_last_rto_seconds", "gauge", "RTO measured by the last drill.",
              (double)db->drill_rto_ms / 1000.0);
    DB_METRIC("tidemark_drill_last_rpo_seconds", "gauge", "RPO measured by the last drill.",
              (double)db->drill_rpo_ms / 1000.0);
    error_samples(out, dbs, count);
    render_entry_sums(dbs, count, out);
}

/* A database waited for longer than its missing-alert-after is a
 * problem; one waited for less is only listed (see metrics_render_health). */
static int missing_too_long(const struct db_status *db, int64_t now_ms)
{
    return db->waiting_since_ms && db->missing_alert_after_ms &&
           now_ms - db->waiting_since_ms >= db->missing_alert_after_ms;
}

/* "waiting": the databases the sidecar waits for, with since when. */
static void render_waiting(const struct db_status *dbs, size_t count, int64_t now_ms, FILE *out)
{
    int first = 1;
    fprintf(out, ", \"waiting\": [");
    for (size_t i = 0; i < count; i++) {
        if (!dbs[i].waiting_since_ms)
            continue;
        char since[40];
        clock_format_ms(dbs[i].waiting_since_ms, since, sizeof since);
        fprintf(out, "%s{\"db\": ", first ? "" : ", ");
        json_write_string(out, dbs[i].name);
        fprintf(out, ", \"reason\": ");
        json_write_string(out, dbs[i].waiting_reason);
        fprintf(out, ", \"since\": \"%s\", \"seconds\": %.1f}", since,
                (double)(now_ms - dbs[i].waiting_since_ms) / 1000.0);
        first = 0;
    }
    fprintf(out, "]");
}

/* One entry of "problems" (replica NULL: the database's own). */
static void render_problem(FILE *out, int *first, const char *db, const char *replica, const char *reason)
{
    fprintf(out, "%s{\"db\": ", *first ? "" : ", ");
    json_write_string(out, db);
    if (replica) {
        fprintf(out, ", \"replica\": ");
        json_write_string(out, replica);
    }
    fprintf(out, ", \"reason\": ");
    json_write_string(out, reason);
    fprintf(out, "}");
    *first = 0;
}

/* What is wrong with replica r now, in reason (len bytes); "" when
 * nothing is. */
static void replica_problem(const struct replica_status *r, const struct config_alerts *thresholds, int64_t now_ms,
                            char *reason, size_t len)
{
    reason[0] = '\0';
    if (r->failing_since_ms && now_ms - r->failing_since_ms >= thresholds->failure_after_ms)
        snprintf(reason, len, "failing for %.0f s: %s", (double)(now_ms - r->failing_since_ms) / 1000.0,
                 r->last_error);
    else if (r->lag_ms > thresholds->lag_threshold_ms)
        snprintf(reason, len, "lag %.1f s above %.0f s", (double)r->lag_ms / 1000.0,
                 (double)thresholds->lag_threshold_ms / 1000.0);
}

int metrics_db_problems(const struct db_status *db, const struct config_alerts *thresholds, int64_t now_ms,
                        metrics_problem_fn each, void *arg)
{
    int problems = 0;
    char reason[1200];
    if (missing_too_long(db, now_ms)) {
        snprintf(reason, sizeof reason, "still not replicated after %.0f s (missing-alert-after %.0f s): %s",
                 (double)(now_ms - db->waiting_since_ms) / 1000.0, (double)db->missing_alert_after_ms / 1000.0,
                 db->waiting_reason);
        each(arg, NULL, reason);
        problems++;
    }
    for (size_t j = 0; j < db->replica_count; j++) {
        replica_problem(&db->replicas[j], thresholds, now_ms, reason, sizeof reason);
        if (!reason[0])
            continue;
        each(arg, db->replicas[j].name, reason);
        problems++;
    }
    if (db->capture_failing_since_ms && (db->capture_cause_named ||
        now_ms - db->capture_failing_since_ms >= thresholds->failure_after_ms)) {
        each(arg, NULL, db->capture_error[0] ? db->capture_error : "not capturing");
        problems++;
    }
    if (db->snapshot_failing) {
        each(arg, NULL, "the last snapshot failed");
        problems++;
    }
    return problems;
}

struct problem_writer {
    FILE *out;
    const char *db;
    int first;
};

static void write_problem(void *arg, const char *replica, const char *reason)
{
    struct problem_writer *w = arg;
    render_problem(w->out, &w->first, w->db, replica, reason);
}

int metrics_render_health(const struct db_status *dbs, size_t count, const struct config_alerts *thresholds,
                  int64_t now_ms, FILE *out)
{
    int healthy = 1;
    struct problem_writer writer = {.out = out, .first = 1};
    fprintf(out, "{\"problems\": [");
    for (size_t i = 0; i < count; i++) {
        writer.db = dbs[i].name;
        if (metrics_db_problems(&dbs[i], thresholds, now_ms, write_problem, &writer))
            healthy = 0;
    }
    fprintf(out, "]");
    render_waiting(dbs, count, now_ms, out);
    fprintf(out, ", \"status\": \"%s\"}\n", healthy ? "ok" : "unhealthy");
    return healthy;
}

/* ---------------------------------------------------------------- server */

static void conn_close(struct metrics_conn *c)
{
    struct metrics_server *s = c->server;
    for (struct metrics_conn **p = &s->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    s->conn_count--;
    ev_io_stop(s->loop, &c->io);
    ev_timer_stop(s->loop, &c->timeout);
    close(c->io.fd);
    free(c->response);
    free(c);
}

/* Sends what the socket takes now; closes when all is sent or the client
 * is gone. */
static void send_some(struct metrics_conn *c)
{
    while (c->sent < c->response_len) {
        ssize_t n = send(c->io.fd, c->response + c->sent, c->response_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return conn_close(c);
        c->sent += (size_t)n;
        ev_timer_stop(c->server->loop, &c->timeout);   /* progress: another 5 s */
        ev_timer_set(&c->timeout, REQUEST_TIMEOUT_S, 0.);
        ev_timer_start(c->server->loop, &c->timeout);
    }
    if (c->sent == c->response_len)
        conn_close(c);
}

static void on_conn_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    send_some((struct metrics_conn *)w);
}

/* The response of the request read, sent from the loop as the client
 * reads it. */
static void respond(struct metrics_conn *c)
{
    char *body = NULL;
    size_t body_len = 0;
    FILE *out = open_memstream(&body, &body_len);
    if (!out)
        return conn_close(c);
    int status = 200;
    const char *type = "text/plain; version=0.0.4; charset=utf-8";
    const struct db_status *dbs;
    size_t count;
    int64_t now = clock_now_ms();
    if (strncmp(c->request, "GET /metrics ", 13) == 0 || strncmp(c->request, "GET /metrics?", 13) == 0) {
        c->server->status(c->server->arg, &dbs, &count);
        metrics_render(dbs, count, now, out);
        metric_header(out, "tidemark_metrics_connections_refused_total", "counter",
                      "Connections to this endpoint closed at once: the connection cap was reached.");
        fprintf(out, "tidemark_metrics_connections_refused_total %" PRIu64 "\n", c->server->refused);
    } else if (strncmp(c->request, "GET /healthz ", 13) == 0) {
        c->server->status(c->server->arg, &dbs, &count);
        status = metrics_render_health(dbs, count, c->server->thresholds, now, out) ? 200 : 503;
        type = "application/json";
    } else {
        status = 404;
        fprintf(out, "not found: try /metrics or /healthz\n");
    }
    fclose(out);
    char *response = NULL;
    int len = body ? asprintf(&response,
                              "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n"
                              "%.*s",
                              status, status == 200 ? "OK" : status == 503 ? "Service Unavailable" : "Not Found",
                              type, body_len, (int)body_len, body)
                   : -1;
    free(body);
    if (len < 0)
        return conn_close(c);
    c->response = response;
    c->response_len = (size_t)len;
    ev_io_stop(c->server->loop, &c->io);
    ev_io_set(&c->io, c->io.fd, EV_WRITE);
    ev_set_cb(&c->io, on_conn_writable);
    ev_io_start(c->server->loop, &c->io);
    ev_timer_stop(c->server->loop, &c->timeout);
    ev_timer_set(&c->timeout, REQUEST_TIMEOUT_S, 0.);
    ev_timer_start(c->server->loop, &c->timeout);
    send_some(c);
}

static void on_conn_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct metrics_conn *c = (struct metrics_conn *)w;
    ssize_t got = read(w->fd, c->request + c->used, REQUEST_MAX - c->used);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        return conn_close(c);
    }
    c->used += (size_t)got;
    c->request[c->used] = '\0';
    if (strstr(c->request, "\r\n\r\n") || strstr(c->request, "\n\n"))
        return respond(c);
    if (c->used == REQUEST_MAX)
        conn_close(c);
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_close(w->data);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct metrics_server *s = w->data;
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct metrics_conn *c = s->conn_count < METRICS_CONNECTIONS_MAX ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        s->refused++;
        close(fd);
        return;
    }
    c->server = s;
    c->next = s->conns;
    s->conns = c;
    s->conn_count++;
    ev_io_init(&c->io, on_conn_readable, fd, EV_READ);
    ev_io_start(loop, &c->io);
    ev_timer_init(&c->timeout, on_conn_timeout, REQUEST_TIMEOUT_S, 0.);
    c->timeout.data = c;
    ev_timer_start(loop, &c->timeout);
}

int metrics_listen(struct ev_loop *loop, const char *host_port, const struct config_alerts *thresholds,
                   status_fn status, void *arg, struct metrics_server **out, struct tm_error *err)
{
    char host[256];
    const char *colon = strrchr(host_port, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - host_port), host_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *found = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &found) != 0 || !found)
        return tm_error_set(err, "metrics: cannot resolve listen address '%s'", host_port);
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, 16) != 0) {
        tm_error_set(err, "metrics: cannot listen on '%s': %s", host_port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(found);
        return -1;
    }
    freeaddrinfo(found);
    struct metrics_server *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return tm_error_set(err, "out of memory");
    }
    *s = (struct metrics_server){.loop = loop, .fd = fd, .thresholds = thresholds, .status = status, .arg = arg};
    ev_io_init(&s->io, on_accept, fd, EV_READ);
    s->io.data = s;
    ev_io_start(loop, &s->io);
    *out = s;
    return 0;
}

void metrics_close(struct metrics_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    ev_io_stop(s->loop, &s->io);
    close(s->fd);
    free(s);
}
