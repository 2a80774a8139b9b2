/* test_catalog.c - the archive's layout and catalog over a real file
 * replica: keys made by common/layout.c, objects of every kind written by
 * the library (SQLite and Redis headers, encrypted envelopes), the
 * catalog loaded from the listings (names that do not parse ignored),
 * and every object read back by its reader with the fields its name
 * promised. */
#include "harness.h"

#include "../../common/archive.h"
#include "../../common/catalog.h"
#include "../../common/crypto.h"
#include "../../common/drill_record.h"
#include "../../common/layout.h"

#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>

#define DB "tenants/a b.db"
#define DIR "tenants%2Fa%20b.db"
#define GEN1 "20261124T001500123Z-00000001"
#define GEN2 "20261125T001500123Z-00000002"
#define T0 1795324542000LL
#define PAGE 512

static struct storage *open_store(const char *sub)
{
    char root[512];
    snprintf(root, sizeof root, "%s/%s", harness_tmpdir(), sub);
    struct storage *st = NULL;
    struct tm_error err;
    if (storage_file_open(root, &st, &err) != 0)
        fprintf(stderr, "%s\n", err.msg);
    return st;
}

static struct crypto_keyring *key_from(uint8_t fill)
{
    uint8_t raw[CRYPTO_KEY_BYTES];
    memset(raw, fill, sizeof raw);
    struct crypto_keyring *key = NULL;
    struct tm_error err;
    if (crypto_keyring_new(&key, &err) == 0 && crypto_keyring_add_bytes(key, raw, &err) != 0) {
        crypto_keyring_free(key);
        key = NULL;
    }
    return key;
}

/* Stores parts[0..count) as one object; *stored gets its size. */
static int put_object(struct storage *st, const char *key_name, enum object_kind kind,
                      const struct crypto_keyring *key, const void *const *parts, const size_t *lens,
                      size_t count, uint8_t hash[OBJECT_HASH_BYTES], uint64_t *stored)
{
    struct object_writer *w;
    struct tm_error err;
    if (object_writer_open(st, key_name, key_name, kind, key, &w, &err) != 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (object_write(w, parts[i], lens[i], &err) != 0) {
            object_writer_abort(w);
            return -1;
        }
    return object_writer_commit(w, hash, stored, &err);
}

/* A file that is not an object; the catalog must not take it for one. */
static int put_stray(struct storage *st, const char *key)
{
    struct storage_writer *w;
    struct tm_error err;
    if (storage_write_begin(st, key, &w, &err) != 0)
        return -1;
    return storage_write_commit(w, &err);
}

/* ------------------------------------------------------------- layout */

static void test_layout_keys(void)
{
    char key[ARCHIVE_NAME_MAX];
    layout_snapshot_key(DB, GEN1, 0x1f, T0, key, sizeof key);
    ASSERT_TRUE(strcmp(key, DIR "/generations/" GEN1 "/snapshots/000000000000001f-1795324542000.snap") == 0);
    layout_segment_key(DB, GEN1, 2, T0, T0 + 5, key, sizeof key);
    ASSERT_TRUE(strcmp(key, DIR "/generations/" GEN1
                       "/segments/0000000000000002-1795324542000-1795324542005.seg") == 0);
    layout_delta_key("app", GEN1, 4, 0x10, 12, T0, key, sizeof key);
    ASSERT_TRUE(strcmp(key, "app/generations/" GEN1
                       "/deltas/0000000000000004-0000000000000010-0000000000012-1795324542000.delta") == 0);
    layout_lease_key(DB, "h_1", 42, T0, key, sizeof key);
    ASSERT_TRUE(strcmp(key, DIR "/leases/h_1-42-1795324542000.lease") == 0);
    layout_drill_key("app", 123, "s3", key, sizeof key);
    ASSERT_TRUE(strcmp(key, "app/drills/0000000000123-s3.json") == 0);
    layout_area_dir("app", LAYOUT_DRILLS, key, sizeof key);
    ASSERT_TRUE(strcmp(key, "app/drills") == 0);
    ASSERT_TRUE(layout_is_drill_record("0000000000123-s3.json"));
    ASSERT_TRUE(!layout_is_drill_record(".json") && !layout_is_drill_record("x.json.tmp"));
}

static void test_layout_parses_only_its_names(void)
{
    struct layout_name n;
    ASSERT_EQ(layout_parse_leaf(LAYOUT_DELTA, "0000000000000004-0000000000000010-0000000000012-1795324542000.delta",
                                &n), 0);
    ASSERT_EQ(n.index, 4);
    ASSERT_EQ(n.end_index, 16);
    ASSERT_EQ(n.first_ms, 12);
    ASSERT_EQ(n.last_ms, T0);
    ASSERT_EQ(layout_parse_leaf(LAYOUT_SNAPSHOT, "00000000000000ff-1795324542000.snap", &n), 0);
    ASSERT_EQ(n.index, 255);
    ASSERT_EQ(n.first_ms, T0);
    static const struct {
        enum layout_kind kind;
        const char *leaf;
    } refused[] = {
        {LAYOUT_SNAPSHOT, "00000000000000FF-1795324542000.snap"},      /* upper-case hex */
        {LAYOUT_SNAPSHOT, "00000000000000ff-1795324542000.seg"},       /* another kind's suffix */
        {LAYOUT_SNAPSHOT, "00000000000000ff-.snap"},
        {LAYOUT_SNAPSHOT, "0000000000000ff-1795324542000.snap"},       /* 15 digits */
        {LAYOUT_SNAPSHOT, ".tmp.00000000000000ff-1795324542000.snap.1.2"},
        {LAYOUT_SEGMENT, "0000000000000001-1795324542000.seg"},        /* one time only */
        {LAYOUT_SEGMENT, "0000000000000001-1-2.seg.part"},
        {LAYOUT_DELTA, "0000000000000003-0000000000000003-1-2.delta"}, /* covers no segment */
        {LAYOUT_DELTA, "0000000000000003-1-2.delta"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (layout_parse_leaf(refused[i].kind, refused[i].leaf, &n) == 0) {
            fprintf(stderr, "  parsed: %s\n", refused[i].leaf);
            ASSERT_TRUE(0);
        }
    char id[ARCHIVE_GEN_ID_BYTES + 1];
    layout_generation_id_new(T0 + 123, id);
    ASSERT_EQ(strlen(id), 28);
    ASSERT_TRUE(strncmp(id, "20261122T051542123Z-", 20) == 0);
    ASSERT_TRUE(layout_generation_id_ok(id));
    ASSERT_TRUE(!layout_generation_id_ok("..") && !layout_generation_id_ok(GEN1 "x"));
    ASSERT_TRUE(!layout_generation_id_ok("20261124T001500123Z-0000000g"));
}

/* ----------------------------------------------- an archive of every kind */

struct written {
    uint64_t snapshot_size, segment_sizes[3], delta_sizes[3], redis_sizes[2];
};

/* Generation 1 (SQLite): snapshot 0, segments 0-2 of one one-page
 * commit each, deltas [0,2) [1,3) [0,3) (written out of order). */
static int write_sqlite_generation(struct storage *st, const struct crypto_keyring *key, struct written *out)
{
    uint8_t page[PAGE], chain[OBJECT_HASH_BYTES], header[ARCHIVE_DELTA_HEADER_BYTES];
    char name[ARCHIVE_NAME_MAX];
    memset(page, 0x5a, sizeof page);
    archive_chain_start(GEN1, chain);
    struct snapshot_header snap = {.page_size = PAGE, .page_count = 1, .index = 0, .time_ms = T0};
    snprintf(snap.generation, sizeof snap.generation, "%s", GEN1);
    memcpy(snap.chain_hash, chain, sizeof chain);
    snapshot_header_encode(&snap, header);
    layout_snapshot_key(DB, GEN1, 0, T0, name, sizeof name);
    const void *snap_parts[] = {header, page};
    const size_t snap_lens[] = {ARCHIVE_HEADER_BYTES, PAGE};
    if (put_object(st, name, OBJECT_SNAPSHOT, key, snap_parts, snap_lens, 2, NULL, &out->snapshot_size) != 0)
        return -1;
    for (uint64_t i = 0; i < 3; i++) {
        struct segment_header seg = {.page_size = PAGE, .txn_count = 1, .index = i,
                                     .first_time_ms = T0 + 10 * (int64_t)i + 1,
                                     .last_time_ms = T0 + 10 * (int64_t)i + 2};
        snprintf(seg.generation, sizeof seg.generation, "%s", GEN1);
        memcpy(seg.prev_hash, chain, sizeof chain);
        segment_header_encode(&seg, header);
        struct txn_header txn = {seg.first_time_ms, 1, 1};
        uint8_t txn_bytes[ARCHIVE_TXN_HEADER_BYTES], number[4];
        txn_header_encode(&txn, txn_bytes);
        archive_put_be32(number, 1);
        layout_segment_key(DB, GEN1, i, seg.first_time_ms, seg.last_time_ms, name, sizeof name);
        const void *parts[] = {header, txn_bytes, number, page};
        const size_t lens[] = {ARCHIVE_HEADER_BYTES, sizeof txn_bytes, 4, PAGE};
        if (put_object(st, name, OBJECT_SEGMENT, key, parts, lens, 4, chain, &out->segment_sizes[i]) != 0)
            return -1;
    }
    static const uint64_t ranges[3][2] = {{1, 3}, {0, 3}, {0, 2}};
    for (int i = 0; i < 3; i++) {
        struct delta_header d = {.page_size = PAGE, .page_count = 1, .first_index = ranges[i][0],
                                 .end_index = ranges[i][1], .first_time_ms = T0 + 1,
                                 .last_time_ms = T0 + 10 * (int64_t)ranges[i][1] - 8, .db_size = 1, .txn_count = 2};
        snprintf(d.generation, sizeof d.generation, "%s", GEN1);
        delta_header_encode(&d, header);
        uint8_t number[4];
        archive_put_be32(number, 1);
        layout_delta_key(DB, GEN1, d.first_index, d.end_index, d.first_time_ms, d.last_time_ms, name, sizeof name);
        const void *parts[] = {header, number, page};
        const size_t lens[] = {ARCHIVE_DELTA_HEADER_BYTES, 4, PAGE};
        if (put_object(st, name, OBJECT_DELTA, key, parts, lens, 3, NULL, &out->delta_sizes[i]) != 0)
            return -1;
    }
    return 0;
}

/* Generation 2 (Redis): an RDB snapshot and one segment of one unit. */
static int write_redis_generation(struct storage *st, const struct crypto_keyring *key, struct written *out)
{
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES], chunk_len[4], end[4] = {0, 0, 0, 0}, unit_head[12];
    char name[ARCHIVE_NAME_MAX];
    const char *rdb = "REDIS0011-fake", *unit = "*1\r\n$4\r\nPING\r\n";
    struct redis_snapshot_header snap = {.index = 0, .time_ms = T0 + 100, .offset = 77};
    snprintf(snap.generation, sizeof snap.generation, "%s", GEN2);
    snprintf(snap.replid, sizeof snap.replid, "%040d", 9);
    archive_chain_start(GEN2, snap.chain_hash);
    redis_snapshot_header_encode(&snap, header);
    archive_put_be32(chunk_len, (uint32_t)strlen(rdb));
    layout_snapshot_key(DB, GEN2, 0, snap.time_ms, name, sizeof name);
    const void *snap_parts[] = {header, chunk_len, rdb, end};
    const size_t snap_lens[] = {sizeof header, 4, strlen(rdb), 4};
    if (put_object(st, name, OBJECT_SNAPSHOT, key, snap_parts, snap_lens, 4, NULL, &out->redis_sizes[0]) != 0)
        return -1;
    struct redis_segment_header seg = {.unit_count = 1, .index = 0, .first_time_ms = T0 + 101,
                                       .last_time_ms = T0 + 101, .start_offset = 77, .end_offset = 91};
    snprintf(seg.generation, sizeof seg.generation, "%s", GEN2);
    snprintf(seg.replid, sizeof seg.replid, "%s", snap.replid);
    memcpy(seg.prev_hash, snap.chain_hash, OBJECT_HASH_BYTES);
    redis_segment_header_encode(&seg, header);
    archive_put_be64(unit_head, (uint64_t)seg.first_time_ms);
    archive_put_be32(unit_head + 8, (uint32_t)strlen(unit));
    layout_segment_key(DB, GEN2, 0, seg.first_time_ms, seg.last_time_ms, name, sizeof name);
    const void *parts[] = {header, unit_head, unit};
    const size_t lens[] = {sizeof header, sizeof unit_head, strlen(unit)};
    return put_object(st, name, OBJECT_SEGMENT, key, parts, lens, 3, NULL, &out->redis_sizes[1]);
}

/* Names beside the archive that are not part of it. */
static int write_strays(struct storage *st)
{
    static const char *const strays[] = {
        DIR "/generations/evil/snapshots/0000000000000000-1795324542000.snap",
        DIR "/generations/20261124T001500123Z-0000000g/snapshots/0000000000000000-1795324542000.snap",
        DIR "/generations/20261124T001500123Z-00000001x/snapshots/0000000000000000-1795324542000.snap",
        DIR "/generations/" GEN1 "/snapshots/0000000000000001-1795324542000.snap.bak",
        DIR "/generations/" GEN1 "/snapshots/000000000000000A-1795324542000.snap",
        DIR "/generations/" GEN1 "/snapshots/0000000000000007-1795324542000.snap/inside",   /* a folder */
        DIR "/generations/" GEN1 "/segments/0000000000000009-1795324542000.seg",
        DIR "/generations/" GEN1 "/deltas/0000000000000003-0000000000000003-1-2.delta",
        DIR "/generations/" GEN1 "/notes.txt",
        DIR "/generations/20261126T001500123Z-00000003",   /* a file, not a generation folder */
        "app/generations/" GEN1 "/snapshots/0000000000000000-1795324542000.snap",   /* another database */
    };
    for (size_t i = 0; i < sizeof strays / sizeof *strays; i++)
        if (put_stray(st, strays[i]) != 0)
            return -1;
    return 0;
}

static void test_catalog_lists_every_kind(void)
{
    struct storage *st = open_store("every-kind");
    struct crypto_keyring *key = key_from(3);
    struct written w;
    ASSERT_EQ(write_sqlite_generation(st, key, &w), 0);
    ASSERT_EQ(write_redis_generation(st, key, &w), 0);
    ASSERT_EQ(write_strays(st), 0);
    struct catalog cat;
    struct tm_error err;
    ASSERT_EQ(catalog_load(st, DB, &cat, &err), 0);
    ASSERT_EQ(cat.generation_count, 2);
    const struct catalog_generation *g1 = &cat.generations[0], *g2 = &cat.generations[1];
    ASSERT_TRUE(strcmp(g1->id, GEN1) == 0 && strcmp(g2->id, GEN2) == 0);
    ASSERT_EQ(g1->snapshot_count, 1);
    ASSERT_EQ(g1->snapshots[0].index, 0);
    ASSERT_EQ(g1->snapshots[0].time_ms, T0);
    ASSERT_EQ(g1->snapshots[0].size, w.snapshot_size);
    ASSERT_TRUE(strcmp(g1->snapshots[0].key, DIR "/generations/" GEN1 "/snapshots/0000000000000000-1795324542000.snap") == 0);
    ASSERT_EQ(g1->segment_count, 3);
    for (size_t i = 0; i < 3; i++) {
        ASSERT_EQ(g1->segments[i].index, i);
        ASSERT_EQ(g1->segments[i].first_ms, T0 + 10 * (int64_t)i + 1);
        ASSERT_EQ(g1->segments[i].last_ms, T0 + 10 * (int64_t)i + 2);
        ASSERT_EQ(g1->segments[i].size, w.segment_sizes[i]);
    }
    ASSERT_EQ(g1->delta_count, 3);   /* by first index, then end index */
    ASSERT_EQ(g1->deltas[0].first_index, 0);
    ASSERT_EQ(g1->deltas[0].end_index, 2);
    ASSERT_EQ(g1->deltas[0].size, w.delta_sizes[2]);
    ASSERT_EQ(g1->deltas[1].first_index, 0);
    ASSERT_EQ(g1->deltas[1].end_index, 3);
    ASSERT_EQ(g1->deltas[2].first_index, 1);
    ASSERT_EQ(g1->deltas[2].end_index, 3);
    ASSERT_EQ(g1->deltas[2].last_ms, T0 + 22);
    ASSERT_EQ(g2->snapshot_count, 1);
    ASSERT_EQ(g2->snapshots[0].size, w.redis_sizes[0]);
    ASSERT_EQ(g2->segment_count, 1);
    ASSERT_EQ(g2->segments[0].size, w.redis_sizes[1]);
    ASSERT_EQ(g2->delta_count, 0);
    catalog_release(&cat);
    ASSERT_EQ(cat.generation_count, 0);
    crypto_keyring_free(key);
    storage_free(st);
}

static void test_catalog_of_nothing(void)
{
    struct storage *st = open_store("nothing");
    struct catalog cat;
    struct tm_error err;
    ASSERT_EQ(put_stray(st, "other/generations/" GEN1 "/snapshots/0000000000000000-1795324542000.snap"), 0);
    ASSERT_EQ(catalog_load(st, "app", &cat, &err), 0);
    ASSERT_EQ(cat.generation_count, 0);
    catalog_release(&cat);
    storage_free(st);
}

/* ------------------------------------------------ trust: headers checked */

static int put_bytes(struct storage *st, const char *key, const void *data, size_t len)
{
    struct storage_writer *w;
    struct tm_error err;
    if (storage_write_begin(st, key, &w, &err) != 0)
        return -1;
    if (storage_write(w, data, len, &err) != 0) {
        storage_write_abort(w);
        return -1;
    }
    return storage_write_commit(w, &err);
}

static const struct catalog_snapshot *snapshot_named(const struct catalog_generation *gen, const char *leaf)
{
    for (size_t i = 0; i < gen->snapshot_count; i++)
        if (strstr(gen->snapshots[i].key, leaf))
            return &gen->snapshots[i];
    return NULL;
}

static struct crypto_keyring *pair_from(uint8_t fill, int public_only)
{
    uint8_t seed[CRYPTO_KEY_BYTES];
    memset(seed, fill, sizeof seed);
    struct crypto_keyring *keys = NULL;
    struct tm_error err;
    if (crypto_keyring_new(&keys, &err) == 0 && crypto_keyring_add_pair_seed(keys, seed, public_only, &err) != 0) {
        crypto_keyring_free(keys);
        keys = NULL;
    }
    return keys;
}

/* A sidecar with a key pair holds only the public key: it can tell a
 * well-formed sealed envelope (ENVELOPE_ONLY) from junk (REJECTED), and
 * the secret key verifies. */
static void test_check_snapshots_public_key_only(void)
{
    struct storage *st = open_store("trust-pair");
    struct crypto_keyring *sidecar = pair_from(7, 1), *restorer = pair_from(7, 0);
    ASSERT_TRUE(sidecar && restorer);
    struct written w;
    ASSERT_EQ(write_sqlite_generation(st, sidecar, &w), 0);
    ASSERT_EQ(put_bytes(st, DIR "/generations/" GEN1 "/snapshots/0000000000000001-1795324542001.snap", "TIDEMARK", 8), 0);
    struct catalog cat;
    struct tm_error err;
    ASSERT_EQ(catalog_load(st, DB, &cat, &err), 0);
    struct catalog_generation *g1 = &cat.generations[0];
    ASSERT_EQ(catalog_check_snapshots(st, sidecar, 0, &cat, &err), 0);
    ASSERT_EQ(snapshot_named(g1, "0000000000000000-")->trust, CATALOG_ENVELOPE_ONLY);
    ASSERT_EQ(snapshot_named(g1, "0000000000000001-")->trust, CATALOG_REJECTED);
    ASSERT_EQ(catalog_check_snapshots(st, restorer, 0, &cat, &err), 0);
    ASSERT_EQ(snapshot_named(g1, "0000000000000000-")->trust, CATALOG_VERIFIED);
    ASSERT_EQ(snapshot_named(g1, "0000000000000001-")->trust, CATALOG_REJECTED);
    catalog_release(&cat);
    crypto_keyring_free(sidecar);
    crypto_keyring_free(restorer);
    storage_free(st);
}

/* Real snapshots verify (SQLite and Redis); a planted 8-byte file, a real
 * snapshot copied under another name, and any snapshot read with another
 * key are rejected with the reason; the key's owner is not needed to
 * reject junk, only to verify. */
static void test_check_snapshots(void)
{
    struct storage *st = open_store("trust");
    struct crypto_keyring *key = key_from(5), *other = key_from(6);
    struct written w;
    ASSERT_EQ(write_sqlite_generation(st, key, &w), 0);
    ASSERT_EQ(write_redis_generation(st, key, &w), 0);
    const char *real = DIR "/generations/" GEN1 "/snapshots/0000000000000000-1795324542000.snap";
    uint8_t *bytes = NULL;
    size_t len = 0;
    struct tm_error err;
    ASSERT_EQ(storage_read_all(st, real, &bytes, &len, &err), 0);
    ASSERT_EQ(put_bytes(st, DIR "/generations/" GEN1 "/snapshots/0000000000000001-1795324542001.snap", "TIDEMARK", 8), 0);
    ASSERT_EQ(put_bytes(st, DIR "/generations/" GEN1 "/snapshots/0000000000000002-1795324542002.snap", bytes, len), 0);
    free(bytes);
    struct catalog cat;
    ASSERT_EQ(catalog_load(st, DB, &cat, &err), 0);
    struct catalog_generation *g1 = &cat.generations[0], *g2 = &cat.generations[1];
    ASSERT_EQ(g1->snapshot_count, 3);
    ASSERT_EQ(g1->snapshots[0].trust, CATALOG_UNCHECKED);
    for (size_t i = 0; i < g1->snapshot_count; i++)
        ASSERT_EQ(catalog_check_snapshot(st, key, 0, g1->id, &g1->snapshots[i], &err), 0);
    ASSERT_EQ(catalog_check_snapshot(st, key, 1, g2->id, &g2->snapshots[0], &err), 0);
    ASSERT_EQ(snapshot_named(g1, "0000000000000000-")->trust, CATALOG_VERIFIED);
    ASSERT_EQ(g2->snapshots[0].trust, CATALOG_VERIFIED);
    const struct catalog_snapshot *fake = snapshot_named(g1, "0000000000000001-");
    ASSERT_EQ(fake->trust, CATALOG_REJECTED);
    ASSERT_TRUE(strstr(fake->why, "shorter than its header") && strstr(fake->why, fake->key));
    const struct catalog_snapshot *copy = snapshot_named(g1, "0000000000000002-");
    ASSERT_EQ(copy->trust, CATALOG_REJECTED);
    /* the envelope binds its key (object.h): a renamed copy is refused before its header is read */
    ASSERT_TRUE(strstr(copy->why, "belongs to another database or place") && strstr(copy->why, copy->key));
    ASSERT_EQ(catalog_check_snapshot(st, other, 0, g1->id, &g1->snapshots[0], &err), 0);
    ASSERT_EQ(g1->snapshots[0].trust, CATALOG_REJECTED);
    ASSERT_TRUE(strstr(g1->snapshots[0].why, "wrong key") != NULL);
    catalog_release(&cat);
    crypto_keyring_free(key);
    crypto_keyring_free(other);
    storage_free(st);
}

/* ------------------------------------------ reading back what was listed */

static void test_readers_match_the_names(void)
{
    struct storage *st = open_store("read-back");
    struct crypto_keyring *key = key_from(4);
    struct written w;
    ASSERT_EQ(write_sqlite_generation(st, key, &w), 0);
    ASSERT_EQ(write_redis_generation(st, key, &w), 0);
    struct catalog cat;
    struct tm_error err;
    ASSERT_EQ(catalog_load(st, DB, &cat, &err), 0);
    ASSERT_EQ(cat.generation_count, 2);
    const struct catalog_generation *g1 = &cat.generations[0], *g2 = &cat.generations[1];
    struct snapshot_header snap;
    ASSERT_EQ(snapshot_read(st, g1->snapshots[0].key, key, NULL, &snap, &err), 0);
    ASSERT_EQ(snap.time_ms, g1->snapshots[0].time_ms);
    ASSERT_EQ(snap.page_size, PAGE);
    uint8_t chain[OBJECT_HASH_BYTES];
    memcpy(chain, snap.chain_hash, sizeof chain);
    for (size_t i = 0; i < g1->segment_count; i++) {
        struct segment_header seg;
        uint8_t hash[OBJECT_HASH_BYTES];
        ASSERT_EQ(segment_read(st, g1->segments[i].key, key, NULL, &seg, hash, &err), 0);
        ASSERT_EQ(seg.index, g1->segments[i].index);
        ASSERT_EQ(seg.last_time_ms, g1->segments[i].last_ms);
        ASSERT_EQ(seg.end.valid, 1);
        ASSERT_TRUE(memcmp(seg.prev_hash, chain, sizeof chain) == 0);
        memcpy(chain, hash, sizeof chain);
    }
    for (size_t i = 0; i < g1->delta_count; i++) {
        struct delta_header d;
        ASSERT_EQ(delta_read(st, g1->deltas[i].key, key, NULL, &d, &err), 0);
        ASSERT_EQ(d.first_index, g1->deltas[i].first_index);
        ASSERT_EQ(d.end_index, g1->deltas[i].end_index);
    }
    struct redis_snapshot_header rs;
    ASSERT_EQ(redis_snapshot_read(st, g2->snapshots[0].key, key, NULL, &rs, &err), 0);
    ASSERT_EQ(rs.offset, 77);
    ASSERT_EQ(rs.time_ms, g2->snapshots[0].time_ms);
    struct redis_segment_header rseg;
    ASSERT_EQ(redis_segment_read(st, g2->segments[0].key, key, NULL, &rseg, NULL, &err), 0);
    ASSERT_EQ(rseg.end_offset, 91);
    ASSERT_EQ(rseg.unit_count, 1);
    ASSERT_TRUE(strcmp(rseg.replid, rs.replid) == 0);
    /* a segment read as a snapshot: the envelope's kind refuses it */
    ASSERT_EQ(snapshot_read(st, g1->segments[0].key, key, NULL, &snap, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_CORRUPT);
    /* an SQLite segment read as a Redis one: the payload's magic refuses it */
    ASSERT_EQ(redis_segment_read(st, g1->segments[0].key, key, NULL, &rseg, NULL, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_CORRUPT);
    char expected[600];
    snprintf(expected, sizeof expected, "object '%s': not a Redis segment payload (bad magic)", g1->segments[0].key);
    ASSERT_STR_EQ(err.msg, expected);
    ASSERT_EQ(segment_read(st, DIR "/generations/" GEN1 "/segments/gone.seg", key, NULL, &(struct segment_header){0},
                           NULL, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
    catalog_release(&cat);
    crypto_keyring_free(key);
    storage_free(st);
}

/* The header bytes are the documented format (docs/format.md): a few
 * fields at their offsets, so that a table edit cannot move them. */
static void test_header_bytes_are_the_format(void)
{
    struct segment_header seg = {.page_size = 4096, .txn_count = 3, .index = 0x0102030405060708ULL,
                                 .first_time_ms = -1, .end = {1, 0xa1a2a3a4, 0xb1b2b3b4, 9, {0xc1c2c3c4, 5}}};
    snprintf(seg.generation, sizeof seg.generation, "%s", GEN1);
    uint8_t bytes[ARCHIVE_DELTA_HEADER_BYTES];
    segment_header_encode(&seg, bytes);
    ASSERT_TRUE(memcmp(bytes, "TMSEGMT1\0\0\x10\0\0\0\0\x03\x01\x02\x03\x04\x05\x06\x07\x08", 20) == 0);
    ASSERT_EQ(archive_get_be64(bytes + 24), UINT64_MAX);
    ASSERT_TRUE(memcmp(bytes + 40, GEN1, 28) == 0 && bytes[68] == 0 && bytes[71] == 0);
    ASSERT_EQ(archive_get_be32(bytes + 104), 0xa1a2a3a4);
    ASSERT_EQ(archive_get_be32(bytes + 120), 0xc1c2c3c4);
    struct redis_segment_header rseg = {.unit_count = 2, .start_offset = 5, .end_offset = 0x1122334455667788ULL};
    snprintf(rseg.replid, sizeof rseg.replid, "%s", "abc");
    redis_segment_header_encode(&rseg, bytes);
    ASSERT_TRUE(memcmp(bytes, "TMRSEGM1\0\0\0\x02\0\0\0\0", 16) == 0);
    ASSERT_TRUE(memcmp(bytes + 104, "abc\0", 4) == 0);
    ASSERT_EQ(archive_get_be64(bytes + 152), 0x1122334455667788ULL);
    for (size_t i = 160; i < ARCHIVE_REDIS_HEADER_BYTES; i++)
        ASSERT_EQ(bytes[i], 0);
    struct delta_header delta = {.page_size = 1000};
    struct tm_error err;
    delta_header_encode(&delta, bytes);
    ASSERT_EQ(delta_header_decode(bytes, &delta, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_CORRUPT);
    ASSERT_TRUE(strcmp(err.msg, "invalid page size 1000 in delta header") == 0);
}

/* -------------------------------------------------------- drill records */

static void test_drill_record_round_trip(void)
{
    struct drill_record rec = {.started_ms = T0, .db = "tenants/a \"b\".db", .replica = "s3", .ok = 1, .rto_ms = 520,
                               .rpo_ms = 1300, .point_ms = T0 - 1300, .check_sql = "select 1",
                               .check_result = "1", .error = ""};
    char *text = drill_record_format(&rec);
    ASSERT_TRUE(text != NULL);
    ASSERT_TRUE(strcmp(text, "{\"time\": \"2026-11-22T05:15:42.000Z\", \"db\": \"tenants/a \\\"b\\\".db\", "
                       "\"replica\": \"s3\", \"ok\": true, \"rto_ms\": 520, \"rpo_ms\": 1300, "
                       "\"point\": \"2026-11-22T05:15:40.700Z\", \"check_sql\": \"select 1\", "
                       "\"check_result\": \"1\"}") == 0);
    struct drill_summary s;
    struct tm_error err;
    ASSERT_EQ(drill_record_parse(text, &s, &err), 0);
    ASSERT_TRUE(strcmp(s.time, "2026-11-22T05:15:42.000Z") == 0);
    ASSERT_EQ(s.ok, 1);
    ASSERT_EQ(s.rto_ms, 520);
    ASSERT_EQ(s.rpo_ms, 1300);
    free(text);
    /* a failed drill restored nothing: no rpo_ms; its error cannot pass for a field */
    rec = (struct drill_record){.started_ms = T0, .db = "app", .replica = "r", .rto_ms = 7,
                                .error = "\"rpo_ms\": 5, \"ok\": true"};
    text = drill_record_format(&rec);
    ASSERT_EQ(drill_record_parse(text, &s, &err), 0);
    ASSERT_EQ(s.ok, 0);
    ASSERT_EQ(s.rto_ms, 7);
    ASSERT_EQ(s.rpo_ms, -1);
    free(text);
}

/* A drill to staging: where it was published, served_ms, how `after`
 * ended; written only when they happened, read back, and written again
 * from the parsed fields (list --json). */
static void test_drill_record_staging_fields(void)
{
    struct drill_record rec = {.started_ms = T0, .db = "app", .replica = "file", .ok = 0, .rto_ms = 500,
                               .rpo_ms = 1300, .point_ms = T0 - 1300, .published = "/srv/staging/app.db",
                               .served_ms = 610, .after = "exit 1", .after_ms = 1200,
                               .error = "after: './smoke' failed with exit status 1"};
    char *text = drill_record_format(&rec);
    ASSERT_TRUE(text != NULL);
    ASSERT_TRUE(strcmp(text, "{\"time\": \"2026-11-22T05:15:42.000Z\", \"db\": \"app\", \"replica\": \"file\", "
                       "\"ok\": false, \"rto_ms\": 500, \"rpo_ms\": 1300, \"point\": \"2026-11-22T05:15:40.700Z\", "
                       "\"published\": \"/srv/staging/app.db\", \"served_ms\": 610, \"after\": \"exit 1\", "
                       "\"after_ms\": 1200, \"error\": \"after: './smoke' failed with exit status 1\"}") == 0);
    struct drill_summary s;
    struct tm_error err;
    ASSERT_EQ(drill_record_parse(text, &s, &err), 0);
    free(text);
    ASSERT_TRUE(strcmp(s.published, "/srv/staging/app.db") == 0 && strcmp(s.after, "exit 1") == 0);
    ASSERT_EQ(s.served_ms, 610);
    ASSERT_EQ(s.after_ms, 1200);
    char *json = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&json, &len);
    drill_summary_write_json(&s, fp);
    fclose(fp);
    ASSERT_TRUE(strcmp(json, "{\"time\": \"2026-11-22T05:15:42.000Z\", \"ok\": false, \"rto_ms\": 500, "
                       "\"rpo_ms\": 1300, \"point\": \"2026-11-22T05:15:40.700Z\", \"published\": "
                       "\"/srv/staging/app.db\", \"served_ms\": 610, \"after\": \"exit 1\", \"after_ms\": 1200, "
                       "\"error\": \"after: './smoke' failed with exit status 1\"}") == 0);
    free(json);
    /* nothing published, after not run: neither written, both absent when read */
    rec = (struct drill_record){.started_ms = T0, .db = "app", .replica = "r", .ok = 1, .rto_ms = 7,
                                .published = "", .served_ms = 99, .after = NULL, .after_ms = 5};
    text = drill_record_format(&rec);
    ASSERT_TRUE(strstr(text, "published") == NULL && strstr(text, "served_ms") == NULL &&
                strstr(text, "after") == NULL);
    ASSERT_EQ(drill_record_parse(text, &s, &err), 0);
    free(text);
    ASSERT_TRUE(s.published[0] == '\0' && s.after[0] == '\0');
    ASSERT_EQ(s.served_ms, -1);
    ASSERT_EQ(s.after_ms, -1);
    /* a planted over-long value is cut to the field, never past it */
    char planted[2000];
    snprintf(planted, sizeof planted, "{\"published\": \"%0900d\", \"after\": \"%0100d\"}", 0, 0);
    ASSERT_EQ(drill_record_parse(planted, &s, &err), 0);
    ASSERT_EQ(strlen(s.published), sizeof s.published - 1);
    ASSERT_EQ(strlen(s.after), sizeof s.after - 1);
}

static void test_drill_record_parser_takes_any_spacing(void)
{
    struct drill_summary s;
    struct tm_error err;
    /* `drill --json` prints an array; the first record counts */
    ASSERT_EQ(drill_record_parse("[{\"time\":\"t1\",\"ok\":false,\"rto_ms\":1,\"rpo_ms\":2},\n{\"rto_ms\": 9}]\n", &s,
                                 &err), 0);
    ASSERT_TRUE(strcmp(s.time, "t1") == 0);
    ASSERT_EQ(s.ok, 0);
    ASSERT_EQ(s.rto_ms, 1);
    ASSERT_EQ(s.rpo_ms, 2);
    ASSERT_EQ(drill_record_parse(" {\n \"rpo_ms\" :\t30 , \"x\": null, \"ok\" : true, \"n\": -1.5e3 } ", &s, &err), 0);
    ASSERT_EQ(s.rpo_ms, 30);
    ASSERT_EQ(s.ok, 1);
    ASSERT_EQ(s.rto_ms, -1);
    ASSERT_TRUE(strcmp(s.time, "?") == 0);
    ASSERT_EQ(drill_record_parse("{\"time\": \"\\u0041\\u00e9\"}", &s, &err), 0);
    ASSERT_TRUE(strcmp(s.time, "A\xc3\xa9") == 0);
    static const char *const malformed[] = {"", "[]", "{\"rto_ms\": 5", "{\"rto_ms\" 5}", "{\"a\": \"open}",
                                            "{\"a\": [1]}", "{\"a\": \"\\x\"}", "null"};
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        ASSERT_EQ(drill_record_parse(malformed[i], &s, &err), -1);
        ASSERT_EQ(tm_error_code(&err), TM_ERR_CORRUPT);
    }
    ASSERT_EQ(drill_record_parse("{\"rto_ms\": 5, oops}", &s, &err), -1);
    ASSERT_EQ(s.rto_ms, 5);   /* what was read before the fault is kept */
    ASSERT_EQ(drill_record_parse("{\"rto_ms\": 5,}", &s, &err), -1);
}

/* A restore's phases (a nested object) and the bytes it read: written,
 * and every member after the nested object still read; a planted record
 * nested deeper than a record ever is refuses to parse, without
 * recursing for ever. */
static void test_drill_record_phases_and_read_bytes(void)
{
    struct drill_phases phases = {.fetch_ms = 1, .decode_ms = 2, .write_ms = 3, .fsync_ms = 4, .check_ms = 5,
                                  .total_ms = 15};
    struct drill_record rec = {.started_ms = T0, .db = "app", .replica = "file", .ok = 1, .rto_ms = 20,
                               .rpo_ms = 1300, .point_ms = T0 - 1300, .phases = &phases, .read_bytes = 123456789};
    char *text = drill_record_format(&rec);
    ASSERT_TRUE(text != NULL);
    ASSERT_STR_CONTAINS(text, "\"read_bytes\": 123456789, \"phases\": {\"fetch_ms\": 1, \"decrypt_decompress_ms\": 2, "
                              "\"write_ms\": 3, \"fsync_ms\": 4, \"check_ms\": 5, \"total_ms\": 15}}");
    struct drill_summary s;
    struct tm_error err;
    ASSERT_EQ(drill_record_parse(text, &s, &err), 0);
    free(text);
    ASSERT_EQ(s.read_bytes, 123456789);
    ASSERT_EQ(s.rto_ms, 20);
    ASSERT_EQ(drill_record_parse("{\"phases\": {\"total_ms\": 15, \"rto_ms\": 9}, \"rto_ms\": 20}", &s, &err), 0);
    ASSERT_EQ(s.rto_ms, 20);   /* the nested member is not the record's */
    ASSERT_EQ(s.read_bytes, -1);
    ASSERT_EQ(drill_record_parse("{\"a\": {\"b\": {\"c\": {\"d\": {}}}}, \"rto_ms\": 3}", &s, &err), 0);
    ASSERT_EQ(s.rto_ms, 3);
    ASSERT_EQ(drill_record_parse("{\"a\": {\"b\": {\"c\": {\"d\": {\"e\": {}}}}}}", &s, &err), -1);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"layout: every key, escaped database names", test_layout_keys},
        {"drill record: phases and read bytes", test_drill_record_phases_and_read_bytes},
        {"layout: parses only the names it writes", test_layout_parses_only_its_names},
        {"catalog: every kind of two generations; strays ignored", test_catalog_lists_every_kind},
        {"catalog: a database with no archive has no generation", test_catalog_of_nothing},
        {"catalog: each object read back matches its name and chain", test_readers_match_the_names},
        {"catalog: snapshot headers verified with the key; planted, renamed, foreign ones rejected",
         test_check_snapshots},
        {"catalog: with only the public key, sealed envelopes are told from junk; the secret key verifies",
         test_check_snapshots_public_key_only},
        {"format: header bytes at their documented offsets", test_header_bytes_are_the_format},
        {"drill record: written and read back; an error text is not a field", test_drill_record_round_trip},
        {"drill record: any spacing, arrays, escapes; malformed text refused", test_drill_record_parser_takes_any_spacing},
        {"drill record: published, served_ms, after and after_ms, only when they happened", test_drill_record_staging_fields},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
