/* wal.h - reading a SQLite write-ahead log exactly as SQLite defines it.
 * Format and validity rules are described at the top of wal.c. */
#ifndef TM_WAL_H
#define TM_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define WAL_HEADER_BYTES 32
#define WAL_FRAME_HEADER_BYTES 24

struct wal_header {
    uint32_t magic;
    uint32_t version;
    uint32_t page_size;       /* decoded: 65536 when the field holds 1 */
    uint32_t checkpoint_seq;
    uint32_t salt1, salt2;
    uint32_t checksum[2];
    int big_endian_checksum;  /* magic 0x377f0683 */
};

/* A position in one WAL: after frame `frame` (0 = just the header), with
 * the running checksum of the chain up to and including that frame. */
struct wal_position {
    uint32_t salt1, salt2;
    uint32_t frame;
    uint32_t checksum[2];
};

struct wal_frame_header {
    uint32_t page_number;
    uint32_t db_size_after_commit;   /* non-zero only on commit frames */
    uint32_t salt1, salt2;
    uint32_t checksum[2];
};

/* Parse and validate a 32-byte WAL header. Returns 0 if valid; -1 with err
 * naming what is wrong (magic, version, page size, checksum). */
int wal_header_parse(const uint8_t bytes[WAL_HEADER_BYTES], struct wal_header *out,
                     struct tm_error *err);

/* The position just after the header (frame 0). */
struct wal_position wal_position_start(const struct wal_header *hdr);

/* SQLite's WAL checksum over len bytes (a multiple of 8), chained from
 * in[2] into out[2]. */
void wal_checksum(int big_endian, const uint8_t *data, size_t len, const uint32_t in[2],
                  uint32_t out[2]);

void wal_frame_header_decode(const uint8_t bytes[WAL_FRAME_HEADER_BYTES],
                             struct wal_frame_header *out);

/* Is this frame (header + page_size bytes) the valid successor of `pos`?
 * Valid means: salts equal the WAL header's, page number non-zero, and
 * the checksum chained from pos->checksum matches. On 1, *next is the
 * position after it. Returns 1 valid, 0 not. */
int wal_frame_follows(const struct wal_header *hdr, const struct wal_position *pos,
                      const uint8_t *frame, struct wal_position *next);

/* Byte offset of frame number `frame` (1-based) in the file. */
uint64_t wal_frame_offset(const struct wal_header *hdr, uint32_t frame);

/* Called for each commit frame found by wal_scan; `end` is the position
 * just after it, db_size the database size in pages after the commit.
 * Return 0 to continue, -1 to stop the scan with an error. */
typedef int (*wal_commit_fn)(void *ctx, const struct wal_position *end, uint32_t db_size,
                             struct tm_error *err);

/* Read the WAL open on fd forward from `from` (which must belong to hdr)
 * until the first frame that is not a valid successor or is past
 * `max_frame` (the wal-index's committed end; UINT32_MAX: no bound),
 * calling on_commit
 * for every commit frame. *last_commit receives the position after the
 * last commit frame seen (== *from if none). Frames after the last commit
 * (a transaction still being written) are not reported. */
int wal_scan(int fd, const struct wal_header *hdr, const struct wal_position *from,
             uint32_t max_frame, wal_commit_fn on_commit, void *ctx, struct wal_position *last_commit,
             struct tm_error *err);

/* Read the header of the WAL open on fd. Returns 1 and fills *out when a
 * valid header is there, 0 when the file is shorter than a header or the
 * header is invalid (SQLite treats such a WAL as empty), -1 on I/O error. */
int wal_read_header(int fd, struct wal_header *out, struct tm_error *err);

/* What the wal-index (the -shm file) says is committed: the last frame of
 * the last committed transaction, in the WAL with these salts. */
struct wal_index_state {
    uint32_t max_frame;
    uint32_t salt1, salt2;
    uint32_t backfilled;      /* nBackfill: frames already in the database file */
    uint32_t changes;         /* iChange: one more at every commit, kept across WAL restarts */
};

/* Read the wal-index header (and nBackfill) from the -shm file open on fd. Returns 1 with
 * *out filled when the header is consistent (both copies equal, valid
 * checksum), 0 when it is not (being written, or a writer died while
 * writing it: SQLite's next connection will recover it), -1 on I/O error. */
int wal_index_read(int fd, struct wal_index_state *out, struct tm_error *err);

#endif
