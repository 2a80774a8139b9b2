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
 * A generation's head (NAME/generations/GEN/head, the one key that is
 * rewritten; kind 'H'), 192 bytes, nothing after them:
 *
 *    0  8 magic "TMHEAD01"              96  8 written at (ms)
 *    8  8 next index N: segments       104  8 newest snapshot time (ms), 0
 *         [0, N) stored before it             if none
 *   16  8 last commit of segment N-1   112  8 zero
 *         (ms), 0 if N = 0             120 32 successor generation id, NUL
 *   24 32 generation id                       padded ("" while current)
 *                                      152 40 zero
 *   56 32 chain: prev hash of segment N
 *   88  8 counter (only grows)
 *
 * The envelope appends the BLAKE2b-256 of the payload. Chain: segment 0's
 * previous hash is BLAKE2b-256("tidemark generation " + GEN); segment
 * i+1's is segment i's payload hash. A snapshot at index k carries the
 * previous hash segment k will have. */
#include "archive.h"

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ integers */

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

void archive_put_be64(uint8_t *p, uint64_t v)
{
    archive_put_be32(p, (uint32_t)(v >> 32));
    archive_put_be32(p + 4, (uint32_t)v);
}

uint64_t archive_get_be64(const uint8_t *p)
{
    return ((uint64_t)archive_get_be32(p) << 32) | archive_get_be32(p + 4);
}

/* --------------------------------------------------------------- headers
 * Every payload header is one table of fields (the byte layouts above):
 * where each field sits in the header, its type, and which member of the
 * kind's struct holds it. One encoder and one decoder walk the tables;
 * bytes no field names are written as zeros and not read. */

enum field_type {
    FIELD_BE32,       /* uint32_t */
    FIELD_BE64,       /* uint64_t or int64_t, two's complement */
    FIELD_GEN,        /* char[ARCHIVE_GEN_ID_BYTES + 1], NUL padded */
    FIELD_HASH,       /* uint8_t[OBJECT_HASH_BYTES] */
    FIELD_REPLID,     /* char[ARCHIVE_REPLID_BYTES + 1], NUL padded */
};

struct header_field {
    uint16_t at;      /* offset in the header */
    uint16_t type;    /* enum field_type */
    size_t member;    /* offset in the struct */
};

struct header_format {
    const char *what;                       /* "segment", for errors */
    enum object_kind kind;                  /* of the envelope */
    const char *magic;                      /* 8 bytes; NULL: none */
    size_t bytes;
    const struct header_field *fields;
    size_t field_count;
    int (*check)(void *h, struct tm_error *err);   /* after decoding; may be NULL */
};

#define FIELD(at, type, st, member) {at, type, offsetof(struct st, member)}
#define FORMAT(what, kind, magic, bytes, fields, check) \
    {what, kind, magic, bytes, fields, sizeof fields / sizeof *fields, check}

static const struct header_field segment_fields[] = {
    FIELD(8, FIELD_BE32, segment_header, page_size),
    FIELD(12, FIELD_BE32, segment_header, txn_count),
    FIELD(16, FIELD_BE64, segment_header, index),
    FIELD(24, FIELD_BE64, segment_header, first_time_ms),
    FIELD(32, FIELD_BE64, segment_header, last_time_ms),
    FIELD(40, FIELD_GEN, segment_header, generation),
    FIELD(72, FIELD_HASH, segment_header, prev_hash),
    FIELD(104, FIELD_BE32, segment_header, end.salt1),
    FIELD(108, FIELD_BE32, segment_header, end.salt2),
    FIELD(112, FIELD_BE32, segment_header, first_frame),
    FIELD(116, FIELD_BE32, segment_header, end.frame),
    FIELD(120, FIELD_BE32, segment_header, end.checksum[0]),
    FIELD(124, FIELD_BE32, segment_header, end.checksum[1]),
};

static const struct header_field snapshot_fields[] = {
    FIELD(8, FIELD_BE32, snapshot_header, page_size),
    FIELD(12, FIELD_BE32, snapshot_header, page_count),
    FIELD(16, FIELD_BE64, snapshot_header, index),
    FIELD(24, FIELD_BE64, snapshot_header, time_ms),
    FIELD(32, FIELD_GEN, snapshot_header, generation),
    FIELD(64, FIELD_HASH, snapshot_header, chain_hash),
    FIELD(96, FIELD_BE32, snapshot_header, wal.valid),
    FIELD(100, FIELD_BE32, snapshot_header, wal.salt1),
    FIELD(104, FIELD_BE32, snapshot_header, wal.salt2),
    FIELD(108, FIELD_BE32, snapshot_header, wal.frame),
    FIELD(112, FIELD_BE32, snapshot_header, wal.checksum[0]),
    FIELD(116, FIELD_BE32, snapshot_header, wal.checksum[1]),
};

static const struct header_field delta_fields[] = {
    FIELD(8, FIELD_BE32, delta_header, page_size),
    FIELD(12, FIELD_BE32, delta_header, page_count),
    FIELD(16, FIELD_BE64, delta_header, first_index),
    FIELD(24, FIELD_BE64, delta_header, end_index),
    FIELD(32, FIELD_BE64, delta_header, first_time_ms),
    FIELD(40, FIELD_BE64, delta_header, last_time_ms),
    FIELD(48, FIELD_BE32, delta_header, db_size),
    FIELD(52, FIELD_BE32, delta_header, txn_count),
    FIELD(56, FIELD_GEN, delta_header, generation),
    FIELD(88, FIELD_HASH, delta_header, chain_in),
    FIELD(120, FIELD_HASH, delta_header, chain_out),
};

static const struct header_field redis_snapshot_fields[] = {
    FIELD(8, FIELD_BE64, redis_snapshot_header, index),
    FIELD(16, FIELD_BE64, redis_snapshot_header, time_ms),
    FIELD(24, FIELD_GEN, redis_snapshot_header, generation),
    FIELD(56, FIELD_HASH, redis_snapshot_header, chain_hash),
    FIELD(88, FIELD_REPLID, redis_snapshot_header, replid),
    FIELD(128, FIELD_BE64, redis_snapshot_header, offset),
};

static const struct header_field redis_segment_fields[] = {
    FIELD(8, FIELD_BE32, redis_segment_header, unit_count),
    FIELD(16, FIELD_BE64, redis_segment_header, index),
    FIELD(24, FIELD_BE64, redis_segment_header, first_time_ms),
    FIELD(32, FIELD_BE64, redis_segment_header, last_time_ms),
    FIELD(40, FIELD_GEN, redis_segment_header, generation),
    FIELD(72, FIELD_HASH, redis_segment_header, prev_hash),
    FIELD(104, FIELD_REPLID, redis_segment_header, replid),
    FIELD(144, FIELD_BE64, redis_segment_header, start_offset),
    FIELD(152, FIELD_BE64, redis_segment_header, end_offset),
};

static const struct header_field head_fields[] = {
    FIELD(8, FIELD_BE64, archive_head, next_index),
    FIELD(16, FIELD_BE64, archive_head, last_commit_ms),
    FIELD(24, FIELD_GEN, archive_head, generation),
    FIELD(56, FIELD_HASH, archive_head, chain),
    FIELD(88, FIELD_BE64, archive_head, counter),
    FIELD(96, FIELD_BE64, archive_head, written_ms),
    FIELD(104, FIELD_BE64, archive_head, snapshot_ms),
    FIELD(120, FIELD_GEN, archive_head, successor),
};

static const struct header_field txn_fields[] = {
    FIELD(0, FIELD_BE64, txn_header, time_ms),
    FIELD(8, FIELD_BE32, txn_header, db_size),
    FIELD(12, FIELD_BE32, txn_header, frame_count),
};

static int page_size_ok(uint32_t page_size)
{
    return page_size >= 512 && page_size <= 65536 && !(page_size & (page_size - 1));
}

static int check_page_size(uint32_t page_size, const char *what, struct tm_error *err)
{
    if (page_size_ok(page_size))
        return 0;
    return tm_error_setc(err, TM_ERR_CORRUPT, "invalid page size %u in %s header", page_size, what);
}

static int check_segment(void *header, struct tm_error *err)
{
    struct segment_header *h = header;
    h->end.valid = 1;   /* a segment always ends at a WAL position */
    return check_page_size(h->page_size, "segment", err);
}

static int check_snapshot(void *header, struct tm_error *err)
{
    return check_page_size(((struct snapshot_header *)header)->page_size, "snapshot", err);
}

static int check_delta(void *header, struct tm_error *err)
{
    struct delta_header *h = header;
    if (check_page_size(h->page_size, "delta", err) != 0)
        return -1;
    if (h->end_index <= h->first_index)
        return tm_error_setc(err, TM_ERR_CORRUPT, "delta covers no segment (%llu to %llu)",
                             (unsigned long long)h->first_index, (unsigned long long)h->end_index);
    return 0;
}

static int check_redis_segment(void *header, struct tm_error *err)
{
    struct redis_segment_header *h = header;
    if (h->end_offset < h->start_offset)
        return tm_error_setc(err, TM_ERR_CORRUPT, "Redis segment ends before it starts (offsets %llu to %llu)",
                             (unsigned long long)h->start_offset, (unsigned long long)h->end_offset);
    return 0;
}

static int check_head(void *header, struct tm_error *err)
{
    struct archive_head *h = header;
    if (!layout_generation_id_ok(h->generation) || (h->successor[0] && !layout_generation_id_ok(h->successor)))
        return tm_error_setc(err, TM_ERR_CORRUPT, "head names a malformed generation id");
    return 0;
}

static const struct header_format segment_format =
    FORMAT("segment", OBJECT_SEGMENT, "TMSEGMT1", ARCHIVE_HEADER_BYTES, segment_fields, check_segment);
static const struct header_format snapshot_format =
    FORMAT("snapshot", OBJECT_SNAPSHOT, "TMSNAPS1", ARCHIVE_HEADER_BYTES, snapshot_fields, check_snapshot);
static const struct header_format delta_format =
    FORMAT("delta", OBJECT_DELTA, "TMDELTA1", ARCHIVE_DELTA_HEADER_BYTES, delta_fields, check_delta);
static const struct header_format redis_snapshot_format =
    FORMAT("Redis snapshot", OBJECT_SNAPSHOT, "TMRDBSN1", ARCHIVE_REDIS_HEADER_BYTES, redis_snapshot_fields, NULL);
static const struct header_format redis_segment_format =
    FORMAT("Redis segment", OBJECT_SEGMENT, "TMRSEGM1", ARCHIVE_REDIS_HEADER_BYTES, redis_segment_fields,
           check_redis_segment);
static const struct header_format head_format =
    FORMAT("head", OBJECT_HEAD, "TMHEAD01", ARCHIVE_HEAD_BYTES, head_fields, check_head);
static const struct header_format txn_format =
    FORMAT("transaction", OBJECT_SEGMENT, NULL, ARCHIVE_TXN_HEADER_BYTES, txn_fields, NULL);

/* A fixed-size text field: the string, NUL padded (cut at `size`). */
static void put_text(uint8_t *p, const char *text, size_t size)
{
    memset(p, 0, size);
    memcpy(p, text, strnlen(text, size));
}

static void get_text(const uint8_t *p, char *out, size_t size)
{
    memcpy(out, p, size);
    out[size] = '\0';
}

static void header_encode(const struct header_format *fmt, const void *h, uint8_t *out)
{
    memset(out, 0, fmt->bytes);
    if (fmt->magic)
        memcpy(out, fmt->magic, 8);
    for (size_t i = 0; i < fmt->field_count; i++) {
        const struct header_field *f = &fmt->fields[i];
        const uint8_t *member = (const uint8_t *)h + f->member;
        uint32_t v32;
        uint64_t v64;
        switch (f->type) {
        case FIELD_BE32: memcpy(&v32, member, 4); archive_put_be32(out + f->at, v32); break;
        case FIELD_BE64: memcpy(&v64, member, 8); archive_put_be64(out + f->at, v64); break;
        case FIELD_GEN: put_text(out + f->at, (const char *)member, ARCHIVE_GEN_ID_BYTES); break;
        case FIELD_HASH: memcpy(out + f->at, member, OBJECT_HASH_BYTES); break;
        case FIELD_REPLID: put_text(out + f->at, (const char *)member, ARCHIVE_REPLID_BYTES); break;
        }
    }
}

/* Fills *h from the header; fails (TM_ERR_CORRUPT) on a wrong magic or
 * a value the kind's check refuses. */
static int header_decode(const struct header_format *fmt, const uint8_t *in, void *h, struct tm_error *err)
{
    if (fmt->magic && memcmp(in, fmt->magic, 8) != 0)
        return tm_error_setc(err, TM_ERR_CORRUPT, "not a %s payload (bad magic)", fmt->what);
    for (size_t i = 0; i < fmt->field_count; i++) {
        const struct header_field *f = &fmt->fields[i];
        uint8_t *member = (uint8_t *)h + f->member;
        uint32_t v32;
        uint64_t v64;
        switch (f->type) {
        case FIELD_BE32: v32 = archive_get_be32(in + f->at); memcpy(member, &v32, 4); break;
        case FIELD_BE64: v64 = archive_get_be64(in + f->at); memcpy(member, &v64, 8); break;
        case FIELD_GEN: get_text(in + f->at, (char *)member, ARCHIVE_GEN_ID_BYTES); break;
        case FIELD_HASH: memcpy(member, in + f->at, OBJECT_HASH_BYTES); break;
        case FIELD_REPLID: get_text(in + f->at, (char *)member, ARCHIVE_REPLID_BYTES); break;
        }
    }
    return fmt->check ? fmt->check(h, err) : 0;
}

void segment_header_encode(const struct segment_header *h, uint8_t out[ARCHIVE_HEADER_BYTES])
{
    header_encode(&segment_format, h, out);
}

int segment_header_decode(const uint8_t in[ARCHIVE_HEADER_BYTES], struct segment_header *out,
                          struct tm_error *err)
{
    return header_decode(&segment_format, in, out, err);
}

void snapshot_header_encode(const struct snapshot_header *h, uint8_t out[ARCHIVE_HEADER_BYTES])
{
    header_encode(&snapshot_format, h, out);
}

int snapshot_header_decode(const uint8_t in[ARCHIVE_HEADER_BYTES], struct snapshot_header *out,
                           struct tm_error *err)
{
    return header_decode(&snapshot_format, in, out, err);
}

void delta_header_encode(const struct delta_header *h, uint8_t out[ARCHIVE_DELTA_HEADER_BYTES])
{
    header_encode(&delta_format, h, out);
}

int delta_header_decode(const uint8_t in[ARCHIVE_DELTA_HEADER_BYTES], struct delta_header *out,
                        struct tm_error *err)
{
    return header_decode(&delta_format, in, out, err);
}

void redis_snapshot_header_encode(const struct redis_snapshot_header *h,
                                  uint8_t out[ARCHIVE_REDIS_HEADER_BYTES])
{
    header_encode(&redis_snapshot_format, h, out);
}

void redis_segment_header_encode(const struct redis_segment_header *h,
                                 uint8_t out[ARCHIVE_REDIS_HEADER_BYTES])
{
    header_encode(&redis_segment_format, h, out);
}

void head_encode(const struct archive_head *h, uint8_t out[ARCHIVE_HEAD_BYTES])
{
    header_encode(&head_format, h, out);
}

int head_decode(const uint8_t in[ARCHIVE_HEAD_BYTES], struct archive_head *out, struct tm_error *err)
{
    return header_decode(&head_format, in, out, err);
}

void txn_header_encode(const struct txn_header *h, uint8_t out[ARCHIVE_TXN_HEADER_BYTES])
{
    header_encode(&txn_format, h, out);
}

void txn_header_decode(const uint8_t in[ARCHIVE_TXN_HEADER_BYTES], struct txn_header *out)
{
    header_decode(&txn_format, in, out, NULL);   /* no magic, no check: cannot fail */
}

void archive_chain_start(const char *generation, uint8_t out[OBJECT_HASH_BYTES])
{
    char label[ARCHIVE_GEN_ID_BYTES + 32];
    int len = snprintf(label, sizeof label, "tidemark generation %s", generation);
    crypto_generichash(out, OBJECT_HASH_BYTES, (const uint8_t *)label, (size_t)len, NULL, 0);
}

/* --------------------------------------------------------------- reading
 * Every reader opens the object, reads and decodes its header (open_read),
 * hands it to the visitor, reads its body, and checks the trailer
 * (end_read). */

/* Opens object `name` of fmt's kind, written for `identity` (object.h),
 * and decodes its payload header into *header; *predates_binding tells
 * whether its envelope predates the identity binding. On success *out is
 * open and the caller ends it (end_read or object_reader_close). */
static int open_read(struct storage *st, const char *name, const char *identity, const struct header_format *fmt,
                     const struct crypto_keyring *key, struct object_reader **out, void *header,
                     int *predates_binding, struct tm_error *err)
{
    uint8_t bytes[ARCHIVE_REDIS_HEADER_BYTES];   /* the largest header */
    if (object_reader_open(st, name, identity, fmt->kind, key, out, err) != 0)
        return -1;
    *predates_binding = object_reader_predates_binding(*out);
    int rc = object_read(*out, bytes, fmt->bytes, err);   /* the envelope's errors name the object */
    if (rc == 0 && header_decode(fmt, bytes, header, err) != 0)
        rc = tm_error_prefix(err, "object '%s': ", name);
    if (rc != 0)
        object_reader_close(*out);
    return rc;
}

/* After the body: when rc is 0, checks the trailer (the payload hash,
 * into hash_out if not NULL). Closes r either way; returns the outcome. */
static int end_read(struct object_reader *r, int rc, uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    if (rc == 0)
        rc = object_reader_finish(r, hash_out, err);
    object_reader_close(r);
    return rc;
}

/* Reads a 4-byte page number and its page: *page points at the page, in
 * the reader's buffer or in scratch (4 + page_size bytes; object.h
 * object_read_view). */
static int read_numbered_page(struct object_reader *r, uint8_t *scratch, uint32_t page_size, uint32_t *page_number,
                              const uint8_t **page, struct tm_error *err)
{
    const uint8_t *frame;
    if (object_read_view(r, scratch, 4 + (size_t)page_size, &frame, err) != 0)
        return -1;
    *page_number = archive_get_be32(frame);
    *page = frame + 4;
    return 0;
}

static int read_transactions(struct object_reader *r, const struct segment_header *h,
                             const struct segment_visitor *v, struct tm_error *err)
{
    uint8_t *frame = malloc(4 + (size_t)h->page_size);
    if (!frame)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
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
            uint32_t page_number;
            const uint8_t *page;
            if ((rc = read_numbered_page(r, frame, h->page_size, &page_number, &page, err)) != 0)
                break;
            if (page_number == 0)
                rc = tm_error_setc(err, TM_ERR_CORRUPT, "page number 0 in a transaction");
            else if (v && v->on_page)
                rc = v->on_page(v->ctx, page_number, page, err);
        }
    }
    free(frame);
    return rc;
}

int segment_read_as(struct storage *st, const char *name, const char *identity, const struct crypto_keyring *key,
                    const struct segment_visitor *visitor, struct segment_header *header_out,
                    uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    struct object_reader *r;
    if (open_read(st, name, identity, &segment_format, key, &r, header_out, &header_out->predates_binding,
                  err) != 0)
        return -1;
    int rc = 0;
    if (visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    if (rc == 0)
        rc = read_transactions(r, header_out, visitor, err);
    return end_read(r, rc, hash_out, err);
}

int segment_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                 const struct segment_visitor *visitor, struct segment_header *header_out,
                 uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    return segment_read_as(st, name, name, key, visitor, header_out, hash_out, err);
}

int snapshot_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                  const struct snapshot_visitor *visitor, struct snapshot_header *header_out,
                  struct tm_error *err)
{
    return snapshot_read_as(st, name, name, key, visitor, header_out, err);
}

int snapshot_read_as(struct storage *st, const char *name, const char *identity, const struct crypto_keyring *key,
                     const struct snapshot_visitor *visitor, struct snapshot_header *header_out,
                     struct tm_error *err)
{
    struct object_reader *r;
    if (open_read(st, name, identity, &snapshot_format, key, &r, header_out, &header_out->predates_binding, err) != 0)
        return -1;
    int rc = 0;
    if (visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    if (rc != 0 || !visitor || !visitor->on_page) {
        object_reader_close(r);
        return rc;
    }
    uint8_t *scratch = malloc(header_out->page_size);
    if (!scratch)
        rc = tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; rc == 0 && i < header_out->page_count; i++) {
        const uint8_t *page;
        rc = object_read_view(r, scratch, header_out->page_size, &page, err);
        if (rc == 0)
            rc = visitor->on_page(visitor->ctx, i + 1, page, err);
    }
    free(scratch);
    return end_read(r, rc, NULL, err);
}

int delta_read(struct storage *st, const char *name, const struct crypto_keyring *key,
               const struct delta_visitor *visitor, struct delta_header *header_out,
               struct tm_error *err)
{
    struct object_reader *r;
    if (open_read(st, name, name, &delta_format, key, &r, header_out, &header_out->predates_binding, err) != 0)
        return -1;
    int rc = 0;
    if (visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    uint8_t *page = rc == 0 ? malloc(4 + (size_t)header_out->page_size) : NULL;
    if (rc == 0 && !page)
        rc = tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    uint32_t previous = 0;
    for (uint32_t i = 0; rc == 0 && i < header_out->page_count; i++) {
        uint32_t page_number;
        const uint8_t *data;
        if ((rc = read_numbered_page(r, page, header_out->page_size, &page_number, &data, err)) != 0)
            break;
        if (page_number <= previous)
            rc = tm_error_setc(err, TM_ERR_CORRUPT, "page numbers do not ascend (%u after %u)", page_number,
                               previous);
        else if (visitor && visitor->on_page)
            rc = visitor->on_page(visitor->ctx, page_number, data, err);
        previous = page_number;
    }
    free(page);
    return end_read(r, rc, NULL, err);
}

/* ----------------------------------------------------------------- Redis */

#define REDIS_READ_CHUNK (64 * 1024)

/* The RDB's chunks (4-byte length, bytes; a zero length ends them), to
 * on_data REDIS_READ_CHUNK bytes at a time at most. */
static int read_rdb_chunks(struct object_reader *r, const struct redis_snapshot_visitor *visitor,
                           struct tm_error *err)
{
    uint8_t *buf = malloc(REDIS_READ_CHUNK);
    if (!buf)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    int rc = 0;
    for (;;) {
        uint8_t length_bytes[4];
        if ((rc = object_read(r, length_bytes, 4, err)) != 0)
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
        if (rc != 0)
            break;
    }
    free(buf);
    return rc;
}

int head_read(struct storage *st, const char *name, const struct crypto_keyring *key, struct archive_head *out,
              struct tm_error *err)
{
    struct object_reader *r;
    if (open_read(st, name, name, &head_format, key, &r, out, &out->predates_binding, err) != 0)
        return -1;
    int rc = 0;
    if (out->predates_binding)   /* heads came after the binding: one without it was made by hand */
        rc = tm_error_setc(err, TM_ERR_CORRUPT, "head '%s' is in an envelope that names no place", name);
    else if (!layout_is_head_of(name, out->generation))
        rc = tm_error_setc(err, TM_ERR_CORRUPT, "head '%s' names generation '%s'", name, out->generation);
    return end_read(r, rc, NULL, err);
}

int redis_snapshot_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                        const struct redis_snapshot_visitor *visitor, struct redis_snapshot_header *header_out,
                        struct tm_error *err)
{
    struct object_reader *r;
    if (open_read(st, name, name, &redis_snapshot_format, key, &r, header_out, &header_out->predates_binding,
                  err) != 0)
        return -1;
    int rc = 0;
    if (visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    if (rc != 0 || !visitor || !visitor->on_data) {
        object_reader_close(r);
        return rc;
    }
    return end_read(r, read_rdb_chunks(r, visitor, err), NULL, err);
}

/* Reads one unit (8-byte time, 4-byte length, bytes) into *unit, grown
 * as needed. */
static int read_unit(struct object_reader *r, uint8_t **unit, size_t *cap, int64_t *time_ms, uint32_t *len,
                     struct tm_error *err)
{
    uint8_t unit_header[12];
    if (object_read(r, unit_header, sizeof unit_header, err) != 0)
        return -1;
    *time_ms = (int64_t)archive_get_be64(unit_header);
    *len = archive_get_be32(unit_header + 8);
    if (*len == 0 || *len > ARCHIVE_REDIS_UNIT_MAX)
        return tm_error_setc(err, TM_ERR_CORRUPT, "invalid unit length %u in a Redis segment", *len);
    if (*len > *cap) {
        uint8_t *grown = realloc(*unit, *len);
        if (!grown)
            return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
        *unit = grown;
        *cap = *len;
    }
    return object_read(r, *unit, *len, err);
}

int redis_segment_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                       const struct redis_segment_visitor *visitor, struct redis_segment_header *header_out,
                       uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    return redis_segment_read_as(st, name, name, key, visitor, header_out, hash_out, err);
}

int redis_segment_read_as(struct storage *st, const char *name, const char *identity,
                          const struct crypto_keyring *key, const struct redis_segment_visitor *visitor,
                          struct redis_segment_header *header_out, uint8_t hash_out[OBJECT_HASH_BYTES],
                          struct tm_error *err)
{
    struct object_reader *r;
    if (open_read(st, name, identity, &redis_segment_format, key, &r, header_out, &header_out->predates_binding,
                  err) != 0)
        return -1;
    int rc = 0;
    if (visitor && visitor->on_header)
        rc = visitor->on_header(visitor->ctx, header_out, err);
    uint8_t *unit = NULL;
    size_t unit_cap = 0;
    for (uint32_t i = 0; rc == 0 && i < header_out->unit_count; i++) {
        int64_t time_ms;
        uint32_t len;
        rc = read_unit(r, &unit, &unit_cap, &time_ms, &len, err);
        if (rc == 0 && visitor && visitor->on_unit)
            rc = visitor->on_unit(visitor->ctx, time_ms, unit, len, err);
    }
    free(unit);
    return end_read(r, rc, hash_out, err);
}
