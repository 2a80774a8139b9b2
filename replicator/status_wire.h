/* status_wire.h - what `tidemark status` shows of each database and
 * replica (struct status_db), and the document that carries the running
 * sidecar's part of it over the control socket (control.h): written by the
 * daemon, parsed by the command. Writer and parser live together so that
 * they cannot drift apart.
 *
 * THE DOCUMENT is text, one field a line, "KEY VALUE" (one space), the
 * value escaped (backslash, control bytes as \xHH, so a value is one line
 * whatever a name holds):
 *
 *   tidemark-status 1
 *   db NAME                 starts a database; the fields below are its
 *   state following|waiting|failing
 *   problem TEXT            one per /healthz problem of the database's own
 *   waiting_reason TEXT     waiting_since_ms MS   asleep 0|1
 *   spool_bytes N           snapshot_ms MS        snapshot_failing 0|1
 *   drill_result -1|0|1     drill_time_ms MS      drill_rto_ms MS
 *   drill_rpo_ms MS         drill_error TEXT
 *   alert RULE\tREPLICA\tSINCE_MS\tMESSAGE   (each part escaped)
 *   replica NAME            starts a replica of the database; then its
 *   state following|failing problem TEXT       lag_ms MS
 *   last_upload_ms MS       failing_since_ms MS   queued N
 *   last_error TEXT
 *   end                     the document is whole
 *
 * Times are milliseconds since the epoch (0: never); unknown keys are
 * ignored (an older command reading a newer sidecar). */
#ifndef TM_STATUS_WIRE_H
#define TM_STATUS_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/config.h"
#include "../common/drill_record.h"
#include "../common/error.h"
#include "status.h"

#define STATUS_TEXT_MAX 1024
#define STATUS_ALERTS_MAX 16

struct status_alert {
    char rule[32];
    char replica[256];             /* "": the database's own */
    char message[STATUS_TEXT_MAX];
    int64_t since_ms;
};

struct status_replica {
    char name[256];
    char state[16];                /* "following", "failing"; "" from the replicas only */
    char problem[STATUS_TEXT_MAX]; /* /healthz's reason, "" when none */
    int64_t lag_ms;                /* the sidecar's: age of the oldest commit not on it; -1 unknown */
    int64_t last_upload_ms, failing_since_ms;
    int64_t queued;                /* objects waiting for it in the spool; -1 unknown */
    char last_error[STATUS_TEXT_MAX];
    /* From the replica itself (cmd_status.c): */
    int archive_read;              /* 1: the fields below were read */
    char archive_error[STATUS_TEXT_MAX];
    int64_t oldest_ms, newest_ms;  /* the restorable window; 0: nothing restorable */
    int64_t snapshot_ms;           /* its newest snapshot; 0: none */
    int drill_found;
    struct drill_summary drill;
};

struct status_db {
    char name[1024];
    int from_sidecar;              /* 0: no sidecar answered; read from the replicas */
    char state[16];                /* following, waiting, failing; "not running" */
    char problem[STATUS_TEXT_MAX]; /* its own /healthz problems, "; " between them */
    char waiting_reason[STATUS_TEXT_MAX];
    int64_t waiting_since_ms;
    int asleep;
    int64_t spool_bytes;           /* -1 unknown */
    int64_t snapshot_ms;           /* the sidecar's newest snapshot; 0 none */
    int snapshot_failing;
    int drill_result;              /* the sidecar's: -1 none this run, 0 failed, 1 passed */
    int64_t drill_time_ms, drill_rto_ms, drill_rpo_ms;
    char drill_error[STATUS_TEXT_MAX];
    struct status_alert alerts[STATUS_ALERTS_MAX];
    size_t alert_count;
    struct status_replica *replicas;   /* owned */
    size_t replica_count;
};

struct status_list {
    struct status_db *dbs;         /* owned */
    size_t count;
    size_t idle_entries;           /* entries no sidecar runs for that list no database: not protected */
};

/* Daemon side: the header, one database (its problems as /healthz words
 * them under thresholds; its open alerts passed by the caller through
 * status_wire_alert), the end. */
void status_wire_begin(FILE *out);
void status_wire_db(FILE *out, const struct db_status *db, const struct config_alerts *thresholds, int64_t now_ms);
void status_wire_alert(FILE *out, const char *rule, const char *replica, const char *message, int64_t since_ms);
void status_wire_replicas(FILE *out, const struct db_status *db, const struct config_alerts *thresholds,
                          int64_t now_ms);
void status_wire_end(FILE *out);

/* Client side: appends the databases of a document to list. -1 (err set,
 * TM_ERR_CORRUPT) on a document that is not one or is cut short; what was
 * appended stays (status_list_release frees it). */
int status_wire_parse(const char *text, struct status_list *list, struct tm_error *err);

/* A new database at the end of list (zeroed, unknowns set to -1), or NULL
 * when out of memory; and a new replica of db. */
struct status_db *status_list_add(struct status_list *list, const char *name);
struct status_replica *status_db_add_replica(struct status_db *db, const char *name);
void status_list_release(struct status_list *list);

/* Escaping for one value (out holds at least 4 x strlen + 1 bytes, or
 * is cut) and back (in place). */
void status_wire_escape(const char *in, char *out, size_t len);
void status_wire_unescape(char *text);

#endif
