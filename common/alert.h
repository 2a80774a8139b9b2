/* alert.h - delivering one alert to the configured receivers: a webhook
 * and/or a command. Used by the sidecar's alert rules (replicator/alerts.c)
 * and by commands that raise an alert themselves (`tidemark verify`).
 *
 * Delivery never blocks the caller's loop: the webhook is an HTTP POST on
 * the loop's curl multi handle (retried with backoff, 5 attempts), the
 * command a child process (killed after 30 s). Every alert is also logged.
 *
 * The webhook body is JSON with a "text" line (what Slack shows) and
 * structured fields:
 *   {"text": "...", "state": "firing|reminder|resolved", "alert": RULE,
 *    "db": ..., "replica": ..., "message": ..., "since": ..., "time": ...}
 * The command gets TIDEMARK_ALERT, TIDEMARK_DB, TIDEMARK_REPLICA,
 * TIDEMARK_MESSAGE and TIDEMARK_STATE, PATH and HOME as its whole
 * environment: nothing else of the sidecar's (AWS credentials, say) is
 * inherited. Messages come from tidemark's own errors, which never
 * contain keys or secrets. */
#ifndef TM_ALERT_H
#define TM_ALERT_H

#include <ev.h>
#include <stdint.h>

#include "config.h"
#include "error.h"
#include "http.h"

struct alert {
    const char *rule;        /* "replica_failing" */
    const char *db;
    const char *replica;     /* "" when the alert is about the database */
    const char *message;
    int64_t since_ms;        /* when the condition began */
};

struct alert_sender;

int alert_sender_new(struct ev_loop *loop, struct http_loop *hl, const struct config_alerts *cfg,
                     struct alert_sender **out, struct tm_error *err);
/* Deliveries still in flight are abandoned (commands keep running). */
void alert_sender_free(struct alert_sender *s);

/* Logs the alert and starts its deliveries; state is "firing",
 * "reminder" or "resolved". */
void alert_send(struct alert_sender *s, const struct alert *a, const char *state, int64_t now_ms);

/* 1 while a delivery is in flight. */
int alert_sender_busy(const struct alert_sender *s);

/* Outside the daemon: sends one "firing" alert on a loop of its own and
 * waits for its delivery, at most timeout_s (a hanging command is left
 * running). Nothing happens when neither webhook nor command is set. */
void alert_notify(const struct config_alerts *cfg, const struct alert *a, double timeout_s);

#endif
