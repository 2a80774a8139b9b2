/* test_storage_s3.c - the S3 driver (common/storage/s3.c) against a real
 * S3-compatible server that checks SigV4 signatures (tests/s3/
 * swift_server.py, started by this binary before its tests and stopped
 * after; if it cannot start, every test fails). The storage contract
 * (put, read, list, remove, not found, abort, put_file), then keys under
 * a prefix, keys that need URL encoding, parallel fetches, the check,
 * and refused credentials. Each test works under a prefix of its own. */
#include "harness.h"
#include "s3_server.h"
#include "storage_contract.h"

#include "../../common/storage/s3_internal.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#define BUCKET "unit"

static struct s3_server server;
static pid_t runner_pid;

/* The replica of the running test: prefix "t<pid>/" of the bucket. */
static struct storage *open_replica_as(const char *secret)
{
    static char prefix[32];
    snprintf(prefix, sizeof prefix, "t%d", (int)getpid());
    struct config_replica cfg;
    s3_server_replica(&server, BUCKET, prefix, &cfg);
    if (secret)
        cfg.s3.secret_access_key = (char *)secret;
    struct storage *st = NULL;
    struct tm_error err;
    if (storage_s3_open(&cfg, &st, &err) != 0)
        fprintf(stderr, "  %s\n", err.msg);
    return st;
}

static struct storage *open_replica(void)
{
    return open_replica_as(NULL);
}

#define CONTRACT_TEST(check) static void test_##check(void) \
    { struct storage *st = open_replica(); ASSERT_TRUE(st); contract_##check(st); storage_free(st); }

CONTRACT_TEST(put_read)
CONTRACT_TEST(missing_is_not_found)
CONTRACT_TEST(empty_object)
CONTRACT_TEST(list)
CONTRACT_TEST(remove)
CONTRACT_TEST(abort_and_uncommitted)

static void test_put_file(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    contract_put_file(st, harness_tmpdir());
    storage_free(st);
}

/* Keys are relative to the replica's prefix: another prefix of the same
 * bucket sees none of them. */
static void test_prefixes_are_separate_replicas(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    struct config_replica cfg;
    s3_server_replica(&server, BUCKET, "other/place", &cfg);
    struct storage *other = NULL;
    struct tm_error err;
    ASSERT_EQ(storage_s3_open(&cfg, &other, &err), 0);
    ASSERT_EQ(contract_put(st, "app/x", "mine", 4), 0);
    ASSERT_EQ(contract_put(other, "app/x", "theirs", 6), 0);
    ASSERT_TRUE(contract_object_is(st, "app/x", "mine", 4));
    ASSERT_TRUE(contract_object_is(other, "app/x", "theirs", 6));
    ASSERT_EQ(storage_remove(other, "app/x", &err), 0);
    ASSERT_TRUE(contract_object_is(st, "app/x", "mine", 4));
    storage_free(other);
    char description[64];
    snprintf(description, sizeof description, "s3://" BUCKET "/t%d", (int)getpid());
    ASSERT_STR_EQ(storage_describe(st), description);
    storage_free(st);
}

/* Names with characters SigV4 wants encoded are stored, listed and read
 * under exactly that name. */
static void test_keys_that_need_encoding(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    const char *key = "app/a b+c=d&e~f%g.seg";
    ASSERT_EQ(contract_put(st, key, "odd", 3), 0);
    ASSERT_TRUE(contract_object_is(st, key, "odd", 3));
    struct storage_list list;
    struct tm_error err;
    ASSERT_EQ(storage_list(st, "app", &list, &err), 0);
    ASSERT_EQ(list.count, 1);
    int same = strcmp(list.entries[0].name, "a b+c=d&e~f%g.seg") == 0 && list.entries[0].size == 3;
    storage_list_release(&list);
    ASSERT_TRUE(same);
    ASSERT_EQ(storage_remove(st, key, &err), 0);
    ASSERT_EQ(storage_list(st, "app", &list, &err), 0);
    ASSERT_EQ(list.count, 0);
    storage_list_release(&list);
    storage_free(st);
}

static int file_is(int fd, const char *text)
{
    char buf[64] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

/* fetch_files downloads several whole objects into open files; a
 * missing one fails the call as not found. */
static void test_fetch_files(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    ASSERT_TRUE(storage_fetch_is_useful(st));
    const char *keys[] = {"f/1", "f/2", "f/3"};
    const char *texts[] = {"first", "second object", "3"};
    int fds[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(contract_put(st, keys[i], texts[i], strlen(texts[i])), 0);
        char path[600];
        snprintf(path, sizeof path, "%s/fetched-%d", harness_tmpdir(), i);
        fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        ASSERT_TRUE(fds[i] >= 0);
    }
    struct tm_error err;
    ASSERT_EQ(storage_fetch_files(st, keys, fds, 3, &err), 0);
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(file_is(fds[i], texts[i]));
    const char *with_missing[] = {"f/1", "f/none"};
    ASSERT_EQ(ftruncate(fds[0], 0), 0);
    ASSERT_EQ(ftruncate(fds[1], 0), 0);
    ASSERT_EQ(storage_fetch_files(st, with_missing, fds, 2, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
    ASSERT_STR_CONTAINS(err.msg, "f/none");
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    storage_free(st);
}

/* storage_check: reachable and writable, versioning off on a new bucket. */
static void test_check_reports_versioning(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    struct storage_check check = {.versioning = -1, .transient = -1};
    struct tm_error err;
    ASSERT_EQ(storage_check(st, 0, &check, &err), 0);
    ASSERT_EQ(check.versioning, 0);
    storage_free(st);
}

/* A wrong secret: the server refuses the signature; that is a failure,
 * not a missing object, and not worth retrying. */
static void test_wrong_secret_is_refused(void)
{
    struct storage *st = open_replica_as("not-the-secret");
    ASSERT_TRUE(st);
    uint8_t *data = NULL;
    size_t len;
    struct tm_error err = {0};
    ASSERT_EQ(storage_read_all(st, "anything", &data, &len, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_REFUSED);
    ASSERT_STR_CONTAINS(err.msg, "signature rejected by the server");
    struct storage_check check;
    ASSERT_EQ(storage_check(st, 0, &check, &err), -1);
    ASSERT_EQ(check.transient, 0);
    storage_free(st);
}

/* Stops the server when the runner is interrupted (not in a test's
 * process, which inherits this handler). */
static void on_signal(int sig)
{
    if (getpid() == runner_pid)
        s3_server_kill(&server);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* The part size keeps a known size under S3's 10,000 parts: the
 * configured size while it does, else the least whole MiB that does. */
static void test_part_size_stays_under_ten_thousand_parts(void)
{
    const uint64_t mib = 1024 * 1024, gib = 1024 * mib, part = 8 * mib;
    ASSERT_EQ(s3_part_size_for(part, 0), part);
    ASSERT_EQ(s3_part_size_for(part, 10000 * part), part);          /* exactly 10,000 parts */
    ASSERT_EQ(s3_part_size_for(part, 10000 * part + 1), 9 * mib);   /* one byte more: a bigger part */
    ASSERT_EQ(s3_part_size_for(part, 100 * gib), 11 * mib);         /* 100 GiB: 9,310 parts of 11 MiB */
    ASSERT_EQ(s3_part_size_for(64 * mib, 100 * gib), 64 * mib);     /* a larger configured size is kept */
    const uint64_t sizes[] = {78 * gib + 1, 100 * gib, 1024 * gib - 1, 5 * 1024 * gib};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        uint64_t chosen = s3_part_size_for(part, sizes[i]);
        ASSERT_TRUE((sizes[i] + chosen - 1) / chosen <= S3_MAX_PARTS);
        ASSERT_EQ(chosen % mib, 0);
        ASSERT_TRUE((sizes[i] + (chosen - mib) - 1) / (chosen - mib) > S3_MAX_PARTS);   /* the least that fits */
    }
}

/* A record read with a cap: an object over it is corrupt, named. */
static void test_capped_read(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    struct tm_error err;
    struct storage_writer *w;
    static char body[100000];
    memset(body, 'x', sizeof body);
    ASSERT_EQ(storage_write_begin(st, "app/leases/big.lease", &w, &err), 0);
    ASSERT_EQ(storage_write(w, body, sizeof body, &err), 0);
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    char *text = NULL;
    size_t len = 0;
    ASSERT_EQ(storage_read_capped(st, "app/leases/big.lease", 4096, &text, &len, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_CORRUPT);
    ASSERT_STR_CONTAINS(err.msg, "app/leases/big.lease");
    ASSERT_EQ(storage_read_capped(st, "app/leases/big.lease", sizeof body, &text, &len, &err), 0);
    ASSERT_EQ(len, sizeof body);
    ASSERT_EQ(text[len], '\0');
    free(text);
    ASSERT_EQ(storage_read_capped(st, "app/leases/none.lease", 4096, &text, &len, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
    storage_free(st);
}

/* ------------------------------------------- reads of several ranges */

#define RANGE_BYTES (4u * 1024 * 1024)   /* storage/s3.c's READ_CHUNK */

static uint8_t byte_at(size_t offset)
{
    return (uint8_t)((offset * 2654435761u) >> 13);
}

/* Writes an object of `size` bytes whose every byte says where it is. */
static void put_patterned(struct storage *st, const char *key, size_t size)
{
    struct tm_error err;
    struct storage_writer *w;
    static uint8_t block[65536];
    ASSERT_EQ(storage_write_begin(st, key, &w, &err), 0);
    for (size_t done = 0; done < size;) {
        size_t take = size - done < sizeof block ? size - done : sizeof block;
        for (size_t i = 0; i < take; i++)
            block[i] = byte_at(done + i);
        ASSERT_EQ(storage_write(w, block, take, &err), 0);
        done += take;
    }
    ASSERT_EQ(storage_write_commit(w, &err), 0);
}

/* Reads from r in pieces of an odd size until the end or an error;
 * every byte must be the pattern's. Returns the bytes read, *rc the
 * last storage_read's status. */
static size_t read_checked(struct storage_reader *r, int *rc, struct tm_error *err)
{
    static uint8_t piece[100003];
    size_t offset = 0, got = 0;
    do {
        *rc = storage_read(r, piece, sizeof piece, &got, err);
        for (size_t i = 0; *rc == 0 && i < got; i++)
            if (piece[i] != byte_at(offset + i)) {
                fprintf(stderr, "  byte %zu differs\n", offset + i);
                *rc = -2;
                break;
            }
        offset += *rc == 0 ? got : 0;
    } while (*rc == 0 && got > 0);
    return offset;
}

/* An object of three ranges and a bit, read whole while the next ranges
 * are fetched ahead: every byte in order, then the end; closed after a
 * few bytes, the read stops at once. */
static void test_read_of_several_ranges(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    size_t size = 3 * RANGE_BYTES + 12345;
    put_patterned(st, "app/big.snap", size);
    ASSERT_PASSING();
    struct storage_reader *r;
    struct tm_error err;
    int rc;
    ASSERT_EQ(storage_read_begin(st, "app/big.snap", &r, &err), 0);
    ASSERT_EQ(read_checked(r, &rc, &err), size);
    ASSERT_EQ(rc, 0);
    storage_read_end(r);
    uint8_t first[10];
    size_t got;
    ASSERT_EQ(storage_read_begin(st, "app/big.snap", &r, &err), 0);
    ASSERT_EQ(storage_read(r, first, sizeof first, &got, &err), 0);
    ASSERT_EQ(got, sizeof first);
    ASSERT_EQ(first[9], byte_at(9));
    storage_read_end(r);
    storage_free(st);
}

/* The object deleted while it is read: the ranges fetched before are
 * read whole and exact, and the error comes at a range's start, naming
 * the object; nothing after it. */
static void test_range_failing_mid_read(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    size_t size = 6 * RANGE_BYTES;
    put_patterned(st, "app/gone.snap", size);
    ASSERT_PASSING();
    struct storage_reader *r;
    struct tm_error err;
    int rc;
    ASSERT_EQ(storage_read_begin(st, "app/gone.snap", &r, &err), 0);
    const char *keys[] = {"app/gone.snap"};
    ASSERT_EQ(storage_remove_many(st, keys, 1, &err), 0);
    size_t read = read_checked(r, &rc, &err);
    ASSERT_EQ(rc, -1);
    ASSERT_TRUE(read >= RANGE_BYTES && read < size);
    ASSERT_EQ(read % RANGE_BYTES, 0);
    ASSERT_STR_CONTAINS(err.msg, "app/gone.snap");
    storage_read_end(r);
    storage_free(st);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"s3 storage: put and read back, replace", test_put_read},
        {"s3 storage: a missing object is not found", test_missing_is_not_found},
        {"s3 storage: an empty object", test_empty_object},
        {"s3 storage: list children sorted with sizes", test_list},
        {"s3 storage: remove and remove_many", test_remove},
        {"s3 storage: aborted and uncommitted writes are invisible", test_abort_and_uncommitted},
        {"s3 storage: put_file stores the file's bytes", test_put_file},
        {"s3 storage: prefixes are separate replicas", test_prefixes_are_separate_replicas},
        {"s3 storage: keys that need URL encoding", test_keys_that_need_encoding},
        {"s3 storage: fetch_files downloads whole objects", test_fetch_files},
        {"s3 storage: check reports versioning", test_check_reports_versioning},
        {"s3 storage: a wrong secret is refused", test_wrong_secret_is_refused},
        {"s3 storage: part size grown to stay under 10,000 parts", test_part_size_stays_under_ten_thousand_parts},
        {"s3 storage: a capped read refuses an object over the cap as corrupt", test_capped_read},
        {"s3 storage: a read of several ranges, fetched ahead", test_read_of_several_ranges},
        {"s3 storage: a range failing mid-read is the error at its place", test_range_failing_mid_read},
    };
    size_t count = sizeof cases / sizeof *cases;
    runner_pid = getpid();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    struct tm_error err;
    if (s3_server_start(&server, &err) != 0 || s3_server_create_bucket(&server, BUCKET, &err) != 0) {
        s3_server_stop(&server);
        char why[900];
        snprintf(why, sizeof why, "no S3 server: %s", err.msg);
        return harness_fail_all(cases, count, why);
    }
    int rc = harness_run(cases, count);
    s3_server_stop(&server);
    return rc;
}
