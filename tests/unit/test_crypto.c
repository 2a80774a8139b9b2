/* test_crypto.c - key files and keyrings: symmetric keys and key pairs,
 * file modes, the encryption section's recipient-file and key-file list,
 * and key ids. */
#include "harness.h"

#include "../../common/config.h"
#include "../../common/crypto.h"

#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>

/* A path in the test directory; each call returns a string of its own
 * (the tests make fewer than 64). */
static const char *tmp_path(const char *name)
{
    static char pool[64][512];
    static size_t used;
    char *out = pool[used++ % 64];
    snprintf(out, 512, "%s/%s", harness_tmpdir(), name);
    return out;
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_mode & 07777 : 0;
}

static int add_file(const char *path, struct tm_error *err)
{
    struct crypto_keyring *keys;
    if (crypto_keyring_new(&keys, err) != 0)
        return -1;
    int rc = crypto_keyring_add_file(keys, path, err);
    crypto_keyring_free(keys);
    return rc;
}

static void test_keygen_pair_files(void)
{
    const char *secret = tmp_path("pair"), *public = tmp_path("pair.pub");
    char id[CRYPTO_KEY_ID_BYTES * 2 + 1];
    struct tm_error err;
    ASSERT_EQ(crypto_keygen_pair(secret, id, &err), 0);
    ASSERT_EQ(strlen(id), 16);
    ASSERT_EQ(file_mode(secret), 0600);
    ASSERT_EQ(file_mode(public), 0644);
    /* never overwritten */
    ASSERT_EQ(crypto_keygen_pair(secret, id, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "pair");

    /* both halves give the same key id, the one keygen printed */
    struct crypto_keyring *from_public, *from_secret;
    ASSERT_EQ(crypto_keyring_new(&from_public, &err), 0);
    ASSERT_EQ(crypto_keyring_new(&from_secret, &err), 0);
    ASSERT_EQ(crypto_keyring_add_file(from_public, public, &err), 0);
    ASSERT_EQ(crypto_keyring_add_file(from_secret, secret, &err), 0);
    char id_public[17], id_secret[17];
    crypto_key_id_hex(crypto_keyring_writer_id(from_public), id_public);
    crypto_key_id_hex(crypto_keyring_writer_id(from_secret), id_secret);
    ASSERT_TRUE(strcmp(id_public, id) == 0 && strcmp(id_secret, id) == 0);
    ASSERT_TRUE(crypto_keyring_public_only(from_public));
    ASSERT_TRUE(!crypto_keyring_public_only(from_secret));
    /* adding the secret half to a ring holding the public half upgrades it */
    ASSERT_EQ(crypto_keyring_add_file(from_public, secret, &err), 0);
    ASSERT_TRUE(!crypto_keyring_public_only(from_public));
    crypto_keyring_free(from_public);
    crypto_keyring_free(from_secret);
}

static void test_key_file_modes_and_contents(void)
{
    const char *secret = tmp_path("modes"), *public = tmp_path("modes.pub");
    char id[17];
    struct tm_error err;
    ASSERT_EQ(crypto_keygen_pair(secret, id, &err), 0);
    chmod(secret, 0640);
    ASSERT_EQ(add_file(secret, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "accessible by group or others");
    ASSERT_STR_CONTAINS(err.msg, secret);
    chmod(public, 0666);                      /* a public key may be readable by all */
    ASSERT_EQ(add_file(public, &err), 0);

    const char *garbage = tmp_path("garbage");
    FILE *fp = fopen(garbage, "w");
    fputs("tidemark-secret-key-v1 not-hex\n", fp);
    fclose(fp);
    chmod(garbage, 0600);
    ASSERT_EQ(add_file(garbage, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "does not hold a tidemark key");
    ASSERT_EQ(add_file(tmp_path("absent"), &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "cannot open key file");
}

/* Loads a config whose encryption section is `encryption`. */
static int load_encryption(const char *encryption, struct config **cfg, struct tm_error *err)
{
    char text[2048];
    snprintf(text, sizeof text, "encryption:\n%sdbs:\n  - path: /data/app.db\n    replicas:\n      - path: /b\n",
             encryption);
    const char *path = tmp_path("c.yml");
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
    return config_load(path, cfg, err);
}

static void test_encryption_section(void)
{
    const char *secret = tmp_path("cfgpair"), *public = tmp_path("cfgpair.pub"), *sym = tmp_path("sym");
    char id[17], text[1024];
    struct tm_error err;
    struct config *cfg;
    ASSERT_EQ(crypto_keygen_pair(secret, id, &err), 0);
    ASSERT_EQ(crypto_keygen(sym, &err), 0);

    snprintf(text, sizeof text, "  recipient-file: %s\n", public);
    ASSERT_EQ(load_encryption(text, &cfg, &err), 0);
    struct crypto_keyring *keys;
    ASSERT_EQ(config_load_keys(cfg, NULL, 0, &keys, &err), 0);
    ASSERT_TRUE(crypto_keyring_public_only(keys));
    crypto_keyring_free(keys);
    /* restore adds the secret key with --key-file */
    char *extra[] = {(char *)secret};
    ASSERT_EQ(config_load_keys(cfg, extra, 1, &keys, &err), 0);
    ASSERT_TRUE(!crypto_keyring_public_only(keys));
    crypto_keyring_free(keys);
    config_free(cfg);

    /* recipient-file written first: it encrypts; old keys listed read */
    snprintf(text, sizeof text, "  recipient-file: %s\n  key-file: [%s, %s]\n", public, sym, secret);
    ASSERT_EQ(load_encryption(text, &cfg, &err), 0);
    ASSERT_EQ(cfg->key_file_count, 2);
    ASSERT_EQ(config_load_keys(cfg, NULL, 0, &keys, &err), 0);
    char writer[17];
    crypto_key_id_hex(crypto_keyring_writer_id(keys), writer);
    ASSERT_TRUE(strcmp(writer, id) == 0);
    crypto_keyring_free(keys);
    config_free(cfg);

    snprintf(text, sizeof text, "  recipient-file: %s\n", secret);
    ASSERT_EQ(load_encryption(text, &cfg, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "'recipient-file' must hold a public key");
    snprintf(text, sizeof text, "  key-file: %s\n", public);
    ASSERT_EQ(load_encryption(text, &cfg, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "holds only a public key");
    ASSERT_EQ(load_encryption("  key-file: []\n", &cfg, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "empty list");
    ASSERT_EQ(load_encryption("  {}\n", &cfg, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "neither 'key-file' nor 'recipient-file'");
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"crypto: keygen --pair writes FILE (0600) and FILE.pub with one key id", test_keygen_pair_files},
        {"crypto: secret key files must be private; bad contents are named", test_key_file_modes_and_contents},
        {"crypto: encryption section with recipient-file and a key-file list", test_encryption_section},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
