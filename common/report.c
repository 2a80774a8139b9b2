/* report.c - text or JSON records of commands over databases x replicas
 * (report.h). */
#include "report.h"

#include "json.h"
#include "textsafe.h"

void report_begin(struct report *r, FILE *out, int json)
{
    *r = (struct report){out, json, 0};
    if (json)
        fputc('[', out);
}

static void separate(struct report *r)
{
    if (r->json && r->records)
        fputs(",\n", r->out);
    r->records++;
}

void report_open(struct report *r, const char *db, const char *replica)
{
    separate(r);
    if (!r->json) {   /* a database name can come from the bucket (a `dir:` entry's) */
        fputs("database ", r->out);
        textsafe_print(r->out, db);
        fputs(", replica ", r->out);
        textsafe_print(r->out, replica);
        fputc(':', r->out);
        return;
    }
    fputs("{\"database\": ", r->out);
    json_write_string(r->out, db);
    report_string(r, "replica", replica);
}

void report_close(struct report *r)
{
    if (r->json)
        fputc('}', r->out);
}

void report_item(struct report *r, const char *json_object)
{
    separate(r);
    fputs(json_object, r->out);
}

void report_end(struct report *r)
{
    if (r->json)
        fputs("]\n", r->out);
}

void report_string(struct report *r, const char *key, const char *value)
{
    fprintf(r->out, ", \"%s\": ", key);
    json_write_string(r->out, value);
}

int report_walk(const struct config *cfg, const char *pattern, const char *replica, enum targets_walk walk,
                int json, report_each_fn each, void *ctx)
{
    struct tm_error err;
    struct targets_iter it;
    if (targets_begin(&it, cfg, pattern, replica, walk, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    struct report out;
    report_begin(&out, stdout, json);
    int failed = 0;
    const struct config_db *db;
    size_t index;
    while (targets_next(&it, &db, &index))
        failed |= each(ctx, db, index, &out) != 0;
    report_end(&out);
    if (targets_end(&it, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    return failed;
}
