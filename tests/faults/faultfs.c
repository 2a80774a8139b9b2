/* faultfs.c - an LD_PRELOAD shim that makes the operating system fail
 * under a file replica, for the fault tests (tests/integration/test_faults.py).
 *
 * In the spirit of SQLite's test_vfs.c, but one layer lower: the file
 * storage driver (common/storage/file.c) runs unchanged and meets the
 * errors a real disk gives. Only calls on paths under FAULTFS_ROOT (and on
 * descriptors opened there) are affected; the spool, the database and
 * everything else see the real system.
 *
 * The fault is read from the file FAULTFS_CONTROL, re-read whenever it
 * changes, so a test can start, change and stop faults while the process
 * runs. Its one line is
 *
 *     OP ERROR NTH COUNT [MATCH]
 *
 *   OP     open (also mkostemp, mkstemp) | write (also pwritev) | fsync (also fdatasync) | rename | mkdir | unlink
 *          | read | opendir
 *   ERROR  EIO | ENOSPC | EACCES | EROFS | SHORT (write: half the bytes are
 *          written and the short count returned, as a full disk does) |
 *          DELAY:MS (the call succeeds, MS milliseconds late: a slow disk,
 *          and a window in which a test can kill the process mid-call)
 *   NTH    the first matching call that fails (1 = the next one), counted
 *          from when the line was written
 *   COUNT  how many consecutive calls fail; 0 = every one from NTH on
 *   MATCH  only paths containing this text (default: all under the root)
 *
 * An empty or missing control file injects nothing. Each injected fault
 * appends "OP ERROR PATH" to FAULTFS_LOG before it takes effect (before a
 * delay's sleep), so tests can count them and time kills on them. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRACKED_FDS 65536
#define SHORT_WRITE (-1)
#define DELAYED (-2)

struct fault {
    char op[16];
    int error;                 /* errno, SHORT_WRITE or DELAYED */
    long delay_ms;
    char match[256];
    long nth, count;
    long calls;                /* matching calls since the line was read */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault current;
static struct timespec control_mtime;
static off_t control_size = -1;
static unsigned char fd_under_root[MAX_TRACKED_FDS];
static char fd_path[1024][PATH_MAX];   /* paths of tracked fds, by fd % 1024 */

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_unlink)(const char *);
static int (*real_close)(int);
static DIR *(*real_opendir)(const char *);
static int (*real_mkostemp)(char *, int);

__attribute__((constructor)) static void resolve(void)
{
    real_write = dlsym(RTLD_NEXT, "write");
    real_read = dlsym(RTLD_NEXT, "read");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_open = dlsym(RTLD_NEXT, "open");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_mkdir = dlsym(RTLD_NEXT, "mkdir");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_close = dlsym(RTLD_NEXT, "close");
    real_opendir = dlsym(RTLD_NEXT, "opendir");
    real_mkostemp = dlsym(RTLD_NEXT, "mkostemp");
}

static int under_root(const char *path)
{
    const char *root = getenv("FAULTFS_ROOT");
    size_t len = root ? strlen(root) : 0;
    return len && path && strncmp(path, root, len) == 0 && (path[len] == '/' || path[len] == '\0');
}

static int parse_error(const char *name)
{
    static const struct { const char *name; int value; } errors[] = {
        {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EACCES", EACCES}, {"EROFS", EROFS}, {"SHORT", SHORT_WRITE},
    };
    for (size_t i = 0; i < sizeof errors / sizeof *errors; i++)
        if (strcmp(name, errors[i].name) == 0)
            return errors[i].value;
    return 0;
}

/* Re-reads the control file if it changed (called with the lock held). */
static void reload_control(void)
{
    const char *path = getenv("FAULTFS_CONTROL");
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        current.op[0] = '\0';
        control_size = -1;
        return;
    }
    if (st.st_size == control_size && st.st_mtim.tv_sec == control_mtime.tv_sec &&
        st.st_mtim.tv_nsec == control_mtime.tv_nsec)
        return;
    control_size = st.st_size;
    control_mtime = st.st_mtim;
    memset(&current, 0, sizeof current);
    char text[128] = {0}, error_name[16] = {0};
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t got = real_read(fd, text, sizeof text - 1);
    real_close(fd);
    if (got <= 0 || sscanf(text, "%15s %15s %ld %ld %255s", current.op, error_name, &current.nth,
                           &current.count, current.match) < 4) {
        current.op[0] = '\0';
        return;
    }
    if (strncmp(error_name, "DELAY:", 6) == 0) {
        current.error = DELAYED;
        current.delay_ms = atol(error_name + 6);
    } else if (!(current.error = parse_error(error_name))) {
        current.op[0] = '\0';
    }
}

static void log_fault(const char *op, int error, const char *path)
{
    const char *log = getenv("FAULTFS_LOG");
    if (!log)
        return;
    int fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char line[PATH_MAX + 64];
    const char *name = error == SHORT_WRITE ? "SHORT" : error == DELAYED ? "DELAY" : strerrorname_np(error);
    int len = snprintf(line, sizeof line, "%s %s %s\n", op, name, path);
    real_write(fd, line, (size_t)len);
    real_close(fd);
}

/* The errno to inject for this call of `op` on `path` (or SHORT_WRITE),
 * 0 for none. A delay is served here and reported as none. */
static int injected(const char *op, const char *path)
{
    pthread_mutex_lock(&lock);
    reload_control();
    int error = 0;
    long delay_ms = 0;
    if (current.op[0] && strcmp(current.op, op) == 0 && (!current.match[0] || strstr(path, current.match))) {
        long call = ++current.calls;
        if (call >= current.nth && (current.count == 0 || call < current.nth + current.count)) {
            error = current.error;
            delay_ms = current.delay_ms;
        }
    }
    pthread_mutex_unlock(&lock);
    if (error)
        log_fault(op, error, path);
    if (error == DELAYED) {
        struct timespec pause = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        error = 0;
    }
    return error;
}

static const char *fd_name(int fd) { return fd_path[fd % 1024]; }

static void track(int fd, const char *path)
{
    if (fd >= 0 && fd < MAX_TRACKED_FDS) {
        fd_under_root[fd] = under_root(path);
        if (fd_under_root[fd])
            snprintf(fd_path[fd % 1024], PATH_MAX, "%s", path);
    }
}

static int tracked(int fd) { return fd >= 0 && fd < MAX_TRACKED_FDS && fd_under_root[fd]; }

static int fail_with(int error)
{
    errno = error;
    return -1;
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    int error = under_root(path) ? injected("open", path) : 0;
    if (error > 0)
        return fail_with(error);
    int fd = real_open(path, flags, mode);
    track(fd, path);
    return fd;
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    int error = under_root(path) ? injected("open", path) : 0;
    if (error > 0)
        return fail_with(error);
    int fd = real_openat(dirfd, path, flags, mode);
    track(fd, path);
    return fd;
}

/* libc's mkostemp opens its file without going through open(): it is
 * an "open" here, and its descriptor is tracked like open's. */
int mkostemp(char *template, int flags)
{
    int error = under_root(template) ? injected("open", template) : 0;
    if (error > 0)
        return fail_with(error);
    int fd = real_mkostemp(template, flags);
    track(fd, template);
    return fd;
}

int mkstemp(char *template) { return mkostemp(template, 0); }

int close(int fd)
{
    if (fd >= 0 && fd < MAX_TRACKED_FDS)
        fd_under_root[fd] = 0;
    return real_close(fd);
}

ssize_t write(int fd, const void *data, size_t len)
{
    int error = tracked(fd) ? injected("write", fd_name(fd)) : 0;
    if (error > 0)
        return fail_with(error);
    if (error == SHORT_WRITE && len > 1)
        return real_write(fd, data, len / 2);
    return real_write(fd, data, len);
}

/* pwritev counts as "write"; SHORT writes half of the first buffer. */
ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t offset)
{
    int error = tracked(fd) ? injected("write", fd_name(fd)) : 0;
    if (error > 0)
        return fail_with(error);
    if (error == SHORT_WRITE && count > 0 && iov[0].iov_len > 1) {
        struct iovec half = {iov[0].iov_base, iov[0].iov_len / 2};
        return real_pwritev(fd, &half, 1, offset);
    }
    return real_pwritev(fd, iov, count, offset);
}

ssize_t read(int fd, void *buf, size_t len)
{
    int error = tracked(fd) ? injected("read", fd_name(fd)) : 0;
    if (error > 0)
        return fail_with(error);
    return real_read(fd, buf, len);
}

int fsync(int fd)
{
    int error = tracked(fd) ? injected("fsync", fd_name(fd)) : 0;
    return error > 0 ? fail_with(error) : real_fsync(fd);
}

int fdatasync(int fd)
{
    int error = tracked(fd) ? injected("fsync", fd_name(fd)) : 0;
    return error > 0 ? fail_with(error) : real_fdatasync(fd);
}

int rename(const char *from, const char *to)
{
    int error = under_root(to) ? injected("rename", to) : 0;
    return error > 0 ? fail_with(error) : real_rename(from, to);
}

int mkdir(const char *path, mode_t mode)
{
    int error = under_root(path) ? injected("mkdir", path) : 0;
    return error > 0 ? fail_with(error) : real_mkdir(path, mode);
}

int unlink(const char *path)
{
    int error = under_root(path) ? injected("unlink", path) : 0;
    return error > 0 ? fail_with(error) : real_unlink(path);
}

DIR *opendir(const char *path)
{
    int error = under_root(path) ? injected("opendir", path) : 0;
    if (error > 0) {
        errno = error;
        return NULL;
    }
    return real_opendir(path);
}
