/* staging.c - a drill's copy published for staging, and its `after`
 * command (staging.h).
 *
 * PUBLISHING A FILE. The staging application may be reading the file
 * while it is replaced, so it is never written in place: the copy goes to
 * a temporary file in the same directory (mkstemp: O_EXCL, a name nobody
 * can predict, 0600, then the old file's mode), is fsync'ed, and renamed
 * over the target; the directory is fsync'ed after. A process that has
 * the old file open keeps reading the old inode until it reopens. The
 * target's -wal, -shm and -journal are removed before the rename: they
 * belong to the file replaced, and a WAL left beside the new file would be
 * replayed into it at its next open (SQLite checks the WAL's own
 * checksums, not that it matches the file). The first query is then run
 * on the published file, read-only: the time to it is what the drill
 * reports as "served".
 *
 * THE AFTER COMMAND. A child through /bin/sh -c, in its own process group
 * (a shell's children are killed with it at the timeout), with only PATH,
 * HOME and TIDEMARK_DRILL_* in its environment (the drill's process may
 * hold storage credentials), its stdout sent to our stderr. We poll
 * waitpid every 20 ms up to the timeout: a drill is a child process of
 * its own (the sidecar never waits for it), so blocking here is fine. */
#include "staging.h"

#include "../common/childenv.h"

#include "../common/clock.h"
#include "../common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ publishing */

/* Removes target's -wal, -shm, -journal and -tshm (the Turso engine's
 * coordination file; none there is fine). */
static int remove_stale_companions(const char *target, struct tm_error *err)
{
    static const char *const suffixes[] = {"-wal", "-shm", "-journal", "-tshm"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s%s", target, suffixes[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            return tm_error_set(err, "cannot remove '%s' (it belongs to the staging file replaced): %s", path,
                                strerror(errno));
    }
    return 0;
}

/* The first query on the published file: it must return a row. */
static int first_query(const char *path, const char *sql, struct tm_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = -1;
    if (!sql)
        sql = "SELECT count(*) FROM sqlite_schema";
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        tm_error_set(err, "cannot open the published copy '%s': %s", path, sqlite3_errmsg(db));
    else if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        tm_error_set(err, "the first query on the published copy '%s' failed: %s", path, sqlite3_errmsg(db));
    else if (sqlite3_step(stmt) != SQLITE_ROW)
        tm_error_set(err, "the first query on the published copy '%s' returned no row: %s", path, sqlite3_errmsg(db));
    else
        rc = 0;
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return rc;
}

int staging_publish_file(const char *copy, const char *target, const char *sql, struct tm_error *err)
{
    char dir[PATH_MAX], temp[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s", target);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return tm_error_set(err, "publish to '%s' failed: not an absolute path", target);
    if (slash == dir)
        dir[1] = '\0';   /* a file in / */
    else
        *slash = '\0';
    snprintf(temp, sizeof temp, "%s.tidemark-XXXXXX", target);
    int fd = mkostemp(temp, O_CLOEXEC);
    if (fd < 0)
        return tm_error_set(err, "publish to '%s' failed: cannot create a temporary file in its directory: %s",
                            target, strerror(errno));
    struct stat old;
    mode_t mode = lstat(target, &old) == 0 && S_ISREG(old.st_mode) ? old.st_mode & 07777 : 0600;
    int rc = fsutil_copy_into(copy, fd, temp, NULL, err);
    if (rc == 0 && fchmod(fd, mode) != 0)
        rc = tm_error_set(err, "cannot set the mode of '%s': %s", temp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = tm_error_set(err, "cannot write '%s': %s", temp, strerror(errno));
    if (rc == 0)
        rc = remove_stale_companions(target, err);
    if (rc == 0 && rename(temp, target) != 0)
        rc = tm_error_set(err, "cannot rename '%s' over '%s': %s", temp, target, strerror(errno));
    if (rc != 0) {
        unlink(temp);
        tm_error_prefix(err, "publish to '%s' failed: ", target);
        return -1;
    }
    if (fsutil_fsync_dir(dir, err) != 0)
        return -1;
    return first_query(target, sql, err);
}

/* ------------------------------------------------------------ after */

#define AFTER_ENV_MAX 20

/* The command's whole environment (common/childenv.h): PATH, HOME and the
 * drill's TIDEMARK_DRILL_* figures. The count of malloc'd strings in env,
 * or -1 when out of memory. */
static int after_env(const struct staging_figures *f, char *env[AFTER_ENV_MAX])
{
    char point[40], point_ms[24], rto[24], served[24], rpo[24];
    clock_format_ms(f->point_ms, point, sizeof point);
    snprintf(point_ms, sizeof point_ms, "%" PRId64, f->point_ms);
    snprintf(rto, sizeof rto, "%" PRId64, f->rto_ms);
    snprintf(served, sizeof served, "%" PRId64, f->served_ms);
    snprintf(rpo, sizeof rpo, "%" PRId64, f->rpo_ms);
    const struct childenv_var vars[] = {
        {"TIDEMARK_DRILL_DB", f->db}, {"TIDEMARK_DRILL_REPLICA", f->replica},
        {"TIDEMARK_DRILL_POINT", f->point_ms ? point : NULL}, {"TIDEMARK_DRILL_POINT_MS", f->point_ms ? point_ms : NULL},
        {"TIDEMARK_DRILL_RTO_MS", rto}, {"TIDEMARK_DRILL_SERVED_MS", f->served_ms >= 0 ? served : NULL},
        {"TIDEMARK_DRILL_RPO_MS", f->point_ms ? rpo : NULL}, {"TIDEMARK_DRILL_PUBLISHED", f->published},
        {"TIDEMARK_DRILL_PUBLISHED_FILE", f->published_file}, {"TIDEMARK_DRILL_SQLD_URL", f->sqld_url},
        {"TIDEMARK_DRILL_NAMESPACE", f->sqld_namespace}};
    return childenv_build(vars, sizeof vars / sizeof *vars, env, AFTER_ENV_MAX);
}

/* Waits for pid until deadline_ms (monotonic); 0 with *status, or -1
 * when the deadline passed. */
static int wait_until(pid_t pid, int64_t deadline_ms, int *status)
{
    for (;;) {
        pid_t got = waitpid(pid, status, WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR))
            return 0;
        if (monotonic_ms() >= deadline_ms)
            return -1;
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
    }
}

static void describe(struct staging_after_result *out, enum staging_after_end end, int code)
{
    out->end = end;
    out->code = code;
    switch (end) {
    case STAGING_AFTER_PASSED: snprintf(out->text, sizeof out->text, "passed"); break;
    case STAGING_AFTER_EXIT: snprintf(out->text, sizeof out->text, "exit %d", code); break;
    case STAGING_AFTER_SIGNAL: snprintf(out->text, sizeof out->text, "signal %d", code); break;
    case STAGING_AFTER_TIMED_OUT: snprintf(out->text, sizeof out->text, "timed out"); break;
    case STAGING_AFTER_NOT_STARTED: snprintf(out->text, sizeof out->text, "not started"); break;
    }
}

int staging_run_after(const char *command, int64_t timeout_ms, const struct staging_figures *figures,
                      struct staging_after_result *out, struct tm_error *err)
{
    memset(out, 0, sizeof *out);
    describe(out, STAGING_AFTER_NOT_STARTED, 0);
    char *env[AFTER_ENV_MAX];
    int env_count = after_env(figures, env);
    if (env_count < 0)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "after: out of memory");
    fflush(NULL);
    int64_t started = monotonic_ms();
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execle("/bin/sh", "sh", "-c", command, (char *)NULL, env);
        _exit(127);
    }
    childenv_free(env, env_count);
    if (pid < 0)
        return tm_error_set(err, "after: cannot start '%s': fork: %s", command, strerror(errno));
    setpgid(pid, pid);   /* also here: the group exists before any kill */
    int status = 0;
    if (wait_until(pid, started + timeout_ms, &status) != 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
        out->elapsed_ms = monotonic_ms() - started;
        describe(out, STAGING_AFTER_TIMED_OUT, 0);
        return tm_error_set(err, "after: '%s' still running after %.1f s (after-timeout): killed", command,
                            (double)timeout_ms / 1000.0);
    }
    out->elapsed_ms = monotonic_ms() - started;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        describe(out, STAGING_AFTER_PASSED, 0);
        return 0;
    }
    if (WIFEXITED(status)) {
        describe(out, STAGING_AFTER_EXIT, WEXITSTATUS(status));
        return tm_error_set(err, "after: '%s' failed with exit status %d", command, WEXITSTATUS(status));
    }
    describe(out, STAGING_AFTER_SIGNAL, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return tm_error_set(err, "after: '%s' was killed by signal %d", command, out->code);
}
