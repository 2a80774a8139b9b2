/* test_tailer_turso.c - the tailer's Turso route (replicator/tailer_turso.c,
 * tailer_ahead.c, tshm.c) without the engine.
 *
 * The Turso engine writes a standard SQLite WAL, so the application here
 * is a libsqlite3 connection in this process (WAL mode, no automatic
 * checkpoint, the WAL kept on close), and its -shm is removed at once:
 * nothing SQLite coordinates with the tailer. What the engine would
 * publish in DB-tshm is written by the test itself (a synthetic version-1
 * coordination file, 86016 bytes, the layout of docs/format.md), exactly
 * the WAL's state: max_frame the end of the last commit published, its
 * running checksum, the WAL header's salts and checkpoint_seq, the page
 * size, nbackfills, and the commit counter. Each commit's ground truth
 * (its end frame, database size and a digest of every row of every
 * table) is taken from the application's connection right after it. */
#include "harness.h"

#include "../../replicator/tailer.h"
#include "../../replicator/wal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TSHM_FILE_BYTES 86016
#define SLOTS 64
#define OFF_SEQ 48
#define OFF_MAX_FRAME 56
#define OFF_BACKFILLS 64
#define OFF_TRANSACTIONS 72
#define OFF_CHECKPOINT_SEQ 88
#define OFF_PAGE_SIZE 96
#define OFF_SALT1 100
#define OFF_SALT2 104
#define OFF_CHECKSUM1 108
#define OFF_CHECKSUM2 112
#define OFF_BITMAP 192
#define OFF_FRAMES 200
#define OFF_OWNERS (OFF_FRAMES + 8 * SLOTS)
#define MAX_COMMITS 64
/* The read-ahead thread looks at the WAL on each inotify event and at
 * least every 100 ms: a wait of this long sees it done. */
#define AHEAD_WAIT_MS 400

/* One commit of the current WAL, as the application made it. */
struct truth {
    struct wal_position end;   /* from a scan of the WAL: frame and running checksum */
    uint32_t db_size;
    char print[64];            /* digest of every row after it */
};

struct fixture {
    char db[400], wal[410], tshm[410], shm[410];
    sqlite3 *app;
    struct tailer *tailer;
    uint32_t page_size;
    struct wal_header hdr;             /* of the current WAL */
    struct truth truths[MAX_COMMITS];  /* its commits */
    size_t count;
    uint64_t before_wal;               /* commits made before it (the engine's counter) */
    uint64_t seq;                      /* the seqlock's last even value */
};

/* ------------------------------------------------------- ground truth */

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Every row of every table (and the schema), in rowid order, hashed with
 * each value's type: "ROWS rows HASH". */
static void fingerprint(sqlite3 *db, char *out, size_t cap)
{
    uint64_t h = 1469598103934665603ull, rows = 0;
    sqlite3_stmt *tables;
    snprintf(out, cap, "-");
    if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table' UNION ALL "
                           "SELECT 'sqlite_master' ORDER BY 1", -1, &tables, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);
        h = fnv(h, name, strlen(name) + 1);
        char *sql = sqlite3_mprintf("SELECT * FROM \"%w\" ORDER BY %s", name,
                                    strcmp(name, "sqlite_master") ? "rowid" : "name");
        sqlite3_stmt *select;
        if (sqlite3_prepare_v2(db, sql, -1, &select, NULL) != SQLITE_OK) {
            sqlite3_free(sql);
            sqlite3_finalize(tables);
            return;
        }
        sqlite3_free(sql);
        while (sqlite3_step(select) == SQLITE_ROW) {
            rows++;
            for (int c = 0; c < sqlite3_column_count(select); c++) {
                unsigned char type = (unsigned char)sqlite3_column_type(select, c);
                const void *bytes = sqlite3_column_blob(select, c);
                h = fnv(h, &type, 1);
                h = fnv(h, bytes ? bytes : "", (size_t)sqlite3_column_bytes(select, c));
            }
        }
        sqlite3_finalize(select);
    }
    sqlite3_finalize(tables);
    snprintf(out, cap, "%llu rows %016llx", (unsigned long long)rows, (unsigned long long)h);
}

/* The fingerprint of the database file `path` alone (a snapshot). */
static void file_fingerprint(const char *path, char *out, size_t cap, char *check, size_t check_cap)
{
    sqlite3 *db;
    snprintf(check, check_cap, "-");
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(out, cap, "cannot open: %s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return;
    }
    fingerprint(db, out, cap);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        snprintf(check, check_cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ----------------------------------------------------- the application */

static int on_commit_end(void *ctx, const struct wal_position *end, uint32_t db_size, struct tm_error *err)
{
    (void)err;
    size_t *seen = ((void **)ctx)[1];
    struct fixture *f = ((void **)ctx)[0];
    if (*seen < MAX_COMMITS) {
        f->truths[*seen].end = *end;
        f->truths[*seen].db_size = db_size;
    }
    (*seen)++;
    return 0;
}

/* Reads the WAL's header and the end of each of its commits into truths. */
static void rescan(struct fixture *f)
{
    int fd = open(f->wal, O_RDONLY);
    ASSERT_TRUE(fd >= 0);
    struct tm_error err;
    ASSERT_EQ(wal_read_header(fd, &f->hdr, &err), 1);
    struct wal_position start = wal_position_start(&f->hdr), last;
    size_t seen = 0;
    void *ctx[2] = {f, &seen};
    ASSERT_EQ(wal_scan(fd, &f->hdr, &start, UINT32_MAX, on_commit_end, ctx, &last, &err), 0);
    close(fd);
    ASSERT_EQ(seen, f->count);
}

/* One statement of the application (one commit). */
static void app_commit(struct fixture *f, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(f->app, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "  %s: %s\n", sql, msg);
        sqlite3_free(msg);
        ASSERT_TRUE(0);
    }
    ASSERT_TRUE(f->count < MAX_COMMITS);
    fingerprint(f->app, f->truths[f->count].print, sizeof f->truths[f->count].print);
    f->count++;
    rescan(f);
}

/* Commits first..first+n-1: rows of growing size (some span several
 * pages), and now and then an update of the table only the database file
 * holds, and a delete. */
static void app_commits(struct fixture *f, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char sql[200];
        if (i % 5 == 4)
            snprintf(sql, sizeof sql, "UPDATE base SET v = randomblob(300) WHERE k = %d", i % 40 + 1);
        else if (i % 7 == 6)
            snprintf(sql, sizeof sql, "DELETE FROM t WHERE k = (SELECT min(k) FROM t)");
        else
            snprintf(sql, sizeof sql, "INSERT INTO t(v) VALUES (randomblob(%d))", i % 3 == 2 ? 9000 : 200 + 50 * i);
        app_commit(f, sql);
        ASSERT_PASSING();
    }
}

/* A full checkpoint of the application with TRUNCATE (what the engine's
 * does): the database file holds everything, the WAL is empty, and the
 * next WAL has checkpoint_seq and salt-1 one higher. */
static void app_truncate(struct fixture *f)
{
    int log = -1, done = -1;
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(f->app, "main", SQLITE_CHECKPOINT_TRUNCATE, &log, &done), SQLITE_OK);
    struct stat st;
    ASSERT_EQ(stat(f->wal, &st), 0);
    ASSERT_EQ(st.st_size, 0);
    f->before_wal += f->count;
    f->count = 0;
}

/* The application's database: table base (its pages only ever in the
 * database file unless updated) and table t, checkpointed; then the
 * first commits in a WAL; its -shm removed. */
static void fixture_create(struct fixture *f, const char *name)
{
    memset(f, 0, sizeof *f);
    snprintf(f->db, sizeof f->db, "%s/%s", harness_tmpdir(), name);
    snprintf(f->wal, sizeof f->wal, "%s-wal", f->db);
    snprintf(f->tshm, sizeof f->tshm, "%s-tshm", f->db);
    snprintf(f->shm, sizeof f->shm, "%s-shm", f->db);
    ASSERT_EQ(sqlite3_open(f->db, &f->app), SQLITE_OK);
    int on = 1;
    sqlite3_db_config(f->app, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    ASSERT_EQ(sqlite3_exec(f->app, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; "
                           "CREATE TABLE base(k INTEGER PRIMARY KEY, v BLOB); "
                           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) "
                           "INSERT INTO base SELECT i, randomblob(300) FROM n; "
                           "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_file_control(f->app, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
    f->before_wal = 100;   /* the engine counted commits before these */
    f->count = 3;
    app_truncate(f);
    ASSERT_PASSING();
    unlink(f->shm);   /* the connection keeps its mapping; nothing else sees one */
    f->page_size = 4096;
}

static void fixture_close(struct fixture *f)
{
    tailer_close(f->tailer);
    sqlite3_close(f->app);
}

/* ----------------------------------------- the coordination file (tshm) */

static void put32(uint8_t *b, size_t off, uint32_t v) { memcpy(b + off, &v, 4); }
static void put64(uint8_t *b, size_t off, uint64_t v) { memcpy(b + off, &v, 8); }

static void create_tshm(struct fixture *f)
{
    uint8_t *file = calloc(1, TSHM_FILE_BYTES);
    ASSERT_TRUE(file);
    memcpy(file, "TSHMWAL\0", 8);
    put32(file, 8, 1);
    put32(file, 12, SLOTS);
    put32(file, 16, 1);
    put32(file, 20, 4096);
    put32(file, 24, 8192);
    put32(file, 28, 64);
    put32(file, 32, 1);
    put32(file, 36, 262144);
    put64(file, OFF_BITMAP, UINT64_MAX);
    for (int i = 0; i < SLOTS; i++)
        put64(file, OFF_FRAMES + 8 * i, UINT64_MAX);
    f->seq = 2;
    put64(file, OFF_SEQ, f->seq);
    int fd = open(f->tshm, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ssize_t put = fd >= 0 ? write(fd, file, TSHM_FILE_BYTES) : -1;
    if (fd >= 0)
        close(fd);
    free(file);
    ASSERT_EQ(put, TSHM_FILE_BYTES);
}

struct published {
    uint32_t max_frame, backfilled, checkpoint_seq, salt1, salt2, checksum[2];
    uint64_t transactions;
};

/* Writes the published state as the engine does: seqlock odd, fields,
 * seqlock even again. */
static void write_state(struct fixture *f, const struct published *p)
{
    int fd = open(f->tshm, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    uint8_t fields[120 - OFF_SEQ] = {0};
    uint64_t odd = f->seq + 1;
    ASSERT_EQ(pwrite(fd, &odd, 8, OFF_SEQ), 8);
    put64(fields, OFF_MAX_FRAME - OFF_SEQ, p->max_frame);
    put64(fields, OFF_BACKFILLS - OFF_SEQ, p->backfilled);
    put64(fields, OFF_TRANSACTIONS - OFF_SEQ, p->transactions);
    put64(fields, 80 - OFF_SEQ, p->transactions);   /* visibility_generation */
    put32(fields, OFF_CHECKPOINT_SEQ - OFF_SEQ, p->checkpoint_seq);
    put32(fields, OFF_PAGE_SIZE - OFF_SEQ, f->page_size);
    put32(fields, OFF_SALT1 - OFF_SEQ, p->salt1);
    put32(fields, OFF_SALT2 - OFF_SEQ, p->salt2);
    put32(fields, OFF_CHECKSUM1 - OFF_SEQ, p->checksum[0]);
    put32(fields, OFF_CHECKSUM2 - OFF_SEQ, p->checksum[1]);
    ASSERT_EQ(pwrite(fd, fields + 8, sizeof fields - 8, OFF_SEQ + 8), (ssize_t)sizeof fields - 8);
    f->seq += 2;
    ASSERT_EQ(pwrite(fd, &f->seq, 8, OFF_SEQ), 8);
    close(fd);
}

/* Publishes the current WAL's first `commits` commits, `backfilled`
 * frames of it copied into the database file. */
static void publish(struct fixture *f, size_t commits, uint32_t backfilled)
{
    ASSERT_TRUE(commits <= f->count);
    struct published p = {.backfilled = backfilled, .checkpoint_seq = f->hdr.checkpoint_seq,
                          .salt1 = f->hdr.salt1, .salt2 = f->hdr.salt2,
                          .transactions = f->before_wal + commits};
    if (commits) {
        p.max_frame = f->truths[commits - 1].end.frame;
        memcpy(p.checksum, f->truths[commits - 1].end.checksum, sizeof p.checksum);
    } else {
        memcpy(p.checksum, f->hdr.checksum, sizeof p.checksum);
    }
    write_state(f, &p);
}

/* What the engine shows after its TRUNCATE checkpoint of the WAL `old`
 * (app_truncate done): an empty WAL of the next generation; the counter
 * at `transactions`. */
static void publish_truncated(struct fixture *f, const struct wal_header *old, uint64_t transactions)
{
    struct published p = {.checkpoint_seq = old->checkpoint_seq + 1, .salt1 = old->salt1 + 1,
                          .salt2 = old->salt2 ^ 0x5a5a5a5au, .transactions = transactions};
    write_state(f, &p);
}

static uint64_t tshm_u64(struct fixture *f, size_t off)
{
    uint64_t v = 0;
    int fd = open(f->tshm, O_RDONLY);
    if (fd >= 0 && pread(fd, &v, 8, (off_t)off) != 8)
        v = 0xdeadbeef;
    if (fd >= 0)
        close(fd);
    return v;
}

/* Whether another open file description holds an OFD lock on `byte`:
 * F_WRLCK, F_RDLCK, or F_UNLCK. */
static int tshm_lock_on(struct fixture *f, off_t byte)
{
    int fd = open(f->tshm, O_RDONLY);
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    int rc = fd >= 0 ? fcntl(fd, F_OFD_GETLK, &probe) : -1;
    if (fd >= 0)
        close(fd);
    return rc == 0 ? probe.l_type : -1;
}

/* ---------------------------------------------------------- the tailer */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Opens the tailer on the Turso route and positions it at its pin. */
static void open_tailer(struct fixture *f)
{
    struct tm_error err;
    int rc = tailer_open(f->db, TAILER_ENGINE_TURSO, &f->tailer, &err);
    if (rc != 0)
        fprintf(stderr, "  tailer_open: %s\n", err.msg);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(tailer_is_turso(f->tailer), 1);
    rc = tailer_restart_at_pin(f->tailer, &err);
    if (rc != TAILER_OK)
        fprintf(stderr, "  tailer_restart_at_pin: %s\n", err.msg);
    ASSERT_EQ(rc, TAILER_OK);
}

static int scan(struct fixture *f, struct tm_error *err)
{
    memset(err, 0, sizeof *err);
    return tailer_scan(f->tailer, err);
}

/* The pending commits are exactly truths[first..first+n-1] of the WAL
 * with header `hdr`. */
static void expect_pending(struct fixture *f, const struct truth *truths, size_t n, const struct wal_header *hdr)
{
    size_t count;
    const struct tailer_commit *pending = tailer_pending(f->tailer, &count);
    ASSERT_EQ(count, n);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(pending[i].end.frame, truths[i].end.frame);
        ASSERT_EQ(pending[i].end.checksum[0], truths[i].end.checksum[0]);
        ASSERT_EQ(pending[i].end.checksum[1], truths[i].end.checksum[1]);
        ASSERT_EQ(pending[i].end.salt1, hdr->salt1);
        ASSERT_EQ(pending[i].end.salt2, hdr->salt2);
        ASSERT_EQ(pending[i].db_size, truths[i].db_size);
    }
}

/* Reads the pending commits' frames through the tailer, applies them to
 * the database file copy `image` and checks its fingerprint after each
 * against the truth; then acknowledges them. */
static void ship_into(struct fixture *f, const char *image, const struct truth *truths, size_t n)
{
    size_t count;
    const struct tailer_commit *pending = tailer_pending(f->tailer, &count);
    ASSERT_EQ(count, n);
    uint32_t next = tailer_shipped(f->tailer).frame + 1;
    size_t frame_bytes = WAL_FRAME_HEADER_BYTES + f->page_size;
    for (size_t i = 0; i < n; i++) {
        uint32_t frames = pending[i].end.frame - next + 1;
        uint8_t *buf = malloc(frames * frame_bytes);
        struct tm_error err;
        ASSERT_TRUE(buf);
        ASSERT_EQ(tailer_read_frames(f->tailer, next, frames, buf, &err), 0);
        int fd = open(image, O_RDWR);
        ASSERT_TRUE(fd >= 0);
        for (uint32_t k = 0; k < frames; k++) {
            struct wal_frame_header fh;
            wal_frame_header_decode(buf + k * frame_bytes, &fh);
            ASSERT_EQ(fh.salt1, pending[i].end.salt1);
            ASSERT_EQ(fh.db_size_after_commit, k + 1 == frames ? pending[i].db_size : 0);
            ASSERT_EQ(pwrite(fd, buf + k * frame_bytes + WAL_FRAME_HEADER_BYTES, f->page_size,
                             (off_t)(fh.page_number - 1) * f->page_size), f->page_size);
        }
        ASSERT_EQ(ftruncate(fd, (off_t)pending[i].db_size * f->page_size), 0);
        close(fd);
        free(buf);
        char print[64], check[64];
        file_fingerprint(image, print, sizeof print, check, sizeof check);
        ASSERT_STR_EQ(print, truths[i].print);
        ASSERT_STR_EQ(check, "ok");
        next = pending[i].end.frame + 1;
    }
    tailer_ack(f->tailer, n);
    tailer_pending(f->tailer, &count);
    ASSERT_EQ(count, 0);
}

/* A snapshot at the pin, checked against truth `at`. */
static void snapshot_is(struct fixture *f, const char *name, const struct truth *at)
{
    char path[450], print[64], check[64];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    uint32_t pages = 0;
    struct tm_error err;
    int rc = tailer_snapshot(f->tailer, path, &pages, NULL, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "  tailer_snapshot: %s\n", err.msg);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(pages, at->db_size);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_size, (off_t)at->db_size * f->page_size);
    file_fingerprint(path, print, sizeof print, check, sizeof check);
    ASSERT_STR_EQ(print, at->print);
    ASSERT_STR_EQ(check, "ok");
}

/* ------------------------------------------------------------ the tests */

/* Positioned at its pin (commit 4), the tailer finds exactly the commits
 * the coordination file publishes after it: never the committed frames
 * the WAL holds past max_frame, until max_frame moves over them. */
static void test_scan_reads_exactly_up_to_max_frame(void)
{
    struct fixture f;
    fixture_create(&f, "scan.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 4);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 4, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(tailer_shipped(f.tailer).frame, f.truths[3].end.frame);
    ASSERT_EQ(tailer_header(f.tailer)->salt1, f.hdr.salt1);
    app_commits(&f, 5, 8);   /* commits 5..12 in the WAL */
    ASSERT_PASSING();
    ASSERT_TRUE(f.truths[11].end.frame > 12 + 1);   /* some took several frames */
    publish(&f, 10, 0);      /* 11 and 12 are not published */
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 4, 6, &f.hdr);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);   /* nothing more */
    expect_pending(&f, f.truths + 4, 6, &f.hdr);
    ASSERT_PASSING();
    int exact = -1;
    ASSERT_EQ(tailer_pending_through_pin(f.tailer, &exact), 0);   /* the pin is at commit 4, shipped */
    ASSERT_EQ(exact, 1);
    ASSERT_EQ(tailer_pin_at_shipped(f.tailer), 1);
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * 63), f.truths[9].end.frame);
    ASSERT_EQ(tailer_pending_through_pin(f.tailer, &exact), 6);
    ASSERT_EQ(exact, 1);
    ASSERT_EQ(tailer_pin_at_shipped(f.tailer), 0);
    publish(&f, 12, 0);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 4, 8, &f.hdr);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* The pin is a reader slot: taken from the top (slot 63) at max_frame,
 * owned by this process, its lock byte held; moved in place; released
 * (bit set again, frame UINT64_MAX, owner 0, byte free) only once
 * nothing pending is left only in the WAL and the counter is known.
 * Byte 0 is never taken. */
static void test_pin_is_a_reader_slot(void)
{
    struct fixture f;
    fixture_create(&f, "pin.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 5);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    const int slot = 63;
    ASSERT_EQ(tshm_u64(&f, OFF_BITMAP), (long long)(UINT64_MAX >> 1));
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * slot), f.truths[2].end.frame);
    uint64_t owner = tshm_u64(&f, OFF_OWNERS + 8 * slot);
    ASSERT_EQ(owner >> 32, getpid());
    ASSERT_TRUE((uint32_t)owner != 0);
    ASSERT_EQ(tshm_lock_on(&f, 3 + slot), F_WRLCK);
    ASSERT_EQ(tshm_lock_on(&f, 3 + slot - 1), F_UNLCK);
    ASSERT_EQ(tshm_lock_on(&f, 0), F_UNLCK);
    ASSERT_EQ(tshm_lock_on(&f, 1), F_UNLCK);
    ASSERT_EQ(tshm_lock_on(&f, 2), F_UNLCK);
    for (int i = 0; i < slot; i++)
        ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * i), (long long)UINT64_MAX);
    ASSERT_EQ(tailer_pinned(f.tailer), 1);
    /* the counter is not known before a scan reaches max_frame */
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_LATER);
    /* moved in place to the new max_frame */
    publish(&f, 5, 0);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tshm_u64(&f, OFF_BITMAP), (long long)(UINT64_MAX >> 1));
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * slot), f.truths[4].end.frame);
    ASSERT_EQ(tshm_u64(&f, OFF_OWNERS + 8 * slot), (long long)owner);
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 3, 2, &f.hdr);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_LATER);   /* pending, only in the WAL */
    tailer_ack(f.tailer, 2);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    ASSERT_EQ(tailer_pinned(f.tailer), 0);
    ASSERT_EQ(tshm_u64(&f, OFF_BITMAP), (long long)UINT64_MAX);
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * slot), (long long)UINT64_MAX);
    ASSERT_EQ(tshm_u64(&f, OFF_OWNERS + 8 * slot), 0);
    ASSERT_EQ(tshm_lock_on(&f, 3 + slot), F_UNLCK);
    /* pinned again, on the same slot */
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_pinned(f.tailer), 1);
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * slot), f.truths[4].end.frame);
    ASSERT_EQ(tshm_lock_on(&f, 3 + slot), F_WRLCK);
    /* closing the tailer releases it */
    tailer_close(f.tailer);
    f.tailer = NULL;
    ASSERT_EQ(tshm_u64(&f, OFF_BITMAP), (long long)UINT64_MAX);
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * slot), (long long)UINT64_MAX);
    ASSERT_EQ(tshm_lock_on(&f, 3 + slot), F_UNLCK);
    fixture_close(&f);
}

/* A slot held by another process (its lock byte taken) is skipped, and
 * the next free one below it is taken. */
static void test_pin_skips_a_slot_locked_elsewhere(void)
{
    struct fixture f;
    fixture_create(&f, "skip.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 2);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    /* another open file description holds byte 3+63 with its bit still
     * set: the lock decides, the bit is set back */
    int other = open(f.tshm, O_RDWR);
    ASSERT_TRUE(other >= 0);
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 3 + 63, .l_len = 1};
    ASSERT_EQ(fcntl(other, F_OFD_SETLK, &lock), 0);
    open_tailer(&f);
    ASSERT_PASSING();
    ASSERT_EQ(tshm_u64(&f, OFF_BITMAP), (long long)(UINT64_MAX >> 2 | (uint64_t)1 << 63));
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * 62), f.truths[1].end.frame);
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * 63), (long long)UINT64_MAX);
    close(other);
    fixture_close(&f);
}

/* Snapshots built from the database file and the WAL frames up to the
 * pin: at a commit with later ones in the WAL past max_frame, with pages
 * changed in the WAL and others only in the database file; and after a
 * checkpoint of part of the WAL into the database file. */
static void test_snapshot_at_the_pin(void)
{
    struct fixture f;
    fixture_create(&f, "snap.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 9);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 6, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    snapshot_is(&f, "at6.db", &f.truths[5]);
    ASSERT_PASSING();
    /* the snapshot and the frames after it rebuild every later commit */
    char image[450];
    snprintf(image, sizeof image, "%s/at6.db", harness_tmpdir());
    publish(&f, 9, 0);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ship_into(&f, image, f.truths + 6, 3);
    ASSERT_PASSING();

    /* a reader of the application holds commit 11 while 12..14 are made;
     * a PASSIVE checkpoint then copies frames up to commit 11 into the
     * database file */
    app_commits(&f, 10, 2);
    ASSERT_PASSING();
    sqlite3 *reader;
    ASSERT_EQ(sqlite3_open(f.db, &reader), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM t;", NULL, NULL, NULL), SQLITE_OK);
    app_commits(&f, 12, 3);
    ASSERT_PASSING();
    int log = 0, done = 0;
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(f.app, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done), SQLITE_OK);
    sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(reader);
    ASSERT_EQ(done, f.truths[10].end.frame);
    ASSERT_EQ(log, f.truths[13].end.frame);
    publish(&f, 13, (uint32_t)done);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * 63), f.truths[12].end.frame);
    snapshot_is(&f, "at13.db", &f.truths[12]);
    ASSERT_PASSING();
    /* a new generation positioned there, its snapshot the same */
    ASSERT_EQ(tailer_restart_at_pin(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_shipped(f.tailer).frame, f.truths[12].end.frame);
    snapshot_is(&f, "again13.db", &f.truths[12]);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* With the WAL wholly checkpointed and published so (nbackfills ==
 * max_frame), and with an empty WAL (max_frame 0: the database file
 * alone), the snapshot is still exact. */
static void test_snapshot_of_a_backfilled_and_an_empty_wal(void)
{
    struct fixture f;
    fixture_create(&f, "full.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 5);
    ASSERT_PASSING();
    int log = 0, done = 0;
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(f.app, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done), SQLITE_OK);
    ASSERT_EQ(done, f.truths[4].end.frame);
    create_tshm(&f);
    publish(&f, 5, (uint32_t)done);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    snapshot_is(&f, "backfilled.db", &f.truths[4]);
    ASSERT_PASSING();
    struct truth last = f.truths[4];
    struct wal_header old = f.hdr;
    tailer_close(f.tailer);
    f.tailer = NULL;
    app_truncate(&f);
    ASSERT_PASSING();
    publish_truncated(&f, &old, f.before_wal);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    ASSERT_TRUE(tailer_header(f.tailer) == NULL);
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * 63), 0);
    snapshot_is(&f, "empty.db", &last);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* A TRUNCATE checkpoint with everything read: the counter proves it, the
 * tailer follows the next WAL from its frame 1. With one commit counted
 * that was never read: TAILER_BROKEN. */
static void test_truncate_proven_by_the_counter(void)
{
    struct fixture f;
    fixture_create(&f, "trunc.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    app_commits(&f, 4, 3);
    ASSERT_PASSING();
    publish(&f, 6, 0);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 3, 3, &f.hdr);
    ASSERT_PASSING();
    tailer_ack(f.tailer, 3);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    struct wal_header old = f.hdr;
    app_truncate(&f);
    ASSERT_PASSING();
    publish_truncated(&f, &old, f.before_wal);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    size_t count;
    tailer_pending(f.tailer, &count);
    ASSERT_EQ(count, 0);
    ASSERT_TRUE(tailer_header(f.tailer) == NULL);
    /* the next WAL */
    app_commits(&f, 7, 2);
    ASSERT_PASSING();
    ASSERT_EQ(f.hdr.checkpoint_seq, old.checkpoint_seq + 1);
    ASSERT_EQ(f.hdr.salt1, old.salt1 + 1);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    if (tailer_switching(f.tailer))
        ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_TRUE(tailer_header(f.tailer) != NULL);
    ASSERT_EQ(tailer_header(f.tailer)->salt1, f.hdr.salt1);
    expect_pending(&f, f.truths, 2, &f.hdr);
    ASSERT_PASSING();
    tailer_ack(f.tailer, 2);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);

    /* a commit the counter shows and no WAL frame ever held for the
     * tailer: truncated before it was read */
    old = f.hdr;
    app_truncate(&f);
    ASSERT_PASSING();
    publish_truncated(&f, &old, f.before_wal + 1);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_BROKEN);
    ASSERT_STR_CONTAINS(err.msg, "truncated with 1 commit(s) not read");
    fixture_close(&f);
}

/* The coordination file replaced by another (renamed over it), or its
 * format version changed: TAILER_BROKEN, naming it. Its state rebuilt
 * in place (counter and seqlock back to 0): followed on, counted anew. */
static void test_coordination_file_replaced_or_changed(void)
{
    struct fixture f;
    fixture_create(&f, "coord.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 2);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);

    /* replaced: a copy renamed over it */
    char copy[450];
    snprintf(copy, sizeof copy, "%s.new", f.tshm);
    uint8_t *bytes = malloc(TSHM_FILE_BYTES);
    ASSERT_TRUE(bytes);
    int fd = open(f.tshm, O_RDONLY);
    ASSERT_EQ(pread(fd, bytes, TSHM_FILE_BYTES, 0), TSHM_FILE_BYTES);
    close(fd);
    fd = open(copy, O_WRONLY | O_CREAT, 0644);
    ASSERT_EQ(write(fd, bytes, TSHM_FILE_BYTES), TSHM_FILE_BYTES);
    close(fd);
    free(bytes);
    char saved[450];
    snprintf(saved, sizeof saved, "%s.old", f.tshm);
    ASSERT_EQ(link(f.tshm, saved), 0);
    ASSERT_EQ(rename(copy, f.tshm), 0);
    ASSERT_EQ(scan(&f, &err), TAILER_BROKEN);
    ASSERT_STR_CONTAINS(err.msg, f.tshm);
    ASSERT_STR_CONTAINS(err.msg, "deleted or replaced");
    /* the original back: followed again */
    ASSERT_EQ(rename(saved, f.tshm), 0);
    ASSERT_EQ(scan(&f, &err), TAILER_OK);

    /* its version changed in place (an engine upgrade re-initialised it) */
    fd = open(f.tshm, O_RDWR);
    uint32_t two = 2, one = 1;
    ASSERT_EQ(pwrite(fd, &two, 4, 8), 4);
    ASSERT_EQ(scan(&f, &err), TAILER_BROKEN);
    ASSERT_STR_CONTAINS(err.msg, f.tshm);
    ASSERT_STR_CONTAINS(err.msg, "format version 2");
    ASSERT_EQ(pwrite(fd, &one, 4, 8), 4);
    close(fd);
    ASSERT_EQ(scan(&f, &err), TAILER_OK);

    /* its state rebuilt in place by an engine process (seqlock and
     * commit counter from 0 again, after a writer died): the WAL is the
     * same, so the tailer goes on and counts commits again from there */
    f.seq = 0;
    f.before_wal = 2 - f.count;   /* the rebuilt counter: 2 for the WAL's 2 commits */
    publish(&f, 2, 0);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    size_t count;
    tailer_pending(f.tailer, &count);
    ASSERT_EQ(count, 0);
    app_commits(&f, 3, 2);
    ASSERT_PASSING();
    publish(&f, 4, 0);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 2, 2, &f.hdr);
    ASSERT_PASSING();
    tailer_ack(f.tailer, 2);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    /* and the new count proves as the old one did: a TRUNCATE over one
     * commit never read is caught */
    struct wal_header old = f.hdr;
    app_truncate(&f);
    ASSERT_PASSING();
    publish_truncated(&f, &old, f.before_wal + 1);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_BROKEN);
    ASSERT_STR_CONTAINS(err.msg, "truncated with 1 commit(s) not read");
    fixture_close(&f);
}

/* Frames the application wrote past max_frame are read ahead by the
 * tailer's thread; then a TRUNCATE checkpoint with the commit counted
 * comes before any scan. Case `holds`: the database file holds the
 * checkpointed pages: the commit is adopted (pending, its frames shipped
 * from memory, exact, stamped no earlier than it was made: not with the
 * time of the scan before it). Otherwise: TAILER_BROKEN. */
static void read_ahead_then_truncate(int holds)
{
    struct fixture f;
    fixture_create(&f, "ahead.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    char image[450];
    snprintf(image, sizeof image, "%s/image.db", harness_tmpdir());
    snapshot_is(&f, "image.db", &f.truths[2]);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    pause_ms(20);
    int64_t written_from_ms = now_ms();
    /* two commits written, not published yet (the second spans pages) */
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(500))");
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(9000))");
    ASSERT_PASSING();
    struct truth written[2] = {f.truths[3], f.truths[4]};
    ASSERT_EQ(tailer_read_ahead(f.tailer, &err), 0);
    pause_ms(AHEAD_WAIT_MS);
    /* the database file as it was before the checkpoint */
    struct stat st;
    ASSERT_EQ(stat(f.db, &st), 0);
    size_t db_bytes = (size_t)st.st_size;
    uint8_t *before = malloc(db_bytes);
    ASSERT_TRUE(before);
    int fd = open(f.db, O_RDWR);
    ASSERT_EQ(pread(fd, before, db_bytes, 0), (ssize_t)db_bytes);
    struct wal_header old = f.hdr;
    app_truncate(&f);
    ASSERT_PASSING();
    if (!holds) {   /* the pages never reached the database file */
        ASSERT_EQ(pwrite(fd, before, db_bytes, 0), (ssize_t)db_bytes);
        ASSERT_EQ(ftruncate(fd, (off_t)db_bytes), 0);
    }
    close(fd);
    free(before);
    publish_truncated(&f, &old, f.before_wal);
    ASSERT_PASSING();
    int status = scan(&f, &err);
    if (!holds) {
        if (status == TAILER_OK)
            status = scan(&f, &err);
        ASSERT_EQ(status, TAILER_BROKEN);
        ASSERT_STR_CONTAINS(err.msg, "2 commit(s) not read");
        fixture_close(&f);
        return;
    }
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, written, 2, &old);
    ASSERT_PASSING();
    size_t count;
    const struct tailer_commit *adopted = tailer_pending(f.tailer, &count);
    for (size_t i = 0; i < count; i++)
        ASSERT_TRUE(adopted[i].time_ms >= written_from_ms);
    ship_into(&f, image, written, 2);
    ASSERT_PASSING();
    /* the next WAL is followed after it, the counter agreeing */
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    app_commits(&f, 6, 2);
    ASSERT_PASSING();
    publish(&f, 2, 0);
    ASSERT_PASSING();
    status = scan(&f, &err);
    if (status == TAILER_OK && tailer_switching(f.tailer))
        status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, f.truths, 2, &f.hdr);
    ASSERT_PASSING();
    ship_into(&f, image, f.truths, 2);
    ASSERT_PASSING();
    fixture_close(&f);
}

static void test_read_ahead_adopted_when_the_file_holds_it(void) { read_ahead_then_truncate(1); }
static void test_read_ahead_refused_when_the_file_does_not(void) { read_ahead_then_truncate(0); }

/* The application restarts the WAL (a full PASSIVE checkpoint, then its
 * next writer overwrites it from frame 1) while two commits at the old
 * WAL's end are not read yet: they are shipped first, from memory, then
 * the new WAL from its frame 1; the counter agrees. */
static void test_restart_over_unread_commits(void)
{
    struct fixture f;
    fixture_create(&f, "restart.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 6);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 6, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    char image[450];
    snprintf(image, sizeof image, "%s/image.db", harness_tmpdir());
    snapshot_is(&f, "image.db", &f.truths[5]);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(100))");
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(120))");
    ASSERT_PASSING();
    struct truth tail[2] = {f.truths[6], f.truths[7]};
    int log = 0, done = 0;
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(f.app, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done), SQLITE_OK);
    ASSERT_EQ(done, f.truths[7].end.frame);
    struct wal_header old = f.hdr;
    f.before_wal += f.count;
    f.count = 0;
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(130))");
    ASSERT_PASSING();
    ASSERT_EQ(f.hdr.checkpoint_seq, old.checkpoint_seq + 1);
    ASSERT_EQ(f.hdr.salt1, old.salt1 + 1);
    ASSERT_TRUE(f.truths[0].end.frame < tail[0].end.frame);   /* the tail is still in the file */
    publish(&f, 1, 0);
    ASSERT_PASSING();
    int status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, tail, 2, &old);
    ASSERT_PASSING();
    ship_into(&f, image, tail, 2);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    if (tailer_switching(f.tailer))
        ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_EQ(tailer_header(f.tailer)->salt1, f.hdr.salt1);
    expect_pending(&f, f.truths, 1, &f.hdr);
    ASSERT_PASSING();
    ship_into(&f, image, f.truths, 1);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    fixture_close(&f);
}

/* A VACUUM in the WAL shrinks the database below the file's size: the
 * snapshot has the commit's size, and its rows. */
static void test_snapshot_after_a_vacuum(void)
{
    struct fixture f;
    fixture_create(&f, "vacuum.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 9);
    ASSERT_PASSING();
    int log = 0, done = 0;
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(f.app, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done), SQLITE_OK);
    ASSERT_EQ(done, f.truths[8].end.frame);
    f.before_wal += f.count;   /* wholly checkpointed: the next writer restarts the WAL */
    f.count = 0;
    app_commit(&f, "DELETE FROM t");
    app_commit(&f, "VACUUM");
    ASSERT_PASSING();
    struct stat st;
    ASSERT_EQ(stat(f.db, &st), 0);
    ASSERT_TRUE(f.truths[1].db_size < st.st_size / f.page_size);
    create_tshm(&f);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    snapshot_is(&f, "vacuumed.db", &f.truths[1]);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* Another layout at open: refused, naming the value found. */
static void test_another_layout_refused_at_open(void)
{
    struct fixture f;
    fixture_create(&f, "layout.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 2);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    int fd = open(f.tshm, O_RDWR);
    uint32_t slots = 128;
    ASSERT_EQ(pwrite(fd, &slots, 4, 12), 4);
    close(fd);
    struct tm_error err;
    ASSERT_EQ(tailer_open(f.db, TAILER_ENGINE_TURSO, &f.tailer, &err), -1);
    ASSERT_TRUE(f.tailer == NULL);
    ASSERT_EQ(err.code, TM_ERR_REFUSED);
    ASSERT_STR_CONTAINS(err.msg, f.tshm);
    ASSERT_STR_CONTAINS(err.msg, "reader slot count 128");
    /* no slot was taken */
    ASSERT_EQ(tshm_u64(&f, OFF_BITMAP), (long long)UINT64_MAX);
    fixture_close(&f);
}

/* An engine killed while publishing leaves the seqlock odd: a scan does
 * not hang and counts nothing new; once even again, the commits count. */
static void test_a_stuck_seqlock_never_hangs(void)
{
    struct fixture f;
    fixture_create(&f, "stuck.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 4);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    publish(&f, 4, 0);
    ASSERT_PASSING();
    int fd = open(f.tshm, O_RDWR);
    uint64_t odd = f.seq + 1;
    ASSERT_EQ(pwrite(fd, &odd, 8, OFF_SEQ), 8);
    struct tm_error err;
    int64_t start = now_ms();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_TRUE(now_ms() - start < 2000);
    size_t count;
    tailer_pending(f.tailer, &count);
    ASSERT_EQ(count, 0);
    ASSERT_EQ(pwrite(fd, &f.seq, 8, OFF_SEQ), 8);
    close(fd);
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 2, 2, &f.hdr);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* Two WALs truncated before one scan, each with a commit the thread read
 * ahead and nobody saw published: the database file holds the second
 * one's end, and both are adopted, shipped one WAL after the other; the
 * WAL after them is followed. */
static void test_two_truncated_wals_adopted_in_order(void)
{
    struct fixture f;
    fixture_create(&f, "two.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    char image[450];
    snprintf(image, sizeof image, "%s/image.db", harness_tmpdir());
    snapshot_is(&f, "image.db", &f.truths[2]);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    ASSERT_EQ(tailer_read_ahead(f.tailer, &err), 0);
    /* generation 1: one commit (rewriting pages of earlier ones) */
    app_commit(&f, "UPDATE t SET v = randomblob(250) WHERE k = (SELECT max(k) FROM t)");
    ASSERT_PASSING();
    struct truth first = f.truths[3];
    struct wal_header first_hdr = f.hdr;
    pause_ms(AHEAD_WAIT_MS);
    app_truncate(&f);
    ASSERT_PASSING();
    /* generation 2: one commit */
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(5000))");
    ASSERT_PASSING();
    struct truth second = f.truths[0];
    struct wal_header second_hdr = f.hdr;
    ASSERT_EQ(second_hdr.checkpoint_seq, first_hdr.checkpoint_seq + 1);
    pause_ms(AHEAD_WAIT_MS);
    app_truncate(&f);
    ASSERT_PASSING();
    publish_truncated(&f, &second_hdr, f.before_wal);
    ASSERT_PASSING();
    int status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, &first, 1, &first_hdr);
    ASSERT_PASSING();
    ship_into(&f, image, &first, 1);
    ASSERT_PASSING();
    status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    ASSERT_EQ(tailer_switching(f.tailer), 1);
    expect_pending(&f, &second, 1, &second_hdr);
    ASSERT_PASSING();
    ship_into(&f, image, &second, 1);
    ASSERT_PASSING();
    /* then the WAL after them, the counter agreeing */
    app_commits(&f, 4, 2);
    ASSERT_PASSING();
    ASSERT_EQ(f.hdr.checkpoint_seq, second_hdr.checkpoint_seq + 1);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    status = scan(&f, &err);
    for (int i = 0; i < 2 && status == TAILER_OK && tailer_switching(f.tailer); i++)
        status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, f.truths, 2, &f.hdr);
    ASSERT_PASSING();
    ship_into(&f, image, f.truths, 2);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* A commit the tailer saw published (its pin moved over it) but did not
 * scan before a TRUNCATE; the next WAL is then already partly
 * checkpointed (nbackfills > 0), so the database file proves nothing:
 * the publication seen proves the commit, which is adopted. */
static void test_read_ahead_proven_by_its_publication(void)
{
    struct fixture f;
    fixture_create(&f, "seen.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    char image[450];
    snprintf(image, sizeof image, "%s/image.db", harness_tmpdir());
    snapshot_is(&f, "image.db", &f.truths[2]);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_EQ(tailer_read_ahead(f.tailer, &err), 0);
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(700))");
    ASSERT_PASSING();
    struct truth seen = f.truths[3];
    struct wal_header old = f.hdr;
    pause_ms(AHEAD_WAIT_MS);
    publish(&f, 4, 0);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);   /* reads the coordination file */
    ASSERT_EQ(tshm_u64(&f, OFF_FRAMES + 8 * 63), seen.end.frame);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    app_truncate(&f);
    ASSERT_PASSING();
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(800))");
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(900))");
    ASSERT_PASSING();
    int log = 0, done = 0;
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(f.app, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done), SQLITE_OK);
    ASSERT_EQ(done, f.truths[1].end.frame);
    ASSERT_EQ(f.hdr.checkpoint_seq, old.checkpoint_seq + 1);
    publish(&f, 2, (uint32_t)done);
    ASSERT_PASSING();
    int status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, &seen, 1, &old);
    ASSERT_PASSING();
    ship_into(&f, image, &seen, 1);
    ASSERT_PASSING();
    status = scan(&f, &err);
    for (int i = 0; i < 2 && status == TAILER_OK && tailer_switching(f.tailer); i++)
        status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, f.truths, 2, &f.hdr);
    ASSERT_PASSING();
    ship_into(&f, image, f.truths, 2);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* Pending commits read into memory (tailer_detach) let the slot go; a
 * TRUNCATE then takes their frames from the WAL file, and they are
 * shipped from memory all the same, then the next WAL. */
static void test_detached_commits_survive_a_truncate(void)
{
    struct fixture f;
    fixture_create(&f, "detach.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    char image[450];
    snprintf(image, sizeof image, "%s/image.db", harness_tmpdir());
    snapshot_is(&f, "image.db", &f.truths[2]);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    app_commits(&f, 4, 3);
    ASSERT_PASSING();
    publish(&f, 6, 0);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 3, 3, &f.hdr);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_needs_pin(f.tailer), 0);   /* 3 commits: little enough to hold in memory */
    ASSERT_EQ(tailer_pin_in_the_way(f.tailer), 1);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_LATER);   /* only in the WAL yet */
    ASSERT_EQ(tailer_detach(f.tailer, &err), 0);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    ASSERT_EQ(tailer_pin_in_the_way(f.tailer), 0);
    ASSERT_EQ(tshm_u64(&f, OFF_BITMAP), (long long)UINT64_MAX);
    struct truth detached[3] = {f.truths[3], f.truths[4], f.truths[5]};
    struct wal_header old = f.hdr;
    app_truncate(&f);
    ASSERT_PASSING();
    publish_truncated(&f, &old, f.before_wal);
    ASSERT_PASSING();
    int status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, detached, 3, &old);
    ASSERT_PASSING();
    ship_into(&f, image, detached, 3);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    app_commits(&f, 7, 2);
    ASSERT_PASSING();
    publish(&f, 2, 0);
    ASSERT_PASSING();
    status = scan(&f, &err);
    for (int i = 0; i < 2 && status == TAILER_OK && tailer_switching(f.tailer); i++)
        status = scan(&f, &err);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, f.truths, 2, &f.hdr);
    ASSERT_PASSING();
    ship_into(&f, image, f.truths, 2);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* The slot's owner word overwritten by another (an engine that
 * re-created the file and gave the slot to one of its readers): the pin
 * no longer stands, TAILER_BROKEN naming the slot. */
static void test_slot_taken_over(void)
{
    struct fixture f;
    fixture_create(&f, "taken.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 2);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 2, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    int fd = open(f.tshm, O_RDWR);
    uint64_t engine_reader = (uint64_t)4242 << 32 | 1;
    ASSERT_EQ(pwrite(fd, &engine_reader, 8, OFF_OWNERS + 8 * 63), 8);
    close(fd);
    ASSERT_EQ(scan(&f, &err), TAILER_BROKEN);
    ASSERT_STR_CONTAINS(err.msg, "reader slot 63");
    ASSERT_STR_CONTAINS(err.msg, "taken over");
    fixture_close(&f);
}

/* A checkpoint that copied frames past the pin while the snapshot was
 * made (nbackfills above the pin afterwards): the snapshot is not kept
 * (TAILER_LATER, no file left). */
static void test_snapshot_refused_when_backfilled_past_the_pin(void)
{
    struct fixture f;
    fixture_create(&f, "past.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 5);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    publish(&f, 5, f.truths[4].end.frame);
    ASSERT_PASSING();
    char path[450];
    snprintf(path, sizeof path, "%s/past-pin.db", harness_tmpdir());
    uint32_t pages = 0;
    struct tm_error err;
    ASSERT_EQ(tailer_snapshot(f.tailer, path, &pages, NULL, NULL, &err), TAILER_LATER);
    ASSERT_STR_CONTAINS(err.msg, "moved under the snapshot's pin");
    ASSERT_TRUE(access(path, F_OK) != 0);
    /* the pin moved to the end: exact again */
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);
    snapshot_is(&f, "at-end.db", &f.truths[4]);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* Another process holds the checkpointer's lock byte (a checkpoint that
 * may have begun before the slot was stored): the snapshot waits for it,
 * and gives up after its bound (TAILER_LATER); once it is free, it
 * proceeds. */
static void test_snapshot_waits_for_a_running_checkpoint(void)
{
    struct fixture f;
    fixture_create(&f, "ckpt.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    int other = open(f.tshm, O_RDWR);
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 2, .l_len = 1};
    ASSERT_EQ(fcntl(other, F_OFD_SETLK, &lock), 0);
    ASSERT_EQ(tailer_app_checkpointing(f.tailer), 1);
    ASSERT_EQ(tailer_app_busy(f.tailer), 1);
    char path[450];
    snprintf(path, sizeof path, "%s/waited.db", harness_tmpdir());
    uint32_t pages = 0;
    struct tm_error err;
    int64_t start = now_ms();
    ASSERT_EQ(tailer_snapshot(f.tailer, path, &pages, NULL, NULL, &err), TAILER_LATER);
    int64_t waited = now_ms() - start;
    ASSERT_TRUE(waited >= 1900 && waited < 5000);
    ASSERT_STR_CONTAINS(err.msg, "checkpoint");
    ASSERT_TRUE(access(path, F_OK) != 0);
    close(other);   /* the lock goes with its open file description */
    ASSERT_EQ(tailer_app_checkpointing(f.tailer), 0);
    ASSERT_EQ(tailer_app_busy(f.tailer), 0);
    snapshot_is(&f, "waited.db", &f.truths[2]);
    ASSERT_PASSING();
    fixture_close(&f);
}

/* No coordination file: the route refuses, saying how to get one. */
static void test_no_coordination_file(void)
{
    struct fixture f;
    fixture_create(&f, "none.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 1);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(tailer_open(f.db, TAILER_ENGINE_TURSO, &f.tailer, &err), -1);
    ASSERT_TRUE(f.tailer == NULL);
    ASSERT_STR_CONTAINS(err.msg, f.tshm);
    ASSERT_STR_CONTAINS(err.hint, "multiprocess_wal");
    fixture_close(&f);
}

/* Reopens the application's connection (as in fixture_create). */
static void app_reopen(struct fixture *f)
{
    sqlite3_close(f->app);
    ASSERT_EQ(sqlite3_open(f->db, &f->app), SQLITE_OK);
    int on = 1;
    sqlite3_db_config(f->app, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    ASSERT_EQ(sqlite3_exec(f->app, "PRAGMA wal_autocheckpoint=0; SELECT count(*) FROM t;", NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_file_control(f->app, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
    unlink(f->shm);
}

/* A writer that died between writing its commit frame and publishing it
 * leaves a valid-looking transaction past max_frame (read ahead by the
 * thread); the next writer overwrites it with another and publishes
 * that. Only the published one is ever pending, scanned or adopted from
 * the read-ahead copy after a TRUNCATE. */
static void unpublished_commit_rewritten(int truncate_before_scan)
{
    struct fixture f;
    fixture_create(&f, "dead.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    char image[450];
    snprintf(image, sizeof image, "%s/image.db", harness_tmpdir());
    snapshot_is(&f, "image.db", &f.truths[2]);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    ASSERT_EQ(tailer_read_ahead(f.tailer, &err), 0);
    struct stat st;
    ASSERT_EQ(stat(f.wal, &st), 0);
    off_t published_end = st.st_size;
    /* the dead writer's transaction, read ahead, never published */
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(300))");
    ASSERT_PASSING();
    struct truth dead = f.truths[3];
    pause_ms(AHEAD_WAIT_MS);
    /* gone with its process: the WAL as the next writer finds it (its
     * frames are overwritten in place; here the file is cut first so
     * that libsqlite3's recovery does not take the transaction) */
    ASSERT_EQ(truncate(f.wal, published_end), 0);
    f.count = 3;
    app_reopen(&f);
    ASSERT_PASSING();
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(9000))");
    ASSERT_PASSING();
    struct truth next = f.truths[3];
    ASSERT_TRUE(next.end.frame > dead.end.frame);
    ASSERT_TRUE(next.end.checksum[0] != dead.end.checksum[0] || next.end.checksum[1] != dead.end.checksum[1]);
    pause_ms(AHEAD_WAIT_MS);
    struct wal_header old = f.hdr;
    if (truncate_before_scan) {
        app_truncate(&f);
        ASSERT_PASSING();
        publish_truncated(&f, &old, f.before_wal);
    } else {
        publish(&f, 4, 0);
    }
    ASSERT_PASSING();
    int status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, &next, 1, &old);
    ASSERT_PASSING();
    ship_into(&f, image, &next, 1);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    fixture_close(&f);
}

static void test_unpublished_commit_rewritten_never_ships(void) { unpublished_commit_rewritten(0); }
static void test_unpublished_commit_rewritten_never_adopted(void) { unpublished_commit_rewritten(1); }

/* Unpinned, a commit is read ahead; the application then checkpoints
 * the whole WAL and restarts it with a commit long enough to overwrite
 * the first one's frames before any scan: the old WAL's tail is gone
 * from the file, the read-ahead copy (the database file holds its pages)
 * ships it, then the new WAL is followed; the counter agrees. */
static void test_restart_overwriting_unread_commit_adopted(void)
{
    struct fixture f;
    fixture_create(&f, "overwrite.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 3);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 3, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    char image[450];
    snprintf(image, sizeof image, "%s/image.db", harness_tmpdir());
    snapshot_is(&f, "image.db", &f.truths[2]);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    ASSERT_EQ(tailer_read_ahead(f.tailer, &err), 0);
    app_commit(&f, "UPDATE base SET v = randomblob(310) WHERE k = 7");
    ASSERT_PASSING();
    struct truth unread = f.truths[3];
    struct wal_header old = f.hdr;
    pause_ms(AHEAD_WAIT_MS);
    int log = 0, done = 0;
    ASSERT_EQ(sqlite3_wal_checkpoint_v2(f.app, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done), SQLITE_OK);
    ASSERT_EQ(done, unread.end.frame);
    f.before_wal += f.count;
    f.count = 0;
    app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(60000))");
    ASSERT_PASSING();
    ASSERT_EQ(f.hdr.checkpoint_seq, old.checkpoint_seq + 1);
    ASSERT_TRUE(f.truths[0].end.frame > unread.end.frame);   /* overwritten */
    publish(&f, 1, 0);
    ASSERT_PASSING();
    int status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, &unread, 1, &old);
    ASSERT_PASSING();
    ship_into(&f, image, &unread, 1);
    ASSERT_PASSING();
    status = scan(&f, &err);
    for (int i = 0; i < 2 && status == TAILER_OK && tailer_switching(f.tailer); i++)
        status = scan(&f, &err);
    if (status != TAILER_OK)
        fprintf(stderr, "  scan: %s\n", err.msg);
    ASSERT_EQ(status, TAILER_OK);
    expect_pending(&f, f.truths, 1, &f.hdr);
    ASSERT_PASSING();
    ship_into(&f, image, f.truths, 1);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    fixture_close(&f);
}

/* A tailer opened again resumes exactly at a shipped commit of the same
 * WAL (and not at a position whose checksum differs), with the commits
 * after it pending; after a TRUNCATE while it was closed, not at all. */
static void test_resume_at_a_shipped_commit(void)
{
    struct fixture f;
    fixture_create(&f, "resume.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 5);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 5, 0);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(tailer_open(f.db, TAILER_ENGINE_TURSO, &f.tailer, &err), 0);
    struct wal_position at = f.truths[2].end, wrong = at;
    wrong.checksum[1] ^= 1;
    ASSERT_EQ(tailer_resume_at(f.tailer, &wrong, f.page_size, &err), 0);
    ASSERT_EQ(tailer_resume_at(f.tailer, &at, f.page_size, &err), 1);
    ASSERT_EQ(tailer_shipped(f.tailer).frame, at.frame);
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 3, 2, &f.hdr);
    ASSERT_PASSING();
    tailer_close(f.tailer);
    f.tailer = NULL;
    struct wal_header old = f.hdr;
    app_truncate(&f);
    ASSERT_PASSING();
    publish_truncated(&f, &old, f.before_wal);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_open(f.db, TAILER_ENGINE_TURSO, &f.tailer, &err), 0);
    ASSERT_EQ(tailer_resume_at(f.tailer, &at, f.page_size, &err), 0);
    fixture_close(&f);
}

/* More frames pending than the tailer keeps in memory unpinned (16 MiB):
 * the slot is needed; read into memory (tailer_detach), it is not. */
static void test_pin_needed_for_many_pending_frames(void)
{
    struct fixture f;
    fixture_create(&f, "many.db");
    ASSERT_PASSING();
    app_commits(&f, 1, 1);
    ASSERT_PASSING();
    create_tshm(&f);
    publish(&f, 1, 0);
    ASSERT_PASSING();
    open_tailer(&f);
    ASSERT_PASSING();
    struct tm_error err;
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    for (int i = 0; i < 9; i++) {
        app_commit(&f, "INSERT INTO t(v) VALUES (randomblob(2000000))");
        ASSERT_PASSING();
    }
    ASSERT_TRUE((uint64_t)f.truths[9].end.frame * (WAL_FRAME_HEADER_BYTES + f.page_size) > 16u << 20);
    publish(&f, 10, 0);
    ASSERT_PASSING();
    ASSERT_EQ(scan(&f, &err), TAILER_OK);
    expect_pending(&f, f.truths + 1, 9, &f.hdr);
    ASSERT_PASSING();
    ASSERT_EQ(tailer_needs_pin(f.tailer), 1);
    ASSERT_EQ(tailer_pin_in_the_way(f.tailer), 0);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_LATER);
    ASSERT_EQ(tailer_detach(f.tailer, &err), 0);
    ASSERT_EQ(tailer_needs_pin(f.tailer), 0);
    ASSERT_EQ(tailer_pin_in_the_way(f.tailer), 1);
    ASSERT_EQ(tailer_unpin(f.tailer), TAILER_OK);
    fixture_close(&f);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"turso: scan reads exactly up to max_frame", test_scan_reads_exactly_up_to_max_frame},
        {"turso: the pin is a reader slot", test_pin_is_a_reader_slot},
        {"turso: the pin skips a slot locked elsewhere", test_pin_skips_a_slot_locked_elsewhere},
        {"turso: snapshot at the pin", test_snapshot_at_the_pin},
        {"turso: snapshot of a backfilled and an empty WAL", test_snapshot_of_a_backfilled_and_an_empty_wal},
        {"turso: truncate proven by the counter", test_truncate_proven_by_the_counter},
        {"turso: coordination file replaced or changed", test_coordination_file_replaced_or_changed},
        {"turso: read ahead adopted when the file holds it", test_read_ahead_adopted_when_the_file_holds_it},
        {"turso: read ahead refused when the file does not", test_read_ahead_refused_when_the_file_does_not},
        {"turso: restart over unread commits", test_restart_over_unread_commits},
        {"turso: snapshot after a vacuum", test_snapshot_after_a_vacuum},
        {"turso: another layout refused at open", test_another_layout_refused_at_open},
        {"turso: a stuck seqlock never hangs", test_a_stuck_seqlock_never_hangs},
        {"turso: two truncated WALs adopted in order", test_two_truncated_wals_adopted_in_order},
        {"turso: read ahead proven by its publication", test_read_ahead_proven_by_its_publication},
        {"turso: detached commits survive a truncate", test_detached_commits_survive_a_truncate},
        {"turso: slot taken over", test_slot_taken_over},
        {"turso: snapshot refused when backfilled past the pin", test_snapshot_refused_when_backfilled_past_the_pin},
        {"turso: snapshot waits for a running checkpoint", test_snapshot_waits_for_a_running_checkpoint},
        {"turso: no coordination file", test_no_coordination_file},
        {"turso: unpublished commit rewritten never ships", test_unpublished_commit_rewritten_never_ships},
        {"turso: unpublished commit rewritten never adopted", test_unpublished_commit_rewritten_never_adopted},
        {"turso: restart overwriting an unread commit: adopted", test_restart_overwriting_unread_commit_adopted},
        {"turso: resume at a shipped commit", test_resume_at_a_shipped_commit},
        {"turso: pin needed for many pending frames", test_pin_needed_for_many_pending_frames},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
