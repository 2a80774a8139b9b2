/* alerts.c - alert rules, incidents and deliveries (alerts.h).
 *
 * RULES (per database, per replica):
 *   replica_failing   uploads have failed continuously for failure-after
 *   replica_lag       replication lag above lag-threshold
 *   snapshot_failed   the last snapshot (scheduled or asked for) failed
 *   retention_failed  the last retention run failed
 *   drill_failed      the last drill failed
 *   spool_near_limit  the spool holds 90 % of spool-limit or more
 *   capture_failing   the sidecar has not been following the database (or
 *                     Redis: connection refused, credentials, replication
 *                     disabled) for failure-after; at once when another
 *                     engine is known to hide its commits (capture_probe.h)
 *   database_missing  a configured database has been missing, empty or in
 *                     rollback-journal mode for its missing-alert-after
 *                     (the sidecar waits for it: waiting.c)
 * With the defaults (failure-after 30 s, evaluated every second, delivery
 * started at once) a failure reaches the receiver well within 60 s.
 *
 * An incident is keyed by (rule, database, replica). The webhook body is
 * JSON with a "text" line (what Slack shows) and structured fields:
 *   {"text": "...", "state": "firing|reminder|resolved", "alert": RULE,
 *    "db": ..., "replica": ..., "message": ..., "since": ..., "time": ...}
 * The command gets TIDEMARK_ALERT, TIDEMARK_DB, TIDEMARK_REPLICA,
 * TIDEMARK_MESSAGE and TIDEMARK_STATE in its environment. Messages come
 * from tidemark's own errors, which never contain keys or secrets. */
#include "alerts.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define INCIDENTS_MAX 256
#define WEBHOOK_ATTEMPTS 5
#define WEBHOOK_TIMEOUT_S 10L
#define COMMAND_TIMEOUT_S 30.0

struct incident {
    int active, seen;
    char rule[32], db[128], replica[128];
    char message[700];
    int64_t since_ms, last_sent_ms;
};

struct webhook_delivery {
    struct alerts *owner;
    struct webhook_delivery *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    char rule[32];
    int attempt;
    long status;
    ev_timer retry;
};

struct command_run {
    struct alerts *owner;
    struct command_run *next;
    ev_child child;
    ev_timer deadline;
};

struct alerts {
    struct ev_loop *loop;
    struct http_loop *hl;
    const struct config_alerts *cfg;
    struct incident incidents[INCIDENTS_MAX];
    struct webhook_delivery *webhooks;
    struct command_run *commands;
};

/* ---------------------------------------------------------------- webhook */

static size_t discard(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    (void)userp;
    return size * nmemb;
}

static void webhook_free(struct webhook_delivery *d)
{
    for (struct webhook_delivery **p = &d->owner->webhooks; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    ev_timer_stop(d->owner->loop, &d->retry);
    curl_slist_free_all(d->headers);
    curl_easy_cleanup(d->easy);
    free(d->body);
    free(d);
}

static void webhook_send(struct webhook_delivery *d);

static void on_webhook_done(void *arg, CURL *easy, CURLcode result)
{
    struct webhook_delivery *d = arg;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (result == CURLE_OK && status >= 200 && status < 300)
        return webhook_free(d);
    if (++d->attempt >= WEBHOOK_ATTEMPTS) {
        log_error("alert %s: webhook delivery failed %d times (%s); giving up on this message", d->rule,
                  d->attempt, result != CURLE_OK ? curl_easy_strerror(result) : "HTTP error status");
        return webhook_free(d);
    }
    log_warn("alert %s: webhook delivery failed (%s, HTTP %ld); retrying", d->rule,
             result != CURLE_OK ? curl_easy_strerror(result) : "error status", status);
    ev_timer_set(&d->retry, (double)(1 << d->attempt), 0.);
    ev_timer_start(d->owner->loop, &d->retry);
}

static void on_webhook_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    webhook_send(w->data);
}

static void webhook_send(struct webhook_delivery *d)
{
    curl_easy_reset(d->easy);
    curl_easy_setopt(d->easy, CURLOPT_URL, d->owner->cfg->webhook);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT, WEBHOOK_TIMEOUT_S);
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    struct tm_error err;
    if (http_loop_start(d->owner->hl, d->easy, on_webhook_done, d, &err) != 0) {
        log_error("alert %s: %s", d->rule, err.msg);
        webhook_free(d);
    }
}

static void json_append(FILE *fp, const char *key, const char *value)
{
    fprintf(fp, ", \"%s\": \"", key);
    for (const char *p = value; *p; p++)
        fprintf(fp, *p == '"' || *p == '\\' ? "\\%c" : (unsigned char)*p < 0x20 ? " " : "%c", *p);
    fputc('"', fp);
}

static void deliver_webhook(struct alerts *a, const struct incident *inc, const char *state, const char *text,
                            int64_t now_ms)
{
    struct webhook_delivery *d = calloc(1, sizeof *d);
    char *body = NULL;
    size_t len = 0;
    FILE *fp = d ? open_memstream(&body, &len) : NULL;
    if (!fp || !(d->easy = curl_easy_init())) {
        if (fp)
            fclose(fp);
        free(body);
        free(d);
        log_error("alert %s: cannot prepare the webhook delivery", inc->rule);
        return;
    }
    char since[40], when[40];
    clock_format_ms(inc->since_ms, since, sizeof since);
    clock_format_ms(now_ms, when, sizeof when);
    fprintf(fp, "{\"source\": \"tidemark\"");
    json_append(fp, "text", text);
    json_append(fp, "state", state);
    json_append(fp, "alert", inc->rule);
    json_append(fp, "db", inc->db);
    json_append(fp, "replica", inc->replica);
    json_append(fp, "message", inc->message);
    json_append(fp, "since", since);
    json_append(fp, "time", when);
    fprintf(fp, "}");
    fclose(fp);
    d->owner = a;
    d->body = body;
    d->headers = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(d->rule, sizeof d->rule, "%s", inc->rule);
    ev_timer_init(&d->retry, on_webhook_retry, 0., 0.);
    d->retry.data = d;
    d->next = a->webhooks;
    a->webhooks = d;
    webhook_send(d);
}

/* ---------------------------------------------------------------- command */

static void command_free(struct command_run *c)
{
    for (struct command_run **p = &c->owner->commands; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    ev_child_stop(c->owner->loop, &c->child);
    ev_timer_stop(c->owner->loop, &c->deadline);
    free(c);
}

static void on_command_exit(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)loop;
    (void)revents;
    struct command_run *c = w->data;
    if (!WIFEXITED(w->rstatus) || WEXITSTATUS(w->rstatus) != 0)
        log_error("alert command '%s' failed (status %d)", c->owner->cfg->command,
                  WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : -1);
    command_free(c);
}

static void on_command_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct command_run *c = w->data;
    log_error("alert command '%s' still running after %.0f s: killed", c->owner->cfg->command, COMMAND_TIMEOUT_S);
    kill(c->child.pid, SIGKILL);   /* on_command_exit follows */
}

static void deliver_command(struct alerts *a, const struct incident *inc, const char *state)
{
    struct command_run *c = calloc(1, sizeof *c);
    if (!c)
        return;
    pid_t pid = fork();
    if (pid < 0) {
        log_error("alert command: fork: %s", strerror(errno));
        free(c);
        return;
    }
    if (pid == 0) {
        setenv("TIDEMARK_ALERT", inc->rule, 1);
        setenv("TIDEMARK_DB", inc->db, 1);
        setenv("TIDEMARK_REPLICA", inc->replica, 1);
        setenv("TIDEMARK_MESSAGE", inc->message, 1);
        setenv("TIDEMARK_STATE", state, 1);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl("/bin/sh", "sh", "-c", a->cfg->command, (char *)NULL);
        _exit(127);
    }
    c->owner = a;
    ev_child_init(&c->child, on_command_exit, pid, 0);
    c->child.data = c;
    ev_child_start(a->loop, &c->child);
    ev_timer_init(&c->deadline, on_command_deadline, COMMAND_TIMEOUT_S, 0.);
    c->deadline.data = c;
    ev_timer_start(a->loop, &c->deadline);
    c->next = a->commands;
    a->commands = c;
}

/* ---------------------------------------------------------------- incidents */

static void send_alert(struct alerts *a, struct incident *inc, const char *state, int64_t now_ms)
{
    char text[1000];
    snprintf(text, sizeof text, "[tidemark] %s %s: %s%s%s: %s", strcmp(state, "resolved") == 0 ? "RESOLVED" : "FIRING",
             inc->rule, inc->db, inc->replica[0] ? "/" : "", inc->replica, inc->message);
    log_event(strcmp(state, "resolved") == 0 ? LOG_INFO : LOG_ERROR, inc->db, inc->replica[0] ? inc->replica : NULL,
              "ALERT %s %s: %s", state, inc->rule, inc->message);
    if (a->cfg->webhook)
        deliver_webhook(a, inc, state, text, now_ms);
    if (a->cfg->command)
        deliver_command(a, inc, state);
    inc->last_sent_ms = now_ms;
}

/* The rule holds now: open the incident or remind. */
static void holds(struct alerts *a, const char *rule, const char *db, const char *replica, const char *message,
                  int64_t now_ms)
{
    struct incident *free_slot = NULL;
    for (size_t i = 0; i < INCIDENTS_MAX; i++) {
        struct incident *inc = &a->incidents[i];
        if (!inc->active) {
            if (!free_slot)
                free_slot = inc;
            continue;
        }
        if (strcmp(inc->rule, rule) == 0 && strcmp(inc->db, db) == 0 && strcmp(inc->replica, replica) == 0) {
            inc->seen = 1;
            snprintf(inc->message, sizeof inc->message, "%s", message);
            if (now_ms - inc->last_sent_ms >= a->cfg->reminder_ms)
                send_alert(a, inc, "reminder", now_ms);
            return;
        }
    }
    if (!free_slot) {
        log_error("alert %s on %s: too many open incidents; not tracked", rule, db);
        return;
    }
    *free_slot = (struct incident){.active = 1, .seen = 1, .since_ms = now_ms};
    snprintf(free_slot->rule, sizeof free_slot->rule, "%s", rule);
    snprintf(free_slot->db, sizeof free_slot->db, "%s", db);
    snprintf(free_slot->replica, sizeof free_slot->replica, "%s", replica);
    snprintf(free_slot->message, sizeof free_slot->message, "%s", message);
    send_alert(a, free_slot, "firing", now_ms);
}

static void evaluate_db(struct alerts *a, const struct db_status *db, int64_t now_ms)
{
    char message[700];
    for (size_t j = 0; j < db->replica_count; j++) {
        const struct replica_status *r = &db->replicas[j];
        if (r->failing_since_ms && now_ms - r->failing_since_ms >= a->cfg->failure_after_ms) {
            snprintf(message, sizeof message, "replica '%s' has failed for %.0f s (%zu object(s) waiting): %s",
                     r->name, (double)(now_ms - r->failing_since_ms) / 1000.0, r->queued, r->last_error);
            holds(a, "replica_failing", db->name, r->name, message, now_ms);
        }
        if (r->lag_ms > a->cfg->lag_threshold_ms) {
            snprintf(message, sizeof message, "replica '%s' is %.1f s behind (threshold %.0f s)", r->name,
                     (double)r->lag_ms / 1000.0, (double)a->cfg->lag_threshold_ms / 1000.0);
            holds(a, "replica_lag", db->name, r->name, message, now_ms);
        }
    }
    if (db->capture_failing_since_ms &&
        (db->capture_cause_named || now_ms - db->capture_failing_since_ms >= a->cfg->failure_after_ms)) {
        snprintf(message, sizeof message, "nothing captured for %.0f s: %s",
                 (double)(now_ms - db->capture_failing_since_ms) / 1000.0, db->capture_error);
        holds(a, "capture_failing", db->name, "", message, now_ms);
    }
    if (db->waiting_since_ms && db->missing_alert_after_ms &&
        now_ms - db->waiting_since_ms >= db->missing_alert_after_ms) {
        snprintf(message, sizeof message, "not replicated for %.0f s: %s",
                 (double)(now_ms - db->waiting_since_ms) / 1000.0, db->waiting_reason);
        holds(a, "database_missing", db->name, "", message, now_ms);
    }
    if (db->snapshot_failing) {
        snprintf(message, sizeof message, "the last snapshot failed: %s", db->snapshot_error);
        holds(a, "snapshot_failed", db->name, "", message, now_ms);
    }
    if (db->retention_failing)
        holds(a, "retention_failed", db->name, "", "the last retention run failed (see the log)", now_ms);
    if (db->drill_failing)
        holds(a, "drill_failed", db->name, "", "the last restore drill failed (see the log)", now_ms);
    if (db->spool_limit && db->spool_bytes * 10 >= db->spool_limit * 9) {
        snprintf(message, sizeof message, "the spool holds %llu of %llu bytes (spool-limit)",
                 (unsigned long long)db->spool_bytes, (unsigned long long)db->spool_limit);
        holds(a, "spool_near_limit", db->name, "", message, now_ms);
    }
}

void alerts_evaluate(struct alerts *a, const struct db_status *dbs, size_t count, int64_t now_ms)
{
    for (size_t i = 0; i < INCIDENTS_MAX; i++)
        a->incidents[i].seen = 0;
    for (size_t i = 0; i < count; i++)
        evaluate_db(a, &dbs[i], now_ms);
    for (size_t i = 0; i < INCIDENTS_MAX; i++) {
        struct incident *inc = &a->incidents[i];
        if (inc->active && !inc->seen) {
            send_alert(a, inc, "resolved", now_ms);
            inc->active = 0;
        }
    }
}

size_t alerts_open(const struct alerts *a)
{
    size_t open = 0;
    for (size_t i = 0; i < INCIDENTS_MAX; i++)
        open += a->incidents[i].active;
    return open;
}

int alerts_new(struct ev_loop *loop, struct http_loop *hl, const struct config_alerts *cfg, struct alerts **out,
               struct tm_error *err)
{
    struct alerts *a = calloc(1, sizeof *a);
    if (!a)
        return tm_error_set(err, "out of memory");
    a->loop = loop;
    a->hl = hl;
    a->cfg = cfg;
    *out = a;
    return 0;
}

void alerts_free(struct alerts *a)
{
    if (!a)
        return;
    while (a->webhooks) {
        http_loop_cancel(a->hl, a->webhooks->easy);
        webhook_free(a->webhooks);
    }
    while (a->commands)
        command_free(a->commands);
    free(a);
}

static void on_notify_check(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct alerts *a = w->data;
    if (!a->webhooks && !a->commands)
        ev_break(loop, EVBREAK_ALL);
}

static void on_notify_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

void alerts_notify(const struct config_alerts *cfg, const char *rule, const char *db, const char *replica,
                   const char *message, double timeout_s)
{
    struct ev_loop *loop = ev_default_loop(0);
    struct http_loop *hl = NULL;
    struct alerts *a = NULL;
    struct tm_error err;
    if (!cfg->webhook && !cfg->command)
        return;
    if (http_loop_new(loop, &hl, &err) != 0 || alerts_new(loop, hl, cfg, &a, &err) != 0) {
        log_error("cannot send the alert: %s", err.msg);
        http_loop_free(hl);
        return;
    }
    struct incident *inc = &a->incidents[0];
    *inc = (struct incident){.active = 1, .seen = 1, .since_ms = clock_now_ms()};
    snprintf(inc->rule, sizeof inc->rule, "%s", rule);
    snprintf(inc->db, sizeof inc->db, "%s", db);
    snprintf(inc->replica, sizeof inc->replica, "%s", replica);
    snprintf(inc->message, sizeof inc->message, "%s", message);
    send_alert(a, inc, "firing", clock_now_ms());
    ev_timer check, timeout;
    ev_timer_init(&check, on_notify_check, 0.05, 0.05);
    check.data = a;
    ev_timer_start(loop, &check);
    ev_timer_init(&timeout, on_notify_timeout, timeout_s, 0.);
    ev_timer_start(loop, &timeout);
    ev_run(loop, 0);
    ev_timer_stop(loop, &check);
    ev_timer_stop(loop, &timeout);
    alerts_free(a);
    http_loop_free(hl);
}
