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
 */

#include "tenants.h"

#include "../common/clock.h"
#include "../common/cron.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "database.h"
#include "deltas.h"
#include "discovery.h"
#include "schedules.h"
#include "snapshots.h"
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

struct tenant_dir {
    struct replicator *owner;
    const struct config_db *entry;
    struct discovery *discovery;
    struct storage **replicas;       /* shared by its databases */
    size_t replica_count;
    int lock_fd;                     /* on the entry's state directory */
    size_t awake;                    /* databases with their files open */
    size_t max_open;                 /* max-open, within the descriptor limit */
    size_t waiting;                  /* databases waiting to wake */
    ev_idle waker;                   /* wakes waiting databases, WAKE_BATCH at a time */
    ev_timer housekeeping;           /* sleeps idle ones, frees deleted ones */
    ev_timer rescan;                 /* walks the tree again */
    ev_timer retention_timer;
    ev_child retention_child;
    ev_periodic drill_periodic;
    ev_child drill_child;
    struct control_server *control;  /* ENTRY-STATE/control.sock: "snapshot NAME" */
};

/* What a sleep proved (tailer_release), for the wake. */
struct tenant_release {
    int loaded;                      /* read from the state directory (a restart) */
    int clean;                       /* tailer_release proved the next restart continues it */
    int empty;                       /* the WAL was empty: continues if the file is unchanged */
    struct timespec mtime;           /* the database file's, at the release */
    off_t size;
    struct wal_header hdr;
    struct wal_position pos;         /* everything before it shipped */
    uint32_t page_size;
    dev_t dev;
    ino_t ino;
};

/* A directory's database (ctx->tenant): what only this file reads. */
struct tenant_state {
    struct tenant_dir *dir;          /* its entry */
    struct config_db *own_cfg;       /* its configuration (ctx->cfg points here) */
    char *relpath;                   /* under the entry's directory */
    int asleep;                      /* idle: tailer closed, files released */
    int wants_open;                  /* written while max-open databases were busy */
    int deleted;                     /* its file is gone: freed once the replicas have all */
    int64_t woke_ms;
    int woken_before;                /* in this process */
    int woken_by_write;              /* the queued wake is for a write to its WAL */
    struct tenant_release release;
};

static int is_tenant_of(const struct db_context *ctx, const struct tenant_dir *td)
{
    return ctx->tenant->dir == td;
}

/* A sleeping database's release, kept in its state directory (the file
 * `released`) so that a restarted sidecar wakes it with the same proof
 * instead of a new generation and snapshot: written at each clean sleep,
 * removed at each wake, and used only while the archive ends exactly
 * where it says (nothing was shipped after it). */
static void release_path(const struct db_context *ctx, char *out, size_t len)
{
    snprintf(out, len, "%s/released", ctx->cfg->state_dir);
}

static void forget_release(struct db_context *ctx)
{
    char path[PATH_MAX + 16];
    release_path(ctx, path, sizeof path);
    if (unlink(path) == 0) {
        struct tm_error err;
        fsutil_fsync_dir(ctx->cfg->state_dir, &err);
    }
}

static void save_release(struct db_context *ctx)
{
    struct tenant_release *r = &ctx->tenant->release;
    char path[PATH_MAX + 16], text[512];
    release_path(ctx, path, sizeof path);
    const struct wal_position *p = &r->pos;
    int len = snprintf(text, sizeof text,
                       "empty %d header %u %u %u %u position %u %u %u %u %u page-size %u file %llu %llu %lld %lld %ld\n",
                       r->empty, r->hdr.salt1, r->hdr.salt2,
                       r->hdr.checkpoint_seq, r->hdr.page_size, p->salt1, p->salt2, p->frame,
                       p->checksum[0], p->checksum[1], r->page_size,
                       (unsigned long long)r->dev, (unsigned long long)r->ino,
                       (long long)r->size, (long long)r->mtime.tv_sec,
                       (long)r->mtime.tv_nsec);
    struct tm_error err;
    if (fsutil_replace_file(path, text, (size_t)len, &err) != 0)
        log_debug("%s: release not kept (a restart will start a new generation): %s", ctx->cfg->name, err.msg);
}

/* 1 when the state directory held a release this context now has. */
static int load_release(struct db_context *ctx)
{
    struct tenant_release *r = &ctx->tenant->release;
    char path[PATH_MAX + 16], text[512];
    release_path(ctx, path, sizeof path);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    size_t got = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[got] = '\0';
    struct wal_position *p = &r->pos;
    unsigned long long dev, ino;
    long long size, mtime_s;
    long mtime_ns;
    int empty;
    if (sscanf(text, "empty %d header %u %u %u %u position %u %u %u %u %u page-size %u file %llu %llu %lld %lld %ld",
               &empty, &r->hdr.salt1, &r->hdr.salt2, &r->hdr.checkpoint_seq,
               &r->hdr.page_size, &p->salt1, &p->salt2, &p->frame, &p->checksum[0], &p->checksum[1],
               &r->page_size, &dev, &ino, &size, &mtime_s, &mtime_ns) != 16)
        return 0;
    r->empty = empty;
    r->clean = 1;
    r->dev = (dev_t)dev;
    r->ino = (ino_t)ino;
    r->size = (off_t)size;
    r->mtime.tv_sec = (time_t)mtime_s;
    r->mtime.tv_nsec = mtime_ns;
    return 1;
}

/* Puts an awake database to sleep; `force` (making room for another)
 * also when its release cannot be proven clean. 0 asleep, -1 not now. */
static int sleep_database(struct db_context *ctx, int force)
{
    struct tenant_release *r = &ctx->tenant->release;
    struct tm_error err;
    size_t pending;
    if (ctx->tenant->asleep || !ctx->tailer || ctx->need_generation || ctx->snapshot_due)
        return -1;
    int clean = 0, rc = database_ship_all(ctx, &err);   /* everything committed */
    tailer_pending(ctx->tailer, &pending);
    if (rc == 0 && !pending)
        rc = tailer_release(ctx->tailer, &clean, &err);
    if (rc != 0 || pending || (!clean && !force)) {
        if (rc == 1)   /* the WAL moved in a way that breaks continuity */
            database_restart(ctx, err.msg);
        return -1;
    }
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    r->clean = clean;
    r->empty = clean && !hdr;
    if (hdr)
        r->hdr = *hdr;
    r->pos = tailer_shipped(ctx->tailer);
    r->page_size = tailer_page_size(ctx->tailer);
    struct stat st = {0};
    r->dev = stat(ctx->cfg->path, &st) == 0 ? st.st_dev : 0;
    r->ino = r->dev ? st.st_ino : 0;
    r->mtime = st.st_mtim;
    r->size = st.st_size;
    /* file times are coarse (a clock tick): an unchanged time proves
     * nothing about a write made in the same tick as the last one */
    if (r->empty && (!r->dev || time(NULL) - st.st_mtim.tv_sec < 2))
        r->clean = r->empty = 0;
    tailer_close(ctx->tailer);
    ctx->tailer = NULL;
    if (r->clean)
        save_release(ctx);
    delta_builder_suspend(ctx->deltas);
    ev_timer_stop(ctx->owner->loop, &ctx->sync_timer);
    ev_timer_stop(ctx->owner->loop, &ctx->scan_timer);
    ev_timer_stop(ctx->owner->loop, &ctx->yield_timer);
    ctx->tenant->asleep = 1;
    ctx->tenant->dir->awake--;
    log_debug("%s: asleep (%s)", ctx->cfg->name, r->clean ? "clean" : "made room");
    return 0;
}

/* Room for one more awake database: the least recently active one with
 * nothing pending and no commit for a sync interval goes to sleep; when
 * every awake one is busy, the one
 * awake longest (at least one sync interval: a time slice), after
 * shipping what it has. So busy databases beyond max-open take turns
 * and none waits for ever. */
static int make_room(struct tenant_dir *td)
{
    struct replicator *rep = td->owner;
    struct db_context *idle = NULL, *longest = NULL;
    int64_t now = clock_now_ms();
    for (size_t i = rep->configured_count; i < rep->db_count; i++) {
        struct db_context *ctx = rep->dbs[i];
        if (!is_tenant_of(ctx, td) || ctx->tenant->asleep || !ctx->tailer || ctx->snapshot_due)
            continue;
        size_t pending;
        tailer_pending(ctx->tailer, &pending);
        int quiet = !pending && now - ctx->last_active_ms >= ctx->cfg->sync_interval_ms;   /* no commit this tick */
        if (quiet && (!idle || ctx->last_active_ms < idle->last_active_ms))
            idle = ctx;
        int64_t woke_ms = ctx->tenant->woke_ms;
        if (now - woke_ms >= ctx->cfg->sync_interval_ms && (!longest || woke_ms < longest->tenant->woke_ms))
            longest = ctx;
    }
    struct db_context *chosen = idle ? idle : longest;
    return chosen && sleep_database(chosen, 1) == 0;
}

/* Opens a sleeping database again and continues its archive (see above). */
static int resume_database(struct db_context *ctx, struct tm_error *err)
{
    struct tenant_release *r = &ctx->tenant->release;
    if (tailer_open(ctx->cfg->path, &ctx->tailer, err) != 0)
        return -1;
    struct stat st;
    if (stat(ctx->cfg->path, &st) != 0 || st.st_dev != r->dev || st.st_ino != r->ino) {
        ctx->need_generation = 1;
        return database_start_generation(ctx, "the database file was replaced while it slept", err);
    }
    /* an empty WAL continues only if nothing was checkpointed since */
    int unchanged = st.st_size == r->size && st.st_mtim.tv_sec == r->mtime.tv_sec &&
                    st.st_mtim.tv_nsec == r->mtime.tv_nsec;
    int resumed = 0;
    if (r->empty && unchanged)
        resumed = tailer_resume_after_release(ctx->tailer, NULL, &r->pos, r->page_size, err);
    else if (r->clean && !r->empty)
        resumed = tailer_resume_after_release(ctx->tailer, &r->hdr, &r->pos,
                                              r->page_size, err);
    else if (!r->empty)
        resumed = tailer_resume_at(ctx->tailer, &r->pos, r->page_size, err);
    int continued = database_continue_archive(ctx, resumed, err);
    if (continued != 0)
        return continued < 0 ? -1 : 0;
    ctx->need_generation = 1;
    return database_start_generation(ctx, "the WAL changed in a way that does not continue the archive while it slept", err);
}

/* Wakes a waiting database if there is room: 1 awake, 0 still waiting. */
static int wake_database(struct db_context *ctx)
{
    struct tenant_release *r = &ctx->tenant->release;
    struct tenant_dir *td = ctx->tenant->dir;
    if (!ctx->tenant->asleep || ctx->tenant->deleted)
        return 1;
    if (td->awake >= td->max_open && !make_room(td))
        return 0;
    struct tm_error err;
    if (delta_builder_wake(ctx->deltas, &err) != 0)
        database_report(ctx, "deltas stopped until the next snapshot", &err);
    int first = !ctx->shipper.has_generation;
    forget_release(ctx);   /* from now on the WAL is pinned again, or a new generation starts */
    if (first && r->loaded) {   /* after a restart: the release kept on disk */
        struct wal_position pos;
        uint32_t page_size;
        int found;
        if (shipper_resume(&ctx->shipper, &pos, &page_size, &found, &err) == 0 && ctx->shipper.has_generation &&
            page_size == r->page_size &&
            (r->empty ? !found : found && memcmp(&pos, &r->pos, sizeof pos) == 0))
            first = 0;
        r->loaded = 0;
    }
    int rc = first ? database_start(ctx, &err) : resume_database(ctx, &err);
    if (rc != 0 && rc != TAILER_LATER) {   /* later: its new generation starts at a tick */
        database_report(ctx, "cannot open (will retry when it is written)", &err);
        database_note_capture(ctx, "cannot open", &err);
        tailer_close(ctx->tailer);
        ctx->tailer = NULL;
        delta_builder_suspend(ctx->deltas);
        return 1;
    }
    database_note_capture(ctx, NULL, NULL);
    ctx->tenant->asleep = 0;
    td->awake++;
    /* woken by a write: active now; otherwise (the start's catch-up, a
     * snapshot) it may make room for another at once */
    ctx->tenant->woke_ms = clock_now_ms();
    ctx->last_active_ms = ctx->tenant->woke_ms - (ctx->tenant->woken_by_write ? 0 : ctx->cfg->sync_interval_ms);
    ctx->tenant->woken_by_write = 0;
    ev_timer_again(ctx->owner->loop, &ctx->sync_timer);
    ev_timer_again(ctx->owner->loop, &ctx->yield_timer);
    database_scan_soon(ctx);
    if (!ctx->tenant->woken_before)
        schedules_catch_up(ctx);
    ctx->tenant->woken_before = 1;
    database_kick_uploaders(ctx);
    return 1;
}

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
        if (!is_tenant_of(ctx, td) || !ctx->tenant->wants_open)
            continue;
        if (!wake_database(ctx)) {
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
    log_info("%s: released (its backups stay, under retention)", ctx->cfg->name);
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
        if (!is_tenant_of(ctx, td))
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
        if (sleep_database(ctx, 0) == 0)
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
        if (is_tenant_of(rep->dbs[i], td) && strcmp(rep->dbs[i]->tenant->relpath, relpath) == 0)
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
                               .drill_result = -1};
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
    ts->release.loaded = !replica_added && load_release(ctx);
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
        log_info("%s: found; replicating '%s'", ctx->cfg->name, ctx->cfg->path);
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
    log_info("%s: deleted; no longer replicated (its backups stay, under retention)", ctx->cfg->name);
    if (!ctx->tenant->asleep && ctx->tailer && !ctx->need_generation) {
        struct tm_error err;
        if (tailer_scan(ctx->tailer, clock_now_ms(), &err) == TAILER_OK)
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
    ctx->snapshot_due = 0;
    ev_timer_stop(td->owner->loop, &ctx->sync_timer);
    ev_timer_stop(td->owner->loop, &ctx->scan_timer);
    ev_timer_stop(td->owner->loop, &ctx->yield_timer);
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
        if (is_tenant_of(rep->dbs[i], td))
            on_tenant_written(td, rep->dbs[i]);
}

int tenants_handle_event(struct replicator *rep, const struct inotify_event *ev)
{
    for (size_t i = 0; i < rep->tenant_dir_count; i++)
        if (discovery_handle(rep->tenant_dirs[i].discovery, ev))
            return 1;
    return 0;
}

/* `tidemark snapshot ENTRY/RELPATH` through the entry's control socket:
 * the database is woken if it sleeps, then snapshotted as any other. */
static void on_tenant_control(void *arg, const char *command, struct control_client *client)
{
    struct tenant_dir *td = arg;
    if (strncmp(command, "snapshot ", 9) != 0)
        return control_reply(client, "error: unknown command (known: snapshot NAME)");
    const char *name = command + 9;
    struct replicator *rep = td->owner;
    struct db_context *ctx = NULL;
    for (size_t i = rep->configured_count; i < rep->db_count && !ctx; i++)
        if (is_tenant_of(rep->dbs[i], td) && !rep->dbs[i]->tenant->deleted && strcmp(rep->dbs[i]->cfg->name, name) == 0)
            ctx = rep->dbs[i];
    if (!ctx)
        return control_reply(client, "error: the sidecar does not follow a database of that name (is its file a "
                                     "SQLite database in WAL mode, under the entry's directory?)");
    if (ctx->tenant->asleep && (!wake_database(ctx) || ctx->tenant->asleep))
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
    return ts && (ts->asleep || ts->deleted || sleep_database(ctx, 0) == 0);
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
