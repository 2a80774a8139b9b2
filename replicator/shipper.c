/* shipper.c - writes segments and snapshots (formats in common/archive.c)
 * to every replica of a database.
 *
 * A segment's payload is produced once and streamed to all replicas at
 * the same time; its frames are read back from the pinned WAL and their
 * checksum chain re-verified against the positions the scanner recorded,
 * so a segment holds exactly the bytes SQLite committed. A segment counts
 * as shipped only when every replica has it; after a failure the same
 * batch of commits is shipped again, giving byte-identical payloads under
 * the same names, so replicas that already had it are simply rewritten. */
#include "shipper.h"

#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAPSHOT_READ_BYTES (256 * 1024)

/* All replicas' writers for one object. */
struct fanout {
    struct object_writer **writers;
    size_t count;
};

static int fanout_open(struct shipper *sh, const char *key, enum object_kind kind,
                       struct fanout *out, struct tm_error *err)
{
    out->count = 0;
    out->writers = calloc(sh->replica_count, sizeof *out->writers);
    if (!out->writers)
        return tm_error_set(err, "out of memory");
    for (size_t i = 0; i < sh->replica_count; i++) {
        if (object_writer_open(sh->replicas[i], key, kind, sh->key, &out->writers[i], err) != 0) {
            tm_error_prefix(err, "%s: ", storage_describe(sh->replicas[i]));
            return -1;
        }
        out->count++;
    }
    return 0;
}

static int fanout_write(struct fanout *f, struct shipper *sh, const void *data, size_t len,
                        struct tm_error *err)
{
    for (size_t i = 0; i < f->count; i++)
        if (object_write(f->writers[i], data, len, err) != 0)
            return tm_error_prefix(err, "%s: ", storage_describe(sh->replicas[i]));
    return 0;
}

static void fanout_abort(struct fanout *f)
{
    for (size_t i = 0; i < f->count; i++)
        object_writer_abort(f->writers[i]);
    free(f->writers);
    f->writers = NULL;
    f->count = 0;
}

/* Commits every writer; all must succeed. hash is the (shared) payload hash. */
static int fanout_commit(struct fanout *f, struct shipper *sh, uint8_t hash[OBJECT_HASH_BYTES],
                         uint64_t *stored, struct tm_error *err)
{
    int rc = 0;
    *stored = 0;
    for (size_t i = 0; i < f->count; i++) {
        struct tm_error one;
        uint64_t one_stored = 0;
        int one_rc = object_writer_commit(f->writers[i], hash, &one_stored, &one);
        *stored += one_stored;
        if (one_rc != 0 && rc == 0) {
            *err = one;
            tm_error_prefix(err, "%s: ", storage_describe(sh->replicas[i]));
            rc = -1;
        }
    }
    free(f->writers);
    f->writers = NULL;
    f->count = 0;
    return rc;
}

/* ---------------------------------------------------------------- resume */

struct archive_end {
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint64_t next_index;
    uint8_t chain[OBJECT_HASH_BYTES];
    struct archive_wal_position pos;
    uint32_t page_size;
    int found;
};

/* The end of one replica's archive: its newest generation's last object. */
static int archive_end_of(struct shipper *sh, struct storage *st, struct archive_end *end,
                          struct tm_error *err)
{
    memset(end, 0, sizeof *end);
    struct catalog cat;
    if (catalog_load(st, sh->db_name, &cat, err) != 0)
        return -1;
    int rc = 0;
    struct catalog_generation *gen = cat.generation_count ? &cat.generations[cat.generation_count - 1] : NULL;
    if (!gen || gen->snapshot_count == 0)
        goto done;
    const struct catalog_snapshot *snap = &gen->snapshots[gen->snapshot_count - 1];
    const struct catalog_segment *seg = gen->segment_count ? &gen->segments[gen->segment_count - 1] : NULL;
    snprintf(end->generation, sizeof end->generation, "%s", gen->id);
    if (seg && seg->index >= snap->index) {
        struct segment_header h;
        if ((rc = segment_read(st, seg->key, sh->key, NULL, &h, end->chain, err)) != 0)
            goto done;
        end->next_index = h.index + 1;
        end->pos = h.end;
        end->page_size = h.page_size;
    } else {
        struct snapshot_header h;
        if ((rc = snapshot_read(st, snap->key, sh->key, NULL, &h, err)) != 0)
            goto done;
        end->next_index = h.index;
        memcpy(end->chain, h.chain_hash, sizeof end->chain);
        end->pos = h.wal;
        end->page_size = h.page_size;
    }
    end->found = end->pos.valid != 0;
done:
    catalog_release(&cat);
    return rc;
}

int shipper_resume(struct shipper *sh, struct wal_position *pos, uint32_t *page_size,
                   int *found, struct tm_error *err)
{
    *found = 0;
    struct archive_end first;
    for (size_t i = 0; i < sh->replica_count; i++) {
        struct archive_end end;
        if (archive_end_of(sh, sh->replicas[i], &end, err) != 0)
            return tm_error_prefix(err, "%s: ", storage_describe(sh->replicas[i]));
        if (!end.found)
            return 0;
        if (i == 0)
            first = end;
        else if (strcmp(end.generation, first.generation) != 0 || end.next_index != first.next_index ||
                 memcmp(end.chain, first.chain, sizeof end.chain) != 0)
            return 0;
    }
    snprintf(sh->generation, sizeof sh->generation, "%s", first.generation);
    sh->has_generation = 1;
    sh->next_index = first.next_index;
    memcpy(sh->chain, first.chain, sizeof sh->chain);
    sh->retry_commits = 0;
    pos->salt1 = first.pos.salt1;
    pos->salt2 = first.pos.salt2;
    pos->frame = first.pos.frame;
    pos->checksum[0] = first.pos.checksum[0];
    pos->checksum[1] = first.pos.checksum[1];
    *page_size = first.page_size;
    *found = 1;
    return 0;
}

void shipper_new_generation(struct shipper *sh, int64_t now_ms)
{
    archive_generation_id_new(now_ms, sh->generation);
    archive_chain_start(sh->generation, sh->chain);
    sh->has_generation = 1;
    sh->next_index = 0;
    sh->retry_commits = 0;
}

/* ------------------------------------------------------------- segments */

/* Streams the frames of `commits` into f, re-verifying the checksum chain
 * from `from`. Returns SHIPPER_BROKEN if the WAL no longer matches. */
static int write_transactions(struct shipper *sh, struct tailer *t, struct fanout *f,
                              const struct tailer_commit *commits, size_t count,
                              struct wal_position from, struct tm_error *err)
{
    const struct wal_header *hdr = tailer_header(t);
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + hdr->page_size;
    uint8_t *frame = malloc(frame_bytes);
    if (!frame)
        return tm_error_set(err, "out of memory");
    int rc = SHIPPER_OK;
    struct wal_position pos = from;
    for (size_t c = 0; c < count && rc == SHIPPER_OK; c++) {
        struct txn_header txn = {commits[c].time_ms, commits[c].db_size,
                                 commits[c].end.frame - pos.frame};
        uint8_t txn_bytes[ARCHIVE_TXN_HEADER_BYTES];
        txn_header_encode(&txn, txn_bytes);
        rc = fanout_write(f, sh, txn_bytes, sizeof txn_bytes, err);
        while (rc == SHIPPER_OK && pos.frame < commits[c].end.frame) {
            struct wal_position next;
            if (tailer_read_frame(t, pos.frame + 1, frame, err) != 0) {
                rc = -1;
                break;
            }
            if (!wal_frame_follows(hdr, &pos, frame, &next)) {
                tm_error_set(err, "WAL frame %u changed after it was scanned", pos.frame + 1);
                rc = SHIPPER_BROKEN;
                break;
            }
            pos = next;
            /* page number (4 bytes) then the page */
            rc = fanout_write(f, sh, frame, 4, err);
            if (rc == 0)
                rc = fanout_write(f, sh, frame + WAL_FRAME_HEADER_BYTES, hdr->page_size, err);
        }
        if (rc == SHIPPER_OK && (pos.checksum[0] != commits[c].end.checksum[0] ||
                                 pos.checksum[1] != commits[c].end.checksum[1])) {
            tm_error_set(err, "WAL checksum chain differs from the scan at frame %u", pos.frame);
            rc = SHIPPER_BROKEN;
        }
    }
    free(frame);
    return rc;
}

int shipper_ship(struct shipper *sh, struct tailer *t, struct tm_error *err)
{
    size_t pending_count;
    const struct tailer_commit *pending = tailer_pending(t, &pending_count);
    size_t count = sh->retry_commits ? sh->retry_commits : pending_count;
    if (count == 0)
        return SHIPPER_OK;
    if (count > pending_count)
        return tm_error_set(err, "internal: retry batch larger than pending commits");
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

    struct fanout f;
    int rc = fanout_open(sh, key, OBJECT_SEGMENT, &f, err);
    if (rc == 0)
        rc = fanout_write(&f, sh, header, sizeof header, err);
    if (rc == 0)
        rc = write_transactions(sh, t, &f, pending, count, from, err);
    if (rc != 0) {
        fanout_abort(&f);
        if (rc != SHIPPER_BROKEN)
            sh->retry_commits = count;
        return rc;
    }
    uint8_t hash[OBJECT_HASH_BYTES];
    uint64_t stored;
    if (fanout_commit(&f, sh, hash, &stored, err) != 0) {
        sh->retry_commits = count;
        return -1;
    }
    memcpy(sh->chain, hash, sizeof hash);
    sh->next_index++;
    sh->retry_commits = 0;
    sh->segments_shipped++;
    sh->bytes_shipped += stored;
    sh->commits_shipped += count;
    sh->last_commit_shipped_ms = h.last_time_ms;
    log_debug("shipped segment %s (%zu commits, %llu bytes)", key, count, (unsigned long long)stored);
    tailer_ack(t, count);
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
    struct fanout f = {0};
    int rc = block ? fanout_open(sh, key, OBJECT_SNAPSHOT, &f, err) : tm_error_set(err, "out of memory");
    if (rc == 0)
        rc = fanout_write(&f, sh, header, sizeof header, err);
    uint64_t remaining = (uint64_t)page_size * page_count;
    while (rc == 0 && remaining > 0) {
        size_t want = remaining < SNAPSHOT_READ_BYTES ? (size_t)remaining : SNAPSHOT_READ_BYTES;
        ssize_t got = read(fd, block, want);
        if (got <= 0) {
            rc = tm_error_set(err, "cannot read snapshot file '%s': %s", file,
                              got < 0 ? strerror(errno) : "shorter than its page count");
            break;
        }
        rc = fanout_write(&f, sh, block, (size_t)got, err);
        remaining -= (uint64_t)got;
    }
    close(fd);
    free(block);
    if (rc != 0) {
        fanout_abort(&f);
        return -1;
    }
    uint64_t stored;
    if (fanout_commit(&f, sh, NULL, &stored, err) != 0)
        return -1;
    sh->bytes_shipped += stored;
    log_info("snapshot %s: %u pages, %llu bytes stored", key, page_count, (unsigned long long)stored);
    return 0;
}
