/* layout.c - object keys and names (layout.h).
 *
 * Layout under a replica's root, for a database named NAME:
 *
 *   NAME/generations/GEN/snapshots/IIIIIIIIIIIIIIII-TTTTTTTTTTTTT.snap
 *   NAME/generations/GEN/segments/IIIIIIIIIIIIIIII-FFFFFFFFFFFFF-LLLLLLLLLLLLL.seg
 *   NAME/generations/GEN/deltas/AAAAAAAAAAAAAAAA-BBBBBBBBBBBBBBBB-FFFFFFFFFFFFF-LLLLLLLLLLLLL.delta
 *   NAME/generations/GEN/head
 *   NAME/leases/HOST-PID-MS.lease
 *   NAME/drills/MMMMMMMMMMMMM-REPLICA.json
 *
 * GEN is a generation id "YYYYMMDDTHHMMSSmmmZ-xxxxxxxx" (start time, 8 hex
 * random digits). A generation is one unbroken history: a base snapshot
 * at index 0, then segments 0, 1, 2... each holding the transactions
 * committed after the previous one; later snapshots at index k hold the
 * database as of the end of segment k-1. I, A and B are 16-hex-digit
 * indexes (a delta covers segments [A, B)); T, F and L are Unix
 * milliseconds (snapshot time, first and last commit time) in decimal,
 * zero-padded to 13 digits. Names are for planning only; every field they
 * carry is repeated inside the encrypted payload (archive.c) and checked
 * on restore, and the whole key is authenticated as the object's identity
 * (object.c, envelope version 3).
 *
 * The head is the one key rewritten: the generation's newest end, as the
 * sidecar had stored it (archive.h, format in archive.c).
 *
 * A lease's HOST is the host name with '/' and ' ' replaced by '_', MS
 * when it was taken; a drill record's M is when the drill started, its
 * REPLICA the replica's configured name. */
#include "layout.h"

#include "names.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An object kind's folder and file name: `hex` 16-digit hex fields
 * (index, end_index), then `dec` decimal fields (first_ms, last_ms), all
 * joined by '-', then the suffix. */
struct leaf_form {
    const char *folder;
    const char *suffix;
    int hex, dec;
};

static const struct leaf_form leaf_forms[] = {
    [LAYOUT_SNAPSHOT] = {"snapshots", ".snap", 1, 1},
    [LAYOUT_SEGMENT] = {"segments", ".seg", 1, 2},
    [LAYOUT_DELTA] = {"deltas", ".delta", 2, 2},
};

static const char *const area_folders[] = {
    [LAYOUT_GENERATIONS] = "generations",
    [LAYOUT_LEASES] = "leases",
    [LAYOUT_DRILLS] = "drills",
};

void layout_db_dir(const char *db, char *out, size_t len)
{
    if (names_escape(db, out, len) != 0)
        snprintf(out, len, "%s", "name-too-long");   /* config and discovery refuse such names first */
}

void layout_area_dir(const char *db, enum layout_area area, char *out, size_t len)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_db_dir(db, dir, sizeof dir);
    snprintf(out, len, "%s/%s", dir, area_folders[area]);
}

void layout_kind_dir(const char *db, const char *gen, enum layout_kind kind, char *out, size_t len)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_GENERATIONS, dir, sizeof dir);
    snprintf(out, len, "%s/%s/%s", dir, gen, leaf_forms[kind].folder);
}

void layout_child_key(const char *dir, const char *leaf, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", dir, leaf);
}

void layout_object_key(const char *db, const char *gen, enum layout_kind kind, const struct layout_name *n,
                       char *out, size_t len)
{
    const struct leaf_form *form = &leaf_forms[kind];
    const uint64_t hex[2] = {n->index, n->end_index};
    const int64_t dec[2] = {n->first_ms, n->last_ms};
    char leaf[128];
    size_t used = 0;
    for (int i = 0; i < form->hex; i++)
        used += (size_t)snprintf(leaf + used, sizeof leaf - used, "%016" PRIx64 "-", hex[i]);
    for (int i = 0; i < form->dec; i++)
        used += (size_t)snprintf(leaf + used, sizeof leaf - used, "%013" PRId64 "%s", dec[i],
                                 i + 1 < form->dec ? "-" : form->suffix);
    char dir[ARCHIVE_NAME_MAX];
    layout_kind_dir(db, gen, kind, dir, sizeof dir);
    layout_child_key(dir, leaf, out, len);
}

static int parse_hex64(const char *p, size_t digits, uint64_t *out)
{
    uint64_t value = 0;
    for (size_t i = 0; i < digits; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        value = value << 4 | (uint64_t)d;
    }
    *out = value;
    return 0;
}

int layout_parse_leaf(enum layout_kind kind, const char *leaf, struct layout_name *out)
{
    const struct leaf_form *form = &leaf_forms[kind];
    uint64_t hex[2] = {0, 0};
    int64_t dec[2] = {0, 0};
    const char *p = leaf;
    for (int i = 0; i < form->hex; i++, p += 17)
        if (parse_hex64(p, 16, &hex[i]) != 0 || p[16] != '-')
            return -1;
    for (int i = 0; i < form->dec; i++) {
        char *end;
        dec[i] = strtoll(p, &end, 10);
        if (end == p || (i + 1 < form->dec && *end != '-'))
            return -1;
        p = end + (i + 1 < form->dec);
    }
    if (strcmp(p, form->suffix) != 0 || (kind == LAYOUT_DELTA && hex[1] <= hex[0]))
        return -1;
    *out = (struct layout_name){.index = hex[0], .end_index = hex[1], .first_ms = dec[0], .last_ms = dec[1]};
    return 0;
}

void layout_generation_id_new(int64_t now_ms, char out[ARCHIVE_GEN_ID_BYTES + 1])
{
    time_t secs = (time_t)(now_ms / 1000);
    struct tm parts;
    gmtime_r(&secs, &parts);
    char stamp[24];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &parts);
    snprintf(out, ARCHIVE_GEN_ID_BYTES + 1, "%s%03dZ-%08" PRIx32, stamp, (int)(now_ms % 1000),
             randombytes_random());
}

int layout_generation_id_ok(const char *name)
{
    static const char form[] = "DDDDDDDDTDDDDDDDDDZ-HHHHHHHH";
    if (strlen(name) != sizeof form - 1)
        return 0;
    for (size_t i = 0; form[i]; i++) {
        char c = name[i];
        int ok = form[i] == 'D'   ? c >= '0' && c <= '9'
                 : form[i] == 'H' ? (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                                  : c == form[i];
        if (!ok)
            return 0;
    }
    return 1;
}

void layout_lease_key(const char *db, const char *host, int pid, int64_t now_ms, char *out, size_t len)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_LEASES, dir, sizeof dir);
    snprintf(out, len, "%s/%s-%d-%" PRId64 ".lease", dir, host, pid, now_ms);
}

void layout_drill_key(const char *db, int64_t started_ms, const char *replica, char *out, size_t len)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_DRILLS, dir, sizeof dir);
    snprintf(out, len, "%s/%013" PRId64 "-%s.json", dir, started_ms, replica);
}

int layout_is_drill_record(const char *leaf)
{
    size_t len = strlen(leaf);
    return len >= 6 && strcmp(leaf + len - 5, ".json") == 0;
}

void layout_snapshot_key(const char *db, const char *gen, uint64_t index, int64_t time_ms,
                          char *out, size_t len)
{
    struct layout_name n = {.index = index, .first_ms = time_ms};
    layout_object_key(db, gen, LAYOUT_SNAPSHOT, &n, out, len);
}

void layout_segment_key(const char *db, const char *gen, uint64_t index, int64_t first_ms,
                         int64_t last_ms, char *out, size_t len)
{
    struct layout_name n = {.index = index, .first_ms = first_ms, .last_ms = last_ms};
    layout_object_key(db, gen, LAYOUT_SEGMENT, &n, out, len);
}

void layout_delta_key(const char *db, const char *gen, uint64_t first_index, uint64_t end_index,
                       int64_t first_ms, int64_t last_ms, char *out, size_t len)
{
    struct layout_name n = {.index = first_index, .end_index = end_index, .first_ms = first_ms,
                            .last_ms = last_ms};
    layout_object_key(db, gen, LAYOUT_DELTA, &n, out, len);
}

void layout_head_key(const char *db, const char *gen, char *out, size_t len)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_GENERATIONS, dir, sizeof dir);
    snprintf(out, len, "%s/%s/head", dir, gen);
}

int layout_is_head_of(const char *key, const char *gen)
{
    char tail[ARCHIVE_GEN_ID_BYTES + 32];
    int tail_len = snprintf(tail, sizeof tail, "/generations/%s/head", gen);
    size_t key_len = strlen(key);
    return layout_generation_id_ok(gen) && tail_len > 0 && key_len > (size_t)tail_len &&
           strcmp(key + key_len - (size_t)tail_len, tail) == 0;
}
