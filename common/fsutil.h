/* fsutil.h - small durable-filesystem helpers shared by the file replica
 * driver and the spool: create a directory path, fsync a directory, and
 * replace a small file atomically and durably. */
#ifndef TM_FSUTIL_H
#define TM_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* mkdir -p with mode 0700 for the parts it creates. */
int fsutil_make_dirs(const char *path, struct tm_error *err);
int fsutil_fsync_dir(const char *dir, struct tm_error *err);
/* rm -r: path and everything under it (symbolic links are removed, not
 * followed). A missing path is not an error. */
int fsutil_remove_tree(const char *path, struct tm_error *err);
/* Writes data to path through a temporary file, fsync, rename, fsync dir. */
int fsutil_replace_file(const char *path, const void *data, size_t len, struct tm_error *err);
/* pwritev of all `count` buffers at `offset`, resuming after short writes
 * and EINTR (iov is consumed); 0, or -1 with errno set. */
struct iovec;
int fsutil_pwritev_all(int fd, struct iovec *iov, int count, off_t offset);

#endif
