/* storage/s3.c - the S3-compatible replica driver (AWS S3, R2, GCS, MinIO).
 *
 * Every request is one curl easy handle built by prepare_request(): the
 * URL (path-style "endpoint/bucket/key" or virtual-host style
 * "bucket.host/key"), an RFC 3986-encoded query string given already
 * sorted (libcurl signs the query exactly as written), and the headers.
 * libcurl signs with Signature V4 (CURLOPT_AWS_SIGV4) but does not add
 * x-amz-content-sha256, which S3 requires: we add it (hex SHA-256 of the
 * body) and curl signs it with the other x-amz-* headers.
 *
 * Two ways to run a request share the same state machines:
 *  - synchronously (restore, list, tools, the daemon's start-up checks):
 *    curl_easy_perform on the storage's own easy handle, which keeps its
 *    connection open between requests;
 *  - from the daemon's event loop (put_file once attached to an
 *    http_loop): curl's multi-socket API, never blocking the loop.
 *
 * Uploads (put_file) send the local file as one PUT when it fits in one
 * part, otherwise as a multipart upload: initiate, PUT each part straight
 * from the file (memory stays at curl's buffers whatever the size),
 * complete; a failed multipart upload is aborted. Reads fetch the object
 * in ranges of READ_CHUNK bytes (Range GET), so memory is bounded and a
 * dropped connection costs one range, retried from where it stopped.
 *
 * Failures are classified once (classify()): connection errors, time-outs,
 * 5xx, 408, 429 and SlowDown are retried with exponential backoff and full
 * jitter, per request, up to RETRY_ATTEMPTS (RETRY_ATTEMPTS_IN_LOOP in
 * the daemon, so that a failure is reported within a second or two);
 * there is no shared retry budget to run dry during an outage. The daemon
 * retries a whole object again later, for ever (replicator/uploader.c). Other errors (bad
 * signature, missing bucket, wrong region, access denied) get a message
 * saying what to fix. Secrets never appear in messages or logs.
 */
#include "storage.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (4 * 1024 * 1024)
#define ERROR_BODY_MAX (64 * 1024)
#define LIST_BODY_MAX (16 * 1024 * 1024)
#define RETRY_ATTEMPTS 6
#define RETRY_ATTEMPTS_IN_LOOP 3   /* then the uploader reports and backs off */
#define RETRY_BASE_MS 200
#define RETRY_MAX_MS 10000
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_storage {
    char *bucket;
    char *prefix;              /* "" or "prod/app/" */
    char *region;
    char *scheme_host;         /* "https://s3.eu-central-1.amazonaws.com" */
    int path_style;
    char *access_key_id;
    char *secret_access_key;
    char *session_token;
    char *ca_file;
    char *lock_mode;
    int64_t lock_retain_ms;
    uint64_t part_size;
    char *sigv4;               /* "aws:amz:REGION:s3" */
    char *display;             /* "s3://bucket/prefix" for messages */
    CURL *easy;                /* synchronous requests; keeps its connection */
    CURLM *fetch_multi;        /* parallel downloads; keeps its connections */
    struct http_loop *hl;      /* NULL until attached */
    struct put_op *ops;        /* asynchronous uploads in flight */
};

/* ------------------------------------------------------------ buffers */

struct buffer {
    char *data;
    size_t len, cap, max;
};

static int buffer_append(struct buffer *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        if (b->len + len + 1 > cap)
            return -1;
        char *bigger = realloc(b->data, cap);
        if (!bigger)
            return -1;
        b->data = bigger;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static void buffer_reset(struct buffer *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* ------------------------------------------------------------ requests */

/* Request body: nothing, a memory block, or a range of a file. */
struct body {
    const char *mem;
    int fd;
    uint64_t offset, len, sent;
};

/* Response: status, the ETag header, the body into `sink` (successful
 * answers) or `error_body` (HTTP errors). */
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
    struct body body;
    struct curl_slist *headers;
    char url[4096];
};

static size_t on_body_read(char *buf, size_t size, size_t nitems, void *userp)
{
    struct body *b = userp;
    size_t want = size * nitems;
    if (want > b->len - b->sent)
        want = (size_t)(b->len - b->sent);
    if (want == 0)
        return 0;
    if (b->mem) {
        memcpy(buf, b->mem + b->sent, want);
        b->sent += want;
        return want;
    }
    ssize_t got = pread(b->fd, buf, want, (off_t)(b->offset + b->sent));
    if (got <= 0)
        return CURL_READFUNC_ABORT;
    b->sent += (uint64_t)got;
    return (size_t)got;
}

static int on_body_seek(void *userp, curl_off_t offset, int origin)
{
    struct body *b = userp;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > b->len)
        return CURL_SEEKFUNC_CANTSEEK;
    b->sent = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t on_response_data(char *data, size_t size, size_t nmemb, void *userp)
{
    struct response *r = userp;
    size_t len = size * nmemb;
    if (r->status == 0)
        return len;
    if (r->status >= 300) {
        buffer_append(&r->error_body, data, len);   /* truncated beyond the cap */
        return len;
    }
    if (r->file_sink) {
        struct file_sink *fs = r->file_sink;
        if (!r->data_seen && r->status == 200 && fs->resumed_from > 0) {
            fs->offset = 0;    /* the server sent the whole object again */
            if (ftruncate(fs->fd, 0) != 0)
                fs->failed = 1;
        }
        r->data_seen = 1;
        for (size_t done = 0; done < len && !fs->failed;) {
            ssize_t put = pwrite(fs->fd, data + done, len - done, (off_t)fs->offset);
            if (put <= 0) {
                fs->failed = 1;
                break;
            }
            done += (size_t)put;
            fs->offset += (uint64_t)put;
        }
        return fs->failed ? 0 : len;
    }
    r->data_seen = 1;
    if (r->sink && buffer_append(r->sink, data, len) != 0)
        return 0;   /* more than the request asked for: abort */
    return len;
}

static size_t on_response_header(char *data, size_t size, size_t nitems, void *userp)
{
    struct response *r = userp;
    size_t len = size * nitems;
    if (len > 9 && strncmp(data, "HTTP/", 5) == 0) {
        const char *space = memchr(data, ' ', len);
        r->status = space ? strtol(space + 1, NULL, 10) : 0;
        if (r->status == 100)
            r->status = 0;
    } else if (len > 5 && strncasecmp(data, "etag:", 5) == 0) {
        size_t i = 5;
        while (i < len && data[i] == ' ')
            i++;
        size_t end = len;
        while (end > i && (data[end - 1] == '\r' || data[end - 1] == '\n' || data[end - 1] == ' '))
            end--;
        if (end - i < sizeof r->etag) {
            memcpy(r->etag, data + i, end - i);
            r->etag[end - i] = '\0';
        }
    } else if (len > 14 && strncasecmp(data, "content-range:", 14) == 0) {
        const char *slash = memchr(data, '/', len);
        if (slash)
            r->total_size = strtoull(slash + 1, NULL, 10);
    }
    return len;
}

/* RFC 3986 encoding; '/' kept when keep_slash. */
static void uri_encode(const char *in, int keep_slash, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && used + 4 < cap; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/')) {
            out[used++] = (char)*p;
        } else {
            out[used++] = '%';
            out[used++] = hex[*p >> 4];
            out[used++] = hex[*p & 15];
        }
    }
    out[used] = '\0';
}

static int sha256_hex_of_body(const struct body *b, char out[65], struct tm_error *err)
{
    uint8_t digest[crypto_hash_sha256_BYTES];
    if (!b->mem && b->fd < 0) {
        memcpy(out, EMPTY_SHA256, 65);
        return 0;
    }
    if (b->mem) {
        crypto_hash_sha256(digest, (const uint8_t *)b->mem, b->len);
    } else {
        crypto_hash_sha256_state state;
        crypto_hash_sha256_init(&state);
        uint8_t block[65536];
        for (uint64_t done = 0; done < b->len;) {
            size_t want = b->len - done < sizeof block ? (size_t)(b->len - done) : sizeof block;
            ssize_t got = pread(b->fd, block, want, (off_t)(b->offset + done));
            if (got <= 0)
                return tm_error_set(err, "cannot read the file being uploaded: %s",
                                    got < 0 ? strerror(errno) : "it shrank");
            crypto_hash_sha256_update(&state, block, (size_t)got);
            done += (uint64_t)got;
        }
        crypto_hash_sha256_final(&state, digest);
    }
    sodium_bin2hex(out, 65, digest, sizeof digest);
    return 0;
}

static void format_lock_until(int64_t retain_ms, char *out, size_t cap)
{
    time_t until = time(NULL) + (time_t)(retain_ms / 1000);
    struct tm tm;
    gmtime_r(&until, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Builds the URL and headers of req on easy (reset first). */
static int prepare_request(struct s3_storage *s3, CURL *easy, struct request *req,
                           struct response *resp, struct tm_error *err)
{
    char encoded_key[2048] = "";
    if (req->key) {
        char full[2048];
        snprintf(full, sizeof full, "%s%s", s3->prefix, req->key);
        uri_encode(full, 1, encoded_key, sizeof encoded_key);
    }
    const char *host = strstr(s3->scheme_host, "://") + 3;
    size_t scheme_len = (size_t)(host - s3->scheme_host);
    if (s3->path_style)
        snprintf(req->url, sizeof req->url, "%s/%s/%s", s3->scheme_host, s3->bucket, encoded_key);
    else
        snprintf(req->url, sizeof req->url, "%.*s%s.%s/%s", (int)scheme_len, s3->scheme_host,
                 s3->bucket, host, encoded_key);
    if (req->query) {
        size_t used = strlen(req->url);
        snprintf(req->url + used, sizeof req->url - used, "?%s", req->query);
    }
    char hash[65], line[512];
    if (sha256_hex_of_body(&req->body, hash, err) != 0)
        return -1;
    snprintf(line, sizeof line, "x-amz-content-sha256: %s", hash);
    req->headers = curl_slist_append(NULL, line);
    if (s3->session_token) {
        char *token_line = NULL;
        if (asprintf(&token_line, "x-amz-security-token: %s", s3->session_token) < 0)
            return tm_error_set(err, "out of memory");
        req->headers = curl_slist_append(req->headers, token_line);
        free(token_line);
    }
    if (req->range) {
        snprintf(line, sizeof line, "Range: %s", req->range);
        req->headers = curl_slist_append(req->headers, line);
    }
    if (req->lock_headers && s3->lock_mode) {
        char until[32];
        format_lock_until(s3->lock_retain_ms, until, sizeof until);
        snprintf(line, sizeof line, "x-amz-object-lock-mode: %s", s3->lock_mode);
        req->headers = curl_slist_append(req->headers, line);
        snprintf(line, sizeof line, "x-amz-object-lock-retain-until-date: %s", until);
        req->headers = curl_slist_append(req->headers, line);
    }
    if (!req->headers)
        return tm_error_set(err, "out of memory");

    curl_easy_reset(easy);
    struct buffer *sink = resp->sink;
    struct file_sink *file_sink = resp->file_sink;
    memset(resp, 0, offsetof(struct response, error_body));
    resp->sink = sink;
    resp->file_sink = file_sink;
    resp->error_body.max = ERROR_BODY_MAX;
    buffer_reset(&resp->error_body);
    resp->curl_error[0] = '\0';
    if (resp->sink)
        buffer_reset(resp->sink);
    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, s3->sigv4);
    curl_easy_setopt(easy, CURLOPT_USERNAME, s3->access_key_id);
    curl_easy_setopt(easy, CURLOPT_PASSWORD, s3->secret_access_key);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_response_data);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_response_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, resp->curl_error);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* a stalled transfer */
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, 20L);   /* fails after 20 s */
    curl_easy_setopt(easy, CURLOPT_EXPECT_100_TIMEOUT_MS, 200L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (s3->ca_file)
        curl_easy_setopt(easy, CURLOPT_CAINFO, s3->ca_file);
    if (strcmp(req->method, "PUT") == 0) {
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body.len);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_body_read);
        curl_easy_setopt(easy, CURLOPT_READDATA, &req->body);
        curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_body_seek);
        curl_easy_setopt(easy, CURLOPT_SEEKDATA, &req->body);
    } else if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.mem ? req->body.mem : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
    } else if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }
    return 0;
}

static void request_release(struct request *req)
{
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    req->body.sent = 0;
}

/* ------------------------------------------------------------ answers */

/* The text of <tag>...</tag> after `from` (entities decoded) into out;
 * returns a pointer past the closing tag, or NULL. */
static const char *xml_text(const char *from, const char *tag, char *out, size_t cap)
{
    char open_tag[64], close_tag[64];
    snprintf(open_tag, sizeof open_tag, "<%s>", tag);
    snprintf(close_tag, sizeof close_tag, "</%s>", tag);
    const char *start = from ? strstr(from, open_tag) : NULL;
    if (!start)
        return NULL;
    start += strlen(open_tag);
    const char *end = strstr(start, close_tag);
    if (!end)
        return NULL;
    static const struct { const char *entity; char c; } entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t used = 0;
    for (const char *p = start; p < end && used + 1 < cap;) {
        char c = *p++;
        for (size_t i = 0; c == '&' && i < sizeof entities / sizeof entities[0]; i++) {
            size_t n = strlen(entities[i].entity);
            if (strncmp(p - 1, entities[i].entity, n) == 0) {
                c = entities[i].c;
                p += n - 1;
                break;
            }
        }
        out[used++] = c;
    }
    out[used] = '\0';
    return end + strlen(close_tag);
}

enum outcome { OUTCOME_OK, OUTCOME_RETRY, OUTCOME_FAIL };

/* Decides what a finished request means; on failure err says why. */
static enum outcome classify(struct s3_storage *s3, const struct request *req, CURLcode result,
                             const struct response *resp, struct tm_error *err)
{
    const char *what = req->key ? req->key : "the bucket";
    if (result != CURLE_OK) {
        tm_error_set(err, "%s: %s %s: %s", s3->display, req->method, what,
                     resp->curl_error[0] ? resp->curl_error : curl_easy_strerror(result));
        if (result == CURLE_PEER_FAILED_VERIFICATION || result == CURLE_SSL_CACERT_BADFILE ||
            result == CURLE_UNSUPPORTED_PROTOCOL || result == CURLE_URL_MALFORMAT) {
            tm_error_hint(err, "check 'endpoint' and, for a private CA, 'ca-file'");
            return OUTCOME_FAIL;
        }
        return OUTCOME_RETRY;
    }
    long status = resp->status;
    if (status >= 200 && status < 300)
        return OUTCOME_OK;
    char code[128] = "", message[256] = "", region[64] = "";
    xml_text(resp->error_body.data, "Code", code, sizeof code);
    xml_text(resp->error_body.data, "Message", message, sizeof message);
    xml_text(resp->error_body.data, "Region", region, sizeof region);
    if (status >= 500 || status == 408 || status == 429 || strcmp(code, "SlowDown") == 0) {
        tm_error_set(err, "%s: %s %s: HTTP %ld %s", s3->display, req->method, what, status,
                     code[0] ? code : "(server error)");
        return OUTCOME_RETRY;
    }
    if (strcmp(code, "SignatureDoesNotMatch") == 0) {
        tm_error_set(err, "%s: signature rejected by the server", s3->display);
        tm_error_hint(err, "the secret access key does not match the access key id (or 'region' is wrong)");
    } else if (strcmp(code, "InvalidAccessKeyId") == 0) {
        tm_error_set(err, "%s: access key id not recognised by the server", s3->display);
        tm_error_hint(err, "check 'access-key-id', AWS_ACCESS_KEY_ID or the profile in ~/.aws/credentials");
    } else if (strcmp(code, "NoSuchBucket") == 0) {
        tm_error_set(err, "%s: bucket '%s' does not exist", s3->display, s3->bucket);
        tm_error_hint(err, "create it (with versioning) or fix 'bucket'");
    } else if (strcmp(code, "AuthorizationHeaderMalformed") == 0 || status == 301 ||
               strcmp(code, "PermanentRedirect") == 0 || strcmp(code, "IllegalLocationConstraintException") == 0) {
        tm_error_set(err, "%s: wrong region '%s' for bucket '%s'%s%s", s3->display, s3->region,
                     s3->bucket, region[0] ? ": the bucket is in " : "", region);
        tm_error_hint(err, "set 'region' to the bucket's region");
    } else if (status == 404 && (strcmp(code, "NoSuchKey") == 0 || !code[0]) && req->key) {
        tm_error_set(err, "object '%s' does not exist in %s", req->key, s3->display);
    } else if (status == 403) {
        tm_error_set(err, "%s: %s %s: access denied%s%s", s3->display, req->method, what,
                     message[0] ? ": " : "", message);
        tm_error_hint(err, "the credentials need the permissions listed in docs/s3.md");
    } else {
        tm_error_set(err, "%s: %s %s: HTTP %ld %s%s%s", s3->display, req->method, what, status,
                     code[0] ? code : "", message[0] ? ": " : "", message);
    }
    return OUTCOME_FAIL;
}

/* Full jitter: uniform in [0, min(max, base * 2^attempt)]. */
static unsigned retry_delay_ms(int attempt)
{
    uint64_t ceiling = (uint64_t)RETRY_BASE_MS << (attempt < 16 ? attempt : 16);
    if (ceiling > RETRY_MAX_MS)
        ceiling = RETRY_MAX_MS;
    return randombytes_uniform((uint32_t)ceiling + 1);
}

/* Runs req synchronously, trying up to `attempts` times. 0 on a 2xx
 * answer, -1 on a permanent error, -2 when retryable errors persisted. */
static int perform_tries(struct s3_storage *s3, struct request *req, struct response *resp,
                         int attempts, struct tm_error *err)
{
    for (int attempt = 0;; attempt++) {
        if (prepare_request(s3, s3->easy, req, resp, err) != 0) {
            request_release(req);
            return -1;
        }
        CURLcode result = curl_easy_perform(s3->easy);
        enum outcome outcome = classify(s3, req, result, resp, err);
        request_release(req);
        if (outcome == OUTCOME_OK)
            return 0;
        if (outcome == OUTCOME_FAIL)
            return -1;
        if (attempt + 1 >= attempts)
            return -2;
        unsigned delay = retry_delay_ms(attempt);
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int perform(struct s3_storage *s3, struct request *req, struct response *resp,
                   struct tm_error *err)
{
    return perform_tries(s3, req, resp, RETRY_ATTEMPTS, err) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ reading */

struct s3_reader {
    struct s3_storage *s3;
    char *key;
    uint64_t total;            /* object size */
    uint64_t fetched;          /* bytes fetched so far */
    struct buffer chunk;
    size_t chunk_pos;
    struct response resp;
};

static int fetch_chunk(struct s3_reader *r, struct tm_error *err)
{
    char range[64];
    snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)r->fetched,
             (unsigned long long)(r->fetched + READ_CHUNK - 1));
    struct request req = {.method = "GET", .key = r->key, .range = range, .body = {.fd = -1}};
    r->chunk.max = READ_CHUNK;
    r->resp.sink = &r->chunk;
    if (perform(r->s3, &req, &r->resp, err) != 0)
        return -1;
    if (r->resp.status == 200)   /* server ignored Range: the whole object */
        r->total = r->chunk.len;
    else if (r->fetched == 0)
        r->total = r->resp.total_size;
    r->fetched += r->chunk.len;
    r->chunk_pos = 0;
    if (r->chunk.len == 0 && r->fetched < r->total)
        return tm_error_set(err, "%s: object '%s' ended early", r->s3->display, r->key);
    return 0;
}

static int s3_read_begin(void *self, const char *key, void **handle, struct tm_error *err)
{
    struct s3_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->key = strdup(key))) {
        free(r);
        return tm_error_set(err, "out of memory");
    }
    r->s3 = self;
    r->resp.error_body.max = ERROR_BODY_MAX;
    if (fetch_chunk(r, err) != 0) {
        free(r->chunk.data);
        free(r->resp.error_body.data);
        free(r->key);
        free(r);
        return -1;
    }
    *handle = r;
    return 0;
}

static int s3_read(void *handle, void *buf, size_t len, size_t *got, struct tm_error *err)
{
    struct s3_reader *r = handle;
    *got = 0;
    if (r->chunk_pos == r->chunk.len) {
        if (r->fetched >= r->total)
            return 0;
        if (fetch_chunk(r, err) != 0)
            return -1;
    }
    size_t take = r->chunk.len - r->chunk_pos;
    if (take > len)
        take = len;
    memcpy(buf, r->chunk.data + r->chunk_pos, take);
    r->chunk_pos += take;
    *got = take;
    return 0;
}

static void s3_read_end(void *handle)
{
    struct s3_reader *r = handle;
    free(r->chunk.data);
    free(r->resp.error_body.data);
    free(r->key);
    free(r);
}

/* ------------------------------------------------------------ listing */

static int add_entry(struct storage_list *out, const char *name, uint64_t size, int is_dir)
{
    struct storage_entry *bigger = realloc(out->entries, (out->count + 1) * sizeof *bigger);
    if (!bigger)
        return -1;
    out->entries = bigger;
    struct storage_entry *e = &out->entries[out->count];
    if (!(e->name = strdup(name)))
        return -1;
    e->size = size;
    e->is_dir = is_dir;
    out->count++;
    return 0;
}

/* Adds one ListObjectsV2 page's objects and sub-directories. */
static int parse_list_page(const char *xml, size_t dir_len, struct storage_list *out,
                           struct tm_error *err)
{
    char key[2048], size_text[32];
    for (const char *p = strstr(xml, "<Contents>"); p; p = strstr(p, "<Contents>")) {
        const char *end = strstr(p, "</Contents>");
        if (!end || !xml_text(p, "Key", key, sizeof key) || !xml_text(p, "Size", size_text, sizeof size_text))
            return tm_error_set(err, "malformed listing from the server");
        if (strlen(key) > dir_len && !strchr(key + dir_len, '/') &&
            add_entry(out, key + dir_len, strtoull(size_text, NULL, 10), 0) != 0)
            return tm_error_set(err, "out of memory");
        p = end;
    }
    for (const char *p = strstr(xml, "<CommonPrefixes>"); p; p = strstr(p, "<CommonPrefixes>")) {
        const char *end = xml_text(p, "Prefix", key, sizeof key);
        if (!end)
            return tm_error_set(err, "malformed listing from the server");
        size_t len = strlen(key);
        if (len > dir_len + 1 && key[len - 1] == '/') {
            key[len - 1] = '\0';
            if (add_entry(out, key + dir_len, 0, 1) != 0)
                return tm_error_set(err, "out of memory");
        }
        p = end;
    }
    return 0;
}

static int s3_list(void *self, const char *dir, struct storage_list *out, struct tm_error *err)
{
    struct s3_storage *s3 = self;
    char prefix[2048], encoded_prefix[4096], token[1024] = "", encoded_token[2048], query[8192];
    snprintf(prefix, sizeof prefix, "%s%s%s", s3->prefix, dir, dir[0] ? "/" : "");
    uri_encode(prefix, 0, encoded_prefix, sizeof encoded_prefix);
    struct buffer page = {.max = LIST_BODY_MAX};
    struct response resp = {.sink = &page, .error_body = {.max = ERROR_BODY_MAX}};
    int rc = 0;
    for (;;) {
        uri_encode(token, 0, encoded_token, sizeof encoded_token);
        /* parameters in sorted order: curl signs the query as written */
        snprintf(query, sizeof query, "%s%s%sdelimiter=%%2F&list-type=2&prefix=%s",
                 token[0] ? "continuation-token=" : "", token[0] ? encoded_token : "",
                 token[0] ? "&" : "", encoded_prefix);
        struct request req = {.method = "GET", .query = query, .body = {.fd = -1}};
        if ((rc = perform(s3, &req, &resp, err)) != 0)
            break;
        if ((rc = parse_list_page(page.data ? page.data : "", strlen(prefix), out, err)) != 0)
            break;
        char truncated[16] = "";
        xml_text(page.data, "IsTruncated", truncated, sizeof truncated);
        if (strcmp(truncated, "true") != 0)
            break;
        if (!xml_text(page.data, "NextContinuationToken", token, sizeof token) || !token[0]) {
            rc = tm_error_set(err, "%s: truncated listing without a continuation token", s3->display);
            break;
        }
    }
    free(page.data);
    free(resp.error_body.data);
    if (rc != 0)
        storage_list_release(out);
    return rc;
}

static int s3_remove(void *self, const char *key, struct tm_error *err)
{
    struct s3_storage *s3 = self;
    struct request req = {.method = "DELETE", .key = key, .body = {.fd = -1}};
    struct response resp = {.error_body = {.max = ERROR_BODY_MAX}};
    int rc = perform(s3, &req, &resp, err);
    free(resp.error_body.data);
    return rc;
}

/* ------------------------------------------------------------ uploads */

/* One upload of a local file, as a state machine shared by the
 * synchronous and the event-loop drivers. */
enum put_step { STEP_SINGLE, STEP_INITIATE, STEP_PART, STEP_COMPLETE, STEP_ABORT, STEP_DONE };

struct put_op {
    struct s3_storage *s3;
    struct put_op *next;       /* in s3->ops */
    char *key;
    int fd;
    uint64_t size;
    enum put_step step;
    char upload_id[1024];
    char (*etags)[128];
    uint32_t part_count;
    uint32_t part;             /* 1-based part being sent */
    int attempt, max_attempts;
    char query[1400];
    char *complete_xml;
    struct request req;
    struct response resp;
    struct buffer answer;      /* initiate / complete answers */
    CURL *easy;                /* event-loop driver only */
    ev_timer retry_timer;
    storage_done_fn done;
    void *arg;
    int failed;
    struct tm_error err;
};

static int build_complete_xml(struct put_op *op)
{
    struct buffer xml = {.max = (size_t)op->part_count * 200 + 256};
    int rc = buffer_append(&xml, "<CompleteMultipartUpload>", 25);
    for (uint32_t i = 0; rc == 0 && i < op->part_count; i++) {
        char part[200];
        int len = snprintf(part, sizeof part, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                           i + 1, op->etags[i]);
        rc = buffer_append(&xml, part, (size_t)len);
    }
    if (rc == 0)
        rc = buffer_append(&xml, "</CompleteMultipartUpload>", 26);
    free(op->complete_xml);
    op->complete_xml = rc == 0 ? xml.data : NULL;
    if (rc != 0)
        free(xml.data);
    return rc;
}

/* Fills op->req for the current step. */
static int step_request(struct put_op *op)
{
    char encoded_id[1200];
    uri_encode(op->upload_id, 0, encoded_id, sizeof encoded_id);
    op->req = (struct request){.key = op->key, .body = {.fd = -1}};
    op->resp.sink = NULL;
    switch (op->step) {
    case STEP_SINGLE:
        op->req.method = "PUT";
        op->req.lock_headers = 1;
        op->req.body = (struct body){.fd = op->fd, .offset = 0, .len = op->size};
        break;
    case STEP_INITIATE:
        op->req.method = "POST";
        op->req.query = "uploads=";
        op->req.lock_headers = 1;
        op->resp.sink = &op->answer;
        break;
    case STEP_PART: {
        uint64_t offset = (uint64_t)(op->part - 1) * op->s3->part_size;
        uint64_t len = op->size - offset < op->s3->part_size ? op->size - offset : op->s3->part_size;
        snprintf(op->query, sizeof op->query, "partNumber=%u&uploadId=%s", op->part, encoded_id);
        op->req.method = "PUT";
        op->req.query = op->query;
        op->req.body = (struct body){.fd = op->fd, .offset = offset, .len = len};
        break;
    }
    case STEP_COMPLETE:
        if (!op->complete_xml && build_complete_xml(op) != 0)
            return tm_error_set(&op->err, "out of memory");
        snprintf(op->query, sizeof op->query, "uploadId=%s", encoded_id);
        op->req.method = "POST";
        op->req.query = op->query;
        op->req.body = (struct body){.mem = op->complete_xml, .fd = -1, .len = strlen(op->complete_xml)};
        op->resp.sink = &op->answer;
        break;
    case STEP_ABORT:
        snprintf(op->query, sizeof op->query, "uploadId=%s", encoded_id);
        op->req.method = "DELETE";
        op->req.query = op->query;
        break;
    case STEP_DONE:
        break;
    }
    return 0;
}

enum step_result { STEP_NEXT, STEP_RETRY, STEP_FINISHED };

/* Moves the machine on after a request ended. */
static enum step_result step_finished(struct put_op *op, CURLcode result)
{
    struct tm_error err;
    enum outcome outcome = classify(op->s3, &op->req, result, &op->resp, &err);
    if (op->step == STEP_COMPLETE && outcome == OUTCOME_OK && op->answer.data &&
        strstr(op->answer.data, "<Error>")) {   /* S3 reports some failures inside a 200 */
        char code[128] = "";
        xml_text(op->answer.data, "Code", code, sizeof code);
        tm_error_set(&err, "%s: completing the upload of '%s' failed: %s", op->s3->display, op->key, code);
        outcome = strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ? OUTCOME_RETRY : OUTCOME_FAIL;
    }
    if (op->step == STEP_ABORT) {   /* best effort: the upload already failed */
        op->step = STEP_DONE;
        return STEP_FINISHED;
    }
    if (outcome == OUTCOME_RETRY && ++op->attempt < op->max_attempts)
        return STEP_RETRY;
    if (outcome != OUTCOME_OK) {
        op->failed = 1;
        op->err = err;
        op->step = op->upload_id[0] ? STEP_ABORT : STEP_DONE;
        return op->step == STEP_DONE ? STEP_FINISHED : STEP_NEXT;
    }
    op->attempt = 0;
    switch (op->step) {
    case STEP_SINGLE:
    case STEP_COMPLETE:
        op->step = STEP_DONE;
        return STEP_FINISHED;
    case STEP_INITIATE:
        if (!xml_text(op->answer.data, "UploadId", op->upload_id, sizeof op->upload_id) || !op->upload_id[0]) {
            op->failed = 1;
            tm_error_set(&op->err, "%s: no UploadId in the answer to starting a multipart upload", op->s3->display);
            op->step = STEP_DONE;
            return STEP_FINISHED;
        }
        op->step = STEP_PART;
        op->part = 1;
        return STEP_NEXT;
    case STEP_PART:
        snprintf(op->etags[op->part - 1], sizeof op->etags[0], "%s", op->resp.etag);
        if (op->part < op->part_count)
            op->part++;
        else
            op->step = STEP_COMPLETE;
        return STEP_NEXT;
    default:
        op->step = STEP_DONE;
        return STEP_FINISHED;
    }
}

static void op_free(struct put_op *op)
{
    if (op->fd >= 0)
        close(op->fd);
    free(op->key);
    free(op->etags);
    free(op->complete_xml);
    free(op->answer.data);
    free(op->resp.error_body.data);
    if (op->easy)
        curl_easy_cleanup(op->easy);
    free(op);
}

static int op_new(struct s3_storage *s3, const char *key, const char *path, struct put_op **out,
                  struct tm_error *err)
{
    struct put_op *op = calloc(1, sizeof *op);
    if (!op)
        return tm_error_set(err, "out of memory");
    op->s3 = s3;
    op->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (op->fd < 0 || fstat(op->fd, &st) != 0) {
        tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
        op_free(op);
        return -1;
    }
    op->size = (uint64_t)st.st_size;
    op->part_count = (uint32_t)((op->size + s3->part_size - 1) / s3->part_size);
    op->step = op->part_count > 1 ? STEP_INITIATE : STEP_SINGLE;
    op->key = strdup(key);
    op->etags = op->part_count > 1 ? calloc(op->part_count, sizeof *op->etags) : NULL;
    op->answer.max = 1024 * 1024;
    op->resp.error_body.max = ERROR_BODY_MAX;
    op->max_attempts = s3->hl ? RETRY_ATTEMPTS_IN_LOOP : RETRY_ATTEMPTS;
    if (!op->key || (op->part_count > 1 && !op->etags)) {
        op_free(op);
        return tm_error_set(err, "out of memory");
    }
    *out = op;
    return 0;
}

/* Synchronous driver: the whole machine in this call. */
static int run_op_sync(struct put_op *op, struct tm_error *err)
{
    while (op->step != STEP_DONE) {
        if (step_request(op) != 0 || prepare_request(op->s3, op->s3->easy, &op->req, &op->resp, &op->err) != 0) {
            request_release(&op->req);
            *err = op->err;
            return -1;
        }
        CURLcode result = curl_easy_perform(op->s3->easy);
        enum step_result next = step_finished(op, result);
        request_release(&op->req);
        if (next == STEP_RETRY) {
            unsigned delay = retry_delay_ms(op->attempt);
            struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (op->failed)
        *err = op->err;
    return op->failed ? -1 : 0;
}

/* Event-loop driver. */
static void op_issue(struct put_op *op);
static void op_finish(struct put_op *op);

static void on_op_failed_start(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    op_finish(w->data);
}

static void op_unlink(struct put_op *op)
{
    for (struct put_op **p = &op->s3->ops; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            return;
        }
}

static void op_finish(struct put_op *op)
{
    op_unlink(op);
    storage_done_fn done = op->done;
    void *arg = op->arg;
    int rc = op->failed ? -1 : 0;
    struct tm_error err = op->err;
    op_free(op);
    done(arg, rc, &err);
}

static void on_op_transfer_done(void *arg, CURL *easy, CURLcode result)
{
    (void)easy;
    struct put_op *op = arg;
    enum step_result next = step_finished(op, result);
    request_release(&op->req);
    if (next == STEP_FINISHED)
        return op_finish(op);
    if (next == STEP_RETRY) {
        ev_timer_set(&op->retry_timer, (double)retry_delay_ms(op->attempt) / 1000.0, 0.);
        ev_timer_start(http_loop_ev(op->s3->hl), &op->retry_timer);
        return;
    }
    op_issue(op);
}

static void on_op_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    op_issue(w->data);
}

static void op_issue(struct put_op *op)
{
    if (step_request(op) != 0 || prepare_request(op->s3, op->easy, &op->req, &op->resp, &op->err) != 0 ||
        http_loop_start(op->s3->hl, op->easy, on_op_transfer_done, op, &op->err) != 0) {
        request_release(&op->req);
        op->failed = 1;
        op->step = STEP_DONE;
        /* reported from the loop, never from inside put_file's caller */
        ev_set_cb(&op->retry_timer, on_op_failed_start);
        ev_timer_set(&op->retry_timer, 0., 0.);
        ev_timer_start(http_loop_ev(op->s3->hl), &op->retry_timer);
    }
}

static int s3_put_file(void *self, const char *key, const char *path, storage_done_fn done,
                       void *arg, struct tm_error *err)
{
    struct s3_storage *s3 = self;
    struct put_op *op = NULL;
    if (op_new(s3, key, path, &op, err) != 0)
        return -1;
    if (!s3->hl) {
        int rc = run_op_sync(op, err);
        op_free(op);
        return rc;
    }
    if (!(op->easy = curl_easy_init())) {
        op_free(op);
        return tm_error_set(err, "cannot initialise libcurl");
    }
    op->done = done;
    op->arg = arg;
    ev_timer_init(&op->retry_timer, on_op_retry, 0., 0.);
    op->retry_timer.data = op;
    op->next = s3->ops;
    s3->ops = op;
    op_issue(op);
    return STORAGE_PENDING;
}

/* Synchronous writes (tools): staged in a temporary file, then put_file. */
struct s3_writer {
    struct s3_storage *s3;
    char *key;
    char path[64];
    int fd;
};

static int s3_write_begin(void *self, const char *key, void **handle, struct tm_error *err)
{
    struct s3_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->key = strdup(key))) {
        free(w);
        return tm_error_set(err, "out of memory");
    }
    w->s3 = self;
    const char *tmp = getenv("TMPDIR");
    snprintf(w->path, sizeof w->path, "%s/tidemark-upload-XXXXXX", tmp && strlen(tmp) < 30 ? tmp : "/var/tmp");
    if ((w->fd = mkstemp(w->path)) < 0) {
        tm_error_set(err, "cannot create a temporary file in '%s': %s", w->path, strerror(errno));
        free(w->key);
        free(w);
        return -1;
    }
    *handle = w;
    return 0;
}

static int s3_write(void *handle, const void *data, size_t len, struct tm_error *err)
{
    struct s3_writer *w = handle;
    for (const uint8_t *p = data; len > 0;) {
        ssize_t put = write(w->fd, p, len);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return tm_error_set(err, "cannot write '%s': %s", w->path, strerror(errno));
        p += put;
        len -= (size_t)put;
    }
    return 0;
}

static void s3_write_abort(void *handle)
{
    struct s3_writer *w = handle;
    close(w->fd);
    unlink(w->path);
    free(w->key);
    free(w);
}

static int s3_write_commit(void *handle, struct tm_error *err)
{
    struct s3_writer *w = handle;
    struct http_loop *attached = w->s3->hl;
    w->s3->hl = NULL;   /* this call is synchronous */
    int rc = s3_put_file(w->s3, w->key, w->path, NULL, NULL, err);
    w->s3->hl = attached;
    s3_write_abort(w);
    return rc;
}

/* ------------------------------------------------------------ fetching */

/* Several whole objects into local files at once (restore's prefetch):
 * up to FETCH_PARALLEL transfers on a private multi handle, each retried
 * like any request, a dropped download resumed with a Range from the
 * bytes already on disk. */
#define FETCH_PARALLEL 8

enum fetch_state { FETCH_WAITING, FETCH_ACTIVE, FETCH_DONE };

struct fetch {
    const char *key;
    enum fetch_state state;
    int attempt;
    int64_t not_before_ms;
    CURL *easy;
    char range[64];
    struct request req;
    struct response resp;
    struct file_sink sink;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fetch_start(struct s3_storage *s3, CURLM *multi, struct fetch *f, struct tm_error *err)
{
    f->req = (struct request){.method = "GET", .key = f->key, .body = {.fd = -1}};
    f->sink.resumed_from = f->sink.offset;
    f->sink.failed = 0;
    if (f->sink.offset > 0) {
        snprintf(f->range, sizeof f->range, "bytes=%llu-", (unsigned long long)f->sink.offset);
        f->req.range = f->range;
    }
    f->resp.file_sink = &f->sink;
    f->resp.error_body.max = ERROR_BODY_MAX;
    if (prepare_request(s3, f->easy, &f->req, &f->resp, err) != 0)
        return -1;
    curl_easy_setopt(f->easy, CURLOPT_PRIVATE, (char *)f);
    if (curl_multi_add_handle(multi, f->easy) != CURLM_OK)
        return tm_error_set(err, "cannot start a download");
    f->state = FETCH_ACTIVE;
    return 0;
}

/* A transfer ended: done, retry later, or fail the whole fetch. */
static int fetch_finished(struct s3_storage *s3, struct fetch *f, CURLcode result, struct tm_error *err)
{
    enum outcome outcome = classify(s3, &f->req, result, &f->resp, err);
    request_release(&f->req);
    if (f->sink.failed)
        return tm_error_set(err, "cannot write the download of '%s': %s", f->key, strerror(errno));
    if (f->resp.status == 416 && f->sink.resumed_from > 0)
        outcome = OUTCOME_OK;   /* the dropped transfer had in fact ended */
    if (outcome == OUTCOME_OK) {
        f->state = FETCH_DONE;
        return 0;
    }
    if (outcome == OUTCOME_FAIL || ++f->attempt >= RETRY_ATTEMPTS)
        return -1;
    f->state = FETCH_WAITING;
    f->not_before_ms = now_ms() + retry_delay_ms(f->attempt);
    return 0;
}

static int s3_fetch_files(void *self, const char *const *keys, const int *fds, size_t count,
                          struct tm_error *err)
{
    struct s3_storage *s3 = self;
    struct fetch *fetches = calloc(count, sizeof *fetches);
    if (!s3->fetch_multi)
        s3->fetch_multi = curl_multi_init();
    CURLM *multi = s3->fetch_multi;
    int rc = fetches && multi ? 0 : tm_error_set(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < count; i++) {
        fetches[i] = (struct fetch){.key = keys[i], .sink = {.fd = fds[i]}};
        if (!(fetches[i].easy = curl_easy_init()))
            rc = tm_error_set(err, "cannot initialise libcurl");
    }
    size_t done = 0;
    while (rc == 0 && done < count) {
        size_t active = 0;
        for (size_t i = 0; i < count; i++)
            active += fetches[i].state == FETCH_ACTIVE;
        int64_t now = now_ms();
        for (size_t i = 0; rc == 0 && i < count && active < FETCH_PARALLEL; i++)
            if (fetches[i].state == FETCH_WAITING && fetches[i].not_before_ms <= now) {
                rc = fetch_start(s3, multi, &fetches[i], err);
                active++;
            }
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while (rc == 0 && (msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct fetch *f = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
            CURLcode result = msg->data.result;
            curl_multi_remove_handle(multi, f->easy);
            rc = fetch_finished(s3, f, result, err);
            done += rc == 0 && f->state == FETCH_DONE;
        }
        if (rc == 0 && done < count)
            curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    for (size_t i = 0; fetches && i < count; i++) {
        if (fetches[i].easy) {
            if (fetches[i].state == FETCH_ACTIVE)
                curl_multi_remove_handle(multi, fetches[i].easy);
            curl_easy_cleanup(fetches[i].easy);
        }
        request_release(&fetches[i].req);
        free(fetches[i].resp.error_body.data);
    }
    free(fetches);
    return rc;
}

/* ------------------------------------------------------------ checks */

static int s3_check(void *self, struct storage_check *out, struct tm_error *err)
{
    struct s3_storage *s3 = self;
    struct buffer answer = {.max = 64 * 1024};
    struct response resp = {.sink = &answer, .error_body = {.max = ERROR_BODY_MAX}};
    struct request req = {.method = "GET", .query = "versioning=", .body = {.fd = -1}};
    int rc = perform_tries(s3, &req, &resp, 2, err);
    out->transient = rc == -2;
    if (rc == 0) {
        char status[32] = "";
        xml_text(answer.data, "Status", status, sizeof status);
        out->versioning = strcmp(status, "Enabled") == 0;
    }
    free(answer.data);
    free(resp.error_body.data);
    return rc == 0 ? 0 : -1;
}

static void s3_attach(void *self, struct http_loop *hl)
{
    ((struct s3_storage *)self)->hl = hl;
}

static void s3_free(void *self)
{
    struct s3_storage *s3 = self;
    if (!s3)
        return;
    while (s3->ops) {
        struct put_op *op = s3->ops;
        s3->ops = op->next;
        ev_timer_stop(http_loop_ev(s3->hl), &op->retry_timer);
        http_loop_cancel(s3->hl, op->easy);
        op_free(op);
    }
    if (s3->easy)
        curl_easy_cleanup(s3->easy);
    if (s3->fetch_multi)
        curl_multi_cleanup(s3->fetch_multi);
    free(s3->bucket);
    free(s3->prefix);
    free(s3->region);
    free(s3->scheme_host);
    if (s3->secret_access_key)
        sodium_memzero(s3->secret_access_key, strlen(s3->secret_access_key));
    free(s3->access_key_id);
    free(s3->secret_access_key);
    free(s3->session_token);
    free(s3->ca_file);
    free(s3->lock_mode);
    free(s3->sigv4);
    free(s3->display);
    free(s3);
}

static const struct storage_driver s3_driver = {
    .type = "s3",
    .write_begin = s3_write_begin,
    .write = s3_write,
    .write_commit = s3_write_commit,
    .write_abort = s3_write_abort,
    .read_begin = s3_read_begin,
    .read = s3_read,
    .read_end = s3_read_end,
    .list = s3_list,
    .remove = s3_remove,
    .free = s3_free,
    .put_file = s3_put_file,
    .attach = s3_attach,
    .check = s3_check,
    .fetch_files = s3_fetch_files,
};

/* ------------------------------------------------------------ credentials */

static char *trimmed_copy(const char *start, const char *end)
{
    while (start < end && isspace((unsigned char)*start))
        start++;
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    return strndup(start, (size_t)(end - start));
}

/* Reads the profile's keys from the shared credentials file. */
static int load_shared_credentials(struct s3_storage *s3, struct tm_error *err)
{
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
    const char *home = getenv("HOME");
    const char *profile = getenv("AWS_PROFILE");
    char path[4096];
    if (!file) {
        snprintf(path, sizeof path, "%s/.aws/credentials", home ? home : "");
        file = path;
    }
    if (!profile || !profile[0])
        profile = "default";
    FILE *fp = fopen(file, "r");
    if (!fp)
        return 0;
    char line[2048];
    int in_profile = 0;
    while (fgets(line, sizeof line, fp)) {
        char *start = line;
        while (isspace((unsigned char)*start))
            start++;
        if (*start == '[') {
            char *close = strchr(start, ']');
            char *name = close ? trimmed_copy(start + 1, close) : NULL;
            in_profile = name && strcmp(name, profile) == 0;
            free(name);
            continue;
        }
        char *eq = strchr(start, '=');
        if (!in_profile || !eq || *start == '#' || *start == ';')
            continue;
        char *name = trimmed_copy(start, eq);
        char **slot = !name ? NULL
                    : strcmp(name, "aws_access_key_id") == 0     ? &s3->access_key_id
                    : strcmp(name, "aws_secret_access_key") == 0 ? &s3->secret_access_key
                    : strcmp(name, "aws_session_token") == 0     ? &s3->session_token
                                                                 : NULL;
        free(name);
        if (slot && !*slot)
            *slot = trimmed_copy(eq + 1, eq + strlen(eq));
    }
    sodium_memzero(line, sizeof line);
    fclose(fp);
    (void)err;
    return 0;
}

static char *strdup_or_null(const char *text)
{
    return text && text[0] ? strdup(text) : NULL;
}

static int resolve_credentials(struct s3_storage *s3, const struct config_replica *cfg,
                               struct tm_error *err)
{
    if (cfg->s3.access_key_id) {
        s3->access_key_id = strdup(cfg->s3.access_key_id);
        s3->secret_access_key = strdup(cfg->s3.secret_access_key);
    } else if (getenv("AWS_ACCESS_KEY_ID") && getenv("AWS_SECRET_ACCESS_KEY")) {
        s3->access_key_id = strdup_or_null(getenv("AWS_ACCESS_KEY_ID"));
        s3->secret_access_key = strdup_or_null(getenv("AWS_SECRET_ACCESS_KEY"));
        s3->session_token = strdup_or_null(getenv("AWS_SESSION_TOKEN"));
    } else if (load_shared_credentials(s3, err) != 0) {
        return -1;
    }
    if (!s3->access_key_id || !s3->secret_access_key) {
        tm_error_set(err, "replica '%s': no S3 credentials", cfg->name);
        return tm_error_hint(err, "set 'access-key-id' and 'secret-access-key', or AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE)");
    }
    return 0;
}

static int resolve_endpoint(struct s3_storage *s3, const struct config_replica *cfg)
{
    const char *region = cfg->s3.region ? cfg->s3.region
                       : getenv("AWS_REGION") ? getenv("AWS_REGION")
                       : getenv("AWS_DEFAULT_REGION") ? getenv("AWS_DEFAULT_REGION") : "us-east-1";
    if (!(s3->region = strdup(region)))
        return -1;
    if (cfg->s3.endpoint) {
        s3->scheme_host = strdup(cfg->s3.endpoint);
        if (s3->scheme_host) {   /* no trailing '/' */
            size_t len = strlen(s3->scheme_host);
            while (len > 8 && s3->scheme_host[len - 1] == '/')
                s3->scheme_host[--len] = '\0';
        }
        s3->path_style = cfg->s3.force_path_style;
    } else {
        if (asprintf(&s3->scheme_host, "https://s3.%s.amazonaws.com", region) < 0)
            s3->scheme_host = NULL;
        /* bucket names with dots break TLS on virtual hosts */
        s3->path_style = cfg->s3.force_path_style || strchr(cfg->s3.bucket, '.') != NULL;
    }
    if (!s3->scheme_host || asprintf(&s3->sigv4, "aws:amz:%s:s3", region) < 0)
        return -1;
    return 0;
}

int storage_s3_open(const struct config_replica *cfg, struct storage **out, struct tm_error *err)
{
    struct s3_storage *s3 = calloc(1, sizeof *s3);
    if (!s3)
        return tm_error_set(err, "out of memory");
    s3->part_size = cfg->s3.part_size ? cfg->s3.part_size : 8 * 1024 * 1024;
    s3->lock_retain_ms = cfg->s3.object_lock_retain_ms;
    const char *path = cfg->path ? cfg->path : "";
    int oom = !(s3->bucket = strdup(cfg->s3.bucket)) ||
              asprintf(&s3->prefix, "%s%s", path, path[0] ? "/" : "") < 0 ||
              asprintf(&s3->display, "replica '%s' (s3://%s/%s)", cfg->name, cfg->s3.bucket, path) < 0 ||
              (cfg->s3.ca_file && !(s3->ca_file = strdup(cfg->s3.ca_file))) ||
              (cfg->s3.object_lock_mode && !(s3->lock_mode = strdup(cfg->s3.object_lock_mode))) ||
              resolve_endpoint(s3, cfg) != 0;
    if (oom) {
        s3_free(s3);
        return tm_error_set(err, "out of memory");
    }
    if (resolve_credentials(s3, cfg, err) != 0) {
        s3_free(s3);
        return -1;
    }
    if (!(s3->easy = curl_easy_init())) {
        s3_free(s3);
        return tm_error_set(err, "cannot initialise libcurl");
    }
    char description[600];
    snprintf(description, sizeof description, "s3://%s/%s", cfg->s3.bucket, path);
    return storage_new(&s3_driver, s3, description, out, err);
}
