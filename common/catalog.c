/* catalog.c - the catalog of a replica (catalog.h): one listing of
 * NAME/generations, then one of each kind's folder in every generation,
 * every name parsed by layout.c. One loader serves every kind; a table
 * says where each kind's entries go. */
#include "catalog.h"

#include "archive.h"
#include "crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How one kind's entries are made and kept in a generation. */
struct kind_entries {
    enum layout_kind kind;
    size_t entry_size;
    /* fills entry from its parsed name, size and key */
    void (*fill)(void *entry, const struct layout_name *n, uint64_t size, const char *key);
    /* hands the array (count entries) to the generation */
    void (*attach)(struct catalog_generation *gen, void *entries, size_t count);
};

static void fill_snapshot(void *entry, const struct layout_name *n, uint64_t size, const char *key)
{
    struct catalog_snapshot *snap = entry;
    *snap = (struct catalog_snapshot){.index = n->index, .time_ms = n->first_ms, .size = size};
    snprintf(snap->key, sizeof snap->key, "%s", key);
}

static void fill_segment(void *entry, const struct layout_name *n, uint64_t size, const char *key)
{
    struct catalog_segment *seg = entry;
    *seg = (struct catalog_segment){.index = n->index, .first_ms = n->first_ms, .last_ms = n->last_ms,
                                    .size = size};
    snprintf(seg->key, sizeof seg->key, "%s", key);
}

static void fill_delta(void *entry, const struct layout_name *n, uint64_t size, const char *key)
{
    struct catalog_delta *delta = entry;
    *delta = (struct catalog_delta){.first_index = n->index, .end_index = n->end_index,
                                    .first_ms = n->first_ms, .last_ms = n->last_ms, .size = size};
    snprintf(delta->key, sizeof delta->key, "%s", key);
}

static void attach_snapshots(struct catalog_generation *gen, void *entries, size_t count)
{
    gen->snapshots = entries;
    gen->snapshot_count = count;
}

static void attach_segments(struct catalog_generation *gen, void *entries, size_t count)
{
    gen->segments = entries;
    gen->segment_count = count;
}

static int compare_deltas(const void *a, const void *b)
{
    const struct catalog_delta *x = a, *y = b;
    if (x->first_index != y->first_index)
        return x->first_index < y->first_index ? -1 : 1;
    return x->end_index < y->end_index ? -1 : x->end_index > y->end_index;
}

static void attach_deltas(struct catalog_generation *gen, void *entries, size_t count)
{
    qsort(entries, count, sizeof *gen->deltas, compare_deltas);
    gen->deltas = entries;
    gen->delta_count = count;
}

static const struct kind_entries kinds[] = {
    {LAYOUT_SNAPSHOT, sizeof(struct catalog_snapshot), fill_snapshot, attach_snapshots},
    {LAYOUT_SEGMENT, sizeof(struct catalog_segment), fill_segment, attach_segments},
    {LAYOUT_DELTA, sizeof(struct catalog_delta), fill_delta, attach_deltas},
};

/* The objects of one kind in generation `gen` (listing order: by name). */
static int load_kind(struct storage *st, const char *db, struct catalog_generation *gen,
                     const struct kind_entries *k, struct tm_error *err)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_kind_dir(db, gen->id, k->kind, dir, sizeof dir);
    struct storage_list list;
    if (storage_list(st, dir, &list, err) != 0)
        return -1;
    char *entries = calloc(list.count ? list.count : 1, k->entry_size);
    if (!entries) {
        storage_list_release(&list);
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    }
    size_t count = 0;
    for (size_t i = 0; i < list.count; i++) {
        const struct storage_entry *e = &list.entries[i];
        struct layout_name n;
        if (e->is_dir || layout_parse_leaf(k->kind, e->name, &n) != 0)
            continue;
        char key[ARCHIVE_NAME_MAX];
        layout_child_key(dir, e->name, key, sizeof key);
        k->fill(entries + count++ * k->entry_size, &n, e->size, key);
    }
    storage_list_release(&list);
    k->attach(gen, entries, count);
    return 0;
}

/* Whether generation `gen` has a head: its folder's listing. */
static int find_head(struct storage *st, const char *db, struct catalog_generation *gen, struct tm_error *err)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_GENERATIONS, dir, sizeof dir);
    char gen_dir[ARCHIVE_NAME_MAX];
    layout_child_key(dir, gen->id, gen_dir, sizeof gen_dir);
    struct storage_list list;
    if (storage_list(st, gen_dir, &list, err) != 0)
        return -1;
    layout_head_key(db, gen->id, gen->head_key, sizeof gen->head_key);
    gen->head_state = CATALOG_HEAD_ABSENT;
    for (size_t i = 0; i < list.count; i++)
        if (!list.entries[i].is_dir && strcmp(list.entries[i].name, "head") == 0)
            gen->head_state = CATALOG_HEAD_LISTED;
    storage_list_release(&list);
    return 0;
}

int catalog_load(struct storage *st, const char *db, struct catalog *out, struct tm_error *err)
{
    memset(out, 0, sizeof *out);
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_GENERATIONS, dir, sizeof dir);
    struct storage_list gens;
    if (storage_list(st, dir, &gens, err) != 0)
        return -1;
    out->generations = calloc(gens.count ? gens.count : 1, sizeof *out->generations);
    if (!out->generations) {
        storage_list_release(&gens);
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < gens.count && rc == 0; i++) {
        if (!gens.entries[i].is_dir || !layout_generation_id_ok(gens.entries[i].name))
            continue;
        struct catalog_generation *gen = &out->generations[out->generation_count++];
        snprintf(gen->id, sizeof gen->id, "%s", gens.entries[i].name);
        rc = find_head(st, db, gen, err);
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds && rc == 0; k++)
            rc = load_kind(st, db, gen, &kinds[k], err);
    }
    storage_list_release(&gens);
    if (rc != 0)
        catalog_release(out);
    return rc;
}

void catalog_release(struct catalog *cat)
{
    for (size_t i = 0; i < cat->generation_count; i++) {
        free(cat->generations[i].snapshots);
        free(cat->generations[i].segments);
        free(cat->generations[i].deltas);
        free(cat->generations[i].head);
    }
    free(cat->generations);
    memset(cat, 0, sizeof *cat);
}

/* --------------------------------------------------------------- trust
 * A snapshot counts only once its header is read with the key: a name
 * can be planted by anyone who can write to the bucket. */

struct expected_header {
    const char *generation;
    const struct catalog_snapshot *snap;
};

static int header_matches(const struct expected_header *want, const char *generation, uint64_t index,
                          int64_t time_ms, struct tm_error *err)
{
    if (strcmp(generation, want->generation) != 0 || index != want->snap->index || time_ms != want->snap->time_ms)
        return tm_error_setc(err, TM_ERR_CORRUPT, "snapshot '%s': its header does not match its name (generation, "
                             "index or time)", want->snap->key);
    return 0;
}

static int sqlite_header_check(void *ctx, const struct snapshot_header *h, struct tm_error *err)
{
    return header_matches(ctx, h->generation, h->index, h->time_ms, err);
}

static int redis_header_check(void *ctx, const struct redis_snapshot_header *h, struct tm_error *err)
{
    return header_matches(ctx, h->generation, h->index, h->time_ms, err);
}

/* Reads the header only (no on_page / on_data: the reader stops there). */
static int read_header(struct storage *st, const struct crypto_keyring *key, int redis,
                       struct expected_header *want, struct tm_error *err)
{
    if (redis) {
        struct redis_snapshot_visitor visitor = {redis_header_check, NULL, want};
        struct redis_snapshot_header h;
        return redis_snapshot_read(st, want->snap->key, key, &visitor, &h, err);
    }
    struct snapshot_visitor visitor = {sqlite_header_check, NULL, want};
    struct snapshot_header h;
    return snapshot_read(st, want->snap->key, key, &visitor, &h, err);
}

int catalog_check_snapshot(struct storage *st, const struct crypto_keyring *key, int redis, const char *generation,
                           struct catalog_snapshot *snap, struct tm_error *err)
{
    struct expected_header want = {generation, snap};
    struct tm_error read_err = {0};
    snap->why[0] = '\0';
    if (read_header(st, key, redis, &want, &read_err) == 0) {
        snap->trust = CATALOG_VERIFIED;
        return 0;
    }
    enum tm_error_code code = tm_error_code(&read_err);
    int wrong_key = code == TM_ERR_WRONG_KEY;   /* the object is under a key we do not hold */
    if (wrong_key && key && crypto_keyring_public_only(key)) {
        snap->trust = CATALOG_ENVELOPE_ONLY;
        return 0;
    }
    if (code == TM_ERR_CORRUPT || code == TM_ERR_NOT_FOUND || code == TM_ERR_REFUSED || wrong_key) {
        snap->trust = CATALOG_REJECTED;   /* every such error names the object */
        snprintf(snap->why, sizeof snap->why, "%s", read_err.msg);
        return 0;
    }
    *err = read_err;
    return tm_error_prefix(err, "snapshot '%s': ", snap->key);
}

int catalog_check_snapshots(struct storage *st, const struct crypto_keyring *key, int redis, struct catalog *cat,
                            struct tm_error *err)
{
    for (size_t g = 0; g < cat->generation_count; g++) {
        struct catalog_generation *gen = &cat->generations[g];
        for (size_t s = 0; s < gen->snapshot_count; s++)
            if (catalog_check_snapshot(st, key, redis, gen->id, &gen->snapshots[s], err) != 0)
                return -1;
    }
    return 0;
}

/* Reads generation gen's head, when one is listed. */
static int check_head(struct storage *st, const struct crypto_keyring *key, struct catalog_generation *gen,
                      struct tm_error *err)
{
    if (gen->head_state == CATALOG_HEAD_ABSENT)
        return 0;
    struct archive_head head;
    struct tm_error read_err = {0};
    gen->head_why[0] = '\0';
    if (head_read(st, gen->head_key, key, &head, &read_err) == 0) {   /* its generation is its key's */
        free(gen->head);
        if (!(gen->head = malloc(sizeof *gen->head)))
            return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
        *gen->head = head;
        gen->head_state = CATALOG_HEAD_VERIFIED;
        return 0;
    }
    enum tm_error_code code = tm_error_code(&read_err);
    if (code == TM_ERR_WRONG_KEY && key && crypto_keyring_public_only(key)) {
        gen->head_state = CATALOG_HEAD_ENVELOPE_ONLY;
        return 0;
    }
    if (code == TM_ERR_NOT_FOUND) {   /* deleted since the listing */
        gen->head_state = CATALOG_HEAD_ABSENT;
        return 0;
    }
    if (code == TM_ERR_CORRUPT || code == TM_ERR_REFUSED) {   /* wrong key: the key's error, as for any object */
        gen->head_state = CATALOG_HEAD_REJECTED;
        snprintf(gen->head_why, sizeof gen->head_why, "%s", read_err.msg);
        return 0;
    }
    *err = read_err;
    return tm_error_prefix(err, "head '%s': ", gen->head_key);
}

int catalog_check_heads(struct storage *st, const struct crypto_keyring *key, struct catalog *cat,
                        struct tm_error *err)
{
    for (size_t g = 0; g < cat->generation_count; g++)
        if (check_head(st, key, &cat->generations[g], err) != 0)
            return -1;
    return 0;
}

int64_t catalog_generation_newest_ms(const struct catalog_generation *gen)
{
    int64_t newest = INT64_MIN;
    for (size_t i = 0; i < gen->snapshot_count; i++)
        if (gen->snapshots[i].trust != CATALOG_REJECTED && gen->snapshots[i].time_ms > newest)
            newest = gen->snapshots[i].time_ms;
    for (size_t i = 0; i < gen->segment_count; i++)
        if (gen->segments[i].last_ms > newest)
            newest = gen->segments[i].last_ms;
    for (size_t i = 0; i < gen->delta_count; i++)
        if (gen->deltas[i].last_ms > newest)
            newest = gen->deltas[i].last_ms;
    return newest;
}
