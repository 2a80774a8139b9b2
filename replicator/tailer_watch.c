/* tailer_watch.c - the SQLite route's commit-counter watch: while the
 * application writes, a thread of its own notes when the wal-index's
 * commit counter reached each value, so that commits are stamped when
 * they were made even while the daemon's loop is busy elsewhere.
 *
 * DESIGN
 *
 * A commit is stamped with the time the commit counter was first seen
 * counting it (tailer.c, "sightings"). The loop looks at every scan:
 * 5 ms after a write to the WAL. But the loop also compresses, encrypts
 * and syncs segments, copies snapshots and writes the spool; under a
 * writer that never pauses it was measured away 100-500 ms at a time
 * (bench/stamp_bound.py, flood: a segment's fsyncs, a wal-ratio
 * snapshot), and every commit made meanwhile was stamped that much
 * late: a restore to a time in between left it out although it had
 * committed long before.
 *
 * So while the database is being written (database.c arms the watch at
 * each write to the WAL; it disarms itself WATCH_QUIET_MS after the
 * last arming), the thread reads the wal-index header every
 * WATCH_POLL_MS and keeps (counter, time) for each new counter value,
 * the time read after the header: the counted commits existed by then,
 * so a stamp taken from it is never before its commit. The loop takes
 * the sightings at its next scan (tailer_watch_take), before its own.
 * Up to WATCH_SIGHTINGS are kept between two scans (a second of one
 * commit a millisecond); later ones are dropped, and those commits are
 * stamped by the scan, later but never early.
 *
 * The thread shares only `struct tailer_watch`, under its lock, and reads
 * the wal-index through the tailer's descriptor (pread), fixed for the
 * tailer's life. Idle (disarmed), it sleeps on a condition variable and
 * costs nothing. */
#include "tailer_internal.h"

#include "../common/clock.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the armed watch reads the wal-index header. */
#define WATCH_POLL_MS 1
/* Armed, it stops this long after the last write seen. */
#define WATCH_QUIET_MS 1000
/* Sightings kept between two takes. */
#define WATCH_SIGHTINGS 1024

struct tailer_watch {
    struct tailer *tailer;          /* shm_fd only, fixed for its life */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    /* under lock */
    int stop;
    int64_t armed_until_ms;         /* monotonic; 0: disarmed */
    struct sighting seen[WATCH_SIGHTINGS];   /* oldest first, since the last take */
    size_t seen_count;
    uint32_t last_changes;          /* the counter at the last look */
    int have_last;
};

/* --------------------------------------------------------- the thread */

/* Waits WATCH_POLL_MS or until woken; the lock is held. The condition
 * variable waits on the monotonic clock: a step of the wall clock
 * neither stalls nor hurries it. */
static void watch_nap(struct tailer_watch *w)
{
    struct timespec until = clock_monotonic_deadline(WATCH_POLL_MS);
    pthread_cond_timedwait(&w->wake, &w->lock, &until);
}

/* One look: the counter and the time after reading it. The lock is not
 * held. 1 when the header was consistent. */
static int watch_look(struct tailer_watch *w, uint32_t *changes, int64_t *seen_ms)
{
    struct wal_index_state index;
    struct tm_error ignored;
    if (wal_index_read(w->tailer->shm_fd, &index, &ignored) != 1)
        return 0;
    *changes = index.changes;
    *seen_ms = clock_now_ms();
    return 1;
}

/* Keeps a look's result if the counter moved; the lock is held. */
static void watch_note(struct tailer_watch *w, uint32_t changes, int64_t seen_ms)
{
    if (w->have_last && changes == w->last_changes)
        return;
    w->last_changes = changes;
    w->have_last = 1;
    if (w->seen_count == WATCH_SIGHTINGS)
        return;   /* the loop has been away a second: those commits get the scan's time */
    w->seen[w->seen_count++] = (struct sighting){changes, seen_ms};
}

static void *watch_thread(void *arg)
{
    struct tailer_watch *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        if (!w->armed_until_ms || clock_monotonic_ms() >= w->armed_until_ms) {
            w->armed_until_ms = 0;
            pthread_cond_wait(&w->wake, &w->lock);
            continue;
        }
        pthread_mutex_unlock(&w->lock);
        uint32_t changes;
        int64_t seen_ms;
        int looked = watch_look(w, &changes, &seen_ms);
        pthread_mutex_lock(&w->lock);
        if (looked)
            watch_note(w, changes, seen_ms);
        if (!w->stop)
            watch_nap(w);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* --------------------------------------------------------- the loop's side */

int tailer_watch_start(struct tailer *t, struct tm_error *err)
{
    struct tailer_watch *w = calloc(1, sizeof *w);
    if (!w)
        return tm_error_set(err, "out of memory");
    w->tailer = t;
    pthread_mutex_init(&w->lock, NULL);
    clock_monotonic_cond_init(&w->wake);   /* naps on the monotonic clock */
    t->watch = w;
    int rc = pthread_create(&w->thread, NULL, watch_thread, w);
    if (rc != 0)
        return tm_error_set(err, "cannot start the commit counter's watch thread: %s", strerror(rc));
    w->thread_started = 1;
    return 0;
}

void tailer_watch_free(struct tailer *t)
{
    struct tailer_watch *w = t->watch;
    if (!w)
        return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    }
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    free(w);
    t->watch = NULL;
}

void tailer_watch_writes(struct tailer *t)
{
    struct tailer_watch *w = t->watch;
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    int was_armed = w->armed_until_ms != 0;
    w->armed_until_ms = clock_monotonic_ms() + WATCH_QUIET_MS;
    if (!was_armed)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

size_t tailer_watch_take(struct tailer *t, struct sighting *out, size_t cap)
{
    struct tailer_watch *w = t->watch;
    if (!w)
        return 0;
    pthread_mutex_lock(&w->lock);
    size_t count = w->seen_count < cap ? w->seen_count : cap;
    memcpy(out, w->seen, count * sizeof *out);
    memmove(w->seen, w->seen + count, (w->seen_count - count) * sizeof *w->seen);
    w->seen_count -= count;
    pthread_mutex_unlock(&w->lock);
    return count;
}
