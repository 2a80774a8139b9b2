/* test_shipper.c - the shipper (replicator/shipper.c) from a real WAL to
 * encrypted archive objects in a real spool: a SQLite writer in another
 * process (sql_writer.h) commits, the tailer scans, the shipper publishes
 * segments and a snapshot; the objects, read back from the replica's
 * queue with the archive readers, hold exactly the commits SQLite made
 * (count, sizes, frame counts) and their pages rebuild the database's
 * fingerprint at every commit; segments chain by hash, and a snapshot
 * holds the database as of the last commit shipped. */
#include "harness.h"

#include "../../common/crypto.h"
#include "../../replicator/shipper.h"
#include "sql_writer.h"

#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char *queue_names[] = {"file"};

struct fixture {
    char db[512], image[512], state[512];
    struct sql_writer writer;
    struct tailer *tailer;
    struct spool *spool;
    struct crypto_keyring *key;
    struct shipper shipper;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fixture_open(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->db, sizeof f->db, "%s/app.db", harness_tmpdir());
    snprintf(f->image, sizeof f->image, "%s/image.db", harness_tmpdir());
    snprintf(f->state, sizeof f->state, "%s/state", harness_tmpdir());
    uint8_t raw[CRYPTO_KEY_BYTES];
    memset(raw, 0x5a, sizeof raw);
    struct tm_error err = {0};
    int added;
    size_t removed;
    if (sql_writer_create(f->db) != 0 || sql_writer_copy_file(f->db, f->image) != 0 ||
        sql_writer_start(&f->writer, f->db) != 0 || crypto_keyring_new(&f->key, &err) != 0 ||
        crypto_keyring_add_bytes(f->key, raw, &err) != 0 ||
        spool_open(f->state, queue_names, 1, 1, &f->spool, &added, &removed, &err) != 0 ||
        tailer_open(f->db, TAILER_ENGINE_SQLITE, &f->tailer, &err) != 0 || tailer_restart_at_pin(f->tailer, &err) != TAILER_OK) {
        fprintf(stderr, "  fixture: %s\n", err.msg);
        return -1;
    }
    f->shipper = (struct shipper){.db_name = "app", .key = f->key, .spool = f->spool};
    shipper_new_generation(&f->shipper, now_ms());
    return 0;
}

static void fixture_close(struct fixture *f)
{
    tailer_close(f->tailer);
    sql_writer_stop(&f->writer);
    spool_free(f->spool);
    crypto_keyring_free(f->key);
}

/* One commit of a segment as read back: its header and its pages. */
struct read_txn {
    struct txn_header header;
    uint32_t pages_seen;
};

/* Reading a segment: each page goes to the image at once; at each new
 * transaction (and at the end) the image's fingerprint must be the one
 * SQLite reported for the previous one. */
struct segment_check {
    const char *image;
    int fd;
    uint32_t page_size;
    const struct sql_truth *truths;
    size_t count, seen;
    uint32_t frames_before;    /* WAL frame the first commit follows */
    int64_t last_time_ms;
    char mismatch[300];
};

static int check_previous(struct segment_check *c, struct tm_error *err)
{
    if (c->seen == 0)
        return 0;
    char print[128] = "";
    if (sql_writer_file_fingerprint(c->image, print, sizeof print) != 0 ||
        strcmp(print, c->truths[c->seen - 1].print) != 0) {
        snprintf(c->mismatch, sizeof c->mismatch, "after commit %zu the pages give '%s', SQLite had '%s'", c->seen,
                 print, c->truths[c->seen - 1].print);
        return tm_error_set(err, "%s", c->mismatch);
    }
    return 0;
}

static int on_txn(void *ctx, const struct txn_header *txn, struct tm_error *err)
{
    struct segment_check *c = ctx;
    if (check_previous(c, err) != 0)
        return -1;
    if (c->seen == c->count)
        return tm_error_set(err, "more commits than were made");
    const struct sql_truth *want = &c->truths[c->seen];
    uint32_t frames = want->end_frame - (c->seen ? c->truths[c->seen - 1].end_frame : c->frames_before);
    if (txn->db_size != want->db_size || txn->frame_count != frames || txn->time_ms < c->last_time_ms) {
        snprintf(c->mismatch, sizeof c->mismatch, "commit %zu: %u pages, %u frames (SQLite: %u, %u)", c->seen + 1,
                 txn->db_size, txn->frame_count, want->db_size, frames);
        return tm_error_set(err, "%s", c->mismatch);
    }
    c->last_time_ms = txn->time_ms;
    c->seen++;
    return ftruncate(c->fd, (off_t)txn->db_size * c->page_size) == 0 ? 0 : tm_error_set(err, "ftruncate");
}

static int on_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    struct segment_check *c = ctx;
    if (pwrite(c->fd, page, c->page_size, (off_t)(page_number - 1) * c->page_size) != (ssize_t)c->page_size)
        return tm_error_set(err, "cannot write the image");
    return 0;
}

/* The head of the replica's queue: the key and a storage holding it. */
static int queue_head(struct fixture *f, char *key, size_t key_len, struct storage **dir, char *name, size_t name_len)
{
    char path[PATH_MAX];
    struct tm_error err;
    if (!spool_queue_head(f->spool, 0, key, key_len, path, sizeof path))
        return -1;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    snprintf(name, name_len, "%s", slash + 1);
    return storage_file_open(path, dir, &err);
}

/* Reads the next segment of the queue, checking it against truths[count]
 * (following WAL frame `frames_before`) by applying it to the image; its
 * header and hash into the outputs; the segment leaves the queue. */
static void read_segment(struct fixture *f, const struct sql_truth *truths, size_t count, uint32_t frames_before,
                         struct segment_header *header, uint8_t hash[OBJECT_HASH_BYTES])
{
    char key[ARCHIVE_NAME_MAX], name[ARCHIVE_NAME_MAX + 32];
    struct storage *dir = NULL;
    ASSERT_EQ(queue_head(f, key, sizeof key, &dir, name, sizeof name), 0);
    ASSERT_STR_CONTAINS(key, "/segments/");
    struct segment_check check = {.image = f->image, .fd = open(f->image, O_RDWR), .page_size = 4096,
                                  .truths = truths, .count = count, .frames_before = frames_before};
    ASSERT_TRUE(check.fd >= 0);
    struct segment_visitor visitor = {.on_txn = on_txn, .on_page = on_page, .ctx = &check};
    struct tm_error err = {0};
    int rc = segment_read_as(dir, name, key, f->key, &visitor, header, hash, &err);
    close(check.fd);
    storage_free(dir);
    if (rc == 0)
        rc = check_previous(&check, &err);
    if (rc != 0)
        fprintf(stderr, "  %s: %s\n", key, err.msg);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(check.seen, count);
    ASSERT_EQ(header->txn_count, count);
    ASSERT_EQ(header->first_frame, frames_before + 1);
    ASSERT_EQ(header->end.frame, truths[count - 1].end_frame);
    ASSERT_STR_EQ(header->generation, f->shipper.generation);
    ASSERT_EQ(spool_queue_done(f->spool, 0, &err), 0);
}

static void test_segments_hold_exactly_the_commits_and_chain(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth first[8], second[4];
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 8, first), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    size_t pending;
    tailer_pending(f.tailer, &pending);
    ASSERT_EQ(pending, 0);
    ASSERT_EQ(tailer_shipped(f.tailer).frame, first[7].end_frame);
    ASSERT_EQ(f.shipper.next_index, 1);
    ASSERT_EQ(f.shipper.commits_shipped, 8);
    ASSERT_EQ(spool_queue_length(f.spool, 0), 1);
    ASSERT_EQ(sql_writer_transactions(&f.writer, 9, 4, second), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    ASSERT_EQ(f.shipper.next_index, 2);
    ASSERT_EQ(f.shipper.commits_shipped, 12);
    /* nothing pending: no segment */
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    ASSERT_EQ(spool_queue_length(f.spool, 0), 2);

    struct segment_header h0, h1;
    uint8_t hash0[OBJECT_HASH_BYTES], hash1[OBJECT_HASH_BYTES], start[OBJECT_HASH_BYTES];
    read_segment(&f, first, 8, 0, &h0, hash0);
    ASSERT_PASSING();
    read_segment(&f, second, 4, first[7].end_frame, &h1, hash1);
    ASSERT_PASSING();
    ASSERT_EQ(h0.index, 0);
    ASSERT_EQ(h1.index, 1);
    archive_chain_start(f.shipper.generation, start);
    ASSERT_TRUE(memcmp(h0.prev_hash, start, OBJECT_HASH_BYTES) == 0);
    ASSERT_TRUE(memcmp(h1.prev_hash, hash0, OBJECT_HASH_BYTES) == 0);
    ASSERT_TRUE(memcmp(f.shipper.chain, hash1, OBJECT_HASH_BYTES) == 0);
    ASSERT_TRUE(h0.last_time_ms <= h1.first_time_ms);
    /* the spool records where the archive ends */
    struct spool_position end;
    ASSERT_EQ(spool_position(f.spool, &end), 1);
    ASSERT_EQ(end.next_index, 2);
    ASSERT_EQ(end.wal.frame, second[3].end_frame);
    ASSERT_TRUE(memcmp(end.chain, hash1, OBJECT_HASH_BYTES) == 0);
    fixture_close(&f);
}

/* Commits of about 2 MiB of pages each (random, so that compressing
 * them takes the writer thread a while): with 1 MiB batches, a segment
 * of them is read in several turns. */
static int write_large_commits(struct fixture *f, int first_key, int count, struct sql_truth *truths)
{
    for (int i = 0; i < count; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO t VALUES (%d, hex(randomblob(1048576)))", first_key + i);
        if (sql_writer_run(&f->writer, sql, &truths[i]) != 0)
            return -1;
    }
    return 0;
}

/* The shipper's `beside`, as the loop's pin.c would be: counts its
 * calls; at the first, the application commits twice more and the
 * tailer scans them (the tailer is this thread's while the segment is
 * written); or it reports continuity lost. */
struct beside_probe {
    struct fixture *f;
    int calls, lose_continuity;
    struct sql_truth later[2];
    int later_rc, scan_rc;
};

static int probe_beside(void *arg, struct tm_error *err)
{
    struct beside_probe *probe = arg;
    if (probe->calls++ == 0 && !probe->lose_continuity) {
        probe->later_rc = sql_writer_transactions(&probe->f->writer, 101, 2, probe->later);
        probe->scan_rc = tailer_scan(probe->f->tailer, err);
    }
    if (probe->lose_continuity)
        return tm_error_set(err, "test: the WAL was replaced"), 1;
    return 0;
}

/* A large segment is written on its own thread while this one runs
 * `beside`: the commits scanned meanwhile stay pending (shipped in the
 * next segment), and both segments hold exactly their commits. */
static void test_segment_written_beside_the_loop(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth large[4];
    struct tm_error err = {0};
    ASSERT_EQ(write_large_commits(&f, 1, 4, large), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    struct beside_probe probe = {.f = &f};
    f.shipper.beside = probe_beside;
    f.shipper.beside_arg = &probe;
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    ASSERT_TRUE(probe.calls >= 1);
    ASSERT_EQ(probe.later_rc, 0);
    ASSERT_EQ(probe.scan_rc, TAILER_OK);
    size_t pending;
    tailer_pending(f.tailer, &pending);
    ASSERT_EQ(pending, 2);
    ASSERT_EQ(tailer_shipped(f.tailer).frame, large[3].end_frame);
    ASSERT_EQ(f.shipper.commits_shipped, 4);
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    tailer_pending(f.tailer, &pending);
    ASSERT_EQ(pending, 0);
    ASSERT_EQ(f.shipper.next_index, 2);

    struct segment_header h0, h1;
    uint8_t hash0[OBJECT_HASH_BYTES], hash1[OBJECT_HASH_BYTES];
    read_segment(&f, large, 4, 0, &h0, hash0);
    ASSERT_PASSING();
    read_segment(&f, probe.later, 2, large[3].end_frame, &h1, hash1);
    ASSERT_PASSING();
    ASSERT_TRUE(memcmp(h1.prev_hash, hash0, OBJECT_HASH_BYTES) == 0);
    fixture_close(&f);
}

/* A segment abandoned: nothing in the spool, the index and chain as
 * before (`chain`), and `pending` commits still pending. */
static void check_nothing_published(struct fixture *f, const uint8_t chain[OBJECT_HASH_BYTES], size_t pending)
{
    ASSERT_EQ(spool_queue_length(f->spool, 0), 0);
    ASSERT_EQ(f->shipper.next_index, 0);
    ASSERT_TRUE(memcmp(f->shipper.chain, chain, OBJECT_HASH_BYTES) == 0);
    size_t still_pending;
    tailer_pending(f->tailer, &still_pending);
    ASSERT_EQ(still_pending, pending);
}

/* Continuity lost while a segment's frames were still being read: the
 * segment is abandoned (nothing in the spool, the index and chain as
 * they were), its commits stay pending, and the caller hears why. */
static void test_segment_abandoned_when_continuity_is_lost_beside(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth large[4];
    struct tm_error err = {0};
    ASSERT_EQ(write_large_commits(&f, 1, 4, large), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    uint8_t chain[OBJECT_HASH_BYTES];
    memcpy(chain, f.shipper.chain, sizeof chain);
    struct beside_probe probe = {.f = &f, .lose_continuity = 1};
    f.shipper.beside = probe_beside;
    f.shipper.beside_arg = &probe;
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_BROKEN);
    ASSERT_STR_CONTAINS(err.msg, "the WAL was replaced");
    ASSERT_EQ(probe.calls, 1);
    check_nothing_published(&f, chain, 4);
    fixture_close(&f);
}

/* A WAL file that shrank under frames scanned (what the Turso engine's
 * TRUNCATE does between a scan and a ship): SHIPPER_RESCAN, nothing
 * published, the commits still pending - not a spool error. */
static void test_wal_shrunk_under_scanned_frames_asks_for_a_scan(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[3];
    struct tm_error err = {0};
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 3, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    uint8_t chain[OBJECT_HASH_BYTES];
    memcpy(chain, f.shipper.chain, sizeof chain);
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", f.db);
    ASSERT_EQ(truncate(wal, 32 + 24 + 4096), 0);   /* the header and frame 1 stay */
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_RESCAN);
    ASSERT_STR_CONTAINS(err.msg, "no longer in the file");
    check_nothing_published(&f, chain, 3);
    fixture_close(&f);
}

/* The delta that 4 segments complete states the database's size after
 * the last of them (its writer thread built it before the caller heard of
 * the segment: 0.14.7's first cut stated the size before it, and a
 * restore through it failed its check). */
static void test_delta_states_the_size_after_its_last_segment(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    char store[PATH_MAX];
    snprintf(store, sizeof store, "%s/delta-pages", harness_tmpdir());
    struct delta_builder *deltas = NULL;
    struct tm_error err = {0};
    ASSERT_EQ(delta_builder_open(store, &deltas, &err), 0);
    delta_builder_reset(deltas, 0, 4096);
    f.shipper.deltas = deltas;
    static const int keys[4] = {1, 2, 3, 6};   /* inserts: the database grows at each */
    struct sql_truth truths[4];
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(sql_writer_transactions(&f.writer, keys[i], 1, &truths[i]), 0);
        ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
        ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    }
    ASSERT_TRUE(truths[3].db_size > truths[2].db_size);
    ASSERT_EQ(f.shipper.deltas_shipped, 1);
    /* stored under its key in a replica, as an uploader would */
    char replica_dir[PATH_MAX];
    snprintf(replica_dir, sizeof replica_dir, "%s/replica", harness_tmpdir());
    struct storage *replica = NULL;
    ASSERT_EQ(storage_file_open(replica_dir, &replica, &err), 0);
    int deltas_read = 0;
    while (spool_queue_length(f.spool, 0) > 0) {
        char key[ARCHIVE_NAME_MAX], path[PATH_MAX];
        ASSERT_TRUE(spool_queue_head(f.spool, 0, key, sizeof key, path, sizeof path));
        if (strstr(key, "/deltas/")) {
            struct delta_header h;
            ASSERT_EQ(storage_put_file(replica, key, path, NULL, NULL, &err), 0);
            ASSERT_EQ(delta_read(replica, key, f.key, NULL, &h, &err), 0);
            ASSERT_EQ(h.first_index, 0);
            ASSERT_EQ(h.end_index, 4);
            ASSERT_EQ(h.db_size, truths[3].db_size);
            deltas_read++;
        }
        ASSERT_EQ(spool_queue_done(f.spool, 0, &err), 0);
    }
    storage_free(replica);
    ASSERT_EQ(deltas_read, 1);
    fixture_close(&f);
    delta_builder_free(deltas);
}

struct snapshot_image {
    int fd;
    uint32_t page_size, pages;
};

static int on_snapshot_page(void *ctx, uint32_t page_number, const uint8_t *page, struct tm_error *err)
{
    struct snapshot_image *s = ctx;
    s->pages++;
    if (page_number != s->pages ||
        pwrite(s->fd, page, s->page_size, (off_t)(page_number - 1) * s->page_size) != (ssize_t)s->page_size)
        return tm_error_set(err, "page %u out of order or not written", page_number);
    return 0;
}

/* A snapshot of the pin's state after shipping: the next index, the
 * chain's current hash, the WAL position shipped, and pages that are the
 * database as of the last commit. */
static void test_snapshot_holds_the_database_as_shipped(void)
{
    struct fixture f;
    ASSERT_EQ(fixture_open(&f), 0);
    struct sql_truth truths[6];
    struct tm_error err;
    ASSERT_EQ(sql_writer_transactions(&f.writer, 1, 6, truths), 0);
    ASSERT_EQ(tailer_scan(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    ASSERT_EQ(tailer_advance_pin(f.tailer, &err), TAILER_OK);
    ASSERT_EQ(tailer_pin_at_shipped(f.tailer), 1);
    char copy[600];
    snprintf(copy, sizeof copy, "%s/snapshot.db", harness_tmpdir());
    uint32_t pages = 0;
    ASSERT_EQ(tailer_snapshot(f.tailer, copy, &pages, NULL, NULL, &err), 0);
    ASSERT_EQ(pages, truths[5].db_size);
    struct wal_position pos = tailer_shipped(f.tailer);
    int64_t taken = now_ms();
    ASSERT_EQ(shipper_snapshot(&f.shipper, copy, 4096, pages, taken, &pos, &err), 0);
    ASSERT_EQ(spool_queue_length(f.spool, 0), 2);
    struct segment_header h0;
    uint8_t hash0[OBJECT_HASH_BYTES];
    read_segment(&f, truths, 6, 0, &h0, hash0);
    ASSERT_PASSING();

    char key[ARCHIVE_NAME_MAX], name[ARCHIVE_NAME_MAX + 32], rebuilt[600];
    struct storage *dir = NULL;
    ASSERT_EQ(queue_head(&f, key, sizeof key, &dir, name, sizeof name), 0);
    ASSERT_STR_CONTAINS(key, "/snapshots/");
    snprintf(rebuilt, sizeof rebuilt, "%s/rebuilt.db", harness_tmpdir());
    struct snapshot_image image = {.fd = open(rebuilt, O_RDWR | O_CREAT | O_TRUNC, 0600), .page_size = 4096};
    ASSERT_TRUE(image.fd >= 0);
    struct snapshot_visitor visitor = {.on_page = on_snapshot_page, .ctx = &image};
    struct snapshot_header h;
    int rc = snapshot_read_as(dir, name, key, f.key, &visitor, &h, &err);
    close(image.fd);
    storage_free(dir);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(image.pages, pages);
    ASSERT_EQ(h.page_count, pages);
    ASSERT_EQ(h.index, 1);
    ASSERT_EQ(h.time_ms, taken);
    ASSERT_STR_EQ(h.generation, f.shipper.generation);
    ASSERT_TRUE(memcmp(h.chain_hash, hash0, OBJECT_HASH_BYTES) == 0);
    ASSERT_EQ(h.wal.valid, 1);
    ASSERT_EQ(h.wal.frame, truths[5].end_frame);
    char print[128];
    ASSERT_EQ(sql_writer_file_fingerprint(rebuilt, print, sizeof print), 0);
    ASSERT_STR_EQ(print, truths[5].print);
    fixture_close(&f);
}

/* ----------------------------------------------------------------- heads
 * The generation's head (archive.h), published by shipper_tick: a spool
 * and a shipper without a WAL, fed a snapshot file and segments with an
 * empty body, at chosen times. */

#define HEAD_GEN1 "20261124T001500123Z-00000001"
#define HEAD_GEN2 "20261125T001500123Z-00000002"
#define HEAD_T0 1795324542000LL

struct bare {
    char state[512], file[600];
    struct spool *spool;
    struct crypto_keyring *key;
    struct shipper shipper;
};

static int bare_open(struct bare *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->state, sizeof b->state, "%s/state", harness_tmpdir());
    snprintf(b->file, sizeof b->file, "%s/page.db", harness_tmpdir());
    uint8_t raw[CRYPTO_KEY_BYTES], page[4096] = {0};
    memset(raw, 0x3c, sizeof raw);
    struct tm_error err = {0};
    int added;
    size_t removed;
    FILE *fp = fopen(b->file, "wb");
    if (!fp || fwrite(page, 1, sizeof page, fp) != sizeof page || fclose(fp) != 0)
        return -1;
    if (crypto_keyring_new(&b->key, &err) != 0 || crypto_keyring_add_bytes(b->key, raw, &err) != 0 ||
        spool_open(b->state, queue_names, 1, 1, &b->spool, &added, &removed, &err) != 0) {
        fprintf(stderr, "  bare: %s\n", err.msg);
        return -1;
    }
    b->shipper = (struct shipper){.db_name = "app", .key = b->key, .spool = b->spool};
    return 0;
}

static void bare_close(struct bare *b)
{
    spool_free(b->spool);
    crypto_keyring_free(b->key);
}

static int empty_body(void *ctx, struct object_writer *w, struct tm_error *err)
{
    (void)ctx, (void)w, (void)err;
    return 0;
}

/* Publishes a segment with no transactions whose last commit is last_ms. */
static int bare_segment(struct bare *b, int64_t last_ms)
{
    struct segment_header h = {.page_size = 4096, .index = b->shipper.next_index, .first_time_ms = last_ms,
                               .last_time_ms = last_ms};
    snprintf(h.generation, sizeof h.generation, "%s", b->shipper.generation);
    memcpy(h.prev_hash, b->shipper.chain, sizeof h.prev_hash);
    uint8_t header[ARCHIVE_HEADER_BYTES];
    segment_header_encode(&h, header);
    struct shipper_segment seg = {.first_ms = last_ms, .last_ms = last_ms, .header = header,
                                  .header_len = sizeof header, .write_body = empty_body,
                                  .end = {.page_size = 4096}, .what = "commits"};
    struct tm_error err = {0};
    if (shipper_publish_segment(&b->shipper, &seg, NULL, &err) != 0) {
        fprintf(stderr, "  segment: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int bare_snapshot(struct bare *b, int64_t time_ms)
{
    struct tm_error err = {0};
    if (shipper_snapshot(&b->shipper, b->file, 4096, 1, time_ms, NULL, &err) != 0) {
        fprintf(stderr, "  snapshot: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Takes the next object of the queue: its key into key; when it is a
 * head, reads it (bound to its key, with the key) into *h and returns 1;
 * 0 for another object, -1 when the queue is empty or the head does not
 * read. */
static int take_queued(struct bare *b, char *key, size_t key_len, struct archive_head *h)
{
    char path[PATH_MAX];
    struct tm_error err = {0};
    if (!spool_queue_head(b->spool, 0, key, key_len, path, sizeof path))
        return -1;
    int is_head = strstr(key, "/head") != NULL;
    int rc = 0;
    if (is_head) {
        char *slash = strrchr(path, '/');
        *slash = '\0';
        struct storage *dir = NULL;
        struct object_reader *r = NULL;
        uint8_t payload[ARCHIVE_HEAD_BYTES];
        rc = storage_file_open(path, &dir, &err);
        if (rc == 0)
            rc = object_reader_open(dir, slash + 1, key, OBJECT_HEAD, b->key, &r, &err);
        if (rc == 0) {
            rc = object_read(r, payload, sizeof payload, &err);
            if (rc == 0)
                rc = object_reader_finish(r, NULL, &err);
            object_reader_close(r);
        }
        if (rc == 0)
            rc = head_decode(payload, h, &err);
        storage_free(dir);
        if (rc != 0)
            fprintf(stderr, "  head %s: %s\n", key, err.msg);
    }
    if (spool_queue_done(b->spool, 0, &err) != 0)
        return -1;
    return rc != 0 ? -1 : is_head;
}

/* A head follows the objects it names, at most every
 * SHIPPER_HEAD_INTERVAL_MS and only when objects were published since the
 * last one; none before the generation has its snapshot. */
static void test_head_published_after_objects(void)
{
    struct bare b;
    ASSERT_EQ(bare_open(&b), 0);
    shipper_use_generation(&b.shipper, HEAD_GEN1);
    int64_t t = HEAD_T0;
    shipper_tick(&b.shipper, t);                          /* no snapshot yet: no head */
    ASSERT_EQ(spool_queue_length(b.spool, 0), 0);
    ASSERT_EQ(bare_segment(&b, t - 5), 0);               /* segment 0, before the snapshot (a pin's) */
    shipper_tick(&b.shipper, t);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 1);
    ASSERT_EQ(bare_snapshot(&b, t), 0);                   /* snapshot at index 1 */
    ASSERT_EQ(spool_queue_length(b.spool, 0), 2);
    shipper_tick(&b.shipper, t + 1);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 3);
    ASSERT_EQ(b.shipper.heads_written, 1);

    char key[ARCHIVE_NAME_MAX];
    struct archive_head h;
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_STR_CONTAINS(key, "/segments/");
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_STR_CONTAINS(key, "/snapshots/");
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 1);
    ASSERT_STR_EQ(key, "app/generations/" HEAD_GEN1 "/head");
    ASSERT_STR_EQ(h.generation, HEAD_GEN1);
    ASSERT_EQ(h.next_index, 1);
    ASSERT_EQ(h.last_commit_ms, t - 5);
    ASSERT_EQ(h.written_ms, t + 1);
    ASSERT_EQ(h.snapshot_ms, t);
    ASSERT_STR_EQ(h.successor, "");
    ASSERT_TRUE(memcmp(h.chain, b.shipper.chain, OBJECT_HASH_BYTES) == 0);
    uint64_t first_counter = h.counter;
    ASSERT_TRUE(first_counter >= 2);                      /* after the two objects it names */

    /* heads do not count as the archive's last object */
    char last[ARCHIVE_NAME_MAX + 32], last_key[ARCHIVE_NAME_MAX];
    snprintf(last, sizeof last, "%s", spool_last_published(b.spool));
    spool_key_of(last, last_key, sizeof last_key);
    ASSERT_STR_CONTAINS(last_key, "/snapshots/");

    /* nothing new: no head, however long */
    shipper_tick(&b.shipper, t + 60000);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 0);
    /* new objects, but within the interval: not yet */
    ASSERT_EQ(bare_segment(&b, t + 100), 0);
    ASSERT_EQ(bare_segment(&b, t + 200), 0);
    shipper_tick(&b.shipper, t + 1 + SHIPPER_HEAD_INTERVAL_MS - 1);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 2);
    shipper_tick(&b.shipper, t + 1 + SHIPPER_HEAD_INTERVAL_MS);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 3);
    ASSERT_EQ(b.shipper.heads_written, 2);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_STR_CONTAINS(key, "/segments/0000000000000002-");
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 1);
    ASSERT_EQ(h.next_index, 3);
    ASSERT_EQ(h.last_commit_ms, t + 200);
    ASSERT_EQ(h.written_ms, t + 1 + SHIPPER_HEAD_INTERVAL_MS);
    ASSERT_TRUE(h.counter > first_counter);
    ASSERT_TRUE(memcmp(h.chain, b.shipper.chain, OBJECT_HASH_BYTES) == 0);
    snprintf(last, sizeof last, "%s", spool_last_published(b.spool));
    spool_key_of(last, last_key, sizeof last_key);
    ASSERT_STR_CONTAINS(last_key, "/segments/0000000000000002-");

    /* ... and still after a restart (the position file keeps it) */
    spool_free(b.spool);
    int added;
    size_t removed;
    struct tm_error err = {0};
    ASSERT_EQ(spool_open(b.state, queue_names, 1, 1, &b.spool, &added, &removed, &err), 0);
    ASSERT_STR_EQ(spool_last_published(b.spool), last);
    bare_close(&b);
}

/* After a new generation has its snapshot, the last head of the one
 * before is published, naming it as successor, then the new one's. */
static void test_predecessor_head_names_its_successor(void)
{
    struct bare b;
    ASSERT_EQ(bare_open(&b), 0);
    shipper_use_generation(&b.shipper, HEAD_GEN1);
    int64_t t = HEAD_T0;
    ASSERT_EQ(bare_snapshot(&b, t), 0);
    ASSERT_EQ(bare_segment(&b, t + 10), 0);
    ASSERT_EQ(bare_segment(&b, t + 20), 0);
    shipper_tick(&b.shipper, t + 30);
    ASSERT_EQ(b.shipper.heads_written, 1);
    ASSERT_EQ(bare_segment(&b, t + 40), 0);              /* after its last regular head */
    uint8_t gen1_chain[OBJECT_HASH_BYTES];
    memcpy(gen1_chain, b.shipper.chain, sizeof gen1_chain);
    char key[ARCHIVE_NAME_MAX];
    struct archive_head h;
    while (spool_queue_length(b.spool, 0) > 0)
        ASSERT_TRUE(take_queued(&b, key, sizeof key, &h) >= 0);

    shipper_use_generation(&b.shipper, HEAD_GEN2);
    shipper_tick(&b.shipper, t + 100000);                 /* GEN2 has no snapshot: nothing yet */
    ASSERT_EQ(spool_queue_length(b.spool, 0), 0);
    ASSERT_EQ(bare_snapshot(&b, t + 100001), 0);
    shipper_tick(&b.shipper, t + 100002);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 3);
    ASSERT_EQ(b.shipper.heads_written, 3);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_STR_CONTAINS(key, "app/generations/" HEAD_GEN2 "/snapshots/");
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 1);
    ASSERT_STR_EQ(key, "app/generations/" HEAD_GEN1 "/head");
    ASSERT_STR_EQ(h.generation, HEAD_GEN1);
    ASSERT_STR_EQ(h.successor, HEAD_GEN2);
    ASSERT_EQ(h.next_index, 3);
    ASSERT_EQ(h.last_commit_ms, t + 40);
    ASSERT_EQ(h.snapshot_ms, t);
    ASSERT_TRUE(memcmp(h.chain, gen1_chain, OBJECT_HASH_BYTES) == 0);
    uint64_t predecessor_counter = h.counter;
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 1);
    ASSERT_STR_EQ(key, "app/generations/" HEAD_GEN2 "/head");
    ASSERT_STR_EQ(h.successor, "");
    ASSERT_EQ(h.next_index, 0);
    ASSERT_EQ(h.last_commit_ms, 0);
    ASSERT_EQ(h.snapshot_ms, t + 100001);
    ASSERT_TRUE(h.counter > predecessor_counter);
    /* the predecessor's head is published once */
    ASSERT_EQ(bare_segment(&b, t + 200000), 0);
    shipper_tick(&b.shipper, t + 200000);
    ASSERT_EQ(b.shipper.heads_written, 4);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 1);
    ASSERT_STR_EQ(key, "app/generations/" HEAD_GEN2 "/head");
    ASSERT_EQ(spool_queue_length(b.spool, 0), 0);
    bare_close(&b);
}

/* A generation that never had its snapshot (no head) gets no head naming
 * a successor: there is nothing a head could say about it. */
static void test_no_predecessor_head_before_its_snapshot(void)
{
    struct bare b;
    ASSERT_EQ(bare_open(&b), 0);
    shipper_use_generation(&b.shipper, HEAD_GEN1);
    ASSERT_EQ(bare_segment(&b, HEAD_T0), 0);
    shipper_use_generation(&b.shipper, HEAD_GEN2);
    ASSERT_EQ(bare_snapshot(&b, HEAD_T0 + 10), 0);
    shipper_tick(&b.shipper, HEAD_T0 + 20);
    ASSERT_EQ(b.shipper.heads_written, 1);
    char key[ARCHIVE_NAME_MAX];
    struct archive_head h;
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 0);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 1);
    ASSERT_STR_EQ(h.generation, HEAD_GEN2);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 0);
    bare_close(&b);
}

/* After a restart the shipper continues the spool's generation and
 * publishes its head at the first tick, naming the spool's end; its
 * counter keeps growing (the spool's sequence). */
static void test_head_after_restart(void)
{
    struct bare b;
    ASSERT_EQ(bare_open(&b), 0);
    shipper_use_generation(&b.shipper, HEAD_GEN1);
    ASSERT_EQ(bare_snapshot(&b, HEAD_T0), 0);
    ASSERT_EQ(bare_segment(&b, HEAD_T0 + 10), 0);
    ASSERT_EQ(bare_segment(&b, HEAD_T0 + 20), 0);
    shipper_tick(&b.shipper, HEAD_T0 + 30);
    uint8_t chain[OBJECT_HASH_BYTES];
    memcpy(chain, b.shipper.chain, sizeof chain);
    char key[ARCHIVE_NAME_MAX];
    struct archive_head h;
    uint64_t counter = 0;
    while (spool_queue_length(b.spool, 0) > 0) {
        int rc = take_queued(&b, key, sizeof key, &h);
        ASSERT_TRUE(rc >= 0);
        if (rc == 1)
            counter = h.counter;
    }
    ASSERT_TRUE(counter > 0);

    spool_free(b.spool);
    int added;
    size_t removed;
    struct tm_error err = {0};
    ASSERT_EQ(spool_open(b.state, queue_names, 1, 1, &b.spool, &added, &removed, &err), 0);
    b.shipper = (struct shipper){.db_name = "app", .key = b.key, .spool = b.spool};
    struct wal_position pos;
    uint32_t page_size;
    int found;
    ASSERT_EQ(shipper_resume(&b.shipper, &pos, &page_size, &found, &err), 0);
    ASSERT_STR_EQ(b.shipper.generation, HEAD_GEN1);
    shipper_tick(&b.shipper, HEAD_T0 + 40);
    ASSERT_EQ(spool_queue_length(b.spool, 0), 1);
    ASSERT_EQ(take_queued(&b, key, sizeof key, &h), 1);
    ASSERT_STR_EQ(key, "app/generations/" HEAD_GEN1 "/head");
    ASSERT_EQ(h.next_index, 2);
    ASSERT_TRUE(memcmp(h.chain, chain, OBJECT_HASH_BYTES) == 0);
    ASSERT_EQ(h.snapshot_ms, HEAD_T0);
    ASSERT_TRUE(h.counter > counter);
    bare_close(&b);
}

int main(int argc, char **argv)
{
    int status;
    if (sql_writer_main(argc, argv, &status))
        return status;
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"shipper: segments hold exactly the commits, and chain", test_segments_hold_exactly_the_commits_and_chain},
        {"shipper: a segment is written beside the loop, which scans meanwhile", test_segment_written_beside_the_loop},
        {"shipper: continuity lost beside a segment abandons it", test_segment_abandoned_when_continuity_is_lost_beside},
        {"shipper: a WAL shrunk under scanned frames asks for a scan", test_wal_shrunk_under_scanned_frames_asks_for_a_scan},
        {"shipper: a delta states the database's size after its last segment",
         test_delta_states_the_size_after_its_last_segment},
        {"shipper: a snapshot holds the database as shipped", test_snapshot_holds_the_database_as_shipped},
        {"shipper: a head follows the objects it names, at most every interval", test_head_published_after_objects},
        {"shipper: the predecessor's last head names its successor", test_predecessor_head_names_its_successor},
        {"shipper: after a restart the head names the spool's end", test_head_after_restart},
        {"shipper: no predecessor head for a generation without snapshot",
         test_no_predecessor_head_before_its_snapshot},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
