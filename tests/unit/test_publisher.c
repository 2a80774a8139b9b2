/* test_publisher.c - the one segment publisher (replicator/shipper.h) over a
 * real spool: what a published segment is named, what the spool records
 * as the archive's end, the chain, index and counters; a body that fails
 * publishes nothing and leaves the shipper as it was; snapshots; and a
 * shipper continued from the spool's end. The object is read back from
 * the replica's queue by the Redis segment reader. */
#include "harness.h"

#include "../../common/archive.h"
#include "../../replicator/shipper.h"

#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>

#define GEN "20261124T001500123Z-0000000a"
#define T0 1795324542000LL

static const char *const replica_names[] = {"file"};

static struct spool *open_spool(const char *sub)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", harness_tmpdir(), sub);
    struct spool *sp = NULL;
    struct tm_error err;
    int added;
    size_t removed;
    if (spool_open(dir, replica_names, 1, 1, &sp, &added, &removed, &err) != 0)
        fprintf(stderr, "  spool_open: %s\n", err.msg);
    return sp;
}

/* A Redis segment's units, and how its body write ends. */
struct units {
    const char *bytes;
    size_t len;
    int outcome;                          /* 0, or what write_body fails with */
};

static int write_units(void *ctx, struct object_writer *w, struct tm_error *err)
{
    struct units *u = ctx;
    if (u->outcome != 0)
        return u->outcome == SHIPPER_BROKEN ? (tm_error_set(err, "broken"), SHIPPER_BROKEN) : -1;
    return object_write(w, u->bytes, u->len, err);
}

/* The segment of `units` (one unit, received at T0 + 5) at sh's index. */
static int publish_units(struct shipper *sh, struct units *units, uint8_t header[ARCHIVE_REDIS_HEADER_BYTES],
                         uint8_t hash[OBJECT_HASH_BYTES], struct tm_error *err)
{
    struct redis_segment_header h = {.unit_count = 1, .index = sh->next_index, .first_time_ms = T0 + 5,
                                     .last_time_ms = T0 + 5, .start_offset = 100, .end_offset = 130};
    snprintf(h.generation, sizeof h.generation, "%s", sh->generation);
    memcpy(h.prev_hash, sh->chain, sizeof h.prev_hash);
    snprintf(h.replid, sizeof h.replid, "%040d", 1);
    redis_segment_header_encode(&h, header);
    struct shipper_segment seg = {.first_ms = T0 + 5, .last_ms = T0 + 5, .header = header,
                                  .header_len = ARCHIVE_REDIS_HEADER_BYTES, .write_body = write_units,
                                  .ctx = units, .end = {.repl_offset = 130}, .commits = 1, .what = "commands"};
    snprintf(seg.end.replid, sizeof seg.end.replid, "%s", h.replid);
    return shipper_publish_segment(sh, &seg, hash, err);
}

static void test_publishes_a_segment(void)
{
    struct spool *sp = open_spool("segment");
    ASSERT_TRUE(sp != NULL);
    struct shipper sh = {.db_name = "tenants/a b", .spool = sp};
    shipper_use_generation(&sh, GEN);
    uint8_t start[OBJECT_HASH_BYTES], header[ARCHIVE_REDIS_HEADER_BYTES], hash[OBJECT_HASH_BYTES];
    archive_chain_start(GEN, start);
    ASSERT_TRUE(memcmp(sh.chain, start, sizeof start) == 0 && sh.next_index == 0 && sh.has_generation);
    uint8_t unit[12 + 4];
    archive_put_be64(unit, (uint64_t)(T0 + 5));
    archive_put_be32(unit + 8, 4);
    memcpy(unit + 12, "PING", 4);
    struct units units = {(const char *)unit, sizeof unit, 0};
    struct tm_error err;
    sh.last_snapshot_ms = T0;
    ASSERT_EQ(publish_units(&sh, &units, header, hash, &err), 0);
    ASSERT_EQ(sh.next_index, 1);
    ASSERT_TRUE(memcmp(sh.chain, hash, sizeof hash) == 0);
    ASSERT_EQ(sh.segments_shipped, 1);
    ASSERT_EQ(sh.commits_shipped, 1);
    ASSERT_EQ(sh.last_commit_shipped_ms, T0 + 5);
    ASSERT_TRUE(sh.bytes_shipped > 0);
    struct spool_position end;
    ASSERT_EQ(spool_position(sp, &end), 1);
    ASSERT_EQ(end.next_index, 1);
    ASSERT_TRUE(memcmp(end.chain, hash, sizeof hash) == 0);
    ASSERT_TRUE(strcmp(end.generation, GEN) == 0);
    ASSERT_EQ(end.repl_offset, 130);
    ASSERT_EQ(end.last_snapshot_ms, T0);
    ASSERT_EQ(end.replid[39], '1');
    char key[ARCHIVE_NAME_MAX], path[PATH_MAX], expected[ARCHIVE_NAME_MAX];
    ASSERT_EQ(spool_queue_head(sp, 0, key, sizeof key, path, sizeof path), 1);
    layout_segment_key("tenants/a b", GEN, 0, T0 + 5, T0 + 5, expected, sizeof expected);
    ASSERT_TRUE(strcmp(key, expected) == 0);
    ASSERT_TRUE(strcmp(key, "tenants%2Fa%20b/generations/" GEN
                       "/segments/0000000000000000-1795324542005-1795324542005.seg") == 0);
    /* the object in the queue is the segment, chained from the start */
    struct storage *st;
    char dir[PATH_MAX], leaf[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(leaf, sizeof leaf, "%s", path);
    ASSERT_EQ(storage_file_open(dirname(dir), &st, &err), 0);
    struct redis_segment_header back;
    uint8_t read_hash[OBJECT_HASH_BYTES];
    /* written under the spool's name, bound to the key it is published under */
    ASSERT_EQ(redis_segment_read(st, basename(leaf), NULL, NULL, &back, read_hash, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    ASSERT_TRUE(strstr(err.msg, "belongs to another database or place") != NULL);
    ASSERT_EQ(redis_segment_read_as(st, basename(leaf), key, NULL, NULL, &back, read_hash, &err), 0);
    ASSERT_TRUE(memcmp(read_hash, hash, sizeof hash) == 0);
    ASSERT_TRUE(memcmp(back.prev_hash, start, sizeof start) == 0);
    ASSERT_EQ(back.end_offset, 130);
    storage_free(st);
    spool_free(sp);
}

static void test_a_failed_body_publishes_nothing(void)
{
    struct spool *sp = open_spool("failed");
    struct shipper sh = {.db_name = "app", .spool = sp};
    shipper_use_generation(&sh, GEN);
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES], hash[OBJECT_HASH_BYTES], chain[OBJECT_HASH_BYTES];
    memcpy(chain, sh.chain, sizeof chain);
    struct tm_error err;
    struct units broken = {"", 0, SHIPPER_BROKEN}, failing = {"", 0, -1};
    ASSERT_EQ(publish_units(&sh, &broken, header, hash, &err), SHIPPER_BROKEN);
    ASSERT_TRUE(strcmp(err.msg, "broken") == 0);
    ASSERT_EQ(publish_units(&sh, &failing, header, hash, &err), -1);
    ASSERT_EQ(sh.next_index, 0);
    ASSERT_TRUE(memcmp(sh.chain, chain, sizeof chain) == 0);
    ASSERT_EQ(sh.segments_shipped + sh.commits_shipped + sh.bytes_shipped, 0);
    struct spool_position end;
    ASSERT_EQ(spool_position(sp, &end), 0);
    char key[ARCHIVE_NAME_MAX], path[PATH_MAX];
    ASSERT_EQ(spool_queue_head(sp, 0, key, sizeof key, path, sizeof path), 0);
    spool_free(sp);
}

static void test_snapshot_then_continue(void)
{
    struct spool *sp = open_spool("snapshot");
    struct shipper sh = {.db_name = "app", .spool = sp};
    shipper_use_generation(&sh, GEN);
    sh.next_index = 3;   /* a later snapshot of the generation */
    char key[ARCHIVE_NAME_MAX], name[ARCHIVE_NAME_MAX + 24];
    layout_snapshot_key("app", GEN, 3, T0 + 9, key, sizeof key);
    spool_incoming_name(sp, key, name, sizeof name);
    struct object_writer *w;
    struct tm_error err;
    uint64_t stored;
    ASSERT_EQ(object_writer_open(spool_incoming(sp), name, key, OBJECT_SNAPSHOT, NULL, &w, &err), 0);
    ASSERT_EQ(object_write(w, "x", 1, &err), 0);
    ASSERT_EQ(object_writer_commit(w, NULL, &stored, &err), 0);
    struct spool_position end = {.page_size = 4096, .wal = {1, 2, 3, 4, {5, 6}}};
    ASSERT_EQ(shipper_publish_snapshot(&sh, key, &end, T0 + 9, stored, &err), 0);
    ASSERT_EQ(sh.last_snapshot_ms, T0 + 9);
    ASSERT_EQ(sh.bytes_shipped, stored);
    ASSERT_EQ(sh.next_index, 3);   /* a snapshot does not move the index */
    struct spool_position recorded;
    ASSERT_EQ(spool_position(sp, &recorded), 1);
    ASSERT_EQ(recorded.next_index, 3);
    ASSERT_EQ(recorded.last_snapshot_ms, T0 + 9);
    ASSERT_EQ(recorded.page_size, 4096);
    ASSERT_EQ(recorded.wal.frame, 4);
    ASSERT_TRUE(memcmp(recorded.chain, sh.chain, sizeof sh.chain) == 0);
    struct shipper resumed = {.db_name = "app", .spool = sp};
    shipper_continue(&resumed, &recorded);
    ASSERT_TRUE(strcmp(resumed.generation, GEN) == 0 && resumed.has_generation);
    ASSERT_EQ(resumed.next_index, 3);
    ASSERT_EQ(resumed.last_snapshot_ms, T0 + 9);
    ASSERT_TRUE(memcmp(resumed.chain, sh.chain, sizeof sh.chain) == 0);
    spool_free(sp);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"publisher: a segment is named by the layout, queued, chained and counted", test_publishes_a_segment},
        {"publisher: a body that fails publishes nothing, changes nothing", test_a_failed_body_publishes_nothing},
        {"publisher: a snapshot records the end; a shipper continues from it", test_snapshot_then_continue},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
