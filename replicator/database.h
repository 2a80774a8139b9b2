/* database.h - one database's lifecycle on the daemon's loop: set up,
 * start, follow, restart, free (database.c). All on the loop's thread;
 * ctx is a SQLite database unless stated (a Redis has ctx->redis). */
#ifndef TM_DATABASE_H
#define TM_DATABASE_H

#include <stddef.h>
#include <sys/inotify.h>

#include "../common/config.h"
#include "../common/error.h"
#include "../common/storage/storage.h"
#include "daemon.h"

/* A configured database or Redis (cfg): its replicas and spool, the
 * tailer (or Redis capture), the control socket and every timer; the
 * database is started (or waits, waiting.c). 0, or -1 with err set. */
int database_setup(struct replicator *rep, struct db_context *ctx, const struct config_db *cfg,
                   struct tm_error *err);
/* The scan, sync, yield and waiters' timers (set, not started) and the
 * snapshot schedules (started), for a directory's database (tenants.c). */
void database_init_timers(struct replicator *rep, struct db_context *ctx);
/* Frees one database's context: its tailer, spool, uploaders, timers;
 * clients still waiting get an error line. */
void database_free(struct replicator *rep, struct db_context *ctx);
/* Refuses what cannot work (bad credentials, missing bucket, versioning
 * required but off); warns about what only weakens the backups; an
 * unreachable replica is not fatal (0): its objects wait in the spool. */
int database_check_replica(const struct config_db *db, size_t i, struct storage *replica,
                           struct tm_error *err);

/* Opens the tailer and continues the archive where it ends, or starts a
 * new generation when continuity with it cannot be proven. 0, -1 with
 * err set, or TAILER_LATER (try again at the next tick). */
int database_start(struct db_context *ctx, struct tm_error *err);
/* New generation: positions exactly at the pin's snapshot, and takes the
 * snapshot. 0; TAILER_LATER when commits kept arriving at every attempt
 * to read the pin's place (try again at the next tick; loud once it
 * lasts); -1 with err set. */
int database_start_generation(struct db_context *ctx, const char *reason, struct tm_error *err);
/* After a tailer_resume_* that returned `resumed`: ships what the WAL
 * holds past the position. 1: the archive continues; 0: it does not
 * (start a new generation); -1: error. */
int database_continue_archive(struct db_context *ctx, int resumed, struct tm_error *err);
/* Continuity was lost (why: for the log): closes the tailer and starts
 * again with a new generation; a missing file waits, an error is
 * reported and retried at the next tick. */
void database_restart(struct db_context *ctx, const char *why);
/* Ships everything committed so far (taking the pin first if it was let
 * go: pin_before_shipping): 0, 1 when continuity is lost (start a new
 * generation), -1 with err set. */
int database_ship_all(struct db_context *ctx, struct tm_error *err);
/* Scans the WAL SCAN_DELAY_S from now, unless a scan is pending. */
void database_scan_soon(struct db_context *ctx);
/* Whether inotify event `ev` concerns ctx's WAL; keeps the WAL file's
 * watch in step with the file (gone: -1; created again: watched). */
int database_wal_event(struct db_context *ctx, const struct inotify_event *ev);
/* Lets every uploader of the database look at its queue. */
void database_kick_uploaders(struct db_context *ctx);
/* Logs an error about the database: "WHAT: MESSAGE (HINT: ...)". */
void database_report(struct db_context *ctx, const char *what, const struct tm_error *err);
/* For the capture_failing alert and /healthz: since when the database
 * has not been followed, and why ("WHAT: MESSAGE"); what NULL: it is
 * followed again. */
void database_note_capture(struct db_context *ctx, const char *what, const struct tm_error *err);

#endif
