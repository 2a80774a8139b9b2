/* sqldump.h - a dump of an SQLite database in the form sqld's dump
 * loader accepts (route B of sqld.h: a new namespace created from it).
 * Format and the loader's limits at the top of sqldump.c. */
#ifndef TM_SQLDUMP_H
#define TM_SQLDUMP_H

#include <stdint.h>

#include "../common/error.h"

/* Writes a dump of database db at dump_path (a new file, mode 0600) in
 * the form sqld's dump loader accepts: one statement per line for the
 * data (values by SQLite's quote(); text holding line breaks as
 * replace('..\n..','\n',char(10)), as the sqlite3 shell does), schema
 * statements whose inner lines never end in ';' (the loader cuts a
 * statement at any line ending in ';': "/ * * /" is appended to such a
 * line of a trigger body), inside BEGIN TRANSACTION; ... COMMIT;.
 * Streaming: memory bounded by the largest row. Refused
 * (TM_ERR_REFUSED) for a schema statement with a line break inside a
 * quoted string or name. *bytes_out (may be NULL) gets the dump's size,
 * *rows_out (may be NULL) the rows written. 0, or -1 with err set
 * (nothing left at dump_path). */
int sqld_write_dump(const char *db, const char *dump_path, uint64_t *bytes_out, uint64_t *rows_out,
                    struct tm_error *err);


struct sqlite3;

/* The column lists of `table` (pragma table_xinfo, hidden columns left
 * out), as the dump writes its rows: [0] quote("c1"),quote("c2")..; [1]
 * ("c1","c2") when a generated column was left out, else ""; [2]
 * length(quote("c1"))+length(quote("c2")).. (what sqld.c's content check
 * sums, in the restored file and in sqld). sqlite3_malloc'ed: free with
 * sqldump_column_lists_free. 0, or -1 with err set. */
int sqldump_column_lists(struct sqlite3 *db, const char *table, char *lists[3], struct tm_error *err);
void sqldump_column_lists_free(char *lists[3]);

#endif
