/* status.h - what the sidecar knows about each database and replica at
 * one moment: filled by monitoring.c on demand, read by the metrics
 * endpoint (metrics.c) and the alert rules (alerts.c). */
#ifndef TM_STATUS_H
#define TM_STATUS_H

#include <stddef.h>
#include <stdint.h>

struct replica_status {
    const char *name;
    int64_t last_success_ms;       /* last object stored; 0: none yet */
    int64_t failing_since_ms;      /* 0: healthy */
    int64_t lag_ms;                /* age of the oldest commit not on this replica; 0: caught up */
    uint64_t objects_uploaded, bytes_uploaded, failures_total;
    size_t queued;                 /* objects waiting in its queue */
    const char *last_error;        /* "" when none */
};

struct db_status {
    const char *name;
    const char *entry;             /* a `dir:` entry's database: the entry's name; else NULL */
    int summed;                    /* exported only in its entry's sums (not metrics-per-database) */
    int asleep;                    /* a directory's database with its files closed */
    uint64_t wal_bytes, spool_bytes, spool_limit;
    uint64_t segments_shipped, commits_shipped, bytes_shipped;
    uint64_t checkpoints;
    uint64_t snapshots;            /* taken by this process */
    uint64_t snapshot_last_bytes;
    double snapshot_last_seconds;
    int64_t snapshot_last_ms;      /* newest snapshot's time (also from before a restart) */
    int snapshot_failing, retention_failing, drill_failing;
    int64_t capture_failing_since_ms;  /* not following the database / Redis since; 0: it is */
    const char *capture_error;         /* why, "" when it is */
    int64_t waiting_since_ms;          /* a configured database not (yet) a WAL database since; 0: it is */
    const char *waiting_reason;        /* what it waits for, "" when it does not */
    int64_t missing_alert_after_ms;    /* waiting this long is a problem (database_missing); 0: never */
    int capture_cause_named;           /* the cause is known for sure (another engine): reported at once */
    const char *snapshot_error;    /* "" when none */
    uint64_t errors_wal, errors_spool, errors_snapshot, errors_retention, errors_drill;
    int drill_result;              /* -1 none this run, 0 failed, 1 passed */
    int64_t drill_rto_ms, drill_rpo_ms, drill_time_ms;
    const char *drill_error;       /* why the last drill failed, "" when not known */
    struct replica_status *replicas;
    size_t replica_count;
};

#endif
