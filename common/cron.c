/* cron.c - parsing and evaluating 5-field cron expressions in UTC
 * (cron.h). Each field becomes a bit set; cron_next walks forward from
 * the next whole minute, skipping a month, day or hour at a time when
 * that unit cannot match. */
#include "cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct field_spec {
    const char *name;
    int min, max;
    const char *const *names;   /* value names from `min`, or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field_spec fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    {"day of week", 0, 7, day_names},
};

/* A number or a name; advances *p. */
static int parse_value(const char **p, const struct field_spec *spec, int *out)
{
    if (isdigit((unsigned char)**p)) {
        char *end;
        long value = strtol(*p, &end, 10);
        *p = end;
        *out = (int)value;
        return value >= spec->min && value <= spec->max ? 0 : -1;
    }
    for (int i = 0; spec->names && spec->names[i]; i++)
        if (strncasecmp(*p, spec->names[i], 3) == 0 && !isalpha((unsigned char)(*p)[3])) {
            *p += 3;
            *out = spec->min + i;
            return 0;
        }
    return -1;
}

/* One comma-separated item: *, a, a-b, with an optional /step. */
static int parse_item(const char **p, const struct field_spec *spec, uint64_t *bits)
{
    int low = spec->min, high = spec->max, step = 1, single = 0;
    if (**p == '*') {
        (*p)++;
    } else {
        if (parse_value(p, spec, &low) != 0)
            return -1;
        high = low;
        single = 1;
        if (**p == '-') {
            single = 0;
            (*p)++;
            if (parse_value(p, spec, &high) != 0 || high < low)
                return -1;
        }
    }
    if (**p == '/') {
        (*p)++;
        char *end;
        long value = strtol(*p, &end, 10);
        if (end == *p || value < 1 || value > spec->max + 1)
            return -1;
        step = (int)value;
        *p = end;
        if (single)   /* "5/15" means 5-max/15 */
            high = spec->max;
    }
    for (int v = low; v <= high; v += step)
        *bits |= 1ULL << v;
    return 0;
}

static int parse_field(const char *text, const struct field_spec *spec, uint64_t *bits)
{
    const char *p = text;
    *bits = 0;
    for (;;) {
        if (parse_item(&p, spec, bits) != 0)
            return -1;
        if (*p == ',') {
            p++;
            continue;
        }
        return *p == '\0' ? 0 : -1;
    }
}

int cron_parse(const char *text, struct cron *out, struct tm_error *err)
{
    char copy[256];
    if (strlen(text) >= sizeof copy)
        return tm_error_set(err, "cron expression too long");
    snprintf(copy, sizeof copy, "%s", text);
    char *parts[6];
    int count = 0;
    for (char *save = NULL, *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
        if (count < 6)
            parts[count++] = tok;
        else
            count++;
    if (count != 5) {
        tm_error_set(err, "cron expression '%s' has %d fields, expected 5", text, count);
        return tm_error_hint(err, "minute hour day-of-month month day-of-week, in UTC: \"0 3 * * *\" is daily at 03:00");
    }
    uint64_t bits[5];
    for (int i = 0; i < 5; i++)
        if (parse_field(parts[i], &fields[i], &bits[i]) != 0) {
            tm_error_set(err, "cron expression '%s': invalid %s field '%s'", text, fields[i].name, parts[i]);
            return tm_error_hint(err, "the %s is %d-%d, '*', a range a-b, a step */n or a list a,b",
                                 fields[i].name, fields[i].min, fields[i].max);
        }
    memset(out, 0, sizeof *out);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->days = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    if (bits[4] & (1ULL << 7))
        bits[4] |= 1;   /* 7 is Sunday too */
    out->weekdays = (uint8_t)(bits[4] & 0x7f);
    out->days_restricted = parts[2][0] != '*';
    out->weekdays_restricted = parts[4][0] != '*';
    return 0;
}

static int day_matches(const struct cron *c, const struct tm *tm)
{
    int by_day = (c->days >> tm->tm_mday) & 1;
    int by_weekday = (c->weekdays >> tm->tm_wday) & 1;
    if (c->days_restricted && c->weekdays_restricted)
        return by_day || by_weekday;
    return by_day && by_weekday;
}

int64_t cron_next(const struct cron *c, int64_t after_ms)
{
    time_t t = (time_t)(after_ms / 60000 + 1) * 60;   /* the next whole minute */
    if (after_ms < 0 && after_ms % 60000)
        t -= 60;
    const time_t limit = t + (time_t)5 * 366 * 86400;
    while (t < limit) {
        struct tm tm;
        gmtime_r(&t, &tm);
        if (!((c->months >> (tm.tm_mon + 1)) & 1)) {   /* first day of next month */
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = timegm(&tm);
        } else if (!day_matches(c, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = timegm(&tm);
        } else if (!((c->hours >> tm.tm_hour) & 1)) {
            tm.tm_hour++;
            tm.tm_min = tm.tm_sec = 0;
            t = timegm(&tm);
        } else if (!((c->minutes >> tm.tm_min) & 1)) {
            t += 60;
        } else {
            return (int64_t)t * 1000;
        }
    }
    return -1;
}

int64_t cron_offset_ms(const char *name, int64_t spread_ms)
{
    if (spread_ms <= 0)
        return 0;
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (int64_t)(h % (uint64_t)spread_ms);
}

int64_t cron_next_offset(const struct cron *c, int64_t after_ms, int64_t offset_ms)
{
    int64_t next = cron_next(c, after_ms - offset_ms);
    return next < 0 ? next : next + offset_ms;
}
