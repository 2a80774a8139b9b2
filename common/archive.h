/* archive.h - the archive in three layers, and the middle one here:
 *   layout.h   where every object lives: keys made and names parsed;
 *   archive.h  what an object's payload holds: its header and body
 *              formats, one reader per kind (byte layouts at the top of
 *              archive.c and in docs/format.md), inside the envelope of
 *              object.h;
 *   catalog.h  what a replica holds, from listings alone.
 * This header includes the other two for the modules that use all three. */
#ifndef TM_ARCHIVE_H
#define TM_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "error.h"
#include "layout.h"
#include "object.h"
#include "storage/storage.h"

#define ARCHIVE_HEADER_BYTES 128       /* segment and snapshot payload headers */
#define ARCHIVE_TXN_HEADER_BYTES 16
#define ARCHIVE_DELTA_HEADER_BYTES 192
#define ARCHIVE_REDIS_HEADER_BYTES 192
#define ARCHIVE_REPLID_BYTES 40
#define ARCHIVE_HEAD_BYTES 192
#define ARCHIVE_REDIS_UNIT_MAX (1024u * 1024 * 1024)   /* a MULTI block's bytes, at most */

/* Where the tailer was in the WAL; `valid` is 0 when there was no WAL. */
struct archive_wal_position {
    uint32_t valid;
    uint32_t salt1, salt2, frame;
    uint32_t checksum[2];
};

struct segment_header {
    uint32_t page_size;
    uint32_t txn_count;
    uint64_t index;
    int64_t first_time_ms, last_time_ms;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint8_t prev_hash[OBJECT_HASH_BYTES];
    uint32_t first_frame;                 /* first WAL frame in the segment */
    struct archive_wal_position end;      /* after its last frame */
    int predates_binding;                 /* read only: its envelope carries no identity (object.h) */
};

struct snapshot_header {
    uint32_t page_size;
    uint32_t page_count;
    uint64_t index;                       /* segments that precede it */
    int64_t time_ms;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint8_t chain_hash[OBJECT_HASH_BYTES];/* prev_hash of segment `index` */
    struct archive_wal_position wal;      /* WAL position it corresponds to */
    int predates_binding;                 /* read only: its envelope carries no identity (object.h) */
};

/* A delta: the pages segments [first_index, end_index) changed, each as
 * it was at the end of segment end_index - 1 (see archive.c). */
struct delta_header {
    uint32_t page_size;
    uint32_t page_count;                  /* pages in the delta */
    uint64_t first_index, end_index;
    int64_t first_time_ms, last_time_ms;  /* first and last commit covered */
    uint32_t db_size;                     /* pages after the last commit covered */
    uint32_t txn_count;                   /* commits covered */
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint8_t chain_in[OBJECT_HASH_BYTES];  /* prev hash of segment first_index */
    uint8_t chain_out[OBJECT_HASH_BYTES]; /* prev hash of segment end_index */
    int predates_binding;                 /* read only: its envelope carries no identity (object.h) */
};

/* Redis (replicator/redis.c): a generation starts with the RDB of a full
 * resynchronisation; segments hold the replication stream after it, cut
 * into units (a command, or a whole MULTI ... EXEC block), each stamped
 * with the time the sidecar received it. Same keys as SQLite archives. */
struct redis_snapshot_header {
    uint64_t index;                       /* segments that precede it */
    int64_t time_ms;                      /* when +FULLRESYNC arrived */
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint8_t chain_hash[OBJECT_HASH_BYTES];
    char replid[ARCHIVE_REPLID_BYTES + 1];
    uint64_t offset;                      /* master replication offset of the RDB */
    int predates_binding;                 /* read only: its envelope carries no identity (object.h) */
};

struct redis_segment_header {
    uint32_t unit_count;
    uint64_t index;
    int64_t first_time_ms, last_time_ms;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint8_t prev_hash[OBJECT_HASH_BYTES];
    char replid[ARCHIVE_REPLID_BYTES + 1];
    uint64_t start_offset, end_offset;    /* replication offsets before / after it */
    int predates_binding;                 /* read only: its envelope carries no identity (object.h) */
};

/* A generation's head: the newest end of the generation the sidecar had
 * stored on a replica when it wrote it, rewritten at most every few
 * seconds while commits flow (replicator/shipper.c). It is what tells a
 * missing tail (segments deleted from the end) and a missing newer
 * generation from "no more commits"; `counter` only grows, so an older
 * copy put back is told from the newest one a host has seen (heads.h). */
struct archive_head {
    uint64_t next_index;                  /* segments [0, next_index) were stored before it */
    int64_t last_commit_ms;               /* last commit (unit) of segment next_index - 1; 0: none */
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint8_t chain[OBJECT_HASH_BYTES];     /* prev hash of segment next_index */
    uint64_t counter;                     /* only grows, across heads of all generations of one spool */
    int64_t written_ms;                   /* when the sidecar wrote it */
    int64_t snapshot_ms;                  /* newest snapshot of the generation; 0: none */
    char successor[ARCHIVE_GEN_ID_BYTES + 1];   /* the generation that followed it; "" while current */
    int predates_binding;                 /* read only: its envelope carries no identity (never, for heads) */
};

struct txn_header {
    int64_t time_ms;          /* when the sidecar saw the commit */
    uint32_t db_size;         /* pages after the commit */
    uint32_t frame_count;     /* (page number, page) records that follow */
};

void segment_header_encode(const struct segment_header *h, uint8_t out[ARCHIVE_HEADER_BYTES]);
int segment_header_decode(const uint8_t in[ARCHIVE_HEADER_BYTES], struct segment_header *out,
                          struct tm_error *err);
void snapshot_header_encode(const struct snapshot_header *h, uint8_t out[ARCHIVE_HEADER_BYTES]);
int snapshot_header_decode(const uint8_t in[ARCHIVE_HEADER_BYTES], struct snapshot_header *out,
                           struct tm_error *err);
void delta_header_encode(const struct delta_header *h, uint8_t out[ARCHIVE_DELTA_HEADER_BYTES]);
int delta_header_decode(const uint8_t in[ARCHIVE_DELTA_HEADER_BYTES], struct delta_header *out,
                        struct tm_error *err);
void head_encode(const struct archive_head *h, uint8_t out[ARCHIVE_HEAD_BYTES]);
int head_decode(const uint8_t in[ARCHIVE_HEAD_BYTES], struct archive_head *out, struct tm_error *err);
void txn_header_encode(const struct txn_header *h, uint8_t out[ARCHIVE_TXN_HEADER_BYTES]);
void txn_header_decode(const uint8_t in[ARCHIVE_TXN_HEADER_BYTES], struct txn_header *out);
void archive_put_be32(uint8_t *p, uint32_t v);
uint32_t archive_get_be32(const uint8_t *p);
void archive_put_be64(uint8_t *p, uint64_t v);
uint64_t archive_get_be64(const uint8_t *p);

/* The chain hash a new generation starts from. */
void archive_chain_start(const char *generation, uint8_t out[OBJECT_HASH_BYTES]);

/* --------------------------------------------------------------- reading
 * The one place payloads are parsed. Callbacks may be NULL; each returns
 * 0 to go on or -1 (err set) to stop the read, and the reader then fails
 * with the callback's error. Errors of the readers themselves carry a
 * code: TM_ERR_NOT_FOUND when the object is missing (from the storage),
 * TM_ERR_CORRUPT when it fails a check (envelope, authentication, header,
 * body, payload hash). Errors of the envelope and the storage name the
 * object; those of the payload ("not a segment payload") do not, and the
 * caller says which object it read.
 *
 * Each reader reads object `name` as the object of that key: one written
 * for another database or place (object.h) fails with TM_ERR_CORRUPT,
 * "object 'NAME' belongs to another database or place". The header's
 * predates_binding is set for objects written before the binding
 * (envelope versions 1 and 2), which nothing ties to their place. */

/* A page, valid only during the call (it may point into the reader's own
 * buffer: object.h object_read_view); copy what must outlive it. */
typedef int (*archive_page_fn)(void *ctx, uint32_t page_number, const uint8_t *page,
                               struct tm_error *err);

struct segment_visitor {
    int (*on_header)(void *ctx, const struct segment_header *h, struct tm_error *err);
    int (*on_txn)(void *ctx, const struct txn_header *txn, struct tm_error *err);
    archive_page_fn on_page;          /* the pages of the last on_txn, in order */
    void *ctx;
};

/* Reads all of segment `name` (visitor may be NULL), checks its payload
 * hash, and fills *header_out and hash_out (may be NULL). */
int segment_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                 const struct segment_visitor *visitor, struct segment_header *header_out,
                 uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err);
/* The same for a local copy `name` of the segment whose key is identity. */
int segment_read_as(struct storage *st, const char *name, const char *identity, const struct crypto_keyring *key,
                    const struct segment_visitor *visitor, struct segment_header *header_out,
                    uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err);

struct snapshot_visitor {
    int (*on_header)(void *ctx, const struct snapshot_header *h, struct tm_error *err);
    archive_page_fn on_page;          /* pages 1..N */
    void *ctx;
};

/* Reads snapshot `name`. With a visitor that has on_page, all pages are
 * read and the payload hash checked; without one (NULL), only the header
 * is read. *header_out is filled either way. */
int snapshot_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                  const struct snapshot_visitor *visitor, struct snapshot_header *header_out,
                  struct tm_error *err);
/* The same for a local copy `name` of the snapshot whose key is identity. */
int snapshot_read_as(struct storage *st, const char *name, const char *identity, const struct crypto_keyring *key,
                     const struct snapshot_visitor *visitor, struct snapshot_header *header_out,
                     struct tm_error *err);

struct delta_visitor {
    int (*on_header)(void *ctx, const struct delta_header *h, struct tm_error *err);
    archive_page_fn on_page;          /* pages in ascending page number */
    void *ctx;
};

/* Reads all of delta `name` (visitor may be NULL), checks that its pages
 * ascend and its payload hash. */
int delta_read(struct storage *st, const char *name, const struct crypto_keyring *key,
               const struct delta_visitor *visitor, struct delta_header *header_out,
               struct tm_error *err);

/* Reads head `name` (the whole object: its header and hash trailer). A
 * head whose generation is not the one its key names is TM_ERR_CORRUPT. */
int head_read(struct storage *st, const char *name, const struct crypto_keyring *key, struct archive_head *out,
              struct tm_error *err);

void redis_snapshot_header_encode(const struct redis_snapshot_header *h,
                                  uint8_t out[ARCHIVE_REDIS_HEADER_BYTES]);
void redis_segment_header_encode(const struct redis_segment_header *h,
                                 uint8_t out[ARCHIVE_REDIS_HEADER_BYTES]);

struct redis_snapshot_visitor {
    int (*on_header)(void *ctx, const struct redis_snapshot_header *h, struct tm_error *err);
    int (*on_data)(void *ctx, const uint8_t *data, size_t len, struct tm_error *err);   /* the RDB */
    void *ctx;
};

/* Reads Redis snapshot `name` (with a visitor that has on_data, all of
 * it, payload hash checked; else the header only). */
int redis_snapshot_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                        const struct redis_snapshot_visitor *visitor, struct redis_snapshot_header *header_out,
                        struct tm_error *err);

struct redis_segment_visitor {
    int (*on_header)(void *ctx, const struct redis_segment_header *h, struct tm_error *err);
    int (*on_unit)(void *ctx, int64_t time_ms, const uint8_t *data, size_t len, struct tm_error *err);
    void *ctx;
};

int redis_segment_read(struct storage *st, const char *name, const struct crypto_keyring *key,
                       const struct redis_segment_visitor *visitor, struct redis_segment_header *header_out,
                       uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err);
/* The same for a local copy `name` (a spool file) of the segment whose key
 * is identity. */
int redis_segment_read_as(struct storage *st, const char *name, const char *identity,
                          const struct crypto_keyring *key, const struct redis_segment_visitor *visitor,
                          struct redis_segment_header *header_out, uint8_t hash_out[OBJECT_HASH_BYTES],
                          struct tm_error *err);

#endif
