/* test_redis_units.c - the replication stream cut into units
 * (replicator/redis_units.c, with resp.c's resumable parser): exact unit
 * boundaries however the input is cut, a MULTI block as one unit, the
 * master's PING/REPLCONF apart, linear work on a 256 MB MULTI block read
 * in 64 KiB pieces (counted, not timed), and units over the limit
 * refused before they are complete. */
#include "harness.h"

#include "../../replicator/redis_units.h"

#include <stdlib.h>

/* The input buffer as redis_link.c keeps it, appended to and the released
 * bytes dropped from its start: here a window on the whole stream (no
 * copy: dropping moves its start). */
struct feed {
    const uint8_t *data;
    size_t len;
    uint64_t dropped;                    /* bytes released so far: stream offset of data[0] */
};

struct seen {
    int kind;
    uint64_t offset;                     /* in the whole stream */
    size_t length;
    int getack;
};

/* Takes every unit the cutter finds in f (at most cap kept in out, all
 * counted in *count), then releases; -1 on MALFORMED or TOO_LARGE (kind
 * in *failed). */
static int take_units(struct redis_units *u, struct feed *f, struct seen *out, size_t cap, size_t *count,
                      int *failed)
{
    for (;;) {
        struct redis_unit unit;
        int kind = redis_units_next(u, f->data, f->len, &unit);
        if (kind == REDIS_UNITS_MORE)
            break;
        if (kind < 0) {
            *failed = kind;
            return -1;
        }
        if (*count < cap)
            out[*count] = (struct seen){kind, f->dropped + unit.start, unit.length, unit.getack};
        (*count)++;
    }
    size_t done = redis_units_release(u);
    f->data += done;
    f->len -= done;
    f->dropped += done;
    return 0;
}

/* Feeds stream[0..len) in pieces of `piece` bytes. */
static int cut(const uint8_t *stream, size_t len, size_t piece, size_t max_unit, struct seen *out, size_t cap,
               size_t *count, int *failed, uint64_t *examined)
{
    struct redis_units u;
    redis_units_init(&u, max_unit);
    struct feed f = {.data = stream};
    *count = 0;
    *failed = 0;
    int rc = 0;
    for (size_t at = 0; at < len && rc == 0; at += piece) {
        f.len += len - at < piece ? len - at : piece;
        rc = take_units(&u, &f, out, cap, count, failed);
    }
    if (examined)
        *examined = redis_units_examined(&u);
    return rc;
}

#define SET_A "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n"
#define MULTI "*1\r\n$5\r\nMULTI\r\n"
#define EXEC "*1\r\n$4\r\nEXEC\r\n"
#define PING "*1\r\n$4\r\nPING\r\n"
#define GETACK "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"
#define INCR "*2\r\n$4\r\nincr\r\n$1\r\nn\r\n"

static void test_units_exact_at_every_cut(void)
{
    /* a write, PING, a block (with a nested MULTI inside, as data), GETACK, a write cut short */
    const char *stream = SET_A PING MULTI INCR MULTI INCR EXEC GETACK SET_A "*3\r\n$3\r\nSET";
    size_t len = strlen(stream);
    size_t block_at = strlen(SET_A PING), block_len = strlen(MULTI INCR MULTI INCR EXEC);
    struct seen expect[] = {
        {REDIS_UNIT_WRITE, 0, strlen(SET_A), 0},
        {REDIS_UNIT_MASTER, strlen(SET_A), strlen(PING), 0},
        {REDIS_UNIT_WRITE, block_at, block_len, 0},
        {REDIS_UNIT_MASTER, block_at + block_len, strlen(GETACK), 1},
        {REDIS_UNIT_WRITE, block_at + block_len + strlen(GETACK), strlen(SET_A), 0},
    };
    for (size_t piece = 1; piece <= len; piece++) {
        struct seen got[8];
        size_t count;
        int failed;
        ASSERT_EQ(cut((const uint8_t *)stream, len, piece, 1 << 20, got, 8, &count, &failed, NULL), 0);
        ASSERT_EQ(count, 5);
        for (size_t i = 0; i < 5; i++) {
            ASSERT_EQ(got[i].kind, expect[i].kind);
            ASSERT_EQ(got[i].offset, expect[i].offset);
            ASSERT_EQ(got[i].length, expect[i].length);
            ASSERT_EQ(got[i].getack, expect[i].getack);
        }
    }
}

/* 256 MB of SET commands inside one MULTI block, read in 64 KiB pieces:
 * the block is one unit of exactly its bytes, and the work (bytes the
 * parser looked at) stays under twice the input, where re-measuring the
 * open block after every read would look at ~2000 times more. */
static void test_a_256mb_multi_block_in_linear_work(void)
{
    const char *command = "*3\r\n$3\r\nSET\r\n$6\r\nkey:42\r\n$10\r\nvalue-0042\r\n";
    size_t command_len = strlen(command), target = 256u << 20;
    size_t commands = target / command_len;
    size_t head = strlen(SET_A MULTI), block = strlen(MULTI) + commands * command_len + strlen(EXEC);
    size_t len = strlen(SET_A) + block + strlen(SET_A);
    uint8_t *stream = malloc(len);
    ASSERT_TRUE(stream != NULL);
    uint8_t *p = stream;
    memcpy(p, SET_A MULTI, head);
    p += head;
    for (size_t i = 0; i < commands; i++, p += command_len)
        memcpy(p, command, command_len);
    memcpy(p, EXEC SET_A, strlen(EXEC SET_A));
    struct seen got[4];
    size_t count;
    int failed;
    uint64_t examined;
    ASSERT_EQ(cut(stream, len, 64 * 1024, 1u << 30, got, 4, &count, &failed, &examined), 0);
    free(stream);
    ASSERT_EQ(count, 3);
    ASSERT_EQ(got[1].kind, REDIS_UNIT_WRITE);
    ASSERT_EQ(got[1].offset, strlen(SET_A));
    ASSERT_EQ(got[1].length, block);
    ASSERT_EQ(got[2].offset, strlen(SET_A) + block);
    ASSERT_EQ(got[2].length, strlen(SET_A));
    ASSERT_TRUE(examined >= len / 2);          /* the counter counts */
    ASSERT_TRUE(examined <= 2 * (uint64_t)len);
}

/* A command with 1M small arguments, in 64 KiB pieces: measured once. */
static void test_a_large_command_in_linear_work(void)
{
    size_t args = 1000 * 1000, len = 0;
    uint8_t *stream = malloc(16 + args * 7);
    len += (size_t)sprintf((char *)stream, "*%zu\r\n", args);
    for (size_t i = 0; i < args; i++)
        len += (size_t)sprintf((char *)stream + len, "$1\r\nx\r\n");
    struct seen got[2];
    size_t count;
    int failed;
    uint64_t examined;
    ASSERT_EQ(cut(stream, len, 64 * 1024, 1u << 30, got, 2, &count, &failed, &examined), 0);
    free(stream);
    ASSERT_EQ(count, 1);
    ASSERT_EQ(got[0].length, len);
    ASSERT_TRUE(examined <= 2 * (uint64_t)len);
}

/* Units over the limit are refused as soon as they pass it, before their
 * end arrives; a unit of exactly the limit is taken. */
static void test_units_over_the_limit_refused(void)
{
    char stream[8192] = MULTI;
    while (strlen(stream) + strlen(INCR) < 4096)
        strcat(stream, INCR);
    size_t open_len = strlen(stream);
    strcat(stream, EXEC);
    size_t block = strlen(stream);
    struct seen got[2];
    size_t count;
    int failed;
    ASSERT_EQ(cut((const uint8_t *)stream, block, 100, block, got, 2, &count, &failed, NULL), 0);
    ASSERT_EQ(count, 1);
    ASSERT_EQ(got[0].length, block);
    /* one byte less: refused, and without the EXEC yet (the open block alone) */
    ASSERT_EQ(cut((const uint8_t *)stream, open_len, 100, open_len - 1, got, 2, &count, &failed, NULL), -1);
    ASSERT_EQ(failed, REDIS_UNITS_TOO_LARGE);
    ASSERT_EQ(count, 0);
    /* a single command over the limit, still incomplete */
    const char *big = "*2\r\n$3\r\nSET\r\n$5000\r\n";
    char single[6000];
    snprintf(single, sizeof single, "%s%04000d", big, 0);
    ASSERT_EQ(cut((const uint8_t *)single, strlen(single), 512, 2048, got, 2, &count, &failed, NULL), -1);
    ASSERT_EQ(failed, REDIS_UNITS_TOO_LARGE);
    /* malformed input is told apart */
    ASSERT_EQ(cut((const uint8_t *)"PING\r\n", 6, 6, 2048, got, 2, &count, &failed, NULL), -1);
    ASSERT_EQ(failed, REDIS_UNITS_MALFORMED);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"units: exact boundaries at every cut; MULTI blocks whole; PING/REPLCONF apart", test_units_exact_at_every_cut},
        {"units: a 256 MB MULTI block in 64 KiB reads, in linear work", test_a_256mb_multi_block_in_linear_work},
        {"units: a command of 1M arguments in 64 KiB reads, in linear work", test_a_large_command_in_linear_work},
        {"units: over the archive's limit refused before complete", test_units_over_the_limit_refused},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
