/* restore.c - `tidemark restore`: rebuild a database as of a point in time.
 *
 * Plan (from listings only, restore_plan in plan.c): the generation whose
 * newest snapshot at or before the target is the newest (without a target: the
 * generation whose names hold the newest time - by times, never by the
 * sort order of generation ids, which carry the starting host's clock),
 * and that snapshot; then the segments from that snapshot's index on,
 * which must be contiguous. The times planned from are checked against
 * each object's authenticated header as it is read. Apply: write the
 * snapshot's pages to a temporary file in a private directory made next
 * to the output (mkdtemp, mode 0700: nobody else can plant a link or a
 * file in it, fsutil.h), then each segment's transactions in order,
 * page by page, stopping before the first transaction seen after the
 * target. Wherever
 * a delta starts at the next index and its last commit is at or before
 * the target, the largest such delta is applied instead of its segments
 * (replicator/deltas.h: at most a few objects per level). Every
 * segment and delta is checked before its data is trusted: its generation,
 * index and page size, its link to the previous object (chain hash), the
 * authentication of every encrypted chunk and the payload hash. Then the
 * file is cut to the database size of the last transaction, fsync'd,
 * checked with PRAGMA integrity_check, and renamed over the output.
 *
 * Any missing, corrupt or undecryptable object stops the restore before
 * anything is written at the output path, with the object named and the
 * last point that can be restored consistently; but a snapshot is only
 * a starting point: when the one planned is missing, damaged or not a
 * valid snapshot at all (a name planted in the bucket), the restore
 * starts again from the next older snapshot, across generations, and
 * replays every segment after it (apply_snapshot_or_older), and says
 * which snapshot it skipped and why (restore_outcome.skipped). */
#include "restore.h"

#include "../common/targets.h"

#include "page_writer.h"
#include "result_check.h"
#include "redis_restore.h"

#include "../common/archive.h"
#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/lease.h"
#include "../common/log.h"
#include "../common/object.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct restore_state {
    const struct crypto_keyring *key;
    struct storage *st;
    int fd;
    struct page_writer *pages;          /* write-back of fd, made at the first page */
    uint32_t page_size;
    uint32_t db_size;                   /* pages */
    uint8_t chain[OBJECT_HASH_BYTES];
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    int64_t snapshot_ms;
    int64_t last_commit_ms;             /* 0: none after the snapshot */
    int64_t last_verified_ms;           /* end of the last fully checked segment */
    uint64_t transactions_applied;
    uint64_t segments_read;
    uint64_t deltas_read;
    int stopped;                        /* reached a transaction after the target */
    struct restore_skips skips;         /* newer snapshots skipped: missing, damaged or not valid */
    struct heads_report heads;          /* what the heads say (restore_read_heads) */
    int64_t next_ms;                    /* when stopped: the first commit time after the target */
    struct restore_outcome plan;        /* what the catalog says about the choice (plan.c) */
    /* Prefetch from a network replica: the next segments are downloaded
     * in parallel into local files (PREFETCH_WINDOW at a time) and read
     * from there; nothing is applied before it is checked as usual. */
    struct storage *local;              /* file storage on prefetch_dir */
    char prefetch_dir[PATH_MAX];        /* inside work_dir */
    char work_dir[PATH_MAX];            /* OUTPUT.tidemark-restore-XXXXXX (mkdtemp), or "" */
    size_t window_start, window_end;    /* segment indexes fetched, in gen->segments */
    char lease[512];                    /* our lease on the generation (common/lease.h) */
    struct restore_phases phases;       /* where the time went (restore.h) */
    int64_t write_ns;                   /* in write_page */
};

#define PREFETCH_WINDOW 32

/* Pages go through the page writer: a page rewritten many times by the
 * segments replayed is written to the file once or a few times. */
#define PAGE_WRITER_BYTES (16 * 1024 * 1024)

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int write_page(struct restore_state *rs, uint32_t page_number, const uint8_t *page,
                      struct tm_error *err)
{
    if (!rs->pages && page_writer_open(rs->fd, rs->page_size, PAGE_WRITER_BYTES, &rs->pages, err) != 0)
        return -1;
    int64_t start = monotonic_ns();
    int rc = page_writer_put(rs->pages, page_number, page, err);
    rs->write_ns += monotonic_ns() - start;
    return rc;
}

/* Snapshot visitor: check the header against the name, write every page. */
struct snapshot_apply {
    struct restore_state *rs;
    const struct catalog_snapshot *snap;
};

static int snapshot_check_header(void *ctx, const struct snapshot_header *h, struct tm_error *err)
{
    struct snapshot_apply *apply = ctx;
    if (strcmp(h->generation, apply->rs->generation) != 0 || h->index != apply->snap->index ||
        h->time_ms != apply->snap->time_ms)
        return tm_error_setc(err, TM_ERR_CORRUPT, "snapshot '%s': its header does not match its name (generation, "
                             "index or time)", apply->snap->key);
    apply->rs->page_size = h->page_size;
    return 0;
}

static int snapshot_write_page(void *ctx, uint32_t page_number, const uint8_t *page,
                               struct tm_error *err)
{
    return write_page(((struct snapshot_apply *)ctx)->rs, page_number, page, err);
}

static int apply_snapshot(struct restore_state *rs, const struct catalog_snapshot *snap,
                          struct tm_error *err)
{
    struct snapshot_apply apply = {rs, snap};
    struct snapshot_visitor visitor = {snapshot_check_header, snapshot_write_page, &apply};
    struct snapshot_header h;
    if (snapshot_read(rs->st, snap->key, rs->key, &visitor, &h, err) != 0)
        return -1;   /* the reader and snapshot_check_header name the snapshot */
    rs->db_size = h.page_count;
    memcpy(rs->chain, h.chain_hash, sizeof rs->chain);
    rs->snapshot_ms = h.time_ms;
    rs->last_verified_ms = h.time_ms;
    return 0;
}

/* Segment visitor: check the header against the name and the chain, then
 * apply transactions up to the target and only read the rest. */
struct segment_apply {
    struct restore_state *rs;
    const struct catalog_segment *seg;
    const struct restore_options *opts;
};

static int segment_check_header(void *ctx, const struct segment_header *h, struct tm_error *err)
{
    struct segment_apply *apply = ctx;
    struct restore_state *rs = apply->rs;
    const char *key = apply->seg->key;
    if (strcmp(h->generation, rs->generation) != 0 || h->index != apply->seg->index)
        return tm_error_setc(err, TM_ERR_CORRUPT, "segment '%s': its header does not match its name (generation "
                             "or index)", key);
    if (h->first_time_ms != apply->seg->first_ms || h->last_time_ms != apply->seg->last_ms)
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
    struct segment_apply *apply = ctx;
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

static int segment_write_page(void *ctx, uint32_t page_number, const uint8_t *page,
                              struct tm_error *err)
{
    struct restore_state *rs = ((struct segment_apply *)ctx)->rs;
    return rs->stopped ? 0 : write_page(rs, page_number, page, err);
}

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

/* Any error aborts the whole restore, so a transaction whose pages are
 * only partly written is never kept. */
static void prefetch_name(size_t position, char *out, size_t len)
{
    snprintf(out, len, "segment-%zu", position);
}

static void prefetch_drop_window(struct restore_state *rs)
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
    prefetch_drop_window(rs);
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

static int apply_segment(struct restore_state *rs, struct storage *source, const char *key,
                         const struct catalog_segment *seg, const struct restore_options *opts,
                         struct tm_error *err)
{
    struct segment_apply apply = {rs, seg, opts};
    struct segment_visitor visitor = {segment_check_header, segment_begin_txn, segment_write_page,
                                      &apply};
    struct segment_header h;
    uint8_t hash[OBJECT_HASH_BYTES];
    if (segment_read_as(source, key, seg->key, rs->key, &visitor, &h, hash, err) != 0)   /* a local copy: as seg->key */
        return -1;
    memcpy(rs->chain, hash, sizeof hash);
    rs->segments_read++;
    if (!rs->stopped)
        rs->last_verified_ms = h.last_time_ms;
    return 0;
}

/* Delta visitor: the header must match the name and continue the chain. */
struct delta_apply {
    struct restore_state *rs;
    const struct catalog_delta *delta;
};

static int delta_check_header(void *ctx, const struct delta_header *h, struct tm_error *err)
{
    struct delta_apply *apply = ctx;
    struct restore_state *rs = apply->rs;
    const struct catalog_delta *delta = apply->delta;
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

static int delta_write_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    return write_page(((struct delta_apply *)ctx)->rs, page_number, page, err);
}

static int apply_delta(struct restore_state *rs, const struct catalog_delta *delta, struct tm_error *err)
{
    struct delta_apply apply = {rs, delta};
    struct delta_visitor visitor = {delta_check_header, delta_write_page, &apply};
    struct delta_header h;
    if (delta_read(rs->st, delta->key, rs->key, &visitor, &h, err) != 0)
        return -1;   /* the reader and delta_check_header name the delta */
    memcpy(rs->chain, h.chain_out, sizeof rs->chain);
    rs->db_size = h.db_size;
    rs->last_commit_ms = h.last_time_ms;
    rs->last_verified_ms = h.last_time_ms;
    rs->transactions_applied += h.txn_count;
    rs->deltas_read++;
    return 0;
}

/* A snapshot failed to apply for a reason of its own (missing, damaged,
 * not a snapshot of this place) rather than of the restore (disk, key). */

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

/* Applies *snap; while it fails for a reason of its own, notes why in
 * rs->skips, empties the file and plans again without it (the next
 * older snapshot at or before the target, *gen and *snap updated). When
 * no older snapshot is left, fails with the first snapshot's error. */
static int apply_snapshot_or_older(struct restore_state *rs, struct catalog *cat, const struct restore_options *opts,
                                   const struct catalog_generation **gen, const struct catalog_snapshot **snap,
                                   struct tm_error *err)
{
    for (;;) {
        struct tm_error failure;
        if (apply_snapshot(rs, *snap, &failure) == 0)
            return 0;
        if (!restore_fall_back(cat, opts, &rs->skips, &failure, gen, snap, err))
            return -1;
        page_writer_free(rs->pages);
        rs->pages = NULL;
        if (ftruncate(rs->fd, 0) != 0)
            return tm_error_set(err, "cannot empty the temporary file: %s", strerror(errno));
        switch_generation(rs, opts, (*gen)->id);
    }
}

static int apply_segments(struct restore_state *rs, const struct catalog_generation *gen,
                          const struct catalog_snapshot *snap, const struct restore_options *opts,
                          struct tm_error *err)
{
    uint64_t expected = snap->index;
    for (size_t i = 0; i < gen->segment_count && !rs->stopped; i++) {
        const struct catalog_delta *delta;
        while ((delta = usable_delta(gen, expected, opts)) != NULL) {
            if (apply_delta(rs, delta, err) != 0) {
                char last[40];
                clock_format_ms(rs->last_verified_ms, last, sizeof last);
                return tm_error_hint(err, "the last consistent point reachable is %s: restore with "
                                     "--timestamp %s, or from another replica (or with --no-deltas)", last, last);
            }
            expected = delta->end_index;
        }
        const struct catalog_segment *seg = &gen->segments[i];
        if (seg->index < expected)
            continue;
        if (opts->has_target && seg->first_ms > opts->target_ms) {
            rs->stopped = 1;   /* the target falls between two segments */
            rs->next_ms = seg->first_ms;
            break;
        }
        char last[40];
        clock_format_ms(rs->last_verified_ms, last, sizeof last);
        if (seg->index != expected) {
            tm_error_setc(err, TM_ERR_NOT_FOUND, "segment %016" PRIx64 " of generation %s is missing from the replica "
                          "(the next one present is '%s')", expected, gen->id, seg->key);
            return tm_error_hint(err, "the last consistent point reachable is %s: restore with --timestamp %s, or from another replica",
                                 last, last);
        }
        struct storage *source = NULL;
        char key[ARCHIVE_NAME_MAX];
        if (segment_source(rs, gen, i, expected, opts, &source, key, sizeof key, err) != 0 ||
            apply_segment(rs, source, key, seg, opts, err) != 0) {
            if (source != rs->st)   /* prefetching it, or reading its local copy (named "segment-N") */
                tm_error_prefix(err, "segment '%s': ", seg->key);
            return tm_error_hint(err, "the last consistent point reachable is %s: restore with --timestamp %s, or from another replica",
                                 last, last);
        }
        expected++;
    }
    return 0;
}

static void unlink_sidecars(const char *path)
{
    char side[PATH_MAX];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-journal", path);
    unlink(side);
    /* the Turso engine's coordination file describes the WAL just removed */
    snprintf(side, sizeof side, "%s-tshm", path);
    unlink(side);
}

static int fsync_parent(const char *path)
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int check_output(const struct restore_options *opts, struct tm_error *err)
{
    char side[PATH_MAX];
    snprintf(side, sizeof side, "%s-wal", opts->output);
    if (!opts->force && (access(opts->output, F_OK) == 0 || access(side, F_OK) == 0)) {
        tm_error_set(err, "output '%s' already exists", opts->output);
        return tm_error_hint(err, "choose another path, or add --force to replace it (its -wal, -shm and -tshm files are removed too)");
    }
    return 0;
}

static void fill_outcome(const struct restore_state *rs, struct restore_outcome *out)
{
    *out = rs->plan;   /* restore_describe_plan's fields */
    out->point_ms = rs->last_commit_ms ? rs->last_commit_ms : rs->snapshot_ms;
    out->snapshot_ms = rs->snapshot_ms;
    out->after_snapshot = rs->last_commit_ms != 0;
    out->reached_target = rs->stopped;
    if (rs->stopped) {   /* the next commit is in the generation restored */
        out->next_ms = rs->next_ms;
        snprintf(out->next_generation, sizeof out->next_generation, "%s", rs->generation);
    }
    out->transactions = rs->transactions_applied;
    out->segments = rs->segments_read;
    out->deltas = rs->deltas_read;
    out->bytes = (uint64_t)rs->db_size * rs->page_size;
    out->pages = rs->db_size;
    out->page_size = rs->page_size;
    snprintf(out->generation, sizeof out->generation, "%s", rs->generation);
    out->skipped_count = rs->skips.count;
    snprintf(out->skipped, sizeof out->skipped, "%s", rs->skips.text);
}

/* The private directory the restore writes in, beside the output (a
 * rename from it is atomic): new, 0700, its name unpredictable; the
 * temporary database (and SQLite's journal of the integrity check) and
 * the prefetched segments go in it, so nothing planted is ever opened. */
static int make_work_dir(struct restore_state *rs, const struct restore_options *opts, char *temp, size_t len,
                         struct tm_error *err)
{
    snprintf(rs->work_dir, sizeof rs->work_dir, "%s.tidemark-restore-XXXXXX", opts->output);
    if (fsutil_private_dir(rs->work_dir, err) != 0) {
        rs->work_dir[0] = '\0';
        return -1;
    }
    snprintf(temp, len, "%s/restoring.db", rs->work_dir);
    if (!storage_fetch_is_useful(rs->st))
        return 0;
    snprintf(rs->prefetch_dir, sizeof rs->prefetch_dir, "%s/prefetch", rs->work_dir);
    if (fsutil_ensure_private_dir(rs->prefetch_dir, err) != 0)
        return -1;
    return storage_file_open(rs->prefetch_dir, &rs->local, err);
}

/* Time spent reading objects (from the replica, and the local copies of
 * a network replica's segments). */
static uint64_t fetched_ns(const struct restore_state *rs)
{
    return storage_read_ns(rs->st) + (rs->local ? storage_read_ns(rs->local) : 0);
}

/* After the last page (rc: 0 if every object applied): writes the pages
 * held, cuts the file to the last transaction's size, fsyncs it, checks
 * it (result_check.h) and closes it. -1 with err set on failure. */
static int finish_file(struct restore_state *rs, const struct restore_options *opts, const char *temp, int rc,
                       struct tm_error *err)
{
    int64_t start = monotonic_ns();
    if (rc == 0 && rs->pages)
        rc = page_writer_flush(rs->pages, err);
    rs->write_ns += monotonic_ns() - start;
    rs->phases.write_us = rs->write_ns / 1000;
    start = monotonic_us();
    if (rc == 0 && (ftruncate(rs->fd, (off_t)rs->db_size * rs->page_size) != 0 || fsync(rs->fd) != 0))
        rc = tm_error_set(err, "cannot finish '%s': %s", temp, strerror(errno));
    rs->phases.fsync_us = monotonic_us() - start;
    start = monotonic_us();
    if (rc == 0 && rs->db_size > 0)
        rc = result_check_pages(rs->fd, temp, rs->page_size, rs->db_size,
                                rs->pages ? page_writer_first_missing(rs->pages, rs->db_size) : 1, err);
    if (rs->pages)
        log_debug("restore: %llu page versions replayed, %llu page writes",
                  (unsigned long long)page_writer_pages_put(rs->pages),
                  (unsigned long long)page_writer_pages_written(rs->pages));
    page_writer_free(rs->pages);
    rs->pages = NULL;
    close(rs->fd);
    rs->fd = -1;
    if (rc == 0)
        rc = result_check_sqlite(temp, opts->integrity, err);
    rs->phases.check_us = monotonic_us() - start;
    return rc;
}

static int restore_into(struct restore_state *rs, const struct restore_options *opts,
                        char *temp, size_t temp_len, struct tm_error *err)
{
    struct catalog cat;
    const struct catalog_generation *gen = NULL;
    const struct catalog_snapshot *snap = NULL;
    if (catalog_load(rs->st, opts->db_name, &cat, err) != 0)
        return -1;
    int rc = restore_read_heads(rs->st, rs->key, 0, &cat, opts, &rs->heads, err);
    if (rc == 0)
        rc = restore_plan(&cat, opts, &gen, &snap, err);
    if (rc == 0 && lease_take(rs->st, opts->db_name, gen->id, clock_now_ms(), rs->lease, sizeof rs->lease, err) != 0) {
        log_event(LOG_WARN, opts->db_name, NULL, "could not record that this restore reads generation %s (retention "
                  "may run meanwhile): %s", gen->id, err->msg);
        rs->lease[0] = '\0';
    }
    if (rc == 0)
        rc = make_work_dir(rs, opts, temp, temp_len, err);
    if (rc == 0) {
        restore_describe_plan(&cat, gen, opts, &rs->plan);
        snprintf(rs->generation, sizeof rs->generation, "%s", gen->id);
        if ((rs->fd = fsutil_create_exclusive(temp, err)) < 0)
            rc = -1;
    }
    int64_t apply_start = monotonic_ns(), fetch_start = (int64_t)fetched_ns(rs);
    if (rc == 0)
        rc = apply_snapshot_or_older(rs, &cat, opts, &gen, &snap, err);
    if (rc == 0)   /* the fallback may have chosen another generation */
        restore_describe_plan(&cat, gen, opts, &rs->plan);
    if (rc == 0)
        rc = restore_check_tail(&cat, &rs->heads, opts, gen, &rs->plan, err);
    if (rc == 0)
        rc = apply_segments(rs, gen, snap, opts, err);
    int64_t fetch_ns = (int64_t)fetched_ns(rs) - fetch_start, busy_ns = monotonic_ns() - apply_start - rs->write_ns;
    rs->phases.fetch_us = fetch_ns / 1000;
    rs->phases.decode_us = busy_ns > fetch_ns ? (busy_ns - fetch_ns) / 1000 : 0;
    if (rs->fd >= 0 && finish_file(rs, opts, temp, rc, err) != 0)
        rc = -1;
    catalog_release(&cat);
    return rc;
}

static const char *const integrity_names[] = {
    [RESTORE_CHECK_FULL] = "full", [RESTORE_CHECK_QUICK] = "quick", [RESTORE_CHECK_NONE] = "none"};

int restore_integrity_parse(const char *text, enum restore_integrity *out)
{
    for (int i = RESTORE_CHECK_FULL; i <= RESTORE_CHECK_NONE; i++)
        if (strcmp(text, integrity_names[i]) == 0) {
            *out = (enum restore_integrity)i;
            return 0;
        }
    return -1;
}

const char *restore_integrity_name(enum restore_integrity integrity)
{
    return integrity_names[integrity];
}

int restore_database(const struct config_db *db, const struct crypto_keyring *key,
                     const struct restore_options *opts, struct restore_outcome *out, struct tm_error *err)
{
    if (db->kind == DB_REDIS)
        return redis_restore(db, key, opts, out, err);
    int64_t start = monotonic_us();
    struct restore_state rs = {.key = key, .fd = -1};
    if (check_output(opts, err) != 0 || targets_open_replica(db, opts->replica, &rs.st, err) != 0)
        return -1;
    char temp[PATH_MAX + 16] = "";
    int rc = restore_into(&rs, opts, temp, sizeof temp, err);
    lease_release(rs.st, rs.lease);
    if (rs.local) {
        prefetch_drop_window(&rs);
        storage_free(rs.local);
    }
    if (rc == 0) {
        unlink_sidecars(temp);
        if (opts->force)
            unlink_sidecars(opts->output);
        if (rename(temp, opts->output) != 0 || fsync_parent(opts->output) != 0)
            rc = tm_error_set(err, "cannot move the restored database to '%s': %s", opts->output,
                              strerror(errno));
    }
    struct tm_error ignored;
    if (rs.work_dir[0])   /* the temporary database if it was not moved, the prefetch directory */
        fsutil_remove_tree(rs.work_dir, &ignored);
    if (rc == 0) {
        fill_outcome(&rs, out);
        out->phases = rs.phases;
        out->phases.total_us = monotonic_us() - start;
    }
    storage_free(rs.st);
    return rc;
}
