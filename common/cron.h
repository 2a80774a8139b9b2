/* cron.h - 5-field cron expressions evaluated in UTC, for snapshot and
 * drill schedules ("0 3 * * *" = daily at 03:00 UTC).
 *
 * Fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or
 * jan-dec) day-of-week (0-7 or sun-sat, 0 and 7 are Sunday). Each field is
 * '*', a value, a range a-b, any of those with a step (/n), or a
 * comma-separated list of them. As in Vixie cron, when both day fields
 * are restricted a day matches if either does. */
#ifndef TM_CRON_H
#define TM_CRON_H

#include <stdint.h>

#include "error.h"

struct cron {
    uint64_t minutes;      /* bit n: minute n */
    uint32_t hours;
    uint32_t days;         /* bit n: day of month n (1-31) */
    uint16_t months;       /* bit n: month n (1-12) */
    uint8_t weekdays;      /* bit n: day n (0 = Sunday) */
    int days_restricted, weekdays_restricted;
};

/* err names the field and what is wrong in it. */
int cron_parse(const char *text, struct cron *out, struct tm_error *err);

/* The first matching minute strictly after `after_ms` (Unix ms, UTC), or
 * -1 when there is none within 5 years (e.g. "0 0 31 2 *"). */
int64_t cron_next(const struct cron *c, int64_t after_ms);

/* Spreading one schedule over many databases: `name`'s fixed share of a
 * window of spread_ms (FNV-1a of the name, modulo the window; 0 when
 * spread_ms is 0), and the first time after after_ms that is a matching
 * minute plus that offset. */
int64_t cron_offset_ms(const char *name, int64_t spread_ms);
int64_t cron_next_offset(const struct cron *c, int64_t after_ms, int64_t offset_ms);

#endif
