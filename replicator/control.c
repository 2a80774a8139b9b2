/* control.c - the daemon's control socket and its client (control.h).
 *
 * The server is an ev_io on a listening Unix socket in the state
 * directory (created mode 0600 through the umask; a stale socket file is
 * replaced, which is safe because the spool's lock guarantees a single
 * sidecar per state directory). Each accepted connection gets an ev_io
 * that reads one command line (bounded), hands it to the handler, and
 * stays open until control_reply (one line) or control_reply_document (a
 * whole document, `tidemark status`) answers.
 *
 * A document is sent without ever blocking the loop: what the socket does
 * not take at once is kept (a copy) and written as the client reads, from
 * an ev_io; a client that takes nothing for CONTROL_SEND_SECONDS is
 * dropped (as /healthz's, monitoring.c). Before 0.14.3 the daemon wrote it
 * blocking, up to a second per write, so a client that read slowly (a
 * `dir:` entry's document is as large as its databases are many) stalled
 * the loop, and with it the pin's giving way to the application's
 * checkpoints. A one-line answer fits the socket's buffer: written at
 * once. */
#include "control.h"

#include "../common/clock.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 1024   /* "snapshot NAME": a directory database's name */
#define CONTROL_SEND_SECONDS 5.0

struct control_client {
    ev_io io;
    struct control_server *server;
    struct control_client *next;
    char line[LINE_MAX_BYTES];
    size_t used;
    int handed_over;           /* the handler has it; waiting for control_reply */
    char *document;            /* sending: what is left of the answer (owned), else NULL */
    size_t document_len, document_sent;
    ev_timer deadline;         /* sending: drop a client that stops reading */
};

struct control_server {
    struct ev_loop *loop;
    ev_io io;
    int fd;
    control_command_fn handler;
    void *arg;
    struct control_client *clients;
};

static int socket_path(const char *state_dir, struct sockaddr_un *addr, struct tm_error *err)
{
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if ((size_t)snprintf(addr->sun_path, sizeof addr->sun_path, "%s/control.sock", state_dir) >=
        sizeof addr->sun_path)
        return tm_error_set(err, "state directory path '%s' is too long for a Unix socket (limit %zu bytes)",
                            state_dir, sizeof addr->sun_path - 14);
    return 0;
}

static void client_free(struct control_client *c)
{
    struct control_server *s = c->server;
    for (struct control_client **p = &s->clients; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    ev_io_stop(s->loop, &c->io);
    if (c->document)
        ev_timer_stop(s->loop, &c->deadline);
    close(c->io.fd);
    free(c->document);
    free(c);
}

void control_reply(struct control_client *c, const char *line)
{
    char out[1024];
    int len = snprintf(out, sizeof out, "%s\n", line);
    if (len > (int)sizeof out - 1)
        len = (int)sizeof out - 1;
    ssize_t ignored = write(c->io.fd, out, (size_t)len);
    (void)ignored;
    client_free(c);
}

/* Writes what the socket takes of [*sent, len) without blocking: 1 when
 * all is written, 0 when the rest must wait, -1 when the client is gone. */
static int write_some(int fd, const char *text, size_t len, size_t *sent)
{
    while (*sent < len) {
        ssize_t wrote = write(fd, text + *sent, len - *sent);
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (wrote <= 0)
            return -1;
        *sent += (size_t)wrote;
    }
    return 1;
}

static void on_client_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct control_client *c = (struct control_client *)w;
    size_t before = c->document_sent;
    if (write_some(w->fd, c->document, c->document_len, &c->document_sent) != 0)
        client_free(c);   /* all sent, or gone */
    else if (c->document_sent > before)
        ev_timer_again(loop, &c->deadline);   /* progress: CONTROL_SEND_SECONDS more */
}

static void on_send_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    client_free((struct control_client *)((char *)w - offsetof(struct control_client, deadline)));
}

void control_reply_document(struct control_client *c, const char *text, size_t len)
{
    size_t sent = 0;
    if (write_some(c->io.fd, text, len, &sent) != 0 || !(c->document = malloc(len - sent))) {
        client_free(c);   /* all sent, gone, or no memory to keep the rest: the client sees a cut document */
        return;
    }
    memcpy(c->document, text + sent, len - sent);
    c->document_len = len - sent;
    struct ev_loop *loop = c->server->loop;
    ev_io_stop(loop, &c->io);
    ev_io_init(&c->io, on_client_writable, c->io.fd, EV_WRITE);
    ev_io_start(loop, &c->io);
    ev_timer_init(&c->deadline, on_send_deadline, 0.0, CONTROL_SEND_SECONDS);
    ev_timer_again(loop, &c->deadline);
}

static void on_client_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct control_client *c = (struct control_client *)w;
    ssize_t got = read(w->fd, c->line + c->used, sizeof c->line - 1 - c->used);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        client_free(c);   /* went away */
        return;
    }
    c->used += (size_t)got;
    c->line[c->used] = '\0';
    char *newline = strchr(c->line, '\n');
    if (!newline) {
        if (c->used == sizeof c->line - 1)
            control_reply(c, "error: command too long");
        return;
    }
    *newline = '\0';
    ev_io_stop(c->server->loop, &c->io);   /* one command per connection */
    c->handed_over = 1;
    c->server->handler(c->server->arg, c->line, c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct control_server *s = (struct control_server *)((char *)w - offsetof(struct control_server, io));
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct control_client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->server = s;
    c->next = s->clients;
    s->clients = c;
    ev_io_init(&c->io, on_client_readable, fd, EV_READ);
    ev_io_start(loop, &c->io);
}

int control_listen(struct ev_loop *loop, const char *state_dir, control_command_fn handler, void *arg,
                   struct control_server **out, struct tm_error *err)
{
    struct sockaddr_un addr;
    if (socket_path(state_dir, &addr, err) != 0)
        return -1;
    struct control_server *s = calloc(1, sizeof *s);
    if (!s)
        return tm_error_set(err, "out of memory");
    s->loop = loop;
    s->handler = handler;
    s->arg = arg;
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    unlink(addr.sun_path);
    mode_t old_mask = umask(0077);
    int bound = s->fd >= 0 && bind(s->fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
                chmod(addr.sun_path, 0600) == 0;
    umask(old_mask);
    if (!bound || listen(s->fd, 8) != 0) {
        tm_error_set(err, "cannot listen on '%s': %s", addr.sun_path, strerror(errno));
        if (s->fd >= 0)
            close(s->fd);
        free(s);
        return -1;
    }
    ev_io_init(&s->io, on_accept, s->fd, EV_READ);
    ev_io_start(loop, &s->io);
    *out = s;
    return 0;
}

void control_close(struct control_server *s)
{
    if (!s)
        return;
    while (s->clients) {
        if (s->clients->handed_over && !s->clients->document)
            control_reply(s->clients, "error: the sidecar is stopping");
        else
            client_free(s->clients);
    }
    ev_io_stop(s->loop, &s->io);
    close(s->fd);
    free(s);
}

/* Connects to the socket and sends the command line; the socket, or -1
 * (err set; *no_daemon = 1 when nothing listens). */
static int send_command(const char *state_dir, const char *command, int *no_daemon, struct tm_error *err)
{
    *no_daemon = 0;
    struct sockaddr_un addr;
    if (socket_path(state_dir, &addr, err) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tm_error_set(err, "cannot create a socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int saved = errno;
        close(fd);
        if (saved == ENOENT || saved == ECONNREFUSED) {
            *no_daemon = 1;
            return tm_error_set(err, "no sidecar is running for '%s'", state_dir);
        }
        return tm_error_set(err, "cannot connect to '%s': %s", addr.sun_path, strerror(saved));
    }
    char line[LINE_MAX_BYTES];
    int len = snprintf(line, sizeof line, "%s\n", command);
    if (len >= (int)sizeof line || write(fd, line, (size_t)len) != len) {
        close(fd);
        return tm_error_set(err, "cannot send to '%s': %s", addr.sun_path,
                            len >= (int)sizeof line ? "command too long" : strerror(errno));
    }
    return fd;
}

/* Waits until fd is readable or the deadline passes: 1 readable, 0 timed out. */
static int wait_readable(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - clock_monotonic_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {fd, POLLIN, 0};
        int ready = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
        if (ready < 0 && errno != EINTR)
            return 0;
        if (ready > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)))
            return 1;
    }
}

int control_request(const char *state_dir, const char *command, int64_t timeout_ms, char *reply,
                    size_t reply_len, int *no_daemon, struct tm_error *err)
{
    int fd = send_command(state_dir, command, no_daemon, err);
    if (fd < 0)
        return -1;
    size_t used = 0;
    int64_t deadline = clock_monotonic_ms() + timeout_ms;
    reply[0] = '\0';
    while (used + 1 < reply_len) {
        if (!wait_readable(fd, deadline)) {
            close(fd);
            return tm_error_set(err, "no answer from the sidecar within %lld s", (long long)(timeout_ms / 1000));
        }
        ssize_t got = read(fd, reply + used, reply_len - 1 - used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        used += (size_t)got;
        reply[used] = '\0';
        if (strchr(reply, '\n'))
            break;
    }
    close(fd);
    reply[strcspn(reply, "\n")] = '\0';
    if (!reply[0])
        return tm_error_set(err, "the sidecar closed the connection without an answer");
    return 0;
}

int control_request_document(const char *state_dir, const char *command, int64_t timeout_ms, char **reply,
                             int *no_daemon, struct tm_error *err)
{
    *reply = NULL;
    int fd = send_command(state_dir, command, no_daemon, err);
    if (fd < 0)
        return -1;
    size_t used = 0, cap = 0;
    char *text = NULL;
    int64_t deadline = clock_monotonic_ms() + timeout_ms;
    for (;;) {
        if (used + 4096 + 1 > cap) {
            char *grown = cap + 65536 <= CONTROL_DOCUMENT_MAX ? realloc(text, cap + 65536) : NULL;
            if (!grown) {
                tm_error_set(err, "the sidecar's answer is too long (over %d bytes)", CONTROL_DOCUMENT_MAX);
                break;
            }
            text = grown;
            cap += 65536;
        }
        if (!wait_readable(fd, deadline)) {
            tm_error_set(err, "no answer from the sidecar within %lld s", (long long)(timeout_ms / 1000));
            break;
        }
        ssize_t got = read(fd, text + used, cap - 1 - used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            close(fd);
            text[used] = '\0';
            if (!used) {
                free(text);
                return tm_error_set(err, "the sidecar closed the connection without an answer");
            }
            *reply = text;
            return 0;
        }
        used += (size_t)got;
    }
    close(fd);
    free(text);
    return -1;
}
