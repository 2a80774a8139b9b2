/* cmd_verify.c - `tidemark verify`: every object of each replica read and
 * checked, the archive's structure proven (verify.c), problems printed as
 * found and raised as a "verify_failed" alert. */
#include "cmd_verify.h"

#include "../common/alert.h"
#include "../common/clock.h"
#include "../common/json.h"
#include "../common/report.h"
#include "../common/textsafe.h"
#include "verify.h"

static const struct cli_option opt_deep = {"deep", 0, NULL, 0, 0,
                                           "also restore the newest point and run integrity_check on it"};
static const struct cli_option *const options[] = {&cli_opt_config, &cli_opt_replica, &opt_deep, &cli_opt_json,
                                                   &cli_opt_key_file, &cli_opt_verbose, NULL};

struct problem_printer {
    int json;
    size_t printed;
};

static void print_problem(void *ctx, const char *object, const char *what)
{
    struct problem_printer *p = ctx;
    if (!p->json) {
        char safe_object[1024], safe_what[2048];   /* names from the bucket: no control characters */
        printf("  PROBLEM %s: %s\n", textsafe(object, safe_object, sizeof safe_object),
               textsafe(what, safe_what, sizeof safe_what));
        return;
    }
    printf("%s{\"object\": ", p->printed++ ? ", " : "");
    json_write_string(stdout, object);
    printf(", \"problem\": ");
    json_write_string(stdout, what);
    printf("}");
}

/* A generation with objects older than the identity binding (verify.h):
 * a line of text; in JSON the count alone (objects_predating_binding). */
static void print_note(void *ctx, const char *object, const char *what)
{
    struct problem_printer *p = ctx;
    if (!p->json)
        printf("  NOTE %s: %s\n", object, what);
}

struct verify_run {
    const struct config *cfg;
    const struct crypto_keyring *key;
    int deep;
};

/* One replica: its record, and an alert when it has problems. */
static int verify_one(void *ctx, const struct config_db *db, size_t replica, struct report *out)
{
    const struct verify_run *run = ctx;
    const char *replica_name = db->replicas[replica].name;
    struct problem_printer printer = {out->json, 0};
    struct verify_report rep = {print_problem, &printer, 0, 0, print_note, 0};
    report_open(out, db->name, replica_name);
    printf(out->json ? ", \"problems\": [" : "\n");
    verify_replica(run->key, db, replica, run->deep, run->cfg->state_dir, &rep);
    if (rep.problems) {
        char message[300];
        snprintf(message, sizeof message, "verify found %zu problem(s) in %zu object(s) checked", rep.problems,
                 rep.objects);
        struct alert alert = {"verify_failed", db->name, replica_name, message, clock_now_ms()};
        alert_notify(&run->cfg->alerts, &alert, 15.0);
    }
    if (out->json)
        printf("], \"objects_checked\": %zu, \"objects_predating_binding\": %zu, \"ok\": %s", rep.objects,
               rep.predating, rep.problems ? "false" : "true");
    else
        printf("  %zu object(s) checked%s%s: %s\n", rep.objects, run->deep ? ", newest point restored" : "",
               rep.predating ? ", some predate the identity binding (NOTE above)" : "",
               rep.problems ? "PROBLEMS FOUND" : "ok");
    report_close(out);
    return rep.problems ? 1 : 0;
}

static int run_verify(const struct cli_args *args)
{
    struct config *cfg;
    struct crypto_keyring *key;
    if (cli_load_config(args, CLI_KEYS_TO_READ, &cfg, &key) != 0)
        return 1;
    struct verify_run run = {cfg, key, cli_flag(args, "deep")};
    int rc = report_walk(cfg, cli_name(args), cli_value(args, "replica"), TARGETS_EACH_REPLICA,
                         cli_flag(args, "json"), verify_one, &run);
    cli_release_config(cfg, key);
    return rc;
}

const struct cli_command cmd_verify = {
    .name = "verify",
    .summary = "check every object and the archive's structure",
    .options = options,
    .max_names = 1,
    .description =
        "Reads every object of each replica (decrypts it, checks its checksums) and checks the\n"
        "archive: the chain has no gap, overlap or reordering, every generation starts from a\n"
        "snapshot, times are consistent. --deep also restores the newest point into a scratch\n"
        "file and runs integrity_check. Exit status 0 only when everything checks.\n",
    .run = run_verify,
};
