/* catalog.h - what a replica holds for a database, from listings alone
 * (names and sizes; nothing is decrypted): the archive's generations and,
 * in each, its snapshots, segments and deltas. Names are parsed by
 * layout.h; what an object holds is checked when it is read (archive.h). */
#ifndef TM_CATALOG_H
#define TM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "layout.h"
#include "storage/storage.h"

struct catalog_snapshot {
    uint64_t index;
    int64_t time_ms;
    uint64_t size;
    char key[ARCHIVE_NAME_MAX];
};

struct catalog_segment {
    uint64_t index;
    int64_t first_ms, last_ms;
    uint64_t size;
    char key[ARCHIVE_NAME_MAX];
};

struct catalog_delta {
    uint64_t first_index, end_index;      /* segments [first, end) */
    int64_t first_ms, last_ms;
    uint64_t size;
    char key[ARCHIVE_NAME_MAX];
};

struct catalog_generation {
    char id[ARCHIVE_GEN_ID_BYTES + 1];
    struct catalog_delta *deltas;         /* sorted by first_index, then end_index */
    size_t delta_count;
    struct catalog_snapshot *snapshots;   /* sorted by index */
    size_t snapshot_count;
    struct catalog_segment *segments;     /* sorted by index */
    size_t segment_count;
};

struct catalog {
    struct catalog_generation *generations;   /* oldest first */
    size_t generation_count;
};

/* What the archive holds for database `db`. Names layout.h does not
 * parse (temporaries, strays, folders that are not generation ids) are
 * ignored. Fails (err set, *out empty) only when a listing fails: a
 * partial catalog is never returned, since retention plans from it. */
int catalog_load(struct storage *st, const char *db, struct catalog *out, struct tm_error *err);
void catalog_release(struct catalog *cat);

/* The newest time generation `gen`'s object names hold: its last
 * commit (segments, deltas) or snapshot; INT64_MIN when it is empty.
 * Generation ids are stamped by the clock of the host that made them, so
 * after a clock step back ids sort in the wrong order: this is what says
 * which generation holds the newest data (restore's "latest"). */
int64_t catalog_generation_newest_ms(const struct catalog_generation *gen);

#endif
