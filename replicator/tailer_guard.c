/* tailer_guard.c - the SQLite route's guard: while the daemon has let go
 * of the pin, a thread of its own takes a read transaction in the WAL
 * the application's writer has just restarted, so that the WAL cannot
 * restart a second time before the daemon's loop has read it.
 *
 * DESIGN
 *
 * Letting go of the pin (tailer_unpin; when and why: pin.c) is how the
 * application's writer gets to restart its WAL: no reader holds a slot
 * 1..4 then. Its frames up to that instant are in memory. From the
 * restart on, the new WAL's frames are safe only until the next restart,
 * and the next one comes once the application has written and
 * backfilled about a checkpoint's worth (1000 frames by default): about
 * 10 ms for a writer of single-row transactions that never pauses. The
 * loop pins again as soon as it sees the restart (it looks every
 * millisecond), but the loop also compresses, writes and syncs, and on a
 * busy machine it can be away for a hundred milliseconds: long enough
 * for the WAL to restart several times over frames never read. The
 * commit counter catches that (a new generation, loudly), but the
 * archive's timeline then has a hole.
 *
 * So while the pin is let go the guard looks at the wal-index every
 * GUARD_POLL_MS from a thread that does nothing else, and once the salts
 * differ from those of the WAL followed (the writer restarted it), it
 * begins a read transaction on a connection of its own. Either slot
 * stops the next restart: a slot 1..4 directly, slot 0 because it stops
 * the backfill that a restart needs first. It holds it until the loop
 * has the pin again (tailer_guard_disarm), and gives way - as the loop's
 * pin does - to a checkpoint of the application's that waits for it, or
 * after GUARD_HOLD_MAX_MS; then it waits for the next restart. It never
 * pins while the application checkpoints, and never on the Turso route
 * (whose engine must never wait for a reader).
 *
 * The thread shares only `struct tailer_guard`, under its lock, and reads
 * the wal-index through the tailer's descriptor (pread, and F_GETLK for
 * the application's locks). Its connection is its own. */
#include "tailer_internal.h"

#include "../common/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the armed guard looks at the wal-index. */
#define GUARD_POLL_MS 1
/* The guard holds the new WAL this long at most, waiting for the loop. */
#define GUARD_HOLD_MAX_MS 1000

struct tailer_guard {
    struct tailer *tailer;          /* shm_fd and coord only, both fixed for its life */
    sqlite3 *conn;                  /* the guard's own, used by its thread only */
    sqlite3_stmt *read_stmt;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* under lock */
    int stop;
    int armed;                      /* the loop has let go of the pin */
    uint64_t arm_seq;               /* one more at every arming */
    uint32_t followed_salt1, followed_salt2;   /* the WAL in memory when it let go */
    uint64_t holds;                 /* read transactions the guard began, for the log */
};

/* --------------------------------------------------------- the thread */

static void guard_end_read(struct tailer_guard *g)
{
    if (!sqlite3_get_autocommit(g->conn))
        sqlite3_exec(g->conn, "COMMIT", NULL, NULL, NULL);
}

/* Waits GUARD_POLL_MS (or until woken); returns with the lock held. */
static void guard_nap(struct tailer_guard *g)
{
    struct timespec until = clock_monotonic_deadline(GUARD_POLL_MS);
    pthread_cond_timedwait(&g->wake, &g->lock, &until);
}

/* One look while armed and not holding: 1 when the writer restarted the
 * WAL (its salts differ from `salt1`/`salt2`) and no checkpoint of the
 * application's runs. */
static int restarted_since(struct tailer_guard *g, uint32_t salt1, uint32_t salt2, uint32_t *now1, uint32_t *now2)
{
    struct wal_index_state index;
    struct tm_error ignored;
    if (wal_index_read(g->tailer->shm_fd, &index, &ignored) != 1)
        return 0;
    *now1 = index.salt1;
    *now2 = index.salt2;
    return (index.salt1 != salt1 || index.salt2 != salt2) && !tailer_app_checkpointing(g->tailer);
}

/* One look while armed: holds the WAL once restarted (since the salts
 * in salt1 and salt2, which then become the held WAL's), or lets go of it
 * for a checkpoint that waits, or once held GUARD_HOLD_MAX_MS. */
static void guard_look(struct tailer_guard *g, int *holding, int64_t *held_since_ms, uint32_t *salt1, uint32_t *salt2)
{
    uint32_t now1, now2;
    if (!*holding) {
        if (restarted_since(g, *salt1, *salt2, &now1, &now2) && tailer_read_txn_begin(g->conn, g->read_stmt) == 0) {
            *holding = 1;   /* (busy: tried again at the next look) */
            *held_since_ms = clock_now_ms();
            *salt1 = now1;
            *salt2 = now2;
            pthread_mutex_lock(&g->lock);
            g->holds++;
            pthread_mutex_unlock(&g->lock);
        }
    } else if (tailer_app_checkpoint_waits(g->tailer) || clock_now_ms() - *held_since_ms >= GUARD_HOLD_MAX_MS) {
        guard_end_read(g);   /* give way; held again only after the next restart */
        *holding = 0;
    }
}

static void *guard_thread(void *arg)
{
    struct tailer_guard *g = arg;
    int holding = 0;
    int64_t held_since_ms = 0;
    uint64_t arm_seen = 0;
    uint32_t salt1 = 0, salt2 = 0;   /* the WAL followed, or the one held last */
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        if (!g->armed || g->arm_seq != arm_seen) {   /* pinned again, or let go anew */
            if (holding) {
                pthread_mutex_unlock(&g->lock);
                guard_end_read(g);
                pthread_mutex_lock(&g->lock);
                holding = 0;
                /* stop, arming and disarming may have come while the lock
                 * was let go, their signal with nobody waiting: look again
                 * (waiting here missed a stop, and tailer_close's join hung) */
                continue;
            }
            if (!g->armed) {
                pthread_cond_wait(&g->wake, &g->lock);
                continue;
            }
            arm_seen = g->arm_seq;
            salt1 = g->followed_salt1;
            salt2 = g->followed_salt2;
        }
        pthread_mutex_unlock(&g->lock);
        guard_look(g, &holding, &held_since_ms, &salt1, &salt2);
        pthread_mutex_lock(&g->lock);
        if (!g->stop && g->armed && g->arm_seq == arm_seen)
            guard_nap(g);
    }
    pthread_mutex_unlock(&g->lock);
    if (holding)
        guard_end_read(g);
    return NULL;
}

/* --------------------------------------------------------- the loop's side */

int tailer_guard_start(struct tailer *t, struct tm_error *err)
{
    struct tailer_guard *g = calloc(1, sizeof *g);
    if (!g)
        return tm_error_set(err, "out of memory");
    g->tailer = t;
    pthread_mutex_init(&g->lock, NULL);
    clock_monotonic_cond_init(&g->wake);   /* naps on the monotonic clock */
    t->guard = g;
    if (tailer_open_connection(t->db_path, 0, &g->conn, err) != 0)
        return -1;
    if (sqlite3_prepare_v2(g->conn, TAILER_READ_SQL, -1, &g->read_stmt, NULL) != SQLITE_OK)
        return tailer_sql_fail(err, g->conn, "cannot prepare", t->db_path);
    int rc = pthread_create(&g->thread, NULL, guard_thread, g);
    if (rc != 0)
        return tm_error_set(err, "cannot start the guard thread: %s", strerror(rc));
    g->thread_started = 1;
    return 0;
}

void tailer_guard_free(struct tailer *t)
{
    struct tailer_guard *g = t->guard;
    if (!g)
        return;
    if (g->thread_started) {
        pthread_mutex_lock(&g->lock);
        g->stop = 1;
        pthread_cond_signal(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
    }
    sqlite3_finalize(g->read_stmt);
    sqlite3_close(g->conn);
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
    free(g);
    t->guard = NULL;
}

void tailer_guard_arm(struct tailer *t)
{
    struct tailer_guard *g = t->guard;
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->armed = 1;
    g->arm_seq++;
    g->followed_salt1 = t->have_header ? t->hdr.salt1 : 0;
    g->followed_salt2 = t->have_header ? t->hdr.salt2 : 0;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
}

void tailer_guard_disarm(struct tailer *t)
{
    struct tailer_guard *g = t->guard;
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->armed = 0;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
}

uint64_t tailer_guard_holds(const struct tailer *t)
{
    struct tailer_guard *g = t->guard;
    if (!g)
        return 0;
    pthread_mutex_lock(&g->lock);
    uint64_t holds = g->holds;
    pthread_mutex_unlock(&g->lock);
    return holds;
}
