/* resp.c - the RESP parsing the Redis capture needs (resp.h).
 *
 * A command is "*<argc>\r\n" then argc times "$<len>\r\n<len bytes>\r\n".
 * Nothing is copied: the parser only measures, and notes the first two
 * arguments in upper case so the capture can tell MULTI, EXEC, PING,
 * SELECT and REPLCONF GETACK apart. Numbers are parsed with explicit
 * bounds so that no input can overflow a length. */
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

/* "<prefix><digits>\r\n" at buf + *pos, value at most max. */
static int read_number(const uint8_t *buf, size_t len, size_t *pos, char prefix, long long max,
                       long long *value)
{
    if (*pos >= len)
        return RESP_INCOMPLETE;
    if (buf[*pos] != (uint8_t)prefix)
        return RESP_MALFORMED;
    long long number = 0;
    size_t i = *pos + 1, digits = 0;
    for (; i < len && isdigit(buf[i]); i++, digits++) {
        number = number * 10 + (buf[i] - '0');
        if (number > max)
            return RESP_MALFORMED;
    }
    if (i + 1 >= len)
        return digits > 20 ? RESP_MALFORMED : RESP_INCOMPLETE;
    if (!digits || buf[i] != '\r' || buf[i + 1] != '\n')
        return RESP_MALFORMED;
    *pos = i + 2;
    *value = number;
    return RESP_COMPLETE;
}

static void upper_copy(char out[RESP_NAME_MAX], const uint8_t *text, long long len)
{
    size_t n = len < RESP_NAME_MAX - 1 ? (size_t)len : RESP_NAME_MAX - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)toupper(text[i]);
    out[n] = '\0';
}

int resp_command_parse(const uint8_t *buf, size_t len, struct resp_command *out)
{
    memset(out, 0, sizeof *out);
    size_t pos = 0;
    long long argc;
    int rc = read_number(buf, len, &pos, '*', MAX_ARGS, &argc);
    if (rc != RESP_COMPLETE)
        return rc;
    if (argc < 1)
        return RESP_MALFORMED;
    for (long long arg = 0; arg < argc; arg++) {
        long long bulk;
        if ((rc = read_number(buf, len, &pos, '$', MAX_BULK, &bulk)) != RESP_COMPLETE)
            return rc;
        if (len - pos < (size_t)bulk + 2)
            return RESP_INCOMPLETE;
        if (buf[pos + (size_t)bulk] != '\r' || buf[pos + (size_t)bulk + 1] != '\n')
            return RESP_MALFORMED;
        if (arg == 0)
            upper_copy(out->name, buf + pos, bulk);
        else if (arg == 1)
            upper_copy(out->arg1, buf + pos, bulk);
        pos += (size_t)bulk + 2;
    }
    out->argc = (uint32_t)argc;
    out->length = pos;
    return RESP_COMPLETE;
}
