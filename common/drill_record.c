/* drill_record.c - writing and reading drill records (drill_record.h).
 *
 * The reader takes the one-level JSON the writer makes: an object whose
 * values are strings, numbers, true, false or null (or an array whose
 * first element is such an object). It keeps the fields readers use and
 * skips the others, whatever their order or spacing. */
#include "drill_record.h"

#include "clock.h"
#include "json.h"
#include "layout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *drill_record_format(const struct drill_record *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    if (!fp)
        return NULL;
    char started[40], point[40];
    clock_format_ms(r->started_ms, started, sizeof started);
    clock_format_ms(r->point_ms, point, sizeof point);
    fprintf(fp, "{\"time\": \"%s\", \"db\": ", started);
    json_write_string(fp, r->db);
    fprintf(fp, ", \"replica\": ");
    json_write_string(fp, r->replica);
    fprintf(fp, ", \"ok\": %s, \"rto_ms\": %" PRId64, r->ok ? "true" : "false", r->rto_ms);
    if (r->point_ms)
        fprintf(fp, ", \"rpo_ms\": %" PRId64 ", \"point\": \"%s\"", r->rpo_ms, point);
    if (r->check_sql) {
        fprintf(fp, ", \"check_sql\": ");
        json_write_string(fp, r->check_sql);
        fprintf(fp, ", \"check_result\": ");
        json_write_string(fp, r->check_result ? r->check_result : "");
    }
    if (r->published && r->published[0]) {
        fprintf(fp, ", \"published\": ");
        json_write_string(fp, r->published);
        fprintf(fp, ", \"served_ms\": %" PRId64, r->served_ms);
    }
    if (r->after) {
        fprintf(fp, ", \"after\": ");
        json_write_string(fp, r->after);
        fprintf(fp, ", \"after_ms\": %" PRId64, r->after_ms);
    }
    if (r->error && r->error[0]) {
        fprintf(fp, ", \"error\": ");
        json_write_string(fp, r->error);
    }
    if (r->read_bytes)
        fprintf(fp, ", \"read_bytes\": %" PRIu64, r->read_bytes);
    if (r->phases)
        fprintf(fp, ", \"phases\": {\"fetch_ms\": %" PRId64 ", \"decrypt_decompress_ms\": %" PRId64 ", \"write_ms\": %"
                PRId64 ", \"fsync_ms\": %" PRId64 ", \"check_ms\": %" PRId64 ", \"total_ms\": %" PRId64 "}",
                r->phases->fetch_ms, r->phases->decode_ms, r->phases->write_ms, r->phases->fsync_ms,
                r->phases->check_ms, r->phases->total_ms);
    fprintf(fp, "}");
    if (fclose(fp) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---------------------------------------------------------------- reading */

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Appends one byte to out (len bytes, NUL kept; the rest is cut). */
static void put_byte(char *out, size_t len, size_t *used, unsigned byte)
{
    if (out && *used + 1 < len)
        out[(*used)++] = (char)byte;
}

/* A code point from \uXXXX, as UTF-8. */
static void put_code_point(char *out, size_t len, size_t *used, unsigned code)
{
    if (code >= 0xd800 && code <= 0xdfff) {   /* a surrogate is no character: not valid UTF-8 */
        put_byte(out, len, used, '?');
    } else if (code < 0x80) {
        put_byte(out, len, used, code);
    } else if (code < 0x800) {
        put_byte(out, len, used, 0xc0 | code >> 6);
        put_byte(out, len, used, 0x80 | (code & 0x3f));
    } else {
        put_byte(out, len, used, 0xe0 | code >> 12);
        put_byte(out, len, used, 0x80 | ((code >> 6) & 0x3f));
        put_byte(out, len, used, 0x80 | (code & 0x3f));
    }
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* The escape after a backslash at *p (advanced past it); -1 if invalid. */
static int read_escape(const char **p, char *out, size_t len, size_t *used)
{
    static const char plain[] = "\"\\/bfnrt", meant[] = "\"\\/\b\f\n\r\t";
    char c = *(*p)++;
    const char *at = c ? strchr(plain, c) : NULL;
    if (at) {
        put_byte(out, len, used, (unsigned char)meant[at - plain]);
        return 0;
    }
    if (c != 'u')
        return -1;
    unsigned code = 0;
    for (int i = 0; i < 4; i++) {
        char h = *(*p)++;
        int d = hex_digit(h);
        if (d < 0)
            return -1;
        code = code << 4 | (unsigned)d;
    }
    put_code_point(out, len, used, code);
    return 0;
}

/* Bytes of the valid UTF-8 character at p (0: invalid). */
static size_t utf8_length(const unsigned char *p)
{
    size_t n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 2 && *p < 0xc2)
        return 0;   /* overlong */
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Replaces every byte that is not part of valid UTF-8 with '?', so that
 * what is read from a record can be written as valid JSON. */
static void keep_valid_utf8(char *text)
{
    for (unsigned char *p = (unsigned char *)text; *p;) {
        size_t n = utf8_length(p);
        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
}

/* The string whose opening quote is at *p, into out (NULL: skipped);
 * *p is left after its closing quote. */
static int read_string(const char **p, char *out, size_t len)
{
    size_t used = 0;
    const char *s = *p + 1;
    for (;;) {
        unsigned char c = (unsigned char)*s++;
        if (c == '"')
            break;
        if (c < 0x20)   /* the end of the text included */
            return -1;
        if (c != '\\')
            put_byte(out, len, &used, c);
        else if (read_escape(&s, out, len, &used) != 0)
            return -1;
    }
    if (out) {
        out[used] = '\0';
        keep_valid_utf8(out);
    }
    *p = s;
    return 0;
}

/* Nested objects (phases) are read past, at most this deep: a record is
 * bucket data, and anyone with write access could plant a deep one. */
#define NESTING_MAX 4

static int read_members(const char **at, struct drill_summary *out, int depth);

/* The value of member `key` at *p: kept in *out if readers use it. */
static int read_value(const char **p, const char *key, struct drill_summary *out, int depth)
{
    const char *s = *p;
    if (*s == '{') {   /* phases: not kept */
        struct drill_summary nested;
        return depth >= NESTING_MAX ? -1 : read_members(p, &nested, depth + 1);
    }
    if (*s == '"') {
        const struct { const char *key; char *into; size_t len; } kept[] = {
            {"time", out->time, sizeof out->time}, {"point", out->point, sizeof out->point},
            {"check_result", out->check_result, sizeof out->check_result},
            {"error", out->error, sizeof out->error}, {"published", out->published, sizeof out->published},
            {"after", out->after, sizeof out->after}};
        for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
            if (strcmp(key, kept[i].key) == 0)
                return read_string(p, kept[i].into, kept[i].len);
        return read_string(p, NULL, 0);
    }
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strncmp(s, words[i], strlen(words[i])) == 0) {
            if (strcmp(key, "ok") == 0)
                out->ok = i == 0;
            *p = s + strlen(words[i]);
            return 0;
        }
    char *end;
    strtod(s, &end);
    if (end == s)
        return -1;
    if (strcmp(key, "rto_ms") == 0)
        out->rto_ms = strtoll(s, NULL, 10);
    else if (strcmp(key, "rpo_ms") == 0)
        out->rpo_ms = strtoll(s, NULL, 10);
    else if (strcmp(key, "served_ms") == 0)
        out->served_ms = strtoll(s, NULL, 10);
    else if (strcmp(key, "after_ms") == 0)
        out->after_ms = strtoll(s, NULL, 10);
    else if (strcmp(key, "read_bytes") == 0)
        out->read_bytes = strtoll(s, NULL, 10);
    *p = end;
    return 0;
}

/* The members of the object whose '{' is at *at; *at ends past its '}'. */
static int read_members(const char **at, struct drill_summary *out, int depth)
{
    const char *p = skip_space(*at + 1);
    while (*p != '}') {
        char key[32];
        if (*p != '"' || read_string(&p, key, sizeof key) != 0)
            return -1;
        p = skip_space(p);
        if (*p != ':')
            return -1;
        p = skip_space(p + 1);
        if (read_value(&p, key, out, depth) != 0)
            return -1;
        p = skip_space(p);
        if (*p == ',') {
            p = skip_space(p + 1);
            if (*p != '"')
                return -1;
        } else if (*p != '}') {
            return -1;
        }
    }
    *at = p + 1;
    return 0;
}

int drill_record_parse(const char *text, struct drill_summary *out, struct tm_error *err)
{
    *out = (struct drill_summary){.time = "?", .ok = 0, .rto_ms = -1, .rpo_ms = -1, .served_ms = -1, .after_ms = -1,
                                 .read_bytes = -1};
    const char *p = skip_space(text);
    if (*p == '[')
        p = skip_space(p + 1);
    if (*p != '{' || read_members(&p, out, 0) != 0)
        return tm_error_setc(err, TM_ERR_CORRUPT, "not a drill record (malformed JSON)");
    return 0;
}

static void write_ms(FILE *out, const char *key, int64_t ms)
{
    if (ms < 0)
        fprintf(out, ", \"%s\": null", key);
    else
        fprintf(out, ", \"%s\": %" PRId64, key, ms);
}

static void write_optional(FILE *out, const char *key, const char *value)
{
    if (!value[0])
        return;
    fprintf(out, ", \"%s\": ", key);
    json_write_string(out, value);
}

void drill_summary_write_json(const struct drill_summary *s, FILE *out)
{
    fputs("{\"time\": ", out);
    json_write_string(out, s->time);
    fprintf(out, ", \"ok\": %s", s->ok ? "true" : "false");
    write_ms(out, "rto_ms", s->rto_ms);
    write_ms(out, "rpo_ms", s->rpo_ms);
    write_optional(out, "point", s->point);
    write_optional(out, "check_result", s->check_result);
    write_optional(out, "published", s->published);
    if (s->published[0])
        write_ms(out, "served_ms", s->served_ms);
    write_optional(out, "after", s->after);
    if (s->after[0])
        write_ms(out, "after_ms", s->after_ms);
    write_optional(out, "error", s->error);
    if (s->read_bytes >= 0)
        fprintf(out, ", \"read_bytes\": %" PRId64, s->read_bytes);
    fputc('}', out);
}

int drill_latest(struct storage *st, const char *db, char **record, int *found, struct tm_error *err)
{
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_DRILLS, dir, sizeof dir);
    *found = 0;
    *record = NULL;
    struct storage_list list;
    if (storage_list(st, dir, &list, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = list.count; i-- > 0;) {
        const struct storage_entry *e = &list.entries[i];
        if (e->is_dir || !layout_is_drill_record(e->name))
            continue;
        char key[1024];
        layout_child_key(dir, e->name, key, sizeof key);
        size_t size;
        if ((rc = storage_read_capped(st, key, DRILL_RECORD_MAX, record, &size, err)) == 0)
            *found = 1;
        break;
    }
    storage_list_release(&list);
    return rc;
}
