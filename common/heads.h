/* heads.h - what the generations' heads (archive.h: struct archive_head)
 * say about what a replica holds, and what this host saw before.
 *
 * A chain of segments proves that nothing is missing *between* two
 * objects; only something written after them can prove that nothing is
 * missing at the *end*. The sidecar writes each generation's head at most
 * every few seconds (replicator/shipper.c), after the objects it names, so
 * a replica's head never names more than the replica holds. heads_examine
 * compares the catalogue (catalog_check_heads read the heads) with them:
 *
 *   missing tail        a head names segments the listing lacks (the newest
 *                       segments were deleted);
 *   missing generation  a head names the generation that followed it, and
 *                       that generation is not there (the newest generation
 *                       was deleted);
 *   rejected head       a head that does not authenticate for its place;
 *   rolled back         the head is older than the newest head this host
 *                       has seen (an older copy put back), or the
 *                       generation of that head is gone with nothing newer.
 *
 * The newest head seen is kept per replica and database in a small file
 * under the state directory (heads_seen_path), written by every command
 * that read the heads (list, verify, restore, drill). What the heads do
 * not cover: objects newer than the newest head (at most
 * SHIPPER_HEAD_INTERVAL_MS of commits), and a head deleted together with
 * the tail on a host that never saw it (reported as "no head", not as an
 * error). */
#ifndef TM_HEADS_H
#define TM_HEADS_H

#include <stddef.h>
#include <stdint.h>

#include "archive.h"
#include "error.h"

enum heads_finding_kind {
    HEADS_MISSING_TAIL,
    HEADS_MISSING_GENERATION,
    HEADS_REJECTED,
    HEADS_ROLLED_BACK,
};

struct heads_finding {
    enum heads_finding_kind kind;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    char about[ARCHIVE_GEN_ID_BYTES + 1];     /* the generation whose end it concerns (a missing
                                                 generation: the one before it) */
    char text[640];                       /* one line, for people */
};

/* The newest head this host saw for one replica and database. */
struct heads_seen {
    int has;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint64_t counter, next_index;
    int64_t written_ms;
};

#define HEADS_FINDINGS_MAX 16

struct heads_report {
    struct heads_finding findings[HEADS_FINDINGS_MAX];
    size_t count;                         /* findings (at most HEADS_FINDINGS_MAX kept) */
    size_t generations_without_head;      /* with objects but no head (older archives) */
    const struct catalog_generation *newest;   /* the generation of the newest verified head, or NULL */
    char seen_problem[512];               /* heads_check: the seen record could not be read or written */
};

/* The findings about cat (heads read by catalog_check_heads), against
 * `seen` (may be NULL or !has). */
void heads_examine(const struct catalog *cat, const struct heads_seen *seen, struct heads_report *out);

/* Short name of a finding's kind: "missing tail" ... */
const char *heads_finding_name(enum heads_finding_kind kind);

/* What a command that reads an archive does with heads: reads them
 * (catalog_check_heads) and the snapshots of those generations that lie
 * past their segments (catalog_check_snapshot; `redis`: Redis ones),
 * examines cat against the newest head this host
 * saw for this replica (storage_describe(st)) and database, and records
 * the newest verified head. seen_dir: the configuration's state-dir, or
 * NULL (heads_seen_path). A damaged or unwritable seen record is not an
 * error of the archive: it is named in out->seen_problem. -1 (err set)
 * only when reading the heads failed (network, memory). */
int heads_check(struct storage *st, const struct crypto_keyring *key, int redis, const char *seen_dir,
                const char *db, struct catalog *cat, struct heads_report *out, struct tm_error *err);

/* Where the newest head seen for (replica, db) is kept: under state_dir
 * (the configuration's state-dir) when set, else $XDG_STATE_HOME/tidemark
 * or ~/.local/state/tidemark: ".../seen-heads/REPLICA/ESCAPED-NAME". */
void heads_seen_path(const char *state_dir, const char *replica, const char *db, char *out, size_t len);

/* Reads the file (a missing file: out->has = 0). */
int heads_seen_load(const char *path, struct heads_seen *out, struct tm_error *err);

/* Records the newest verified head of cat when it is newer than *seen
 * (which is updated); creates the file's directories (mode 0700). */
int heads_seen_record(const char *path, const struct catalog *cat, struct heads_seen *seen, struct tm_error *err);

#endif
