/* cmd_status.h - the `tidemark status` command. */
#ifndef TM_CMD_STATUS_H
#define TM_CMD_STATUS_H

#include "../common/cli.h"

extern const struct cli_command cmd_status;

#endif
