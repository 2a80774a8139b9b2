/* redis.c - the Redis capture: replication connections (redis.h).
 *
 * A LINK is one connection to the master, a state machine driven by the
 * libev loop (nothing blocks but the name lookup):
 *
 *   CONNECTING   non-blocking connect; when writable: [AUTH [user]
 *                password], REPLCONF listening-port 0, REPLCONF capa eof
 *                capa psync2.
 *   HANDSHAKE    one reply per command, in order; then PSYNC, alone
 *                (Redis refuses it while earlier replies are unsent):
 *                PSYNC <replid> <offset+1> to continue the archive, or
 *                PSYNC ? -1 for a full resynchronisation. An error reply
 *                names what was refused (password, ACL, replication).
 *   PSYNC_REPLY  "\n" keep-alives (a diskless master waits before it
 *                forks), then +CONTINUE (the stream goes on: same
 *                generation) or +FULLRESYNC <replid> <offset>.
 *   RDB_START    keep-alives, then "$<length>" or "$EOF:<40-byte mark>".
 *   RDB          the RDB, passed through to the spool in chunks (constant
 *                memory) as a new generation's base snapshot, its CRC64
 *                checked (common/rdb.c). Then REPLCONF ACK, which a
 *                diskless master waits for before it streams.
 *   STREAM       RESP commands (resp.c). Each counts toward the
 *                replication offset; PING and REPLCONF are the master's
 *                own and not recorded (GETACK is answered); the rest are
 *                units stamped with their arrival time, a MULTI ... EXEC
 *                block as one unit stamped at its EXEC, so a restore
 *                point never splits a transaction. REPLCONF ACK every
 *                second.
 *
 * Units wait in memory until the sync tick (or 16 MiB) makes them a
 * segment; the archive's end (spool position) records the replication id
 * and the offset after the last unit published, where a restarted
 * sidecar continues. An open MULTI block is never published: after a
 * reconnect the master sends it again.
 *
 * SCHEDULED SNAPSHOTS without a gap: a second link (`next`) asks for a
 * full resynchronisation while the main link keeps streaming into the
 * current generation. The new RDB is stored (not yet published) and the
 * next link streams on from its offset O, buffering its units. Once the
 * main link has passed O (it is live, so it normally has), its last
 * units are published, it closes, the new snapshot is published, and the
 * next link becomes the main one: the old generation reaches past the
 * new snapshot's point, so every second stays restorable.
 *
 * Any error closes the link, logs once per distinct message, and the main
 * link retries after 1 s, doubling up to 30 s (a failed next link is
 * retried at the next schedule, or after 60 s). */
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
#define NEXT_BUFFER_MAX (256 * 1024 * 1024)   /* units a next link may hold before it is main */
#define READ_BYTES (64 * 1024)
#define RETRY_MIN_S 1.0
#define RETRY_MAX_S 30.0
#define NEXT_RETRY_S 60.0

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
    int replies_left;
    int want_full_sync;
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
    int64_t failing_since_ms;            /* main link not streaming since; 0 when it is */
};

static void disconnect(struct redis_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void connect_now(struct redis_link *l);
static void try_switch(struct redis_capture *rc);

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

static const char *addr_of(const struct redis_link *l)
{
    return l->owner->deps.cfg->redis_addr;
}

/* Appends a RESP array of the given arguments to the output buffer. */
static int send_command(struct redis_link *l, const char *const *args, int argc)
{
    char head[32];
    int len = snprintf(head, sizeof head, "*%d\r\n", argc);
    if (buffer_append(&l->out, head, (size_t)len) != 0)
        return -1;
    for (int i = 0; i < argc; i++) {
        len = snprintf(head, sizeof head, "$%zu\r\n", strlen(args[i]));
        if (buffer_append(&l->out, head, (size_t)len) != 0 || buffer_append(&l->out, args[i], strlen(args[i])) != 0 ||
            buffer_append(&l->out, "\r\n", 2) != 0)
            return -1;
    }
    ev_io_start(l->owner->deps.loop, &l->write_watcher);
    return 0;
}

static void send_ack(struct redis_link *l)
{
    char offset[32];
    snprintf(offset, sizeof offset, "%" PRIu64, l->offset);
    const char *args[] = {"REPLCONF", "ACK", offset};
    send_command(l, args, 3);
}

/* ------------------------------------------------------------- segments */

static int write_units(void *ctx, struct object_writer *w, struct tm_error *err)
{
    struct redis_link *l = ctx;
    return object_write(w, l->segment.data, l->segment.len, err);
}

/* Publishes the main link's complete units as one segment. */
static int publish_segment(struct redis_link *l, struct tm_error *err)
{
    struct redis_capture *rc = l->owner;
    struct shipper *sh = rc->deps.shipper;
    if (l->unit_count == 0 || l->is_next)
        return 0;
    struct redis_segment_header h = {.unit_count = l->unit_count, .index = sh->next_index,
                                     .first_time_ms = l->first_ms, .last_time_ms = l->last_ms,
                                     .start_offset = l->segment_start_offset, .end_offset = l->unit_end_offset};
    snprintf(h.generation, sizeof h.generation, "%s", sh->generation);
    memcpy(h.prev_hash, sh->chain, sizeof h.prev_hash);
    snprintf(h.replid, sizeof h.replid, "%s", l->replid);
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    redis_segment_header_encode(&h, header);
    struct shipper_segment seg = {.first_ms = l->first_ms, .last_ms = l->last_ms, .header = header,
                                  .header_len = sizeof header, .write_body = write_units, .ctx = l,
                                  .end = {.repl_offset = h.end_offset}, .commits = l->unit_count,
                                  .what = "commands"};
    snprintf(seg.end.replid, sizeof seg.end.replid, "%s", l->replid);
    if (shipper_publish_segment(sh, &seg, NULL, err) != 0)
        return -1;
    l->segment.len = 0;
    l->unit_count = 0;
    l->segment_start_offset = l->unit_end_offset;
    rc->deps.published(rc->deps.arg);
    return 0;
}

static int add_unit(struct redis_link *l, int64_t now_ms, const uint8_t *data, size_t len)
{
    uint8_t head[12];
    archive_put_be64(head, (uint64_t)now_ms);
    archive_put_be32(head + 8, (uint32_t)len);
    if (buffer_append(&l->segment, head, sizeof head) != 0 || buffer_append(&l->segment, data, len) != 0)
        return -1;
    if (l->unit_count++ == 0)
        l->first_ms = now_ms;
    l->last_ms = now_ms;
    return 0;
}

/* ------------------------------------------------------------- the RDB */

/* The RDB that follows +FULLRESYNC starts a new generation. */
static int rdb_begin(struct redis_link *l, struct tm_error *err)
{
    struct redis_capture *rc = l->owner;
    l->rdb_time_ms = clock_now_ms();
    layout_generation_id_new(l->rdb_time_ms, l->generation);
    uint8_t chain[OBJECT_HASH_BYTES];
    archive_chain_start(l->generation, chain);
    layout_snapshot_key(rc->name, l->generation, 0, l->rdb_time_ms, l->rdb_key, sizeof l->rdb_key);
    spool_incoming_name(rc->deps.spool, l->rdb_key, l->rdb_incoming, sizeof l->rdb_incoming);
    if (object_writer_open(spool_incoming(rc->deps.spool), l->rdb_incoming, OBJECT_SNAPSHOT, rc->deps.key,
                           &l->rdb_writer, err) != 0)
        return -1;
    struct redis_snapshot_header h = {.index = 0, .time_ms = l->rdb_time_ms, .offset = l->rdb_offset};
    snprintf(h.generation, sizeof h.generation, "%s", l->generation);
    memcpy(h.chain_hash, chain, sizeof h.chain_hash);
    snprintf(h.replid, sizeof h.replid, "%s", l->replid);
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    redis_snapshot_header_encode(&h, header);
    rdb_check_init(&l->rdb_check);
    return object_write(l->rdb_writer, header, sizeof header, err);
}

static int rdb_data(struct redis_link *l, const uint8_t *data, size_t len, struct tm_error *err)
{
    if (len == 0)
        return 0;
    uint8_t length[4];
    archive_put_be32(length, (uint32_t)len);
    rdb_check_update(&l->rdb_check, data, len);
    if (object_write(l->rdb_writer, length, sizeof length, err) != 0)
        return -1;
    return object_write(l->rdb_writer, data, len, err);
}

/* Publishes the link's stored RDB: its generation becomes the current
 * one, and the link streams into it. */
static int rdb_publish(struct redis_link *l, struct tm_error *err)
{
    struct redis_capture *rc = l->owner;
    /* segments were published while it was written: it takes the next name */
    if (spool_adopt(rc->deps.spool, l->rdb_incoming, l->rdb_key, err) != 0)
        return -1;
    spool_incoming_name(rc->deps.spool, l->rdb_key, l->rdb_incoming, sizeof l->rdb_incoming);
    shipper_use_generation(rc->deps.shipper, l->generation);
    struct spool_position end = {.repl_offset = l->rdb_offset};
    snprintf(end.replid, sizeof end.replid, "%s", l->replid);
    if (shipper_publish_snapshot(rc->deps.shipper, l->rdb_key, &end, l->rdb_time_ms, l->rdb_stored, err) != 0)
        return -1;
    l->rdb_ready = 0;
    log_info("snapshot %s: RDB of %llu bytes (replication offset %" PRIu64 "), %llu bytes stored", l->rdb_key,
             (unsigned long long)l->rdb_check.bytes, l->rdb_offset, (unsigned long long)l->rdb_stored);
    rc->deps.published(rc->deps.arg);
    return 0;
}

/* The RDB is complete: check and store it, then stream. The main link
 * publishes it at once (after its old generation's last units); a next
 * link keeps it until it takes over (try_switch). */
static int rdb_end(struct redis_link *l, struct tm_error *err)
{
    int unchecked;
    uint8_t end[4] = {0, 0, 0, 0};
    if (rdb_check_finish(&l->rdb_check, &unchecked, err) != 0 ||
        object_write(l->rdb_writer, end, sizeof end, err) != 0) {
        object_writer_abort(l->rdb_writer);
        l->rdb_writer = NULL;
        return -1;
    }
    int committed = object_writer_commit(l->rdb_writer, NULL, &l->rdb_stored, err);
    l->rdb_writer = NULL;
    if (committed != 0)
        return -1;
    if (unchecked)
        log_event(LOG_WARN, l->owner->name, NULL, "the server writes RDB files without a checksum (rdbchecksum "
                  "no): this snapshot cannot be checked when it is restored");
    /* the main link's units from before the resync end its old generation */
    if (!l->is_next && publish_segment(l, err) != 0)
        return -1;
    l->offset = l->unit_end_offset = l->segment_start_offset = l->rdb_offset;
    l->have_position = 1;
    l->want_full_sync = 0;
    l->rdb_ready = 1;
    l->state = STREAM;
    l->error[0] = '\0';
    send_ack(l);
    if (!l->is_next) {
        if (rdb_publish(l, err) != 0)
            return -1;
        l->owner->retry_s = RETRY_MIN_S;
        l->owner->failing_since_ms = 0;
    }
    return 0;
}

/* ------------------------------------------------------------- input */

static void handshake_refused(struct redis_link *l, const char *command, const char *reply)
{
    if (strncmp(reply, "WRONGPASS", 9) == 0 || strstr(reply, "invalid password") || strstr(reply, "invalid username"))
        return disconnect(l, "Redis at %s rejected the credentials (%s): check 'username' and 'password'",
                          addr_of(l), reply);
    if (strncmp(reply, "NOAUTH", 6) == 0)
        return disconnect(l, "Redis at %s requires a password (%s): set 'password' (and 'username' for an ACL user)",
                          addr_of(l), reply);
    if (strstr(reply, "without any password configured") || strstr(reply, "no password is set"))
        return disconnect(l, "Redis at %s has no password set (%s): remove 'password' from the configuration",
                          addr_of(l), reply);
    if (strncmp(reply, "NOPERM", 6) == 0)
        return disconnect(l, "Redis at %s: the ACL user may not run %s (%s): grant it '+psync +replconf +ping'",
                          addr_of(l), command, reply);
    if (strcmp(command, "PSYNC") == 0 || strcmp(command, "REPLCONF") == 0)
        return disconnect(l, "Redis at %s refuses replication (%s answered '%s'): managed services often disable "
                          "PSYNC/SYNC; use a self-managed replica of it for the sidecar, or a Redis with "
                          "'appendonly yes' on the same host", addr_of(l), command, reply);
    disconnect(l, "Redis at %s refused %s: %s", addr_of(l), command, reply);
}

static void send_psync(struct redis_link *l)
{
    char offset[32];
    snprintf(offset, sizeof offset, "%" PRIu64, l->unit_end_offset + 1);
    if (l->have_position && !l->want_full_sync) {
        const char *psync[] = {"PSYNC", l->replid, offset};
        send_command(l, psync, 3);
    } else {
        const char *psync[] = {"PSYNC", "?", "-1"};
        send_command(l, psync, 3);
    }
}

/* One handshake or PSYNC line; returns 1 to go on, 0 for more input. */
static int process_line_states(struct redis_link *l)
{
    while (l->in.len && l->in.data[0] == '\n')
        buffer_consume(&l->in, 1);   /* keep-alives while the master prepares the RDB */
    size_t line_len, consumed;
    int got = resp_line(l->in.data, l->in.len, &line_len, &consumed);
    if (got == RESP_INCOMPLETE)
        return 0;
    if (got == RESP_MALFORMED) {
        disconnect(l, "Redis at %s sent a line over 64 KiB during the handshake", addr_of(l));
        return 0;
    }
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(line_len < sizeof line - 1 ? line_len : sizeof line - 1),
             (const char *)l->in.data);
    buffer_consume(&l->in, consumed);
    struct tm_error err;
    if (l->state == HANDSHAKE) {
        int is_auth = l->owner->deps.cfg->redis_password && l->replies_left == 3;
        if (line[0] == '-') {
            handshake_refused(l, is_auth ? "AUTH" : "REPLCONF", line + 1);
            return 0;
        }
        if (--l->replies_left == 0) {
            l->state = PSYNC_REPLY;
            send_psync(l);
        }
        return 1;
    }
    if (l->state == PSYNC_REPLY) {
        if (line[0] == '-') {
            handshake_refused(l, "PSYNC", line + 1);
            return 0;
        }
        char replid[ARCHIVE_REPLID_BYTES + 8] = "";
        unsigned long long offset;
        if (sscanf(line, "+FULLRESYNC %47s %llu", replid, &offset) == 2 && strlen(replid) == ARCHIVE_REPLID_BYTES) {
            snprintf(l->replid, sizeof l->replid, "%s", replid);
            l->rdb_offset = offset;
            l->state = RDB_START;
            log_event(LOG_INFO, l->owner->name, NULL, "full resynchronisation from %s (replication id %s, offset %llu)"
                      ": a new generation starts with its RDB%s", addr_of(l), replid, offset,
                      l->is_next ? " (scheduled snapshot; the current stream goes on meanwhile)" : "");
            if (rdb_begin(l, &err) != 0) {
                disconnect(l, "cannot start the snapshot: %s", err.msg);
                return 0;
            }
            return 1;
        }
        if (strncmp(line, "+CONTINUE", 9) == 0 && !l->is_next) {
            if (sscanf(line, "+CONTINUE %47s", replid) == 1 && strlen(replid) == ARCHIVE_REPLID_BYTES)
                snprintf(l->replid, sizeof l->replid, "%s", replid);   /* after a failover */
            l->state = STREAM;
            l->error[0] = '\0';
            l->owner->retry_s = RETRY_MIN_S;
            l->owner->failing_since_ms = 0;
            log_event(LOG_INFO, l->owner->name, NULL, "continuing the replication stream of %s at offset %" PRIu64
                      " (generation %s)", addr_of(l), l->offset, l->owner->deps.shipper->generation);
            return 1;
        }
        disconnect(l, "Redis at %s answered PSYNC with '%s'", addr_of(l), line);
        return 0;
    }
    /* RDB_START: "$<length>" or "$EOF:<mark>" */
    unsigned long long length;
    if (strncmp(line, "$EOF:", 5) == 0 && strlen(line + 5) == ARCHIVE_REPLID_BYTES) {
        l->rdb_eof_form = 1;
        memcpy(l->rdb_mark, line + 5, ARCHIVE_REPLID_BYTES);
    } else if (line[0] == '$' && sscanf(line + 1, "%llu", &length) == 1) {
        l->rdb_eof_form = 0;
        l->rdb_remaining = length;
    } else {
        disconnect(l, "Redis at %s sent '%s' where the RDB should start", addr_of(l), line);
        return 0;
    }
    l->state = RDB;
    return 1;
}

/* Passes RDB bytes through; returns 1 once the RDB is complete. */
static int process_rdb(struct redis_link *l)
{
    struct tm_error err;
    size_t take = l->in.len;
    int done = 0;
    if (l->rdb_eof_form) {
        uint8_t *mark = memmem(l->in.data, l->in.len, l->rdb_mark, ARCHIVE_REPLID_BYTES);
        if (mark) {
            take = (size_t)(mark - l->in.data);
            done = 1;
        } else {
            take = l->in.len > ARCHIVE_REPLID_BYTES ? l->in.len - ARCHIVE_REPLID_BYTES : 0;   /* the mark may be split */
        }
    } else {
        if (take > l->rdb_remaining)
            take = (size_t)l->rdb_remaining;
        l->rdb_remaining -= take;
        done = l->rdb_remaining == 0;
    }
    if (rdb_data(l, l->in.data, take, &err) != 0) {
        disconnect(l, "cannot write the snapshot: %s", err.msg);
        return 0;
    }
    buffer_consume(&l->in, take + (done && l->rdb_eof_form ? ARCHIVE_REPLID_BYTES : 0));
    if (!done)
        return 0;
    if (rdb_end(l, &err) != 0) {
        l->want_full_sync = 1;
        disconnect(l, "the RDB from %s was not stored: %s", addr_of(l), err.msg);
        return 0;
    }
    if (l->is_next)
        try_switch(l->owner);
    return 1;
}

/* Records the complete commands at the start of `in`. */
static int process_stream(struct redis_link *l)
{
    size_t pos = 0, multi_start = 0;
    int in_multi = 0;
    int64_t now_ms = clock_now_ms();
    for (;;) {
        struct resp_command cmd;
        int got = resp_command_parse(l->in.data + pos, l->in.len - pos, &cmd);
        if (got == RESP_INCOMPLETE)
            break;
        if (got == RESP_MALFORMED) {
            l->want_full_sync = 1;
            disconnect(l, "the replication stream from %s is malformed at offset %" PRIu64
                       " (a new generation will start)", addr_of(l), l->offset);
            return 0;
        }
        const uint8_t *command = l->in.data + pos;
        pos += cmd.length;
        l->offset += cmd.length;
        if (strcmp(cmd.name, "MULTI") == 0 && !in_multi) {
            in_multi = 1;
            multi_start = pos - cmd.length;
            continue;
        }
        if (in_multi) {
            if (strcmp(cmd.name, "EXEC") != 0)
                continue;
            in_multi = 0;
            command = l->in.data + multi_start;
            cmd.length = pos - multi_start;
        } else if (strcmp(cmd.name, "PING") == 0 || strcmp(cmd.name, "REPLCONF") == 0) {
            l->unit_end_offset = l->offset;
            if (strcmp(cmd.arg1, "GETACK") == 0)
                send_ack(l);
            continue;
        }
        if (add_unit(l, now_ms, command, cmd.length) != 0) {
            disconnect(l, "out of memory for the commands received");
            return 0;
        }
        l->unit_end_offset = l->offset;
    }
    if (in_multi) {   /* kept whole in `in` until its EXEC arrives */
        l->offset -= pos - multi_start;
        pos = multi_start;
    }
    buffer_consume(&l->in, pos);
    struct tm_error err;
    if (!l->is_next && l->segment.len >= SEGMENT_CUT_BYTES && publish_segment(l, &err) != 0)
        log_event(LOG_ERROR, l->owner->name, NULL, "cannot write to the spool: %s", err.msg);
    if (l->is_next && l->segment.len >= NEXT_BUFFER_MAX)
        disconnect(l, "the scheduled snapshot's stream buffered %d MiB while the current stream had not yet "
                   "reached its offset: given up (retried later)", NEXT_BUFFER_MAX >> 20);
    else if (!l->is_next && l->owner->next && l->owner->next->rdb_ready)
        try_switch(l->owner);
    return 0;
}

static void process_input(struct redis_link *l)
{
    for (;;) {
        int more;
        if (l->state == HANDSHAKE || l->state == PSYNC_REPLY || l->state == RDB_START)
            more = process_line_states(l);
        else if (l->state == RDB)
            more = process_rdb(l);
        else if (l->state == STREAM)
            more = process_stream(l);
        else
            return;
        if (!more || l->state == IDLE)
            return;
    }
}

/* ------------------------------------------------------------- switch */

/* The next link's snapshot takes over once the main link has passed its
 * offset (or is gone): old generation's last units, new snapshot, and
 * the next link becomes main. */
static void try_switch(struct redis_capture *rc)
{
    struct redis_link *next = rc->next, *main = rc->main;
    if (!next || !next->rdb_ready)
        return;
    int main_live = main->state == STREAM && strcmp(main->replid, next->replid) == 0;
    if (main_live && main->unit_end_offset < next->rdb_offset)
        return;   /* not there yet: the main link is still live */
    struct tm_error err;
    if (publish_segment(main, &err) != 0) {
        log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool: %s", err.msg);
        return;   /* tried again with the next input or tick */
    }
    next->is_next = 0;
    if (rdb_publish(next, &err) != 0) {
        next->is_next = 1;
        log_event(LOG_ERROR, rc->name, NULL, "cannot publish the scheduled snapshot: %s", err.msg);
        return;
    }
    rc->main = next;
    rc->next = NULL;
    rc->failing_since_ms = 0;
    ev_io_stop(rc->deps.loop, &main->read_watcher);
    ev_io_stop(rc->deps.loop, &main->write_watcher);
    if (main->fd >= 0)
        close(main->fd);
    if (main->rdb_writer)
        object_writer_abort(main->rdb_writer);
    free(main->in.data);
    free(main->out.data);
    free(main->segment.data);
    free(main);
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    rc->retry_s = RETRY_MIN_S;
    log_event(LOG_INFO, rc->name, NULL, "scheduled snapshot in place: the previous generation runs past it, "
              "and the stream continues in generation %s", rc->deps.shipper->generation);
}

/* ------------------------------------------------------------- the socket */

static void close_socket(struct redis_link *l)
{
    ev_io_stop(l->owner->deps.loop, &l->read_watcher);
    ev_io_stop(l->owner->deps.loop, &l->write_watcher);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    if (l->rdb_writer) {
        object_writer_abort(l->rdb_writer);
        l->rdb_writer = NULL;
        l->want_full_sync = 1;
    }
    l->in.len = l->out.len = 0;
    l->offset = l->unit_end_offset;   /* an unfinished MULTI block is sent again */
    l->state = IDLE;
}

static void free_link(struct redis_link *l)
{
    if (!l)
        return;
    close_socket(l);
    free(l->in.data);
    free(l->out.data);
    free(l->segment.data);
    free(l);
}

static void schedule_retry(struct redis_capture *rc)
{
    if (rc->stopping)
        return;
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    ev_timer_set(&rc->retry_timer, rc->retry_s, 0.);
    ev_timer_start(rc->deps.loop, &rc->retry_timer);
    rc->retry_s = rc->retry_s * 2 > RETRY_MAX_S ? RETRY_MAX_S : rc->retry_s * 2;
}

static void disconnect(struct redis_link *l, const char *fmt, ...)
{
    struct redis_capture *rc = l->owner;
    char message[sizeof l->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (strcmp(message, l->error) != 0)
        log_event(LOG_ERROR, rc->name, NULL, "%s%s", message, l->is_next ? " (scheduled snapshot)" : " (retrying)");
    snprintf(l->error, sizeof l->error, "%s", message);
    if (l->is_next) {   /* the current stream goes on; a snapshot is tried again later */
        if (l->rdb_ready)
            log_event(LOG_WARN, rc->name, NULL, "the scheduled snapshot was stored but not used");
        rc->next = NULL;
        free_link(l);
        if (!rc->stopping) {
            ev_timer_set(&rc->next_retry_timer, NEXT_RETRY_S, 0.);
            ev_timer_start(rc->deps.loop, &rc->next_retry_timer);
        }
        return;
    }
    close_socket(l);
    if (!rc->failing_since_ms)
        rc->failing_since_ms = clock_now_ms();
    schedule_retry(rc);
    try_switch(rc);   /* a next link ready to take over does so now */
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_link *l = w->data;
    uint8_t chunk[READ_BYTES];
    ssize_t got = read(l->fd, chunk, sizeof chunk);
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (got <= 0)
        return disconnect(l, "the connection to Redis at %s was closed%s%s", addr_of(l),
                          got < 0 ? ": " : " by the server", got < 0 ? strerror(errno) : "");
    if (buffer_append(&l->in, chunk, (size_t)got) != 0)
        return disconnect(l, "out of memory reading from Redis");
    process_input(l);
}

static void send_handshake(struct redis_link *l)
{
    const struct config_db *cfg = l->owner->deps.cfg;
    l->replies_left = 2;
    if (cfg->redis_password) {
        const char *auth_user[] = {"AUTH", cfg->redis_username, cfg->redis_password};
        const char *auth[] = {"AUTH", cfg->redis_password};
        if (cfg->redis_username)
            send_command(l, auth_user, 3);
        else
            send_command(l, auth, 2);
        l->replies_left = 3;
    }
    const char *port[] = {"REPLCONF", "listening-port", "0"};
    const char *capa[] = {"REPLCONF", "capa", "eof", "capa", "psync2"};
    send_command(l, port, 3);
    send_command(l, capa, 5);
    l->state = HANDSHAKE;
    ev_io_start(l->owner->deps.loop, &l->read_watcher);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct redis_link *l = w->data;
    if (l->state == CONNECTING) {
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error)
            return disconnect(l, "cannot connect to Redis at %s: %s", addr_of(l), strerror(error));
        send_handshake(l);
    }
    while (l->out.len > 0) {
        ssize_t sent = write(l->fd, l->out.data, l->out.len);
        if (sent < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (sent < 0)
            return disconnect(l, "cannot write to Redis at %s: %s", addr_of(l), strerror(errno));
        buffer_consume(&l->out, (size_t)sent);
    }
    ev_io_stop(loop, w);
}

static void connect_now(struct redis_link *l)
{
    const char *addr = addr_of(l);
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
        return disconnect(l, "cannot resolve Redis address '%s': %s", addr, gai_strerror(lookup));
    l->fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        freeaddrinfo(found);
        return disconnect(l, "cannot create a socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int connected = connect(l->fd, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    if (connected != 0 && errno != EINPROGRESS)
        return disconnect(l, "cannot connect to Redis at %s: %s", addr, strerror(errno));
    l->state = CONNECTING;
    ev_io_set(&l->read_watcher, l->fd, EV_READ);
    ev_io_set(&l->write_watcher, l->fd, EV_WRITE);
    ev_io_start(l->owner->deps.loop, &l->write_watcher);
}

static struct redis_link *new_link(struct redis_capture *rc, int is_next)
{
    struct redis_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->owner = rc;
    l->is_next = is_next;
    l->fd = -1;
    ev_io_init(&l->read_watcher, on_readable, -1, EV_READ);
    ev_io_init(&l->write_watcher, on_writable, -1, EV_WRITE);
    l->read_watcher.data = l->write_watcher.data = l;
    return l;
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_capture *rc = w->data;
    if (rc->main->state == IDLE && !rc->stopping)
        connect_now(rc->main);
}

static void on_ack_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_capture *rc = w->data;
    if (rc->main->state == STREAM)
        send_ack(rc->main);
    if (rc->next && rc->next->state == STREAM)
        send_ack(rc->next);
}

static void on_next_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    redis_capture_snapshot(w->data);
}

/* ------------------------------------------------------------- interface */

int redis_capture_start(const struct redis_capture_deps *deps, struct redis_capture **out, struct tm_error *err)
{
    struct redis_capture *rc = calloc(1, sizeof *rc);
    if (!rc || !(rc->main = new_link(rc, 0))) {
        free(rc);
        return tm_error_set(err, "out of memory");
    }
    rc->deps = *deps;
    rc->name = deps->cfg->name;
    rc->retry_s = RETRY_MIN_S;
    ev_timer_init(&rc->retry_timer, on_retry, 0., 0.);
    ev_timer_init(&rc->ack_timer, on_ack_timer, 1., 1.);
    ev_timer_init(&rc->next_retry_timer, on_next_retry, 0., 0.);
    rc->retry_timer.data = rc->ack_timer.data = rc->next_retry_timer.data = rc;
    ev_timer_start(deps->loop, &rc->ack_timer);
    /* continue where the archive ends, if it is a Redis archive */
    struct spool_position end;
    if (spool_position(deps->spool, &end) && end.replid[0]) {
        struct redis_link *l = rc->main;
        shipper_continue(deps->shipper, &end);
        snprintf(l->replid, sizeof l->replid, "%s", end.replid);
        l->offset = l->unit_end_offset = l->segment_start_offset = end.repl_offset;
        l->have_position = 1;
    }
    *out = rc;
    rc->failing_since_ms = clock_now_ms();   /* until it follows the stream */
    connect_now(rc->main);
    return 0;
}

void redis_capture_sync(struct redis_capture *rc)
{
    struct tm_error err;
    if (publish_segment(rc->main, &err) != 0)
        log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool (the commands stay in memory and are "
                  "retried): %s", err.msg);
    try_switch(rc);
}

void redis_capture_snapshot(struct redis_capture *rc)
{
    if (rc->stopping)
        return;
    if (rc->next || rc->main->state == RDB_START || rc->main->state == RDB || rc->main->state == PSYNC_REPLY)
        return;   /* one is on its way */
    if (rc->main->state != STREAM) {   /* not following: the reconnection asks for a full sync */
        rc->main->want_full_sync = 1;
        return;
    }
    log_event(LOG_INFO, rc->name, NULL, "scheduled snapshot: a second connection to %s asks for a full "
              "resynchronisation", rc->deps.cfg->redis_addr);
    if (!(rc->next = new_link(rc, 1)))
        return;
    rc->next->want_full_sync = 1;
    connect_now(rc->next);
}

void redis_capture_stop(struct redis_capture *rc)
{
    rc->stopping = 1;
    struct tm_error err;
    if (publish_segment(rc->main, &err) != 0)
        log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool: %s", err.msg);
    close_socket(rc->main);
    free_link(rc->next);
    rc->next = NULL;
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    ev_timer_stop(rc->deps.loop, &rc->ack_timer);
    ev_timer_stop(rc->deps.loop, &rc->next_retry_timer);
}

void redis_capture_free(struct redis_capture *rc)
{
    if (!rc)
        return;
    rc->stopping = 1;
    free_link(rc->main);
    free_link(rc->next);
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    ev_timer_stop(rc->deps.loop, &rc->ack_timer);
    ev_timer_stop(rc->deps.loop, &rc->next_retry_timer);
    free(rc);
}

int64_t redis_capture_failing_since(const struct redis_capture *rc)
{
    return rc->main->state == STREAM ? 0 : rc->failing_since_ms;
}

const char *redis_capture_error(const struct redis_capture *rc)
{
    return rc->main->error;
}
