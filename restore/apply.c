/* apply.c - the objects of a restore applied to the temporary file (see
 * apply.h).
 *
 * THE JOBS. Before anything is read, the plan becomes a list of jobs in
 * the order they are applied: the snapshot, then wherever a delta starts
 * at the next index and holds nothing after the target the largest such
 * delta, else the next segment; the list ends at the first segment whose
 * first commit is after the target (a STOP job), at a missing segment (a
 * MISSING job, an error when reached) or at the last segment. A segment
 * can also end the restore from inside (a transaction after the target):
 * nothing after it is applied.
 *
 * THE PIPELINE (a local replica). Worker threads (pipeline.h: at most
 * min(4, cores), each job started only within a few of the one being
 * applied) read the jobs' objects: fetch, authenticate, decrypt,
 * decompress, check the payload hash, parse. What the parsers hand their
 * visitor (the header, each transaction's header, each page) is recorded
 * as events; this thread, the only writer, replays them in job order into
 * the very callbacks an inline read calls: the header checked against the
 * name and the chain, the transactions counted up to the target, the pages
 * written. So every check runs in the same order as in a one-thread
 * restore, and the first failure, in that order, is the one reported: a
 * callback's at its event, else the reader's after the job's last event
 * (the reader's outcome, header and hash travel with the job). Memory is
 * bounded by the pipeline's blocks (8 MiB) and the page writer (16 MiB),
 * whatever the database's size: an object is streamed through, never held.
 *
 * Any failure stops the pipeline (pipeline_stop: the workers' next event
 * fails, they are joined) before this function returns; restore.c then
 * removes the temporary directory, so nothing reaches the output. When the
 * snapshot fails for a reason of its own, the pipeline is stopped, the file
 * emptied and the jobs planned again from the next older snapshot.
 *
 * INLINE (a network replica, whose driver runs one request at a time): the
 * same jobs, read on this thread with the callbacks as the visitor; the
 * next segments are downloaded in parallel into local files first
 * (storage_fetch_files, PREFETCH_WINDOW at a time) and read from there. */
#include "apply.h"

#include "page_writer.h"
#include "pipeline.h"

#include "../common/archive.h"
#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/lease.h"
#include "../common/log.h"
#include "../common/object.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PREFETCH_WINDOW 32

enum job_kind { JOB_SNAPSHOT, JOB_DELTA, JOB_SEGMENT, JOB_STOP, JOB_MISSING };

/* One object to apply, or where the list ends. */
struct restore_job {
    enum job_kind kind;
    const struct catalog_snapshot *snap;
    const struct catalog_delta *delta;
    const struct catalog_segment *seg;     /* SEGMENT; STOP: the first after the target; MISSING: the next present */
    size_t position;                       /* SEGMENT: in gen->segments */
    uint64_t expected;                     /* MISSING: the index missing */
};

/* What reading a job's object found: written by the worker that read it,
 * read by the writer once the pipeline has reported the job's end. Kept
 * for the jobs in flight only (OUTCOMES, a ring indexed by job number):
 * job j + OUTCOMES starts only once the writer is past job j + 1
 * (pipeline.h: PIPELINE_LOOKAHEAD), so no outcome is overwritten before
 * the writer has read it, and memory does not grow with the segments. */
struct job_outcome {
    int rc;
    struct tm_error err;
    union {
        struct snapshot_header snap;
        struct segment_header seg;
        struct delta_header delta;
    } h;
    uint8_t hash[OBJECT_HASH_BYTES];       /* SEGMENT: its payload hash */
};

#define OUTCOMES (2 * PIPELINE_LOOKAHEAD)

struct job_list {
    struct restore_job *jobs;
    size_t count, cap;
    const struct catalog_generation *gen;
    struct job_outcome outcomes[OUTCOMES];
};

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------ the callbacks (writer) */

/* 1 when objects are read inline, on this thread: a network replica,
 * whose driver runs one request at a time (its segments are prefetched
 * into local files); else on a pipeline of workers. */
static int reads_inline(const struct restore_state *rs)
{
    return rs->local != NULL;
}

/* Timed here only when read inline (the reader's work and the writes
 * interleave); replay_job times a pipelined job's writes as a whole: a
 * clock read per page was a tenth of this thread's CPU. */
static int write_page(struct restore_state *rs, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    if (!rs->pages && page_writer_open(rs->fd, rs->page_size, PAGE_WRITER_BYTES, &rs->pages, err) != 0)
        return -1;
    if (!reads_inline(rs))
        return page_writer_put(rs->pages, page_number, page, err);
    int64_t start = monotonic_ns();
    int rc = page_writer_put(rs->pages, page_number, page, err);
    rs->write_ns += monotonic_ns() - start;
    return rc;
}

/* What every callback gets: the restore, the job, the options. */
struct job_apply {
    struct restore_state *rs;
    const struct restore_job *job;
    const struct restore_options *opts;
};

static int snapshot_check_header(void *ctx, const struct snapshot_header *h, struct tm_error *err)
{
    struct job_apply *apply = ctx;
    const struct catalog_snapshot *snap = apply->job->snap;
    if (strcmp(h->generation, apply->rs->generation) != 0 || h->index != snap->index || h->time_ms != snap->time_ms)
        return tm_error_setc(err, TM_ERR_CORRUPT, "snapshot '%s': its header does not match its name (generation, "
                             "index or time)", snap->key);
    apply->rs->page_size = h->page_size;
    return 0;
}

static int any_write_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    return write_page(((struct job_apply *)ctx)->rs, page_number, page, err);
}

static int segment_check_header(void *ctx, const struct segment_header *h, struct tm_error *err)
{
    struct job_apply *apply = ctx;
    struct restore_state *rs = apply->rs;
    const struct catalog_segment *seg = apply->job->seg;
    const char *key = seg->key;
    if (strcmp(h->generation, rs->generation) != 0 || h->index != seg->index)
        return tm_error_setc(err, TM_ERR_CORRUPT, "segment '%s': its header does not match its name (generation "
                             "or index)", key);
    if (h->first_time_ms != seg->first_ms || h->last_time_ms != seg->last_ms)
        return tm_error_setc(err, TM_ERR_CORRUPT, "segment '%s': its header does not match its name (commit "
                             "times)", key);
    if (h->page_size != rs->page_size)
        return tm_error_setc(err, TM_ERR_CORRUPT, "segment '%s': page size %u differs from the snapshot's %u", key,
                             h->page_size, rs->page_size);
    if (memcmp(h->prev_hash, rs->chain, OBJECT_HASH_BYTES) != 0)
        return tm_error_setc(err, TM_ERR_CORRUPT, "segment '%s': it does not follow the previous segment (chain "
                             "hash mismatch)", key);
    return 0;
}

static int segment_begin_txn(void *ctx, const struct txn_header *txn, struct tm_error *err)
{
    (void)err;
    struct job_apply *apply = ctx;
    struct restore_state *rs = apply->rs;
    if (apply->opts->has_target && txn->time_ms > apply->opts->target_ms && !rs->stopped) {
        rs->stopped = 1;
        rs->next_ms = txn->time_ms;
    }
    if (!rs->stopped) {
        rs->db_size = txn->db_size;
        rs->last_commit_ms = txn->time_ms;
        rs->transactions_applied++;
    }
    return 0;
}

static int segment_write_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    struct restore_state *rs = ((struct job_apply *)ctx)->rs;
    return rs->stopped ? 0 : write_page(rs, page_number, page, err);
}

static int delta_check_header(void *ctx, const struct delta_header *h, struct tm_error *err)
{
    struct job_apply *apply = ctx;
    struct restore_state *rs = apply->rs;
    const struct catalog_delta *delta = apply->job->delta;
    if (strcmp(h->generation, rs->generation) != 0 || h->first_index != delta->first_index ||
        h->end_index != delta->end_index || h->first_time_ms != delta->first_ms ||
        h->last_time_ms != delta->last_ms)
        return tm_error_setc(err, TM_ERR_CORRUPT, "delta '%s': its header does not match its name (generation, "
                             "indexes or times)", delta->key);
    if (h->page_size != rs->page_size)
        return tm_error_setc(err, TM_ERR_CORRUPT, "delta '%s': page size %u differs from the snapshot's %u",
                             delta->key, h->page_size, rs->page_size);
    if (memcmp(h->chain_in, rs->chain, OBJECT_HASH_BYTES) != 0)
        return tm_error_setc(err, TM_ERR_CORRUPT, "delta '%s': it does not follow the previous object (chain hash "
                             "mismatch)", delta->key);
    return 0;
}

/* The stored size of a job's object (its name's); 0 for STOP and MISSING. */
static uint64_t job_bytes(const struct restore_job *job)
{
    switch (job->kind) {
    case JOB_SNAPSHOT: return job->snap->size;
    case JOB_DELTA: return job->delta->size;
    case JOB_SEGMENT: return job->seg->size;
    default: return 0;
    }
}

/* After an object was read whole and every check passed: what it adds. */
static void job_applied(struct restore_state *rs, const struct restore_job *job, const struct job_outcome *out)
{
    rs->read_bytes += job_bytes(job);
    if (job->kind == JOB_SNAPSHOT) {
        rs->db_size = out->h.snap.page_count;
        memcpy(rs->chain, out->h.snap.chain_hash, sizeof rs->chain);
        rs->snapshot_ms = out->h.snap.time_ms;
        rs->last_verified_ms = out->h.snap.time_ms;
    } else if (job->kind == JOB_SEGMENT) {
        memcpy(rs->chain, out->hash, sizeof rs->chain);
        rs->segments_read++;
        if (!rs->stopped)
            rs->last_verified_ms = out->h.seg.last_time_ms;
    } else if (job->kind == JOB_DELTA) {
        memcpy(rs->chain, out->h.delta.chain_out, sizeof rs->chain);
        rs->db_size = out->h.delta.db_size;
        rs->last_commit_ms = out->h.delta.last_time_ms;
        rs->last_verified_ms = out->h.delta.last_time_ms;
        rs->transactions_applied += out->h.delta.txn_count;
        rs->deltas_read++;
    }
}

/* ------------------------------------------------------------- the plan */

/* The largest delta that starts at segment `index` and holds nothing
 * after the target, or NULL. */
static const struct catalog_delta *usable_delta(const struct catalog_generation *gen, uint64_t index,
                                                const struct restore_options *opts)
{
    const struct catalog_delta *best = NULL;
    for (size_t i = 0; i < gen->delta_count && !opts->no_deltas; i++) {
        const struct catalog_delta *delta = &gen->deltas[i];
        if (delta->first_index != index || (opts->has_target && delta->last_ms > opts->target_ms))
            continue;
        if (!best || delta->end_index > best->end_index)
            best = delta;
    }
    return best;
}

static struct restore_job *add_job(struct job_list *list, enum job_kind kind, struct tm_error *err)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        struct restore_job *jobs = realloc(list->jobs, cap * sizeof *jobs);
        if (!jobs) {
            tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
            return NULL;
        }
        list->jobs = jobs;
        list->cap = cap;
    }
    struct restore_job *job = &list->jobs[list->count++];
    memset(job, 0, sizeof *job);
    job->kind = kind;
    return job;
}

/* The jobs from snapshot snap of gen to the target (see the top). */
static int plan_jobs(const struct catalog_generation *gen, const struct catalog_snapshot *snap,
                     const struct restore_options *opts, struct job_list *list, struct tm_error *err)
{
    *list = (struct job_list){.gen = gen};
    struct restore_job *job = add_job(list, JOB_SNAPSHOT, err);
    if (!job)
        return -1;
    job->snap = snap;
    uint64_t expected = snap->index;
    for (size_t i = 0; i < gen->segment_count; i++) {
        const struct catalog_delta *delta;
        while ((delta = usable_delta(gen, expected, opts)) != NULL) {
            if (!(job = add_job(list, JOB_DELTA, err)))
                return -1;
            job->delta = delta;
            expected = delta->end_index;
        }
        const struct catalog_segment *seg = &gen->segments[i];
        if (seg->index < expected)
            continue;
        int stop = opts->has_target && seg->first_ms > opts->target_ms;
        if (!(job = add_job(list, stop ? JOB_STOP : seg->index != expected ? JOB_MISSING : JOB_SEGMENT, err)))
            return -1;
        job->seg = seg;
        job->position = i;
        job->expected = expected;
        if (job->kind != JOB_SEGMENT)
            break;
        expected++;
    }
    return 0;
}

int restore_apply_replay(const struct catalog_generation *gen, const struct catalog_snapshot *snap,
                         const struct restore_options *opts, struct restore_replay *out, struct tm_error *err)
{
    struct job_list list;
    *out = (struct restore_replay){0};
    int rc = plan_jobs(gen, snap, opts, &list, err);
    for (size_t i = 0; rc == 0 && i < list.count; i++) {
        const struct restore_job *job = &list.jobs[i];
        if (job->kind == JOB_DELTA || job->kind == JOB_SEGMENT) {
            out->objects++;
            out->bytes += job_bytes(job);
        }
        out->gap |= job->kind == JOB_MISSING;
    }
    free(list.jobs);
    return rc;
}

/* ------------------------------------------- reading a job (any thread) */

/* The visitor callbacks a job's object is read with: the writer's own
 * (inline) or the recorders of a worker (pipelined). */
struct job_visitor {
    int (*snapshot_header)(void *ctx, const struct snapshot_header *h, struct tm_error *err);
    int (*segment_header)(void *ctx, const struct segment_header *h, struct tm_error *err);
    int (*delta_header)(void *ctx, const struct delta_header *h, struct tm_error *err);
    int (*txn)(void *ctx, const struct txn_header *txn, struct tm_error *err);
    archive_page_fn page;
    void *ctx;
};

/* Reads job's object from st (`name`: its key, or a local copy of it)
 * through v; fills *out (rc, err, header, hash). */
static int read_job(struct storage *st, const char *name, const struct crypto_keyring *key,
                    const struct restore_job *job, struct job_outcome *out, const struct job_visitor *v)
{
    if (job->kind == JOB_SNAPSHOT) {
        struct snapshot_visitor visitor = {v->snapshot_header, v->page, v->ctx};
        out->rc = snapshot_read_as(st, name, job->snap->key, key, &visitor, &out->h.snap, &out->err);
    } else if (job->kind == JOB_SEGMENT) {
        struct segment_visitor visitor = {v->segment_header, v->txn, v->page, v->ctx};
        out->rc = segment_read_as(st, name, job->seg->key, key, &visitor, &out->h.seg, out->hash, &out->err);
    } else if (job->kind == JOB_DELTA) {
        struct delta_visitor visitor = {v->delta_header, v->page, v->ctx};
        out->rc = delta_read(st, name, key, &visitor, &out->h.delta, &out->err);
    }
    return out->rc;
}

/* The key of job's object, or NULL (STOP, MISSING). */
static const char *job_key(const struct restore_job *job)
{
    return job->kind == JOB_SNAPSHOT ? job->snap->key : job->kind == JOB_SEGMENT ? job->seg->key
           : job->kind == JOB_DELTA ? job->delta->key : NULL;
}

/* --------------------------------------------- the workers (pipelined) */

enum { EV_HEADER = 1, EV_TXN, EV_PAGE };

struct recorder {
    struct pipeline_job *out;
    uint32_t page_size;
};

/* A failed pipeline_emit (rc -1 or -2) as the reader's error. */
static int record_failed(int rc, struct tm_error *err)
{
    if (rc == -2)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory (the restore's pipeline)");
    return tm_error_set(err, "the restore stopped");
}

static int record_snapshot_header(void *ctx, const struct snapshot_header *h, struct tm_error *err)
{
    struct recorder *rec = ctx;
    rec->page_size = h->page_size;
    int rc = pipeline_emit(rec->out, EV_HEADER, h, sizeof *h, NULL, 0);
    return rc == 0 ? 0 : record_failed(rc, err);
}

static int record_segment_header(void *ctx, const struct segment_header *h, struct tm_error *err)
{
    struct recorder *rec = ctx;
    rec->page_size = h->page_size;
    int rc = pipeline_emit(rec->out, EV_HEADER, h, sizeof *h, NULL, 0);
    return rc == 0 ? 0 : record_failed(rc, err);
}

static int record_delta_header(void *ctx, const struct delta_header *h, struct tm_error *err)
{
    struct recorder *rec = ctx;
    rec->page_size = h->page_size;
    int rc = pipeline_emit(rec->out, EV_HEADER, h, sizeof *h, NULL, 0);
    return rc == 0 ? 0 : record_failed(rc, err);
}

static int record_txn(void *ctx, const struct txn_header *txn, struct tm_error *err)
{
    struct recorder *rec = ctx;
    int rc = pipeline_emit(rec->out, EV_TXN, txn, sizeof *txn, NULL, 0);
    return rc == 0 ? 0 : record_failed(rc, err);
}

static int record_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    struct recorder *rec = ctx;
    int rc = pipeline_emit(rec->out, EV_PAGE, &page_number, sizeof page_number, page, rec->page_size);
    return rc == 0 ? 0 : record_failed(rc, err);
}

struct worker_ctx {
    struct job_list *list;
    struct storage *st;
    const struct crypto_keyring *key;
};

static int run_job(void *ctx, size_t index, struct pipeline_job *events)
{
    struct worker_ctx *w = ctx;
    const struct restore_job *job = &w->list->jobs[index];
    struct recorder rec = {.out = events};
    struct job_visitor v = {record_snapshot_header, record_segment_header, record_delta_header, record_txn,
                            record_page, &rec};
    const char *name = job_key(job);
    return name ? read_job(w->st, name, w->key, job, &w->list->outcomes[index % OUTCOMES], &v) : 0;
}

/* ----------------------------------------------- the writer (this thread) */

/* Replays job `index`'s events into the callbacks; then the reader's
 * outcome. -1 with err set at the first failure. The time not spent
 * waiting for the workers is the writing's (rs->write_ns). */
static int replay_job(struct pipeline *p, size_t index, const struct restore_job *job, const struct job_outcome *out,
                      struct job_apply *apply, struct tm_error *err)
{
    struct restore_state *rs = apply->rs;
    uint8_t type;
    const uint8_t *data;
    size_t len;
    int rc = 0;
    int64_t start = monotonic_ns();
    uint64_t waited_before = pipeline_consumer_wait_ns(p);
    while (rc == 0 && pipeline_next(p, index, &type, &data, &len) == 1) {
        if (type == EV_PAGE) {
            uint32_t page_number;
            memcpy(&page_number, data, sizeof page_number);
            rc = (job->kind == JOB_SEGMENT ? segment_write_page : any_write_page)(apply, page_number, data + 4, err);
        } else if (type == EV_TXN) {
            struct txn_header txn;
            memcpy(&txn, data, sizeof txn);
            rc = segment_begin_txn(apply, &txn, err);
        } else if (job->kind == JOB_SNAPSHOT) {
            struct snapshot_header h;
            memcpy(&h, data, sizeof h);
            rc = snapshot_check_header(apply, &h, err);
        } else if (job->kind == JOB_SEGMENT) {
            struct segment_header h;
            memcpy(&h, data, sizeof h);
            rc = segment_check_header(apply, &h, err);
        } else {
            struct delta_header h;
            memcpy(&h, data, sizeof h);
            rc = delta_check_header(apply, &h, err);
        }
    }
    int64_t waited = (int64_t)(pipeline_consumer_wait_ns(p) - waited_before);
    rs->wait_ns += waited;
    rs->write_ns += monotonic_ns() - start - waited;
    if (rc != 0)
        return -1;
    if (out->rc != 0) {   /* the job has ended: the worker's outcome is visible */
        *err = out->err;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------ inline (network replica) */

/* Any error aborts the whole restore, so a transaction whose pages are
 * only partly written is never kept. */
static void prefetch_name(size_t position, char *out, size_t len)
{
    snprintf(out, len, "segment-%zu", position);
}

void restore_apply_drop_prefetch(struct restore_state *rs)
{
    for (size_t i = rs->window_start; i < rs->window_end; i++) {
        char name[64], path[PATH_MAX + 64];
        prefetch_name(i, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", rs->prefetch_dir, name);
        unlink(path);
    }
    rs->window_start = rs->window_end = 0;
}

/* Downloads the segments from position `first` that the restore will
 * read next (contiguous indexes starting at `expected`, not after the
 * target), up to PREFETCH_WINDOW of them. */
static int prefetch_window(struct restore_state *rs, const struct catalog_generation *gen, size_t first,
                           uint64_t expected, const struct restore_options *opts, struct tm_error *err)
{
    restore_apply_drop_prefetch(rs);
    const char *keys[PREFETCH_WINDOW];
    int fds[PREFETCH_WINDOW];
    size_t count = 0;
    int rc = 0;
    for (size_t i = first; i < gen->segment_count && count < PREFETCH_WINDOW; i++, expected++) {
        const struct catalog_segment *seg = &gen->segments[i];
        if (seg->index != expected || (opts->has_target && seg->first_ms > opts->target_ms) ||
            (count > 0 && usable_delta(gen, expected, opts)))
            break;
        char name[64], path[PATH_MAX + 64];
        prefetch_name(i, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", rs->prefetch_dir, name);
        if ((fds[count] = fsutil_create_exclusive(path, err)) < 0) {
            rc = -1;
            break;
        }
        keys[count++] = seg->key;
    }
    rs->window_start = first;
    rs->window_end = first + count;
    if (rc == 0 && count > 0)
        rc = storage_fetch_files(rs->st, keys, fds, count, err);
    for (size_t i = 0; i < count; i++)
        close(fds[i]);
    return rc;
}

/* Where segment number `position` of the generation is read from. */
static int segment_source(struct restore_state *rs, const struct catalog_generation *gen,
                          size_t position, uint64_t expected, const struct restore_options *opts,
                          struct storage **st, char *key, size_t key_len, struct tm_error *err)
{
    const struct catalog_segment *seg = &gen->segments[position];
    if (!rs->local) {
        *st = rs->st;
        snprintf(key, key_len, "%s", seg->key);
        return 0;
    }
    if ((position < rs->window_start || position >= rs->window_end) &&
        prefetch_window(rs, gen, position, expected, opts, err) != 0)
        return -1;
    *st = rs->local;
    prefetch_name(position, key, key_len);
    return 0;
}

/* Reads job's object on this thread with the callbacks as its visitor. */
static int inline_job(struct restore_state *rs, const struct job_list *list, const struct restore_job *job,
                      struct job_outcome *out, struct job_apply *apply, const struct restore_options *opts,
                      struct tm_error *err)
{
    struct job_visitor v = {snapshot_check_header, segment_check_header, delta_check_header, segment_begin_txn,
                            job->kind == JOB_SEGMENT ? segment_write_page : any_write_page, apply};
    if (job->kind != JOB_SEGMENT) {
        if (read_job(rs->st, job_key(job), rs->key, job, out, &v) == 0)
            return 0;
        *err = out->err;
        return -1;
    }
    struct storage *source = NULL;
    char name[ARCHIVE_NAME_MAX];
    int rc = segment_source(rs, list->gen, job->position, job->expected, opts, &source, name, sizeof name, err);
    if (rc == 0 && read_job(source, name, rs->key, job, out, &v) != 0) {
        *err = out->err;
        rc = -1;
    }
    if (rc != 0 && source != rs->st)   /* prefetching it, or reading its local copy (named "segment-N") */
        tm_error_prefix(err, "segment '%s': ", job->seg->key);
    return rc;
}

/* ----------------------------------------------------------- applying */

#define HINT_LAST_POINT "the last consistent point reachable is %s: restore with --timestamp %s, or from another replica"

/* Applies job `index` of list (from the pipeline p, or inline when p is
 * NULL). STOP ends the restore at the target; MISSING fails. -1 with err
 * set, with the hint of the last consistent point for what follows the
 * snapshot. */
static int apply_job(struct restore_state *rs, struct pipeline *p, struct job_list *list, size_t index,
                     const struct restore_options *opts, struct tm_error *err)
{
    const struct restore_job *job = &list->jobs[index];
    struct job_outcome *out = &list->outcomes[index % OUTCOMES];
    char last[40];
    clock_format_ms(rs->last_verified_ms, last, sizeof last);
    if (job->kind == JOB_STOP) {
        rs->stopped = 1;   /* the target falls between two segments */
        rs->next_ms = job->seg->first_ms;
        return 0;
    }
    if (job->kind == JOB_MISSING) {
        tm_error_setc(err, TM_ERR_NOT_FOUND, "segment %016" PRIx64 " of generation %s is missing from the replica "
                      "(the next one present is '%s')", job->expected, list->gen->id, job->seg->key);
        return tm_error_hint(err, HINT_LAST_POINT, last, last);
    }
    struct job_apply apply = {rs, job, opts};
    if ((p ? replay_job(p, index, job, out, &apply, err)
           : inline_job(rs, list, job, out, &apply, opts, err)) != 0) {
        if (job->kind == JOB_DELTA)
            return tm_error_hint(err, HINT_LAST_POINT " (or with --no-deltas)", last, last);
        if (job->kind == JOB_SEGMENT)
            return tm_error_hint(err, HINT_LAST_POINT, last, last);
        return -1;   /* the snapshot: the reader and snapshot_check_header name it */
    }
    job_applied(rs, job, out);
    return 0;
}

/* Moves our lease (and the generation checked against) to generation `id`. */
static void switch_generation(struct restore_state *rs, const struct restore_options *opts, const char *id)
{
    if (strcmp(rs->generation, id) == 0)
        return;
    lease_release(rs->st, rs->lease);
    rs->lease[0] = '\0';
    struct tm_error err;
    if (lease_take(rs->st, opts->db_name, id, clock_now_ms(), rs->lease, sizeof rs->lease, &err) != 0) {
        log_event(LOG_WARN, opts->db_name, NULL, "could not record that this restore reads generation %s (retention "
                  "may run meanwhile): %s", id, err.msg);
        rs->lease[0] = '\0';
    }
    snprintf(rs->generation, sizeof rs->generation, "%s", id);
}

/* Threads reading objects: min(PIPELINE_WORKERS_MAX, cores); 0 when
 * read inline. */
static unsigned worker_count(const struct restore_state *rs)
{
    if (reads_inline(rs))
        return 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : cores > PIPELINE_WORKERS_MAX ? PIPELINE_WORKERS_MAX : (unsigned)cores;
}

/* One attempt from snapshot snap of gen: its jobs, on a pipeline when
 * workers > 0. *snapshot_failed tells a failure of the snapshot itself
 * (err then holds it, unhinted) from a later one. Nothing runs on return;
 * *busy_ns gets the workers' busy time. */
static int apply_from(struct restore_state *rs, struct catalog *cat, const struct restore_options *opts,
                      const struct catalog_generation *gen, const struct catalog_snapshot *snap, unsigned workers,
                      int *snapshot_failed, uint64_t *busy_ns, struct tm_error *err)
{
    struct job_list list;
    struct pipeline *p = NULL;
    struct worker_ctx w = {&list, rs->st, rs->key};
    *snapshot_failed = 0;
    int rc = plan_jobs(gen, snap, opts, &list, err);
    if (rc == 0 && workers > 0)
        rc = pipeline_start(workers, list.count, run_job, &w, &p, err);
    if (rc == 0 && apply_job(rs, p, &list, 0, opts, err) != 0) {
        *snapshot_failed = 1;
        rc = -1;
    }
    if (rc == 0) {   /* the fallback may have chosen another generation */
        restore_describe_plan(cat, gen, opts, &rs->plan);
        rc = restore_check_tail(cat, &rs->heads, opts, gen, &rs->plan, err);
    }
    for (size_t i = 1; rc == 0 && i < list.count && !rs->stopped; i++)
        rc = apply_job(rs, p, &list, i, opts, err);
    *busy_ns += pipeline_stop(p);
    free(list.jobs);
    return rc;
}

static uint64_t fetched_ns(const struct restore_state *rs)
{
    return storage_read_ns(rs->st) + (rs->local ? storage_read_ns(rs->local) : 0);
}

int restore_apply(struct restore_state *rs, struct catalog *cat, const struct restore_options *opts,
                  const struct catalog_generation **gen, const struct catalog_snapshot **snap, struct tm_error *err)
{
    unsigned workers = worker_count(rs);
    int64_t start = monotonic_ns(), write_start = rs->write_ns;
    uint64_t fetch_start = fetched_ns(rs), busy_ns = 0;
    int rc, snapshot_failed;
    struct tm_error failure;
    while ((rc = apply_from(rs, cat, opts, *gen, *snap, workers, &snapshot_failed, &busy_ns, &failure)) != 0 &&
           snapshot_failed) {
        if (!restore_fall_back(cat, opts, &rs->skips, &failure, gen, snap, err))
            break;
        page_writer_free(rs->pages);
        rs->pages = NULL;
        if (ftruncate(rs->fd, 0) != 0) {
            tm_error_set(err, "cannot empty the temporary file: %s", strerror(errno));
            break;
        }
        switch_generation(rs, opts, (*gen)->id);
    }
    if (rc != 0 && !snapshot_failed)
        *err = failure;
    int64_t fetch_ns = (int64_t)(fetched_ns(rs) - fetch_start);
    int64_t decode_ns = workers ? (int64_t)busy_ns - fetch_ns : monotonic_ns() - start - (rs->write_ns - write_start) - fetch_ns;
    rs->phases.fetch_us = fetch_ns / 1000;
    rs->phases.decode_us = decode_ns > 0 ? decode_ns / 1000 : 0;
    log_debug("restore: objects applied in %lld ms by %u worker thread(s) and this one (%lld ms waiting for them, "
              "%lld ms writing)", (long long)(monotonic_ns() - start) / 1000000, workers,
              (long long)rs->wait_ns / 1000000, (long long)(rs->write_ns - write_start) / 1000000);
    return rc;
}
