/* snapshots.h - base snapshots inside the current generation, and the
 * `tidemark snapshot` clients waiting for one (snapshots.c). All on the
 * loop's thread. */
#ifndef TM_SNAPSHOTS_H
#define TM_SNAPSHOTS_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/archive.h"
#include "../common/error.h"
#include "control.h"

struct db_context;

/* `tidemark snapshot` clients one database keeps waiting at most. */
#define SNAPSHOT_WAITERS_MAX 8

/* A due snapshot found the application's checkpoint in its way: tried
 * again this much later (it stays due). */
#define SNAPSHOT_BUSY_RETRY_MS 500

/* A `tidemark snapshot` client waiting for the replicas. */
struct snapshot_waiter {
    struct control_client *client;
    char name[ARCHIVE_NAME_MAX + 24];    /* the snapshot's spool name; "": not taken yet */
};

/* Snapshots of one database (ctx->snapshot). */
struct snapshot_state {
    int due;                         /* a snapshot is wanted (schedule, WAL volume) */
    int64_t not_before_ms;           /* retry time after a failed attempt */
    int busy_logged;                 /* "commits keep arriving" said once */
    struct snapshot_waiter *waiters; /* SNAPSHOT_WAITERS_MAX, made on the first request */
    size_t waiter_count;
    ev_timer waiter_timer;
    /* for metrics and alerts (status.h) */
    uint64_t taken, last_bytes, errors;
    double last_seconds;
    int failing;
    char error[512];
};

/* Takes a base snapshot at the tailer's shipped position and stores it
 * at the shipper's current index; expects the pin at that position.
 * may_give_way: abandon the copy (TAILER_LATER) when an application's
 * checkpoint waits for the pin. 0, TAILER_LATER, or -1 with err set
 * (counted for the metrics). Continuity lost while the snapshot was
 * written restarts the database. */
int snapshots_take(struct db_context *ctx, int may_give_way, struct tm_error *err);
/* A base snapshot now, in the current generation, then retention; 0,
 * TAILER_LATER when commits arrived at every attempt to read the pin's
 * place, or -1 with err set (also reported in the log). */
int snapshots_now(struct db_context *ctx, struct tm_error *err);
/* After a tick that shipped: makes a snapshot due once the WAL shipped
 * since the last one reaches snapshot: { wal-ratio }. */
void snapshots_if_wal_grew(struct db_context *ctx);
/* Takes the due snapshot, if any and if its retry time has come. */
void snapshots_if_due(struct db_context *ctx);
/* `tidemark snapshot`: a snapshot now; the client gets its answer once
 * every replica has it, or an error line at once. */
void snapshots_for_client(struct db_context *ctx, struct control_client *client);
/* Sets the waiting clients' timer up (not started); once per context. */
void snapshots_init_waiters(struct db_context *ctx);

#endif
