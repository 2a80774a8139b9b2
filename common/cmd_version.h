/* cmd_version.h - the `tidemark version` command. */
#ifndef TM_CMD_VERSION_H
#define TM_CMD_VERSION_H

#include "cli.h"

extern const struct cli_command cmd_version;

#endif
