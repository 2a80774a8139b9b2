/* cmd_retention.c - `tidemark retention`: applies the configured
 * retention (retention.c plans, this command prints and deletes) to each
 * database and replica, showing for each snapshot the rule that keeps it.
 * It lives beside retention.c, in replicator/, because the sidecar runs
 * the same planning after each snapshot; restore/ may not import it. */
#include "cmd_retention.h"

#include "../common/clock.h"
#include "../common/json.h"
#include "../common/lease.h"
#include "../common/log.h"
#include "../common/report.h"
#include "../common/textsafe.h"
#include "retention.h"

#include <inttypes.h>
#include <stdio.h>

static const struct cli_option opt_dry_run = {"dry-run", 0, NULL, 0, 0, "delete nothing, show the plan"};
static const struct cli_option opt_now = {"now", 0, "TIME", 0, 0, "plan as of another time"};
static const struct cli_option *const options[] = {&cli_opt_config, &cli_opt_replica, &opt_dry_run, &cli_opt_json,
                                                    &opt_now, &cli_opt_key_file, &cli_opt_verbose, NULL};

struct retention_options {
    int dry_run;
    int has_now;
    int64_t now_ms;               /* --now: plan as of that time */
};

/* A snapshot's time and the rules that keep it, as printed; 0 for an
 * object that is not a snapshot. */
struct snapshot_words {
    char when[40], why[160];
};

static int describe_snapshot(const struct retention_object *o, struct snapshot_words *words)
{
    if (!o->is_snapshot)
        return 0;
    clock_format_ms(o->time_ms, words->when, sizeof words->when);
    retention_rules_text(o->rules, words->why, sizeof words->why);
    return 1;
}

static void print_text(const struct retention_plan *plan, int dry_run)
{
    char window[40];
    clock_format_ms(plan->window_start_ms, window, sizeof window);
    printf(" %s %zu snapshot(s) and %zu segment(s) (%" PRIu64 " bytes, with %zu "
           "delta(s)); keeping %zu snapshot(s), %zu segment(s) and %zu delta(s); every second since %s stays "
           "restorable\n", dry_run ? "would delete" : "deleted", plan->deleted_snapshots,
           plan->deleted_segments, plan->deleted_bytes, plan->deleted_deltas, plan->kept_snapshots,
           plan->kept_segments, plan->kept_deltas, window);
    struct snapshot_words words;
    if (plan->unverified_snapshots)
        printf(" %zu snapshot(s) failed verification with the key: not counted by any rule, kept while no "
               "verified snapshot is newer (see below)\n",
               plan->unverified_snapshots);
    if (plan->envelope_only)
        printf(" snapshot headers not verified: the configuration holds only the public key (planned from their "
               "names; --key-file SECRET verifies them)\n");
    for (size_t i = 0; i < plan->count; i++) {
        const struct retention_object *o = &plan->objects[i];
        if (!describe_snapshot(o, &words))
            continue;
        printf("  %-7s snapshot %s  generation %s%s%s\n", o->rules ? "keep" : (dry_run ? "delete?" : "deleted"),
               words.when, o->generation, o->rules ? "  kept by: " : "", words.why);
        if (o->unverified)
            printf("          unverified: %s\n", o->problem);
    }
}

static void print_json(const struct retention_plan *plan, int dry_run)
{
    char window[40];
    clock_format_ms(plan->window_start_ms, window, sizeof window);
    printf(", \"dry_run\": %s, \"point_in_time_from\": \"%s\", "
           "\"unverified_snapshots\": %zu, \"deleted_snapshots\": %zu, \"deleted_segments\": %zu, \"deleted_deltas\": %zu, \"deleted_bytes\": %"
           PRIu64 ", \"kept_snapshots\": %zu, \"kept_segments\": %zu, \"kept_deltas\": %zu, \"snapshots\": [",
           dry_run ? "true" : "false", window, plan->unverified_snapshots, plan->deleted_snapshots,
           plan->deleted_segments, plan->deleted_deltas, plan->deleted_bytes, plan->kept_snapshots,
           plan->kept_segments, plan->kept_deltas);
    int first_snapshot = 1;
    struct snapshot_words words;
    for (size_t i = 0; i < plan->count; i++) {
        const struct retention_object *o = &plan->objects[i];
        if (!describe_snapshot(o, &words))
            continue;
        printf("%s{\"key\": ", first_snapshot ? "" : ", ");
        json_write_string(stdout, o->key);
        printf(", \"time\": \"%s\", \"time_ms\": %" PRId64 ", \"keep\": %s, \"kept_by\": \"%s\", \"verified\": %s, "
               "\"problem\": ", words.when, o->time_ms, o->rules ? "true" : "false", words.why,
               o->unverified ? "false" : "true");
        json_write_string(stdout, o->problem);
        printf("}");
        first_snapshot = 0;
    }
    printf("]");
}

/* Plans and applies for one replica; 0, or -1 with err set. */
static int run_replica(const struct config_db *db, const struct config_replica *rep, const struct crypto_keyring *key,
                       const struct retention_options *opts, struct report *out, struct tm_error *err)
{
    struct storage *st;
    if (storage_open_replica(rep, &st, err) != 0)
        return -1;
    struct catalog cat;
    int rc = catalog_load(st, db->name, &cat, err);
    if (rc != 0) {
        storage_free(st);
        return tm_error_prefix(err, "listing failed, nothing deleted: ");
    }
    if (catalog_check_snapshots(st, key, db->kind == DB_REDIS, &cat, err) != 0 ||
        catalog_check_heads(st, key, &cat, err) != 0) {
        catalog_release(&cat);
        storage_free(st);
        return tm_error_prefix(err, "reading snapshot headers or heads failed, nothing deleted: ");
    }
    struct retention_plan plan;
    int64_t now_ms = opts->has_now ? opts->now_ms : clock_now_ms();
    char **in_use = NULL;
    size_t in_use_count = 0;
    rc = lease_active(st, db->name, clock_now_ms(), &in_use, &in_use_count, err);
    if (rc != 0) {
        catalog_release(&cat);
        storage_free(st);
        return tm_error_prefix(err, "reading leases failed, nothing deleted: ");
    }
    rc = retention_plan(&cat, &db->retention, now_ms, &plan, err);
    if (rc == 0)
        retention_protect(&plan, in_use, in_use_count);
    lease_list_free(in_use, in_use_count);
    size_t deleted = 0;
    if (rc == 0 && !opts->dry_run)
        rc = retention_apply(st, &plan, &deleted, err);
    if (rc == 0) {
        report_open(out, db->name, rep->name);
        if (out->json)
            print_json(&plan, opts->dry_run);
        else
            print_text(&plan, opts->dry_run);
        report_close(out);
    }
    if (rc == 0 && !opts->dry_run && deleted)
        log_event(LOG_INFO, db->name, rep->name, "retention deleted %zu object(s)", deleted);
    retention_plan_release(&plan);
    catalog_release(&cat);
    storage_free(st);
    return rc;
}

struct retention_run {
    const struct retention_options *opts;
    const struct crypto_keyring *key;   /* verifies snapshot headers (NULL: encryption: none) */
    const char *replica;           /* --replica, or NULL */
};

static int retention_one(void *ctx, const struct config_db *db, size_t r, struct report *out)
{
    const struct retention_run *run = ctx;
    struct tm_error err;
    if (!db->retention.enabled) {
        char name[1024];   /* a `dir:` entry's database names come from the bucket */
        if (!out->json && (r == 0 || run->replica))
            printf("database %s: retention is off\n", textsafe(db->name, name, sizeof name));
        return 0;
    }
    if (run_replica(db, &db->replicas[r], run->key, run->opts, out, &err) != 0) {
        tm_error_prefix(&err, "database '%s', replica '%s': ", db->name, db->replicas[r].name);
        tm_error_print(&err);
        return 1;
    }
    return 0;
}

static int run(const struct cli_args *args)
{
    struct retention_options opts = {.dry_run = cli_flag(args, "dry-run")};
    if (cli_time(args, "now", &opts.now_ms, &opts.has_now) != 0)
        return CLI_USAGE_ERROR;
    struct config *cfg;
    struct crypto_keyring *key = NULL;
    if (cli_load_config(args, CLI_KEYS_TO_WRITE, &cfg, &key) != 0)
        return 1;
    struct retention_run run = {&opts, key, cli_value(args, "replica")};
    int rc = report_walk(cfg, cli_name(args), run.replica, TARGETS_EACH_REPLICA, cli_flag(args, "json"),
                         retention_one, &run);
    cli_release_config(cfg, key);
    return rc;
}

const struct cli_command cmd_retention = {
    .name = "retention",
    .summary = "delete what the retention rules do not keep",
    .options = options,
    .max_names = 1,
    .description =
        "Applies the configured retention (daily/weekly/monthly/yearly snapshots by UTC calendar,\n"
        "every second of the point-in-time window) to each replica, and shows for each snapshot\n"
        "the rule that keeps it. Only snapshots whose header the key verifies count (others are\n"
        "reported, and kept unless older than the newest verified one); with only a public key\n"
        "configured, --key-file SECRET verifies them. --dry-run deletes nothing; --now plans as of\n"
        "another time.\n"
        "The sidecar runs it by itself after each snapshot and at least daily.\n",
    .run = run,
};
