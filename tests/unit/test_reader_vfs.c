/* test_reader_vfs.c - the sidecar's read connections (replicator/
 * reader_vfs.h) never take the application's WAL write lock to look at a
 * wal-index header caught being rewritten: with the application attached
 * (a real SQLite writer in another process), a header whose two copies
 * differ is left for it to finish, and the sidecar's read waits for the
 * header to be whole, then reads exactly the rows. Alone, the sidecar's
 * connection repairs the header itself, as SQLite always did.
 *
 * The header is torn by hand (one byte of its second copy), which is what
 * a reader sees for a few nanoseconds in the middle of a commit; a reader
 * that took the write lock would repair it at once. */
#include "harness.h"

#include "../../replicator/tailer_internal.h"
#include "sql_writer.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define HDR_BYTES 48                  /* one copy of the wal-index header */
#define HDR_ICHANGE 8                 /* its change counter */
#define ROWS 50

struct count_query {
    sqlite3 *db;
    int rc;
    long rows;
    volatile int done;
};

static void *count_rows(void *arg)
{
    struct count_query *q = arg;
    sqlite3_stmt *stmt = NULL;
    q->rc = sqlite3_prepare_v2(q->db, "SELECT count(*) FROM t", -1, &stmt, NULL);
    if (q->rc == SQLITE_OK && (q->rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        q->rows = sqlite3_column_int64(stmt, 0);
        q->rc = SQLITE_OK;
    }
    sqlite3_finalize(stmt);
    q->done = 1;
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int header_torn(const volatile uint8_t *shm)
{
    for (int i = 0; i < HDR_BYTES; i++)
        if (shm[i] != shm[HDR_BYTES + i])
            return 1;
    return 0;
}

/* The database with ROWS rows in its WAL, written by a writer that stays
 * attached; the -shm mapped (kept open until the end: closing any
 * descriptor of it would drop this process's locks on it). */
struct fixture {
    char db[512];
    struct sql_writer writer;
    int shm_fd;
    volatile uint8_t *shm;
};

static int fixture_open(struct fixture *f)
{
    snprintf(f->db, sizeof f->db, "%s/app.db", harness_tmpdir());
    if (sql_writer_create(f->db) != 0 || sql_writer_start(&f->writer, f->db) != 0)
        return -1;
    struct sql_truth truth;
    for (int i = 1; i <= ROWS; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO t(k, v) VALUES(%d, printf('%%.*c', 300, 'x'))", i);
        if (sql_writer_run(&f->writer, sql, &truth) != 0)
            return -1;
    }
    char shm_path[600];
    snprintf(shm_path, sizeof shm_path, "%s-shm", f->db);
    f->shm_fd = open(shm_path, O_RDWR);
    if (f->shm_fd < 0)
        return -1;
    void *map = mmap(NULL, 32768, PROT_READ | PROT_WRITE, MAP_SHARED, f->shm_fd, 0);
    if (map == MAP_FAILED)
        return -1;
    f->shm = map;
    return 0;
}

static void test_torn_header_left_to_the_writer(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    sqlite3 *db;
    struct tm_error err;
    ASSERT_EQ(tailer_open_connection(f.db, 250, &db, &err), 0);
    ASSERT_TRUE(!header_torn(f.shm));
    f.shm[HDR_BYTES + HDR_ICHANGE] ^= 0x5a;   /* the writer is "between" the two copies */
    struct count_query q = {.db = db};
    pthread_t thread;
    ASSERT_EQ(pthread_create(&thread, NULL, count_rows, &q), 0);
    sleep_ms(300);
    int still_torn = header_torn(f.shm), waited = !q.done;
    f.shm[HDR_BYTES + HDR_ICHANGE] ^= 0x5a;   /* the writer finishes the copy */
    pthread_join(thread, NULL);
    sqlite3_close(db);
    sql_writer_stop(&f.writer);
    munmap((void *)f.shm, 32768);
    close(f.shm_fd);
    /* a reader that took the write lock would have rebuilt the header and
     * read at once; this one waited for the writer to finish it */
    ASSERT_TRUE(still_torn);
    ASSERT_TRUE(waited);
    ASSERT_EQ(q.rc, SQLITE_OK);
    ASSERT_EQ(q.rows, ROWS);
}

static void test_alone_the_reader_repairs_it(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    sqlite3 *db;
    struct tm_error err;
    ASSERT_EQ(tailer_open_connection(f.db, 250, &db, &err), 0);
    /* the sidecar's first read maps the wal-index; then the writer goes */
    struct count_query q = {.db = db};
    count_rows(&q);
    ASSERT_EQ(q.rows, ROWS);
    sql_writer_stop(&f.writer);
    f.shm[HDR_BYTES + HDR_ICHANGE] ^= 0x5a;   /* a writer killed between the copies */
    q = (struct count_query){.db = db};
    count_rows(&q);
    int torn_after = header_torn(f.shm);
    sqlite3_close(db);
    munmap((void *)f.shm, 32768);
    close(f.shm_fd);
    ASSERT_EQ(q.rc, SQLITE_OK);
    ASSERT_EQ(q.rows, ROWS);
    ASSERT_TRUE(!torn_after);   /* rebuilt by the sidecar's connection: nobody else would */
}

int main(int argc, char **argv)
{
    int status;
    if (sql_writer_main(argc, argv, &status))
        return status;
    static const struct test_case cases[] = {
        {"reader vfs: a torn wal-index header is left to the attached writer; the read waits, then is exact",
         test_torn_header_left_to_the_writer},
        {"reader vfs: alone, the sidecar's connection repairs a torn header and reads exactly",
         test_alone_the_reader_repairs_it},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
