/* tailer.c - following a live SQLite WAL, with nothing written to the
 * database.
 *
 * DESIGN
 *
 * The tailer keeps two connections of its own to the database:
 *
 *  - the reader holds a read transaction at all times (the "pin"). In WAL
 *    mode a reader stops checkpoints from backfilling past the frame it
 *    started at, and while it holds a read-mark slot 1..N no writer can
 *    restart the WAL. A reader that begins when the WAL is fully
 *    backfilled gets slot 0 instead: then no checkpoint can backfill at
 *    all and a writer can restart the WAL only once, discarding frames
 *    that were all backfilled when the reader began.
 *  - the locker takes the write lock (BEGIN IMMEDIATE, then COMMIT with
 *    nothing written) around the few moments the pin is moved.
 *
 * The pin is only ever (re)taken with the write lock held and every
 * committed frame shipped. From that invariant: every frame not yet
 * shipped was committed after the pin began, so either it lies beyond
 * the reader's mark (slot 1..N: it cannot be backfilled past the mark,
 * and the WAL cannot restart), or the reader is in slot 0 (nothing can be
 * backfilled, so the single possible restart happened before any
 * unshipped frame was written). No unshipped frame is ever overwritten.
 *
 * A WAL restart therefore shows up as a header with salt-1 one higher and
 * nothing pending: the tailer continues at frame 1 of the new WAL. Any
 * other change - salts jumping by more than one, the WAL emptied while
 * commits were pending, page size changed, the WAL or database file
 * replaced - means continuity cannot be proven, and the caller starts a
 * new generation from a fresh snapshot (TAILER_BROKEN).
 *
 * Commits are found by scanning the WAL file itself (wal.c) from the end
 * of the last commit seen, up to the last frame the wal-index (-shm)
 * publishes as committed: a writer killed after writing its commit frame
 * but before publishing it leaves a valid-looking transaction that SQLite
 * never committed and will overwrite (wal.c). Each commit is stamped with
 * the wall-clock time it was first seen. The scanner is called on inotify events, so that time is
 * within milliseconds of the real commit. Frames are not copied into
 * memory: they stay pinned in the WAL until the shipper reads them.
 *
 * Checkpoints: with the write lock held and everything shipped, the pin is
 * released, a PASSIVE checkpoint runs (never RESTART or TRUNCATE, which
 * wait on readers and writers) and the pin is re-taken at the WAL end.
 * Both connections disable checkpoint-on-close and keep the WAL file on
 * close (SQLITE_FCNTL_PERSIST_WAL), so stopping the sidecar never
 * deletes the WAL it will want to resume from. */
#include "tailer.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_BUSY_TIMEOUT_MS 2000
/* Taking the write lock from a busy writer. SQLite's default busy handler
 * sleeps 1, 2, 5, 10 ... 100 ms between attempts, and a writer that
 * commits back to back frees the lock for only tens of microseconds
 * between its transactions: such a handler almost never gets it, and it
 * blocks the sidecar's loop for its whole timeout. The locker polls
 * every LOCK_POLL_US instead, for at most LOCK_WAIT_MS, and the caller
 * retries later when the writer did not pause. */
#define LOCK_POLL_US 40
#define LOCK_WAIT_MS 250

struct tailer {
    char *db_path;
    char *wal_path;
    int shm_fd;                     /* the wal-index, read only */
    sqlite3 *reader;
    sqlite3 *locker;
    sqlite3_stmt *pin_stmt;
    int pinned;
    int locked;
    int wal_fd;
    struct stat db_stat, wal_stat;
    int have_header;                /* hdr holds the WAL we follow */
    struct wal_header hdr;
    uint32_t page_size;             /* of the database, fixed for our life */
    struct wal_position shipped;    /* everything up to here is shipped */
    struct wal_position scanned;    /* end of the last commit seen */
    struct tailer_commit *pending;  /* commits after `shipped` */
    size_t pending_count, pending_cap;
    int64_t last_commit_ms;
    int64_t lock_deadline_ms;       /* while tailer_lock waits */
};

static int sql_fail(struct tm_error *err, sqlite3 *db, const char *what, const char *path)
{
    return tm_error_set(err, "%s on '%s': %s", what, path, sqlite3_errmsg(db));
}

/* Reads the database header to check it is a SQLite database in WAL mode. */
static int check_database_file(const char *path, uint32_t *page_size, struct tm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tm_error_set(err, "cannot open database '%s': %s", path, strerror(errno));
        return errno == ENOENT ? tm_error_hint(err, "start the application first, or fix 'path' in the configuration") : -1;
    }
    uint8_t header[100];
    ssize_t got = pread(fd, header, sizeof header, 0);
    close(fd);
    if (got == 0)
        return tm_error_set(err, "database '%s' is empty (not created yet)", path);
    if (got != (ssize_t)sizeof header || memcmp(header, "SQLite format 3", 16) != 0)
        return tm_error_set(err, "'%s' is not a SQLite database", path);
    if (header[18] != 2 || header[19] != 2) {
        tm_error_set(err, "database '%s' is not in WAL mode", path);
        return tm_error_hint(err, "the application must use 'PRAGMA journal_mode=WAL' (tidemark never changes the database itself)");
    }
    uint32_t raw = ((uint32_t)header[16] << 8) | header[17];
    *page_size = raw == 1 ? 65536 : raw;
    return 0;
}

int tailer_check_file(const char *db_path, struct tm_error *err)
{
    uint32_t page_size;
    return check_database_file(db_path, &page_size, err);
}

static int open_connection(const char *path, sqlite3 **out, struct tm_error *err)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        sql_fail(err, db, "cannot open database", path);
        sqlite3_close(db);
        return -1;
    }
    int on = 1;
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
    sqlite3_busy_timeout(db, LOCK_BUSY_TIMEOUT_MS);
    *out = db;
    return 0;
}

static int lock_busy_poll(void *arg, int attempts)
{
    struct tailer *t = arg;
    (void)attempts;
    if (clock_now_ms() >= t->lock_deadline_ms)
        return 0;
    struct timespec pause = {0, LOCK_POLL_US * 1000L};
    nanosleep(&pause, NULL);
    return 1;
}

static int pin(struct tailer *t, struct tm_error *err)
{
    if (sqlite3_exec(t->reader, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(err, t->reader, "cannot begin read transaction", t->db_path);
    int rc = sqlite3_step(t->pin_stmt);
    sqlite3_reset(t->pin_stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sql_fail(err, t->reader, "cannot read", t->db_path);
        sqlite3_exec(t->reader, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    t->pinned = 1;
    return 0;
}

static void unpin(struct tailer *t)
{
    if (t->pinned)
        sqlite3_exec(t->reader, "COMMIT", NULL, NULL, NULL);
    t->pinned = 0;
}

int tailer_open(const char *db_path, struct tailer **out, struct tm_error *err)
{
    struct tailer *t = calloc(1, sizeof *t);
    if (!t)
        return tm_error_set(err, "out of memory");
    t->wal_fd = t->shm_fd = -1;
    size_t len = strlen(db_path);
    t->db_path = strdup(db_path);
    t->wal_path = malloc(len + 5);
    if (!t->db_path || !t->wal_path) {
        tailer_close(t);
        return tm_error_set(err, "out of memory");
    }
    memcpy(t->wal_path, db_path, len);
    memcpy(t->wal_path + len, "-wal", 5);
    if (check_database_file(db_path, &t->page_size, err) != 0 ||
        open_connection(db_path, &t->reader, err) != 0 ||
        open_connection(db_path, &t->locker, err) != 0)
        goto fail;
    sqlite3_busy_handler(t->locker, lock_busy_poll, t);
    if (sqlite3_prepare_v2(t->reader, "SELECT 1 FROM sqlite_master LIMIT 1", -1, &t->pin_stmt,
                           NULL) != SQLITE_OK) {
        sql_fail(err, t->reader, "cannot prepare", db_path);
        goto fail;
    }
    /* The first read transaction opens (creates if needed) the WAL. */
    if (pin(t, err) != 0)
        goto fail;
    t->wal_fd = open(t->wal_path, O_RDONLY | O_CLOEXEC);
    if (t->wal_fd < 0) {
        tm_error_set(err, "cannot open WAL '%s': %s", t->wal_path, strerror(errno));
        goto fail;
    }
    char shm_path[PATH_MAX];
    snprintf(shm_path, sizeof shm_path, "%s-shm", db_path);
    t->shm_fd = open(shm_path, O_RDONLY | O_CLOEXEC);
    if (t->shm_fd < 0) {
        tm_error_set(err, "cannot open the wal-index '%s': %s", shm_path, strerror(errno));
        tm_error_hint(err, "the database must use shared-memory WAL (not locking_mode=EXCLUSIVE)");
        goto fail;
    }
    if (fstat(t->wal_fd, &t->wal_stat) != 0 || stat(db_path, &t->db_stat) != 0) {
        tm_error_set(err, "cannot stat '%s': %s", db_path, strerror(errno));
        goto fail;
    }
    *out = t;
    return 0;
fail:
    tailer_close(t);
    return -1;
}

void tailer_close(struct tailer *t)
{
    if (!t)
        return;
    tailer_unlock(t);
    unpin(t);
    sqlite3_finalize(t->pin_stmt);
    sqlite3_close(t->reader);
    sqlite3_close(t->locker);
    if (t->wal_fd >= 0)
        close(t->wal_fd);
    if (t->shm_fd >= 0)
        close(t->shm_fd);
    free(t->pending);
    free(t->db_path);
    free(t->wal_path);
    free(t);
}

int tailer_lock(struct tailer *t, struct tm_error *err)
{
    if (t->locked)
        return 0;
    t->lock_deadline_ms = clock_now_ms() + LOCK_WAIT_MS;
    int rc = sqlite3_exec(t->locker, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if ((rc & 0xff) == SQLITE_BUSY) {
        tm_error_set(err, "the write lock on '%s' is busy (the application kept it for %d ms)", t->db_path,
                     LOCK_WAIT_MS);
        return TAILER_BUSY;
    }
    if (rc != SQLITE_OK)
        return sql_fail(err, t->locker, "cannot take the write lock", t->db_path);
    t->locked = 1;
    return 0;
}

void tailer_unlock(struct tailer *t)
{
    if (!t->locked)
        return;
    if (sqlite3_exec(t->locker, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        sqlite3_exec(t->locker, "ROLLBACK", NULL, NULL, NULL);
    t->locked = 0;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Has the database or WAL file been replaced or deleted under us? */
static int files_replaced(struct tailer *t, struct tm_error *err)
{
    struct stat now;
    if (stat(t->db_path, &now) != 0 || !same_file(&now, &t->db_stat)) {
        tm_error_set(err, "database file '%s' was deleted or replaced", t->db_path);
        return 1;
    }
    if (stat(t->wal_path, &now) != 0 || !same_file(&now, &t->wal_stat)) {
        tm_error_set(err, "WAL file '%s' was deleted or replaced", t->wal_path);
        return 1;
    }
    return 0;
}

static int record_commit(void *ctx, const struct wal_position *end, uint32_t db_size,
                         struct tm_error *err)
{
    struct tailer *t = ctx;
    if (t->pending_count == t->pending_cap) {
        size_t bigger = t->pending_cap ? t->pending_cap * 2 : 64;
        struct tailer_commit *grown = realloc(t->pending, bigger * sizeof *grown);
        if (!grown)
            return tm_error_set(err, "out of memory");
        t->pending = grown;
        t->pending_cap = bigger;
    }
    struct tailer_commit *c = &t->pending[t->pending_count++];
    c->end = *end;
    c->db_size = db_size;
    c->time_ms = t->last_commit_ms;
    return 0;
}

/* Decides what a WAL header different from the one followed means. */
static int follow_new_header(struct tailer *t, const struct wal_header *fresh, struct tm_error *err)
{
    if (!t->have_header) {
        /* Tailer positioned on "no WAL" (empty at the last pin): whatever
         * WAL appears was started after the pin, from frame 1. */
        t->hdr = *fresh;
        t->have_header = 1;
        t->shipped = t->scanned = wal_position_start(fresh);
        return TAILER_OK;
    }
    if (fresh->salt1 == t->hdr.salt1 && fresh->salt2 == t->hdr.salt2)
        return TAILER_OK;
    if (fresh->page_size != t->hdr.page_size) {
        tm_error_set(err, "WAL page size changed from %u to %u", t->hdr.page_size, fresh->page_size);
        return TAILER_BROKEN;
    }
    if (t->pending_count > 0) {
        tm_error_set(err, "WAL restarted while %zu commit(s) were not yet shipped", t->pending_count);
        return TAILER_BROKEN;
    }
    if (fresh->salt1 != t->hdr.salt1 + 1) {
        tm_error_set(err, "WAL salt-1 went from %u to %u: restarts were missed", t->hdr.salt1,
                     fresh->salt1);
        return TAILER_BROKEN;
    }
    log_debug("WAL '%s' restarted (salt-1 %u)", t->wal_path, fresh->salt1);
    t->hdr = *fresh;
    t->shipped = t->scanned = wal_position_start(fresh);
    return TAILER_OK;
}

/* The last frame of `hdr`'s WAL that the wal-index publishes as
 * committed; 0 when the index is being rewritten or describes another WAL
 * (a restart in progress): nothing new counts as committed yet. */
static int committed_limit(struct tailer *t, const struct wal_header *hdr, uint32_t *limit,
                           struct tm_error *err)
{
    struct wal_index_state index;
    *limit = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        int rc = wal_index_read(t->shm_fd, &index, err);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            if (index.salt1 == hdr->salt1 && index.salt2 == hdr->salt2)
                *limit = index.max_frame;
            return 0;
        }
    }
    return 0;
}

int tailer_scan(struct tailer *t, int64_t now_ms, struct tm_error *err)
{
    if (files_replaced(t, err))
        return TAILER_BROKEN;
    struct wal_header fresh;
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found < 0)
        return -1;
    if (!found) {
        if (t->pending_count > 0) {
            tm_error_set(err, "WAL was emptied while %zu commit(s) were not yet shipped",
                         t->pending_count);
            return TAILER_BROKEN;
        }
        return TAILER_OK;   /* truncated after a full checkpoint; wait */
    }
    int status = follow_new_header(t, &fresh, err);
    if (status != TAILER_OK)
        return status;
    if (now_ms > t->last_commit_ms)
        t->last_commit_ms = now_ms;
    uint32_t limit;
    if (committed_limit(t, &t->hdr, &limit, err) != 0)
        return -1;
    struct wal_position last;
    if (limit > t->scanned.frame &&
        wal_scan(t->wal_fd, &t->hdr, &t->scanned, limit, record_commit, t, &last, err) != 0)
        return -1;
    if (limit > t->scanned.frame)
        t->scanned = last;
    return TAILER_OK;
}

/* Finds the commit ending exactly at the target position. */
struct resume_search {
    const struct wal_position *target;
    int found;
};

static int match_commit(void *ctx, const struct wal_position *end, uint32_t db_size,
                        struct tm_error *err)
{
    (void)db_size;
    (void)err;
    struct resume_search *search = ctx;
    if (end->frame == search->target->frame && end->checksum[0] == search->target->checksum[0] &&
        end->checksum[1] == search->target->checksum[1])
        search->found = 1;
    return 0;
}

int tailer_resume_at(struct tailer *t, const struct wal_position *pos, uint32_t page_size,
                     struct tm_error *err)
{
    struct wal_header fresh;
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found <= 0)
        return found;
    if (fresh.salt1 != pos->salt1 || fresh.salt2 != pos->salt2 || fresh.page_size != page_size ||
        page_size != t->page_size)
        return 0;
    struct wal_position start = wal_position_start(&fresh), last;
    struct resume_search search = {pos, 0};
    uint32_t limit;
    if (committed_limit(t, &fresh, &limit, err) != 0)
        return -1;
    if (pos->frame == 0)
        search.found = start.checksum[0] == pos->checksum[0] && start.checksum[1] == pos->checksum[1];
    else if (wal_scan(t->wal_fd, &fresh, &start, limit, match_commit, &search, &last, err) != 0)
        return -1;
    if (!search.found)
        return 0;
    t->hdr = fresh;
    t->have_header = 1;
    t->shipped = t->scanned = *pos;
    t->pending_count = 0;
    return 1;
}

int tailer_restart_at_end(struct tailer *t, struct tm_error *err)
{
    t->pending_count = 0;
    struct wal_header fresh;
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found < 0)
        return -1;
    t->have_header = found;
    if (!found) {
        memset(&t->shipped, 0, sizeof t->shipped);
        t->scanned = t->shipped;
        return 0;
    }
    if (fresh.page_size != t->page_size)
        return tm_error_set(err, "WAL page size %u differs from the database's %u", fresh.page_size,
                            t->page_size);
    t->hdr = fresh;
    struct wal_position start = wal_position_start(&fresh), last;
    uint32_t limit;
    if (committed_limit(t, &fresh, &limit, err) != 0 ||
        wal_scan(t->wal_fd, &fresh, &start, limit, NULL, NULL, &last, err) != 0)
        return -1;
    t->shipped = t->scanned = last;
    return 0;
}

const struct tailer_commit *tailer_pending(const struct tailer *t, size_t *count)
{
    *count = t->pending_count;
    return t->pending;
}

struct wal_position tailer_shipped(const struct tailer *t) { return t->shipped; }

void tailer_ack(struct tailer *t, size_t count)
{
    if (count == 0)
        return;
    if (count > t->pending_count)
        count = t->pending_count;
    t->shipped = t->pending[count - 1].end;
    memmove(t->pending, t->pending + count, (t->pending_count - count) * sizeof *t->pending);
    t->pending_count -= count;
}

int tailer_read_frames(struct tailer *t, uint32_t first, uint32_t count, uint8_t *buf,
                       struct tm_error *err)
{
    size_t len = (size_t)count * (WAL_FRAME_HEADER_BYTES + t->hdr.page_size);
    off_t offset = (off_t)wal_frame_offset(&t->hdr, first);
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(t->wal_fd, buf + done, len - done, offset + (off_t)done);
        if (got <= 0)
            return tm_error_set(err, "cannot read frames %u-%u of '%s': %s", first, first + count - 1,
                                t->wal_path, got < 0 ? strerror(errno) : "short read");
        done += (size_t)got;
    }
    return 0;
}

const struct wal_header *tailer_header(const struct tailer *t)
{
    return t->have_header ? &t->hdr : NULL;
}

uint32_t tailer_page_size(const struct tailer *t) { return t->page_size; }

int tailer_wal_index_fd(const struct tailer *t) { return t->shm_fd; }

int tailer_repin(struct tailer *t, int checkpoint, struct tm_error *err)
{
    if (!t->locked || t->pending_count > 0)
        return tm_error_set(err, "internal: repin needs the write lock and nothing pending");
    unpin(t);
    if (checkpoint) {
        int log_frames = 0, backfilled = 0;
        int rc = sqlite3_wal_checkpoint_v2(t->reader, "main", SQLITE_CHECKPOINT_PASSIVE,
                                           &log_frames, &backfilled);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("checkpoint of '%s' failed: %s", t->db_path, sqlite3_errmsg(t->reader));
        else
            log_debug("checkpoint of '%s': %d of %d frames backfilled", t->db_path, backfilled,
                      log_frames);
    }
    return pin(t, err);
}

/* Whether a connection of another process holds a WAL read mark 1..4
 * (SQLite's read locks, bytes 124..127 of the wal-index): a reader still
 * on a snapshot that includes WAL frames, which can keep the next writer
 * from restarting the WAL. Locks of this process never show (POSIX locks). */
static int other_reader_on_wal(struct tailer *t)
{
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 124, .l_len = 4};
    if (fcntl(t->shm_fd, F_GETLK, &probe) != 0)
        return 1;   /* cannot tell: assume one */
    return probe.l_type != F_UNLCK;
}

int tailer_release(struct tailer *t, int *clean, struct tm_error *err)
{
    *clean = 0;
    if (!t->locked || t->pending_count > 0)
        return tm_error_set(err, "internal: release needs the write lock and nothing pending");
    unpin(t);
    int log_frames = 0, backfilled = 0;
    int rc = sqlite3_wal_checkpoint_v2(t->reader, "main", SQLITE_CHECKPOINT_PASSIVE, &log_frames, &backfilled);
    int backfilled_all = rc == SQLITE_OK && log_frames == backfilled &&
                         (uint32_t)log_frames == (t->have_header ? t->shipped.frame : 0);
    /* an empty WAL has no frame a reader could hold on to */
    int reader = backfilled_all && t->have_header && other_reader_on_wal(t);
    *clean = backfilled_all && !reader;
    if (*clean)
        return 0;
    log_debug("'%s' not released: %d of %d frames backfilled%s", t->db_path, backfilled, log_frames,
              reader ? ", another reader is on the WAL" : "");
    return pin(t, err);
}

int tailer_resume_after_release(struct tailer *t, const struct wal_header *released, const struct wal_position *pos,
                                uint32_t page_size, struct tm_error *err)
{
    if (page_size != t->page_size)
        return 0;
    struct wal_header fresh;
    if (released) {
        int resumed = tailer_resume_at(t, pos, page_size, err);
        if (resumed != 0)
            return resumed;
    }
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found < 0)
        return -1;
    t->pending_count = 0;
    if (!released) {   /* the WAL was empty: whatever it holds now came after */
        t->have_header = found;
        if (found) {
            t->hdr = fresh;
            t->shipped = t->scanned = wal_position_start(&fresh);
        } else {
            memset(&t->shipped, 0, sizeof t->shipped);
            t->scanned = t->shipped;
        }
        return 1;
    }
    /* One restart since the release, from the state shipped (tailer.h) */
    if (!found || fresh.salt1 != released->salt1 + 1 || fresh.checkpoint_seq != released->checkpoint_seq + 1 ||
        fresh.page_size != page_size)
        return 0;
    t->hdr = fresh;
    t->have_header = 1;
    t->shipped = t->scanned = wal_position_start(&fresh);
    return 1;
}

int tailer_snapshot(struct tailer *t, const char *path, uint32_t *page_count,
                    struct tm_error *err)
{
    sqlite3 *dest = NULL;
    unlink(path);
    if (sqlite3_open_v2(path, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        sql_fail(err, dest, "cannot create snapshot file", path);
        sqlite3_close(dest);
        return -1;
    }
    sqlite3_exec(dest, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", NULL, NULL, NULL);
    sqlite3_backup *backup = sqlite3_backup_init(dest, "main", t->reader, "main");
    if (!backup) {
        sql_fail(err, dest, "cannot start backup", path);
        sqlite3_close(dest);
        return -1;
    }
    int rc = sqlite3_backup_step(backup, -1);
    int pages = sqlite3_backup_pagecount(backup);
    sqlite3_backup_finish(backup);
    if (rc != SQLITE_DONE) {
        tm_error_set(err, "snapshot of '%s' failed: %s", t->db_path, sqlite3_errstr(rc));
        sqlite3_close(dest);
        unlink(path);
        return -1;
    }
    sqlite3_close(dest);
    *page_count = (uint32_t)pages;
    return 0;
}
