/* metrics.h - the sidecar's HTTP endpoint on its own event loop:
 * GET /metrics in Prometheus text format, GET /healthz (200, or 503 with
 * a short JSON reason). No thread, no extra dependency. */
#ifndef TM_METRICS_H
#define TM_METRICS_H

#include <ev.h>
#include <stddef.h>
#include <stdio.h>

#include "../common/config.h"
#include "../common/error.h"
#include "status.h"

/* Fills *dbs (owned by the callee, valid until the next call). */
typedef void (*status_fn)(void *arg, const struct db_status **dbs, size_t *count);

struct metrics_server;

int metrics_listen(struct ev_loop *loop, const char *host_port, const struct config_alerts *thresholds,
                   status_fn status, void *arg, struct metrics_server **out, struct tm_error *err);
void metrics_close(struct metrics_server *server);

/* The two documents, for the server and for tests. */
void metrics_render(const struct db_status *dbs, size_t count, int64_t now_ms, FILE *out);
/* Returns 1 when healthy; writes the JSON body. */
/* What /healthz calls a problem of db (and of its replicas), each passed to
 * `each` (replica NULL: the database's own) with its reason as /healthz
 * words it. Returns how many there are (0: healthy). */
typedef void (*metrics_problem_fn)(void *arg, const char *replica, const char *reason);
int metrics_db_problems(const struct db_status *db, const struct config_alerts *thresholds, int64_t now_ms,
                        metrics_problem_fn each, void *arg);
int metrics_render_health(const struct db_status *dbs, size_t count, const struct config_alerts *thresholds,
                  int64_t now_ms, FILE *out);

#endif
