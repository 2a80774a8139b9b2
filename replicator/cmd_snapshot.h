/* cmd_snapshot.h - the `tidemark snapshot` command. */
#ifndef TM_CMD_SNAPSHOT_H
#define TM_CMD_SNAPSHOT_H

#include "../common/cli.h"

extern const struct cli_command cmd_snapshot;

#endif
