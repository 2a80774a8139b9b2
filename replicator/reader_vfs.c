/* reader_vfs.c - a shim VFS for the sidecar's read connections: an
 * application writing at busy_timeout 0 must never get "database is
 * locked" because of us.
 *
 * THE RACE. A connection that begins a read transaction reads the
 * wal-index header, whose two copies a committing writer rewrites one
 * after the other (SQLite's wal.c, walIndexTryHdr). A reader that catches
 * them different cannot tell a header being rewritten from a damaged one,
 * so SQLite takes the WAL write lock (exclusive) to look again and, if it
 * is still bad, rebuild it (walIndexReadHdr). When the application has
 * just released that lock at the end of its commit, the reader gets it,
 * for a few microseconds: the application's next BEGIN IMMEDIATE at
 * busy_timeout 0 fails with "database is locked". Measured beside a
 * writer of single-row transactions: about 1 in a million transactions;
 * `strace -f -e fcntl` of the sidecar showed it taking the lock (byte
 * 120 of the -shm, F_WRLCK) a dozen times in 10 s.
 *
 * THE SHIM. Every call goes to the default VFS and its files, except one:
 * a request of these connections for the write lock, exclusive, while
 * another process has the wal-index open, is answered SQLITE_BUSY without
 * asking the OS. SQLite then treats the header it read as one being
 * written: it checks that no recovery is running and tries again
 * (WAL_RETRY, with its own back-off), and finds it whole. The
 * application's lock is never taken from it; and a header that is really
 * damaged is the business of the process that writes it, which repairs it
 * at its own next read.
 *
 * "Another process has it open": each process that has the wal-index
 * open holds a shared lock on byte 128 of the -shm file (SQLite's DMS
 * lock), and /proc/locks lists it with its pid. Only read on this rare
 * path (a header caught changing). Alone (the application not running,
 * or a reboot or crash left a wal-index to rebuild), or when /proc/locks
 * cannot be read, SQLite gets the lock as before. */
#include "reader_vfs.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define READER_VFS_NAME "tidemark-reader"
#define WAL_WRITE_LOCK 0                  /* wal.c: the first of the shm's locks */
#define SHM_DMS_BYTE 128                  /* os_unix.c: UNIX_SHM_DMS, held shared by every process attached */

/* Our file: its methods, the -shm's path (main database only), then the
 * default VFS's file. */
struct reader_file {
    sqlite3_file base;
    char shm_path[PATH_MAX];
    sqlite3_file *real;
};

static sqlite3_vfs reader_vfs;
static sqlite3_vfs *default_vfs;
static pthread_once_t registered = PTHREAD_ONCE_INIT;
static int registered_ok;

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((struct reader_file *)f)->real;
}

/* ------------------------------------------------- forwarded file methods */

static int r_close(sqlite3_file *f) { return real_of(f)->pMethods->xClose(real_of(f)); }
static int r_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xRead(real_of(f), buf, amt, off);
}
static int r_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xWrite(real_of(f), buf, amt, off);
}
static int r_truncate(sqlite3_file *f, sqlite3_int64 size) { return real_of(f)->pMethods->xTruncate(real_of(f), size); }
static int r_sync(sqlite3_file *f, int flags) { return real_of(f)->pMethods->xSync(real_of(f), flags); }
static int r_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
static int r_lock(sqlite3_file *f, int level) { return real_of(f)->pMethods->xLock(real_of(f), level); }
static int r_unlock(sqlite3_file *f, int level) { return real_of(f)->pMethods->xUnlock(real_of(f), level); }
static int r_check_reserved(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
static int r_file_control(sqlite3_file *f, int op, void *arg)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
static int r_sector_size(sqlite3_file *f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
static int r_device_characteristics(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
static int r_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, out);
}
static void r_shm_barrier(sqlite3_file *f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); }
static int r_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), delete_flag);
}
static int r_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **out)
{
    return real_of(f)->pMethods->xFetch(real_of(f), off, amt, out);
}
static int r_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return real_of(f)->pMethods->xUnfetch(real_of(f), off, p);
}

/* ---------------------------------------------------------- the one change */

/* One line of /proc/locks ("7: POSIX  ADVISORY  READ 1234 fe:00:5358145
 * 128 128"): 1 when it is a lock of another process on `byte` of the
 * file (device, inode). Waiters ("7: -> POSIX ...") do not match. */
static int other_lock_on(const char *line, const struct stat *file, uint64_t byte)
{
    char kind[16], start[32], end[32];
    long pid;
    unsigned dev_major, dev_minor;
    unsigned long inode;
    if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%lu %31s %31s", kind, &pid, &dev_major, &dev_minor, &inode,
               start, end) != 7)
        return 0;
    if ((strcmp(kind, "POSIX") != 0 && strcmp(kind, "OFDLCK") != 0) || pid == (long)getpid())
        return 0;
    if (dev_major != major(file->st_dev) || dev_minor != minor(file->st_dev) || inode != (unsigned long)file->st_ino)
        return 0;
    uint64_t first = strtoull(start, NULL, 10);
    uint64_t last = strcmp(end, "EOF") == 0 ? UINT64_MAX : strtoull(end, NULL, 10);
    return first <= byte && byte <= last;
}

/* 1 when another process has this wal-index open (see the top); 0 when
 * none has, or it cannot be told. */
static int other_process_attached(const char *shm_path)
{
    struct stat file;
    FILE *locks;
    if (!shm_path[0] || stat(shm_path, &file) != 0 || !(locks = fopen("/proc/locks", "re")))
        return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, locks))
        found = other_lock_on(line, &file, SHM_DMS_BYTE);
    fclose(locks);
    return found;
}

static int r_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    struct reader_file *rf = (struct reader_file *)f;
    if (offset == WAL_WRITE_LOCK && flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) &&
        other_process_attached(rf->shm_path))
        return SQLITE_BUSY;
    return rf->real->pMethods->xShmLock(rf->real, offset, n, flags);
}

static const sqlite3_io_methods reader_methods = {
    3, r_close, r_read, r_write, r_truncate, r_sync, r_file_size, r_lock, r_unlock, r_check_reserved,
    r_file_control, r_sector_size, r_device_characteristics, r_shm_map, r_shm_lock, r_shm_barrier, r_shm_unmap,
    r_fetch, r_unfetch,
};

/* ---------------------------------------------------------------- the VFS */

static int reader_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)vfs;
    struct reader_file *rf = (struct reader_file *)f;
    memset(rf, 0, sizeof *rf);
    rf->real = (sqlite3_file *)&rf[1];
    if (name && (flags & SQLITE_OPEN_MAIN_DB) &&
        (size_t)snprintf(rf->shm_path, sizeof rf->shm_path, "%s-shm", name) >= sizeof rf->shm_path)
        rf->shm_path[0] = '\0';   /* cannot be told: as before */
    int rc = default_vfs->xOpen(default_vfs, name, rf->real, flags, out_flags);
    /* Our methods forward to version 3 methods (the unix VFS's): a file
     * with fewer is not opened. Without methods SQLite closes nothing. */
    if (rc == SQLITE_OK && rf->real->pMethods && rf->real->pMethods->iVersion < 3)
        rc = SQLITE_CANTOPEN;
    if (rc != SQLITE_OK) {
        if (rf->real->pMethods)
            rf->real->pMethods->xClose(rf->real);
        return rc;
    }
    if (rf->real->pMethods)
        rf->base.pMethods = &reader_methods;
    return rc;
}

static int reader_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return default_vfs->xDelete(default_vfs, name, sync_dir);
}
static int reader_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return default_vfs->xAccess(default_vfs, name, flags, out);
}
static int reader_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return default_vfs->xFullPathname(default_vfs, name, n, out);
}
static void *reader_dl_open(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return default_vfs->xDlOpen(default_vfs, name);
}
static void reader_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    default_vfs->xDlError(default_vfs, n, out);
}
static void (*reader_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void)
{
    (void)vfs;
    return default_vfs->xDlSym(default_vfs, handle, symbol);
}
static void reader_dl_close(sqlite3_vfs *vfs, void *handle)
{
    (void)vfs;
    default_vfs->xDlClose(default_vfs, handle);
}
static int reader_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return default_vfs->xRandomness(default_vfs, n, out);
}
static int reader_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return default_vfs->xSleep(default_vfs, us);
}
static int reader_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return default_vfs->xCurrentTime(default_vfs, out);
}
static int reader_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return default_vfs->xGetLastError ? default_vfs->xGetLastError(default_vfs, n, out) : 0;
}
static int reader_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return default_vfs->xCurrentTimeInt64(default_vfs, out);
}

static void register_once(void)
{
    default_vfs = sqlite3_vfs_find(NULL);
    if (!default_vfs || default_vfs->iVersion < 2)
        return;
    reader_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct reader_file) + default_vfs->szOsFile,
        .mxPathname = default_vfs->mxPathname,
        .zName = READER_VFS_NAME,
        .xOpen = reader_open,
        .xDelete = reader_delete,
        .xAccess = reader_access,
        .xFullPathname = reader_full_pathname,
        .xDlOpen = reader_dl_open,
        .xDlError = reader_dl_error,
        .xDlSym = reader_dl_sym,
        .xDlClose = reader_dl_close,
        .xRandomness = reader_randomness,
        .xSleep = reader_sleep,
        .xCurrentTime = reader_current_time,
        .xGetLastError = reader_last_error,
        .xCurrentTimeInt64 = reader_current_time_int64,
    };
    registered_ok = sqlite3_vfs_register(&reader_vfs, 0) == SQLITE_OK;
}

const char *reader_vfs_name(void)
{
    pthread_once(&registered, register_once);
    return registered_ok ? READER_VFS_NAME : NULL;
}
