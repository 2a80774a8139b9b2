/* clock.c - time helpers (see clock.h). Restore targets and commit times
 * are all Unix milliseconds; only these functions convert to and from text. */
#include "clock.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec clock_monotonic_deadline(int64_t ms)
{
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at);
    at.tv_sec += (time_t)(ms / 1000);
    at.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    return at;
}

void clock_monotonic_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

void clock_format_ms(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    struct tm parts;
    gmtime_r(&secs, &parts);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &parts);
    snprintf(buf, len, "%s.%03dZ", date, millis);
}

/* Reads exactly `digits` decimal digits at *p; -1 if not there. */
static int read_digits(const char **p, int digits)
{
    int value = 0;
    for (int i = 0; i < digits; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        value = value * 10 + ((*p)[i] - '0');
    }
    *p += digits;
    return value;
}

/* Fractional seconds ".123456" -> milliseconds (truncated). */
static int read_fraction_ms(const char **p)
{
    int ms = 0, scale = 100;
    if (**p != '.')
        return 0;
    (*p)++;
    if (!isdigit((unsigned char)**p))
        return -1;
    while (isdigit((unsigned char)**p)) {
        ms += (**p - '0') * scale;
        scale /= 10;
        (*p)++;
    }
    return ms;
}

static int parse_unix_seconds(const char *text, int64_t *out_ms)
{
    const char *p = text;
    int64_t secs = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        if (secs > 100000000000LL)
            return -1;
        secs = secs * 10 + (*p++ - '0');
    }
    int ms = read_fraction_ms(&p);
    if (ms < 0 || *p)
        return -1;
    *out_ms = secs * 1000 + ms;
    return 0;
}

static int parse_rfc3339(const char *text, int64_t *out_ms)
{
    const char *p = text;
    struct tm parts = {0};
    int year = read_digits(&p, 4);
    if (year < 0 || *p++ != '-') return -1;
    int mon = read_digits(&p, 2);
    if (mon < 1 || mon > 12 || *p++ != '-') return -1;
    int day = read_digits(&p, 2);
    if (day < 1 || day > 31 || (*p != 'T' && *p != 't' && *p != ' ')) return -1;
    p++;
    int hour = read_digits(&p, 2);
    if (hour < 0 || hour > 23 || *p++ != ':') return -1;
    int min = read_digits(&p, 2);
    if (min < 0 || min > 59 || *p++ != ':') return -1;
    int sec = read_digits(&p, 2);
    if (sec < 0 || sec > 60) return -1;
    int ms = read_fraction_ms(&p);
    if (ms < 0) return -1;
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh = read_digits(&p, 2);
        if (oh < 0 || oh > 23 || *p++ != ':') return -1;
        int om = read_digits(&p, 2);
        if (om < 0 || om > 59) return -1;
        offset_min = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p)
        return -1;
    parts.tm_year = year - 1900;
    parts.tm_mon = mon - 1;
    parts.tm_mday = day;
    parts.tm_hour = hour;
    parts.tm_min = min;
    parts.tm_sec = sec;
    time_t secs = timegm(&parts);
    /* timegm normalises impossible dates (Feb 31); reject them instead. */
    struct tm check;
    gmtime_r(&secs, &check);
    if (check.tm_mday != day && sec != 60)
        return -1;
    *out_ms = ((int64_t)secs - (int64_t)offset_min * 60) * 1000 + ms;
    return 0;
}

int clock_parse_time(const char *text, int64_t *out_ms, struct tm_error *err)
{
    if (parse_unix_seconds(text, out_ms) == 0 || parse_rfc3339(text, out_ms) == 0)
        return 0;
    tm_error_set(err, "invalid time '%s'", text);
    return tm_error_hint(err, "use RFC 3339 (2026-11-23T03:15:42Z, 2026-11-23T05:15:42+02:00) or Unix seconds (1795324542)");
}

int clock_parse_duration(const char *text, int64_t *out_ms, struct tm_error *err)
{
    char *end = NULL;
    if (!isdigit((unsigned char)text[0]))
        goto bad;
    double value = strtod(text, &end);
    double unit_ms;
    if (strcmp(end, "ms") == 0) unit_ms = 1;
    else if (strcmp(end, "s") == 0) unit_ms = 1000;
    else if (strcmp(end, "m") == 0) unit_ms = 60000;
    else if (strcmp(end, "h") == 0) unit_ms = 3600000;
    else if (strcmp(end, "d") == 0) unit_ms = 86400000;
    else goto bad;
    *out_ms = (int64_t)(value * unit_ms);
    if (*out_ms <= 0)
        goto bad;
    return 0;
bad:
    tm_error_set(err, "invalid duration '%s'", text);
    return tm_error_hint(err, "write a positive number with a unit: 500ms, 1s, 5m, 24h, 7d");
}
