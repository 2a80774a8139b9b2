/* cmd_drill.c - `tidemark drill`: a restore test of one database on each
 * replica (drill.c), recorded in the replica and printed as text or
 * --json (the records themselves). */
#include "cmd_drill.h"

#include "../common/report.h"
#include "../common/textsafe.h"
#include "drill.h"

#include <stdlib.h>

static const struct cli_option *const options[] = {&cli_opt_config, &cli_opt_replica, &cli_opt_json,
                                                   &cli_opt_key_file, &cli_opt_verbose, NULL};

static void print_text(const struct config_db *db, const char *replica, const struct drill_result *result)
{
    char name[1024];   /* a `dir:` entry's database names come from the bucket */
    textsafe(db->name, name, sizeof name);
    if (result->ok)
        printf("drill %s on replica %s: ok; RTO %.2f s (restore with checks), RPO %.2f s (newest restorable "
               "transaction's age)%s%s\n", name, replica, (double)result->rto_ms / 1000.0,
               (double)result->rpo_ms / 1000.0, db->drill.check_sql ? "; check-sql returned " : "",
               db->drill.check_sql ? result->check : "");
    else {
        printf("drill %s on replica %s: FAILED: ", name, replica);
        textsafe_print(stdout, result->error);
        putchar('\n');
    }
}

/* One drill, recorded and printed; 1 when it failed or was not recorded. */
static int drill_one(void *ctx, const struct config_db *db, size_t replica, struct report *out)
{
    const struct crypto_keyring *key = ctx;
    struct tm_error err;
    struct drill_result result;
    const char *replica_name = db->replicas[replica].name;
    drill_replica(key, db, replica, &result);
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
    struct config *cfg;
    struct crypto_keyring *key;
    if (cli_load_config(args, CLI_KEYS_TO_READ, &cfg, &key) != 0)
        return 1;
    int rc = report_walk(cfg, cli_name(args), cli_value(args, "replica"), TARGETS_EACH_REPLICA,
                         cli_flag(args, "json"), drill_one, key);
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
        "staging directory, runs integrity_check and the drill's check-sql, reports RTO (restore\n"
        "time) and RPO (age of the newest restorable transaction), removes the copy, and records\n"
        "the result in the replica (shown by 'tidemark list'). Exit status 0 only if all passed.\n"
        "The sidecar runs it on the drill schedule (default monthly: \"0 4 1 * *\").\n",
    .run = run,
};
