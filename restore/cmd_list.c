/* cmd_list.c - `tidemark list`: what each replica holds, from listings
 * (generations, snapshots, the restorable time range, object count and
 * bytes, the last drill) and, when the configuration's key can be loaded,
 * the generations' heads (common/heads.h: a few bytes each), what they say
 * about the archive's end, and the newest head this host saw; as text or
 * --json. */
#include "cmd_list.h"

#include "../common/archive.h"
#include "../common/clock.h"
#include "../common/drill_record.h"
#include "../common/heads.h"
#include "../common/json.h"
#include "../common/report.h"
#include "../common/targets.h"
#include "../common/textsafe.h"
#include "apply.h"
#include "drill.h"
#include "restore.h"

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
    int used = snprintf(out, len, "%s %s, RTO %.2f s, RPO %.2f s", s.time, s.ok ? "ok" : "FAILED",
                        (double)s.rto_ms / 1000.0, (double)s.rpo_ms / 1000.0);
    if (s.published[0] && used >= 0 && (size_t)used < len)
        used += snprintf(out + used, len - (size_t)used, ", published %s, served %.2f s", s.published,
                         (double)s.served_ms / 1000.0);
    if (s.after[0] && used >= 0 && (size_t)used < len)
        snprintf(out + used, len - (size_t)used, ", after %s (%.2f s)", s.after, (double)s.after_ms / 1000.0);
}

/* What a restore of the latest point reads (an SQLite database's): the
 * snapshot it starts from and the objects replayed after it, from the
 * names (restore_plan, restore_apply_replay); and the time that takes at
 * the rate of the last drill that said what it read (rto / read bytes),
 * as drills run on the machine and replica a restore would. */
struct latest_cost {
    int known;                           /* a restorable latest point */
    char snapshot[40];
    uint64_t snapshot_bytes;
    struct restore_replay replay;
    double estimate_s;                   /* < 0: no drill to time it */
};

static void latest_cost(const struct catalog *cat, const char *drill, struct latest_cost *out)
{
    *out = (struct latest_cost){.estimate_s = -1};
    const struct catalog_generation *gen;
    const struct catalog_snapshot *snap;
    struct restore_options latest = {0};
    struct tm_error ignored;   /* nothing restorable: list says so per generation */
    if (restore_plan(cat, &latest, &gen, &snap, &ignored) != 0 ||
        restore_apply_replay(gen, snap, &latest, &out->replay, &ignored) != 0)
        return;
    out->known = 1;
    clock_format_ms(snap->time_ms, out->snapshot, sizeof out->snapshot);
    out->snapshot_bytes = snap->size;
    struct drill_summary last;
    if (!drill || drill_record_parse(drill, &last, &ignored) != 0 || !last.ok || last.read_bytes <= 0 ||
        last.rto_ms < 0)
        return;
    double seconds_per_byte = (double)last.rto_ms / 1000.0 / (double)last.read_bytes;
    out->estimate_s = (double)(out->snapshot_bytes + out->replay.bytes) * seconds_per_byte;
}

/* A replay larger than the snapshot and than this is worth a line: below
 * it, a restore replays in well under a second anyway. */
#define LONG_REPLAY_BYTES (16u * 1024 * 1024)

static void print_latest_text(const struct latest_cost *cost)
{
    if (!cost->known)
        return;
    printf("  latest point: snapshot %s (%" PRIu64 " bytes), then %" PRIu64 " object(s) to replay (%" PRIu64 " bytes, "
           "%.1fx the snapshot)%s\n", cost->snapshot, cost->snapshot_bytes, cost->replay.objects, cost->replay.bytes,
           cost->snapshot_bytes ? (double)cost->replay.bytes / (double)cost->snapshot_bytes : 0.0,
           cost->replay.gap ? ", up to a missing segment" : "");
    if (cost->estimate_s >= 0)
        printf("  estimated restore time: %.1f s (at the last drill's rate)\n", cost->estimate_s);
    else
        printf("  estimated restore time: unknown until a drill records what it read (tidemark drill)\n");
    if (cost->replay.bytes > cost->snapshot_bytes && cost->replay.bytes > LONG_REPLAY_BYTES)
        printf("  the replay is larger than the snapshot: `tidemark snapshot` shortens it now, snapshot: "
               "{ wal-ratio } bounds it\n");
}

static void print_latest_json(const struct latest_cost *cost)
{
    printf(", \"latest\": ");
    if (!cost->known) {
        printf("null");
        return;
    }
    printf("{\"snapshot\": \"%s\", \"snapshot_bytes\": %" PRIu64 ", \"replay_objects\": %" PRIu64
           ", \"replay_bytes\": %" PRIu64 ", \"gap\": %s, \"estimated_restore_s\": ", cost->snapshot,
           cost->snapshot_bytes, cost->replay.objects, cost->replay.bytes, cost->replay.gap ? "true" : "false");
    if (cost->estimate_s >= 0)
        printf("%.3f}", cost->estimate_s);
    else
        printf("null}");
}

/* What list knows about the heads. */
struct list_heads {
    int read;                 /* the heads were read (a key, or encryption none) */
    struct heads_report report;
    struct heads_seen seen;   /* after this listing */
};

/* "written T, N segments (last commit C)[, followed by GEN]", or why
 * there is none. */
static void head_text(const struct list_heads *heads, const struct catalog_generation *gen, char *out, size_t len)
{
    if (!heads->read && gen->head_state != CATALOG_HEAD_ABSENT) {
        snprintf(out, len, "not read (no key in the configuration)");
        return;
    }
    switch (gen->head_state) {
    case CATALOG_HEAD_VERIFIED: {
        char written[40], last[40] = "none";
        clock_format_ms(gen->head->written_ms, written, sizeof written);
        if (gen->head->last_commit_ms)
            clock_format_ms(gen->head->last_commit_ms, last, sizeof last);
        int used = snprintf(out, len, "written %s, %" PRIu64 " segments (last commit %s)", written,
                            gen->head->next_index, last);
        if (gen->head->successor[0] && used > 0 && (size_t)used < len)
            snprintf(out + used, len - (size_t)used, ", followed by %s", gen->head->successor);
        return;
    }
    case CATALOG_HEAD_REJECTED: snprintf(out, len, "REJECTED: %s", gen->head_why); return;
    case CATALOG_HEAD_ENVELOPE_ONLY: snprintf(out, len, "present (a public key cannot read it)"); return;
    case CATALOG_HEAD_LISTED: snprintf(out, len, "present, not read"); return;
    case CATALOG_HEAD_ABSENT: snprintf(out, len, "none (written before heads, or deleted)"); return;
    }
}

static void print_heads_text(const struct list_heads *heads)
{
    for (size_t i = 0; heads->read && i < heads->report.count; i++) {
        printf("  PROBLEM %s: ", heads_finding_name(heads->report.findings[i].kind));
        textsafe_print(stdout, heads->report.findings[i].text);
        putchar('\n');
    }
    if (heads->seen.has) {
        char written[40];
        clock_format_ms(heads->seen.written_ms, written, sizeof written);
        printf("  newest head seen from this host: generation %s, written %s, %" PRIu64 " segments\n",
               heads->seen.generation, written, heads->seen.next_index);
    }
}

static void print_text(const struct catalog *cat, const struct list_heads *heads, const char *drill)
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
        char head[400];
        head_text(heads, gen, head, sizeof head);
        printf("    head: ");
        textsafe_print(stdout, head);
        putchar('\n');
    }
    print_heads_text(heads);
    char summary[600] = "none recorded (tidemark drill)";
    if (drill)
        drill_summary(drill, summary, sizeof summary);
    printf("  last drill: ");
    textsafe_print(stdout, summary);   /* its time is the record's, as stored */
    putchar('\n');
}

static void print_json(const struct catalog *cat, const struct list_heads *heads, const char *drill)
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
        char head[400];
        head_text(heads, gen, head, sizeof head);
        printf("],\"head\":");
        json_write_string(stdout, head);
        if (gen->head_state == CATALOG_HEAD_VERIFIED)
            printf(",\"head_written_ms\":%" PRId64 ",\"head_segments\":%" PRIu64, gen->head->written_ms,
                   gen->head->next_index);
        printf("}");
    }
    printf("], \"head_problems\": [");
    for (size_t i = 0; heads->read && i < heads->report.count; i++) {
        char line[800];
        snprintf(line, sizeof line, "%s: %s", heads_finding_name(heads->report.findings[i].kind),
                 heads->report.findings[i].text);
        printf("%s", i ? "," : "");
        json_write_string(stdout, line);
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

struct list_run {
    const char *replica;                  /* --replica, or NULL: the first that answers */
    const struct crypto_keyring *key;
    int have_key;                         /* the configuration's key loaded (or encryption none) */
    const char *seen_dir;                 /* the configuration's state-dir */
};

/* Reads the heads when a key is at hand; the newest head seen after. */
static void read_heads(const struct list_run *run, struct storage *st, const char *db, int redis,
                       struct catalog *cat, struct list_heads *out)
{
    memset(out, 0, sizeof *out);
    struct tm_error err;
    char seen_path[4096 + ARCHIVE_NAME_MAX];
    if (run->have_key) {
        if (heads_check(st, run->key, redis, run->seen_dir, db, cat, &out->report, &err) == 0)
            out->read = 1;
        else
            tm_error_print(&err);
    }
    heads_seen_path(run->seen_dir, storage_describe(st), db, seen_path, sizeof seen_path);
    if (heads_seen_load(seen_path, &out->seen, &err) != 0)
        out->seen.has = 0;
}

/* One database on its replica (the one --replica names, else the first
 * that answers). */
static int list_database(void *ctx, const struct config_db *db, size_t index, struct report *rep)
{
    const struct list_run *run = ctx;
    const char *replica = run->replica;
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
    struct list_heads heads;
    read_heads(run, st, db->name, db->kind == DB_REDIS, &cat, &heads);
    rc |= heads.read && heads.report.count > 0;
    struct latest_cost cost = {0};
    if (db->kind != DB_REDIS)
        latest_cost(&cat, drill, &cost);
    report_open(rep, db->name, storage_describe(st));
    if (rep->json) {
        print_json(&cat, &heads, drill);
        print_latest_json(&cost);
    } else {
        print_text(&cat, &heads, drill);
        print_latest_text(&cost);
    }
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
    struct list_run list = {.replica = cli_value(args, "replica"), .seen_dir = cfg->state_dir};
    struct crypto_keyring *key = NULL;
    struct tm_error ignored;   /* without a key, heads are listed but not read */
    list.have_key = config_load_keys(cfg, NULL, 0, &key, &ignored) == 0;
    list.key = key;
    int rc = report_walk(cfg, cli_name(args), list.replica, TARGETS_ONE_REPLICA, cli_flag(args, "json"),
                         list_database, &list);
    cli_release_config(cfg, key);
    return rc;
}

const struct cli_command cmd_list = {
    .name = "list",
    .summary = "what the replicas hold",
    .options = options,
    .max_names = 1,
    .description = "Lists generations, snapshots, the restorable range, object count and bytes, and\n"
                   "(with the configuration's key) each generation's head and what the heads say\n"
                   "about the archive's end; exits 1 when something they name is missing.\n",
    .run = run,
};
