/* retention.c - grandfather-father-son retention (retention.h).
 *
 * RULES, over the snapshots of every generation together, by UTC calendar:
 *  - newest: the newest snapshot always stays;
 *  - daily N / weekly N / monthly N / yearly N: walking from the newest
 *    snapshot back, the newest snapshot of each day (ISO week, month,
 *    year) is kept, for the first N days (weeks, ...) that have a
 *    snapshot. Days without any snapshot (the sidecar was down) do not
 *    count, so an outage never makes retention delete more (restic's
 *    semantics);
 *  - point-in-time W: every second of the last W stays restorable. In each
 *    generation that has data inside the window (and always in the newest
 *    generation, so the latest point stays), the "anchor" is the newest
 *    snapshot at or before the window's start (or the generation's first
 *    one); it and every segment from its index on stay.
 * A snapshot kept by any rule stays. Segments outside what point-in-time
 * keeps are deleted: older points stay restorable at the times of the
 * kept snapshots (restore stops at the first missing segment and says so,
 * never silently). A generation without any snapshot is left alone (its
 * snapshot may still be on its way to this replica).
 *
 * SAFETY: the plan comes from a complete listing (catalog_load fails on
 * any listing error, and then nothing is deleted); the newest snapshot is
 * never deleted; deletion goes oldest first and stops at the first error.
 *
 * TRUST: the rules above walk only snapshots whose header was verified
 * with the key (catalog_check_snapshots: an encrypted chunk's MAC covers
 * what was read). A snapshot that failed the check (planted, damaged,
 * under another key) is never newest, kept by a calendar rule or an
 * anchor; it stays (KEEP_UNVERIFIED, reported) unless it is older than
 * the newest verified snapshot kept, since what we cannot read may still
 * be a real snapshot, while one older than a kept, verified snapshot is
 * deleted like any old snapshot.
 *
 * HEADS (archive.h): each generation's head goes with its tail: it is
 * deleted, before any object of its generation, exactly when the
 * generation's newest segment is (or when nothing of a generation without
 * segments stays), so a head never names segments retention removed, and
 * a missing tail stays an attack, never a retention run. The newest
 * verified head's end (by the time it was written) stays restorable
 * whatever the calendar says (KEEP_HEAD): its newest segment, with the
 * snapshot before it and the segments between, unless a snapshot at or
 * after its end holds it.
 */
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_MS 86400000LL

/* The calendar period of a time, for each rule. */
static int64_t period_of(int64_t time_ms, unsigned rule)
{
    time_t seconds = (time_t)(time_ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char iso_week[16];
    switch (rule) {
    case KEEP_DAILY:
        return time_ms >= 0 ? time_ms / DAY_MS : (time_ms - DAY_MS + 1) / DAY_MS;
    case KEEP_WEEKLY:
        strftime(iso_week, sizeof iso_week, "%G%V", &tm);
        return strtoll(iso_week, NULL, 10);
    case KEEP_MONTHLY:
        return (int64_t)tm.tm_year * 12 + tm.tm_mon;
    default:
        return tm.tm_year;
    }
}

/* Counts for the rules: verified, or never checked (unit tests, or a
 * key that cannot read the header; the plan says so). */
static int trusted(const struct retention_object *o)
{
    return !o->unverified;
}

static int newest_first(const void *a, const void *b)
{
    const struct retention_object *x = *(struct retention_object *const *)a;
    const struct retention_object *y = *(struct retention_object *const *)b;
    return x->time_ms < y->time_ms ? 1 : x->time_ms > y->time_ms ? -1 : 0;
}

/* Marks the newest snapshot of each of the first `keep` periods. */
static void apply_calendar_rule(struct retention_object **snapshots, size_t count, unsigned rule,
                                uint32_t keep)
{
    uint32_t periods = 0;
    int64_t last_period = 0;
    for (size_t i = 0; i < count && periods <= keep; i++) {
        int64_t period = period_of(snapshots[i]->time_ms, rule);
        if (i > 0 && period == last_period)
            continue;
        last_period = period;
        if (++periods <= keep)
            snapshots[i]->rules |= rule;
    }
}

/* Unverified snapshots stay unless the newest verified one (kept, as
 * newest) is newer: see TRUST above. */
static void keep_unverified(struct retention_plan *plan, const struct retention_object *newest)
{
    for (size_t i = 0; i < plan->count; i++) {
        struct retention_object *o = &plan->objects[i];
        if (o->is_snapshot && !trusted(o) && (!newest || o->time_ms >= newest->time_ms))
            o->rules |= KEEP_UNVERIFIED;
    }
}

/* Point-in-time for one generation: objects [first, first + count). */
static void apply_window(struct retention_object *objects, size_t count, int64_t window_start,
                         int newest_generation)
{
    struct retention_object *anchor = NULL, *oldest = NULL;
    int64_t end = INT64_MIN;
    for (size_t i = 0; i < count; i++) {
        struct retention_object *o = &objects[i];
        if (o->time_ms > end && (!o->is_snapshot || trusted(o)))
            end = o->time_ms;
        if (!o->is_snapshot || !trusted(o))
            continue;
        if (!oldest)
            oldest = o;
        if (o->time_ms <= window_start && (!anchor || o->time_ms >= anchor->time_ms))
            anchor = o;
    }
    if (!oldest) {   /* no snapshot: leave the generation alone */
        for (size_t i = 0; i < count; i++)
            objects[i].rules |= KEEP_INCOMPLETE;
        return;
    }
    if (end < window_start && !newest_generation)
        return;
    if (!anchor)
        anchor = oldest;
    anchor->rules |= KEEP_POINT_IN_TIME;
    for (size_t i = 0; i < count; i++)
        if (!objects[i].is_snapshot && objects[i].index >= anchor->index)
            objects[i].rules |= KEEP_POINT_IN_TIME;
}

/* The catalogue as one list, oldest first: per generation its objects by
 * index, a snapshot before the deltas starting at its index, and those
 * before the segment of that index (so a delta is deleted before the
 * segments it covers). A delta is planned like the first segment it
 * covers: kept exactly when that segment is. */
static int flatten(const struct catalog *cat, struct retention_plan *plan, size_t **gen_starts,
                   struct tm_error *err)
{
    size_t total = 0;
    for (size_t g = 0; g < cat->generation_count; g++)
        total += cat->generations[g].snapshot_count + cat->generations[g].segment_count +
                 cat->generations[g].delta_count + 1;   /* its head */
    plan->objects = calloc(total ? total : 1, sizeof *plan->objects);
    *gen_starts = calloc(cat->generation_count + 1, sizeof **gen_starts);
    if (!plan->objects || !*gen_starts)
        return tm_error_set(err, "out of memory");
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *gen = &cat->generations[g];
        (*gen_starts)[g] = plan->count;
        if (gen->head_state != CATALOG_HEAD_ABSENT)   /* first: deleted before the tail it names */
            plan->objects[plan->count++] = (struct retention_object){.key = gen->head_key, .generation = gen->id,
                                                                     .is_head = 1, .problem = ""};
        size_t s = 0, k = 0, d = 0;
        while (s < gen->snapshot_count || k < gen->segment_count || d < gen->delta_count) {
            uint64_t snap_index = s < gen->snapshot_count ? gen->snapshots[s].index : UINT64_MAX;
            uint64_t delta_index = d < gen->delta_count ? gen->deltas[d].first_index : UINT64_MAX;
            uint64_t seg_index = k < gen->segment_count ? gen->segments[k].index : UINT64_MAX;
            struct retention_object *o = &plan->objects[plan->count++];
            if (s < gen->snapshot_count && snap_index <= delta_index && snap_index <= seg_index) {
                const struct catalog_snapshot *snap = &gen->snapshots[s++];
                *o = (struct retention_object){snap->key, gen->id, 1, 0, snap->index, snap->time_ms, snap->size, 0,
                                               snap->trust == CATALOG_REJECTED, snap->why, 0};
                plan->unverified_snapshots += o->unverified;
                plan->envelope_only |= snap->trust == CATALOG_ENVELOPE_ONLY;
            } else if (d < gen->delta_count && delta_index <= seg_index) {
                const struct catalog_delta *delta = &gen->deltas[d++];
                *o = (struct retention_object){delta->key, gen->id, 0, 1, delta->first_index, delta->last_ms,
                                               delta->size, 0, 0, "", 0};
            } else {
                const struct catalog_segment *seg = &gen->segments[k++];
                *o = (struct retention_object){seg->key, gen->id, 0, 0, seg->index, seg->last_ms, seg->size, 0, 0, "", 0};
            }
        }
    }
    (*gen_starts)[cat->generation_count] = plan->count;
    return 0;
}

/* The newest verified head's end stays restorable: unless a snapshot at
 * or after its end holds it, the newest snapshot before its newest segment
 * and every segment from there to that one stay (KEEP_HEAD), a run that
 * restores (never a segment that no snapshot precedes). */
static void keep_what_the_newest_head_names(const struct catalog *cat, struct retention_plan *plan)
{
    const struct catalog_generation *newest = NULL;
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *gen = &cat->generations[g];
        if (gen->head_state == CATALOG_HEAD_VERIFIED && (!newest || gen->head->written_ms > newest->head->written_ms))
            newest = gen;
    }
    if (!newest || newest->head->next_index == 0)
        return;
    uint64_t last_segment = newest->head->next_index - 1;
    struct retention_object *anchor = NULL;
    for (size_t i = 0; i < plan->count; i++) {
        struct retention_object *o = &plan->objects[i];
        if (!o->is_snapshot || !trusted(o) || strcmp(o->generation, newest->id) != 0)
            continue;
        if (o->index > last_segment)
            return;   /* a snapshot holds the head's end */
        if (!anchor || o->index >= anchor->index)
            anchor = o;
    }
    if (!anchor)
        return;
    anchor->rules |= KEEP_HEAD;
    for (size_t i = 0; i < plan->count; i++) {
        struct retention_object *o = &plan->objects[i];
        if (!o->is_snapshot && !o->is_head && strcmp(o->generation, newest->id) == 0 &&
            o->index >= anchor->index && o->index <= last_segment)
            o->rules |= KEEP_HEAD;
    }
}

/* Each head stays exactly when its generation's newest segment does (or,
 * without segments, while anything of its generation stays). */
static void settle_heads(struct retention_plan *plan)
{
    for (size_t i = 0; i < plan->count; i++) {
        struct retention_object *head = &plan->objects[i];
        if (!head->is_head)
            continue;
        const struct retention_object *tail = NULL;
        int anything_kept = 0;
        for (size_t j = i + 1; j < plan->count && strcmp(plan->objects[j].generation, head->generation) == 0; j++) {
            const struct retention_object *o = &plan->objects[j];
            anything_kept |= o->rules != 0;
            if (!o->is_snapshot && !o->is_delta)
                tail = o;   /* objects go by index: the last segment is the newest */
        }
        int keep = tail ? tail->rules != 0 : anything_kept;
        head->rules = (head->rules & KEEP_IN_USE) | (keep ? KEEP_TAIL_KEPT : 0);
    }
}

/* Counts an object in the plan's totals. */
static void count_object(struct retention_plan *plan, const struct retention_object *o)
{
    if (o->is_head) {
        plan->deleted_heads += !o->rules;
        return;
    }
    if (o->rules) {
        if (o->is_snapshot)
            plan->kept_snapshots++;
        else if (o->is_delta)
            plan->kept_deltas++;
        else
            plan->kept_segments++;
        return;
    }
    if (o->is_snapshot)
        plan->deleted_snapshots++;
    else if (o->is_delta)
        plan->deleted_deltas++;
    else
        plan->deleted_segments++;
    plan->deleted_bytes += o->size;
}

int retention_plan(const struct catalog *cat, const struct config_retention *rules, int64_t now_ms,
                   struct retention_plan *out, struct tm_error *err)
{
    memset(out, 0, sizeof *out);
    size_t *gen_starts = NULL;
    if (flatten(cat, out, &gen_starts, err) != 0) {
        free(gen_starts);
        retention_plan_release(out);
        return -1;
    }
    struct retention_object **snapshots = calloc(out->count ? out->count : 1, sizeof *snapshots);
    if (!snapshots) {
        free(gen_starts);
        retention_plan_release(out);
        return tm_error_set(err, "out of memory");
    }
    size_t snapshot_count = 0;
    for (size_t i = 0; i < out->count; i++)
        if (out->objects[i].is_snapshot && trusted(&out->objects[i]))
            snapshots[snapshot_count++] = &out->objects[i];
    qsort(snapshots, snapshot_count, sizeof *snapshots, newest_first);
    if (snapshot_count)
        snapshots[0]->rules |= KEEP_NEWEST;
    keep_unverified(out, snapshot_count ? snapshots[0] : NULL);
    apply_calendar_rule(snapshots, snapshot_count, KEEP_DAILY, rules->daily);
    apply_calendar_rule(snapshots, snapshot_count, KEEP_WEEKLY, rules->weekly);
    apply_calendar_rule(snapshots, snapshot_count, KEEP_MONTHLY, rules->monthly);
    apply_calendar_rule(snapshots, snapshot_count, KEEP_YEARLY, rules->yearly);
    out->window_start_ms = now_ms - rules->point_in_time_ms;
    for (size_t g = 0; g < cat->generation_count; g++)
        apply_window(&out->objects[gen_starts[g]], gen_starts[g + 1] - gen_starts[g], out->window_start_ms,
                     g + 1 == cat->generation_count);
    keep_what_the_newest_head_names(cat, out);
    settle_heads(out);
    for (size_t i = 0; i < out->count; i++)
        count_object(out, &out->objects[i]);
    free(snapshots);
    free(gen_starts);
    return 0;
}

void retention_protect(struct retention_plan *plan, char *const *generations, size_t count)
{
    for (size_t i = 0; i < plan->count; i++) {
        struct retention_object *o = &plan->objects[i];
        for (size_t g = 0; g < count; g++) {
            if (strcmp(o->generation, generations[g]) != 0)
                continue;
            if (!o->rules) {
                if (o->is_head)
                    plan->deleted_heads--;
                else if (o->is_snapshot)
                    plan->deleted_snapshots--;
                else if (o->is_delta)
                    plan->deleted_deltas--;
                else
                    plan->deleted_segments--;
                plan->deleted_bytes -= o->size;
                o->rules |= KEEP_IN_USE;
                count_object(plan, o);
            }
            o->rules |= KEEP_IN_USE;
        }
    }
}

void retention_plan_release(struct retention_plan *plan)
{
    free(plan->objects);
    memset(plan, 0, sizeof *plan);
}

void retention_rules_text(unsigned rules, char *out, size_t len)
{
    static const struct { unsigned rule; const char *name; } names[] = {
        {KEEP_NEWEST, "newest"}, {KEEP_DAILY, "daily"}, {KEEP_WEEKLY, "weekly"},
        {KEEP_MONTHLY, "monthly"}, {KEEP_YEARLY, "yearly"}, {KEEP_POINT_IN_TIME, "point-in-time"},
        {KEEP_INCOMPLETE, "generation-without-snapshot"}, {KEEP_IN_USE, "in-use-by-a-restore"},
        {KEEP_UNVERIFIED, "unverified-kept-until-a-verified-one-is-newer"}, {KEEP_HEAD, "newest-head"},
        {KEEP_TAIL_KEPT, "its-generation's-newest-segment-stays"}};
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (rules & names[i].rule)
            used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s", used ? ", " : "",
                                     names[i].name);
}

int retention_apply(struct storage *st, const struct retention_plan *plan, size_t *deleted,
                    struct tm_error *err)
{
    *deleted = 0;
    if (plan->kept_snapshots == 0 && plan->deleted_snapshots > 0)
        return tm_error_set(err, "internal: a plan that keeps no snapshot is refused");
    const char **keys = calloc(plan->count ? plan->count : 1, sizeof *keys);
    if (!keys)
        return tm_error_set(err, "out of memory");
    size_t count = 0;
    for (size_t i = 0; i < plan->count; i++)
        if (!plan->objects[i].rules)
            keys[count++] = plan->objects[i].key;   /* oldest first */
    int rc = storage_remove_many(st, keys, count, err);
    if (rc == 0)
        *deleted = count;
    free(keys);
    return rc;
}
