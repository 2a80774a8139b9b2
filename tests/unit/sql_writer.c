/* sql_writer.c - a SQLite writer in another process, and the database
 * checks that go with it (sql_writer.h). The writer is this test binary
 * run again (harness_program) rather than a forked copy: SQLite's locks
 * are per process, and a forked child would inherit the parent's view of
 * them. */
#include "sql_writer.h"

#include "harness.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db, (void)name;
    *(int *)arg = frames;
    return SQLITE_OK;
}

void sql_writer_fingerprint(sqlite3 *db, char *out, size_t cap)
{
    sqlite3_stmt *stmt;
    snprintf(out, cap, "-");
    if (sqlite3_prepare_v2(db, SQL_WRITER_FINGERPRINT, -1, &stmt, NULL) != SQLITE_OK)
        return;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
}

static long page_count(sqlite3 *db)
{
    sqlite3_stmt *stmt;
    long pages = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        pages = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return pages;
}

/* The writer process: runs each line of stdin and answers
 * "RC FRAMES PAGES FINGERPRINT". */
static int serve(const char *db_path)
{
    sqlite3 *db;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        return 1;
    sqlite3_busy_timeout(db, 5000);
    int frames = 0;
    sqlite3_wal_hook(db, on_wal_commit, &frames);
    char line[8192], print[128];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        frames = 0;
        int rc = sqlite3_exec(db, line, NULL, NULL, NULL);
        sql_writer_fingerprint(db, print, sizeof print);
        printf("%d %d %ld %s\n", rc, frames, page_count(db), print);
        fflush(stdout);
    }
    sqlite3_close(db);
    return 0;
}

int sql_writer_main(int argc, char **argv, int *status)
{
    if (argc != 3 || strcmp(argv[1], "--sql-writer") != 0)
        return 0;
    *status = serve(argv[2]);
    return 1;
}

int sql_writer_start(struct sql_writer *w, const char *db_path)
{
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0)
        return -1;
    w->pid = fork();
    if (w->pid == 0) {
        dup2(to[0], STDIN_FILENO);
        dup2(from[1], STDOUT_FILENO);
        close(to[1]);
        close(from[0]);
        execl(harness_program(), "sql-writer", "--sql-writer", db_path, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    w->to = fdopen(to[1], "w");
    w->from = fdopen(from[0], "r");
    return w->pid > 0 && w->to && w->from ? 0 : -1;
}

int sql_writer_run(struct sql_writer *w, const char *sql, struct sql_truth *out)
{
    char line[256] = "";
    int rc;
    fprintf(w->to, "%s\n", sql);
    fflush(w->to);
    if (!fgets(line, sizeof line, w->from) ||
        sscanf(line, "%d %u %u %127s", &rc, &out->end_frame, &out->db_size, out->print) != 4 || rc != 0) {
        fprintf(stderr, "  writer: '%s' gave '%s'\n", sql, line);
        return -1;
    }
    return 0;
}

void sql_writer_stop(struct sql_writer *w)
{
    fclose(w->to);
    fclose(w->from);
    waitpid(w->pid, NULL, 0);
}

int sql_writer_create(const char *path)
{
    struct sql_writer creator;
    struct sql_truth truth;
    if (sql_writer_start(&creator, path) != 0)
        return -1;
    int rc = sql_writer_run(&creator, "PRAGMA journal_mode=WAL", &truth) == 0 &&
                     sql_writer_run(&creator, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)", &truth) == 0
                 ? 0
                 : -1;
    sql_writer_stop(&creator);
    return rc;
}

int sql_writer_transactions(struct sql_writer *w, int first, int count, struct sql_truth *truths)
{
    char sql[256];
    for (int i = 0; i < count; i++) {
        int k = first + i;
        if (k % 5 == 4)
            snprintf(sql, sizeof sql, "UPDATE t SET v = 'short' WHERE k = %d", k - 2);
        else if (k % 5 == 0)
            snprintf(sql, sizeof sql, "DELETE FROM t WHERE k = %d", k - 4);
        else
            snprintf(sql, sizeof sql, "INSERT INTO t VALUES (%d, hex(zeroblob(%d)))", k, 900 * k);
        if (sql_writer_run(w, sql, &truths[i]) != 0)
            return -1;
    }
    return 0;
}

int sql_writer_file_fingerprint(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDWR);
    if (fd < 0 || pwrite(fd, "\1\1", 2, 18) != 2) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    char uri[600];
    snprintf(uri, sizeof uri, "file:%s?immutable=1", path);
    sqlite3 *db;
    if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sql_writer_fingerprint(db, out, cap);
    sqlite3_close(db);
    return 0;
}

int sql_writer_copy_file(const char *from, const char *to)
{
    char buf[65536];
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n = 0;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            n = -1;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return in >= 0 && out >= 0 && n == 0 ? 0 : -1;
}
