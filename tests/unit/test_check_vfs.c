/* test_check_vfs.c - the integrity check's VFS (restore/check_vfs.h):
 * through it, SQLite's check of a 64 MiB database reads its pages from a
 * mapping and still finds what is wrong in them, the mapped pages do not
 * stay in the process's memory (with SQLite's own mapping and no drops,
 * they all would), and the pages the check keeps coming back to (the
 * index's, looked up for every row) go to SQLite's own cache instead of
 * being mapped again after every drop. */
#include "harness.h"

#include "../../restore/check_vfs.h"
#include "../../restore/result_check.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ROWS 40000
#define ROW_BYTES 1500   /* about 64 MiB with its index */

/* A WAL-mode database of ROWS rows and an index, checkpointed into the file. */
static void make_database(const char *path)
{
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA journal_mode=WAL;"
                           "CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB);"
                           "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 40000) "
                           "INSERT INTO t SELECT n, randomblob(1500) FROM c;"
                           "CREATE INDEX t_body ON t(substr(body, 1, 16));"
                           "PRAGMA wal_checkpoint(TRUNCATE);",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
}

/* Resident bytes of file mappings (RssFile) of this process. */
static long rss_file_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssFile: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib * 1024;
}

/* 1 if madvise(MADV_POPULATE_READ) works here (Linux 5.14 and later). */
static int kernel_fills_mappings(void)
{
    long page = sysconf(_SC_PAGESIZE);
    void *region = mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        return 0;
    int works = madvise(region, (size_t)page, MADV_POPULATE_READ) == 0;
    munmap(region, (size_t)page);
    return works;
}

/* PRAGMA integrity_check of path through `vfs` with the file mapped;
 * returns the first result row (malloc'd) and, with the statement still
 * open (the mapping in place), the resident file bytes in *resident and
 * what the check's VFS did in *counts (-1 in counts->drops if the file
 * was not opened through it). */
static char *check_through(const char *path, const char *vfs, long *resident, struct check_vfs_counts *counts)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, vfs) != SQLITE_OK)
        return NULL;
    sqlite3_exec(db, "PRAGMA mmap_size=1099511627776", NULL, NULL, NULL);
    sqlite3_stmt *stmt;
    char *result = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL) == SQLITE_OK) {
        if (sqlite3_step(stmt) == SQLITE_ROW)
            result = strdup((const char *)sqlite3_column_text(stmt, 0));
        *resident = rss_file_bytes();
        if (check_vfs_counts(db, counts) != 0)
            counts->drops = (uint64_t)-1;
        sqlite3_finalize(stmt);
    }
    sqlite3_close(db);
    return result;
}

static void test_mapped_check_is_bounded(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/app.db", harness_tmpdir());
    make_database(path);
    ASSERT_PASSING();
    ASSERT_TRUE(check_vfs_name() != NULL);
    long before = rss_file_bytes(), with_drops = 0, without_drops = 0;
    struct check_vfs_counts counts, no_counts;
    char *result = check_through(path, check_vfs_name(), &with_drops, &counts);
    ASSERT_TRUE(result != NULL);
    ASSERT_STR_EQ(result, "ok");
    free(result);
    /* SQLite's own mapping, nothing dropped: the test can tell */
    result = check_through(path, NULL, &without_drops, &no_counts);
    ASSERT_TRUE(result != NULL);
    ASSERT_STR_EQ(result, "ok");
    free(result);
    fprintf(stderr, "# resident file bytes: %ld before, %ld through the check's VFS, %ld without drops\n", before,
            with_drops, without_drops);
    ASSERT_TRUE(without_drops - before > 48L * 1024 * 1024);
    ASSERT_TRUE(with_drops - before < 2L * CHECK_VFS_DROP_BYTES);
    ASSERT_TRUE(no_counts.drops == (uint64_t)-1);   /* not opened through it: no counts */
    fprintf(stderr, "# %llu pages fetched from the mapping, %llu fetches refused for SQLite's cache, %llu drops, "
            "%llu regions filled\n", (unsigned long long)counts.mapped_fetches,
            (unsigned long long)counts.cached_fetches, (unsigned long long)counts.drops,
            (unsigned long long)counts.fills);
    ASSERT_TRUE(counts.drops >= 1);
    /* the mapping filled a region at a time where the kernel can (5.14+) */
    ASSERT_TRUE(counts.fills > 0 || !kernel_fills_mappings());
    /* a page leaves the mapping at most CHECK_VFS_MAPPED_FETCHES times: the
     * index looked up for each of the 40,000 rows went to the cache */
    ASSERT_TRUE(counts.mapped_fetches <= (uint64_t)CHECK_VFS_MAPPED_FETCHES * (uint64_t)(64 * 1024 * 1024 / 4096 + 4096));
    ASSERT_TRUE(counts.cached_fetches > ROWS);
}

/* A table with three indexes, each looked up for every row: most fetches
 * are refused (SQLite's cache serves them, or a read the default VFS
 * copies out of the mapping); what such reads map is dropped all the
 * same, and the resident bytes stay bounded. */
static void test_refused_pages_are_dropped_too(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/indexed.db", harness_tmpdir());
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "PRAGMA journal_mode=WAL;"
                           "CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b INT, c INT, body BLOB);"
                           "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 40000) "
                           "INSERT INTO t SELECT n, n * 7 % 1000, n * 13 % 1000, n * 17 % 1000, randomblob(1500) "
                           "FROM c;"
                           "CREATE INDEX t_a ON t(a); CREATE INDEX t_b ON t(b); CREATE INDEX t_c ON t(c);"
                           "PRAGMA wal_checkpoint(TRUNCATE);",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    long before = rss_file_bytes(), resident = 0;
    struct check_vfs_counts counts;
    char *result = check_through(path, check_vfs_name(), &resident, &counts);
    ASSERT_TRUE(result != NULL);
    ASSERT_STR_EQ(result, "ok");
    free(result);
    fprintf(stderr, "# resident file bytes: %ld before, %ld after; %llu fetches refused, %llu drops\n", before,
            resident, (unsigned long long)counts.cached_fetches, (unsigned long long)counts.drops);
    ASSERT_TRUE(counts.cached_fetches > 2 * ROWS);   /* three index lookups per row */
    ASSERT_TRUE(resident - before < 2L * CHECK_VFS_DROP_BYTES);
}

/* A byte of the index's last page changed: the check through the mapping
 * reports it, and result_check_sqlite fails naming integrity_check. */
static void test_mapped_check_finds_damage(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/app.db", harness_tmpdir());
    make_database(path);
    ASSERT_PASSING();
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    unsigned char byte;
    off_t at = size - 4096 + 200;   /* inside the last page's cells */
    ASSERT_EQ(pread(fd, &byte, 1, at), 1);
    byte ^= 0x5a;
    ASSERT_EQ(pwrite(fd, &byte, 1, at), 1);
    close(fd);
    struct tm_error err;
    ASSERT_EQ(result_check_sqlite(path, RESTORE_CHECK_FULL, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "fails integrity_check");
}

int main(void)
{
    static const struct test_case cases[] = {
        {"check vfs: a 64 MiB database checked through a mapping, its pages not kept resident",
         test_mapped_check_is_bounded},
        {"check vfs: damage in a page is found through the mapping", test_mapped_check_finds_damage},
        {"check vfs: three indexes looked up for every row: refused fetches, memory still bounded",
         test_refused_pages_are_dropped_too},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
