/* sqld.h - loading a restored SQLite file into a self-hosted libSQL
 * server (sqld), so that its embedded replicas serve the restored data.
 * Two routes (the comment atop sqld.c says why these two, and what sqld
 * keeps on disk):
 *   A. sqld_replace_stopped: the file replaces a namespace's database in
 *      the --db-path of a STOPPED sqld (exact bytes, fast, any namespace);
 *   B. sqld_create_namespace: a NEW namespace is created from a dump of
 *      the file through a RUNNING sqld's admin API, then checked.
 * Neither prints anything; errors name the thing at fault. */
#ifndef TM_SQLD_H
#define TM_SQLD_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define SQLD_PATH_BYTES 4096

/* What a load did and how long each step took (for the command's report
 * and for drills' RTO). */
struct sqld_report {
    int64_t install_ms;        /* A: copy + fsync + rename into dbs/NS/data; B: writing the dump */
    int64_t load_ms;           /* B: the create request (sqld loading the dump); A: 0 */
    int64_t first_query_ms;    /* B: the content check through the HTTP API; A: 0 (sqld is stopped) */
    uint64_t rows_checked;     /* B: rows compared (sum over the tables); A: 0 */
    uint64_t tables_checked;   /* B: tables compared; A: 0 */
    uint64_t bytes;            /* A: the file installed; B: the dump's size */
    uint32_t page_size;        /* of the restored file */
    char ns[256];              /* the namespace loaded */
    char data_path[SQLD_PATH_BYTES];    /* A: DB-PATH/dbs/NS/data */
    char aside_path[SQLD_PATH_BYTES];   /* A: where the replaced files went (undo, forensics); "" if
                                           the namespace had no database yet */
    char dump_path[SQLD_PATH_BYTES];    /* B: the dump written (removed after a successful load) */
};

/* Route A. Replaces namespace `ns` ("default" when NULL) of a stopped
 * sqld whose --db-path is db_path with restored_db (not modified).
 * Refused (TM_ERR_REFUSED, nothing changed) when: sqld is running or was
 * not shut down cleanly (dbs/NS/.sentinel exists, or a process holds a
 * SQLite lock on dbs/NS/data), db_path is not a sqld directory
 * (no .version file), the file's page size is not 4096 (sqld would
 * panic, or serve a wrong database), or the file fails
 * PRAGMA quick_check (TM_ERR_CORRUPT). Otherwise: the file is copied to
 * dbs/NS/data.tidemark-tmp and fsynced; the old data, data-wal, data-shm,
 * wallog, snapshots/ and to_compact/ are moved into
 * DB-PATH/tidemark-replaced/NS-<UTC time>/ (out->aside_path; the old
 * database is aside/data + aside/data-wal); the temp is renamed over
 * data; the directory fsynced. The replication log is gone, so sqld at
 * its next start rebuilds it from data under a NEW log id, which makes
 * every embedded replica fetch the new history at its next sync().
 * dbs/NS must exist (sqld made it: refused otherwise). 0, or -1 with err
 * set (a failure after the first move leaves the moved files in
 * out->aside_path and the old data in place: run again). */
int sqld_replace_stopped(const char *restored_db, const char *db_path, const char *ns, struct sqld_report *out,
                         struct tm_error *err);

/* Route B. Creates namespace `ns` on a running sqld (admin API at
 * admin_url, HTTP API at http_url; sqld with --enable-namespaces and
 * --admin-listen-addr) from a dump of restored_db written next to it
 * (sqld reads it as file://, so it must run on this host and be able to
 * read the file). The file must pass PRAGMA quick_check (any page size:
 * sqld makes its own database). Refused: ns "default" or not a plain name
 * ([A-Za-z0-9_-], 1..63), an existing namespace (TM_ERR_REFUSED). After
 * the create, every table's row count and the total length of its
 * quoted values are compared through the HTTP API (header
 * x-namespace-bin: base64(ns)) with the file; when the create or the
 * check fails the namespace is deleted again. 0, or -1 with err set. */
int sqld_create_namespace(const char *restored_db, const char *admin_url, const char *http_url, const char *ns,
                          struct sqld_report *out, struct tm_error *err);

/* The checks sqld_replace_stopped makes of the sqld side before it
 * touches anything (a sqld --db-path, namespace directory present, sqld
 * not running), for a caller that wants to refuse before spending time on
 * a restore. 0, or -1 with err set (TM_ERR_REFUSED). */
int sqld_check_stopped(const char *db_path, const char *ns, struct tm_error *err);

/* The checks sqld_create_namespace makes before loading: ns is a name it
 * takes (not "default"), and the admin API at admin_url answers that ns
 * does not exist (GET /v1/namespaces/NS/config: 404). 0, or -1 with err
 * set (TM_ERR_REFUSED; TM_ERR_TRANSIENT when the admin API cannot be
 * reached). */
int sqld_check_new_namespace(const char *admin_url, const char *ns, struct tm_error *err);

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

#endif
