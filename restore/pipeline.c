/* pipeline.c - worker threads whose jobs' events are consumed in order
 * (see pipeline.h).
 *
 * DESIGN. One mutex guards the shared state; nothing is waited for while
 * holding data another thread needs. Two condition variables, each
 * signalled only when someone waits on it: the consumer's (a block
 * queued, a job ended) and the workers' (a job consumed, so the
 * lookahead and the current job moved; the current job's queue half
 * drained; stopping). A worker held back by its allowance is woken when
 * the consumer has taken half of its job's blocks, not at every block:
 * on two cores the wake-ups of a block-by-block hand-off cost a few per
 * cent of the restore's CPU (perf, bench/ 1 GiB).
 *
 * Job j lives in slot j % PIPELINE_LOOKAHEAD; a worker takes the
 * next job only when it is within PIPELINE_LOOKAHEAD of the job being
 * consumed, so the slot's previous job has been consumed entirely. A
 * worker fills one block at a time (without the lock), queues it when
 * full, and waits when its job already holds its allowance of blocks
 * (PIPELINE_BLOCKS_CURRENT for the job being consumed, else
 * PIPELINE_BLOCKS_AHEAD). The consumer takes its job's blocks off the queue one by one and
 * returns each to a free list once read.
 *
 * Why it cannot deadlock: the job being consumed has been taken by a
 * worker or will be (every job before it has ended, so a worker is free
 * and the job is within the lookahead); its worker waits only for blocks
 * of its own job, which the consumer is reading (no allowance is
 * shared); the consumer waits only for that job's next block or end. And
 * every wait is woken: a worker held by the current job's allowance has
 * queued exactly PIPELINE_BLOCKS_CURRENT blocks and adds none while held,
 * so the consumer's count of them passes the half, where it wakes the
 * workers; a worker held as a later job's, or by the lookahead, is woken
 * when a job is consumed; the consumer is signalled at every block queued
 * and job ended while it waits. pipeline_stop wakes every waiting worker
 * and makes its next emit fail. tests/unit/test_pipeline.c times out on
 * a lost wake-up. */
#include "pipeline.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENT_HEADER_BYTES 5   /* type, then the data's length (4 bytes, host order) */

struct block {
    struct block *next;
    size_t used, read;
    uint8_t data[PIPELINE_BLOCK_BYTES];
};

struct pipeline_job {
    struct pipeline *p;
    size_t index;                   /* SIZE_MAX: never used */
    struct block *filling;          /* the worker's, outside the lock */
    struct block *head, *tail;      /* full blocks, in order */
    unsigned blocks;                /* queued + filling */
    int done;                       /* its function returned */
    uint64_t wait_ns;               /* waiting for the consumer */
};

struct pipeline {
    pthread_mutex_t lock;
    pthread_cond_t to_consumer;     /* a block queued or a job ended */
    pthread_cond_t to_workers;      /* room ahead, a job consumed, or stopping */
    int consumer_waiting;
    unsigned workers_waiting;
    uint64_t consumer_wait_ns;      /* the consumer's own */
    pipeline_job_fn fn;
    void *ctx;
    size_t job_count;
    size_t next_job;                /* the next job a worker takes */
    size_t consumed;                /* jobs consumed: the one being consumed */
    int stopping;
    struct pipeline_job slots[PIPELINE_LOOKAHEAD];
    struct block *free_blocks;
    struct block *reading;          /* the consumer's */
    pthread_t threads[PIPELINE_WORKERS_MAX];
    unsigned workers;
    uint64_t busy_ns;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Under the lock: a block for a job's worker, or NULL when out of memory. */
static struct block *take_block(struct pipeline *p)
{
    struct block *b = p->free_blocks;
    if (b)
        p->free_blocks = b->next;
    else if (!(b = malloc(sizeof *b)))
        return NULL;
    b->next = NULL;
    b->used = b->read = 0;
    return b;
}

/* Under the lock: queues a job's filled block (an empty one goes back). */
static void queue_block(struct pipeline *p, struct pipeline_job *job, struct block *b)
{
    if (b->used == 0) {
        b->next = p->free_blocks;
        p->free_blocks = b;
        job->blocks--;
        return;
    }
    b->next = NULL;
    if (job->tail)
        job->tail->next = b;
    else
        job->head = b;
    job->tail = b;
    if (p->consumer_waiting)
        pthread_cond_signal(&p->to_consumer);
}

/* Under the lock: a worker waits for the consumer or stopping. */
static void worker_wait(struct pipeline *p)
{
    p->workers_waiting++;
    pthread_cond_wait(&p->to_workers, &p->lock);
    p->workers_waiting--;
}

int pipeline_emit(struct pipeline_job *job, uint8_t type, const void *a, size_t a_len, const void *b, size_t b_len)
{
    struct pipeline *p = job->p;
    size_t need = EVENT_HEADER_BYTES + a_len + b_len;
    if (need > PIPELINE_BLOCK_BYTES)
        return -2;
    if (!job->filling || job->filling->used + need > PIPELINE_BLOCK_BYTES) {
        pthread_mutex_lock(&p->lock);
        if (job->filling)
            queue_block(p, job, job->filling);
        job->filling = NULL;
        uint64_t start = now_ns();
        while (!p->stopping &&
               job->blocks >= (job->index == p->consumed ? PIPELINE_BLOCKS_CURRENT : PIPELINE_BLOCKS_AHEAD))
            worker_wait(p);
        job->wait_ns += now_ns() - start;
        int stopping = p->stopping;
        if (!stopping && (job->filling = take_block(p)) != NULL)
            job->blocks++;
        pthread_mutex_unlock(&p->lock);
        if (!job->filling)
            return stopping ? -1 : -2;
    }
    uint8_t *at = job->filling->data + job->filling->used;
    uint32_t len = (uint32_t)(a_len + b_len);
    at[0] = type;
    memcpy(at + 1, &len, 4);
    if (a_len)
        memcpy(at + EVENT_HEADER_BYTES, a, a_len);
    if (b_len)
        memcpy(at + EVENT_HEADER_BYTES + a_len, b, b_len);
    job->filling->used += need;
    return 0;
}

/* Under the lock: the next job to run, or SIZE_MAX when there is none. */
static size_t next_job(struct pipeline *p)
{
    while (!p->stopping && p->next_job < p->job_count && p->next_job >= p->consumed + PIPELINE_LOOKAHEAD)
        worker_wait(p);
    if (p->stopping || p->next_job >= p->job_count)
        return SIZE_MAX;
    return p->next_job++;
}

static void *worker_main(void *arg)
{
    struct pipeline *p = arg;
    pthread_mutex_lock(&p->lock);
    size_t index;
    while ((index = next_job(p)) != SIZE_MAX) {
        struct pipeline_job *job = &p->slots[index % PIPELINE_LOOKAHEAD];
        *job = (struct pipeline_job){.p = p, .index = index};
        pthread_mutex_unlock(&p->lock);
        uint64_t start = now_ns();
        p->fn(p->ctx, index, job);
        uint64_t busy = now_ns() - start;
        pthread_mutex_lock(&p->lock);
        if (job->filling)
            queue_block(p, job, job->filling);
        job->filling = NULL;
        job->done = 1;
        p->busy_ns += busy - job->wait_ns;
        if (p->consumer_waiting)
            pthread_cond_signal(&p->to_consumer);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int pipeline_start(unsigned workers, size_t job_count, pipeline_job_fn fn, void *ctx, struct pipeline **out,
                   struct tm_error *err)
{
    struct pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->to_consumer, NULL);
    pthread_cond_init(&p->to_workers, NULL);
    p->fn = fn;
    p->ctx = ctx;
    p->job_count = job_count;
    for (size_t i = 0; i < PIPELINE_LOOKAHEAD; i++)
        p->slots[i].index = SIZE_MAX;
    if (workers < 1)
        workers = 1;
    if (workers > PIPELINE_WORKERS_MAX)
        workers = PIPELINE_WORKERS_MAX;
    for (; p->workers < workers; p->workers++)
        if (pthread_create(&p->threads[p->workers], NULL, worker_main, p) != 0) {
            pipeline_stop(p);
            return tm_error_set(err, "cannot start the restore's threads");
        }
    *out = p;
    return 0;
}

/* Under the lock, for the consumer: job `index`'s next block, 0 at its
 * end (then consumed). */
static int wait_block(struct pipeline *p, size_t index)
{
    struct pipeline_job *job = &p->slots[index % PIPELINE_LOOKAHEAD];
    if (!(job->index == index && (job->head || job->done))) {
        uint64_t start = now_ns();
        p->consumer_waiting = 1;
        while (!(job->index == index && (job->head || job->done)))
            pthread_cond_wait(&p->to_consumer, &p->lock);
        p->consumer_waiting = 0;
        p->consumer_wait_ns += now_ns() - start;
    }
    if (!job->head) {
        p->consumed = index + 1;
        if (p->workers_waiting)
            pthread_cond_broadcast(&p->to_workers);
        return 0;
    }
    p->reading = job->head;
    job->head = job->head->next;
    if (!job->head)
        job->tail = NULL;
    /* Its worker waits only with PIPELINE_BLOCKS_CURRENT queued, and
     * nothing is queued while it waits: the count passes the half. */
    if (--job->blocks == PIPELINE_BLOCKS_CURRENT / 2 && p->workers_waiting)
        pthread_cond_broadcast(&p->to_workers);
    return 1;
}

int pipeline_next(struct pipeline *p, size_t index, uint8_t *type, const uint8_t **data, size_t *len)
{
    while (!p->reading || p->reading->read == p->reading->used) {
        pthread_mutex_lock(&p->lock);
        if (p->reading) {
            p->reading->next = p->free_blocks;
            p->free_blocks = p->reading;
            p->reading = NULL;
        }
        int more = wait_block(p, index);
        pthread_mutex_unlock(&p->lock);
        if (!more)
            return 0;
    }
    const uint8_t *at = p->reading->data + p->reading->read;
    uint32_t event_len;
    memcpy(&event_len, at + 1, 4);
    *type = at[0];
    *data = at + EVENT_HEADER_BYTES;
    *len = event_len;
    p->reading->read += EVENT_HEADER_BYTES + event_len;
    return 1;
}

uint64_t pipeline_consumer_wait_ns(const struct pipeline *p)
{
    return p->consumer_wait_ns;
}

static void free_chain(struct block *b)
{
    while (b) {
        struct block *next = b->next;
        free(b);
        b = next;
    }
}

uint64_t pipeline_stop(struct pipeline *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->to_workers);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->workers; i++)
        pthread_join(p->threads[i], NULL);
    for (size_t i = 0; i < PIPELINE_LOOKAHEAD; i++)
        free_chain(p->slots[i].head);
    free_chain(p->free_blocks);
    free(p->reading);
    uint64_t busy = p->busy_ns;
    pthread_cond_destroy(&p->to_consumer);
    pthread_cond_destroy(&p->to_workers);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return busy;
}
