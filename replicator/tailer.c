/* tailer.c - following a live SQLite WAL, with nothing written to the
 * database and the write lock never taken.
 *
 * DESIGN
 *
 * Commits are found by scanning the WAL file itself (wal.c) from the end
 * of the last commit seen, up to the last frame the wal-index (-shm)
 * publishes as committed: a writer killed after writing its commit frame
 * but before publishing it leaves a valid-looking transaction that SQLite
 * never committed and will overwrite (wal.c). Each commit is stamped with
 * the wall-clock time it was first seen; the scanner runs on inotify
 * events, so that time is within milliseconds of the real commit. Frames
 * stay in the WAL until the shipper reads them (read into memory only
 * when the WAL restarts under them, or to let go of the pin, below).
 * What must never happen is that SQLite overwrites a frame before it is
 * shipped unseen.
 *
 * How SQLite reuses a WAL (its wal.c): frames are overwritten only when a
 * writer "restarts" the WAL, which it does only when (1) every frame is
 * already copied into the database file (nBackfill == mxFrame: a
 * checkpoint "backfilled" them) and (2) no reader holds a read-mark slot
 * 1..4. A reader's read transaction holds one slot: slot 0 when it began
 * with the WAL wholly backfilled (it then reads the database file only),
 * otherwise a slot 1..4 whose mark is the WAL end it began at. Backfill
 * needs slot 0 exclusively and stops at the lowest mark held. So:
 *
 *   - a reader on slot 1..4 forbids every restart for as long as it
 *     lasts (frames past its mark are not even backfilled);
 *   - a reader on slot 0 forbids every backfill, so at most one restart
 *     can happen while it lasts - discarding frames that were wholly
 *     backfilled when it began - and any later restart is of a WAL with
 *     no frame in it.
 *
 * The tailer keeps two read connections. At every instant one of them
 * holds a read transaction, the "pin". The pin is moved by a handover:
 * the other connection begins a read transaction at the WAL's current
 * end, and only then does the old one end. Nothing here ever takes
 * SQLite's write lock (readers never make writers wait) and nothing is
 * written. The handover keeps this invariant:
 *
 *   every frame not yet shipped is either protected by a pin on slot
 *   1..4, or was written after a slot-0 pin began.
 *
 * A new pin whose wal-index reads show nBackfill < mxFrame is on a slot
 * 1..4: it protects everything, the handover is always safe. A new pin
 * that may be on slot 0 is kept only if everything up to its frame is
 * shipped; otherwise it is dropped (ship first, then try again). Which
 * slot and which frame a pin stands at is read from the wal-index just
 * before and just after it begins: equal headers on both sides fix both
 * (nBackfill only grows within one WAL; a restart changes the salts);
 * unequal ones mean commits arrived, and the attempt is repeated.
 *
 * Restarts are also proven after the fact, which lets the sidecar hold
 * no pin at times. The wal-index header counts commits (iChange: one
 * more at every commit, kept across restarts). Each scan that reads the
 * WAL up to the wal-index's end checks that the commits read since the
 * last such scan are exactly those counted. When a restart is seen, the
 * old WAL's frames after the shipped position - a chain of valid frames,
 * as far as it goes; the new WAL overwrites it from frame 1, so its end
 * is usually still there - are read into memory (to be shipped from
 * there) before the new WAL is followed from its frame 1, and the next
 * count proves that nothing was missed. The new salts themselves prove
 * nothing: a connection that never restarted a WAL itself writes random
 * ones after another connection's TRUNCATE. When the counter is not known
 * yet, a restart is followed only if every pin held since the previous
 * scan was safe (on a slot 1..4, or on slot 0 taken with everything
 * shipped). Anything else - commits counted but not found, page size
 * changed, the WAL or database file replaced - means continuity cannot
 * be proven, and the caller starts a new generation from a fresh snapshot
 * (TAILER_BROKEN): loud, never silent.
 *
 * Getting out of the application's way (replicate.c drives it):
 *
 *  - An application's FULL, RESTART or TRUNCATE checkpoint takes the
 *    wal-index's CKPT and WRITE locks, then waits (its busy handler) for
 *    the readers it needs gone; meanwhile no frame can be appended. The
 *    daemon polls those two lock bytes (F_GETLK sees other processes'
 *    locks) every 10 ms; when both are held and the pin may be what the
 *    checkpointer waits for, it ships what is committed and lets go of
 *    the pin (tailer_unpin), looks at the WAL every millisecond while
 *    unpinned, and pins again once the WAL restarted or after 20 ms.
 *  - While the application writes, the pin holds the WAL back (a slot
 *    1..4 stops every restart). Every checkpoint-pages frames, while the
 *    sidecar keeps up, the daemon lets go of the pin so that the
 *    application's own checkpoint and next writer restart the WAL
 *    (not for an application seen running RESTART/TRUNCATE checkpoints
 *    itself: those restart it, and the pin only moves).
 *  - Once a tick (and a second) passed without a commit, the daemon runs a PASSIVE
 *    checkpoint (it never waits and never blocks a writer) and, the WAL
 *    being wholly backfilled, moves the pin onto slot 0, where no
 *    checkpoint waits for it and the next writer restarts the WAL.
 *  - When nothing can be shipped for a while (a snapshot being written),
 *    the pending frames can be read into memory (tailer_detach), so that
 *    the pin can be let go all the same.
 *
 * Both connections disable checkpoint-on-close and keep the WAL file on
 * close (SQLITE_FCNTL_PERSIST_WAL), so stopping the sidecar never deletes
 * the WAL it will want to resume from. */
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

/* A read transaction's BEGIN waits at most this long (only a recovery of
 * the wal-index by another process makes it wait at all). */
#define READ_BUSY_TIMEOUT_MS 250
/* Attempts at reading a new pin's position exactly (commits arriving
 * between the two reads of the wal-index make an attempt inexact). */
#define PIN_ATTEMPTS 32
/* The wal-index's lock bytes (SQLite's unix VFS: offset 120 + index). */
#define SHM_LOCK_WRITE 120
#define SHM_LOCK_CKPT 121
#define SHM_LOCK_READ1 124
#define SHM_READERS_AFTER_0 4
/* The most of an old WAL's unshipped tail kept in memory after a restart. */
#define TAIL_MAX_BYTES (64u * 1024 * 1024)
/* Commit counter sightings kept (about one a millisecond while commits
 * arrive and the sidecar looks). */
#define SIGHTINGS 1024
/* Pages a snapshot copies between two looks at the application's locks. */
#define SNAPSHOT_STEP_PAGES 256

/* Where a pin's read transaction stands, from the wal-index read just
 * before and just after it began. */
struct pin {
    int conn;                       /* the connection holding it; -1: none */
    int known;                      /* salts and frame are exact */
    uint32_t salt1, salt2;          /* the WAL it began in (the wal-index's salts) */
    uint32_t frame;                 /* the end of the last commit its snapshot holds */
    int slot0;                      /* on read-mark slot 0 (WAL wholly backfilled at its start) */
    int maybe_slot0;                /* slot 0 cannot be ruled out */
    int covers_shipped;             /* on slot 0, taken with everything up to `frame` shipped */
};

struct tailer {
    char *db_path;
    char *wal_path;
    int shm_fd;                     /* the wal-index, read only */
    sqlite3 *conn[2];               /* two read connections: the pin is handed over between them */
    sqlite3_stmt *pin_stmt[2];
    struct pin pin;
    int wal_fd;
    struct stat db_stat, wal_stat;
    int have_header;                /* hdr holds the WAL we follow */
    struct wal_header hdr;
    uint32_t page_size;             /* of the database, fixed for our life */
    struct wal_position shipped;    /* everything up to here is shipped */
    struct wal_position scanned;    /* end of the last commit seen */
    uint32_t index_max_seen;        /* the highest mxFrame the wal-index published for hdr's WAL */
    int restart_unsafe;             /* since the last scan, a pin was held under which a
                                       restart could have discarded frames not shipped */
    int counter_known;              /* `counted` holds the wal-index's commit counter */
    uint32_t counted;               /* iChange when a scan last reached the wal-index's end */
    uint32_t recorded_since_count;  /* commits recorded since then */
    uint8_t *tail;                  /* frames read into memory: an old WAL's after a restart,
                                       or the pending ones (tailer_detach) */
    size_t tail_cap;                /* bytes allocated at tail */
    uint32_t tail_first, tail_frames;
    int switching;                  /* the WAL restarted: the new one is followed once the
                                       old one's tail is shipped */
    struct tailer_commit *pending;  /* commits after `shipped` */
    size_t pending_count, pending_cap;
    int64_t last_commit_ms;
    int64_t last_stamp_ms;          /* of the last commit recorded */
    /* When the wal-index's commit counter was seen at which value: a
     * commit read late (after a restart, while a snapshot was written)
     * is stamped with the time its number was first seen. A ring. */
    struct sighting {
        uint32_t changes;
        int64_t ms;
    } sightings[SIGHTINGS];
    size_t sighting_next, sighting_count;
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
    sqlite3_busy_timeout(db, READ_BUSY_TIMEOUT_MS);
    *out = db;
    return 0;
}

static int tail_covers_pending(const struct tailer *t);

/* ------------------------------------------------------------ the pin */

static int begin_read(struct tailer *t, int conn, struct tm_error *err)
{
    if (sqlite3_exec(t->conn[conn], "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(err, t->conn[conn], "cannot begin read transaction", t->db_path);
    int rc = sqlite3_step(t->pin_stmt[conn]);
    sqlite3_reset(t->pin_stmt[conn]);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sql_fail(err, t->conn[conn], "cannot read", t->db_path);
        sqlite3_exec(t->conn[conn], "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

static void end_read(struct tailer *t, int conn)
{
    if (conn >= 0 && !sqlite3_get_autocommit(t->conn[conn]))
        sqlite3_exec(t->conn[conn], "COMMIT", NULL, NULL, NULL);
}

/* The wal-index header and nBackfill: 1 when consistent, 0 when being
 * rewritten (after a few attempts), -1 on I/O errors. */
static int read_index(struct tailer *t, struct wal_index_state *index, struct tm_error *err)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int rc = wal_index_read(t->shm_fd, index, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int same_index(const struct wal_index_state *a, const struct wal_index_state *b)
{
    return a->max_frame == b->max_frame && a->salt1 == b->salt1 && a->salt2 == b->salt2;
}

/* Begins a read transaction on `conn` and reads where it stands into
 * *out. An inexact attempt (commits arriving in between) is ended and
 * repeated up to PIN_ATTEMPTS times; if every one was inexact, the last
 * is kept with out->known = 0 only when `keep_inexact`, else ended
 * (TAILER_LATER). 0 on success, -1 on errors. */
static int take_pin(struct tailer *t, int conn, int keep_inexact, struct pin *out, struct tm_error *err)
{
    for (int attempt = 1;; attempt++) {
        struct wal_index_state before, after;
        int before_ok = read_index(t, &before, err);
        if (before_ok < 0 || begin_read(t, conn, err) != 0)
            return -1;
        int after_ok = read_index(t, &after, err);
        if (after_ok < 0) {
            end_read(t, conn);
            return -1;
        }
        memset(out, 0, sizeof *out);
        out->conn = conn;
        out->maybe_slot0 = 1;
        if (before_ok && after_ok && same_index(&before, &after)) {
            out->known = 1;
            out->salt1 = after.salt1;
            out->salt2 = after.salt2;
            out->frame = after.max_frame;
            /* nBackfill grows only within one WAL: equal on both sides and
             * equal to the end means it was so when the slot was chosen */
            out->slot0 = before.backfilled == after.max_frame && after.backfilled == after.max_frame;
            out->maybe_slot0 = after.backfilled >= after.max_frame;
            return 0;
        }
        if (attempt >= PIN_ATTEMPTS) {
            if (keep_inexact)
                return 0;
            end_read(t, conn);
            return TAILER_LATER;
        }
        end_read(t, conn);
    }
}

/* Whether a pin at `p` keeps everything not yet shipped safe: a slot
 * 1..4 does; slot 0 only if everything up to its frame is shipped. */
static int pin_protects(const struct tailer *t, const struct pin *p)
{
    if (!p->known)
        return 0;
    if (!p->maybe_slot0)
        return 1;
    if (!t->have_header)
        return p->frame == 0;
    if (p->salt1 != t->hdr.salt1 || p->salt2 != t->hdr.salt2)
        return 0;
    /* everything up to its frame is shipped, or in memory */
    return (p->frame == t->shipped.frame && t->pending_count == 0) ||
           (p->frame == t->scanned.frame && tail_covers_pending(t));
}

/* Whether no WAL restart can discard a frame not shipped while pin `p`
 * is held: on a slot 1..4 no restart happens at all; on slot 0, taken
 * with everything up to its frame shipped, only that WAL's one restart
 * (of frames shipped) and restarts of empty WALs can. */
static int pin_safe(const struct pin *p)
{
    return p->known && (!p->maybe_slot0 || p->covers_shipped);
}

/* Hands the pin over to the other connection if the new place is safe
 * (or `any` place, for a new generation). */
static int hand_over(struct tailer *t, int any, struct tm_error *err)
{
    int next = t->pin.conn == 0 ? 1 : 0;
    struct pin fresh;
    int rc = take_pin(t, next, 0, &fresh, err);
    if (rc != 0)
        return rc;
    if (!any && !pin_protects(t, &fresh)) {
        end_read(t, next);
        return TAILER_LATER;
    }
    end_read(t, t->pin.conn);
    fresh.covers_shipped = fresh.slot0 && pin_protects(t, &fresh);
    log_debug("pin on connection %d: salt-1 %u frame %u slot0 %d maybe %d covers %d (shipped %u pending %zu)",
              fresh.conn, fresh.salt1, fresh.frame, fresh.slot0, fresh.maybe_slot0, fresh.covers_shipped,
              t->shipped.frame, t->pending_count);
    t->pin = fresh;
    t->restart_unsafe |= !pin_safe(&t->pin);
    return TAILER_OK;
}

int tailer_unpin(struct tailer *t)
{
    if (t->pin.conn < 0)
        return TAILER_OK;
    if ((t->pending_count && !tail_covers_pending(t)) || !t->counter_known || t->switching)
        return TAILER_LATER;
    end_read(t, t->pin.conn);
    t->pin.conn = -1;
    t->pin.known = 0;
    return TAILER_OK;
}

int tailer_pinned(const struct tailer *t) { return t->pin.conn >= 0; }

int tailer_switching(const struct tailer *t) { return t->switching; }

int tailer_advance_pin(struct tailer *t, struct tm_error *err)
{
    return hand_over(t, 0, err);
}

int tailer_open(const char *db_path, struct tailer **out, struct tm_error *err)
{
    struct tailer *t = calloc(1, sizeof *t);
    if (!t)
        return tm_error_set(err, "out of memory");
    t->wal_fd = t->shm_fd = -1;
    t->pin.conn = -1;
    size_t len = strlen(db_path);
    t->db_path = strdup(db_path);
    t->wal_path = malloc(len + 5);
    if (!t->db_path || !t->wal_path) {
        tailer_close(t);
        return tm_error_set(err, "out of memory");
    }
    memcpy(t->wal_path, db_path, len);
    memcpy(t->wal_path + len, "-wal", 5);
    if (check_database_file(db_path, &t->page_size, err) != 0)
        goto fail;
    for (int i = 0; i < 2; i++) {
        if (open_connection(db_path, &t->conn[i], err) != 0)
            goto fail;
        if (sqlite3_prepare_v2(t->conn[i], "SELECT 1 FROM sqlite_master LIMIT 1", -1, &t->pin_stmt[i],
                               NULL) != SQLITE_OK) {
            sql_fail(err, t->conn[i], "cannot prepare", db_path);
            goto fail;
        }
    }
    /* The first read transaction opens (creates if needed) the WAL and
     * the wal-index; the pin is taken once more when the index is open,
     * so that its place is known. */
    if (begin_read(t, 0, err) != 0)
        goto fail;
    t->pin.conn = 0;
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
    struct pin first;
    if (take_pin(t, 1, 1, &first, err) != 0)
        goto fail;
    end_read(t, 0);
    t->pin = first;
    t->restart_unsafe = 1;   /* nothing is positioned yet */
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
    for (int i = 0; i < 2; i++) {
        if (t->conn[i])
            end_read(t, i);
        sqlite3_finalize(t->pin_stmt[i]);
        sqlite3_close(t->conn[i]);
    }
    if (t->wal_fd >= 0)
        close(t->wal_fd);
    if (t->shm_fd >= 0)
        close(t->shm_fd);
    free(t->pending);
    free(t->tail);
    free(t->db_path);
    free(t->wal_path);
    free(t);
}

/* ------------------------------------------------ the application's locks */

/* Whether another process holds a lock on wal-index bytes [start,
 * start+len) (POSIX locks: this process's own never show). */
static int shm_locked_by_other(const struct tailer *t, off_t start, off_t len)
{
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(t->shm_fd, F_GETLK, &probe) != 0)
        return 1;   /* cannot tell: assume so */
    return probe.l_type != F_UNLCK;
}

int tailer_app_busy(struct tailer *t)
{
    return shm_locked_by_other(t, SHM_LOCK_WRITE, 2);
}

int tailer_app_checkpointing(struct tailer *t)
{
    return shm_locked_by_other(t, SHM_LOCK_CKPT, 1);
}

int tailer_pin_in_the_way(struct tailer *t)
{
    if (t->pin.conn < 0 || !shm_locked_by_other(t, SHM_LOCK_CKPT, 1) || !shm_locked_by_other(t, SHM_LOCK_WRITE, 1))
        return 0;
    struct wal_index_state index;
    struct tm_error ignored;
    if (read_index(t, &index, &ignored) != 1 || !t->pin.known)
        return 1;
    if (index.salt1 != t->pin.salt1 || index.salt2 != t->pin.salt2)
        return !t->pin.slot0 || index.backfilled < index.max_frame;
    if (t->pin.slot0)   /* a backfill needs slot 0 to itself */
        return index.backfilled < index.max_frame;
    /* a mark below the end stops the backfill; any slot 1..4 the restart */
    return t->pin.frame < index.max_frame || index.backfilled >= index.max_frame;
}

/* Whether a connection of another process holds a WAL read mark 1..4
 * (SQLite's read locks, bytes 124..127 of the wal-index): a reader still
 * on a snapshot that includes WAL frames, which can keep the next writer
 * from restarting the WAL. */
static int other_reader_on_wal(struct tailer *t)
{
    return shm_locked_by_other(t, SHM_LOCK_READ1, SHM_READERS_AFTER_0);
}

/* ---------------------------------------------------------- scanning */

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

static void add_sighting(struct tailer *t, uint32_t changes, int64_t now_ms)
{
    if (t->sighting_count) {
        size_t last = (t->sighting_next + SIGHTINGS - 1) % SIGHTINGS;
        if (t->sightings[last].changes == changes)
            return;
    }
    t->sightings[t->sighting_next] = (struct sighting){changes, now_ms};
    t->sighting_next = (t->sighting_next + 1) % SIGHTINGS;
    if (t->sighting_count < SIGHTINGS)
        t->sighting_count++;
}

/* The time the counter was first seen at `changes` or beyond: 1, or 0
 * when no sighting shows it. */
static int first_sighting(const struct tailer *t, uint32_t changes, int64_t *ms)
{
    size_t oldest = (t->sighting_next + SIGHTINGS - t->sighting_count) % SIGHTINGS;
    for (size_t i = 0; i < t->sighting_count; i++) {
        const struct sighting *s = &t->sightings[(oldest + i) % SIGHTINGS];
        if ((int32_t)(s->changes - changes) >= 0) {
            *ms = s->ms;
            return 1;
        }
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
    t->recorded_since_count++;
    c->end = *end;
    c->db_size = db_size;
    int64_t stamp = t->last_commit_ms, sighted;
    if (t->counter_known && first_sighting(t, t->counted + t->recorded_since_count, &sighted) && sighted < stamp)
        stamp = sighted;
    if (stamp < t->last_stamp_ms)
        stamp = t->last_stamp_ms;
    c->time_ms = t->last_stamp_ms = stamp;
    return 0;
}

static void follow_from_start(struct tailer *t, const struct wal_header *fresh)
{
    t->hdr = *fresh;
    t->have_header = 1;
    t->shipped = t->scanned = wal_position_start(fresh);
    t->index_max_seen = 0;
}

/* Appends to *buf (capacity *cap, *kept frames) the chain of valid
 * frames of the followed WAL after *pos, up to frame `stop` (0: as far as
 * it goes, within TAIL_MAX_BYTES); *last_commit and *commit_frames end at
 * its last commit frame; commits past `scanned` are recorded. */
static int read_chain_until(struct tailer *t, uint8_t **buf, size_t *cap, size_t *kept, struct wal_position *pos,
                            struct wal_position *last_commit, uint32_t *commit_frames, uint32_t stop,
                            struct tm_error *err)
{
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + t->hdr.page_size;
    while (!stop || pos->frame < stop) {
        if ((*kept + 1) * frame_bytes > TAIL_MAX_BYTES) {
            tm_error_set(err, "more than %u MiB of the WAL not shipped", TAIL_MAX_BYTES >> 20);
            return TAILER_BROKEN;
        }
        if ((*kept + 1) * frame_bytes > *cap) {
            size_t bigger = *cap ? *cap * 2 : 64 * frame_bytes;
            uint8_t *grown = realloc(*buf, bigger);
            if (!grown)
                return tm_error_set(err, "out of memory");
            *buf = grown;
            *cap = bigger;
        }
        uint8_t *frame = *buf + *kept * frame_bytes;
        ssize_t got = pread(t->wal_fd, frame, frame_bytes, (off_t)wal_frame_offset(&t->hdr, pos->frame + 1));
        struct wal_position next;
        if (got != (ssize_t)frame_bytes || !wal_frame_follows(&t->hdr, pos, frame, &next))
            break;
        struct wal_frame_header fh;
        wal_frame_header_decode(frame, &fh);
        (*kept)++;
        *pos = next;
        if (fh.db_size_after_commit) {
            *last_commit = next;
            *commit_frames = (uint32_t)*kept;
            if (next.frame > t->scanned.frame && record_commit(t, &next, fh.db_size_after_commit, err) != 0)
                return -1;
        }
    }
    return 0;
}

static int read_chain(struct tailer *t, uint8_t **buf, size_t *cap, size_t *kept, struct wal_position *pos,
                      struct wal_position *last_commit, uint32_t *commit_frames, struct tm_error *err)
{
    return read_chain_until(t, buf, cap, kept, pos, last_commit, commit_frames, 0, err);
}

/* After a restart: reads the old WAL's frames after `shipped` - a chain
 * of valid frames, as far as it goes - into memory, so that what was not
 * shipped yet can still be, and records the commits past `scanned` (a
 * restart that happened while no pin protected them). Whether that was
 * every commit is checked by the commit counter at the next scan that
 * reaches the new WAL's end. 0, TAILER_BROKEN or -1. */
static int recover_tail(struct tailer *t, struct tm_error *err)
{
    /* frames up to `scanned` may already be in memory (tailer_detach) */
    int detached = tail_covers_pending(t);
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + t->hdr.page_size, kept = detached ? t->tail_frames : 0;
    size_t cap = detached ? t->tail_cap : 0;
    (void)frame_bytes;
    uint8_t *buf = detached ? t->tail : NULL;
    struct wal_position pos = detached ? t->scanned : t->shipped, last_commit = pos;
    uint32_t commit_frames = (uint32_t)kept;
    if (detached)
        t->tail = NULL;   /* buf owns it now */
    int rc = read_chain(t, &buf, &cap, &kept, &pos, &last_commit, &commit_frames, err);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    if (last_commit.frame < t->scanned.frame ||
        (t->scanned.frame > t->shipped.frame && last_commit.frame == t->scanned.frame &&
         memcmp(last_commit.checksum, t->scanned.checksum, sizeof last_commit.checksum) != 0)) {
        free(buf);
        tm_error_set(err, "the WAL restarted and overwrote frames %u-%u before they were shipped",
                     t->shipped.frame + 1, t->scanned.frame);
        return TAILER_BROKEN;
    }
    free(t->tail);
    t->tail = buf;
    t->tail_cap = cap;
    t->tail_first = t->shipped.frame + 1;
    t->tail_frames = commit_frames;
    if (last_commit.frame > t->scanned.frame)
        t->scanned = last_commit;
    return 0;
}

/* Whether every pending frame is in memory (tailer_detach). */
static int tail_covers_pending(const struct tailer *t)
{
    return t->tail && t->tail_first == t->shipped.frame + 1 &&
           t->tail_first + t->tail_frames - 1 == t->scanned.frame;
}

int tailer_detach(struct tailer *t, struct tm_error *err)
{
    if (!t->pending_count || tail_covers_pending(t))
        return 0;
    if (t->switching)
        return TAILER_LATER;
    size_t cap = 0, kept = 0;
    uint8_t *buf = NULL;
    struct wal_position pos = t->shipped, last_commit = t->shipped;
    uint32_t commit_frames = 0;
    if (t->tail && t->tail_first == t->shipped.frame + 1) {
        /* what is in memory already stays: read on from its last commit */
        uint32_t end = t->tail_first + t->tail_frames - 1;
        for (size_t i = 0; i < t->pending_count; i++)
            if (t->pending[i].end.frame == end) {
                buf = t->tail;
                cap = t->tail_cap;
                kept = commit_frames = t->tail_frames;
                pos = last_commit = t->pending[i].end;
                t->tail = NULL;
                break;
            }
    }
    int rc = read_chain_until(t, &buf, &cap, &kept, &pos, &last_commit, &commit_frames, t->scanned.frame, err);
    if (rc == TAILER_BROKEN)
        rc = TAILER_LATER;   /* too much to keep in memory: ship it instead */
    if (rc != 0 || last_commit.frame != t->scanned.frame ||
        memcmp(last_commit.checksum, t->scanned.checksum, sizeof last_commit.checksum) != 0) {
        free(buf);
        return rc != 0 ? rc : tm_error_set(err, "the WAL of '%s' changed under frames not shipped", t->db_path);
    }
    free(t->tail);
    t->tail = buf;
    t->tail_cap = cap;
    t->tail_first = t->shipped.frame + 1;
    t->tail_frames = commit_frames;
    return 0;
}

/* The old WAL's tail is shipped: follow the new WAL (NULL: none yet). */
static void finish_switch(struct tailer *t, const struct wal_header *fresh)
{
    free(t->tail);
    t->tail = NULL;
    t->tail_cap = 0;
    t->tail_frames = 0;
    t->switching = 0;
    if (fresh) {
        follow_from_start(t, fresh);
        return;
    }
    t->have_header = 0;
    memset(&t->shipped, 0, sizeof t->shipped);
    t->scanned = t->shipped;
    t->index_max_seen = 0;
}

/* Decides what a WAL header different from the one followed means. */
static int follow_new_header(struct tailer *t, const struct wal_header *fresh, struct tm_error *err)
{
    if (!t->have_header) {
        /* Positioned on "no WAL" (empty when the pin began, which is
         * then on slot 0): whatever WAL appears was started after it. */
        follow_from_start(t, fresh);
        return TAILER_OK;
    }
    if (fresh->salt1 == t->hdr.salt1 && fresh->salt2 == t->hdr.salt2)
        return TAILER_OK;
    if (fresh->page_size != t->hdr.page_size) {
        tm_error_set(err, "WAL page size changed from %u to %u", t->hdr.page_size, fresh->page_size);
        return TAILER_BROKEN;
    }
    if (t->counter_known) {   /* the commit counter will prove that nothing was missed */
        int rc = recover_tail(t, err);
        if (rc != 0)
            return rc;
        t->switching = 1;
        log_debug("WAL '%s' restarted (salt-1 %u): %u frame(s) of the old one kept to ship", t->wal_path,
                  fresh->salt1, t->tail_frames);
        return TAILER_OK;
    }
    if (t->pending_count > 0) {
        tm_error_set(err, "WAL restarted while %zu commit(s) were not yet shipped", t->pending_count);
        return TAILER_BROKEN;
    }
    if (t->scanned.frame < t->index_max_seen) {
        tm_error_set(err, "WAL restarted before its frames %u-%u were read", t->scanned.frame + 1,
                     t->index_max_seen);
        return TAILER_BROKEN;
    }
    /* The salts of a restarted WAL are not a sequence to rely on (a
     * connection that never restarted a WAL itself picks random ones after
     * another's TRUNCATE): what proves that nothing was lost is the pin. */
    if (t->restart_unsafe) {
        tm_error_set(err, "WAL restarted (salt-1 %u to %u) while nothing proved that every frame of the old one "
                     "was shipped", t->hdr.salt1, fresh->salt1);
        return TAILER_BROKEN;
    }
    log_debug("WAL '%s' restarted (salt-1 %u)", t->wal_path, fresh->salt1);
    follow_from_start(t, fresh);
    return TAILER_OK;
}

/* The WAL was restarted and has no frame yet (a TRUNCATE checkpoint).
 * When the commit counter shows that every commit was read (or, without
 * it, only safe pins were held since the last scan), everything of the
 * old WAL is shipped and any WAL written from now on starts after it:
 * follow "no WAL". Commits counted but never read: TAILER_BROKEN. */
static int follow_empty_wal(struct tailer *t, const struct wal_index_state *index, struct tm_error *err)
{
    if (!t->have_header || index->max_frame != 0 ||
        (index->salt1 == t->hdr.salt1 && index->salt2 == t->hdr.salt2))
        return TAILER_OK;
    if (t->counter_known) {
        uint32_t unread = index->changes - (t->counted + t->recorded_since_count);
        if (unread != 0) {
            tm_error_set(err, "the WAL was truncated with %u commit(s) not read", unread);
            return TAILER_BROKEN;
        }
    } else if (t->restart_unsafe || t->scanned.frame < t->index_max_seen) {
        return TAILER_OK;
    }
    if (t->pending_count)
        return TAILER_OK;   /* ship them first (their frames are in the file until it is written again) */
    t->have_header = 0;
    memset(&t->shipped, 0, sizeof t->shipped);
    t->scanned = t->shipped;
    t->index_max_seen = 0;
    t->counted = index->changes;
    t->recorded_since_count = 0;
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
    int rc = read_index(t, &index, err);
    if (rc < 0)
        return -1;
    if (rc == 1 && index.salt1 == hdr->salt1 && index.salt2 == hdr->salt2)
        *limit = index.max_frame;
    return 0;
}

/* At a scan that read the WAL up to the wal-index's end: the commits
 * read since the last such scan must be exactly those the wal-index
 * counted (iChange), or some were lost unseen (TAILER_BROKEN). */
static int check_commit_count(struct tailer *t, const struct wal_index_state *index, struct tm_error *err)
{
    if (t->counter_known && index->changes != t->counted + t->recorded_since_count) {
        tm_error_set(err, "the wal-index counts %u commit(s) since the last check, the sidecar read %u: "
                     "commits were lost (the WAL restarted over frames not read)",
                     index->changes - t->counted, t->recorded_since_count);
        return TAILER_BROKEN;
    }
    t->counted = index->changes;
    t->recorded_since_count = 0;
    t->counter_known = 1;
    return TAILER_OK;
}

int tailer_scan(struct tailer *t, int64_t now_ms, struct tm_error *err)
{
    if (files_replaced(t, err))
        return TAILER_BROKEN;
    struct wal_header fresh;
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found < 0)
        return -1;
    struct wal_index_state index;
    int index_ok = read_index(t, &index, err);
    if (index_ok < 0)
        return -1;
    if (index_ok)
        add_sighting(t, index.changes, now_ms);
    if (now_ms > t->last_commit_ms)
        t->last_commit_ms = now_ms;
    if (t->switching) {
        if (t->pending_count)
            return TAILER_OK;   /* the old WAL's tail is shipped first */
        finish_switch(t, found ? &fresh : NULL);
    }
    if (!found) {
        int status = index_ok ? follow_empty_wal(t, &index, err) : TAILER_OK;
        if (status != TAILER_OK)
            return status;
        if (t->pending_count > 0 && !t->counter_known) {
            tm_error_set(err, "WAL was emptied while %zu commit(s) were not yet shipped",
                         t->pending_count);
            return TAILER_BROKEN;
        }
        if (!t->have_header)
            t->restart_unsafe = !pin_safe(&t->pin);
        return TAILER_OK;   /* truncated after a full checkpoint; wait */
    }
    int status = follow_new_header(t, &fresh, err);
    if (status != TAILER_OK || t->switching)
        return status;
    if (now_ms > t->last_commit_ms)
        t->last_commit_ms = now_ms;
    int same_wal = index_ok && index.salt1 == t->hdr.salt1 && index.salt2 == t->hdr.salt2;
    uint32_t limit = same_wal ? index.max_frame : 0;
    if (limit > t->index_max_seen)
        t->index_max_seen = limit;
    struct wal_position last;
    if (limit > t->scanned.frame &&
        wal_scan(t->wal_fd, &t->hdr, &t->scanned, limit, record_commit, t, &last, err) != 0)
        return -1;
    if (limit > t->scanned.frame)
        t->scanned = last;
    if (same_wal && t->scanned.frame == index.max_frame && check_commit_count(t, &index, err) != TAILER_OK)
        return TAILER_BROKEN;
    t->restart_unsafe = !pin_safe(&t->pin);
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
    t->index_max_seen = limit;
    t->pending_count = 0;
    t->pin.covers_shipped = t->pin.slot0 && pin_protects(t, &t->pin);
    return 1;
}

int tailer_restart_at_pin(struct tailer *t, struct tm_error *err)
{
    int rc = hand_over(t, 1, err);
    if (rc != TAILER_OK)
        return rc;
    t->pending_count = 0;
    if (t->pin.frame == 0) {   /* an empty WAL: whatever comes is after the pin */
        t->have_header = 0;
        memset(&t->shipped, 0, sizeof t->shipped);
        t->scanned = t->shipped;
        t->index_max_seen = 0;
        t->pin.covers_shipped = t->pin.slot0;
        t->restart_unsafe = !pin_safe(&t->pin);
        return TAILER_OK;
    }
    struct wal_header fresh;
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found < 0)
        return -1;
    if (!found || fresh.salt1 != t->pin.salt1 || fresh.salt2 != t->pin.salt2)
        return TAILER_LATER;   /* the WAL file lags the wal-index: a restart under way */
    if (fresh.page_size != t->page_size)
        return tm_error_set(err, "WAL page size %u differs from the database's %u", fresh.page_size,
                            t->page_size);
    struct wal_position start = wal_position_start(&fresh), last;
    if (wal_scan(t->wal_fd, &fresh, &start, t->pin.frame, NULL, NULL, &last, err) != 0)
        return -1;
    if (last.frame != t->pin.frame)
        return tm_error_set(err, "the WAL of '%s' does not hold the committed frames 1-%u the wal-index "
                            "publishes", t->db_path, t->pin.frame);
    t->hdr = fresh;
    t->have_header = 1;
    t->shipped = t->scanned = last;
    t->index_max_seen = last.frame;
    t->pin.covers_shipped = t->pin.slot0;
    t->restart_unsafe = !pin_safe(&t->pin);
    return TAILER_OK;
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
    if (!t->pending_count && !t->switching && t->tail) {   /* a detached tail is shipped */
        free(t->tail);
        t->tail = NULL;
        t->tail_cap = 0;
        t->tail_frames = 0;
    }
}

int tailer_read_frames(struct tailer *t, uint32_t first, uint32_t count, uint8_t *buf,
                       struct tm_error *err)
{
    size_t len = (size_t)count * (WAL_FRAME_HEADER_BYTES + t->hdr.page_size);
    if (t->tail && first >= t->tail_first && first - t->tail_first + count <= t->tail_frames) {
        memcpy(buf, t->tail + (size_t)(first - t->tail_first) * (WAL_FRAME_HEADER_BYTES + t->hdr.page_size), len);
        return 0;
    }
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

/* Whether the pin's snapshot is in the WAL followed (or both are "no WAL"). */
static int pin_in_followed_wal(const struct tailer *t)
{
    if (!t->pin.known)
        return 0;
    if (!t->have_header)
        return t->pin.frame == 0;
    return t->pin.salt1 == t->hdr.salt1 && t->pin.salt2 == t->hdr.salt2;
}

size_t tailer_pending_through_pin(const struct tailer *t, int *exact)
{
    *exact = 0;
    if (!pin_in_followed_wal(t) || t->pin.frame < t->shipped.frame)
        return 0;
    if (t->pin.frame == t->shipped.frame) {
        *exact = 1;
        return 0;
    }
    for (size_t i = 0; i < t->pending_count; i++) {
        if (t->pending[i].end.frame == t->pin.frame) {
            *exact = 1;
            return i + 1;
        }
        if (t->pending[i].end.frame > t->pin.frame)
            break;
    }
    return 0;
}

int tailer_pin_at_shipped(const struct tailer *t)
{
    return pin_in_followed_wal(t) && t->pin.frame == t->shipped.frame;
}

/* ---------------------------------------------- checkpoints and release */

static int passive_checkpoint(struct tailer *t)
{
    int spare = t->pin.conn == 0 ? 1 : 0, log_frames = 0, backfilled = 0;
    int rc = sqlite3_wal_checkpoint_v2(t->conn[spare], "main", SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                       &backfilled);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        log_warn("checkpoint of '%s' failed: %s", t->db_path, sqlite3_errmsg(t->conn[spare]));
    else
        log_debug("checkpoint of '%s': %d of %d frames backfilled", t->db_path, backfilled, log_frames);
    return rc;
}

/* Whether the wal-index shows the WAL followed wholly backfilled and
 * shipped, nothing pending. */
static int wholly_backfilled_and_shipped(struct tailer *t, struct tm_error *err)
{
    struct wal_index_state index;
    if (t->pending_count || read_index(t, &index, err) != 1 || index.backfilled != index.max_frame)
        return 0;
    if (!t->have_header)
        return index.max_frame == 0;
    return index.salt1 == t->hdr.salt1 && index.salt2 == t->hdr.salt2 && index.max_frame == t->shipped.frame;
}

int tailer_restartable(struct tailer *t)
{
    struct tm_error ignored;
    return t->pin.conn >= 0 && t->pin.known && t->pin.slot0 && wholly_backfilled_and_shipped(t, &ignored);
}

int tailer_checkpoint(struct tailer *t, int *restartable, struct tm_error *err)
{
    *restartable = 0;
    if (t->pin.known && t->pin.slot0 && wholly_backfilled_and_shipped(t, err)) {
        *restartable = 1;   /* nothing to do: already where the WAL can restart */
        return 0;
    }
    int rc = tailer_advance_pin(t, err);
    if (rc != TAILER_OK)
        return rc;
    passive_checkpoint(t);
    if (!wholly_backfilled_and_shipped(t, err))
        return 0;
    rc = tailer_advance_pin(t, err);   /* onto slot 0 */
    if (rc < 0)
        return -1;
    *restartable = rc == TAILER_OK && t->pin.slot0;
    return 0;
}

int tailer_release(struct tailer *t, int *clean, struct tm_error *err)
{
    *clean = 0;
    if (t->pending_count > 0)
        return tm_error_set(err, "internal: release needs nothing pending");
    int restartable;
    if (tailer_checkpoint(t, &restartable, err) < 0)
        return -1;
    if (!restartable || !t->pin.slot0 || other_reader_on_wal(t) || !wholly_backfilled_and_shipped(t, err)) {
        struct wal_index_state index;
        int index_ok = read_index(t, &index, err);
        log_debug("'%s' not released (restartable %d, pin slot 0 %d known %d, wal-index %d: %u of %u frames "
                  "backfilled; shipped %u, pending %zu, another reader %d)", t->db_path, restartable, t->pin.slot0,
                  t->pin.known, index_ok, index_ok == 1 ? index.backfilled : 0, index_ok == 1 ? index.max_frame : 0,
                  t->shipped.frame, t->pending_count, other_reader_on_wal(t));
        return 0;
    }
    /* From here every new reader takes slot 0, and the next writer must
     * restart the WAL (no reader holds a slot 1..4 to stop it). */
    end_read(t, t->pin.conn);
    t->pin.conn = -1;
    t->pin.known = 0;
    *clean = 1;
    return 0;
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
        if (found) {
            follow_from_start(t, &fresh);
        } else {
            t->have_header = 0;
            memset(&t->shipped, 0, sizeof t->shipped);
            t->scanned = t->shipped;
            t->index_max_seen = 0;
        }
        return 1;
    }
    /* One restart since the release, from the state shipped (tailer.h) */
    if (!found || fresh.salt1 != released->salt1 + 1 || fresh.checkpoint_seq != released->checkpoint_seq + 1 ||
        fresh.page_size != page_size)
        return 0;
    follow_from_start(t, &fresh);
    return 1;
}

int tailer_snapshot(struct tailer *t, const char *path, uint32_t *page_count,
                    int (*keep_going)(void *arg), void *arg, struct tm_error *err)
{
    if (t->pin.conn < 0)
        return tm_error_set(err, "internal: snapshot of '%s' without a pin", t->db_path);
    sqlite3 *dest = NULL;
    unlink(path);
    if (sqlite3_open_v2(path, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        sql_fail(err, dest, "cannot create snapshot file", path);
        sqlite3_close(dest);
        return -1;
    }
    sqlite3_exec(dest, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", NULL, NULL, NULL);
    sqlite3_backup *backup = sqlite3_backup_init(dest, "main", t->conn[t->pin.conn], "main");
    if (!backup) {
        sql_fail(err, dest, "cannot start backup", path);
        sqlite3_close(dest);
        return -1;
    }
    /* in steps, so that an application checkpoint waiting for the pin
     * can make the copy give way (it is tried again later) */
    int rc = SQLITE_OK, gave_way = 0;
    while ((rc = sqlite3_backup_step(backup, SNAPSHOT_STEP_PAGES)) == SQLITE_OK) {
        if (keep_going && !keep_going(arg)) {
            gave_way = 1;
            break;
        }
    }
    int pages = sqlite3_backup_pagecount(backup);
    sqlite3_backup_finish(backup);
    sqlite3_close(dest);
    if (gave_way || rc != SQLITE_DONE) {
        unlink(path);
        if (gave_way)
            return tm_error_set(err, "snapshot of '%s' gave way to the application's checkpoint", t->db_path),
                   TAILER_LATER;
        return tm_error_set(err, "snapshot of '%s' failed: %s", t->db_path, sqlite3_errstr(rc));
    }
    *page_count = (uint32_t)pages;
    return 0;
}
