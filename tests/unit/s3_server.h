/* s3_server.h - the local S3-compatible server (OpenStack Swift with
 * s3api, tests/s3/swift_server.py) for unit tests that need one: started
 * by the test binary before its tests run (they are forked from it and
 * inherit the endpoint) and stopped after. It checks SigV4 signatures and
 * payload hashes as AWS does. Credentials: test:tester / testing,
 * region us-east-1, path-style addressing. */
#ifndef TM_TEST_S3_SERVER_H
#define TM_TEST_S3_SERVER_H

#include "../../common/config.h"
#include "../../common/error.h"

#include <sys/types.h>

#define S3_SERVER_MAX_PIDS 8

struct s3_server {
    char dir[512];             /* ROOT/tests/tmp/unit-s3-PID: configs, data, logs */
    char endpoint[128];        /* "http://127.0.0.1:PORT" */
    pid_t pids[S3_SERVER_MAX_PIDS];   /* its process groups, for s3_server_kill */
    int pid_count;
};

/* Starts the server (a few seconds); on failure err says why, with the
 * log directory. */
int s3_server_start(struct s3_server *srv, struct tm_error *err);
/* Stops it and removes its directory. */
void s3_server_stop(struct s3_server *srv);
/* Async-signal-safe: kills its processes (for a signal handler). */
void s3_server_kill(const struct s3_server *srv);

/* Creates bucket `name` (PUT Bucket, signed). */
int s3_server_create_bucket(const struct s3_server *srv, const char *name, struct tm_error *err);

/* A replica entry for bucket/prefix on this server; strings point into
 * srv and the arguments (nothing to free). */
void s3_server_replica(const struct s3_server *srv, const char *bucket, const char *prefix,
                       struct config_replica *out);

#endif
