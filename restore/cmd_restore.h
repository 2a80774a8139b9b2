/* cmd_restore.h - the `tidemark restore` command. */
#ifndef TM_CMD_RESTORE_H
#define TM_CMD_RESTORE_H

#include "../common/cli.h"

extern const struct cli_command cmd_restore;

#endif
