/* verify.c - checking a whole replica (verify.h).
 *
 * For each generation of each database, every object is read in full
 * (decrypted, chunk-authenticated, payload hash checked) through the same
 * parsers restore uses (common/archive.c), then the structure is checked:
 *
 *  - each object's header matches its name (generation, index, times);
 *  - no two objects share a snapshot's or a segment's index;
 *  - a generation's segments form one run of consecutive indexes that
 *    starts at a snapshot with the same index (retention only removes
 *    every segment before its anchor snapshot, or all of them; anything
 *    else is a gap). Undetectable from the listing alone: the loss of
 *    the newest segments (the heads below tell), of a snapshot that
 *    segments bridge, or of the first segments of a run when a snapshot
 *    follows them exactly;
 *  - along a run, each segment's prev_hash is the hash of the one before,
 *    and the first one's is the chain hash its snapshot recorded;
 *  - commit times never go backwards along a run, and each segment's
 *    times lie within the range its name gives;
 *  - a generation has at least one snapshot;
 *  - the archive's end against the generations' heads (heads.h): no
 *    segment a head names is missing, no generation a head names as its
 *    successor, no head older than the newest this host saw; generations
 *    without a head (written before heads) are noted;
 *  - each delta matches its name, covers segments present in the replica,
 *    and its chain hashes in and out are those of the segments at its
 *    ends (its commit times too).
 *
 * Every object is read as the object of its key: one written for another
 * database or place is a problem ("belongs to another database or
 * place", object.h). Objects written before that binding (envelope
 * versions 1 and 2) are counted and noted per generation: they pass the
 * checks above, but nothing in them ties them to this database.
 *
 * Every problem is reported with the object it concerns; the exit status
 * is 0 only when there is none. --deep then restores the newest point into
 * a scratch file and runs integrity_check on it (restore.c), twice when
 * there are deltas: with them and from the segments alone, and the two
 * files must be identical. */
#include "verify.h"

#include "../common/archive.h"
#include "../common/fsutil.h"
#include "../common/heads.h"
#include "../common/rdb.h"
#include "../common/targets.h"
#include "restore.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void problem(struct verify_report *rep, const char *object, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(struct verify_report *rep, const char *object, const char *fmt, ...)
{
    char what[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    rep->problems++;
    rep->problem(rep->ctx, object, what);
}

/* Reads every page of a snapshot so its payload hash is checked. */
static int ignore_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    (void)ctx, (void)page_number, (void)page, (void)err;
    return 0;
}

struct segment_times {
    int64_t previous_ms;     /* last commit time seen along the run */
    int backwards;
};

static int check_txn_time(void *ctx, const struct txn_header *txn, struct tm_error *err)
{
    (void)err;
    struct segment_times *times = ctx;
    if (txn->time_ms < times->previous_ms)
        times->backwards = 1;
    times->previous_ms = txn->time_ms;
    return 0;
}

/* The snapshot with this index, or NULL. */
static const struct catalog_snapshot *snapshot_at(const struct catalog_generation *gen, uint64_t index)
{
    for (size_t i = 0; i < gen->snapshot_count; i++)
        if (gen->snapshots[i].index == index)
            return &gen->snapshots[i];
    return NULL;
}

static void verify_snapshots(struct storage *st, const struct crypto_keyring *key,
                             const struct catalog_generation *gen, uint8_t (*chains)[OBJECT_HASH_BYTES],
                             struct verify_report *rep)
{
    struct snapshot_visitor visitor = {NULL, ignore_page, NULL};
    for (size_t i = 0; i < gen->snapshot_count; i++) {
        const struct catalog_snapshot *snap = &gen->snapshots[i];
        struct snapshot_header h;
        struct tm_error err;
        rep->objects++;
        memset(chains[i], 0, OBJECT_HASH_BYTES);
        if (snapshot_read(st, snap->key, key, &visitor, &h, &err) != 0) {
            problem(rep, snap->key, "%s", err.msg);
            continue;
        }
        memcpy(chains[i], h.chain_hash, OBJECT_HASH_BYTES);
        rep->predating += h.predates_binding != 0;
        if (strcmp(h.generation, gen->id) != 0 || h.index != snap->index || h.time_ms != snap->time_ms)
            problem(rep, snap->key, "its header (generation %s, index %" PRIu64 ", time %" PRId64
                    ") does not match its name", h.generation, h.index, h.time_ms);
        if (snap->index == 0) {
            uint8_t start[OBJECT_HASH_BYTES];
            archive_chain_start(gen->id, start);
            if (memcmp(start, h.chain_hash, sizeof start) != 0)
                problem(rep, snap->key, "its chain hash is not the start of generation %s", gen->id);
        }
    }
}

/* What verify_segments learnt of each segment, by position in the
 * catalogue, for the deltas' checks. */
struct segment_facts {
    int read;                                  /* read and checked */
    uint8_t prev_hash[OBJECT_HASH_BYTES];
    uint8_t hash[OBJECT_HASH_BYTES];
};

static void verify_segments(struct storage *st, const struct crypto_keyring *key,
                            const struct catalog_generation *gen, uint8_t (*chains)[OBJECT_HASH_BYTES],
                            struct segment_facts *facts, struct verify_report *rep)
{
    uint8_t previous_hash[OBJECT_HASH_BYTES];
    int have_previous = 0;
    struct segment_times times = {INT64_MIN, 0};
    for (size_t i = 0; i < gen->segment_count; i++) {
        const struct catalog_segment *seg = &gen->segments[i];
        rep->objects++;
        if (i > 0 && gen->segments[i - 1].index == seg->index) {
            problem(rep, seg->key, "two segments have index %016" PRIx64 " (the other is '%s')", seg->index,
                    gen->segments[i - 1].key);
            have_previous = 0;
            continue;
        }
        int run_start = i == 0 || gen->segments[i - 1].index + 1 != seg->index;
        const struct catalog_snapshot *base = run_start ? snapshot_at(gen, seg->index) : NULL;
        if (run_start && i > 0) {
            problem(rep, seg->key, "gap: segment(s) %016" PRIx64 " to %016" PRIx64 " are missing before it",
                    gen->segments[i - 1].index + 1, seg->index - 1);
        } else if (run_start && !base) {
            problem(rep, seg->key, "no snapshot precedes this segment in generation %s", gen->id);
        }
        if (run_start) {
            have_previous = base != NULL;
            if (base)
                memcpy(previous_hash, chains[base - gen->snapshots], sizeof previous_hash);
            times.previous_ms = base ? base->time_ms : INT64_MIN;
        }
        struct segment_visitor visitor = {NULL, check_txn_time, NULL, &times};
        struct segment_header h;
        uint8_t hash[OBJECT_HASH_BYTES];
        struct tm_error err;
        times.backwards = 0;
        if (segment_read(st, seg->key, key, &visitor, &h, hash, &err) != 0) {
            problem(rep, seg->key, "%s", err.msg);
            have_previous = 0;
            continue;
        }
        rep->predating += h.predates_binding != 0;
        if (strcmp(h.generation, gen->id) != 0 || h.index != seg->index || h.first_time_ms != seg->first_ms ||
            h.last_time_ms != seg->last_ms)
            problem(rep, seg->key, "its header (generation %s, index %016" PRIx64 ") does not match its name "
                    "(moved or renamed object)", h.generation, h.index);
        else if (have_previous && memcmp(previous_hash, h.prev_hash, sizeof previous_hash) != 0)
            problem(rep, seg->key, "chain broken: it does not follow the object before it");
        if (times.backwards || h.first_time_ms > h.last_time_ms)
            problem(rep, seg->key, "commit times go backwards");
        facts[i].read = 1;
        memcpy(facts[i].prev_hash, h.prev_hash, OBJECT_HASH_BYTES);
        memcpy(facts[i].hash, hash, OBJECT_HASH_BYTES);
        memcpy(previous_hash, hash, sizeof previous_hash);
        have_previous = 1;
        /* a snapshot taken after this segment recorded this hash */
        for (size_t k = 0; k < gen->snapshot_count; k++)
            if (gen->snapshots[k].index == seg->index + 1 && memcmp(chains[k], hash, sizeof hash) != 0 &&
                memcmp(chains[k], (uint8_t[OBJECT_HASH_BYTES]){0}, OBJECT_HASH_BYTES) != 0)
                problem(rep, gen->snapshots[k].key, "its chain hash does not match segment '%s' before it", seg->key);
    }
}

/* The catalogue position of segment `index`, or -1. */
static long segment_position(const struct catalog_generation *gen, uint64_t index)
{
    size_t low = 0, high = gen->segment_count;
    while (low < high) {
        size_t mid = (low + high) / 2;
        if (gen->segments[mid].index < index)
            low = mid + 1;
        else
            high = mid;
    }
    return low < gen->segment_count && gen->segments[low].index == index ? (long)low : -1;
}

static void verify_deltas(struct storage *st, const struct crypto_keyring *key,
                          const struct catalog_generation *gen, const struct segment_facts *facts,
                          struct verify_report *rep)
{
    struct delta_visitor visitor = {NULL, ignore_page, NULL};
    for (size_t i = 0; i < gen->delta_count; i++) {
        const struct catalog_delta *delta = &gen->deltas[i];
        struct delta_header h;
        struct tm_error err;
        rep->objects++;
        if (delta_read(st, delta->key, key, &visitor, &h, &err) != 0) {
            problem(rep, delta->key, "%s", err.msg);
            continue;
        }
        rep->predating += h.predates_binding != 0;
        if (strcmp(h.generation, gen->id) != 0 || h.first_index != delta->first_index ||
            h.end_index != delta->end_index || h.first_time_ms != delta->first_ms || h.last_time_ms != delta->last_ms) {
            problem(rep, delta->key, "its header does not match its name (moved or renamed object)");
            continue;
        }
        long first = segment_position(gen, h.first_index), last = segment_position(gen, h.end_index - 1);
        if (first < 0 || last < 0 || (uint64_t)(last - first) != h.end_index - 1 - h.first_index) {
            problem(rep, delta->key, "it covers segments %016" PRIx64 " to %016" PRIx64 ", not all in the replica",
                    h.first_index, h.end_index - 1);
            continue;
        }
        if (!facts[first].read || !facts[last].read)
            continue;   /* the unreadable segment is reported already */
        if (memcmp(facts[first].prev_hash, h.chain_in, OBJECT_HASH_BYTES) != 0 ||
            memcmp(facts[last].hash, h.chain_out, OBJECT_HASH_BYTES) != 0)
            problem(rep, delta->key, "its chain hashes are not those of segments %016" PRIx64 " and %016" PRIx64,
                    h.first_index, h.end_index - 1);
        else if (h.first_time_ms != gen->segments[first].first_ms || h.last_time_ms != gen->segments[last].last_ms)
            problem(rep, delta->key, "its commit times differ from those of the segments it covers");
    }
}

/* ---------------------------------------------------------------- Redis */

static int rdb_bytes(void *ctx, const uint8_t *data, size_t len, struct tm_error *err)
{
    (void)err;
    rdb_check_update(ctx, data, len);
    return 0;
}

struct redis_times {
    int64_t previous_ms;
    int backwards;
};

static int redis_unit_time(void *ctx, int64_t time_ms, const uint8_t *data, size_t len, struct tm_error *err)
{
    (void)data, (void)len, (void)err;
    struct redis_times *times = ctx;
    if (time_ms < times->previous_ms)
        times->backwards = 1;
    times->previous_ms = time_ms;
    return 0;
}

/* A Redis generation: its RDB (payload hash and CRC64), then its
 * segments: names, chain and replication offsets continuous from the
 * RDB's, arrival times never going backwards. */
/* The RDBs; the first one's chain hash and replication offset are where
 * the segments continue from (*have_chain set when it was read). */
static void verify_redis_snapshots(struct storage *st, const struct crypto_keyring *key,
                                   const struct catalog_generation *gen, uint8_t chain[OBJECT_HASH_BYTES],
                                   uint64_t *offset, int *have_chain, struct verify_report *rep)
{
    for (size_t i = 0; i < gen->snapshot_count; i++) {
        const struct catalog_snapshot *snap = &gen->snapshots[i];
        struct rdb_check check;
        rdb_check_init(&check);
        struct redis_snapshot_visitor visitor = {NULL, rdb_bytes, &check};
        struct redis_snapshot_header h;
        struct tm_error err;
        int unchecked;
        rep->objects++;
        if (redis_snapshot_read(st, snap->key, key, &visitor, &h, &err) != 0 ||
            rdb_check_finish(&check, &unchecked, &err) != 0) {
            problem(rep, snap->key, "%s", err.msg);
            continue;
        }
        rep->predating += h.predates_binding != 0;
        if (strcmp(h.generation, gen->id) != 0 || h.index != snap->index || h.time_ms != snap->time_ms)
            problem(rep, snap->key, "its header does not match its name (moved or renamed object)");
        if (h.index == 0) {
            memcpy(chain, h.chain_hash, OBJECT_HASH_BYTES);
            *offset = h.offset;
            *have_chain = 1;
        }
    }
}

static void verify_redis_generation(struct storage *st, const struct crypto_keyring *key,
                                    const struct catalog_generation *gen, struct verify_report *rep)
{
    uint8_t chain[OBJECT_HASH_BYTES];
    uint64_t offset = 0;
    int have_chain = 0;
    if (gen->snapshot_count == 0)
        problem(rep, gen->id, "generation has no snapshot: none of it can be restored");
    verify_redis_snapshots(st, key, gen, chain, &offset, &have_chain, rep);
    struct redis_times times = {INT64_MIN, 0};
    for (size_t i = 0; i < gen->segment_count; i++) {
        const struct catalog_segment *seg = &gen->segments[i];
        rep->objects++;
        if (seg->index != i) {
            problem(rep, seg->key, "gap: segment(s) %016zx to %016" PRIx64 " are missing before it", i, seg->index - 1);
            have_chain = 0;
        }
        struct redis_segment_visitor visitor = {NULL, redis_unit_time, &times};
        struct redis_segment_header h;
        uint8_t hash[OBJECT_HASH_BYTES];
        struct tm_error err;
        times.backwards = 0;
        if (redis_segment_read(st, seg->key, key, &visitor, &h, hash, &err) != 0) {
            problem(rep, seg->key, "%s", err.msg);
            have_chain = 0;
            continue;
        }
        rep->predating += h.predates_binding != 0;
        if (strcmp(h.generation, gen->id) != 0 || h.index != seg->index || h.first_time_ms != seg->first_ms ||
            h.last_time_ms != seg->last_ms)
            problem(rep, seg->key, "its header does not match its name (moved or renamed object)");
        else if (have_chain && memcmp(chain, h.prev_hash, sizeof chain) != 0)
            problem(rep, seg->key, "chain broken: it does not follow the object before it");
        else if (have_chain && h.start_offset != offset)
            problem(rep, seg->key, "it starts at replication offset %" PRIu64 ", the object before it ends at %" PRIu64,
                    h.start_offset, offset);
        if (times.backwards)
            problem(rep, seg->key, "arrival times go backwards");
        memcpy(chain, hash, sizeof chain);
        offset = h.end_offset;
        have_chain = 1;
    }
}

static void verify_generation(struct storage *st, const struct crypto_keyring *key,
                              const struct catalog_generation *gen, struct verify_report *rep)
{
    if (gen->snapshot_count == 0) {
        problem(rep, gen->id, "generation has no snapshot: none of it can be restored");
    }
    uint8_t (*chains)[OBJECT_HASH_BYTES] = calloc(gen->snapshot_count ? gen->snapshot_count : 1, OBJECT_HASH_BYTES);
    struct segment_facts *facts = calloc(gen->segment_count ? gen->segment_count : 1, sizeof *facts);
    if (!chains || !facts) {
        problem(rep, gen->id, "out of memory");
        free(chains);
        free(facts);
        return;
    }
    verify_snapshots(st, key, gen, chains, rep);
    verify_segments(st, key, gen, chains, facts, rep);
    verify_deltas(st, key, gen, facts, rep);
    free(chains);
    free(facts);
}

/* One line for a generation holding objects older than the binding. */
static void note_predating(struct verify_report *rep, const struct catalog_generation *gen, size_t predating,
                           size_t objects)
{
    if (!predating || !rep->note)
        return;
    char what[300];
    snprintf(what, sizeof what, "%zu of its %zu object(s) predate the identity binding (envelope version 1 or 2, "
             "written by tidemark 0.9 or earlier): checked, but nothing in them ties them to this database",
             predating, objects);
    rep->note(rep->ctx, gen->id, what);
}

/* 1 when the two files hold the same bytes, 0 when not (or unreadable). */
static int same_contents(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    static char block_a[65536], block_b[65536];
    while (same) {
        size_t got_a = fread(block_a, 1, sizeof block_a, fa), got_b = fread(block_b, 1, sizeof block_b, fb);
        if (got_a != got_b || memcmp(block_a, block_b, got_a) != 0)
            same = 0;
        if (got_a == 0 || got_a < sizeof block_a)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* Restores the newest point into a scratch file and checks it; with
 * deltas in the replica, a second time from the segments alone, and the
 * two must be identical. The copies go in a private directory made under
 * TMPDIR (or /var/tmp) with mkdtemp, removed after (fsutil.h). */
static void verify_deep(const struct crypto_keyring *key, const struct config_db *db, const char *replica,
                        int has_deltas, struct verify_report *rep)
{
    char dir[256], scratch[300], plain[300];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/tidemark-verify-XXXXXX", tmp && tmp[0] && strlen(tmp) < 150 ? tmp : "/var/tmp");
    struct tm_error err;
    if (fsutil_private_dir(dir, &err) != 0) {
        problem(rep, db->name, "%s", err.msg);
        return;
    }
    snprintf(scratch, sizeof scratch, "%s/newest.db", dir);
    snprintf(plain, sizeof plain, "%s/segments-only.db", dir);
    struct restore_options opts = {.db_name = db->name, .output = scratch, .replica = replica, .force = 1,
                                   .redis_rdb = db->kind == DB_REDIS,
                                   .accept_missing_tail = 1};   /* a missing tail is reported above */
    struct restore_outcome outcome;
    struct tm_error ignored;   /* removing the scratch copies: nothing to report */
    if (db->kind == DB_REDIS) {   /* a directory holding dump.rdb, loaded by redis-server */
        if (restore_database(db, key, &opts, &outcome, &err) != 0)
            problem(rep, db->name, "restoring the newest point failed: %s", err.msg);
        fsutil_remove_tree(dir, &ignored);
        return;
    }
    if (restore_database(db, key, &opts, &outcome, &err) != 0) {
        problem(rep, db->name, "restoring the newest point failed: %s", err.msg);
    } else if (has_deltas) {
        opts.output = plain;
        opts.no_deltas = 1;
        if (restore_database(db, key, &opts, &outcome, &err) != 0)
            problem(rep, db->name, "restoring the newest point from segments alone failed: %s", err.msg);
        else if (!same_contents(scratch, plain))
            problem(rep, db->name, "the newest point restored with deltas differs from the one replayed from "
                    "segments alone: restore with --no-deltas");
    }
    fsutil_remove_tree(dir, &ignored);
}

/* The archive's end against its heads: each finding is a problem. */
static void verify_heads(struct storage *st, const struct crypto_keyring *key, const char *seen_dir,
                         const struct config_db *db, struct catalog *cat, struct verify_report *rep)
{
    struct heads_report heads;
    struct tm_error err;
    if (heads_check(st, key, db->kind == DB_REDIS, seen_dir, db->name, cat, &heads, &err) != 0)
        return problem(rep, db->name, "cannot read the heads: %s", err.msg);
    for (size_t i = 0; i < heads.count; i++)
        problem(rep, heads.findings[i].generation, "%s: %s", heads_finding_name(heads.findings[i].kind),
                heads.findings[i].text);
    if (heads.seen_problem[0] && rep->note)
        rep->note(rep->ctx, db->name, heads.seen_problem);
    if (heads.generations_without_head && rep->note) {
        char what[200];
        snprintf(what, sizeof what, "%zu generation(s) without a head (written before heads, tidemark 0.10 or "
                 "earlier): their end is not checked", heads.generations_without_head);
        rep->note(rep->ctx, db->name, what);
    }
}

void verify_replica(const struct crypto_keyring *key, const struct config_db *db, size_t index, int deep,
                    const char *seen_dir, struct verify_report *rep)
{
    struct storage *st = NULL;
    struct catalog cat = {0};
    struct tm_error err;
    char replica_index[16];
    snprintf(replica_index, sizeof replica_index, "%zu", index);
    if (targets_open_replica(db, replica_index, &st, &err) != 0 || catalog_load(st, db->name, &cat, &err) != 0) {
        problem(rep, db->replicas[index].name, "%s", err.msg);
    } else {
        if (cat.generation_count == 0)
            problem(rep, db->name, "no backup in this replica");
        size_t deltas = 0;
        for (size_t g = 0; g < cat.generation_count; g++) {
            size_t objects = rep->objects, predating = rep->predating;
            if (db->kind == DB_REDIS)
                verify_redis_generation(st, key, &cat.generations[g], rep);
            else
                verify_generation(st, key, &cat.generations[g], rep);
            deltas += cat.generations[g].delta_count;
            note_predating(rep, &cat.generations[g], rep->predating - predating, rep->objects - objects);
        }
        verify_heads(st, key, seen_dir, db, &cat, rep);
        if (deep && cat.generation_count)
            verify_deep(key, db, replica_index, deltas > 0, rep);
    }
    catalog_release(&cat);
    storage_free(st);
}
