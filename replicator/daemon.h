/* daemon.h - the sidecar daemon's top-level context: struct replicator
 * (the loop and everything on it) and struct db_context (one database
 * or Redis), shared by the daemon's modules:
 *
 *   replicate.c   the loop: setup, inotify, signals, drain (below)
 *   database.c    a database's lifecycle: start, sync, restart (database.h)
 *   pin.c         the pin kept out of the application's way (pin.h)
 *   snapshots.c   base snapshots and `tidemark snapshot` (snapshots.h)
 *   schedules.c   snapshot schedules, retention, drills (schedules.h)
 *   waiting.c     a configured database not in WAL mode yet (waiting.h)
 *   tenants.c     the databases of `dir:` entries (tenants.h), one of
 *   tenant.c      them asleep and awake (tenant.h, tenants.c's only)
 *   monitoring.c  status for /metrics, /healthz, alerts (monitoring.h)
 *
 * Each module's state in a context is a struct of its header (ctx->pin,
 * ctx->snapshot, ctx->schedule, ctx->tenant). Not an interface for
 * anything else: replicate.h is the daemon's. Everything here runs on
 * the loop's thread (a snapshot's worker thread aside: snapshots.c). */
#ifndef TM_DAEMON_H
#define TM_DAEMON_H

#include <ev.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/error.h"
#include "../common/storage/storage.h"
#include "control.h"
#include "pin.h"
#include "replicate.h"
#include "schedules.h"
#include "shipper.h"
#include "snapshots.h"
#include "wal.h"

/* A write seen by inotify: the WAL is scanned this much later (bursts of
 * writes cost one scan). */
#define SCAN_DELAY_S 0.005

struct replicator;
struct tenant_dir;
struct tenant_state;

/* Why a configured database is not followed yet (waiting.c). */
enum wait_reason {
    WAIT_NONE = 0,
    WAIT_MISSING,                    /* no file */
    WAIT_EMPTY,                      /* shorter than a SQLite header */
    WAIT_ROLLBACK,                   /* a SQLite database in rollback-journal mode */
    WAIT_NO_TSHM,                    /* `engine: turso` and no DB-tshm yet, or one without its header */
    WAIT_NO_WAL,                     /* the Turso engine's DB-tshm written, its DB-wal not created yet */
};

struct db_context {
    struct replicator *owner;
    const struct config_db *cfg;
    struct storage **replicas;
    struct uploader *uploaders;
    size_t replica_count;
    struct spool *spool;
    struct delta_builder *deltas;    /* NULL with `deltas: false` */
    struct redis_capture *redis;     /* a `redis:` entry: no tailer, no WAL */
    int spool_full;                  /* spool-limit reached (logged once) */
    struct tailer *tailer;           /* NULL while (re)starting */
    struct shipper shipper;
    int need_generation;             /* start a new generation when possible */
    int generation_started;          /* database_start made a new generation (and its snapshot) */
    unsigned generation_postponed;   /* ticks in a row a new generation had to wait */
    char *dir;                       /* the database's directory (a configured one) */
    char *wal_name;
    int watch;                       /* the directory: files created, moved in, deleted */
    int wal_watch;                   /* the WAL file: writes; -1 while it has none or is polled */
    int wal_polled;                  /* the application writes: its WAL is polled, unwatched (database.c) */
    unsigned quiet_polls;            /* polls in a row that found no new commit */
    ev_timer scan_timer;
    ev_timer sync_timer;
    int64_t last_active_ms;          /* last commit seen, or wake */
    int failing;                     /* last attempt failed (logged once) */
    int64_t failing_since_ms;        /* SQLite: cannot start or read the WAL since; 0: fine */
    char failing_error[512];
    struct capture_probe *probe;     /* what hides its commits (capture_probe.h); made on first use */
    int capture_cause;               /* enum capture_cause named by the probe now; 0: none */
    int reopen_failing;              /* its files were replaced and cannot be opened again */
    struct control_server *control;  /* STATE-DIR/control.sock */
    struct pin_state pin;            /* pin.h */
    struct snapshot_state snapshot;  /* snapshots.h */
    struct schedule_state schedule;  /* schedules.h */
    uint64_t checkpoints;            /* for metrics (status.h) */
    uint64_t errors_wal, errors_spool;
    /* A database found under a `dir:` entry: its state (tenants.c);
     * NULL for a configured one. */
    struct tenant_state *tenant;
    /* A configured database whose file is not a WAL database yet
     * (waiting.c): nothing is opened; inotify says when to look again. */
    enum wait_reason waiting;        /* WAIT_NONE: not waiting */
    int64_t waiting_since_ms;
    char waiting_reason[PATH_MAX + 200];   /* for the log, /healthz and the alert */
    int db_watch;                    /* while waiting: the database file's writes; -1: none */
    ev_timer wait_timer;             /* while waiting: look again soon after an event, and every minute */
};

struct replicator {
    struct ev_loop *loop;
    const struct config *cfg;
    const struct crypto_keyring *key;
    struct db_context **dbs;         /* configured ones first, then those found in directories */
    size_t db_count, db_cap;
    size_t configured_count;         /* dbs[0 .. configured_count) */
    struct tenant_dir *tenant_dirs;  /* one per `dir:` entry */
    size_t tenant_dir_count;
    struct http_loop *http;
    int inotify_fd;
    ev_io inotify_watcher;
    ev_signal sigterm_watcher, sigint_watcher;
    ev_timer drain_timer;            /* stopping: wait for the replicas */
    int64_t stop_deadline_ms;
    int64_t started_ms;              /* when this sidecar started (schedules_catch_up) */
    int exit_code;
    const struct replicate_options *opts;
    struct metrics_server *metrics;
    struct alerts *alerts;
    ev_timer alert_timer;            /* evaluates the alert rules every second */
    struct db_status *status;        /* filled on demand (monitoring.c) */
    struct replica_status *replica_status;
    size_t status_cap, replica_status_cap;
    int entry_lock_fd;               /* `tidemark snapshot` of a directory's database: its entry's lock */
};

/* replicate.c, the loop: for the daemon's modules. */

/* A new context in rep->dbs (zeroed; the caller sets it up), or NULL
 * when out of memory. */
struct db_context *replicate_add_context(struct replicator *rep);
/* Takes ctx out of rep->dbs (order of the configured ones kept) and
 * frees it (database_free). */
void replicate_remove_context(struct replicator *rep, struct db_context *ctx);
/* Reads the inotify descriptor again (a scan ran; see replicate.c). */
void replicate_resume_inotify(struct replicator *rep);

#endif
