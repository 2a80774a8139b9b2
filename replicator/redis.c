/* redis.c - the Redis capture: one replication connection (redis.h).
 *
 * THE CONNECTION, as a state machine driven by the libev loop (nothing
 * blocks but the name lookup):
 *
 *   CONNECTING   non-blocking connect; when writable, the handshake is
 *                sent in one go: [AUTH [user] password], REPLCONF
 *                listening-port 0, REPLCONF capa eof capa psync2, and
 *                PSYNC <replid> <offset+1> (continue the archive) or
 *                PSYNC ? -1 (a full resynchronisation).
 *   HANDSHAKE    one reply per command, in order. An error names what was
 *                refused (password, ACL permission, replication disabled).
 *   PSYNC        "\n" keep-alives (diskless sync waits before forking),
 *                then +CONTINUE (the stream goes on: same generation) or
 *                +FULLRESYNC <replid> <offset> (a new generation).
 *   RDB_START    "\n" keep-alives, then "$<length>" or "$EOF:<40-byte mark>".
 *   RDB          the RDB, passed through to the spool as the generation's
 *                base snapshot in chunks (constant memory) while its
 *                CRC64 is checked (common/rdb.c); the EOF form ends with
 *                the mark. Then REPLCONF ACK, which a diskless master
 *                waits for before it streams.
 *   STREAM       RESP commands (resp.c). Each counts toward the
 *                replication offset; PING and REPLCONF are the master's
 *                own and are not recorded (GETACK is answered); the rest
 *                are units stamped with their arrival time, a MULTI ...
 *                EXEC block as one unit stamped at its EXEC, so a restore
 *                point never splits a transaction. REPLCONF ACK every
 *                second.
 *
 * Units wait in memory until the sync tick (or 16 MiB) makes them a
 * segment; the archive's end (spool position) records the replication id
 * and the offset after the last unit published, which is where a
 * restarted sidecar continues. An open MULTI block is never published:
 * after a reconnect the master sends it again.
 *
 * Any error (connection lost, refused, bad data) closes the connection,
 * logs once per distinct message, and retries after 1 s, doubling up to
 * 30 s. */
#include "redis.h"

#include "../common/archive.h"
#include "../common/clock.h"
#include "../common/log.h"
#include "../common/object.h"
#include "../common/rdb.h"
#include "resp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEGMENT_CUT_BYTES (16 * 1024 * 1024)
#define READ_BYTES (64 * 1024)
#define RETRY_MIN_S 1.0
#define RETRY_MAX_S 30.0

enum link_state { IDLE, CONNECTING, HANDSHAKE, PSYNC_REPLY, RDB_START, RDB, STREAM };

struct buffer {
    uint8_t *data;
    size_t len, cap;
};

struct redis_capture {
    struct redis_capture_deps deps;
    const char *name;
    enum link_state state;
    int fd;
    ev_io read_watcher, write_watcher;
    ev_timer retry_timer, ack_timer;
    double retry_s;
    int want_full_sync;                  /* next PSYNC asks for a new RDB */
    int stopping;
    char error[512];                     /* last error, "" when streaming */
    struct buffer in, out;
    int replies_left;                    /* handshake replies before PSYNC's */
    /* the stream: replication id and offsets */
    char replid[ARCHIVE_REPLID_BYTES + 1];
    uint64_t offset;                     /* after the last byte processed */
    uint64_t unit_end_offset;            /* after the last complete unit */
    int have_position;                   /* replid/offset continue the archive */
    /* RDB transfer */
    struct object_writer *rdb_writer;
    char rdb_key[ARCHIVE_NAME_MAX];
    int64_t rdb_time_ms;
    uint64_t rdb_offset;
    int rdb_eof_form;
    char rdb_mark[ARCHIVE_REPLID_BYTES];
    uint64_t rdb_remaining;              /* length form */
    struct rdb_check rdb_check;
    /* units of the next segment */
    struct buffer segment;
    uint32_t unit_count;
    int64_t first_ms, last_ms;
    uint64_t segment_start_offset;
    size_t multi_start;                  /* offset in `in` where an open MULTI began */
    int in_multi;
    uint64_t multi_start_offset;
};

/* ---------------------------------------------------------------- helpers */

static int buffer_append(struct buffer *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static void buffer_consume(struct buffer *b, size_t len)
{
    memmove(b->data, b->data + len, b->len - len);
    b->len -= len;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    archive_put_be32(p, (uint32_t)(v >> 32));
    archive_put_be32(p + 4, (uint32_t)v);
}

/* Appends a RESP array of the given arguments to the output buffer. */
static int send_command(struct redis_capture *rc, const char *const *args, int argc)
{
    char head[32];
    int len = snprintf(head, sizeof head, "*%d\r\n", argc);
    if (buffer_append(&rc->out, head, (size_t)len) != 0)
        return -1;
    for (int i = 0; i < argc; i++) {
        len = snprintf(head, sizeof head, "$%zu\r\n", strlen(args[i]));
        if (buffer_append(&rc->out, head, (size_t)len) != 0 || buffer_append(&rc->out, args[i], strlen(args[i])) != 0 ||
            buffer_append(&rc->out, "\r\n", 2) != 0)
            return -1;
    }
    ev_io_start(rc->deps.loop, &rc->write_watcher);
    return 0;
}

static void send_ack(struct redis_capture *rc)
{
    char offset[32];
    snprintf(offset, sizeof offset, "%" PRIu64, rc->offset);
    const char *args[] = {"REPLCONF", "ACK", offset};
    send_command(rc, args, 3);
}

static void disconnect(struct redis_capture *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_psync(struct redis_capture *rc);

/* ------------------------------------------------------------- segments */

/* Publishes the complete units received as one segment. */
static int publish_segment(struct redis_capture *rc, struct tm_error *err)
{
    struct shipper *sh = rc->deps.counters;
    if (rc->unit_count == 0)
        return 0;
    struct redis_segment_header h = {.unit_count = rc->unit_count, .index = sh->next_index,
                                     .first_time_ms = rc->first_ms, .last_time_ms = rc->last_ms,
                                     .start_offset = rc->segment_start_offset, .end_offset = rc->unit_end_offset};
    snprintf(h.generation, sizeof h.generation, "%s", sh->generation);
    memcpy(h.prev_hash, sh->chain, sizeof h.prev_hash);
    snprintf(h.replid, sizeof h.replid, "%s", rc->replid);
    char key[ARCHIVE_NAME_MAX], name[ARCHIVE_NAME_MAX + 24];
    archive_segment_key(rc->name, sh->generation, h.index, h.first_time_ms, h.last_time_ms, key, sizeof key);
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    redis_segment_header_encode(&h, header);
    spool_incoming_name(rc->deps.spool, key, name, sizeof name);
    struct object_writer *w;
    if (object_writer_open(spool_incoming(rc->deps.spool), name, OBJECT_SEGMENT, rc->deps.key, &w, err) != 0)
        return -1;
    uint8_t hash[OBJECT_HASH_BYTES];
    uint64_t stored;
    if (object_write(w, header, sizeof header, err) != 0 ||
        object_write(w, rc->segment.data, rc->segment.len, err) != 0) {
        object_writer_abort(w);
        return -1;
    }
    if (object_writer_commit(w, hash, &stored, err) != 0)
        return -1;
    struct spool_position pos = {.next_index = h.index + 1, .last_snapshot_ms = sh->last_snapshot_ms,
                                 .repl_offset = h.end_offset};
    snprintf(pos.generation, sizeof pos.generation, "%s", sh->generation);
    snprintf(pos.replid, sizeof pos.replid, "%s", rc->replid);
    memcpy(pos.chain, hash, sizeof pos.chain);
    if (spool_publish(rc->deps.spool, key, &pos, err) != 0)
        return -1;
    memcpy(sh->chain, hash, sizeof sh->chain);
    sh->next_index++;
    sh->segments_shipped++;
    sh->bytes_shipped += stored;
    sh->commits_shipped += rc->unit_count;
    sh->last_commit_shipped_ms = rc->last_ms;
    log_debug("spooled segment %s (%u commands, %llu bytes)", key, rc->unit_count, (unsigned long long)stored);
    rc->segment.len = 0;
    rc->unit_count = 0;
    rc->segment_start_offset = rc->unit_end_offset;
    rc->deps.published(rc->deps.arg);
    return 0;
}

static int add_unit(struct redis_capture *rc, int64_t now_ms, const uint8_t *data, size_t len)
{
    uint8_t head[12];
    put_be64(head, (uint64_t)now_ms);
    archive_put_be32(head + 8, (uint32_t)len);
    if (buffer_append(&rc->segment, head, sizeof head) != 0 || buffer_append(&rc->segment, data, len) != 0)
        return -1;
    if (rc->unit_count++ == 0)
        rc->first_ms = now_ms;
    rc->last_ms = now_ms;
    return 0;
}

/* ------------------------------------------------------------- the RDB */

/* A new generation whose base is the RDB that follows +FULLRESYNC. */
static int rdb_begin(struct redis_capture *rc, struct tm_error *err)
{
    struct shipper *sh = rc->deps.counters;
    if (publish_segment(rc, err) != 0)   /* the old generation's last commands */
        return -1;
    shipper_new_generation(sh, clock_now_ms());
    rc->rdb_time_ms = clock_now_ms();
    archive_snapshot_key(rc->name, sh->generation, 0, rc->rdb_time_ms, rc->rdb_key, sizeof rc->rdb_key);
    char name[ARCHIVE_NAME_MAX + 24];
    spool_incoming_name(rc->deps.spool, rc->rdb_key, name, sizeof name);
    if (object_writer_open(spool_incoming(rc->deps.spool), name, OBJECT_SNAPSHOT, rc->deps.key, &rc->rdb_writer,
                           err) != 0)
        return -1;
    struct redis_snapshot_header h = {.index = 0, .time_ms = rc->rdb_time_ms, .offset = rc->rdb_offset};
    snprintf(h.generation, sizeof h.generation, "%s", sh->generation);
    memcpy(h.chain_hash, sh->chain, sizeof h.chain_hash);
    snprintf(h.replid, sizeof h.replid, "%s", rc->replid);
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    redis_snapshot_header_encode(&h, header);
    rdb_check_init(&rc->rdb_check);
    return object_write(rc->rdb_writer, header, sizeof header, err);
}

static int rdb_data(struct redis_capture *rc, const uint8_t *data, size_t len, struct tm_error *err)
{
    if (len == 0)
        return 0;
    uint8_t length[4];
    archive_put_be32(length, (uint32_t)len);
    rdb_check_update(&rc->rdb_check, data, len);
    if (object_write(rc->rdb_writer, length, sizeof length, err) != 0)
        return -1;
    return object_write(rc->rdb_writer, data, len, err);
}

/* The RDB is complete: check it, store it, start streaming. */
static int rdb_end(struct redis_capture *rc, struct tm_error *err)
{
    struct shipper *sh = rc->deps.counters;
    int unchecked;
    uint8_t end[4] = {0, 0, 0, 0};
    uint64_t stored;
    if (rdb_check_finish(&rc->rdb_check, &unchecked, err) != 0 ||
        object_write(rc->rdb_writer, end, sizeof end, err) != 0) {
        object_writer_abort(rc->rdb_writer);
        rc->rdb_writer = NULL;
        return -1;
    }
    int rc_commit = object_writer_commit(rc->rdb_writer, NULL, &stored, err);
    rc->rdb_writer = NULL;
    if (rc_commit != 0)
        return -1;
    if (unchecked)
        log_event(LOG_WARN, rc->name, NULL, "the server writes RDB files without a checksum (rdbchecksum no): "
                  "this snapshot cannot be checked when it is restored");
    struct spool_position pos = {.next_index = 0, .last_snapshot_ms = rc->rdb_time_ms, .repl_offset = rc->rdb_offset};
    snprintf(pos.generation, sizeof pos.generation, "%s", sh->generation);
    snprintf(pos.replid, sizeof pos.replid, "%s", rc->replid);
    memcpy(pos.chain, sh->chain, sizeof pos.chain);
    if (spool_publish(rc->deps.spool, rc->rdb_key, &pos, err) != 0)
        return -1;
    sh->last_snapshot_ms = rc->rdb_time_ms;
    sh->bytes_shipped += stored;
    log_info("snapshot %s: RDB of %llu bytes (replication offset %" PRIu64 "), %llu bytes stored", rc->rdb_key,
             (unsigned long long)rc->rdb_check.bytes, rc->rdb_offset, (unsigned long long)stored);
    rc->offset = rc->unit_end_offset = rc->segment_start_offset = rc->rdb_offset;
    rc->have_position = 1;
    rc->want_full_sync = 0;
    rc->state = STREAM;
    rc->error[0] = '\0';
    rc->retry_s = RETRY_MIN_S;
    send_ack(rc);
    rc->deps.published(rc->deps.arg);
    return 0;
}

/* ------------------------------------------------------------- input */

/* Explains an error reply to the handshake. */
static void handshake_refused(struct redis_capture *rc, const char *command, const char *reply)
{
    if (strncmp(reply, "WRONGPASS", 9) == 0 || strstr(reply, "invalid password") || strstr(reply, "invalid username"))
        return disconnect(rc, "Redis at %s rejected the credentials (%s): check 'username' and 'password'",
                          rc->deps.cfg->redis_addr, reply);
    if (strncmp(reply, "NOAUTH", 6) == 0)
        return disconnect(rc, "Redis at %s requires a password (%s): set 'password' (and 'username' for an ACL user)",
                          rc->deps.cfg->redis_addr, reply);
    if (strstr(reply, "without any password configured") || strstr(reply, "no password is set"))
        return disconnect(rc, "Redis at %s has no password set (%s): remove 'password' from the configuration",
                          rc->deps.cfg->redis_addr, reply);
    if (strncmp(reply, "NOPERM", 6) == 0)
        return disconnect(rc, "Redis at %s: the ACL user may not run %s (%s): grant it '+psync +replconf +ping'",
                          rc->deps.cfg->redis_addr, command, reply);
    if (strcmp(command, "PSYNC") == 0 || strcmp(command, "REPLCONF") == 0)
        return disconnect(rc, "Redis at %s refuses replication (%s answered '%s'): managed services often disable "
                          "PSYNC/SYNC; use a self-managed replica of it for the sidecar, or a Redis with "
                          "'appendonly yes' on the same host", rc->deps.cfg->redis_addr, command, reply);
    disconnect(rc, "Redis at %s refused %s: %s", rc->deps.cfg->redis_addr, command, reply);
}

/* One handshake or PSYNC line; returns 1 to go on, 0 for more input. */
static int process_line_states(struct redis_capture *rc)
{
    while (rc->in.len && rc->in.data[0] == '\n')
        buffer_consume(&rc->in, 1);   /* keep-alives while the master prepares the RDB */
    size_t line_len, consumed;
    int got = resp_line(rc->in.data, rc->in.len, &line_len, &consumed);
    if (got == RESP_INCOMPLETE)
        return 0;
    if (got == RESP_MALFORMED) {
        disconnect(rc, "Redis at %s sent a line over 64 KiB during the handshake", rc->deps.cfg->redis_addr);
        return 0;
    }
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(line_len < sizeof line - 1 ? line_len : sizeof line - 1),
             (const char *)rc->in.data);
    buffer_consume(&rc->in, consumed);
    struct tm_error err;
    if (rc->state == HANDSHAKE) {
        int is_auth = rc->deps.cfg->redis_password && rc->replies_left == 3;
        if (line[0] == '-') {
            handshake_refused(rc, is_auth ? "AUTH" : "REPLCONF", line + 1);
            return 0;
        }
        if (--rc->replies_left == 0) {
            rc->state = PSYNC_REPLY;
            send_psync(rc);
        }
        return 1;
    }
    if (rc->state == PSYNC_REPLY) {
        if (line[0] == '-') {
            handshake_refused(rc, "PSYNC", line + 1);
            return 0;
        }
        char replid[ARCHIVE_REPLID_BYTES + 8] = "";
        unsigned long long offset;
        if (sscanf(line, "+FULLRESYNC %47s %llu", replid, &offset) == 2 && strlen(replid) == ARCHIVE_REPLID_BYTES) {
            snprintf(rc->replid, sizeof rc->replid, "%s", replid);
            rc->rdb_offset = offset;
            rc->state = RDB_START;
            log_event(LOG_INFO, rc->name, NULL, "full resynchronisation from %s (replication id %s, offset %llu): "
                      "a new generation starts with its RDB", rc->deps.cfg->redis_addr, replid, offset);
            if (rdb_begin(rc, &err) != 0) {
                disconnect(rc, "cannot start the snapshot: %s", err.msg);
                return 0;
            }
            return 1;
        }
        if (strncmp(line, "+CONTINUE", 9) == 0) {
            if (sscanf(line, "+CONTINUE %47s", replid) == 1 && strlen(replid) == ARCHIVE_REPLID_BYTES)
                snprintf(rc->replid, sizeof rc->replid, "%s", replid);   /* after a failover */
            rc->state = STREAM;
            rc->error[0] = '\0';
            rc->retry_s = RETRY_MIN_S;
            log_event(LOG_INFO, rc->name, NULL, "continuing the replication stream of %s at offset %" PRIu64
                      " (generation %s)", rc->deps.cfg->redis_addr, rc->offset, rc->deps.counters->generation);
            return 1;
        }
        disconnect(rc, "Redis at %s answered PSYNC with '%s'", rc->deps.cfg->redis_addr, line);
        return 0;
    }
    /* RDB_START: "$<length>" or "$EOF:<mark>" */
    if (strncmp(line, "$EOF:", 5) == 0 && strlen(line + 5) == ARCHIVE_REPLID_BYTES) {
        rc->rdb_eof_form = 1;
        memcpy(rc->rdb_mark, line + 5, ARCHIVE_REPLID_BYTES);
    } else if (line[0] == '$' && sscanf(line + 1, "%llu", &(unsigned long long){0}) == 1) {
        rc->rdb_eof_form = 0;
        rc->rdb_remaining = strtoull(line + 1, NULL, 10);
    } else {
        disconnect(rc, "Redis at %s sent '%s' where the RDB should start", rc->deps.cfg->redis_addr, line);
        return 0;
    }
    rc->state = RDB;
    return 1;
}

/* Passes RDB bytes through; returns 1 once the RDB is complete. */
static int process_rdb(struct redis_capture *rc)
{
    struct tm_error err;
    size_t take = rc->in.len;
    int done = 0;
    if (rc->rdb_eof_form) {
        uint8_t *mark = memmem(rc->in.data, rc->in.len, rc->rdb_mark, ARCHIVE_REPLID_BYTES);
        if (mark) {
            take = (size_t)(mark - rc->in.data);
            done = 1;
        } else {
            take = rc->in.len > ARCHIVE_REPLID_BYTES ? rc->in.len - ARCHIVE_REPLID_BYTES : 0;   /* the mark may be split */
        }
    } else {
        if (take > rc->rdb_remaining)
            take = (size_t)rc->rdb_remaining;
        rc->rdb_remaining -= take;
        done = rc->rdb_remaining == 0;
    }
    if (rdb_data(rc, rc->in.data, take, &err) != 0) {
        disconnect(rc, "cannot write the snapshot: %s", err.msg);
        return 0;
    }
    buffer_consume(&rc->in, take + (done && rc->rdb_eof_form ? ARCHIVE_REPLID_BYTES : 0));
    if (!done)
        return 0;
    if (rdb_end(rc, &err) != 0) {
        rc->want_full_sync = 1;
        disconnect(rc, "the RDB from %s was not stored: %s", rc->deps.cfg->redis_addr, err.msg);
        return 0;
    }
    return 1;
}

/* Records the complete commands at the start of `in`. */
static int process_stream(struct redis_capture *rc)
{
    size_t pos = rc->in_multi ? rc->multi_start : 0;
    int64_t now_ms = clock_now_ms();
    for (;;) {
        struct resp_command cmd;
        int got = resp_command_parse(rc->in.data + pos, rc->in.len - pos, &cmd);
        if (got == RESP_INCOMPLETE)
            break;
        if (got == RESP_MALFORMED) {
            rc->want_full_sync = 1;
            disconnect(rc, "the replication stream from %s is malformed at offset %" PRIu64
                       " (a new generation will start)", rc->deps.cfg->redis_addr, rc->offset);
            return 0;
        }
        const uint8_t *command = rc->in.data + pos;
        pos += cmd.length;
        rc->offset += cmd.length;
        if (strcmp(cmd.name, "MULTI") == 0 && !rc->in_multi) {
            rc->in_multi = 1;
            rc->multi_start = pos - cmd.length;
            continue;
        }
        if (rc->in_multi) {
            if (strcmp(cmd.name, "EXEC") != 0)
                continue;
            rc->in_multi = 0;
            command = rc->in.data + rc->multi_start;
            cmd.length = pos - rc->multi_start;
        } else if (strcmp(cmd.name, "PING") == 0) {
            rc->unit_end_offset = rc->offset;
            continue;
        } else if (strcmp(cmd.name, "REPLCONF") == 0) {
            rc->unit_end_offset = rc->offset;
            if (strcmp(cmd.arg1, "GETACK") == 0)
                send_ack(rc);
            continue;
        }
        if (add_unit(rc, now_ms, command, cmd.length) != 0) {
            disconnect(rc, "out of memory for the commands received");
            return 0;
        }
        rc->unit_end_offset = rc->offset;
    }
    /* keep an open MULTI block in `in`; drop what is recorded */
    size_t keep_from = rc->in_multi ? rc->multi_start : pos;
    if (rc->in_multi) {
        rc->offset -= pos - rc->multi_start;   /* counted again when the block is parsed whole */
        rc->in_multi = 0;
    }
    buffer_consume(&rc->in, keep_from);
    if (rc->segment.len >= SEGMENT_CUT_BYTES) {
        struct tm_error err;
        if (publish_segment(rc, &err) != 0)
            log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool: %s", err.msg);
    }
    return 0;
}

static void process_input(struct redis_capture *rc)
{
    for (;;) {
        enum link_state before = rc->state;
        int more;
        if (rc->state == HANDSHAKE || rc->state == PSYNC_REPLY || rc->state == RDB_START)
            more = process_line_states(rc);
        else if (rc->state == RDB)
            more = process_rdb(rc);
        else if (rc->state == STREAM)
            more = process_stream(rc);
        else
            return;
        if (!more || rc->state == IDLE || (rc->state == before && rc->state == STREAM))
            return;
    }
}

/* ------------------------------------------------------------- the socket */

static void schedule_retry(struct redis_capture *rc)
{
    if (rc->stopping)
        return;
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    ev_timer_set(&rc->retry_timer, rc->retry_s, 0.);
    ev_timer_start(rc->deps.loop, &rc->retry_timer);
    rc->retry_s = rc->retry_s * 2 > RETRY_MAX_S ? RETRY_MAX_S : rc->retry_s * 2;
}

static void close_socket(struct redis_capture *rc)
{
    ev_io_stop(rc->deps.loop, &rc->read_watcher);
    ev_io_stop(rc->deps.loop, &rc->write_watcher);
    ev_timer_stop(rc->deps.loop, &rc->ack_timer);
    if (rc->fd >= 0)
        close(rc->fd);
    rc->fd = -1;
    if (rc->rdb_writer) {
        object_writer_abort(rc->rdb_writer);
        rc->rdb_writer = NULL;
        rc->want_full_sync = 1;
    }
    rc->in.len = rc->out.len = 0;
    rc->in_multi = 0;
    rc->offset = rc->unit_end_offset;   /* an unfinished MULTI block is sent again */
    rc->state = IDLE;
}

static void disconnect(struct redis_capture *rc, const char *fmt, ...)
{
    char message[sizeof rc->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (strcmp(message, rc->error) != 0)
        log_event(LOG_ERROR, rc->name, NULL, "%s (retrying)", message);
    snprintf(rc->error, sizeof rc->error, "%s", message);
    close_socket(rc);
    schedule_retry(rc);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_capture *rc = w->data;
    uint8_t chunk[READ_BYTES];
    ssize_t got = read(rc->fd, chunk, sizeof chunk);
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (got <= 0)
        return disconnect(rc, "the connection to Redis at %s was closed%s%s", rc->deps.cfg->redis_addr,
                          got < 0 ? ": " : " by the server", got < 0 ? strerror(errno) : "");
    if (buffer_append(&rc->in, chunk, (size_t)got) != 0)
        return disconnect(rc, "out of memory reading from Redis");
    process_input(rc);
}

/* PSYNC goes alone, once the other replies are read: Redis refuses it
 * while replies to the client are still pending. */
static void send_psync(struct redis_capture *rc)
{
    char offset[32];
    snprintf(offset, sizeof offset, "%" PRIu64, rc->unit_end_offset + 1);
    if (rc->have_position && !rc->want_full_sync) {
        const char *psync[] = {"PSYNC", rc->replid, offset};
        send_command(rc, psync, 3);
    } else {
        const char *psync[] = {"PSYNC", "?", "-1"};
        send_command(rc, psync, 3);
    }
}

static void send_handshake(struct redis_capture *rc)
{
    const struct config_db *cfg = rc->deps.cfg;
    rc->replies_left = 2;
    if (cfg->redis_password) {
        const char *auth_user[] = {"AUTH", cfg->redis_username, cfg->redis_password};
        const char *auth[] = {"AUTH", cfg->redis_password};
        if (cfg->redis_username)
            send_command(rc, auth_user, 3);
        else
            send_command(rc, auth, 2);
        rc->replies_left = 3;
    }
    const char *port[] = {"REPLCONF", "listening-port", "0"};
    const char *capa[] = {"REPLCONF", "capa", "eof", "capa", "psync2"};
    send_command(rc, port, 3);
    send_command(rc, capa, 5);
    rc->state = HANDSHAKE;
    ev_io_start(rc->deps.loop, &rc->read_watcher);
    ev_timer_start(rc->deps.loop, &rc->ack_timer);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct redis_capture *rc = w->data;
    if (rc->state == CONNECTING) {
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(rc->fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error)
            return disconnect(rc, "cannot connect to Redis at %s: %s", rc->deps.cfg->redis_addr, strerror(error));
        send_handshake(rc);
    }
    while (rc->out.len > 0) {
        ssize_t sent = write(rc->fd, rc->out.data, rc->out.len);
        if (sent < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (sent < 0)
            return disconnect(rc, "cannot write to Redis at %s: %s", rc->deps.cfg->redis_addr, strerror(errno));
        buffer_consume(&rc->out, (size_t)sent);
    }
    ev_io_stop(loop, w);
}

static void connect_now(struct redis_capture *rc)
{
    const char *addr = rc->deps.cfg->redis_addr;
    char host[256], port[16] = "6379";
    const char *colon = strrchr(addr, ':');
    if (colon && colon != addr) {
        snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
        snprintf(port, sizeof port, "%s", colon + 1);
    } else {
        snprintf(host, sizeof host, "%s", addr);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
    int lookup = getaddrinfo(host, port, &hints, &found);
    if (lookup != 0)
        return disconnect(rc, "cannot resolve Redis address '%s': %s", addr, gai_strerror(lookup));
    rc->fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (rc->fd < 0) {
        freeaddrinfo(found);
        return disconnect(rc, "cannot create a socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(rc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(rc->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int connected = connect(rc->fd, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    if (connected != 0 && errno != EINPROGRESS)
        return disconnect(rc, "cannot connect to Redis at %s: %s", addr, strerror(errno));
    rc->state = CONNECTING;
    ev_io_set(&rc->read_watcher, rc->fd, EV_READ);
    ev_io_set(&rc->write_watcher, rc->fd, EV_WRITE);
    ev_io_start(rc->deps.loop, &rc->write_watcher);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_capture *rc = w->data;
    if (rc->state == IDLE && !rc->stopping)
        connect_now(rc);
}

static void on_ack_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_capture *rc = w->data;
    if (rc->state == STREAM)
        send_ack(rc);
}

/* ------------------------------------------------------------- interface */

int redis_capture_start(const struct redis_capture_deps *deps, struct redis_capture **out, struct tm_error *err)
{
    struct redis_capture *rc = calloc(1, sizeof *rc);
    if (!rc)
        return tm_error_set(err, "out of memory");
    rc->deps = *deps;
    rc->name = deps->cfg->name;
    rc->fd = -1;
    rc->retry_s = RETRY_MIN_S;
    ev_io_init(&rc->read_watcher, on_readable, -1, EV_READ);
    ev_io_init(&rc->write_watcher, on_writable, -1, EV_WRITE);
    rc->read_watcher.data = rc->write_watcher.data = rc;
    ev_timer_init(&rc->retry_timer, on_retry, 0., 0.);
    ev_timer_init(&rc->ack_timer, on_ack_timer, 1., 1.);
    rc->retry_timer.data = rc->ack_timer.data = rc;
    /* continue where the archive ends, if it is a Redis archive */
    struct spool_position end;
    if (spool_position(deps->spool, &end) && end.replid[0]) {
        struct shipper *sh = deps->counters;
        snprintf(sh->generation, sizeof sh->generation, "%s", end.generation);
        sh->has_generation = 1;
        sh->next_index = end.next_index;
        memcpy(sh->chain, end.chain, sizeof sh->chain);
        sh->last_snapshot_ms = end.last_snapshot_ms;
        snprintf(rc->replid, sizeof rc->replid, "%s", end.replid);
        rc->offset = rc->unit_end_offset = rc->segment_start_offset = end.repl_offset;
        rc->have_position = 1;
    }
    *out = rc;
    connect_now(rc);
    return 0;
}

void redis_capture_sync(struct redis_capture *rc)
{
    struct tm_error err;
    if (publish_segment(rc, &err) != 0)
        log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool (the commands stay in memory and are "
                  "retried): %s", err.msg);
}

void redis_capture_snapshot(struct redis_capture *rc)
{
    if (rc->state == RDB || rc->state == RDB_START || rc->state == PSYNC_REPLY)
        return;   /* one is on its way */
    log_event(LOG_INFO, rc->name, NULL, "scheduled snapshot: asking %s for a full resynchronisation",
              rc->deps.cfg->redis_addr);
    redis_capture_sync(rc);
    close_socket(rc);
    rc->want_full_sync = 1;
    rc->error[0] = '\0';
    rc->retry_s = RETRY_MIN_S;
    connect_now(rc);
}

void redis_capture_stop(struct redis_capture *rc)
{
    rc->stopping = 1;
    redis_capture_sync(rc);
    close_socket(rc);
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
}

void redis_capture_free(struct redis_capture *rc)
{
    if (!rc)
        return;
    close_socket(rc);
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    free(rc->in.data);
    free(rc->out.data);
    free(rc->segment.data);
    free(rc);
}

int redis_capture_streaming(const struct redis_capture *rc)
{
    return rc->state == STREAM;
}

const char *redis_capture_error(const struct redis_capture *rc)
{
    return rc->error;
}
