/* tailer_copy.c - a base snapshot copied page by page from the database
 * file and the WAL, as of the pin, with no SQLite connection involved.
 *
 * DESIGN
 *
 * With the pin at the end F of a commit of the WAL followed, the image of
 * the database at F is, for each page up to the size the commit at F
 * gives, the page's last frame in 1..F, else the database file's page.
 * This holds on both routes because of what the pin forbids:
 *
 *  - SQLite (a read transaction on read mark 1..4, whose snapshot ends at
 *    F): no checkpoint copies a frame past the mark into the database
 *    file, and no writer restarts the WAL while a mark other than 0 is
 *    held, so frames 1..F stay where they are, and a page the file holds
 *    changes only to the content of a frame <= F, which the copy reads
 *    from the WAL instead. On read mark 0 (the WAL was wholly copied into
 *    the file when the pin began) the snapshot is the file alone: no
 *    checkpoint writes it while mark 0 is held, but a writer may restart
 *    the WAL, so not one frame is read then. A pin whose mark could not be
 *    told apart is not copied here (tailer.c uses SQLite's backup API).
 *  - The Turso engine (a reader slot at F): the same, as tailer_turso.c
 *    explains, with its extra checks around the copy.
 *
 * The database file is read SNAPSHOT_BATCH_PAGES pages at a time (one
 * pread), the pages the WAL holds then overwritten from their frames, and
 * the batch written out: about the speed of cp, several times faster
 * than the backup API. Between batches, keep_going may make the copy give
 * way (TAILER_LATER): an application's checkpoint waits for the pin.
 *
 * The frame map (one uint32_t per page of the database) is the copy's
 * only allocation that grows with the database: 1 MiB per 1 GiB of 4 KiB
 * pages. It is built from the frames' headers, read MAP_READ_BYTES at a
 * time. */
#include "tailer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAPSHOT_BATCH_PAGES 256

/* Frames read at once by map_pages: a read per frame header cost a
 * system call per 4 KiB of WAL (about 60,000 for a 250 MB WAL, 100-300
 * ms on the loop at every snapshot of a small database written fast). */
#define MAP_READ_BYTES (1024 * 1024)

/* Records frames [first, first + count) of `frames` (read from the WAL)
 * in the map; -1 when one is not of the WAL followed. */
static int map_frames(struct tailer *t, const uint8_t *frames, size_t frame_bytes, uint32_t first, uint32_t count,
                      uint32_t *map, uint32_t db_pages, struct tm_error *err)
{
    for (uint32_t i = 0; i < count; i++) {
        struct wal_frame_header fh;
        wal_frame_header_decode(frames + (size_t)i * frame_bytes, &fh);
        if (fh.salt1 != t->hdr.salt1 || fh.salt2 != t->hdr.salt2)
            return tm_error_set(err, "frame %u of '%s' changed under the pin", first + i, t->wal_path);
        if (fh.page_number <= db_pages)
            map[fh.page_number] = first + i;
    }
    return 0;
}

/* For each page, the last frame <= the pin that holds it (0: none), and
 * the database size the commit at the pin gives. The frames were checked
 * when scanned; here their salts are. */
static int map_pages(struct tailer *t, uint32_t **last_frame, uint32_t *db_pages, struct tm_error *err)
{
    uint32_t pin = t->pin.frame;
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + t->hdr.page_size;
    uint8_t header[WAL_FRAME_HEADER_BYTES];
    struct wal_frame_header fh;
    if (tailer_read_exactly(t->wal_fd, header, sizeof header, (off_t)wal_frame_offset(&t->hdr, pin), t->wal_path,
                            err) != 1)
        return tm_error_set(err, "cannot read frame %u of '%s'", pin, t->wal_path);
    wal_frame_header_decode(header, &fh);
    if (!fh.db_size_after_commit)
        return tm_error_set(err, "frame %u of '%s' is not a commit frame", pin, t->wal_path);
    *db_pages = fh.db_size_after_commit;
    uint32_t batch_frames = MAP_READ_BYTES / frame_bytes ? (uint32_t)(MAP_READ_BYTES / frame_bytes) : 1;
    uint32_t *map = calloc((size_t)*db_pages + 1, sizeof *map);
    uint8_t *frames = malloc((size_t)batch_frames * frame_bytes);
    int rc = map && frames ? 0 : tm_error_set(err, "out of memory");
    for (uint32_t first = 1; rc == 0 && first <= pin; first += batch_frames) {
        uint32_t count = pin - first + 1 < batch_frames ? pin - first + 1 : batch_frames;
        rc = tailer_read_frames(t, first, count, frames, err);
        if (rc == 0)
            rc = map_frames(t, frames, frame_bytes, first, count, map, *db_pages, err);
    }
    free(frames);
    if (rc != 0) {
        free(map);
        return -1;
    }
    *last_frame = map;
    return 0;
}

/* The database size with no WAL frame: from its header (offset 28),
 * valid when the change counter at 24 equals the version-valid-for at 92,
 * else from the file's size. */
static int file_pages(struct tailer *t, int db_fd, uint32_t *db_pages, struct tm_error *err)
{
    uint8_t header[100];
    if (tailer_read_exactly(db_fd, header, sizeof header, 0, t->db_path, err) != 1)
        return tm_error_set(err, "cannot read the header of '%s'", t->db_path);
    uint32_t in_header = (uint32_t)header[28] << 24 | (uint32_t)header[29] << 16 | (uint32_t)header[30] << 8 | header[31];
    struct stat st;
    if (fstat(db_fd, &st) != 0)
        return tm_error_set(err, "cannot stat '%s': %s", t->db_path, strerror(errno));
    uint32_t by_size = (uint32_t)(st.st_size / t->page_size);
    *db_pages = in_header && memcmp(header + 24, header + 92, 4) == 0 ? in_header : by_size;
    return 0;
}

/* Pages first..first+count-1 as of the pin into batch: the file's, in one
 * read, then those the WAL holds from their last frame. */
static int read_batch(struct tailer *t, int db_fd, const uint32_t *last_frame, uint32_t first, uint32_t count,
                      uint8_t *batch, struct tm_error *err)
{
    size_t want = (size_t)count * t->page_size;
    size_t have = 0;
    while (have < want) {
        ssize_t got = pread(db_fd, batch + have, want - have, (off_t)(first - 1) * t->page_size + (off_t)have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return tm_error_set(err, "cannot read '%s': %s", t->db_path, strerror(errno));
        if (got == 0)
            break;   /* past the file's end: those pages must be in the WAL */
        have += (size_t)got;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t page = first + i;
        uint8_t *into = batch + (size_t)i * t->page_size;
        if (last_frame && last_frame[page]) {
            off_t at = (off_t)wal_frame_offset(&t->hdr, last_frame[page]) + WAL_FRAME_HEADER_BYTES;
            if (tailer_read_exactly(t->wal_fd, into, t->page_size, at, t->wal_path, err) != 1)
                return tm_error_set(err, "cannot read frame %u of '%s'", last_frame[page], t->wal_path);
        } else if ((size_t)(i + 1) * t->page_size > have) {
            return tm_error_set(err, "page %u of '%s' is neither in the database file nor in the WAL", page,
                                t->db_path);
        }
    }
    return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t len, const char *path, struct tm_error *err)
{
    while (len) {
        ssize_t put = write(fd, buf, len);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return tm_error_set(err, "cannot write '%s': %s", path, strerror(errno));
        buf += put;
        len -= (size_t)put;
    }
    return 0;
}

static int copy_batches(struct tailer *t, int db_fd, int out_fd, const uint32_t *last_frame, uint32_t db_pages,
                        const char *path, int (*keep_going)(void *arg), void *arg, struct tm_error *err)
{
    uint8_t *batch = malloc((size_t)SNAPSHOT_BATCH_PAGES * t->page_size);
    if (!batch)
        return tm_error_set(err, "out of memory");
    int rc = 0;
    for (uint32_t first = 1; first <= db_pages && rc == 0; first += SNAPSHOT_BATCH_PAGES) {
        if (first > 1 && keep_going && !keep_going(arg)) {
            tm_error_set(err, "snapshot of '%s' gave way to the application's checkpoint", t->db_path);
            rc = TAILER_LATER;
            break;
        }
        uint32_t count = db_pages - first + 1 < SNAPSHOT_BATCH_PAGES ? db_pages - first + 1 : SNAPSHOT_BATCH_PAGES;
        rc = read_batch(t, db_fd, last_frame, first, count, batch, err);
        if (rc == 0)
            rc = write_all(out_fd, batch, (size_t)count * t->page_size, path, err);
    }
    free(batch);
    return rc;
}

int tailer_copy_pages(struct tailer *t, const char *path, int from_wal, uint32_t *page_count,
                      int (*keep_going)(void *arg), void *arg, struct tm_error *err)
{
    int db_fd = t->db_fd;   /* never a descriptor of its own: see struct tailer */
    uint32_t *last_frame = NULL, db_pages = 0;
    int rc = from_wal ? map_pages(t, &last_frame, &db_pages, err) : file_pages(t, db_fd, &db_pages, err);
    int out_fd = -1;
    if (rc == 0) {
        unlink(path);
        out_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out_fd < 0)
            rc = tm_error_set(err, "cannot create snapshot file '%s': %s", path, strerror(errno));
    }
    if (rc == 0)
        rc = copy_batches(t, db_fd, out_fd, last_frame, db_pages, path, keep_going, arg, err);
    if (out_fd >= 0 && close(out_fd) != 0 && rc == 0)
        rc = tm_error_set(err, "cannot write '%s': %s", path, strerror(errno));
    free(last_frame);
    if (rc != 0) {
        unlink(path);
        return rc;
    }
    *page_count = db_pages;
    return 0;
}
