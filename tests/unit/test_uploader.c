/* test_uploader.c - the uploader (replicator/uploader.c) between a real
 * spool and real file replicas, on a real libev loop with the storage
 * attached (puts run on threads and report back on the loop, as in the
 * daemon): every object reaches the replica with its bytes, in spool
 * order (what a replica holds is always a prefix of the queue), a failing
 * replica neither delays nor loses anything for another, and once it
 * works again it catches up after its backoff. */
#include "harness.h"

#include "../../common/http.h"
#include "../../replicator/uploader.h"

#include <ev.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OBJECTS 6

static const char *replica_names[] = {"good", "bad"};

static void object_key(int i, char *out, size_t cap)
{
    snprintf(out, cap, "app/generations/G/segments/%016x-1-2.seg", i);
}

/* Object i: 3000 * (i + 1) bytes, its own pattern. */
static size_t object_bytes(int i, uint8_t *out, size_t cap)
{
    size_t len = 3000 * (size_t)(i + 1);
    for (size_t b = 0; b < len && b < cap; b++)
        out[b] = (uint8_t)(b * 7 + (size_t)i * 131);
    return len;
}

/* Writes object i into the spool's incoming storage and publishes it. */
static int publish(struct spool *sp, int i)
{
    static uint8_t data[3000 * (OBJECTS + 1)];
    char key[200], name[600];
    object_key(i, key, sizeof key);
    size_t len = object_bytes(i, data, sizeof data);
    spool_incoming_name(sp, key, name, sizeof name);
    struct storage_writer *w;
    struct tm_error err;
    if (storage_write_begin(spool_incoming(sp), name, &w, &err) != 0 || storage_write(w, data, len, &err) != 0 ||
        storage_write_commit(w, &err) != 0) {
        fprintf(stderr, "  publishing %s: %s\n", key, err.msg);
        return -1;
    }
    struct spool_position pos = {.next_index = (uint64_t)i + 1, .page_size = 4096};
    snprintf(pos.generation, sizeof pos.generation, "20261124T000000000Z-00000001");
    return spool_publish(sp, key, &pos, &err);
}

/* How many of the objects the replica under `root` holds, each with its
 * exact bytes; -1 when they are not a prefix of the queue (one missing
 * before one present) or one differs. */
static int objects_held(const char *root)
{
    static uint8_t want[3000 * (OBJECTS + 1)];
    int held = 0;
    for (int i = 0; i < OBJECTS; i++) {
        char key[200], path[PATH_MAX];
        object_key(i, key, sizeof key);
        snprintf(path, sizeof path, "%s/%s", root, key);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        size_t len = object_bytes(i, want, sizeof want);
        uint8_t *got = malloc(len + 1);
        size_t n = got ? fread(got, 1, len + 1, f) : 0;
        fclose(f);
        int same = n == len && memcmp(got, want, len) == 0;
        free(got);
        if (!same || held != i) {
            fprintf(stderr, "  %s: object %d %s\n", root, i, same ? "stored before an earlier one" : "differs");
            return -1;
        }
        held++;
    }
    return held;
}

struct rig {
    char good_root[PATH_MAX], bad_root[PATH_MAX];
    struct ev_loop *loop;
    struct http_loop *hl;
    struct spool *spool;
    struct storage *good, *bad;
    struct uploader up_good, up_bad;
};

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
}

/* Runs the loop until `until` says so or `seconds` pass, checking after
 * every turn that each replica holds a prefix of the queue. 1 when
 * `until` came true; 0 on timeout; -1 when a check failed. */
static int run_loop(struct rig *r, int (*until)(struct rig *), double seconds)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    ev_timer_start(r->loop, &tick);
    ev_now_update(r->loop);
    ev_tstamp deadline = ev_now(r->loop) + seconds;
    int result = 0;
    while (ev_now(r->loop) < deadline) {
        ev_run(r->loop, EVRUN_ONCE);
        if (objects_held(r->good_root) < 0 || objects_held(r->bad_root) < 0) {
            result = -1;
            break;
        }
        if (until(r)) {
            result = 1;
            break;
        }
    }
    ev_timer_stop(r->loop, &tick);
    return result;
}

static int good_idle(struct rig *r) { return uploader_idle(&r->up_good); }
static int bad_idle(struct rig *r) { return uploader_idle(&r->up_bad); }

static int rig_open(struct rig *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->good_root, sizeof r->good_root, "%s/good", harness_tmpdir());
    snprintf(r->bad_root, sizeof r->bad_root, "%s/bad", harness_tmpdir());
    char spool_dir[PATH_MAX];
    snprintf(spool_dir, sizeof spool_dir, "%s/spool", harness_tmpdir());
    struct tm_error err;
    int added;
    size_t removed;
    r->loop = ev_loop_new(EVFLAG_AUTO);
    if (!r->loop || http_loop_new(r->loop, &r->hl, &err) != 0 ||
        spool_open(spool_dir, replica_names, 2, 1, &r->spool, &added, &removed, &err) != 0 ||
        storage_file_open(r->good_root, &r->good, &err) != 0 || storage_file_open(r->bad_root, &r->bad, &err) != 0) {
        fprintf(stderr, "  rig: %s\n", err.msg);
        return -1;
    }
    storage_attach(r->good, r->hl);
    storage_attach(r->bad, r->hl);
    uploader_init(&r->up_good, r->loop, r->spool, 0, r->good, "app", "good");
    uploader_init(&r->up_bad, r->loop, r->spool, 1, r->bad, "app", "bad");
    return 0;
}

static void rig_close(struct rig *r)
{
    uploader_stop(&r->up_good);
    uploader_stop(&r->up_bad);
    storage_free(r->good);
    storage_free(r->bad);
    spool_free(r->spool);
    http_loop_free(r->hl);
    ev_loop_destroy(r->loop);
}

static void test_every_object_reaches_the_replicas_in_order(void)
{
    struct rig r;
    ASSERT_EQ(rig_open(&r), 0);
    for (int i = 0; i < OBJECTS / 2; i++)
        ASSERT_EQ(publish(r.spool, i), 0);
    uploader_kick(&r.up_good);
    uploader_kick(&r.up_bad);
    /* more objects published while the first are in flight */
    for (int i = OBJECTS / 2; i < OBJECTS; i++)
        ASSERT_EQ(publish(r.spool, i), 0);
    uploader_kick(&r.up_good);
    uploader_kick(&r.up_bad);
    ASSERT_EQ(run_loop(&r, good_idle, 10), 1);
    ASSERT_EQ(run_loop(&r, bad_idle, 10), 1);
    ASSERT_EQ(objects_held(r.good_root), OBJECTS);
    ASSERT_EQ(objects_held(r.bad_root), OBJECTS);
    uint64_t total = 0;
    for (int i = 0; i < OBJECTS; i++)
        total += 3000 * (uint64_t)(i + 1);
    ASSERT_EQ(r.up_good.objects_uploaded, OBJECTS);
    ASSERT_EQ(r.up_good.bytes_uploaded, total);
    ASSERT_EQ(r.up_good.failures_total, 0);
    ASSERT_EQ(spool_bytes(r.spool), 0);
    ASSERT_EQ(spool_queue_length(r.spool, 0), 0);
    ASSERT_EQ(spool_queue_length(r.spool, 1), 0);
    rig_close(&r);
}

/* The "bad" replica's directory is replaced by a file: its uploads fail.
 * The good one gets everything meanwhile; the bad one keeps its queue,
 * retries after a backoff, and catches up in order once repaired. */
static void test_a_failing_replica_delays_no_other_and_catches_up(void)
{
    struct rig r;
    ASSERT_EQ(rig_open(&r), 0);
    ASSERT_EQ(rmdir(r.bad_root), 0);
    FILE *f = fopen(r.bad_root, "w");
    ASSERT_TRUE(f);
    fclose(f);
    for (int i = 0; i < OBJECTS; i++)
        ASSERT_EQ(publish(r.spool, i), 0);
    uploader_kick(&r.up_good);
    uploader_kick(&r.up_bad);
    ASSERT_EQ(run_loop(&r, good_idle, 10), 1);
    ASSERT_EQ(objects_held(r.good_root), OBJECTS);
    ASSERT_TRUE(r.up_bad.failures >= 1);
    ASSERT_TRUE(r.up_bad.failing_since_ms > 0);
    ASSERT_EQ(r.up_bad.objects_uploaded, 0);
    ASSERT_STR_CONTAINS(r.up_bad.last_error.msg, r.bad_root);
    ASSERT_EQ(spool_queue_length(r.spool, 0), 0);
    ASSERT_EQ(spool_queue_length(r.spool, 1), OBJECTS);
    uint64_t total = 0;
    for (int i = 0; i < OBJECTS; i++)
        total += 3000 * (uint64_t)(i + 1);
    ASSERT_EQ(spool_bytes(r.spool), total);   /* kept for the bad replica */
    /* repaired: the next retry (within the first backoff, at most 1 s) stores everything */
    ASSERT_EQ(unlink(r.bad_root), 0);
    ASSERT_EQ(mkdir(r.bad_root, 0700), 0);
    ASSERT_EQ(run_loop(&r, bad_idle, 5), 1);
    ASSERT_EQ(objects_held(r.bad_root), OBJECTS);
    ASSERT_EQ(r.up_bad.failures, 0);
    ASSERT_EQ(r.up_bad.failing_since_ms, 0);
    ASSERT_EQ(r.up_bad.objects_uploaded, OBJECTS);
    ASSERT_EQ(r.up_bad.bytes_uploaded, total);
    ASSERT_EQ(spool_bytes(r.spool), 0);
    rig_close(&r);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"uploader: every object reaches the replicas in order", test_every_object_reaches_the_replicas_in_order},
        {"uploader: a failing replica delays no other and catches up",
         test_a_failing_replica_delays_no_other_and_catches_up},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
