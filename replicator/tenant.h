/* tenant.h - one database of a `dir:` entry: its state, and putting it
 * to sleep and waking it (tenant.c). Shared by tenant.c and tenants.c
 * only; the rest of the daemon uses tenants.h. */
#ifndef TM_TENANT_H
#define TM_TENANT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "../common/config.h"
#include "daemon.h"
#include "wal.h"

struct tenant_dir {
    struct replicator *owner;
    const struct config_db *entry;
    struct discovery *discovery;
    struct storage **replicas;       /* shared by its databases */
    size_t replica_count;
    int lock_fd;                     /* on the entry's state directory */
    size_t awake;                    /* databases with their files open */
    size_t max_open;                 /* max-open, within the descriptor limit */
    size_t waiting;                  /* databases waiting to wake */
    ev_idle waker;                   /* wakes waiting databases, WAKE_BATCH at a time */
    ev_timer housekeeping;           /* sleeps idle ones, frees deleted ones */
    ev_timer rescan;                 /* walks the tree again */
    ev_timer retention_timer;
    ev_child retention_child;
    ev_periodic drill_periodic;
    ev_child drill_child;
    struct control_server *control;  /* ENTRY-STATE/control.sock: "snapshot NAME" */
};

/* What a sleep proved (tailer_release), for the wake. */
struct tenant_release {
    int loaded;                      /* read from the state directory (a restart) */
    int clean;                       /* tailer_release proved the next restart continues it */
    int empty;                       /* the WAL was empty: continues if the file is unchanged */
    struct timespec mtime;           /* the database file's, at the release */
    off_t size;
    struct wal_header hdr;
    struct wal_position pos;         /* everything before it shipped */
    uint32_t page_size;
    dev_t dev;
    ino_t ino;
};

/* A directory's database (ctx->tenant): what only this file reads. */
struct tenant_state {
    struct tenant_dir *dir;          /* its entry */
    struct config_db *own_cfg;       /* its configuration (ctx->cfg points here) */
    char *relpath;                   /* under the entry's directory */
    int asleep;                      /* idle: tailer closed, files released */
    int wants_open;                  /* written while max-open databases were busy */
    int deleted;                     /* its file is gone: freed once the replicas have all */
    int64_t woke_ms;
    int woken_before;                /* in this process */
    int woken_by_write;              /* the queued wake is for a write to its WAL */
    struct tenant_release release;
};

/* 1 when ctx is a database of entry td. */
int tenant_of(const struct db_context *ctx, const struct tenant_dir *td);
/* Puts an awake database to sleep; `force` (making room for another)
 * also when its release cannot be proven clean. 0 asleep, -1 not now. */
int tenant_sleep(struct db_context *ctx, int force);
/* Wakes a waiting database if there is room (putting another to sleep
 * first when max-open are awake): 1 awake (or it cannot be opened:
 * reported, tried again at its next write), 0 still waiting for room. */
int tenant_wake(struct db_context *ctx);
/* 1 when the state directory held a release (a clean sleep before a
 * restart), now in ctx->tenant->release. */
int tenant_load_release(struct db_context *ctx);

#endif
