/* cmd_drill.c - `tidemark drill`: a restore test of one database on each
 * replica (drill.c), recorded in the replica and printed as text or
 * --json (the records themselves). */
#include "cmd_drill.h"

#include "../common/alert.h"
#include "../common/clock.h"
#include "../common/report.h"
#include "../common/textsafe.h"
#include "drill.h"

#include <stdlib.h>

static const struct cli_option opt_no_alert = {"no-alert", 0, NULL, 0, 0,
                                              "do not raise drill_failed (the sidecar raises its own)"};

static const struct cli_option opt_integrity_check = {
    "integrity-check", 0, "full|quick|none", 0, 0,
    "SQLite's check of the restored copy: PRAGMA integrity_check (full, the default), quick_check, or none"};

static const struct cli_option *const options[] = {&cli_opt_config, &cli_opt_replica, &cli_opt_json,
                                                   &cli_opt_key_file, &opt_integrity_check, &opt_no_alert,
                                                   &cli_opt_verbose, NULL};

struct drill_run {
    const struct config *cfg;
    const struct crypto_keyring *key;
    int alert;                /* raise drill_failed when a drill fails */
    enum restore_integrity integrity;
};

/* "; published /srv/staging/app.db, served 0.61 s after the restore's start
 * (restore + publish + first query); after: passed in 1.20 s" */
static void print_staging(const struct drill_result *result)
{
    if (result->published[0]) {
        printf("; published ");
        textsafe_print(stdout, result->published);
        printf(", served %.2f s after the restore's start (restore + publish + first query)",
               (double)result->served_ms / 1000.0);
    }
    if (result->after_ran)
        printf("; after: %s in %.2f s", result->after.text, (double)result->after.elapsed_ms / 1000.0);
}

static void print_text(const struct config_db *db, const char *replica, const struct drill_result *result)
{
    char name[1024];   /* a `dir:` entry's database names come from the bucket */
    textsafe(db->name, name, sizeof name);
    if (result->ok) {
        printf("drill %s on replica %s: ok; RTO %.2f s (restore with checks), RPO %.2f s (newest restorable "
               "transaction's age)%s%s", name, replica, (double)result->rto_ms / 1000.0,
               (double)result->rpo_ms / 1000.0, db->drill.check_sql ? "; check-sql returned " : "",
               db->drill.check_sql ? result->check : "");
        print_staging(result);
        if (result->has_phases)
            printf("; phases: fetch %.2fs, decrypt+decompress %.2fs, write %.2fs, fsync %.2fs, check %.2fs, "
                   "total %.2fs", result->phases.fetch_ms / 1e3, result->phases.decode_ms / 1e3,
                   result->phases.write_ms / 1e3, result->phases.fsync_ms / 1e3, result->phases.check_ms / 1e3,
                   result->phases.total_ms / 1e3);
        putchar('\n');
    } else {
        printf("drill %s on replica %s: FAILED: ", name, replica);
        textsafe_print(stdout, result->error);
        print_staging(result);
        putchar('\n');
    }
}

/* drill_failed, with the reason, to the configured receivers. */
static void raise_alert(const struct drill_run *run, const struct config_db *db, const char *replica,
                        const struct drill_result *result)
{
    char message[700];
    snprintf(message, sizeof message, "the restore drill failed: %s", result->error);
    struct alert alert = {"drill_failed", db->name, replica, message, clock_now_ms()};
    alert_notify(&run->cfg->alerts, &alert, 15.0);
}

/* One drill, recorded and printed; 1 when it failed or was not recorded. */
static int drill_one(void *ctx, const struct config_db *db, size_t replica, struct report *out)
{
    const struct drill_run *run = ctx;
    struct tm_error err;
    struct drill_result result;
    const char *replica_name = db->replicas[replica].name;
    drill_replica(run->key, db, replica, run->integrity, &result);
    if (!result.ok && run->alert)
        raise_alert(run, db, replica_name, &result);
    char *record;
    int failed = !result.ok;
    if (drill_store(db, replica, &result, &record, &err) != 0) {
        tm_error_prefix(&err, "drill of '%s' on replica '%s' could not be recorded: ", db->name, replica_name);
        tm_error_print(&err);
        failed = 1;
    }
    if (!record)
        return 1;
    if (out->json)
        report_item(out, record);
    else
        print_text(db, replica_name, &result);
    free(record);
    return failed;
}

static int run(const struct cli_args *args)
{
    enum restore_integrity integrity = RESTORE_CHECK_FULL;
    const char *integrity_text = cli_value(args, "integrity-check");
    if (integrity_text && restore_integrity_parse(integrity_text, &integrity) != 0) {
        fprintf(stderr, "error: --integrity-check '%s' is not full, quick or none\n", integrity_text);
        cli_print_help(args->command, stderr);
        return CLI_USAGE_ERROR;
    }
    struct config *cfg;
    struct crypto_keyring *key;
    if (cli_load_config(args, CLI_KEYS_TO_READ, &cfg, &key) != 0)
        return 1;
    struct drill_run drill = {cfg, key, !cli_flag(args, "no-alert"), integrity};
    int rc = report_walk(cfg, cli_name(args), cli_value(args, "replica"), TARGETS_EACH_REPLICA,
                         cli_flag(args, "json"), drill_one, &drill);
    cli_release_config(cfg, key);
    return rc;
}

const struct cli_command cmd_drill = {
    .name = "drill",
    .summary = "restore test measuring RTO and RPO, recorded in the replica",
    .options = options,
    .min_names = 1,
    .max_names = 1,
    .description =
        "A restore test: restores the newest point of NAME from each replica into the drill's\n"
        "staging directory, runs integrity_check (--integrity-check quick: quick_check, none: only\n"
        "the page-level checks) and the drill's check-sql, reports RTO (restore\n"
        "time) and RPO (age of the newest restorable transaction), removes the copy, and records\n"
        "the result in the replica (shown by 'tidemark list'). With drill: { publish } the checked\n"
        "copy replaces a staging file or sqld namespace, and the time until it answers its first\n"
        "query is reported (served); drill: { after } then runs the staging check. A failed drill\n"
        "raises the drill_failed alert (alerts:). Exit status 0 only if all passed. The record\n"
        "and the text say where the restore's time went (phases, as `tidemark restore`).\n"
        "The sidecar runs it on the drill schedule (default monthly: \"0 4 1 * *\").\n",
    .run = run,
};
