/* rdb.c - the RDB CRC64 check (rdb.h).
 *
 * The CRC is Redis's crc64: the Jones polynomial 0xad93d23594c935a9 in
 * reflected form, initial value 0, no final xor; "123456789" gives
 * 0xe9c6d914c4b8d9ca. A byte-at-a-time table (built once, from the
 * reflected polynomial) is fast enough: the RDB also goes through zstd
 * and the cipher. The last 8 bytes of the file are the checksum itself,
 * so the check keeps them aside until the end. */
#include "rdb.h"

#include <string.h>

#define JONES_REFLECTED 0x95ac9329ac4bc9b5ULL

static uint64_t table[256];
static int table_ready;

static void build_table(void)
{
    for (unsigned i = 0; i < 256; i++) {
        uint64_t crc = i;
        for (int bit = 0; bit < 8; bit++)
            crc = crc & 1 ? (crc >> 1) ^ JONES_REFLECTED : crc >> 1;
        table[i] = crc;
    }
    table_ready = 1;
}

uint64_t rdb_crc64(uint64_t crc, const void *data, size_t len)
{
    if (!table_ready)
        build_table();
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        crc = table[(uint8_t)(crc ^ p[i])] ^ (crc >> 8);
    return crc;
}

void rdb_check_init(struct rdb_check *c)
{
    memset(c, 0, sizeof *c);
}

void rdb_check_update(struct rdb_check *c, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len && c->bytes + i < sizeof c->head; i++)
        c->head[c->bytes + i] = data[i];
    /* bytes leaving the 8-byte tail window enter the CRC */
    size_t held = c->bytes < 8 ? (size_t)c->bytes : 8;
    if (len >= 8) {
        c->crc = rdb_crc64(c->crc, c->tail, held);
        c->crc = rdb_crc64(c->crc, data, len - 8);
        memcpy(c->tail, data + len - 8, 8);
    } else {
        size_t overflow = held + len > 8 ? held + len - 8 : 0;
        c->crc = rdb_crc64(c->crc, c->tail, overflow);
        memmove(c->tail, c->tail + overflow, held - overflow);
        memcpy(c->tail + held - overflow, data, len);
    }
    c->bytes += len;
}

int rdb_check_finish(const struct rdb_check *c, int *unchecked, struct tm_error *err)
{
    *unchecked = 0;
    if (c->bytes < 18 || memcmp(c->head, "REDIS", 5) != 0)
        return tm_error_set(err, "not an RDB file (%llu bytes, no REDIS header)", (unsigned long long)c->bytes);
    uint64_t stored = 0;
    for (int i = 7; i >= 0; i--)
        stored = stored << 8 | c->tail[i];
    if (stored == 0) {
        *unchecked = 1;
        return 0;
    }
    if (stored != c->crc)
        return tm_error_set(err, "RDB checksum mismatch: the file says %016llx, its bytes give %016llx",
                            (unsigned long long)stored, (unsigned long long)c->crc);
    return 0;
}
