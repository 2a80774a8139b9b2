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

/* `, "key": "value"` with value escaped. */
void report_string(struct report *r, const char *key, const char *value);

#endif
