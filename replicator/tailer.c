/* tailer.c - following a live SQLite WAL, with nothing written to the
 * database and the write lock never taken.
 *
 * FILES
 *
 * This file: opening the database, scanning the WAL for commits and
 * stamping them, positioning the tailer (resuming an archive, a new
 * generation), the frames and commits handed to the shipper, snapshots.
 * tailer_pin.c: the pin (the handover between the two connections, its
 * read-mark slot, unpinning), the application's locks, checkpoints and
 * release. tailer_restart.c: WAL restarts (the old WAL's tail read into
 * memory, the commit counter's proof, following a new or emptied WAL),
 * tailer_detach, resuming after a release. tailer_guard.c: the thread
 * that holds a WAL restarted while the pin is let go. tailer_watch.c:
 * the thread that notes the commit counter while the application writes.
 * tailer_copy.c:
 * snapshots from the files. tailer_turso.c, tailer_ahead.c: the Turso
 * engine's route. tailer_internal.h holds struct tailer and what the
 * files share.
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
 * Getting out of the application's way (replicator/pin.c drives it):
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
 *    itself: those restart it, and the pin only moves). Once restarted,
 *    the new WAL is held by the guard's read transaction until the pin
 *    is taken again (tailer_guard.c), so that a loop that comes back
 *    late does not find it restarted again over frames not read.
 *  - Once a tick (and a second) passed without a commit, the daemon runs a PASSIVE
 *    checkpoint (it never waits and never blocks a writer) and, the WAL
 *    being wholly backfilled, moves the pin onto slot 0, where no
 *    checkpoint waits for it and the next writer restarts the WAL.
 *  - When nothing can be shipped for a while (a snapshot being written),
 *    the pending frames can be read into memory (tailer_detach), so that
 *    the pin can be let go all the same.
 *
 * Every connection (the two, and the guard's) disables checkpoint-on-close
 * and keeps the WAL file on close (SQLITE_FCNTL_PERSIST_WAL), so stopping
 * the sidecar never deletes the WAL it will want to resume from. */
#include "tailer_internal.h"
#include "reader_vfs.h"
#include "../common/clock.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A read transaction's BEGIN waits at most this long (only a recovery of
 * the wal-index by another process makes it wait at all). */
#define READ_BUSY_TIMEOUT_MS 250
/* Pages a snapshot copies between two looks at the application's locks. */
#define SNAPSHOT_STEP_PAGES 256

int tailer_sql_fail(struct tm_error *err, sqlite3 *db, const char *what, const char *path)
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
    if (header[18] == 255 || header[19] == 255) {
        tm_error_setc(err, TM_ERR_REFUSED, "database '%s' is in the Turso engine's MVCC journal mode (file format "
                      "version 255): tidemark cannot follow it", path);
        return tm_error_hint(err, "open it without MVCC (the engine's default WAL journal mode, with experimental: "
                             "['multiprocess_wal'] so that the sidecar can share it); see docs/runbook.md, "
                             "\"Other engines beside the sidecar\"");
    }
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

int tailer_open_connection(const char *path, int busy_timeout_ms, sqlite3 **out, struct tm_error *err)
{
    sqlite3 *db = NULL;
    /* reader_vfs.h: never the application's write lock */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, reader_vfs_name()) != SQLITE_OK) {
        tailer_sql_fail(err, db, "cannot open database", path);
        sqlite3_close(db);
        return -1;
    }
    int on = 1;
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
    sqlite3_busy_timeout(db, busy_timeout_ms);
    *out = db;
    return 0;
}

/* tailer_open's step: the two read connections, each with the statement
 * that makes its read transaction hold a snapshot. 0 or -1. */
static int open_connections(struct tailer *t, const char *db_path, struct tm_error *err)
{
    for (int i = 0; i < 2; i++) {
        if (tailer_open_connection(db_path, READ_BUSY_TIMEOUT_MS, &t->conn[i], err) != 0)
            return -1;
        if (sqlite3_prepare_v2(t->conn[i], TAILER_READ_SQL, -1, &t->pin_stmt[i],
                               NULL) != SQLITE_OK) {
            tailer_sql_fail(err, t->conn[i], "cannot prepare", db_path);
            return -1;
        }
    }
    return 0;
}

/* tailer_open's step, once a read transaction opened them: the WAL and
 * the wal-index for reading, and which files they and the database are
 * (files_replaced). 0 or -1. */
static int open_wal_files(struct tailer *t, const char *db_path, struct tm_error *err)
{
    t->wal_fd = open(t->wal_path, O_RDONLY | O_CLOEXEC);
    if (t->wal_fd < 0) {
        tm_error_set(err, "cannot open WAL '%s': %s", t->wal_path, strerror(errno));
        return -1;
    }
    char shm_path[PATH_MAX];
    snprintf(shm_path, sizeof shm_path, "%s-shm", db_path);
    t->shm_fd = open(shm_path, O_RDONLY | O_CLOEXEC);
    if (t->shm_fd < 0) {
        tm_error_set(err, "cannot open the wal-index '%s': %s", shm_path, strerror(errno));
        tm_error_hint(err, "the database must use shared-memory WAL (not locking_mode=EXCLUSIVE)");
        return -1;
    }
    if (fstat(t->wal_fd, &t->wal_stat) != 0 || stat(db_path, &t->db_stat) != 0) {
        tm_error_set(err, "cannot stat '%s': %s", db_path, strerror(errno));
        return -1;
    }
    return 0;
}

int tailer_pick_route(const char *db_path, enum tailer_engine engine, int *turso, struct tm_error *err)
{
    *turso = engine == TAILER_ENGINE_TURSO;
    if (engine != TAILER_ENGINE_AUTO)
        return 0;
    char tshm_path[PATH_MAX], shm_path[PATH_MAX];
    snprintf(tshm_path, sizeof tshm_path, "%s-tshm", db_path);
    snprintf(shm_path, sizeof shm_path, "%s-shm", db_path);
    int live;
    int is_tshm = tshm_identify(tshm_path, &live, err);
    if (is_tshm < 0)
        return -1;
    /* a coordination file that an engine process has open, or with no
     * SQLite wal-index beside it: the Turso engine writes this database */
    *turso = is_tshm && (live || access(shm_path, F_OK) != 0);
    return 0;
}

int tailer_is_turso(const struct tailer *t) { return t->coord != NULL; }

int tailer_open(const char *db_path, enum tailer_engine engine, struct tailer **out, struct tm_error *err)
{
    int turso;
    if (tailer_pick_route(db_path, engine, &turso, err) != 0)
        return -1;
    struct tailer *t = calloc(1, sizeof *t);
    if (!t)
        return tm_error_set(err, "out of memory");
    t->wal_fd = t->shm_fd = t->db_fd = -1;
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
    t->db_fd = open(db_path, O_RDONLY | O_CLOEXEC);
    if (t->db_fd < 0) {
        tm_error_set(err, "cannot open database '%s': %s", db_path, strerror(errno));
        goto fail;
    }
    if (turso) {
        if (tailer_turso_open(t, err) != 0)
            goto fail;
        *out = t;
        return 0;
    }
    if (open_connections(t, db_path, err) != 0)
        goto fail;
    /* The first read transaction opens (creates if needed) the WAL and
     * the wal-index; the pin is taken once more when the index is open,
     * so that its place is known. */
    if (tailer_begin_read(t, 0, err) != 0)
        goto fail;
    t->pin.conn = 0;
    if (open_wal_files(t, db_path, err) != 0 || tailer_guard_start(t, err) != 0 || tailer_watch_start(t, err) != 0)
        goto fail;
    struct pin first;
    if (tailer_take_pin(t, 1, 1, &first, err) != 0)
        goto fail;
    tailer_end_read(t, 0);
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
    tailer_watch_free(t);   /* first: their threads read the tailer's descriptors */
    tailer_guard_free(t);
    tailer_turso_free(t);
    for (int i = 0; i < 2; i++) {
        if (t->conn[i] && !sqlite3_get_autocommit(t->conn[i]))
            sqlite3_exec(t->conn[i], "COMMIT", NULL, NULL, NULL);
        sqlite3_finalize(t->pin_stmt[i]);
        sqlite3_close(t->conn[i]);
    }
    if (t->wal_fd >= 0)
        close(t->wal_fd);
    if (t->db_fd >= 0)
        close(t->db_fd);
    if (t->shm_fd >= 0)
        close(t->shm_fd);
    free(t->pending);
    free(t->tail);
    free(t->db_path);
    free(t->wal_path);
    free(t);
}

/* ----------------------------------------------------------- scanning */

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

/* The sightings the watch noted while the loop was away (tailer_watch.c),
 * before the scan's own: each was noted after its counter was read, so
 * it is never before the commits it counts. */
static void take_watched_sightings(struct tailer *t)
{
    struct sighting taken[64];
    size_t count;
    while ((count = tailer_watch_take(t, taken, sizeof taken / sizeof *taken)) > 0)
        for (size_t i = 0; i < count; i++)
            add_sighting(t, taken[i].changes, taken[i].ms);
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

int tailer_record_commit(void *ctx, const struct wal_position *end, uint32_t db_size,
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

/* The last frame of `hdr`'s WAL that the wal-index publishes as
 * committed; 0 when the index is being rewritten or describes another WAL
 * (a restart in progress): nothing new counts as committed yet. */
static int committed_limit(struct tailer *t, const struct wal_header *hdr, uint32_t *limit,
                           struct tm_error *err)
{
    struct wal_index_state index;
    *limit = 0;
    int rc = tailer_read_index(t, &index, err);
    if (rc < 0)
        return -1;
    if (rc == 1 && index.salt1 == hdr->salt1 && index.salt2 == hdr->salt2)
        *limit = index.max_frame;
    return 0;
}

/* tailer_scan when the WAL file is empty or missing (truncated after a
 * full checkpoint): follow the emptied WAL and wait. */
static int scan_without_wal(struct tailer *t, const struct wal_index_state *index, struct tm_error *err)
{
    int status = index ? tailer_follow_empty_wal(t, index, err) : TAILER_OK;
    if (status != TAILER_OK)
        return status;
    if (t->pending_count > 0 && !t->counter_known) {
        tm_error_set(err, "WAL was emptied while %zu commit(s) were not yet shipped", t->pending_count);
        return TAILER_BROKEN;
    }
    if (!t->have_header)
        t->restart_unsafe = !tailer_pin_safe(&t->pin);
    return TAILER_OK;
}

int tailer_scan(struct tailer *t, struct tm_error *err)
{
    if (files_replaced(t, err))
        return TAILER_BROKEN;
    if (t->coord && tailer_turso_check(t, err) != TAILER_OK)
        return TAILER_BROKEN;
    struct wal_header fresh;
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found < 0)
        return -1;
    struct wal_index_state index;
    int index_ok = tailer_read_index(t, &index, err);
    if (index_ok < 0)
        return -1;
    /* The scan's time is read once the wal-index is: every commit it
     * adopts (up to the index's end) or counts existed by then. A time
     * read before the index could precede a commit made in between
     * (bench/stamp_bound.py's flood saw stamps 1 ms before BEGIN). And
     * before anything is recorded: commits adopted below were made since
     * the last scan, so its time would stamp them before they existed. */
    int64_t now_ms = clock_now_ms();
    take_watched_sightings(t);
    if (index_ok)
        add_sighting(t, index.changes, now_ms);
    if (now_ms > t->last_commit_ms)
        t->last_commit_ms = now_ms;
    if (t->coord && index_ok && !t->switching &&
        (t->have_header ? index.salt1 != t->hdr.salt1 || index.salt2 != t->hdr.salt2 : tailer_ahead_has_runs(t))) {
        /* the Turso route: the WAL followed is gone, maybe with frames
         * read ahead of it and of WALs gone since (tailer_ahead.c) */
        if (tailer_ahead_adopt(t, err) != 0)
            return -1;
        if (!t->have_header && tailer_ahead_follow_next(t, found ? &fresh : NULL, err) < 0)
            return -1;
    }
    if (t->switching) {
        if (t->pending_count)
            return TAILER_OK;   /* the old WAL's tail is shipped first */
        if (tailer_finish_switch(t, found ? &fresh : NULL, err) != 0)
            return -1;
        if (t->switching)
            return TAILER_OK;   /* a WAL gone since, followed from memory: shipped first */
    }
    if (!found)
        return scan_without_wal(t, index_ok ? &index : NULL, err);
    int status = tailer_follow_new_header(t, &fresh, err);
    if (status != TAILER_OK || t->switching)
        return status;
    int same_wal = index_ok && index.salt1 == t->hdr.salt1 && index.salt2 == t->hdr.salt2;
    uint32_t limit = same_wal ? index.max_frame : 0;
    if (limit > t->index_max_seen)
        t->index_max_seen = limit;
    struct wal_position last;
    if (limit > t->scanned.frame &&
        wal_scan(t->wal_fd, &t->hdr, &t->scanned, limit, tailer_record_commit, t, &last, err) != 0)
        return -1;
    if (limit > t->scanned.frame)
        t->scanned = last;
    if (same_wal && t->scanned.frame == index.max_frame && tailer_check_commit_count(t, &index, err) != TAILER_OK)
        return TAILER_BROKEN;
    t->restart_unsafe = !tailer_pin_safe(&t->pin);
    return TAILER_OK;
}

/* -------------------------------------------------------- positioning */

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
    t->pin.covers_shipped = t->pin.slot0 && tailer_pin_protects(t, &t->pin);
    return 1;
}

int tailer_restart_at_pin(struct tailer *t, struct tm_error *err)
{
    int rc = tailer_hand_over(t, 1, err);
    if (rc != TAILER_OK)
        return rc;
    t->pending_count = 0;
    if (t->pin.frame == 0) {   /* an empty WAL: whatever comes is after the pin */
        t->have_header = 0;
        memset(&t->shipped, 0, sizeof t->shipped);
        t->scanned = t->shipped;
        t->index_max_seen = 0;
        t->pin.covers_shipped = t->pin.slot0;
        t->restart_unsafe = !tailer_pin_safe(&t->pin);
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
    t->restart_unsafe = !tailer_pin_safe(&t->pin);
    return TAILER_OK;
}

/* ----------------------------------------------------------- shipping */

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
    struct wal_position before = t->shipped;
    t->shipped = t->pending[count - 1].end;
    /* frames in memory (a detached or recovered tail) that are now
     * shipped leave it, so that it still holds exactly what is pending:
     * between a partial ship and the next look, nothing must depend on
     * the WAL file still holding them */
    uint32_t shipped_frames = t->shipped.frame - before.frame;
    if (t->tail && t->tail_first == before.frame + 1 && shipped_frames < t->tail_frames &&
        t->shipped.salt1 == before.salt1 && t->shipped.salt2 == before.salt2) {
        size_t frame_bytes = WAL_FRAME_HEADER_BYTES + t->hdr.page_size;
        memmove(t->tail, t->tail + (size_t)shipped_frames * frame_bytes,
                (size_t)(t->tail_frames - shipped_frames) * frame_bytes);
        t->tail_first += shipped_frames;
        t->tail_frames -= shipped_frames;
    }
    memmove(t->pending, t->pending + count, (t->pending_count - count) * sizeof *t->pending);
    t->pending_count -= count;
    if (!t->pending_count && !t->switching && t->tail) {   /* a detached tail is shipped */
        free(t->tail);
        t->tail = NULL;
        t->tail_cap = 0;
        t->tail_frames = 0;
    }
}

int tailer_read_exactly(int fd, uint8_t *buf, size_t len, off_t offset, const char *path, struct tm_error *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t got = pread(fd, buf + done, len - done, offset + (off_t)done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got < 0 ? tm_error_set(err, "cannot read '%s': %s", path, strerror(errno)) : 0;
        done += (size_t)got;
    }
    return 1;
}

int tailer_read_frames(struct tailer *t, uint32_t first, uint32_t count, uint8_t *buf,
                       struct tm_error *err)
{
    size_t len = (size_t)count * (WAL_FRAME_HEADER_BYTES + t->hdr.page_size);
    if (t->tail && first >= t->tail_first && first - t->tail_first + count <= t->tail_frames) {
        memcpy(buf, t->tail + (size_t)(first - t->tail_first) * (WAL_FRAME_HEADER_BYTES + t->hdr.page_size), len);
        return 0;
    }
    int got = tailer_read_exactly(t->wal_fd, buf, len, (off_t)wal_frame_offset(&t->hdr, first), t->wal_path, err);
    if (got == 0) {
        tm_error_set(err, "frames %u-%u of '%s' are no longer in the file (it shrank since the scan)", first,
                     first + count - 1, t->wal_path);
        return TAILER_LATER;
    }
    return got == 1 ? 0 : -1;
}

const struct wal_header *tailer_header(const struct tailer *t)
{
    return t->have_header ? &t->hdr : NULL;
}

uint32_t tailer_page_size(const struct tailer *t) { return t->page_size; }

int tailer_wal_index_fd(const struct tailer *t) { return t->shm_fd; }

/* ----------------------------------------------------------- snapshot */

/* Whether the pin's place is known well enough to copy its image from
 * the files (tailer_copy.c): its read mark told apart, and unless on mark
 * 0 or before any frame, in the WAL followed. */
static int pin_copyable(const struct tailer *t)
{
    if (!t->pin.known || t->pin.maybe_slot0)
        return 0;
    if (t->pin.slot0 || t->pin.frame == 0)
        return 1;
    return t->have_header && t->pin.salt1 == t->hdr.salt1 && t->pin.salt2 == t->hdr.salt2;
}

/* The copy through SQLite's backup API, for a pin whose place is not
 * known exactly: slower (its pager), but reads whatever the read
 * transaction sees. */
static int backup_api_copy(struct tailer *t, const char *path, uint32_t *page_count,
                           int (*keep_going)(void *arg), void *arg, struct tm_error *err)
{
    sqlite3 *dest = NULL;
    unlink(path);
    if (sqlite3_open_v2(path, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        tailer_sql_fail(err, dest, "cannot create snapshot file", path);
        sqlite3_close(dest);
        return -1;
    }
    sqlite3_exec(dest, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", NULL, NULL, NULL);
    sqlite3_backup *backup = sqlite3_backup_init(dest, "main", t->conn[t->pin.conn], "main");
    if (!backup) {
        tailer_sql_fail(err, dest, "cannot start backup", path);
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

int tailer_snapshot(struct tailer *t, const char *path, uint32_t *page_count,
                    int (*keep_going)(void *arg), void *arg, struct tm_error *err)
{
    if (t->pin.conn < 0)
        return tm_error_set(err, "internal: snapshot of '%s' without a pin", t->db_path);
    if (t->coord)   /* the engine never waits for the pin: nothing to give way to */
        return tailer_turso_snapshot(t, path, page_count, err);
    if (!pin_copyable(t))
        return backup_api_copy(t, path, page_count, keep_going, arg, err);
    int from_wal = !t->pin.slot0 && t->pin.frame > 0;
    return tailer_copy_pages(t, path, from_wal, page_count, keep_going, arg, err);
}
