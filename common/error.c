/* error.c - filling and printing struct tm_error (see error.h). */
#include "error.h"
#include "textsafe.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int set_message(struct tm_error *err, enum tm_error_code code, const char *fmt, va_list ap)
{
    if (!err)
        return -1;
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    err->hint[0] = '\0';
    return -1;
}

int tm_error_set(struct tm_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(err, TM_ERR_FAILED, fmt, ap);
    va_end(ap);
    return -1;
}

int tm_error_setc(struct tm_error *err, enum tm_error_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

enum tm_error_code tm_error_code(const struct tm_error *err)
{
    return err ? err->code : TM_ERR_FAILED;
}

const char *tm_error_code_name(enum tm_error_code code)
{
    switch (code) {
    case TM_ERR_NOT_FOUND: return "not found";
    case TM_ERR_TRANSIENT: return "transient";
    case TM_ERR_CORRUPT: return "corrupt";
    case TM_ERR_REFUSED: return "refused";
    case TM_ERR_WRONG_KEY: return "wrong key";
    case TM_ERR_NO_MEMORY: return "out of memory";
    case TM_ERR_FAILED: break;
    }
    return "failed";
}

int tm_error_hint(struct tm_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->hint, sizeof err->hint, fmt, ap);
    va_end(ap);
    return -1;
}

int tm_error_prefix(struct tm_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return -1;
}

void tm_error_print(const struct tm_error *err)
{
    if (log_is_json()) {   /* `log-format: json` is set: one JSON log line */
        log_error_hint(err->msg, err->hint);
        return;
    }
    fputs("error: ", stderr);   /* messages name bucket objects: no control characters */
    textsafe_print(stderr, err->msg);
    fputc('\n', stderr);
    if (err->hint[0]) {
        fputs("HINT: ", stderr);
        textsafe_print(stderr, err->hint);
        fputc('\n', stderr);
    }
}
