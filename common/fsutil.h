/* fsutil.h - small durable-filesystem helpers shared by the file replica
 * driver and the spool: create a directory path, fsync a directory, and
 * replace a small file atomically and durably; and the safe creation of
 * local temporary files and scratch directories, on a host where another
 * user may have planted a symbolic link or a directory at a path we are
 * about to use (docs/reliability.md, "Local files on a shared host"). */
#ifndef TM_FSUTIL_H
#define TM_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <stdint.h>

#include "error.h"

/* mkdir -p with mode 0700 for the parts it creates. */
int fsutil_make_dirs(const char *path, struct tm_error *err);
int fsutil_fsync_dir(const char *dir, struct tm_error *err);
/* rm -r: path and everything under it (symbolic links are removed, not
 * followed). A missing path is not an error. */
int fsutil_remove_tree(const char *path, struct tm_error *err);
/* Writes data to path through a temporary file, fsync, rename, fsync dir. */
int fsutil_replace_file(const char *path, const void *data, size_t len, struct tm_error *err);
/* Copies all of file `from` into the open descriptor fd (named to_name in
 * errors) in 1 MiB blocks, then fsyncs fd; *bytes (may be NULL) gets the
 * bytes copied. 0, or -1 with err set (TM_ERR_NOT_FOUND when `from`
 * cannot be opened). */
int fsutil_copy_into(const char *from, int fd, const char *to_name, uint64_t *bytes, struct tm_error *err);
/* ---- local files on a shared host
 * Every temporary or scratch file tidemark creates outside its state
 * directory goes through these: a new file is never opened through a
 * symbolic link nor over an existing file, and a directory we write into
 * is either made fresh here or checked to be ours. */

/* Creates `path` as a new, empty file, mode 0600, opened read-write:
 * O_CREAT|O_EXCL|O_NOFOLLOW, so an existing file or a symbolic link there
 * (even a dangling one) is refused, never followed or truncated. Returns
 * the descriptor (O_CLOEXEC), or -1 with err naming the path. */
int fsutil_create_exclusive(const char *path, struct tm_error *err);
/* mkdtemp: `template` ends in "XXXXXX", replaced in place by an
 * unpredictable suffix; the directory is new and mode 0700. 0, or -1
 * with err naming the template's directory. */
int fsutil_private_dir(char *template, struct tm_error *err);
/* 0 when `path` is a directory (not a symbolic link to one) owned by the
 * effective uid and writable by nobody else (no group or world write
 * bit); else -1 with err naming the path and what is wrong, with a hint.
 * A missing path fails too (TM_ERR_NOT_FOUND). */
int fsutil_check_dir_is_ours(const char *path, struct tm_error *err);
/* A directory to write into: `path` is created (mode 0700, with its
 * missing parents) or, when it exists, checked with
 * fsutil_check_dir_is_ours. 0, or -1 with err set. */
int fsutil_ensure_private_dir(const char *path, struct tm_error *err);
/* fsutil_ensure_private_dir of `base` and of every directory from it down
 * to `path`, which is base or below it ("BASE/a/b": BASE, BASE/a,
 * BASE/a/b); the directories above base are not looked at. */
int fsutil_ensure_private_path(const char *base, const char *path, struct tm_error *err);

/* pwritev of all `count` buffers at `offset`, resuming after short writes
 * and EINTR (iov is consumed); 0, or -1 with errno set. */
struct iovec;
int fsutil_pwritev_all(int fd, struct iovec *iov, int count, off_t offset);

#endif
