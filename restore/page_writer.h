/* page_writer.h - write-back of the pages a restore produces.
 *
 * A restore writes every version of every page it replays: after an hour
 * of heavy updates, many times the database's size, one pwrite per page.
 * The page writer keeps the latest version of up to a fixed number of
 * pages in memory (a later version replaces an earlier one in place) and
 * writes them out in page order when full and on flush, on a thread of its
 * own while the next batch fills (page_writer.c). Memory is bounded by
 * max_bytes whatever the database size. A write that fails is reported by
 * a later page_writer_put or by page_writer_flush. One caller thread. */
#ifndef TM_PAGE_WRITER_H
#define TM_PAGE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

struct page_writer;

/* Pages go to fd at (page_number - 1) * page_size. */
int page_writer_open(int fd, uint32_t page_size, size_t max_bytes, struct page_writer **out,
                     struct tm_error *err);
int page_writer_put(struct page_writer *pw, uint32_t page_number, const uint8_t *page,
                    struct tm_error *err);
/* Writes every page held; the file is then complete. */
int page_writer_flush(struct page_writer *pw, struct tm_error *err);
/* The first page of 1..page_count never given to page_writer_put since
 * it was opened, or 0 when every one was (the restore's check that the
 * file has no hole). */
uint32_t page_writer_first_missing(const struct page_writer *pw, uint32_t page_count);
/* Counters: pages given, pages written to the file. */
uint64_t page_writer_pages_put(const struct page_writer *pw);
uint64_t page_writer_pages_written(const struct page_writer *pw);
void page_writer_free(struct page_writer *pw);

#endif
