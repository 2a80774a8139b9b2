/* tailer.h - following one live SQLite database's WAL without ever
 * writing to the database. Design and locking argument in tailer.c. */
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
    TAILER_BUSY = 2,           /* the application held the write lock: retry later */
};

struct tailer;

/* Opens the database (which must exist and be in WAL mode) with the two
 * connections the tailer needs, and the WAL file for reading. */
int tailer_open(const char *db_path, struct tailer **out, struct tm_error *err);
void tailer_close(struct tailer *t);

/* Whether db_path is a SQLite database in WAL mode (the header only: no
 * connection is opened); err says what it is not. */
int tailer_check_file(const char *db_path, struct tm_error *err);

/* Takes / releases the database's write lock (BEGIN IMMEDIATE on the
 * locker connection; nothing is written). While held, no transaction can
 * commit, so the WAL's end is fixed. Polls for at most ~250 ms and
 * returns TAILER_BUSY (err set) when the application's writers never
 * paused that long; -1 on other errors. */
int tailer_lock(struct tailer *t, struct tm_error *err);
void tailer_unlock(struct tailer *t);

/* Reads the WAL from the last commit seen, recording every new commit
 * with time max(now_ms, previous commit time). Returns TAILER_OK,
 * TAILER_BROKEN with err saying why continuity was lost (WAL reset with
 * unshipped commits, restarts missed, page size changed, WAL or database
 * file replaced), or -1 on I/O errors. */
int tailer_scan(struct tailer *t, int64_t now_ms, struct tm_error *err);

/* Whether the WAL at `pos` is the one the archive ended on: same salts,
 * page size, and the checksum chain from frame 1 reaches pos exactly on a
 * commit frame. Call with the lock held. If so, the tailer continues
 * from there (1); otherwise 0. */
int tailer_resume_at(struct tailer *t, const struct wal_position *pos, uint32_t page_size,
                     struct tm_error *err);

/* Forget everything: position the tailer at the WAL's current end (as a
 * fresh base snapshot will cover it). Call with the lock held. */
int tailer_restart_at_end(struct tailer *t, struct tm_error *err);

/* Commits seen but not yet acknowledged; valid until the next call. */
const struct tailer_commit *tailer_pending(const struct tailer *t, size_t *count);
/* The WAL position everything before which is shipped. */
struct wal_position tailer_shipped(const struct tailer *t);
/* Mark the first `count` pending commits as shipped. */
void tailer_ack(struct tailer *t, size_t count);

/* Reads `count` consecutive frames (header + page each) of the current WAL
 * from frame `first` into buf (count x (WAL_FRAME_HEADER_BYTES + page
 * size) bytes). */
int tailer_read_frames(struct tailer *t, uint32_t first, uint32_t count, uint8_t *buf,
                       struct tm_error *err);
const struct wal_header *tailer_header(const struct tailer *t);   /* NULL if no WAL yet */
/* The wal-index (-shm) file, open read-only: for lock queries (F_GETLK)
 * by the capture probe. Never close it (that would drop the tailer's
 * POSIX locks on the file). */
int tailer_wal_index_fd(const struct tailer *t);
uint32_t tailer_page_size(const struct tailer *t);

/* With the lock held and nothing pending: end the pinning read
 * transaction, optionally run a PASSIVE checkpoint, and pin again at the
 * WAL's current end. */
int tailer_repin(struct tailer *t, int checkpoint, struct tm_error *err);

/* Before closing an idle database's tailer (so that it holds no file or
 * memory while idle). With the lock held and nothing pending: ends the
 * pin and checkpoints (PASSIVE). *clean = 1 when the WAL is now wholly
 * backfilled and no other process's reader holds a WAL read mark: the
 * database file is then exactly the state shipped, every reader that
 * starts from now reads the database file only, and so the next writer
 * must restart the WAL (salt-1 and the checkpoint sequence one higher)
 * before it writes a frame. The caller keeps the header and position and
 * closes the tailer. *clean = 0: pinned again; keep the tailer open. */
int tailer_release(struct tailer *t, int *clean, struct tm_error *err);

/* After tailer_open on a database released cleanly at `pos` with WAL
 * header `released`: continues from pos when the WAL is the same, or
 * from frame 1 of the WAL when it restarted exactly once since (by the
 * argument above, nothing was lost in between): 1. Anything else: 0
 * (continuity not proven: start a new generation). released NULL: the
 * WAL was empty at the release and the caller proved that the database
 * file has not changed since, so the WAL, if any, holds every commit made
 * since: continue from its start. Call with the lock held. */
int tailer_resume_after_release(struct tailer *t, const struct wal_header *released, const struct wal_position *pos,
                                uint32_t page_size, struct tm_error *err);

/* Copy the database as of the pinned read transaction (== the shipped
 * position after tailer_repin) to a new file `path` with SQLite's backup
 * API; never takes the write lock. */
int tailer_snapshot(struct tailer *t, const char *path, uint32_t *page_count,
                    struct tm_error *err);

#endif
