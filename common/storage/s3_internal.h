/* storage/s3_internal.h - the S3 driver's state, shared by its files and
 * private to them: storage/s3.c (reading, listing, deleting, fetching,
 * checks, the driver table), storage/s3_read_ahead.c (the next ranges of
 * a read, fetched on a thread) and storage/s3_upload.c (writes and
 * uploads).
 * The storage interface (storage.h) is the public one. */
#ifndef TM_S3_INTERNAL_H
#define TM_S3_INTERNAL_H

#include "storage.h"

#include "s3_request.h"

struct put_op;

struct s3_storage {
    struct s3_endpoint ep;     /* where and as whom (s3_request.h) */
    uint64_t part_size;
    CURL *easy;                /* synchronous requests; keeps its connection */
    CURLM *fetch_multi;        /* parallel downloads; keeps its connections */
    struct http_loop *hl;      /* NULL until attached */
    struct put_op *ops;        /* asynchronous uploads in flight */
};

/* S3 accepts at most 10,000 parts per multipart upload. */
#define S3_MAX_PARTS 10000

/* The part size for an object of `size` bytes: the configured one, or,
 * when that would need more than S3_MAX_PARTS parts, the smallest whole
 * number of MiB that needs no more (a 100 GiB spool file at 8 MiB parts
 * would be 12,800 parts: it is sent in 9,310 parts of 11 MiB). */
uint64_t s3_part_size_for(uint64_t configured, uint64_t size);

/* The driver's write and upload operations (storage_driver in storage.h),
 * in storage/s3_upload.c. */
int s3_write_begin(void *self, const char *key, void **handle, struct tm_error *err);
int s3_write(void *handle, const void *data, size_t len, struct tm_error *err);
int s3_write_commit(void *handle, struct tm_error *err);
void s3_write_abort(void *handle);
int s3_put_file(void *self, const char *key, const char *path, storage_done_fn done,
                void *arg, struct tm_error *err);
/* Stops and frees the asynchronous uploads in flight, without calling
 * their done functions (the storage is being freed). */
void s3_uploads_cancel(struct s3_storage *s3);

/* The ranges of `key` from `first_offset` on (`range` bytes each, up to
 * `total`), fetched ahead on a thread of their own (s3_read_ahead.c).
 * 0, or -1 with err set. */
struct s3_read_ahead;
int s3_read_ahead_start(struct s3_endpoint *ep, const char *key, uint64_t first_offset, uint64_t total,
                        size_t range, struct s3_read_ahead **out, struct tm_error *err);
/* The range at `offset` (the next one, in order), waited for: its bytes
 * are swapped into *chunk, whose old buffer the thread reuses. 0, or -1
 * with the range's error. */
int s3_read_ahead_take(struct s3_read_ahead *a, uint64_t offset, struct buffer *chunk, struct tm_error *err);
/* Stops the thread (a range in transfer is finished first) and frees. */
void s3_read_ahead_free(struct s3_read_ahead *a);

#endif
