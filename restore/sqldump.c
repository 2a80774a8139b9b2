/* sqldump.c - a dump of an SQLite database for sqld's dump loader
 * (sqldump.h), written streaming from libsqlite3 (memory bounded by the
 * largest row).
 *
 * sqld (0.24.32) loads a dump line by line: blank lines and lines starting
 * with "--" are skipped, a statement ends at a line whose trimmed text ends
 * in ';', and the whole dump must be inside BEGIN ... COMMIT. So each row
 * is one line (values by SQLite's quote(); text with line breaks as
 * replace('..\n..','\n',char(10)), as the sqlite3 shell does), and every
 * inner line of a schema statement that ends in ';' (trigger bodies) gets
 * a comment appended, which the loader would otherwise cut at. */
#include "sqldump.h"

#include "../common/fsutil.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

/* A FILE that counts what was written. */
struct dump_out {
    FILE *fp;
    const char *path;
    int failed;
};

static void dump_put(struct dump_out *d, const char *text, size_t len)
{
    if (!d->failed && fwrite(text, 1, len, d->fp) != len)
        d->failed = errno ? errno : EIO;
}

static void dump_puts(struct dump_out *d, const char *text)
{
    dump_put(d, text, strlen(text));
}

/* A name as a quoted SQL identifier: "na""me". */
static void dump_ident(struct dump_out *d, const char *name)
{
    dump_put(d, "\"", 1);
    for (const char *p = name; *p; p++) {
        dump_put(d, p, 1);
        if (*p == '"')
            dump_put(d, p, 1);
    }
    dump_put(d, "\"", 1);
}

/* A marker ("\n", "\n0", "\n1", ...) not found in text: its first
 * character occurs in it only once, so no occurrence can straddle text
 * and marker. */
static void pick_marker(const char *text, char letter, char *marker, size_t len)
{
    snprintf(marker, len, "\\%c", letter);
    for (unsigned i = 0; strstr(text, marker); i++)
        snprintf(marker, len, "\\%c%u", letter, i);
}

/* A value as quote() wrote it; a quoted text holding CR or LF goes on one
 * line as replace(replace('..\r..\n..','\n',char(10)),'\r',char(13)). */
static void dump_value(struct dump_out *d, const char *quoted, size_t len)
{
    if (quoted[0] != '\'' || (!memchr(quoted, '\n', len) && !memchr(quoted, '\r', len))) {
        dump_put(d, quoted, len);
        return;
    }
    char nl[24], cr[24];
    pick_marker(quoted, 'n', nl, sizeof nl);
    pick_marker(quoted, 'r', cr, sizeof cr);
    int has_cr = memchr(quoted, '\r', len) != NULL, has_nl = memchr(quoted, '\n', len) != NULL;
    if (has_cr)
        dump_puts(d, "replace(");
    if (has_nl)
        dump_puts(d, "replace(");
    for (size_t i = 0; i < len; i++) {
        if (quoted[i] == '\n')
            dump_puts(d, nl);
        else if (quoted[i] == '\r')
            dump_puts(d, cr);
        else
            dump_put(d, &quoted[i], 1);
    }
    char tail[64];
    if (has_nl) {
        snprintf(tail, sizeof tail, ",'%s',char(10))", nl);
        dump_puts(d, tail);
    }
    if (has_cr) {
        snprintf(tail, sizeof tail, ",'%s',char(13))", cr);
        dump_puts(d, tail);
    }
}

enum sql_lex { LEX_CODE, LEX_STRING, LEX_IDENT_DQ, LEX_IDENT_BQ, LEX_IDENT_BR, LEX_LINE_COMMENT, LEX_BLOCK };

/* Walks one line of SQL from state *lex, leaving the state at its end. */
static void lex_line(const char *p, size_t len, enum sql_lex *lex)
{
    for (size_t i = 0; i < len; i++) {
        char c = p[i], next = i + 1 < len ? p[i + 1] : 0;
        switch (*lex) {
        case LEX_CODE:
            if (c == '\'')
                *lex = LEX_STRING;
            else if (c == '"')
                *lex = LEX_IDENT_DQ;
            else if (c == '`')
                *lex = LEX_IDENT_BQ;
            else if (c == '[')
                *lex = LEX_IDENT_BR;
            else if (c == '-' && next == '-')
                *lex = LEX_LINE_COMMENT, i++;
            else if (c == '/' && next == '*')
                *lex = LEX_BLOCK, i++;
            break;
        case LEX_STRING:   /* '' inside a string: leaves and enters again */
            if (c == '\'')
                *lex = LEX_CODE;
            break;
        case LEX_IDENT_DQ:
            if (c == '"')
                *lex = LEX_CODE;
            break;
        case LEX_IDENT_BQ:
            if (c == '`')
                *lex = LEX_CODE;
            break;
        case LEX_IDENT_BR:
            if (c == ']')
                *lex = LEX_CODE;
            break;
        case LEX_LINE_COMMENT:
            break;
        case LEX_BLOCK:
            if (c == '*' && next == '/')
                *lex = LEX_CODE, i++;
            break;
        }
    }
}

/* 1 when a line's trimmed text ends in ';' (the loader ends a statement there). */
static int line_ends_statement(const char *p, size_t len)
{
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r' || p[len - 1] == '\v' ||
                       p[len - 1] == '\f'))
        len--;
    return len > 0 && p[len - 1] == ';';
}

/* A schema statement and its ';', on as many lines as it has, none of its
 * inner lines ending in ';'. */
static int dump_schema_sql(struct dump_out *d, const char *name, const char *sql, struct tm_error *err)
{
    enum sql_lex lex = LEX_CODE;
    const char *line = sql;
    for (;;) {
        size_t len = strcspn(line, "\n");
        int last = line[len] == '\0';
        lex_line(line, len, &lex);
        dump_put(d, line, len);
        if (last)
            break;
        if (lex == LEX_STRING || lex == LEX_IDENT_DQ || lex == LEX_IDENT_BQ || lex == LEX_IDENT_BR)
            return tm_error_setc(err, TM_ERR_REFUSED,
                                 "the schema of '%s' has a line break inside a quoted string or name: sqld's "
                                 "dump loader cannot load it", name);
        if (line_ends_statement(line, len))
            dump_puts(d, lex == LEX_BLOCK ? "*/ /*" : "/**/");
        if (lex == LEX_LINE_COMMENT)
            lex = LEX_CODE;
        dump_put(d, "\n", 1);
        line += len + 1;
    }
    if (lex == LEX_STRING || lex == LEX_IDENT_DQ || lex == LEX_IDENT_BQ || lex == LEX_IDENT_BR || lex == LEX_BLOCK)
        return tm_error_setc(err, TM_ERR_REFUSED, "the schema statement of '%s' is not complete", name);
    dump_puts(d, lex == LEX_LINE_COMMENT ? "\n;\n" : ";\n");
    return 0;
}

/* Built from a table's columns (those an INSERT takes: generated and
 * hidden ones left out), in column order: [0] quote("c1"),quote("c2")..;
 * [1] ("c1","c2") when a generated column was left out, else ""; [2]
 * length(quote("c1"))+length(quote("c2")).. (sqlite3_malloc'ed; free
 * with sqldump_column_lists_free). */
int sqldump_column_lists(sqlite3 *db, const char *table, char *lists[3], struct tm_error *err)
{
    static const char *const sql =
        "SELECT group_concat('quote(\"' || replace(name, '\"', '\"\"') || '\")', ',') FILTER (WHERE hidden = 0), "
        "CASE WHEN max(hidden IN (2, 3)) THEN '(' || group_concat('\"' || replace(name, '\"', '\"\"') || '\"', ',') "
        "FILTER (WHERE hidden = 0) || ')' ELSE '' END, "
        "group_concat('length(quote(\"' || replace(name, '\"', '\"\"') || '\"))', '+') FILTER (WHERE hidden = 0) "
        "FROM pragma_table_xinfo(?1)";
    sqlite3_stmt *st;
    lists[0] = lists[1] = lists[2] = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return tm_error_set(err, "table '%s': %s", table, sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0);
    for (int i = 0; ok && i < 3; i++)
        ok = (lists[i] = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(st, i))) != NULL;
    if (!ok) {
        tm_error_set(err, "table '%s': no columns (%s)", table, sqlite3_errmsg(db));
        for (int i = 0; i < 3; i++)
            sqlite3_free(lists[i]);
    }
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

void sqldump_column_lists_free(char *lists[3])
{
    for (int i = 0; i < 3; i++)
        sqlite3_free(lists[i]);
}

/* INSERT INTO "t" VALUES(..); one line per row. */
static int dump_rows(sqlite3 *db, struct dump_out *d, const char *table, uint64_t *rows, struct tm_error *err)
{
    char *lists[3];
    if (sqldump_column_lists(db, table, lists, err) != 0)
        return -1;
    char *select = sqlite3_mprintf("SELECT %s FROM \"%w\"", lists[0], table);
    const char *columns = lists[1];
    sqlite3_stmt *st;
    int rc = select ? sqlite3_prepare_v2(db, select, -1, &st, NULL) : SQLITE_NOMEM;
    sqlite3_free(select);
    if (rc != SQLITE_OK) {
        sqldump_column_lists_free(lists);
        return tm_error_set(err, "table '%s': %s", table, sqlite3_errmsg(db));
    }
    int n = sqlite3_column_count(st);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && !d->failed) {
        dump_puts(d, "INSERT INTO ");
        dump_ident(d, table);
        dump_puts(d, columns);
        dump_puts(d, " VALUES(");
        for (int i = 0; i < n; i++) {
            if (i)
                dump_put(d, ",", 1);
            dump_value(d, (const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
        }
        dump_puts(d, ");\n");
        (*rows)++;
    }
    sqldump_column_lists_free(lists);
    int ok = rc == SQLITE_DONE || (rc == SQLITE_ROW && d->failed);
    if (!ok)
        tm_error_set(err, "reading table '%s': %s", table, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

/* A virtual table's CREATE the way the sqlite3 shell writes it. */
static void dump_virtual_table(struct dump_out *d, const char *name, const char *sql)
{
    char *line = sqlite3_mprintf("INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)"
                                 "VALUES('table',%Q,%Q,0,%Q);\n", name, name, sql);
    if (line)
        dump_puts(d, line);
    else
        d->failed = ENOMEM;
    sqlite3_free(line);
}

/* The tables (schema + rows, in sqlite_schema order, sqlite_sequence
 * last), then indexes, triggers and views. */
static int dump_database(sqlite3 *db, struct dump_out *d, uint64_t *rows, struct tm_error *err)
{
    static const char *const tables =
        "SELECT name, sql FROM sqlite_schema WHERE sql NOT NULL AND type = 'table' "
        "AND (name NOT LIKE 'sqlite_%' OR name = 'sqlite_sequence') AND name != 'libsql_wasm_func_table' "
        "ORDER BY name = 'sqlite_sequence', rowid";
    static const char *const others =
        "SELECT name, sql FROM sqlite_schema WHERE sql NOT NULL AND type IN ('index', 'trigger', 'view') "
        "ORDER BY rowid";
    sqlite3_stmt *st;
    int writable_schema = 0, rc = 0;
    dump_puts(d, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        if (sqlite3_prepare_v2(db, pass ? others : tables, -1, &st, NULL) != SQLITE_OK)
            return tm_error_setc(err, TM_ERR_CORRUPT, "cannot read the schema: %s", sqlite3_errmsg(db));
        while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            const char *sql = (const char *)sqlite3_column_text(st, 1);
            if (pass == 0 && strcmp(name, "sqlite_sequence") == 0) {
                dump_puts(d, "DELETE FROM sqlite_sequence;\n");
            } else if (pass == 0 && sqlite3_strnicmp(sql, "CREATE VIRTUAL TABLE", 20) == 0) {
                if (!writable_schema++)
                    dump_puts(d, "PRAGMA writable_schema=ON;\n");
                dump_virtual_table(d, name, sql);
                continue;
            } else if (dump_schema_sql(d, name, sql, err) != 0) {
                rc = -1;
                break;
            }
            if (pass == 0)
                rc = dump_rows(db, d, name, rows, err);
        }
        sqlite3_finalize(st);
    }
    if (writable_schema)
        dump_puts(d, "PRAGMA writable_schema=OFF;\n");
    dump_puts(d, "COMMIT;\n");
    return rc;
}

int sqld_write_dump(const char *db_path, const char *dump_path, uint64_t *bytes_out, uint64_t *rows_out,
                    struct tm_error *err)
{
    sqlite3 *db = NULL;
    uint64_t rows = 0;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        tm_error_setc(err, TM_ERR_NOT_FOUND, "cannot open database '%s': %s", db_path,
                      db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    int fd = fsutil_create_exclusive(dump_path, err);
    if (fd < 0) {
        sqlite3_close(db);
        return -1;
    }
    struct dump_out d = {.fp = fdopen(fd, "w"), .path = dump_path};
    int rc = -1;
    if (!d.fp) {
        close(fd);
        tm_error_set(err, "cannot open '%s': %s", dump_path, strerror(errno));
        goto done;
    }
    /* One read transaction: the dump is of one state of the file. */
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        tm_error_set(err, "database '%s': %s", db_path, sqlite3_errmsg(db));
        goto done;
    }
    rc = dump_database(db, &d, &rows, err);
    if (rc == 0 && (d.failed || fflush(d.fp) != 0 || fsync(fileno(d.fp)) != 0))
        rc = tm_error_set(err, "cannot write '%s': %s", dump_path, strerror(d.failed ? d.failed : errno));
    if (rc == 0 && bytes_out)
        *bytes_out = (uint64_t)ftello(d.fp);
    if (rows_out)
        *rows_out = rows;
done:
    if (d.fp && fclose(d.fp) != 0 && rc == 0)
        rc = tm_error_set(err, "cannot write '%s': %s", dump_path, strerror(errno));
    if (rc != 0)
        unlink(dump_path);
    sqlite3_close(db);
    return rc;
}

