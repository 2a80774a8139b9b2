/* cmd_drill.h - the `tidemark drill` command. */
#ifndef TM_CMD_DRILL_H
#define TM_CMD_DRILL_H

#include "../common/cli.h"

extern const struct cli_command cmd_drill;

#endif
