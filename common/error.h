/* error.h - the one error type every fallible tidemark function fills.
 *
 * Functions return 0 on success and -1 on failure; on failure they have
 * filled a caller-owned `struct tm_error` with a one-line message (lower
 * case, the thing at fault named in quotes) and, where useful, a hint on
 * what to do about it. Nothing below the command level prints errors. */
#ifndef TM_ERROR_H
#define TM_ERROR_H

struct tm_error {
    char msg[768];
    char hint[384];
};

/* Set the message (printf-style), clear the hint; always returns -1 so
 * callers can write `return tm_error_set(err, ...)`. err may be NULL. */
int tm_error_set(struct tm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Set the hint of an error already set; returns -1. */
int tm_error_hint(struct tm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the current message with context ("segment 'x': " + msg); -1. */
int tm_error_prefix(struct tm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print "error: msg" and "HINT: hint" to stderr. */
void tm_error_print(const struct tm_error *err);

#endif
