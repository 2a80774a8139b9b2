/* test_object.c - object envelope round trips (encrypted and not), wrong
 * key, tampering, truncation, the identity binding, and the segment
 * payload format. */
#include "harness.h"

#include "../../common/archive.h"
#include "../../common/crypto.h"
#include "../../common/object.h"

#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static struct storage *open_store(void)
{
    struct storage *st = NULL;
    struct tm_error err;
    if (storage_file_open(harness_tmpdir(), &st, &err) != 0)
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

/* Byte i of the 1000-byte block starting at `done`: compressible runs mixed
 * with varied bytes, the same for writer and checker. */
static uint8_t pattern_byte(size_t done, size_t i)
{
    return (uint8_t)((done + i) % 251 < 100 ? (done + i) % 7 : (done * 31 + i) % 256);
}

/* Writes `len` pseudo-random but compressible bytes as object `name`,
 * bound to its own name. */
static int write_object(struct storage *st, const char *name, const struct crypto_keyring *key,
                        size_t len, uint8_t hash[OBJECT_HASH_BYTES])
{
    struct object_writer *w;
    struct tm_error err;
    if (object_writer_open(st, name, name, OBJECT_SEGMENT, key, &w, &err) != 0)
        return -1;
    uint8_t block[1000];
    for (size_t done = 0; done < len; done += sizeof block) {
        for (size_t i = 0; i < sizeof block; i++)
            block[i] = pattern_byte(done, i);
        size_t take = len - done < sizeof block ? len - done : sizeof block;
        if (object_write(w, block, take, &err) != 0)
            return -1;
    }
    return object_writer_commit(w, hash, NULL, &err);
}

static int read_object(struct storage *st, const char *name, const struct crypto_keyring *key,
                       size_t len, uint8_t hash[OBJECT_HASH_BYTES], struct tm_error *err)
{
    struct object_reader *r;
    if (object_reader_open(st, name, name, OBJECT_SEGMENT, key, &r, err) != 0)
        return -1;
    uint8_t block[1000];
    int rc = 0;
    for (size_t done = 0; rc == 0 && done < len; done += sizeof block) {
        size_t take = len - done < sizeof block ? len - done : sizeof block;
        rc = object_read(r, block, take, err);
        for (size_t i = 0; rc == 0 && i < take; i++)
            if (block[i] != pattern_byte(done, i))
                rc = tm_error_set(err, "payload byte %zu differs", done + i);
    }
    if (rc == 0)
        rc = object_reader_finish(r, hash, err);
    object_reader_close(r);
    return rc;
}

static void test_round_trip_encrypted(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(7);
    uint8_t written[OBJECT_HASH_BYTES], read_back[OBJECT_HASH_BYTES];
    struct tm_error err;
    ASSERT_EQ(write_object(st, "a/enc.obj", key, 1000000, written), 0);
    ASSERT_EQ(read_object(st, "a/enc.obj", key, 1000000, read_back, &err), 0);
    ASSERT_TRUE(memcmp(written, read_back, sizeof written) == 0);
    crypto_keyring_free(key);
    storage_free(st);
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

/* The sidecar holds the public key only: it writes, it cannot read back;
 * the secret key reads. Two objects sealed to one key differ (fresh data
 * keys) though their payloads are equal. */
static void test_sealed_round_trip(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *sidecar = pair_from(5, 1), *restorer = pair_from(5, 0);
    uint8_t written[OBJECT_HASH_BYTES], read_back[OBJECT_HASH_BYTES];
    struct tm_error err;
    ASSERT_TRUE(crypto_keyring_public_only(sidecar) && !crypto_keyring_public_only(restorer));
    ASSERT_TRUE(memcmp(crypto_keyring_writer_id(sidecar), crypto_keyring_writer_id(restorer),
                       CRYPTO_KEY_ID_BYTES) == 0);
    ASSERT_EQ(write_object(st, "a/sealed1.obj", sidecar, 300000, written), 0);
    ASSERT_EQ(write_object(st, "a/sealed2.obj", sidecar, 300000, read_back), 0);
    ASSERT_EQ(read_object(st, "a/sealed1.obj", restorer, 300000, read_back, &err), 0);
    ASSERT_TRUE(memcmp(written, read_back, sizeof written) == 0);
    ASSERT_EQ(read_object(st, "a/sealed1.obj", sidecar, 300000, read_back, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "public key only");
    ASSERT_STR_CONTAINS(err.hint, "secret key");

    char path1[512], path2[512];
    snprintf(path1, sizeof path1, "%s/a/sealed1.obj", harness_tmpdir());
    snprintf(path2, sizeof path2, "%s/a/sealed2.obj", harness_tmpdir());
    FILE *f1 = fopen(path1, "rb"), *f2 = fopen(path2, "rb");
    uint8_t head1[200], head2[200];
    ASSERT_EQ(fread(head1, 1, sizeof head1, f1), sizeof head1);
    ASSERT_EQ(fread(head2, 1, sizeof head2, f2), sizeof head2);
    fclose(f1);
    fclose(f2);
    ASSERT_EQ(head1[10], CRYPTO_SCHEME_SEALED);
    ASSERT_TRUE(memcmp(head1, head2, 20) == 0);             /* same header and key id */
    ASSERT_EQ(head1[21], strlen("a/sealed1.obj"));          /* then the identity */
    ASSERT_TRUE(memcmp(head1 + 35, head2 + 35, 80) != 0);   /* different sealed data keys */

    /* a damaged sealed data key does not open */
    FILE *fp = fopen(path1, "r+b");
    fseek(fp, 40, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, 40, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    ASSERT_EQ(read_object(st, "a/sealed1.obj", restorer, 300000, read_back, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "does not open");
    crypto_keyring_free(sidecar);
    crypto_keyring_free(restorer);
    storage_free(st);
}

/* Rotation: objects written before and after a key change are read with a
 * keyring holding both keys; with one missing, the error names its id. */
static void test_rotation_and_missing_key(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *old_sym = key_from(11), *new_pub = pair_from(12, 1), *both = pair_from(12, 0);
    uint8_t hash[OBJECT_HASH_BYTES];
    uint8_t old_raw[CRYPTO_KEY_BYTES];
    memset(old_raw, 11, sizeof old_raw);
    struct tm_error err;
    ASSERT_EQ(crypto_keyring_add_bytes(both, old_raw, &err), 0);
    ASSERT_EQ(write_object(st, "a/before.obj", old_sym, 7000, hash), 0);
    ASSERT_EQ(write_object(st, "a/after.obj", new_pub, 7000, hash), 0);
    ASSERT_EQ(read_object(st, "a/before.obj", both, 7000, hash, &err), 0);
    ASSERT_EQ(read_object(st, "a/after.obj", both, 7000, hash, &err), 0);

    char old_id[CRYPTO_KEY_ID_BYTES * 2 + 1], new_id[CRYPTO_KEY_ID_BYTES * 2 + 1];
    crypto_key_id_hex(crypto_keyring_writer_id(old_sym), old_id);
    crypto_key_id_hex(crypto_keyring_writer_id(new_pub), new_id);
    ASSERT_EQ(read_object(st, "a/after.obj", old_sym, 7000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "wrong key");
    ASSERT_STR_CONTAINS(err.msg, new_id);       /* the key needed */
    ASSERT_STR_CONTAINS(err.msg, old_id);       /* the key given */
    ASSERT_STR_CONTAINS(err.msg, "a/after.obj");
    crypto_keyring_free(old_sym);
    crypto_keyring_free(new_pub);
    crypto_keyring_free(both);
    storage_free(st);
}

/* Objects written before envelope version 2 (the payload hash inside the
 * zstd frame) are still read and checked: the committed fuzz seeds are
 * version-1 segments, encrypted with the key 00 01 .. 1f and not. */
static void test_reads_envelope_version_1(void)
{
    struct storage *st = open_store();
    uint8_t raw[CRYPTO_KEY_BYTES];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)i;
    struct crypto_keyring *key = NULL;
    struct tm_error err;
    ASSERT_EQ(crypto_keyring_new(&key, &err), 0);
    ASSERT_EQ(crypto_keyring_add_bytes(key, raw, &err), 0);
    static const char *seeds[] = {"segment-key", "segment-none"};
    for (size_t i = 0; i < 2; i++) {
        char source[512];
        snprintf(source, sizeof source, "tests/fuzz/corpus/fuzz_object/%s", seeds[i]);
        FILE *fp = fopen(source, "rb");
        ASSERT_TRUE(fp != NULL);
        uint8_t bytes[4096];
        size_t len = fread(bytes, 1, sizeof bytes, fp);
        fclose(fp);
        ASSERT_EQ(bytes[8], 1);                       /* envelope version 1 */
        struct storage_writer *w;
        ASSERT_EQ(storage_write_begin(st, "v1/seg", &w, &err), 0);
        ASSERT_EQ(storage_write(w, bytes, len, &err), 0);
        ASSERT_EQ(storage_write_commit(w, &err), 0);
        struct segment_header h;
        uint8_t hash[OBJECT_HASH_BYTES];
        if (segment_read(st, "v1/seg", i == 0 ? key : NULL, NULL, &h, hash, &err) != 0) {
            fprintf(stderr, "  %s: %s\n", seeds[i], err.msg);
            ASSERT_TRUE(0);
        }
        ASSERT_TRUE(h.txn_count > 0);
        bytes[len - 40] ^= 0x01;                      /* damage it: refused */
        ASSERT_EQ(storage_write_begin(st, "v1/seg", &w, &err), 0);
        ASSERT_EQ(storage_write(w, bytes, len, &err), 0);
        ASSERT_EQ(storage_write_commit(w, &err), 0);
        ASSERT_EQ(segment_read(st, "v1/seg", i == 0 ? key : NULL, NULL, &h, hash, &err), -1);
    }
    crypto_keyring_free(key);
    storage_free(st);
}

static void test_round_trip_plain(void)
{
    struct storage *st = open_store();
    uint8_t written[OBJECT_HASH_BYTES], read_back[OBJECT_HASH_BYTES];
    struct tm_error err;
    ASSERT_EQ(write_object(st, "a/plain.obj", NULL, 300000, written), 0);
    ASSERT_EQ(read_object(st, "a/plain.obj", NULL, 300000, read_back, &err), 0);
    ASSERT_TRUE(memcmp(written, read_back, sizeof written) == 0);
    storage_free(st);
}

static void test_wrong_key(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *right = key_from(1), *wrong = key_from(2);
    uint8_t hash[OBJECT_HASH_BYTES];
    struct tm_error err;
    ASSERT_EQ(write_object(st, "a/key.obj", right, 5000, hash), 0);
    ASSERT_EQ(read_object(st, "a/key.obj", wrong, 5000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "wrong key");
    ASSERT_EQ(read_object(st, "a/key.obj", NULL, 5000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "encrypted");
    crypto_keyring_free(right);
    crypto_keyring_free(wrong);
    storage_free(st);
}

static void flip_byte(const char *name, long offset_from_end)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    FILE *fp = fopen(path, "r+b");
    fseek(fp, offset_from_end, SEEK_END);
    int c = fgetc(fp);
    fseek(fp, offset_from_end, SEEK_END);
    fputc(c ^ 0x01, fp);
    fclose(fp);
}

static void truncate_object(const char *name, long bytes)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    struct stat st;
    stat(path, &st);
    if (truncate(path, st.st_size - bytes) != 0)
        perror("truncate");
}

/* An unencrypted object whose zstd frame asks for a 128 MiB window (what
 * zstd allows by default) is refused before anything that big is allocated. */
static void test_hostile_zstd_window(void)
{
    struct storage *st = open_store();
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 27);
    static uint8_t plain[200000], frame[300000];
    memset(plain, 'x', sizeof plain);
    ZSTD_inBuffer in = {plain, sizeof plain, 0};
    ZSTD_outBuffer out = {frame, sizeof frame, 0};
    ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_continue);   /* size unknown: window kept */
    while (ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end) != 0)
        ;
    ZSTD_freeCCtx(cctx);
    uint8_t header[20] = {'T', 'I', 'D', 'E', 'M', 'A', 'R', 'K', 1, 'G', 0, 1};
    struct storage_writer *w;
    struct tm_error err;
    ASSERT_EQ(storage_write_begin(st, "a/bomb.obj", &w, &err), 0);
    ASSERT_EQ(storage_write(w, header, sizeof header, &err), 0);
    ASSERT_EQ(storage_write(w, frame, out.pos, &err), 0);
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    struct object_reader *r;
    ASSERT_EQ(object_reader_open(st, "a/bomb.obj", "a/bomb.obj", OBJECT_SEGMENT, NULL, &r, &err), 0);
    uint8_t buf[100];
    ASSERT_EQ(object_read(r, buf, sizeof buf, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "is corrupt");
    ASSERT_STR_CONTAINS(err.msg, "memory");
    object_reader_close(r);
    storage_free(st);
}

/* Page I of a set of random-looking 4 KiB pages: the same bytes for
 * writer and checker, none compressible on its own. */
static void random_page(uint32_t page, uint8_t out[4096])
{
    uint32_t x = page * 2654435761u + 1;
    for (size_t i = 0; i < 4096; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = (uint8_t)x;
    }
}

enum { PAGES = 512, PASSES = 2 };

/* Stores PASSES passes over PAGES random pages as one object of `kind`;
 * *stored receives its size. */
static void store_page_versions(struct storage *st, const struct crypto_keyring *key, enum object_kind kind,
                                const char *name, uint64_t *stored)
{
    struct object_writer *w;
    struct tm_error err;
    static uint8_t page[4096];
    ASSERT_EQ(object_writer_open(st, name, name, kind, key, &w, &err), 0);
    for (int pass = 0; pass < PASSES; pass++)
        for (uint32_t i = 0; i < PAGES; i++) {
            random_page(i, page);
            ASSERT_EQ(object_write(w, page, sizeof page, &err), 0);
        }
    ASSERT_EQ(object_writer_commit(w, NULL, stored, &err), 0);
}

/* Snapshots hold each page once: they are compressed without the
 * long-distance matching (CPU for nothing there), so the same page
 * versions 2 MiB apart are stored twice. */
static void test_snapshots_without_long_distance_matching(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(5);
    uint64_t stored = 0;
    store_page_versions(st, key, OBJECT_SNAPSHOT, "a/snapshot.obj", &stored);
    ASSERT_PASSING();
    ASSERT_TRUE(stored > (uint64_t)PASSES * PAGES * 4096 * 9 / 10);
    crypto_keyring_free(key);
    storage_free(st);
}

/* A segment holds every version of the pages its transactions changed: a
 * page written again 2 MiB later, beyond level 1's own window (512 KiB),
 * is found by the long-distance matching over the 4 MiB window, so the
 * second pass over 512 random pages costs next to nothing; the object
 * reads back byte for byte (under the readers' 4 MiB window limit). */
static void test_versions_far_apart_compress(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(5);
    struct tm_error err;
    static uint8_t page[4096], back[4096];
    uint64_t stored = 0;
    store_page_versions(st, key, OBJECT_SEGMENT, "a/versions.obj", &stored);
    ASSERT_PASSING();
    uint64_t payload = (uint64_t)PAGES * PASSES * sizeof page;
    fprintf(stderr, "# %llu payload bytes stored in %llu\n", (unsigned long long)payload, (unsigned long long)stored);
    ASSERT_TRUE(stored < payload * 6 / 10);   /* one pass's worth, and a little */
    struct object_reader *r;
    ASSERT_EQ(object_reader_open(st, "a/versions.obj", "a/versions.obj", OBJECT_SEGMENT, key, &r, &err), 0);
    for (int pass = 0; pass < PASSES; pass++)
        for (uint32_t i = 0; i < PAGES; i++) {
            random_page(i, page);
            ASSERT_EQ(object_read(r, back, sizeof back, &err), 0);
            ASSERT_TRUE(memcmp(page, back, sizeof page) == 0);
        }
    ASSERT_EQ(object_reader_finish(r, NULL, &err), 0);
    object_reader_close(r);
    crypto_keyring_free(key);
    storage_free(st);
}

static void test_tamper_and_truncation(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(3);
    uint8_t hash[OBJECT_HASH_BYTES];
    struct tm_error err;
    ASSERT_EQ(write_object(st, "a/t1.obj", key, 200000, hash), 0);
    flip_byte("a/t1.obj", -30);
    ASSERT_EQ(read_object(st, "a/t1.obj", key, 200000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "authentication failed");
    ASSERT_EQ(write_object(st, "a/t2.obj", key, 200000, hash), 0);
    truncate_object("a/t2.obj", 1);
    ASSERT_EQ(read_object(st, "a/t2.obj", key, 200000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "corrupt");
    /* unencrypted: zstd checksum and payload hash catch a flipped byte */
    ASSERT_EQ(write_object(st, "a/t3.obj", NULL, 200000, hash), 0);
    flip_byte("a/t3.obj", -20);
    ASSERT_EQ(read_object(st, "a/t3.obj", NULL, 200000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "corrupt");
    crypto_keyring_free(key);
    storage_free(st);
}

static void test_segment_header_round_trip(void)
{
    struct segment_header h = {.page_size = 4096, .txn_count = 7, .index = 0x1234567890ULL,
                               .first_time_ms = 1795324542123LL, .last_time_ms = 1795324543999LL,
                               .first_frame = 11, .end = {1, 5, 0xdeadbeef, 42, {1, 2}}};
    snprintf(h.generation, sizeof h.generation, "20261124T001500123Z-9f3a1b2c");
    archive_chain_start(h.generation, h.prev_hash);
    uint8_t bytes[ARCHIVE_HEADER_BYTES];
    segment_header_encode(&h, bytes);
    struct segment_header back;
    struct tm_error err;
    ASSERT_EQ(segment_header_decode(bytes, &back, &err), 0);
    ASSERT_EQ(back.index, h.index);
    ASSERT_EQ(back.first_time_ms, h.first_time_ms);
    ASSERT_EQ(back.last_time_ms, h.last_time_ms);
    ASSERT_EQ(back.end.salt2, 0xdeadbeef);
    ASSERT_EQ(back.end.frame, 42);
    ASSERT_EQ(back.first_frame, 11);
    ASSERT_TRUE(strcmp(back.generation, h.generation) == 0);
    ASSERT_TRUE(memcmp(back.prev_hash, h.prev_hash, OBJECT_HASH_BYTES) == 0);
    bytes[0] = 'X';
    ASSERT_EQ(segment_header_decode(bytes, &back, &err), -1);
}

static void test_catalog_parses_names(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(9);
    char name[ARCHIVE_NAME_MAX];
    uint8_t hash[OBJECT_HASH_BYTES];
    layout_snapshot_key("db1", "20261124T001500123Z-00000001", 0, 1795324542000LL, name, sizeof name);
    ASSERT_EQ(write_object(st, name, key, 10, hash), 0);
    for (int i = 0; i < 3; i++) {
        layout_segment_key("db1", "20261124T001500123Z-00000001", (uint64_t)i, 1795324542100LL + i,
                            1795324542200LL + i, name, sizeof name);
        ASSERT_EQ(write_object(st, name, key, 10, hash), 0);
    }
    /* folders that are not generation ids are not part of the archive */
    static const char *strays[] = {"db1/generations/evil/snapshots/0000000000000000-1795324542000.snap",
                                   "db1/generations/20261124T001500123Z-0000000g/snapshots/0000000000000000-1795324542000.snap",
                                   "db1/generations/20261124T001500123Z-00000001x/snapshots/0000000000000000-1795324542000.snap"};
    for (size_t i = 0; i < sizeof strays / sizeof *strays; i++)
        ASSERT_EQ(write_object(st, strays[i], key, 10, hash), 0);
    struct catalog cat;
    struct tm_error err;
    ASSERT_EQ(catalog_load(st, "db1", &cat, &err), 0);
    ASSERT_EQ(cat.generation_count, 1);
    ASSERT_EQ(cat.generations[0].snapshot_count, 1);
    ASSERT_EQ(cat.generations[0].segment_count, 3);
    ASSERT_EQ(cat.generations[0].segments[2].index, 2);
    ASSERT_EQ(cat.generations[0].segments[2].last_ms, 1795324542202LL);
    ASSERT_EQ(cat.generations[0].snapshots[0].time_ms, 1795324542000LL);
    catalog_release(&cat);
    crypto_keyring_free(key);
    storage_free(st);
}

/* The bytes of object `name`, into buf (returns the length). */
static size_t object_bytes(const char *name, uint8_t *buf, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    FILE *fp = fopen(path, "rb");
    size_t len = fp ? fread(buf, 1, size, fp) : 0;
    if (fp)
        fclose(fp);
    return len;
}

static void put_object_bytes(struct storage *st, const char *name, const uint8_t *bytes, size_t len)
{
    struct storage_writer *w;
    struct tm_error err;
    if (storage_write_begin(st, name, &w, &err) != 0 || storage_write(w, bytes, len, &err) != 0 ||
        storage_write_commit(w, &err) != 0)
        fprintf(stderr, "%s\n", err.msg);
}

#define SEG_A "a/generations/20261124T001500123Z-9f3a1b2c/segments/0000000000000001-1795324542000-1795324542000.seg"
#define SEG_B "b/generations/20261124T001500123Z-9f3a1b2c/segments/0000000000000001-1795324542000-1795324542000.seg"
#define SEG_A2 "a/generations/20261124T001500123Z-9f3a1b2c/segments/0000000000000002-1795324542000-1795324542000.seg"

/* An object copied to another database, or to another place of its own
 * database, is refused naming the object, whatever the encryption; with
 * its identity rewritten to match, the additional data (and under the
 * symmetric scheme the per-database key) fails it, and without a key the
 * object hash does (an accident; nothing authenticates). */
static void test_identity_binding(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *sym = key_from(21), *sidecar = pair_from(22, 1), *restorer = pair_from(22, 0);
    const struct crypto_keyring *writers[] = {sym, sidecar, NULL}, *readers[] = {sym, restorer, NULL};
    static uint8_t bytes[400000];
    for (size_t mode = 0; mode < 3; mode++) {
        uint8_t hash[OBJECT_HASH_BYTES];
        struct tm_error err;
        ASSERT_EQ(write_object(st, SEG_A, writers[mode], 200000, hash), 0);
        ASSERT_EQ(read_object(st, SEG_A, readers[mode], 200000, hash, &err), 0);
        size_t len = object_bytes(SEG_A, bytes, sizeof bytes);
        ASSERT_TRUE(len > 100 && len < sizeof bytes);
        ASSERT_EQ(bytes[8], 3);
        ASSERT_EQ((bytes[20] << 8) | bytes[21], strlen(SEG_A));
        ASSERT_TRUE(memcmp(bytes + 22, SEG_A, strlen(SEG_A)) == 0);
        static const char *elsewhere[] = {SEG_B, SEG_A2};
        for (size_t place = 0; place < 2; place++) {
            /* copied as is: refused before any decryption, naming both */
            put_object_bytes(st, elsewhere[place], bytes, len);
            ASSERT_EQ(read_object(st, elsewhere[place], readers[mode], 200000, hash, &err), -1);
            ASSERT_EQ(err.code, TM_ERR_CORRUPT);
            char expected[600];
            snprintf(expected, sizeof expected, "object '%s' belongs to another database or place (it was "
                     "written as '%s')", elsewhere[place], SEG_A);
            ASSERT_STR_CONTAINS(err.msg, expected);
            /* its identity rewritten to the new place (same length) */
            memcpy(bytes + 22, elsewhere[place], strlen(SEG_A));
            put_object_bytes(st, elsewhere[place], bytes, len);
            memcpy(bytes + 22, SEG_A, strlen(SEG_A));
            ASSERT_EQ(read_object(st, elsewhere[place], readers[mode], 200000, hash, &err), -1);
            ASSERT_EQ(err.code, TM_ERR_CORRUPT);
            ASSERT_STR_CONTAINS(err.msg, mode < 2 ? "authentication failed" : "checksum mismatch");
        }
    }
    crypto_keyring_free(sym);
    crypto_keyring_free(sidecar);
    crypto_keyring_free(restorer);
    storage_free(st);
}

/* A local copy (a spool file, a prefetched segment) is read as the key
 * it was written for; objects of envelope versions 1 and 2 are read and
 * said to predate the binding. */
static void test_read_as_and_predating_objects(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(23);
    struct object_writer *w;
    struct object_reader *r;
    struct tm_error err;
    uint8_t payload[10] = "0123456789", back[10];
    ASSERT_EQ(object_writer_open(st, "copy-1", SEG_A, OBJECT_SEGMENT, key, &w, &err), 0);
    ASSERT_EQ(object_write(w, payload, sizeof payload, &err), 0);
    ASSERT_EQ(object_writer_commit(w, NULL, NULL, &err), 0);
    ASSERT_EQ(object_reader_open(st, "copy-1", "copy-1", OBJECT_SEGMENT, key, &r, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "object 'copy-1' belongs to another database or place");
    /* a copy read as another key is named by that key */
    ASSERT_EQ(object_reader_open(st, "copy-1", SEG_B, OBJECT_SEGMENT, key, &r, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "object '" SEG_B "' belongs to another database or place (it was written as '"
                        SEG_A "')");
    ASSERT_EQ(object_reader_open(st, "copy-1", SEG_A, OBJECT_SEGMENT, key, &r, &err), 0);
    ASSERT_EQ(object_reader_predates_binding(r), 0);
    ASSERT_EQ(object_read(r, back, sizeof back, &err), 0);
    ASSERT_EQ(object_reader_finish(r, NULL, &err), 0);
    object_reader_close(r);
    ASSERT_TRUE(memcmp(back, payload, sizeof back) == 0);

    /* the committed version 1 and 2 seeds (key 00 01 .. 1f) */
    uint8_t raw[CRYPTO_KEY_BYTES];
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)i;
    struct crypto_keyring *seed_key = NULL;
    ASSERT_EQ(crypto_keyring_new(&seed_key, &err), 0);
    ASSERT_EQ(crypto_keyring_add_bytes(seed_key, raw, &err), 0);
    static const char *seeds[] = {"segment-key", "segment-v2-key"};
    for (size_t i = 0; i < 2; i++) {
        char source[512];
        snprintf(source, sizeof source, "tests/fuzz/corpus/fuzz_object/%s", seeds[i]);
        FILE *fp = fopen(source, "rb");
        ASSERT_TRUE(fp != NULL);
        static uint8_t bytes[200000];
        size_t len = fread(bytes, 1, sizeof bytes, fp);
        fclose(fp);
        ASSERT_EQ(bytes[8], i + 1);
        put_object_bytes(st, SEG_B, bytes, len);   /* under any name: nothing binds it */
        struct segment_header h;
        if (segment_read(st, SEG_B, seed_key, NULL, &h, NULL, &err) != 0) {
            fprintf(stderr, "  %s: %s\n", seeds[i], err.msg);
            ASSERT_TRUE(0);
        }
        ASSERT_EQ(h.predates_binding, 1);
    }
    struct segment_header h = {0};
    uint8_t seg_payload[ARCHIVE_HEADER_BYTES];
    snprintf(h.generation, sizeof h.generation, "20261124T001500123Z-9f3a1b2c");
    h.page_size = 4096;
    segment_header_encode(&h, seg_payload);
    ASSERT_EQ(object_writer_open(st, SEG_A, SEG_A, OBJECT_SEGMENT, key, &w, &err), 0);
    ASSERT_EQ(object_write(w, seg_payload, sizeof seg_payload, &err), 0);
    ASSERT_EQ(object_writer_commit(w, NULL, NULL, &err), 0);
    h.predates_binding = 1;
    ASSERT_EQ(segment_read(st, SEG_A, key, NULL, &h, NULL, &err), 0);
    ASSERT_EQ(h.predates_binding, 0);
    crypto_keyring_free(seed_key);
    crypto_keyring_free(key);
    storage_free(st);
}

/* The symmetric stream key is derived per database: two databases, two
 * keys, and neither is the key of versions 1 and 2. */
static void test_stream_key_per_database(void)
{
    struct crypto_keyring *key = key_from(24);
    struct crypto_object_key a, a2, b, legacy;
    struct tm_error err;
    ASSERT_EQ(crypto_object_key_new(key, "a", 1, &a, &err), 0);
    ASSERT_EQ(crypto_object_key_new(key, "a", 1, &a2, &err), 0);
    ASSERT_EQ(crypto_object_key_new(key, "b", 1, &b, &err), 0);
    ASSERT_EQ(crypto_object_key_new(key, NULL, 0, &legacy, &err), 0);
    ASSERT_TRUE(memcmp(a.stream_key, a2.stream_key, 32) == 0);
    ASSERT_TRUE(memcmp(a.stream_key, b.stream_key, 32) != 0);
    ASSERT_TRUE(memcmp(a.stream_key, legacy.stream_key, 32) != 0);
    crypto_object_key_wipe(&a);
    crypto_object_key_wipe(&a2);
    crypto_object_key_wipe(&b);
    crypto_object_key_wipe(&legacy);
    crypto_keyring_free(key);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"object: encrypted 1 MB round trip, hash matches", test_round_trip_encrypted},
        {"object: copied to another database or place: refused naming it, every encryption mode",
         test_identity_binding},
        {"object: a local copy is read as its key; versions 1 and 2 predate the binding",
         test_read_as_and_predating_objects},
        {"object: the symmetric stream key is derived per database", test_stream_key_per_database},
        {"object: unencrypted round trip", test_round_trip_plain},
        {"object: envelope version 1 objects are still read and checked", test_reads_envelope_version_1},
        {"object: wrong key and missing key are named", test_wrong_key},
        {"object: sealed to a public key, read only with the secret key", test_sealed_round_trip},
        {"object: key rotation reads both keys; a missing key is named", test_rotation_and_missing_key},
        {"object: tampering and truncation are detected", test_tamper_and_truncation},
        {"object: a zstd frame asking for a 128 MiB window is refused", test_hostile_zstd_window},
        {"object: page versions 2 MiB apart compress to one, and read back", test_versions_far_apart_compress},
        {"object: snapshots are compressed without long-distance matching",
         test_snapshots_without_long_distance_matching},
        {"archive: segment header round trip", test_segment_header_round_trip},
        {"archive: catalogue from object names", test_catalog_parses_names},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
