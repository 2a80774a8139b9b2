/* cmd_replicate.c - `tidemark replicate`: runs the sidecar in the
 * foreground (replicate.c) until SIGTERM or SIGINT. */
#include "cmd_replicate.h"

#include "../common/log.h"
#include "replicate.h"

static const struct cli_option *const options[] = {&cli_opt_config, &cli_opt_verbose, NULL};

static int run(const struct cli_args *args)
{
    struct config *cfg;
    struct crypto_keyring *key;
    if (cli_load_config(args, CLI_NO_KEYS, &cfg, NULL) != 0)
        return 1;
    /* From here on, errors follow `log-format` (tm_error_print) */
    log_set_json(cfg->log_json);
    if (cli_load_keys(args, cfg, CLI_KEYS_TO_WRITE, &key) != 0) {
        config_free(cfg);
        return 1;
    }
    int rc = replicate_run(cfg, key, NULL);
    cli_release_config(cfg, key);
    return rc;
}

const struct cli_command cmd_replicate = {
    .name = "replicate",
    .summary = "run the backup sidecar (foreground)",
    .options = options,
    .description =
        "Tails every configured database's WAL and ships each commit to its replicas\n"
        "within sync-interval, through a local spool, to every replica on its own (a failing\n"
        "replica never delays another). SIGTERM or SIGINT ships what is committed, gives the\n"
        "replicas up to 10 s to take it (the rest is sent at the next start), then exits 0.\n",
    .run = run,
};
