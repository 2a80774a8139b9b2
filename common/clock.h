/* clock.h - wall-clock milliseconds, RFC 3339 formatting and parsing,
 * and the duration syntax of the configuration (500ms, 1s, 5m, 24h, 7d). */
#ifndef TM_CLOCK_H
#define TM_CLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "error.h"

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_now_ms(void);
/* Milliseconds of CLOCK_MONOTONIC: for timeouts and budgets, which a
 * change of the wall clock must not stretch or cut. */
int64_t clock_monotonic_ms(void);
/* The CLOCK_MONOTONIC instant `ms` from now, as the absolute time a
 * condition variable set to that clock (pthread_condattr_setclock)
 * waits until. */
struct timespec clock_monotonic_deadline(int64_t ms);
/* Initialises `cond` to time its waits on CLOCK_MONOTONIC, so that a step
 * of the wall clock neither stalls nor hurries them. */
void clock_monotonic_cond_init(pthread_cond_t *cond);

/* Format ms as "2026-11-24T00:15:00.123Z" into buf (>= 32 bytes). */
void clock_format_ms(int64_t ms, char *buf, size_t len);

/* Parse a restore target: RFC 3339 with optional fraction and a Z or
 * +hh:mm/-hh:mm offset, or plain Unix seconds (optionally with a fraction).
 * On success *out_ms holds the instant; the end of the named second is
 * NOT implied: "03:15:42Z" means 03:15:42.000. */
int clock_parse_time(const char *text, int64_t *out_ms, struct tm_error *err);

/* Parse "250ms", "1s", "5m", "24h", "7d" (a bare number is rejected). */
int clock_parse_duration(const char *text, int64_t *out_ms, struct tm_error *err);

#endif
