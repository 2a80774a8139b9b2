/* waiting.c - a configured database that is not a WAL database yet: the
 * sidecar waits for it instead of stopping.
 *
 * DESIGN
 *
 * A sidecar often starts before its application (systemd units started
 * together, Kubernetes native sidecars, which start before the app
 * container), and an application may delete its database and create it
 * again. A `path:` database whose file is missing, empty (shorter than a
 * SQLite header) or in rollback-journal mode, or, with `engine: turso`,
 * has no coordination file of the Turso engine beside it yet, or one
 * whose header the engine has not finished writing (the engine has not
 * opened it in its multiprocess_wal mode: the sidecar must not open it
 * first, which would keep the engine out), or a written one and no WAL
 * yet (the engine opening writes DB-tshm's header, then creates DB-wal:
 * strace shows a millisecond between them, longer on a loaded machine),
 * is therefore not an error:
 * the database waits, with the reason logged once, shown on /healthz and
 * in the metrics (tidemark_database_waiting), and the database_missing
 * alert once it lasts missing-alert-after. Other databases and Redis run
 * as usual. tidemark never changes the journal mode itself (it never
 * writes to the database): a rollback-journal database waits until the
 * application sets PRAGMA journal_mode=WAL.
 *
 * Nothing polls while a database waits: its sync timer is stopped, no
 * SQLite connection is open, and inotify says when to look again:
 *
 *  - the directory's watch (database.c: files created, moved in or out,
 *    deleted) sees the file appear, and NAME-wal appear;
 *  - the same watch sees NAME-tshm and NAME-wal appear (engine: turso);
 *  - once the file exists, a watch on the file itself sees it written
 *    (IN_MODIFY, IN_CLOSE_WRITE): `PRAGMA journal_mode=WAL` rewrites the
 *    header (bytes 18 and 19 become 2) without creating NAME-wal, so the
 *    header write is the only sign of the switch.
 *
 * Each look reads the file's first 100 bytes; a burst of events costs one
 * look (SCAN_DELAY_S later). A look every WAIT_RECHECK_S as well covers
 * lost events (a file system whose writes inotify cannot see). A DB-tshm
 * without its header, or written without DB-wal, is looked at every
 * HEADER_RECHECK_S: the engine writes the header through its mapping,
 * which inotify does not see, and is about to create its WAL.
 *
 * The first look that finds a WAL database ends the wait: the sync timer
 * fires at once and database_start follows the database with a first
 * snapshot, resuming the archive only if the WAL provably continues it
 * (its salts and checksum chain), else in a new generation. A database
 * that disappears while followed (the tailer reports it deleted or
 * replaced) comes back here with need_generation set, so whatever file
 * appears next starts a new generation: an old generation never
 * continues onto another file. The backups already made stay. */
#include "waiting.h"

#include "database.h"
#include "tailer.h"
#include "tshm.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_RECHECK_S 60.0
/* While DB-tshm exists without its header: the engine is writing it (or
 * died doing so, and rewrites it when it opens again). */
#define HEADER_RECHECK_S 0.1
#define SQLITE_HEADER_BYTES 100

/* What the file at path is, from its header: WAIT_NONE for a SQLite
 * database in WAL mode, and for anything that is not a reason to wait
 * (not a SQLite database, unreadable: database_start says what). */
static enum wait_reason probe_file(const char *path, ssize_t *size)
{
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? WAIT_MISSING : WAIT_NONE;
    unsigned char header[SQLITE_HEADER_BYTES];
    ssize_t got = pread(fd, header, sizeof header, 0);
    close(fd);
    if (got < 0)
        return WAIT_NONE;
    *size = got;
    if (got < (ssize_t)sizeof header)
        return WAIT_EMPTY;
    if (memcmp(header, "SQLite format 3", 16) != 0)
        return WAIT_NONE;
    return header[18] == 2 && header[19] == 2 ? WAIT_NONE : WAIT_ROLLBACK;
}

/* Whether PATH-SUFFIX exists. */
static int has_suffix_file(const char *path, const char *suffix)
{
    char side[PATH_MAX + 8];
    snprintf(side, sizeof side, "%s%s", path, suffix);
    return access(side, F_OK) == 0;
}

/* Whether PATH-tshm is there with its header written (tshm.h). */
static int tshm_written(const char *path)
{
    char side[PATH_MAX + 8];
    snprintf(side, sizeof side, "%s-tshm", path);
    return tshm_header_written(side);
}

/* Why the database waits now: its file (probe_file), or with `engine:
 * turso` the engine's coordination file not there yet. */
static enum wait_reason wait_reason_now(const struct db_context *ctx, ssize_t *size)
{
    enum wait_reason reason = probe_file(ctx->cfg->path, size);
    /* engine: auto too waits out a header being written: read as "no
     * coordination file", it would send the sidecar down SQLite's route */
    int turso_expected = ctx->cfg->engine == TAILER_ENGINE_TURSO ||
                         (ctx->cfg->engine == TAILER_ENGINE_AUTO && has_suffix_file(ctx->cfg->path, "-tshm"));
    if (reason == WAIT_NONE && turso_expected && !tshm_written(ctx->cfg->path))
        reason = WAIT_NO_TSHM;
    else if (reason == WAIT_NONE && turso_expected && !has_suffix_file(ctx->cfg->path, "-wal"))
        reason = WAIT_NO_WAL;
    return reason;
}

static void describe(struct db_context *ctx, enum wait_reason reason, ssize_t size)
{
    const char *path = ctx->cfg->path;
    if (reason == WAIT_MISSING)
        snprintf(ctx->waiting_reason, sizeof ctx->waiting_reason, "waiting for '%s' to be created", path);
    else if (reason == WAIT_EMPTY && size == 0)
        snprintf(ctx->waiting_reason, sizeof ctx->waiting_reason,
                 "'%s' is empty: waiting for the application to create the database", path);
    else if (reason == WAIT_EMPTY)
        snprintf(ctx->waiting_reason, sizeof ctx->waiting_reason,
                 "'%s' holds %zd bytes, less than a SQLite header: waiting for the application to write it",
                 path, size);
    else if (reason == WAIT_NO_TSHM && has_suffix_file(path, "-tshm"))
        snprintf(ctx->waiting_reason, sizeof ctx->waiting_reason,
                 "waiting for the Turso engine to finish writing its coordination file '%s-tshm' (no header in it "
                 "yet)", path);
    else if (reason == WAIT_NO_WAL)
        snprintf(ctx->waiting_reason, sizeof ctx->waiting_reason,
                 "waiting for the Turso engine to create its WAL '%s-wal' (its coordination file '%s-tshm' is "
                 "written: the engine is opening the database)", path, path);
    else if (reason == WAIT_NO_TSHM)
        snprintf(ctx->waiting_reason, sizeof ctx->waiting_reason,
                 "`engine: turso`: waiting for the Turso engine to open '%s' with experimental: ['multiprocess_wal'] "
                 "(no '%s-tshm' yet%s)", path, path,
                 has_suffix_file(path, "-shm") ? "; a SQLite wal-index '-shm' is there: if SQLite or libSQL writes "
                                                 "this database, set `engine: auto`" : "");
    else
        snprintf(ctx->waiting_reason, sizeof ctx->waiting_reason,
                 "'%s' is in rollback-journal mode; tidemark never changes the journal mode: the application "
                 "must set PRAGMA journal_mode=WAL", path);
}

/* Watches the directory (again, if it was removed and made again) and,
 * while the file exists, its writes. 1 when a watch was added: the file
 * must be looked at again (a write just before it went unseen). */
static int watch_files(struct db_context *ctx, enum wait_reason reason)
{
    int fd = ctx->owner->inotify_fd, added = 0;
    if (ctx->watch < 0) {
        ctx->watch = inotify_add_watch(fd, ctx->dir, IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE);
        added = ctx->watch >= 0;
    }
    if (ctx->db_watch < 0 && reason != WAIT_MISSING) {
        ctx->db_watch = inotify_add_watch(fd, ctx->cfg->path, IN_MODIFY | IN_CLOSE_WRITE);
        added |= ctx->db_watch >= 0;
    }
    return added;
}

static void unwatch_file(struct db_context *ctx)
{
    if (ctx->db_watch >= 0)
        inotify_rm_watch(ctx->owner->inotify_fd, ctx->db_watch);
    ctx->db_watch = -1;
}

/* Looks again in `delay` seconds, then every WAIT_RECHECK_S. */
static void recheck_in(struct db_context *ctx, double delay)
{
    struct ev_loop *loop = ctx->owner->loop;
    ev_timer_stop(loop, &ctx->wait_timer);
    ev_timer_set(&ctx->wait_timer, delay, WAIT_RECHECK_S);
    ev_timer_start(loop, &ctx->wait_timer);
}

static void on_wait_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    waiting_check(w->data);
}

/* Starts or goes on waiting for `reason`; logged when the wait starts,
 * and when it turns into the one reason the user must act on. */
static void wait_for(struct db_context *ctx, enum wait_reason reason, ssize_t size)
{
    struct ev_loop *loop = ctx->owner->loop;
    enum wait_reason before = ctx->waiting;
    describe(ctx, reason, size);
    ctx->waiting = reason;
    if (!before) {
        ctx->waiting_since_ms = clock_now_ms();
        ctx->failing = 0;
        database_note_capture(ctx, NULL, NULL);   /* waiting is not failing: database_missing covers it */
        ev_timer_stop(loop, &ctx->sync_timer);
        ev_timer_init(&ctx->wait_timer, on_wait_timer, WAIT_RECHECK_S, WAIT_RECHECK_S);
        ctx->wait_timer.data = ctx;
        ev_timer_start(loop, &ctx->wait_timer);
    }
    int act = reason == WAIT_ROLLBACK || reason == WAIT_NO_TSHM;   /* the user may have to act */
    if (!before || (act && before != reason))
        log_event(act ? LOG_WARN : LOG_INFO, ctx->cfg->name, NULL, "%s", ctx->waiting_reason);
    else if (reason != before)
        log_event(LOG_DEBUG, ctx->cfg->name, NULL, "%s", ctx->waiting_reason);
}

/* A WAL database now: the sync timer starts it at once. */
static void stop_waiting(struct db_context *ctx)
{
    struct ev_loop *loop = ctx->owner->loop;
    log_event(LOG_INFO, ctx->cfg->name, NULL, "'%s' is a WAL database now (waited %.1f s): replicating",
              ctx->cfg->path, (double)(clock_now_ms() - ctx->waiting_since_ms) / 1000.0);
    waiting_stop(ctx);
    ctx->waiting = WAIT_NONE;
    ctx->waiting_since_ms = 0;
    ctx->waiting_reason[0] = '\0';
    ev_timer_stop(loop, &ctx->sync_timer);
    ev_timer_set(&ctx->sync_timer, 0., ctx->sync_timer.repeat);
    ev_timer_start(loop, &ctx->sync_timer);
}

int waiting_check(struct db_context *ctx)
{
    /* A directory's databases are found once they are WAL databases. With
     * the tailer open, the file is not opened here: closing a descriptor
     * of it would drop the tailer's POSIX locks on it (a lost file shows
     * up as TAILER_BROKEN, and database_restart looks after closing). */
    if (ctx->tenant || ctx->redis || ctx->tailer)
        return 0;
    ssize_t size;
    enum wait_reason reason = wait_reason_now(ctx, &size);
    if (reason == WAIT_MISSING)
        unwatch_file(ctx);
    if (reason != WAIT_NONE && watch_files(ctx, reason))
        reason = wait_reason_now(ctx, &size);
    if (reason == WAIT_NONE) {
        if (ctx->waiting)
            stop_waiting(ctx);
        unwatch_file(ctx);
        return 0;
    }
    wait_for(ctx, reason, size);
    if ((reason == WAIT_NO_TSHM && has_suffix_file(ctx->cfg->path, "-tshm")) || reason == WAIT_NO_WAL)
        recheck_in(ctx, HEADER_RECHECK_S);   /* writes through a mapping raise no inotify event */
    return 1;
}

int waiting_event(struct db_context *ctx, const struct inotify_event *ev)
{
    if (ctx->tenant || ctx->redis)
        return 0;
    if (ctx->db_watch >= 0 && ev->wd == ctx->db_watch) {
        if (ev->mask & IN_IGNORED)
            ctx->db_watch = -1;   /* the file is gone */
        return 1;
    }
    if (ev->wd == ctx->watch && (ev->mask & IN_IGNORED)) {
        log_event(LOG_ERROR, ctx->cfg->name, NULL, "the database's directory '%s' was removed", ctx->dir);
        ctx->watch = -1;
        return 1;
    }
    if (ev->wd != ctx->watch || !ev->len)
        return 0;
    const char *base = strrchr(ctx->cfg->path, '/');
    base = base ? base + 1 : ctx->cfg->path;
    size_t len = strlen(base);
    /* the file itself, or (engine: turso) the engine's coordination file and WAL */
    return strcmp(ev->name, base) == 0 ||
           (strncmp(ev->name, base, len) == 0 && (strcmp(ev->name + len, "-tshm") == 0 ||
                                                   strcmp(ev->name + len, "-wal") == 0));
}

void waiting_recheck_soon(struct db_context *ctx)
{
    struct ev_loop *loop = ctx->owner->loop;
    if (!ctx->waiting || (ev_is_active(&ctx->wait_timer) && ev_timer_remaining(loop, &ctx->wait_timer) <= SCAN_DELAY_S))
        return;
    recheck_in(ctx, SCAN_DELAY_S);
}

void waiting_stop(struct db_context *ctx)
{
    if (!ctx->owner)
        return;
    ev_timer_stop(ctx->owner->loop, &ctx->wait_timer);
    unwatch_file(ctx);
}

int waiting_check_directory(const struct config_db *cfg, struct tm_error *err)
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", cfg->path);
    const char *dir = dirname(copy);
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : tm_error_set(err, "'%s', the directory of database '%s', is not a directory",
                                                      dir, cfg->path);
    if (errno != ENOENT && errno != ENOTDIR)
        return tm_error_set(err, "cannot look at directory '%s' of database '%s': %s", dir, cfg->path,
                            strerror(errno));
    tm_error_set(err, "directory '%s' of database '%s' does not exist", dir, cfg->path);
    return tm_error_hint(err, "the sidecar waits for the database file to appear, not for its directory: create "
                              "the directory (or mount the volume) before starting the sidecar, or fix 'path' in "
                              "the configuration");
}
