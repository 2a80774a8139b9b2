/* crypto.h - archive keys: generating, loading, identifying them, and the
 * per-object stream key each archive object is encrypted with.
 *
 * Two schemes, recorded in every object's envelope (object.c):
 *
 *  - symmetric (1): a key file holds 32 random bytes as 64 hex digits
 *    (`tidemark keygen -o FILE`). The object key is derived from it with
 *    crypto_kdf (context "tidemark", subkey 1); whoever can write backups
 *    can also read them.
 *  - sealed (2): a key pair (`tidemark keygen --pair -o FILE` writes FILE,
 *    the secret key, and FILE.pub). The sidecar holds only the public key
 *    (`recipient-file`): every object gets a fresh random 32-byte data key,
 *    sealed to the public key with crypto_box_seal and stored in the
 *    envelope. A stolen sidecar host can write backups but not read them;
 *    restore, verify and drills need the secret key.
 *
 * Since envelope version 3 (object.c) a symmetric stream key is derived
 * per database: from the symmetric object key and the database's key
 * component (the first component of the object's key, names.h), so an
 * object written for one database does not even decrypt as another's.
 * A sealed object's data key is random: the database and place it was
 * written for are bound by the envelope's additional data (object.c).
 *
 * A keyring holds one or more keys. The first key added is the one that
 * encrypts new objects; every key may be used to read: an object's key id
 * picks the key, so keys can be rotated and old backups stay readable with
 * their old key files. Key ids are 8 bytes: a keyed BLAKE2b of a fixed label
 * (symmetric) or a BLAKE2b of the public key (pairs), so a wrong or missing
 * key is named before any decryption is attempted. All secret material
 * lives in sodium_malloc memory and is wiped when freed. */
#ifndef TM_CRYPTO_H
#define TM_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CRYPTO_KEY_BYTES 32
#define CRYPTO_KEY_ID_BYTES 8
#define CRYPTO_SEALED_KEY_BYTES 80            /* 32-byte data key + crypto_box_SEALBYTES */

enum crypto_scheme {
    CRYPTO_SCHEME_SYMMETRIC = 1,
    CRYPTO_SCHEME_SEALED = 2,
};

struct crypto_keyring;

/* The key one object's secretstream runs on, and what its envelope records. */
struct crypto_object_key {
    uint8_t scheme;                              /* enum crypto_scheme */
    uint8_t key_id[CRYPTO_KEY_ID_BYTES];
    uint8_t sealed[CRYPTO_SEALED_KEY_BYTES];     /* sealed scheme only */
    uint8_t *stream_key;                         /* sodium_malloc'd, 32 bytes */
};

/* Must be called once before any other function here. */
int crypto_init(struct tm_error *err);

/* Create `path` (must not exist) with mode 0600 holding a new symmetric key. */
int crypto_keygen(const char *path, struct tm_error *err);

/* Create `path` (secret key, mode 0600) and `path`.pub (public key, mode
 * 0644); neither may exist. key_id_hex (>= 17 bytes) receives the id. */
int crypto_keygen_pair(const char *path, char *key_id_hex, struct tm_error *err);

int crypto_keyring_new(struct crypto_keyring **out, struct tm_error *err);

/* Adds the key in `path`: a symmetric key, a secret key or a public key,
 * recognised by its contents. Files holding secrets must not be readable or
 * writable by group or others. Adding a key already present is a no-op. */
int crypto_keyring_add_file(struct crypto_keyring *kr, const char *path, struct tm_error *err);

/* Adds a symmetric key from 32 raw bytes, or (tests) a key pair from a
 * 32-byte seed. */
int crypto_keyring_add_bytes(struct crypto_keyring *kr, const uint8_t raw[CRYPTO_KEY_BYTES],
                             struct tm_error *err);
int crypto_keyring_add_pair_seed(struct crypto_keyring *kr, const uint8_t seed[CRYPTO_KEY_BYTES],
                                 int public_only, struct tm_error *err);

/* Id of the key that encrypts new objects (the first one added). */
const uint8_t *crypto_keyring_writer_id(const struct crypto_keyring *kr);

/* 1 when no key in the ring can decrypt (only public keys). */
int crypto_keyring_public_only(const struct crypto_keyring *kr);

void crypto_keyring_free(struct crypto_keyring *kr);

/* A new stream key for writing one object with the keyring's first key
 * (for a public key: a fresh data key, sealed into out->sealed), for the
 * database whose key component is `database` (database_len bytes): a
 * symmetric stream key is derived for it (see above). database NULL: the
 * key of envelope versions 1 and 2, the same for every database (tests). */
int crypto_object_key_new(const struct crypto_keyring *kr, const char *database, size_t database_len,
                          struct crypto_object_key *out, struct tm_error *err);

/* The stream key of an object read back: the key with `key_id` must be in
 * the keyring, able to decrypt (a secret key for the sealed scheme), and
 * `sealed` must open. database as for crypto_object_key_new (NULL for an
 * object of envelope version 1 or 2). Errors name the key id needed and
 * the keys there are. */
int crypto_object_key_open(const struct crypto_keyring *kr, uint8_t scheme,
                           const uint8_t key_id[CRYPTO_KEY_ID_BYTES],
                           const uint8_t sealed[CRYPTO_SEALED_KEY_BYTES], const char *database,
                           size_t database_len, struct crypto_object_key *out, struct tm_error *err);

/* Wipes and frees out->stream_key. Safe on a zeroed struct. */
void crypto_object_key_wipe(struct crypto_object_key *key);

/* Hex of a key id, for messages: buf >= 17 bytes. */
void crypto_key_id_hex(const uint8_t id[CRYPTO_KEY_ID_BYTES], char *buf);

#endif
