/* status_wire.c - the status document of `tidemark status` (status_wire.h):
 * the daemon writes it from its status snapshot (status.h) with the
 * problems /healthz names (metrics_db_problems), the command parses it. */
#include "status_wire.h"

#include "metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ writing */

static void put_escaped(FILE *out, const char *value)
{
    for (const unsigned char *p = (const unsigned char *)(value ? value : ""); *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
}

static void put_text(FILE *out, const char *key, const char *value)
{
    fprintf(out, "%s ", key);
    put_escaped(out, value);
    fputc('\n', out);
}

static void put_int(FILE *out, const char *key, int64_t value)
{
    fprintf(out, "%s %" PRId64 "\n", key, value);
}

void status_wire_begin(FILE *out)
{
    fputs("tidemark-status 1\n", out);
}

void status_wire_end(FILE *out)
{
    fputs("end\n", out);
}

struct problems {
    FILE *out;
    const char *replica;   /* NULL: collect the database's own; else this replica's */
    int count;             /* of every kind */
    int found;             /* of the kind collected */
};

static void collect_problem(void *arg, const char *replica, const char *reason)
{
    struct problems *p = arg;
    p->count++;
    if ((!p->replica && !replica) || (p->replica && replica && strcmp(p->replica, replica) == 0)) {
        if (p->out)
            put_text(p->out, "problem", reason);
        p->found++;
    }
}

void status_wire_db(FILE *out, const struct db_status *db, const struct config_alerts *thresholds, int64_t now_ms)
{
    put_text(out, "db", db->name);
    struct problems all = {0};
    metrics_db_problems(db, thresholds, now_ms, collect_problem, &all);
    put_text(out, "state", db->waiting_since_ms ? "waiting" : all.count ? "failing" : "following");
    struct problems own = {.out = out};
    metrics_db_problems(db, thresholds, now_ms, collect_problem, &own);
    if (db->waiting_since_ms) {
        put_text(out, "waiting_reason", db->waiting_reason);
        put_int(out, "waiting_since_ms", db->waiting_since_ms);
    }
    put_int(out, "asleep", db->asleep);
    put_int(out, "spool_bytes", (int64_t)db->spool_bytes);
    put_int(out, "snapshot_ms", db->snapshot_last_ms);
    put_int(out, "snapshot_failing", db->snapshot_failing);
    put_int(out, "drill_result", db->drill_result);
    put_int(out, "drill_time_ms", db->drill_time_ms);
    put_int(out, "drill_rto_ms", db->drill_rto_ms);
    put_int(out, "drill_rpo_ms", db->drill_rpo_ms);
    if (db->drill_error && db->drill_error[0])
        put_text(out, "drill_error", db->drill_error);
}

void status_wire_alert(FILE *out, const char *rule, const char *replica, const char *message, int64_t since_ms)
{
    fputs("alert ", out);
    put_escaped(out, rule);
    fputc('\t', out);
    put_escaped(out, replica);
    fprintf(out, "\t%" PRId64 "\t", since_ms);
    put_escaped(out, message);
    fputc('\n', out);
}

void status_wire_replicas(FILE *out, const struct db_status *db, const struct config_alerts *thresholds,
                          int64_t now_ms)
{
    for (size_t j = 0; j < db->replica_count; j++) {
        const struct replica_status *r = &db->replicas[j];
        put_text(out, "replica", r->name);
        struct problems mine = {.replica = r->name};
        metrics_db_problems(db, thresholds, now_ms, collect_problem, &mine);
        put_text(out, "state", mine.found ? "failing" : "following");
        mine = (struct problems){.out = out, .replica = r->name};
        metrics_db_problems(db, thresholds, now_ms, collect_problem, &mine);
        put_int(out, "lag_ms", r->lag_ms);
        put_int(out, "last_upload_ms", r->last_success_ms);
        put_int(out, "failing_since_ms", r->failing_since_ms);
        put_int(out, "queued", (int64_t)r->queued);
        if (r->last_error && r->last_error[0])
            put_text(out, "last_error", r->last_error);
    }
}

/* ------------------------------------------------------------ reading */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void status_wire_unescape(char *text)
{
    char *to = text;
    for (const char *p = text; *p; p++) {
        if (p[0] == '\\' && p[1] == '\\') {
            *to++ = '\\';
            p++;
        } else if (p[0] == '\\' && p[1] == 'x' && hex_digit(p[2]) >= 0 && hex_digit(p[3]) >= 0) {
            *to++ = (char)(hex_digit(p[2]) * 16 + hex_digit(p[3]));
            p += 3;
        } else {
            *to++ = *p;
        }
    }
    *to = '\0';
}

void status_wire_escape(const char *in, char *out, size_t len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&buf, &size);
    if (!mem) {
        if (len)
            out[0] = '\0';
        return;
    }
    put_escaped(mem, in);
    fclose(mem);
    snprintf(out, len, "%s", buf ? buf : "");
    free(buf);
}

struct status_db *status_list_add(struct status_list *list, const char *name)
{
    struct status_db *grown = realloc(list->dbs, (list->count + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    list->dbs = grown;
    struct status_db *db = &list->dbs[list->count++];
    *db = (struct status_db){.spool_bytes = -1, .drill_result = -1};
    snprintf(db->name, sizeof db->name, "%s", name);
    return db;
}

struct status_replica *status_db_add_replica(struct status_db *db, const char *name)
{
    struct status_replica *grown = realloc(db->replicas, (db->replica_count + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    db->replicas = grown;
    struct status_replica *r = &db->replicas[db->replica_count++];
    *r = (struct status_replica){.lag_ms = -1, .queued = -1};
    snprintf(r->name, sizeof r->name, "%s", name);
    return r;
}

void status_list_release(struct status_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->dbs[i].replicas);
    free(list->dbs);
    *list = (struct status_list){0};
}

/* Appends text to a "; "-separated list held in field. */
static void append_text(char *field, size_t len, const char *text)
{
    size_t used = strlen(field);
    if (used + 1 < len)
        snprintf(field + used, len - used, "%s%s", used ? "; " : "", text);
}

/* "alert RULE\tREPLICA\tSINCE\tMESSAGE" */
static int parse_alert(struct status_db *db, char *value)
{
    char *parts[4];
    for (int i = 0; i < 4; i++) {
        parts[i] = value;
        char *tab = i < 3 ? strchr(value, '\t') : NULL;
        if (i < 3 && !tab)
            return -1;
        if (tab) {
            *tab = '\0';
            value = tab + 1;
        }
    }
    if (db->alert_count == STATUS_ALERTS_MAX)
        return 0;
    struct status_alert *a = &db->alerts[db->alert_count++];
    for (int i = 0; i < 4; i++)
        status_wire_unescape(parts[i]);
    snprintf(a->rule, sizeof a->rule, "%s", parts[0]);
    snprintf(a->replica, sizeof a->replica, "%s", parts[1]);
    a->since_ms = strtoll(parts[2], NULL, 10);
    snprintf(a->message, sizeof a->message, "%s", parts[3]);
    return 0;
}

static int db_field(struct status_db *db, const char *key, const char *value)
{
    int64_t number = strtoll(value, NULL, 10);
    if (strcmp(key, "state") == 0)
        snprintf(db->state, sizeof db->state, "%s", value);
    else if (strcmp(key, "problem") == 0)
        append_text(db->problem, sizeof db->problem, value);
    else if (strcmp(key, "waiting_reason") == 0)
        snprintf(db->waiting_reason, sizeof db->waiting_reason, "%s", value);
    else if (strcmp(key, "waiting_since_ms") == 0)
        db->waiting_since_ms = number;
    else if (strcmp(key, "asleep") == 0)
        db->asleep = number != 0;
    else if (strcmp(key, "spool_bytes") == 0)
        db->spool_bytes = number;
    else if (strcmp(key, "snapshot_ms") == 0)
        db->snapshot_ms = number;
    else if (strcmp(key, "snapshot_failing") == 0)
        db->snapshot_failing = number != 0;
    else if (strcmp(key, "drill_result") == 0)
        db->drill_result = (int)number;
    else if (strcmp(key, "drill_time_ms") == 0)
        db->drill_time_ms = number;
    else if (strcmp(key, "drill_rto_ms") == 0)
        db->drill_rto_ms = number;
    else if (strcmp(key, "drill_rpo_ms") == 0)
        db->drill_rpo_ms = number;
    else if (strcmp(key, "drill_error") == 0)
        snprintf(db->drill_error, sizeof db->drill_error, "%s", value);
    return 0;
}

static void replica_field(struct status_replica *r, const char *key, const char *value)
{
    int64_t number = strtoll(value, NULL, 10);
    if (strcmp(key, "state") == 0)
        snprintf(r->state, sizeof r->state, "%s", value);
    else if (strcmp(key, "problem") == 0)
        append_text(r->problem, sizeof r->problem, value);
    else if (strcmp(key, "lag_ms") == 0)
        r->lag_ms = number;
    else if (strcmp(key, "last_upload_ms") == 0)
        r->last_upload_ms = number;
    else if (strcmp(key, "failing_since_ms") == 0)
        r->failing_since_ms = number;
    else if (strcmp(key, "queued") == 0)
        r->queued = number;
    else if (strcmp(key, "last_error") == 0)
        snprintf(r->last_error, sizeof r->last_error, "%s", value);
}

/* One line (key and value split, value still escaped); 1 at "end". */
static int parse_line(struct status_list *list, char *key, char *value, struct tm_error *err)
{
    struct status_db *db = list->count ? &list->dbs[list->count - 1] : NULL;
    if (strcmp(key, "end") == 0)
        return 1;
    if (strcmp(key, "alert") == 0)
        return db && parse_alert(db, value) == 0 ? 0 : tm_error_setc(err, TM_ERR_CORRUPT, "bad alert line");
    status_wire_unescape(value);
    if (strcmp(key, "db") == 0)
        return status_list_add(list, value) ? 0 : tm_error_set(err, "out of memory");
    if (!db)
        return tm_error_setc(err, TM_ERR_CORRUPT, "'%s' before any 'db' line", key);
    if (strcmp(key, "replica") == 0)
        return status_db_add_replica(db, value) ? 0 : tm_error_set(err, "out of memory");
    if (db->replica_count)
        replica_field(&db->replicas[db->replica_count - 1], key, value);
    else
        db_field(db, key, value);
    return 0;
}

int status_wire_parse(const char *text, struct status_list *list, struct tm_error *err)
{
    if (strncmp(text, "tidemark-status 1\n", 18) != 0)
        return tm_error_setc(err, TM_ERR_CORRUPT, "the sidecar's answer is not a status document: '%.60s'", text);
    char *copy = strdup(text + 18);
    if (!copy)
        return tm_error_set(err, "out of memory");
    int rc = -1, done = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line && !done; line = strtok_r(NULL, "\n", &save)) {
        char *space = strchr(line, ' ');
        char *value = space ? space + 1 : line + strlen(line);
        if (space)
            *space = '\0';
        int got = parse_line(list, line, value, err);
        if (got < 0)
            goto out;
        done = got == 1;
    }
    if (done)
        rc = 0;
    else
        tm_error_setc(err, TM_ERR_CORRUPT, "the sidecar's status document is cut short (no 'end')");
out:
    free(copy);
    return rc;
}
