/* daemon.h - the sidecar's internals, shared by replicate.c (the loop,
 * configured databases, Redis, status) and tenants.c (directories of
 * databases). Not an interface for anything else: replicate.h is the
 * daemon's. Every function here runs on the loop and keeps to the
 * contracts described where it is defined. */
#ifndef TM_DAEMON_H
#define TM_DAEMON_H

#include <ev.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/inotify.h>
#include <sys/types.h>
#include <time.h>

#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/error.h"
#include "../common/storage/storage.h"
#include "control.h"
#include "replicate.h"
#include "shipper.h"
#include "wal.h"

#define SCAN_DELAY_S 0.005
#define YIELD_POLL_S 0.005
#define YIELD_FAST_POLL_S 0.001
#define REPIN_AFTER_MS 20
#define KEEPING_UP_CHECKPOINTS 4
/* The application ran a checkpoint the pin gave way to this recently:
 * it restarts its WAL itself. */
#define OWN_CHECKPOINTS_MS 10000
/* Quiet this long (and a whole tick), the sidecar checkpoints. */
#define QUIET_CHECKPOINT_MS 1000
#define STOP_DRAIN_S 10.0
#define SNAPSHOT_WAITERS_MAX 8

struct replicator;
struct tenant_dir;

/* Why a configured database is not followed yet (waiting.c). */
enum wait_reason {
    WAIT_NONE = 0,
    WAIT_MISSING,                    /* no file */
    WAIT_EMPTY,                      /* shorter than a SQLite header */
    WAIT_ROLLBACK,                   /* a SQLite database in rollback-journal mode */
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
    char *dir;                       /* the database's directory (a configured one) */
    char *wal_name;
    int watch;                       /* the directory: files created, moved in, deleted */
    int wal_watch;                   /* the WAL file: writes; -1 while it has none */
    ev_timer scan_timer;
    ev_timer sync_timer;
    ev_timer snapshot_timer;         /* snapshot-interval */
    ev_periodic snapshot_periodic;   /* snapshot: { schedule } (wall clock, UTC) */
    int failing;                     /* last attempt failed (logged once) */
    int64_t failing_since_ms;        /* SQLite: cannot start or read the WAL since; 0: fine */
    char failing_error[512];
    struct capture_probe *probe;     /* what hides its commits (capture_probe.h); made on first use */
    int capture_cause;               /* enum capture_cause named by the probe now; 0: none */
    int reopen_failing;              /* its files were replaced and cannot be opened again */
    ev_child retention_child;        /* a `tidemark retention` run in progress */
    ev_timer retention_timer;        /* at least daily */
    ev_child drill_child;            /* a `tidemark drill` run in progress */
    struct control_server *control;  /* STATE-DIR/control.sock */
    struct snapshot_waiter {         /* `tidemark snapshot` clients waiting for the replicas */
        struct control_client *client;
        char name[ARCHIVE_NAME_MAX + 24];
    } *waiters;                      /* SNAPSHOT_WAITERS_MAX, made on the first request */
    size_t waiter_count;
    ev_timer waiter_timer;
    int generation_started;          /* start_database made a new generation (and its snapshot) */
    /* for metrics and alerts (status.h) */
    uint64_t checkpoints, snapshots, snapshot_last_bytes;
    double snapshot_last_seconds;
    int snapshot_failing, retention_failing, drill_failing, drill_result;
    char snapshot_error[512];
    uint64_t errors_wal, errors_spool, errors_snapshot, errors_retention, errors_drill;
    int64_t drill_time_ms, drill_rto_ms, drill_rpo_ms;
    int snapshot_due;                /* a snapshot is wanted (schedule, WAL volume) */
    int64_t snapshot_not_before_ms;  /* retry time after a failed attempt */
    int snapshot_busy_logged;        /* "commits keep arriving" said once */
    ev_periodic drill_periodic;      /* drill: { schedule } */
    uint32_t checkpoint_floor;       /* shipped WAL frame when the pin last moved */
    ev_timer yield_timer;            /* polls for an application checkpoint waiting on the pin */
    uint64_t pin_moves, yields;      /* pin handovers; of them, for an application's checkpoint */
    int64_t unpinned_ms;             /* when the pin was let go (tailer_unpin) */
    unsigned generation_postponed;   /* ticks in a row start_generation had to wait */
    int64_t last_yield_ms;           /* the pin last gave way to an application checkpoint */
    uint32_t unpinned_salt1, unpinned_salt2;   /* the WAL followed then */
    uint32_t quiet_checkpoint_frame, quiet_checkpoint_salt1;   /* where the last quiet checkpoint was tried */
    /* A database found under a `dir:` entry (see "Directories of
     * databases" below); NULL for a configured one. */
    struct tenant_dir *tenants;
    struct config_db *own_cfg;       /* its configuration (cfg points here) */
    char *relpath;                   /* under the entry's directory */
    int asleep;                      /* idle: tailer closed, files released */
    int wants_open;                  /* written while max-open databases were busy */
    int deleted;                     /* its file is gone: freed once the replicas have all */
    int64_t last_active_ms;          /* last commit seen, or wake */
    int64_t woke_ms;
    int woken_before;                /* in this process */
    int woken_by_write;              /* the queued wake is for a write to its WAL */
    int release_loaded;              /* released_* come from the state directory (a restart) */
    int released_clean;              /* tailer_release proved the next restart continues it */
    int released_empty;              /* the WAL was empty: continues if the file is unchanged */
    struct timespec released_mtime;  /* the database file's, at the release */
    off_t released_size;
    struct wal_header released_hdr;
    struct wal_position released_pos;  /* everything before it shipped */
    uint32_t released_page_size;
    dev_t released_dev;
    ino_t released_ino;
    int changed_since_snapshot;      /* a commit shipped since the newest snapshot (or unknown) */
    /* A configured database whose file is not a WAL database yet
     * (waiting.c): nothing is opened; inotify says when to look again. */
    enum wait_reason waiting;        /* WAIT_NONE: not waiting */
    int64_t waiting_since_ms;
    char waiting_reason[PATH_MAX + 200];   /* for the log, /healthz and the alert */
    int db_watch;                    /* while waiting: the database file's writes; -1: none */
    ev_timer wait_timer;             /* while waiting: look again soon after an event, and every minute */
};

struct tenant_dir;

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
    int exit_code;
    const struct replicate_options *opts;
    struct metrics_server *metrics;
    struct alerts *alerts;
    ev_timer alert_timer;            /* evaluates the alert rules every second */
    struct db_status *status;        /* filled by fill_status */
    struct replica_status *replica_status;
    size_t status_cap, replica_status_cap;
    int entry_lock_fd;               /* `tidemark snapshot` of a directory's database: its entry's lock */
};

/* replicate.c */
void report(struct db_context *ctx, const char *what, const struct tm_error *err);
void kick_uploaders(struct db_context *ctx);
int ship_all(struct db_context *ctx, struct tm_error *err);
int start_generation(struct db_context *ctx, const char *reason, struct tm_error *err);
int continue_archive(struct db_context *ctx, int resumed, struct tm_error *err);
int start_database(struct db_context *ctx, struct tm_error *err);
void restart_database(struct db_context *ctx, const char *why);
void note_capture(struct db_context *ctx, const char *what, const struct tm_error *err);
void on_scan(struct ev_loop *loop, ev_timer *w, int revents);
void init_sync_and_snapshot_timers(struct replicator *rep, struct db_context *ctx);
void on_waiters(struct ev_loop *loop, ev_timer *w, int revents);
int check_replica(const struct config_db *db, size_t i, struct storage *replica, struct tm_error *err);
void spawn_tidemark(struct replicator *rep, const char *name, const char *command, const char *report_path,
                    ev_child *watcher);
void catch_up_missed_snapshot(struct db_context *ctx);
void snapshot_for_client(struct db_context *ctx, struct control_client *client);
void schedule_scan(struct ev_loop *loop, struct db_context *ctx);
struct db_context *add_context(struct replicator *rep);
void remove_context(struct replicator *rep, struct db_context *ctx);
int unchanged_since_snapshot(const struct db_context *ctx);

/* waiting.c: a configured database that does not exist yet, is empty,
 * or is not in WAL mode. */
/* Fails (err names the directory) when the database's directory does
 * not exist: the sidecar waits for the file, not for its directory. */
int waiting_check_directory(const struct config_db *cfg, struct tm_error *err);
/* Looks at the database file (its header only; nothing is opened with
 * SQLite, nothing locked); 0 at once while the tailer is open. Not a WAL
 * database yet: starts or goes on
 * waiting (logged once, the sync timer stopped, the file and its
 * directory watched) and returns 1. Otherwise returns 0, after leaving
 * the wait if there was one (the sync timer then fires at once and
 * starts the database; what else may be wrong with the file is
 * start_database's to report). */
int waiting_check(struct db_context *ctx);
/* 1 when inotify event ev concerns ctx's database file (its name in the
 * directory, or the file's own watch); keeps db_watch in step. */
int waiting_event(struct db_context *ctx, const struct inotify_event *ev);
/* While waiting: look at the file again in SCAN_DELAY_S (bursts of
 * events cost one look). */
void waiting_recheck_soon(struct db_context *ctx);
/* Stops the wait's timer and watch (stopping, or freeing ctx). */
void waiting_stop(struct db_context *ctx);

/* tenants.c: the databases of `dir:` entries */
int tenants_start(struct replicator *rep, struct tm_error *err);
void tenants_stop(struct replicator *rep);
void tenants_free(struct replicator *rep);
/* 1 when the inotify event was one of the entries' directories' */
int tenants_handle_event(struct replicator *rep, const struct inotify_event *ev);
void tenants_handle_overflow(struct replicator *rep);
/* Puts an awake database of a directory to sleep (force: also when the
 * release is not clean); 0 asleep, -1 not now. */
int sleep_database(struct db_context *ctx, int force);
/* Queues a sleeping database's wake. */
void wake_later(struct db_context *ctx);

#endif
