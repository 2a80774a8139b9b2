/* resp.h - just enough of the Redis protocol (RESP2) to follow a
 * replication stream: where each command ends, and what it is.
 *
 * After the RDB, a master sends its replicas every write as a RESP array
 * of bulk strings ("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"), plus
 * PING and REPLCONF GETACK of its own. The replication offset counts
 * these bytes exactly, so the sidecar must know each command's length
 * without waiting for more than it. Lines of the handshake ("+OK",
 * "-ERR ...", "+FULLRESYNC <id> <offset>") are read with resp_line. */
#ifndef TM_RESP_H
#define TM_RESP_H

#include <stddef.h>
#include <stdint.h>

#define RESP_NAME_MAX 16

struct resp_command {
    size_t length;                     /* bytes of the whole command */
    uint32_t argc;
    char name[RESP_NAME_MAX];          /* first argument, upper case, truncated */
    char arg1[RESP_NAME_MAX];          /* second argument, upper case, truncated ("" if none) */
};

enum { RESP_INCOMPLETE = 0, RESP_COMPLETE = 1, RESP_MALFORMED = -1 };

/* A command measured across calls, as its bytes arrive: each call goes
 * on where the previous one stopped, so that a command (or a MULTI block
 * of them) arriving in many reads is measured in time linear in its
 * size, never re-read from its start. Bulk strings are skipped by length,
 * not looked at (but for the first 15 bytes of the first two). */
struct resp_parser {
    size_t pos;                        /* bytes of the current command measured */
    long long argc;                    /* its argument count; 0 until read */
    long long arg;                     /* arguments measured */
    long long bulk;                    /* the current argument's length; -1 until read */
    struct resp_command cmd;           /* what is known of it so far */
    uint64_t examined;                 /* bytes looked at, in all calls (tests: linear work) */
};

void resp_parser_init(struct resp_parser *p);
/* Goes on measuring the command that starts at buf[0]: buf[0..len) holds
 * it, or its start (the same start as in the previous call, with more
 * bytes). RESP_COMPLETE with *out filled (the parser is then ready for
 * the next command, which starts at buf + out->length), RESP_INCOMPLETE
 * when more bytes are needed, or RESP_MALFORMED (what does not start
 * with '*', absurd counts or lengths: arrays of at most 1M arguments,
 * bulk strings of at most 512 MB, Redis's own limits; the parser must
 * then be initialised again). */
int resp_parser_next(struct resp_parser *p, const uint8_t *buf, size_t len, struct resp_command *out);

/* The command at the start of buf[0..len), measured in one call (same
 * outcomes as resp_parser_next). */
int resp_command_parse(const uint8_t *buf, size_t len, struct resp_command *out);

/* A line ending in CRLF at the start of buf: its length without the CRLF
 * in *line_len and the bytes to consume in *consumed; RESP_INCOMPLETE or
 * RESP_MALFORMED (over 64 KiB without CRLF). */
int resp_line(const uint8_t *buf, size_t len, size_t *line_len, size_t *consumed);

#endif
