/* storage/s3_upload.c - the S3 driver's uploads (storage/s3.c holds the
 * rest of the driver; storage/s3_internal.h the state they share).
 *
 * Uploads (put_file) send the local file as one PUT when it fits in one
 * part, otherwise as a multipart upload: initiate, PUT each part straight
 * from the file (memory stays at curl's buffers whatever the size),
 * complete; a failed multipart upload is aborted. Starting an upload is
 * not idempotent: when the answer to it is lost (a reset connection, a
 * truncated body) the server may hold an upload the retry does not know,
 * which would keep its parts, unseen, for ever. So after an upload whose
 * start was tried more than once, the uploads in progress for its key are
 * listed (GET ?uploads&prefix=KEY) and every one that is not ours is
 * aborted: one sidecar writes a key, once. One state machine
 * (struct put_op) runs both ways: synchronously on the storage's easy
 * handle, or, once the storage is attached to an http_loop, on the
 * daemon's libev loop through curl's multi-socket API, reporting through
 * the caller's done function. The synchronous writes of the storage
 * interface (write_begin, write, write_commit) stage the object in a
 * temporary file and put it with put_file.
 */
#include "s3_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RETRY_ATTEMPTS_IN_LOOP 3   /* then the uploader reports and backs off */
/* An abort has its own budget: the upload already failed, and an upload
 * left open keeps its parts (and their cost) until a lifecycle rule or
 * someone removes it; a flaky link should not leave one behind. */
#define ABORT_ATTEMPTS S3_RETRY_ATTEMPTS

/* ------------------------------------------------------------ uploads */

/* One upload of a local file, as a state machine shared by the
 * synchronous and the event-loop drivers. */
enum put_step { STEP_SINGLE, STEP_INITIATE, STEP_PART, STEP_COMPLETE, STEP_ABORT, STEP_SWEEP_LIST,
                STEP_SWEEP_ABORT, STEP_DONE };

#define SWEEP_MAX 8                /* other uploads of the key aborted per upload, at most */
#define SWEEP_KEY_BYTES 2048

struct put_op {
    struct s3_storage *s3;
    struct put_op *next;       /* in s3->ops */
    char *key;
    int fd;
    uint64_t size;
    enum put_step step;
    char upload_id[1024];
    char (*etags)[128];
    uint64_t part_size;        /* s3_part_size_for(configured, size) */
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
    int initiate_sends;        /* times the start was sent */
    int swept;
    char orphans[SWEEP_MAX][256];   /* uploads of the key that are not ours (STEP_SWEEP_ABORT) */
    int orphan_count, orphan_next;
    char sweep_query[4096];
};

static int build_complete_xml(struct put_op *op)
{
    struct buffer xml = {.max = (size_t)op->part_count * 200 + 256};
    int rc = s3_buffer_append(&xml, "<CompleteMultipartUpload>", 25);
    for (uint32_t i = 0; rc == 0 && i < op->part_count; i++) {
        char part[200];
        int len = snprintf(part, sizeof part, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                           i + 1, op->etags[i]);
        rc = s3_buffer_append(&xml, part, (size_t)len);
    }
    if (rc == 0)
        rc = s3_buffer_append(&xml, "</CompleteMultipartUpload>", 26);
    free(op->complete_xml);
    op->complete_xml = rc == 0 ? xml.data : NULL;
    if (rc != 0)
        free(xml.data);
    return rc;
}

/* Fills op->req for the current step. */
/* One part of a multipart upload: its byte range of the file. */
static void part_request(struct put_op *op, const char *encoded_id)
{
    uint64_t offset = (uint64_t)(op->part - 1) * op->part_size;
    uint64_t len = op->size - offset < op->part_size ? op->size - offset : op->part_size;
    snprintf(op->query, sizeof op->query, "partNumber=%u&uploadId=%s", op->part, encoded_id);
    op->req.method = "PUT";
    op->req.query = op->query;
    op->req.body = (struct body){.fd = op->fd, .offset = offset, .len = len};
}

/* The listing of multipart uploads left under this key (the sweep). */
static void sweep_list_request(struct put_op *op)
{
    char full[SWEEP_KEY_BYTES], encoded[3 * SWEEP_KEY_BYTES];
    snprintf(full, sizeof full, "%s%s", op->s3->ep.prefix, op->key);
    s3_uri_encode(full, 0, encoded, sizeof encoded);
    /* parameters in sorted order: curl signs the query as written */
    snprintf(op->sweep_query, sizeof op->sweep_query, "prefix=%s&uploads=", encoded);
    op->req.key = NULL;   /* the bucket */
    op->req.method = "GET";
    op->req.query = op->sweep_query;
    op->resp.sink = &op->answer;
}

static int step_request(struct put_op *op)
{
    char encoded_id[1200];
    s3_uri_encode(op->upload_id, 0, encoded_id, sizeof encoded_id);
    op->req = (struct request){.key = op->key, .body = {.fd = -1}};
    op->resp.sink = NULL;
    switch (op->step) {
    case STEP_SINGLE:
        op->req.method = "PUT";
        op->req.lock_headers = 1;
        op->req.body = (struct body){.fd = op->fd, .offset = 0, .len = op->size};
        break;
    case STEP_INITIATE:
        op->initiate_sends++;
        op->req.method = "POST";
        op->req.query = "uploads=";
        op->req.lock_headers = 1;
        op->resp.sink = &op->answer;
        break;
    case STEP_PART:
        part_request(op, encoded_id);
        break;
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
    case STEP_SWEEP_LIST:
        sweep_list_request(op);
        break;
    case STEP_SWEEP_ABORT:
        s3_uri_encode(op->orphans[op->orphan_next], 0, encoded_id, sizeof encoded_id);
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

/* After an abort request (the upload already failed, op->err says why):
 * retried on transient errors; an upload the server no longer knows is
 * gone, which is what the abort wanted; one that stays open is named in
 * the error, so that the log says which upload to remove. */
static enum step_result abort_finished(struct put_op *op, enum outcome outcome, const struct tm_error *abort_err)
{
    if (outcome == OUTCOME_RETRY && ++op->attempt < ABORT_ATTEMPTS)
        return STEP_RETRY;
    if (outcome != OUTCOME_OK && op->resp.status != 404) {
        struct tm_error first = op->err;
        tm_error_set(&op->err, "%s; its multipart upload %s stays open (abort failed: %s)", first.msg,
                     op->upload_id, abort_err->msg);
        op->err.code = first.code;
    }
    op->step = STEP_DONE;
    return STEP_FINISHED;
}

/* Where the machine goes when it would finish: to the sweep, once, when
 * the server may hold an upload of ours we do not know (see the top): the
 * start was sent more than once, or sent and no upload id came back;
 * else done. */
static enum step_result sweep_or_finish(struct put_op *op, enum step_result next)
{
    int doubtful = op->initiate_sends > 1 || (op->initiate_sends == 1 && !op->upload_id[0]);
    if (next != STEP_FINISHED || !doubtful || op->swept)
        return next;
    op->swept = 1;
    op->step = STEP_SWEEP_LIST;
    op->attempt = 0;
    return STEP_NEXT;
}

/* The uploads in progress for our key that are not ours, from a
 * ListMultipartUploads answer. */
static void collect_orphans(struct put_op *op)
{
    char full[SWEEP_KEY_BYTES];
    snprintf(full, sizeof full, "%s%s", op->s3->ep.prefix, op->key);
    op->orphan_count = 0;
    const char *p = op->answer.data ? strstr(op->answer.data, "<Upload>") : NULL;
    for (; p && op->orphan_count < SWEEP_MAX; p = strstr(p + 1, "<Upload>")) {
        char key[SWEEP_KEY_BYTES], upload_id[sizeof op->orphans[0]];
        const char *end = strstr(p, "</Upload>");
        if (!end || !s3_xml_text(p, "Key", key, sizeof key) || !s3_xml_text(p, "UploadId", upload_id, sizeof upload_id))
            break;
        if (strcmp(key, full) == 0 && strcmp(upload_id, op->upload_id) != 0)
            snprintf(op->orphans[op->orphan_count++], sizeof op->orphans[0], "%s", upload_id);
    }
}

/* After a sweep request: retried on transient errors like an abort; the
 * sweep never changes the upload's own outcome (best effort: what stays
 * is what a lifecycle rule removes, docs/s3.md). */
static enum step_result sweep_finished(struct put_op *op, enum outcome outcome)
{
    if (outcome == OUTCOME_RETRY && ++op->attempt < ABORT_ATTEMPTS)
        return STEP_RETRY;
    op->attempt = 0;
    if (op->step == STEP_SWEEP_LIST) {
        if (outcome == OUTCOME_OK)
            collect_orphans(op);
        op->orphan_next = 0;
    } else {
        op->orphan_next++;
    }
    if (op->orphan_next < op->orphan_count) {
        op->step = STEP_SWEEP_ABORT;
        return STEP_NEXT;
    }
    op->step = STEP_DONE;
    return STEP_FINISHED;
}

/* Moves the machine on after a request ended. */
static enum step_result step_finished(struct put_op *op, CURLcode result)
{
    struct tm_error err;
    enum outcome outcome = s3_classify(&op->s3->ep, &op->req, result, &op->resp, &err);
    if (op->step == STEP_COMPLETE && outcome == OUTCOME_OK && op->answer.data &&
        strstr(op->answer.data, "<Error>")) {   /* S3 reports some failures inside a 200 */
        char code[128] = "";
        s3_xml_text(op->answer.data, "Code", code, sizeof code);
        tm_error_set(&err, "%s: completing the upload of '%s' failed: %s", op->s3->ep.display, op->key, code);
        outcome = strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ? OUTCOME_RETRY : OUTCOME_FAIL;
    }
    if (op->step == STEP_ABORT)
        return sweep_or_finish(op, abort_finished(op, outcome, &err));
    if (op->step == STEP_SWEEP_LIST || op->step == STEP_SWEEP_ABORT)
        return sweep_finished(op, outcome);
    if (outcome == OUTCOME_RETRY && ++op->attempt < op->max_attempts)
        return STEP_RETRY;
    if (outcome != OUTCOME_OK) {
        op->failed = 1;
        op->err = err;
        op->step = op->upload_id[0] ? STEP_ABORT : STEP_DONE;
        op->attempt = 0;
        return op->step == STEP_DONE ? sweep_or_finish(op, STEP_FINISHED) : STEP_NEXT;
    }
    op->attempt = 0;
    switch (op->step) {
    case STEP_SINGLE:
        op->step = STEP_DONE;
        return STEP_FINISHED;
    case STEP_COMPLETE:
        op->step = STEP_DONE;
        return sweep_or_finish(op, STEP_FINISHED);
    case STEP_INITIATE:
        if (!s3_xml_text(op->answer.data, "UploadId", op->upload_id, sizeof op->upload_id) || !op->upload_id[0]) {
            op->failed = 1;
            tm_error_set(&op->err, "%s: no UploadId in the answer to starting a multipart upload", op->s3->ep.display);
            op->step = STEP_DONE;
            return sweep_or_finish(op, STEP_FINISHED);
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
    op->part_size = s3_part_size_for(s3->part_size, op->size);   /* the size is known: under 10,000 parts */
    op->part_count = (uint32_t)((op->size + op->part_size - 1) / op->part_size);
    op->step = op->part_count > 1 ? STEP_INITIATE : STEP_SINGLE;
    op->key = strdup(key);
    op->etags = op->part_count > 1 ? calloc(op->part_count, sizeof *op->etags) : NULL;
    op->answer.max = 1024 * 1024;
    op->resp.error_body.max = S3_ERROR_BODY_MAX;
    op->max_attempts = s3->hl ? RETRY_ATTEMPTS_IN_LOOP : S3_RETRY_ATTEMPTS;
    if (!op->key || (op->part_count > 1 && !op->etags)) {
        op_free(op);
        return tm_error_set(err, "out of memory");
    }
    *out = op;
    return 0;
}

uint64_t s3_part_size_for(uint64_t configured, uint64_t size)
{
    const uint64_t mib = 1024 * 1024;
    if (configured == 0 || (size + configured - 1) / configured <= S3_MAX_PARTS)
        return configured;
    uint64_t least = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;   /* bytes per part at most S3_MAX_PARTS parts */
    return (least + mib - 1) / mib * mib;
}

/* Synchronous driver: the whole machine in this call. */
static int run_op_sync(struct put_op *op, struct tm_error *err)
{
    while (op->step != STEP_DONE) {
        if (step_request(op) != 0 || s3_prepare_request(&op->s3->ep, op->s3->easy, &op->req, &op->resp, &op->err) != 0) {
            s3_request_release(&op->req);
            *err = op->err;
            return -1;
        }
        CURLcode result = curl_easy_perform(op->s3->easy);
        enum step_result next = step_finished(op, result);
        s3_request_release(&op->req);
        if (next == STEP_RETRY) {
            unsigned delay = s3_retry_delay_ms(op->attempt);
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
    s3_request_release(&op->req);
    if (next == STEP_FINISHED)
        return op_finish(op);
    if (next == STEP_RETRY) {
        ev_timer_set(&op->retry_timer, (double)s3_retry_delay_ms(op->attempt) / 1000.0, 0.);
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
    if (step_request(op) != 0 || s3_prepare_request(&op->s3->ep, op->easy, &op->req, &op->resp, &op->err) != 0 ||
        http_loop_start(op->s3->hl, op->easy, on_op_transfer_done, op, &op->err) != 0) {
        s3_request_release(&op->req);
        op->failed = 1;
        op->step = STEP_DONE;
        /* reported from the loop, never from inside put_file's caller */
        ev_set_cb(&op->retry_timer, on_op_failed_start);
        ev_timer_set(&op->retry_timer, 0., 0.);
        ev_timer_start(http_loop_ev(op->s3->hl), &op->retry_timer);
    }
}

int s3_put_file(void *self, const char *key, const char *path, storage_done_fn done,
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

int s3_write_begin(void *self, const char *key, void **handle, struct tm_error *err)
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

int s3_write(void *handle, const void *data, size_t len, struct tm_error *err)
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

void s3_write_abort(void *handle)
{
    struct s3_writer *w = handle;
    close(w->fd);
    unlink(w->path);
    free(w->key);
    free(w);
}

int s3_write_commit(void *handle, struct tm_error *err)
{
    struct s3_writer *w = handle;
    struct http_loop *attached = w->s3->hl;
    w->s3->hl = NULL;   /* this call is synchronous */
    int rc = s3_put_file(w->s3, w->key, w->path, NULL, NULL, err);
    w->s3->hl = attached;
    s3_write_abort(w);
    return rc;
}


void s3_uploads_cancel(struct s3_storage *s3)
{
    while (s3->ops) {
        struct put_op *op = s3->ops;
        s3->ops = op->next;
        ev_timer_stop(http_loop_ev(s3->hl), &op->retry_timer);
        http_loop_cancel(s3->hl, op->easy);
        op_free(op);
    }
}
