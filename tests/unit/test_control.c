/* test_control.c - the control socket (replicator/control.h): a whole
 * document (`tidemark status`) reaches a client that reads it late,
 * byte for byte, while the daemon's loop keeps running: a client that
 * does not read never stalls the loop (before 0.14.3 the answer was
 * written blocking, a second per write), and one that stops reading is
 * dropped after 5 s without progress. */
#include "harness.h"

#include "../../replicator/control.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DOCUMENT_BYTES (8u * 1024 * 1024)   /* far more than a Unix socket's buffer */
#define CLIENT_IDLE_MS 400                  /* the client reads nothing this long */

static char document_byte(size_t at)
{
    return at % 64 == 63 ? '\n' : (char)('a' + (at * 7) % 26);
}

static void reply_big_document(void *arg, const char *command, struct control_client *client)
{
    (void)arg;
    if (strcmp(command, "status") != 0) {
        control_reply(client, "error: unknown command");
        return;
    }
    char *text = malloc(DOCUMENT_BYTES);
    if (!text) {
        control_reply(client, "error: out of memory");
        return;
    }
    for (size_t at = 0; at < DOCUMENT_BYTES; at++)
        text[at] = document_byte(at);
    control_reply_document(client, text, DOCUMENT_BYTES);
    free(text);   /* the server keeps its own copy of what it could not send yet */
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The client, in a child process: asks for the status, reads nothing
 * for idle_ms, then reads to the end. Exit 0 when it got exactly the
 * document, 2 when it got a true beginning of it, cut, 1 otherwise. */
static int run_client(const char *dir, long idle_ms)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/control.sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || write(fd, "status\n", 7) != 7)
        return 1;
    sleep_ms(idle_ms);
    static char buf[65536];
    size_t got_total = 0;
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        for (ssize_t i = 0; i < got; i++)
            if (got_total + (size_t)i >= DOCUMENT_BYTES || buf[i] != document_byte(got_total + (size_t)i))
                return 1;
        got_total += (size_t)got;
    }
    return got_total == DOCUMENT_BYTES ? 0 : 2;
}

struct watch {
    struct ev_loop *loop;
    pid_t child;
    int status;
    int ticks;                  /* 10 ms ticks seen while the client did not read */
    int ticking;
};

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *watch = w->data;
    if (watch->ticking)
        watch->ticks++;
}

static void on_idle_over(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ((struct watch *)w->data)->ticking = 0;
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct watch *watch = w->data;
    watch->status = w->rstatus;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the server's loop until a client that idles idle_ms has ended:
 * its exit status; *ticks: 10 ms ticks of the loop in its first
 * CLIENT_IDLE_MS - 100 ms. */
static int serve_one_client(long idle_ms, int *ticks)
{
    struct ev_loop *loop = ev_default_loop(0);
    struct control_server *server;
    struct tm_error err;
    if (control_listen(loop, harness_tmpdir(), reply_big_document, NULL, &server, &err) != 0)
        return -1;
    struct watch watch = {.loop = loop, .ticking = 1};
    watch.child = fork();
    if (watch.child < 0)
        return -1;
    if (watch.child == 0)
        _exit(run_client(harness_tmpdir(), idle_ms));
    ev_timer tick, idle_over;
    ev_child child;
    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    ev_timer_init(&idle_over, on_idle_over, (CLIENT_IDLE_MS - 100) / 1000.0, 0.0);
    ev_child_init(&child, on_child, watch.child, 0);
    tick.data = idle_over.data = child.data = &watch;
    ev_timer_start(loop, &tick);
    ev_timer_start(loop, &idle_over);
    ev_child_start(loop, &child);
    ev_run(loop, 0);
    ev_timer_stop(loop, &tick);
    ev_timer_stop(loop, &idle_over);
    ev_child_stop(loop, &child);
    control_close(server);
    *ticks = watch.ticks;
    return WIFEXITED(watch.status) ? WEXITSTATUS(watch.status) : -1;
}

static void test_document_sent_as_the_client_reads(void)
{
    int ticks;
    /* the client got the whole document, and the loop ran while it read
     * nothing (a stall of a second would leave no tick) */
    ASSERT_EQ(serve_one_client(CLIENT_IDLE_MS, &ticks), 0);
    ASSERT_TRUE(ticks >= (CLIENT_IDLE_MS - 100) / 10 / 2);
}

static void test_client_that_stops_reading_is_dropped(void)
{
    int ticks;
    /* idle past the 5 s without progress: the connection was closed, a
     * true beginning of the document is all it gets */
    ASSERT_EQ(serve_one_client(6500, &ticks), 2);
    ASSERT_TRUE(ticks >= (CLIENT_IDLE_MS - 100) / 10 / 2);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"control: a status document larger than the socket reaches a late reader whole, the loop running",
         test_document_sent_as_the_client_reads},
        {"control: a client that stops reading is dropped after 5 s without progress",
         test_client_that_stops_reading_is_dropped},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
