/* fsutil.c - durable-filesystem helpers (fsutil.h).
 *
 * LOCAL FILES ON A SHARED HOST. tidemark often runs as root, and writes
 * temporary files next to a restore's output, scratch copies under
 * /var/tmp and a socket for a private redis-server. Where another local
 * user can write to the directory (/tmp, /var/tmp, a shared output
 * directory), a name we can be expected to use may already hold their
 * symbolic link (opening it would write through it, as root, anywhere)
 * or their directory (whatever we put in it, they can read, replace or
 * remove). So: files are created O_CREAT|O_EXCL|O_NOFOLLOW with mode
 * 0600, under a name nobody can predict or in a directory only we can
 * write; scratch directories are made fresh with mkdtemp, or, when the
 * user named an existing one, checked with lstat (ours, a real
 * directory, not writable by group or others) and refused otherwise. */
#include "fsutil.h"

#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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
    int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
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

int fsutil_create_exclusive(const char *path, struct tm_error *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    if (errno == EEXIST || errno == ELOOP) {
        tm_error_setc(err, TM_ERR_REFUSED, "cannot create '%s': something already exists there (a file or a "
                      "symbolic link): not writing through it", path);
        tm_error_hint(err, "nothing of tidemark's is named so; check who made it, remove it and try again");
        return -1;
    }
    tm_error_set(err, "cannot create '%s': %s", path, strerror(errno));
    return -1;
}

int fsutil_private_dir(char *template, struct tm_error *err)
{
    if (mkdtemp(template) != NULL)
        return 0;
    return tm_error_set(err, "cannot create a private directory '%s': %s", template, strerror(errno));
}

int fsutil_check_dir_is_ours(const char *path, struct tm_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return tm_error_setc(err, errno == ENOENT ? TM_ERR_NOT_FOUND : TM_ERR_FAILED, "cannot check directory "
                             "'%s': %s", path, strerror(errno));
    const char *wrong = NULL;
    char owner[64];
    if (S_ISLNK(st.st_mode))
        wrong = "it is a symbolic link";
    else if (!S_ISDIR(st.st_mode))
        wrong = "it is not a directory";
    else if (st.st_uid != geteuid()) {
        snprintf(owner, sizeof owner, "it is owned by uid %u, not by uid %u running tidemark", (unsigned)st.st_uid,
                 (unsigned)geteuid());
        wrong = owner;
    } else if (st.st_mode & (S_IWGRP | S_IWOTH))
        wrong = st.st_mode & S_IWOTH ? "it is writable by other users" : "it is writable by its group";
    if (!wrong)
        return 0;
    tm_error_setc(err, TM_ERR_REFUSED, "refusing to use directory '%s': %s", path, wrong);
    return tm_error_hint(err, "another user could read or replace what tidemark writes there: give a directory "
                         "of your own (mode 0700), or remove this one and let tidemark create it");
}

int fsutil_ensure_private_dir(const char *path, struct tm_error *err)
{
    if (mkdir(path, 0700) == 0)
        return 0;
    if (errno == ENOENT) {   /* missing parents: made 0700 like the directory */
        if (fsutil_make_dirs(path, err) != 0)
            return -1;
    } else if (errno != EEXIST) {
        return tm_error_set(err, "cannot create directory '%s': %s", path, strerror(errno));
    }
    return fsutil_check_dir_is_ours(path, err);
}

int fsutil_ensure_private_path(const char *base, const char *path, struct tm_error *err)
{
    char partial[PATH_MAX];
    size_t base_len = strlen(base), len = strlen(path);
    if (len >= sizeof partial)
        return tm_error_set(err, "path too long: '%s'", path);
    if (strncmp(path, base, base_len) != 0 || (path[base_len] != '/' && path[base_len] != '\0'))
        return tm_error_set(err, "'%s' is not under '%s'", path, base);
    memcpy(partial, path, len + 1);
    for (size_t i = base_len; i <= len; i++) {
        if (partial[i] != '/' && partial[i] != '\0')
            continue;
        char saved = partial[i];
        partial[i] = '\0';
        if (fsutil_ensure_private_dir(partial, err) != 0)
            return -1;
        partial[i] = saved;
    }
    return 0;
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

int fsutil_copy_into(const char *from, int fd, const char *to_name, uint64_t *bytes, struct tm_error *err)
{
    static const size_t block = 1 << 20;
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return tm_error_setc(err, TM_ERR_NOT_FOUND, "cannot open '%s': %s", from, strerror(errno));
    char *buf = malloc(block);
    int rc = buf ? 0 : tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory copying '%s'", from);
    uint64_t copied = 0;
    while (rc == 0) {
        ssize_t got = read(in, buf, block);
        if (got == 0)
            break;
        if (got < 0) {
            if (errno != EINTR)
                rc = tm_error_set(err, "cannot read '%s': %s", from, strerror(errno));
            continue;
        }
        for (ssize_t done = 0; done < got && rc == 0;) {
            ssize_t put = write(fd, buf + done, (size_t)(got - done));
            if (put < 0 && errno != EINTR)
                rc = tm_error_set(err, "cannot write '%s': %s", to_name, strerror(errno));
            done += put > 0 ? put : 0;
        }
        copied += (uint64_t)got;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = tm_error_set(err, "cannot fsync '%s': %s", to_name, strerror(errno));
    free(buf);
    close(in);
    if (bytes)
        *bytes = copied;
    return rc;
}
