/* tailer_restart.c - the tailer across WAL restarts. When the WAL
 * restarts, the old WAL's frames not shipped yet are read into memory
 * (the tail) and shipped from there before the new WAL is followed from
 * its frame 1; the wal-index's commit counter (iChange) then proves that
 * no commit was missed. Also here: an emptied WAL (a TRUNCATE
 * checkpoint), tailer_detach (the pending frames read into memory so that
 * the pin can be let go), and resuming after a release (the WAL restarted
 * exactly once since). The argument: the DESIGN comment in tailer.c. */
#include "tailer_internal.h"

#include "../common/log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The most of an old WAL's unshipped tail kept in memory after a restart. */
#define TAIL_MAX_BYTES (64u * 1024 * 1024)
/* The tail is read this many frames at a time (one pread each). */
#define TAIL_READ_FRAMES 256

/* ------------------------------------------------- the tail in memory */

/* Appends to *buf (capacity *cap, *kept frames) the chain of valid
 * frames of the followed WAL after *pos, up to frame `stop` (0: as far as
 * it goes, within TAIL_MAX_BYTES); *last_commit and *commit_frames end at
 * its last commit frame; commits past `scanned` are recorded. */
/* Grows *buf (capacity *cap) to hold at least `bytes`: doubling, or to
 * `bytes` at once when that is more. */
static int grow_tail(uint8_t **buf, size_t *cap, size_t bytes, struct tm_error *err)
{
    if (bytes <= *cap)
        return 0;
    size_t bigger = *cap * 2 > bytes ? *cap * 2 : bytes;
    uint8_t *grown = realloc(*buf, bigger);
    if (!grown)
        return tm_error_set(err, "out of memory");
    *buf = grown;
    *cap = bigger;
    return 0;
}

static int read_chain_until(struct tailer *t, uint8_t **buf, size_t *cap, size_t *kept, struct wal_position *pos,
                            struct wal_position *last_commit, uint32_t *commit_frames, uint32_t stop,
                            struct tm_error *err)
{
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + t->hdr.page_size, most = TAIL_MAX_BYTES / frame_bytes;
    /* with a known end, the buffer is sized once */
    if (stop > pos->frame && grow_tail(buf, cap, (*kept + (stop - pos->frame < most ? stop - pos->frame : most)) *
                                                     frame_bytes, err) != 0)
        return -1;
    while (!stop || pos->frame < stop) {
        if (*kept + 1 > most) {
            tm_error_set(err, "more than %u MiB of the WAL not shipped", TAIL_MAX_BYTES >> 20);
            return TAILER_BROKEN;
        }
        size_t want = TAIL_READ_FRAMES;
        if (stop && stop - pos->frame < want)
            want = stop - pos->frame;
        if (*kept + want > most)
            want = most - *kept;
        if (grow_tail(buf, cap, (*kept + want) * frame_bytes, err) != 0)
            return -1;
        uint8_t *batch = *buf + *kept * frame_bytes;
        ssize_t got = pread(t->wal_fd, batch, want * frame_bytes, (off_t)wal_frame_offset(&t->hdr, pos->frame + 1));
        size_t whole = got > 0 ? (size_t)got / frame_bytes : 0;
        for (size_t i = 0; i < whole; i++) {
            const uint8_t *frame = batch + i * frame_bytes;
            struct wal_position next;
            if (!wal_frame_follows(&t->hdr, pos, frame, &next))
                return 0;   /* the chain ends here */
            struct wal_frame_header fh;
            wal_frame_header_decode(frame, &fh);
            (*kept)++;
            *pos = next;
            if (fh.db_size_after_commit) {
                *last_commit = next;
                *commit_frames = (uint32_t)*kept;
                if (next.frame > t->scanned.frame && tailer_record_commit(t, &next, fh.db_size_after_commit, err) != 0)
                    return -1;
            }
        }
        if (whole < want)
            return 0;   /* the file ends here */
    }
    return 0;
}

static int read_chain(struct tailer *t, uint8_t **buf, size_t *cap, size_t *kept, struct wal_position *pos,
                      struct wal_position *last_commit, uint32_t *commit_frames, struct tm_error *err)
{
    return read_chain_until(t, buf, cap, kept, pos, last_commit, commit_frames, 0, err);
}

/* After a restart: reads the old WAL's frames after `shipped` - a chain
 * of valid frames, as far as it goes - into memory, so that what was not
 * shipped yet can still be, and records the commits past `scanned` (a
 * restart that happened while no pin protected them). Whether that was
 * every commit is checked by the commit counter at the next scan that
 * reaches the new WAL's end. 0, TAILER_BROKEN or -1. */
static int recover_tail(struct tailer *t, struct tm_error *err)
{
    /* frames up to `scanned` may already be in memory (tailer_detach) */
    int detached = tailer_tail_covers_pending(t);
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + t->hdr.page_size, kept = detached ? t->tail_frames : 0;
    size_t cap = detached ? t->tail_cap : 0;
    (void)frame_bytes;
    uint8_t *buf = detached ? t->tail : NULL;
    struct wal_position pos = detached ? t->scanned : t->shipped, last_commit = pos;
    uint32_t commit_frames = (uint32_t)kept;
    if (detached)
        t->tail = NULL;   /* buf owns it now */
    int rc = read_chain(t, &buf, &cap, &kept, &pos, &last_commit, &commit_frames, err);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    if (last_commit.frame < t->scanned.frame ||
        (t->scanned.frame > t->shipped.frame && last_commit.frame == t->scanned.frame &&
         memcmp(last_commit.checksum, t->scanned.checksum, sizeof last_commit.checksum) != 0)) {
        free(buf);
        tm_error_set(err, "the WAL restarted and overwrote frames %u-%u before they were shipped",
                     t->shipped.frame + 1, t->scanned.frame);
        return TAILER_BROKEN;
    }
    free(t->tail);
    t->tail = buf;
    t->tail_cap = cap;
    t->tail_first = t->shipped.frame + 1;
    t->tail_frames = commit_frames;
    if (last_commit.frame > t->scanned.frame)
        t->scanned = last_commit;
    return 0;
}

/* Whether every pending frame is in memory (tailer_detach). */
int tailer_tail_covers_pending(const struct tailer *t)
{
    return t->tail && t->tail_first == t->shipped.frame + 1 &&
           t->tail_first + t->tail_frames - 1 == t->scanned.frame;
}

int tailer_detach(struct tailer *t, struct tm_error *err)
{
    if (!t->pending_count || tailer_tail_covers_pending(t))
        return 0;
    if (t->switching)
        return TAILER_LATER;
    size_t cap = 0, kept = 0;
    uint8_t *buf = NULL;
    struct wal_position pos = t->shipped, last_commit = t->shipped;
    uint32_t commit_frames = 0;
    if (t->tail && t->tail_first == t->shipped.frame + 1) {
        /* what is in memory already stays: read on from its last commit */
        uint32_t end = t->tail_first + t->tail_frames - 1;
        for (size_t i = 0; i < t->pending_count; i++)
            if (t->pending[i].end.frame == end) {
                buf = t->tail;
                cap = t->tail_cap;
                kept = commit_frames = t->tail_frames;
                pos = last_commit = t->pending[i].end;
                t->tail = NULL;
                break;
            }
    }
    int rc = read_chain_until(t, &buf, &cap, &kept, &pos, &last_commit, &commit_frames, t->scanned.frame, err);
    if (rc == TAILER_BROKEN)
        rc = TAILER_LATER;   /* too much to keep in memory: ship it instead */
    if (rc != 0 || last_commit.frame != t->scanned.frame ||
        memcmp(last_commit.checksum, t->scanned.checksum, sizeof last_commit.checksum) != 0) {
        free(buf);
        return rc != 0 ? rc : tm_error_set(err, "the WAL of '%s' changed under frames not shipped", t->db_path);
    }
    free(t->tail);
    t->tail = buf;
    t->tail_cap = cap;
    t->tail_first = t->shipped.frame + 1;
    t->tail_frames = commit_frames;
    return 0;
}

int tailer_switching(const struct tailer *t) { return t->switching; }

/* ---------------------------------------------------------- a new WAL */

static void follow_from_start(struct tailer *t, const struct wal_header *fresh)
{
    t->hdr = *fresh;
    t->have_header = 1;
    t->shipped = t->scanned = wal_position_start(fresh);
    t->index_max_seen = 0;
}

/* The old WAL's tail is shipped: follow the new WAL (NULL: none yet). */
int tailer_finish_switch(struct tailer *t, const struct wal_header *fresh, struct tm_error *err)
{
    free(t->tail);
    t->tail = NULL;
    t->tail_cap = 0;
    t->tail_frames = 0;
    t->switching = 0;
    int gone_first = tailer_ahead_follow_next(t, fresh, err);
    if (gone_first != 0)
        return gone_first < 0 ? -1 : 0;
    if (fresh) {
        follow_from_start(t, fresh);
        return 0;
    }
    t->have_header = 0;
    memset(&t->shipped, 0, sizeof t->shipped);
    t->scanned = t->shipped;
    t->index_max_seen = 0;
    return 0;
}

/* Decides what a WAL header different from the one followed means. */
int tailer_follow_new_header(struct tailer *t, const struct wal_header *fresh, struct tm_error *err)
{
    if (!t->have_header) {
        /* Positioned on "no WAL" (empty when the pin began, which is
         * then on slot 0): whatever WAL appears was started after it. */
        follow_from_start(t, fresh);
        return TAILER_OK;
    }
    if (fresh->salt1 == t->hdr.salt1 && fresh->salt2 == t->hdr.salt2)
        return TAILER_OK;
    if (fresh->page_size != t->hdr.page_size) {
        tm_error_set(err, "WAL page size changed from %u to %u", t->hdr.page_size, fresh->page_size);
        return TAILER_BROKEN;
    }
    if (t->counter_known) {   /* the commit counter will prove that nothing was missed */
        int rc = recover_tail(t, err);
        if (rc != 0)
            return rc;
        t->switching = 1;
        log_debug("WAL '%s' restarted (salt-1 %u): %u frame(s) of the old one kept to ship", t->wal_path,
                  fresh->salt1, t->tail_frames);
        return TAILER_OK;
    }
    if (t->pending_count > 0) {
        tm_error_set(err, "WAL restarted while %zu commit(s) were not yet shipped", t->pending_count);
        return TAILER_BROKEN;
    }
    if (t->scanned.frame < t->index_max_seen) {
        tm_error_set(err, "WAL restarted before its frames %u-%u were read", t->scanned.frame + 1,
                     t->index_max_seen);
        return TAILER_BROKEN;
    }
    /* The salts of a restarted WAL are not a sequence to rely on (a
     * connection that never restarted a WAL itself picks random ones after
     * another's TRUNCATE): what proves that nothing was lost is the pin. */
    if (t->restart_unsafe) {
        tm_error_set(err, "WAL restarted (salt-1 %u to %u) while nothing proved that every frame of the old one "
                     "was shipped", t->hdr.salt1, fresh->salt1);
        return TAILER_BROKEN;
    }
    log_debug("WAL '%s' restarted (salt-1 %u)", t->wal_path, fresh->salt1);
    follow_from_start(t, fresh);
    return TAILER_OK;
}

/* The WAL was restarted and has no frame yet (a TRUNCATE checkpoint).
 * When the commit counter shows that every commit was read (or, without
 * it, only safe pins were held since the last scan), everything of the
 * old WAL is shipped and any WAL written from now on starts after it:
 * follow "no WAL". Commits counted but never read: TAILER_BROKEN. */
int tailer_follow_empty_wal(struct tailer *t, const struct wal_index_state *index, struct tm_error *err)
{
    if (!t->have_header || index->max_frame != 0 ||
        (index->salt1 == t->hdr.salt1 && index->salt2 == t->hdr.salt2))
        return TAILER_OK;
    /* the Turso route: what is pending is in memory (tailer_ahead.c), and
     * so are the WALs gone since, if any: ship them at once, one after the
     * other (the switch), then the counter checks the whole */
    if (t->coord && (t->switching || tailer_ahead_has_next(t) ||
                     (t->pending_count && tailer_tail_covers_pending(t)))) {
        t->switching = 1;
        return TAILER_OK;
    }
    if (t->counter_known) {
        uint32_t unread = index->changes - (t->counted + t->recorded_since_count);
        if (unread != 0) {
            tm_error_set(err, "the WAL was truncated with %u commit(s) not read", unread);
            return TAILER_BROKEN;
        }
    } else if (t->restart_unsafe || t->scanned.frame < t->index_max_seen) {
        return TAILER_OK;
    }
    if (t->pending_count)
        return TAILER_OK;   /* ship them first (their frames are in the file until it is written again) */
    t->have_header = 0;
    memset(&t->shipped, 0, sizeof t->shipped);
    t->scanned = t->shipped;
    t->index_max_seen = 0;
    t->counted = index->changes;
    t->recorded_since_count = 0;
    return TAILER_OK;
}

/* At a scan that read the WAL up to the wal-index's end: the commits
 * read since the last such scan must be exactly those the wal-index
 * counted (iChange), or some were lost unseen (TAILER_BROKEN). */
int tailer_check_commit_count(struct tailer *t, const struct wal_index_state *index, struct tm_error *err)
{
    if (t->counter_known && index->changes != t->counted + t->recorded_since_count) {
        tm_error_set(err, "the %s counts %u commit(s) since the last check, the sidecar read %u: "
                     "commits were lost (the WAL restarted over frames not read)",
                     t->coord ? "Turso engine's coordination file" : "wal-index", index->changes - t->counted,
                     t->recorded_since_count);
        return TAILER_BROKEN;
    }
    t->counted = index->changes;
    t->recorded_since_count = 0;
    t->counter_known = 1;
    return TAILER_OK;
}

/* ---------------------------------------------------- after a release */

int tailer_resume_after_release(struct tailer *t, const struct wal_header *released, const struct wal_position *pos,
                                uint32_t page_size, struct tm_error *err)
{
    if (page_size != t->page_size)
        return 0;
    struct wal_header fresh;
    if (released) {
        int resumed = tailer_resume_at(t, pos, page_size, err);
        if (resumed != 0)
            return resumed;
    }
    int found = wal_read_header(t->wal_fd, &fresh, err);
    if (found < 0)
        return -1;
    t->pending_count = 0;
    if (!released) {   /* the WAL was empty: whatever it holds now came after */
        if (found) {
            follow_from_start(t, &fresh);
        } else {
            t->have_header = 0;
            memset(&t->shipped, 0, sizeof t->shipped);
            t->scanned = t->shipped;
            t->index_max_seen = 0;
        }
        return 1;
    }
    /* One restart since the release, from the state shipped (tailer.h) */
    if (!found || fresh.salt1 != released->salt1 + 1 || fresh.checkpoint_seq != released->checkpoint_seq + 1 ||
        fresh.page_size != page_size)
        return 0;
    follow_from_start(t, &fresh);
    return 1;
}
