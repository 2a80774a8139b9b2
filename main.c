/* main.c - the `tidemark` binary: initialises the libraries and hands the
 * command line to the command it names. Each command is one file that
 * owns its options, help and output (common/cli.h describes the table). */
#include "common/cli.h"
#include "common/cmd_keygen.h"
#include "common/cmd_version.h"
#include "common/crypto.h"
#include "replicator/cmd_replicate.h"
#include "replicator/cmd_retention.h"
#include "replicator/cmd_snapshot.h"
#include "replicator/cmd_status.h"
#include "restore/cmd_drill.h"
#include "restore/cmd_list.h"
#include "restore/cmd_restore.h"
#include "restore/cmd_verify.h"

#include <curl/curl.h>
#include <stdio.h>

static const struct cli_command *const commands[] = {
    &cmd_replicate, &cmd_status,    &cmd_restore, &cmd_list,    &cmd_verify, &cmd_snapshot,
    &cmd_drill,     &cmd_retention, &cmd_keygen,  &cmd_version, NULL,
};

int main(int argc, char **argv)
{
    struct tm_error err;
    if (crypto_init(&err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "error: cannot initialise libcurl\n");
        return 1;
    }
    return cli_main(commands, argc, argv);
}
