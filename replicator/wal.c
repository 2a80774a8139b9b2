/* wal.c - the SQLite WAL format, parsed where it is described.
 *
 * A WAL file is a 32-byte header followed by zero or more frames. Every
 * integer is big-endian.
 *
 *   WAL header                       Frame header (then page_size bytes)
 *   0  magic 0x377f0682 / 0x377f0683  0  page number
 *   4  format version, 3007000        4  for commit frames, the database
 *   8  page size (1 means 65536)         size in pages after the commit;
 *  12  checkpoint sequence               0 for all other frames
 *  16  salt-1                          8  salt-1, copied from the header
 *  20  salt-2                         12  salt-2, copied from the header
 *  24  checksum-1 \ over bytes 0..23  16  checksum-1 \ cumulative, see
 *  28  checksum-2 /                   20  checksum-2 /   below
 *
 * Checksum: two 32-bit sums s0, s1 run over the data as 32-bit words x[i]
 * taken two at a time: s0 += x[i] + s1; s1 += x[i+1] + s0. The words are
 * big-endian when the magic is 0x377f0683, little-endian when 0x377f0682
 * (the writer's native order). The header checksum starts from 0,0. Frame
 * 1's checksum runs over its first 8 header bytes and then its page,
 * starting from the header checksum; each later frame continues from the
 * previous frame's checksum.
 *
 * A frame is valid when its salts equal the header's and its checksum
 * matches this chain. The log ends at the first frame that is not valid:
 * when SQLite restarts the WAL it rewrites the header with new salts
 * (salt-1 incremented, salt-2 random) and overwrites frames from the
 * start, so old frames left after the new end fail the salt test. Only
 * frames up to the last valid commit frame are committed data; valid
 * frames after it belong to a transaction still being written (or rolled
 * back) and may yet be overwritten.
 *
 * But a valid commit frame is not enough. A writer appends its frames,
 * then publishes the transaction in the wal-index (the -shm file). If it
 * dies in between, the WAL holds a complete, valid transaction that no
 * connection sees, and the next writer overwrites it (SQLite would only
 * adopt it by a recovery, after every connection closed). So a commit
 * counts only once the wal-index says so: frames up to its mxFrame.
 *
 * The wal-index header, in the writer's native byte order, is stored
 * twice (bytes 0..47 and 48..95); a reader trusts it when both copies are
 * equal, isInit is 1 and the checksum matches:
 *
 *    0  iVersion 3007000       16  mxFrame: last frame of the last commit
 *    4  unused                 20  nPage
 *    8  iChange: +1 at every     24  aFrameCksum[2]: checksum at mxFrame
 *       commit (a restart keeps it)
 *   12  isInit (1 byte)        32  aSalt[2]: the WAL header's salts, as
 *   13  bigEndCksum (1 byte)       bytes 16..23 of that header
 *   14  szPage (2 bytes)       40  aCksum[2]: native checksum of 0..39
 *
 * The checkpoint information follows the two copies (WalCkptInfo):
 *
 *   96  nBackfill: frames 1..nBackfill are copied into the database file
 *  100  aReadMark[0..4]: the frame each reader slot's readers stand at
 *  120  the lock bytes: WRITE 120, CKPT 121, RECOVER 122, READ(0..4)
 *       123..127 (fcntl byte-range locks, never written) */
#include "wal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAL_MAGIC_LE 0x377f0682u
#define WAL_MAGIC_BE 0x377f0683u
#define WAL_VERSION 3007000u

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint32_t get_le32(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

void wal_checksum(int big_endian, const uint8_t *data, size_t len, const uint32_t in[2],
                  uint32_t out[2])
{
    uint32_t s0 = in[0], s1 = in[1];
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint32_t x0 = big_endian ? get_be32(data + i) : get_le32(data + i);
        uint32_t x1 = big_endian ? get_be32(data + i + 4) : get_le32(data + i + 4);
        s0 += x0 + s1;
        s1 += x1 + s0;
    }
    out[0] = s0;
    out[1] = s1;
}

int wal_header_parse(const uint8_t bytes[WAL_HEADER_BYTES], struct wal_header *out,
                     struct tm_error *err)
{
    struct wal_header hdr;
    hdr.magic = get_be32(bytes);
    if (hdr.magic != WAL_MAGIC_LE && hdr.magic != WAL_MAGIC_BE)
        return tm_error_set(err, "bad WAL magic 0x%08x", hdr.magic);
    hdr.big_endian_checksum = hdr.magic == WAL_MAGIC_BE;
    hdr.version = get_be32(bytes + 4);
    if (hdr.version != WAL_VERSION)
        return tm_error_set(err, "unsupported WAL format version %u", hdr.version);
    uint32_t raw_page_size = get_be32(bytes + 8);
    hdr.page_size = raw_page_size == 1 ? 65536 : raw_page_size;
    if (hdr.page_size < 512 || hdr.page_size > 65536 || (hdr.page_size & (hdr.page_size - 1)))
        return tm_error_set(err, "invalid WAL page size %u", raw_page_size);
    hdr.checkpoint_seq = get_be32(bytes + 12);
    hdr.salt1 = get_be32(bytes + 16);
    hdr.salt2 = get_be32(bytes + 20);
    hdr.checksum[0] = get_be32(bytes + 24);
    hdr.checksum[1] = get_be32(bytes + 28);
    uint32_t zero[2] = {0, 0}, computed[2];
    wal_checksum(hdr.big_endian_checksum, bytes, 24, zero, computed);
    if (computed[0] != hdr.checksum[0] || computed[1] != hdr.checksum[1])
        return tm_error_set(err, "WAL header checksum mismatch");
    *out = hdr;
    return 0;
}

struct wal_position wal_position_start(const struct wal_header *hdr)
{
    struct wal_position pos = {hdr->salt1, hdr->salt2, 0, {hdr->checksum[0], hdr->checksum[1]}};
    return pos;
}

void wal_frame_header_decode(const uint8_t bytes[WAL_FRAME_HEADER_BYTES],
                             struct wal_frame_header *out)
{
    out->page_number = get_be32(bytes);
    out->db_size_after_commit = get_be32(bytes + 4);
    out->salt1 = get_be32(bytes + 8);
    out->salt2 = get_be32(bytes + 12);
    out->checksum[0] = get_be32(bytes + 16);
    out->checksum[1] = get_be32(bytes + 20);
}

int wal_frame_follows(const struct wal_header *hdr, const struct wal_position *pos,
                      const uint8_t *frame, struct wal_position *next)
{
    struct wal_frame_header fh;
    wal_frame_header_decode(frame, &fh);
    if (fh.salt1 != hdr->salt1 || fh.salt2 != hdr->salt2 || fh.page_number == 0)
        return 0;
    uint32_t sum[2];
    wal_checksum(hdr->big_endian_checksum, frame, 8, pos->checksum, sum);
    wal_checksum(hdr->big_endian_checksum, frame + WAL_FRAME_HEADER_BYTES, hdr->page_size, sum, sum);
    if (sum[0] != fh.checksum[0] || sum[1] != fh.checksum[1])
        return 0;
    next->salt1 = hdr->salt1;
    next->salt2 = hdr->salt2;
    next->frame = pos->frame + 1;
    next->checksum[0] = sum[0];
    next->checksum[1] = sum[1];
    return 1;
}

uint64_t wal_frame_offset(const struct wal_header *hdr, uint32_t frame)
{
    return WAL_HEADER_BYTES +
           (uint64_t)(frame - 1) * (WAL_FRAME_HEADER_BYTES + (uint64_t)hdr->page_size);
}

static int read_at(int fd, void *buf, size_t len, uint64_t offset, size_t *got)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return 0;
}

int wal_read_header(int fd, struct wal_header *out, struct tm_error *err)
{
    uint8_t bytes[WAL_HEADER_BYTES];
    size_t got;
    if (read_at(fd, bytes, sizeof bytes, 0, &got) != 0)
        return tm_error_set(err, "cannot read WAL header: %s", strerror(errno));
    if (got < sizeof bytes)
        return 0;
    struct tm_error ignored;
    return wal_header_parse(bytes, out, &ignored) == 0 ? 1 : 0;
}

#define WAL_INDEX_HEADER_BYTES 48

static uint32_t get_native32(const uint8_t *p)
{
    uint32_t value;
    memcpy(&value, p, sizeof value);
    return value;
}

static int host_is_big_endian(void)
{
    const uint16_t probe = 1;
    return *(const uint8_t *)&probe == 0;
}

int wal_index_read(int fd, struct wal_index_state *out, struct tm_error *err)
{
    uint8_t copies[2 * WAL_INDEX_HEADER_BYTES + 4];   /* + nBackfill */
    size_t got;
    if (read_at(fd, copies, sizeof copies, 0, &got) != 0)
        return tm_error_set(err, "cannot read the wal-index: %s", strerror(errno));
    const uint8_t *h = copies;
    if (got < sizeof copies || memcmp(h, copies + WAL_INDEX_HEADER_BYTES, WAL_INDEX_HEADER_BYTES) != 0 ||
        get_native32(h) != WAL_VERSION || h[12] != 1)
        return 0;
    uint32_t zero[2] = {0, 0}, sum[2];
    wal_checksum(host_is_big_endian(), h, 40, zero, sum);
    if (sum[0] != get_native32(h + 40) || sum[1] != get_native32(h + 44))
        return 0;
    out->max_frame = get_native32(h + 16);
    out->salt1 = get_be32(h + 32);
    out->salt2 = get_be32(h + 36);
    out->backfilled = get_native32(copies + 2 * WAL_INDEX_HEADER_BYTES);
    out->changes = get_native32(h + 8);
    return 1;
}

/* Frames are read in batches of up to this many bytes. */
#define SCAN_BATCH_BYTES (1024 * 1024)

int wal_scan(int fd, const struct wal_header *hdr, const struct wal_position *from,
             uint32_t max_frame, wal_commit_fn on_commit, void *ctx, struct wal_position *last_commit,
             struct tm_error *err)
{
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + hdr->page_size;
    size_t frames_per_batch = SCAN_BATCH_BYTES / frame_bytes;
    if (frames_per_batch == 0)
        frames_per_batch = 1;
    uint8_t *batch = malloc(frames_per_batch * frame_bytes);
    if (!batch)
        return tm_error_set(err, "out of memory");
    struct wal_position pos = *from;
    *last_commit = *from;
    int rc = 0;
    for (;;) {
        size_t got;
        if (read_at(fd, batch, frames_per_batch * frame_bytes, wal_frame_offset(hdr, pos.frame + 1),
                    &got) != 0) {
            rc = tm_error_set(err, "cannot read WAL: %s", strerror(errno));
            break;
        }
        size_t whole_frames = got / frame_bytes;
        int stopped = 0;
        for (size_t i = 0; i < whole_frames; i++) {
            const uint8_t *frame = batch + i * frame_bytes;
            struct wal_position next;
            if (pos.frame >= max_frame || !wal_frame_follows(hdr, &pos, frame, &next)) {
                stopped = 1;
                break;
            }
            pos = next;
            uint32_t db_size = get_be32(frame + 4);
            if (db_size != 0) {
                *last_commit = pos;
                if (on_commit && on_commit(ctx, &pos, db_size, err) != 0) {
                    rc = -1;
                    stopped = 1;
                    break;
                }
            }
        }
        if (stopped || whole_frames < frames_per_batch)
            break;
    }
    free(batch);
    return rc;
}
