/* apply.h - the middle of an SQLite restore (restore.c): the objects a
 * plan names applied to the temporary file, in order, each checked, on a
 * pipeline of threads (pipeline.h) for a local replica, inline for a
 * network one (whose segments are prefetched into local files). */
#ifndef TM_APPLY_H
#define TM_APPLY_H

#include <limits.h>
#include <stdint.h>

#include "restore.h"

/* Pages go through the page writer (page_writer.h): a page rewritten many
 * times by the segments replayed is written to the file once or a few
 * times. As large as what the pipeline lets the worker of the object being
 * applied decode ahead (pipeline.h): while the writer writes one batch
 * out, the worker decodes the next. */
#define PAGE_WRITER_BYTES (4 * 1024 * 1024)

/* One SQLite restore under way: what restore.c sets up (key, st, fd,
 * generation, work_dir, heads, plan, lease) and what applying the objects
 * finds out. */
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
    uint64_t read_bytes;                /* the sizes of the objects applied (their names') */
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
    int64_t write_ns;                   /* writing pages (write_page, replay_job) */
    int64_t wait_ns;                    /* the writer waiting for the workers' next events */
};

/* Applies snapshot *snap of generation *gen (or, when it fails for a
 * reason of its own, the next older one: restore_fall_back, *gen and
 * *snap updated, the file emptied), checks the archive's tail
 * (restore_check_tail), then applies the deltas and segments after it up
 * to opts' target. Fills rs->phases' fetch and decode. -1 with err set
 * (naming the object, with the last consistent point as a hint) on the
 * first failure; on return no thread is left running. */
int restore_apply(struct restore_state *rs, struct catalog *cat, const struct restore_options *opts,
                  const struct catalog_generation **gen, const struct catalog_snapshot **snap, struct tm_error *err);

/* What a restore from snapshot snap of gen to opts' target reads after
 * the snapshot, from the names alone (the jobs described atop apply.c):
 * the deltas and segments, their bytes, and whether the list ends at a
 * missing segment (*gap). For `list`: the cost of the latest point. 0, or
 * -1 (out of memory). */
struct restore_replay {
    uint64_t objects, bytes;
    int gap;
};
int restore_apply_replay(const struct catalog_generation *gen, const struct catalog_snapshot *snap,
                         const struct restore_options *opts, struct restore_replay *out, struct tm_error *err);

/* Removes the prefetched segments still on disk (a network replica). */
void restore_apply_drop_prefetch(struct restore_state *rs);

#endif
