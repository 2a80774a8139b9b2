/* alerts.c - the sidecar's alert rules and incidents (alerts.h).
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
 * An incident is keyed by (rule, database, replica); its deliveries (webhook,
 * command, log line) are common/alert.c's. */
#include "alerts.h"

#include "../common/alert.h"
#include "../common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INCIDENTS_MAX 256

struct incident {
    int active, seen;
    char rule[32], db[128], replica[128];
    char message[700];
    int64_t since_ms, last_sent_ms;
};

struct alerts {
    struct alert_sender *sender;
    const struct config_alerts *cfg;
    struct incident incidents[INCIDENTS_MAX];
};

static void send_alert(struct alerts *a, struct incident *inc, const char *state, int64_t now_ms)
{
    struct alert alert = {inc->rule, inc->db, inc->replica, inc->message, inc->since_ms};
    alert_send(a->sender, &alert, state, now_ms);
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
        log_event(LOG_ERROR, db, NULL, "alert %s: too many open incidents; not tracked", rule);
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
    if (db->drill_failing) {
        if (db->drill_error && db->drill_error[0])
            snprintf(message, sizeof message, "the last restore drill failed: %s", db->drill_error);
        else
            snprintf(message, sizeof message, "the last restore drill failed (see the log)");
        holds(a, "drill_failed", db->name, "", message, now_ms);
    }
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
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    if (alert_sender_new(loop, hl, cfg, &a->sender, err) != 0) {
        free(a);
        return -1;
    }
    a->cfg = cfg;
    *out = a;
    return 0;
}

void alerts_free(struct alerts *a)
{
    if (!a)
        return;
    alert_sender_free(a->sender);
    free(a);
}

void alerts_each_open(const struct alerts *a, const char *db, alerts_open_fn each, void *arg)
{
    for (size_t i = 0; a && i < INCIDENTS_MAX; i++) {
        const struct incident *inc = &a->incidents[i];
        if (inc->active && strcmp(inc->db, db) == 0)
            each(arg, inc->rule, inc->replica, inc->message, inc->since_ms);
    }
}
