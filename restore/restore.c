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

#include "apply.h"
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
#include <pthread.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t monotonic_us(void)
{
    return monotonic_ns() / 1000;
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
    out->read_bytes = rs->read_bytes;
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

/* The temporary file's fsync, on a thread of its own while the checks
 * read the file: the disk's wait and the checks' CPU overlap. */
struct background_fsync {
    pthread_t thread;
    int fd;
    int started;
    int rc, error;                      /* fsync's result and errno */
    int64_t us;
};

static void *fsync_main(void *arg)
{
    struct background_fsync *bg = arg;
    int64_t start = monotonic_us();
    bg->rc = fsync(bg->fd);
    bg->error = errno;
    bg->us = monotonic_us() - start;
    return NULL;
}

static void fsync_start(struct background_fsync *bg, int fd)
{
    *bg = (struct background_fsync){.fd = fd};
    bg->started = pthread_create(&bg->thread, NULL, fsync_main, bg) == 0;
    if (!bg->started)   /* no thread: in line */
        fsync_main(bg);
}

/* Waits for the fsync; -1 with err set if it failed. */
static int fsync_wait(struct background_fsync *bg, const char *temp, struct tm_error *err)
{
    if (bg->started)
        pthread_join(bg->thread, NULL);
    if (bg->rc != 0)
        return tm_error_set(err, "cannot finish '%s': %s", temp, strerror(bg->error));
    return 0;
}

/* The checks of the finished file (result_check.h), while it is fsync'd. */
static int check_file(struct restore_state *rs, const struct restore_options *opts, const char *temp,
                      struct tm_error *err)
{
    int rc = 0;
    if (rs->db_size > 0)
        rc = result_check_pages(rs->fd, temp, rs->page_size, rs->db_size,
                                rs->pages ? page_writer_first_missing(rs->pages, rs->db_size) : 1, err);
    if (rc == 0)
        rc = result_check_sqlite(temp, opts->integrity, err);
    return rc;
}

/* After the last page (rc: 0 if every object applied): writes the pages
 * held, cuts the file to the last transaction's size, checks it while it
 * is fsync'd (both must pass), and closes it. -1 with err set on
 * failure. */
static int finish_file(struct restore_state *rs, const struct restore_options *opts, const char *temp, int rc,
                       struct tm_error *err)
{
    int64_t start = monotonic_ns();
    if (rc == 0 && rs->pages)
        rc = page_writer_flush(rs->pages, err);
    rs->write_ns += monotonic_ns() - start;
    rs->phases.write_us = rs->write_ns / 1000;
    if (rc == 0 && ftruncate(rs->fd, (off_t)rs->db_size * rs->page_size) != 0)
        rc = tm_error_set(err, "cannot finish '%s': %s", temp, strerror(errno));
    if (rc == 0) {
        struct background_fsync bg;
        fsync_start(&bg, rs->fd);
        start = monotonic_us();
        rc = check_file(rs, opts, temp, err);
        rs->phases.check_us = monotonic_us() - start;
        struct tm_error fsync_err;
        if (fsync_wait(&bg, temp, &fsync_err) != 0 && rc == 0) {
            *err = fsync_err;
            rc = -1;
        }
        rs->phases.fsync_us = bg.us;
    }
    if (rs->pages)
        log_debug("restore: %llu page versions replayed, %llu page writes",
                  (unsigned long long)page_writer_pages_put(rs->pages),
                  (unsigned long long)page_writer_pages_written(rs->pages));
    page_writer_free(rs->pages);
    rs->pages = NULL;
    close(rs->fd);
    rs->fd = -1;
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
    if (rc == 0)
        rc = restore_apply(rs, &cat, opts, &gen, &snap, err);
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
        restore_apply_drop_prefetch(&rs);
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
