/* fuzz_wal.c - libFuzzer target: the WAL parser (replicator/wal.c) on
 * arbitrary bytes presented as a -wal file. */
#include "../../replicator/wal.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static int count_commit(void *ctx, const struct wal_position *end, uint32_t db_size, struct tm_error *err)
{
    (void)end, (void)db_size, (void)err;
    (*(unsigned *)ctx)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("wal", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    struct wal_header hdr;
    struct tm_error err;
    if (wal_read_header(fd, &hdr, &err) == 1) {
        struct wal_position start = wal_position_start(&hdr), last;
        unsigned commits = 0;
        wal_scan(fd, &hdr, &start, UINT32_MAX, count_commit, &commits, &last, &err);
    }
    close(fd);
    return 0;
}
