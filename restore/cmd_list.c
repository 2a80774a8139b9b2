/* cmd_list.c - `tidemark list`: what each replica holds, from listings
 * alone (nothing is decrypted): generations, snapshots, the restorable time
 * range, object count and bytes, the last drill; as text or --json. */
#include "cmd_list.h"

#include "../common/archive.h"
#include "../common/clock.h"
#include "../common/drill_record.h"
#include "../common/report.h"
#include "../common/targets.h"
#include "../common/textsafe.h"
#include "drill.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct cli_option *const options[] = {&cli_opt_config, &cli_opt_replica, &cli_opt_json,
                                                    &cli_opt_verbose, NULL};

struct generation_summary {
    uint64_t objects, bytes;
    int64_t from_ms, to_ms;
    char from[40], to[40];    /* from_ms and to_ms as printed */
};

static void summarise(const struct catalog_generation *gen, struct generation_summary *out)
{
    memset(out, 0, sizeof *out);
    out->objects = gen->snapshot_count + gen->segment_count + gen->delta_count;
    for (size_t i = 0; i < gen->snapshot_count; i++)
        out->bytes += gen->snapshots[i].size;
    for (size_t i = 0; i < gen->segment_count; i++)
        out->bytes += gen->segments[i].size;
    for (size_t i = 0; i < gen->delta_count; i++)
        out->bytes += gen->deltas[i].size;
    out->from_ms = gen->snapshot_count ? gen->snapshots[0].time_ms : 0;
    out->to_ms = out->from_ms;
    if (gen->snapshot_count && gen->snapshots[gen->snapshot_count - 1].time_ms > out->to_ms)
        out->to_ms = gen->snapshots[gen->snapshot_count - 1].time_ms;
    if (gen->segment_count && gen->segments[gen->segment_count - 1].last_ms > out->to_ms)
        out->to_ms = gen->segments[gen->segment_count - 1].last_ms;
    clock_format_ms(out->from_ms, out->from, sizeof out->from);
    clock_format_ms(out->to_ms, out->to, sizeof out->to);
}

/* "2026-11-24T04:00:01.234Z ok, RTO 0.52 s, RPO 1.30 s" from a drill
 * record (common/drill_record.h; what cannot be read shows as "?" and -1). */
static void drill_summary(const char *record, char *out, size_t len)
{
    struct drill_summary s;
    struct tm_error ignored;
    drill_record_parse(record, &s, &ignored);
    snprintf(out, len, "%s %s, RTO %.2f s, RPO %.2f s", s.time, s.ok ? "ok" : "FAILED", (double)s.rto_ms / 1000.0,
             (double)s.rpo_ms / 1000.0);
}

static void print_text(const struct catalog *cat, const char *drill)
{
    printf(" %zu generation(s)\n", cat->generation_count);
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *gen = &cat->generations[g];
        struct generation_summary sum;
        summarise(gen, &sum);
        printf("  generation %s\n", gen->id);
        if (gen->snapshot_count)
            printf("    restorable from %s to %s\n", sum.from, sum.to);
        else
            printf("    not restorable: no snapshot\n");
        printf("    %" PRIu64 " objects, %" PRIu64 " bytes (%zu segments, %zu deltas)\n", sum.objects, sum.bytes,
               gen->segment_count, gen->delta_count);
        for (size_t s = 0; s < gen->snapshot_count; s++) {
            char when[40];
            clock_format_ms(gen->snapshots[s].time_ms, when, sizeof when);
            printf("    snapshot %s  %" PRIu64 " bytes\n", when, gen->snapshots[s].size);
        }
    }
    char summary[200] = "none recorded (tidemark drill)";
    if (drill)
        drill_summary(drill, summary, sizeof summary);
    printf("  last drill: ");
    textsafe_print(stdout, summary);   /* its time is the record's, as stored */
    putchar('\n');
}

static void print_json(const struct catalog *cat, const char *drill)
{
    printf(", \"generations\": [");
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *gen = &cat->generations[g];
        struct generation_summary sum;
        summarise(gen, &sum);
        printf("%s{\"id\":\"%s\",\"restorable\":%s,\"from\":\"%s\",\"to\":\"%s\",\"from_ms\":%" PRId64
               ",\"to_ms\":%" PRId64 ",\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"segments\":%zu,\"deltas\":%zu,\"snapshots\":[",
               g ? "," : "", gen->id, gen->snapshot_count ? "true" : "false", sum.from, sum.to, sum.from_ms,
               sum.to_ms, sum.objects, sum.bytes, gen->segment_count, gen->delta_count);
        for (size_t s = 0; s < gen->snapshot_count; s++) {
            char when[40];
            clock_format_ms(gen->snapshots[s].time_ms, when, sizeof when);
            printf("%s{\"time\":\"%s\",\"time_ms\":%" PRId64 ",\"bytes\":%" PRIu64 "}", s ? "," : "",
                   when, gen->snapshots[s].time_ms, gen->snapshots[s].size);
        }
        printf("]}");
    }
    printf("], \"last_drill\": ");
    if (drill) {   /* from the parsed fields only: the record is bucket data, never echoed */
        struct drill_summary parsed;
        struct tm_error ignored;
        drill_record_parse(drill, &parsed, &ignored);
        drill_summary_write_json(&parsed, stdout);
    } else {
        printf("null");
    }
}

/* One database on its replica (the one --replica names, else the first
 * that answers). */
static int list_database(void *ctx, const struct config_db *db, size_t index, struct report *rep)
{
    const char *replica = ctx;   /* --replica, or NULL: the first that answers */
    (void)index;
    struct tm_error err;
    struct storage *st;
    struct catalog cat;
    if (targets_open_replica(db, replica, &st, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    int rc = 0;
    if (catalog_load(st, db->name, &cat, &err) != 0) {
        tm_error_print(&err);
        storage_free(st);
        return 1;
    }
    char *drill = NULL;
    int found = 0;
    if (drill_latest(st, db->name, &drill, &found, &err) != 0) {
        tm_error_print(&err);
        rc = 1;
    }
    report_open(rep, db->name, storage_describe(st));
    if (rep->json)
        print_json(&cat, drill);
    else
        print_text(&cat, drill);
    report_close(rep);
    free(drill);
    catalog_release(&cat);
    storage_free(st);
    return rc;
}

static int run(const struct cli_args *args)
{
    struct config *cfg;
    if (cli_load_config(args, CLI_NO_KEYS, &cfg, NULL) != 0)
        return 1;
    const char *replica = cli_value(args, "replica");
    int rc = report_walk(cfg, cli_name(args), replica, TARGETS_ONE_REPLICA, cli_flag(args, "json"), list_database,
                         (void *)replica);
    cli_release_config(cfg, NULL);
    return rc;
}

const struct cli_command cmd_list = {
    .name = "list",
    .summary = "what the replicas hold",
    .options = options,
    .max_names = 1,
    .description = "Lists generations, snapshots, the restorable range, object count and bytes.\n",
    .run = run,
};
