/* fuzz_tshm_layout.c - libFuzzer target: the Turso engine's coordination
 * file (replicator/tshm.c) on arbitrary bytes. tshm_check_layout gets
 * the input (anything it accepts must be at least TSHM_MAP_BYTES long
 * with the magic and version 1); an accepted input is then a file (a
 * memfd, opened by its /proc path as a DB-tshm would be) for tshm_open,
 * tshm_read and a reader slot taken and released whatever the input's
 * bitmap, frames and owners say: the slot taken must be the highest one
 * the input's bitmap had free, and its release must leave the bitmap as
 * it was and the slot's frame and owner empty. */
#include "../../replicator/tshm.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define OFF_BITMAP 192
#define OFF_FRAMES 200
#define OFF_OWNERS 712

static uint64_t u64_at(int fd, off_t offset)
{
    uint64_t v = 0;
    if (pread(fd, &v, sizeof v, offset) != (ssize_t)sizeof v)
        abort();
    return v;
}

static void exercise_slot(int fd, const char *path, uint64_t bitmap_before)
{
    struct tshm *c = NULL;
    struct tm_error err;
    if (tshm_open(path, &c, &err) != 0)
        abort();   /* the layout was accepted: the same bytes must open */
    struct tshm_state state;
    if (tshm_read(c, &state, &err) < 0)
        abort();
    int highest_free = bitmap_before ? 63 - __builtin_clzll(bitmap_before) : -1;
    int rc = tshm_pin(c, 7, &err);
    if ((rc == 0) != (highest_free >= 0) || tshm_pin_slot(c) != highest_free)
        abort();
    if (rc == 0) {
        if (u64_at(fd, OFF_BITMAP) != (bitmap_before & ~((uint64_t)1 << highest_free)) ||
            u64_at(fd, OFF_FRAMES + 8 * highest_free) != 7 || u64_at(fd, OFF_OWNERS + 8 * highest_free) == 0 ||
            tshm_pin_intact(c, &err) != 1)
            abort();
        tshm_unpin(c);
        if (u64_at(fd, OFF_FRAMES + 8 * highest_free) != UINT64_MAX || u64_at(fd, OFF_OWNERS + 8 * highest_free) != 0)
            abort();
    }
    if (u64_at(fd, OFF_BITMAP) != bitmap_before)
        abort();
    tshm_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tm_error err;
    if (tshm_check_layout(data, size, "fuzz.db-tshm", &err) != 0)
        return 0;
    uint32_t version;
    memcpy(&version, data + 8, sizeof version);
    if (size < TSHM_MAP_BYTES || memcmp(data, TSHM_MAGIC, TSHM_MAGIC_BYTES) != 0 || version != TSHM_VERSION)
        abort();
    int fd = memfd_create("tshm", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    uint64_t bitmap;
    memcpy(&bitmap, data + OFF_BITMAP, sizeof bitmap);
    exercise_slot(fd, path, bitmap);
    close(fd);
    return 0;
}
