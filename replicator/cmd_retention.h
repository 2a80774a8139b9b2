/* cmd_retention.h - the `tidemark retention` command. */
#ifndef TM_CMD_RETENTION_H
#define TM_CMD_RETENTION_H

#include "../common/cli.h"

extern const struct cli_command cmd_retention;

#endif
