/* reader_vfs.h - the SQLite VFS the sidecar's own connections to an
 * application's database open through: the system's default VFS, except
 * that these readers do not take the application's WAL write lock to
 * check a wal-index header they caught being rewritten (reader_vfs.c). */
#ifndef TM_READER_VFS_H
#define TM_READER_VFS_H

/* The name to pass to sqlite3_open_v2 (registered on first call, once
 * per process; NULL when it could not be: then open with the default). */
const char *reader_vfs_name(void);

#endif
