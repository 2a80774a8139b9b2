/* check_vfs.c - a VFS for the restore's integrity check (see check_vfs.h).
 *
 * WHY. PRAGMA integrity_check reads every page of the restored file. Read
 * with read(2), one system call and one copy per page, that was 0.44 s of
 * kernel time in a 0.60 s check of a 1 GiB database; read from a memory
 * mapping (PRAGMA mmap_size), the same check took 0.33 s (sqlite3 3.40,
 * bench/ 1 GiB archive, 3 runs each). The check is the same; only how the
 * bytes reach SQLite differs.
 *
 * THE COST, AND ITS BOUND. Pages read through a mapping count in the
 * process's resident memory until they are unmapped: a check of a 4 GiB
 * file would show up to SQLite's mapping limit (2 GiB by default) of
 * resident memory, where the restore promises a few tens of MiB. So every
 * CHECK_VFS_DROP_BYTES of pages fetched, the mapping's pages are dropped
 * from the process with madvise(MADV_DONTNEED). For a shared mapping of a
 * file that changes nothing but the page tables: the next access to a page
 * maps it again from the page cache, with the same bytes, so pointers
 * SQLite holds into the mapping stay valid. Peak RSS of a 1 GiB restore:
 * 39-42 MiB instead of 23 (a fault also maps the pages around the one
 * asked for). Dropping more often gives the time back: counting every
 * fetch as the 64 KiB a fault may map (16 times as many drops) made the
 * check as slow as with read(2) again (0.59-0.69 s), for 32 MiB.
 *
 * HOW. The VFS is the default one with a different open: a file opened
 * through it is the default VFS's own file, whose methods are replaced by
 * a copy in which only xFetch differs; the state it needs (where the
 * mapping starts, how far it was read, bytes fetched since the last drop)
 * lives in the bytes after the default VFS's file, which szOsFile makes
 * room for. xFetch runs on the checking thread, between SQLite's own
 * calls, so the mapping it drops pages of is the one SQLite maps now (it
 * is mapped again, elsewhere, only from inside xFetch). */
#include "check_vfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK_VFS_NAME "tidemark-check"

/* After the default VFS's file, in the same allocation. */
struct mapping_state {
    const sqlite3_io_methods *real;    /* the default VFS's methods of this file */
    sqlite3_io_methods patched;        /* the same, xFetch replaced */
    uint8_t *base;                     /* where the mapping starts (file offset 0) */
    sqlite3_int64 extent;              /* bytes of it fetched from, from base */
    uint64_t fetched;                  /* bytes fetched since the last drop */
};

/* Set once by register_vfs, read-only afterwards. */
struct check_vfs {
    sqlite3_vfs vfs;
    sqlite3_vfs *real;
    int ok;
};

static struct check_vfs check_vfs;
static pthread_once_t registered = PTHREAD_ONCE_INIT;

static struct mapping_state *state_of(sqlite3_file *f)
{
    return (struct mapping_state *)((char *)f + check_vfs.real->szOsFile);
}

/* Drops the pages of the mapping fetched from so far from the process. */
static void drop_mapped_pages(struct mapping_state *s)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t length = ((size_t)s->extent + (size_t)page - 1) / (size_t)page * (size_t)page;
    madvise(s->base, length, MADV_DONTNEED);
    s->fetched = 0;
}

static int check_fetch(sqlite3_file *f, sqlite3_int64 offset, int amount, void **out)
{
    struct mapping_state *s = state_of(f);
    int rc = s->real->xFetch(f, offset, amount, out);
    if (rc != SQLITE_OK || !*out)
        return rc;
    uint8_t *base = (uint8_t *)*out - offset;
    if (base != s->base) {   /* mapped (again): nothing of it dropped yet */
        s->base = base;
        s->extent = 0;
        s->fetched = 0;
    }
    if (offset + amount > s->extent)
        s->extent = offset + amount;
    s->fetched += (uint64_t)amount;
    if (s->fetched >= CHECK_VFS_DROP_BYTES)
        drop_mapped_pages(s);
    return rc;
}

static int check_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    (void)vfs;
    int rc = check_vfs.real->xOpen(check_vfs.real, name, f, flags, out_flags);
    if (rc != SQLITE_OK || !f->pMethods)
        return rc;
    struct mapping_state *s = state_of(f);
    memset(s, 0, sizeof *s);
    s->real = f->pMethods;
    if (s->real->iVersion >= 3 && s->real->xFetch) {
        s->patched = *s->real;
        s->patched.xFetch = check_fetch;
        f->pMethods = &s->patched;
    }
    return rc;
}

static void register_vfs(void)
{
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);
    if (!real)
        return;
    check_vfs.real = real;
    check_vfs.vfs = *real;
    check_vfs.vfs.zName = CHECK_VFS_NAME;
    check_vfs.vfs.szOsFile = real->szOsFile + (int)sizeof(struct mapping_state);
    check_vfs.vfs.xOpen = check_open;
    check_vfs.vfs.pNext = NULL;
    check_vfs.ok = sqlite3_vfs_register(&check_vfs.vfs, 0) == SQLITE_OK;
}

const char *check_vfs_name(void)
{
    pthread_once(&registered, register_vfs);
    return check_vfs.ok ? CHECK_VFS_NAME : NULL;
}
