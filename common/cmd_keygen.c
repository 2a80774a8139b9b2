/* cmd_keygen.c - `tidemark keygen`: a new encryption key, or key pair,
 * written to a file of mode 0600 (common/crypto.c makes them). */
#include "cmd_keygen.h"

#include "crypto.h"

static const struct cli_option opt_output = {"output", 'o', "FILE", 1, 0, "where to write the key (must not exist)"};
static const struct cli_option opt_pair = {"pair", 0, NULL, 0, 0,
                                           "a key pair: the secret key to FILE, the public key to FILE.pub"};
static const struct cli_option *const options[] = {&opt_pair, &opt_output, NULL};

static int run(const struct cli_args *args)
{
    const char *output = cli_value(args, "output");
    struct tm_error err;
    if (cli_flag(args, "pair")) {
        char key_id[CRYPTO_KEY_ID_BYTES * 2 + 1];
        if (crypto_keygen_pair(output, key_id, &err) != 0) {
            tm_error_print(&err);
            return 1;
        }
        printf("wrote a key pair (id %s): secret key %s (mode 0600), public key %s.pub\n"
               "give the sidecar only the .pub (encryption: { recipient-file: ... }); keep the secret\n"
               "key off the database host, with a copy apart from the backups\n", key_id, output, output);
        return 0;
    }
    if (crypto_keygen(output, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    printf("wrote a new key to %s (mode 0600); keep a copy apart from the backups\n", output);
    return 0;
}

const struct cli_command cmd_keygen = {
    .name = "keygen",
    .summary = "write a new encryption key (or key pair)",
    .options = options,
    .description =
        "Writes a new random 256-bit key to FILE (which must not exist) with mode 0600.\n"
        "With --pair, writes a key pair instead: the secret key to FILE (mode 0600) and the\n"
        "public key to FILE.pub. A sidecar given only the public key (recipient-file) can write\n"
        "backups but not read them; restore, verify and drills take the secret key (--key-file).\n"
        "Keep a copy somewhere safe and separate from the backups: without it they cannot be read.\n",
    .run = run,
};
