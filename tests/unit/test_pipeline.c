/* test_pipeline.c - the restore's pipeline (restore/pipeline.h): every
 * job's events reach the consumer whole and in job order, whatever the
 * number of workers and whoever is the slower side; workers held back by
 * their allowance resume (a lost wake-up would hang: the harness's timeout
 * fails it); stopping mid-way joins every worker. */
#include "harness.h"

#include "../../restore/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JOBS 40
#define EVENT_MAX 70000                     /* beyond a 64 KiB page: some blocks hold one event */

struct job_script {
    size_t events;                          /* events of this job */
    unsigned slow_every;                    /* the worker sleeps every Nth event (0: never) */
};

struct fixture {
    struct job_script jobs[JOBS];
    int stop_after_job;                     /* the consumer stops after this job (-1: never) */
};

static size_t event_length(size_t job, size_t event)
{
    return (job * 7919 + event * 104729) % EVENT_MAX;   /* 0 included */
}

/* Event (job, event)'s bytes: a ramp 0..255 repeated, starting at a
 * value of its own; read from one shared ramp so that making and checking
 * them cost a memcpy and a memcmp (under ASan a byte loop over the test's
 * hundreds of MB was most of its time). */
static uint8_t ramp[256 + EVENT_MAX];

static const uint8_t *event_bytes(size_t job, size_t event)
{
    return ramp + (job * 31 + event * 17) % 256;
}

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* The worker's side: events of pseudo-random lengths and known bytes,
 * sent as two ranges (a split at a third). */
static int run_script(void *ctx, size_t job, struct pipeline_job *out)
{
    const struct fixture *f = ctx;
    for (size_t event = 0; event < f->jobs[job].events; event++) {
        size_t len = event_length(job, event);
        const uint8_t *data = event_bytes(job, event);
        if (f->jobs[job].slow_every && event % f->jobs[job].slow_every == 0)
            nap_us(200);
        int rc = pipeline_emit(out, (uint8_t)(1 + job % 255), data, len / 3, data + len / 3, len - len / 3);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The consumer's side: checks every event of every job in order; returns
 * the events checked, or -1 at the first mismatch (printed). */
static long consume(struct pipeline *p, const struct fixture *f, int slow)
{
    long checked = 0;
    for (size_t job = 0; job < JOBS; job++) {
        uint8_t type;
        const uint8_t *data;
        size_t len, event = 0;
        while (pipeline_next(p, job, &type, &data, &len) == 1) {
            if (event >= f->jobs[job].events || type != 1 + job % 255 || len != event_length(job, event)) {
                fprintf(stderr, "  job %zu event %zu: type %u length %zu\n", job, event, type, len);
                return -1;
            }
            if (len && memcmp(data, event_bytes(job, event), len) != 0) {
                fprintf(stderr, "  job %zu event %zu: its bytes differ\n", job, event);
                return -1;
            }
            if (slow && event % 64 == 0)
                nap_us(100);
            event++;
            checked++;
        }
        if (event != f->jobs[job].events) {
            fprintf(stderr, "  job %zu ended after %zu events of %zu\n", job, event, f->jobs[job].events);
            return -1;
        }
        if ((int)job == f->stop_after_job)
            break;
    }
    return checked;
}

static void make_fixture(struct fixture *f, unsigned seed, int slow_workers)
{
    srand(seed);
    f->stop_after_job = -1;
    for (size_t job = 0; job < JOBS; job++) {
        /* mostly small jobs, some of many blocks (a snapshot among segments) */
        f->jobs[job].events = job % 9 == 0 ? 1500 + (size_t)(rand() % 500) : (size_t)(rand() % 60);
        f->jobs[job].slow_every = slow_workers ? 1 + (unsigned)(rand() % 50) : 0;
    }
}

static long expected_events(const struct fixture *f, size_t jobs)
{
    long total = 0;
    for (size_t job = 0; job < jobs; job++)
        total += (long)f->jobs[job].events;
    return total;
}

static void run_case(unsigned workers, int slow_workers, int slow_consumer)
{
    struct fixture f;
    make_fixture(&f, 22 + workers, slow_workers);
    struct pipeline *p;
    struct tm_error err;
    ASSERT_EQ(pipeline_start(workers, JOBS, run_script, &f, &p, &err), 0);
    long checked = consume(p, &f, slow_consumer);
    pipeline_stop(p);
    ASSERT_EQ(checked, expected_events(&f, JOBS));
}

static void test_fast_workers(void)
{
    for (unsigned workers = 1; workers <= PIPELINE_WORKERS_MAX; workers++) {
        run_case(workers, 0, 1);   /* the consumer is slower: workers wait for their allowance */
        ASSERT_PASSING();
    }
}

static void test_slow_workers(void)
{
    for (unsigned workers = 1; workers <= PIPELINE_WORKERS_MAX; workers++) {
        run_case(workers, 1, 0);   /* the consumer waits for blocks */
        ASSERT_PASSING();
    }
}

static void test_neither_waits_long(void)
{
    for (int round = 0; round < 20; round++) {
        run_case(2, 0, 0);
        ASSERT_PASSING();
    }
}

static void test_stop_mid_way(void)
{
    struct fixture f;
    make_fixture(&f, 5, 0);
    f.stop_after_job = 9;   /* a long job ends; workers are ahead, some held by their allowance */
    struct pipeline *p;
    struct tm_error err;
    ASSERT_EQ(pipeline_start(3, JOBS, run_script, &f, &p, &err), 0);
    long checked = consume(p, &f, 1);
    pipeline_stop(p);   /* joins every worker: returning at all is the test */
    ASSERT_EQ(checked, expected_events(&f, 10));
}

int main(void)
{
    for (size_t at = 0; at < sizeof ramp; at++)
        ramp[at] = (uint8_t)at;
    static const struct test_case cases[] = {
        {"pipeline: a slower consumer gets every event in order (1-4 workers)", test_fast_workers},
        {"pipeline: slower workers, every event in order (1-4 workers)", test_slow_workers},
        {"pipeline: both sides fast, 20 runs, every event in order", test_neither_waits_long},
        {"pipeline: stopping after a job joins the workers held ahead", test_stop_mid_way},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
