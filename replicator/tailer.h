/* tailer.h - following one live SQLite database's WAL without ever
 * writing to it and without ever taking its write lock. Design and the
 * locking argument in tailer.c. */
#ifndef TM_TAILER_H
#define TM_TAILER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"
#include "wal.h"

/* One committed transaction seen in the WAL and not yet shipped. */
struct tailer_commit {
    struct wal_position end;   /* position after its commit frame */
    uint32_t db_size;          /* pages after the commit */
    int64_t time_ms;           /* wall clock when the tailer saw it */
};

enum tailer_status {
    TAILER_OK = 0,
    TAILER_BROKEN = 1,         /* continuity lost: start a new generation */
    TAILER_LATER = 2,          /* not possible right now (commits arriving, or a
                                  lock another process holds): try again at a later tick */
};

struct tailer;

/* Which engine writes the database, so which route follows it (a
 * database's `engine:`, the same order as the configuration's values). */
enum tailer_engine {
    TAILER_ENGINE_AUTO = 0,     /* the Turso route when a live DB-tshm is beside it (or no -shm is) */
    TAILER_ENGINE_SQLITE = 1,   /* SQLite and libSQL: the wal-index (-shm) */
    TAILER_ENGINE_TURSO = 2,    /* the Turso engine's multiprocess_wal mode: DB-tshm (tailer_turso.c) */
};

/* Which route `engine` means for the database at db_path now: *turso = 1
 * for the Turso route. 0, or -1 on I/O errors. */
int tailer_pick_route(const char *db_path, enum tailer_engine engine, int *turso, struct tm_error *err);

/* Opens the database (which must exist and be in WAL mode) for the route
 * `engine` picks. SQLite: the two read connections the tailer needs (one
 * holds the pin), and the WAL and wal-index files for reading. Turso: the
 * WAL and the engine's coordination file, where the pin is a reader slot;
 * the database is never opened through libsqlite3 (which could checkpoint
 * and delete the WAL under the engine). Nothing is written to the
 * database or the WAL and no write lock is ever taken. */
int tailer_open(const char *db_path, enum tailer_engine engine, struct tailer **out, struct tm_error *err);
/* Whether the tailer follows the Turso route. */
int tailer_is_turso(const struct tailer *t);
void tailer_close(struct tailer *t);

/* Whether db_path is a SQLite database in WAL mode (the header only: no
 * connection is opened); err says what it is not. */
int tailer_check_file(const char *db_path, struct tm_error *err);

/* Reads the WAL from the last commit seen, recording every new commit
 * with time max(the clock once the wal-index is read, previous commit
 * time), or the earlier time its commit counter was first seen there.
 * Returns TAILER_OK,
 * TAILER_BROKEN with err saying why continuity was lost (WAL restarted
 * over commits not yet read, restarts missed, page size changed, WAL or
 * database file replaced), or -1 on I/O errors. */
int tailer_scan(struct tailer *t, struct tm_error *err);

/* The application is writing: for the next second, a thread of the
 * tailer's notes every millisecond when the commit counter moves, so that
 * commits made while the caller is busy elsewhere are stamped when they
 * were made (tailer_watch.c; the SQLite route only). */
void tailer_watch_writes(struct tailer *t);

/* Whether the WAL at `pos` is the one the archive ended on: same salts,
 * page size, and the checksum chain from frame 1 reaches pos exactly on a
 * commit frame. If so, the tailer continues from there (1); otherwise 0. */
int tailer_resume_at(struct tailer *t, const struct wal_position *pos, uint32_t page_size,
                     struct tm_error *err);

/* For a new generation: moves the pin to the WAL's end and positions the
 * tailer exactly where the pin's snapshot stands, so that a snapshot
 * (tailer_snapshot) and the commits scanned after it join without a gap.
 * TAILER_OK; TAILER_LATER when the pin's position could not be read
 * exactly (commits arriving at every attempt): try again; -1 on errors. */
int tailer_restart_at_pin(struct tailer *t, struct tm_error *err);

/* The Turso route: tells the read-ahead copy (tailer_ahead.c: a thread
 * that reads the frames the engine writes, published or not yet, on the
 * WAL's inotify events, so that a TRUNCATE checkpoint right after a commit
 * does not take them unread) where the tailer stands; reads the WAL here
 * only when that thread could not be started. The frames count as commits
 * only once proven. 0; the SQLite route: nothing. */
int tailer_read_ahead(struct tailer *t, struct tm_error *err);

/* Commits seen but not yet acknowledged; valid until the next call. */
const struct tailer_commit *tailer_pending(const struct tailer *t, size_t *count);
/* The WAL position everything before which is shipped. */
struct wal_position tailer_shipped(const struct tailer *t);
/* Mark the first `count` pending commits as shipped. */
void tailer_ack(struct tailer *t, size_t count);

/* Reads `count` consecutive frames (header + page each) of the current WAL
 * from frame `first` into buf (count x (WAL_FRAME_HEADER_BYTES + page
 * size) bytes): 0; TAILER_LATER when the file ends before them (it shrank
 * since the scan - the Turso engine truncates its WAL without waiting for
 * readers: scan again, which adopts what was read ahead or finds
 * continuity lost); -1 on I/O errors. */
int tailer_read_frames(struct tailer *t, uint32_t first, uint32_t count, uint8_t *buf,
                       struct tm_error *err);
const struct wal_header *tailer_header(const struct tailer *t);   /* NULL if no WAL yet */
/* The wal-index (-shm) file, open read-only: for lock queries (F_GETLK)
 * by the capture probe. Never close it (that would drop the tailer's
 * POSIX locks on the file). */
int tailer_wal_index_fd(const struct tailer *t);
uint32_t tailer_page_size(const struct tailer *t);

/* Moves the pin to the WAL's current end by handing it over between the
 * two connections: the new read transaction begins before the old one
 * ends, so some pin is held at every instant; nothing waits for the
 * application. TAILER_OK: moved. TAILER_LATER: kept where it was, because
 * the new place would not protect what is not shipped yet (ship, then
 * try again). -1 on errors (the old pin is kept). */
int tailer_advance_pin(struct tailer *t, struct tm_error *err);

/* Ends the pin, so that the application's next writer can restart the
 * WAL (once its checkpoint copied it all) and no checkpoint waits for the
 * sidecar. Only when nothing is pending and the wal-index's commit
 * counter is known: a restart while unpinned is then followed by reading
 * the old WAL's tail and proving with the counter that no commit was
 * missed (tailer_scan; TAILER_BROKEN if one was). TAILER_OK or
 * TAILER_LATER. tailer_advance_pin pins again. Until then, on the SQLite
 * route, a thread of the tailer's holds the WAL the writer restarted, so
 * that it does not restart again over frames not read (tailer_guard.c). */
int tailer_unpin(struct tailer *t);
/* How many times that thread has held a restarted WAL (for the log). */
uint64_t tailer_guard_holds(const struct tailer *t);

/* Reads every pending frame into memory (at most 64 MiB), so that they
 * are shipped from there and need no pin: tailer_unpin is then possible
 * while they wait (a snapshot being written, the spool full). 0,
 * TAILER_LATER, TAILER_BROKEN or -1. */
int tailer_detach(struct tailer *t, struct tm_error *err);
int tailer_pinned(const struct tailer *t);
/* Whether the pin should be held now. SQLite: always (it is let go only
 * for the application, briefly). Turso: only while the frames not shipped
 * are too many to read into memory; the engine never waits for a reader,
 * so a pin held makes its RESTART/TRUNCATE checkpoints fail at once. */
int tailer_needs_pin(const struct tailer *t);
/* A restart was seen: the old WAL's tail (pending) is shipped before the
 * new WAL is followed. */
int tailer_switching(const struct tailer *t);

/* The pending commits that end at or before the pin's snapshot: ship
 * exactly these before tailer_snapshot. *exact = 0 when the pin's
 * position is not known exactly or not in the WAL followed (then 0). */
size_t tailer_pending_through_pin(const struct tailer *t, int *exact);

/* Whether the pin's snapshot is exactly the shipped position (a
 * snapshot taken now belongs at the shipper's current index). */
int tailer_pin_at_shipped(const struct tailer *t);

/* Whether an application checkpoint that waits on readers (FULL,
 * RESTART, TRUNCATE: another process holds the wal-index's CKPT and WRITE
 * locks, so no frame can be appended meanwhile) may be waiting for the
 * pin. Cheap (two fcntl F_GETLK calls and one read of the wal-index).
 * When 1, ship what is committed and call tailer_advance_pin. */
int tailer_pin_in_the_way(struct tailer *t);

/* Whether another process holds the wal-index's CKPT or WRITE lock right
 * now (a checkpoint or a transaction in progress). */
int tailer_app_busy(struct tailer *t);
/* Whether another process holds the CKPT lock (a checkpoint runs). */
int tailer_app_checkpointing(struct tailer *t);
/* Whether another process's FULL, RESTART or TRUNCATE checkpoint holds
 * the CKPT and WRITE locks (waiting for readers, or copying): no frame
 * can be appended meanwhile. */
int tailer_app_checkpoint_waits(struct tailer *t);
/* Frames of the WAL that a checkpoint has still to copy into the
 * database (mxFrame - nBackfill of the wal-index); UINT32_MAX when it
 * cannot be read. The Turso route: UINT32_MAX (never let go that way). */
uint32_t tailer_backfill_behind(struct tailer *t);

/* A PASSIVE checkpoint on the connection that does not hold the pin
 * (never waits, never blocks writers). *restartable = 1 when the WAL is
 * then wholly backfilled and shipped, and the pin moved to where SQLite's
 * next writer restarts the WAL. */
int tailer_checkpoint(struct tailer *t, int *restartable, struct tm_error *err);

/* Whether the pin is already where tailer_checkpoint would leave it:
 * on slot 0, the WAL wholly backfilled and shipped (no application
 * checkpoint can wait for it until something is written). */
int tailer_restartable(struct tailer *t);

/* Before closing an idle database's tailer (so that it holds no file or
 * memory while idle). With nothing pending: checkpoints (PASSIVE) and
 * ends the pin. *clean = 1 when the WAL is now wholly backfilled and
 * shipped and no other process's reader holds a WAL read mark: the
 * database file is then exactly the state shipped, every reader that
 * starts from now reads the database file only, and so the next writer
 * must restart the WAL (salt-1 one higher) before it writes a frame.
 * The caller keeps the header and position and closes the tailer.
 * *clean = 0: still pinned; keep the tailer open. */
int tailer_release(struct tailer *t, int *clean, struct tm_error *err);

/* After tailer_open on a database released cleanly at `pos` with WAL
 * header `released`: continues from pos when the WAL is the same, or
 * from frame 1 of the WAL when it restarted exactly once since (by the
 * argument above, nothing was lost in between): 1. Anything else: 0
 * (continuity not proven: start a new generation). released NULL: the
 * WAL was empty at the release and the caller proved that the database
 * file has not changed since, so the WAL, if any, holds every commit made
 * since: continue from its start. */
int tailer_resume_after_release(struct tailer *t, const struct wal_header *released, const struct wal_position *pos,
                                uint32_t page_size, struct tm_error *err);

/* Copy the database as of the pin's snapshot to a new file `path` with
 * SQLite's backup API (a read transaction: never the write lock), a few
 * hundred pages at a time; between steps keep_going(arg) (may be NULL)
 * says whether to go on: 0 gives way (TAILER_LATER: the file is removed,
 * try again later). 0 or -1 on errors. */
int tailer_snapshot(struct tailer *t, const char *path, uint32_t *page_count,
                    int (*keep_going)(void *arg), void *arg, struct tm_error *err);

#endif
