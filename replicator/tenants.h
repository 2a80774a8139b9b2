/* tenants.h - the databases of `dir:` entries, a database per tenant,
 * asleep while idle (tenants.c). Each such database's context points to
 * its struct tenant_state (ctx->tenant), which only tenants.c reads. */
#ifndef TM_TENANTS_H
#define TM_TENANTS_H

#include <sys/inotify.h>

#include "../common/error.h"
#include "daemon.h"

/* Every `dir:` entry: its lock, shared replicas, the databases found in
 * its directory (asleep, woken in batches), its timers and control
 * socket. 0, or -1 with err set (naming the entry). */
int tenants_start(struct replicator *rep, struct tm_error *err);
/* Stops the entries' timers and control sockets (stopping). */
void tenants_stop(struct replicator *rep);
/* Frees the entries (after their databases' contexts). */
void tenants_free(struct replicator *rep);
/* 1 when the inotify event was one of the entries' directories'. */
int tenants_handle_event(struct replicator *rep, const struct inotify_event *ev);
/* Events were lost: every directory is walked again. */
void tenants_handle_overflow(struct replicator *rep);

/* For the other modules, about one context (ctx->tenant NULL: a
 * configured database; each returns 0 or does nothing for it). */

/* 1 when the database sleeps: its files are closed. */
int tenants_asleep(const struct db_context *ctx);
/* Queues a sleeping database's wake (a scheduled snapshot). */
void tenants_wake_later(struct db_context *ctx);
/* Stopping: 1 when the database is asleep, deleted, or was put to sleep
 * now (everything shipped; a clean sleep is kept for the next start);
 * 0 when it must be stopped as an awake one. */
int tenants_sleep_before_stop(struct db_context *ctx);
/* Frees the tenant state of a context being freed (with its own
 * configuration: ctx->cfg is no longer valid). */
void tenants_free_state(struct db_context *ctx);

#endif
