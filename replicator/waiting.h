/* waiting.h - a configured database that does not exist yet, is empty,
 * or is not in WAL mode: the sidecar waits for it (waiting.c). */
#ifndef TM_WAITING_H
#define TM_WAITING_H

#include <sys/inotify.h>

#include "../common/config.h"
#include "../common/error.h"
#include "daemon.h"

/* Fails (err names the directory) when the database's directory does
 * not exist: the sidecar waits for the file, not for its directory. */
int waiting_check_directory(const struct config_db *cfg, struct tm_error *err);
/* Looks at the database file (its header only; nothing is opened with
 * SQLite, nothing locked); 0 at once while the tailer is open. Not a WAL
 * database yet: starts or goes on
 * waiting (logged once, the sync timer stopped, the file and its
 * directory watched) and returns 1. Otherwise returns 0, after leaving
 * the wait if there was one (the sync timer then fires at once and
 * starts the database; what else may be wrong with the file is
 * database_start's to report). */
int waiting_check(struct db_context *ctx);
/* 1 when inotify event ev concerns ctx's database file (its name in the
 * directory, or the file's own watch); keeps db_watch in step. */
int waiting_event(struct db_context *ctx, const struct inotify_event *ev);
/* While waiting: look at the file again in SCAN_DELAY_S (bursts of
 * events cost one look). */
void waiting_recheck_soon(struct db_context *ctx);
/* Stops the wait's timer and watch (stopping, or freeing ctx). */
void waiting_stop(struct db_context *ctx);

#endif
