/* archive.c - the payload formats of archive objects, and their readers.
 *
 * Where objects live and what their names say: layout.c. This file is
 * what they hold.
 *
 * Every object is stored in the envelope of object.c. Payloads (all
 * integers big-endian):
 *
 *  Segment payload                      Snapshot payload
 *    0  8 magic "TMSEGMT1"                0  8 magic "TMSNAPS1"
 *    8  4 page size                       8  4 page size
 *   12  4 transaction count              12  4 page count
 *   16  8 index                          16  8 index (segments before it)
 *   24  8 first commit time (ms)         24  8 time taken (ms)
 *   32  8 last commit time (ms)          32 32 generation id, NUL padded
 *   40 32 generation id, NUL padded      64 32 chain hash before `index`
 *   72 32 hash of the previous segment   96  4 WAL position valid (0/1)
 *         (chain hash; see below)       100  4 WAL salt-1
 *  104  4 WAL salt-1                    104  4 WAL salt-2
 *  108  4 WAL salt-2                    108  4 WAL frame
 *  112  4 first WAL frame               112  8 WAL checksum at that frame
 *  116  4 last WAL frame                120  8 zero
 *  120  8 WAL checksum at last frame    128    page 1, page 2, ... page N
 *  128    transactions, each:
 *           0 8 commit time seen (ms)
 *           8 4 database size in pages after the commit
 *          12 4 frame count K
 *          16   K x (4-byte page number, page-size bytes of page)
 *
 * Deltas are a shortcut over segments [A, B) (A, B in 16 hex digits; F
 * and L the first and last commit times they cover): every page those
 * segments changed, once, as it was at the end of segment B-1. A restore
 * may apply a delta instead of its segments when the target is at or
 * after L; the segments stay, so every commit's time is kept. Payload:
 *
 *    0  8 magic "TMDELTA1"               56 32 generation id, NUL padded
 *    8  4 page size                      88 32 chain hash in (prev hash of
 *   12  4 page count P                         segment A)
 *   16  8 first index A                 120 32 chain hash out (prev hash of
 *   24  8 end index B                          segment B)
 *   32  8 first commit time (ms)        152 40 zero
 *   40  8 last commit time (ms)         192    P x (4-byte page number,
 *   48  4 database size after B-1              page), page numbers ascending
 *   52  4 transactions covered
 *
 * Redis archives use the same keys; their payloads (all big-endian):
 *
 *  Redis snapshot payload               Redis segment payload
 *    0  8 magic "TMRDBSN1"                0  8 magic "TMRSEGM1"
 *    8  8 index                           8  4 unit count, 4 zero
 *   16  8 time of +FULLRESYNC (ms)       16  8 index
 *   24 32 generation id                  24  8 first unit time (ms)
 *   56 32 chain hash before `index`      32  8 last unit time (ms)
 *   88 40 master replication id          40 32 generation id
 *  128  8 replication offset of the RDB  72 32 hash of the previous segment
 *  136 56 zero                          104 40 master replication id
 *  192    the RDB file in chunks:        144  8 offset before, 152 8 after
 *         4-byte length, bytes; a        160 32 zero
 *         zero length ends it           192    units, each: 8 time received
 *                                              (ms), 4 length, the bytes (one
 *                                              command or MULTI ... EXEC block)
 *
 * The envelope appends the BLAKE2b-256 of the payload. Chain: segment 0's
 * previous hash is BLAKE2b-256("tidemark generation " + GEN); segment
 * i+1's is segment i's payload hash. A snapshot at index k carries the
 * previous hash segment k will have. */
#include "archive.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENT_MAGIC "TMSEGMT1"
#define SNAPSHOT_MAGIC "TMSNAPS1"
#define DELTA_MAGIC "TMDELTA1"
#define REDIS_SNAPSHOT_MAGIC "TMRDBSN1"
#define REDIS_SEGMENT_MAGIC "TMRSEGM1"

void archive_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t archive_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    archive_put_be32(p, (uint32_t)(v >> 32));
    archive_put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const uint8_t *p)
{
    return ((uint64_t)archive_get_be32(p) << 32) | archive_get_be32(p + 4);
}

static void put_gen(uint8_t *p, const char *gen)
{
    memset(p, 0, ARCHIVE_GEN_ID_BYTES);
    memcpy(p, gen, strnlen(gen, ARCHIVE_GEN_ID_BYTES));
}

static void get_gen(const uint8_t *p, char *out)
{
    memcpy(out, p, ARCHIVE_GEN_ID_BYTES);
    out[ARCHIVE_GEN_ID_BYTES] = '\0';
}

static int page_size_ok(uint32_t page_size)
{
    return page_size >= 512 && page_size <= 65536 && !(page_size & (page_size - 1));
}

void segment_header_encode(const struct segment_header *h, uint8_t out[ARCHIVE_HEADER_BYTES])
{
    memset(out, 0, ARCHIVE_HEADER_BYTES);
    memcpy(out, SEGMENT_MAGIC, 8);
    archive_put_be32(out + 8, h->page_size);
    archive_put_be32(out + 12, h->txn_count);
    put_be64(out + 16, h->index);
    put_be64(out + 24, (uint64_t)h->first_time_ms);
    put_be64(out + 32, (uint64_t)h->last_time_ms);
    put_gen(out + 40, h->generation);
    memcpy(out + 72, h->prev_hash, OBJECT_HASH_BYTES);
    archive_put_be32(out + 104, h->end.salt1);
    archive_put_be32(out + 108, h->end.salt2);
    archive_put_be32(out + 112, h->first_frame);
    archive_put_be32(out + 116, h->end.frame);
    archive_put_be32(out + 120, h->end.checksum[0]);
    archive_put_be32(out + 124, h->end.checksum[1]);
}

int segment_header_decode(const uint8_t in[ARCHIVE_HEADER_BYTES], struct segment_header *out,
                          struct tm_error *err)
{
    if (memcmp(in, SEGMENT_MAGIC, 8) != 0)
        return tm_error_set(err, "not a segment payload (bad magic)");
    out->page_size = archive_get_be32(in + 8);
    if (!page_size_ok(out->page_size))
        return tm_error_set(err, "invalid page size %u in segment header", out->page_size);
    out->txn_count = archive_get_be32(in + 12);
    out->index = get_be64(in + 16);
    out->first_time_ms = (int64_t)get_be64(in + 24);
    out->last_time_ms = (int64_t)get_be64(in + 32);
    get_gen(in + 40, out->generation);
    memcpy(out->prev_hash, in + 72, OBJECT_HASH_BYTES);
    out->end.valid = 1;
    out->end.salt1 = archive_get_be32(in + 104);
    out->end.salt2 = archive_get_be32(in + 108);
    out->first_frame = archive_get_be32(in + 112);
    out->end.frame = archive_get_be32(in + 116);
    out->end.checksum[0] = archive_get_be32(in + 120);
    out->end.checksum[1] = archive_get_be32(in + 124);
    return 0;
}

void snapshot_header_encode(const struct snapshot_header *h, uint8_t out[ARCHIVE_HEADER_BYTES])
{
    memset(out, 0, ARCHIVE_HEADER_BYTES);
    memcpy(out, SNAPSHOT_MAGIC, 8);
    archive_put_be32(out + 8, h->page_size);
    archive_put_be32(out + 12, h->page_count);
    put_be64(out + 16, h->index);
    put_be64(out + 24, (uint64_t)h->time_ms);
    put_gen(out + 32, h->generation);
    memcpy(out + 64, h->chain_hash, OBJECT_HASH_BYTES);
    archive_put_be32(out + 96, h->wal.valid);
    archive_put_be32(out + 100, h->wal.salt1);
    archive_put_be32(out + 104, h->wal.salt2);
    archive_put_be32(out + 108, h->wal.frame);
    archive_put_be32(out + 112, h->wal.checksum[0]);
    archive_put_be32(out + 116, h->wal.checksum[1]);
}

int snapshot_header_decode(const uint8_t in[ARCHIVE_HEADER_BYTES], struct snapshot_header *out,
                           struct tm_error *err)
{
    if (memcmp(in, SNAPSHOT_MAGIC, 8) != 0)
        return tm_error_set(err, "not a snapshot payload (bad magic)");
    out->page_size = archive_get_be32(in + 8);
    if (!page_size_ok(out->page_size))
        return tm_error_set(err, "invalid page size %u in snapshot header", out->page_size);
    out->page_count = archive_get_be32(in + 12);
    out->index = get_be64(in + 16);
    out->time_ms = (int64_t)get_be64(in + 24);
    get_gen(in + 32, out->generation);
    memcpy(out->chain_hash, in + 64, OBJECT_HASH_BYTES);
    out->wal.valid = archive_get_be32(in + 96);
    out->wal.salt1 = archive_get_be32(in + 100);
    out->wal.salt2 = archive_get_be32(in + 104);
    out->wal.frame = archive_get_be32(in + 108);
    out->wal.checksum[0] = archive_get_be32(in + 112);
    out->wal.checksum[1] = archive_get_be32(in + 116);
    return 0;
}

void delta_header_encode(const struct delta_header *h, uint8_t out[ARCHIVE_DELTA_HEADER_BYTES])
{
    memset(out, 0, ARCHIVE_DELTA_HEADER_BYTES);
    memcpy(out, DELTA_MAGIC, 8);
    archive_put_be32(out + 8, h->page_size);
    archive_put_be32(out + 12, h->page_count);
    put_be64(out + 16, h->first_index);
    put_be64(out + 24, h->end_index);
    put_be64(out + 32, (uint64_t)h->first_time_ms);
    put_be64(out + 40, (uint64_t)h->last_time_ms);
    archive_put_be32(out + 48, h->db_size);
    archive_put_be32(out + 52, h->txn_count);
    put_gen(out + 56, h->generation);
    memcpy(out + 88, h->chain_in, OBJECT_HASH_BYTES);
    memcpy(out + 120, h->chain_out, OBJECT_HASH_BYTES);
}

int delta_header_decode(const uint8_t in[ARCHIVE_DELTA_HEADER_BYTES], struct delta_header *out,
                        struct tm_error *err)
{
    if (memcmp(in, DELTA_MAGIC, 8) != 0)
        return tm_error_set(err, "not a delta payload (bad magic)");
    out->page_size = archive_get_be32(in + 8);
    if (!page_size_ok(out->page_size))
        return tm_error_set(err, "invalid page size %u in delta header", out->page_size);
    out->page_count = archive_get_be32(in + 12);
    out->first_index = get_be64(in + 16);
    out->end_index = get_be64(in + 24);
    if (out->end_index <= out->first_index)
        return tm_error_set(err, "delta covers no segment (%llu to %llu)",
                            (unsigned long long)out->first_index, (unsigned long long)out->end_index);
    out->first_time_ms = (int64_t)get_be64(in + 32);
    out->last_time_ms = (int64_t)get_be64(in + 40);
    out->db_size = archive_get_be32(in + 48);
    out->txn_count = archive_get_be32(in + 52);
    get_gen(in + 56, out->generation);
    memcpy(out->chain_in, in + 88, OBJECT_HASH_BYTES);
    memcpy(out->chain_out, in + 120, OBJECT_HASH_BYTES);
    return 0;
}

void txn_header_encode(const struct txn_header *h, uint8_t out[ARCHIVE_TXN_HEADER_BYTES])
{
    put_be64(out, (uint64_t)h->time_ms);
    archive_put_be32(out + 8, h->db_size);
    archive_put_be32(out + 12, h->frame_count);
}

void txn_header_decode(const uint8_t in[ARCHIVE_TXN_HEADER_BYTES], struct txn_header *out)
{
    out->time_ms = (int64_t)get_be64(in);
    out->db_size = archive_get_be32(in + 8);
    out->frame_count = archive_get_be32(in + 12);
}

void archive_chain_start(const char *generation, uint8_t out[OBJECT_HASH_BYTES])
{
    char label[ARCHIVE_GEN_ID_BYTES + 32];
    int len = snprintf(label, sizeof label, "tidemark generation %s", generation);
    crypto_generichash(out, OBJECT_HASH_BYTES, (const uint8_t *)label, (size_t)len, NULL, 0);
}

/* --------------------------------------------------------------- reading */

static int read_transactions(struct object_reader *r, const struct segment_header *h,
                             const struct segment_visitor *v, struct tm_error *err)
{
    uint8_t *frame = malloc(4 + (size_t)h->page_size);
    if (!frame)
        return tm_error_set(err, "out of memory");
    int rc = 0;
    for (uint32_t t = 0; rc == 0 && t < h->txn_count; t++) {
        uint8_t txn_bytes[ARCHIVE_TXN_HEADER_BYTES];
        struct txn_header txn;
        if ((rc = object_read(r, txn_bytes, sizeof txn_bytes, err)) != 0)
            break;
        txn_header_decode(txn_bytes, &txn);
        if (v && v->on_txn)
            rc = v->on_txn(v->ctx, &txn, err);
        for (uint32_t f = 0; rc == 0 && f < txn.frame_count; f++) {
            if ((rc = object_read(r, frame, 4 + (size_t)h->page_size, err)) != 0)
                break;
            uint32_t page_number = archive_get_be32(frame);
            if (page_number == 0)
                rc = tm_error_set(err, "page number 0 in a transaction");
            else if (v && v->on_page)
                rc = v->on_page(v->ctx, page_number, frame + 4, err);
        }
    }
    free(frame);
    return rc;
}

/* Opens object `name` and reads its fixed payload header. */
static int open_with_header(struct storage *st, const char *name, enum object_kind kind,
                            const struct crypto_keyring *key, struct object_reader **out,
                            uint8_t header[ARCHIVE_HEADER_BYTES], struct tm_error *err)
{
    if (object_reader_open(st, name, kind, key, out, err) != 0)
        return -1;
    if (object_read(*out, header, ARCHIVE_HEADER_BYTES, err) != 0) {
        object_reader_close(*out);
        return -1;
    }
    return 0;
}

int segment_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                 const struct segment_visitor *visitor, struct segment_header *header_out,
                 uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    struct object_reader *r;
    uint8_t header[ARCHIVE_HEADER_BYTES];
    if (open_with_header(st, name, OBJECT_SEGMENT, key, &r, header, err) != 0)
        return -1;
    int rc = segment_header_decode(header, header_out, err);
    if (rc == 0 && visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    if (rc == 0)
        rc = read_transactions(r, header_out, visitor, err);
    if (rc == 0)
        rc = object_reader_finish(r, hash_out, err);
    object_reader_close(r);
    return rc;
}

int snapshot_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                  const struct snapshot_visitor *visitor, struct snapshot_header *header_out,
                  struct tm_error *err)
{
    struct object_reader *r;
    uint8_t header[ARCHIVE_HEADER_BYTES];
    if (open_with_header(st, name, OBJECT_SNAPSHOT, key, &r, header, err) != 0)
        return -1;
    int rc = snapshot_header_decode(header, header_out, err);
    if (rc == 0 && visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    if (rc != 0 || !visitor || !visitor->on_page) {
        object_reader_close(r);
        return rc;
    }
    uint8_t *page = malloc(header_out->page_size);
    if (!page)
        rc = tm_error_set(err, "out of memory");
    for (uint32_t i = 0; rc == 0 && i < header_out->page_count; i++) {
        rc = object_read(r, page, header_out->page_size, err);
        if (rc == 0)
            rc = visitor->on_page(visitor->ctx, i + 1, page, err);
    }
    free(page);
    if (rc == 0)
        rc = object_reader_finish(r, NULL, err);
    object_reader_close(r);
    return rc;
}

int delta_read(struct storage *st, const char *name, const struct crypto_keyring *key,
               const struct delta_visitor *visitor, struct delta_header *header_out,
               struct tm_error *err)
{
    struct object_reader *r;
    if (object_reader_open(st, name, OBJECT_DELTA, key, &r, err) != 0)
        return -1;
    uint8_t header[ARCHIVE_DELTA_HEADER_BYTES];
    int rc = object_read(r, header, sizeof header, err);
    if (rc == 0)
        rc = delta_header_decode(header, header_out, err);
    if (rc == 0 && visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    uint8_t *page = rc == 0 ? malloc(4 + (size_t)header_out->page_size) : NULL;
    if (rc == 0 && !page)
        rc = tm_error_set(err, "out of memory");
    uint32_t previous = 0;
    for (uint32_t i = 0; rc == 0 && i < header_out->page_count; i++) {
        if ((rc = object_read(r, page, 4 + (size_t)header_out->page_size, err)) != 0)
            break;
        uint32_t page_number = archive_get_be32(page);
        if (page_number <= previous)
            rc = tm_error_set(err, "page numbers do not ascend (%u after %u)", page_number, previous);
        else if (visitor && visitor->on_page)
            rc = visitor->on_page(visitor->ctx, page_number, page + 4, err);
        previous = page_number;
    }
    free(page);
    if (rc == 0)
        rc = object_reader_finish(r, NULL, err);
    object_reader_close(r);
    return rc;
}

/* ----------------------------------------------------------------- Redis */

static void put_replid(uint8_t *p, const char *replid)
{
    memset(p, 0, ARCHIVE_REPLID_BYTES);
    memcpy(p, replid, strnlen(replid, ARCHIVE_REPLID_BYTES));
}

static void get_replid(const uint8_t *p, char *out)
{
    memcpy(out, p, ARCHIVE_REPLID_BYTES);
    out[ARCHIVE_REPLID_BYTES] = '\0';
}

void redis_snapshot_header_encode(const struct redis_snapshot_header *h,
                                  uint8_t out[ARCHIVE_REDIS_HEADER_BYTES])
{
    memset(out, 0, ARCHIVE_REDIS_HEADER_BYTES);
    memcpy(out, REDIS_SNAPSHOT_MAGIC, 8);
    put_be64(out + 8, h->index);
    put_be64(out + 16, (uint64_t)h->time_ms);
    put_gen(out + 24, h->generation);
    memcpy(out + 56, h->chain_hash, OBJECT_HASH_BYTES);
    put_replid(out + 88, h->replid);
    put_be64(out + 128, h->offset);
}

static int redis_snapshot_header_decode(const uint8_t in[ARCHIVE_REDIS_HEADER_BYTES],
                                        struct redis_snapshot_header *out, struct tm_error *err)
{
    if (memcmp(in, REDIS_SNAPSHOT_MAGIC, 8) != 0)
        return tm_error_set(err, "not a Redis snapshot payload (bad magic)");
    out->index = get_be64(in + 8);
    out->time_ms = (int64_t)get_be64(in + 16);
    get_gen(in + 24, out->generation);
    memcpy(out->chain_hash, in + 56, OBJECT_HASH_BYTES);
    get_replid(in + 88, out->replid);
    out->offset = get_be64(in + 128);
    return 0;
}

void redis_segment_header_encode(const struct redis_segment_header *h,
                                 uint8_t out[ARCHIVE_REDIS_HEADER_BYTES])
{
    memset(out, 0, ARCHIVE_REDIS_HEADER_BYTES);
    memcpy(out, REDIS_SEGMENT_MAGIC, 8);
    archive_put_be32(out + 8, h->unit_count);
    put_be64(out + 16, h->index);
    put_be64(out + 24, (uint64_t)h->first_time_ms);
    put_be64(out + 32, (uint64_t)h->last_time_ms);
    put_gen(out + 40, h->generation);
    memcpy(out + 72, h->prev_hash, OBJECT_HASH_BYTES);
    put_replid(out + 104, h->replid);
    put_be64(out + 144, h->start_offset);
    put_be64(out + 152, h->end_offset);
}

static int redis_segment_header_decode(const uint8_t in[ARCHIVE_REDIS_HEADER_BYTES],
                                       struct redis_segment_header *out, struct tm_error *err)
{
    if (memcmp(in, REDIS_SEGMENT_MAGIC, 8) != 0)
        return tm_error_set(err, "not a Redis segment payload (bad magic)");
    out->unit_count = archive_get_be32(in + 8);
    out->index = get_be64(in + 16);
    out->first_time_ms = (int64_t)get_be64(in + 24);
    out->last_time_ms = (int64_t)get_be64(in + 32);
    get_gen(in + 40, out->generation);
    memcpy(out->prev_hash, in + 72, OBJECT_HASH_BYTES);
    get_replid(in + 104, out->replid);
    out->start_offset = get_be64(in + 144);
    out->end_offset = get_be64(in + 152);
    if (out->end_offset < out->start_offset)
        return tm_error_set(err, "Redis segment ends before it starts (offsets %llu to %llu)",
                            (unsigned long long)out->start_offset, (unsigned long long)out->end_offset);
    return 0;
}

#define REDIS_READ_CHUNK (64 * 1024)

int redis_snapshot_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                        const struct redis_snapshot_visitor *visitor, struct redis_snapshot_header *header_out,
                        struct tm_error *err)
{
    struct object_reader *r;
    if (object_reader_open(st, name, OBJECT_SNAPSHOT, key, &r, err) != 0)
        return -1;
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    int rc = object_read(r, header, sizeof header, err);
    if (rc == 0)
        rc = redis_snapshot_header_decode(header, header_out, err);
    if (rc == 0 && visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    if (rc != 0 || !visitor || !visitor->on_data) {
        object_reader_close(r);
        return rc;
    }
    uint8_t *buf = malloc(REDIS_READ_CHUNK);
    if (!buf)
        rc = tm_error_set(err, "out of memory");
    for (;;) {
        uint8_t length_bytes[4];
        if (rc != 0 || (rc = object_read(r, length_bytes, 4, err)) != 0)
            break;
        uint32_t remaining = archive_get_be32(length_bytes);
        if (remaining == 0)
            break;
        while (rc == 0 && remaining > 0) {
            uint32_t take = remaining < REDIS_READ_CHUNK ? remaining : REDIS_READ_CHUNK;
            rc = object_read(r, buf, take, err);
            if (rc == 0)
                rc = visitor->on_data(visitor->ctx, buf, take, err);
            remaining -= take;
        }
    }
    free(buf);
    if (rc == 0)
        rc = object_reader_finish(r, NULL, err);
    object_reader_close(r);
    return rc;
}

int redis_segment_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                       const struct redis_segment_visitor *visitor, struct redis_segment_header *header_out,
                       uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    struct object_reader *r;
    if (object_reader_open(st, name, OBJECT_SEGMENT, key, &r, err) != 0)
        return -1;
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    int rc = object_read(r, header, sizeof header, err);
    if (rc == 0)
        rc = redis_segment_header_decode(header, header_out, err);
    if (rc == 0 && visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    uint8_t *unit = NULL;
    size_t unit_cap = 0;
    for (uint32_t i = 0; rc == 0 && i < header_out->unit_count; i++) {
        uint8_t unit_header[12];
        if ((rc = object_read(r, unit_header, sizeof unit_header, err)) != 0)
            break;
        int64_t time_ms = (int64_t)get_be64(unit_header);
        uint32_t len = archive_get_be32(unit_header + 8);
        if (len == 0 || len > ARCHIVE_REDIS_UNIT_MAX) {
            rc = tm_error_set(err, "invalid unit length %u in a Redis segment", len);
            break;
        }
        if (len > unit_cap) {
            uint8_t *grown = realloc(unit, len);
            if (!grown) {
                rc = tm_error_set(err, "out of memory");
                break;
            }
            unit = grown;
            unit_cap = len;
        }
        rc = object_read(r, unit, len, err);
        if (rc == 0 && visitor && visitor->on_unit)
            rc = visitor->on_unit(visitor->ctx, time_ms, unit, len, err);
    }
    free(unit);
    if (rc == 0)
        rc = object_reader_finish(r, hash_out, err);
    object_reader_close(r);
    return rc;
}
