/* test_wal.c - the WAL parser against WAL files written by real SQLite:
 * header, checksum chain, commit detection, torn and stale frames, salts
 * after a restart, and the big-endian checksum variant. */
#include "harness.h"

#include "../../common/archive.h"
#include "../../replicator/wal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct commits {
    uint32_t frames[256];
    uint32_t sizes[256];
    size_t count;
};

static int on_commit(void *ctx, const struct wal_position *end, uint32_t db_size, struct tm_error *err)
{
    (void)err;
    struct commits *c = ctx;
    c->frames[c->count] = end->frame;
    c->sizes[c->count++] = db_size;
    return 0;
}

/* Creates a WAL database with `txns` transactions and the WAL kept (no
 * checkpoint); returns the open connection so the WAL stays. */
static sqlite3 *make_wal_db(const char *path, int txns)
{
    sqlite3 *db;
    unlink(path);
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", NULL, NULL, NULL);
    for (int i = 0; i < txns; i++)
        sqlite3_exec(db, "INSERT INTO t(v) VALUES (randomblob(3000))", NULL, NULL, NULL);
    return db;
}

static int open_wal(const char *path)
{
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", path);
    return open(wal, O_RDWR);
}

/* A WAL database with `txns` transactions, its connection kept open so
 * the WAL stays, and the WAL file open read-write. */
struct wal_fixture {
    sqlite3 *db;
    int fd;
};

static void fixture_open(struct wal_fixture *fx, const char *name, int txns)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    fx->db = make_wal_db(path, txns);
    fx->fd = open_wal(path);
}

static void fixture_close(struct wal_fixture *fx)
{
    close(fx->fd);
    sqlite3_close(fx->db);
}

static void scan_all(int fd, struct commits *c, struct wal_position *last, struct wal_header *hdr)
{
    struct tm_error err;
    memset(c, 0, sizeof *c);
    if (wal_read_header(fd, hdr, &err) != 1)
        return;
    struct wal_position start = wal_position_start(hdr);
    wal_scan(fd, hdr, &start, UINT32_MAX, on_commit, c, last, &err);
}

static void test_real_wal_commits(void)
{
    struct wal_fixture fx;
    fixture_open(&fx, "real.db", 10);
    int fd = fx.fd;
    struct wal_header hdr;
    struct commits c;
    struct wal_position last;
    scan_all(fd, &c, &last, &hdr);
    ASSERT_EQ(hdr.page_size, 4096);
    ASSERT_EQ(hdr.magic, 0x377f0682);
    /* CREATE TABLE + 10 inserts = 11 commits; frames count equals the
     * WAL file's frames, all valid. */
    ASSERT_EQ(c.count, 11);
    struct stat st;
    fstat(fd, &st);
    ASSERT_EQ(last.frame, (st.st_size - 32) / (24 + 4096));
    ASSERT_EQ(c.frames[c.count - 1], last.frame);
    /* db size of the last commit is the table's pages */
    int pages = 0;
    sqlite3_stmt *stmt;
    sqlite3_prepare_v2(fx.db, "PRAGMA page_count", -1, &stmt, NULL);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        pages = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    ASSERT_EQ(c.sizes[c.count - 1], pages);
    fixture_close(&fx);
}

static void test_corrupt_byte_ends_log(void)
{
    struct wal_fixture fx;
    fixture_open(&fx, "corrupt.db", 6);
    int fd = fx.fd;
    struct wal_header hdr;
    struct commits before, after;
    struct wal_position last;
    scan_all(fd, &before, &last, &hdr);
    ASSERT_TRUE(before.count >= 5);
    /* flip one byte in the page of the frame after the 3rd commit */
    uint32_t victim = before.frames[2] + 1;
    off_t offset = (off_t)wal_frame_offset(&hdr, victim) + 24 + 100;
    uint8_t byte;
    ASSERT_EQ(pread(fd, &byte, 1, offset), 1);
    byte ^= 0x40;
    ASSERT_EQ(pwrite(fd, &byte, 1, offset), 1);
    scan_all(fd, &after, &last, &hdr);
    ASSERT_EQ(after.count, 3);
    ASSERT_EQ(last.frame, before.frames[2]);
    fixture_close(&fx);
}

static void test_bad_header(void)
{
    uint8_t bytes[32] = {0x37, 0x7f, 0x06, 0x82};
    struct wal_header hdr;
    struct tm_error err;
    ASSERT_EQ(wal_header_parse(bytes, &hdr, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "version");
    bytes[0] = 0;
    ASSERT_EQ(wal_header_parse(bytes, &hdr, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "magic");
}

static void test_restart_leaves_stale_frames(void)
{
    struct wal_fixture fx;
    fixture_open(&fx, "restart.db", 8);
    int fd = fx.fd;
    struct wal_header first, second;
    struct commits c;
    struct wal_position last;
    scan_all(fd, &c, &last, &first);
    uint32_t frames_before = last.frame;
    /* Full checkpoint, then a write restarts the WAL from frame 1. */
    sqlite3_exec(fx.db, "PRAGMA wal_checkpoint(PASSIVE)", NULL, NULL, NULL);
    sqlite3_exec(fx.db, "INSERT INTO t(v) VALUES (x'01')", NULL, NULL, NULL);
    scan_all(fd, &c, &last, &second);
    ASSERT_EQ(second.salt1, first.salt1 + 1);
    ASSERT_TRUE(second.salt2 != first.salt2);
    /* only the new transaction counts; the old frames are stale */
    ASSERT_EQ(c.count, 1);
    ASSERT_TRUE(last.frame < frames_before);
    fixture_close(&fx);
}

/* Rewrites a little-endian WAL's checksums as SQLite on a big-endian host
 * would (magic 0x377f0683) and checks the parser follows it. */
static void test_big_endian_checksums(void)
{
    struct wal_fixture fx;
    fixture_open(&fx, "be.db", 3);
    int fd = fx.fd;
    struct wal_header hdr;
    struct commits c;
    struct wal_position last;
    scan_all(fd, &c, &last, &hdr);
    size_t expected = c.count;
    uint8_t header[32];
    ASSERT_EQ(pread(fd, header, 32, 0), 32);
    header[3] = 0x83;
    uint32_t sum[2] = {0, 0};
    wal_checksum(1, header, 24, sum, sum);
    archive_put_be32(header + 24, sum[0]);
    archive_put_be32(header + 28, sum[1]);
    ASSERT_EQ(pwrite(fd, header, 32, 0), 32);
    uint8_t *frame = malloc(24 + 4096);
    for (uint32_t f = 1; f <= last.frame; f++) {
        off_t off = (off_t)wal_frame_offset(&hdr, f);
        ASSERT_EQ(pread(fd, frame, 24 + 4096, off), 24 + 4096);
        wal_checksum(1, frame, 8, sum, sum);
        wal_checksum(1, frame + 24, 4096, sum, sum);
        archive_put_be32(frame + 16, sum[0]);
        archive_put_be32(frame + 20, sum[1]);
        ASSERT_EQ(pwrite(fd, frame, 24 + 4096, off), 24 + 4096);
    }
    free(frame);
    scan_all(fd, &c, &last, &hdr);
    ASSERT_TRUE(hdr.big_endian_checksum);
    ASSERT_EQ(c.count, expected);
    fixture_close(&fx);
}

/* The wal-index of a real database says what is committed: its mxFrame
 * equals the last commit frame, its salts the WAL's; a header whose two
 * copies differ or whose checksum fails is not trusted; a scan bounded by
 * mxFrame stops there even when valid frames follow. */
static void test_wal_index_bounds_commits(void)
{
    struct wal_fixture fx;
    fixture_open(&fx, "index.db", 6);
    char shm_path[300];
    snprintf(shm_path, sizeof shm_path, "%s/index.db-shm", harness_tmpdir());
    int shm = open(shm_path, O_RDWR);
    ASSERT_TRUE(shm >= 0);
    struct wal_index_state index;
    struct tm_error err;
    ASSERT_EQ(wal_index_read(shm, &index, &err), 1);
    struct wal_header hdr;
    struct commits c;
    struct wal_position last;
    scan_all(fx.fd, &c, &last, &hdr);
    ASSERT_EQ(index.max_frame, last.frame);
    ASSERT_EQ(index.salt1, hdr.salt1);
    ASSERT_EQ(index.salt2, hdr.salt2);

    /* bounded one commit earlier: the last commit is not reported */
    struct commits bounded = {0};
    struct wal_position start = wal_position_start(&hdr), bounded_last;
    ASSERT_EQ(wal_scan(fx.fd, &hdr, &start, c.frames[c.count - 2], on_commit, &bounded, &bounded_last, &err), 0);
    ASSERT_EQ(bounded.count, c.count - 1);
    ASSERT_EQ(bounded_last.frame, c.frames[c.count - 2]);

    /* a copy being rewritten, then a bad checksum: not trusted */
    uint8_t header[96], saved[96];
    ASSERT_EQ(pread(shm, saved, sizeof saved, 0), (ssize_t)sizeof saved);
    memcpy(header, saved, sizeof header);
    header[16] ^= 1;                                   /* mxFrame of copy 1 only */
    ASSERT_EQ(pwrite(shm, header, sizeof header, 0), (ssize_t)sizeof header);
    ASSERT_EQ(wal_index_read(shm, &index, &err), 0);
    header[48 + 16] ^= 1;                              /* both copies, checksum now wrong */
    ASSERT_EQ(pwrite(shm, header, sizeof header, 0), (ssize_t)sizeof header);
    ASSERT_EQ(wal_index_read(shm, &index, &err), 0);
    ASSERT_EQ(pwrite(shm, saved, sizeof saved, 0), (ssize_t)sizeof saved);
    ASSERT_EQ(wal_index_read(shm, &index, &err), 1);
    close(shm);
    fixture_close(&fx);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"wal: commits and db sizes of a real SQLite WAL", test_real_wal_commits},
        {"wal: one flipped byte ends the log at the previous commit", test_corrupt_byte_ends_log},
        {"wal: invalid headers are rejected with the reason", test_bad_header},
        {"wal: restart gives salt-1 + 1 and stale frames are not data", test_restart_leaves_stale_frames},
        {"wal: big-endian checksum variant", test_big_endian_checksums},
        {"wal: the wal-index bounds what counts as committed", test_wal_index_bounds_commits},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
