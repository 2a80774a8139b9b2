/* schedules.h - a database's snapshot schedules, retention and restore
 * drills (schedules.c). All on the loop's thread. */
#ifndef TM_SCHEDULES_H
#define TM_SCHEDULES_H

#include <ev.h>
#include <stdint.h>

struct db_context;
struct replicator;

/* A database's schedules and children (ctx->schedule). */
struct schedule_state {
    ev_timer snapshot_timer;         /* snapshot-interval */
    ev_periodic snapshot_periodic;   /* snapshot: { schedule } (wall clock, UTC) */
    ev_child retention_child;        /* a `tidemark retention` run in progress */
    ev_timer retention_timer;        /* at least daily */
    ev_child drill_child;            /* a `tidemark drill` run in progress */
    ev_periodic drill_periodic;      /* drill: { schedule } */
    /* for metrics and alerts (status.h) */
    int retention_failing, drill_failing;
    int drill_result;                /* -1 none this run, 0 failed, 1 passed */
    uint64_t errors_retention, errors_drill;
    int64_t drill_time_ms, drill_rto_ms, drill_rpo_ms;
    char drill_error[300];   /* why the last drill failed, from its report; "" unknown */
};

/* Starts the snapshot-interval timer and the snapshot schedule, as
 * configured; once per context. */
void schedules_start_snapshots(struct replicator *rep, struct db_context *ctx);
/* Sets the retention and drill children's watchers up, starts the daily
 * retention timer (first a minute from now) and the drill schedule (not
 * when the sidecar holds only the public key: logged). Once per context. */
void schedules_start_retention_and_drills(struct replicator *rep, struct db_context *ctx);
/* Takes now the snapshot the schedule or the interval asked for while
 * the sidecar was down, if any (the shipper knows the last one's time). */
void schedules_catch_up(struct db_context *ctx);
/* A retention run in a child process, when retention is on (a
 * directory's databases: never alone, their entry runs it daily). */
void schedules_run_retention(struct db_context *ctx);
/* Runs `tidemark COMMAND -c FILE NAME` as a child watched by `watcher`
 * (nothing when one is running already). Its standard output goes to
 * report_path (with --json) or is dropped; errors go to the same stderr
 * and are logged. */
void schedules_spawn_tidemark(struct replicator *rep, const char *name, const char *command,
                              const char *report_path, ev_child *watcher);

#endif
