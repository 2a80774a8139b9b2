/* layout.h - where every object of an archive lives: the one module that
 * makes object keys and parses object names (layout in layout.c and
 * docs/format.md). Nothing else writes a key by hand.
 *
 * Under a replica's root, the objects of database NAME (its name escaped
 * into one key component, common/names.h) are
 *
 *   NAME/generations/GEN/snapshots|segments|deltas/LEAF   the archive
 *   NAME/generations/GEN/head                             its newest end
 *   NAME/leases/HOST-PID-MS.lease                         restore leases
 *   NAME/drills/MS-REPLICA.json                           drill records
 *
 * SQLite and Redis archives use the same keys. */
#ifndef TM_LAYOUT_H
#define TM_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define ARCHIVE_GEN_ID_BYTES 32        /* fixed field, NUL padded */
#define ARCHIVE_NAME_MAX 512

/* The kinds of archive object, each in its own folder of a generation. */
enum layout_kind {
    LAYOUT_SNAPSHOT,
    LAYOUT_SEGMENT,
    LAYOUT_DELTA,
};

/* The fields an object's name carries; each kind uses some of them:
 *   snapshot  index, first_ms (its time)
 *   segment   index, first_ms, last_ms (first and last commit)
 *   delta     index (its first segment), end_index, first_ms, last_ms */
struct layout_name {
    uint64_t index, end_index;
    int64_t first_ms, last_ms;
};

/* The folders of a database that are not inside a generation. */
enum layout_area {
    LAYOUT_GENERATIONS,
    LAYOUT_LEASES,
    LAYOUT_DRILLS,
};

/* The first key component of database `db`'s objects: its name, escaped
 * (common/names.h). Also a safe file name for it. */
void layout_db_dir(const char *db, char *out, size_t len);

/* "NAME/generations", "NAME/leases" or "NAME/drills". */
void layout_area_dir(const char *db, enum layout_area area, char *out, size_t len);

/* "NAME/generations/GEN/snapshots" (segments, deltas). */
void layout_kind_dir(const char *db, const char *gen, enum layout_kind kind, char *out, size_t len);

/* The key of an archive object. */
void layout_object_key(const char *db, const char *gen, enum layout_kind kind, const struct layout_name *n,
                       char *out, size_t len);

/* "DIR/LEAF": the key of an entry of a listing of DIR. */
void layout_child_key(const char *dir, const char *leaf, char *out, size_t len);

/* The fields of an archive object's file name (its last component);
 * -1 if it is not one layout_object_key writes for `kind` (a temporary,
 * a stray file, a delta that covers no segment). */
int layout_parse_leaf(enum layout_kind kind, const char *leaf, struct layout_name *out);

/* A new generation id: "20261124T001500123Z-9f3a1b2c" (sorts by time). */
void layout_generation_id_new(int64_t now_ms, char out[ARCHIVE_GEN_ID_BYTES + 1]);

/* Whether `name` has the exact form layout_generation_id_new writes.
 * Anything else under generations/ ("..", stray folders) is not part of
 * the archive. */
int layout_generation_id_ok(const char *name);

/* "NAME/generations/GEN/head": generation GEN's head (archive.h). */
void layout_head_key(const char *db, const char *gen, char *out, size_t len);
/* Whether `key` is the head key of generation `gen` (of any database). */
int layout_is_head_of(const char *key, const char *gen);

/* A lease of a restore started at now_ms by this host and process. */
void layout_lease_key(const char *db, const char *host, int pid, int64_t now_ms, char *out, size_t len);

/* The record of a drill started at started_ms on replica `replica`. */
void layout_drill_key(const char *db, int64_t started_ms, const char *replica, char *out, size_t len);

/* Whether a leaf of NAME/drills/ is a drill record (ends in ".json"). */
int layout_is_drill_record(const char *leaf);

/* Shorthands of layout_object_key. */
void layout_snapshot_key(const char *db, const char *gen, uint64_t index, int64_t time_ms,
                          char *out, size_t len);
void layout_segment_key(const char *db, const char *gen, uint64_t index, int64_t first_ms,
                         int64_t last_ms, char *out, size_t len);
void layout_delta_key(const char *db, const char *gen, uint64_t first_index, uint64_t end_index,
                       int64_t first_ms, int64_t last_ms, char *out, size_t len);

#endif
