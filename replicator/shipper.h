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

struct shipper {
    const char *db_name;
    const struct crypto_keyring *key;        /* NULL: encryption none */
    struct spool *spool;                 /* borrowed */
    struct delta_builder *deltas;        /* borrowed; NULL: no deltas */
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    int has_generation;
    uint64_t next_index;                 /* index of the next segment */
    uint8_t chain[OBJECT_HASH_BYTES];    /* prev hash of the next segment */
    int64_t last_snapshot_ms;            /* newest snapshot published, 0 if none */
    uint64_t segments_shipped, bytes_shipped, commits_shipped, deltas_shipped;
    uint64_t wal_bytes_since_snapshot;   /* frames shipped since the newest snapshot, in bytes */
    uint32_t db_pages;                   /* database size after the last commit shipped */
    int64_t last_commit_shipped_ms;
};

enum shipper_status {
    SHIPPER_OK = 0,
    SHIPPER_BROKEN = 1,   /* the WAL no longer holds what was scanned */
};

/* Where the archive ends, as the spool recorded it: *found = 1 with the
 * generation state loaded into sh, the WAL position and page size the
 * last object recorded. *found = 0 when there is nothing to resume from
 * a WAL (no archive; or one that ended on an empty WAL, whose generation
 * is loaded all the same, with pos zero). */
int shipper_resume(struct shipper *sh, struct wal_position *pos, uint32_t *page_size,
                   int *found, struct tm_error *err);

void shipper_new_generation(struct shipper *sh, int64_t now_ms);

/* Publishes the tailer's pending commits as one segment in the spool and
 * acknowledges them in the tailer, then the deltas the segment completes
 * (deltas.h; a delta that fails is logged and stops deltas until the
 * next snapshot, never the segment). Returns SHIPPER_OK (also when nothing
 * was pending), SHIPPER_BROKEN, or -1 (the spool failed; the commits stay
 * pending in the WAL and are shipped next time, nothing is lost). */
int shipper_ship(struct shipper *sh, struct tailer *t, struct tm_error *err);
/* The same for only the first `count` pending commits (those up to the
 * pin, before a snapshot of the pin's state). */
int shipper_ship_first(struct shipper *sh, struct tailer *t, size_t count, struct tm_error *err);

/* Stores the snapshot file (a database copy) at the current index. */
int shipper_snapshot(struct shipper *sh, const char *file, uint32_t page_size,
                     uint32_t page_count, int64_t time_ms, const struct wal_position *pos,
                     struct tm_error *err);

#endif
