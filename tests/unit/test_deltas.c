/* test_deltas.c - the delta builder (replicator/deltas.c): which blocks a
 * segment closes, that a delta holds each changed page once at its latest
 * version in ascending order, that levels are independent, and that an
 * epoch reset forgets everything. */
#include "harness.h"

#include "../../replicator/deltas.h"

#include <stdlib.h>

#define PAGE 512

struct collected {
    uint32_t numbers[64];
    uint8_t first_bytes[64];
    size_t count;
};

static int collect(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    (void)err;
    struct collected *c = ctx;
    c->numbers[c->count] = page_number;
    c->first_bytes[c->count++] = page[0];
    return 0;
}

/* Ships segment `index` that writes `count` pages (numbers[i] with first
 * byte value[i]); returns the levels it closes. */
static int ship(struct delta_builder *db, uint64_t index, const uint32_t *numbers, const uint8_t *values,
                size_t count)
{
    uint8_t page[PAGE];
    struct tm_error err;
    for (size_t i = 0; i < count; i++) {
        memset(page, values[i], sizeof page);
        if (delta_builder_page(db, numbers[i], page, &err) != 0)
            return -1;
    }
    struct segment_header h = {.page_size = PAGE, .txn_count = 2, .index = index,
                               .first_time_ms = 1000 + (int64_t)index * 10, .last_time_ms = 1005 + (int64_t)index * 10};
    memset(h.prev_hash, (int)index, sizeof h.prev_hash);
    uint8_t hash[OBJECT_HASH_BYTES];
    memset(hash, (int)index + 1, sizeof hash);
    return delta_builder_segment_done(db, &h, hash);
}

static void test_blocks_close_at_powers_of_the_fanout(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store", harness_tmpdir());
    struct delta_builder *db;
    struct tm_error err;
    ASSERT_EQ(delta_builder_open(path, &db, &err), 0);
    ASSERT_TRUE(!delta_builder_active(db));
    delta_builder_reset(db, 10, PAGE);   /* the epoch starts at segment 10 */
    ASSERT_TRUE(delta_builder_active(db));
    uint32_t one = 1;
    uint8_t value = 1;
    int closes[70] = {0};
    for (uint64_t i = 10; i < 10 + 64; i++) {
        closes[i - 10] = ship(db, i, &one, &value, 1);
        struct collected c = {0};
        for (int level = 1; level <= closes[i - 10]; level++) {
            struct delta_header h;
            delta_builder_header(db, level, "G", 7, &h);
            uint64_t span = 1;
            for (int l = 0; l < level; l++)
                span *= DELTA_FANOUT;
            ASSERT_EQ(h.end_index, i + 1);
            ASSERT_EQ(h.first_index, i + 1 - span);
            ASSERT_EQ(h.txn_count, 2 * span);
            ASSERT_EQ(h.first_time_ms, 1000 + (int64_t)h.first_index * 10);
            ASSERT_EQ(h.last_time_ms, 1005 + (int64_t)i * 10);
            ASSERT_EQ(h.chain_in[0], (uint8_t)h.first_index);
            ASSERT_EQ(h.chain_out[0], (uint8_t)(i + 1));
            ASSERT_EQ(h.db_size, 7);
            ASSERT_EQ(delta_builder_emit(db, level, collect, &c, &err), 0);
        }
    }
    ASSERT_EQ(closes[0], 0);
    ASSERT_EQ(closes[3], 1);    /* 4 segments */
    ASSERT_EQ(closes[7], 1);
    ASSERT_EQ(closes[15], 2);   /* 16 */
    ASSERT_EQ(closes[62], 0);
    ASSERT_EQ(closes[63], 3);   /* 64 */
    delta_builder_free(db);
}

static void test_each_page_once_at_its_latest_version(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/store2", harness_tmpdir());
    struct delta_builder *db;
    struct tm_error err;
    ASSERT_EQ(delta_builder_open(path, &db, &err), 0);
    delta_builder_reset(db, 0, PAGE);
    /* page 40000 makes the bitmaps grow past their first 4 KiB */
    uint32_t seg0[] = {9, 3, 40000}, seg1[] = {3, 5}, seg2[] = {9}, seg3[] = {2};
    uint8_t val0[] = {1, 2, 3}, val1[] = {4, 5}, val2[] = {6}, val3[] = {7};
    ASSERT_EQ(ship(db, 0, seg0, val0, 3), 0);
    ASSERT_EQ(ship(db, 1, seg1, val1, 2), 0);
    ASSERT_EQ(ship(db, 2, seg2, val2, 1), 0);
    ASSERT_EQ(ship(db, 3, seg3, val3, 1), 1);
    struct delta_header h;
    delta_builder_header(db, 1, "G", 50000, &h);
    ASSERT_EQ(h.page_count, 5);
    struct collected c = {0};
    ASSERT_EQ(delta_builder_emit(db, 1, collect, &c, &err), 0);
    ASSERT_EQ(c.count, 5);
    const uint32_t want_numbers[] = {2, 3, 5, 9, 40000};
    const uint8_t want_values[] = {7, 4, 5, 6, 3};
    for (size_t i = 0; i < 5; i++) {
        ASSERT_EQ(c.numbers[i], want_numbers[i]);
        ASSERT_EQ(c.first_bytes[i], want_values[i]);
    }
    /* level 2 still holds the block's pages; the next level-1 block starts empty */
    uint32_t seg4[] = {3};
    uint8_t val4[] = {8};
    ASSERT_EQ(ship(db, 4, seg4, val4, 1), 0);
    delta_builder_header(db, 1, "G", 50000, &h);
    ASSERT_EQ(h.page_count, 1);
    ASSERT_EQ(h.first_index, 4);
    delta_builder_header(db, 2, "G", 50000, &h);
    ASSERT_EQ(h.page_count, 5);
    ASSERT_EQ(h.first_index, 0);
    /* a large segment (not stored) poisons the blocks that hold it: they
     * close without a delta; the blocks after it are clean again */
    delta_builder_poison(db);
    ASSERT_EQ(ship(db, 5, seg4, val4, 1), 0);
    ASSERT_EQ(ship(db, 6, seg4, val4, 1), 0);
    ASSERT_EQ(ship(db, 7, seg4, val4, 1), 1);
    ASSERT_TRUE(!delta_builder_worth(db, 1));
    delta_builder_skip(db, 1);
    for (uint64_t i = 8; i < 11; i++)
        ASSERT_EQ(ship(db, i, seg4, val4, 1), 0);
    ASSERT_EQ(ship(db, 11, seg4, val4, 1), 1);
    ASSERT_TRUE(delta_builder_worth(db, 1));
    ASSERT_TRUE(!delta_builder_worth(db, 2));   /* 0..15 holds segment 5 */
    /* a reset forgets every level; disabled, nothing is recorded */
    delta_builder_reset(db, 5, PAGE);
    delta_builder_header(db, 2, "G", 1, &h);
    ASSERT_EQ(h.page_count, 0);
    delta_builder_disable(db);
    ASSERT_EQ(ship(db, 5, seg4, val4, 1), 0);
    ASSERT_TRUE(!delta_builder_active(db));
    delta_builder_free(db);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"deltas: blocks of 4, 16, 64 segments close with their times, counts and chain hashes",
         test_blocks_close_at_powers_of_the_fanout},
        {"deltas: each changed page once, at its latest version, ascending; levels independent; reset",
         test_each_page_once_at_its_latest_version},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
