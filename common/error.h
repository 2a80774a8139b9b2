/* error.h - the one error type every fallible tidemark function fills.
 *
 * Functions return 0 on success and -1 on failure; on failure they have
 * filled a caller-owned `struct tm_error` with a one-line message (lower
 * case, the thing at fault named in quotes) and, where useful, a hint on
 * what to do about it. Nothing below the command level prints errors. */
#ifndef TM_ERROR_H
#define TM_ERROR_H

/* What kind of failure it is, for callers that act on the kind (a lease
 * released meanwhile, a transient outage worth a retry). Nothing decides
 * from the message text. */
enum tm_error_code {
    TM_ERR_FAILED = 0,       /* anything not classified below */
    TM_ERR_NOT_FOUND,        /* the object, file or database does not exist */
    TM_ERR_TRANSIENT,        /* may work when tried again (network, throttling, busy) */
    TM_ERR_CORRUPT,          /* data exists but fails its checks (auth, chain, format) */
    TM_ERR_REFUSED,          /* the request is not allowed or not valid (usage, permission, config) */
    TM_ERR_WRONG_KEY,        /* encrypted under a key that was not given */
    TM_ERR_NO_MEMORY,
};

struct tm_error {
    enum tm_error_code code;
    char msg[768];
    char hint[384];
};

/* Set the message (printf-style), clear the hint, code TM_ERR_FAILED;
 * always returns -1 so callers can write `return tm_error_set(err, ...)`.
 * err may be NULL. */
int tm_error_set(struct tm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The same with a code. */
int tm_error_setc(struct tm_error *err, enum tm_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The code of an error (TM_ERR_FAILED for NULL). */
enum tm_error_code tm_error_code(const struct tm_error *err);

/* A stable lower-case name of a code ("not found", "transient", ...),
 * for JSON output and logs. */
const char *tm_error_code_name(enum tm_error_code code);

/* Set the hint of an error already set; returns -1. */
int tm_error_hint(struct tm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the current message with context ("segment 'x': " + msg); -1. */
int tm_error_prefix(struct tm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print "error: msg" and "HINT: hint" to stderr; once `log-format: json`
 * is set (log_set_json), one JSON log line with fields msg and hint. */
void tm_error_print(const struct tm_error *err);

#endif
