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
 * Proven frames are then shipped from memory, one WAL after the other,
 * through the tailer's usual switch (tailer_restart.c), and the commit
 * counter checks their number as after any restart: a commit counted but
 * not read, or read but never counted, is a new generation, never a
 * silent gap. What is left unproven is dropped. */
#include "tailer_internal.h"

#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AHEAD_MAX_BYTES (16u * 1024 * 1024)

static size_t frame_bytes(const struct tailer *t) { return WAL_FRAME_HEADER_BYTES + t->page_size; }

static uint8_t *run_frame(const struct tailer *t, const struct ahead_run *r, uint32_t i)
{
    return r->frames + (size_t)i * frame_bytes(t);
}

static int same_wal(const struct wal_header *a, uint32_t salt1, uint32_t salt2)
{
    return a->salt1 == salt1 && a->salt2 == salt2;
}

static size_t ahead_bytes(const struct tailer *t)
{
    size_t bytes = 0;
    for (size_t i = 0; i < t->run_count; i++)
        bytes += (size_t)t->runs[i].count * frame_bytes(t);
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

static void drop_first_runs(struct tailer *t, size_t count)
{
    for (size_t i = 0; i < count && i < t->run_count; i++)
        free(t->runs[i].frames);
    if (count > t->run_count)
        count = t->run_count;
    memmove(t->runs, t->runs + count, (t->run_count - count) * sizeof *t->runs);
    t->run_count -= count;
    memset(t->runs + t->run_count, 0, count * sizeof *t->runs);
}

void tailer_ahead_free(struct tailer *t) { drop_first_runs(t, t->run_count); }

static int run_of(const struct tailer *t, uint32_t salt1, uint32_t salt2)
{
    for (size_t i = 0; i < t->run_count; i++)
        if (same_wal(&t->runs[i].hdr, salt1, salt2))
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
static void run_trim(const struct tailer *t, struct ahead_run *r, const struct wal_position *pos)
{
    if (r->from.frame == pos->frame)
        return;
    if (r->count && pos->frame > r->from.frame && pos->frame <= r->end.frame) {
        uint32_t dropped = pos->frame - r->from.frame;
        struct wal_frame_header fh;
        wal_frame_header_decode(run_frame(t, r, dropped - 1), &fh);
        if (fh.checksum[0] == pos->checksum[0] && fh.checksum[1] == pos->checksum[1]) {
            memmove(r->frames, run_frame(t, r, dropped), (size_t)(r->count - dropped) * frame_bytes(t));
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
static void keep_from_followed(struct tailer *t)
{
    if (!t->have_header)
        return;
    size_t older = 0;
    while (older < t->run_count && !same_wal(&t->runs[older].hdr, t->hdr.salt1, t->hdr.salt2) &&
           t->runs[older].hdr.checkpoint_seq <= t->hdr.checkpoint_seq)
        older++;
    drop_first_runs(t, older);
    if (t->run_count && same_wal(&t->runs[0].hdr, t->hdr.salt1, t->hdr.salt2) && !t->switching)
        run_trim(t, &t->runs[0], &t->scanned);
}

/* Appends the run's next frames from the WAL file, as far as they are
 * valid and written whole (and AHEAD_MAX_BYTES allows). */
static int run_extend(struct tailer *t, struct ahead_run *r, struct tm_error *err)
{
    struct stat st;
    if (fstat(t->wal_fd, &st) != 0)
        return tm_error_set(err, "cannot stat '%s': %s", t->wal_path, strerror(errno));
    size_t one = frame_bytes(t), total = ahead_bytes(t);
    while (wal_frame_offset(&r->hdr, r->end.frame + 1) + one <= (uint64_t)st.st_size) {
        if (total + one > AHEAD_MAX_BYTES)
            return 0;   /* a huge transaction: its frames stay in the WAL until published */
        if ((size_t)(r->count + 1) * one > r->cap) {
            size_t bigger = r->cap ? r->cap * 2 : 16 * one;
            uint8_t *grown = realloc(r->frames, bigger);
            if (!grown)
                return tm_error_set(err, "out of memory");
            r->frames = grown;
            r->cap = bigger;
        }
        uint8_t *frame = run_frame(t, r, r->count);
        int got = tailer_read_exactly(t->wal_fd, frame, one, (off_t)wal_frame_offset(&r->hdr, r->end.frame + 1),
                                      t->wal_path, err);
        if (got < 0)
            return -1;
        struct wal_position next;
        if (got == 0 || !wal_frame_follows(&r->hdr, &r->end, frame, &next))
            return 0;
        r->end = next;
        r->count++;
        total += one;
    }
    return 0;
}

/* The run for the WAL whose header is on disk now: found, or started
 * (from the scanned position for the followed WAL, else frame 0). NULL
 * when no more can be kept. */
static struct ahead_run *run_for(struct tailer *t, const struct wal_header *on_disk)
{
    int i = run_of(t, on_disk->salt1, on_disk->salt2);
    if (i >= 0)
        return &t->runs[i];
    if (t->run_count == AHEAD_RUNS)
        return NULL;
    if (t->run_count && on_disk->checkpoint_seq <= t->runs[t->run_count - 1].hdr.checkpoint_seq)
        tailer_ahead_free(t);   /* not the next WAL generation: the coordination was reset */
    struct ahead_run *r = &t->runs[t->run_count++];
    memset(r, 0, sizeof *r);
    r->hdr = *on_disk;
    int followed = t->have_header && same_wal(&t->hdr, on_disk->salt1, on_disk->salt2);
    struct wal_position start = followed && !t->switching ? t->scanned : wal_position_start(on_disk);
    run_restart(r, &start);
    return r;
}

int tailer_read_ahead(struct tailer *t, struct tm_error *err)
{
    if (!t->coord)
        return 0;
    uint8_t bytes[WAL_HEADER_BYTES];
    int got = tailer_read_exactly(t->wal_fd, bytes, sizeof bytes, 0, t->wal_path, err);
    if (got <= 0)
        return got;
    struct wal_header on_disk;
    struct tm_error ignored;
    if (wal_header_parse(bytes, &on_disk, &ignored) != 0 || on_disk.page_size != t->page_size)
        return 0;
    keep_from_followed(t);
    if (t->have_header && on_disk.checkpoint_seq < t->hdr.checkpoint_seq)
        return 0;
    struct ahead_run *r = run_for(t, &on_disk);
    if (!r)
        return 0;
    uint32_t before = r->count;
    if (run_extend(t, r, err) != 0)
        return -1;
    if (r->count == before && r->count) {
        /* nothing follows the chain: rewritten after a failed commit?
         * read it again from where it starts */
        struct wal_position from = r->from;
        run_restart(r, &from);
        if (run_extend(t, r, err) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ proofs */

/* The number of the run's frames up to its last commit frame (0: none),
 * with that commit's database size. */
static uint32_t last_commit_of(const struct tailer *t, const struct ahead_run *r, uint32_t *db_size)
{
    for (uint32_t i = r->count; i-- > 0;) {
        struct wal_frame_header fh;
        wal_frame_header_decode(run_frame(t, r, i), &fh);
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
        wal_frame_header_decode(run_frame(t, r, p->frame - r->from.frame - 1), &fh);
        /* a frame's header holds the running checksum up to it */
        if (fh.db_size_after_commit && fh.checksum[0] == p->checksum[0] && fh.checksum[1] == p->checksum[1])
            best = p->frame - r->from.frame;
    }
    return best;
}

/* Whether a later frame of runs[first..last] (up to each one's commit
 * limit) holds page `page` than frame `index` of run `run`. */
static int rewritten_later(const struct tailer *t, size_t run, uint32_t index, size_t last, const uint32_t *limit,
                           uint32_t page)
{
    for (size_t j = run; j <= last; j++)
        for (uint32_t i = j == run ? index + 1 : 0; i < limit[j]; i++) {
            struct wal_frame_header fh;
            wal_frame_header_decode(run_frame(t, &t->runs[j], i), &fh);
            if (fh.page_number == page)
                return 1;
        }
    return 0;
}

/* Whether the database file holds the last version of every page of
 * runs[first..last] (each up to limit[]) and is db_size pages long. */
static int database_file_holds(struct tailer *t, size_t first, size_t last, const uint32_t *limit, uint32_t db_size,
                               struct tm_error *err)
{
    int db_fd = open(t->db_path, O_RDONLY | O_CLOEXEC);
    if (db_fd < 0)
        return 0;
    struct stat st;
    uint8_t *page = malloc(t->page_size);
    int holds = page && fstat(db_fd, &st) == 0 && (uint64_t)st.st_size == (uint64_t)db_size * t->page_size;
    for (size_t j = first; holds && j <= last; j++)
        for (uint32_t i = 0; holds && i < limit[j]; i++) {
            const uint8_t *frame = run_frame(t, &t->runs[j], i);
            struct wal_frame_header fh;
            wal_frame_header_decode(frame, &fh);
            if (fh.page_number > db_size || rewritten_later(t, j, i, last, limit, fh.page_number))
                continue;
            holds = tailer_read_exactly(db_fd, page, t->page_size, (off_t)(fh.page_number - 1) * t->page_size,
                                        t->db_path, err) == 1 &&
                    memcmp(page, frame + WAL_FRAME_HEADER_BYTES, t->page_size) == 0;
        }
    free(page);
    close(db_fd);
    return holds;
}

/* Marks each gone run's proven frames; returns how many runs are gone
 * (runs[0..gone-1]: checkpoint_seq below the engine's current one). */
static size_t prove_gone_runs(struct tailer *t, struct tm_error *err)
{
    struct tshm_state now;
    if (tshm_read(t->coord, &now, err) != 1)
        return 0;
    size_t gone = 0;
    while (gone < t->run_count && t->runs[gone].hdr.checkpoint_seq < now.checkpoint_seq)
        gone++;
    if (!gone)
        return 0;
    uint32_t limit[AHEAD_RUNS] = {0}, db_size = 0;
    /* every WAL generation from the followed one (or the one after it,
     * when nothing of the followed one is left unread) to the last gone */
    int first_is_followed = t->have_header && same_wal(&t->runs[0].hdr, t->hdr.salt1, t->hdr.salt2);
    int consecutive = !now.backfilled && t->runs[gone - 1].hdr.checkpoint_seq + 1 == now.checkpoint_seq &&
                      (!t->have_header || first_is_followed ||
                       t->runs[0].hdr.checkpoint_seq == t->hdr.checkpoint_seq + 1);
    for (size_t j = 0; j < gone; j++) {
        uint32_t size_here = 0;
        limit[j] = last_commit_of(t, &t->runs[j], &size_here);
        if (size_here)
            db_size = size_here;
        if (j && t->runs[j].hdr.checkpoint_seq != t->runs[j - 1].hdr.checkpoint_seq + 1)
            consecutive = 0;
        /* a later WAL's run starts at its frame 1; the followed one's at
         * the scanned position */
        if ((j || !first_is_followed) && t->runs[j].from.frame != 0)
            consecutive = 0;
        if (j == 0 && first_is_followed && t->runs[0].from.frame != t->scanned.frame)
            consecutive = 0;
    }
    int by_file = consecutive && db_size && database_file_holds(t, 0, gone - 1, limit, db_size, err);
    for (size_t j = 0; j < gone; j++) {
        uint32_t published = proven_by_publication(t, &t->runs[j]);
        t->runs[j].proven = by_file && limit[j] > published ? limit[j] : published;
    }
    log_debug("'%s': %zu WAL(s) gone with frames read ahead (%s)", t->wal_path, gone,
              by_file ? "the database file holds them" : "only what was seen published counts");
    return gone;
}

/* ----------------------------------------------------------- adopting */

/* Moves the first `frames` frames of run r into the tail (after the
 * pending frames already there) and records their commits. */
static int adopt(struct tailer *t, struct ahead_run *r, uint32_t frames, struct tm_error *err)
{
    size_t one = frame_bytes(t), kept = t->pending_count && t->tail ? t->tail_frames : 0;
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
        const uint8_t *frame = run_frame(t, r, i);
        wal_frame_follows(&r->hdr, &pos, frame, &pos);
        struct wal_frame_header fh;
        wal_frame_header_decode(frame, &fh);
        if (fh.db_size_after_commit && tailer_record_commit(t, &pos, fh.db_size_after_commit, err) != 0)
            return -1;
    }
    t->scanned = pos;
    run_trim(t, r, &pos);
    return 0;
}

int tailer_ahead_adopt(struct tailer *t, struct tm_error *err)
{
    keep_from_followed(t);
    if (!t->run_count)
        return 0;
    /* the frames not shipped must already be in memory: the file's are gone */
    if (t->pending_count && !tailer_tail_covers_pending(t))
        return 0;
    struct tm_error why;
    size_t gone = prove_gone_runs(t, &why);
    /* a gone run with commits and none proven is a gap: it and the
     * ones after it cannot be used */
    for (size_t j = 0; j < gone; j++) {
        uint32_t db_size;
        if (!t->runs[j].proven && last_commit_of(t, &t->runs[j], &db_size)) {
            log_debug("'%s': frames read ahead in WAL generation %u not proven committed", t->wal_path,
                      t->runs[j].hdr.checkpoint_seq);
            for (size_t k = j; k < gone; k++)
                t->runs[k].proven = 0;
            break;
        }
    }
    struct ahead_run *followed = t->have_header && t->run_count && same_wal(&t->runs[0].hdr, t->hdr.salt1, t->hdr.salt2)
                                     ? &t->runs[0] : NULL;
    if (!followed || !followed->proven || t->switching)
        return 0;
    log_debug("'%s': frames %u-%u read ahead taken as committed", t->wal_path, followed->from.frame + 1,
              followed->from.frame + followed->proven);
    return adopt(t, followed, followed->proven, err);
}

int tailer_ahead_follow_next(struct tailer *t, const struct wal_header *fresh, struct tm_error *err)
{
    if (!t->coord)
        return 0;
    /* the WAL followed until now is done with: its run too */
    size_t done = 0;
    while (t->have_header && done < t->run_count && t->runs[done].hdr.checkpoint_seq <= t->hdr.checkpoint_seq)
        done++;
    drop_first_runs(t, done);
    for (size_t j = 0; j < t->run_count; j++) {
        struct ahead_run *r = &t->runs[j];
        if (t->have_header && r->hdr.checkpoint_seq <= t->hdr.checkpoint_seq)
            continue;
        if (!r->proven || r->from.frame != 0 || (fresh && same_wal(&r->hdr, fresh->salt1, fresh->salt2)))
            return 0;
        drop_first_runs(t, j);
        r = &t->runs[0];
        t->hdr = r->hdr;
        t->have_header = 1;
        t->shipped = t->scanned = wal_position_start(&r->hdr);
        t->index_max_seen = 0;
        log_debug("'%s': WAL generation %u (gone) followed from what was read ahead: %u frame(s)", t->wal_path,
                  r->hdr.checkpoint_seq, r->proven);
        if (adopt(t, r, r->proven, err) != 0)
            return -1;
        t->switching = 1;   /* shipped from memory first, then the next one */
        return 1;
    }
    return 0;
}

int tailer_ahead_has_next(const struct tailer *t)
{
    if (!t->coord)
        return 0;
    for (size_t j = 0; j < t->run_count; j++)
        if ((!t->have_header || t->runs[j].hdr.checkpoint_seq > t->hdr.checkpoint_seq) && t->runs[j].proven &&
            t->runs[j].from.frame == 0)
            return 1;
    return 0;
}
