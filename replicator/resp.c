/* resp.c - the RESP parsing the Redis capture needs (resp.h).
 *
 * A command is "*<argc>\r\n" then argc times "$<len>\r\n<len bytes>\r\n".
 * Nothing is copied: the parser only measures, and notes the first two
 * arguments in upper case so the capture can tell MULTI, EXEC, PING,
 * SELECT and REPLCONF GETACK apart. Numbers are parsed with explicit
 * bounds so that no input can overflow a length.
 *
 * The parser keeps its place (struct resp_parser): a command whose bytes
 * arrive over many reads is measured once, each call going on from the
 * last complete number or argument, and a bulk string is skipped by its
 * length without being read. A number line cut by a read is read again
 * from its start (at most 22 bytes). So the work is linear in the input:
 * `examined` counts it, and the unit tests hold it under twice the
 * input's size. */
#include "resp.h"

#include <ctype.h>
#include <string.h>

#define MAX_ARGS (1024 * 1024)
#define MAX_BULK (512LL * 1024 * 1024)
#define MAX_LINE (64 * 1024)

int resp_line(const uint8_t *buf, size_t len, size_t *line_len, size_t *consumed)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n') {
            *line_len = i;
            *consumed = i + 2;
            return RESP_COMPLETE;
        }
        if (i > MAX_LINE)
            return RESP_MALFORMED;
    }
    return len > MAX_LINE ? RESP_MALFORMED : RESP_INCOMPLETE;
}

/* "<prefix><digits>\r\n" at buf + *pos, value at most max; the bytes
 * looked at are added to *examined. */
static int read_number(const uint8_t *buf, size_t len, size_t *pos, char prefix, long long max,
                       long long *value, uint64_t *examined)
{
    if (*pos >= len)
        return RESP_INCOMPLETE;
    if (buf[*pos] != (uint8_t)prefix)
        return RESP_MALFORMED;
    long long number = 0;
    size_t i = *pos + 1, digits = 0;
    for (; i < len && isdigit(buf[i]); i++, digits++) {
        number = number * 10 + (buf[i] - '0');
        if (number > max || digits >= 20)   /* however the line is cut: the same verdict */
            return RESP_MALFORMED;
    }
    *examined += (uint64_t)(i - *pos) + 2;
    if (i + 1 >= len)
        return RESP_INCOMPLETE;
    if (!digits || buf[i] != '\r' || buf[i + 1] != '\n')
        return RESP_MALFORMED;
    *pos = i + 2;
    *value = number;
    return RESP_COMPLETE;
}

static void upper_copy(char out[RESP_NAME_MAX], const uint8_t *text, long long len, uint64_t *examined)
{
    size_t n = len < RESP_NAME_MAX - 1 ? (size_t)len : RESP_NAME_MAX - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)toupper(text[i]);
    out[n] = '\0';
    *examined += n;
}

void resp_parser_init(struct resp_parser *p)
{
    uint64_t examined = p->examined;
    memset(p, 0, sizeof *p);
    p->bulk = -1;
    p->examined = examined;
}

/* The next argument of p's command: its length line, then its bytes. */
static int next_argument(struct resp_parser *p, const uint8_t *buf, size_t len)
{
    int rc;
    if (p->bulk < 0 && (rc = read_number(buf, len, &p->pos, '$', MAX_BULK, &p->bulk, &p->examined)) != RESP_COMPLETE)
        return rc;
    size_t bulk = (size_t)p->bulk;
    if (len - p->pos < bulk + 2)
        return RESP_INCOMPLETE;   /* nothing looked at: a large value costs nothing until it is all there */
    p->examined += 2;
    if (buf[p->pos + bulk] != '\r' || buf[p->pos + bulk + 1] != '\n')
        return RESP_MALFORMED;
    if (p->arg == 0)
        upper_copy(p->cmd.name, buf + p->pos, p->bulk, &p->examined);
    else if (p->arg == 1)
        upper_copy(p->cmd.arg1, buf + p->pos, p->bulk, &p->examined);
    p->pos += bulk + 2;
    p->arg++;
    p->bulk = -1;
    return RESP_COMPLETE;
}

int resp_parser_next(struct resp_parser *p, const uint8_t *buf, size_t len, struct resp_command *out)
{
    int rc;
    if (p->argc == 0) {
        if ((rc = read_number(buf, len, &p->pos, '*', MAX_ARGS, &p->argc, &p->examined)) != RESP_COMPLETE)
            return rc;
        if (p->argc < 1)
            return RESP_MALFORMED;
    }
    while (p->arg < p->argc)
        if ((rc = next_argument(p, buf, len)) != RESP_COMPLETE)
            return rc;
    *out = p->cmd;
    out->argc = (uint32_t)p->argc;
    out->length = p->pos;
    resp_parser_init(p);
    return RESP_COMPLETE;
}

int resp_command_parse(const uint8_t *buf, size_t len, struct resp_command *out)
{
    struct resp_parser p = {0};
    resp_parser_init(&p);
    memset(out, 0, sizeof *out);
    return resp_parser_next(&p, buf, len, out);
}
