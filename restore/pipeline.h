/* pipeline.h - jobs run on a few worker threads, their output consumed on
 * the calling thread in job order (the pipelined restore, restore.c).
 *
 * A job's worker emits events (a type and up to two byte ranges, copied);
 * the consumer reads them back, job after job, in the order emitted.
 * Memory is bounded whatever the jobs' sizes: events are copied into
 * blocks of PIPELINE_BLOCK_BYTES; the job being consumed holds at most
 * PIPELINE_BLOCKS_CURRENT of them, each later one PIPELINE_BLOCKS_AHEAD
 * (a worker waits for the consumer beyond that), and workers start a job
 * only within PIPELINE_LOOKAHEAD jobs of the one being consumed: at most
 * CURRENT + (LOOKAHEAD - 1) x AHEAD blocks exist at once (11 MiB, plus
 * the one the consumer reads). The current job's allowance lets its
 * worker run ahead while the consumer writes out a batch of pages (the
 * page writer's size: keep the two alike).
 *
 * Stopping: pipeline_stop (on the consumer's error, or when it needs no
 * more jobs) makes every worker's next pipeline_emit fail, waits for the
 * workers to return and frees everything. A worker's failure is its job's
 * own business: the job function records it where the consumer finds it
 * after the job's last event (the pipeline orders the two: whatever a job
 * function wrote before returning is visible to the consumer once
 * pipeline_next has reported the job's end). */
#ifndef TM_PIPELINE_H
#define TM_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define PIPELINE_BLOCK_BYTES (256 * 1024)   /* an event fits in one (a 64 KiB page and headers) */
#define PIPELINE_BLOCKS_CURRENT 16
#define PIPELINE_BLOCKS_AHEAD 4
#define PIPELINE_LOOKAHEAD 8
#define PIPELINE_WORKERS_MAX 4

struct pipeline;
struct pipeline_job;   /* a running job, for its worker's pipeline_emit */

/* Runs job number `job` on a worker thread: emits its events with
 * pipeline_emit and returns 0, or -1 when it failed or was stopped (what
 * failed is recorded by the function itself, for the consumer). */
typedef int (*pipeline_job_fn)(void *ctx, size_t job, struct pipeline_job *out);

/* Starts `workers` threads (1..PIPELINE_WORKERS_MAX) running jobs
 * 0..job_count-1 in order through fn. */
int pipeline_start(unsigned workers, size_t job_count, pipeline_job_fn fn, void *ctx, struct pipeline **out,
                   struct tm_error *err);

/* From a job function: an event of `type` (1..255) whose data is a then
 * b (either may be empty; a_len + b_len + 5 <= PIPELINE_BLOCK_BYTES).
 * -1 when the pipeline is stopping (return at once), -2 when out of
 * memory (or the event too large for a block). */
int pipeline_emit(struct pipeline_job *job, uint8_t type, const void *a, size_t a_len, const void *b, size_t b_len);

/* The consumer: the next event of job `job` (the job after the last one
 * consumed, or the same): 1 with *type, *data, *len (valid until the next
 * call), 0 when the job has ended (its function returned; it is then
 * consumed). */
int pipeline_next(struct pipeline *p, size_t job, uint8_t *type, const uint8_t **data, size_t *len);

/* The consumer's own: the nanoseconds pipeline_next has waited for the
 * workers so far. */
uint64_t pipeline_consumer_wait_ns(const struct pipeline *p);

/* Stops the workers (their emits fail), joins them, frees p. Returns the
 * nanoseconds the workers spent running job functions, not counting their
 * waits for the consumer (their busy time, summed). NULL: 0. */
uint64_t pipeline_stop(struct pipeline *p);

#endif
