/* sql_writer.h - a real SQLite application for tests that follow a live
 * database (the tailer, the shipper): another process (the test binary
 * run again as `TEST --sql-writer DB`, see sql_writer_main) holding one
 * connection open and running one SQL statement per request. For each
 * statement it reports what SQLite itself says was committed: the WAL's
 * frame count after the commit (the wal hook), the database size in
 * pages, and a fingerprint of table t. Its wal hook replaces automatic
 * checkpoints: the WAL restarts only when a statement checkpoints. */
#ifndef TM_TEST_SQL_WRITER_H
#define TM_TEST_SQL_WRITER_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* A fingerprint of table t(k INTEGER PRIMARY KEY, v TEXT). */
#define SQL_WRITER_FINGERPRINT \
    "SELECT count(*) || '/' || total(length(v)) || '/' || total(k * length(v)) FROM t"

struct sql_writer {
    pid_t pid;
    FILE *to, *from;
};

/* What SQLite says a statement committed. */
struct sql_truth {
    uint32_t end_frame;        /* frames in the WAL after the commit; 0: none written */
    uint32_t db_size;          /* pages */
    char print[128];           /* SQL_WRITER_FINGERPRINT, "-" without table t */
};

/* The test binary's main calls this first: when argv asks for the writer
 * mode, runs it and returns 1 with *status set (main returns it). */
int sql_writer_main(int argc, char **argv, int *status);

int sql_writer_start(struct sql_writer *w, const char *db_path);
/* Runs one statement; 0, or -1 (printed) when it failed. */
int sql_writer_run(struct sql_writer *w, const char *sql, struct sql_truth *out);
/* Closes its connection and waits for it to end. */
void sql_writer_stop(struct sql_writer *w);

/* The fingerprint of t in db into out ("-" when it cannot be read). */
void sql_writer_fingerprint(sqlite3 *db, char *out, size_t cap);

/* Creates database `path` in WAL mode with table t, then closes it (the
 * file then holds everything and there is no WAL). 0 or -1. */
int sql_writer_create(const char *path);

/* Rows of growing size (later ones span pages), with an update and a
 * delete now and then that rewrite pages written before: statements
 * first..first+count-1, their truths into truths[count]. */
int sql_writer_transactions(struct sql_writer *w, int first, int count, struct sql_truth *truths);

/* The fingerprint of the database file `path` read alone, as a plain
 * database (its header's WAL bytes are set to rollback mode first). */
int sql_writer_file_fingerprint(const char *path, char *out, size_t cap);

/* A copy of file `from` as `to`; 0 or -1. */
int sql_writer_copy_file(const char *from, const char *to);

#endif
