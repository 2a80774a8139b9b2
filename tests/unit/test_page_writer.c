/* test_page_writer.c - the restore's page write-back: the file holds the
 * last version of every page, whatever the order, repeats and flushes
 * forced by a small capacity; repeated pages are written once. */
#include "harness.h"

#include "../../restore/page_writer.h"
#include "../../restore/result_check.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define PAGE 512

static void fill(uint8_t *page, uint32_t page_number, uint32_t version)
{
    for (size_t i = 0; i < PAGE; i++)
        page[i] = (uint8_t)(page_number * 31 + version * 7 + i);
}

static void test_last_version_of_every_page(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/pages.db", harness_tmpdir());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(fd >= 0);
    struct page_writer *pw;
    struct tm_error err;
    ASSERT_EQ(page_writer_open(fd, PAGE, 8 * PAGE, &pw, &err), 0);   /* 8 slots: many flushes */
    uint32_t last_version[101] = {0};
    uint8_t page[PAGE];
    srand(7);
    for (uint32_t version = 1; version <= 2000; version++) {
        uint32_t page_number = 1 + (uint32_t)(rand() % 100);
        fill(page, page_number, version);
        ASSERT_EQ(page_writer_put(pw, page_number, page, &err), 0);
        last_version[page_number] = version;
    }
    ASSERT_EQ(page_writer_flush(pw, &err), 0);
    ASSERT_EQ(page_writer_pages_put(pw), 2000);
    ASSERT_TRUE(page_writer_pages_written(pw) < 2000);
    for (uint32_t page_number = 1; page_number <= 100; page_number++) {
        uint8_t expected[PAGE], got[PAGE];
        if (!last_version[page_number])
            continue;
        fill(expected, page_number, last_version[page_number]);
        ASSERT_EQ(pread(fd, got, PAGE, (off_t)(page_number - 1) * PAGE), PAGE);
        ASSERT_TRUE(memcmp(expected, got, PAGE) == 0);
    }
    ASSERT_EQ(page_writer_put(pw, 0, page, &err), -1);                /* page 0 does not exist */
    page_writer_free(pw);
    close(fd);
}

static void test_hot_pages_are_written_once(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/hot.db", harness_tmpdir());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    struct page_writer *pw;
    struct tm_error err;
    ASSERT_EQ(page_writer_open(fd, PAGE, 64 * PAGE, &pw, &err), 0);
    uint8_t page[PAGE];
    for (uint32_t version = 1; version <= 1000; version++) {
        fill(page, 1 + version % 10, version);
        ASSERT_EQ(page_writer_put(pw, 1 + version % 10, page, &err), 0);
    }
    ASSERT_EQ(page_writer_flush(pw, &err), 0);
    ASSERT_EQ(page_writer_pages_written(pw), 10);
    page_writer_free(pw);
    close(fd);
}

static void test_first_missing_page(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/holes.db", harness_tmpdir());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    struct page_writer *pw;
    struct tm_error err;
    ASSERT_EQ(page_writer_open(fd, PAGE, 4 * PAGE, &pw, &err), 0);
    ASSERT_EQ(page_writer_first_missing(pw, 3), 1);              /* nothing yet */
    uint8_t page[PAGE] = {0};
    for (uint32_t n = 1; n <= 40000; n++)                        /* past the bitmap's first size */
        if (n != 33 && n != 39999)
            ASSERT_EQ(page_writer_put(pw, n, page, &err), 0);
    ASSERT_EQ(page_writer_first_missing(pw, 32), 0);
    ASSERT_EQ(page_writer_first_missing(pw, 40000), 33);
    ASSERT_EQ(page_writer_put(pw, 33, page, &err), 0);
    ASSERT_EQ(page_writer_first_missing(pw, 40000), 39999);
    ASSERT_EQ(page_writer_first_missing(pw, 39998), 0);
    ASSERT_EQ(page_writer_first_missing(pw, 40001), 39999);
    ASSERT_EQ(page_writer_put(pw, 39999, page, &err), 0);
    ASSERT_EQ(page_writer_first_missing(pw, 40001), 40001);      /* beyond what was put */
    page_writer_free(pw);
    close(fd);
}

static void test_write_failure_is_reported(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/readonly.db", harness_tmpdir());
    close(open(path, O_RDWR | O_CREAT | O_TRUNC, 0600));
    int fd = open(path, O_RDONLY);   /* every write fails (EBADF) */
    struct page_writer *pw;
    struct tm_error err;
    ASSERT_EQ(page_writer_open(fd, PAGE, 8 * PAGE, &pw, &err), 0);
    uint8_t page[PAGE] = {0};
    int rc = 0;
    for (uint32_t n = 1; n <= 100 && rc == 0; n++)   /* batches handed to the flusher */
        rc = page_writer_put(pw, n, page, &err);
    if (rc == 0)
        rc = page_writer_flush(pw, &err);
    ASSERT_EQ(rc, -1);
    ASSERT_STR_CONTAINS(err.msg, "cannot write the restored file");
    page_writer_free(pw);
    close(fd);
}

/* A file of `pages` pages whose page 1 is an SQLite header saying
 * header_pages pages of header_page_size bytes. */
static int fake_database(const char *path, uint32_t pages, uint32_t header_page_size, uint32_t header_pages)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint8_t page[PAGE] = "SQLite format 3";
    page[16] = (uint8_t)(header_page_size >> 8);
    page[17] = (uint8_t)header_page_size;
    page[27] = 5;                                  /* change counter 5 */
    page[28] = (uint8_t)(header_pages >> 24);
    page[29] = (uint8_t)(header_pages >> 16);
    page[30] = (uint8_t)(header_pages >> 8);
    page[31] = (uint8_t)header_pages;
    page[95] = 5;                                  /* valid for change 5 */
    for (uint32_t n = 0; n < pages; n++)
        if (pwrite(fd, page, PAGE, (off_t)n * PAGE) != PAGE)
            return -1;
    return fd;
}

static void test_result_page_checks(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/result.db", harness_tmpdir());
    struct tm_error err;
    int fd = fake_database(path, 3, PAGE, 3);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(result_check_pages(fd, path, PAGE, 3, 0, &err), 0);
    ASSERT_EQ(result_check_pages(fd, path, PAGE, 3, 2, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "page 2 of 3 was never written");
    ASSERT_EQ(result_check_pages(fd, path, PAGE, 4, 0, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "not 4 pages of 512");
    ASSERT_EQ(result_check_pages(fd, path, 1024, 3, 0, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "is 1536 bytes");
    close(fd);
    fd = fake_database(path, 4, PAGE, 3);
    ASSERT_EQ(result_check_pages(fd, path, PAGE, 4, 0, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "says it has 3 pages, the archive's last transaction 4");
    close(fd);
    fd = fake_database(path, 2, 1024, 2);
    ASSERT_EQ(result_check_pages(fd, path, PAGE, 2, 0, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "says its page size is 1024, the archive 512");
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    close(fd);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"page writer: the first page never put (a hole)", test_first_missing_page},
        {"page writer: a failed write (on the flusher thread) fails the restore", test_write_failure_is_reported},
        {"result check: size, header page size and page count against the archive", test_result_page_checks},
        {"page writer: the file holds the last version of every page", test_last_version_of_every_page},
        {"page writer: a page rewritten 100 times is written once", test_hot_pages_are_written_once},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
