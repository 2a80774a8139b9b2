/* tenants.c - directories of databases (`dir:` entries): one sidecar
 * loop for thousands of small databases, one per tenant.
 *
 * Every database under a `dir:` directory (discovery.c finds them and
 * follows the directory) runs on the sidecar's one loop. What each costs
 * while idle bounds the sidecar, so a database that has shipped
 * everything and seen no commit for idle-after is put to sleep: its
 * tailer (two SQLite connections, the WAL and wal-index descriptors) and
 * delta page store are closed, its sync timer stopped. What remains is
 * its context (spool queues and position, counters, snapshot schedule):
 * a few KiB, no descriptor, no timer firing. A write to its WAL (inotify
 * on the directory: one watch for all of them) wakes it.
 *
 * Continuity across sleep: tailer_release proves that the next writer
 * must restart the WAL from the state shipped (tailer.h); on waking, the
 * WAL is either the same (continue at the position) or restarted exactly
 * once (continue at frame 1). Anything else starts a new generation with
 * a snapshot, as any loss of continuity does. A clean sleep is also kept
 * in the database's state directory, so that a restarted sidecar wakes
 * it with the same proof.
 *
 * At most max-open databases are awake. Waking one more first puts to
 * sleep the least recently active awake one that had no commit for a
 * sync interval; when every awake one is busy, the one awake longest (at
 * least a sync interval: its turn) ships what it has and sleeps, so busy
 * databases beyond max-open take turns and none waits for ever (commits
 * of one waiting for its turn are safe in its WAL, and are stamped when
 * it wakes). Wakes are taken from a queue when the loop is idle,
 * WAKE_BATCH at a time, so that thousands of databases found at start
 * never hold up the busy ones' ticks.
 *
 * Scheduled snapshots are spread over snapshot: { spread } (1h by
 * default): each database's schedule is offset by a fixed share of the
 * window, by its name. A database whose newest object is a snapshot
 * skips the scheduled one: an idle database writes nothing.
 *
 * The databases share the entry's replicas (one storage each, on the
 * loop's one curl multi handle, whose connection pool every upload
 * reuses), one lock on the entry's state directory, and one retention
 * and one drill child for all of them (`tidemark retention|drill ENTRY`).
 *
 * Putting one database to sleep and waking it is tenant.c's (tenant.h,
 * which also holds the state kept here); the rest of the daemon sees
 * tenants.h only.
 */

#include "tenants.h"

#include "../common/clock.h"
#include "../common/cron.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "database.h"
#include "deltas.h"
#include "discovery.h"
#include "monitoring.h"
#include "schedules.h"
#include "snapshots.h"
#include "tenant.h"
#include "spool.h"
#include "tailer.h"
#include "uploader.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAKE_BATCH 32
/* An awake database holds about 8 descriptors: two SQLite connections
 * (database file and WAL each), the wal-index, the tailer's own WAL and
 * wal-index, the delta page store. */
#define FDS_PER_AWAKE 10
#define FDS_RESERVED 128
#define HOUSEKEEPING_S 1.0
#define RESCAN_S 60.0
#define SLEEP_RETRY_MS (10 * 1000)

/* Queues a wake (taken by the idle watcher). */
void tenants_wake_later(struct db_context *ctx)
{
    if (!ctx->tenant || !ctx->tenant->asleep || ctx->tenant->deleted || ctx->tenant->wants_open)
        return;
    ctx->tenant->wants_open = 1;
    ctx->tenant->dir->waiting++;
    ev_idle_start(ctx->owner->loop, &ctx->tenant->dir->waker);
}

static void on_waker(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    struct tenant_dir *td = w->data;
    struct replicator *rep = td->owner;
    size_t woken = 0, stuck = 0;
    for (size_t i = rep->configured_count; i < rep->db_count && woken < WAKE_BATCH; i++) {
        struct db_context *ctx = rep->dbs[i];
        if (!tenant_of(ctx, td) || !ctx->tenant->wants_open)
            continue;
        if (!tenant_wake(ctx)) {
            stuck = 1;   /* no room: the housekeeping tick tries again */
            break;
        }
        ctx->tenant->wants_open = 0;
        td->waiting--;
        woken++;
    }
    if (!td->waiting || stuck)
        ev_idle_stop(loop, w);
    if (!td->waiting)
        malloc_trim(0);   /* a burst of wakes (the start) is over */
}

/* A deleted database whose replicas have everything: its context is
 * freed and its state directory removed (a database made again under the
 * same name starts a new generation anyway: its file is another one). */
static void release_deleted(struct replicator *rep, struct db_context *ctx)
{
    char state_dir[PATH_MAX];
    snprintf(state_dir, sizeof state_dir, "%s", ctx->cfg->state_dir);
    log_event(LOG_INFO, ctx->cfg->name, NULL, "released (its backups stay, under retention)");
    replicate_remove_context(rep, ctx);
    struct tm_error err;
    if (fsutil_remove_tree(state_dir, &err) != 0)
        log_warn("%s", err.msg);
}

/* Every second: idle databases go to sleep, waiting ones get another
 * chance, deleted ones are freed once their replicas have everything. */
static void on_housekeeping(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct tenant_dir *td = w->data;
    struct replicator *rep = td->owner;
    int64_t now = clock_now_ms();
    size_t slept = 0;
    for (size_t i = rep->db_count; i-- > rep->configured_count;) {
        struct db_context *ctx = rep->dbs[i];
        if (!tenant_of(ctx, td))
            continue;
        if (ctx->tenant->deleted) {
            int drained = 1;
            for (size_t j = 0; j < ctx->replica_count; j++)
                drained &= uploader_idle(&ctx->uploaders[j]);
            if (drained)
                release_deleted(rep, ctx);
            continue;
        }
        if (ctx->tenant->asleep || now - ctx->last_active_ms < td->entry->idle_after_ms)
            continue;
        if (tenant_sleep(ctx, 0) == 0)
            slept++;
        else
            ctx->last_active_ms = now - td->entry->idle_after_ms + SLEEP_RETRY_MS;   /* not every second */
    }
    /* what the sleepers' SQLite connections used goes back to the system
     * (glibc keeps freed memory otherwise: the peak of max-open awake) */
    if (slept)
        malloc_trim(0);
    if (td->waiting)
        ev_idle_start(loop, &td->waker);
}

static void on_rescan(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tenant_dir *td = w->data;
    struct tm_error err;
    if (discovery_scan(td->discovery, &err) != 0)
        log_event(LOG_ERROR, td->entry->name, NULL, "%s", err.msg);
}

static struct db_context *find_tenant_context(struct tenant_dir *td, const char *relpath)
{
    struct replicator *rep = td->owner;
    for (size_t i = rep->configured_count; i < rep->db_count; i++)
        if (tenant_of(rep->dbs[i], td) && strcmp(rep->dbs[i]->tenant->relpath, relpath) == 0)
            return rep->dbs[i];
    return NULL;
}

/* A directory's database's own spool (queues for the entry's replicas)
 * and delta page store; *replica_added: a replica is new to the spool. */
static int open_tenant_spool(struct db_context *ctx, size_t replica_count, int *replica_added,
                             struct tm_error *err)
{
    const struct config_db *cfg = ctx->cfg;
    const char **names = calloc(replica_count, sizeof *names);
    if (!names)
        return tm_error_set(err, "out of memory");
    for (size_t i = 0; i < replica_count; i++)
        names[i] = cfg->replicas[i].name;
    size_t replicas_removed = 0;
    int rc = spool_open(cfg->state_dir, names, replica_count, 0, &ctx->spool, replica_added, &replicas_removed,
                        err);
    free(names);
    if (rc == 0 && cfg->deltas) {
        char store[PATH_MAX];
        snprintf(store, sizeof store, "%s/delta-pages", cfg->state_dir);
        rc = delta_builder_open(store, &ctx->deltas, err);
        delta_builder_suspend(ctx->deltas);
    }
    return rc;
}

/* A database of the directory: its spool and uploaders, sharing the
 * entry's replicas; asleep until woken. */
static int setup_tenant(struct tenant_dir *td, const char *relpath, struct db_context **out, struct tm_error *err)
{
    struct replicator *rep = td->owner;
    struct config_db *cfg;
    if (config_tenant_new(td->entry, relpath, &cfg, err) != 0)
        return -1;
    struct tenant_state *ts = calloc(1, sizeof *ts);
    struct db_context *ctx = ts ? replicate_add_context(rep) : NULL;
    if (!ctx) {
        free(ts);
        config_tenant_free(cfg);
        return tm_error_set(err, "out of memory");
    }
    *ts = (struct tenant_state){.dir = td, .own_cfg = cfg, .relpath = strdup(relpath), .asleep = 1};
    *ctx = (struct db_context){.owner = rep, .cfg = cfg, .tenant = ts, .watch = -1, .wal_watch = -1,
                               .schedule.drill_result = -1};
    ctx->uploaders = calloc(td->replica_count, sizeof *ctx->uploaders);
    int replica_added = 0;
    int rc = ts->relpath && ctx->uploaders ? 0 : tm_error_set(err, "out of memory");
    if (rc == 0)
        rc = open_tenant_spool(ctx, td->replica_count, &replica_added, err);
    if (rc != 0) {
        replicate_remove_context(rep, ctx);
        return -1;
    }
    ctx->replicas = td->replicas;
    ctx->replica_count = td->replica_count;
    for (size_t i = 0; i < td->replica_count; i++)
        uploader_init(&ctx->uploaders[i], rep->loop, ctx->spool, i, ctx->replicas[i], cfg->name,
                      cfg->replicas[i].name);
    ctx->need_generation = replica_added;
    ctx->shipper = (struct shipper){.db_name = cfg->name, .key = rep->key, .spool = ctx->spool,
                                    .deltas = ctx->deltas};
    ts->release.loaded = !replica_added && tenant_load_release(ctx);
    database_init_timers(rep, ctx);   /* the sync timer runs only while awake */
    database_kick_uploaders(ctx);   /* what its spool held from before */
    *out = ctx;
    return 0;
}

/* The configured database (a `path:` entry) that is this file, if any:
 * it is replicated under its own name, not a second time here. */
static const struct config_db *configured_as(const struct replicator *rep, const char *path)
{
    char found[PATH_MAX], configured[PATH_MAX];
    if (!realpath(path, found))
        return NULL;
    for (size_t i = 0; i < rep->cfg->db_count; i++) {
        const struct config_db *db = &rep->cfg->dbs[i];
        if (db->path && realpath(db->path, configured) && strcmp(found, configured) == 0)
            return db;
    }
    return NULL;
}

/* discovery: a file that matches the pattern. */
static void on_tenant_found(void *arg, const char *relpath)
{
    struct tenant_dir *td = arg;
    struct tm_error err;
    struct db_context *ctx = find_tenant_context(td, relpath);
    if (ctx && ctx->tenant->deleted) {   /* deleted, and created again before it was freed */
        ctx->tenant->deleted = 0;
        ctx->need_generation = 1;
    } else if (!ctx) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", td->entry->dir, relpath);
        const struct config_db *own = configured_as(td->owner, path);
        if (own || tailer_check_file(path, &err) != 0) {
            if (own)
                log_event(LOG_INFO, td->entry->name, NULL, "'%s' is not followed here: it is configured on its "
                          "own, as '%s'", relpath, own->name);
            else
                log_event(LOG_INFO, td->entry->name, NULL, "'%s' is not followed (yet): %s", relpath, err.msg);
            discovery_track(td->discovery, relpath, NULL, &err);
            return;
        }
        if (setup_tenant(td, relpath, &ctx, &err) != 0) {
            log_event(LOG_ERROR, td->entry->name, NULL, "'%s': %s", relpath, err.msg);
            discovery_track(td->discovery, relpath, NULL, &err);
            return;
        }
        log_event(LOG_INFO, ctx->cfg->name, NULL, "found; replicating '%s'", ctx->cfg->path);
    }
    if (discovery_track(td->discovery, relpath, ctx, &err) != 0)
        log_event(LOG_ERROR, td->entry->name, NULL, "'%s': %s", relpath, err.msg);
    tenants_wake_later(ctx);
}

/* discovery: the database's file is gone. What its WAL still holds
 * (through the open descriptors) is shipped; its context is freed once
 * the replicas have everything. */
static void on_tenant_deleted(void *arg, void *db)
{
    struct tenant_dir *td = arg;
    struct db_context *ctx = db;
    log_event(LOG_INFO, ctx->cfg->name, NULL, "deleted; no longer replicated (its backups stay, under retention)");
    if (!ctx->tenant->asleep && ctx->tailer && !ctx->need_generation) {
        struct tm_error err;
        if (tailer_scan(ctx->tailer, &err) == TAILER_OK)
            shipper_ship(&ctx->shipper, ctx->tailer, &err);
    }
    if (!ctx->tenant->asleep) {
        tailer_close(ctx->tailer);
        ctx->tailer = NULL;
        delta_builder_suspend(ctx->deltas);
        ctx->tenant->asleep = 1;
        td->awake--;
    }
    if (ctx->tenant->wants_open) {
        ctx->tenant->wants_open = 0;
        td->waiting--;
    }
    ctx->tenant->deleted = 1;
    ctx->snapshot.due = 0;
    ev_timer_stop(td->owner->loop, &ctx->sync_timer);
    ev_timer_stop(td->owner->loop, &ctx->scan_timer);
    ev_timer_stop(td->owner->loop, &ctx->pin.yield_timer);
    database_kick_uploaders(ctx);
    discovery_untrack(td->discovery, ctx->tenant->relpath);
}

/* discovery: its WAL was written. */
static void on_tenant_written(void *arg, void *db)
{
    (void)arg;
    struct db_context *ctx = db;
    if (ctx->tenant->deleted)
        return;
    if (ctx->tenant->asleep) {
        ctx->tenant->woken_by_write = 1;
        return tenants_wake_later(ctx);
    }
    database_scan_soon(ctx);
}

static void on_tenants_overflow(void *arg)
{
    struct tenant_dir *td = arg;
    struct replicator *rep = td->owner;
    for (size_t i = rep->configured_count; i < rep->db_count; i++)
        if (tenant_of(rep->dbs[i], td))
            on_tenant_written(td, rep->dbs[i]);
}

int tenants_handle_event(struct replicator *rep, const struct inotify_event *ev)
{
    for (size_t i = 0; i < rep->tenant_dir_count; i++)
        if (discovery_handle(rep->tenant_dirs[i].discovery, ev))
            return 1;
    return 0;
}

/* A database of entry td the sidecar follows (status). */
static int is_followed_tenant(const struct db_context *ctx, const void *td)
{
    return tenant_of(ctx, td) && !ctx->tenant->deleted;
}

/* `tidemark snapshot ENTRY/RELPATH` through the entry's control socket:
 * the database is woken if it sleeps, then snapshotted as any other. */
static void on_tenant_control(void *arg, const char *command, struct control_client *client)
{
    struct tenant_dir *td = arg;
    if (strcmp(command, "status") == 0)
        return monitoring_reply_status(td->owner, is_followed_tenant, td, client);
    if (strncmp(command, "snapshot ", 9) != 0)
        return control_reply(client, "error: unknown command (known: snapshot NAME, status)");
    const char *name = command + 9;
    struct replicator *rep = td->owner;
    struct db_context *ctx = NULL;
    for (size_t i = rep->configured_count; i < rep->db_count && !ctx; i++)
        if (tenant_of(rep->dbs[i], td) && !rep->dbs[i]->tenant->deleted && strcmp(rep->dbs[i]->cfg->name, name) == 0)
            ctx = rep->dbs[i];
    if (!ctx)
        return control_reply(client, "error: the sidecar does not follow a database of that name (is its file a "
                                     "SQLite database in WAL mode, under the entry's directory?)");
    if (ctx->tenant->asleep && (!tenant_wake(ctx) || ctx->tenant->asleep))
        return control_reply(client, ctx->tenant->asleep && !ctx->failing_since_ms
                                     ? "error: max-open databases are busy right now; try again in a moment"
                                     : "error: the database cannot be opened (see the sidecar's log)");
    if (ctx->tenant->wants_open) {   /* woken here: no longer waiting in the queue */
        ctx->tenant->wants_open = 0;
        td->waiting--;
    }
    snapshots_for_client(ctx, client);
}

void tenants_handle_overflow(struct replicator *rep)
{
    for (size_t i = 0; i < rep->tenant_dir_count; i++)
        discovery_overflow(rep->tenant_dirs[i].discovery);
}

static void on_tenant_child_done(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct tenant_dir *td = w->data;
    ev_child_stop(loop, w);
    const char *what = w == &td->drill_child ? "drills" : "retention";
    if (WIFEXITED(w->rstatus) && WEXITSTATUS(w->rstatus) == 0)
        log_event(LOG_INFO, td->entry->name, NULL, "%s of every database finished", what);
    else
        log_event(LOG_ERROR, td->entry->name, NULL, "%s failed for some database (exit status %d); see the "
                  "errors above", what, WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : -1);
}

static void on_tenant_retention(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tenant_dir *td = w->data;
    if (td->entry->retention.enabled)
        schedules_spawn_tidemark(td->owner, td->entry->name, "retention", NULL, &td->retention_child);
}

static void on_tenant_drill(struct ev_loop *loop, ev_periodic *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tenant_dir *td = w->data;
    log_event(LOG_INFO, td->entry->name, NULL, "scheduled restore drills");
    schedules_spawn_tidemark(td->owner, td->entry->name, "drill", NULL, &td->drill_child);
}

static ev_tstamp next_tenant_drill(ev_periodic *w, ev_tstamp now)
{
    const struct tenant_dir *td = w->data;
    int64_t next_ms = cron_next(&td->entry->drill.cron, (int64_t)(now * 1000.0));
    return next_ms < 0 ? now + 1e9 : (ev_tstamp)next_ms / 1000.0;
}

/* The entry's lock, shared replicas, directory walk and timers. */
static int start_tenant_dir(struct replicator *rep, struct tenant_dir *td, const struct config_db *entry,
                            struct tm_error *err)
{
    *td = (struct tenant_dir){.owner = rep, .entry = entry, .lock_fd = -1, .max_open = entry->max_open};
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
        td->max_open * FDS_PER_AWAKE + FDS_RESERVED > files.rlim_cur) {
        td->max_open = files.rlim_cur > FDS_RESERVED + FDS_PER_AWAKE ? (files.rlim_cur - FDS_RESERVED) / FDS_PER_AWAKE : 1;
        log_event(LOG_WARN, entry->name, NULL, "max-open %u needs more file descriptors than the limit of %llu: "
                  "at most %zu databases are open at once (raise LimitNOFILE / ulimit -n)", entry->max_open,
                  (unsigned long long)files.rlim_cur, td->max_open);
    }
    struct stat st;
    if (stat(entry->dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tm_error_set(err, "'%s' is not a directory%s%s", entry->dir, errno ? ": " : "",
                            errno ? strerror(errno) : "");
    if (fsutil_make_dirs(entry->state_dir, err) != 0 || spool_take_lock(entry->state_dir, &td->lock_fd, err) != 0)
        return -1;
    td->replicas = calloc(entry->replica_count, sizeof *td->replicas);
    if (!td->replicas)
        return tm_error_set(err, "out of memory");
    for (size_t i = 0; i < entry->replica_count; i++) {
        if (storage_open_replica(&entry->replicas[i], &td->replicas[i], err) != 0)
            return -1;
        td->replica_count++;
        storage_attach(td->replicas[i], rep->http);
        if (database_check_replica(entry, i, td->replicas[i], err) != 0)
            return -1;
    }
    static const struct discovery_events events = {.found = on_tenant_found, .deleted = on_tenant_deleted,
                                                   .written = on_tenant_written, .overflow = on_tenants_overflow};
    ev_idle_init(&td->waker, on_waker);
    td->waker.data = td;
    if (discovery_open(entry, rep->inotify_fd, &events, td, &td->discovery, err) != 0 ||
        discovery_scan(td->discovery, err) != 0)
        return -1;
    ev_timer_init(&td->housekeeping, on_housekeeping, HOUSEKEEPING_S, HOUSEKEEPING_S);
    td->housekeeping.data = td;
    ev_timer_start(rep->loop, &td->housekeeping);
    ev_timer_init(&td->rescan, on_rescan, RESCAN_S, RESCAN_S);
    td->rescan.data = td;
    ev_timer_start(rep->loop, &td->rescan);
    ev_timer_init(&td->retention_timer, on_tenant_retention, 60., 86400.);
    td->retention_timer.data = td;
    ev_timer_start(rep->loop, &td->retention_timer);
    ev_child_init(&td->retention_child, on_tenant_child_done, 0, 0);
    td->retention_child.data = td;
    ev_child_init(&td->drill_child, on_tenant_child_done, 0, 0);
    td->drill_child.data = td;
    if (control_listen(rep->loop, entry->state_dir, on_tenant_control, td, &td->control, err) != 0)
        return -1;
    if (entry->drill.enabled && (!rep->key || !crypto_keyring_public_only(rep->key))) {
        ev_periodic_init(&td->drill_periodic, on_tenant_drill, 0., 0., next_tenant_drill);
        td->drill_periodic.data = td;
        ev_periodic_start(rep->loop, &td->drill_periodic);
    }
    log_event(LOG_INFO, entry->name, NULL, "following %zu database(s) under '%s' (pattern '%s'%s), at most %zu "
              "open at once", td->waiting, entry->dir, entry->pattern, entry->recursive ? ", recursive" : "",
              td->max_open);
    return 0;
}

int tenants_start(struct replicator *rep, struct tm_error *err)
{
    size_t entries = 0;
    for (size_t i = 0; i < rep->cfg->db_count; i++)
        entries += rep->cfg->dbs[i].dir != NULL;
    if (!entries)
        return 0;
    rep->tenant_dirs = calloc(entries, sizeof *rep->tenant_dirs);
    if (!rep->tenant_dirs)
        return tm_error_set(err, "out of memory");
    for (size_t i = 0; i < rep->cfg->db_count; i++) {
        const struct config_db *entry = &rep->cfg->dbs[i];
        if (!entry->dir)
            continue;
        struct tenant_dir *td = &rep->tenant_dirs[rep->tenant_dir_count++];
        if (start_tenant_dir(rep, td, entry, err) != 0) {
            tm_error_prefix(err, "directory entry '%s': ", entry->name);
            return -1;
        }
    }
    return 0;
}

void tenants_stop(struct replicator *rep)
{
    for (size_t i = 0; i < rep->tenant_dir_count; i++) {
        struct tenant_dir *td = &rep->tenant_dirs[i];
        ev_idle_stop(rep->loop, &td->waker);
        ev_timer_stop(rep->loop, &td->housekeeping);
        ev_timer_stop(rep->loop, &td->rescan);
        ev_timer_stop(rep->loop, &td->retention_timer);
        ev_periodic_stop(rep->loop, &td->drill_periodic);
        control_close(td->control);   /* waiting clients get "error: stopping" */
        td->control = NULL;
    }
}

void tenants_free(struct replicator *rep)
{
    tenants_stop(rep);
    for (size_t i = 0; i < rep->tenant_dir_count; i++) {
        struct tenant_dir *td = &rep->tenant_dirs[i];
        discovery_free(td->discovery);
        for (size_t j = 0; j < td->replica_count; j++)
            storage_free(td->replicas[j]);
        free(td->replicas);
        if (td->lock_fd >= 0)
            close(td->lock_fd);
    }
    free(rep->tenant_dirs);
}


int tenants_asleep(const struct db_context *ctx)
{
    return ctx->tenant && ctx->tenant->asleep;
}

int tenants_sleep_before_stop(struct db_context *ctx)
{
    struct tenant_state *ts = ctx->tenant;
    return ts && (ts->asleep || ts->deleted || tenant_sleep(ctx, 0) == 0);
}

void tenants_free_state(struct db_context *ctx)
{
    struct tenant_state *ts = ctx->tenant;
    if (!ts)
        return;
    free(ts->relpath);
    config_tenant_free(ts->own_cfg);
    free(ts);
    ctx->tenant = NULL;
}
