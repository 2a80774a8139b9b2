/* redis_link.c - one replication connection of the Redis capture (the
 * states and the design: redis.c; the structures: redis_internal.h).
 *
 * A link connects without blocking (only the name lookup does), sends
 * [AUTH [user] password], REPLCONF listening-port 0 and REPLCONF capa eof
 * capa psync2 at once, reads one reply per command, then sends PSYNC
 * alone: PSYNC <replid> <offset+1> to continue the archive, PSYNC ? -1
 * for a full resynchronisation. An error reply is turned into a message
 * that names what was refused and what to change (password, ACL user,
 * replication disabled). The reply to PSYNC (+FULLRESYNC or +CONTINUE)
 * and the line that opens the RDB are read here too; the RDB and the
 * command stream themselves are handed to redis.c.
 *
 * Any error goes through redis_link_disconnect: logged once per distinct
 * message; the main link is retried after 1 s, doubling up to 30 s; a
 * failed next link (scheduled snapshot) is freed and tried again after
 * 60 s or at the next schedule. */
#include "redis_internal.h"

#include "../common/clock.h"
#include "../common/log.h"
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

#define READ_BYTES (64 * 1024)
#define RETRY_MAX_S 30.0
#define NEXT_RETRY_S 60.0

/* ------------------------------------------------------------- buffers */

int redis_buffer_append(struct buffer *b, const void *data, size_t len)
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

void redis_buffer_consume(struct buffer *b, size_t len)
{
    if (len == 0)
        return;   /* an open MULTI block waits in place: no copy per read */
    memmove(b->data, b->data + len, b->len - len);
    b->len -= len;
}

#define BUFFER_KEEP_BYTES (32 * 1024 * 1024)

void redis_buffer_trim(struct buffer *b)
{
    if (b->cap <= BUFFER_KEEP_BYTES || b->len > BUFFER_KEEP_BYTES / 4)
        return;
    size_t cap = b->len > 4096 ? b->len : 4096;
    uint8_t *smaller = realloc(b->data, cap);
    if (smaller) {   /* else it keeps its memory: nothing is lost */
        b->data = smaller;
        b->cap = cap;
    }
}

const char *redis_link_addr(const struct redis_link *l)
{
    return l->owner->deps.cfg->redis_addr;
}

/* Appends a RESP array of the given arguments to the output buffer. */
static int send_command(struct redis_link *l, const char *const *args, int argc)
{
    char head[32];
    int len = snprintf(head, sizeof head, "*%d\r\n", argc);
    if (redis_buffer_append(&l->out, head, (size_t)len) != 0)
        return -1;
    for (int i = 0; i < argc; i++) {
        len = snprintf(head, sizeof head, "$%zu\r\n", strlen(args[i]));
        if (redis_buffer_append(&l->out, head, (size_t)len) != 0 ||
            redis_buffer_append(&l->out, args[i], strlen(args[i])) != 0 ||
            redis_buffer_append(&l->out, "\r\n", 2) != 0)
            return -1;
    }
    ev_io_start(l->owner->deps.loop, &l->write_watcher);
    return 0;
}

void redis_link_send_ack(struct redis_link *l)
{
    char offset[32];
    snprintf(offset, sizeof offset, "%" PRIu64, l->offset);
    const char *args[] = {"REPLCONF", "ACK", offset};
    send_command(l, args, 3);
}

/* ------------------------------------------------------------- handshake */

static void handshake_refused(struct redis_link *l, const char *command, const char *reply)
{
    const char *addr = redis_link_addr(l);
    if (strncmp(reply, "WRONGPASS", 9) == 0 || strstr(reply, "invalid password") || strstr(reply, "invalid username"))
        return redis_link_disconnect(l, "Redis at %s rejected the credentials (%s): check 'username' and "
                                     "'password'", addr, reply);
    if (strncmp(reply, "NOAUTH", 6) == 0)
        return redis_link_disconnect(l, "Redis at %s requires a password (%s): set 'password' (and 'username' "
                                     "for an ACL user)", addr, reply);
    if (strstr(reply, "without any password configured") || strstr(reply, "no password is set"))
        return redis_link_disconnect(l, "Redis at %s has no password set (%s): remove 'password' from the "
                                     "configuration", addr, reply);
    if (strncmp(reply, "NOPERM", 6) == 0)
        return redis_link_disconnect(l, "Redis at %s: the ACL user may not run %s (%s): grant it '+psync "
                                     "+replconf +ping'", addr, command, reply);
    if (strcmp(command, "PSYNC") == 0 || strcmp(command, "REPLCONF") == 0)
        return redis_link_disconnect(l, "Redis at %s refuses replication (%s answered '%s'): managed services "
                                     "often disable PSYNC/SYNC; use a self-managed replica of it for the sidecar, "
                                     "or a Redis with 'appendonly yes' on the same host", addr, command, reply);
    redis_link_disconnect(l, "Redis at %s refused %s: %s", addr, command, reply);
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

/* The next line of input into `line` (keep-alives skipped): 1 when there
 * is one, 0 for more input (or the link was dropped). */
static int take_line(struct redis_link *l, char *line, size_t cap)
{
    while (l->in.len && l->in.data[0] == '\n')
        redis_buffer_consume(&l->in, 1);   /* keep-alives while the master prepares the RDB */
    size_t line_len, consumed;
    int got = resp_line(l->in.data, l->in.len, &line_len, &consumed);
    if (got == RESP_INCOMPLETE)
        return 0;
    if (got == RESP_MALFORMED) {
        redis_link_disconnect(l, "Redis at %s sent a line over 64 KiB during the handshake", redis_link_addr(l));
        return 0;
    }
    snprintf(line, cap, "%.*s", (int)(line_len < cap - 1 ? line_len : cap - 1), (const char *)l->in.data);
    redis_buffer_consume(&l->in, consumed);
    return 1;
}

/* HANDSHAKE: the reply to AUTH or to a REPLCONF; PSYNC after the last. */
static int handshake_reply(struct redis_link *l, const char *line)
{
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

/* +FULLRESYNC: the RDB that follows starts a new generation. */
static int full_resync(struct redis_link *l, const char *replid, unsigned long long offset)
{
    struct tm_error err;
    snprintf(l->replid, sizeof l->replid, "%s", replid);
    l->rdb_offset = offset;
    l->state = RDB_START;
    log_event(LOG_INFO, l->owner->name, NULL, "full resynchronisation from %s (replication id %s, offset %llu)"
              ": a new generation starts with its RDB%s", redis_link_addr(l), replid, offset,
              l->is_next ? " (scheduled snapshot; the current stream goes on meanwhile)" : "");
    if (redis_rdb_begin(l, &err) != 0) {
        redis_link_disconnect(l, "cannot start the snapshot: %s", err.msg);
        return 0;
    }
    return 1;
}

/* +CONTINUE [<replid>]: the stream goes on, in the same generation. */
static int continue_stream(struct redis_link *l, const char *line)
{
    char replid[ARCHIVE_REPLID_BYTES + 8] = "";
    if (sscanf(line, "+CONTINUE %47s", replid) == 1 && strlen(replid) == ARCHIVE_REPLID_BYTES)
        snprintf(l->replid, sizeof l->replid, "%s", replid);   /* after a failover */
    l->state = STREAM;
    l->error[0] = '\0';
    l->owner->retry_s = RETRY_MIN_S;
    l->owner->failing_since_ms = 0;
    log_event(LOG_INFO, l->owner->name, NULL, "continuing the replication stream of %s at offset %" PRIu64
              " (generation %s)", redis_link_addr(l), l->offset, l->owner->deps.shipper->generation);
    return 1;
}

/* PSYNC_REPLY: a full resynchronisation, or the stream continued. */
static int psync_reply(struct redis_link *l, const char *line)
{
    if (line[0] == '-') {
        handshake_refused(l, "PSYNC", line + 1);
        return 0;
    }
    char replid[ARCHIVE_REPLID_BYTES + 8] = "";
    unsigned long long offset;
    if (sscanf(line, "+FULLRESYNC %47s %llu", replid, &offset) == 2 && strlen(replid) == ARCHIVE_REPLID_BYTES)
        return full_resync(l, replid, offset);
    if (strncmp(line, "+CONTINUE", 9) == 0 && !l->is_next)
        return continue_stream(l, line);
    redis_link_disconnect(l, "Redis at %s answered PSYNC with '%s'", redis_link_addr(l), line);
    return 0;
}

/* RDB_START: "$<length>" or "$EOF:<mark>". */
static int rdb_start(struct redis_link *l, const char *line)
{
    unsigned long long length;
    if (strncmp(line, "$EOF:", 5) == 0 && strlen(line + 5) == ARCHIVE_REPLID_BYTES) {
        l->rdb_eof_form = 1;
        memcpy(l->rdb_mark, line + 5, ARCHIVE_REPLID_BYTES);
    } else if (line[0] == '$' && sscanf(line + 1, "%llu", &length) == 1) {
        l->rdb_eof_form = 0;
        l->rdb_remaining = length;
    } else {
        redis_link_disconnect(l, "Redis at %s sent '%s' where the RDB should start", redis_link_addr(l), line);
        return 0;
    }
    l->state = RDB;
    return 1;
}

/* One handshake or PSYNC line; returns 1 to go on, 0 for more input. */
static int process_line_states(struct redis_link *l)
{
    char line[512];
    if (!take_line(l, line, sizeof line))
        return 0;
    if (l->state == HANDSHAKE)
        return handshake_reply(l, line);
    if (l->state == PSYNC_REPLY)
        return psync_reply(l, line);
    return rdb_start(l, line);
}

static void process_input(struct redis_link *l)
{
    for (;;) {
        int more;
        if (l->state == HANDSHAKE || l->state == PSYNC_REPLY || l->state == RDB_START)
            more = process_line_states(l);
        else if (l->state == RDB)
            more = redis_rdb_receive(l);
        else if (l->state == STREAM)
            more = redis_stream_receive(l);
        else
            return;
        if (!more || l->state == IDLE)
            return;
    }
}

/* ------------------------------------------------------------- the socket */

void redis_link_close(struct redis_link *l)
{
    ev_io_stop(l->owner->deps.loop, &l->read_watcher);
    ev_io_stop(l->owner->deps.loop, &l->write_watcher);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    l->held = 0;
    if (l->rdb_writer) {
        object_writer_abort(l->rdb_writer);
        l->rdb_writer = NULL;
        l->want_full_sync = 1;
    }
    l->in.len = l->out.len = 0;
    redis_units_init(&l->units, ARCHIVE_REDIS_UNIT_MAX);
    l->offset = l->unit_end_offset;   /* an unfinished MULTI block is sent again */
    l->state = IDLE;
}

void redis_link_free(struct redis_link *l)
{
    if (!l)
        return;
    redis_link_close(l);
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

void redis_link_disconnect(struct redis_link *l, const char *fmt, ...)
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
        redis_link_free(l);
        if (!rc->stopping) {
            ev_timer_set(&rc->next_retry_timer, NEXT_RETRY_S, 0.);
            ev_timer_start(rc->deps.loop, &rc->next_retry_timer);
        }
        return;
    }
    redis_link_close(l);
    if (!rc->failing_since_ms)
        rc->failing_since_ms = clock_now_ms();
    schedule_retry(rc);
    redis_try_switch(rc);   /* a next link ready to take over does so now */
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
        return redis_link_disconnect(l, "the connection to Redis at %s was closed%s%s", redis_link_addr(l),
                                     got < 0 ? ": " : " by the server", got < 0 ? strerror(errno) : "");
    if (redis_buffer_append(&l->in, chunk, (size_t)got) != 0)
        return redis_link_disconnect(l, "out of memory reading from Redis");
    process_input(l);
}

#define READ_PENDING_MAX (16 * 1024 * 1024)

void redis_link_read_pending(struct redis_link *l)
{
    uint8_t chunk[READ_BYTES];
    for (size_t read_total = 0; l->fd >= 0 && l->state == STREAM && read_total < READ_PENDING_MAX;) {
        ssize_t got = read(l->fd, chunk, sizeof chunk);
        if (got <= 0 || redis_buffer_append(&l->in, chunk, (size_t)got) != 0)
            return;   /* nothing more now (EAGAIN), closed, or no memory: what was read is processed */
        process_input(l);
        read_total += (size_t)got;
    }
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
            return redis_link_disconnect(l, "cannot connect to Redis at %s: %s", redis_link_addr(l), strerror(error));
        send_handshake(l);
    }
    while (l->out.len > 0) {
        ssize_t sent = write(l->fd, l->out.data, l->out.len);
        if (sent < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (sent < 0)
            return redis_link_disconnect(l, "cannot write to Redis at %s: %s", redis_link_addr(l), strerror(errno));
        redis_buffer_consume(&l->out, (size_t)sent);
    }
    ev_io_stop(loop, w);
}

void redis_link_connect(struct redis_link *l)
{
    const char *addr = redis_link_addr(l);
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
        return redis_link_disconnect(l, "cannot resolve Redis address '%s': %s", addr, gai_strerror(lookup));
    l->fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        freeaddrinfo(found);
        return redis_link_disconnect(l, "cannot create a socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int connected = connect(l->fd, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    if (connected != 0 && errno != EINPROGRESS)
        return redis_link_disconnect(l, "cannot connect to Redis at %s: %s", addr, strerror(errno));
    l->state = CONNECTING;
    ev_io_set(&l->read_watcher, l->fd, EV_READ);
    ev_io_set(&l->write_watcher, l->fd, EV_WRITE);
    ev_io_start(l->owner->deps.loop, &l->write_watcher);
}

struct redis_link *redis_link_new(struct redis_capture *rc, int is_next)
{
    struct redis_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->owner = rc;
    l->is_next = is_next;
    l->fd = -1;
    redis_units_init(&l->units, ARCHIVE_REDIS_UNIT_MAX);
    ev_io_init(&l->read_watcher, on_readable, -1, EV_READ);
    ev_io_init(&l->write_watcher, on_writable, -1, EV_WRITE);
    l->read_watcher.data = l->write_watcher.data = l;
    return l;
}
