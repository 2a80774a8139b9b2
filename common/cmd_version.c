/* cmd_version.c - `tidemark version` (also `tidemark --version`). */
#include "cmd_version.h"

#define TIDEMARK_VERSION "0.14.7"

static const struct cli_option *const options[] = {NULL};

static int run(const struct cli_args *args)
{
    (void)args;
    printf("tidemark %s\n", TIDEMARK_VERSION);
    return 0;
}

const struct cli_command cmd_version = {
    .name = "version",
    .alias = "--version",
    .summary = "print the version",
    .options = options,
    .description = "Prints the version of this tidemark.\n",
    .run = run,
};
