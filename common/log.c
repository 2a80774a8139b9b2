/* log.c - logfmt or JSON log lines on stderr (log.h). The threshold and
 * format are process configuration, set once at start-up. */
#include "log.h"
#include "clock.h"

#include <stdarg.h>
#include <stdio.h>

static enum log_level log_threshold = LOG_INFO;
static int log_json;

void log_set_level(enum log_level level) { log_threshold = level; }
void log_set_json(int json) { log_json = json; }
int log_is_json(void) { return log_json; }

/* A quoted value: \" \\ \n escaped (the same rules suit logfmt and JSON). */
static void put_quoted(FILE *fp, const char *text)
{
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", fp);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}

/* logfmt quotes a value only when it needs it (empty, spaces, '=', '"'). */
static int needs_quotes(const char *value)
{
    if (!value[0])
        return 1;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p >= 0x7f)
            return 1;
    return 0;
}

static void put_field(FILE *fp, const char *key, const char *value, int first)
{
    if (log_json) {
        fprintf(fp, "%s\"%s\":", first ? "" : ",", key);
        put_quoted(fp, value);
        return;
    }
    fprintf(fp, "%s%s=", first ? "" : " ", key);
    if (needs_quotes(value))
        put_quoted(fp, value);
    else
        fputs(value, fp);
}

/* One line: ts, level, db and replica when given, msg, hint when given. */
static void emit(enum log_level level, const char *db, const char *replica, const char *message, const char *hint)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char when[40];
    clock_format_ms(clock_now_ms(), when, sizeof when);
    char line[4096];
    FILE *fp = fmemopen(line, sizeof line, "w");
    if (!fp)
        return;
    if (log_json)
        fputc('{', fp);
    if (log_json) {
        put_field(fp, "ts", when, 1);
        put_field(fp, "level", names[level], 0);
    } else {
        fprintf(fp, "ts=%s level=%s", when, names[level]);
    }
    if (db)
        put_field(fp, "db", db, 0);
    if (replica)
        put_field(fp, "replica", replica, 0);
    put_field(fp, "msg", message, 0);
    if (hint)
        put_field(fp, "hint", hint, 0);
    if (log_json)
        fputc('}', fp);
    fputc('\n', fp);
    fputc('\0', fp);
    fclose(fp);
    line[sizeof line - 2] = '\n';
    line[sizeof line - 1] = '\0';
    fputs(line, stderr);
}

void log_event(enum log_level level, const char *db, const char *replica, const char *fmt, ...)
{
    if (level < log_threshold)
        return;
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    emit(level, db, replica, message, NULL);
}

void log_error_hint(const char *message, const char *hint)
{
    emit(LOG_ERROR, NULL, NULL, message, hint && hint[0] ? hint : NULL);
}
