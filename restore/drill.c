/* drill.c - restore drills (drill.h): the seed's monthly restore test.
 *
 * For each replica: restore the newest point into the staging directory
 * (restore.c, which checks every object and runs integrity_check), run the
 * configured check query on the result (it must succeed and return a
 * row), and measure
 *   RTO = wall time of the restore, and
 *   RPO = age of the newest restorable transaction at that moment
 * (what a disaster right then would have lost). The scratch copy is then
 * removed. It is made in a new private directory (mkdtemp) inside the
 * staging directory, which is created 0700 or, when it exists, must be
 * ours: a real directory, owned by the effective uid, not writable by
 * group or others (fsutil_ensure_private_dir); otherwise the drill fails
 * naming it, as another user could read or swap the copy. Each drill is recorded in the replica it tested, as one small
 * JSON object "NAME/drills/<unix ms>-<replica>.json" (objects are
 * immutable, so the log is a directory of records, newest last), where
 * every host sees the history; `tidemark list` shows the newest.
 *
 * DRILLS TO STAGING. With drill: { publish }, the checked copy is then
 * left where a staging environment uses it (staging.c: a file replaced
 * atomically, or a sqld namespace recreated from it), and
 *   served = the restore's start to the published copy answering its
 *            first query (restore + publish + first query)
 * is measured: the RTO that counts, "staging serves the restored data".
 * drill: { after } then runs the staging check with the figures in its
 * environment. A failed publish or `after` fails the drill like a failed
 * restore (recorded, exit status 1, the drill_failed alert). */
#include "drill.h"

#include "../common/clock.h"
#include "../common/drill_record.h"
#include "../common/fsutil.h"
#include "../common/layout.h"
#include "restore.h"
#include "sqld.h"

#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the check query: it must succeed and return at least one row. */
static int run_check(const char *path, const char *sql, char *value, size_t len, struct tm_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int rc = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        tm_error_set(err, "cannot open the restored copy: %s", sqlite3_errmsg(db));
    else if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        tm_error_set(err, "check-sql failed: %s", sqlite3_errmsg(db));
    else {
        int step = sqlite3_step(stmt);
        if (step == SQLITE_ROW) {
            const unsigned char *text = sqlite3_column_text(stmt, 0);
            snprintf(value, len, "%s", text ? (const char *)text : "NULL");
            rc = 0;
        } else if (step == SQLITE_DONE) {
            tm_error_set(err, "check-sql returned no row: %s", sql);
        } else {
            tm_error_set(err, "check-sql failed: %s", sqlite3_errmsg(db));
        }
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return rc;
}

/* Publishes the checked copy at scratch where drill: { publish } says;
 * out->published and out->served_ms on success. t0: the restore's start. */
static int publish_copy(const struct config_db *db, const char *scratch, int64_t t0, struct drill_result *out,
                        struct tm_error *err)
{
    const struct config_drill *drill = &db->drill;
    if (drill->publish_file) {
        if (staging_publish_file(scratch, drill->publish_file, drill->check_sql, err) != 0)
            return -1;
        snprintf(out->published, sizeof out->published, "%s", drill->publish_file);
    } else if (drill->publish_sqld.name) {
        /* staging is replaced each time: the old namespace goes first */
        const struct config_publish_sqld *sqld = &drill->publish_sqld;
        struct sqld_report report;
        int deleted;
        if (sqld_delete_namespace(sqld->admin_url, sqld->name, &deleted, err) != 0 ||
            sqld_create_namespace(scratch, sqld->admin_url, sqld->http_url, sqld->name, &report, err) != 0) {
            tm_error_prefix(err, "publish to sqld namespace '%s' failed: ", sqld->name);
            return -1;
        }
        snprintf(out->published, sizeof out->published, "sqld:%s", sqld->name);
    } else {
        return 0;
    }
    out->served_ms = monotonic_ms() - t0;
    return 0;
}

/* Runs drill: { after } with the drill's figures; its result in out. */
static int run_after(const struct config_db *db, const char *replica, struct drill_result *out, struct tm_error *err)
{
    const struct config_drill *drill = &db->drill;
    struct staging_figures figures = {
        .db = db->name, .replica = replica, .point_ms = out->point_ms, .rto_ms = out->rto_ms,
        .served_ms = out->served_ms, .rpo_ms = out->rpo_ms, .published = out->published[0] ? out->published : NULL,
        .published_file = out->published[0] ? drill->publish_file : NULL,
        .sqld_url = out->published[0] ? drill->publish_sqld.http_url : NULL,
        .sqld_namespace = out->published[0] ? drill->publish_sqld.name : NULL};
    out->after_ran = 1;
    return staging_run_after(drill->after, drill->after_timeout_ms, &figures, &out->after, err);
}

/* After a restore that succeeded: the check, publishing, `after`; ok
 * when all passed, else the first failure in out->error. */
static void check_publish_and_after(const struct config_db *db, const char *replica, const char *scratch,
                                    int64_t t0, struct drill_result *out)
{
    struct tm_error err;
    int redis = db->kind == DB_REDIS;
    if (!redis && db->drill.check_sql &&
        run_check(scratch, db->drill.check_sql, out->check, sizeof out->check, &err) != 0) {
        snprintf(out->error, sizeof out->error, "%s", err.msg);
        return;
    }
    if (!redis && publish_copy(db, scratch, t0, out, &err) != 0) {
        snprintf(out->error, sizeof out->error, "%s", err.msg);
        return;
    }
    if (db->drill.after && run_after(db, replica, out, &err) != 0) {
        snprintf(out->error, sizeof out->error, "%s", err.msg);
        return;
    }
    out->ok = 1;
}

void drill_replica(const struct crypto_keyring *key, const struct config_db *db, size_t replica,
                   enum restore_integrity integrity, struct drill_result *out)
{
    memset(out, 0, sizeof *out);
    out->started_ms = clock_now_ms();
    out->served_ms = -1;
    struct tm_error err;
    char work[PATH_MAX], scratch[PATH_MAX + ARCHIVE_NAME_MAX], index[16];
    snprintf(index, sizeof index, "%zu", replica);
    char file_name[ARCHIVE_NAME_MAX];
    layout_db_dir(db->name, file_name, sizeof file_name);   /* a directory's database: one file name */
    snprintf(work, sizeof work, "%s/drill-XXXXXX", db->drill.staging);
    if (fsutil_ensure_private_dir(db->drill.staging, &err) != 0 || fsutil_private_dir(work, &err) != 0) {
        snprintf(out->error, sizeof out->error, "%s", err.msg);
        return;
    }
    snprintf(scratch, sizeof scratch, "%s/%s-%s.db", work, file_name, db->replicas[replica].name);
    struct restore_outcome outcome = {0};
    struct tm_error ignored;   /* removing the scratch copy: nothing to report */
    /* Redis: a directory with dump.rdb, which the restore loads into a
     * private redis-server as its check */
    int redis = db->kind == DB_REDIS;
    struct restore_options opts = {.db_name = db->name, .output = scratch, .replica = index, .force = 1,
                                   .redis_rdb = redis, .integrity = integrity};
    int64_t t0 = monotonic_ms();
    int rc = restore_database(db, key, &opts, &outcome, &err);
    out->rto_ms = monotonic_ms() - t0;
    if (rc != 0)
        snprintf(out->error, sizeof out->error, "the restore failed: %s", err.msg);
    else {
        out->point_ms = outcome.point_ms;
        out->rpo_ms = clock_now_ms() - outcome.point_ms;
        out->has_phases = !redis;
        out->read_bytes = redis ? 0 : outcome.read_bytes;
        const struct restore_phases *p = &outcome.phases;
        out->phases = (struct drill_phases){p->fetch_us / 1000, p->decode_us / 1000, p->write_us / 1000,
                                            p->fsync_us / 1000, p->check_us / 1000, p->total_us / 1000};
        check_publish_and_after(db, db->replicas[replica].name, scratch, t0, out);
    }
    fsutil_remove_tree(work, &ignored);
}

/* The record, one line of JSON (common/drill_record.h). */
static char *format_record(const struct config_db *db, const char *replica, const struct drill_result *r)
{
    struct drill_record record = {.started_ms = r->started_ms, .db = db->name, .replica = replica, .ok = r->ok,
                                  .rto_ms = r->rto_ms, .rpo_ms = r->rpo_ms, .point_ms = r->point_ms,
                                  .check_sql = db->drill.check_sql, .check_result = r->check, .error = r->error,
                                  .published = r->published, .served_ms = r->served_ms,
                                  .after = r->after_ran ? r->after.text : NULL, .after_ms = r->after.elapsed_ms,
                                  .phases = r->has_phases ? &r->phases : NULL, .read_bytes = r->read_bytes};
    return drill_record_format(&record);
}

static int store_record(const struct config_db *db, size_t replica, const struct drill_result *r,
                        const char *record, struct tm_error *err)
{
    struct storage *st;
    if (storage_open_replica(&db->replicas[replica], &st, err) != 0)
        return -1;
    char key[512];
    layout_drill_key(db->name, r->started_ms, db->replicas[replica].name, key, sizeof key);
    struct storage_writer *w;
    int rc = storage_write_begin(st, key, &w, err);
    if (rc == 0 && (rc = storage_write(w, record, strlen(record), err)) != 0)
        storage_write_abort(w);
    else if (rc == 0)
        rc = storage_write_commit(w, err);
    storage_free(st);
    return rc;
}

int drill_store(const struct config_db *db, size_t replica, const struct drill_result *r, char **record,
                struct tm_error *err)
{
    *record = format_record(db, db->replicas[replica].name, r);
    if (!*record)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    return store_record(db, replica, r, *record, err);
}
