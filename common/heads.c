/* heads.c - checks of an archive against its generations' heads, and the
 * record of the newest head this host saw (heads.h).
 *
 * SEEN FILE (one per replica and database, heads_seen_path), text:
 *   generation GEN
 *   counter C
 *   next-index N
 *   written-ms W
 * A head is newer than another when it was written later (written_ms:
 * the counter only grows within one sidecar's spool), or, in the same
 * generation, when its counter is larger. */
#include "heads.h"

#include "clock.h"
#include "fsutil.h"
#include "names.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *heads_finding_name(enum heads_finding_kind kind)
{
    switch (kind) {
    case HEADS_MISSING_TAIL: return "missing tail";
    case HEADS_MISSING_GENERATION: return "missing generation";
    case HEADS_REJECTED: return "rejected head";
    case HEADS_ROLLED_BACK: return "rolled back";
    }
    return "?";
}

static void add_finding(struct heads_report *out, enum heads_finding_kind kind, const char *generation,
                        const char *about, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add_finding(struct heads_report *out, enum heads_finding_kind kind, const char *generation,
                        const char *about, const char *fmt, ...)
{
    if (out->count >= HEADS_FINDINGS_MAX)
        return;
    struct heads_finding *f = &out->findings[out->count++];
    f->kind = kind;
    snprintf(f->generation, sizeof f->generation, "%s", generation);
    snprintf(f->about, sizeof f->about, "%s", about);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->text, sizeof f->text, fmt, ap);
    va_end(ap);
}

/* The index up to which gen's segments reach: [0, end). */
static uint64_t segments_end(const struct catalog_generation *gen)
{
    return gen->segment_count ? gen->segments[gen->segment_count - 1].index + 1 : 0;
}

/* The index up to which gen's objects reach: segments [0, end) are held
 * or covered by a snapshot (a snapshot at index k holds the state after
 * segment k - 1) that is not rejected; heads_check verifies those past
 * the segments first, since a planted name must not hide a missing tail.
 * Deltas do not count: the sidecar publishes a delta after the segments
 * it covers, and retention deletes it before them, so a delta reaching
 * past the segments means segments were removed by someone else. */
static uint64_t held_end(const struct catalog_generation *gen)
{
    uint64_t end = segments_end(gen);
    for (size_t s = 0; s < gen->snapshot_count; s++)
        if (gen->snapshots[s].trust != CATALOG_REJECTED && gen->snapshots[s].index > end)
            end = gen->snapshots[s].index;
    return end;
}

static const struct catalog_generation *find_generation(const struct catalog *cat, const char *id)
{
    for (size_t g = 0; g < cat->generation_count; g++)
        if (strcmp(cat->generations[g].id, id) == 0)
            return &cat->generations[g];
    return NULL;
}

static void check_tail(const struct catalog *cat, const struct catalog_generation *gen, struct heads_report *out)
{
    const struct archive_head *h = gen->head;
    char written[40], last[40];
    clock_format_ms(h->written_ms, written, sizeof written);
    uint64_t end = held_end(gen);
    if (h->next_index > end) {
        if (h->last_commit_ms)
            clock_format_ms(h->last_commit_ms, last, sizeof last);
        else
            snprintf(last, sizeof last, "unknown");
        char missing[80];
        if (h->next_index - end == 1)
            snprintf(missing, sizeof missing, "segment %" PRIu64 " is", end);
        else
            snprintf(missing, sizeof missing, "segments %" PRIu64 " to %" PRIu64 " are", end, h->next_index - 1);
        add_finding(out, HEADS_MISSING_TAIL, gen->id, gen->id,
                    "generation %s: its head (written %s) names %" PRIu64 " segments (last commit %s), the replica "
                    "holds %" PRIu64 ": %s missing", gen->id, written, h->next_index, last, end, missing);
    }
    if (h->successor[0] && !find_generation(cat, h->successor))
        add_finding(out, HEADS_MISSING_GENERATION, h->successor, gen->id,
                    "generation %s, which followed %s (its head, written %s, says so), is missing", h->successor,
                    gen->id, written);
}

static int has_objects(const struct catalog_generation *gen)
{
    return gen->snapshot_count || gen->segment_count || gen->delta_count;
}

/* Whether a head newer than the one seen is in cat. */
static int newer_than_seen(const struct heads_report *out, const struct heads_seen *seen)
{
    return out->newest && out->newest->head->written_ms > seen->written_ms;
}

static void check_seen(const struct catalog *cat, const struct heads_seen *seen, struct heads_report *out)
{
    char seen_at[40];
    clock_format_ms(seen->written_ms, seen_at, sizeof seen_at);
    const struct catalog_generation *gen = find_generation(cat, seen->generation);
    if (gen && gen->head_state == CATALOG_HEAD_VERIFIED) {
        const struct archive_head *h = gen->head;
        if (h->counter < seen->counter || h->next_index < seen->next_index)
            add_finding(out, HEADS_ROLLED_BACK, gen->id, gen->id,
                        "the head of generation %s is older than the one this host saw: counter %" PRIu64
                        " and %" PRIu64 " segments, where the head written %s had counter %" PRIu64
                        " and %" PRIu64 " segments",
                        gen->id, h->counter, h->next_index, seen_at, seen->counter, seen->next_index);
        return;
    }
    if (gen && gen->head_state != CATALOG_HEAD_ABSENT)
        return;   /* rejected (already a finding) or unreadable with a public key */
    if (newer_than_seen(out, seen))
        return;   /* a newer generation followed; retention may remove the old one */
    add_finding(out, HEADS_ROLLED_BACK, seen->generation, seen->generation,
                "%s %s, whose head (written %s, %" PRIu64 " segments) this host saw, %s",
                gen ? "the head of generation" : "generation", seen->generation, seen_at, seen->next_index,
                gen ? "is gone" : "is missing");
}

void heads_examine(const struct catalog *cat, const struct heads_seen *seen, struct heads_report *out)
{
    memset(out, 0, sizeof *out);
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *gen = &cat->generations[g];
        switch (gen->head_state) {
        case CATALOG_HEAD_VERIFIED:
            check_tail(cat, gen, out);
            if (!out->newest || gen->head->written_ms > out->newest->head->written_ms)
                out->newest = gen;
            break;
        case CATALOG_HEAD_REJECTED:
            add_finding(out, HEADS_REJECTED, gen->id, gen->id, "generation %s: its head is not valid here: %s", gen->id,
                        gen->head_why);
            break;
        case CATALOG_HEAD_ABSENT:
            out->generations_without_head += has_objects(gen) != 0;
            break;
        default:
            break;
        }
    }
    if (seen && seen->has)
        check_seen(cat, seen, out);
}

/* Verifies the snapshots of headed generations that lie past their
 * segments (the only ones held_end trusts beyond the segments). */
static int check_snapshots_past_segments(struct storage *st, const struct crypto_keyring *key, int redis,
                                         struct catalog *cat, struct tm_error *err)
{
    for (size_t g = 0; g < cat->generation_count; g++) {
        struct catalog_generation *gen = &cat->generations[g];
        if (gen->head_state != CATALOG_HEAD_VERIFIED)
            continue;
        for (size_t s = 0; s < gen->snapshot_count; s++)
            if (gen->snapshots[s].trust == CATALOG_UNCHECKED && gen->snapshots[s].index > segments_end(gen) &&
                catalog_check_snapshot(st, key, redis, gen->id, &gen->snapshots[s], err) != 0)
                return -1;
    }
    return 0;
}

int heads_check(struct storage *st, const struct crypto_keyring *key, int redis, const char *seen_dir,
                const char *db, struct catalog *cat, struct heads_report *out, struct tm_error *err)
{
    if (catalog_check_heads(st, key, cat, err) != 0 || check_snapshots_past_segments(st, key, redis, cat, err) != 0)
        return -1;
    char path[4096 + ARCHIVE_NAME_MAX];
    heads_seen_path(seen_dir, storage_describe(st), db, path, sizeof path);
    struct heads_seen seen;
    struct tm_error seen_err = {0};
    int seen_rc = heads_seen_load(path, &seen, &seen_err);
    heads_examine(cat, &seen, out);
    if (seen_rc == 0)   /* an authenticated head is one the sidecar wrote, whatever else is wrong */
        seen_rc = heads_seen_record(path, cat, &seen, &seen_err);
    if (seen_rc != 0)
        snprintf(out->seen_problem, sizeof out->seen_problem, "%s", seen_err.msg);
    return 0;
}

/* ------------------------------------------------------------ seen file */

void heads_seen_path(const char *state_dir, const char *replica, const char *db, char *out, size_t len)
{
    char base[4096];
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (state_dir)
        snprintf(base, sizeof base, "%s", state_dir);
    else if (xdg && xdg[0] == '/')
        snprintf(base, sizeof base, "%s/tidemark", xdg);
    else if (home && home[0] == '/')
        snprintf(base, sizeof base, "%s/.local/state/tidemark", home);
    else
        snprintf(base, sizeof base, "/var/lib/tidemark");
    char replica_dir[512], db_file[ARCHIVE_NAME_MAX];
    if (names_escape(replica, replica_dir, sizeof replica_dir) != 0)
        snprintf(replica_dir, sizeof replica_dir, "replica");
    layout_db_dir(db, db_file, sizeof db_file);
    snprintf(out, len, "%s/seen-heads/%s/%s", base, replica_dir, db_file);
}

int heads_seen_load(const char *path, struct heads_seen *out, struct tm_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return errno == ENOENT ? 0 : tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
    char line[256];
    unsigned fields = 0;   /* one bit per field seen */
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "counter %" SCNu64, &out->counter) == 1)
            fields |= 1;
        else if (sscanf(line, "next-index %" SCNu64, &out->next_index) == 1)
            fields |= 2;
        else if (sscanf(line, "written-ms %" SCNd64, &out->written_ms) == 1)
            fields |= 4;
        else if (strncmp(line, "generation ", 11) == 0 && layout_generation_id_ok(line + 11)) {
            snprintf(out->generation, sizeof out->generation, "%s", line + 11);
            fields |= 8;
        }
    }
    fclose(fp);
    if (fields != 15) {
        memset(out, 0, sizeof *out);
        return tm_error_setc(err, TM_ERR_CORRUPT, "the record of heads seen '%s' is damaged", path);
    }
    out->has = 1;
    return 0;
}

/* Whether head h is newer than the one seen. */
static int newer(const struct archive_head *h, const struct heads_seen *seen)
{
    if (!seen->has || h->written_ms > seen->written_ms)
        return 1;
    return strcmp(h->generation, seen->generation) == 0 && h->counter > seen->counter;
}

int heads_seen_record(const char *path, const struct catalog *cat, struct heads_seen *seen, struct tm_error *err)
{
    struct heads_report report;
    heads_examine(cat, NULL, &report);
    if (!report.newest || !newer(report.newest->head, seen))
        return 0;
    const struct archive_head *h = report.newest->head;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    if (slash && fsutil_make_dirs(dir, err) != 0)
        return -1;
    char text[256];
    int len = snprintf(text, sizeof text, "generation %s\ncounter %" PRIu64 "\nnext-index %" PRIu64
                       "\nwritten-ms %" PRId64 "\n", h->generation, h->counter, h->next_index, h->written_ms);
    if (fsutil_replace_file(path, text, (size_t)len, err) != 0)
        return -1;
    *seen = (struct heads_seen){.has = 1, .counter = h->counter, .next_index = h->next_index,
                                .written_ms = h->written_ms};
    snprintf(seen->generation, sizeof seen->generation, "%s", h->generation);
    return 0;
}
