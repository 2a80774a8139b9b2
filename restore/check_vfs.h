/* check_vfs.h - the VFS the restore's integrity check opens the restored
 * file through: SQLite reads its pages from a memory mapping, and the
 * mapping's pages are dropped from the process as the check goes, so that
 * its memory stays bounded whatever the database's size. */
#ifndef TM_CHECK_VFS_H
#define TM_CHECK_VFS_H

/* Bytes of pages fetched through the mapping after which the mapped pages
 * are dropped from the process (they stay in the page cache). */
#define CHECK_VFS_DROP_BYTES (8u * 1024 * 1024)

/* The VFS's name for sqlite3_open_v2, registered on first use; NULL when
 * it cannot be (then the default VFS reads the file as before). */
const char *check_vfs_name(void);

#endif
