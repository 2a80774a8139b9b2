/* drill_record.h - the record of a restore drill: one line of JSON that
 * `tidemark drill` stores as NAME/drills/MS-REPLICA.json (layout.h) and
 * prints (--json), and that `list`, `status` and the daemon's metrics read
 * back (drill_latest finds the newest on a replica).
 * Writer and parser live together so that they cannot drift apart.
 *
 *   {"time": "2026-11-24T04:00:01.234Z", "db": "app", "replica": "s3",
 *    "ok": true, "rto_ms": 520, "rpo_ms": 1300, "point": "...",
 *    "check_sql": "...", "check_result": "...", "published": "/srv/staging/app.db",
 *    "served_ms": 610, "after": "passed", "after_ms": 1200, "error": "...",
 *    "phases": {"fetch_ms": 40, "decrypt_decompress_ms": 210, "write_ms": 90,
 *               "fsync_ms": 30, "check_ms": 150, "total_ms": 480}}
 *
 * rpo_ms and point only when a point was restored; check_sql and
 * check_result only when a check is configured; published and served_ms
 * only when the copy was published (drill: { publish }): where ("PATH"
 * or "sqld:NAMESPACE") and the time from the restore's start to the
 * published copy answering its first query; after and after_ms only when
 * drill: { after } ran: "passed", "exit N", "signal N", "timed out" or
 * "not started", and its wall time; error only on failure; phases only
 * when an SQLite database was restored (where the restore's time went:
 * restore.h, struct restore_phases). */
#ifndef TM_DRILL_RECORD_H
#define TM_DRILL_RECORD_H

#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "storage/storage.h"

/* Where a drill's restore spent its time, in milliseconds. */
struct drill_phases {
    int64_t fetch_ms, decode_ms, write_ms, fsync_ms, check_ms, total_ms;
};

/* What a drill found, for the writer. */
struct drill_record {
    int64_t started_ms;          /* "time" */
    const char *db, *replica;
    int ok;
    int64_t rto_ms;
    int64_t rpo_ms, point_ms;    /* point_ms 0: nothing restored, neither written */
    const char *check_sql;       /* NULL: no check configured */
    const char *check_result;
    const char *error;           /* NULL or "": none */
    const char *published;       /* NULL or "": not published (neither it nor served_ms written) */
    int64_t served_ms;
    const char *after;           /* NULL: `after` did not run (neither it nor after_ms written) */
    int64_t after_ms;
    const struct drill_phases *phases;   /* NULL: not written */
    uint64_t read_bytes;         /* the objects the restore applied, in bytes; 0: not written */
};

/* The record as one line of JSON (malloc'd; NULL when out of memory). */
char *drill_record_format(const struct drill_record *r);

/* What readers of a record use. */
struct drill_summary {
    char time[40];               /* as recorded; "?" when absent */
    int ok;                      /* "ok" is true */
    int64_t rto_ms, rpo_ms;      /* -1 when absent */
    char point[40];              /* "" when absent (as the strings below) */
    char check_result[256];
    char error[512];
    char published[300];
    int64_t served_ms;           /* -1 when absent */
    char after[32];              /* "" when absent */
    int64_t after_ms;            /* -1 when absent */
    int64_t read_bytes;          /* -1 when absent */
};

/* Reads a record, or the first record of a JSON array of them (the
 * output of `drill --json`). *out is filled with the defaults first, then
 * with every field read, so that it holds what could be read even on
 * failure. Fails (TM_ERR_CORRUPT) on text that is not such JSON. */
int drill_record_parse(const char *text, struct drill_summary *out, struct tm_error *err);

/* A parsed record as a JSON object, made from its fields only (never the
 * stored text: a record is bucket data anyone with write access could
 * plant): {"time", "ok", "rto_ms", "rpo_ms" (null when absent), and
 * "point", "check_result", "published", "served_ms", "after", "after_ms",
 * "error" when present}. */
void drill_summary_write_json(const struct drill_summary *s, FILE *out);

/* A drill record is one line of a few hundred bytes (common/drill_record.h);
 * a bigger object under drills/ is planted or damaged. */
#define DRILL_RECORD_MAX (64 * 1024)

/* The newest drill record of db in st (its text, malloc'd, NUL-terminated,
 * unchecked: parse it, never echo it), or NULL with *found = 0. For `list`
 * and `status`.
 * A record larger than DRILL_RECORD_MAX fails as corrupt, naming it. */
int drill_latest(struct storage *st, const char *db, char **record, int *found, struct tm_error *err);

#endif
