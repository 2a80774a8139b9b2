/* fuzz_resp.c - libFuzzer target for the replication stream parser
 * (replicator/resp.c) and the RDB check (common/rdb.c): any bytes a
 * hostile or broken "master" sends. Each command measured must lie
 * within the input and advance; no input may crash or overflow. */
#include "../../common/rdb.h"
#include "../../replicator/resp.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
