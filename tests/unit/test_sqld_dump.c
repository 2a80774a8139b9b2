/* test_sqld_dump.c - the dump restore/sqld.c writes for sqld's dump
 * loader: values as quote() makes them (NULL, integers, reals, blobs, text
 * with quotes), text holding line breaks on one line through replace()
 * (with another marker when the text holds "\n" itself), schema
 * statements whose inner lines never end in ';' (a multi-line trigger, a
 * block comment, a line comment), a generated column, AUTOINCREMENT. Each
 * dump is loaded the way sqld loads it (load_dump: line based, a statement
 * ends at a line whose trimmed text ends in ';', blank and "--" lines
 * skipped, each statement prepared on its own) into a new database whose
 * content must equal the source's; a line break inside a quoted string of
 * the schema is refused, no file left. */
#include "harness.h"

#include "../../restore/sqld.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void tmp_path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", harness_tmpdir(), name);
}

static int exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    int rc = sqlite3_open(path, &db) == SQLITE_OK ? sqlite3_exec(db, sql, NULL, NULL, NULL) : SQLITE_ERROR;
    if (rc != SQLITE_OK)
        fprintf(stderr, "  %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc;
}

static char *read_all(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    size_t n = fread(text, 1, (size_t)len, fp);
    text[n] = '\0';
    fclose(fp);
    return text;
}

/* sqld's load_dump, as read at libsql-server 0.24.32: a line is added to
 * the statement; a statement ends at a line whose trimmed text ends in
 * ';'; it must prepare as exactly one statement. 0, or -1 (line number
 * printed). */
static int load_like_sqld(const char *dump_path, const char *db_path)
{
    FILE *fp = fopen(dump_path, "r");
    sqlite3 *db;
    if (!fp || sqlite3_open(db_path, &db) != SQLITE_OK)
        return -1;
    char line[65536], stmt[262144] = "";
    int rc = 0, number = 0;
    while (rc == 0 && fgets(line, sizeof line, fp)) {
        number++;
        const char *start = line + strspn(line, " \t\r\n");
        size_t end = strlen(start);
        while (end > 0 && strchr(" \t\r\n", start[end - 1]))
            end--;
        if (end == 0 || strncmp(start, "--", 2) == 0)
            continue;
        strcat(stmt, line);
        if (start[end - 1] != ';')
            continue;
        sqlite3_stmt *st;
        const char *tail = NULL;
        if (sqlite3_prepare_v2(db, stmt, -1, &st, &tail) != SQLITE_OK || !st) {
            fprintf(stderr, "  line %d: %s in: %s\n", number, sqlite3_errmsg(db), stmt);
            rc = -1;
            break;
        }
        int step = sqlite3_step(st);
        sqlite3_finalize(st);
        if ((step != SQLITE_DONE && step != SQLITE_ROW) || tail[strspn(tail, " \t\r\n")] != '\0') {
            fprintf(stderr, "  line %d: %s, tail '%s'\n", number, sqlite3_errmsg(db), tail);
            rc = -1;
        }
        stmt[0] = '\0';
    }
    sqlite3_close(db);
    fclose(fp);
    return rc;
}

/* The whole content of a database as text: the schema's names and types,
 * every row of every table by quote(), sqlite_sequence. */
static char *content(const char *path)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return NULL;
    sqlite3_str *out = sqlite3_str_new(db);
    sqlite3_stmt *tables, *rows;
    sqlite3_prepare_v2(db, "SELECT type, name FROM sqlite_schema ORDER BY name", -1, &tables, NULL);
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(tables, 0), *name = (const char *)sqlite3_column_text(tables, 1);
        sqlite3_str_appendf(out, "%s %s\n", type, name);
        if (strcmp(type, "table") != 0)
            continue;
        char *sql = sqlite3_mprintf("SELECT * FROM \"%w\" ORDER BY 1", name);
        sqlite3_prepare_v2(db, sql, -1, &rows, NULL);
        sqlite3_free(sql);
        while (sqlite3_step(rows) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(rows); i++) {
                int vtype = sqlite3_column_type(rows, i), len = sqlite3_column_bytes(rows, i);
                const unsigned char *bytes = sqlite3_column_blob(rows, i);
                sqlite3_str_appendf(out, "%d:", vtype);
                for (int b = 0; vtype == SQLITE_BLOB && b < len; b++)
                    sqlite3_str_appendf(out, "%02x", bytes[b]);
                if (vtype != SQLITE_BLOB)
                    sqlite3_str_appendf(out, "%.*Q", len, (const char *)bytes);
                sqlite3_str_appendchar(out, 1, ' ');
            }
            sqlite3_str_appendchar(out, 1, '\n');
        }
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tables);
    char *text = sqlite3_str_finish(out);
    sqlite3_close(db);
    return text;
}

static const char *const rich_schema =
    "PRAGMA journal_mode=WAL;\n"
    "CREATE TABLE t(id INTEGER PRIMARY KEY, v ANY, note TEXT /* a comment;\n"
    "  ending in ; */, n REAL -- a line comment;\n"
    ");\n"
    "CREATE TABLE log(id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);\n"
    "CREATE TABLE g(a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, \"we\"\"ird\" TEXT);\n"
    "CREATE TRIGGER trg AFTER INSERT ON t\n"
    "BEGIN\n"
    "  INSERT INTO log(what) VALUES ('t ' || new.id);\n"
    "  INSERT INTO log(what) VALUES ('again');\n"
    "END;\n"
    "CREATE INDEX t_note ON t(note);\n"
    "CREATE VIEW v AS SELECT id,\n"
    "  note FROM t;\n"
    "INSERT INTO t VALUES (1, NULL, 'it''s', 1.5);\n"
    "INSERT INTO t VALUES (2, x'00ff10', 'line1' || char(10) || 'line2;', -0.25);\n"
    "INSERT INTO t VALUES (3, 42, 'cr' || char(13) || char(10) || 'lf', 1e300);\n"
    "INSERT INTO t VALUES (4, 'has \\n already' || char(10) || 'and a break', '', NULL);\n"
    "INSERT INTO g(a, \"we\"\"ird\") VALUES (21, 'x'), (NULL, NULL);\n"
    "DELETE FROM log WHERE id = 2;\n";

static void test_dump_loads_like_the_source(void)
{
    char src[512], dump[512], dst[512];
    tmp_path(src, sizeof src, "src.db");
    tmp_path(dump, sizeof dump, "dump.sql");
    tmp_path(dst, sizeof dst, "dst.db");
    ASSERT_EQ(exec_sql(src, rich_schema), SQLITE_OK);
    struct tm_error err;
    uint64_t bytes = 0, rows = 0;
    int rc = sqld_write_dump(src, dump, &bytes, &rows, &err);
    if (rc != 0)
        fprintf(stderr, "  %s\n", err.msg);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(rows, 4 + 7 + 2 + 1);   /* t, log (2 per row of t by the trigger, one deleted), g, sqlite_sequence */
    char *text = read_all(dump);
    ASSERT_TRUE(text);
    ASSERT_EQ(bytes, strlen(text));
    ASSERT_STR_CONTAINS(text, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
    ASSERT_STR_CONTAINS(text, "INSERT INTO \"t\" VALUES(1,NULL,'it''s',1.5);\n");
    ASSERT_STR_CONTAINS(text, "INSERT INTO \"t\" VALUES(2,X'00FF10',replace('line1\\nline2;','\\n',char(10)),-0.25);\n");
    ASSERT_STR_CONTAINS(text, "replace(replace('cr\\r\\nlf','\\n',char(10)),'\\r',char(13))");
    ASSERT_STR_CONTAINS(text, "replace('has \\n already\\n0and a break','\\n0',char(10))");
    ASSERT_STR_CONTAINS(text, "INSERT INTO \"g\"(\"a\",\"we\"\"ird\") VALUES(21,'x');\n");
    ASSERT_STR_CONTAINS(text, "  INSERT INTO log(what) VALUES ('t ' || new.id);/**/\n");
    ASSERT_STR_CONTAINS(text, "/* a comment;*/ /*\n");
    ASSERT_STR_CONTAINS(text, "-- a line comment;/**/\n");
    ASSERT_STR_CONTAINS(text, "DELETE FROM sqlite_sequence;\nINSERT INTO \"sqlite_sequence\" VALUES('log',8);\n");
    ASSERT_TRUE(strstr(text, "COMMIT;\n") == text + strlen(text) - 8);
    free(text);
    ASSERT_EQ(load_like_sqld(dump, dst), 0);
    char *want = content(src), *got = content(dst);
    ASSERT_TRUE(want && got);
    ASSERT_STR_EQ(got, want);
    ASSERT_STR_CONTAINS(got, "1:'2' 4:00ff10 3:'line1\nline2;' 2:'-0.25' \n");
    sqlite3_free(want);
    sqlite3_free(got);
    /* the trigger still works in the loaded copy */
    ASSERT_EQ(exec_sql(dst, "INSERT INTO t(id) VALUES (9);"), SQLITE_OK);
    ASSERT_EQ(exec_sql(dst, "CREATE TABLE chk AS SELECT count(*) AS n FROM log WHERE what = 't 9';"), SQLITE_OK);
    char *after = content(dst);
    ASSERT_STR_CONTAINS(after, "table chk\n1:'1' \n");
    sqlite3_free(after);
}

static void test_line_break_in_schema_string_refused(void)
{
    char src[512], dump[512];
    tmp_path(src, sizeof src, "src.db");
    tmp_path(dump, sizeof dump, "dump.sql");
    ASSERT_EQ(exec_sql(src, "CREATE TABLE ok(a);\nCREATE TABLE bad(a TEXT DEFAULT 'x;\ny');"), SQLITE_OK);
    struct tm_error err;
    ASSERT_EQ(sqld_write_dump(src, dump, NULL, NULL, &err), -1);
    ASSERT_EQ(err.code, TM_ERR_REFUSED);
    ASSERT_STR_CONTAINS(err.msg, "'bad'");
    ASSERT_TRUE(access(dump, F_OK) != 0);
}

static void test_empty_database_dumps_a_transaction(void)
{
    char src[512], dump[512], dst[512];
    tmp_path(src, sizeof src, "src.db");
    tmp_path(dump, sizeof dump, "dump.sql");
    tmp_path(dst, sizeof dst, "dst.db");
    ASSERT_EQ(exec_sql(src, "PRAGMA user_version=1;"), SQLITE_OK);
    struct tm_error err;
    ASSERT_EQ(sqld_write_dump(src, dump, NULL, NULL, &err), 0);
    char *text = read_all(dump);
    ASSERT_STR_EQ(text, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCOMMIT;\n");
    free(text);
    ASSERT_EQ(load_like_sqld(dump, dst), 0);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"sqld dump: values, line breaks, trigger, comments, generated, autoincrement load as sqld loads them",
         test_dump_loads_like_the_source},
        {"sqld dump: a line break inside a schema string is refused, no file left",
         test_line_break_in_schema_string_refused},
        {"sqld dump: an empty database is BEGIN..COMMIT", test_empty_database_dumps_a_transaction},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
