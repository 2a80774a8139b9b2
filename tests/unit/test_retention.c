/* test_retention.c - grandfather-father-son retention over a simulated
 * 8-year timeline (the clock is a parameter): exactly which snapshots
 * remain under each rule, run once or day after day, and every second of
 * the point-in-time window still restorable from what remains. */
#include "harness.h"

#include "../../common/clock.h"
#include "../../replicator/retention.h"

#include <stdlib.h>

#define DAY_MS 86400000LL
#define SEGMENTS_PER_DAY 4

static int64_t at(const char *text)
{
    int64_t ms = 0;
    struct tm_error err;
    clock_parse_time(text, &ms, &err);
    return ms;
}

static const struct config_retention default_rules = {1, 7, 4, 12, 7, 7 * DAY_MS};

/* One generation with a snapshot every day at 03:00 from `first_day`
 * through `last_day`, and SEGMENTS_PER_DAY segments after each snapshot
 * (the last one ending just before the next snapshot). */
static void add_generation(struct catalog *cat, const char *id, int64_t first_day, int64_t last_day,
                           int64_t end_ms)
{
    size_t days = (size_t)((last_day - first_day) / DAY_MS + 1);
    cat->generations = realloc(cat->generations, (cat->generation_count + 1) * sizeof *cat->generations);
    struct catalog_generation *gen = &cat->generations[cat->generation_count++];
    memset(gen, 0, sizeof *gen);
    snprintf(gen->id, sizeof gen->id, "%s", id);
    gen->snapshots = calloc(days, sizeof *gen->snapshots);
    gen->segments = calloc(days * SEGMENTS_PER_DAY, sizeof *gen->segments);
    for (size_t d = 0; d < days; d++) {
        int64_t snap_ms = first_day + (int64_t)d * DAY_MS + 3 * 3600 * 1000;
        struct catalog_snapshot *s = &gen->snapshots[gen->snapshot_count++];
        s->index = d * SEGMENTS_PER_DAY;
        s->time_ms = snap_ms;
        s->size = 1000;
        snprintf(s->key, sizeof s->key, "app/generations/%s/snapshots/%016llx-%lld.snap", id,
                 (unsigned long long)s->index, (long long)snap_ms);
        for (int k = 0; k < SEGMENTS_PER_DAY; k++) {
            int64_t first = snap_ms + k * (DAY_MS / SEGMENTS_PER_DAY) + 1;
            int64_t last = first + DAY_MS / SEGMENTS_PER_DAY - 2;
            if (first > end_ms)
                break;
            struct catalog_segment *seg = &gen->segments[gen->segment_count++];
            seg->index = d * SEGMENTS_PER_DAY + (uint64_t)k;
            seg->first_ms = first;
            seg->last_ms = last < end_ms ? last : end_ms;
            seg->size = 10;
            snprintf(seg->key, sizeof seg->key, "app/generations/%s/segments/%016llx.seg", id,
                     (unsigned long long)seg->index);
        }
    }
}

/* The kept snapshots' dates ("2026-11-24 ...") joined by spaces. */
static void kept_dates(const struct retention_plan *plan, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < plan->count; i++) {
        if (!plan->objects[i].is_snapshot || !plan->objects[i].rules)
            continue;
        char when[40];
        clock_format_ms(plan->objects[i].time_ms, when, sizeof when);
        used += (size_t)snprintf(out + used, len - used, "%s%.10s", used ? " " : "", when);
    }
}

static const char *expected_kept =
    "2020-12-31 2021-12-31 2022-12-31 2023-12-31 2024-12-31 2025-12-31 "          /* yearly (+2026 below) */
    "2026-01-31 2026-02-28 2026-03-31 2026-04-30 2026-05-31 2026-06-30 "          /* monthly */
    "2026-07-31 2026-08-31 2026-09-30 2026-10-31 "
    "2026-11-08 2026-11-15 "                                                      /* weekly */
    "2026-11-17 "                                                                 /* point-in-time anchor */
    "2026-11-18 2026-11-19 2026-11-20 2026-11-21 2026-11-22 2026-11-23 2026-11-24"; /* daily */

/* Every hour of the window (since the first snapshot) restores: a kept
 * snapshot at or before it and every segment from that snapshot's index
 * up to the hour, kept. */
static int window_restorable(const struct retention_plan *plan, int64_t now_ms)
{
    int64_t from = plan->window_start_ms;
    for (size_t i = 0; i < plan->count; i++)
        if (plan->objects[i].is_snapshot && plan->objects[i].time_ms > from) {
            from = plan->objects[i].time_ms;   /* the archive begins inside the window */
            break;
        }
    for (size_t i = 0; i < plan->count; i++)
        if (plan->objects[i].is_snapshot && plan->objects[i].time_ms <= plan->window_start_ms)
            from = plan->window_start_ms;
    for (int64_t t = from; t <= now_ms; t += 3600 * 1000) {
        const struct retention_object *base = NULL;
        for (size_t i = 0; i < plan->count; i++)
            if (plan->objects[i].is_snapshot && plan->objects[i].rules && plan->objects[i].time_ms <= t)
                base = &plan->objects[i];
        if (!base)
            return 0;
        for (size_t i = 0; i < plan->count; i++) {
            const struct retention_object *o = &plan->objects[i];
            int needed = !o->is_snapshot && strcmp(o->generation, base->generation) == 0 &&
                         o->index >= base->index && o->time_ms - DAY_MS / SEGMENTS_PER_DAY < t;
            if (needed && !o->rules)
                return 0;
        }
    }
    return 1;
}

static void test_eight_years_at_once(void)
{
    struct catalog cat = {0};
    int64_t now = at("2026-11-24T12:00:00Z");
    add_generation(&cat, "G1", at("2019-01-01T00:00:00Z"), at("2026-11-24T00:00:00Z"), now);
    struct retention_plan plan;
    struct tm_error err;
    ASSERT_EQ(retention_plan(&cat, &default_rules, now, &plan, &err), 0);
    char kept[4096];
    kept_dates(&plan, kept, sizeof kept);
    ASSERT_TRUE(strcmp(kept, expected_kept) == 0 || (fprintf(stderr, "  kept: %s\n", kept), 0));
    ASSERT_EQ(plan.kept_snapshots, 26);
    ASSERT_EQ(plan.deleted_snapshots, cat.generations[0].snapshot_count - 26);
    /* the rules named for a few of them */
    char why[160];
    for (size_t i = 0; i < plan.count; i++) {
        char when[40];
        clock_format_ms(plan.objects[i].time_ms, when, sizeof when);
        retention_rules_text(plan.objects[i].rules, why, sizeof why);
        if (plan.objects[i].is_snapshot && strncmp(when, "2026-11-24", 10) == 0)
            ASSERT_TRUE(strcmp(why, "newest, daily, weekly, monthly, yearly") == 0);
        if (plan.objects[i].is_snapshot && strncmp(when, "2026-11-17", 10) == 0)
            ASSERT_TRUE(strcmp(why, "point-in-time") == 0);
        if (plan.objects[i].is_snapshot && strncmp(when, "2025-12-31", 10) == 0)
            ASSERT_TRUE(strcmp(why, "monthly, yearly") == 0);
        /* segments: exactly those from the anchor (2026-11-17 03:00) on */
        if (!plan.objects[i].is_snapshot)
            ASSERT_EQ(plan.objects[i].rules != 0, plan.objects[i].time_ms > at("2026-11-17T03:00:00Z"));
    }
    ASSERT_EQ(window_restorable(&plan, now), 1);
    retention_plan_release(&plan);
    catalog_release(&cat);
}

/* Drops what a plan deletes from the catalogue, as retention_apply would. */
static void remove_deleted(struct catalog *cat, const struct retention_plan *plan)
{
    for (size_t g = 0; g < cat->generation_count; g++) {
        struct catalog_generation *gen = &cat->generations[g];
        size_t s_out = 0, k_out = 0;
        for (size_t s = 0; s < gen->snapshot_count; s++)
            for (size_t i = 0; i < plan->count; i++)
                if (strcmp(plan->objects[i].key, gen->snapshots[s].key) == 0 && plan->objects[i].rules)
                    gen->snapshots[s_out++] = gen->snapshots[s];
        for (size_t k = 0; k < gen->segment_count; k++)
            for (size_t i = 0; i < plan->count; i++)
                if (strcmp(plan->objects[i].key, gen->segments[k].key) == 0 && plan->objects[i].rules)
                    gen->segments[k_out++] = gen->segments[k];
        gen->snapshot_count = s_out;
        gen->segment_count = k_out;
    }
}

static void test_eight_years_day_by_day(void)
{
    /* The sidecar runs retention after each daily snapshot: the result of
     * applying it every day for 8 years is the same as applying it once. */
    struct catalog cat = {0};
    int64_t start = at("2019-01-01T00:00:00Z"), end = at("2026-11-24T00:00:00Z");
    add_generation(&cat, "G1", start, end, at("2026-11-24T12:00:00Z"));
    struct catalog_generation *gen = &cat.generations[0];
    struct catalog_snapshot *all_snapshots = gen->snapshots;
    struct catalog_segment *all_segments = gen->segments;
    size_t total_snapshots = gen->snapshot_count, total_segments = gen->segment_count;
    /* the archive as it grows: day d has snapshots 0..d (minus deletions) */
    struct catalog_snapshot *snapshots = calloc(total_snapshots, sizeof *snapshots);
    struct catalog_segment *segments = calloc(total_segments, sizeof *segments);
    size_t snapshot_count = 0, segment_count = 0, next_snapshot = 0, next_segment = 0;
    struct retention_plan plan;
    struct tm_error err;
    int failures = 0;
    for (int64_t day = start; day <= end; day += DAY_MS) {
        int64_t now = day + 12 * 3600 * 1000;
        while (next_snapshot < total_snapshots && all_snapshots[next_snapshot].time_ms <= now)
            snapshots[snapshot_count++] = all_snapshots[next_snapshot++];
        while (next_segment < total_segments && all_segments[next_segment].last_ms <= now)
            segments[segment_count++] = all_segments[next_segment++];
        gen->snapshots = snapshots;
        gen->segments = segments;
        gen->snapshot_count = snapshot_count;
        gen->segment_count = segment_count;
        if (retention_plan(&cat, &default_rules, now, &plan, &err) != 0)
            break;
        failures += !window_restorable(&plan, now);
        remove_deleted(&cat, &plan);
        snapshot_count = gen->snapshot_count;
        segment_count = gen->segment_count;
        if (day + DAY_MS <= end)
            retention_plan_release(&plan);
    }
    ASSERT_EQ(failures, 0);
    char kept[4096];
    kept_dates(&plan, kept, sizeof kept);
    ASSERT_TRUE(strcmp(kept, expected_kept) == 0 || (fprintf(stderr, "  kept: %s\n", kept), 0));
    retention_plan_release(&plan);
    free(all_snapshots);
    free(all_segments);
    catalog_release(&cat);
}

static void test_generations_and_fail_safes(void)
{
    /* G1 until the sidecar restarted on 11-20 10:00; G2 since. The window
     * reaches back into G1: its anchor and later segments stay. */
    struct catalog cat = {0};
    int64_t now = at("2026-11-24T12:00:00Z");
    add_generation(&cat, "G1", at("2026-10-01T00:00:00Z"), at("2026-11-20T00:00:00Z"), at("2026-11-20T10:00:00Z"));
    add_generation(&cat, "G2", at("2026-11-21T00:00:00Z"), at("2026-11-24T00:00:00Z"), now);
    struct retention_plan plan;
    struct tm_error err;
    ASSERT_EQ(retention_plan(&cat, &default_rules, now, &plan, &err), 0);
    ASSERT_EQ(window_restorable(&plan, now), 1);
    for (size_t i = 0; i < plan.count; i++) {
        const struct retention_object *o = &plan.objects[i];
        if (!o->is_snapshot && strcmp(o->generation, "G1") == 0)
            ASSERT_EQ(o->rules != 0, o->time_ms > at("2026-11-17T03:00:00Z"));
        if (strcmp(o->generation, "G2") == 0 && !o->is_snapshot)
            ASSERT_TRUE(o->rules != 0);
    }
    retention_plan_release(&plan);

    /* every rule at zero and no window: still the newest snapshot and the
     * segments after it (the latest point) stay */
    struct config_retention nothing = {1, 0, 0, 0, 0, 0};
    ASSERT_EQ(retention_plan(&cat, &nothing, now, &plan, &err), 0);
    ASSERT_EQ(plan.kept_snapshots, 1);
    for (size_t i = 0; i < plan.count; i++) {
        const struct retention_object *o = &plan.objects[i];
        int after_newest = strcmp(o->generation, "G2") == 0 && o->index >= 3 * SEGMENTS_PER_DAY;
        ASSERT_EQ(o->rules != 0, after_newest);
    }
    retention_plan_release(&plan);

    /* a generation with segments but no snapshot (yet) is left alone */
    catalog_release(&cat);
    add_generation(&cat, "G3", at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z"), at("2026-11-02T12:00:00Z"));
    cat.generations[0].snapshot_count = 0;
    ASSERT_EQ(retention_plan(&cat, &nothing, now, &plan, &err), 0);
    ASSERT_EQ(plan.deleted_segments, 0);
    retention_plan_release(&plan);
    catalog_release(&cat);
}

/* Deltas over each day's segments (two of 2 segments, one of 4): each
 * stays exactly when the first segment it covers stays, is counted as a
 * delta, and is deleted before the segments it covers. */
static void test_deltas_follow_their_segments(void)
{
    struct catalog cat = {0};
    int64_t now = at("2026-11-24T12:00:00Z");
    add_generation(&cat, "G1", at("2026-11-01T00:00:00Z"), at("2026-11-24T00:00:00Z"), now);
    struct catalog_generation *gen = &cat.generations[0];
    gen->deltas = calloc(gen->segment_count, sizeof *gen->deltas);
    for (size_t k = 0; k + 1 < gen->segment_count; k += 2) {
        size_t span = k % 4 == 0 && k + 3 < gen->segment_count ? 4 : 2;
        for (size_t width = 2; width <= span; width += 2) {
            struct catalog_delta *delta = &gen->deltas[gen->delta_count++];
            delta->first_index = gen->segments[k].index;
            delta->end_index = delta->first_index + width;
            delta->first_ms = gen->segments[k].first_ms;
            delta->last_ms = gen->segments[k + width - 1].last_ms;
            snprintf(delta->key, sizeof delta->key, "app/generations/G1/deltas/%016llx-%016llx.delta",
                     (unsigned long long)delta->first_index, (unsigned long long)delta->end_index);
        }
    }
    struct retention_plan plan;
    struct tm_error err;
    struct config_retention rules = {1, 2, 0, 0, 0, 2 * DAY_MS};
    ASSERT_EQ(retention_plan(&cat, &rules, now, &plan, &err), 0);
    ASSERT_TRUE(plan.deleted_deltas > 0 && plan.kept_deltas > 0);
    size_t deltas_seen = 0;
    for (size_t i = 0; i < plan.count; i++) {
        const struct retention_object *o = &plan.objects[i];
        if (!o->is_delta)
            continue;
        deltas_seen++;
        const struct retention_object *first_segment = NULL;
        for (size_t j = 0; j < plan.count && !first_segment; j++)
            if (!plan.objects[j].is_snapshot && !plan.objects[j].is_delta && plan.objects[j].index == o->index) {
                first_segment = &plan.objects[j];
                ASSERT_TRUE(j > i);   /* deleted before the segments it covers */
            }
        ASSERT_TRUE(first_segment != NULL);
        ASSERT_EQ(o->rules != 0, first_segment->rules != 0);
    }
    ASSERT_EQ(deltas_seen, gen->delta_count);
    ASSERT_EQ(plan.deleted_deltas + plan.kept_deltas, gen->delta_count);
    retention_plan_release(&plan);
    catalog_release(&cat);
}

/* Snapshots that failed verification (CATALOG_REJECTED: planted names,
 * damaged objects) are never newest, kept by a rule or an anchor: the
 * newest verified one is, and it and its segments stay; a rejected one
 * newer than it stays (reported), an older one goes; with no verified
 * snapshot at all nothing is deleted. */
static void test_unverified_snapshots_never_count(void)
{
    struct catalog cat = {0};
    int64_t now = at("2026-11-24T12:00:00Z");
    add_generation(&cat, "G1", at("2026-11-01T00:00:00Z"), at("2026-11-24T00:00:00Z"), now);
    struct catalog_generation *gen = &cat.generations[0];
    size_t newest = gen->snapshot_count - 1, old = 9;   /* 11-24 and 11-10 */
    gen->snapshots[newest].trust = CATALOG_REJECTED;
    snprintf(gen->snapshots[newest].why, sizeof gen->snapshots[newest].why, "corrupt: authentication failed");
    gen->snapshots[old].trust = CATALOG_REJECTED;
    for (size_t i = 0; i < gen->snapshot_count; i++)
        if (i != newest && i != old)
            gen->snapshots[i].trust = CATALOG_VERIFIED;
    struct config_retention nothing = {1, 0, 0, 0, 0, 0};
    struct retention_plan plan;
    struct tm_error err;
    ASSERT_EQ(retention_plan(&cat, &nothing, now, &plan, &err), 0);
    ASSERT_EQ(plan.unverified_snapshots, 2);
    ASSERT_EQ(plan.kept_snapshots, 2);
    uint64_t anchor_index = gen->snapshots[newest - 1].index;
    for (size_t i = 0; i < plan.count; i++) {
        const struct retention_object *o = &plan.objects[i];
        if (o->is_snapshot && o->index == gen->snapshots[newest].index) {
            ASSERT_EQ(o->rules, KEEP_UNVERIFIED);
            ASSERT_TRUE(o->unverified && strcmp(o->problem, "corrupt: authentication failed") == 0);
        } else if (o->is_snapshot && o->index == anchor_index) {
            ASSERT_EQ(o->rules, KEEP_NEWEST | KEEP_POINT_IN_TIME);
        } else if (o->is_snapshot) {
            ASSERT_EQ(o->rules, 0);
        } else {
            ASSERT_EQ(o->rules != 0, o->index >= anchor_index);
        }
    }
    retention_plan_release(&plan);

    /* nothing verified: nothing deleted */
    for (size_t i = 0; i < gen->snapshot_count; i++)
        gen->snapshots[i].trust = CATALOG_REJECTED;
    ASSERT_EQ(retention_plan(&cat, &default_rules, now, &plan, &err), 0);
    ASSERT_EQ(plan.deleted_snapshots, 0);
    ASSERT_EQ(plan.deleted_segments, 0);
    retention_plan_release(&plan);
    catalog_release(&cat);
}

/* A verified head on a hand-built generation, naming segments [0, next_index). */
static void set_head(struct catalog_generation *gen, uint64_t next_index, int64_t written_ms, const char *successor)
{
    gen->head = calloc(1, sizeof *gen->head);
    gen->head->next_index = next_index;
    gen->head->written_ms = written_ms;
    snprintf(gen->head->generation, sizeof gen->head->generation, "%s", gen->id);
    snprintf(gen->head->successor, sizeof gen->head->successor, "%s", successor);
    gen->head_state = CATALOG_HEAD_VERIFIED;
    snprintf(gen->head_key, sizeof gen->head_key, "app/generations/%s/head", gen->id);
}

static const struct retention_object *object_named(const struct retention_plan *plan, const char *key, size_t *at)
{
    for (size_t i = 0; i < plan->count; i++)
        if (strcmp(plan->objects[i].key, key) == 0) {
            *at = i;
            return &plan->objects[i];
        }
    return NULL;
}

/* A generation's head goes exactly with its newest segment, and before
 * anything of its generation; the newest head's end stays, but never as
 * a segment no kept snapshot precedes. */
static void test_heads_go_with_their_tails(void)
{
    struct catalog cat = {0};
    int64_t now = at("2026-11-24T12:00:00Z");
    add_generation(&cat, "G1", at("2026-11-01T00:00:00Z"), at("2026-11-10T00:00:00Z"), at("2026-11-11T00:00:00Z"));
    add_generation(&cat, "G2", at("2026-11-11T00:00:00Z"), at("2026-11-24T00:00:00Z"), now);
    struct catalog_generation *g1 = &cat.generations[0], *g2 = &cat.generations[1];
    set_head(g1, g1->segments[g1->segment_count - 1].index + 1, at("2026-11-11T00:00:00Z"), "G2");
    /* G2's head ends where its newest snapshot begins: that snapshot holds its end */
    uint64_t g2_end = g2->snapshots[g2->snapshot_count - 1].index;
    set_head(g2, g2_end, at("2026-11-24T02:59:00Z"), "");
    struct config_retention rules = {1, 1, 0, 0, 0, 0};
    struct retention_plan plan;
    struct tm_error err;
    ASSERT_EQ(retention_plan(&cat, &rules, now, &plan, &err), 0);
    size_t head1_at = 0, head2_at = 0, seg_at = 0;
    const struct retention_object *head1 = object_named(&plan, g1->head_key, &head1_at);
    const struct retention_object *head2 = object_named(&plan, g2->head_key, &head2_at);
    ASSERT_TRUE(head1 && head2 && head1->is_head && head2->is_head);
    /* G1 holds nothing in the rules: its tail goes, and its head before it */
    const struct retention_object *g1_tail = object_named(&plan, g1->segments[g1->segment_count - 1].key, &seg_at);
    ASSERT_EQ(g1_tail->rules, 0);
    ASSERT_EQ(head1->rules, 0);
    for (size_t i = 0; i < plan.count; i++)
        if (strcmp(plan.objects[i].generation, "G1") == 0 && !plan.objects[i].is_head)
            ASSERT_TRUE(i > head1_at);
    ASSERT_EQ(plan.deleted_heads, 1);
    /* G2's head stays with its tail; the segment before its newest snapshot is not kept for it */
    ASSERT_TRUE(head2->rules != 0);
    const struct retention_object *before_end = NULL;
    for (size_t i = 0; i < plan.count; i++)
        if (strcmp(plan.objects[i].generation, "G2") == 0 && !plan.objects[i].is_snapshot &&
            !plan.objects[i].is_head && plan.objects[i].index == g2_end - 1)
            before_end = &plan.objects[i];
    ASSERT_TRUE(before_end != NULL);
    ASSERT_EQ(before_end->rules, 0);
    retention_plan_release(&plan);

    /* the head naming the newest segment: it and the run from the snapshot before it stay */
    free(g2->head);
    set_head(g2, g2->segments[g2->segment_count - 1].index + 1, now, "");
    ASSERT_EQ(retention_plan(&cat, &rules, now, &plan, &err), 0);
    const struct retention_object *newest = object_named(&plan, g2->segments[g2->segment_count - 1].key, &seg_at);
    ASSERT_TRUE(newest->rules & KEEP_HEAD);
    ASSERT_TRUE(object_named(&plan, g2->head_key, &head2_at)->rules != 0);
    retention_plan_release(&plan);
    catalog_release(&cat);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"retention: 8 years of daily snapshots, 7/4/12/7 + 7 days point-in-time, in one run",
         test_eight_years_at_once},
        {"retention: the same 8 years applied day after day, window always restorable",
         test_eight_years_day_by_day},
        {"retention: across generations; the latest point always stays; no snapshot, no deletion",
         test_generations_and_fail_safes},
        {"retention: a delta stays exactly when the first segment it covers stays", test_deltas_follow_their_segments},
        {"retention: snapshots that fail verification never count; newer ones stay, older ones go",
         test_unverified_snapshots_never_count},
        {"retention: a head goes with its tail; the newest head's end stays, as a run that restores",
         test_heads_go_with_their_tails},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
