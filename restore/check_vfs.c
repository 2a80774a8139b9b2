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
 * asked for).
 *
 * HOT PAGES. Each drop also unmaps the pages the check keeps coming back
 * to: the interior pages of every b-tree, and an index's pages, looked up
 * once for every row of its table. Mapped again after every drop, they
 * made the check slower than with read(2) where a page fault is dear (a
 * 1 GiB check: 1.7-2.3 s against 1.3 s with read(2) and 0.58 s mapped with
 * no drops, 81,000 faults against 16,000, on a paravirtualised machine).
 * So a page is handed out of the mapping CHECK_VFS_MAPPED_FETCHES times
 * (a table is walked once to check its tree and once more per index);
 * after that its fetch is refused and SQLite reads it into its own page
 * cache, where a hot page stays across drops. Such a read is copied out of
 * the mapping by the default VFS, so its bytes count towards the next drop
 * too, made by the next fetch, mapped or refused. The same check: 0.98-1.0 s, 34,000 faults, RSS as before. The
 * counts take 2 bits per page (64 KiB per GiB of database).
 *
 * FILLING. What faults remain are SQLite walking a table, page after page
 * (a fault maps 16 pages around the one asked for). A page fetched from a
 * 128 KiB region not mapped since the last drop has the whole region
 * mapped at once (madvise(MADV_POPULATE_READ), Linux 5.14; if it fails,
 * filling stops and the faults do it), never past the mapping's end: the
 * file's size, up to SQLite's limit, which the default xFetch of the last
 * page confirms once per mapping before anything is filled. With drops every 16 MiB instead of 8 (the filled
 * regions count towards them), the 1 GiB restore's check took 1.02-1.06 s
 * against 1.12-1.14 s, its peak RSS 40 MiB as before (3 alternated runs).
 *
 * HOW. The VFS is the default one with a different open: a file opened
 * through it is the default VFS's own file, whose methods are replaced by
 * a copy in which xFetch, xRead, xFileControl and xClose differ; the
 * state they need (where the mapping starts, how far it was read, bytes
 * fetched since the last drop, the pages' counts, the regions filled)
 * lives in the bytes after the default VFS's file, which szOsFile makes
 * room for. Pages are dropped and regions filled only from inside xFetch,
 * on the checking thread, right after the default xFetch returned a page
 * of the mapping: the mapping dropped from is the one SQLite maps now (it
 * is mapped again, elsewhere, only from inside xFetch). */
#include "check_vfs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK_VFS_NAME "tidemark-check"
/* the private file-control opcode of check_vfs_counts ("tm" 1) */
#define FCNTL_COUNTS 0x746d0001
#define COUNT_BITS 2
#define COUNTS_PER_BYTE (8 / COUNT_BITS)
#define COUNT_MASK ((1u << COUNT_BITS) - 1)
/* The mapping is filled 2^17 bytes (128 KiB) at a time */
#define REGION_SHIFT 17

/* After the default VFS's file, in the same allocation. */
struct mapping_state {
    const sqlite3_io_methods *real;    /* the default VFS's methods of this file */
    sqlite3_io_methods patched;        /* the same, four of them replaced */
    uint8_t *base;                     /* where the mapping starts (file offset 0) */
    sqlite3_int64 extent;              /* bytes of it fetched from, from base */
    uint64_t fetched;                  /* bytes fetched or read since the last drop */
    uint8_t *page_fetches;             /* per page, COUNT_BITS: times handed out of the mapping */
    uint64_t pages_counted;            /* pages page_fetches has room for */
    int counts_unavailable;            /* no room for them: every fetch is mapped */
    uint8_t *regions_filled;           /* per region, a bit: filled since the last drop; NULL: no filling */
    uint64_t mapped_end;               /* bytes the mapping covers: the file, up to SQLite's limit */
    int mapping_checked;               /* the mapping is known to reach mapped_end */
    struct check_vfs_counts counts;
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

/* Bytes of regions_filled: a bit per region up to mapped_end. */
static size_t regions_filled_bytes(const struct mapping_state *s)
{
    return (size_t)(s->mapped_end >> REGION_SHIFT) / 8 + 1;
}

/* No region counts as filled any more (the mapping's pages were dropped,
 * or the mapping is new). */
static void forget_filled_regions(struct mapping_state *s)
{
    if (s->regions_filled)
        memset(s->regions_filled, 0, regions_filled_bytes(s));
}

/* Filling stops for this file: the faults map the pages. */
static void stop_filling(struct mapping_state *s)
{
    free(s->regions_filled);
    s->regions_filled = NULL;
}

/* Drops the pages of the mapping fetched from so far from the process. */
static void drop_mapped_pages(struct mapping_state *s)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t length = ((size_t)s->extent + (size_t)page - 1) / (size_t)page * (size_t)page;
    madvise(s->base, length, MADV_DONTNEED);
    s->fetched = 0;
    s->counts.drops++;
    forget_filled_regions(s);
}

/* Room for a count per page of the file, pages of page_bytes; at the
 * first fetch, when the page size is known. */
static void allocate_counts(sqlite3_file *f, struct mapping_state *s, int page_bytes)
{
    sqlite3_int64 size = 0;
    if (page_bytes <= 0 || s->real->xFileSize(f, &size) != SQLITE_OK || size < 0) {
        s->counts_unavailable = 1;
        return;
    }
    uint64_t pages = (uint64_t)size / (uint64_t)page_bytes + 1;
    s->page_fetches = calloc((size_t)(pages / COUNTS_PER_BYTE + 1), 1);
    if (s->page_fetches)
        s->pages_counted = pages;
    else
        s->counts_unavailable = 1;
    sqlite3_int64 limit = -1;   /* -1 asks for SQLite's limit without changing it */
    if (s->real->xFileControl(f, SQLITE_FCNTL_MMAP_SIZE, &limit) == SQLITE_OK && limit > 0) {
        s->mapped_end = (uint64_t)(size < limit ? size : limit);
        s->regions_filled = calloc(regions_filled_bytes(s), 1);
    }
}

/* 0 if the mapping starting at s->base holds the page that ends at
 * mapped_end, where SQLite says it should (its last page fetched, then
 * released): the regions filled, and the range dropped, lie in the
 * mapping and nowhere else. Once per mapping. */
static int check_mapping_end(sqlite3_file *f, struct mapping_state *s, int amount)
{
    if (amount <= 0 || s->mapped_end < (uint64_t)amount)
        return -1;
    sqlite3_int64 last = (sqlite3_int64)(s->mapped_end - (uint64_t)amount);
    void *page = NULL;
    if (s->real->xFetch(f, last, amount, &page) != SQLITE_OK || !page)
        return -1;
    int same = (uint8_t *)page == s->base + last;
    s->real->xUnfetch(f, last, page);
    if (!same)
        return -1;
    s->mapping_checked = 1;
    return 0;
}

/* Maps the 128 KiB region around a page just fetched from the mapping at
 * once, if it was not since the last drop: one system call instead of a
 * fault every 16 pages (fault-around) as SQLite walks the region. Never
 * past the mapping's end, which it may not own. */
static void fill_region(sqlite3_file *f, struct mapping_state *s, sqlite3_int64 offset, int amount)
{
    if (!s->regions_filled || (uint64_t)offset >= s->mapped_end)
        return;
    if (!s->mapping_checked && check_mapping_end(f, s, amount) != 0) {
        stop_filling(s);
        return;
    }
    uint64_t region = (uint64_t)offset >> REGION_SHIFT;
    uint8_t bit = (uint8_t)(1u << (region % 8));
    if (s->regions_filled[region / 8] & bit)
        return;
    s->regions_filled[region / 8] |= bit;
    uint64_t start = region << REGION_SHIFT, end = start + ((uint64_t)1 << REGION_SHIFT);
    if (end > s->mapped_end)
        end = s->mapped_end;
    if (madvise(s->base + start, (size_t)(end - start), MADV_POPULATE_READ) != 0) {
        stop_filling(s);   /* an old kernel (EINVAL), or anything else: faults will do */
        return;
    }
    if ((sqlite3_int64)end > s->extent)
        s->extent = (sqlite3_int64)end;
    s->fetched += end - start;
    s->counts.fills++;
}

/* 1 if the page at offset was handed out of the mapping often enough that
 * SQLite's own cache should hold it; else counts this fetch. */
static int page_is_hot(sqlite3_file *f, struct mapping_state *s, sqlite3_int64 offset, int amount)
{
    if (!s->page_fetches && !s->counts_unavailable)
        allocate_counts(f, s, amount);
    if (!s->page_fetches || amount <= 0)
        return 0;
    uint64_t page = (uint64_t)offset / (uint64_t)amount;
    if (page >= s->pages_counted)
        return 0;
    uint8_t *slot = &s->page_fetches[page / COUNTS_PER_BYTE];
    unsigned shift = (unsigned)(page % COUNTS_PER_BYTE) * COUNT_BITS;
    unsigned fetches = (*slot >> shift) & COUNT_MASK;
    if (fetches >= CHECK_VFS_MAPPED_FETCHES)
        return 1;
    *slot = (uint8_t)((*slot & ~(COUNT_MASK << shift)) | ((fetches + 1) << shift));
    return 0;
}

static int check_fetch(sqlite3_file *f, sqlite3_int64 offset, int amount, void **out)
{
    struct mapping_state *s = state_of(f);
    if (page_is_hot(f, s, offset, amount)) {
        *out = NULL;   /* SQLite reads it (xRead) into its cache */
        s->counts.cached_fetches++;
        if (s->base && s->fetched >= CHECK_VFS_DROP_BYTES)
            drop_mapped_pages(s);   /* what the reads copied out of the mapping */
        return SQLITE_OK;
    }
    int rc = s->real->xFetch(f, offset, amount, out);
    if (rc != SQLITE_OK || !*out)
        return rc;
    s->counts.mapped_fetches++;
    uint8_t *base = (uint8_t *)*out - offset;
    if (base != s->base) {   /* mapped (again): nothing of it dropped or filled yet */
        s->base = base;
        s->extent = 0;
        s->fetched = 0;
        s->mapping_checked = 0;
        forget_filled_regions(s);
    }
    if (offset + amount > s->extent)
        s->extent = offset + amount;
    s->fetched += (uint64_t)amount;
    fill_region(f, s, offset, amount);
    if (s->fetched >= CHECK_VFS_DROP_BYTES)
        drop_mapped_pages(s);
    return rc;
}

/* A read is copied out of the mapping when the page lies in it: its bytes
 * count towards the next drop, made by the next fetch (the mapping moves
 * only inside the default xFetch, so the base the last mapped fetch saw is
 * where it is). */
static int check_read(sqlite3_file *f, void *buffer, int amount, sqlite3_int64 offset)
{
    struct mapping_state *s = state_of(f);
    if (amount > 0)
        s->fetched += (uint64_t)amount;
    return s->real->xRead(f, buffer, amount, offset);
}

static int check_file_control(sqlite3_file *f, int op, void *arg)
{
    struct mapping_state *s = state_of(f);
    if (op == FCNTL_COUNTS) {
        *(struct check_vfs_counts *)arg = s->counts;
        return SQLITE_OK;
    }
    return s->real->xFileControl(f, op, arg);
}

static int check_close(sqlite3_file *f)
{
    struct mapping_state *s = state_of(f);
    free(s->page_fetches);
    s->page_fetches = NULL;
    stop_filling(s);
    return s->real->xClose(f);
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
        s->patched.xRead = check_read;
        s->patched.xFileControl = check_file_control;
        s->patched.xClose = check_close;
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

int check_vfs_counts(sqlite3 *db, struct check_vfs_counts *out)
{
    memset(out, 0, sizeof *out);
    return sqlite3_file_control(db, "main", FCNTL_COUNTS, out) == SQLITE_OK ? 0 : -1;
}
