/* report.h - the output of commands that walk databases x replicas
 * (list, verify, retention, drill): text, or with --json one JSON array
 * holding one object per database and replica.
 *
 * Text: report_open prints "database NAME, replica NAME:" and the command
 * continues the line. JSON: report_open prints
 *   {"database": "NAME", "replica": "NAME"
 * (after ",\n" from the second record on), the command adds its fields as
 * `, "key": value`, report_close prints "}". */
#ifndef TM_REPORT_H
#define TM_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "targets.h"

struct report {
    FILE *out;
    int json;
    size_t records;
};

/* JSON: prints "[". */
void report_begin(struct report *r, FILE *out, int json);
void report_open(struct report *r, const char *db, const char *replica);
void report_close(struct report *r);
/* A record the command formatted whole (a JSON object), in the array. */
void report_item(struct report *r, const char *json_object);
/* JSON: prints "]" and a newline. */
void report_end(struct report *r);

/* What a command does for one database and replica (TARGETS_ANY_REPLICA
 * with TARGETS_ONE_REPLICA); non-zero when it failed. */
typedef int (*report_each_fn)(void *ctx, const struct config_db *db, size_t replica, struct report *out);

/* The whole walk of a command over the databases `pattern` selects (NULL:
 * every one) and their replicas, on stdout: the JSON brackets, each record
 * by `each`, selection errors printed. Returns the exit code: 0, or 1
 * when the selection failed or any `each` did. */
int report_walk(const struct config *cfg, const char *pattern, const char *replica, enum targets_walk walk,
                int json, report_each_fn each, void *ctx);

/* `, "key": "value"` with value escaped. */
void report_string(struct report *r, const char *key, const char *value);

#endif
