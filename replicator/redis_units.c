/* redis_units.c - cutting the replication stream into units
 * (redis_units.h).
 *
 * The cutter's place is `scanned`, the end of the last complete command
 * in the caller's buffer; the command after it is measured by the RESP
 * parser, which keeps its own place inside the command. A MULTI opens a
 * block at its first byte (unit_start); commands are then measured but
 * not returned until EXEC closes it, and the whole block is one unit. So
 * each byte is measured once however the input is cut into reads, and
 * release never hands back bytes of an open block: after a reconnection
 * the master sends an unfinished block again.
 *
 * Size: the archive's reader takes units of at most ARCHIVE_REDIS_UNIT_MAX
 * bytes (1 GiB, common/archive.c). A block cannot be split without
 * splitting its transaction, so a unit under way past max_unit is
 * refused as soon as it gets there (TOO_LARGE), before it is complete:
 * the capture then ends its generation where the last complete unit
 * ends, and starts a new one from a full resynchronisation (redis.c). */
#include "redis_units.h"

#include <string.h>

void redis_units_init(struct redis_units *u, size_t max_unit)
{
    memset(u, 0, sizeof *u);
    resp_parser_init(&u->parser);
    u->max_unit = max_unit;
}

int redis_units_next(struct redis_units *u, const uint8_t *buf, size_t len, struct redis_unit *out)
{
    for (;;) {
        size_t command_start = u->scanned;
        size_t unit_begin = u->in_multi ? u->unit_start : command_start;
        struct resp_command cmd;
        int got = resp_parser_next(&u->parser, buf + command_start, len - command_start, &cmd);
        if (got == RESP_MALFORMED)
            return REDIS_UNITS_MALFORMED;
        if (got == RESP_INCOMPLETE)
            return len - unit_begin > u->max_unit ? REDIS_UNITS_TOO_LARGE : REDIS_UNITS_MORE;
        u->scanned += cmd.length;
        if (u->scanned - unit_begin > u->max_unit)
            return REDIS_UNITS_TOO_LARGE;
        if (!u->in_multi && strcmp(cmd.name, "MULTI") == 0) {
            u->in_multi = 1;
            u->unit_start = command_start;
            continue;
        }
        if (u->in_multi && strcmp(cmd.name, "EXEC") != 0)
            continue;
        u->in_multi = 0;
        *out = (struct redis_unit){.start = unit_begin, .length = u->scanned - unit_begin};
        if (unit_begin == command_start && (strcmp(cmd.name, "PING") == 0 || strcmp(cmd.name, "REPLCONF") == 0)) {
            out->getack = strcmp(cmd.arg1, "GETACK") == 0;
            return REDIS_UNIT_MASTER;
        }
        return REDIS_UNIT_WRITE;
    }
}

size_t redis_units_release(struct redis_units *u)
{
    size_t done = u->in_multi ? u->unit_start : u->scanned;
    u->scanned -= done;
    u->unit_start -= u->in_multi ? done : u->unit_start;
    return done;
}

uint64_t redis_units_examined(const struct redis_units *u)
{
    return u->parser.examined;
}
