/* cmd_keygen.h - the `tidemark keygen` command. */
#ifndef TM_CMD_KEYGEN_H
#define TM_CMD_KEYGEN_H

#include "cli.h"

extern const struct cli_command cmd_keygen;

#endif
