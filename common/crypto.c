/* crypto.c - archive key handling (see crypto.h). All primitives come from
 * libsodium; this file only decides how keys are stored and derived. */
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
#define KEY_ID_LABEL "tidemark key id v1"

int crypto_init(struct tm_error *err)
{
    if (sodium_init() < 0)
        return tm_error_set(err, "libsodium failed to initialise");
    return 0;
}

int crypto_keygen(const char *path, struct tm_error *err)
{
    uint8_t raw[CRYPTO_KEY_BYTES];
    char hex[CRYPTO_KEY_BYTES * 2 + 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    size_t hex_len = strlen(hex);
    hex[hex_len++] = '\n';

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int saved = errno;
        sodium_memzero(hex, sizeof hex);
        tm_error_set(err, "cannot create key file '%s': %s", path, strerror(saved));
        if (saved == EEXIST)
            tm_error_hint(err, "a key file is never overwritten: the backups made with it need it. Choose another path");
        return -1;
    }
    ssize_t written = write(fd, hex, hex_len);
    sodium_memzero(hex, sizeof hex);
    if (written != (ssize_t)hex_len || fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        return tm_error_set(err, "cannot write key file '%s': %s", path, strerror(saved));
    }
    close(fd);
    return 0;
}

int crypto_key_from_bytes(const uint8_t raw[CRYPTO_KEY_BYTES], struct crypto_key **out,
                          struct tm_error *err)
{
    struct crypto_key *key = calloc(1, sizeof *key);
    if (!key)
        return tm_error_set(err, "out of memory");
    key->object_key = sodium_malloc(crypto_secretstream_xchacha20poly1305_KEYBYTES);
    if (!key->object_key) {
        free(key);
        return tm_error_set(err, "out of memory (sodium_malloc)");
    }
    crypto_kdf_derive_from_key(key->object_key, crypto_secretstream_xchacha20poly1305_KEYBYTES,
                               KDF_OBJECT_SUBKEY, KDF_CONTEXT, raw);
    uint8_t digest[16];
    crypto_generichash(digest, sizeof digest, (const uint8_t *)KEY_ID_LABEL,
                       strlen(KEY_ID_LABEL), raw, CRYPTO_KEY_BYTES);
    memcpy(key->key_id, digest, CRYPTO_KEY_ID_BYTES);
    *out = key;
    return 0;
}

int crypto_key_load(const char *path, struct crypto_key **out, struct tm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tm_error_set(err, "cannot open key file '%s': %s", path, strerror(errno));
        return tm_error_hint(err, "create one with 'tidemark keygen -o %s' and keep a copy off this machine", path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tm_error_set(err, "key file '%s' is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        tm_error_set(err, "key file '%s' is accessible by group or others (mode %04o)", path,
                     (unsigned)(st.st_mode & 07777));
        return tm_error_hint(err, "run 'chmod 600 %s'", path);
    }
    char text[160];
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got < 0)
        return tm_error_set(err, "cannot read key file '%s': %s", path, strerror(errno));
    text[got] = '\0';
    while (got > 0 && (text[got - 1] == '\n' || text[got - 1] == '\r' || text[got - 1] == ' '))
        text[--got] = '\0';
    uint8_t raw[CRYPTO_KEY_BYTES];
    size_t raw_len = 0;
    const char *end = NULL;
    int rc = -1;
    if (got != CRYPTO_KEY_BYTES * 2 ||
        sodium_hex2bin(raw, sizeof raw, text, (size_t)got, NULL, &raw_len, &end) != 0 ||
        raw_len != CRYPTO_KEY_BYTES) {
        tm_error_set(err, "key file '%s' does not hold a tidemark key (64 hex digits)", path);
        tm_error_hint(err, "key files are made by 'tidemark keygen -o FILE'");
    } else {
        rc = crypto_key_from_bytes(raw, out, err);
    }
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(text, sizeof text);
    return rc;
}

void crypto_key_free(struct crypto_key *key)
{
    if (!key)
        return;
    sodium_free(key->object_key);
    free(key);
}

void crypto_key_id_hex(const uint8_t id[CRYPTO_KEY_ID_BYTES], char *buf)
{
    sodium_bin2hex(buf, CRYPTO_KEY_ID_BYTES * 2 + 1, id, CRYPTO_KEY_ID_BYTES);
}
