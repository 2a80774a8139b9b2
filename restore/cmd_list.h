/* cmd_list.h - the `tidemark list` command. */
#ifndef TM_CMD_LIST_H
#define TM_CMD_LIST_H

#include "../common/cli.h"

extern const struct cli_command cmd_list;

#endif
