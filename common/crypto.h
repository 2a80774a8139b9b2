/* crypto.h - the archive key: generating, loading and identifying it.
 *
 * A key file holds 32 random bytes written as 64 hex digits and a newline
 * (`tidemark keygen`). The bytes are never used directly: the object key
 * is derived with crypto_kdf (context "tidemark", subkey 1), and the key
 * id stored in every object header is the first 8 bytes of a keyed
 * BLAKE2b of a fixed label, so a wrong key is recognised before any
 * decryption is attempted. Key material lives in sodium_malloc memory. */
#ifndef TM_CRYPTO_H
#define TM_CRYPTO_H

#include <stdint.h>

#include "error.h"

#define CRYPTO_KEY_BYTES 32
#define CRYPTO_KEY_ID_BYTES 8

struct crypto_key {
    uint8_t *object_key;                  /* sodium_malloc'd, 32 bytes */
    uint8_t key_id[CRYPTO_KEY_ID_BYTES];
};

/* Must be called once before any other function here. */
int crypto_init(struct tm_error *err);

/* Create `path` (must not exist) with mode 0600 holding a new key. */
int crypto_keygen(const char *path, struct tm_error *err);

/* Load a key file. Refuses files readable or writable by group/others.
 * On success *out is a new key owned by the caller (crypto_key_free). */
int crypto_key_load(const char *path, struct crypto_key **out, struct tm_error *err);

/* Build a key from 32 raw bytes (tests). */
int crypto_key_from_bytes(const uint8_t raw[CRYPTO_KEY_BYTES], struct crypto_key **out,
                          struct tm_error *err);

void crypto_key_free(struct crypto_key *key);

/* Hex of a key id, for messages: buf >= 17 bytes. */
void crypto_key_id_hex(const uint8_t id[CRYPTO_KEY_ID_BYTES], char *buf);

#endif
