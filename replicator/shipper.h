/* shipper.h - turning pending commits and snapshots into archive objects
 * (format: common/archive.c) published in the database's spool, from
 * which each replica's uploader ships them. */
#ifndef TM_SHIPPER_H
#define TM_SHIPPER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/archive.h"
#include "../common/crypto.h"
#include "deltas.h"
#include "spool.h"
#include "tailer.h"

#define SHIPPER_HEAD_INTERVAL_MS 5000   /* a head at most this often while objects flow */

/* The end of a generation, as its head states it (archive.h). */
struct shipper_end {
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint64_t next_index;
    uint8_t chain[OBJECT_HASH_BYTES];
    int64_t last_commit_ms, snapshot_ms;
};

struct shipper {
    const char *db_name;
    const struct crypto_keyring *key;        /* NULL: encryption none */
    struct spool *spool;                 /* borrowed */
    struct delta_builder *deltas;        /* borrowed; NULL: no deltas */
    /* While an SQLite segment is written on its own thread, called every
     * millisecond on the caller's (shipper_segment.c), which owns the
     * tailer meanwhile: the pin is kept out of the application's way
     * (pin.c). Returns 0, or 1 when continuity was lost (err says why):
     * the segment is then abandoned unless all its frames were read.
     * NULL: nothing runs beside. */
    int (*beside)(void *arg, struct tm_error *err);
    void *beside_arg;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    int has_generation;
    uint64_t next_index;                 /* index of the next segment */
    uint8_t chain[OBJECT_HASH_BYTES];    /* prev hash of the next segment */
    int64_t last_snapshot_ms;            /* newest snapshot published, 0 if none */
    uint64_t segments_shipped, bytes_shipped, commits_shipped, deltas_shipped;
    uint64_t wal_bytes_since_snapshot;   /* frames shipped since the newest snapshot, in bytes */
    uint32_t db_pages;                   /* database size after the last commit shipped */
    int64_t last_commit_shipped_ms;
    /* heads (shipper_tick) */
    int head_ready;                      /* the generation has its snapshot: heads may name it */
    int head_due;                        /* objects published since its last head */
    int64_t head_written_ms;
    int64_t generation_last_commit_ms;   /* last commit of the generation shipped by this process, 0: none */
    int has_predecessor;                 /* the generation before, whose last head names this one */
    struct shipper_end predecessor;
    uint64_t heads_written;
};

enum shipper_status {
    SHIPPER_OK = 0,
    SHIPPER_BROKEN = 1,   /* the WAL no longer holds what was scanned */
    SHIPPER_RESCAN = 2,   /* the WAL file shrank under frames scanned: scan again, then ship */
};

/* Where the archive ends, as the spool recorded it: *found = 1 with the
 * generation state loaded into sh, the WAL position and page size the
 * last object recorded. *found = 0 when there is nothing to resume from
 * a WAL (no archive; or one that ended on an empty WAL, whose generation
 * is loaded all the same, with pos zero). */
int shipper_resume(struct shipper *sh, struct wal_position *pos, uint32_t *page_size,
                   int *found, struct tm_error *err);

/* Continues the archive whose end the spool recorded (its generation,
 * index, chain and newest snapshot). */
void shipper_continue(struct shipper *sh, const struct spool_position *end);

/* Starts generation `generation` (a new id, or a Redis resync's) at index
 * 0, chained from its start hash. */
void shipper_use_generation(struct shipper *sh, const char *generation);
void shipper_new_generation(struct shipper *sh, int64_t now_ms);

/* ------------------------------------------------------------ publishing
 * The one publisher of segments, SQLite's (shipper_ship) and Redis'
 * (redis.c): the object at the shipper's next index, named by layout.h,
 * its header then its body through the spool's writer; then the
 * archive's new end in the spool, then the chain, index and counters. */

struct shipper_segment {
    int64_t first_ms, last_ms;           /* first and last commit (or unit): its name */
    const uint8_t *header;               /* its payload header, encoded by the caller */
    size_t header_len;
    /* writes the body after the header: 0, SHIPPER_BROKEN or -1 */
    int (*write_body)(void *ctx, struct object_writer *w, struct tm_error *err);
    void *ctx;
    /* the archive's end after it, the caller's part: WAL position and page
     * size, or Redis replication id and offset (the rest is the shipper's) */
    struct spool_position end;
    uint64_t commits;                    /* transactions or units it holds */
    const char *what;                    /* "commits", "commands": for the log */
};

/* Publishes `seg`; hash_out (may be NULL) receives its hash. Returns 0,
 * or what write_body returned (SHIPPER_BROKEN, -1), or -1 when the
 * object or the spool failed: then nothing is published and the shipper
 * is unchanged. */
int shipper_publish_segment(struct shipper *sh, const struct shipper_segment *seg,
                            uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err);

/* Publishes snapshot `key`, committed in the spool's incoming storage
 * (stored bytes), as the archive's new end at the shipper's index: `end`
 * as for segments; the newest snapshot is now time_ms. */
int shipper_publish_snapshot(struct shipper *sh, const char *key, const struct spool_position *end,
                             int64_t time_ms, uint64_t stored, struct tm_error *err);

/* Publishes the tailer's pending commits as one segment in the spool and
 * acknowledges them in the tailer, then the deltas the segment completes
 * (deltas.h; a delta that fails is logged and stops deltas until the
 * next snapshot, never the segment). The segment is written on a thread
 * of its own while this one reads its frames and calls `beside`
 * (shipper_segment.c): commits that `beside` scans meanwhile stay
 * pending after it. Returns SHIPPER_OK (also when nothing was pending),
 * SHIPPER_BROKEN (the WAL no longer holds what was scanned, or `beside`
 * lost continuity), SHIPPER_RESCAN (tailer_read_frames: the file shrank
 * since the scan; nothing published), or -1 (a read or the spool failed;
 * the commits stay pending in the WAL and are shipped next time, nothing
 * is lost). */
int shipper_ship(struct shipper *sh, struct tailer *t, struct tm_error *err);
/* The same for only the first `count` pending commits (those up to the
 * pin, before a snapshot of the pin's state). */
int shipper_ship_first(struct shipper *sh, struct tailer *t, size_t count, struct tm_error *err);

/* Publishes the generation's head (archive.h) when objects were published
 * since the last one and SHIPPER_HEAD_INTERVAL_MS passed (and first, once
 * the generation has its snapshot, the last head of the generation before
 * it, naming this one as its successor). Called after shipping and on
 * every sync tick; a failure is logged, and tried again at the next.
 * Returns 1 when a head was published: the caller kicks the uploaders. */
int shipper_tick(struct shipper *sh, int64_t now_ms);
/* The same without waiting for the interval: before stopping, before a
 * database of a `dir:` entry goes to sleep, after a one-off snapshot, so
 * that the head names everything shipped. */
int shipper_head_now(struct shipper *sh, int64_t now_ms);

/* Stores the snapshot file (a database copy) at the current index. */
int shipper_snapshot(struct shipper *sh, const char *file, uint32_t page_size,
                     uint32_t page_count, int64_t time_ms, const struct wal_position *pos,
                     struct tm_error *err);

#endif
