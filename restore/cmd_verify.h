/* cmd_verify.h - the `tidemark verify` command. */
#ifndef TM_CMD_VERIFY_H
#define TM_CMD_VERIFY_H

#include "../common/cli.h"

extern const struct cli_command cmd_verify;

#endif
