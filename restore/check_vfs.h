/* check_vfs.h - the VFS the restore's integrity check opens the restored
 * file through: SQLite reads its pages from a memory mapping, a page it
 * keeps coming back to is handed to SQLite's own page cache instead, and
 * the mapping's pages are dropped from the process as the check goes, so
 * that its memory stays bounded whatever the database's size. */
#ifndef TM_CHECK_VFS_H
#define TM_CHECK_VFS_H

#include <sqlite3.h>
#include <stdint.h>

/* Bytes of pages fetched through the mapping (or copied out of it) after
 * which the mapped pages are dropped from the process (they stay in the
 * page cache). */
#define CHECK_VFS_DROP_BYTES (16u * 1024 * 1024)

/* Times a page is handed out of the mapping; from the next time on SQLite
 * reads it into its own page cache, where a hot page (an interior page, an
 * index's page looked up for every row) stays between drops. */
#define CHECK_VFS_MAPPED_FETCHES 2

/* What the VFS did for one open file. */
struct check_vfs_counts {
    uint64_t mapped_fetches;   /* pages handed out of the mapping */
    uint64_t cached_fetches;   /* fetches refused: SQLite's cache or a read serves them */
    uint64_t drops;            /* times the mapped pages were dropped */
    uint64_t fills;            /* 128 KiB regions mapped at once (MADV_POPULATE_READ) */
};

/* The VFS's name for sqlite3_open_v2, registered on first use; NULL when
 * it cannot be (then the default VFS reads the file as before). */
const char *check_vfs_name(void);

/* The counts of db's main file, opened through this VFS; -1 if it was not. */
int check_vfs_counts(sqlite3 *db, struct check_vfs_counts *out);

#endif
