/* cmd_replicate.h - the `tidemark replicate` command (the sidecar). */
#ifndef TM_CMD_REPLICATE_H
#define TM_CMD_REPLICATE_H

#include "../common/cli.h"

extern const struct cli_command cmd_replicate;

#endif
