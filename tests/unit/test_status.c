/* test_status.c - `tidemark status`'s pure parts: the status document
 * written by the daemon and parsed by the command (replicator/status_wire.h:
 * the state and reasons /healthz gives, escaping, a cut document), and
 * the output (replicator/status_render.h: durations, protected, text). */
#include "harness.h"

#include "../../replicator/status_render.h"
#include "../../replicator/status_wire.h"

#include <stdlib.h>

#define NOW 1800000000000LL

static const struct config_alerts thresholds = {.failure_after_ms = 30000, .lag_threshold_ms = 60000};

/* The document the daemon writes for db, with one alert. */
static char *document_for(const struct db_status *db)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    status_wire_begin(out);
    status_wire_db(out, db, &thresholds, NOW);
    status_wire_alert(out, "replica_failing", "s3", "replica 's3' has failed\nfor 40 s", NOW - 10000);
    status_wire_replicas(out, db, &thresholds, NOW);
    status_wire_end(out);
    fclose(out);
    return text;
}

static void test_round_trip_failing_replica(void)
{
    struct replica_status replicas[2] = {
        {.name = "local", .last_success_ms = NOW - 500, .last_error = ""},
        {.name = "s3", .failing_since_ms = NOW - 40000, .lag_ms = 41000, .queued = 7,
         .last_error = "connect: refused\\now"},
    };
    struct db_status db = {.name = "tenants/a\tb.db", .spool_bytes = 4096, .snapshot_last_ms = NOW - 3600000,
                           .drill_result = -1, .replicas = replicas, .replica_count = 2, .capture_error = "",
                           .waiting_reason = "", .drill_error = ""};
    char *text = document_for(&db);
    ASSERT_STR_CONTAINS(text, "db tenants/a\\x09b.db\n");
    struct status_list list = {0};
    struct tm_error err;
    ASSERT_EQ(status_wire_parse(text, &list, &err), 0);
    ASSERT_EQ(list.count, 1);
    const struct status_db *got = &list.dbs[0];
    ASSERT_STR_EQ(got->name, "tenants/a\tb.db");
    ASSERT_STR_EQ(got->state, "failing");
    ASSERT_STR_EQ(got->problem, "");           /* the problem is the replica's */
    ASSERT_EQ(got->spool_bytes, 4096);
    ASSERT_EQ(got->snapshot_ms, NOW - 3600000);
    ASSERT_EQ(got->drill_result, -1);
    ASSERT_EQ(got->alert_count, 1);
    ASSERT_STR_EQ(got->alerts[0].rule, "replica_failing");
    ASSERT_STR_EQ(got->alerts[0].replica, "s3");
    ASSERT_STR_EQ(got->alerts[0].message, "replica 's3' has failed\nfor 40 s");
    ASSERT_EQ(got->alerts[0].since_ms, NOW - 10000);
    ASSERT_EQ(got->replica_count, 2);
    ASSERT_STR_EQ(got->replicas[0].state, "following");
    ASSERT_EQ(got->replicas[0].last_upload_ms, NOW - 500);
    ASSERT_STR_EQ(got->replicas[1].state, "failing");
    ASSERT_STR_EQ(got->replicas[1].problem, "failing for 40 s: connect: refused\\now");   /* /healthz's words */
    ASSERT_STR_EQ(got->replicas[1].last_error, "connect: refused\\now");
    ASSERT_EQ(got->replicas[1].lag_ms, 41000);
    ASSERT_EQ(got->replicas[1].queued, 7);
    list.dbs[0].from_sidecar = 1;
    ASSERT_EQ(status_db_protected(got), 0);    /* a replica is failing */
    status_list_release(&list);
    free(text);
}

/* A replica failing for less than failure-after is not yet a problem
 * (/healthz says ok): following, protected. Lag above the threshold is. */
static void test_states_follow_healthz(void)
{
    struct replica_status replicas[1] = {{.name = "r", .failing_since_ms = NOW - 2000, .last_error = "x"}};
    struct db_status db = {.name = "app", .drill_result = 1, .replicas = replicas, .replica_count = 1,
                           .capture_error = "", .waiting_reason = "", .drill_error = ""};
    char *text = document_for(&db);
    struct status_list list = {0};
    struct tm_error err;
    ASSERT_EQ(status_wire_parse(text, &list, &err), 0);
    free(text);
    list.dbs[0].from_sidecar = 1;
    ASSERT_STR_EQ(list.dbs[0].state, "following");
    ASSERT_EQ(list.dbs[0].replicas[0].failing_since_ms, NOW - 2000);
    ASSERT_EQ(status_db_protected(&list.dbs[0]), 1);
    status_list_release(&list);

    replicas[0] = (struct replica_status){.name = "r", .lag_ms = 61000, .last_error = ""};
    text = document_for(&db);
    ASSERT_EQ(status_wire_parse(text, &list, &err), 0);
    free(text);
    ASSERT_STR_EQ(list.dbs[0].replicas[0].problem, "lag 61.0 s above 60 s");
    ASSERT_STR_EQ(list.dbs[0].state, "failing");
    status_list_release(&list);

    db.waiting_since_ms = NOW - 1000;
    db.waiting_reason = "waiting for '/srv/app.db' to be created";
    replicas[0].lag_ms = 0;
    text = document_for(&db);
    ASSERT_EQ(status_wire_parse(text, &list, &err), 0);
    free(text);
    list.dbs[0].from_sidecar = 1;
    ASSERT_STR_EQ(list.dbs[0].state, "waiting");
    ASSERT_STR_EQ(list.dbs[0].waiting_reason, "waiting for '/srv/app.db' to be created");
    ASSERT_EQ(status_db_protected(&list.dbs[0]), 0);
    status_list_release(&list);
}

static void test_cut_or_foreign_documents_fail(void)
{
    struct status_list list = {0};
    struct tm_error err;
    ASSERT_EQ(status_wire_parse("error: unknown command\n", &list, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_CORRUPT);
    ASSERT_EQ(status_wire_parse("tidemark-status 1\ndb app\nstate following\n", &list, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "cut short");
    status_list_release(&list);
    ASSERT_EQ(status_wire_parse("tidemark-status 1\nstate following\nend\n", &list, &err), -1);
    ASSERT_EQ(status_wire_parse("tidemark-status 1\ndb a\nalert no-tabs\nend\n", &list, &err), -1);
    status_list_release(&list);
    /* unknown keys are ignored: a newer sidecar */
    ASSERT_EQ(status_wire_parse("tidemark-status 1\ndb a\nfuture 1\nstate following\nend\n", &list, &err), 0);
    ASSERT_STR_EQ(list.dbs[0].state, "following");
    status_list_release(&list);
}

static void test_escape_round_trip(void)
{
    char out[64];
    status_wire_escape("a\\b\nc\x7f", out, sizeof out);
    ASSERT_STR_EQ(out, "a\\\\b\\x0ac\\x7f");
    status_wire_unescape(out);
    ASSERT_STR_EQ(out, "a\\b\nc\x7f");
    char odd[] = "\\x4 \\q\\";   /* not escapes: kept as they are */
    status_wire_unescape(odd);
    ASSERT_STR_EQ(odd, "\\x4 \\q\\");
}

static void test_durations(void)
{
    char out[40];
    status_format_duration(850, out, sizeof out);
    ASSERT_STR_EQ(out, "850 ms");
    status_format_duration(12345, out, sizeof out);
    ASSERT_STR_EQ(out, "12.3 s");
    status_format_duration(250000, out, sizeof out);
    ASSERT_STR_EQ(out, "4 min 10 s");
    status_format_duration(3 * 3600000 + 5 * 60000 + 999, out, sizeof out);
    ASSERT_STR_EQ(out, "3 h 5 min");
    status_format_duration(2 * 86400000LL + 4 * 3600000, out, sizeof out);
    ASSERT_STR_EQ(out, "2 d 4 h");
    status_format_duration(-5, out, sizeof out);
    ASSERT_STR_EQ(out, "0 ms");
}

/* Text: a block per database, a line per replica; names escaped; colour
 * only when asked. */
static void test_text_output(void)
{
    struct status_list list = {0};
    struct status_db *db = status_list_add(&list, "app\x1b[2J");
    db->from_sidecar = 1;
    snprintf(db->state, sizeof db->state, "following");
    db->spool_bytes = 0;
    db->snapshot_ms = NOW - 60000;
    struct status_replica *r = status_db_add_replica(db, "local");
    snprintf(r->state, sizeof r->state, "following");
    r->lag_ms = 0;
    r->queued = 0;
    r->archive_read = 1;
    r->oldest_ms = NOW - 60000;
    r->newest_ms = NOW - 1500;
    r->snapshot_ms = NOW - 60000;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    status_render_text(&list, NOW, 0, out);
    fclose(out);
    ASSERT_STR_EQ(text, "database app\\x1b[2J: following\n"
                        "  spool 0 bytes; snapshot 2027-01-15T07:59:00.000Z (1 min 0 s ago)\n"
                        "  replica local: following, lag 0 ms, 0 object(s) queued\n"
                        "      restorable 2027-01-15T07:59:00.000Z .. 2027-01-15T07:59:58.500Z (1.5 s ago); "
                        "last snapshot 2027-01-15T07:59:00.000Z (1 min 0 s ago); last drill none recorded\n");
    free(text);
    ASSERT_EQ(status_db_protected(db), 1);
    ASSERT_EQ(status_list_protected(&list), 1);
    list.idle_entries = 1;   /* an entry no sidecar runs for */
    ASSERT_EQ(status_list_protected(&list), 0);
    list.idle_entries = 0;
    out = open_memstream(&text, &len);
    status_render_text(&list, NOW, 1, out);
    fclose(out);
    ASSERT_STR_CONTAINS(text, ": \033[32mfollowing\033[0m\n");
    free(text);
    status_list_release(&list);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"status document: a failing replica round-trips with /healthz's reason", test_round_trip_failing_replica},
        {"status document: states follow /healthz (failure-after, lag, waiting)", test_states_follow_healthz},
        {"status document: foreign, cut or malformed documents fail; unknown keys ignored",
         test_cut_or_foreign_documents_fail},
        {"status document: values escaped and back", test_escape_round_trip},
        {"status output: durations for people", test_durations},
        {"status output: text block, escaped names, colour on request", test_text_output},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
