/* test_tailer.c - the WAL tailer (replicator/tailer.c) on real WAL files.
 *
 * The application is a real SQLite writer in another process
 * (sql_writer.h): for every statement it reports what SQLite says it
 * committed - the WAL's frame count after the commit, the database size
 * in pages, and a fingerprint of the table. The tests
 * then check that the tailer reports exactly those commit boundaries and
 * sizes, and that the frames it hands out, applied to a copy of the
 * database file, rebuild a database with exactly that fingerprint at
 * every commit - across WAL restarts, including the one the tailer must
 * read from an old WAL's tail in memory, and the one it must refuse. */
#include "harness.h"

#include "../../common/archive.h"
#include "../../common/clock.h"
#include "../../replicator/tailer.h"
#include "sql_writer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------- the database and its copy */

struct fixture {
    char db[512];
    char image[512];           /* the database file before the first tailed commit, frames applied since */
    struct sql_writer writer;
    struct tailer *tailer;
    uint32_t page_size;
};

/* A WAL database with table t, created by a writer that then closed (so
 * the file holds everything and there is no WAL); its copy as the image;
 * the application's writer started; the tailer opened and positioned at
 * the WAL's start as for a new generation. */
static int fixture_open(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->db, sizeof f->db, "%s/app.db", harness_tmpdir());
    snprintf(f->image, sizeof f->image, "%s/image.db", harness_tmpdir());
    if (sql_writer_create(f->db) != 0 || sql_writer_copy_file(f->db, f->image) != 0 ||
        sql_writer_start(&f->writer, f->db) != 0)
        return -1;
    struct tm_error err;
    if (tailer_open(f->db, TAILER_ENGINE_SQLITE, &f->tailer, &err) != 0 || tailer_restart_at_pin(f->tailer, &err) != TAILER_OK) {
        fprintf(stderr, "  tailer: %s\n", err.msg);
        return -1;
    }
    f->page_size = tailer_page_size(f->tailer);
    return 0;
}

static void fixture_close(struct fixture *f)
{
    tailer_close(f->tailer);
    sql_writer_stop(&f->writer);
}

/* Reads the frames of the next pending commit from the tailer, checks
 * each one's page number and salts, applies their pages to the image and
 * sizes it as the commit says. */
static void apply_commit(struct fixture *f, uint32_t first, const struct tailer_commit *c)
{
    uint32_t count = c->end.frame - first + 1;
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + f->page_size;
    uint8_t *frames = malloc(count * frame_bytes);
    struct tm_error err;
    ASSERT_TRUE(frames);
    ASSERT_EQ(tailer_read_frames(f->tailer, first, count, frames, &err), 0);
    int fd = open(f->image, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *frame = frames + i * frame_bytes;
        struct wal_frame_header fh;
        wal_frame_header_decode(frame, &fh);
        ASSERT_TRUE(fh.page_number >= 1 && fh.page_number <= c->db_size);
        ASSERT_EQ(fh.salt1, c->end.salt1);
        ASSERT_EQ(fh.db_size_after_commit, i + 1 == count ? c->db_size : 0);
        ASSERT_EQ(pwrite(fd, frame + WAL_FRAME_HEADER_BYTES, f->page_size,
                         (off_t)(fh.page_number - 1) * f->page_size), f->page_size);
    }
    ASSERT_EQ(ftruncate(fd, (off_t)c->db_size * f->page_size), 0);
    close(fd);
    free(frames);
}

/* Scans; the pending commits must be exactly `truths` (frame ends, sizes;
 * in the WAL with salt-1 `salt1`), their frames must rebuild each
 * fingerprint; then they are acknowledged (shipped). */
static void ship_and_check(struct fixture *f, const struct sql_truth *truths, size_t n, uint32_t salt1)
{
    size_t count;
    const struct tailer_commit *pending = tailer_pending(f->tailer, &count);
    ASSERT_EQ(count, n);
    uint32_t next = tailer_shipped(f->tailer).frame + 1;
    int64_t previous_ms = 0;
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(pending[i].end.frame, truths[i].end_frame);
        ASSERT_EQ(pending[i].db_size, truths[i].db_size);
        ASSERT_EQ(pending[i].end.salt1, salt1);
        ASSERT_TRUE(pending[i].time_ms >= previous_ms);
        previous_ms = pending[i].time_ms;
        apply_commit(f, next, &pending[i]);
        ASSERT_PASSING();
        char print[128];
        ASSERT_EQ(sql_writer_file_fingerprint(f->image, print, sizeof print), 0);
        ASSERT_STR_EQ(print, truths[i].print);
        next = pending[i].end.frame + 1;
    }
    struct wal_position last = pending[n - 1].end;
    tailer_ack(f->tailer, n);
    ASSERT_EQ(tailer_shipped(f->tailer).frame, last.frame);
    tailer_pending(f->tailer, &count);
    ASSERT_EQ(count, 0);
}

/* ------------------------------------------------------------ the tests */

static void test_commits_frames_and_sizes_are_exact(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[12];
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 12, truths), 0);
    struct tm_error err;
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    const struct wal_header *hdr = tailer_header(f.tailer);
    ASSERT_TRUE(hdr != NULL);
    ASSERT_EQ(hdr->page_size, f.page_size);
    ASSERT_TRUE(truths[11].end_frame > 12);   /* some commits took several frames */
    ship_and_check(&f, truths, 12, hdr->salt1);
    ASSERT_PASSING();
    /* nothing new: a scan finds nothing */
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    size_t count;
    tailer_pending(f.tailer, &count);
    ASSERT_EQ(count, 0);
    /* later commits continue the same WAL */
    ASSERT_EQ(sql_writer_transactions(&f.writer, 13, 3, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ship_and_check(&f, truths, 3, hdr->salt1);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* The sidecar's checkpoint leaves the pin where the next writer restarts
 * the WAL: its commits are followed in the new WAL (salt-1 one higher),
 * from frame 1. */
static void test_restart_after_the_sidecars_checkpoint(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[6];
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 6, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    uint32_t old_salt1 = tailer_header(f.tailer)->salt1;
    ship_and_check(&f, truths, 6, old_salt1);
    ASSERT_PASSING();
    uint32_t old_end = truths[5].end_frame;
    int restartable = 0;
    ASSERT_EQ(tailer_checkpoint(f.tailer, &restartable, &err), 0);
    ASSERT_EQ(restartable, 1);
    ASSERT_EQ(sql_writer_transactions(&f.writer, 7, 4, truths), 0);
    ASSERT_TRUE(truths[0].end_frame < old_end);   /* SQLite wrote from frame 1 again */
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    if (tailer_switching(f.tailer))
        ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_header(f.tailer)->salt1, old_salt1 + 1);
    ship_and_check(&f, truths, 4, old_salt1 + 1);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* Unpinned, the application commits twice more, checkpoints (RESTART)
 * and commits again: the new WAL overwrites the old one from frame 1,
 * but not the two commits at its end, which the tailer reads into memory
 * and hands out before following the new WAL. */
static void test_restart_while_unpinned_keeps_the_old_tail(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[10];
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 10, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    uint32_t old_salt1 = tailer_header(f.tailer)->salt1;
    ship_and_check(&f, truths, 10, old_salt1);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    struct sql_truth tail[2], after[1], ignored;
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (101, 'tail one')", &tail[0]), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (102, 'tail two')", &tail[1]), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "PRAGMA wal_checkpoint(RESTART)", &ignored), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (103, 'new WAL')", &after[0]), 0);
    ASSERT_TRUE(after[0].end_frame < truths[9].end_frame);   /* the tail was not overwritten */
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_switching(f.tailer), 1);
    ship_and_check(&f, tail, 2, old_salt1);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_switching(f.tailer), 0);
    ASSERT_EQ(tailer_header(f.tailer)->salt1, old_salt1 + 1);
    ship_and_check(&f, after, 1, old_salt1 + 1);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* Unpinned, a commit is made and then overwritten by the restarted WAL
 * before the tailer read it: the wal-index's commit counter shows one
 * commit more than the tailer read, and the scan reports TAILER_BROKEN. */
static void test_commits_lost_in_a_restart_are_detected(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[3], lost, ignored, big;
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 3, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ship_and_check(&f, truths, 3, tailer_header(f.tailer)->salt1);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (201, 'lost')", &lost), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "PRAGMA wal_checkpoint(RESTART)", &ignored), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (202, hex(zeroblob(60000)))", &big), 0);
    ASSERT_TRUE(big.end_frame > lost.end_frame);   /* the lost commit's frames were overwritten */
    int status = TAILER_OK;
    for (int i = 0; i < 3 && status == TAILER_OK; i++)
        status = tailer_scan(f.tailer, &err);
    ASSERT_EQ(status, TAILER_BROKEN);
    ASSERT_STR_CONTAINS(err.msg, "commits were lost");
    fixture_close(&f);
}

/* While the application writes, the tailer's watch notes the commit
 * counter every millisecond: commits made while the caller is away (the
 * loop compressing, syncing) are stamped when they were made, not when
 * the caller scans again; never before. Three commits, each followed by
 * a 300 ms absence. */
static void test_commits_made_while_away_keep_their_time(void)
{
    enum { AWAY_MS = 300 };
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth first[2], truth;
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 2, first), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);   /* the counter is known from here */
    ship_and_check(&f, first, 2, tailer_header(f.tailer)->salt1);
    ASSERT_PASSING();
    for (int i = 0; i < 3; i++) {
        tailer_watch_writes(f.tailer);   /* as the loop does at each write it sees */
        int64_t before_ms = clock_now_ms();
        char sql[64];
        snprintf(sql, sizeof sql, "INSERT INTO t VALUES (%d, 'while away')", 301 + i);
        ASSERT_EQ(sql_writer_run(&f.writer, sql, &truth), 0);
        int64_t committed_ms = clock_now_ms();
        struct timespec away = {0, AWAY_MS * 1000000L};
        nanosleep(&away, NULL);
        ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
        size_t count;
        const struct tailer_commit *pending = tailer_pending(f.tailer, &count);
        ASSERT_EQ(count, 1);
        ASSERT_EQ(pending[0].end.frame, truth.end_frame);
        fprintf(stderr, "# commit %d: stamped %lld ms after it returned (scan %d ms later)\n", i,
                (long long)(pending[0].time_ms - committed_ms), AWAY_MS);
        ASSERT_TRUE(pending[0].time_ms >= before_ms);
        ASSERT_TRUE(pending[0].time_ms <= committed_ms + AWAY_MS / 3);
        tailer_ack(f.tailer, 1);
    }
    fixture_close(&f);
}

/* Unpinned, the writer restarts the WAL; from then on the tailer's guard
 * holds the new WAL, so that the application's checkpoint cannot copy it
 * all and its next writer cannot restart it a second time over frames
 * not read (without the guard, commit d would overwrite b and c). Every
 * commit is then read: the old WAL's tail, and the new WAL whole. */
static void test_guard_holds_a_restarted_wal_until_pinned(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[3], tail[1], after[3], ignored;
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 3, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    uint32_t old_salt1 = tailer_header(f.tailer)->salt1;
    ship_and_check(&f, truths, 3, old_salt1);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    ASSERT_EQ(tailer_guard_holds(f.tailer), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (301, 'old tail')", &tail[0]), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "PRAGMA wal_checkpoint(RESTART)", &ignored), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (302, 'restarted')", &after[0]), 0);
    ASSERT_TRUE(after[0].end_frame < tail[0].end_frame);   /* the WAL restarted */
    for (int waited_ms = 0; waited_ms < 2000 && tailer_guard_holds(f.tailer) == 0; waited_ms++)
        usleep(1000);
    ASSERT_EQ(tailer_guard_holds(f.tailer), 1);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (303, 'c')", &after[1]), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "PRAGMA wal_checkpoint(PASSIVE)", &ignored), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "INSERT INTO t VALUES (304, 'd')", &after[2]), 0);
    ASSERT_TRUE(after[2].end_frame > after[1].end_frame);   /* no second restart */
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_switching(f.tailer), 1);
    ship_and_check(&f, tail, 1, old_salt1);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_header(f.tailer)->salt1, old_salt1 + 1);
    ship_and_check(&f, after, 3, old_salt1 + 1);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_guard_holds(f.tailer), 1);
    fixture_close(&f);
}

/* A reopened tailer continues exactly at a shipped commit of the same
 * WAL (1), and not at a position whose checksum does not match (0). */
static void test_resume_at_a_shipped_commit(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[5];
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 5, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    size_t count;
    struct wal_position at = tailer_pending(f.tailer, &count)[2].end;
    ASSERT_EQ(count, 5);
    tailer_close(f.tailer);
    ASSERT_EQ(tailer_open(f.db, TAILER_ENGINE_SQLITE, &f.tailer, &err), 0);
    struct wal_position wrong = at;
    wrong.checksum[0] ^= 1;
    ASSERT_EQ(tailer_resume_at(f.tailer, &wrong, f.page_size, &err), 0);
    ASSERT_EQ(tailer_resume_at(f.tailer, &at, f.page_size, &err), 1);
    ASSERT_EQ(tailer_shipped(f.tailer).frame, at.frame);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    const struct tailer_commit *pending = tailer_pending(f.tailer, &count);
    ASSERT_EQ(count, 2);
    ASSERT_EQ(pending[0].end.frame, truths[3].end_frame);
    ASSERT_EQ(pending[1].end.frame, truths[4].end_frame);
    fixture_close(&f);
}

/* Pins at the last of the commits pending, all of them shipped. */
static void ship_all_and_pin(struct fixture *f)
{
    struct tm_error err;
    ASSERT_EQ(tailer_scan(f->tailer, &err), TAILER_OK);
    size_t count;
    tailer_pending(f->tailer, &count);
    tailer_ack(f->tailer, count);
    ASSERT_EQ(tailer_advance_pin(f->tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_pin_at_shipped(f->tailer), 1);
}

/* A snapshot is the database exactly as of the pin, read page by page
 * from the files while the application goes on: its later commits, and
 * its checkpoint copying what it may into the database file, change
 * nothing in it. Reading the file drops none of SQLite's locks: the
 * application closing its connection afterwards finds the sidecar's
 * still open, and leaves the WAL in place. */
static void test_snapshot_is_the_database_at_the_pin(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[12], checkpoint;
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 6, truths), 0);
    ship_all_and_pin(&f);
    ASSERT_PASSING();
    ASSERT_EQ(sql_writer_transactions(&f.writer, 7, 6, truths + 6), 0);
    ASSERT_EQ(sql_writer_run(&f.writer, "PRAGMA wal_checkpoint(PASSIVE)", &checkpoint), 0);
    ASSERT_TRUE(truths[11].db_size > truths[5].db_size);
    char copy[600], print[128], wal[600];
    snprintf(copy, sizeof copy, "%s/snapshot.db", harness_tmpdir());
    uint32_t pages = 0;
    ASSERT_EQ(tailer_snapshot(f.tailer, copy, &pages, NULL, NULL, &err), 0);
    ASSERT_EQ(pages, truths[5].db_size);
    ASSERT_EQ(sql_writer_file_fingerprint(copy, print, sizeof print), 0);
    ASSERT_STR_EQ(print, truths[5].print);

    sql_writer_stop(&f.writer);
    snprintf(wal, sizeof wal, "%s-wal", f.db);
    ASSERT_EQ(access(wal, F_OK), 0);
    tailer_close(f.tailer);
}

/* The frame map is read from the WAL a batch of frames at a time (1 MiB:
 * 254 frames of 4 KiB pages): a pin several batches into the WAL, not at
 * a batch's end, still gives exactly the database at the pin. */
static void test_snapshot_at_a_pin_several_batches_in(void)
{
    enum { BEFORE = 60, AFTER = 5 };
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    static struct sql_truth truths[BEFORE + AFTER];
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, BEFORE, truths), 0);
    ship_all_and_pin(&f);
    ASSERT_PASSING();
    ASSERT_EQ(sql_writer_transactions(&f.writer, BEFORE + 1, AFTER, truths + BEFORE), 0);
    fprintf(stderr, "# pin at frame %u\n", truths[BEFORE - 1].end_frame);
    ASSERT_TRUE(truths[BEFORE - 1].end_frame > 3 * 254);
    ASSERT_TRUE(truths[BEFORE - 1].end_frame % 254 != 0);
    char copy[600], print[128];
    snprintf(copy, sizeof copy, "%s/snapshot-far.db", harness_tmpdir());
    uint32_t pages = 0;
    ASSERT_EQ(tailer_snapshot(f.tailer, copy, &pages, NULL, NULL, &err), 0);
    ASSERT_EQ(pages, truths[BEFORE - 1].db_size);
    ASSERT_EQ(sql_writer_file_fingerprint(copy, print, sizeof print), 0);
    ASSERT_STR_EQ(print, truths[BEFORE - 1].print);
    fixture_close(&f);
}

static int give_way(void *arg)
{
    int *asked = arg;
    (*asked)++;
    return 0;
}

/* A copy told to give way stops at the next batch of pages: TAILER_LATER,
 * and no file left behind. */
static void test_snapshot_gives_way_and_leaves_nothing(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[80];
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 80, truths), 0);
    ASSERT_TRUE(truths[79].db_size > 256);   /* more than one batch */
    ship_all_and_pin(&f);
    ASSERT_PASSING();
    char copy[600];
    snprintf(copy, sizeof copy, "%s/snapshot.db", harness_tmpdir());
    uint32_t pages = 0;
    int asked = 0;
    ASSERT_EQ(tailer_snapshot(f.tailer, copy, &pages, give_way, &asked, &err), TAILER_LATER);
    ASSERT_EQ(asked, 1);
    ASSERT_STR_CONTAINS(err.msg, "gave way");
    ASSERT_EQ(access(copy, F_OK), -1);
    fixture_close(&f);
}

int main(int argc, char **argv)
{
    int status;
    if (sql_writer_main(argc, argv, &status))
        return status;
    static const struct test_case cases[] = {
        {"tailer: commits, frames and sizes are exact", test_commits_frames_and_sizes_are_exact},
        {"tailer: restart after the sidecar's checkpoint", test_restart_after_the_sidecars_checkpoint},
        {"tailer: restart while unpinned keeps the old tail", test_restart_while_unpinned_keeps_the_old_tail},
        {"tailer: commits lost in a restart are detected", test_commits_lost_in_a_restart_are_detected},
        {"tailer: guard holds a restarted WAL until pinned", test_guard_holds_a_restarted_wal_until_pinned},
        {"tailer: commits made while away keep their time", test_commits_made_while_away_keep_their_time},
        {"tailer: resume at a shipped commit", test_resume_at_a_shipped_commit},
        {"tailer: snapshot is the database at the pin", test_snapshot_is_the_database_at_the_pin},
        {"tailer: snapshot at a pin several frame batches in", test_snapshot_at_a_pin_several_batches_in},
        {"tailer: snapshot gives way and leaves nothing", test_snapshot_gives_way_and_leaves_nothing},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
