/* test_page_writer.c - the restore's page write-back: the file holds the
 * last version of every page, whatever the order, repeats and flushes
 * forced by a small capacity; repeated pages are written once. */
#include "harness.h"

#include "../../restore/page_writer.h"

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

int main(void)
{
    static const struct test_case cases[] = {
        {"page writer: the file holds the last version of every page", test_last_version_of_every_page},
        {"page writer: a page rewritten 100 times is written once", test_hot_pages_are_written_once},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
