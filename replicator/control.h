/* control.h - the sidecar's local control socket: `tidemark snapshot`
 * asks the running daemon for a snapshot and waits for the answer.
 *
 * One Unix socket per configured database, STATE-DIR/control.sock, and
 * one per `dir:` entry in the entry's state directory, mode 0600 (only
 * the sidecar's user may use it). The protocol is one line each way: the
 * client sends a command ("snapshot\n", or "snapshot NAME\n" to an
 * entry's socket); the daemon answers later with one line ("stored
 * KEY\n" or "error: MESSAGE\n") and closes. The one exception, "status"
 * (`tidemark status`), is answered with a whole document (status_wire.h)
 * followed by the end of the connection. */
#ifndef TM_CONTROL_H
#define TM_CONTROL_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

struct control_server;
struct control_client;   /* a connection waiting for its answer */

/* Called from the loop with each command; the handler must eventually
 * call control_reply(client, ...) exactly once (now or later). */
typedef void (*control_command_fn)(void *arg, const char *command, struct control_client *client);

int control_listen(struct ev_loop *loop, const char *state_dir, control_command_fn handler, void *arg,
                   struct control_server **out, struct tm_error *err);
/* Closes the socket; clients still waiting get "error: stopping". */
void control_close(struct control_server *server);
/* Sends the answer line (newline added) and closes the connection. */
void control_reply(struct control_client *client, const char *line);

/* Sends a whole document (any number of lines) and closes the connection. */
void control_reply_document(struct control_client *client, const char *text, size_t len);

#define CONTROL_DOCUMENT_MAX (64 * 1024 * 1024)

/* Client side: sends command, waits up to timeout_ms for the answer line.
 * Returns 0 with the answer in reply; -1 with err set; *no_daemon = 1 when
 * nothing listens (no socket, or connection refused). */
int control_request(const char *state_dir, const char *command, int64_t timeout_ms, char *reply,
                    size_t reply_len, int *no_daemon, struct tm_error *err);

/* The same for a command answered with a document: *reply (malloc'd, the
 * caller frees it) holds everything the sidecar sent until it closed. */
int control_request_document(const char *state_dir, const char *command, int64_t timeout_ms, char **reply,
                             int *no_daemon, struct tm_error *err);

#endif
