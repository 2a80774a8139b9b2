/* storage/s3.c - the S3-compatible replica driver (AWS S3, R2, GCS, MinIO).
 *
 * The storage operations (storage.h) on a bucket and key prefix, made of
 * requests that storage/s3_request.c builds, signs (SigV4) and judges.
 *
 * Two ways to run requests share the same state machines:
 *  - synchronously (restore, list, tools, the daemon's start-up checks):
 *    curl_easy_perform on the storage's own easy handle, which keeps its
 *    connection open between requests;
 *  - from the daemon's event loop (put_file once attached to an
 *    http_loop): curl's multi-socket API, never blocking the loop.
 *
 * Uploads (put_file, and the staged writes of write_begin ... commit) are
 * in storage/s3_upload.c; the state both files share is in
 * storage/s3_internal.h. Reads fetch the object in ranges of READ_CHUNK
 * bytes (Range GET), so memory is bounded and a dropped connection costs
 * one range, retried from where it stopped; the ranges after the first
 * are fetched ahead on a thread while the caller reads
 * (storage/s3_read_ahead.c).
 * fetch_files downloads several whole objects at once into local files
 * (restore's prefetch), resuming a dropped transfer with a Range.
 *
 * Retries: per request, up to S3_RETRY_ATTEMPTS with backoff and jitter
 * (RETRY_ATTEMPTS_IN_LOOP in the daemon's uploads, so that a failure is reported
 * within a second or two); there is no shared retry budget to run dry
 * during an outage. The daemon retries a whole object again later, for
 * ever (replicator/uploader.c).
 */
#include "s3_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define READ_CHUNK (4 * 1024 * 1024)
#define LIST_BODY_MAX (16 * 1024 * 1024)

/* ------------------------------------------------------------ reading */

struct s3_reader {
    struct s3_storage *s3;
    char *key;
    uint64_t total;            /* object size */
    uint64_t fetched;          /* bytes fetched so far */
    size_t range;              /* bytes per ranged GET (READ_CHUNK, or less for a capped read) */
    struct buffer chunk;
    size_t chunk_pos;
    struct response resp;
    struct s3_read_ahead *ahead;   /* the next ranges (whole reads of more than one range) */
};

static int fetch_chunk(struct s3_reader *r, struct tm_error *err)
{
    char range[64];
    snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)r->fetched,
             (unsigned long long)(r->fetched + r->range - 1));
    struct request req = {.method = "GET", .key = r->key, .range = range, .body = {.fd = -1}};
    r->chunk.max = r->range;
    r->resp.sink = &r->chunk;
    if (s3_perform(&r->s3->ep, r->s3->easy, &req, &r->resp, err) != 0) {
        if (r->fetched != 0 || r->resp.status != 416)
            return -1;
        /* 416 for the first range: the object exists and is empty (a
         * missing one answers 404). */
        r->total = 0;
        r->chunk.len = 0;
        r->chunk_pos = 0;
        return 0;
    }
    if (r->resp.status == 200)   /* server ignored Range: the whole object */
        r->total = r->chunk.len;
    else if (r->fetched == 0)
        r->total = r->resp.total_size;
    r->fetched += r->chunk.len;
    r->chunk_pos = 0;
    if (r->chunk.len == 0 && r->fetched < r->total)
        return tm_error_set(err, "%s: object '%s' ended early", r->s3->ep.display, r->key);
    return 0;
}

/* After the first range of a whole read: the next ones fetched ahead
 * (s3_read_ahead.c). Without a thread the read goes on one range after
 * the other, as before. */
static void start_reading_ahead(struct s3_reader *r)
{
    struct tm_error ignored;
    if (r->fetched < r->total &&
        s3_read_ahead_start(&r->s3->ep, r->key, r->fetched, r->total, r->range, &r->ahead, &ignored) != 0)
        r->ahead = NULL;
}

/* The next range, from the thread reading ahead. */
static int take_chunk_read_ahead(struct s3_reader *r, struct tm_error *err)
{
    if (s3_read_ahead_take(r->ahead, r->fetched, &r->chunk, err) != 0)
        return -1;
    r->fetched += r->chunk.len;
    r->chunk_pos = 0;
    return 0;
}

/* A read in ranges of `range` bytes; `whole`: of the whole object (the
 * next ranges are fetched ahead), else capped (storage.c). */
static int begin_read(void *self, const char *key, size_t range, int whole, void **handle, struct tm_error *err)
{
    struct s3_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->key = strdup(key))) {
        free(r);
        return tm_error_set(err, "out of memory");
    }
    r->s3 = self;
    r->range = range;
    r->resp.error_body.max = S3_ERROR_BODY_MAX;
    if (fetch_chunk(r, err) != 0) {
        free(r->chunk.data);
        free(r->resp.error_body.data);
        free(r->key);
        free(r);
        return -1;
    }
    if (whole)
        start_reading_ahead(r);
    *handle = r;
    return 0;
}

static int s3_read_begin_ranged(void *self, const char *key, size_t range, void **handle, struct tm_error *err)
{
    return begin_read(self, key, range, 0, handle, err);
}

static int s3_read_begin(void *self, const char *key, void **handle, struct tm_error *err)
{
    return begin_read(self, key, READ_CHUNK, 1, handle, err);
}

static int s3_read(void *handle, void *buf, size_t len, size_t *got, struct tm_error *err)
{
    struct s3_reader *r = handle;
    *got = 0;
    if (r->chunk_pos == r->chunk.len) {
        if (r->fetched >= r->total)
            return 0;
        if ((r->ahead ? take_chunk_read_ahead(r, err) : fetch_chunk(r, err)) != 0)
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
    s3_read_ahead_free(r->ahead);
    free(r->chunk.data);
    free(r->resp.error_body.data);
    free(r->key);
    free(r);
}

/* ------------------------------------------------------------ listing */

/* Adds one ListObjectsV2 page's objects and sub-directories. */
static int parse_list_page(const char *xml, size_t dir_len, struct storage_list *out,
                           struct tm_error *err)
{
    char key[2048], size_text[32];
    for (const char *p = strstr(xml, "<Contents>"); p; p = strstr(p, "<Contents>")) {
        const char *end = strstr(p, "</Contents>");
        if (!end || !s3_xml_text(p, "Key", key, sizeof key) || !s3_xml_text(p, "Size", size_text, sizeof size_text))
            return tm_error_set(err, "malformed listing from the server");
        if (strlen(key) > dir_len && !strchr(key + dir_len, '/') &&
            storage_list_add(out, key + dir_len, strtoull(size_text, NULL, 10), 0) != 0)
            return tm_error_set(err, "out of memory");
        p = end;
    }
    for (const char *p = strstr(xml, "<CommonPrefixes>"); p; p = strstr(p, "<CommonPrefixes>")) {
        const char *end = s3_xml_text(p, "Prefix", key, sizeof key);
        if (!end)
            return tm_error_set(err, "malformed listing from the server");
        size_t len = strlen(key);
        if (len > dir_len + 1 && key[len - 1] == '/') {
            key[len - 1] = '\0';
            if (storage_list_add(out, key + dir_len, 0, 1) != 0)
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
    snprintf(prefix, sizeof prefix, "%s%s%s", s3->ep.prefix, dir, dir[0] ? "/" : "");
    s3_uri_encode(prefix, 0, encoded_prefix, sizeof encoded_prefix);
    struct buffer page = {.max = LIST_BODY_MAX};
    struct response resp = {.sink = &page, .error_body = {.max = S3_ERROR_BODY_MAX}};
    int rc = 0;
    for (;;) {
        s3_uri_encode(token, 0, encoded_token, sizeof encoded_token);
        /* parameters in sorted order: curl signs the query as written */
        snprintf(query, sizeof query, "%s%s%sdelimiter=%%2F&list-type=2&prefix=%s",
                 token[0] ? "continuation-token=" : "", token[0] ? encoded_token : "",
                 token[0] ? "&" : "", encoded_prefix);
        struct request req = {.method = "GET", .query = query, .body = {.fd = -1}};
        if ((rc = s3_perform(&s3->ep, s3->easy, &req, &resp, err)) != 0)
            break;
        if ((rc = parse_list_page(page.data ? page.data : "", strlen(prefix), out, err)) != 0)
            break;
        char truncated[16] = "";
        s3_xml_text(page.data, "IsTruncated", truncated, sizeof truncated);
        if (strcmp(truncated, "true") != 0)
            break;
        if (!s3_xml_text(page.data, "NextContinuationToken", token, sizeof token) || !token[0]) {
            rc = tm_error_set(err, "%s: truncated listing without a continuation token", s3->ep.display);
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
    struct response resp = {.error_body = {.max = S3_ERROR_BODY_MAX}};
    int rc = s3_perform(&s3->ep, s3->easy, &req, &resp, err);
    free(resp.error_body.data);
    return rc;
}

/* DeleteObjects: up to 1000 keys per request. The answer lists the keys
 * that could not be deleted (<Error>), even with status 200. */
#define DELETE_BATCH 1000

static int xml_escape_into(struct buffer *b, const char *text)
{
    for (const char *p = text; *p; p++) {
        const char *piece = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : NULL;
        if (s3_buffer_append(b, piece ? piece : p, piece ? strlen(piece) : 1) != 0)
            return -1;
    }
    return 0;
}

static int delete_batch(struct s3_storage *s3, const char *const *keys, size_t count, struct tm_error *err)
{
    struct buffer body = {.max = count * 1200 + 128};
    int rc = s3_buffer_append(&body, "<Delete><Quiet>true</Quiet>", 27);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char full[2048];
        snprintf(full, sizeof full, "%s%s", s3->ep.prefix, keys[i]);
        rc = s3_buffer_append(&body, "<Object><Key>", 13);
        if (rc == 0)
            rc = xml_escape_into(&body, full);
        if (rc == 0)
            rc = s3_buffer_append(&body, "</Key></Object>", 15);
    }
    if (rc == 0)
        rc = s3_buffer_append(&body, "</Delete>", 9);
    if (rc != 0) {
        free(body.data);
        return tm_error_set(err, "out of memory");
    }
    struct buffer answer = {.max = 4 * 1024 * 1024};
    struct response resp = {.sink = &answer, .error_body = {.max = S3_ERROR_BODY_MAX}};
    struct request req = {.method = "POST", .query = "delete=", .checksum_header = 1,
                          .body = {.mem = body.data, .fd = -1, .len = body.len}};
    rc = s3_perform(&s3->ep, s3->easy, &req, &resp, err);
    if (rc == 0 && answer.data && strstr(answer.data, "<Error>")) {
        char key[1024] = "", code[128] = "";
        const char *error = strstr(answer.data, "<Error>");
        s3_xml_text(error, "Key", key, sizeof key);
        s3_xml_text(error, "Code", code, sizeof code);
        rc = tm_error_set(err, "%s: could not delete '%s': %s", s3->ep.display, key, code);
    }
    free(body.data);
    free(answer.data);
    free(resp.error_body.data);
    return rc;
}

static int s3_remove_many(void *self, const char *const *keys, size_t count, struct tm_error *err)
{
    for (size_t done = 0; done < count; done += DELETE_BATCH)
        if (delete_batch(self, keys + done, count - done < DELETE_BATCH ? count - done : DELETE_BATCH, err) != 0)
            return -1;
    return 0;
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
    f->resp.error_body.max = S3_ERROR_BODY_MAX;
    if (s3_prepare_request(&s3->ep, f->easy, &f->req, &f->resp, err) != 0)
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
    enum outcome outcome = s3_classify(&s3->ep, &f->req, result, &f->resp, err);
    s3_request_release(&f->req);
    if (f->sink.failed)
        return tm_error_set(err, "cannot write the download of '%s': %s", f->key, strerror(errno));
    if (f->resp.status == 416 && f->sink.resumed_from > 0)
        outcome = OUTCOME_OK;   /* the dropped transfer had in fact ended */
    if (outcome == OUTCOME_OK) {
        f->state = FETCH_DONE;
        return 0;
    }
    if (outcome == OUTCOME_FAIL || ++f->attempt >= S3_RETRY_ATTEMPTS)
        return -1;
    f->state = FETCH_WAITING;
    f->not_before_ms = now_ms() + s3_retry_delay_ms(f->attempt);
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
        s3_request_release(&fetches[i].req);
        free(fetches[i].resp.error_body.data);
    }
    free(fetches);
    return rc;
}

/* ------------------------------------------------------------ checks */

static int s3_check(void *self, int patient, struct storage_check *out, struct tm_error *err)
{
    struct s3_storage *s3 = self;
    struct buffer answer = {.max = 64 * 1024};
    struct response resp = {.sink = &answer, .error_body = {.max = S3_ERROR_BODY_MAX}};
    struct request req = {.method = "GET", .query = "versioning=", .body = {.fd = -1}};
    int rc = s3_perform_tries(&s3->ep, s3->easy, &req, &resp, patient ? S3_RETRY_ATTEMPTS : 2, err);
    out->transient = rc == -2;
    if (rc == 0) {
        char status[32] = "";
        s3_xml_text(answer.data, "Status", status, sizeof status);
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
    s3_uploads_cancel(s3);
    if (s3->easy)
        curl_easy_cleanup(s3->easy);
    if (s3->fetch_multi)
        curl_multi_cleanup(s3->fetch_multi);
    s3_endpoint_release(&s3->ep);
    free(s3);
}

static const struct storage_driver s3_driver = {
    .type = "s3",
    .write_begin = s3_write_begin,
    .write = s3_write,
    .write_commit = s3_write_commit,
    .write_abort = s3_write_abort,
    .read_begin = s3_read_begin,
    .read_begin_ranged = s3_read_begin_ranged,
    .read = s3_read,
    .read_end = s3_read_end,
    .list = s3_list,
    .remove = s3_remove,
    .free = s3_free,
    .put_file = s3_put_file,
    .attach = s3_attach,
    .check = s3_check,
    .fetch_files = s3_fetch_files,
    .remove_many = s3_remove_many,
};

int storage_s3_open(const struct config_replica *cfg, struct storage **out, struct tm_error *err)
{
    struct s3_storage *s3 = calloc(1, sizeof *s3);
    if (!s3)
        return tm_error_set(err, "out of memory");
    s3->part_size = cfg->s3.part_size ? cfg->s3.part_size : 8 * 1024 * 1024;
    if (s3_endpoint_init(&s3->ep, cfg, err) != 0) {
        s3_free(s3);
        return -1;
    }
    if (!(s3->easy = curl_easy_init())) {
        s3_free(s3);
        return tm_error_set(err, "cannot initialise libcurl");
    }
    char description[600];
    snprintf(description, sizeof description, "s3://%s/%s", cfg->s3.bucket, cfg->path ? cfg->path : "");
    return storage_new(&s3_driver, s3, description, out, err);
}
