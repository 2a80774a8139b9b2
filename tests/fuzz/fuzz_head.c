/* fuzz_head.c - libFuzzer target: a generation's head (common/archive.c
 * "TMHEAD01", envelope kind 'H'). The input's first ARCHIVE_HEAD_BYTES go
 * to head_decode (a decoded head must encode and decode to itself); the
 * whole input is stored as an object at a head key and read by head_read
 * without a key, with the symmetric key and key pair of fuzz_object
 * (the seeds were written for HEAD_KEY with them, so decryption and the
 * payload checks are reached), and once at another generation's head key
 * (the refusal path). A head that reads must name its key's generation. */
#include "../../common/archive.h"
#include "../../common/crypto.h"
#include "../../common/storage/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEN "20261124T001500123Z-9f3a1b2c"
#define HEAD_KEY "db/generations/" GEN "/head"
#define OTHER_KEY "db/generations/20261125T001500123Z-00000002/head"

static struct storage *store;
static struct crypto_keyring *key;

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

/* decode(encode(h)) must be h, field by field. */
static void check_round_trip(const struct archive_head *h)
{
    uint8_t bytes[ARCHIVE_HEAD_BYTES];
    struct archive_head back;
    struct tm_error err;
    head_encode(h, bytes);
    if (head_decode(bytes, &back, &err) != 0 || back.next_index != h->next_index ||
        back.last_commit_ms != h->last_commit_ms || strcmp(back.generation, h->generation) != 0 ||
        memcmp(back.chain, h->chain, sizeof back.chain) != 0 || back.counter != h->counter ||
        back.written_ms != h->written_ms || back.snapshot_ms != h->snapshot_ms ||
        strcmp(back.successor, h->successor) != 0)
        abort();
}

static void store_as(const char *name, const uint8_t *data, size_t size)
{
    struct tm_error err;
    struct storage_writer *w;
    if (storage_write_begin(store, name, &w, &err) != 0)
        abort();
    if (storage_write(w, data, size, &err) != 0 || storage_write_commit(w, &err) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store)
        setup();
    struct tm_error err;
    struct archive_head h;
    if (size >= ARCHIVE_HEAD_BYTES && head_decode(data, &h, &err) == 0)
        check_round_trip(&h);

    store_as(HEAD_KEY, data, size);
    store_as(OTHER_KEY, data, size);
    for (int with_key = 0; with_key < 2; with_key++) {
        const struct crypto_keyring *k = with_key ? key : NULL;
        if (head_read(store, HEAD_KEY, k, &h, &err) == 0) {
            if (strcmp(h.generation, GEN) != 0 || h.predates_binding)
                abort();
            check_round_trip(&h);
        }
        if (head_read(store, OTHER_KEY, k, &h, &err) == 0 &&
            strcmp(h.generation, "20261125T001500123Z-00000002") != 0)
            abort();
    }
    return 0;
}
