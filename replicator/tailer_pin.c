/* tailer_pin.c - the tailer's pin: the read transaction, held at every
 * instant by one of the two connections, that keeps SQLite from
 * overwriting frames not shipped yet. Taking it (its frame and read-mark
 * slot read from the wal-index before and after it begins), handing it
 * over when it moves, letting go of it (tailer_unpin), where it stands
 * against what is shipped, the application's locks (whether a checkpoint
 * waits for the pin), and the checkpoint and release of an idle
 * database. Why a pin is safe or not: the DESIGN comment in tailer.c;
 * when the daemon moves it or lets go of it: pin.c. */
#include "tailer_internal.h"

#include "../common/log.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <string.h>

/* Attempts at reading a new pin's position exactly (commits arriving
 * between the two reads of the wal-index make an attempt inexact). */
#define PIN_ATTEMPTS 32
/* The wal-index's lock bytes (SQLite's unix VFS: offset 120 + index). */
#define SHM_LOCK_WRITE 120
#define SHM_LOCK_CKPT 121
#define SHM_LOCK_READ1 124
#define SHM_READERS_AFTER_0 4

/* ------------------------------------------------------------ the pin */

int tailer_read_txn_begin(sqlite3 *db, sqlite3_stmt *read_stmt)
{
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(read_stmt);
    sqlite3_reset(read_stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -2;
    }
    return 0;
}

int tailer_begin_read(struct tailer *t, int conn, struct tm_error *err)
{
    if (t->coord)
        return tm_error_set(err, "internal: no read transaction on the Turso route");
    int rc = tailer_read_txn_begin(t->conn[conn], t->pin_stmt[conn]);
    if (rc != 0)
        return tailer_sql_fail(err, t->conn[conn], rc == -1 ? "cannot begin read transaction" : "cannot read",
                               t->db_path);
    return 0;
}

void tailer_end_read(struct tailer *t, int conn)
{
    if (t->coord) {   /* the reader slot */
        if (conn >= 0 && tshm_pinned(t->coord)) {
            log_debug("'%s': reader slot let go (shipped %u, scanned %u, pending %zu, in memory %d)", t->db_path,
                      t->shipped.frame, t->scanned.frame, t->pending_count, tailer_tail_covers_pending(t));
            tshm_unpin(t->coord);
        }
        return;
    }
    if (conn >= 0 && !sqlite3_get_autocommit(t->conn[conn]))
        sqlite3_exec(t->conn[conn], "COMMIT", NULL, NULL, NULL);
}

/* The wal-index header and nBackfill: 1 when consistent, 0 when being
 * rewritten (after a few attempts), -1 on I/O errors. */
int tailer_read_index(struct tailer *t, struct wal_index_state *index, struct tm_error *err)
{
    if (t->coord)
        return tailer_turso_read_index(t, index, err);
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
int tailer_take_pin(struct tailer *t, int conn, int keep_inexact, struct pin *out, struct tm_error *err)
{
    for (int attempt = 1;; attempt++) {
        struct wal_index_state before, after;
        int before_ok = tailer_read_index(t, &before, err);
        if (before_ok < 0 || tailer_begin_read(t, conn, err) != 0)
            return -1;
        int after_ok = tailer_read_index(t, &after, err);
        if (after_ok < 0) {
            tailer_end_read(t, conn);
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
            tailer_end_read(t, conn);
            return TAILER_LATER;
        }
        tailer_end_read(t, conn);
    }
}

/* Whether a pin at `p` keeps everything not yet shipped safe: a slot
 * 1..4 does; slot 0 only if everything up to its frame is shipped. */
int tailer_pin_protects(const struct tailer *t, const struct pin *p)
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
           (p->frame == t->scanned.frame && tailer_tail_covers_pending(t));
}

/* Whether no WAL restart can discard a frame not shipped while pin `p`
 * is held: on a slot 1..4 no restart happens at all; on slot 0, taken
 * with everything up to its frame shipped, only that WAL's one restart
 * (of frames shipped) and restarts of empty WALs can. */
int tailer_pin_safe(const struct pin *p)
{
    return p->known && (!p->maybe_slot0 || p->covers_shipped);
}

/* Hands the pin over to the other connection if the new place is safe
 * (or `any` place, for a new generation). */
int tailer_hand_over(struct tailer *t, int any, struct tm_error *err)
{
    if (t->coord) {   /* one slot, moved in place: it keeps every frame from a restart */
        struct pin moved;
        if (tailer_turso_take_pin(t, &moved, err) != 0)
            return -1;
        t->pin = moved;
        t->restart_unsafe |= !tailer_pin_safe(&t->pin);
        return TAILER_OK;
    }
    int next = t->pin.conn == 0 ? 1 : 0;
    struct pin fresh;
    int rc = tailer_take_pin(t, next, 0, &fresh, err);
    if (rc != 0)
        return rc;
    if (!any && !tailer_pin_protects(t, &fresh)) {
        tailer_end_read(t, next);
        return TAILER_LATER;
    }
    tailer_end_read(t, t->pin.conn);
    fresh.covers_shipped = fresh.slot0 && tailer_pin_protects(t, &fresh);
    log_debug("pin on connection %d: salt-1 %u frame %u slot0 %d maybe %d covers %d (shipped %u pending %zu)",
              fresh.conn, fresh.salt1, fresh.frame, fresh.slot0, fresh.maybe_slot0, fresh.covers_shipped,
              t->shipped.frame, t->pending_count);
    t->pin = fresh;
    tailer_guard_disarm(t);
    t->restart_unsafe |= !tailer_pin_safe(&t->pin);
    return TAILER_OK;
}

int tailer_unpin(struct tailer *t)
{
    if (t->pin.conn < 0)
        return TAILER_OK;
    if ((t->pending_count && !tailer_tail_covers_pending(t)) || !t->counter_known || t->switching)
        return TAILER_LATER;
    tailer_end_read(t, t->pin.conn);
    t->pin.conn = -1;
    t->pin.known = 0;
    tailer_guard_arm(t);   /* until it is held again, a restarted WAL is held by the guard */
    return TAILER_OK;
}

int tailer_pinned(const struct tailer *t) { return t->pin.conn >= 0; }

int tailer_needs_pin(const struct tailer *t) { return t->coord ? tailer_turso_needs_pin(t) : 1; }

int tailer_advance_pin(struct tailer *t, struct tm_error *err)
{
    return tailer_hand_over(t, 0, err);
}

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

/* -------------------------------------------- the application's locks */

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
    if (t->coord)
        return tshm_locked_by_other(t->coord, TSHM_LOCK_WRITER) || tshm_locked_by_other(t->coord, TSHM_LOCK_CHECKPOINTER);
    return shm_locked_by_other(t, SHM_LOCK_WRITE, 2);
}

int tailer_app_checkpointing(struct tailer *t)
{
    if (t->coord)
        return tshm_locked_by_other(t->coord, TSHM_LOCK_CHECKPOINTER);
    return shm_locked_by_other(t, SHM_LOCK_CKPT, 1);
}

uint32_t tailer_backfill_behind(struct tailer *t)
{
    struct wal_index_state index;
    struct tm_error ignored;
    if (t->coord || tailer_read_index(t, &index, &ignored) != 1)
        return UINT32_MAX;
    return index.max_frame > index.backfilled ? index.max_frame - index.backfilled : 0;
}

int tailer_app_checkpoint_waits(struct tailer *t)
{
    if (t->coord)
        return tshm_locked_by_other(t->coord, TSHM_LOCK_CHECKPOINTER);
    /* CKPT, WRITE, CKPT again: a writer's autocheckpoint (CKPT) and its
     * next transaction (WRITE) one after the other seldom show as all
     * three; a checkpoint waiting in its busy handler holds both */
    return shm_locked_by_other(t, SHM_LOCK_CKPT, 1) && shm_locked_by_other(t, SHM_LOCK_WRITE, 1) &&
           shm_locked_by_other(t, SHM_LOCK_CKPT, 1);
}

int tailer_pin_in_the_way(struct tailer *t)
{
    if (t->coord)
        return tailer_turso_pin_in_the_way(t);
    if (t->pin.conn < 0 || !shm_locked_by_other(t, SHM_LOCK_CKPT, 1) || !shm_locked_by_other(t, SHM_LOCK_WRITE, 1))
        return 0;
    struct wal_index_state index;
    struct tm_error ignored;
    if (tailer_read_index(t, &index, &ignored) != 1 || !t->pin.known)
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

/* -------------------------------------------- checkpoints and release */

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
    if (t->pending_count || tailer_read_index(t, &index, err) != 1 || index.backfilled != index.max_frame)
        return 0;
    if (!t->have_header)
        return index.max_frame == 0;
    return index.salt1 == t->hdr.salt1 && index.salt2 == t->hdr.salt2 && index.max_frame == t->shipped.frame;
}

int tailer_restartable(struct tailer *t)
{
    if (t->coord)   /* the sidecar never checkpoints the engine's WAL */
        return 0;
    struct tm_error ignored;
    return t->pin.conn >= 0 && t->pin.known && t->pin.slot0 && wholly_backfilled_and_shipped(t, &ignored);
}

int tailer_checkpoint(struct tailer *t, int *restartable, struct tm_error *err)
{
    *restartable = 0;
    if (t->coord)   /* never: a checkpoint writes the database (the engine runs its own) */
        return 0;
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
    if (t->coord)   /* no clean release without a checkpoint of ours: kept open */
        return 0;
    int restartable;
    if (tailer_checkpoint(t, &restartable, err) < 0)
        return -1;
    if (!restartable || !t->pin.slot0 || other_reader_on_wal(t) || !wholly_backfilled_and_shipped(t, err)) {
        struct wal_index_state index;
        int index_ok = tailer_read_index(t, &index, err);
        log_debug("'%s' not released (restartable %d, pin slot 0 %d known %d, wal-index %d: %u of %u frames "
                  "backfilled; shipped %u, pending %zu, another reader %d)", t->db_path, restartable, t->pin.slot0,
                  t->pin.known, index_ok, index_ok == 1 ? index.backfilled : 0, index_ok == 1 ? index.max_frame : 0,
                  t->shipped.frame, t->pending_count, other_reader_on_wal(t));
        return 0;
    }
    /* From here every new reader takes slot 0, and the next writer must
     * restart the WAL (no reader holds a slot 1..4 to stop it). */
    tailer_end_read(t, t->pin.conn);
    t->pin.conn = -1;
    t->pin.known = 0;
    *clean = 1;
    return 0;
}
