/* crypto.c - archive keys and per-object stream keys (see crypto.h for the
 * two schemes). All primitives come from libsodium; this file only decides
 * how keys are stored, identified and derived.
 *
 * Key files (one line, then a newline):
 *
 *   symmetric   64 hex digits                              mode 0600
 *   secret      "tidemark-secret-key-v1 " + 64 hex digits  mode 0600
 *   public      "tidemark-public-key-v1 " + 64 hex digits  any mode
 *
 * Symmetric: object key = crypto_kdf_derive_from_key(32, subkey 1,
 * "tidemark", raw); the stream key of an object of envelope version 3 is
 * BLAKE2b-256(message = "tidemark database key v3" || 0x00 || DB,
 * key = object key), DB the database's key component (its escaped name);
 * versions 1 and 2 used the object key itself. Key id = BLAKE2b-128(message "tidemark key id v1",
 * key = raw)[0..8]. Pairs are X25519 (crypto_box); key id =
 * BLAKE2b-128("tidemark recipient id v1" || public key)[0..8]; a sealed
 * object's data key is crypto_box_seal(data key, public key). */
#include "crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KDF_CONTEXT "tidemark"
#define KDF_OBJECT_SUBKEY 1
#define DATABASE_KEY_LABEL "tidemark database key v3"
#define KEY_ID_LABEL "tidemark key id v1"
#define RECIPIENT_ID_LABEL "tidemark recipient id v1"
#define SECRET_PREFIX "tidemark-secret-key-v1 "
#define PUBLIC_PREFIX "tidemark-public-key-v1 "
#define STREAM_KEY_BYTES crypto_secretstream_xchacha20poly1305_KEYBYTES

_Static_assert(CRYPTO_SEALED_KEY_BYTES == STREAM_KEY_BYTES + crypto_box_SEALBYTES,
               "sealed data key size");
_Static_assert(crypto_box_PUBLICKEYBYTES == CRYPTO_KEY_BYTES &&
               crypto_box_SECRETKEYBYTES == CRYPTO_KEY_BYTES, "X25519 key sizes");

enum key_kind { KEY_SYMMETRIC, KEY_SECRET, KEY_PUBLIC };

struct key_entry {
    enum key_kind kind;
    uint8_t id[CRYPTO_KEY_ID_BYTES];
    uint8_t *secret;                       /* sodium_malloc'd: object key or X25519 secret */
    uint8_t public_key[CRYPTO_KEY_BYTES];  /* pairs only */
    char source[256];                      /* file it came from, for messages */
};

struct crypto_keyring {
    struct key_entry *entries;
    size_t count;
};

int crypto_init(struct tm_error *err)
{
    if (sodium_init() < 0)
        return tm_error_set(err, "libsodium failed to initialise");
    return 0;
}

/* ------------------------------------------------------------ key files */

/* Writes `text` to a new file `path` (O_EXCL) and fsyncs it. */
static int write_new_file(const char *path, const char *text, mode_t mode, struct tm_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int saved = errno;
        tm_error_set(err, "cannot create key file '%s': %s", path, strerror(saved));
        if (saved == EEXIST)
            tm_error_hint(err, "a key file is never overwritten: the backups made with it need it. Choose another path");
        return -1;
    }
    size_t len = strlen(text);
    ssize_t written = write(fd, text, len);
    if (written != (ssize_t)len || fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        return tm_error_set(err, "cannot write key file '%s': %s", path, strerror(saved));
    }
    close(fd);
    return 0;
}

/* prefix + hex(bytes) + "\n" into text (>= strlen(prefix) + 66). */
static void format_key_line(char *text, size_t size, const char *prefix, const uint8_t *bytes)
{
    size_t prefix_len = strlen(prefix);
    memcpy(text, prefix, prefix_len);
    sodium_bin2hex(text + prefix_len, size - prefix_len, bytes, CRYPTO_KEY_BYTES);
    strcat(text, "\n");
}

int crypto_keygen(const char *path, struct tm_error *err)
{
    uint8_t raw[CRYPTO_KEY_BYTES];
    char text[128];
    randombytes_buf(raw, sizeof raw);
    format_key_line(text, sizeof text, "", raw);
    sodium_memzero(raw, sizeof raw);
    int rc = write_new_file(path, text, 0600, err);
    sodium_memzero(text, sizeof text);
    return rc;
}

static void recipient_id(const uint8_t public_key[CRYPTO_KEY_BYTES], uint8_t id[CRYPTO_KEY_ID_BYTES])
{
    crypto_generichash_state state;
    uint8_t digest[16];
    crypto_generichash_init(&state, NULL, 0, sizeof digest);
    crypto_generichash_update(&state, (const uint8_t *)RECIPIENT_ID_LABEL, strlen(RECIPIENT_ID_LABEL));
    crypto_generichash_update(&state, public_key, CRYPTO_KEY_BYTES);
    crypto_generichash_final(&state, digest, sizeof digest);
    memcpy(id, digest, CRYPTO_KEY_ID_BYTES);
}

int crypto_keygen_pair(const char *path, char *key_id_hex, struct tm_error *err)
{
    char public_path[4096];
    if (snprintf(public_path, sizeof public_path, "%s.pub", path) >= (int)sizeof public_path)
        return tm_error_set(err, "key file path '%s' is too long", path);
    uint8_t *secret = sodium_malloc(CRYPTO_KEY_BYTES);
    if (!secret)
        return tm_error_set(err, "out of memory (sodium_malloc)");
    uint8_t public_key[CRYPTO_KEY_BYTES];
    char text[128];
    crypto_box_keypair(public_key, secret);
    format_key_line(text, sizeof text, SECRET_PREFIX, secret);
    sodium_free(secret);
    if (access(public_path, F_OK) == 0) {
        sodium_memzero(text, sizeof text);
        tm_error_set(err, "cannot create key file '%s': it already exists", public_path);
        return tm_error_hint(err, "a key file is never overwritten. Choose another path");
    }
    int rc = write_new_file(path, text, 0600, err);
    sodium_memzero(text, sizeof text);
    if (rc != 0)
        return -1;
    format_key_line(text, sizeof text, PUBLIC_PREFIX, public_key);
    if (write_new_file(public_path, text, 0644, err) != 0) {
        unlink(path);
        return -1;
    }
    uint8_t id[CRYPTO_KEY_ID_BYTES];
    recipient_id(public_key, id);
    crypto_key_id_hex(id, key_id_hex);
    return 0;
}

/* -------------------------------------------------------------- keyring */

int crypto_keyring_new(struct crypto_keyring **out, struct tm_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return tm_error_set(err, "out of memory");
    return 0;
}

void crypto_keyring_free(struct crypto_keyring *kr)
{
    if (!kr)
        return;
    for (size_t i = 0; i < kr->count; i++)
        sodium_free(kr->entries[i].secret);
    free(kr->entries);
    free(kr);
}

static struct key_entry *find_key(const struct crypto_keyring *kr, const uint8_t id[CRYPTO_KEY_ID_BYTES])
{
    for (size_t i = 0; i < kr->count; i++)
        if (memcmp(kr->entries[i].id, id, CRYPTO_KEY_ID_BYTES) == 0)
            return &kr->entries[i];
    return NULL;
}

/* Appends a new entry; the caller fills it. NULL when out of memory. */
static struct key_entry *append_entry(struct crypto_keyring *kr, enum key_kind kind, const char *source)
{
    struct key_entry *grown = realloc(kr->entries, (kr->count + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    kr->entries = grown;
    struct key_entry *entry = &grown[kr->count];
    memset(entry, 0, sizeof *entry);
    entry->kind = kind;
    snprintf(entry->source, sizeof entry->source, "%s", source);
    if (kind != KEY_PUBLIC && !(entry->secret = sodium_malloc(CRYPTO_KEY_BYTES)))
        return NULL;
    kr->count++;
    return entry;
}

/* Adds a key of `kind` from its 32 raw bytes (symmetric master, X25519
 * secret or public key). A key already in the ring is not added twice; a
 * secret key replaces the public half of its own pair. */
static int add_raw(struct crypto_keyring *kr, enum key_kind kind, const uint8_t raw[CRYPTO_KEY_BYTES],
                   const char *source, struct tm_error *err)
{
    uint8_t id[CRYPTO_KEY_ID_BYTES], public_key[CRYPTO_KEY_BYTES];
    if (kind == KEY_SYMMETRIC) {
        uint8_t digest[16];
        crypto_generichash(digest, sizeof digest, (const uint8_t *)KEY_ID_LABEL, strlen(KEY_ID_LABEL),
                           raw, CRYPTO_KEY_BYTES);
        memcpy(id, digest, sizeof id);
    } else {
        if (kind == KEY_SECRET)
            crypto_scalarmult_base(public_key, raw);
        else
            memcpy(public_key, raw, sizeof public_key);
        recipient_id(public_key, id);
    }
    struct key_entry *existing = find_key(kr, id);
    if (existing && !(existing->kind == KEY_PUBLIC && kind == KEY_SECRET))
        return 0;
    struct key_entry *entry = existing;
    if (entry) {                  /* upgrade the public half to the full pair */
        if (!(entry->secret = sodium_malloc(CRYPTO_KEY_BYTES)))
            return tm_error_set(err, "out of memory (sodium_malloc)");
        entry->kind = KEY_SECRET;
        snprintf(entry->source, sizeof entry->source, "%s", source);
    } else if (!(entry = append_entry(kr, kind, source))) {
        return tm_error_set(err, "out of memory");
    }
    memcpy(entry->id, id, sizeof id);
    if (kind == KEY_SYMMETRIC)
        crypto_kdf_derive_from_key(entry->secret, STREAM_KEY_BYTES, KDF_OBJECT_SUBKEY, KDF_CONTEXT, raw);
    else
        memcpy(entry->public_key, public_key, sizeof public_key);
    if (kind == KEY_SECRET)
        memcpy(entry->secret, raw, CRYPTO_KEY_BYTES);
    return 0;
}

int crypto_keyring_add_bytes(struct crypto_keyring *kr, const uint8_t raw[CRYPTO_KEY_BYTES],
                             struct tm_error *err)
{
    return add_raw(kr, KEY_SYMMETRIC, raw, "(raw key)", err);
}

int crypto_keyring_add_pair_seed(struct crypto_keyring *kr, const uint8_t seed[CRYPTO_KEY_BYTES],
                                 int public_only, struct tm_error *err)
{
    uint8_t public_key[CRYPTO_KEY_BYTES], secret[CRYPTO_KEY_BYTES];
    crypto_box_seed_keypair(public_key, secret, seed);
    int rc = public_only ? add_raw(kr, KEY_PUBLIC, public_key, "(seeded public key)", err)
                         : add_raw(kr, KEY_SECRET, secret, "(seeded secret key)", err);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

/* Reads a key file into text (NUL-terminated, trailing blanks cut). */
static int read_key_file(const char *path, char *text, size_t size, struct stat *st, struct tm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tm_error_set(err, "cannot open key file '%s': %s", path, strerror(errno));
        return tm_error_hint(err, "create one with 'tidemark keygen -o %s' and keep a copy off this machine", path);
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return tm_error_set(err, "key file '%s' is not a regular file", path);
    }
    ssize_t got = read(fd, text, size - 1);
    int saved = errno;
    close(fd);
    if (got < 0)
        return tm_error_set(err, "cannot read key file '%s': %s", path, strerror(saved));
    text[got] = '\0';
    while (got > 0 && (text[got - 1] == '\n' || text[got - 1] == '\r' || text[got - 1] == ' '))
        text[--got] = '\0';
    return 0;
}

static int parse_hex_key(const char *hex, uint8_t raw[CRYPTO_KEY_BYTES])
{
    size_t raw_len = 0;
    return strlen(hex) == CRYPTO_KEY_BYTES * 2 &&
           sodium_hex2bin(raw, CRYPTO_KEY_BYTES, hex, CRYPTO_KEY_BYTES * 2, NULL, &raw_len, NULL) == 0 &&
           raw_len == CRYPTO_KEY_BYTES ? 0 : -1;
}

int crypto_keyring_add_file(struct crypto_keyring *kr, const char *path, struct tm_error *err)
{
    char text[192];
    struct stat st;
    if (read_key_file(path, text, sizeof text, &st, err) != 0)
        return -1;
    enum key_kind kind = KEY_SYMMETRIC;
    const char *hex = text;
    if (strncmp(text, SECRET_PREFIX, strlen(SECRET_PREFIX)) == 0) {
        kind = KEY_SECRET;
        hex += strlen(SECRET_PREFIX);
    } else if (strncmp(text, PUBLIC_PREFIX, strlen(PUBLIC_PREFIX)) == 0) {
        kind = KEY_PUBLIC;
        hex += strlen(PUBLIC_PREFIX);
    }
    uint8_t raw[CRYPTO_KEY_BYTES];
    int rc = -1;
    if (kind != KEY_PUBLIC && (st.st_mode & 077)) {
        tm_error_set(err, "key file '%s' is accessible by group or others (mode %04o)", path,
                     (unsigned)(st.st_mode & 07777));
        tm_error_hint(err, "run 'chmod 600 %s'", path);
    } else if (parse_hex_key(hex, raw) != 0) {
        tm_error_set(err, "key file '%s' does not hold a tidemark key", path);
        tm_error_hint(err, "key files are made by 'tidemark keygen -o FILE' (64 hex digits) or "
                           "'tidemark keygen --pair -o FILE' (FILE and FILE.pub)");
    } else {
        rc = add_raw(kr, kind, raw, path, err);
    }
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(text, sizeof text);
    return rc;
}

const uint8_t *crypto_keyring_writer_id(const struct crypto_keyring *kr)
{
    return kr->count ? kr->entries[0].id : NULL;
}

int crypto_keyring_public_only(const struct crypto_keyring *kr)
{
    for (size_t i = 0; i < kr->count; i++)
        if (kr->entries[i].kind != KEY_PUBLIC)
            return 0;
    return 1;
}

/* ------------------------------------------------------- object keys */

void crypto_object_key_wipe(struct crypto_object_key *key)
{
    sodium_free(key->stream_key);           /* zeroes before freeing */
    key->stream_key = NULL;
}

/* The symmetric stream key of database `database` (object key itself
 * when database is NULL: envelope versions 1 and 2). */
static void symmetric_stream_key(const struct key_entry *entry, const char *database, size_t database_len,
                                 uint8_t out[STREAM_KEY_BYTES])
{
    if (!database) {
        memcpy(out, entry->secret, STREAM_KEY_BYTES);
        return;
    }
    crypto_generichash_state state;
    crypto_generichash_init(&state, entry->secret, STREAM_KEY_BYTES, STREAM_KEY_BYTES);
    crypto_generichash_update(&state, (const uint8_t *)DATABASE_KEY_LABEL, sizeof DATABASE_KEY_LABEL);
    crypto_generichash_update(&state, (const uint8_t *)database, database_len);
    crypto_generichash_final(&state, out, STREAM_KEY_BYTES);
    sodium_memzero(&state, sizeof state);
}

int crypto_object_key_new(const struct crypto_keyring *kr, const char *database, size_t database_len,
                          struct crypto_object_key *out, struct tm_error *err)
{
    memset(out, 0, sizeof *out);
    if (kr->count == 0)
        return tm_error_set(err, "no encryption key configured");
    const struct key_entry *writer = &kr->entries[0];
    if (!(out->stream_key = sodium_malloc(STREAM_KEY_BYTES)))
        return tm_error_set(err, "out of memory (sodium_malloc)");
    memcpy(out->key_id, writer->id, CRYPTO_KEY_ID_BYTES);
    if (writer->kind == KEY_SYMMETRIC) {
        out->scheme = CRYPTO_SCHEME_SYMMETRIC;
        symmetric_stream_key(writer, database, database_len, out->stream_key);
        return 0;
    }
    out->scheme = CRYPTO_SCHEME_SEALED;
    crypto_secretstream_xchacha20poly1305_keygen(out->stream_key);
    if (crypto_box_seal(out->sealed, out->stream_key, STREAM_KEY_BYTES, writer->public_key) != 0) {
        crypto_object_key_wipe(out);
        return tm_error_set(err, "sealing the object's data key failed");
    }
    return 0;
}

/* "'/etc/k1' (id 0123...), '/etc/k2' (id ...)" into buf. */
static void describe_keys(const struct crypto_keyring *kr, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < kr->count && used < size; i++) {
        char id_hex[CRYPTO_KEY_ID_BYTES * 2 + 1];
        crypto_key_id_hex(kr->entries[i].id, id_hex);
        int wrote = snprintf(buf + used, size - used, "%s'%s' (id %s%s)", i ? ", " : "",
                             kr->entries[i].source, id_hex,
                             kr->entries[i].kind == KEY_PUBLIC ? ", public key only" : "");
        if (wrote < 0)
            break;
        used += (size_t)wrote;
    }
}

static int missing_key(const struct crypto_keyring *kr, uint8_t scheme,
                       const uint8_t key_id[CRYPTO_KEY_ID_BYTES], struct tm_error *err)
{
    char id_hex[CRYPTO_KEY_ID_BYTES * 2 + 1], have[300];
    crypto_key_id_hex(key_id, id_hex);
    describe_keys(kr, have, sizeof have);
    tm_error_setc(err, TM_ERR_WRONG_KEY, "wrong key: encrypted with %s key id %s; the keys given are %s",
                 scheme == CRYPTO_SCHEME_SEALED ? "the key pair with" : "the symmetric", id_hex, have);
    if (scheme == CRYPTO_SCHEME_SEALED)
        return tm_error_hint(err, "pass the secret key file of that pair with --key-file FILE "
                                  "(or list it under encryption.key-file)");
    return tm_error_hint(err, "point encryption.key-file (or --key-file) at the key file these backups were made with");
}

int crypto_object_key_open(const struct crypto_keyring *kr, uint8_t scheme,
                           const uint8_t key_id[CRYPTO_KEY_ID_BYTES],
                           const uint8_t sealed[CRYPTO_SEALED_KEY_BYTES], const char *database,
                           size_t database_len, struct crypto_object_key *out, struct tm_error *err)
{
    memset(out, 0, sizeof *out);
    const struct key_entry *entry = find_key(kr, key_id);
    int usable = entry && ((scheme == CRYPTO_SCHEME_SYMMETRIC && entry->kind == KEY_SYMMETRIC) ||
                           (scheme == CRYPTO_SCHEME_SEALED && entry->kind == KEY_SECRET));
    if (!usable)
        return missing_key(kr, scheme, key_id, err);
    if (!(out->stream_key = sodium_malloc(STREAM_KEY_BYTES)))
        return tm_error_set(err, "out of memory (sodium_malloc)");
    out->scheme = scheme;
    memcpy(out->key_id, key_id, CRYPTO_KEY_ID_BYTES);
    if (scheme == CRYPTO_SCHEME_SYMMETRIC) {
        symmetric_stream_key(entry, database, database_len, out->stream_key);
        return 0;
    }
    memcpy(out->sealed, sealed, CRYPTO_SEALED_KEY_BYTES);
    if (crypto_box_seal_open(out->stream_key, sealed, CRYPTO_SEALED_KEY_BYTES, entry->public_key,
                             entry->secret) != 0) {
        crypto_object_key_wipe(out);
        return tm_error_set(err, "the sealed data key does not open with '%s' (altered or damaged bytes)",
                            entry->source);
    }
    return 0;
}

void crypto_key_id_hex(const uint8_t id[CRYPTO_KEY_ID_BYTES], char *buf)
{
    sodium_bin2hex(buf, CRYPTO_KEY_ID_BYTES * 2 + 1, id, CRYPTO_KEY_ID_BYTES);
}
