/* monitoring.h - the daemon's status snapshot for /metrics, /healthz
 * and the alert rules (monitoring.c). */
#ifndef TM_MONITORING_H
#define TM_MONITORING_H

#include "../common/error.h"
#include "daemon.h"

/* Starts the metrics endpoint (when metrics-listen is set) and the alert
 * rules' one-second tick, once every database is set up. 0, or -1 with
 * err set. */
int monitoring_start(struct replicator *rep, struct tm_error *err);
/* Stops and frees what monitoring_start made (also when it did not run). */
void monitoring_free(struct replicator *rep);

/* Answers the control command "status" (`tidemark status`) with the
 * status document (status_wire.h) of the databases `select` accepts. */
typedef int (*monitoring_select_fn)(const struct db_context *ctx, const void *arg);
void monitoring_reply_status(struct replicator *rep, monitoring_select_fn select, const void *arg,
                             struct control_client *client);

#endif
