/* http.c - glue between libcurl's multi-socket API and libev (http.h).
 *
 * curl tells us, through CURLMOPT_SOCKETFUNCTION, which sockets it wants
 * watched for reading or writing, and through CURLMOPT_TIMERFUNCTION when
 * it next needs to be called if nothing happens. We keep one ev_io per
 * socket (stored with curl_multi_assign) and one ev_timer, and feed every
 * event back with curl_multi_socket_action. After each action, finished
 * transfers are collected with curl_multi_info_read and their callbacks
 * run. A transfer's callback is found through CURLOPT_PRIVATE.
 *
 * Every upload of every database goes through this one multi handle, so
 * they share its connection pool: at most HTTP_HOST_CONNECTIONS at once
 * to a host (transfers beyond wait in curl's queue) and HTTP_KEPT_CONNECTIONS
 * kept open between transfers. Without the bound, a thousand databases'
 * first snapshots opened a thousand connections (and descriptors). */
#include "http.h"

#include <stdlib.h>

#define HTTP_HOST_CONNECTIONS 8L
#define HTTP_KEPT_CONNECTIONS 16L

struct http_loop {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timeout;
    int active;
};

struct transfer {
    http_done_fn done;
    void *arg;
};

struct socket_watch {
    ev_io io;
    struct http_loop *hl;
};

static void collect_finished(struct http_loop *hl)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(hl->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        curl_multi_remove_handle(hl->multi, easy);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        hl->active--;
        if (t) {
            http_done_fn done = t->done;
            void *arg = t->arg;
            free(t);
            done(arg, easy, result);
        }
    }
}

static void on_socket_event(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    /* the action may free sw (CURL_POLL_REMOVE): keep what we need */
    struct http_loop *hl = ((struct socket_watch *)w)->hl;
    int fd = w->fd;
    int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(hl->multi, fd, action, &running);
    collect_finished(hl);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct http_loop *hl = w->data;
    int running;
    curl_multi_socket_action(hl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_finished(hl);
}

static int on_socket_change(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct http_loop *hl = userp;
    struct socket_watch *sw = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sw) {
            ev_io_stop(hl->loop, &sw->io);
            free(sw);
            curl_multi_assign(hl->multi, fd, NULL);
        }
        return 0;
    }
    if (!sw) {
        if (!(sw = calloc(1, sizeof *sw)))
            return -1;
        sw->hl = hl;
        curl_multi_assign(hl->multi, fd, sw);
    } else {
        ev_io_stop(hl->loop, &sw->io);
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_init(&sw->io, on_socket_event, fd, events);
    ev_io_start(hl->loop, &sw->io);
    return 0;
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct http_loop *hl = userp;
    ev_timer_stop(hl->loop, &hl->timeout);
    if (timeout_ms >= 0) {
        ev_timer_set(&hl->timeout, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(hl->loop, &hl->timeout);
    }
    return 0;
}

int http_loop_new(struct ev_loop *loop, struct http_loop **out, struct tm_error *err)
{
    struct http_loop *hl = calloc(1, sizeof *hl);
    if (!hl)
        return tm_error_set(err, "out of memory");
    hl->loop = loop;
    if (!(hl->multi = curl_multi_init())) {
        free(hl);
        return tm_error_set(err, "cannot initialise libcurl");
    }
    ev_timer_init(&hl->timeout, on_timeout, 0., 0.);
    hl->timeout.data = hl;
    curl_multi_setopt(hl->multi, CURLMOPT_SOCKETFUNCTION, on_socket_change);
    curl_multi_setopt(hl->multi, CURLMOPT_SOCKETDATA, hl);
    curl_multi_setopt(hl->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(hl->multi, CURLMOPT_TIMERDATA, hl);
    curl_multi_setopt(hl->multi, CURLMOPT_MAX_HOST_CONNECTIONS, HTTP_HOST_CONNECTIONS);
    curl_multi_setopt(hl->multi, CURLMOPT_MAXCONNECTS, HTTP_KEPT_CONNECTIONS);
    *out = hl;
    return 0;
}

int http_loop_start(struct http_loop *hl, CURL *easy, http_done_fn done, void *arg,
                    struct tm_error *err)
{
    struct transfer *t = malloc(sizeof *t);
    if (!t)
        return tm_error_set(err, "out of memory");
    t->done = done;
    t->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)t);
    CURLMcode mc = curl_multi_add_handle(hl->multi, easy);
    if (mc != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(t);
        return tm_error_set(err, "cannot start an HTTP transfer: %s", curl_multi_strerror(mc));
    }
    hl->active++;
    return 0;
}

struct ev_loop *http_loop_ev(const struct http_loop *hl)
{
    return hl->loop;
}

int http_loop_active(const struct http_loop *hl)
{
    return hl->active;
}

void http_loop_cancel(struct http_loop *hl, CURL *easy)
{
    struct transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    if (!t)
        return;
    curl_multi_remove_handle(hl->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    hl->active--;
    free(t);
}

void http_loop_free(struct http_loop *hl)
{
    if (!hl)
        return;
    ev_timer_stop(hl->loop, &hl->timeout);
    curl_multi_cleanup(hl->multi);
    free(hl);
}
