/* test_object.c - object envelope round trips (encrypted and not), wrong
 * key, tampering, truncation, and the segment payload format. */
#include "harness.h"

#include "../../common/archive.h"
#include "../../common/crypto.h"
#include "../../common/object.h"

#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static struct storage *open_store(void)
{
    struct storage *st = NULL;
    struct tm_error err;
    if (storage_file_open(harness_tmpdir(), &st, &err) != 0)
        fprintf(stderr, "%s\n", err.msg);
    return st;
}

static struct crypto_key *key_from(uint8_t fill)
{
    uint8_t raw[CRYPTO_KEY_BYTES];
    memset(raw, fill, sizeof raw);
    struct crypto_key *key = NULL;
    struct tm_error err;
    crypto_key_from_bytes(raw, &key, &err);
    return key;
}

/* Byte i of the 1000-byte block starting at `done`: compressible runs mixed
 * with varied bytes, the same for writer and checker. */
static uint8_t pattern_byte(size_t done, size_t i)
{
    return (uint8_t)((done + i) % 251 < 100 ? (done + i) % 7 : (done * 31 + i) % 256);
}

/* Writes `len` pseudo-random but compressible bytes as object `name`. */
static int write_object(struct storage *st, const char *name, const struct crypto_key *key,
                        size_t len, uint8_t hash[OBJECT_HASH_BYTES])
{
    struct object_writer *w;
    struct tm_error err;
    if (object_writer_open(st, name, OBJECT_SEGMENT, key, &w, &err) != 0)
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

static int read_object(struct storage *st, const char *name, const struct crypto_key *key,
                       size_t len, uint8_t hash[OBJECT_HASH_BYTES], struct tm_error *err)
{
    struct object_reader *r;
    if (object_reader_open(st, name, OBJECT_SEGMENT, key, &r, err) != 0)
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
    struct crypto_key *key = key_from(7);
    uint8_t written[OBJECT_HASH_BYTES], read_back[OBJECT_HASH_BYTES];
    struct tm_error err;
    ASSERT_EQ(write_object(st, "a/enc.obj", key, 1000000, written), 0);
    ASSERT_EQ(read_object(st, "a/enc.obj", key, 1000000, read_back, &err), 0);
    ASSERT_TRUE(memcmp(written, read_back, sizeof written) == 0);
    crypto_key_free(key);
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
    struct crypto_key *right = key_from(1), *wrong = key_from(2);
    uint8_t hash[OBJECT_HASH_BYTES];
    struct tm_error err;
    ASSERT_EQ(write_object(st, "a/key.obj", right, 5000, hash), 0);
    ASSERT_EQ(read_object(st, "a/key.obj", wrong, 5000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "wrong key");
    ASSERT_EQ(read_object(st, "a/key.obj", NULL, 5000, hash, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "encrypted");
    crypto_key_free(right);
    crypto_key_free(wrong);
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

static void test_tamper_and_truncation(void)
{
    struct storage *st = open_store();
    struct crypto_key *key = key_from(3);
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
    crypto_key_free(key);
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
    struct crypto_key *key = key_from(9);
    char name[ARCHIVE_NAME_MAX];
    uint8_t hash[OBJECT_HASH_BYTES];
    archive_snapshot_key("db1", "20261124T001500123Z-00000001", 0, 1795324542000LL, name, sizeof name);
    ASSERT_EQ(write_object(st, name, key, 10, hash), 0);
    for (int i = 0; i < 3; i++) {
        archive_segment_key("db1", "20261124T001500123Z-00000001", (uint64_t)i, 1795324542100LL + i,
                            1795324542200LL + i, name, sizeof name);
        ASSERT_EQ(write_object(st, name, key, 10, hash), 0);
    }
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
    crypto_key_free(key);
    storage_free(st);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"object: encrypted 1 MB round trip, hash matches", test_round_trip_encrypted},
        {"object: unencrypted round trip", test_round_trip_plain},
        {"object: wrong key and missing key are named", test_wrong_key},
        {"object: tampering and truncation are detected", test_tamper_and_truncation},
        {"archive: segment header round trip", test_segment_header_round_trip},
        {"archive: catalogue from object names", test_catalog_parses_names},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
