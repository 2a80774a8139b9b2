/* http.h - libcurl's multi-socket interface driven by a libev loop.
 *
 * The daemon never waits on the network: requests are curl easy handles
 * added to one multi handle whose sockets and timeout are watched by the
 * daemon's event loop; each finished transfer calls its `done` callback
 * from the loop. Connections are pooled by the multi handle and reused
 * across requests to the same host. */
#ifndef TM_HTTP_H
#define TM_HTTP_H

#include <curl/curl.h>
#include <ev.h>

#include "error.h"

struct http_loop;

/* Called from the loop when the transfer ends (result is curl's code; the
 * HTTP status is read from the easy handle). The easy handle still belongs
 * to the caller, which may reuse or clean it up inside the callback. */
typedef void (*http_done_fn)(void *arg, CURL *easy, CURLcode result);

int http_loop_new(struct ev_loop *loop, struct http_loop **out, struct tm_error *err);
/* Every transfer must have finished or been cancelled before. */
void http_loop_free(struct http_loop *hl);

/* Starts a transfer; `done` is always called later, never from inside. */
int http_loop_start(struct http_loop *hl, CURL *easy, http_done_fn done, void *arg,
                    struct tm_error *err);

/* Stops a transfer without calling its callback (the caller owns easy). */
void http_loop_cancel(struct http_loop *hl, CURL *easy);

/* The event loop the transfers run on. */
struct ev_loop *http_loop_ev(const struct http_loop *hl);

/* Transfers in progress. */
int http_loop_active(const struct http_loop *hl);

#endif
