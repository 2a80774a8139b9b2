/* tenant.c - one database of a `dir:` entry asleep while idle: what a
 * sleep proves, and the wake that continues the archive from it (the
 * DESIGN is in tenants.c, "Continuity across sleep" and "At most
 * max-open databases are awake").
 *
 * A sleep closes the tailer after tailer_release proved that the next
 * writer must restart the WAL from the state shipped; the proof is kept
 * in the database's state directory (the file `released`) while it
 * sleeps, so that a restarted sidecar wakes it with the same proof. A
 * wake opens the tailer again and continues the archive when the WAL is
 * the same or restarted exactly once, else starts a new generation. */
#include "tenant.h"

#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/log.h"
#include "database.h"
#include "deltas.h"
#include "schedules.h"
#include "tailer.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tenant_of(const struct db_context *ctx, const struct tenant_dir *td)
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
        log_event(LOG_DEBUG, ctx->cfg->name, NULL, "release not kept (a restart will start a new generation): %s",
                  err.msg);
}

/* 1 when the state directory held a release this context now has. */
int tenant_load_release(struct db_context *ctx)
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

/* Whether the database file's time proves it unchanged when it is the
 * same at the wake: file times are coarse (a clock tick), and an
 * unchanged time proves nothing about a write made in the same tick as
 * the last one. What an empty WAL's release rests on (see resume_database). */
static int file_time_settled(const struct stat *st)
{
    return time(NULL) - st->st_mtim.tv_sec >= 2;
}

/* Puts an awake database to sleep; `force` (making room for another)
 * also when its release cannot be proven clean. 0 asleep, -1 not now. */
int tenant_sleep(struct db_context *ctx, int force)
{
    struct tenant_release *r = &ctx->tenant->release;
    struct tm_error err;
    size_t pending;
    struct stat st = {0};
    if (ctx->tenant->asleep || !ctx->tailer || ctx->need_generation || ctx->snapshot.due)
        return -1;
    int clean = 0, rc = database_ship_all(ctx, &err);   /* everything committed */
    tailer_pending(ctx->tailer, &pending);
    /* An empty WAL's release is not proven while the database file's time
     * is that recent (below): idle, it stays awake until it is, else its
     * next write would start a new generation. Asked before the release,
     * which ends the pin. */
    if (rc == 0 && !pending && !force && !tailer_header(ctx->tailer) &&
        (stat(ctx->cfg->path, &st) != 0 || !file_time_settled(&st)))
        return -1;
    if (rc == 0 && !pending)
        rc = tailer_release(ctx->tailer, &clean, &err);
    if (rc != 0 || pending || (!clean && !force)) {
        if (rc == 1)   /* the WAL moved in a way that breaks continuity */
            database_restart(ctx, err.msg);
        return -1;
    }
    if (shipper_head_now(&ctx->shipper, clock_now_ms()))   /* asleep, it writes none */
        database_kick_uploaders(ctx);
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    r->clean = clean;
    r->empty = clean && !hdr;
    if (hdr)
        r->hdr = *hdr;
    r->pos = tailer_shipped(ctx->tailer);
    r->page_size = tailer_page_size(ctx->tailer);
    r->dev = stat(ctx->cfg->path, &st) == 0 ? st.st_dev : 0;
    r->ino = r->dev ? st.st_ino : 0;
    r->mtime = st.st_mtim;
    r->size = st.st_size;
    if (r->empty && (!r->dev || !file_time_settled(&st)))   /* forced: a new generation at the wake */
        r->clean = r->empty = 0;
    tailer_close(ctx->tailer);
    ctx->tailer = NULL;
    if (r->clean)
        save_release(ctx);
    delta_builder_suspend(ctx->deltas);
    ev_timer_stop(ctx->owner->loop, &ctx->sync_timer);
    ev_timer_stop(ctx->owner->loop, &ctx->scan_timer);
    ev_timer_stop(ctx->owner->loop, &ctx->pin.yield_timer);
    ctx->tenant->asleep = 1;
    ctx->tenant->dir->awake--;
    log_event(LOG_DEBUG, ctx->cfg->name, NULL, "asleep (%s)", r->clean ? "clean" : "made room");
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
        if (!tenant_of(ctx, td) || ctx->tenant->asleep || !ctx->tailer || ctx->snapshot.due)
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
    return chosen && tenant_sleep(chosen, 1) == 0;
}

/* Opens a sleeping database again and continues its archive (see above). */
static int resume_database(struct db_context *ctx, struct tm_error *err)
{
    struct tenant_release *r = &ctx->tenant->release;
    if (tailer_open(ctx->cfg->path, (enum tailer_engine)ctx->cfg->engine, &ctx->tailer, err) != 0)
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
int tenant_wake(struct db_context *ctx)
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
    ev_timer_again(ctx->owner->loop, &ctx->pin.yield_timer);
    database_scan_soon(ctx);
    if (!ctx->tenant->woken_before)
        schedules_catch_up(ctx);
    ctx->tenant->woken_before = 1;
    database_kick_uploaders(ctx);
    return 1;
}
