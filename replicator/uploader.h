/* uploader.h - ships one replica's spool queue to that replica, in order,
 * on its own: a slow or failing replica never delays another.
 *
 * Uploads run from the daemon's event loop (storage_put_file: a file
 * replica completes at once, an S3 replica in the background). A failed
 * object is retried, for ever, with exponential backoff and jitter (0.5 s
 * up to 60 s); the first failure of an incident and the recovery are
 * logged. */
#ifndef TM_UPLOADER_H
#define TM_UPLOADER_H

#include <ev.h>
#include <stdint.h>

#include "../common/error.h"
#include "../common/storage/storage.h"
#include "spool.h"

struct uploader {
    struct ev_loop *loop;
    struct spool *spool;          /* borrowed */
    size_t queue;                 /* index of this replica's queue in the spool */
    struct storage *replica;      /* borrowed */
    const char *db_name, *replica_name;
    int busy;                     /* an upload is in flight */
    int failures;                 /* consecutive failures of this incident */
    int64_t failing_since_ms;     /* 0 when healthy */
    int64_t last_success_ms;
    uint64_t objects_uploaded, bytes_uploaded, failures_total;
    struct tm_error last_error;
    ev_timer retry_timer;
    ev_idle continue_idle;        /* long local backlogs yield to the loop */
};

void uploader_init(struct uploader *u, struct ev_loop *loop, struct spool *spool, size_t queue,
                   struct storage *replica, const char *db_name, const char *replica_name);
/* Starts uploading if there is work, nothing in flight and no backoff. */
void uploader_kick(struct uploader *u);
/* Nothing in flight and nothing queued. */
int uploader_idle(const struct uploader *u);
void uploader_stop(struct uploader *u);

#endif
