/* capture_probe.h - naming what hides a database's commits from the
 * sidecar: another engine's whole-file lock, the Turso engine's
 * multi-process coordination file, or committed WAL frames that the
 * wal-index never publishes. Design in capture_probe.c. */
#ifndef TM_CAPTURE_PROBE_H
#define TM_CAPTURE_PROBE_H

#include <stdint.h>

#include "../common/error.h"
#include "wal.h"

enum capture_cause {
    CAPTURE_VISIBLE = 0,        /* nothing found that hides commits */
    CAPTURE_FOREIGN_LOCK = 1,   /* a whole-file lock on the database or WAL (Turso engine, default mode) */
    CAPTURE_FOREIGN_SHM = 2,    /* DB-tshm beside it (Turso engine, multiprocess_wal mode) */
    CAPTURE_UNPUBLISHED = 3,    /* committed WAL frames the wal-index does not publish */
    CAPTURE_TSHM_UNKNOWN = 4,   /* DB-tshm in a layout the Turso route does not read (tshm.h) */
    CAPTURE_MVCC = 5,           /* the Turso engine's MVCC journal mode (file format version 255) */
};

/* What the tailer follows, for the check of the WAL beyond it. */
struct capture_view {
    int has_wal;                        /* 0: it found no WAL yet (the rest unset) */
    struct wal_header hdr;              /* the WAL header it follows */
    struct wal_position committed_end;  /* end of the last commit it has seen */
    int wal_index_fd;                   /* its -shm, for F_GETLK of SQLite's WAL write lock */
    int turso;                          /* it follows the Turso route (DB-tshm): it holds no POSIX
                                           lock on the database, and there is no wal-index */
};

struct capture_probe;

/* grace_ms: how long committed frames may stay beyond the wal-index
 * before they count (one sync interval: a commit being published right
 * now is not one). engine: the database's `engine:` (enum tailer_engine):
 * DB-tshm is a cause only when it is 1 (sqlite), the other two follow the
 * Turso engine through it. Holds no descriptor between calls. */
int capture_probe_new(const char *db_path, int64_t grace_ms, int engine, struct capture_probe **out,
                      struct tm_error *err);
void capture_probe_free(struct capture_probe *p);

/* One check; a few system calls. `following` NULL: no connection of this
 * process is open on the database (only then is the database file itself
 * opened and closed here: closing any descriptor of a file drops every
 * POSIX lock the process holds on it, SQLite's included). Otherwise the
 * WAL just past following->committed_end is looked at (at most a few
 * frames per call; the search goes on at the next call).
 *
 * Returns:
 *   CAPTURE_VISIBLE       nothing hides the commits (as far as one can see);
 *   CAPTURE_FOREIGN_LOCK  another process holds a lock over byte 0 of the
 *                         database or WAL file, where SQLite never locks;
 *   CAPTURE_FOREIGN_SHM   DB-tshm with the Turso engine's magic exists,
 *                         and `engine: sqlite` forbids its route;
 *   CAPTURE_TSHM_UNKNOWN  DB-tshm with the magic, but another version or
 *                         layout than the one version tidemark reads;
 *   CAPTURE_MVCC          the database is in the Turso engine's MVCC mode;
 *   CAPTURE_UNPUBLISHED   the same committed frames have stayed past the
 *                         wal-index's end for longer than grace_ms, with
 *                         no SQLite writer in a transaction then. This
 *                         one is sticky: once seen it is returned by every
 *                         later call (nothing can tell that the writer
 *                         has gone), until the WAL file is replaced;
 *   -1                    an I/O error (err set; nothing concluded).
 * For a cause, err names it, with a HINT. */
int capture_probe_check(struct capture_probe *p, const struct capture_view *following, int64_t now_ms,
                        struct tm_error *err);

#endif
