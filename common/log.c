/* log.c - log lines: "2026-11-24T00:15:00.123Z INFO message" on stderr.
 * The threshold is process configuration, set once at start-up. */
#include "log.h"
#include "clock.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level log_threshold = LOG_INFO;

void log_set_level(enum log_level level) { log_threshold = level; }

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (level < log_threshold)
        return;
    char when[40];
    clock_format_ms(clock_now_ms(), when, sizeof when);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s %s %s\n", when, names[level], line);
}
