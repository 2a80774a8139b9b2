/* deltas.h - the sidecar's delta builder: what segments changed, by page,
 * so that a restore can jump over many segments with one object.
 *
 * Segments are cut every second, so a day holds up to 86,400 of them and
 * a restore would fetch every one since the last snapshot. Deltas bound
 * that: blocks of DELTA_FANOUT^L segments (L = 1..DELTA_LEVELS), counted
 * from the epoch start (the newest snapshot, or where the sidecar
 * resumed), each stored as one object holding every page the block
 * changed, once, as it was at the block's end (format in
 * common/archive.c). A restore greedily takes the largest delta that
 * starts where it is and ends at or before its target, then segments:
 * at most (FANOUT - 1) objects per level, 3 x 9 = 27 for a day of
 * one-second segments. Segments are kept, so every commit's time stays
 * restorable; deltas only skip what lies wholly before the target.
 *
 * The latest version of every page shipped in the epoch is kept in a
 * local store file (sparse, page N at (N - 1) x page size) and one dirty
 * bitmap per level records what the open block changed; closing a block
 * reads its pages back from the store. Memory: DELTA_LEVELS bitmaps of
 * one bit per database page (256 KiB for 1 GiB of 4 KiB pages). Deltas
 * are a shortcut, never needed for correctness: any failure here only
 * stops deltas until the next epoch. */
#ifndef TM_DELTAS_H
#define TM_DELTAS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/archive.h"
#include "../common/error.h"

#define DELTA_FANOUT 4
#define DELTA_LEVELS 8
/* Deltas are for small segments, where the number of objects is what a
 * restore pays for. A segment over this many bytes of pages is not
 * stored in the page store (that write would cost more than shipping it:
 * measured, 0.42 -> 1.2 CPU-s for 339 MB of bulk inserts), and the blocks
 * holding it get no delta; large segments are few objects anyway, and
 * wal-ratio snapshots bound how much of them a restore replays. */
#define DELTA_SMALL_SEGMENT_BYTES (1024 * 1024)

struct delta_builder;

/* The page store lives at `path` (created; truncated at every epoch). */
int delta_builder_open(const char *path, struct delta_builder **out, struct tm_error *err);
void delta_builder_free(struct delta_builder *db);

/* An idle database's builder closes its page store (the pages stay in the
 * file) and opens it again when the database wakes; a builder that cannot
 * is disabled until the next reset (err set). */
void delta_builder_suspend(struct delta_builder *db);
int delta_builder_wake(struct delta_builder *db, struct tm_error *err);

/* A new epoch starts with segment `index`: everything held is dropped. */
void delta_builder_reset(struct delta_builder *db, uint64_t index, uint32_t page_size);
/* No deltas until the next reset (after a failure, logged by the caller). */
void delta_builder_disable(struct delta_builder *db);
int delta_builder_active(const struct delta_builder *db);

/* A page of the segment being shipped. Returns -1 (err set) when the
 * store cannot be written; the caller disables the builder. */
int delta_builder_page(struct delta_builder *db, uint32_t page_number, const uint8_t *page,
                       struct tm_error *err);
/* `count` pages in shipping order (a later one replaces an earlier one of
 * the same number); runs of consecutive page numbers take one pwritev. */
int delta_builder_pages(struct delta_builder *db, const uint32_t *numbers, const uint8_t *const *pages,
                        size_t count, struct tm_error *err);

/* Segment `index` (header h, payload hash `hash`) was published; returns
 * how many levels' blocks it closes (0 .. DELTA_LEVELS): levels 1..N. */
int delta_builder_segment_done(struct delta_builder *db, const struct segment_header *h,
                               const uint8_t hash[OBJECT_HASH_BYTES]);

/* The header of the closed block of `level` (1-based), for the database
 * size `db_size` after its last commit. */
void delta_builder_header(const struct delta_builder *db, int level, const char *generation,
                          uint32_t db_size, struct delta_header *out);

/* The segment being shipped is large: its pages are not given to the
 * builder, and every block holding it gets no delta. */
void delta_builder_poison(struct delta_builder *db);
/* Whether the closed block of `level` can be a delta (no large segment
 * in it); if not, delta_builder_skip forgets it. */
int delta_builder_worth(const struct delta_builder *db, int level);
void delta_builder_skip(struct delta_builder *db, int level);

/* Calls emit(ctx, page_number, page) for each page of the closed block of
 * `level`, in ascending order, then empties that level's bitmap. */
typedef int (*delta_emit_fn)(void *ctx, uint32_t page_number, const uint8_t *page,
                             struct tm_error *err);
int delta_builder_emit(struct delta_builder *db, int level, delta_emit_fn emit, void *ctx,
                       struct tm_error *err);

#endif
