/* fuzz_resp.c - libFuzzer target for the replication stream parser
 * (replicator/resp.c) and the RDB check (common/rdb.c): any bytes a
 * hostile or broken "master" sends. Each command measured must lie
 * within the input and advance; no input may crash or overflow. The
 * stream cut into units (replicator/redis_units.c) in pieces of a size
 * the input chooses must give exactly the units of the whole input cut
 * at once: resuming never changes a boundary. */
#include "../../common/rdb.h"
#include "../../replicator/redis_units.h"
#include "../../replicator/resp.h"

#include <stdint.h>
#include <stdlib.h>

#define UNITS_MAX 64

/* Units of data[0..size) fed `piece` bytes at a time (offsets in the whole
 * input); their count, and in *outcome the last kind seen. */
static size_t cut_units(const uint8_t *data, size_t size, size_t piece, uint64_t starts[UNITS_MAX],
                        uint64_t lengths[UNITS_MAX], int *outcome)
{
    struct redis_units u;
    redis_units_init(&u, 4096);
    size_t count = 0, dropped = 0, len = 0;
    *outcome = REDIS_UNITS_MORE;
    for (size_t at = 0; at < size && *outcome >= 0; at += piece) {
        len += size - at < piece ? size - at : piece;
        struct redis_unit unit;
        int kind;
        while ((kind = redis_units_next(&u, data + dropped, len, &unit)) > 0) {
            if (unit.start + unit.length > len)
                abort();
            if (count < UNITS_MAX) {
                starts[count] = dropped + unit.start;
                lengths[count] = unit.length;
            }
            count++;
        }
        *outcome = kind;
        if (kind < 0)
            break;
        size_t done = redis_units_release(&u);
        if (done > len)
            abort();
        dropped += done;
        len -= done;
    }
    return count;
}

static void check_units_resume(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t piece = 1 + data[0] % 16;
    uint64_t whole_starts[UNITS_MAX], whole_lengths[UNITS_MAX], starts[UNITS_MAX], lengths[UNITS_MAX];
    int whole_outcome, outcome;
    size_t whole = cut_units(data + 1, size - 1, size - 1, whole_starts, whole_lengths, &whole_outcome);
    size_t pieces = cut_units(data + 1, size - 1, piece, starts, lengths, &outcome);
    /* the same units, up to where the whole input failed (a cut input may
     * fail on a prefix the whole one had already refused) */
    if (whole_outcome >= 0 && (outcome != whole_outcome || pieces != whole))
        abort();
    size_t common = whole < pieces ? whole : pieces;
    for (size_t i = 0; i < common && i < UNITS_MAX; i++)
        if (starts[i] != whole_starts[i] || lengths[i] != whole_lengths[i])
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_units_resume(data, size);
    size_t pos = 0;
    struct resp_command cmd;
    while (pos < size && resp_command_parse(data + pos, size - pos, &cmd) == RESP_COMPLETE) {
        if (cmd.length == 0 || cmd.length > size - pos)
            abort();
        pos += cmd.length;
    }
    size_t line_len, consumed;
    if (resp_line(data, size, &line_len, &consumed) == RESP_COMPLETE && (consumed > size || line_len + 2 != consumed))
        abort();
    struct rdb_check check;
    int unchecked;
    struct tm_error err;
    rdb_check_init(&check);
    rdb_check_update(&check, data, size / 2);
    rdb_check_update(&check, data + size / 2, size - size / 2);
    rdb_check_finish(&check, &unchecked, &err);
    return 0;
}
