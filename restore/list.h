/* list.h - the `tidemark list` command. */
#ifndef TM_LIST_H
#define TM_LIST_H

#include "../common/config.h"

/* db_name NULL: every database. Returns the process exit code. */
int list_run(const struct config *cfg, const char *db_name, const char *replica, int json);

#endif
