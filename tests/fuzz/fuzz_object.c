/* fuzz_object.c - libFuzzer target: the object envelope and the segment
 * and snapshot decoders (common/object.c, common/archive.c) on arbitrary
 * bytes stored as an object, read without a key and with a fixed one.
 * Envelope version 3 objects are bound to an identity: the input is
 * stored as "object" and read as that key (the -v3 seeds were written for
 * it, so decryption and the payload are reached) and once as another
 * (the refusal path). */
#include "../../common/archive.h"
#include "../../common/crypto.h"
#include "../../common/storage/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct storage *store;
static struct crypto_keyring *key;

static int ignore_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    (void)ctx, (void)page_number, (void)page, (void)err;
    return 0;
}

static void setup(void)
{
    char dir[] = "/tmp/tidemark-fuzz-XXXXXX";
    struct tm_error err;
    if (!mkdtemp(dir) || storage_file_open(dir, &store, &err) != 0 || crypto_init(&err) != 0)
        abort();
    char path[64];
    snprintf(path, sizeof path, "%s/key", dir);
    FILE *fp = fopen(path, "w");
    fputs("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", fp);
    fclose(fp);
    chmod(path, 0600);
    uint8_t seed[CRYPTO_KEY_BYTES];
    for (size_t i = 0; i < sizeof seed; i++)
        seed[i] = (uint8_t)(0x20 + i);
    /* the symmetric key above, and a key pair for sealed objects */
    if (crypto_keyring_new(&key, &err) != 0 || crypto_keyring_add_file(key, path, &err) != 0 ||
        crypto_keyring_add_pair_seed(key, seed, 0, &err) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store)
        setup();
    struct tm_error err;
    struct storage_writer *w;
    if (storage_write_begin(store, "object", &w, &err) != 0)
        return 0;
    if (storage_write(w, data, size, &err) != 0 || storage_write_commit(w, &err) != 0)
        return 0;
    struct segment_header seg;
    struct snapshot_header snap;
    uint8_t hash[OBJECT_HASH_BYTES];
    struct snapshot_visitor visitor = {NULL, ignore_page, NULL};
    struct delta_visitor delta_visitor = {NULL, ignore_page, NULL};
    struct delta_header delta;
    for (int with_key = 0; with_key < 2; with_key++) {
        const struct crypto_keyring *k = with_key ? key : NULL;
        segment_read(store, "object", k, NULL, &seg, hash, &err);
        snapshot_read(store, "object", k, &visitor, &snap, &err);
        delta_read(store, "object", k, &delta_visitor, &delta, &err);
        segment_read_as(store, "object", "db/generations/G/segments/0", k, NULL, &seg, hash, &err);
    }
    return 0;
}
