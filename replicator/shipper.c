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

#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAPSHOT_READ_BYTES (256 * 1024)

/* The spool's writer for one object. */
static int spool_writer_open(struct shipper *sh, const char *key, enum object_kind kind,
                             struct object_writer **out, struct tm_error *err)
{
    char name[ARCHIVE_NAME_MAX + 24];
    spool_incoming_name(sh->spool, key, name, sizeof name);
    return object_writer_open(spool_incoming(sh->spool), name, kind, sh->key, out, err);
}

/* Commits the object and publishes it with the archive's new end. */
static int spool_writer_publish(struct shipper *sh, struct object_writer *w, const char *key,
                                const struct spool_position *next, uint8_t hash[OBJECT_HASH_BYTES],
                                uint64_t *stored, struct tm_error *err)
{
    struct spool_position pos = *next;
    if (object_writer_commit(w, hash, stored, err) != 0)
        return -1;
    if (hash && pos.next_index != sh->next_index)   /* a segment: the chain moves on */
        memcpy(pos.chain, hash, sizeof pos.chain);
    return spool_publish(sh->spool, key, &pos, err);
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
    snprintf(sh->generation, sizeof sh->generation, "%s", end.generation);
    sh->has_generation = 1;
    sh->next_index = end.next_index;
    memcpy(sh->chain, end.chain, sizeof sh->chain);
    sh->last_snapshot_ms = end.last_snapshot_ms;
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

void shipper_new_generation(struct shipper *sh, int64_t now_ms)
{
    archive_generation_id_new(now_ms, sh->generation);
    archive_chain_start(sh->generation, sh->chain);
    sh->has_generation = 1;
    sh->next_index = 0;
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

/* Streams the frames of `commits` into f, re-verifying the checksum chain
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
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + hdr->page_size;
    uint32_t batch_frames = FRAME_BATCH_BYTES / frame_bytes ? FRAME_BATCH_BYTES / frame_bytes : 1;
    uint8_t *batch = malloc((size_t)batch_frames * frame_bytes);
    struct recorded_pages rec = {malloc(batch_frames * sizeof *rec.numbers), malloc(batch_frames * sizeof *rec.pages), 0};
    if (!batch || !rec.numbers || !rec.pages) {
        free(batch);
        free(rec.numbers);
        free(rec.pages);
        return tm_error_set(err, "out of memory");
    }
    uint32_t batch_first = 0, batch_count = 0;   /* frames held in batch */
    int rc = SHIPPER_OK;
    struct wal_position pos = from;
    uint32_t last_frame = commits[count - 1].end.frame;
    for (size_t c = 0; c < count && rc == SHIPPER_OK; c++) {
        struct txn_header txn = {commits[c].time_ms, commits[c].db_size,
                                 commits[c].end.frame - pos.frame};
        uint8_t txn_bytes[ARCHIVE_TXN_HEADER_BYTES];
        txn_header_encode(&txn, txn_bytes);
        rc = object_write(w, txn_bytes, sizeof txn_bytes, err);
        while (rc == SHIPPER_OK && pos.frame < commits[c].end.frame) {
            struct wal_position next;
            uint32_t wanted = pos.frame + 1;
            if (wanted >= batch_first + batch_count) {
                record_pages(sh, &rec);
                batch_first = wanted;
                batch_count = last_frame - wanted + 1 < batch_frames ? last_frame - wanted + 1 : batch_frames;
                if (tailer_read_frames(t, batch_first, batch_count, batch, err) != 0) {
                    rc = -1;
                    break;
                }
            }
            const uint8_t *frame = batch + (size_t)(wanted - batch_first) * frame_bytes;
            if (!wal_frame_follows(hdr, &pos, frame, &next)) {
                tm_error_set(err, "WAL frame %u changed after it was scanned", pos.frame + 1);
                rc = SHIPPER_BROKEN;
                break;
            }
            pos = next;
            /* page number (4 bytes) then the page */
            rc = object_write(w, frame, 4, err);
            if (rc == 0)
                rc = object_write(w, frame + WAL_FRAME_HEADER_BYTES, hdr->page_size, err);
            if (rc == 0 && record) {
                rec.numbers[rec.count] = archive_get_be32(frame);
                rec.pages[rec.count++] = frame + WAL_FRAME_HEADER_BYTES;
            }
        }
        if (rc == SHIPPER_OK && (pos.checksum[0] != commits[c].end.checksum[0] ||
                                 pos.checksum[1] != commits[c].end.checksum[1])) {
            tm_error_set(err, "WAL checksum chain differs from the scan at frame %u", pos.frame);
            rc = SHIPPER_BROKEN;
        }
    }
    record_pages(sh, &rec);
    free(batch);
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
    archive_delta_key(sh->db_name, sh->generation, h.first_index, h.end_index, h.first_time_ms,
                      h.last_time_ms, key, sizeof key);
    uint8_t header[ARCHIVE_DELTA_HEADER_BYTES];
    delta_header_encode(&h, header);
    struct spool_position end;
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
    if (spool_writer_publish(sh, w, key, &end, NULL, &stored, err) != 0)
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
    return shipper_ship_first(sh, t, count, err);
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
    char key[ARCHIVE_NAME_MAX];
    archive_segment_key(sh->db_name, sh->generation, h.index, h.first_time_ms, h.last_time_ms, key,
                        sizeof key);
    uint8_t header[ARCHIVE_HEADER_BYTES];
    segment_header_encode(&h, header);

    struct object_writer *w = NULL;
    int rc = spool_writer_open(sh, key, OBJECT_SEGMENT, &w, err);
    if (rc == 0)
        rc = object_write(w, header, sizeof header, err);
    if (rc == 0)
        rc = write_transactions(sh, t, w, pending, count, from, err);
    if (rc != 0) {
        object_writer_abort(w);
        return rc;
    }
    struct spool_position next = {.next_index = h.index + 1, .wal = h.end, .page_size = h.page_size,
                                  .last_snapshot_ms = sh->last_snapshot_ms};
    snprintf(next.generation, sizeof next.generation, "%s", sh->generation);
    uint8_t hash[OBJECT_HASH_BYTES];
    uint64_t stored;
    if (spool_writer_publish(sh, w, key, &next, hash, &stored, err) != 0)
        return -1;
    memcpy(sh->chain, hash, sizeof hash);
    sh->next_index++;
    sh->segments_shipped++;
    sh->bytes_shipped += stored;
    sh->commits_shipped += count;
    sh->wal_bytes_since_snapshot += (uint64_t)(h.end.frame - from.frame) * hdr->page_size;
    sh->db_pages = pending[count - 1].db_size;
    sh->last_commit_shipped_ms = h.last_time_ms;
    log_debug("spooled segment %s (%zu commits, %llu bytes)", key, count, (unsigned long long)stored);
    tailer_ack(t, count);
    ship_deltas(sh, &h, hash);
    return SHIPPER_OK;
}

/* ------------------------------------------------------------- snapshots */

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
    archive_snapshot_key(sh->db_name, sh->generation, h.index, time_ms, key, sizeof key);
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
    struct spool_position next = {.next_index = h.index, .wal = h.wal, .page_size = page_size,
                                  .last_snapshot_ms = time_ms};
    snprintf(next.generation, sizeof next.generation, "%s", sh->generation);
    memcpy(next.chain, sh->chain, sizeof next.chain);
    uint64_t stored;
    if (spool_writer_publish(sh, w, key, &next, NULL, &stored, err) != 0)
        return -1;
    sh->last_snapshot_ms = time_ms;
    sh->wal_bytes_since_snapshot = 0;
    if (sh->deltas)
        delta_builder_reset(sh->deltas, h.index, page_size);
    sh->db_pages = page_count;
    sh->bytes_shipped += stored;
    log_info("snapshot %s: %u pages, %llu bytes stored", key, page_count, (unsigned long long)stored);
    return 0;
}
