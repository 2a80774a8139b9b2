/* test_restore_plan.c - which generation and snapshot a restore starts
 * from (restore_plan, catalog_generation_newest_ms): by the times in the
 * names, never by the order of generation ids, which carry the clock of
 * the host that started them and sort wrongly after a clock step back. */
#include "harness.h"

#include "../../restore/restore.h"

#include <stdlib.h>

/* A generation `id` with snapshots at `snaps` (count n) and one segment
 * from each snapshot's time + 1 to + `span` ms. */
static void add_generation(struct catalog *cat, const char *id, const int64_t *snaps, size_t n, int64_t span)
{
    cat->generations = realloc(cat->generations, (cat->generation_count + 1) * sizeof *cat->generations);
    struct catalog_generation *gen = &cat->generations[cat->generation_count++];
    memset(gen, 0, sizeof *gen);
    snprintf(gen->id, sizeof gen->id, "%s", id);
    gen->snapshots = calloc(n, sizeof *gen->snapshots);
    gen->segments = calloc(n, sizeof *gen->segments);
    for (size_t i = 0; i < n; i++) {
        gen->snapshots[gen->snapshot_count++] = (struct catalog_snapshot){.index = i, .time_ms = snaps[i]};
        gen->segments[gen->segment_count++] =
            (struct catalog_segment){.index = i, .first_ms = snaps[i] + 1, .last_ms = snaps[i] + span};
    }
}

static const struct catalog_generation *planned(const struct catalog *cat, int has_target, int64_t target_ms,
                                                const struct catalog_snapshot **snap)
{
    struct restore_options opts = {.db_name = "app", .has_target = has_target, .target_ms = target_ms};
    const struct catalog_generation *gen = NULL;
    struct tm_error err;
    *snap = NULL;
    return restore_plan(cat, &opts, &gen, snap, &err) == 0 ? gen : NULL;
}

/* B started while the host's clock was a day behind (its id and first
 * snapshot sort first), then the clock was set right: B holds the newest
 * commits, A the newest id. */
static void test_latest_is_the_newest_data_not_the_last_id(void)
{
    struct catalog cat = {0};
    const int64_t a[] = {10000000, 10050000}, b[] = {10000000 - 86400000, 10200000};
    add_generation(&cat, "20261129T100000000Z-bbbbbbbb", b, 2, 30000);   /* listed first: id order */
    add_generation(&cat, "20261130T100000000Z-aaaaaaaa", a, 2, 30000);
    ASSERT_EQ(catalog_generation_newest_ms(&cat.generations[0]), 10230000);
    ASSERT_EQ(catalog_generation_newest_ms(&cat.generations[1]), 10080000);
    const struct catalog_snapshot *snap;
    const struct catalog_generation *gen = planned(&cat, 0, 0, &snap);
    ASSERT_TRUE(gen != NULL);
    ASSERT_STR_EQ(gen->id, "20261129T100000000Z-bbbbbbbb");
    ASSERT_EQ(snap->time_ms, 10200000);
    /* a target between A's newest snapshot and B's second: A's is the
     * newest snapshot at or before it */
    gen = planned(&cat, 1, 10100000, &snap);
    ASSERT_TRUE(gen != NULL);
    ASSERT_STR_EQ(gen->id, "20261130T100000000Z-aaaaaaaa");
    ASSERT_EQ(snap->time_ms, 10050000);
    /* after both: B's */
    gen = planned(&cat, 1, 10300000, &snap);
    ASSERT_STR_EQ(gen->id, "20261129T100000000Z-bbbbbbbb");
    ASSERT_EQ(snap->time_ms, 10200000);
    catalog_release(&cat);
}

/* In order (the usual case) the plan is what it always was; equal times
 * go to the id that sorts last; before every snapshot: RESTORE_NOT_YET. */
static void test_usual_order_and_ties(void)
{
    struct catalog cat = {0};
    const int64_t a[] = {1000, 5000}, b[] = {9000}, c[] = {9000};
    add_generation(&cat, "20261130T100000000Z-aaaaaaaa", a, 2, 100);
    add_generation(&cat, "20261130T110000000Z-bbbbbbbb", b, 1, 100);
    const struct catalog_snapshot *snap;
    ASSERT_STR_EQ(planned(&cat, 0, 0, &snap)->id, "20261130T110000000Z-bbbbbbbb");
    ASSERT_STR_EQ(planned(&cat, 1, 8999, &snap)->id, "20261130T100000000Z-aaaaaaaa");
    ASSERT_EQ(snap->time_ms, 5000);
    ASSERT_STR_EQ(planned(&cat, 1, 1000, &snap)->id, "20261130T100000000Z-aaaaaaaa");
    ASSERT_EQ(snap->time_ms, 1000);
    add_generation(&cat, "20261130T120000000Z-cccccccc", c, 1, 100);
    ASSERT_STR_EQ(planned(&cat, 0, 0, &snap)->id, "20261130T120000000Z-cccccccc");
    struct restore_options opts = {.db_name = "app", .has_target = 1, .target_ms = 999};
    const struct catalog_generation *gen;
    struct tm_error err;
    ASSERT_EQ(restore_plan(&cat, &opts, &gen, &snap, &err), RESTORE_NOT_YET);
    struct catalog empty = {0};
    ASSERT_EQ(catalog_generation_newest_ms(&(struct catalog_generation){0}), INT64_MIN);
    ASSERT_EQ(restore_plan(&empty, &opts, &gen, &snap, &err), -1);
    catalog_release(&cat);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"restore plan: latest is the generation holding the newest data, not the last id",
         test_latest_is_the_newest_data_not_the_last_id},
        {"restore plan: usual order unchanged; ties to the last id; nothing before the target",
         test_usual_order_and_ties},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
