/* shipper_segment.c - segments of an SQLite database's commits, and the
 * deltas they complete: the frames read back from the WAL on the caller's
 * thread, the segment compressed, encrypted, written and published on a
 * thread of its own.
 *
 * DESIGN
 *
 * The caller's thread is the loop's, which owns the tailer: only it reads
 * the WAL (tailer_read_frames: from the file, or from the frames the
 * tailer holds in memory). It reads a segment's frames 1 MiB at a time
 * into one of two batches and hands each to the segment's writer thread,
 * which re-verifies the checksum chain against the positions the scanner
 * recorded (so a segment holds exactly the bytes SQLite committed), gives
 * the pages to the delta builder, streams them through the object writer
 * (zstd, then libsodium), commits the object (fsync) and publishes it in
 * the spool, then the deltas it completes. Meanwhile the writer thread
 * owns the shipper, and the caller's thread the tailer: they share only
 * the two batches, under one lock.
 *
 * Why a thread: compressing and syncing a second's worth of a busy
 * writer's commits takes tens of milliseconds, and an application's
 * checkpoint that waits for the pin would wait as long. While the writer
 * works, the caller's thread calls the shipper's `beside` every
 * millisecond (pin.c: scan; when an application's checkpoint waits, read
 * what is pending into memory and let go of the pin). The application
 * then waits at most for the read of one batch, whatever the compression
 * costs. Two batches bound the memory whatever the segment's size.
 *
 * Commits count as shipped once their segment is published: only then
 * does the caller acknowledge them in the tailer. A segment abandoned (the
 * WAL no longer holds what was scanned, a read or the spool failed,
 * continuity lost before all its frames were read) publishes nothing, and
 * its commits stay pending. */
#include "shipper_internal.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frames are read back from the WAL this many bytes at a time. */
#define FRAME_BATCH_BYTES (1024 * 1024)
#define FEED_BATCHES 2
/* The caller's thread lets `beside` run this often while a segment is
 * written. */
#define BESIDE_EVERY_MS 1

/* ------------------------------------------------------------- the feed */

struct feed_batch {
    uint8_t *bytes;
    uint32_t first, count;   /* frames held: [first, first + count) */
    int full;                /* read, not written yet: the writer's */
};

/* The batches between the caller's thread (which reads frames into
 * them) and the writer's (which writes them), used in turn. */
struct frame_feed {
    pthread_mutex_t lock;
    pthread_cond_t changed;          /* a batch filled or emptied, the feed stopped, the writer done */
    struct feed_batch batches[FEED_BATCHES];
    size_t frame_bytes;
    uint32_t batch_frames;           /* frames a batch holds */
    int stopped;                     /* no more frames will come: stop_status and stop_err say why */
    int stop_status;                 /* -1, SHIPPER_BROKEN or SHIPPER_RESCAN */
    struct tm_error stop_err;
    int writer_done;
    /* the caller's thread only */
    int64_t beside_ms;               /* when `beside` last ran (monotonic) */
    int broken;                      /* `beside` lost continuity: broken_err */
    struct tm_error broken_err;
};

/* Batches of FRAME_BATCH_BYTES, or smaller for a segment of fewer frames. */
static int feed_init(struct frame_feed *feed, uint32_t page_size, uint32_t frames)
{
    memset(feed, 0, sizeof *feed);
    feed->frame_bytes = WAL_FRAME_HEADER_BYTES + page_size;
    feed->batch_frames = FRAME_BATCH_BYTES / feed->frame_bytes ? FRAME_BATCH_BYTES / feed->frame_bytes : 1;
    if (frames && frames < feed->batch_frames)
        feed->batch_frames = frames;
    for (int i = 0; i < FEED_BATCHES; i++)
        if (!(feed->batches[i].bytes = malloc((size_t)feed->batch_frames * feed->frame_bytes)))
            return -1;
    pthread_mutex_init(&feed->lock, NULL);
    clock_monotonic_cond_init(&feed->changed);
    feed->beside_ms = clock_monotonic_ms();
    return 0;
}

static void feed_free(struct frame_feed *feed)
{
    for (int i = 0; i < FEED_BATCHES; i++)
        free(feed->batches[i].bytes);
}

static void feed_destroy(struct frame_feed *feed)
{
    pthread_cond_destroy(&feed->changed);
    pthread_mutex_destroy(&feed->lock);
    feed_free(feed);
}

/* No more frames will come (under the lock). */
static void feed_stop(struct frame_feed *feed, int status, const struct tm_error *why)
{
    if (feed->stopped)
        return;
    feed->stopped = 1;
    feed->stop_status = status;
    feed->stop_err = *why;
    pthread_cond_broadcast(&feed->changed);
}

/* On the caller's thread, lock held: `beside` once BESIDE_EVERY_MS has
 * passed since it last ran (without the lock: it reads the WAL). */
static void feed_beside(struct shipper *sh, struct frame_feed *feed)
{
    int64_t now = clock_monotonic_ms();
    if (!sh->beside || feed->broken || now - feed->beside_ms < BESIDE_EVERY_MS)
        return;
    feed->beside_ms = now;
    pthread_mutex_unlock(&feed->lock);
    struct tm_error why;
    int broken = sh->beside(sh->beside_arg, &why);
    pthread_mutex_lock(&feed->lock);
    if (broken) {
        feed->broken = 1;
        feed->broken_err = why;
    }
}

/* On the caller's thread, lock held: waits for the writer for about a
 * millisecond at most, then lets `beside` run. */
static void feed_pause(struct shipper *sh, struct frame_feed *feed)
{
    struct timespec deadline = clock_monotonic_deadline(BESIDE_EVERY_MS);
    pthread_cond_timedwait(&feed->changed, &feed->lock, &deadline);
    feed_beside(sh, feed);
}

/* On the caller's thread: reads frames first..last into the batches in
 * turn, as the writer empties them. Stops early when the writer is done
 * (it failed), a read fails, or `beside` lost continuity. */
static void feed_frames(struct shipper *sh, struct tailer *t, struct frame_feed *feed, uint32_t first, uint32_t last)
{
    int turn = 0;
    pthread_mutex_lock(&feed->lock);
    for (uint32_t next = first; next <= last && !feed->stopped;) {
        struct feed_batch *b = &feed->batches[turn];
        while (b->full && !feed->writer_done && !feed->broken)
            feed_pause(sh, feed);
        feed_beside(sh, feed);
        if (feed->writer_done)
            break;
        if (feed->broken) {
            feed_stop(feed, SHIPPER_BROKEN, &feed->broken_err);
            break;
        }
        uint32_t count = last - next + 1 < feed->batch_frames ? last - next + 1 : feed->batch_frames;
        pthread_mutex_unlock(&feed->lock);   /* an empty batch is the caller's */
        struct tm_error err;
        int rc = tailer_read_frames(t, next, count, b->bytes, &err);
        pthread_mutex_lock(&feed->lock);
        if (rc != 0) {
            feed_stop(feed, rc == TAILER_LATER ? SHIPPER_RESCAN : -1, &err);
            break;
        }
        b->first = next;
        b->count = count;
        b->full = 1;
        pthread_cond_broadcast(&feed->changed);
        next += count;
        turn = (turn + 1) % FEED_BATCHES;
    }
    while (!feed->writer_done)
        feed_pause(sh, feed);
    pthread_mutex_unlock(&feed->lock);
}

/* On the writer's thread: the next batch, once read; NULL when the feed
 * stopped (err set from it). */
static struct feed_batch *feed_take(struct frame_feed *feed, int turn, struct tm_error *err, int *status)
{
    struct feed_batch *b = &feed->batches[turn];
    pthread_mutex_lock(&feed->lock);
    while (!b->full && !feed->stopped)
        pthread_cond_wait(&feed->changed, &feed->lock);
    if (!b->full) {
        *err = feed->stop_err;
        *status = feed->stop_status;
        b = NULL;
    }
    pthread_mutex_unlock(&feed->lock);
    return b;
}

/* On the writer's thread: the batch is written; the caller may read
 * into it again. */
static void feed_give_back(struct frame_feed *feed, struct feed_batch *b)
{
    pthread_mutex_lock(&feed->lock);
    b->full = 0;
    pthread_cond_broadcast(&feed->changed);
    pthread_mutex_unlock(&feed->lock);
}

static void feed_writer_done(struct frame_feed *feed)
{
    pthread_mutex_lock(&feed->lock);
    feed->writer_done = 1;
    pthread_cond_broadcast(&feed->changed);
    pthread_mutex_unlock(&feed->lock);
}

/* ------------------------------------------------------ the segment job */

/* What the writer thread needs: copies of the commits and the WAL
 * header, so that the caller's scans meanwhile change nothing of it. */
struct segment_job {
    struct shipper *sh;
    struct frame_feed *feed;
    struct wal_header hdr;
    struct tailer_commit *commits;
    size_t count;
    struct wal_position from;
    struct segment_header header;
    uint8_t header_bytes[ARCHIVE_HEADER_BYTES];
    uint8_t hash[OBJECT_HASH_BYTES];
    int rc;
    struct tm_error err;
};

/* The pages of one batch of frames, for the delta builder. */
struct recorded_pages {
    uint32_t *numbers;
    const uint8_t **pages;
    size_t count;
};

/* Gives the batch's shipped pages to the delta builder (before the batch
 * is read over); a failure stops deltas only. */
static void record_pages(struct shipper *sh, struct recorded_pages *rec)
{
    struct tm_error err;
    if (rec->count && delta_builder_active(sh->deltas) &&
        delta_builder_pages(sh->deltas, rec->numbers, rec->pages, rec->count, &err) != 0) {
        log_event(LOG_WARN, sh->db_name, NULL, "deltas stopped until the next snapshot: %s", err.msg);
        delta_builder_disable(sh->deltas);
    }
    rec->count = 0;
}

/* The writer's place in the feed. */
struct feed_reader {
    struct segment_job *job;
    struct feed_batch *batch;   /* being written, NULL before the first */
    int turn;                   /* the batch to take next */
    struct recorded_pages rec;
};

/* Frame `wanted`: from the batch being written, or from the next one
 * (the pages of the one before recorded and it given back first); NULL
 * when the feed stopped (*status and err say why). */
static const uint8_t *next_frame(struct feed_reader *r, uint32_t wanted, int *status, struct tm_error *err)
{
    struct feed_batch *b = r->batch;
    if (!b || wanted >= b->first + b->count) {
        if (b) {
            record_pages(r->job->sh, &r->rec);
            feed_give_back(r->job->feed, b);
        }
        r->batch = b = feed_take(r->job->feed, r->turn, err, status);
        if (!b)
            return NULL;
        r->turn = (r->turn + 1) % FEED_BATCHES;
        if (b->first != wanted) {
            *status = -1;
            tm_error_set(err, "internal: frame %u expected, batch starts at %u", wanted, b->first);
            return NULL;
        }
    }
    return b->bytes + (size_t)(wanted - b->first) * r->job->feed->frame_bytes;
}

/* One frame into the segment: page number (4 bytes) then the page; the
 * page is kept for the delta builder when `rec` is not NULL. */
static int write_frame(struct object_writer *w, const uint8_t *frame, uint32_t page_size,
                       struct recorded_pages *rec, struct tm_error *err)
{
    if (object_write(w, frame, 4, err) != 0 ||
        object_write(w, frame + WAL_FRAME_HEADER_BYTES, page_size, err) != 0)
        return -1;
    if (rec) {
        rec->numbers[rec->count] = archive_get_be32(frame);
        rec->pages[rec->count++] = frame + WAL_FRAME_HEADER_BYTES;
    }
    return 0;
}

/* Whether the segment's pages go to the delta builder: not a large
 * segment's (deltas.h). */
static int records_pages(struct segment_job *job)
{
    struct shipper *sh = job->sh;
    if (!sh->deltas || !delta_builder_active(sh->deltas))
        return 0;
    uint64_t page_bytes = (uint64_t)(job->commits[job->count - 1].end.frame - job->from.frame) * job->hdr.page_size;
    if (page_bytes <= DELTA_SMALL_SEGMENT_BYTES)
        return 1;
    delta_builder_poison(sh->deltas);
    return 0;
}

/* The body of the segment, on the writer's thread: each commit's
 * transaction header, then its frames as the feed brings them,
 * re-verifying the checksum chain from `from`. SHIPPER_BROKEN if the WAL
 * no longer matches the scan. */
static int write_transactions(void *ctx, struct object_writer *w, struct tm_error *err)
{
    struct segment_job *job = ctx;
    const struct wal_header *hdr = &job->hdr;
    int record = records_pages(job);
    struct feed_reader r = {.job = job};
    r.rec.numbers = malloc(job->feed->batch_frames * sizeof *r.rec.numbers);
    r.rec.pages = malloc(job->feed->batch_frames * sizeof *r.rec.pages);
    int rc = r.rec.numbers && r.rec.pages ? SHIPPER_OK : tm_error_set(err, "out of memory");
    struct wal_position pos = job->from;
    for (size_t c = 0; c < job->count && rc == SHIPPER_OK; c++) {
        const struct tailer_commit *commit = &job->commits[c];
        struct txn_header txn = {commit->time_ms, commit->db_size, commit->end.frame - pos.frame};
        uint8_t txn_bytes[ARCHIVE_TXN_HEADER_BYTES];
        txn_header_encode(&txn, txn_bytes);
        rc = object_write(w, txn_bytes, sizeof txn_bytes, err);
        while (rc == SHIPPER_OK && pos.frame < commit->end.frame) {
            const uint8_t *frame = next_frame(&r, pos.frame + 1, &rc, err);
            struct wal_position next;
            if (!frame) {
                break;
            } else if (!wal_frame_follows(hdr, &pos, frame, &next)) {
                tm_error_set(err, "WAL frame %u changed after it was scanned", pos.frame + 1);
                rc = SHIPPER_BROKEN;
            } else {
                pos = next;
                rc = write_frame(w, frame, hdr->page_size, record ? &r.rec : NULL, err);
            }
        }
        if (rc == SHIPPER_OK && (pos.checksum[0] != commit->end.checksum[0] ||
                                 pos.checksum[1] != commit->end.checksum[1])) {
            tm_error_set(err, "WAL checksum chain differs from the scan at frame %u", pos.frame);
            rc = SHIPPER_BROKEN;
        }
    }
    if (r.batch) {
        record_pages(job->sh, &r.rec);
        feed_give_back(job->feed, r.batch);
    }
    free(r.rec.numbers);
    free(r.rec.pages);
    return rc;
}

/* ---------------------------------------------------------------- deltas */

struct delta_output {
    struct object_writer *w;
    uint32_t page_size;
};

static int write_delta_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    struct delta_output *out = ctx;
    uint8_t number[4];
    archive_put_be32(number, page_number);
    if (object_write(out->w, number, sizeof number, err) != 0)
        return -1;
    return object_write(out->w, page, out->page_size, err);
}

static int ship_delta(struct shipper *sh, int level, struct tm_error *err)
{
    struct delta_header h;
    delta_builder_header(sh->deltas, level, sh->generation, sh->db_pages, &h);
    char key[ARCHIVE_NAME_MAX];
    layout_delta_key(sh->db_name, sh->generation, h.first_index, h.end_index, h.first_time_ms,
                      h.last_time_ms, key, sizeof key);
    uint8_t header[ARCHIVE_DELTA_HEADER_BYTES];
    delta_header_encode(&h, header);
    struct spool_position end;   /* a delta does not move the archive's end */
    if (!spool_position(sh->spool, &end))
        return tm_error_set(err, "internal: no archive position for a delta");
    struct object_writer *w = NULL;
    int rc = shipper_spool_writer_open(sh, key, OBJECT_DELTA, &w, err);
    if (rc == 0)
        rc = object_write(w, header, sizeof header, err);
    struct delta_output out = {w, h.page_size};
    if (rc == 0)
        rc = delta_builder_emit(sh->deltas, level, write_delta_page, &out, err);
    if (rc != 0) {
        object_writer_abort(w);
        return -1;
    }
    uint64_t stored;
    if (object_writer_commit(w, NULL, &stored, err) != 0 || spool_publish(sh->spool, key, &end, err) != 0)
        return -1;
    sh->deltas_shipped++;
    sh->bytes_shipped += stored;
    log_debug("spooled delta %s (%u pages for %u commits, %llu bytes)", key, h.page_count, h.txn_count,
              (unsigned long long)stored);
    return 0;
}

/* The deltas segment `seg` completes, smallest level first. */
static void ship_deltas(struct shipper *sh, const struct segment_header *seg,
                        const uint8_t hash[OBJECT_HASH_BYTES])
{
    if (!delta_builder_active(sh->deltas))
        return;
    int closing = delta_builder_segment_done(sh->deltas, seg, hash);
    for (int level = 1; level <= closing; level++) {
        struct tm_error err;
        if (!delta_builder_worth(sh->deltas, level)) {
            delta_builder_skip(sh->deltas, level);
            continue;
        }
        if (ship_delta(sh, level, &err) != 0) {
            log_event(LOG_WARN, sh->db_name, NULL, "deltas stopped until the next snapshot: %s", err.msg);
            delta_builder_disable(sh->deltas);
            return;
        }
    }
}

/* ------------------------------------------------------- the two threads */

static void *segment_writer(void *arg)
{
    struct segment_job *job = arg;
    struct shipper_segment seg = {
        .first_ms = job->header.first_time_ms, .last_ms = job->header.last_time_ms,
        .header = job->header_bytes, .header_len = sizeof job->header_bytes,
        .write_body = write_transactions, .ctx = job,
        .end = {.wal = job->header.end, .page_size = job->header.page_size},
        .commits = job->count, .what = "commits"};
    struct shipper *sh = job->sh;
    job->rc = shipper_publish_segment(sh, &seg, job->hash, &job->err);
    if (job->rc == SHIPPER_OK) {
        /* before the deltas: a delta states the database's size after it */
        sh->wal_bytes_since_snapshot += (uint64_t)(job->header.end.frame - job->from.frame) * job->hdr.page_size;
        sh->db_pages = job->commits[job->count - 1].db_size;
        ship_deltas(sh, &job->header, job->hash);
    }
    feed_writer_done(job->feed);
    return NULL;
}

/* The segment of the first `count` pending commits (and the header that
 * names it), copied out of the tailer. */
static int segment_job_init(struct segment_job *job, struct shipper *sh, struct tailer *t,
                            const struct tailer_commit *pending, size_t count, struct tm_error *err)
{
    memset(job, 0, sizeof *job);
    job->rc = -1;   /* until the writer says otherwise */
    job->sh = sh;
    job->hdr = *tailer_header(t);
    job->from = tailer_shipped(t);
    job->count = count;
    if (!(job->commits = malloc(count * sizeof *job->commits)))
        return tm_error_set(err, "out of memory");
    memcpy(job->commits, pending, count * sizeof *job->commits);
    const struct tailer_commit *last = &pending[count - 1];
    struct segment_header *h = &job->header;
    *h = (struct segment_header){
        .page_size = job->hdr.page_size,
        .txn_count = (uint32_t)count,
        .index = sh->next_index,
        .first_time_ms = pending[0].time_ms,
        .last_time_ms = last->time_ms,
        .first_frame = job->from.frame + 1,
        .end = {1, job->hdr.salt1, job->hdr.salt2, last->end.frame, {last->end.checksum[0], last->end.checksum[1]}},
    };
    snprintf(h->generation, sizeof h->generation, "%s", sh->generation);
    memcpy(h->prev_hash, sh->chain, sizeof h->prev_hash);
    segment_header_encode(h, job->header_bytes);
    return 0;
}

/* Writes the job's segment on a thread of its own while this thread
 * reads its frames (feed_frames). SHIPPER_OK; SHIPPER_BROKEN (also when
 * continuity was lost beside a segment published all the same: the
 * tailer no longer follows its commits); -1. */
static int write_segment_beside(struct segment_job *job, struct tailer *t, struct tm_error *err)
{
    struct frame_feed feed;
    uint32_t last_frame = job->commits[job->count - 1].end.frame;
    if (feed_init(&feed, job->hdr.page_size, last_frame - job->from.frame) != 0) {
        feed_free(&feed);
        return tm_error_set(err, "out of memory");
    }
    job->feed = &feed;
    pthread_t writer;
    if (pthread_create(&writer, NULL, segment_writer, job) != 0) {
        feed_destroy(&feed);
        return tm_error_set(err, "cannot start a thread to write a segment");
    }
    feed_frames(job->sh, t, &feed, job->from.frame + 1, last_frame);
    pthread_join(writer, NULL);
    int rc = job->rc;
    if (feed.broken) {   /* continuity lost while it was written: a new generation */
        *err = feed.broken_err;
        rc = SHIPPER_BROKEN;
    } else if (rc != SHIPPER_OK) {
        *err = job->err;
    }
    feed_destroy(&feed);
    return rc;
}

int shipper_ship_first(struct shipper *sh, struct tailer *t, size_t count, struct tm_error *err)
{
    size_t pending_count;
    const struct tailer_commit *pending = tailer_pending(t, &pending_count);
    if (count > pending_count)
        count = pending_count;
    if (count == 0)
        return SHIPPER_OK;
    struct segment_job job;
    if (segment_job_init(&job, sh, t, pending, count, err) != 0) {
        free(job.commits);
        return -1;
    }
    int rc = write_segment_beside(&job, t, err);
    if (rc == SHIPPER_OK)   /* published, and the tailer still follows them: they are shipped */
        tailer_ack(t, count);
    free(job.commits);
    return rc;
}

int shipper_ship(struct shipper *sh, struct tailer *t, struct tm_error *err)
{
    size_t count;
    tailer_pending(t, &count);
    int rc = shipper_ship_first(sh, t, count, err);
    if (rc == SHIPPER_OK)
        shipper_tick(sh, clock_now_ms());
    return rc;
}
