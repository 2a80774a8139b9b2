/* stamps.c - prints the stamp (the time the sidecar saw it) of every
 * transaction in segments of a file replica, one Unix-ms time a line, in
 * the order given: the measuring tool of bench/stamp_bound.py (docs/design.md
 * "Commit times"). Usage: stamps KEY-FILE REPLICA-DIR SEGMENT-KEY...
 * Built by stamp_bound.py against build/release/libtidemark.a. */
#include "../common/archive.h"
#include "../common/crypto.h"
#include "../common/storage/storage.h"

#include <inttypes.h>
#include <stdio.h>

static int print_stamp(void *ctx, const struct txn_header *txn, struct tm_error *err)
{
    (void)ctx, (void)err;
    printf("%" PRId64 "\n", txn->time_ms);
    return 0;
}

int main(int argc, char **argv)
{
    struct tm_error err;
    struct crypto_keyring *key = NULL;
    struct storage *st = NULL;
    if (argc < 4) {
        fprintf(stderr, "usage: stamps KEY-FILE REPLICA-DIR SEGMENT-KEY...\n");
        return 2;
    }
    if (crypto_init(&err) != 0 || crypto_keyring_new(&key, &err) != 0 || crypto_keyring_add_file(key, argv[1], &err) != 0 ||
        storage_file_open(argv[2], &st, &err) != 0)
        goto fail;
    for (int i = 3; i < argc; i++) {
        struct segment_visitor visitor = {NULL, print_stamp, NULL, NULL};
        struct segment_header h;
        uint8_t hash[OBJECT_HASH_BYTES];
        if (segment_read(st, argv[i], key, &visitor, &h, hash, &err) != 0)
            goto fail;
    }
    storage_free(st);
    crypto_keyring_free(key);
    return 0;
fail:
    fprintf(stderr, "stamps: %s\n", err.msg);
    return 1;
}
