/* tailer_ahead.c - the Turso route's copy of the WAL frames the engine
 * writes, read as it writes them, so that a TRUNCATE checkpoint right
 * after a commit does not take the commit unread.
 *
 * DESIGN
 *
 * An application that checkpoints with TRUNCATE right after it commits
 * (Turso Sync does) empties the WAL within a millisecond of publishing
 * the commit: the engine never waits for a reader, and the sidecar holds
 * no reader slot then (tailer_turso.c), so it can be too late to read the
 * commit where the SQLite route would have been waited for. So the frames
 * are read as the engine writes them - on the WAL's inotify event and at
 * every poll, before the engine has even published them - and kept in
 * memory, one run per WAL file generation (the followed one from the
 * scanned position, later ones from their frame 1), AHEAD_MAX_BYTES in
 * all. A run is a chain of valid frames (salts and running checksum).
 *
 * Frames read before they are published prove nothing by themselves: a
 * writer that died between writing its commit frame and publishing it
 * leaves a valid-looking transaction that the next writer overwrites.
 * When the WAL followed is found gone (truncated, or restarted and
 * rewritten), the runs' commits count only when proven, in one of two
 * ways:
 *
 *  - seen published: the coordination file was seen publishing a commit
 *    end of the run (the same frame, salts and running checksum, which
 *    covers every byte of every frame up to it): the run up to it;
 *  - held by the database file: the engine follows a WAL with nothing
 *    copied into the database file yet (nbackfills 0), and the runs cover
 *    every WAL generation since the followed one, consecutively (their
 *    checkpoint_seq), up to the one just before it. A WAL is restarted or
 *    truncated only once wholly copied into the database file, so the
 *    file is exactly the state at the last one's end: every page the runs
 *    wrote (its last version) must be in it byte for byte, and its size
 *    must be the last commit's.
 *
 * The copy is kept by a thread of its own (ahead_thread), woken by
 * inotify at each write to the WAL: the daemon's loop can be busy for a
 * few milliseconds (a segment written and synced, a snapshot compressed),
 * long enough for a commit and a TRUNCATE to come and go. The thread
 * shares only `struct ahead`, under its lock: the runs, and a copy of
 * where the tailer stands (the cursor) that the loop's thread refreshes
 * whenever it calls in here. It writes nothing but memory, and reads the
 * WAL through the tailer's descriptor (pread).
 *
 * Proven frames are then shipped from memory, one WAL after the other,
 * through the tailer's usual switch (tailer_restart.c), and the commit
 * counter checks their number as after any restart: a commit counted but
 * not read, or read but never counted, is a new generation, never a
 * silent gap. What is left unproven is dropped. */
#include "tailer_internal.h"

#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define AHEAD_MAX_BYTES (16u * 1024 * 1024)
/* WAL file generations kept at most */
#define AHEAD_RUNS 8
/* The thread looks even without an event this often (a watch lost with
 * a WAL file re-created is added again then). */
#define AHEAD_IDLE_MS 100

struct ahead_run {
    struct wal_header hdr;      /* the WAL it is a chain of */
    struct wal_position from;   /* the chain starts after this (the scanned position, or frame 0) */
    struct wal_position end;    /* and ends here */
    uint8_t *frames;
    size_t cap;
    uint32_t count;
    uint32_t proven;            /* its first frames proven committed, once its WAL is gone */
};

struct ahead {
    pthread_mutex_t lock;
    /* fixed from the start */
    int wal_fd;
    const char *wal_path;
    uint32_t page_size;
    /* the thread */
    pthread_t thread;
    int running;
    int stop_pipe[2];
    int inotify_fd, watch;
    /* under lock: where the tailer stands (the cursor), and the runs */
    int have_header, switching;
    struct wal_header hdr;
    struct wal_position scanned;
    struct ahead_run runs[AHEAD_RUNS];
    size_t run_count;
};

static size_t frame_bytes(const struct ahead *a) { return WAL_FRAME_HEADER_BYTES + a->page_size; }

static uint8_t *run_frame(const struct ahead *a, const struct ahead_run *r, uint32_t i)
{
    return r->frames + (size_t)i * frame_bytes(a);
}

static int same_wal(const struct wal_header *h, uint32_t salt1, uint32_t salt2)
{
    return h->salt1 == salt1 && h->salt2 == salt2;
}

static size_t ahead_bytes(const struct ahead *a)
{
    size_t bytes = 0;
    for (size_t i = 0; i < a->run_count; i++)
        bytes += (size_t)a->runs[i].count * frame_bytes(a);
    return bytes;
}

void tailer_ahead_note_published(struct tailer *t, const struct wal_position *end)
{
    const struct wal_position *last = &t->published[(t->published_next + PUBLISHED_SEEN - 1) % PUBLISHED_SEEN];
    if (last->frame == end->frame && last->salt1 == end->salt1 && last->salt2 == end->salt2)
        return;
    t->published[t->published_next] = *end;
    t->published_next = (t->published_next + 1) % PUBLISHED_SEEN;
}

/* ------------------------------------------------------------- runs */

static void drop_first_runs(struct ahead *a, size_t count)
{
    if (count > a->run_count)
        count = a->run_count;
    for (size_t i = 0; i < count; i++)
        free(a->runs[i].frames);
    memmove(a->runs, a->runs + count, (a->run_count - count) * sizeof *a->runs);
    a->run_count -= count;
    memset(a->runs + a->run_count, 0, count * sizeof *a->runs);
}

static int run_of(const struct ahead *a, uint32_t salt1, uint32_t salt2)
{
    for (size_t i = 0; i < a->run_count; i++)
        if (same_wal(&a->runs[i].hdr, salt1, salt2))
            return (int)i;
    return -1;
}

static void run_restart(struct ahead_run *r, const struct wal_position *from)
{
    r->count = 0;
    r->proven = 0;
    r->from = r->end = *from;
}

/* Keeps only the run's frames after `pos` (which must lie on its chain),
 * else starts it again at pos. */
static void run_trim(const struct ahead *a, struct ahead_run *r, const struct wal_position *pos)
{
    if (r->from.frame == pos->frame)
        return;
    if (r->count && pos->frame > r->from.frame && pos->frame <= r->end.frame) {
        uint32_t dropped = pos->frame - r->from.frame;
        struct wal_frame_header fh;
        wal_frame_header_decode(run_frame(a, r, dropped - 1), &fh);
        if (fh.checksum[0] == pos->checksum[0] && fh.checksum[1] == pos->checksum[1]) {
            memmove(r->frames, run_frame(a, r, dropped), (size_t)(r->count - dropped) * frame_bytes(a));
            r->count -= dropped;
            r->proven = r->proven > dropped ? r->proven - dropped : 0;
            r->from = *pos;
            return;
        }
    }
    run_restart(r, pos);
}

/* Runs of WALs older than the followed one are dropped; the followed
 * one's keeps only what lies after the scanned position. */
static void keep_from_followed(struct ahead *a)
{
    if (!a->have_header)
        return;
    size_t older = 0;
    while (older < a->run_count && !same_wal(&a->runs[older].hdr, a->hdr.salt1, a->hdr.salt2) &&
           a->runs[older].hdr.checkpoint_seq <= a->hdr.checkpoint_seq)
        older++;
    drop_first_runs(a, older);
    if (a->run_count && same_wal(&a->runs[0].hdr, a->hdr.salt1, a->hdr.salt2) && !a->switching)
        run_trim(a, &a->runs[0], &a->scanned);
}

/* Appends the run's next frames from the WAL file, as far as they are
 * valid and written whole (and AHEAD_MAX_BYTES allows). 0 or -1. */
static int run_extend(struct ahead *a, struct ahead_run *r)
{
    struct stat st;
    if (fstat(a->wal_fd, &st) != 0)
        return -1;
    size_t one = frame_bytes(a), total = ahead_bytes(a);
    struct tm_error ignored;
    while (wal_frame_offset(&r->hdr, r->end.frame + 1) + one <= (uint64_t)st.st_size) {
        if (total + one > AHEAD_MAX_BYTES)
            return 0;   /* a huge transaction: its frames stay in the WAL until published */
        if ((size_t)(r->count + 1) * one > r->cap) {
            size_t bigger = r->cap ? r->cap * 2 : 16 * one;
            uint8_t *grown = realloc(r->frames, bigger);
            if (!grown)
                return -1;
            r->frames = grown;
            r->cap = bigger;
        }
        uint8_t *frame = run_frame(a, r, r->count);
        int got = tailer_read_exactly(a->wal_fd, frame, one, (off_t)wal_frame_offset(&r->hdr, r->end.frame + 1),
                                      a->wal_path, &ignored);
        struct wal_position next;
        if (got <= 0 || !wal_frame_follows(&r->hdr, &r->end, frame, &next))
            return got < 0 ? -1 : 0;
        r->end = next;
        r->count++;
        total += one;
    }
    return 0;
}

/* The run for the WAL whose header is on disk now: found, or started
 * (from the scanned position for the followed WAL, else frame 0). NULL
 * when no more can be kept. */
static struct ahead_run *run_for(struct ahead *a, const struct wal_header *on_disk)
{
    int i = run_of(a, on_disk->salt1, on_disk->salt2);
    if (i >= 0)
        return &a->runs[i];
    if (a->run_count == AHEAD_RUNS)
        return NULL;
    if (a->run_count && on_disk->checkpoint_seq <= a->runs[a->run_count - 1].hdr.checkpoint_seq)
        drop_first_runs(a, a->run_count);   /* not the next WAL generation: the coordination was reset */
    struct ahead_run *r = &a->runs[a->run_count++];
    memset(r, 0, sizeof *r);
    r->hdr = *on_disk;
    int followed = a->have_header && same_wal(&a->hdr, on_disk->salt1, on_disk->salt2);
    struct wal_position start = followed && !a->switching ? a->scanned : wal_position_start(on_disk);
    run_restart(r, &start);
    return r;
}

/* Nothing follows the run's chain: rewritten after a failed commit? Its
 * frames are read again from where it starts, into a second run, which
 * replaces it only if a frame differs or it is at least as long. A
 * shorter read with the same frames is a WAL truncated or restarted
 * meanwhile (the engine's TRUNCATE right after a commit): the frames held
 * are what the proofs need, and are kept. */
static void reread_run(struct ahead *a, struct ahead_run *r)
{
    struct ahead_run again = {.hdr = r->hdr};
    run_restart(&again, &r->from);
    /* as far as it went before (the bound counts the frames held, not these) */
    uint32_t held = r->count;
    r->count = 0;
    int rc = run_extend(a, &again);
    r->count = held;
    if (rc != 0) {
        free(again.frames);
        return;
    }
    uint32_t common = again.count < r->count ? again.count : r->count;
    int differs = common && memcmp(again.frames, r->frames, (size_t)common * frame_bytes(a)) != 0;
    if (!differs && again.count < r->count) {
        free(again.frames);
        return;
    }
    free(r->frames);
    *r = again;
}

/* One look at the WAL file, under the lock. */
static void read_ahead_locked(struct ahead *a)
{
    uint8_t bytes[WAL_HEADER_BYTES];
    struct tm_error ignored;
    if (tailer_read_exactly(a->wal_fd, bytes, sizeof bytes, 0, a->wal_path, &ignored) != 1)
        return;
    struct wal_header on_disk;
    if (wal_header_parse(bytes, &on_disk, &ignored) != 0 || on_disk.page_size != a->page_size)
        return;
    keep_from_followed(a);
    if (a->have_header && on_disk.checkpoint_seq < a->hdr.checkpoint_seq)
        return;
    struct ahead_run *r = run_for(a, &on_disk);
    if (!r)
        return;
    uint32_t before = r->count;
    if (run_extend(a, r) != 0 || r->count != before || !r->count)
        return;
    reread_run(a, r);
}

/* ----------------------------------------------------------- the thread */

static void *ahead_thread(void *arg)
{
    struct ahead *a = arg;
    char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        struct pollfd fds[2] = {{.fd = a->stop_pipe[0], .events = POLLIN}, {.fd = a->inotify_fd, .events = POLLIN}};
        int ready = poll(fds, a->inotify_fd >= 0 ? 2 : 1, AHEAD_IDLE_MS);
        if (ready < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break;
        if (a->inotify_fd >= 0) {
            ssize_t got;
            while ((got = read(a->inotify_fd, events, sizeof events)) > 0)
                for (char *p = events; p < events + got;) {
                    struct inotify_event *ev = (struct inotify_event *)p;
                    if (ev->mask & IN_IGNORED)
                        a->watch = -1;
                    p += sizeof *ev + ev->len;
                }
            if (a->watch < 0)
                a->watch = inotify_add_watch(a->inotify_fd, a->wal_path, IN_MODIFY);
        }
        pthread_mutex_lock(&a->lock);
        read_ahead_locked(a);
        pthread_mutex_unlock(&a->lock);
    }
    return NULL;
}

int tailer_ahead_start(struct tailer *t, struct tm_error *err)
{
    struct ahead *a = calloc(1, sizeof *a);
    if (!a)
        return tm_error_set(err, "out of memory");
    pthread_mutex_init(&a->lock, NULL);
    a->wal_fd = t->wal_fd;
    a->wal_path = t->wal_path;
    a->page_size = t->page_size;
    a->stop_pipe[0] = a->stop_pipe[1] = -1;
    a->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    a->watch = a->inotify_fd >= 0 ? inotify_add_watch(a->inotify_fd, t->wal_path, IN_MODIFY) : -1;
    t->ahead = a;
    if (pipe2(a->stop_pipe, O_CLOEXEC) != 0)
        return tm_error_set(err, "cannot create a pipe: %s", strerror(errno));
    int rc = pthread_create(&a->thread, NULL, ahead_thread, a);
    if (rc != 0)
        return tm_error_set(err, "cannot start the WAL reading thread: %s", strerror(rc));
    a->running = 1;
    return 0;
}

void tailer_ahead_free(struct tailer *t)
{
    struct ahead *a = t->ahead;
    if (!a)
        return;
    if (a->running) {
        char stop = 1;
        if (write(a->stop_pipe[1], &stop, 1) != 1)
            pthread_cancel(a->thread);
        pthread_join(a->thread, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (a->stop_pipe[i] >= 0)
            close(a->stop_pipe[i]);
    if (a->inotify_fd >= 0)
        close(a->inotify_fd);
    drop_first_runs(a, a->run_count);
    pthread_mutex_destroy(&a->lock);
    free(a);
    t->ahead = NULL;
}

/* Takes the lock and tells the copy where the tailer stands now. */
static struct ahead *enter(struct tailer *t)
{
    struct ahead *a = t->ahead;
    pthread_mutex_lock(&a->lock);
    a->have_header = t->have_header;
    a->switching = t->switching;
    a->hdr = t->hdr;
    a->scanned = t->scanned;
    keep_from_followed(a);
    return a;
}

static void leave(struct ahead *a) { pthread_mutex_unlock(&a->lock); }

int tailer_read_ahead(struct tailer *t, struct tm_error *err)
{
    (void)err;
    if (!t->coord || !t->ahead)
        return 0;
    struct ahead *a = enter(t);
    if (!a->running)
        read_ahead_locked(a);
    leave(a);
    return 0;
}

int tailer_ahead_has_runs(struct tailer *t)
{
    if (!t->ahead)
        return 0;
    struct ahead *a = enter(t);
    int any = a->run_count > 0;
    leave(a);
    return any;
}

/* ------------------------------------------------------------ proofs
 * (all under the lock, on the loop's thread) */

/* The number of the run's frames up to its last commit frame (0: none),
 * with that commit's database size. */
static uint32_t last_commit_of(const struct ahead *a, const struct ahead_run *r, uint32_t *db_size)
{
    for (uint32_t i = r->count; i-- > 0;) {
        struct wal_frame_header fh;
        wal_frame_header_decode(run_frame(a, r, i), &fh);
        if (fh.db_size_after_commit) {
            *db_size = fh.db_size_after_commit;
            return i + 1;
        }
    }
    return 0;
}

/* Frames of the run up to the last commit end seen published in it. */
static uint32_t proven_by_publication(const struct tailer *t, const struct ahead_run *r)
{
    uint32_t best = 0;
    for (size_t k = 0; k < PUBLISHED_SEEN; k++) {
        const struct wal_position *p = &t->published[k];
        if (!p->frame || !same_wal(&r->hdr, p->salt1, p->salt2) || p->frame <= r->from.frame ||
            p->frame > r->end.frame || p->frame - r->from.frame <= best)
            continue;
        struct wal_frame_header fh;
        wal_frame_header_decode(run_frame(t->ahead, r, p->frame - r->from.frame - 1), &fh);
        /* a frame's header holds the running checksum up to it */
        if (fh.db_size_after_commit && fh.checksum[0] == p->checksum[0] && fh.checksum[1] == p->checksum[1])
            best = p->frame - r->from.frame;
    }
    return best;
}

/* Whether a frame of runs[run..last] after frame `index` of run `run`
 * (each run up to limit[]) holds page `page` too. */
static int rewritten_later(const struct ahead *a, size_t run, uint32_t index, size_t last, const uint32_t *limit,
                           uint32_t page)
{
    for (size_t j = run; j <= last; j++)
        for (uint32_t i = j == run ? index + 1 : 0; i < limit[j]; i++) {
            struct wal_frame_header fh;
            wal_frame_header_decode(run_frame(a, &a->runs[j], i), &fh);
            if (fh.page_number == page)
                return 1;
        }
    return 0;
}

/* Whether the database file holds the last version of every page of
 * runs[0..last] (each up to limit[]) and is db_size pages long. */
static int database_file_holds(const struct tailer *t, size_t last, const uint32_t *limit, uint32_t db_size,
                               struct tm_error *err)
{
    const struct ahead *a = t->ahead;
    int db_fd = open(t->db_path, O_RDONLY | O_CLOEXEC);
    if (db_fd < 0)
        return 0;
    struct stat st;
    uint8_t *page = malloc(t->page_size);
    int holds = page && fstat(db_fd, &st) == 0 && (uint64_t)st.st_size == (uint64_t)db_size * t->page_size;
    for (size_t j = 0; holds && j <= last; j++)
        for (uint32_t i = 0; holds && i < limit[j]; i++) {
            const uint8_t *frame = run_frame(a, &a->runs[j], i);
            struct wal_frame_header fh;
            wal_frame_header_decode(frame, &fh);
            if (fh.page_number > db_size || rewritten_later(a, j, i, last, limit, fh.page_number))
                continue;
            holds = tailer_read_exactly(db_fd, page, t->page_size, (off_t)(fh.page_number - 1) * t->page_size,
                                        t->db_path, err) == 1 &&
                    memcmp(page, frame + WAL_FRAME_HEADER_BYTES, t->page_size) == 0;
        }
    free(page);
    close(db_fd);
    return holds;
}

/* Whether runs[0..gone-1] are every WAL generation from the followed one
 * (or the one after it, when nothing of the followed one was left
 * unread) to the one just before `now`, each whole from where it had to
 * start, and nothing of `now` copied into the database file yet. */
static int consecutive_to_now(const struct tailer *t, size_t gone, const struct tshm_state *now)
{
    const struct ahead *a = t->ahead;
    int first_is_followed = t->have_header && same_wal(&a->runs[0].hdr, t->hdr.salt1, t->hdr.salt2);
    if (now->backfilled || a->runs[gone - 1].hdr.checkpoint_seq + 1 != now->checkpoint_seq)
        return 0;
    if (t->have_header && !first_is_followed && a->runs[0].hdr.checkpoint_seq != t->hdr.checkpoint_seq + 1)
        return 0;
    if (first_is_followed && a->runs[0].from.frame != t->scanned.frame)
        return 0;
    for (size_t j = 0; j < gone; j++) {
        if (j && a->runs[j].hdr.checkpoint_seq != a->runs[j - 1].hdr.checkpoint_seq + 1)
            return 0;
        if ((j || !first_is_followed) && a->runs[j].from.frame != 0)   /* a later WAL's run: from its frame 1 */
            return 0;
    }
    return 1;
}

/* Marks each gone run's proven frames; returns how many runs are gone
 * (runs[0..gone-1]: checkpoint_seq below the engine's current one). */
static size_t prove_gone_runs(struct tailer *t, struct tm_error *err)
{
    struct ahead *a = t->ahead;
    struct tshm_state now;
    if (tshm_read(t->coord, &now, err) != 1)
        return 0;
    size_t gone = 0;
    while (gone < a->run_count && a->runs[gone].hdr.checkpoint_seq < now.checkpoint_seq)
        gone++;
    if (!gone)
        return 0;
    uint32_t limit[AHEAD_RUNS] = {0}, db_size = 0;
    for (size_t j = 0; j < gone; j++) {
        uint32_t size_here = 0;
        limit[j] = last_commit_of(a, &a->runs[j], &size_here);
        if (size_here)
            db_size = size_here;
    }
    int consecutive = db_size && consecutive_to_now(t, gone, &now);
    int by_file = consecutive && database_file_holds(t, gone - 1, limit, db_size, err);
    log_debug("'%s': proof of %zu gone WAL(s) (first ckseq %u from %u, count %u, limit %u; followed ckseq %u "
              "scanned %u; now ckseq %u backfilled %u): consecutive %d, database file %d", t->wal_path, gone,
              a->runs[0].hdr.checkpoint_seq, a->runs[0].from.frame, a->runs[0].count, limit[0],
              t->have_header ? t->hdr.checkpoint_seq : 0, t->scanned.frame, now.checkpoint_seq, now.backfilled,
              consecutive, by_file);
    for (size_t j = 0; j < gone; j++) {
        uint32_t published = proven_by_publication(t, &a->runs[j]);
        uint32_t proven = by_file && limit[j] > published ? limit[j] : published;
        if (proven > a->runs[j].proven)   /* a proof stays: the database file moves on */
            a->runs[j].proven = proven;
    }
    /* a gone run with commits and none proven is a gap: it and the ones
     * after it cannot be used */
    for (size_t j = 0; j < gone; j++) {
        uint32_t size_here;
        if (a->runs[j].proven || !last_commit_of(a, &a->runs[j], &size_here))
            continue;
        log_debug("'%s': frames read ahead in WAL generation %u not proven committed", t->wal_path,
                  a->runs[j].hdr.checkpoint_seq);
        for (size_t k = j; k < gone; k++)
            a->runs[k].proven = 0;
        break;
    }
    return gone;
}

/* ----------------------------------------------------------- adopting */

/* Moves the first `frames` frames of run r into the tail (after the
 * pending frames already there) and records their commits. */
static int adopt(struct tailer *t, struct ahead_run *r, uint32_t frames, struct tm_error *err)
{
    struct ahead *a = t->ahead;
    size_t one = frame_bytes(a), kept = t->pending_count && t->tail ? t->tail_frames : 0;
    if (!kept)
        t->tail_first = t->shipped.frame + 1;
    size_t need = (kept + frames) * one;
    if (need > t->tail_cap) {
        uint8_t *grown = realloc(t->tail, need);
        if (!grown)
            return tm_error_set(err, "out of memory");
        t->tail = grown;
        t->tail_cap = need;
    }
    memcpy(t->tail + kept * one, r->frames, (size_t)frames * one);
    t->tail_frames = (uint32_t)(kept + frames);
    struct wal_position pos = r->from;
    for (uint32_t i = 0; i < frames; i++) {
        const uint8_t *frame = run_frame(a, r, i);
        wal_frame_follows(&r->hdr, &pos, frame, &pos);
        struct wal_frame_header fh;
        wal_frame_header_decode(frame, &fh);
        if (fh.db_size_after_commit && tailer_record_commit(t, &pos, fh.db_size_after_commit, err) != 0)
            return -1;
    }
    t->scanned = pos;
    run_trim(a, r, &pos);
    a->scanned = pos;
    return 0;
}

static int adopt_locked(struct tailer *t, struct tm_error *err)
{
    struct ahead *a = t->ahead;
    if (!a->run_count)
        return 0;
    /* the frames not shipped must already be in memory: the file's are gone */
    if (t->pending_count && !tailer_tail_covers_pending(t))
        return 0;
    struct tm_error why;
    size_t gone = prove_gone_runs(t, &why);
    struct ahead_run *followed = t->have_header && same_wal(&a->runs[0].hdr, t->hdr.salt1, t->hdr.salt2)
                                     ? &a->runs[0] : NULL;
    log_debug("'%s': %zu WAL(s) gone with frames read ahead; %u of the followed one's proven", t->wal_path, gone,
              followed ? followed->proven : 0);
    if (!followed || !followed->proven || t->switching)
        return 0;
    return adopt(t, followed, followed->proven, err);
}

int tailer_ahead_adopt(struct tailer *t, struct tm_error *err)
{
    if (!t->ahead)
        return 0;
    struct ahead *a = enter(t);
    int rc = adopt_locked(t, err);
    leave(a);
    return rc;
}

static int follow_next_locked(struct tailer *t, const struct wal_header *fresh, struct tm_error *err)
{
    struct ahead *a = t->ahead;
    /* the WAL followed until now is done with: its run too */
    size_t done = 0;
    while (t->have_header && done < a->run_count && a->runs[done].hdr.checkpoint_seq <= t->hdr.checkpoint_seq)
        done++;
    drop_first_runs(a, done);
    if (!a->run_count)
        return 0;
    /* WALs gone since the proof at the followed one's end (a TRUNCATE
     * while its tail was shipped): proven now, while the database file
     * is still their state */
    struct tm_error why;
    if (!a->runs[0].proven)
        prove_gone_runs(t, &why);
    struct ahead_run *r = &a->runs[0];
    if (!r->proven || r->from.frame != 0 || (fresh && same_wal(&r->hdr, fresh->salt1, fresh->salt2)))
        return 0;
    t->hdr = r->hdr;
    t->have_header = 1;
    t->shipped = t->scanned = wal_position_start(&r->hdr);
    t->index_max_seen = 0;
    log_debug("'%s': WAL generation %u (gone) followed from what was read ahead: %u frame(s)", t->wal_path,
              r->hdr.checkpoint_seq, r->proven);
    if (adopt(t, r, r->proven, err) != 0)
        return -1;
    t->switching = 1;   /* shipped from memory first, then the next one */
    a->hdr = t->hdr;
    a->have_header = 1;
    a->switching = 1;
    return 1;
}

int tailer_ahead_follow_next(struct tailer *t, const struct wal_header *fresh, struct tm_error *err)
{
    if (!t->coord || !t->ahead)
        return 0;
    struct ahead *a = enter(t);
    int rc = follow_next_locked(t, fresh, err);
    leave(a);
    return rc;
}

int tailer_ahead_has_next(struct tailer *t)
{
    if (!t->coord || !t->ahead)
        return 0;
    struct ahead *a = enter(t);
    int found = 0;
    for (size_t j = 0; j < a->run_count && !found; j++)
        found = (!t->have_header || a->runs[j].hdr.checkpoint_seq > t->hdr.checkpoint_seq) && a->runs[j].proven &&
                a->runs[j].from.frame == 0;
    leave(a);
    return found;
}
