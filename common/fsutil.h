/* fsutil.h - small durable-filesystem helpers shared by the file replica
 * driver and the spool: create a directory path, fsync a directory, and
 * replace a small file atomically and durably. */
#ifndef TM_FSUTIL_H
#define TM_FSUTIL_H

#include <stddef.h>

#include "error.h"

/* mkdir -p with mode 0700 for the parts it creates. */
int fsutil_make_dirs(const char *path, struct tm_error *err);
int fsutil_fsync_dir(const char *dir, struct tm_error *err);
/* Writes data to path through a temporary file, fsync, rename, fsync dir. */
int fsutil_replace_file(const char *path, const void *data, size_t len, struct tm_error *err);

#endif
