/* tailer_turso.c - the tailer's Turso route: following a database that
 * the Turso engine (npm @tursodatabase/database, Turso Sync) writes in
 * its multiprocess_wal mode, through the engine's coordination file
 * DB-tshm (tshm.c) instead of SQLite's wal-index.
 *
 * DESIGN
 *
 * The engine writes a standard SQLite database file and a standard SQLite
 * WAL; only the coordination differs. So everything in tailer.c and
 * tailer_restart.c stays as it is - the WAL is scanned frame by frame
 * with SQLite's checksum chain up to the last committed frame, restarts
 * are followed by reading the old WAL's tail, and the commit counter
 * proves that no commit was missed - with the coordination file read in
 * place of the wal-index (max_frame, salts, nbackfills, and the engine's
 * transaction_count, which like SQLite's iChange grows by one per commit
 * and survives WAL restarts and truncations). What differs is here:
 *
 *  - No libsqlite3 connection on the database, ever: a SQLite connection
 *    knows nothing of DB-tshm, would consider itself the last one and
 *    checkpoint and delete the WAL under the engine.
 *  - The pin is one reader slot of DB-tshm (tshm.c). While it is held no
 *    WAL restart or truncation can happen at all, and no checkpoint
 *    copies a frame past its frame into the database file. It is moved in
 *    place. Its position is exact when no restart raced its store: the
 *    salts read just before and just after are the same.
 *  - The engine never waits for a reader: a RESTART or TRUNCATE
 *    checkpoint that finds a slot held returns busy at once (Turso Sync's
 *    own checkpoint then fails). So the pin is held only while needed -
 *    while a snapshot is copied, while a new generation is positioned,
 *    and while more frames wait than can be read into memory - and let
 *    go as soon as the pending frames are shipped or in memory
 *    (tailer_turso_pin_in_the_way). Unpinned, the daemon reads the WAL
 *    every millisecond (pin.c), reads pending frames into memory at once
 *    (tailer_detach), and a restart is followed as on the SQLite route;
 *    a truncation faster than that, right after a commit, loses the
 *    commit's frames, which the counter shows: a new generation, logged.
 *  - Snapshots are built from the files, page by page (tailer_copy.c):
 *    with the pin at frame F, the database file holds every page that no WAL frame 1..F
 *    holds as it was at F (a checkpoint copies no frame past F, and a
 *    restart - which needs the WAL wholly copied - happens before any
 *    frame of this WAL). The image is each page's last frame <= F, else
 *    the database file's page, up to the size the commit at F gives. A
 *    checkpoint that began before the slot was stored could still copy
 *    past F: the copy starts only once no checkpoint holds the
 *    checkpointer's lock byte after the store, and is checked afterwards.
 *
 * The file's identity is checked at every scan: a coordination file
 * replaced, of another layout (an engine upgrade), or a slot taken over,
 * means continuity can no longer be proven: TAILER_BROKEN (a new
 * generation), or the refusal of a layout not read here when the tailer
 * is opened again. A file whose state an engine process rebuilt in place
 * (its seqlock and commit counter back to 0, after a writer died) only
 * restarts the commit count: the WAL's salts and checksum chain still
 * prove continuity as far as the WAL goes. */
#include "tailer_internal.h"

#include "../common/clock.h"

#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Attempts at taking the pin with no WAL restart racing it. */
#define PIN_ATTEMPTS 32
/* Frames pending beyond what is in memory, in bytes, above which the pin
 * is held (reading them into memory is the alternative up to this). */
#define UNPINNED_PENDING_MAX (16u * 1024 * 1024)
/* A snapshot waits at most this long for a checkpoint that may have
 * begun before its pin to end. */
#define CHECKPOINT_WAIT_MS 2000

/* ------------------------------------------------------------ opening */

int tailer_turso_open(struct tailer *t, struct tm_error *err)
{
    char tshm_path[PATH_MAX];
    snprintf(tshm_path, sizeof tshm_path, "%s-tshm", t->db_path);
    if (access(tshm_path, F_OK) != 0) {
        tm_error_set(err, "'%s' has no Turso engine coordination file ('%s'): the route `engine: turso` follows "
                     "only databases the engine has open with multiprocess_wal", t->db_path, tshm_path);
        return tm_error_hint(err, "open the database with connect(path, { experimental: ['multiprocess_wal'] }), "
                             "or set `engine: auto`");
    }
    if (tshm_open(tshm_path, &t->coord, err) != 0)
        return -1;
    t->wal_fd = open(t->wal_path, O_RDONLY | O_CLOEXEC);
    if (t->wal_fd < 0)
        return tm_error_set(err, "cannot open WAL '%s': %s", t->wal_path, strerror(errno));
    if (fstat(t->wal_fd, &t->wal_stat) != 0 || stat(t->db_path, &t->db_stat) != 0)
        return tm_error_set(err, "cannot stat '%s': %s", t->db_path, strerror(errno));
    struct tshm_state state;
    int read = tshm_read(t->coord, &state, err);
    if (read <= 0)
        return read < 0 ? -1 : tm_error_set(err, "'%s' is being written at every attempt to read it", tshm_path);
    if (state.page_size && state.page_size != t->page_size)
        return tm_error_set(err, "'%s' gives page size %u, the database %u", tshm_path, state.page_size,
                            t->page_size);
    t->coord_seq = state.seq;
    t->coord_transactions = state.transactions;
    if (tailer_ahead_start(t, err) != 0)
        return -1;
    struct pin first;
    if (tailer_turso_take_pin(t, &first, err) != 0)
        return -1;
    t->pin = first;
    t->restart_unsafe = 1;   /* nothing is positioned yet */
    log_debug("'%s' followed through the Turso engine's coordination file (slot %d)", t->db_path,
              tshm_pin_slot(t->coord));
    return 0;
}

/* ------------------------------------------------------------ reading */

int tailer_turso_read_index(struct tailer *t, struct wal_index_state *index, struct tm_error *err)
{
    struct tshm_state state;
    int read = tshm_read(t->coord, &state, err);
    if (read <= 0)
        return read;
    if (state.seq < t->coord_seq || state.transactions < t->coord_transactions) {
        /* An engine process that opened alone rebuilt the file's state from
         * the WAL (after a writer died; it counts commits from 0 again).
         * The WAL itself is the same (its salts and the checksum chain are
         * checked as ever): the commit counter is counted again from here,
         * and until it is known a restart is followed only under a pin. */
        log_info("'%s-tshm': the Turso engine rebuilt its coordination state (commit counter %llu, was %llu): "
                 "counting commits again from there", t->db_path, (unsigned long long)state.transactions,
                 (unsigned long long)t->coord_transactions);
        t->counter_known = 0;
        t->recorded_since_count = 0;
        t->sighting_count = t->sighting_next = 0;   /* they were of the old count */
        t->restart_unsafe |= !tailer_pin_safe(&t->pin);
    }
    t->coord_seq = state.seq;
    t->coord_transactions = state.transactions;
    if (state.max_frame)
        tailer_ahead_note_published(t, &(struct wal_position){.salt1 = state.salt1, .salt2 = state.salt2,
                                                             .frame = state.max_frame,
                                                             .checksum = {state.checksum[0], state.checksum[1]}});
    *index = (struct wal_index_state){.max_frame = state.max_frame, .salt1 = state.salt1, .salt2 = state.salt2,
                                      .backfilled = state.backfilled, .changes = (uint32_t)state.transactions};
    return 1;
}

int tailer_turso_check(struct tailer *t, struct tm_error *err)
{
    if (!tshm_pin_intact(t->coord, err))
        return TAILER_BROKEN;
    return TAILER_OK;
}

/* --------------------------------------------------------------- pin */

int tailer_turso_take_pin(struct tailer *t, struct pin *out, struct tm_error *err)
{
    for (int attempt = 1;; attempt++) {
        struct wal_index_state before, after;
        int before_ok = tailer_turso_read_index(t, &before, err);
        if (before_ok < 0)
            return -1;
        if (!before_ok) {
            if (attempt >= PIN_ATTEMPTS)
                return tm_error_set(err, "the coordination file of '%s' is being written at every attempt to read "
                                    "it (an engine process died while publishing?)", t->db_path);
            continue;
        }
        /* the engine's checkpoints never look at a slot's frame below
         * nbackfills, so a slot never moves back */
        uint32_t frame = before.max_frame;
        if (tshm_pinned(t->coord) && before.salt1 == t->pin.salt1 && before.salt2 == t->pin.salt2 &&
            frame < tshm_pin_frame(t->coord))
            frame = tshm_pin_frame(t->coord);
        int was_pinned = tshm_pinned(t->coord);
        if (tshm_pin(t->coord, frame, err) != 0)
            return -1;
        if (!was_pinned)
            log_debug("'%s': reader slot %d taken at frame %u", t->db_path, tshm_pin_slot(t->coord), frame);
        int after_ok = tailer_turso_read_index(t, &after, err);
        if (after_ok < 0)
            return -1;
        memset(out, 0, sizeof *out);
        out->conn = 0;
        out->salt1 = before.salt1;
        out->salt2 = before.salt2;
        out->frame = frame;
        /* a slot stops every restart: nothing not shipped can be lost */
        if (after_ok && after.salt1 == before.salt1 && after.salt2 == before.salt2 && after.max_frame >= frame) {
            out->known = 1;
            return 0;
        }
        if (attempt >= PIN_ATTEMPTS)
            return 0;   /* held, its place not known */
    }
}

/* Bytes of the frames pending that are not in memory. */
static size_t pending_bytes_on_disk(const struct tailer *t)
{
    if (!t->pending_count || tailer_tail_covers_pending(t))
        return 0;
    return (size_t)(t->scanned.frame - t->shipped.frame) * (WAL_FRAME_HEADER_BYTES + t->page_size);
}

int tailer_turso_needs_pin(const struct tailer *t)
{
    return t->switching ? 0 : pending_bytes_on_disk(t) > UNPINNED_PENDING_MAX;
}

/* A held slot makes every RESTART/TRUNCATE of the application fail: let
 * go once what is pending can be read into memory. */
int tailer_turso_pin_in_the_way(struct tailer *t)
{
    return t->pin.conn >= 0 && t->counter_known && !tailer_turso_needs_pin(t);
}

/* ----------------------------------------------------------- snapshot */

/* A checkpoint that began before the slot was stored may copy past it:
 * wait until none holds the checkpointer's byte (those that begin later
 * see the slot). 0, or TAILER_LATER. */
static int wait_for_earlier_checkpoint(struct tailer *t, struct tm_error *err)
{
    int64_t deadline = clock_monotonic_ms() + CHECKPOINT_WAIT_MS;
    while (tshm_locked_by_other(t->coord, TSHM_LOCK_CHECKPOINTER)) {
        if (clock_monotonic_ms() >= deadline)
            return tm_error_set(err, "a checkpoint of the Turso engine on '%s' lasted more than %d ms", t->db_path,
                                CHECKPOINT_WAIT_MS),
                   TAILER_LATER;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

/* After the copy: still the same WAL, nothing past the pin copied into
 * the database file, the slot still ours. */
static int pin_held_throughout(struct tailer *t, struct tm_error *err)
{
    struct wal_index_state index;
    if (tailer_turso_check(t, err) != TAILER_OK || tailer_turso_read_index(t, &index, err) != 1)
        return 0;
    if (t->pin.frame && (index.salt1 != t->pin.salt1 || index.salt2 != t->pin.salt2 || index.backfilled > t->pin.frame)) {
        tm_error_set(err, "the WAL of '%s' moved under the snapshot's pin (backfilled %u, pin %u)", t->db_path,
                     index.backfilled, t->pin.frame);
        return 0;
    }
    return 1;
}

int tailer_turso_snapshot(struct tailer *t, const char *path, uint32_t *page_count, struct tm_error *err)
{
    if (!t->pin.known || (t->pin.frame && (!t->have_header || t->pin.salt1 != t->hdr.salt1 ||
                                           t->pin.salt2 != t->hdr.salt2)))
        return tm_error_set(err, "internal: snapshot of '%s' without an exact pin", t->db_path);
    int rc = wait_for_earlier_checkpoint(t, err);
    if (rc != 0)
        return rc;
    uint32_t db_pages = 0;
    rc = tailer_copy_pages(t, path, t->pin.frame > 0, &db_pages, NULL, NULL, err);
    if (rc == 0 && !pin_held_throughout(t, err))
        rc = TAILER_LATER;
    if (rc != 0) {
        unlink(path);
        return rc;
    }
    *page_count = db_pages;
    return 0;
}

void tailer_turso_free(struct tailer *t)
{
    tailer_ahead_free(t);
    tshm_close(t->coord);
    t->coord = NULL;
}
