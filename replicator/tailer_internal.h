/* tailer_internal.h - private to the tailer's files (tailer.c,
 * tailer_pin.c, tailer_restart.c, tailer_copy.c, tailer_turso.c,
 * tailer_ahead.c, tailer_guard.c, tailer_watch.c): struct tailer and the functions they
 * share. Nothing else includes it; the tailer's interface is tailer.h.
 * The design: the DESIGN comment in tailer.c. */
#ifndef TM_TAILER_INTERNAL_H
#define TM_TAILER_INTERNAL_H

#include "tailer.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "tshm.h"

/* The Turso route: commit ends seen published kept (tailer_ahead.c). */
#define PUBLISHED_SEEN 16

/* Commit counter sightings kept (about one a millisecond while commits
 * arrive and the sidecar looks). */
#define SIGHTINGS 1024

/* The commit counter seen at `changes` (or beyond) at time `ms`. */
struct sighting {
    uint32_t changes;
    int64_t ms;
};

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
    int shm_fd;                     /* the wal-index, read only (SQLite route) */
    /* The Turso route (tailer_turso.c): the engine's coordination file,
     * NULL on the SQLite route. No libsqlite3 connection then: conn[] stay
     * NULL, the pin is a reader slot in it (pin.conn 0 while held). */
    struct tshm *coord;
    uint64_t coord_seq;             /* its seqlock at the last read: never goes back */
    uint64_t coord_transactions;    /* its commit counter then: never goes back */
    /* The Turso route's copy of what the engine writes, kept by a thread
     * of its own (tailer_ahead.c). */
    struct ahead *ahead;
    struct wal_position published[PUBLISHED_SEEN];   /* commit ends seen published (a ring) */
    size_t published_next;
    sqlite3 *conn[2];               /* two read connections: the pin is handed over between them */
    /* The SQLite route's guard: a thread that holds a restarted WAL
     * while the pin is let go (tailer_guard.c); NULL on the Turso route. */
    struct tailer_guard *guard;
    /* The SQLite route's commit counter watch: a thread that notes when
     * the counter moved while the application writes (tailer_watch.c);
     * NULL on the Turso route. */
    struct tailer_watch *watch;
    sqlite3_stmt *pin_stmt[2];
    struct pin pin;
    int wal_fd;
    /* The database file, read by snapshots (tailer_copy.c). Open for the
     * tailer's life and closed after the connections: closing any
     * descriptor of the file drops every POSIX lock this process holds
     * on it, SQLite's included (a writer closing its last connection
     * would then believe itself alone, and delete the WAL). */
    int db_fd;
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
    struct sighting sightings[SIGHTINGS];
    size_t sighting_next, sighting_count;
};

/* tailer.c */

/* Sets err to `what` on `path` with the connection's error; -1. */
int tailer_sql_fail(struct tm_error *err, sqlite3 *db, const char *what, const char *path);
/* wal_scan's callback: records the commit ending at `end` as pending,
 * stamped with the time it was first seen; 0, or -1 (out of memory). */
int tailer_record_commit(void *ctx, const struct wal_position *end, uint32_t db_size, struct tm_error *err);

/* Opens a read connection to `path` that never checkpoints nor deletes
 * the WAL at close, with this busy timeout; 0 or -1. */
int tailer_open_connection(const char *path, int busy_timeout_ms, sqlite3 **out, struct tm_error *err);

/* The statement whose first step makes a read transaction hold a
 * snapshot (the pin's connections and the guard's). */
#define TAILER_READ_SQL "SELECT 1 FROM sqlite_master LIMIT 1"

/* tailer_pin.c */

/* BEGIN on `db`, then a step of `read_stmt` (TAILER_READ_SQL), so that
 * the transaction holds a snapshot; rolled back on failure. 0, -1 when
 * BEGIN failed, -2 when the read did (the connection's error says why). */
int tailer_read_txn_begin(sqlite3 *db, sqlite3_stmt *read_stmt);

/* Begins a read transaction on connection `conn` and reads through it,
 * so that it holds a snapshot from now on; 0 or -1. */
int tailer_begin_read(struct tailer *t, int conn, struct tm_error *err);
/* Ends connection `conn`'s read transaction, if any (conn -1: none). */
void tailer_end_read(struct tailer *t, int conn);
/* The wal-index header and nBackfill: 1 when consistent, 0 when being
 * rewritten, -1 on I/O errors. */
int tailer_read_index(struct tailer *t, struct wal_index_state *index, struct tm_error *err);
/* Begins a read transaction on `conn` and reads where it stands into
 * *out: 0, TAILER_LATER (never exact; only without keep_inexact) or -1. */
int tailer_take_pin(struct tailer *t, int conn, int keep_inexact, struct pin *out, struct tm_error *err);
/* Whether a pin at `p` keeps everything not yet shipped safe. */
int tailer_pin_protects(const struct tailer *t, const struct pin *p);
/* Whether no WAL restart can discard a frame not shipped while `p` is held. */
int tailer_pin_safe(const struct pin *p);
/* Hands the pin over to the other connection if the new place is safe
 * (or `any` place): TAILER_OK, TAILER_LATER or -1. */
int tailer_hand_over(struct tailer *t, int any, struct tm_error *err);

/* tailer_turso.c (the Turso route; t->coord != NULL) */

/* tailer_open's part for the route: the coordination file, the WAL, the
 * first pin. 0 or -1. */
int tailer_turso_open(struct tailer *t, struct tm_error *err);
/* The coordination file's WAL state as a wal-index's: 1, 0 (being
 * written at every attempt), -1 (no longer a layout read here). */
int tailer_turso_read_index(struct tailer *t, struct wal_index_state *index, struct tm_error *err);
/* Takes the reader slot, or moves it to the WAL's end: 0 (out->known
 * when no WAL restart raced it), -1. */
int tailer_turso_take_pin(struct tailer *t, struct pin *out, struct tm_error *err);
/* At each scan: whether the coordination file is still the one followed,
 * and the slot still stands (TAILER_OK, or TAILER_BROKEN with err). */
int tailer_turso_check(struct tailer *t, struct tm_error *err);
int tailer_turso_pin_in_the_way(struct tailer *t);
int tailer_turso_needs_pin(const struct tailer *t);
int tailer_turso_snapshot(struct tailer *t, const char *path, uint32_t *page_count, struct tm_error *err);
void tailer_turso_free(struct tailer *t);
/* pread of exactly len bytes: 1, 0 (the file is shorter), -1 (err). */
int tailer_read_exactly(int fd, uint8_t *buf, size_t len, off_t offset, const char *path, struct tm_error *err);

/* tailer_copy.c */

/* Copies the database as of the pin into a new file at path, from the
 * database file and, when from_wal, the last frame <= pin.frame of each
 * page in the WAL followed (the pin must be exactly at a commit end in
 * it). keep_going (may be NULL) is asked between batches of pages. 0 with
 * *page_count, TAILER_LATER when it gave way, -1; path removed unless 0. */
int tailer_copy_pages(struct tailer *t, const char *path, int from_wal, uint32_t *page_count,
                      int (*keep_going)(void *arg), void *arg, struct tm_error *err);

/* tailer_ahead.c (the Turso route's copy of the frames the engine writes) */

/* Starts the thread that reads the WAL as the engine writes it. 0 or -1. */
int tailer_ahead_start(struct tailer *t, struct tm_error *err);
/* Stops it and frees the copy. */
void tailer_ahead_free(struct tailer *t);
void tailer_ahead_note_published(struct tailer *t, const struct wal_position *end);
/* Whether any frame or WAL is held in the copy. */
int tailer_ahead_has_runs(struct tailer *t);
/* The WAL followed is gone (truncated or restarted: the coordination
 * file shows another): proves what was read ahead of it and of the WALs
 * after it, and takes the followed WAL's proven frames into memory as
 * commits. 0, or -1 (out of memory). What is not proven is dropped: the
 * commit counter then says what was lost. */
int tailer_ahead_adopt(struct tailer *t, struct tm_error *err);
/* A WAL after the one followed, gone too, whose proven frames are in
 * memory: follows it (its frames pending, in the tail; switching set) and
 * returns 1; 0 when none is left before `fresh` (NULL: the WAL on disk is
 * empty). */
int tailer_ahead_follow_next(struct tailer *t, const struct wal_header *fresh, struct tm_error *err);
/* Whether a WAL after the one followed (or any, following none) is gone
 * with proven frames in memory: it is followed before the WAL on disk. */
int tailer_ahead_has_next(struct tailer *t);

/* tailer_guard.c (the SQLite route's guard while the pin is let go) */

/* Opens the guard's connection and starts its thread, disarmed; 0 or -1
 * (t->guard is then freed by tailer_guard_free). */
int tailer_guard_start(struct tailer *t, struct tm_error *err);
/* Stops the thread (its read transaction ended) and frees the guard. */
void tailer_guard_free(struct tailer *t);
/* The pin was let go: hold the WAL once the writer restarts it. */
void tailer_guard_arm(struct tailer *t);
/* The pin is held again: the guard lets go of its hold, if any. */
void tailer_guard_disarm(struct tailer *t);

/* tailer_watch.c (the SQLite route's commit counter watch) */

/* Starts its thread, disarmed; 0 or -1 (t->watch is then freed by
 * tailer_watch_free). */
int tailer_watch_start(struct tailer *t, struct tm_error *err);
/* Stops the thread and frees the watch. */
void tailer_watch_free(struct tailer *t);
/* Moves up to `cap` sightings noted since the last take into `out`,
 * oldest first; returns how many. */
size_t tailer_watch_take(struct tailer *t, struct sighting *out, size_t cap);

/* tailer_restart.c */

/* Whether every pending frame is in memory (tailer_detach). */
int tailer_tail_covers_pending(const struct tailer *t);
/* The old WAL's tail is shipped: follow the new WAL (NULL: none yet),
 * or first a WAL gone since that the Turso route read ahead. 0 or -1. */
int tailer_finish_switch(struct tailer *t, const struct wal_header *fresh, struct tm_error *err);
/* Decides what a WAL header different from the one followed means:
 * TAILER_OK, TAILER_BROKEN or -1. */
int tailer_follow_new_header(struct tailer *t, const struct wal_header *fresh, struct tm_error *err);
/* The WAL restarted and has no frame yet: TAILER_OK or TAILER_BROKEN. */
int tailer_follow_empty_wal(struct tailer *t, const struct wal_index_state *index, struct tm_error *err);
/* At a scan that read the WAL up to the wal-index's end: TAILER_OK when
 * the commits read are those counted, else TAILER_BROKEN. */
int tailer_check_commit_count(struct tailer *t, const struct wal_index_state *index, struct tm_error *err);

#endif
