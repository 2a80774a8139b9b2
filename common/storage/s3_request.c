/* storage/s3_request.c - building, signing, running and judging one S3
 * request (s3_request.h), for the S3 driver (storage/s3.c).
 *
 * A request is one curl easy handle: the URL (path-style
 * "endpoint/bucket/key" or virtual-host style "bucket.host/key"), an RFC
 * 3986-encoded query string given already sorted (libcurl signs the query
 * exactly as written), and the headers. libcurl signs with Signature V4
 * (CURLOPT_AWS_SIGV4) but does not add x-amz-content-sha256, which S3
 * requires: we add it (hex SHA-256 of the body) and curl signs it with the
 * other x-amz-* headers. A header-removal entry ("Expect:") would be signed
 * but not sent, so none is ever used.
 *
 * Answers are judged once, in s3_classify: connection errors, time-outs,
 * 5xx, 408, 429 and SlowDown may pass (retry with exponential backoff and
 * full jitter); bad signature, unknown key, missing bucket, wrong region
 * and access denied get a message saying what to fix. Secrets never appear
 * in messages.
 *
 * Credentials come from the configuration, else the environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), else the
 * shared credentials file's profile (AWS_SHARED_CREDENTIALS_FILE or
 * ~/.aws/credentials; AWS_PROFILE or "default").
 */
#include "s3_request.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ buffers */


int s3_buffer_append(struct buffer *b, const void *data, size_t len)
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

void s3_buffer_reset(struct buffer *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* ------------------------------------------------------------ requests */


/* Response: status, the ETag header, the body into `sink` (successful
 * answers) or `error_body` (HTTP errors). */



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
        s3_buffer_append(&r->error_body, data, len);   /* truncated beyond the cap */
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
    if (r->sink && s3_buffer_append(r->sink, data, len) != 0)
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
void s3_uri_encode(const char *in, int keep_slash, char *out, size_t cap)
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
        memcpy(out, S3_EMPTY_SHA256, 65);
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
/* The URL: endpoint, bucket (path or host), encoded key, query. */
static void build_url(const struct s3_endpoint *ep, struct request *req)
{
    char encoded_key[2048] = "";
    if (req->key) {
        char full[2048];
        snprintf(full, sizeof full, "%s%s", ep->prefix, req->key);
        s3_uri_encode(full, 1, encoded_key, sizeof encoded_key);
    }
    const char *host = strstr(ep->scheme_host, "://") + 3;
    size_t scheme_len = (size_t)(host - ep->scheme_host);
    if (ep->path_style)
        snprintf(req->url, sizeof req->url, "%s/%s/%s", ep->scheme_host, ep->bucket, encoded_key);
    else
        snprintf(req->url, sizeof req->url, "%.*s%s.%s/%s", (int)scheme_len, ep->scheme_host,
                 ep->bucket, host, encoded_key);
    if (req->query) {
        size_t used = strlen(req->url);
        snprintf(req->url + used, sizeof req->url - used, "?%s", req->query);
    }
}

/* DeleteObjects wants a body checksum: Content-MD5 (which every S3
 * server takes; OpenSSL's libcrypto computes it). */
static int add_md5_header(struct request *req, struct tm_error *err)
{
    uint8_t md5[EVP_MAX_MD_SIZE];
    unsigned md5_len = 0;
    char b64[64], line[512];
    if (!EVP_Digest(req->body.mem, req->body.len, md5, &md5_len, EVP_md5(), NULL))
        return tm_error_set(err, "cannot compute an MD5 digest");
    sodium_bin2base64(b64, sizeof b64, md5, md5_len, sodium_base64_VARIANT_ORIGINAL);
    snprintf(line, sizeof line, "Content-MD5: %s", b64);
    req->headers = curl_slist_append(req->headers, line);
    return 0;
}

/* The headers curl signs along with its own: body hash, checksum,
 * session token, range, object lock. */
static int build_headers(const struct s3_endpoint *ep, struct request *req, struct tm_error *err)
{
    char hash[65], line[512];
    if (sha256_hex_of_body(&req->body, hash, err) != 0)
        return -1;
    snprintf(line, sizeof line, "x-amz-content-sha256: %s", hash);
    req->headers = curl_slist_append(NULL, line);
    if (req->checksum_header && req->body.mem && add_md5_header(req, err) != 0)
        return -1;
    if (ep->session_token) {
        char *token_line = NULL;
        if (asprintf(&token_line, "x-amz-security-token: %s", ep->session_token) < 0)
            return tm_error_set(err, "out of memory");
        req->headers = curl_slist_append(req->headers, token_line);
        free(token_line);
    }
    if (req->range) {
        snprintf(line, sizeof line, "Range: %s", req->range);
        req->headers = curl_slist_append(req->headers, line);
    }
    if (req->lock_headers && ep->lock_mode) {
        char until[32];
        format_lock_until(ep->lock_retain_ms, until, sizeof until);
        snprintf(line, sizeof line, "x-amz-object-lock-mode: %s", ep->lock_mode);
        req->headers = curl_slist_append(req->headers, line);
        snprintf(line, sizeof line, "x-amz-object-lock-retain-until-date: %s", until);
        req->headers = curl_slist_append(req->headers, line);
    }
    if (!req->headers)
        return tm_error_set(err, "out of memory");
    return 0;
}

/* Clears what a previous run left in resp, keeping where its body goes. */
static void reset_response(struct response *resp)
{
    struct buffer *sink = resp->sink;
    struct file_sink *file_sink = resp->file_sink;
    memset(resp, 0, offsetof(struct response, error_body));
    resp->sink = sink;
    resp->file_sink = file_sink;
    resp->error_body.max = S3_ERROR_BODY_MAX;
    s3_buffer_reset(&resp->error_body);
    resp->curl_error[0] = '\0';
    if (resp->sink)
        s3_buffer_reset(resp->sink);
}

/* The options every request has: URL, signing, callbacks, time-outs. */
static void set_common_options(const struct s3_endpoint *ep, CURL *easy, struct request *req,
                               struct response *resp)
{
    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, ep->sigv4);
    curl_easy_setopt(easy, CURLOPT_USERNAME, ep->access_key_id);
    curl_easy_setopt(easy, CURLOPT_PASSWORD, ep->secret_access_key);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_response_data);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_response_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, resp->curl_error);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);   /* a stalled transfer */
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, ep->stall_timeout_s);   /* stall-timeout */
    curl_easy_setopt(easy, CURLOPT_EXPECT_100_TIMEOUT_MS, 200L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (ep->ca_file)
        curl_easy_setopt(easy, CURLOPT_CAINFO, ep->ca_file);
}

/* The method, and the body a PUT or POST sends. */
static void set_method_options(CURL *easy, struct request *req)
{
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
}

int s3_prepare_request(struct s3_endpoint *ep, CURL *easy, struct request *req,
                       struct response *resp, struct tm_error *err)
{
    build_url(ep, req);
    if (build_headers(ep, req, err) != 0)
        return -1;
    curl_easy_reset(easy);
    reset_response(resp);
    set_common_options(ep, easy, req, resp);
    set_method_options(easy, req);
    return 0;
}

void s3_request_release(struct request *req)
{
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    req->body.sent = 0;
}

/* ------------------------------------------------------------ answers */

/* The text of <tag>...</tag> after `from` (entities decoded) into out;
 * returns a pointer past the closing tag, or NULL. */
const char *s3_xml_text(const char *from, const char *tag, char *out, size_t cap)
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


/* Decides what a finished request means; on failure err says why. */
enum outcome s3_classify(struct s3_endpoint *ep, const struct request *req, CURLcode result,
                             const struct response *resp, struct tm_error *err)
{
    const char *what = req->key ? req->key : "the bucket";
    if (result != CURLE_OK) {
        tm_error_set(err, "%s: %s %s: %s", ep->display, req->method, what,
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
    s3_xml_text(resp->error_body.data, "Code", code, sizeof code);
    s3_xml_text(resp->error_body.data, "Message", message, sizeof message);
    s3_xml_text(resp->error_body.data, "Region", region, sizeof region);
    if (status >= 500 || status == 408 || status == 429 || strcmp(code, "SlowDown") == 0) {
        tm_error_setc(err, TM_ERR_TRANSIENT, "%s: %s %s: HTTP %ld %s", ep->display, req->method, what, status,
                     code[0] ? code : "(server error)");
        return OUTCOME_RETRY;
    }
    if (strcmp(code, "SignatureDoesNotMatch") == 0) {
        tm_error_setc(err, TM_ERR_REFUSED, "%s: signature rejected by the server", ep->display);
        tm_error_hint(err, "the secret access key does not match the access key id (or 'region' is wrong)");
    } else if (strcmp(code, "InvalidAccessKeyId") == 0) {
        tm_error_setc(err, TM_ERR_REFUSED, "%s: access key id not recognised by the server", ep->display);
        tm_error_hint(err, "check 'access-key-id', AWS_ACCESS_KEY_ID or the profile in ~/.aws/credentials");
    } else if (strcmp(code, "NoSuchBucket") == 0) {
        tm_error_set(err, "%s: bucket '%s' does not exist", ep->display, ep->bucket);
        tm_error_hint(err, "create it (with versioning) or fix 'bucket'");
    } else if (strcmp(code, "AuthorizationHeaderMalformed") == 0 || status == 301 ||
               strcmp(code, "PermanentRedirect") == 0 || strcmp(code, "IllegalLocationConstraintException") == 0) {
        tm_error_set(err, "%s: wrong region '%s' for bucket '%s'%s%s", ep->display, ep->region,
                     ep->bucket, region[0] ? ": the bucket is in " : "", region);
        tm_error_hint(err, "set 'region' to the bucket's region");
    } else if (status == 404 && (strcmp(code, "NoSuchKey") == 0 || !code[0]) && req->key) {
        tm_error_setc(err, TM_ERR_NOT_FOUND, "object '%s' does not exist in %s", req->key, ep->display);
    } else if (status == 403) {
        tm_error_setc(err, TM_ERR_REFUSED, "%s: %s %s: access denied%s%s", ep->display, req->method, what,
                     message[0] ? ": " : "", message);
        tm_error_hint(err, "the credentials need the permissions listed in docs/s3.md");
    } else {
        tm_error_set(err, "%s: %s %s: HTTP %ld %s%s%s", ep->display, req->method, what, status,
                     code[0] ? code : "", message[0] ? ": " : "", message);
    }
    return OUTCOME_FAIL;
}

/* Full jitter: uniform in [0, min(max, base * 2^attempt)]. */
unsigned s3_retry_delay_ms(int attempt)
{
    uint64_t ceiling = (uint64_t)S3_RETRY_BASE_MS << (attempt < 16 ? attempt : 16);
    if (ceiling > S3_RETRY_MAX_MS)
        ceiling = S3_RETRY_MAX_MS;
    return randombytes_uniform((uint32_t)ceiling + 1);
}

/* Runs req synchronously, trying up to `attempts` times. 0 on a 2xx
 * answer, -1 on a permanent error, -2 when retryable errors persisted. */
int s3_perform_tries(struct s3_endpoint *ep, CURL *easy, struct request *req, struct response *resp,
                     int attempts, struct tm_error *err)
{
    for (int attempt = 0;; attempt++) {
        if (s3_prepare_request(ep, easy, req, resp, err) != 0) {
            s3_request_release(req);
            return -1;
        }
        CURLcode result = curl_easy_perform(easy);
        enum outcome outcome = s3_classify(ep, req, result, resp, err);
        s3_request_release(req);
        if (outcome == OUTCOME_OK)
            return 0;
        if (outcome == OUTCOME_FAIL)
            return -1;
        if (attempt + 1 >= attempts)
            return -2;
        unsigned delay = s3_retry_delay_ms(attempt);
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int s3_perform(struct s3_endpoint *ep, CURL *easy, struct request *req, struct response *resp,
               struct tm_error *err)
{
    return s3_perform_tries(ep, easy, req, resp, S3_RETRY_ATTEMPTS, err) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ endpoint */

static char *trimmed_copy(const char *start, const char *end)
{
    while (start < end && isspace((unsigned char)*start))
        start++;
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    return strndup(start, (size_t)(end - start));
}

/* Reads the profile's keys from the shared credentials file. */
static int load_shared_credentials(struct s3_endpoint *ep, struct tm_error *err)
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
                    : strcmp(name, "aws_access_key_id") == 0     ? &ep->access_key_id
                    : strcmp(name, "aws_secret_access_key") == 0 ? &ep->secret_access_key
                    : strcmp(name, "aws_session_token") == 0     ? &ep->session_token
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

static int resolve_credentials(struct s3_endpoint *ep, const struct config_replica *cfg,
                               struct tm_error *err)
{
    if (cfg->s3.access_key_id) {
        ep->access_key_id = strdup(cfg->s3.access_key_id);
        ep->secret_access_key = strdup(cfg->s3.secret_access_key);
    } else if (getenv("AWS_ACCESS_KEY_ID") && getenv("AWS_SECRET_ACCESS_KEY")) {
        ep->access_key_id = strdup_or_null(getenv("AWS_ACCESS_KEY_ID"));
        ep->secret_access_key = strdup_or_null(getenv("AWS_SECRET_ACCESS_KEY"));
        ep->session_token = strdup_or_null(getenv("AWS_SESSION_TOKEN"));
    } else if (load_shared_credentials(ep, err) != 0) {
        return -1;
    }
    if (!ep->access_key_id || !ep->secret_access_key) {
        tm_error_set(err, "replica '%s': no S3 credentials", cfg->name);
        return tm_error_hint(err, "set 'access-key-id' and 'secret-access-key', or AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE)");
    }
    return 0;
}

static int resolve_endpoint(struct s3_endpoint *ep, const struct config_replica *cfg)
{
    const char *region = cfg->s3.region ? cfg->s3.region
                       : getenv("AWS_REGION") ? getenv("AWS_REGION")
                       : getenv("AWS_DEFAULT_REGION") ? getenv("AWS_DEFAULT_REGION") : "us-east-1";
    if (!(ep->region = strdup(region)))
        return -1;
    if (cfg->s3.endpoint) {
        ep->scheme_host = strdup(cfg->s3.endpoint);
        if (ep->scheme_host) {   /* no trailing '/' */
            size_t len = strlen(ep->scheme_host);
            while (len > 8 && ep->scheme_host[len - 1] == '/')
                ep->scheme_host[--len] = '\0';
        }
        ep->path_style = cfg->s3.force_path_style;
    } else {
        if (asprintf(&ep->scheme_host, "https://s3.%s.amazonaws.com", region) < 0)
            ep->scheme_host = NULL;
        /* bucket names with dots break TLS on virtual hosts */
        ep->path_style = cfg->s3.force_path_style || strchr(cfg->s3.bucket, '.') != NULL;
    }
    if (!ep->scheme_host || asprintf(&ep->sigv4, "aws:amz:%s:s3", region) < 0)
        return -1;
    return 0;
}


void s3_endpoint_release(struct s3_endpoint *ep)
{
    if (ep->secret_access_key)
        sodium_memzero(ep->secret_access_key, strlen(ep->secret_access_key));
    free(ep->bucket);
    free(ep->prefix);
    free(ep->region);
    free(ep->scheme_host);
    free(ep->access_key_id);
    free(ep->secret_access_key);
    free(ep->session_token);
    free(ep->ca_file);
    free(ep->lock_mode);
    free(ep->sigv4);
    free(ep->display);
    memset(ep, 0, sizeof *ep);
}

int s3_endpoint_init(struct s3_endpoint *ep, const struct config_replica *cfg, struct tm_error *err)
{
    memset(ep, 0, sizeof *ep);
    ep->lock_retain_ms = cfg->s3.object_lock_retain_ms;
    ep->stall_timeout_s = cfg->s3.stall_timeout_ms > 0 ? (long)((cfg->s3.stall_timeout_ms + 999) / 1000) : 20;
    const char *path = cfg->path ? cfg->path : "";
    int oom = !(ep->bucket = strdup(cfg->s3.bucket)) ||
              asprintf(&ep->prefix, "%s%s", path, path[0] ? "/" : "") < 0 ||
              asprintf(&ep->display, "replica '%s' (s3://%s/%s)", cfg->name, cfg->s3.bucket, path) < 0 ||
              (cfg->s3.ca_file && !(ep->ca_file = strdup(cfg->s3.ca_file))) ||
              (cfg->s3.object_lock_mode && !(ep->lock_mode = strdup(cfg->s3.object_lock_mode))) ||
              resolve_endpoint(ep, cfg) != 0;
    if (oom)
        return tm_error_set(err, "out of memory");
    return resolve_credentials(ep, cfg, err);
}
