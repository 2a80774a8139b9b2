/* shipper.c - makes segments and snapshots (formats in common/archive.c)
 * and publishes them in the database's spool (spool.c), from which every
 * replica's uploader ships them.
 *
 * A segment's frames are read back from the pinned WAL and their checksum
 * chain re-verified against the positions the scanner recorded, so a
 * segment holds exactly the bytes SQLite committed. Commits count as
 * shipped (the tailer may release them) once the object is published in
 * the spool: durable on local disk, queued for every replica. An object
 * is encrypted once, so every replica stores the same bytes under the
 * same key. Every page shipped also goes to the delta builder (deltas.h),
 * and the deltas a segment completes are published right after it. */
#include "shipper.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAPSHOT_READ_BYTES (256 * 1024)

/* The spool's writer for one object: written under a temporary name,
 * bound to the key it is published under (object.h). */
static int spool_writer_open(struct shipper *sh, const char *key, enum object_kind kind,
                             struct object_writer **out, struct tm_error *err)
{
    char name[ARCHIVE_NAME_MAX + 24];
    spool_incoming_name(sh->spool, key, name, sizeof name);
    return object_writer_open(spool_incoming(sh->spool), name, key, kind, sh->key, out, err);
}

/* Publishes the object written at spool_incoming_name(key) with the
 * archive's new end: `end` as the caller filled it (WAL position and page
 * size, or Redis replication id and offset), completed with the
 * shipper's generation and the given index, chain, snapshot time and last
 * commit time. */
static int publish_position(struct shipper *sh, const char *key, struct spool_position end, uint64_t next_index,
                            const uint8_t chain[OBJECT_HASH_BYTES], int64_t last_snapshot_ms,
                            int64_t last_commit_ms, struct tm_error *err)
{
    snprintf(end.generation, sizeof end.generation, "%s", sh->generation);
    end.next_index = next_index;
    memcpy(end.chain, chain, sizeof end.chain);
    end.last_snapshot_ms = last_snapshot_ms;
    end.last_commit_ms = last_commit_ms;
    return spool_publish(sh->spool, key, &end, err);
}

/* ---------------------------------------------------------------- resume */

int shipper_resume(struct shipper *sh, struct wal_position *pos, uint32_t *page_size,
                   int *found, struct tm_error *err)
{
    (void)err;
    struct spool_position end;
    *found = 0;
    if (!spool_position(sh->spool, &end))
        return 0;
    *found = end.wal.valid;   /* the generation is loaded either way */
    shipper_continue(sh, &end);
    pos->salt1 = end.wal.salt1;
    pos->salt2 = end.wal.salt2;
    pos->frame = end.wal.frame;
    pos->checksum[0] = end.wal.checksum[0];
    pos->checksum[1] = end.wal.checksum[1];
    *page_size = end.page_size;
    /* the pages shipped before the restart are not in the store: deltas
     * start again from here */
    if (sh->deltas)
        delta_builder_reset(sh->deltas, end.next_index, end.page_size);
    return 0;
}

void shipper_continue(struct shipper *sh, const struct spool_position *end)
{
    snprintf(sh->generation, sizeof sh->generation, "%s", end->generation);
    sh->has_generation = 1;
    sh->head_ready = 1;   /* a generation is published from its snapshot on */
    sh->head_due = 1;
    sh->next_index = end->next_index;
    memcpy(sh->chain, end->chain, sizeof sh->chain);
    sh->last_snapshot_ms = end->last_snapshot_ms;
    sh->generation_last_commit_ms = end->last_commit_ms;
}

/* The end of the current generation, as a head states it. */
static void current_end(const struct shipper *sh, struct shipper_end *out)
{
    snprintf(out->generation, sizeof out->generation, "%s", sh->generation);
    out->next_index = sh->next_index;
    memcpy(out->chain, sh->chain, sizeof out->chain);
    out->last_commit_ms = sh->generation_last_commit_ms;
    out->snapshot_ms = sh->last_snapshot_ms;
}

void shipper_use_generation(struct shipper *sh, const char *generation)
{
    if (sh->has_generation && sh->head_ready && strcmp(sh->generation, generation) != 0) {
        current_end(sh, &sh->predecessor);   /* its last head names the new one, once that has its snapshot */
        sh->has_predecessor = 1;
    }
    sh->head_ready = 0;
    sh->head_due = 0;
    sh->generation_last_commit_ms = 0;
    snprintf(sh->generation, sizeof sh->generation, "%s", generation);
    archive_chain_start(sh->generation, sh->chain);
    sh->has_generation = 1;
    sh->next_index = 0;
}

void shipper_new_generation(struct shipper *sh, int64_t now_ms)
{
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    layout_generation_id_new(now_ms, generation);
    shipper_use_generation(sh, generation);
}

/* ------------------------------------------------------------- segments */

/* Frames are read back from the WAL this many bytes at a time. */
#define FRAME_BATCH_BYTES (1024 * 1024)

/* The pages of one batch of frames, for the delta builder. */
struct recorded_pages {
    uint32_t *numbers;
    const uint8_t **pages;
    size_t count;
};

/* Gives the batch's shipped pages to the delta builder (before the batch
 * buffer is read over); a failure stops deltas only. */
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

/* Frames read back from the WAL, a batch at a time. */
struct frame_batch {
    uint8_t *bytes;
    size_t frame_bytes;
    uint32_t capacity;                   /* frames the buffer holds */
    uint32_t first, count;               /* frames held: [first, first + count) */
};

/* Frame `wanted`, from the batch, or from the next batch read (up to
 * frame `last`, its pages recorded first); NULL when the read fails. */
static const uint8_t *batch_frame(struct shipper *sh, struct tailer *t, struct frame_batch *b,
                                  struct recorded_pages *rec, uint32_t wanted, uint32_t last, struct tm_error *err)
{
    if (wanted >= b->first + b->count) {
        record_pages(sh, rec);
        b->first = wanted;
        b->count = last - wanted + 1 < b->capacity ? last - wanted + 1 : b->capacity;
        if (tailer_read_frames(t, b->first, b->count, b->bytes, err) != 0)
            return NULL;
    }
    return b->bytes + (size_t)(wanted - b->first) * b->frame_bytes;
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

/* Streams the frames of `commits` into w, re-verifying the checksum chain
 * from `from`. Returns SHIPPER_BROKEN if the WAL no longer matches. */
static int write_transactions(struct shipper *sh, struct tailer *t, struct object_writer *w,
                              const struct tailer_commit *commits, size_t count,
                              struct wal_position from, struct tm_error *err)
{
    /* a large segment's pages skip the delta builder (deltas.h) */
    uint64_t page_bytes = (uint64_t)(commits[count - 1].end.frame - from.frame) * tailer_header(t)->page_size;
    int record = sh->deltas && delta_builder_active(sh->deltas);
    if (record && page_bytes > DELTA_SMALL_SEGMENT_BYTES) {
        delta_builder_poison(sh->deltas);
        record = 0;
    }
    const struct wal_header *hdr = tailer_header(t);
    struct frame_batch batch = {.frame_bytes = WAL_FRAME_HEADER_BYTES + hdr->page_size};
    batch.capacity = FRAME_BATCH_BYTES / batch.frame_bytes ? FRAME_BATCH_BYTES / batch.frame_bytes : 1;
    batch.bytes = malloc((size_t)batch.capacity * batch.frame_bytes);
    struct recorded_pages rec = {malloc(batch.capacity * sizeof *rec.numbers),
                                 malloc(batch.capacity * sizeof *rec.pages), 0};
    int rc = batch.bytes && rec.numbers && rec.pages ? SHIPPER_OK : tm_error_set(err, "out of memory");
    struct wal_position pos = from;
    uint32_t last_frame = commits[count - 1].end.frame;
    for (size_t c = 0; c < count && rc == SHIPPER_OK; c++) {
        struct txn_header txn = {commits[c].time_ms, commits[c].db_size,
                                 commits[c].end.frame - pos.frame};
        uint8_t txn_bytes[ARCHIVE_TXN_HEADER_BYTES];
        txn_header_encode(&txn, txn_bytes);
        rc = object_write(w, txn_bytes, sizeof txn_bytes, err);
        while (rc == SHIPPER_OK && pos.frame < commits[c].end.frame) {
            const uint8_t *frame = batch_frame(sh, t, &batch, &rec, pos.frame + 1, last_frame, err);
            struct wal_position next;
            if (!frame) {
                rc = -1;
            } else if (!wal_frame_follows(hdr, &pos, frame, &next)) {
                tm_error_set(err, "WAL frame %u changed after it was scanned", pos.frame + 1);
                rc = SHIPPER_BROKEN;
            } else {
                pos = next;
                rc = write_frame(w, frame, hdr->page_size, record ? &rec : NULL, err);
            }
        }
        if (rc == SHIPPER_OK && (pos.checksum[0] != commits[c].end.checksum[0] ||
                                 pos.checksum[1] != commits[c].end.checksum[1])) {
            tm_error_set(err, "WAL checksum chain differs from the scan at frame %u", pos.frame);
            rc = SHIPPER_BROKEN;
        }
    }
    record_pages(sh, &rec);
    free(batch.bytes);
    free(rec.numbers);
    free(rec.pages);
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
    int rc = spool_writer_open(sh, key, OBJECT_DELTA, &w, err);
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

int shipper_ship(struct shipper *sh, struct tailer *t, struct tm_error *err)
{
    size_t count;
    tailer_pending(t, &count);
    int rc = shipper_ship_first(sh, t, count, err);
    if (rc == SHIPPER_OK)
        shipper_tick(sh, clock_now_ms());
    return rc;
}

/* ----------------------------------------------------------------- heads */

/* Publishes the head of end->generation; successor "" for the current one.
 * A head does not move the archive's end (like a delta). */
static int publish_head(struct shipper *sh, const struct shipper_end *end, const char *successor, int64_t now_ms,
                        struct tm_error *err)
{
    struct archive_head h = {.next_index = end->next_index, .last_commit_ms = end->last_commit_ms,
                             .counter = spool_sequence(sh->spool), .written_ms = now_ms,
                             .snapshot_ms = end->snapshot_ms};
    snprintf(h.generation, sizeof h.generation, "%s", end->generation);
    snprintf(h.successor, sizeof h.successor, "%s", successor);
    memcpy(h.chain, end->chain, sizeof h.chain);
    char key[ARCHIVE_NAME_MAX];
    layout_head_key(sh->db_name, end->generation, key, sizeof key);
    uint8_t payload[ARCHIVE_HEAD_BYTES];
    head_encode(&h, payload);
    struct spool_position position;
    if (!spool_position(sh->spool, &position))
        return tm_error_set(err, "internal: no archive position for a head");
    struct object_writer *w = NULL;
    if (spool_writer_open(sh, key, OBJECT_HEAD, &w, err) != 0)
        return -1;
    if (object_write(w, payload, sizeof payload, err) != 0) {
        object_writer_abort(w);
        return -1;
    }
    if (object_writer_commit(w, NULL, NULL, err) != 0 || spool_publish(sh->spool, key, &position, err) != 0)
        return -1;
    sh->heads_written++;
    return 0;
}

static int write_heads(struct shipper *sh, int64_t now_ms, int now);

int shipper_tick(struct shipper *sh, int64_t now_ms)
{
    return write_heads(sh, now_ms, 0);
}

int shipper_head_now(struct shipper *sh, int64_t now_ms)
{
    return write_heads(sh, now_ms, 1);
}

/* The heads due: the predecessor's, then the current generation's (at
 * once with `now`, else once the interval passed). */
static int write_heads(struct shipper *sh, int64_t now_ms, int now)
{
    struct tm_error err;
    int published = 0;
    if (!sh->has_generation || !sh->head_ready)
        return 0;
    if (sh->has_predecessor) {
        if (publish_head(sh, &sh->predecessor, sh->generation, now_ms, &err) != 0) {
            log_event(LOG_WARN, sh->db_name, NULL, "cannot write the head of generation %s: %s",
                      sh->predecessor.generation, err.msg);
            return 0;
        }
        sh->has_predecessor = 0;
        published = 1;
    }
    if (!sh->head_due || (!now && now_ms - sh->head_written_ms < SHIPPER_HEAD_INTERVAL_MS))
        return published;
    struct shipper_end end;
    current_end(sh, &end);
    if (publish_head(sh, &end, "", now_ms, &err) != 0) {
        log_event(LOG_WARN, sh->db_name, NULL, "cannot write the head of generation %s: %s", sh->generation,
                  err.msg);
        return published;
    }
    sh->head_due = 0;
    sh->head_written_ms = now_ms;
    return 1;
}

/* ------------------------------------------------------------ publishing */

int shipper_publish_segment(struct shipper *sh, const struct shipper_segment *seg,
                            uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    char key[ARCHIVE_NAME_MAX];
    layout_segment_key(sh->db_name, sh->generation, sh->next_index, seg->first_ms, seg->last_ms, key, sizeof key);
    struct object_writer *w = NULL;
    int rc = spool_writer_open(sh, key, OBJECT_SEGMENT, &w, err);
    if (rc == 0)
        rc = object_write(w, seg->header, seg->header_len, err);
    if (rc == 0)
        rc = seg->write_body(seg->ctx, w, err);
    if (rc != 0) {
        object_writer_abort(w);
        return rc;
    }
    uint8_t hash[OBJECT_HASH_BYTES];
    uint64_t stored;
    if (object_writer_commit(w, hash, &stored, err) != 0)
        return -1;
    if (publish_position(sh, key, seg->end, sh->next_index + 1, hash, sh->last_snapshot_ms, seg->last_ms, err) != 0)
        return -1;
    memcpy(sh->chain, hash, sizeof hash);
    sh->next_index++;
    sh->segments_shipped++;
    sh->bytes_shipped += stored;
    sh->commits_shipped += seg->commits;
    sh->last_commit_shipped_ms = seg->last_ms;
    sh->generation_last_commit_ms = seg->last_ms;
    sh->head_due = 1;
    log_debug("spooled segment %s (%llu %s, %llu bytes)", key, (unsigned long long)seg->commits, seg->what,
              (unsigned long long)stored);
    if (hash_out)
        memcpy(hash_out, hash, sizeof hash);
    return 0;
}

/* The body of an SQLite segment: the pending commits' frames. */
struct commits_body {
    struct shipper *sh;
    struct tailer *tailer;
    const struct tailer_commit *commits;
    size_t count;
    struct wal_position from;
};

static int write_commits(void *ctx, struct object_writer *w, struct tm_error *err)
{
    struct commits_body *body = ctx;
    return write_transactions(body->sh, body->tailer, w, body->commits, body->count, body->from, err);
}

int shipper_ship_first(struct shipper *sh, struct tailer *t, size_t count, struct tm_error *err)
{
    size_t pending_count;
    const struct tailer_commit *pending = tailer_pending(t, &pending_count);
    if (count > pending_count)
        count = pending_count;
    if (count == 0)
        return SHIPPER_OK;
    struct wal_position from = tailer_shipped(t);
    const struct wal_header *hdr = tailer_header(t);
    struct segment_header h = {
        .page_size = hdr->page_size,
        .txn_count = (uint32_t)count,
        .index = sh->next_index,
        .first_time_ms = pending[0].time_ms,
        .last_time_ms = pending[count - 1].time_ms,
        .first_frame = from.frame + 1,
        .end = {1, hdr->salt1, hdr->salt2, pending[count - 1].end.frame,
                {pending[count - 1].end.checksum[0], pending[count - 1].end.checksum[1]}},
    };
    snprintf(h.generation, sizeof h.generation, "%s", sh->generation);
    memcpy(h.prev_hash, sh->chain, sizeof h.prev_hash);
    uint8_t header[ARCHIVE_HEADER_BYTES];
    segment_header_encode(&h, header);
    struct commits_body body = {sh, t, pending, count, from};
    struct shipper_segment seg = {.first_ms = h.first_time_ms, .last_ms = h.last_time_ms, .header = header,
                                  .header_len = sizeof header, .write_body = write_commits, .ctx = &body,
                                  .end = {.wal = h.end, .page_size = h.page_size}, .commits = count,
                                  .what = "commits"};
    uint8_t hash[OBJECT_HASH_BYTES];
    int rc = shipper_publish_segment(sh, &seg, hash, err);
    if (rc != SHIPPER_OK)
        return rc;
    sh->wal_bytes_since_snapshot += (uint64_t)(h.end.frame - from.frame) * hdr->page_size;
    sh->db_pages = pending[count - 1].db_size;
    tailer_ack(t, count);
    ship_deltas(sh, &h, hash);
    return SHIPPER_OK;
}

/* ------------------------------------------------------------- snapshots */

int shipper_publish_snapshot(struct shipper *sh, const char *key, const struct spool_position *end,
                             int64_t time_ms, uint64_t stored, struct tm_error *err)
{
    if (publish_position(sh, key, *end, sh->next_index, sh->chain, time_ms, sh->generation_last_commit_ms, err) != 0)
        return -1;
    sh->last_snapshot_ms = time_ms;
    sh->head_ready = 1;
    sh->head_due = 1;
    sh->bytes_shipped += stored;
    return 0;
}

int shipper_snapshot(struct shipper *sh, const char *file, uint32_t page_size,
                     uint32_t page_count, int64_t time_ms, const struct wal_position *pos,
                     struct tm_error *err)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tm_error_set(err, "cannot open snapshot file '%s': %s", file, strerror(errno));
    struct snapshot_header h = {.page_size = page_size, .page_count = page_count,
                                .index = sh->next_index, .time_ms = time_ms};
    snprintf(h.generation, sizeof h.generation, "%s", sh->generation);
    memcpy(h.chain_hash, sh->chain, sizeof h.chain_hash);
    if (pos) {
        h.wal = (struct archive_wal_position){1, pos->salt1, pos->salt2, pos->frame,
                                              {pos->checksum[0], pos->checksum[1]}};
    }
    char key[ARCHIVE_NAME_MAX];
    layout_snapshot_key(sh->db_name, sh->generation, h.index, time_ms, key, sizeof key);
    uint8_t header[ARCHIVE_HEADER_BYTES];
    snapshot_header_encode(&h, header);

    uint8_t *block = malloc(SNAPSHOT_READ_BYTES);
    struct object_writer *w = NULL;
    int rc = block ? spool_writer_open(sh, key, OBJECT_SNAPSHOT, &w, err) : tm_error_set(err, "out of memory");
    if (rc == 0)
        rc = object_write(w, header, sizeof header, err);
    uint64_t remaining = (uint64_t)page_size * page_count;
    while (rc == 0 && remaining > 0) {
        size_t want = remaining < SNAPSHOT_READ_BYTES ? (size_t)remaining : SNAPSHOT_READ_BYTES;
        ssize_t got = read(fd, block, want);
        if (got <= 0) {
            rc = tm_error_set(err, "cannot read snapshot file '%s': %s", file,
                              got < 0 ? strerror(errno) : "shorter than its page count");
            break;
        }
        rc = object_write(w, block, (size_t)got, err);
        remaining -= (uint64_t)got;
    }
    close(fd);
    free(block);
    if (rc != 0) {
        object_writer_abort(w);
        return -1;
    }
    struct spool_position end = {.wal = h.wal, .page_size = page_size};
    uint64_t stored;
    if (object_writer_commit(w, NULL, &stored, err) != 0 ||
        shipper_publish_snapshot(sh, key, &end, time_ms, stored, err) != 0)
        return -1;
    sh->wal_bytes_since_snapshot = 0;
    if (sh->deltas)
        delta_builder_reset(sh->deltas, h.index, page_size);
    sh->db_pages = page_count;
    log_info("snapshot %s: %u pages, %llu bytes stored", key, page_count, (unsigned long long)stored);
    return 0;
}
