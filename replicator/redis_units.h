/* redis_units.h - a replication stream cut into units: the commands the
 * Redis capture records, each alone or, for a MULTI ... EXEC block, all
 * of the block as one unit (a restore point never splits a transaction),
 * and the master's own PING and REPLCONF, which count toward the
 * replication offset but are not recorded.
 *
 * The cutter keeps its place in the caller's input buffer between calls
 * (resp.h's parser does the same inside a command): an open MULTI block
 * that arrives over many reads is measured once, in time linear in its
 * size. The caller appends what it reads to one buffer, takes the units
 * redis_units_next finds there, then drops the bytes
 * redis_units_release says are done with (an open block stays, whole,
 * until its EXEC). */
#ifndef TM_REDIS_UNITS_H
#define TM_REDIS_UNITS_H

#include "resp.h"

#include <stddef.h>
#include <stdint.h>

struct redis_units {
    struct resp_parser parser;           /* the command being measured */
    size_t scanned;                      /* input measured: complete commands */
    size_t unit_start;                   /* the open MULTI block's first byte */
    int in_multi;
    size_t max_unit;                     /* a longer unit is refused (the archive's reader limit) */
};

enum redis_unit_kind {
    REDIS_UNITS_MORE = 0,                /* no complete unit: read more */
    REDIS_UNIT_WRITE = 1,                /* a command or a MULTI ... EXEC block: recorded */
    REDIS_UNIT_MASTER = 2,               /* PING or REPLCONF of the master: counted, not recorded */
    REDIS_UNITS_MALFORMED = -1,          /* not a replication stream */
    REDIS_UNITS_TOO_LARGE = -2,          /* the unit under way is over max_unit bytes already */
};

struct redis_unit {
    size_t start, length;                /* where it is in the input buffer */
    int getack;                          /* REPLCONF GETACK: the master asks for an ACK */
};

/* Starts at the beginning of a stream (and after a reconnection). */
void redis_units_init(struct redis_units *u, size_t max_unit);
/* The next unit in buf[0..len), the caller's input buffer (the same
 * bytes as before, more at the end, less what was released): one of
 * enum redis_unit_kind, *out filled for REDIS_UNIT_WRITE and
 * REDIS_UNIT_MASTER. After MALFORMED or TOO_LARGE, initialise again. */
int redis_units_next(struct redis_units *u, const uint8_t *buf, size_t len, struct redis_unit *out);
/* The bytes at the start of the input that belong to units already
 * returned: the caller must drop exactly these now (the cutter's place
 * moves with them). An open MULTI block is never released. */
size_t redis_units_release(struct redis_units *u);
/* Bytes looked at since redis_units_init (resp.h: linear work). */
uint64_t redis_units_examined(const struct redis_units *u);

#endif
