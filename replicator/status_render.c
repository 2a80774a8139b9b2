/* status_render.c - the text and JSON output of `tidemark status`
 * (status_render.h). Every name and message shown as text goes through
 * textsafe (names come from the bucket and the file system: any byte). */
#include "status_render.h"

#include "../common/clock.h"
#include "../common/json.h"
#include "../common/textsafe.h"

#include <inttypes.h>
#include <string.h>

#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define RED "\033[1;31m"
#define RESET "\033[0m"

int status_list_protected(const struct status_list *list)
{
    if (list->idle_entries)
        return 0;
    for (size_t i = 0; i < list->count; i++)
        if (!status_db_protected(&list->dbs[i]))
            return 0;
    return 1;
}

int status_db_protected(const struct status_db *db)
{
    if (!db->from_sidecar || strcmp(db->state, "following") != 0)
        return 0;
    for (size_t j = 0; j < db->replica_count; j++)
        if (strcmp(db->replicas[j].state, "following") != 0)
            return 0;
    return 1;
}

void status_format_duration(int64_t ms, char *out, size_t len)
{
    if (ms < 0)
        ms = 0;
    int64_t s = ms / 1000;
    if (ms < 1000)
        snprintf(out, len, "%" PRId64 " ms", ms);
    else if (ms < 60000)
        snprintf(out, len, "%.1f s", (double)ms / 1000.0);
    else if (s < 3600)
        snprintf(out, len, "%" PRId64 " min %" PRId64 " s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, len, "%" PRId64 " h %" PRId64 " min", s / 3600, s % 3600 / 60);
    else
        snprintf(out, len, "%" PRId64 " d %" PRId64 " h", s / 86400, s % 86400 / 3600);
}

/* ---------------------------------------------------------------- text */

static const char *state_colour(const char *state)
{
    if (strcmp(state, "following") == 0)
        return GREEN;
    if (strcmp(state, "waiting") == 0)
        return YELLOW;
    return RED;
}

static void put_state(FILE *out, const char *state, int color)
{
    if (color)
        fprintf(out, "%s%s%s", state_colour(state), state, RESET);
    else
        fputs(state, out);
}

static void put_safe(FILE *out, const char *text)
{
    textsafe_print(out, text);
}

/* "2026-11-30T17:00:00.000Z (4 min 10 s ago)", or "none". */
static void put_time_ago(FILE *out, int64_t ms, int64_t now_ms)
{
    if (ms <= 0) {
        fputs("none", out);
        return;
    }
    char when[40], ago[40];
    clock_format_ms(ms, when, sizeof when);
    status_format_duration(now_ms - ms, ago, sizeof ago);
    fprintf(out, "%s (%s ago)", when, ago);
}

static void put_archive_line(FILE *out, const struct status_replica *r, int64_t now_ms)
{
    fputs("      ", out);
    if (!r->archive_read) {
        fputs("archive: cannot be read: ", out);
        put_safe(out, r->archive_error);
        fputc('\n', out);
        return;
    }
    if (r->newest_ms > 0) {
        char oldest[40];
        clock_format_ms(r->oldest_ms, oldest, sizeof oldest);
        fprintf(out, "restorable %s .. ", oldest);
        put_time_ago(out, r->newest_ms, now_ms);
    } else {
        fputs("nothing restorable yet", out);
    }
    fputs("; last snapshot ", out);
    put_time_ago(out, r->snapshot_ms, now_ms);
    fputs("; last drill ", out);
    if (r->drill_found) {
        fprintf(out, "%s %s", r->drill.time, r->drill.ok ? "ok" : "FAILED");
        if (r->drill.rto_ms >= 0)
            fprintf(out, ", RTO %.2f s", (double)r->drill.rto_ms / 1000.0);
    } else {
        fputs("none recorded", out);
    }
    fputc('\n', out);
}

static void put_replica(FILE *out, const struct status_db *db, const struct status_replica *r, int64_t now_ms,
                        int color)
{
    fputs("  replica ", out);
    put_safe(out, r->name);
    fputs(": ", out);
    if (db->from_sidecar) {
        put_state(out, r->state, color);
        if (r->problem[0]) {
            fputs(" (", out);
            put_safe(out, r->problem);
            fputc(')', out);
        } else if (r->failing_since_ms) {
            char since[40];
            status_format_duration(now_ms - r->failing_since_ms, since, sizeof since);
            fprintf(out, " (retrying for %s: ", since);
            put_safe(out, r->last_error);
            fputc(')', out);
        }
        char lag[40];
        status_format_duration(r->lag_ms, lag, sizeof lag);
        fprintf(out, ", lag %s, %" PRId64 " object(s) queued", lag, r->queued);
    } else {
        fputs("read directly", out);
    }
    fputc('\n', out);
    put_archive_line(out, r, now_ms);
}

static void put_db_lines(FILE *out, const struct status_db *db, int64_t now_ms)
{
    if (db->waiting_reason[0]) {
        char since[40];
        status_format_duration(now_ms - db->waiting_since_ms, since, sizeof since);
        fprintf(out, "  waiting for %s: ", since);
        put_safe(out, db->waiting_reason);
        fputc('\n', out);
    }
    if (!db->from_sidecar)
        return;
    fprintf(out, "  spool %" PRId64 " bytes; snapshot ", db->spool_bytes);
    put_time_ago(out, db->snapshot_ms, now_ms);
    if (db->drill_result >= 0)
        fprintf(out, "; drill this run %s", db->drill_result ? "passed" : "FAILED");
    fputc('\n', out);
    for (size_t k = 0; k < db->alert_count; k++) {
        const struct status_alert *a = &db->alerts[k];
        fprintf(out, "  alert %s%s", a->rule, a->replica[0] ? " on " : "");
        put_safe(out, a->replica);
        fputs(": ", out);
        put_safe(out, a->message);
        fputc('\n', out);
    }
}

void status_render_text(const struct status_list *list, int64_t now_ms, int color, FILE *out)
{
    if (!list->count)
        fputs("no database found (a dir: entry with no database yet)\n", out);
    for (size_t i = 0; i < list->count; i++) {
        const struct status_db *db = &list->dbs[i];
        if (i)
            fputc('\n', out);
        fputs("database ", out);
        put_safe(out, db->name);
        fputs(": ", out);
        put_state(out, db->state, color);
        if (db->asleep)
            fputs(" (asleep: files closed while idle)", out);
        if (db->problem[0]) {
            fputs(" (", out);
            put_safe(out, db->problem);
            fputc(')', out);
        }
        if (!db->from_sidecar)
            fputs(" (no sidecar running: read from the replicas)", out);
        fputc('\n', out);
        put_db_lines(out, db, now_ms);
        for (size_t j = 0; j < db->replica_count; j++)
            put_replica(out, db, &db->replicas[j], now_ms, color);
    }
}

/* ---------------------------------------------------------------- JSON */

static void json_key_string(FILE *out, const char *key, const char *value)
{
    fprintf(out, ", \"%s\": ", key);
    if (value && value[0])
        json_write_string(out, value);
    else
        fputs("null", out);
}

/* A time or a quantity the source did not give (<= 0 for times, < 0
 * otherwise) is null. */
static void json_key_time(FILE *out, const char *key, int64_t ms)
{
    if (ms > 0)
        fprintf(out, ", \"%s\": %" PRId64, key, ms);
    else
        fprintf(out, ", \"%s\": null", key);
}

static void json_key_count(FILE *out, const char *key, int64_t n)
{
    if (n >= 0)
        fprintf(out, ", \"%s\": %" PRId64, key, n);
    else
        fprintf(out, ", \"%s\": null", key);
}

static void json_drill(FILE *out, const struct status_replica *r)
{
    fputs(", \"last_drill\": ", out);
    if (!r->drill_found) {
        fputs("null", out);
        return;
    }
    fputs("{\"time\": ", out);
    json_write_string(out, r->drill.time);
    fprintf(out, ", \"ok\": %s", r->drill.ok ? "true" : "false");
    json_key_count(out, "rto_ms", r->drill.rto_ms);
    json_key_count(out, "rpo_ms", r->drill.rpo_ms);
    json_key_string(out, "error", r->drill.error);
    fputc('}', out);
}

static void json_replica(FILE *out, const struct status_replica *r, int64_t now_ms)
{
    fputs("{\"name\": ", out);
    json_write_string(out, r->name);
    json_key_string(out, "state", r->state[0] ? r->state : NULL);
    json_key_string(out, "problem", r->problem);
    json_key_count(out, "lag_ms", r->lag_ms);
    json_key_count(out, "queued_objects", r->queued);
    json_key_time(out, "last_upload_ms", r->last_upload_ms);
    json_key_time(out, "failing_since_ms", r->failing_since_ms);
    json_key_string(out, "last_error", r->last_error);
    json_key_string(out, "archive_error", r->archive_read ? NULL : r->archive_error);
    json_key_time(out, "oldest_point_ms", r->newest_ms > 0 ? r->oldest_ms : 0);
    json_key_time(out, "newest_point_ms", r->newest_ms);
    json_key_count(out, "newest_point_age_ms", r->newest_ms > 0 ? now_ms - r->newest_ms : -1);
    json_key_time(out, "last_snapshot_ms", r->snapshot_ms);
    json_drill(out, r);
    fputc('}', out);
}

static void json_alerts(FILE *out, const struct status_db *db)
{
    fputs(", \"alerts\": [", out);
    for (size_t k = 0; k < db->alert_count; k++) {
        const struct status_alert *a = &db->alerts[k];
        fprintf(out, "%s{\"rule\": ", k ? ", " : "");
        json_write_string(out, a->rule);
        json_key_string(out, "replica", a->replica);
        json_key_string(out, "message", a->message);
        json_key_time(out, "since_ms", a->since_ms);
        fputc('}', out);
    }
    fputc(']', out);
}

static void json_db(FILE *out, const struct status_db *db, int64_t now_ms)
{
    fputs("{\"name\": ", out);
    json_write_string(out, db->name);
    fprintf(out, ", \"state\": \"%s\", \"protected\": %s, \"source\": \"%s\", \"asleep\": %s", db->state,
            status_db_protected(db) ? "true" : "false", db->from_sidecar ? "sidecar" : "replicas",
            db->asleep ? "true" : "false");
    json_key_string(out, "problem", db->problem);
    json_key_string(out, "waiting_reason", db->waiting_reason);
    json_key_time(out, "waiting_since_ms", db->waiting_since_ms);
    json_key_count(out, "spool_bytes", db->spool_bytes);
    json_key_time(out, "last_snapshot_ms", db->snapshot_ms);
    fprintf(out, ", \"drill_this_run\": %s",
            !db->from_sidecar || db->drill_result < 0 ? "null" : db->drill_result ? "\"passed\"" : "\"failed\"");
    json_alerts(out, db);
    fputs(", \"replicas\": [", out);
    for (size_t j = 0; j < db->replica_count; j++) {
        fputs(j ? ", " : "", out);
        json_replica(out, &db->replicas[j], now_ms);
    }
    fputs("]}", out);
}

void status_render_json(const struct status_list *list, int64_t now_ms, FILE *out)
{
    fprintf(out, "{\"time_ms\": %" PRId64 ", \"protected\": %s, \"databases\": [", now_ms,
            status_list_protected(list) ? "true" : "false");
    for (size_t i = 0; i < list->count; i++) {
        fputs(i ? ",\n  " : "\n  ", out);
        json_db(out, &list->dbs[i], now_ms);
    }
    fputs("]}\n", out);
}
