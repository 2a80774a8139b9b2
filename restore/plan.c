/* plan.c - which generation and snapshot a restore starts from, and what
 * the catalog says about that choice (restore.h: restore_plan,
 * restore_describe_plan).
 *
 * The plan is made from listings: the times in object names. Those are
 * checked against each object's authenticated header as it is read
 * (restore.c); a snapshot that fails its check is marked
 * CATALOG_REJECTED and the plan is made again without it. Generations
 * are chosen by time, never by the sort order of their ids, which carry
 * the clock of the host that started them. */
#include "restore.h"

#include "../common/clock.h"
#include "../common/log.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The newest snapshot of `gen` at or before the target (any without
 * one), or NULL. */
static const struct catalog_snapshot *newest_snapshot(const struct catalog_generation *gen,
                                                      const struct restore_options *opts)
{
    const struct catalog_snapshot *snap = NULL;
    for (size_t s = 0; s < gen->snapshot_count; s++)
        if (gen->snapshots[s].trust != CATALOG_REJECTED &&   /* failed its check: see apply_snapshot_or_older */
            (!opts->has_target || gen->snapshots[s].time_ms <= opts->target_ms))
            snap = &gen->snapshots[s];
    return snap;
}

/* Picks the generation and snapshot for the target (restore.h). */
int restore_plan(const struct catalog *cat, const struct restore_options *opts,
                 const struct catalog_generation **gen_out, const struct catalog_snapshot **snap_out,
                 struct tm_error *err)
{
    const struct catalog_generation *gen = NULL;
    const struct catalog_snapshot *snap = NULL;
    int64_t earliest = INT64_MAX, best = INT64_MIN;
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *cand = &cat->generations[g];
        for (size_t s = 0; s < cand->snapshot_count; s++)
            if (cand->snapshots[s].trust != CATALOG_REJECTED && cand->snapshots[s].time_ms < earliest)
                earliest = cand->snapshots[s].time_ms;
        const struct catalog_snapshot *cs = newest_snapshot(cand, opts);
        if (!cs)
            continue;
        /* by time, not by id; generations are listed by id, so >= gives
         * a tie to the id that sorts last */
        int64_t when = opts->has_target ? cs->time_ms : catalog_generation_newest_ms(cand);
        if (!gen || when >= best) {
            gen = cand;
            snap = cs;
            best = when;
        }
    }
    if (!snap) {
        if (earliest == INT64_MAX) {
            tm_error_set(err, "no backup of '%s' in this replica", opts->db_name);
            return tm_error_hint(err, "run 'tidemark list' to see what the replicas hold");
        }
        char target[40], first[40];
        clock_format_ms(opts->target_ms, target, sizeof target);
        clock_format_ms(earliest, first, sizeof first);
        tm_error_set(err, "no backup of '%s' at or before %s", opts->db_name, target);
        tm_error_hint(err, "the earliest restorable point is %s", first);
        return RESTORE_NOT_YET;
    }
    *gen_out = gen;
    *snap_out = snap;
    return 0;
}

/* The first time after the target in the object names of the other
 * generations than `chosen` (0: none), and where it is. (In `chosen`
 * itself, only a snapshot of the state restored can follow the last
 * commit applied.) */
static int64_t next_in_archive(const struct catalog *cat, const struct catalog_generation *chosen,
                               int64_t target_ms, char *generation, size_t len)
{
    int64_t next = 0;
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *gen = &cat->generations[g];
        int64_t first = INT64_MAX;
        if (gen == chosen)
            continue;
        for (size_t i = 0; i < gen->snapshot_count; i++)
            if (gen->snapshots[i].time_ms > target_ms && gen->snapshots[i].time_ms < first)
                first = gen->snapshots[i].time_ms;
        for (size_t i = 0; i < gen->segment_count; i++)
            if (gen->segments[i].first_ms > target_ms && gen->segments[i].first_ms < first)
                first = gen->segments[i].first_ms;
        if (first != INT64_MAX && (!next || first < next)) {
            next = first;
            snprintf(generation, len, "%s", gen->id);
        }
    }
    return next;
}

/* What the catalog says about the plan, for the report: how many
 * generations, the chosen one's newest time and whether the id order
 * would have chosen another, and (with a target) the first time after
 * it in another generation. */
void restore_describe_plan(const struct catalog *cat, const struct catalog_generation *chosen,
                           const struct restore_options *opts, struct restore_outcome *out)
{
    const struct catalog_generation *last_id = NULL;
    out->generation_count = cat->generation_count;
    out->generation_newest_ms = catalog_generation_newest_ms(chosen);
    for (size_t g = 0; g < cat->generation_count; g++)
        if (newest_snapshot(&cat->generations[g], opts))
            last_id = &cat->generations[g];
    out->id_order_differs = last_id != chosen;
    if (opts->has_target)
        out->next_ms =
            next_in_archive(cat, chosen, opts->target_ms, out->next_generation, sizeof out->next_generation);
}


/* The newest time any generation's names hold (INT64_MIN: none). */
static int64_t archive_newest_ms(const struct catalog *cat)
{
    int64_t newest = INT64_MIN;
    for (size_t g = 0; g < cat->generation_count; g++) {
        int64_t gen_newest = catalog_generation_newest_ms(&cat->generations[g]);
        if (gen_newest > newest)
            newest = gen_newest;
    }
    return newest;
}

static void join_findings(const struct heads_report *report, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < report->count && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s: %s", i ? "\n" : "",
                                 heads_finding_name(report->findings[i].kind), report->findings[i].text);
}

/* The oldest time generation gen's names hold (INT64_MAX: none). */
static int64_t generation_oldest_ms(const struct catalog_generation *gen)
{
    int64_t oldest = INT64_MAX;
    for (size_t i = 0; i < gen->snapshot_count; i++)
        if (gen->snapshots[i].time_ms < oldest)
            oldest = gen->snapshots[i].time_ms;
    for (size_t i = 0; i < gen->segment_count; i++)
        if (gen->segments[i].first_ms < oldest)
            oldest = gen->segments[i].first_ms;
    return oldest;
}

/* Whether a finding about generation `about` (NULL: one the replica
 * lacks) concerns a restore from `chosen` to opts' target (or latest):
 *  - about `chosen`: at or after the newest time the replica holds of it;
 *  - about a generation the replica lacks: at or after the newest time of
 *    the whole archive;
 *  - about another generation holding newer data than `chosen`: at or
 *    after its oldest time (the restore should have started there).
 * A finding about an older generation, or one holding nothing, leaves the
 * point whole. */
static int concerns_point(const struct catalog *cat, const struct catalog_generation *about,
                          const struct restore_options *opts, const struct catalog_generation *chosen)
{
    int64_t from;
    if (about == chosen)
        from = catalog_generation_newest_ms(chosen);
    else if (!about)
        from = archive_newest_ms(cat);
    else if (catalog_generation_newest_ms(about) > catalog_generation_newest_ms(chosen))
        from = generation_oldest_ms(about);
    else
        return 0;
    return from != INT64_MAX && (!opts->has_target || opts->target_ms >= from);
}

/* The first finding that concerns what a restore from `chosen` to opts'
 * target holds (concerns_point), or NULL. */
static const struct heads_finding *finding_at_point(const struct catalog *cat, const struct heads_report *report,
                                                   const struct restore_options *opts,
                                                   const struct catalog_generation *chosen)
{
    for (size_t i = 0; i < report->count; i++) {
        const struct heads_finding *f = &report->findings[i];
        const struct catalog_generation *about = NULL;
        for (size_t g = 0; g < cat->generation_count && !about; g++)
            if (strcmp(cat->generations[g].id, f->about) == 0)
                about = &cat->generations[g];
        if (concerns_point(cat, about, opts, chosen))
            return f;
    }
    return NULL;
}

int restore_check_tail(const struct catalog *cat, const struct heads_report *report,
                       const struct restore_options *opts, const struct catalog_generation *chosen,
                       struct restore_outcome *out, struct tm_error *err)
{
    out->tail_note[0] = '\0';
    if (report->count == 0) {
        out->tail = report->newest ? RESTORE_TAIL_CHECKED : RESTORE_TAIL_NO_HEAD;
        if (report->newest) {
            char written[40];
            clock_format_ms(report->newest->head->written_ms, written, sizeof written);
            snprintf(out->tail_note, sizeof out->tail_note, "the archive reaches its newest head (generation %s, "
                     "written %s, %" PRIu64 " segments)", report->newest->id, written, report->newest->head->next_index);
        }
        return 0;
    }
    const struct heads_finding *at_point = finding_at_point(cat, report, opts, chosen);
    join_findings(report, out->tail_note, sizeof out->tail_note);
    if (at_point && !opts->accept_missing_tail) {
        tm_error_setc(err, TM_ERR_CORRUPT, "the backup of '%s' is incomplete at the point asked for, nothing "
                      "restored: %s: %s", opts->db_name, heads_finding_name(at_point->kind), at_point->text);
        return tm_error_hint(err, "try another replica (--replica); restore to a time before what is missing "
                             "(--timestamp); or --accept-missing-tail restores what this replica holds and says so "
                             "(docs/runbook.md)");
    }
    out->tail = at_point ? RESTORE_TAIL_ACCEPTED : RESTORE_TAIL_GAP_ELSEWHERE;
    return 0;
}

int restore_read_heads(struct storage *st, const struct crypto_keyring *key, int redis, struct catalog *cat,
                       const struct restore_options *opts, struct heads_report *report, struct tm_error *err)
{
    if (heads_check(st, key, redis, opts->seen_dir, opts->db_name, cat, report, err) != 0)
        return -1;
    if (report->seen_problem[0])
        log_event(LOG_WARN, opts->db_name, NULL, "the record of the newest head seen: %s", report->seen_problem);
    return 0;
}

/* Whether a snapshot failed for a reason of its own (missing, damaged,
 * not valid here), rather than the restore's (disk, network, memory). */
static int snapshot_skippable(const struct tm_error *err)
{
    enum tm_error_code code = tm_error_code(err);
    return code == TM_ERR_CORRUPT || code == TM_ERR_NOT_FOUND;
}

/* Marks `snap` (of cat) CATALOG_REJECTED with why: restore_plan leaves it out. */
static void reject_snapshot(struct catalog *cat, const struct catalog_snapshot *snap, const char *why)
{
    for (size_t g = 0; g < cat->generation_count; g++)
        for (size_t s = 0; s < cat->generations[g].snapshot_count; s++)
            if (&cat->generations[g].snapshots[s] == snap) {
                cat->generations[g].snapshots[s].trust = CATALOG_REJECTED;
                snprintf(cat->generations[g].snapshots[s].why, sizeof snap->why, "%s", why);
            }
}

int restore_fall_back(struct catalog *cat, const struct restore_options *opts, struct restore_skips *skips,
                      const struct tm_error *failure, const struct catalog_generation **gen,
                      const struct catalog_snapshot **snap, struct tm_error *err)
{
    if (!snapshot_skippable(failure)) {
        *err = *failure;
        return 0;
    }
    if (!skips->count)
        skips->first = *failure;
    size_t used = strlen(skips->text);
    snprintf(skips->text + used, sizeof skips->text - used, "%s%s", used ? "\n" : "", failure->msg);
    skips->count++;
    reject_snapshot(cat, *snap, failure->msg);
    struct tm_error plan_err;
    if (restore_plan(cat, opts, gen, snap, &plan_err) == 0)
        return 1;
    *err = skips->first;
    if (skips->count > 1)
        tm_error_hint(err, "no older snapshot at or before the target restores either (%u tried)", skips->count);
    else
        tm_error_hint(err, "no older snapshot at or before the target to fall back to");
    return 0;
}
