/* result_check.h - the checks a restored SQLite file passes before it is
 * moved to the output: page-level invariants (always) and SQLite's own
 * check (--integrity-check full|quick|none). */
#ifndef TM_RESULT_CHECK_H
#define TM_RESULT_CHECK_H

#include <stdint.h>

#include "../common/error.h"
#include "restore.h"

/* The file `path` (open as fd, cut to page_count pages of page_size)
 * against what the archive said: its size is exactly page_count pages,
 * page 1 is an SQLite header whose page size is page_size and whose
 * database size (when valid: SQLite 3.7.0 and later write it) is
 * page_count. first_missing: a page of 1..page_count the restore never
 * wrote (page_writer_first_missing), 0 if none. TM_ERR_CORRUPT naming
 * what differs. */
int result_check_pages(int fd, const char *path, uint32_t page_size, uint32_t page_count, uint32_t first_missing,
                       struct tm_error *err);

/* PRAGMA integrity_check (full) or quick_check (quick) of `path`; nothing
 * for none. -1 with err set when the check fails or cannot run. */
int result_check_sqlite(const char *path, enum restore_integrity integrity, struct tm_error *err);

#endif
