/* test_lease.c - restore leases (common/lease.h) in a real file replica:
 * the key and body a lease is stored as, which generations are held at
 * a given time (expiry), release, and a lease released between the
 * listing and the read (the storage's "not found" code, not its message,
 * decides that it is skipped). */
#include "harness.h"

#include "../../common/layout.h"
#include "../../common/lease.h"

#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#define NOW_MS 1795324542000LL
#define GEN_A "20261124T001500123Z-0000000a"
#define GEN_B "20261124T001600123Z-0000000b"

static struct storage *open_store(const char *sub)
{
    char root[512];
    snprintf(root, sizeof root, "%s/%s", harness_tmpdir(), sub);
    struct storage *st = NULL;
    struct tm_error err;
    if (storage_file_open(root, &st, &err) != 0)
        fprintf(stderr, "%s\n", err.msg);
    return st;
}

/* The generations lease_active returns, joined by ',' ("" for none;
 * "ERROR" when it fails). */
static void active(struct storage *st, const char *db, int64_t now_ms, char *out, size_t len)
{
    char **list;
    size_t count;
    struct tm_error err;
    out[0] = '\0';
    if (lease_active(st, db, now_ms, &list, &count, &err) != 0) {
        snprintf(out, len, "ERROR");
        return;
    }
    for (size_t i = 0; i < count; i++)
        snprintf(out + strlen(out), len - strlen(out), "%s%s", i ? "," : "", list[i]);
    lease_list_free(list, count);
}

static void test_take_writes_key_and_body(void)
{
    struct storage *st = open_store("take");
    char key[ARCHIVE_NAME_MAX], host[64] = "host", expected[ARCHIVE_NAME_MAX];
    struct tm_error err;
    ASSERT_EQ(lease_take(st, "tenants/a b.db", GEN_A, NOW_MS, key, sizeof key, &err), 0);
    gethostname(host, sizeof host - 1);
    for (char *p = host; *p; p++)
        if (*p == '/' || *p == ' ')
            *p = '_';
    snprintf(expected, sizeof expected, "tenants%%2Fa%%20b.db/leases/%s-%d-%lld.lease", host, (int)getpid(),
             (long long)NOW_MS);
    ASSERT_TRUE(strcmp(key, expected) == 0);
    uint8_t *data;
    size_t len;
    ASSERT_EQ(storage_read_all(st, key, &data, &len, &err), 0);
    const char *body = "generation " GEN_A "\nexpires 1795346142000\n";
    ASSERT_EQ(len, strlen(body));
    ASSERT_TRUE(memcmp(data, body, len) == 0);
    free(data);
    storage_free(st);
}

static void test_active_expire_and_release(void)
{
    struct storage *st = open_store("active");
    char key_a[ARCHIVE_NAME_MAX], key_b[ARCHIVE_NAME_MAX], held[256];
    struct tm_error err;
    active(st, "app", NOW_MS, held, sizeof held);
    ASSERT_TRUE(strcmp(held, "") == 0);   /* no leases folder: nothing held */
    ASSERT_EQ(lease_take(st, "app", GEN_A, NOW_MS, key_a, sizeof key_a, &err), 0);
    ASSERT_EQ(lease_take(st, "app", GEN_B, NOW_MS + 1000, key_b, sizeof key_b, &err), 0);
    char key_other[ARCHIVE_NAME_MAX];   /* another database's lease holds nothing of app's */
    ASSERT_EQ(lease_take(st, "other", "20261124T001700123Z-0000000c", NOW_MS, key_other, sizeof key_other, &err), 0);
    active(st, "app", NOW_MS + 1, held, sizeof held);
    ASSERT_TRUE(strcmp(held, GEN_A "," GEN_B) == 0);
    /* A expires at NOW + 6 h exactly: not held then; B a second later */
    active(st, "app", NOW_MS + LEASE_HOLD_MS - 1, held, sizeof held);
    ASSERT_TRUE(strcmp(held, GEN_A "," GEN_B) == 0);
    active(st, "app", NOW_MS + LEASE_HOLD_MS, held, sizeof held);
    ASSERT_TRUE(strcmp(held, GEN_B) == 0);
    active(st, "app", NOW_MS + LEASE_HOLD_MS + 1000, held, sizeof held);
    ASSERT_TRUE(strcmp(held, "") == 0);
    lease_release(st, key_a);
    active(st, "app", NOW_MS + 1, held, sizeof held);
    ASSERT_TRUE(strcmp(held, GEN_B) == 0);
    lease_release(st, key_b);
    lease_release(st, "");   /* no lease taken: nothing to do */
    active(st, "app", NOW_MS + 1, held, sizeof held);
    ASSERT_TRUE(strcmp(held, "") == 0);
    storage_free(st);
}

static void test_unreadable_bodies_are_skipped(void)
{
    struct storage *st = open_store("bodies");
    struct storage_writer *w;
    struct tm_error err;
    const char *junk = "not a lease\n";
    ASSERT_EQ(storage_write_begin(st, "app/leases/junk.lease", &w, &err), 0);
    ASSERT_EQ(storage_write(w, junk, strlen(junk), &err), 0);
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    char key[ARCHIVE_NAME_MAX], held[256];
    ASSERT_EQ(lease_take(st, "app", GEN_A, NOW_MS, key, sizeof key, &err), 0);
    active(st, "app", NOW_MS, held, sizeof held);
    ASSERT_TRUE(strcmp(held, GEN_A) == 0);
    storage_free(st);
}

/* A driver over a file replica whose reads of one key fail with a chosen
 * code, as if the object had gone (or the network had) between the
 * listing and the read. */
struct failing_store {
    struct storage *inner;
    const char *fail_key;
    enum tm_error_code code;
};

static int fs_write_begin(void *self, const char *key, void **handle, struct tm_error *err)
{
    return storage_write_begin(((struct failing_store *)self)->inner, key, (struct storage_writer **)handle, err);
}

static int fs_write(void *handle, const void *data, size_t len, struct tm_error *err)
{
    return storage_write(handle, data, len, err);
}

static int fs_write_commit(void *handle, struct tm_error *err)
{
    return storage_write_commit(handle, err);
}

static void fs_write_abort(void *handle)
{
    storage_write_abort(handle);
}

static int fs_read_begin(void *self, const char *key, void **handle, struct tm_error *err)
{
    struct failing_store *fs = self;
    if (strcmp(key, fs->fail_key) == 0)
        return tm_error_setc(err, fs->code, "object '%s': simulated failure", key);
    return storage_read_begin(fs->inner, key, (struct storage_reader **)handle, err);
}

static size_t bytes_read;   /* through fs_read, by every test of this process */

static int fs_read(void *handle, void *buf, size_t len, size_t *got, struct tm_error *err)
{
    int rc = storage_read(handle, buf, len, got, err);
    bytes_read += rc == 0 ? *got : 0;
    return rc;
}

static void fs_read_end(void *handle)
{
    storage_read_end(handle);
}

static int fs_list(void *self, const char *dir, struct storage_list *out, struct tm_error *err)
{
    return storage_list(((struct failing_store *)self)->inner, dir, out, err);
}

static int fs_remove(void *self, const char *key, struct tm_error *err)
{
    return storage_remove(((struct failing_store *)self)->inner, key, err);
}

static void fs_free(void *self)
{
    (void)self;
}

static const struct storage_driver failing_driver = {
    .type = "failing", .write_begin = fs_write_begin, .write = fs_write, .write_commit = fs_write_commit,
    .write_abort = fs_write_abort, .read_begin = fs_read_begin, .read = fs_read, .read_end = fs_read_end,
    .list = fs_list, .remove = fs_remove, .free = fs_free,
};

static void test_released_meanwhile_is_not_found(void)
{
    struct failing_store fs = {open_store("meanwhile"), "", TM_ERR_NOT_FOUND};
    struct storage *st = NULL;
    struct tm_error err;
    ASSERT_EQ(storage_new(&failing_driver, &fs, "failing", &st, &err), 0);
    char key_a[ARCHIVE_NAME_MAX], key_b[ARCHIVE_NAME_MAX], held[256];
    ASSERT_EQ(lease_take(st, "app", GEN_A, NOW_MS, key_a, sizeof key_a, &err), 0);
    ASSERT_EQ(lease_take(st, "app", GEN_B, NOW_MS + 1, key_b, sizeof key_b, &err), 0);
    fs.fail_key = key_a;   /* listed, then gone: skipped, the rest still read */
    active(st, "app", NOW_MS + 2, held, sizeof held);
    ASSERT_TRUE(strcmp(held, GEN_B) == 0);
    fs.code = TM_ERR_TRANSIENT;   /* any other failure fails the listing, with its code */
    char **list = NULL;
    size_t count = 7;
    ASSERT_EQ(lease_active(st, "app", NOW_MS + 2, &list, &count, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_TRANSIENT);
    ASSERT_TRUE(list == NULL);
    ASSERT_EQ(count, 0);
    storage_free(st);
    storage_free(fs.inner);
}

/* A planted lease of 1 MiB: lease_active fails as corrupt, naming it,
 * after reading no more than LEASE_RECORD_MAX + 1 of its bytes. */
static void test_oversized_lease_is_corrupt_and_not_read_whole(void)
{
    struct failing_store fs = {open_store("big"), "", TM_ERR_NOT_FOUND};
    struct storage *st = NULL;
    struct tm_error err;
    ASSERT_EQ(storage_new(&failing_driver, &fs, "counting", &st, &err), 0);
    const char *planted = "app/leases/host-1-1795324542000.lease";
    size_t size = 1024 * 1024;
    char *body = malloc(size);
    ASSERT_TRUE(body != NULL);
    int head = snprintf(body, size, "generation %s\nexpires %lld\n", GEN_A, NOW_MS + 1000);
    memset(body + head, 'x', size - (size_t)head);
    struct storage_writer *w;
    ASSERT_EQ(storage_write_begin(fs.inner, planted, &w, &err), 0);
    ASSERT_EQ(storage_write(w, body, size, &err), 0);
    free(body);
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    char **list = NULL;
    size_t count = 0;
    bytes_read = 0;
    ASSERT_EQ(lease_active(st, "app", NOW_MS, &list, &count, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_CORRUPT);
    ASSERT_STR_CONTAINS(err.msg, planted);
    ASSERT_TRUE(bytes_read <= LEASE_RECORD_MAX + 1);
    ASSERT_TRUE(list == NULL);
    /* one byte under the cap is still read (and, not parsing, skipped) */
    ASSERT_EQ(storage_remove(fs.inner, planted, &err), 0);
    char exact[LEASE_RECORD_MAX];
    memset(exact, ' ', sizeof exact);
    ASSERT_EQ(storage_write_begin(fs.inner, planted, &w, &err), 0);
    ASSERT_EQ(storage_write(w, exact, sizeof exact, &err), 0);
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    ASSERT_EQ(lease_active(st, "app", NOW_MS, &list, &count, &err), 0);
    ASSERT_EQ(count, 0);
    lease_list_free(list, count);
    storage_free(st);
    storage_free(fs.inner);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"lease: taken as NAME/leases/HOST-PID-MS.lease with generation and expiry", test_take_writes_key_and_body},
        {"lease: held until expiry, not after; release ends it", test_active_expire_and_release},
        {"lease: a body that does not parse holds nothing", test_unreadable_bodies_are_skipped},
        {"lease: released between listing and read is skipped by its not-found code",
         test_released_meanwhile_is_not_found},
        {"lease: a planted lease over LEASE_RECORD_MAX is corrupt, not read whole",
         test_oversized_lease_is_corrupt_and_not_read_whole},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
