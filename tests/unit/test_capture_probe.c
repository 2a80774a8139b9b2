/* test_capture_probe.c - the capture probe against real files: a WAL
 * written by SQLite with commits past the committed end the tailer would
 * pass (counted only after the grace time, only when a commit frame is
 * there and unchanged, reset when the end moves), the Turso engine's
 * -tshm file, and whole-file locks held by another process (a child),
 * next to locks in SQLite's own lock-byte range, which must not count. */
#include "harness.h"

#include "../../replicator/capture_probe.h"
#include "../../replicator/wal.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GRACE_MS 1000

struct commit_ends {
    struct wal_position ends[64];
    size_t count;
};

static int on_commit(void *ctx, const struct wal_position *end, uint32_t db_size, struct tm_error *err)
{
    (void)db_size;
    (void)err;
    struct commit_ends *c = ctx;
    if (c->count < 64)
        c->ends[c->count++] = *end;
    return 0;
}

/* A WAL database (connection closed, WAL kept, nothing checkpointed) with
 * `txns` one-row transactions, the last `big_last` bytes larger (several
 * frames); fills *view with its header and every commit's end. */
static void make_wal(const char *path, int txns, int big_last, struct capture_view *view, struct commit_ends *ends)
{
    char side[300];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-tshm", path);
    unlink(side);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(v BLOB);", NULL, NULL, NULL);
    for (int i = 0; i < txns; i++) {
        char sql[100];
        snprintf(sql, sizeof sql, "INSERT INTO t VALUES (randomblob(%d))", i == txns - 1 && big_last ? big_last : 100);
        sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    int on = 1;
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
    sqlite3_close(db);
    snprintf(side, sizeof side, "%s-wal", path);
    int fd = open(side, O_RDONLY);
    struct tm_error err;
    snprintf(side, sizeof side, "%s-shm", path);
    *view = (struct capture_view){.has_wal = 1, .wal_index_fd = open(side, O_RDWR | O_CREAT, 0644)};
    wal_read_header(fd, &view->hdr, &err);
    struct wal_position start = wal_position_start(&view->hdr), last;
    ends->count = 0;
    wal_scan(fd, &view->hdr, &start, UINT32_MAX, on_commit, ends, &last, &err);
    close(fd);
}

/* engine: the database's `engine:` (0 auto, 1 sqlite, 2 turso) */
static struct capture_probe *new_probe_for(const char *path, int engine)
{
    struct capture_probe *p = NULL;
    struct tm_error err;
    capture_probe_new(path, GRACE_MS, engine, &p, &err);
    return p;
}

static struct capture_probe *new_probe(const char *path) { return new_probe_for(path, 0); }

static void db_path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", harness_tmpdir(), name);
}

static void test_nothing_past_the_end(void)
{
    char path[300];
    db_path(path, sizeof path, "end.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 5, 0, &view, &ends);
    ASSERT_EQ(ends.count, 6);   /* CREATE TABLE + 5 inserts */
    view.committed_end = ends.ends[ends.count - 1];
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    for (int64_t t = 0; t <= 5000; t += 1000)
        ASSERT_EQ(capture_probe_check(p, &view, t, &err), CAPTURE_VISIBLE);
    capture_probe_free(p);
}

static void test_commit_past_the_end_counts_after_the_grace_time_and_stays(void)
{
    char path[300];
    db_path(path, sizeof path, "beyond.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 5, 0, &view, &ends);
    view.committed_end = ends.ends[2];
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    ASSERT_EQ(capture_probe_check(p, &view, 10000, &err), CAPTURE_VISIBLE);   /* seen: a moment to publish it */
    ASSERT_EQ(capture_probe_check(p, &view, 10500, &err), CAPTURE_VISIBLE);
    ASSERT_EQ(capture_probe_check(p, &view, 11000, &err), CAPTURE_UNPUBLISHED);
    ASSERT_STR_CONTAINS(err.msg, "holds committed transactions that the wal-index");
    ASSERT_STR_CONTAINS(err.hint, "docs/runbook.md");
    /* sticky, also with the connections closed */
    ASSERT_EQ(capture_probe_check(p, NULL, 12000, &err), CAPTURE_UNPUBLISHED);
    ASSERT_STR_CONTAINS(err.msg, "holds committed transactions");
    /* until the WAL is emptied */
    char wal[320];
    snprintf(wal, sizeof wal, "%s-wal", path);
    ASSERT_EQ(truncate(wal, 0), 0);
    ASSERT_EQ(capture_probe_check(p, NULL, 13000, &err), CAPTURE_VISIBLE);
    capture_probe_free(p);
}

static void test_a_moving_end_is_a_writer_publishing(void)
{
    char path[300];
    db_path(path, sizeof path, "moving.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 6, 0, &view, &ends);
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    for (int i = 1; i < 5; i++) {   /* the index publishes one more commit per check */
        view.committed_end = ends.ends[i];
        ASSERT_EQ(capture_probe_check(p, &view, 1000 * i, &err), CAPTURE_VISIBLE);
    }
    ASSERT_EQ(capture_probe_check(p, &view, 5000, &err), CAPTURE_UNPUBLISHED);   /* then it stops */
    capture_probe_free(p);
}

static void test_frames_without_a_commit_never_count(void)
{
    char path[300], wal[320];
    db_path(path, sizeof path, "torn.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 4, 30000, &view, &ends);   /* the last transaction: several frames */
    size_t n = ends.count;
    ASSERT_TRUE(ends.ends[n - 1].frame > ends.ends[n - 2].frame + 2);
    view.committed_end = ends.ends[n - 2];
    snprintf(wal, sizeof wal, "%s-wal", path);
    /* cut the WAL just before the last transaction's commit frame */
    ASSERT_EQ(truncate(wal, (off_t)wal_frame_offset(&view.hdr, ends.ends[n - 1].frame)), 0);
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    for (int64_t t = 0; t <= 4000; t += 1000)
        ASSERT_EQ(capture_probe_check(p, &view, t, &err), CAPTURE_VISIBLE);
    capture_probe_free(p);
}

static void test_an_overwritten_commit_starts_over(void)
{
    char path[300], wal[320];
    db_path(path, sizeof path, "over.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 3, 0, &view, &ends);
    size_t n = ends.count;
    view.committed_end = ends.ends[n - 3];   /* two commits beyond */
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    ASSERT_EQ(capture_probe_check(p, &view, 0, &err), CAPTURE_VISIBLE);
    /* a writer overwrites the first one (other content, other checksum) */
    snprintf(wal, sizeof wal, "%s-wal", path);
    int fd = open(wal, O_RDWR);
    uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_EQ(pwrite(fd, junk, sizeof junk, (off_t)wal_frame_offset(&view.hdr, ends.ends[n - 2].frame) + 16), 8);
    close(fd);
    ASSERT_EQ(capture_probe_check(p, &view, 1000, &err), CAPTURE_VISIBLE);
    ASSERT_EQ(capture_probe_check(p, &view, 2000, &err), CAPTURE_VISIBLE);
    capture_probe_free(p);
}

/* One commit beyond the end and nothing after it: maybe a SQLite writer
 * that died before publishing it (the next one writes over it). It
 * counts only after a minute, and the message says it may be that. */
static void test_a_single_orphan_commit_counts_only_after_a_minute(void)
{
    char path[300];
    db_path(path, sizeof path, "orphan.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 3, 0, &view, &ends);
    view.committed_end = ends.ends[ends.count - 2];
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    for (int64_t t = 0; t < 54000; t += 1000)
        ASSERT_EQ(capture_probe_check(p, &view, t, &err), CAPTURE_VISIBLE);
    ASSERT_EQ(capture_probe_check(p, &view, 60000, &err), CAPTURE_UNPUBLISHED);
    ASSERT_STR_CONTAINS(err.msg, "or a SQLite writer died between writing its commit and publishing it");
    capture_probe_free(p);
}

static pid_t lock_in_child(const char *path, off_t start, off_t len);
static void stop_child(pid_t pid);

static void test_no_count_while_a_sqlite_writer_holds_the_write_lock(void)
{
    char path[300], shm[320];
    db_path(path, sizeof path, "writer.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 3, 0, &view, &ends);
    view.committed_end = ends.ends[ends.count - 3];   /* two commits beyond: not a dead writer's */
    snprintf(shm, sizeof shm, "%s-shm", path);
    pid_t writer = lock_in_child(shm, 120, 1);   /* SQLite's WAL write lock: committing, syncing */
    ASSERT_TRUE(writer > 0);
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    int causes = 0;
    for (int64_t t = 0; t <= 5000; t += 1000)
        causes += capture_probe_check(p, &view, t, &err) != CAPTURE_VISIBLE;
    stop_child(writer);
    ASSERT_EQ(causes, 0);
    /* the grace time counts from the last check that saw the lock */
    ASSERT_EQ(capture_probe_check(p, &view, 5500, &err), CAPTURE_VISIBLE);
    ASSERT_EQ(capture_probe_check(p, &view, 6000, &err), CAPTURE_UNPUBLISHED);
    capture_probe_free(p);
}

static void write_file(const char *path, const void *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (write(fd, bytes, len) != (ssize_t)len)
        perror(path);
    close(fd);
}

static void test_turso_coordination_file_named(void)
{
    char path[300], tshm[320];
    db_path(path, sizeof path, "mp.db");
    snprintf(tshm, sizeof tshm, "%s-tshm", path);
    write_file(path, "x", 1);
    struct capture_probe *p = new_probe_for(path, 1);   /* engine: sqlite */
    struct capture_probe *automatic = new_probe(path);
    struct tm_error err;
    write_file(tshm, "NOTTSHM\0\1\0\0\0", 12);
    ASSERT_EQ(capture_probe_check(p, NULL, 0, &err), CAPTURE_VISIBLE);
    write_file(tshm, "TSHMWAL\0\1\0\0\0", 12);
    ASSERT_EQ(capture_probe_check(p, NULL, 0, &err), CAPTURE_FOREIGN_SHM);
    ASSERT_STR_CONTAINS(err.msg, "multiprocess_wal mode");
    ASSERT_STR_CONTAINS(err.msg, "no process has it open");
    ASSERT_STR_CONTAINS(err.hint, "engine: auto");
    /* engine: auto (and turso) follow it through the Turso route instead,
     * when it has the one layout that route reads */
    ASSERT_EQ(capture_probe_check(automatic, NULL, 0, &err), CAPTURE_TSHM_UNKNOWN);
    ASSERT_STR_CONTAINS(err.msg, "shorter than the Turso engine's coordination header");
    uint8_t header[4096] = "TSHMWAL";
    const uint32_t fields[][2] = {{8, 1}, {12, 64}, {16, 1}, {20, 4096}, {24, 8192}, {28, 64}, {32, 1}, {36, 262144}};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        memcpy(header + fields[i][0], &fields[i][1], 4);
    write_file(tshm, (const char *)header, sizeof header);
    ASSERT_EQ(capture_probe_check(automatic, NULL, 0, &err), CAPTURE_VISIBLE);
    header[8] = 2;
    write_file(tshm, (const char *)header, sizeof header);
    ASSERT_EQ(capture_probe_check(automatic, NULL, 0, &err), CAPTURE_TSHM_UNKNOWN);
    ASSERT_STR_CONTAINS(err.msg, "format version 2");
    unlink(tshm);
    ASSERT_EQ(capture_probe_check(p, NULL, 0, &err), CAPTURE_VISIBLE);
    capture_probe_free(p);
    capture_probe_free(automatic);
}

/* A child process holding a POSIX write lock [start, start+len) on path
 * until killed; returns its pid once the lock is taken. */
static pid_t lock_in_child(const char *path, off_t start, off_t len)
{
    int ready[2];
    if (pipe(ready) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
        char ok = fcntl(fd, F_SETLK, &lock) == 0 ? 'y' : 'n';
        if (write(ready[1], &ok, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char ok = 'n';
    if (read(ready[0], &ok, 1) != 1 || ok != 'y') {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = -1;
    }
    close(ready[0]);
    close(ready[1]);
    return pid;
}

static void stop_child(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void test_whole_file_locks_named_sqlite_locks_not(void)
{
    char path[300], wal[320], pid_text[40];
    db_path(path, sizeof path, "locked.db");
    snprintf(wal, sizeof wal, "%s-wal", path);
    write_file(path, "x", 1);
    write_file(wal, "y", 1);
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    struct capture_view none = {.has_wal = 0};
    /* SQLite's own database locks (PENDING, SHARED range at 1 GiB) do not count */
    pid_t sqlite_like = lock_in_child(path, 0x40000000, 512);
    ASSERT_TRUE(sqlite_like > 0);
    ASSERT_EQ(capture_probe_check(p, NULL, 0, &err), CAPTURE_VISIBLE);
    stop_child(sqlite_like);
    /* the Turso engine's whole-file lock on the database */
    pid_t engine = lock_in_child(path, 0, 0);
    ASSERT_TRUE(engine > 0);
    int cause = capture_probe_check(p, NULL, 0, &err);
    stop_child(engine);
    ASSERT_EQ(cause, CAPTURE_FOREIGN_LOCK);
    snprintf(pid_text, sizeof pid_text, "(pid %d)", (int)engine);
    ASSERT_STR_CONTAINS(err.msg, pid_text);
    ASSERT_STR_CONTAINS(err.msg, "is locked as a whole by another process");
    ASSERT_STR_CONTAINS(err.msg, "default single-process mode");
    ASSERT_EQ(capture_probe_check(p, NULL, 0, &err), CAPTURE_VISIBLE);
    /* on the WAL, also while following (the database file is then left alone) */
    engine = lock_in_child(wal, 0, 0);
    ASSERT_TRUE(engine > 0);
    cause = capture_probe_check(p, &none, 0, &err);
    stop_child(engine);
    ASSERT_EQ(cause, CAPTURE_FOREIGN_LOCK);
    ASSERT_STR_CONTAINS(err.msg, "-wal' is locked as a whole");
    capture_probe_free(p);
}

/* Whether a child process could take an exclusive POSIX lock on
 * path's SQLite shared-lock range: 0 when someone holds a lock there. */
static int lockable_from_child(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_RDWR);
        struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0x40000002, .l_len = 510};
        _exit(fd >= 0 && fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type == F_UNLCK ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Following a database on the SQLite route, the probe must never open
 * and close the database file: that would drop this process's POSIX
 * locks on it, SQLite's read lock included (the application's last
 * connection would then checkpoint and delete the WAL under it). */
static void test_following_keeps_the_sqlite_read_lock(void)
{
    char path[300];
    db_path(path, sizeof path, "held.db");
    struct capture_view view;
    struct commit_ends ends;
    make_wal(path, 2, 0, &view, &ends);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN; SELECT count(*) FROM t;", NULL, NULL, NULL), SQLITE_OK);
    ASSERT_TRUE(!lockable_from_child(path));
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    ASSERT_EQ(capture_probe_check(p, &view, 0, &err), CAPTURE_VISIBLE);
    ASSERT_TRUE(!lockable_from_child(path));
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    capture_probe_free(p);
}

/* The Turso engine's MVCC mode (file format 255) is named, not followed. */
static void test_mvcc_named(void)
{
    char path[300];
    db_path(path, sizeof path, "mvcc.db");
    uint8_t header[100] = "SQLite format 3";
    header[18] = header[19] = 255;
    write_file(path, header, sizeof header);
    struct capture_probe *p = new_probe(path);
    struct tm_error err;
    ASSERT_EQ(capture_probe_check(p, NULL, 0, &err), CAPTURE_MVCC);
    ASSERT_STR_CONTAINS(err.msg, "MVCC journal mode");
    header[18] = header[19] = 2;
    write_file(path, header, sizeof header);
    ASSERT_EQ(capture_probe_check(p, NULL, 0, &err), CAPTURE_VISIBLE);
    capture_probe_free(p);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"nothing_past_the_end", test_nothing_past_the_end},
        {"a_single_orphan_commit_counts_only_after_a_minute", test_a_single_orphan_commit_counts_only_after_a_minute},
        {"commit_past_the_end_counts_after_the_grace_time_and_stays",
         test_commit_past_the_end_counts_after_the_grace_time_and_stays},
        {"a_moving_end_is_a_writer_publishing", test_a_moving_end_is_a_writer_publishing},
        {"frames_without_a_commit_never_count", test_frames_without_a_commit_never_count},
        {"an_overwritten_commit_starts_over", test_an_overwritten_commit_starts_over},
        {"no_count_while_a_sqlite_writer_holds_the_write_lock", test_no_count_while_a_sqlite_writer_holds_the_write_lock},
        {"turso_coordination_file_named", test_turso_coordination_file_named},
        {"whole_file_locks_named_sqlite_locks_not", test_whole_file_locks_named_sqlite_locks_not},
        {"following_keeps_the_sqlite_read_lock", test_following_keeps_the_sqlite_read_lock},
        {"mvcc_named", test_mvcc_named},
    };
    return harness_run(cases, sizeof cases / sizeof cases[0]);
}
