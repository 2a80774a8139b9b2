/* fsutil.c - durable-filesystem helpers (fsutil.h). */
#include "fsutil.h"

#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <stdint.h>
#include <unistd.h>

int fsutil_make_dirs(const char *path, struct tm_error *err)
{
    char partial[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof partial)
        return tm_error_set(err, "path too long: '%s'", path);
    memcpy(partial, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (partial[i] != '/' && partial[i] != '\0')
            continue;
        char saved = partial[i];
        partial[i] = '\0';
        if (mkdir(partial, 0700) != 0 && errno != EEXIST)
            return tm_error_set(err, "cannot create directory '%s': %s", partial, strerror(errno));
        partial[i] = saved;
    }
    return 0;
}

int fsutil_fsync_dir(const char *dir, struct tm_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return tm_error_set(err, "cannot open directory '%s': %s", dir, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0)
        return tm_error_set(err, "cannot fsync directory '%s': %s", dir, strerror(saved));
    return 0;
}

int fsutil_replace_file(const char *path, const void *data, size_t len, struct tm_error *err)
{
    char temp[PATH_MAX], dir[PATH_MAX];
    snprintf(temp, sizeof temp, "%s.tmp", path);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return tm_error_set(err, "cannot create '%s': %s", temp, strerror(errno));
    const char *bytes = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, bytes, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            unlink(temp);
            return tm_error_set(err, "cannot write '%s': %s", temp, strerror(saved));
        }
        bytes += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int saved = errno;
        unlink(temp);
        return tm_error_set(err, "cannot write '%s': %s", temp, strerror(saved));
    }
    if (rename(temp, path) != 0) {
        int saved = errno;
        unlink(temp);
        return tm_error_set(err, "cannot rename '%s': %s", temp, strerror(saved));
    }
    return fsutil_fsync_dir(slash ? dir : ".", err);
}

int fsutil_pwritev_all(int fd, struct iovec *iov, int count, off_t offset)
{
    while (count > 0) {
        ssize_t n = pwritev(fd, iov, count, offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ENOSPC;
            return -1;
        }
        offset += n;
        while (count > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

int fsutil_remove_tree(const char *path, struct tm_error *err)
{
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 || errno == ENOENT)
        return 0;
    return tm_error_set(err, "cannot remove '%s': %s", path, strerror(errno));
}
