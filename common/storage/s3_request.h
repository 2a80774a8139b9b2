/* storage/s3_request.h - one S3 request: build, sign, run, judge.
 * Internal to the S3 driver (storage/s3.c); the storage interface
 * (storage.h) is the public one.
 *
 * struct s3_endpoint says where and as whom: bucket, key prefix, region,
 * endpoint URL and addressing style, credentials (resolved as AWS tools
 * do), TLS CA, Object Lock settings. A request is filled by the caller
 * (method, key, query, range, body) and run with s3_perform (blocking,
 * with retries) or prepared with s3_prepare_request on an easy handle the
 * caller runs itself (multi interface); s3_classify turns the result into
 * OK / RETRY / FAIL with a message that names the replica and what to fix.
 */
#ifndef TM_S3_REQUEST_H
#define TM_S3_REQUEST_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "../config.h"
#include "../error.h"

#define S3_ERROR_BODY_MAX (64 * 1024)
#define S3_RETRY_ATTEMPTS 6
#define S3_RETRY_BASE_MS 200
#define S3_RETRY_MAX_MS 10000
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_endpoint {
    char *bucket;
    char *prefix;              /* "" or "prod/app/" */
    char *region;
    char *scheme_host;         /* "https://s3.eu-central-1.amazonaws.com" */
    int path_style;
    char *access_key_id;
    char *secret_access_key;
    char *session_token;
    char *ca_file;
    char *lock_mode;           /* NULL or GOVERNANCE / COMPLIANCE */
    int64_t lock_retain_ms;
    long stall_timeout_s;      /* no progress this long: the transfer fails (and is retried) */
    char *sigv4;               /* "aws:amz:REGION:s3" */
    char *display;             /* "replica 'NAME' (s3://bucket/prefix)" for messages */
};

/* A growable buffer that refuses to pass `max` bytes. */
struct buffer {
    char *data;
    size_t len, cap, max;
};

/* Request body: nothing, a memory block, or a range of a file. */
struct body {
    const char *mem;
    int fd;
    uint64_t offset, len, sent;
};

/* A local file receiving an object: data goes at `offset` onwards; a
 * resumed download (Range from offset) answered with the whole object
 * (200) starts the file again. */
struct file_sink {
    int fd;
    uint64_t offset;
    uint64_t resumed_from;     /* the Range start asked for, 0 if none */
    int failed;
};

struct response {
    long status;
    char etag[128];
    uint64_t total_size;       /* from Content-Range */
    int data_seen;
    struct buffer *sink;       /* NULL: discard (or file_sink) */
    struct file_sink *file_sink;
    struct buffer error_body;
    char curl_error[CURL_ERROR_SIZE];
};

struct request {
    const char *method;        /* GET PUT POST DELETE HEAD */
    const char *key;           /* NULL: the bucket itself */
    const char *query;         /* sorted and encoded, or NULL */
    const char *range;         /* "bytes=a-b" or NULL */
    int lock_headers;          /* object lock retention on this PUT/POST */
    int checksum_header;       /* Content-MD5 of a memory body (DeleteObjects requires it) */
    struct body body;
    struct curl_slist *headers;
    char url[4096];
};

enum outcome { OUTCOME_OK, OUTCOME_RETRY, OUTCOME_FAIL };

int s3_endpoint_init(struct s3_endpoint *ep, const struct config_replica *cfg, struct tm_error *err);
void s3_endpoint_release(struct s3_endpoint *ep);

int s3_buffer_append(struct buffer *b, const void *data, size_t len);
void s3_buffer_reset(struct buffer *b);

/* RFC 3986 encoding; '/' kept when keep_slash. */
void s3_uri_encode(const char *in, int keep_slash, char *out, size_t cap);

/* Builds the URL and headers of req on easy (reset first). */
int s3_prepare_request(struct s3_endpoint *ep, CURL *easy, struct request *req,
                       struct response *resp, struct tm_error *err);
void s3_request_release(struct request *req);

/* What a finished request means; on failure err says why. */
enum outcome s3_classify(struct s3_endpoint *ep, const struct request *req, CURLcode result,
                         const struct response *resp, struct tm_error *err);
/* Backoff before retry number `attempt`: full jitter, capped. */
unsigned s3_retry_delay_ms(int attempt);

/* Runs req on easy, trying up to `attempts` times. 0 on a 2xx answer, -1
 * on a permanent error, -2 when retryable errors persisted. */
int s3_perform_tries(struct s3_endpoint *ep, CURL *easy, struct request *req, struct response *resp,
                     int attempts, struct tm_error *err);
/* The same with S3_RETRY_ATTEMPTS; 0 or -1. */
int s3_perform(struct s3_endpoint *ep, CURL *easy, struct request *req, struct response *resp,
               struct tm_error *err);

/* The text of <tag>...</tag> after `from` (entities decoded) into out;
 * returns a pointer past the closing tag, or NULL. */
const char *s3_xml_text(const char *from, const char *tag, char *out, size_t cap);

#endif
