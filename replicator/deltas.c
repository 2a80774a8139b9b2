/* deltas.c - the delta builder (see deltas.h for what deltas are for).
 *
 * State per level L: the open block (first segment, commit times, commit
 * count, chain hashes in and out) and a bitmap of the pages it changed.
 * Every shipped page is written to the store and marked in every level's
 * bitmap; when the segment is published, each level's block takes it in,
 * and the blocks whose length reaches FANOUT^L segments since the epoch
 * start close. The shipper then writes each closed block's delta from
 * the store and the bitmap, smallest level first. */
#include "deltas.h"

#include "../common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct delta_level {
    int open;                       /* holds at least one segment */
    uint64_t first_index, end_index;
    int64_t first_ms, last_ms;
    uint32_t txns;
    uint8_t chain_in[OBJECT_HASH_BYTES], chain_out[OBJECT_HASH_BYTES];
    uint8_t *dirty;                 /* bit N-1: page N changed in the block */
    size_t dirty_bytes;
    uint32_t dirty_pages;
    uint64_t page_versions;         /* pages shipped into the block, with repeats */
    uint32_t segments;
    int poisoned;                   /* holds a segment whose pages were not stored */
};

struct delta_builder {
    char *store_path;
    int store_fd;
    int active;
    uint32_t page_size;
    uint64_t epoch_index;
    struct delta_level levels[DELTA_LEVELS];
};

int delta_builder_open(const char *path, struct delta_builder **out, struct tm_error *err)
{
    struct delta_builder *db = calloc(1, sizeof *db);
    if (!db || !(db->store_path = strdup(path))) {
        free(db);
        return tm_error_set(err, "out of memory");
    }
    db->store_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (db->store_fd < 0) {
        tm_error_set(err, "cannot create the delta page store '%s': %s", path, strerror(errno));
        free(db->store_path);
        free(db);
        return -1;
    }
    *out = db;
    return 0;
}

void delta_builder_free(struct delta_builder *db)
{
    if (!db)
        return;
    for (int l = 0; l < DELTA_LEVELS; l++)
        free(db->levels[l].dirty);
    if (db->store_fd >= 0)
        close(db->store_fd);
    unlink(db->store_path);
    free(db->store_path);
    free(db);
}

void delta_builder_suspend(struct delta_builder *db)
{
    if (db && db->store_fd >= 0) {
        close(db->store_fd);
        db->store_fd = -1;
    }
}

int delta_builder_wake(struct delta_builder *db, struct tm_error *err)
{
    if (!db || db->store_fd >= 0)
        return 0;
    db->store_fd = open(db->store_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (db->store_fd >= 0)
        return 0;
    tm_error_set(err, "cannot open the delta page store '%s': %s", db->store_path, strerror(errno));
    delta_builder_disable(db);
    return -1;
}

static void forget_levels(struct delta_builder *db)
{
    for (int level = 1; level <= DELTA_LEVELS; level++)
        delta_builder_skip(db, level);
}

void delta_builder_reset(struct delta_builder *db, uint64_t index, uint32_t page_size)
{
    forget_levels(db);
    db->epoch_index = index;
    db->page_size = page_size;
    /* the store's old pages are never read: a page is read back only
     * once marked, and marked only once written in this epoch */
    db->active = ftruncate(db->store_fd, 0) == 0;
}

void delta_builder_disable(struct delta_builder *db)
{
    forget_levels(db);
    db->active = 0;
}

int delta_builder_active(const struct delta_builder *db)
{
    return db && db->active;
}

static int mark(struct delta_level *level, uint32_t page_number)
{
    size_t byte = (page_number - 1) / 8;
    if (byte >= level->dirty_bytes) {
        size_t grown = level->dirty_bytes ? level->dirty_bytes : 64;
        while (grown <= byte)
            grown *= 2;
        uint8_t *bits = realloc(level->dirty, grown);
        if (!bits)
            return -1;
        memset(bits + level->dirty_bytes, 0, grown - level->dirty_bytes);
        level->dirty = bits;
        level->dirty_bytes = grown;
    }
    uint8_t bit = (uint8_t)(1u << ((page_number - 1) % 8));
    if (!(level->dirty[byte] & bit)) {
        level->dirty[byte] |= bit;
        level->dirty_pages++;
    }
    return 0;
}

#define STORE_RUN_MAX 256   /* pages per pwritev (IOV_MAX is 1024) */

/* Writes pages[0..count) to consecutive page numbers from `first`. */
static int store_run(struct delta_builder *db, uint32_t first, const uint8_t *const *pages, size_t count,
                     struct tm_error *err)
{
    struct iovec iov[STORE_RUN_MAX];
    for (size_t i = 0; i < count; i++)
        iov[i] = (struct iovec){(void *)pages[i], db->page_size};
    if (fsutil_pwritev_all(db->store_fd, iov, (int)count, (off_t)(first - 1) * db->page_size) != 0)
        return tm_error_set(err, "cannot write the delta page store '%s': %s", db->store_path, strerror(errno));
    return 0;
}

int delta_builder_pages(struct delta_builder *db, const uint32_t *numbers, const uint8_t *const *pages,
                        size_t count, struct tm_error *err)
{
    if (!db->active)
        return 0;
    for (size_t start = 0; start < count;) {
        size_t run = 1;
        while (start + run < count && run < STORE_RUN_MAX && numbers[start + run] == numbers[start] + run)
            run++;
        if (numbers[start] != 0 && store_run(db, numbers[start], pages + start, run, err) != 0)
            return -1;
        start += run;
    }
    for (size_t i = 0; i < count; i++)
        for (int l = 0; l < DELTA_LEVELS && numbers[i] != 0; l++) {
            if (mark(&db->levels[l], numbers[i]) != 0)
                return tm_error_set(err, "out of memory");
            db->levels[l].page_versions++;
        }
    return 0;
}

int delta_builder_page(struct delta_builder *db, uint32_t page_number, const uint8_t *page,
                       struct tm_error *err)
{
    return delta_builder_pages(db, &page_number, &page, 1, err);
}

int delta_builder_segment_done(struct delta_builder *db, const struct segment_header *h,
                               const uint8_t hash[OBJECT_HASH_BYTES])
{
    if (!db->active || h->index < db->epoch_index)
        return 0;
    for (int l = 0; l < DELTA_LEVELS; l++) {
        struct delta_level *level = &db->levels[l];
        if (!level->open) {
            level->open = 1;
            level->first_index = h->index;
            level->first_ms = h->first_time_ms;
            level->txns = 0;
            memcpy(level->chain_in, h->prev_hash, OBJECT_HASH_BYTES);
        }
        level->end_index = h->index + 1;
        level->segments++;
        level->last_ms = h->last_time_ms;
        level->txns += h->txn_count;
        memcpy(level->chain_out, hash, OBJECT_HASH_BYTES);
    }
    uint64_t shipped = h->index + 1 - db->epoch_index;
    uint64_t block = 1;
    int closing = 0;
    while (closing < DELTA_LEVELS && shipped % (block *= DELTA_FANOUT) == 0)
        closing++;
    return closing;
}

void delta_builder_header(const struct delta_builder *db, int level_number, const char *generation,
                          uint32_t db_size, struct delta_header *out)
{
    const struct delta_level *level = &db->levels[level_number - 1];
    memset(out, 0, sizeof *out);
    out->page_size = db->page_size;
    out->page_count = level->dirty_pages;
    out->first_index = level->first_index;
    out->end_index = level->end_index;
    out->first_time_ms = level->first_ms;
    out->last_time_ms = level->last_ms;
    out->db_size = db_size;
    out->txn_count = level->txns;
    memcpy(out->generation, generation, strnlen(generation, ARCHIVE_GEN_ID_BYTES));
    memcpy(out->chain_in, level->chain_in, OBJECT_HASH_BYTES);
    memcpy(out->chain_out, level->chain_out, OBJECT_HASH_BYTES);
}

static int read_stored_page(const struct delta_builder *db, uint32_t page_number, uint8_t *page,
                            struct tm_error *err)
{
    off_t offset = (off_t)(page_number - 1) * db->page_size;
    size_t done = 0;
    while (done < db->page_size) {
        ssize_t n = pread(db->store_fd, page + done, db->page_size - done, offset + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return tm_error_set(err, "cannot read page %u from the delta page store '%s': %s", page_number,
                                db->store_path, n < 0 ? strerror(errno) : "short file");
        done += (size_t)n;
    }
    return 0;
}

void delta_builder_poison(struct delta_builder *db)
{
    for (int l = 0; l < DELTA_LEVELS; l++)
        db->levels[l].poisoned = 1;
}

int delta_builder_worth(const struct delta_builder *db, int level_number)
{
    return !db->levels[level_number - 1].poisoned;
}

void delta_builder_skip(struct delta_builder *db, int level_number)
{
    struct delta_level *level = &db->levels[level_number - 1];
    if (level->dirty)
        memset(level->dirty, 0, level->dirty_bytes);
    level->dirty_pages = 0;
    level->page_versions = 0;
    level->segments = 0;
    level->poisoned = 0;
    level->open = 0;
}

int delta_builder_emit(struct delta_builder *db, int level_number, delta_emit_fn emit, void *ctx,
                       struct tm_error *err)
{
    struct delta_level *level = &db->levels[level_number - 1];
    uint8_t *page = malloc(db->page_size);
    if (!page)
        return tm_error_set(err, "out of memory");
    int rc = 0;
    for (size_t byte = 0; rc == 0 && byte < level->dirty_bytes; byte++) {
        if (!level->dirty[byte])
            continue;
        for (unsigned bit = 0; rc == 0 && bit < 8; bit++) {
            if (!(level->dirty[byte] >> bit & 1))
                continue;
            uint32_t page_number = (uint32_t)(byte * 8 + bit + 1);
            rc = read_stored_page(db, page_number, page, err);
            if (rc == 0)
                rc = emit(ctx, page_number, page, err);
        }
    }
    free(page);
    delta_builder_skip(db, level_number);
    return rc;
}
