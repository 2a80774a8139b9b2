/* log.h - one line per event on stderr, in logfmt
 *   ts=2026-11-24T00:15:00.123Z level=info db=app replica=s3 msg="..."
 * or, with `log-format: json`, one JSON object per line. Secrets never go
 * through here: callers log names and messages, never keys or headers. */
#ifndef TM_LOG_H
#define TM_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Process configuration, set once by main() before any work. */
void log_set_level(enum log_level level);
void log_set_json(int json);
int log_is_json(void);

/* db and replica may be NULL. */
void log_event(enum log_level level, const char *db, const char *replica, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An error and its hint (NULL or "": none) as one log line, "hint" a
 * field of its own; tm_error_print uses it under `log-format: json`. */
void log_error_hint(const char *message, const char *hint);

#define log_msg(level, ...) log_event(level, NULL, NULL, __VA_ARGS__)
#define log_debug(...) log_event(LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_event(LOG_INFO, NULL, NULL, __VA_ARGS__)
#define log_warn(...) log_event(LOG_WARN, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_event(LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
