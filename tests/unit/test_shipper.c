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
        tailer_open(f->db, &f->tailer, &err) != 0 || tailer_restart_at_pin(f->tailer, &err) != TAILER_OK) {
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
    ASSERT_EQ(tailer_scan(f.tailer, now_ms(), &err), TAILER_OK);
    ASSERT_EQ(shipper_ship(&f.shipper, f.tailer, &err), SHIPPER_OK);
    size_t pending;
    tailer_pending(f.tailer, &pending);
    ASSERT_EQ(pending, 0);
    ASSERT_EQ(tailer_shipped(f.tailer).frame, first[7].end_frame);
    ASSERT_EQ(f.shipper.next_index, 1);
    ASSERT_EQ(f.shipper.commits_shipped, 8);
    ASSERT_EQ(spool_queue_length(f.spool, 0), 1);
    ASSERT_EQ(sql_writer_transactions(&f.writer, 9, 4, second), 0);
    ASSERT_EQ(tailer_scan(f.tailer, now_ms(), &err), TAILER_OK);
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
    ASSERT_EQ(tailer_scan(f.tailer, now_ms(), &err), TAILER_OK);
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

int main(int argc, char **argv)
{
    int status;
    if (sql_writer_main(argc, argv, &status))
        return status;
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"shipper: segments hold exactly the commits, and chain", test_segments_hold_exactly_the_commits_and_chain},
        {"shipper: a snapshot holds the database as shipped", test_snapshot_holds_the_database_as_shipped},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
