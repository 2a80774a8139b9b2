/* test_heads.c - the generations' heads (issue 18, finding 3): the head
 * payload (common/archive.c "TMHEAD01") field by field, head_read's
 * refusals (another generation's or database's key, a payload naming
 * another generation, a truncated head), the head keys of common/layout.c,
 * catalog_check_heads over a real file replica, heads_examine over
 * hand-built catalogues (missing tail, missing generation, rejected head,
 * rollback) and the record of the newest head seen (common/heads.c). */
#include "harness.h"

#include "../../common/archive.h"
#include "../../common/catalog.h"
#include "../../common/crypto.h"
#include "../../common/heads.h"
#include "../../common/layout.h"

#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEN1 "20261124T001500123Z-00000001"
#define GEN2 "20261125T001500123Z-00000002"
#define GEN3 "20261126T001500123Z-00000003"
#define T0 1795324542000LL

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

/* A head of generation gen with every field set to a distinct value. */
static struct archive_head sample_head(const char *gen, uint64_t next_index, uint64_t counter, int64_t written_ms)
{
    struct archive_head h = {.next_index = next_index, .last_commit_ms = T0 + 17, .counter = counter,
                             .written_ms = written_ms, .snapshot_ms = T0 - 5000};
    snprintf(h.generation, sizeof h.generation, "%s", gen);
    for (size_t i = 0; i < sizeof h.chain; i++)
        h.chain[i] = (uint8_t)(0xa0 + i);
    return h;
}

/* Writes `len` bytes of payload as object `name`, bound to `identity`. */
static int put_head_bytes(struct storage *st, const char *name, const char *identity,
                          const struct crypto_keyring *key, const uint8_t *payload, size_t len)
{
    struct object_writer *w;
    struct tm_error err;
    if (object_writer_open(st, name, identity, OBJECT_HEAD, key, &w, &err) != 0 ||
        object_write(w, payload, len, &err) != 0 || object_writer_commit(w, NULL, NULL, &err) != 0) {
        fprintf(stderr, "  put_head_bytes: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int put_head(struct storage *st, const char *name, const struct crypto_keyring *key,
                    const struct archive_head *h)
{
    uint8_t payload[ARCHIVE_HEAD_BYTES];
    head_encode(h, payload);
    return put_head_bytes(st, name, name, key, payload, sizeof payload);
}

/* The raw stored bytes of object `name` (returns the length). */
static size_t stored_bytes(const char *name, uint8_t *buf, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    FILE *fp = fopen(path, "rb");
    size_t len = fp ? fread(buf, 1, size, fp) : 0;
    if (fp)
        fclose(fp);
    return len;
}

static int put_raw(struct storage *st, const char *name, const uint8_t *bytes, size_t len)
{
    struct storage_writer *w;
    struct tm_error err;
    if (storage_write_begin(st, name, &w, &err) != 0 || storage_write(w, bytes, len, &err) != 0 ||
        storage_write_commit(w, &err) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------- payload */

static void test_head_round_trip_every_field(void)
{
    struct archive_head h = sample_head(GEN1, 0x123456789aULL, 0xfedcba9876ULL, T0 + 999);
    snprintf(h.successor, sizeof h.successor, "%s", GEN2);
    uint8_t bytes[ARCHIVE_HEAD_BYTES];
    memset(bytes, 0x55, sizeof bytes);
    head_encode(&h, bytes);
    /* the documented offsets (archive.c, docs/format.md) */
    ASSERT_TRUE(memcmp(bytes, "TMHEAD01", 8) == 0);
    ASSERT_EQ(archive_get_be64(bytes + 8), h.next_index);
    ASSERT_EQ(archive_get_be64(bytes + 16), T0 + 17);
    ASSERT_TRUE(memcmp(bytes + 24, GEN1, strlen(GEN1)) == 0);
    ASSERT_TRUE(memcmp(bytes + 56, h.chain, OBJECT_HASH_BYTES) == 0);
    ASSERT_EQ(archive_get_be64(bytes + 88), h.counter);
    ASSERT_EQ(archive_get_be64(bytes + 96), T0 + 999);
    ASSERT_EQ(archive_get_be64(bytes + 104), T0 - 5000);
    ASSERT_EQ(archive_get_be64(bytes + 112), 0);
    ASSERT_TRUE(memcmp(bytes + 120, GEN2, strlen(GEN2)) == 0);
    for (size_t i = 152; i < ARCHIVE_HEAD_BYTES; i++)
        ASSERT_EQ(bytes[i], 0);
    struct archive_head back;
    memset(&back, 0x77, sizeof back);
    struct tm_error err;
    ASSERT_EQ(head_decode(bytes, &back, &err), 0);
    ASSERT_EQ(back.next_index, h.next_index);
    ASSERT_EQ(back.last_commit_ms, h.last_commit_ms);
    ASSERT_STR_EQ(back.generation, GEN1);
    ASSERT_TRUE(memcmp(back.chain, h.chain, OBJECT_HASH_BYTES) == 0);
    ASSERT_EQ(back.counter, h.counter);
    ASSERT_EQ(back.written_ms, h.written_ms);
    ASSERT_EQ(back.snapshot_ms, h.snapshot_ms);
    ASSERT_STR_EQ(back.successor, GEN2);

    /* the current generation's head: no successor */
    h.successor[0] = '\0';
    head_encode(&h, bytes);
    ASSERT_EQ(head_decode(bytes, &back, &err), 0);
    ASSERT_STR_EQ(back.successor, "");
}

static void test_head_decode_refuses_bad_magic_and_malformed_ids(void)
{
    struct archive_head h = sample_head(GEN1, 10, 3, T0);
    uint8_t bytes[ARCHIVE_HEAD_BYTES];
    head_encode(&h, bytes);
    struct archive_head back;
    struct tm_error err = {0};
    bytes[7] = '2';                                   /* "TMHEAD02" */
    ASSERT_EQ(head_decode(bytes, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    /* a segment header is not a head */
    struct segment_header seg = {.page_size = 4096};
    snprintf(seg.generation, sizeof seg.generation, "%s", GEN1);
    uint8_t seg_bytes[ARCHIVE_HEAD_BYTES] = {0};
    segment_header_encode(&seg, seg_bytes);
    ASSERT_EQ(head_decode(seg_bytes, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    /* generation ids that layout.c never writes are refused */
    snprintf(h.successor, sizeof h.successor, "%s", "../../x");
    head_encode(&h, bytes);
    ASSERT_EQ(head_decode(bytes, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    ASSERT_STR_CONTAINS(err.msg, "malformed generation id");
    snprintf(h.successor, sizeof h.successor, "%s", GEN2);   /* well formed: fine */
    head_encode(&h, bytes);
    ASSERT_EQ(head_decode(bytes, &back, &err), 0);
    snprintf(h.generation, sizeof h.generation, "%s", "not-a-generation");
    head_encode(&h, bytes);
    ASSERT_EQ(head_decode(bytes, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
}

/* ----------------------------------------------------------- head_read */

/* A head written for its key reads back, with every encryption mode. */
static void test_head_read_of_its_own_key(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(31);
    char name[ARCHIVE_NAME_MAX];
    layout_head_key("app", GEN1, name, sizeof name);
    ASSERT_STR_EQ(name, "app/generations/" GEN1 "/head");
    const struct crypto_keyring *keys[] = {key, NULL};
    for (size_t mode = 0; mode < 2; mode++) {
        struct archive_head h = sample_head(GEN1, 42, 7 + mode, T0 + 100);
        ASSERT_EQ(put_head(st, name, keys[mode], &h), 0);
        struct archive_head back;
        memset(&back, 0, sizeof back);
        back.predates_binding = 1;
        struct tm_error err = {0};
        if (head_read(st, name, keys[mode], &back, &err) != 0)
            fprintf(stderr, "  %s\n", err.msg);
        ASSERT_EQ(err.code, 0);
        ASSERT_EQ(back.next_index, 42);
        ASSERT_EQ(back.counter, 7 + mode);
        ASSERT_EQ(back.written_ms, T0 + 100);
        ASSERT_STR_EQ(back.generation, GEN1);
        ASSERT_TRUE(memcmp(back.chain, h.chain, OBJECT_HASH_BYTES) == 0);
        ASSERT_EQ(back.predates_binding, 0);
    }
    /* an object of another kind at the head's key is not a head */
    struct object_writer *w;
    struct tm_error err = {0};
    uint8_t payload[ARCHIVE_HEAD_BYTES];
    struct archive_head h = sample_head(GEN1, 1, 1, T0);
    head_encode(&h, payload);
    ASSERT_EQ(object_writer_open(st, name, name, OBJECT_SEGMENT, key, &w, &err), 0);
    ASSERT_EQ(object_write(w, payload, sizeof payload, &err), 0);
    ASSERT_EQ(object_writer_commit(w, NULL, NULL, &err), 0);
    struct archive_head back;
    ASSERT_EQ(head_read(st, name, key, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    crypto_keyring_free(key);
    storage_free(st);
}

/* Copied as is to another generation's head key, or to another
 * database's: the envelope's identity refuses it, naming both keys. */
static void test_head_read_refuses_a_copy_elsewhere(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(32);
    char a1[ARCHIVE_NAME_MAX], a2[ARCHIVE_NAME_MAX], b1[ARCHIVE_NAME_MAX];
    layout_head_key("a", GEN1, a1, sizeof a1);
    layout_head_key("a", GEN2, a2, sizeof a2);
    layout_head_key("b", GEN1, b1, sizeof b1);
    const struct crypto_keyring *keys[] = {key, NULL};
    for (size_t mode = 0; mode < 2; mode++) {
        struct archive_head h = sample_head(GEN1, 5, 9, T0);
        ASSERT_EQ(put_head(st, a1, keys[mode], &h), 0);
        static uint8_t bytes[4096];
        size_t len = stored_bytes(a1, bytes, sizeof bytes);
        ASSERT_TRUE(len > 0 && len < sizeof bytes);
        const char *elsewhere[] = {a2, b1};
        for (size_t place = 0; place < 2; place++) {
            ASSERT_EQ(put_raw(st, elsewhere[place], bytes, len), 0);
            struct archive_head back;
            struct tm_error err = {0};
            ASSERT_EQ(head_read(st, elsewhere[place], keys[mode], &back, &err), -1);
            ASSERT_EQ(err.code, TM_ERR_CORRUPT);
            char expected[600];
            snprintf(expected, sizeof expected, "object '%s' belongs to another database or place (it was written "
                     "as '%s')", elsewhere[place], a1);
            ASSERT_STR_CONTAINS(err.msg, expected);
        }
    }
    crypto_keyring_free(key);
    storage_free(st);
}

/* A head bound to generation 2's key (so the envelope accepts it) whose
 * payload names generation 1: refused by head_read itself. */
static void test_head_read_refuses_a_payload_of_another_generation(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(33);
    char a2[ARCHIVE_NAME_MAX];
    layout_head_key("a", GEN2, a2, sizeof a2);
    struct archive_head h = sample_head(GEN1, 5, 9, T0);
    ASSERT_EQ(put_head(st, a2, key, &h), 0);
    struct archive_head back;
    struct tm_error err = {0};
    ASSERT_EQ(head_read(st, a2, key, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    ASSERT_STR_CONTAINS(err.msg, "head '" "a/generations/" GEN2 "/head' names generation '" GEN1 "'");
    /* an empty generation field */
    h.generation[0] = '\0';
    ASSERT_EQ(put_head(st, a2, key, &h), 0);
    ASSERT_EQ(head_read(st, a2, key, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    crypto_keyring_free(key);
    storage_free(st);
}

/* A payload shorter than a head, one longer, and a stored object cut
 * short: all refused as corrupt. */
static void test_head_read_refuses_truncated_and_long_heads(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(34);
    char name[ARCHIVE_NAME_MAX];
    layout_head_key("a", GEN1, name, sizeof name);
    struct archive_head h = sample_head(GEN1, 5, 9, T0);
    uint8_t payload[ARCHIVE_HEAD_BYTES + 1] = {0};
    head_encode(&h, payload);
    struct archive_head back;
    struct tm_error err = {0};
    ASSERT_EQ(put_head_bytes(st, name, name, key, payload, 100), 0);
    ASSERT_EQ(head_read(st, name, key, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    ASSERT_EQ(put_head_bytes(st, name, name, key, payload, ARCHIVE_HEAD_BYTES + 1), 0);
    ASSERT_EQ(head_read(st, name, key, &back, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    ASSERT_EQ(put_head(st, name, key, &h), 0);
    ASSERT_EQ(head_read(st, name, key, &back, &err), 0);
    static uint8_t bytes[4096];
    size_t len = stored_bytes(name, bytes, sizeof bytes);
    ASSERT_TRUE(len > 40);
    for (size_t cut = 1; cut < len; cut += 7) {
        ASSERT_EQ(put_raw(st, name, bytes, len - cut), 0);
        ASSERT_EQ(head_read(st, name, key, &back, &err), -1);
        ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    }
    /* a flipped byte anywhere after the identity */
    for (size_t at = 22 + strlen(name); at < len; at += 5) {
        bytes[at] ^= 0x04;
        ASSERT_EQ(put_raw(st, name, bytes, len), 0);
        bytes[at] ^= 0x04;
        ASSERT_EQ(head_read(st, name, key, &back, &err), -1);
        ASSERT_TRUE(err.code == TM_ERR_CORRUPT || err.code == TM_ERR_WRONG_KEY);
    }
    crypto_keyring_free(key);
    storage_free(st);
}

/* The committed fuzz seeds (tests/fuzz/corpus/fuzz_head) are valid heads
 * of "db/generations/20261124T001500123Z-9f3a1b2c/head" under the fuzz
 * target's keys (symmetric 00 01 .. 1f; key pair from seed 20 21 .. 3f),
 * so the fuzzer starts past decryption; a copy elsewhere is refused. */
static void test_fuzz_seeds_are_valid_heads(void)
{
    struct storage *st = open_store();
    uint8_t raw[CRYPTO_KEY_BYTES], seed[CRYPTO_KEY_BYTES];
    for (size_t i = 0; i < sizeof raw; i++) {
        raw[i] = (uint8_t)i;
        seed[i] = (uint8_t)(0x20 + i);
    }
    struct crypto_keyring *key = NULL;
    struct tm_error err = {0};
    ASSERT_EQ(crypto_keyring_new(&key, &err), 0);
    ASSERT_EQ(crypto_keyring_add_bytes(key, raw, &err), 0);
    ASSERT_EQ(crypto_keyring_add_pair_seed(key, seed, 0, &err), 0);
    static const char *seeds[] = {"head-none", "head-sym", "head-sealed", "head-sym-successor"};
    const char *name = "db/generations/20261124T001500123Z-9f3a1b2c/head";
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        char source[512];
        snprintf(source, sizeof source, "tests/fuzz/corpus/fuzz_head/%s", seeds[i]);
        FILE *fp = fopen(source, "rb");
        ASSERT_TRUE(fp != NULL);
        static uint8_t bytes[4096];
        size_t len = fread(bytes, 1, sizeof bytes, fp);
        fclose(fp);
        ASSERT_EQ(bytes[8], 3);                                   /* envelope version 3 */
        ASSERT_EQ(bytes[9], OBJECT_HEAD);
        ASSERT_EQ(put_raw(st, name, bytes, len), 0);
        struct archive_head h;
        if (head_read(st, name, i == 0 ? NULL : key, &h, &err) != 0) {
            fprintf(stderr, "  %s: %s\n", seeds[i], err.msg);
            ASSERT_TRUE(0);
        }
        ASSERT_EQ(h.next_index, 5);
        ASSERT_EQ(h.counter, 12);
        ASSERT_STR_EQ(h.successor, i == 3 ? "20261125T001500123Z-00000002" : "");
        ASSERT_EQ(put_raw(st, "db/generations/20261125T001500123Z-00000002/head", bytes, len), 0);
        ASSERT_EQ(head_read(st, "db/generations/20261125T001500123Z-00000002/head", i == 0 ? NULL : key, &h, &err),
                  -1);
        ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    }
    FILE *fp = fopen("tests/fuzz/corpus/fuzz_head/head-payload", "rb");
    ASSERT_TRUE(fp != NULL);
    uint8_t payload[ARCHIVE_HEAD_BYTES + 1];
    size_t len = fread(payload, 1, sizeof payload, fp);
    fclose(fp);
    ASSERT_EQ(len, ARCHIVE_HEAD_BYTES);
    struct archive_head h;
    ASSERT_EQ(head_decode(payload, &h, &err), 0);
    ASSERT_STR_EQ(h.generation, "20261124T001500123Z-9f3a1b2c");
    crypto_keyring_free(key);
    storage_free(st);
}

/* -------------------------------------------------------------- layout */

static void test_layout_head_keys(void)
{
    char key[ARCHIVE_NAME_MAX];
    layout_head_key("tenants/a b.db", GEN1, key, sizeof key);
    ASSERT_STR_EQ(key, "tenants%2Fa%20b.db/generations/" GEN1 "/head");
    ASSERT_EQ(layout_is_head_of(key, GEN1), 1);
    ASSERT_EQ(layout_is_head_of(key, GEN2), 0);
    ASSERT_EQ(layout_is_head_of("b/generations/" GEN1 "/head", GEN1), 1);   /* of any database */
    /* malformed generation ids: never a head, even when the key agrees */
    static const char *bad[] = {"", "evil", "20261124T001500123Z-0000000g", "20261124T001500123Z-00000001x",
                                "20261124T001500123Z-0000001", "../../x", GEN1 "/head"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char k[ARCHIVE_NAME_MAX];
        snprintf(k, sizeof k, "a/generations/%s/head", bad[i]);
        if (layout_is_head_of(k, bad[i]) != 0) {
            fprintf(stderr, "  accepted generation '%s'\n", bad[i]);
            ASSERT_TRUE(0);
        }
    }
    /* other keys of the generation, and keys too short to hold a database */
    ASSERT_EQ(layout_is_head_of("a/generations/" GEN1 "/heads", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("a/generations/" GEN1 "/head/x", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("a/generations/" GEN1 "/segments/head", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("a/generations/" GEN1 "/", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("/generations/" GEN1 "/head", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("generations/" GEN1 "/head", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("head", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("", GEN1), 0);
    ASSERT_EQ(layout_is_head_of("a/leases/" GEN1 "/head", GEN1), 0);
}

/* ------------------------------------------- catalogue over a replica */

/* catalog_load lists heads; catalog_check_heads reads them: a valid head
 * verifies, garbage and a copy from another generation are rejected with
 * the reader's reason, a generation without one stays ABSENT, and with
 * the wrong key the head is rejected. */
static void test_catalog_check_heads(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *key = key_from(35), *other = key_from(36);
    char name[ARCHIVE_NAME_MAX], h1[ARCHIVE_NAME_MAX], h2[ARCHIVE_NAME_MAX];
    static const char *gens[] = {GEN1, GEN2, GEN3};
    uint8_t filler[10] = {0};
    for (size_t g = 0; g < 3; g++) {
        layout_segment_key("app", gens[g], 0, T0, T0 + 1, name, sizeof name);
        ASSERT_EQ(put_raw(st, name, filler, sizeof filler), 0);
    }
    layout_head_key("app", GEN1, h1, sizeof h1);
    layout_head_key("app", GEN2, h2, sizeof h2);
    struct archive_head h = sample_head(GEN1, 1, 4, T0 + 10);
    ASSERT_EQ(put_head(st, h1, key, &h), 0);
    static uint8_t bytes[4096];
    size_t len = stored_bytes(h1, bytes, sizeof bytes);
    ASSERT_EQ(put_raw(st, h2, bytes, len), 0);            /* generation 1's head copied to generation 2 */

    struct catalog cat;
    struct tm_error err = {0};
    ASSERT_EQ(catalog_load(st, "app", &cat, &err), 0);
    ASSERT_EQ(cat.generation_count, 3);
    ASSERT_EQ(cat.generations[0].head_state, CATALOG_HEAD_LISTED);
    ASSERT_EQ(cat.generations[1].head_state, CATALOG_HEAD_LISTED);
    ASSERT_EQ(cat.generations[2].head_state, CATALOG_HEAD_ABSENT);
    ASSERT_STR_EQ(cat.generations[0].head_key, h1);
    ASSERT_EQ(catalog_check_heads(st, key, &cat, &err), 0);
    ASSERT_EQ(cat.generations[0].head_state, CATALOG_HEAD_VERIFIED);
    ASSERT_TRUE(cat.generations[0].head != NULL);
    ASSERT_EQ(cat.generations[0].head->counter, 4);
    ASSERT_EQ(cat.generations[1].head_state, CATALOG_HEAD_REJECTED);
    ASSERT_TRUE(cat.generations[1].head == NULL);
    ASSERT_STR_CONTAINS(cat.generations[1].head_why, "belongs to another database or place");
    ASSERT_EQ(cat.generations[2].head_state, CATALOG_HEAD_ABSENT);
    /* heads_examine reports the rejected one, and counts the one without a head */
    struct heads_report report;
    heads_examine(&cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_REJECTED);
    ASSERT_STR_EQ(report.findings[0].generation, GEN2);
    ASSERT_STR_CONTAINS(report.findings[0].text, "generation " GEN2 ": its head is not valid here: object '");
    ASSERT_EQ(report.generations_without_head, 1);
    ASSERT_TRUE(report.newest == &cat.generations[0]);
    catalog_release(&cat);

    /* garbage at a head's key */
    ASSERT_EQ(put_raw(st, h2, (const uint8_t *)"not a head", 10), 0);
    ASSERT_EQ(catalog_load(st, "app", &cat, &err), 0);
    ASSERT_EQ(catalog_check_heads(st, key, &cat, &err), 0);
    ASSERT_EQ(cat.generations[0].head_state, CATALOG_HEAD_VERIFIED);
    ASSERT_EQ(cat.generations[1].head_state, CATALOG_HEAD_REJECTED);
    catalog_release(&cat);
    /* the wrong key: the key's error, as for any object (not a finding) */
    ASSERT_EQ(catalog_load(st, "app", &cat, &err), 0);
    ASSERT_EQ(catalog_check_heads(st, other, &cat, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_WRONG_KEY);
    ASSERT_STR_CONTAINS(err.msg, "wrong key");
    catalog_release(&cat);
    crypto_keyring_free(key);
    crypto_keyring_free(other);
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

/* Sealed to a key pair: the sidecar (public key only) sees a well-formed
 * head it cannot read (ENVELOPE_ONLY, no finding); the secret key reads it. */
static void test_catalog_check_heads_sealed(void)
{
    struct storage *st = open_store();
    struct crypto_keyring *sidecar = pair_from(41, 1), *restorer = pair_from(41, 0);
    char name[ARCHIVE_NAME_MAX];
    layout_segment_key("app", GEN1, 0, T0, T0 + 1, name, sizeof name);
    ASSERT_EQ(put_raw(st, name, (const uint8_t *)"x", 1), 0);
    layout_head_key("app", GEN1, name, sizeof name);
    struct archive_head h = sample_head(GEN1, 1, 4, T0 + 10);
    ASSERT_EQ(put_head(st, name, sidecar, &h), 0);
    struct catalog cat;
    struct tm_error err = {0};
    ASSERT_EQ(catalog_load(st, "app", &cat, &err), 0);
    ASSERT_EQ(catalog_check_heads(st, sidecar, &cat, &err), 0);
    ASSERT_EQ(cat.generations[0].head_state, CATALOG_HEAD_ENVELOPE_ONLY);
    ASSERT_TRUE(cat.generations[0].head == NULL);
    struct heads_report report;
    struct heads_seen seen = {.has = 1, .counter = 99, .next_index = 99, .written_ms = T0 + 99999};
    snprintf(seen.generation, sizeof seen.generation, "%s", GEN1);
    heads_examine(&cat, &seen, &report);
    ASSERT_EQ(report.count, 0);
    ASSERT_EQ(report.generations_without_head, 0);
    ASSERT_TRUE(report.newest == NULL);
    ASSERT_EQ(catalog_check_heads(st, restorer, &cat, &err), 0);
    ASSERT_EQ(cat.generations[0].head_state, CATALOG_HEAD_VERIFIED);
    ASSERT_EQ(cat.generations[0].head->counter, 4);
    heads_examine(&cat, &seen, &report);                  /* now it is read: older than the one seen */
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_ROLLED_BACK);
    catalog_release(&cat);
    crypto_keyring_free(sidecar);
    crypto_keyring_free(restorer);
    storage_free(st);
}

/* ------------------------------------------------------ heads_examine
 * Hand-built catalogues: generations with segments [0, segments) (and
 * snapshots), each with a head or not. */

struct fake_archive {
    struct catalog cat;
    struct catalog_generation gens[4];
    struct catalog_segment segments[4][16];
    struct catalog_snapshot snapshots[4][4];
};

/* Generation g of f: id, segments at the given indexes. */
static void fake_generation(struct fake_archive *f, size_t g, const char *id, const uint64_t *indexes, size_t count)
{
    struct catalog_generation *gen = &f->gens[g];
    free(gen->head);
    memset(gen, 0, sizeof *gen);
    snprintf(gen->id, sizeof gen->id, "%s", id);
    gen->segments = f->segments[g];
    gen->snapshots = f->snapshots[g];
    for (size_t i = 0; i < count; i++) {
        f->segments[g][i] = (struct catalog_segment){.index = indexes[i], .first_ms = T0 + (int64_t)indexes[i],
                                                     .last_ms = T0 + (int64_t)indexes[i]};
        layout_segment_key("app", id, indexes[i], T0, T0, f->segments[g][i].key, sizeof f->segments[g][i].key);
    }
    gen->segment_count = count;
    if (f->cat.generation_count < g + 1)
        f->cat.generation_count = g + 1;
    f->cat.generations = f->gens;
}

static void fake_snapshot(struct fake_archive *f, size_t g, uint64_t index, enum catalog_trust trust)
{
    struct catalog_generation *gen = &f->gens[g];
    f->snapshots[g][gen->snapshot_count++] = (struct catalog_snapshot){.index = index, .time_ms = T0, .trust = trust};
}

/* A verified head for generation g (malloc'd, as catalog_check_heads
 * leaves it; fake_release frees it). */
static struct archive_head *fake_head(struct fake_archive *f, size_t g, uint64_t next_index, uint64_t counter,
                                      int64_t written_ms, const char *successor)
{
    struct catalog_generation *gen = &f->gens[g];
    gen->head = malloc(sizeof *gen->head);
    *gen->head = sample_head(gen->id, next_index, counter, written_ms);
    gen->head->last_commit_ms = next_index ? T0 + (int64_t)next_index - 1 : 0;
    gen->head->snapshot_ms = 0;
    snprintf(gen->head->successor, sizeof gen->head->successor, "%s", successor ? successor : "");
    gen->head_state = CATALOG_HEAD_VERIFIED;
    layout_head_key("app", gen->id, gen->head_key, sizeof gen->head_key);
    return gen->head;
}

static void fake_release(struct fake_archive *f)
{
    for (size_t g = 0; g < 4; g++) {
        free(f->gens[g].head);
        f->gens[g].head = NULL;
    }
}

static const uint64_t first5[] = {0, 1, 2, 3, 4};

static void test_examine_complete_archive(void)
{
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 5);
    fake_snapshot(&f, 0, 0, CATALOG_VERIFIED);
    fake_head(&f, 0, 5, 10, T0 + 100, NULL);
    struct heads_report report;
    memset(&report, 0x5a, sizeof report);
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 0);
    ASSERT_EQ(report.generations_without_head, 0);
    ASSERT_TRUE(report.newest == &f.gens[0]);
    /* the listing holding more than the head names (written since): fine */
    f.gens[0].head->next_index = 3;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 0);
    /* a head naming nothing yet (just its snapshot) */
    f.gens[0].head->next_index = 0;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 0);
    fake_release(&f);
}

static void test_examine_missing_tail(void)
{
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 3);              /* 3 and 4 deleted */
    fake_snapshot(&f, 0, 0, CATALOG_VERIFIED);
    fake_head(&f, 0, 5, 10, T0 + 100, NULL);
    struct heads_report report;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_MISSING_TAIL);
    ASSERT_STR_EQ(report.findings[0].generation, GEN1);
    ASSERT_STR_EQ(heads_finding_name(report.findings[0].kind), "missing tail");
    ASSERT_STR_EQ(report.findings[0].text,
                  "generation " GEN1 ": its head (written 2026-11-22T05:15:42.100Z) names 5 segments (last commit "
                  "2026-11-22T05:15:42.004Z), the replica holds 3: segments 3 to 4 are missing");
    ASSERT_TRUE(report.newest == &f.gens[0]);

    /* every segment gone, and the head never saw a commit time */
    f.gens[0].segment_count = 0;
    f.gens[0].head->last_commit_ms = 0;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_STR_CONTAINS(report.findings[0].text, "names 5 segments (last commit unknown), the replica holds 0: "
                        "segments 0 to 4 are missing");
    /* one segment missing at the end only */
    fake_generation(&f, 0, GEN1, first5, 4);
    fake_head(&f, 0, 5, 10, T0 + 100, NULL);
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_STR_CONTAINS(report.findings[0].text, "the replica holds 4: segment 4 is missing");
    fake_release(&f);
}

/* A snapshot at index k holds the state after segment k - 1: it covers
 * the segments before it, unless it was rejected. */
static void test_examine_snapshot_covers_segments_before_it(void)
{
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 0);              /* no segments at all */
    fake_snapshot(&f, 0, 5, CATALOG_VERIFIED);
    fake_head(&f, 0, 5, 10, T0 + 100, NULL);
    struct heads_report report;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 0);
    /* the snapshot at 5 and segments 5, 6 where the head names 8 */
    static const uint64_t later[] = {5, 6};
    fake_generation(&f, 0, GEN1, later, 2);
    fake_snapshot(&f, 0, 5, CATALOG_VERIFIED);
    fake_head(&f, 0, 8, 10, T0 + 100, NULL);
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_STR_CONTAINS(report.findings[0].text, "the replica holds 7: segment 7 is missing");
    /* a snapshot at 4 with segments 0..1 is enough for a head at 4 */
    fake_generation(&f, 0, GEN1, first5, 2);
    fake_snapshot(&f, 0, 4, CATALOG_ENVELOPE_ONLY);
    fake_head(&f, 0, 4, 10, T0 + 100, NULL);
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 0);
    /* a rejected snapshot covers nothing */
    f.gens[0].snapshots[0].trust = CATALOG_REJECTED;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_MISSING_TAIL);
    ASSERT_STR_CONTAINS(report.findings[0].text, "the replica holds 2: segments 2 to 3 are missing");
    fake_release(&f);
}

static void test_examine_missing_generation(void)
{
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 5);
    fake_head(&f, 0, 5, 10, T0 + 100, GEN2);              /* GEN2 followed, and is gone */
    struct heads_report report;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_MISSING_GENERATION);
    ASSERT_STR_EQ(report.findings[0].generation, GEN2);
    ASSERT_STR_EQ(heads_finding_name(report.findings[0].kind), "missing generation");
    ASSERT_STR_EQ(report.findings[0].text, "generation " GEN2 ", which followed " GEN1
                  " (its head, written 2026-11-22T05:15:42.100Z, says so), is missing");
    /* with the successor there (even without a head of its own): nothing */
    fake_generation(&f, 1, GEN2, first5, 1);
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 0);
    ASSERT_EQ(report.generations_without_head, 1);
    /* both a missing tail and a missing successor */
    f.cat.generation_count = 1;
    f.gens[0].segment_count = 2;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 2);
    ASSERT_EQ(report.findings[0].kind, HEADS_MISSING_TAIL);
    ASSERT_EQ(report.findings[1].kind, HEADS_MISSING_GENERATION);
    fake_release(&f);
}

static void test_examine_rejected_and_headless(void)
{
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 5);              /* before heads: objects, no head */
    fake_generation(&f, 1, GEN2, first5, 0);              /* empty: not counted */
    fake_generation(&f, 2, GEN3, first5, 2);
    f.gens[2].head_state = CATALOG_HEAD_REJECTED;
    snprintf(f.gens[2].head_why, sizeof f.gens[2].head_why, "object 'x' is corrupt: authentication failed");
    struct heads_report report;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_REJECTED);
    ASSERT_STR_EQ(report.findings[0].generation, GEN3);
    ASSERT_STR_EQ(report.findings[0].text, "generation " GEN3 ": its head is not valid here: object 'x' is corrupt: "
                  "authentication failed");
    ASSERT_STR_EQ(heads_finding_name(HEADS_REJECTED), "rejected head");
    ASSERT_EQ(report.generations_without_head, 1);
    ASSERT_TRUE(report.newest == NULL);
    /* a generation with a snapshot only counts too; listed/envelope-only heads are neither */
    fake_snapshot(&f, 1, 0, CATALOG_VERIFIED);
    f.gens[2].head_state = CATALOG_HEAD_ENVELOPE_ONLY;
    heads_examine(&f.cat, NULL, &report);
    ASSERT_EQ(report.count, 0);
    ASSERT_EQ(report.generations_without_head, 2);
    fake_release(&f);
}

static struct heads_seen seen_head(const char *gen, uint64_t counter, uint64_t next_index, int64_t written_ms)
{
    struct heads_seen s = {.has = 1, .counter = counter, .next_index = next_index, .written_ms = written_ms};
    snprintf(s.generation, sizeof s.generation, "%s", gen);
    return s;
}

static void test_examine_rolled_back_head(void)
{
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 5);
    fake_head(&f, 0, 3, 10, T0 + 100, NULL);              /* an older copy put back */
    struct heads_seen seen = seen_head(GEN1, 12, 5, T0 + 5100);
    struct heads_report report;
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_ROLLED_BACK);
    ASSERT_STR_EQ(report.findings[0].generation, GEN1);
    ASSERT_STR_EQ(heads_finding_name(HEADS_ROLLED_BACK), "rolled back");
    ASSERT_STR_EQ(report.findings[0].text, "the head of generation " GEN1 " is older than the one this host saw: "
                  "counter 10 and 3 segments, where the head written 2026-11-22T05:15:47.100Z had counter 12 and 5 "
                  "segments");
    /* the counter alone: a head of the same length written before the one seen */
    fake_generation(&f, 0, GEN1, first5, 5);
    fake_head(&f, 0, 5, 11, T0 + 4000, NULL);
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_ROLLED_BACK);
    ASSERT_STR_CONTAINS(report.findings[0].text, "counter 11 and 5 segments, where the head written");
    fake_generation(&f, 0, GEN1, first5, 5);
    fake_head(&f, 0, 3, 10, T0 + 100, NULL);
    /* the same head as seen, or a newer one: nothing */
    seen = seen_head(GEN1, 10, 3, T0 + 100);
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 0);
    seen = seen_head(GEN1, 9, 2, T0 + 50);
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 0);
    /* a seen record that is not `has` is ignored */
    seen = seen_head(GEN1, 99, 99, T0 + 99999);
    seen.has = 0;
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 0);
    fake_release(&f);
}

/* The generation of the head seen is gone: rolled back when no newer head
 * is there, nothing when a newer generation's head is (retention). */
static void test_examine_seen_generation_gone(void)
{
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 5);
    fake_head(&f, 0, 5, 10, T0 + 100, NULL);
    struct heads_seen seen = seen_head(GEN2, 14, 2, T0 + 9000);
    struct heads_report report;
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_ROLLED_BACK);
    ASSERT_STR_EQ(report.findings[0].generation, GEN2);
    ASSERT_STR_EQ(report.findings[0].text, "generation " GEN2 ", whose head (written 2026-11-22T05:15:51.000Z, 2 "
                  "segments) this host saw, is missing");
    /* the generation is there but its head is gone */
    fake_generation(&f, 1, GEN2, first5, 2);
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_ROLLED_BACK);
    ASSERT_STR_EQ(report.findings[0].text, "the head of generation " GEN2 ", whose head (written "
                  "2026-11-22T05:15:51.000Z, 2 segments) this host saw, is gone");
    /* its head rejected: only the rejection is reported */
    f.gens[1].head_state = CATALOG_HEAD_REJECTED;
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_REJECTED);
    /* gone, but a newer head exists (GEN3 followed; retention removed GEN2) */
    f.cat.generation_count = 1;
    fake_generation(&f, 1, GEN3, first5, 1);
    fake_head(&f, 1, 1, 20, T0 + 20000, NULL);
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 0);
    ASSERT_TRUE(report.newest == &f.gens[1]);
    /* a head written at the same time as the one seen is not newer */
    f.gens[1].head->written_ms = T0 + 9000;
    heads_examine(&f.cat, &seen, &report);
    ASSERT_EQ(report.count, 1);
    ASSERT_EQ(report.findings[0].kind, HEADS_ROLLED_BACK);
    fake_release(&f);
}

static void test_examine_keeps_at_most_the_findings_max(void)
{
    struct catalog_generation gens[HEADS_FINDINGS_MAX + 4];
    memset(gens, 0, sizeof gens);
    for (size_t g = 0; g < sizeof gens / sizeof *gens; g++) {
        snprintf(gens[g].id, sizeof gens[g].id, "20261124T001500123Z-%08zx", g);
        gens[g].head_state = CATALOG_HEAD_REJECTED;
    }
    struct catalog cat = {.generations = gens, .generation_count = sizeof gens / sizeof *gens};
    struct heads_report report;
    heads_examine(&cat, NULL, &report);
    ASSERT_EQ(report.count, HEADS_FINDINGS_MAX);
    ASSERT_STR_EQ(report.findings[HEADS_FINDINGS_MAX - 1].generation, "20261124T001500123Z-0000000f");
}

/* ------------------------------------------------------------ seen file */

static void test_seen_path(void)
{
    char path[4096];
    setenv("XDG_STATE_HOME", "/xdg", 1);
    setenv("HOME", "/home/u", 1);
    heads_seen_path("/var/lib/tm", "s3 main", "tenants/a b.db", path, sizeof path);
    ASSERT_STR_EQ(path, "/var/lib/tm/seen-heads/s3%20main/tenants%2Fa%20b.db");
    heads_seen_path(NULL, "s3", "app", path, sizeof path);
    ASSERT_STR_EQ(path, "/xdg/tidemark/seen-heads/s3/app");
    setenv("XDG_STATE_HOME", "relative", 1);              /* not absolute: ignored */
    heads_seen_path(NULL, "s3", "app", path, sizeof path);
    ASSERT_STR_EQ(path, "/home/u/.local/state/tidemark/seen-heads/s3/app");
    unsetenv("XDG_STATE_HOME");
    heads_seen_path(NULL, "s3", "app", path, sizeof path);
    ASSERT_STR_EQ(path, "/home/u/.local/state/tidemark/seen-heads/s3/app");
    unsetenv("HOME");
    heads_seen_path(NULL, "s3", "app", path, sizeof path);
    ASSERT_STR_EQ(path, "/var/lib/tidemark/seen-heads/s3/app");
    /* a '/' in a database name does not make a directory */
    heads_seen_path("/st", "r", "../x", path, sizeof path);
    ASSERT_STR_EQ(path, "/st/seen-heads/r/..%2Fx");
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

static void test_seen_load_missing_and_damaged(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/seen", harness_tmpdir());
    struct heads_seen seen;
    memset(&seen, 0x5a, sizeof seen);
    struct tm_error err = {0};
    ASSERT_EQ(heads_seen_load(path, &seen, &err), 0);
    ASSERT_EQ(seen.has, 0);
    write_text(path, "generation " GEN1 "\ncounter 7\nnext-index 3\nwritten-ms 1795324542100\n");
    ASSERT_EQ(heads_seen_load(path, &seen, &err), 0);
    ASSERT_EQ(seen.has, 1);
    ASSERT_STR_EQ(seen.generation, GEN1);
    ASSERT_EQ(seen.counter, 7);
    ASSERT_EQ(seen.next_index, 3);
    ASSERT_EQ(seen.written_ms, 1795324542100LL);
    static const char *damaged[] = {
        "",
        "garbage\n",
        "generation " GEN1 "\ncounter 7\nnext-index 3\n",                          /* a field missing */
        "generation evil\ncounter 7\nnext-index 3\nwritten-ms 1795324542100\n",    /* not a generation id */
        "generation " GEN1 "\ncounter x\nnext-index 3\nwritten-ms 1795324542100\n",
        "counter 1\ncounter 2\ncounter 3\ncounter 4\n",                               /* one field, four times */
    };
    for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
        write_text(path, damaged[i]);
        memset(&seen, 0x5a, sizeof seen);
        err = (struct tm_error){0};
        if (heads_seen_load(path, &seen, &err) != -1) {
            fprintf(stderr, "  accepted: '%s'\n", damaged[i]);
            ASSERT_TRUE(0);
        }
        ASSERT_EQ(err.code, TM_ERR_CORRUPT);
        ASSERT_STR_CONTAINS(err.msg, "the record of heads seen '");
        ASSERT_STR_CONTAINS(err.msg, "' is damaged");
        ASSERT_EQ(seen.has, 0);
    }
    /* a directory where the file should be: an error, not "none seen" */
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/adir", harness_tmpdir());
    ASSERT_EQ(mkdir(dir, 0700), 0);
    ASSERT_EQ(heads_seen_load(dir, &seen, &err), -1);
}

static void test_seen_record_only_newer(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/state/seen-heads/s3/app", harness_tmpdir());
    struct fake_archive f;
    memset(&f, 0, sizeof f);
    fake_generation(&f, 0, GEN1, first5, 5);
    fake_head(&f, 0, 5, 10, T0 + 100, GEN2);
    fake_generation(&f, 1, GEN2, first5, 2);
    fake_head(&f, 1, 2, 12, T0 + 200, NULL);
    struct heads_seen seen = {0};
    struct tm_error err = {0};
    ASSERT_EQ(heads_seen_record(path, &f.cat, &seen, &err), 0);
    ASSERT_EQ(seen.has, 1);
    ASSERT_STR_EQ(seen.generation, GEN2);
    ASSERT_EQ(seen.counter, 12);
    ASSERT_EQ(seen.next_index, 2);
    ASSERT_EQ(seen.written_ms, T0 + 200);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/state/seen-heads/s3", harness_tmpdir());
    struct stat sb;
    ASSERT_EQ(stat(dir, &sb), 0);
    ASSERT_EQ(sb.st_mode & 0777, 0700);
    struct heads_seen back;
    ASSERT_EQ(heads_seen_load(path, &back, &err), 0);
    ASSERT_EQ(back.has, 1);
    ASSERT_STR_EQ(back.generation, GEN2);
    ASSERT_EQ(back.counter, 12);
    ASSERT_EQ(back.next_index, 2);
    ASSERT_EQ(back.written_ms, T0 + 200);

    /* an older head (rolled back) does not replace the record */
    f.gens[1].head->counter = 11;
    f.gens[1].head->next_index = 1;
    f.gens[1].head->written_ms = T0 + 150;
    ASSERT_EQ(heads_seen_record(path, &f.cat, &back, &err), 0);
    ASSERT_EQ(back.counter, 12);
    struct heads_seen again;
    ASSERT_EQ(heads_seen_load(path, &again, &err), 0);
    ASSERT_EQ(again.counter, 12);
    ASSERT_EQ(again.written_ms, T0 + 200);
    /* the same generation, a larger counter at the same time: newer */
    f.gens[1].head->counter = 13;
    f.gens[1].head->next_index = 4;
    f.gens[1].head->written_ms = T0 + 200;
    ASSERT_EQ(heads_seen_record(path, &f.cat, &back, &err), 0);
    ASSERT_EQ(back.counter, 13);
    ASSERT_EQ(heads_seen_load(path, &again, &err), 0);
    ASSERT_EQ(again.counter, 13);
    ASSERT_EQ(again.next_index, 4);
    /* written later: newer */
    f.gens[1].head->counter = 14;
    f.gens[1].head->written_ms = T0 + 300;
    ASSERT_EQ(heads_seen_record(path, &f.cat, &back, &err), 0);
    ASSERT_EQ(heads_seen_load(path, &again, &err), 0);
    ASSERT_EQ(again.counter, 14);
    ASSERT_EQ(again.written_ms, T0 + 300);
    /* no verified head at all: nothing written */
    char none[1100];
    snprintf(none, sizeof none, "%s/state/none", harness_tmpdir());
    f.gens[0].head_state = CATALOG_HEAD_ABSENT;
    f.gens[1].head_state = CATALOG_HEAD_REJECTED;
    struct heads_seen empty = {0};
    ASSERT_EQ(heads_seen_record(none, &f.cat, &empty, &err), 0);
    ASSERT_EQ(empty.has, 0);
    ASSERT_EQ(access(none, F_OK), -1);
    fake_release(&f);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"head: payload round trip of every field at its documented offset", test_head_round_trip_every_field},
        {"head: bad magic and a snapshot after the end are corrupt",
         test_head_decode_refuses_bad_magic_and_malformed_ids},
        {"head: read back from its own key (key and none); another kind refused", test_head_read_of_its_own_key},
        {"head: a copy at another generation's or database's key is refused",
         test_head_read_refuses_a_copy_elsewhere},
        {"head: a payload naming another generation than its key is refused",
         test_head_read_refuses_a_payload_of_another_generation},
        {"head: truncated, long, cut or flipped heads are refused", test_head_read_refuses_truncated_and_long_heads},
        {"head: the committed fuzz seeds are valid heads of their key", test_fuzz_seeds_are_valid_heads},
        {"layout: head keys and layout_is_head_of", test_layout_head_keys},
        {"catalog: heads listed, verified, rejected (copy, garbage, wrong key)", test_catalog_check_heads},
        {"catalog: a sealed head is envelope-only for the sidecar, read with the secret key",
         test_catalog_check_heads_sealed},
        {"examine: the listing reaches the head: no finding", test_examine_complete_archive},
        {"examine: segments missing at the end, named exactly", test_examine_missing_tail},
        {"examine: a snapshot at k covers segments before k (not when rejected)",
         test_examine_snapshot_covers_segments_before_it},
        {"examine: a head's successor generation missing", test_examine_missing_generation},
        {"examine: rejected heads reported, generations without head counted", test_examine_rejected_and_headless},
        {"examine: a head older than the one seen is rolled back", test_examine_rolled_back_head},
        {"examine: the seen generation gone: rolled back unless a newer head exists",
         test_examine_seen_generation_gone},
        {"examine: at most HEADS_FINDINGS_MAX findings", test_examine_keeps_at_most_the_findings_max},
        {"seen: the file's path (state dir, XDG_STATE_HOME, HOME)", test_seen_path},
        {"seen: a missing file is none seen, a damaged one corrupt", test_seen_load_missing_and_damaged},
        {"seen: only a newer head is recorded, and read back", test_seen_record_only_newer},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
