/* result_check.c - the checks of a restored SQLite file (see
 * result_check.h). The page-level checks cost one fstat and one pread:
 * they stay with --integrity-check none, so that a restore never moves a
 * file whose size or header contradicts the archive.
 *
 * SQLite's header (https://www.sqlite.org/fileformat.html, 1.3):
 *   offset 0  16 bytes "SQLite format 3\0"
 *   offset 16  2 bytes page size, big-endian (1 means 65536)
 *   offset 24  4 bytes file change counter
 *   offset 28  4 bytes database size in pages ("in-header database size")
 *   offset 92  4 bytes version-valid-for: the size at 28 is valid only
 *              when this equals the change counter */
#include "result_check.h"

#include "check_vfs.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SQLITE_HEADER_BYTES 100
/* PRAGMA mmap_size for the check: the whole file, up to SQLite's limit */
#define MAPPED_BYTES_MAX "1099511627776"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int check_header(const uint8_t *h, const char *path, uint32_t page_size, uint32_t page_count,
                        struct tm_error *err)
{
    if (memcmp(h, "SQLite format 3", 16) != 0)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the restored file '%s' does not start with an SQLite header", path);
    uint32_t header_page_size = (uint32_t)h[16] << 8 | h[17];
    if (header_page_size == 1)
        header_page_size = 65536;
    if (header_page_size != page_size)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the restored file '%s' says its page size is %u, the archive %u",
                             path, header_page_size, page_size);
    uint32_t header_pages = be32(h + 28);
    if (be32(h + 92) == be32(h + 24) && header_pages != page_count)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the restored file '%s' says it has %u pages, the archive's last "
                             "transaction %u", path, header_pages, page_count);
    return 0;
}

int result_check_pages(int fd, const char *path, uint32_t page_size, uint32_t page_count, uint32_t first_missing,
                       struct tm_error *err)
{
    if (page_count == 0 || first_missing == 1)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the restored file '%s' has no first page", path);
    if (first_missing)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the restored file '%s' would have a hole: page %u of %u was never "
                             "written", path, first_missing, page_count);
    struct stat st;
    if (fstat(fd, &st) != 0)
        return tm_error_set(err, "cannot read '%s': %s", path, strerror(errno));
    if ((uint64_t)st.st_size != (uint64_t)page_count * page_size)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the restored file '%s' is %lld bytes, not %u pages of %u", path,
                             (long long)st.st_size, page_count, page_size);
    uint8_t header[SQLITE_HEADER_BYTES];
    ssize_t got = pread(fd, header, sizeof header, 0);
    if (got < 0)
        return tm_error_set(err, "cannot read '%s': %s", path, strerror(errno));
    if ((size_t)got < sizeof header)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the restored file '%s' is shorter than an SQLite header", path);
    return check_header(header, path, page_size, page_count, err);
}

int result_check_sqlite(const char *path, enum restore_integrity integrity, struct tm_error *err)
{
    if (integrity == RESTORE_CHECK_NONE)
        return 0;
    const char *pragma = integrity == RESTORE_CHECK_QUICK ? "quick_check" : "integrity_check";
    sqlite3 *db = NULL;
    int rc = -1;
    /* pages read from a mapping, dropped from the process as the check
     * goes (check_vfs.h): a third faster than read(2), memory bounded */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, check_vfs_name()) != SQLITE_OK) {
        tm_error_set(err, "cannot open the restored database: %s", sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_exec(db, "PRAGMA mmap_size=" MAPPED_BYTES_MAX, NULL, NULL, NULL);   /* capped by SQLite's own limit */
    char sql[40];
    snprintf(sql, sizeof sql, "PRAGMA %s", pragma);
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        tm_error_set(err, "%s failed to run: %s", pragma, sqlite3_errmsg(db));
        goto done;
    }
    int step = sqlite3_step(stmt);
    const char *result = step == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
    if (result && strcmp(result, "ok") == 0)
        rc = 0;
    else
        tm_error_set(err, "the restored database fails %s: %s", pragma,
                      result ? result : sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
done:
    sqlite3_close(db);
    return rc;
}
