/* alerts.h - alert rules over the sidecar's status, delivered to a
 * webhook and/or a command, one alert per incident.
 *
 * alerts_evaluate runs every second. A rule that becomes true opens an
 * incident and sends "firing"; while it stays true a "reminder" goes out
 * every `reminder`; when it clears, "resolved". Delivery (webhook,
 * command, log line) is common/alert.h's and never blocks the loop. */
#ifndef TM_ALERTS_H
#define TM_ALERTS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/config.h"
#include "../common/error.h"
#include "../common/http.h"
#include "status.h"

struct alerts;

int alerts_new(struct ev_loop *loop, struct http_loop *hl, const struct config_alerts *cfg, struct alerts **out,
               struct tm_error *err);
/* Deliveries still in flight are abandoned (commands keep running). */
void alerts_free(struct alerts *a);

void alerts_evaluate(struct alerts *a, const struct db_status *dbs, size_t count, int64_t now_ms);

/* Each incident open right now for database db (`tidemark status`):
 * its rule, replica ("" for the database's own), message and since when. */
typedef void (*alerts_open_fn)(void *arg, const char *rule, const char *replica, const char *message,
                               int64_t since_ms);
void alerts_each_open(const struct alerts *a, const char *db, alerts_open_fn each, void *arg);

/* Incidents open right now (for tests and /healthz). */
size_t alerts_open(const struct alerts *a);

#endif
