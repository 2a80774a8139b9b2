/* staging.h - a drill's result left where a staging environment uses it
 * (drill: { publish }) and the staging check run after it (drill: {
 * after }). restore/drill.c calls these; staging.c says how. */
#ifndef TM_STAGING_H
#define TM_STAGING_H

#include <stdint.h>

#include "../common/error.h"

/* Replaces the file `target` with a copy of `copy`, atomically: a
 * temporary file in target's directory (mode: target's when it exists,
 * else 0600), fsync, the stale target-wal, -shm and -journal removed (they
 * belong to the file replaced), rename over target, fsync of the
 * directory. Then opens target and runs its first query (`sql`, or a
 * count of sqlite_schema when NULL), which must return a row. On failure
 * target is the old file (or the new one when only the query failed), no
 * temporary is left, and err says what failed. */
int staging_publish_file(const char *copy, const char *target, const char *sql, struct tm_error *err);

/* What a drill tells its `after` command (TIDEMARK_DRILL_* variables). */
struct staging_figures {
    const char *db, *replica;
    int64_t point_ms, rto_ms, served_ms, rpo_ms;   /* served_ms < 0: nothing published */
    const char *published;        /* "PATH" or "sqld:NAMESPACE"; NULL: nothing published */
    const char *published_file;   /* the file's path, or NULL */
    const char *sqld_url, *sqld_namespace;   /* a sqld publish, or NULL */
};

/* How `after` ended. */
enum staging_after_end { STAGING_AFTER_PASSED, STAGING_AFTER_EXIT, STAGING_AFTER_SIGNAL, STAGING_AFTER_TIMED_OUT,
                         STAGING_AFTER_NOT_STARTED };

struct staging_after_result {
    enum staging_after_end end;
    int code;                 /* the exit status (EXIT) or the signal (SIGNAL) */
    int64_t elapsed_ms;
    char text[32];            /* "passed", "exit 1", "signal 9", "timed out", "not started" */
};

/* Runs `command` through /bin/sh -c, in a process group of its own, with
 * a minimal environment (PATH, HOME and the figures as TIDEMARK_DRILL_*),
 * its standard output sent to our standard error (our standard output is
 * the drill's report). Waits at most timeout_ms: then the whole group is
 * killed (SIGKILL) and the result is STAGING_AFTER_TIMED_OUT. Returns 0
 * when it passed (exit status 0), else -1 with err set and *out saying
 * how it ended. */
int staging_run_after(const char *command, int64_t timeout_ms, const struct staging_figures *figures,
                      struct staging_after_result *out, struct tm_error *err);

#endif
