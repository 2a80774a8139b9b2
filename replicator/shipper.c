/* shipper.c - publishes segments, snapshots and heads (formats in
 * common/archive.c) in the database's spool (spool.c), from which every
 * replica's uploader ships them; keeps the archive's generation, index
 * and chain. An SQLite database's segments are made in
 * shipper_segment.c.
 *
 * Commits count as shipped (the tailer may release them) once their
 * object is published in the spool: durable on local disk, queued for
 * every replica. An object is encrypted once, so every replica stores the
 * same bytes under the same key. Every page shipped also goes to the
 * delta builder (deltas.h), and the deltas a segment completes are
 * published right after it. */
#include "shipper_internal.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAPSHOT_READ_BYTES (256 * 1024)

int shipper_spool_writer_open(struct shipper *sh, const char *key, enum object_kind kind,
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
    if (shipper_spool_writer_open(sh, key, OBJECT_HEAD, &w, err) != 0)
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
    int rc = shipper_spool_writer_open(sh, key, OBJECT_SEGMENT, &w, err);
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
    int rc = block ? shipper_spool_writer_open(sh, key, OBJECT_SNAPSHOT, &w, err) : tm_error_set(err, "out of memory");
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
