/* redis_internal.h - the Redis capture's state, shared by its two files
 * and private to them: redis.c (the capture: RDB into the spool, command
 * stream into units and segments, scheduled snapshots, the interface of
 * redis.h) and redis_link.c (one connection: connect, handshake, PSYNC,
 * reconnects). The design is described atop redis.c. */
#ifndef TM_REDIS_INTERNAL_H
#define TM_REDIS_INTERNAL_H

#include "redis.h"

#include "../common/archive.h"
#include "../common/object.h"
#include "../common/rdb.h"
#include "redis_units.h"

#define RETRY_MIN_S 1.0

enum link_state { IDLE, CONNECTING, HANDSHAKE, PSYNC_REPLY, RDB_START, RDB, STREAM };

struct buffer {
    uint8_t *data;
    size_t len, cap;
};

struct redis_link {
    struct redis_capture *owner;
    int is_next;                         /* a scheduled snapshot's link, not main yet */
    enum link_state state;
    int fd;
    ev_io read_watcher, write_watcher;
    struct buffer in, out;
    struct redis_units units;            /* where the stream in `in` is cut (redis_units.h) */
    int replies_left;
    int want_full_sync;
    int held;                            /* not reading: the spool is full (redis.c, SPOOL LIMIT) */
    char error[512];                     /* last error, "" when streaming */
    /* the stream */
    char replid[ARCHIVE_REPLID_BYTES + 1];
    uint64_t offset;                     /* after the last byte processed */
    uint64_t unit_end_offset;            /* after the last complete unit */
    int have_position;
    /* the RDB of a full resynchronisation */
    struct object_writer *rdb_writer;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];   /* the generation it starts */
    char rdb_key[ARCHIVE_NAME_MAX];
    char rdb_incoming[ARCHIVE_NAME_MAX + 24];    /* its name in the spool's incoming/ */
    int64_t rdb_time_ms;
    uint64_t rdb_offset, rdb_stored;
    int rdb_eof_form;
    char rdb_mark[ARCHIVE_REPLID_BYTES];
    uint64_t rdb_remaining;
    struct rdb_check rdb_check;
    int rdb_ready;                       /* next link: stored, waiting to be published */
    /* units of the next segment */
    struct buffer segment;
    uint32_t unit_count;
    int64_t first_ms, last_ms;
    uint64_t segment_start_offset;
};

struct redis_capture {
    struct redis_capture_deps deps;
    const char *name;
    struct redis_link *main, *next;
    ev_timer retry_timer, ack_timer, next_retry_timer;
    double retry_s;
    int stopping;
    int spool_full;                      /* spool-limit reached (logged once per incident) */
    int64_t failing_since_ms;            /* main link not streaming since; 0 when it is */
};

/* redis_link.c: buffers and the connection. */
int redis_buffer_append(struct buffer *b, const void *data, size_t len);
void redis_buffer_consume(struct buffer *b, size_t len);
/* A buffer grown past 32 MiB (for a large MULTI block) gives its memory
 * back once it holds little again. */
void redis_buffer_trim(struct buffer *b);
const char *redis_link_addr(const struct redis_link *l);   /* the configured address */
struct redis_link *redis_link_new(struct redis_capture *rc, int is_next);
/* Starts connecting (a name lookup, then a non-blocking connect). */
void redis_link_connect(struct redis_link *l);
void redis_link_send_ack(struct redis_link *l);            /* REPLCONF ACK <offset> */
/* Closes the socket (an unfinished RDB is dropped); the link is IDLE. */
void redis_link_close(struct redis_link *l);
/* Stopping: reads and processes what the stream's socket already holds
 * (at most 16 MiB), so that a stop handled in the same turn of the loop
 * as the socket's data does not drop commands the server had sent. */
void redis_link_read_pending(struct redis_link *l);
void redis_link_free(struct redis_link *l);
/* Any error: logs it once per distinct message and closes the link; the
 * main link is retried with back-off, a next link is freed (retried at
 * the next schedule). */
void redis_link_disconnect(struct redis_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* redis.c: what the link receives. After +FULLRESYNC, the RDB's object
 * is opened (0, or -1 with err set). */
int redis_rdb_begin(struct redis_link *l, struct tm_error *err);
/* Input in the RDB and STREAM states: 1 to go on with the input, 0 for
 * more input (or the link was dropped). */
int redis_rdb_receive(struct redis_link *l);
int redis_stream_receive(struct redis_link *l);
/* The next link's snapshot takes over once the main link has passed its
 * offset (or is gone). */
void redis_try_switch(struct redis_capture *rc);

#endif
