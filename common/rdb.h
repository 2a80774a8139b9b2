/* rdb.h - what tidemark checks of a Redis RDB file: its CRC64 trailer.
 *
 * An RDB file (format version 10 for Redis 7) starts with "REDIS" and
 * four version digits and ends with the EOF opcode 0xFF followed by the
 * CRC64 (Jones polynomial, reflected, little-endian) of every byte before
 * the checksum. A zero checksum means the server has rdbchecksum off.
 * The sidecar checks it on every RDB it stores, restore on every RDB it
 * writes. */
#ifndef TM_RDB_H
#define TM_RDB_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Incremental CRC64: start with 0. */
uint64_t rdb_crc64(uint64_t crc, const void *data, size_t len);

/* Streaming check of one RDB: feed every byte in order, then finish. */
struct rdb_check {
    uint64_t crc;              /* over the bytes before the last 8 */
    uint64_t bytes;
    uint8_t head[9];           /* the first 9 bytes ("REDIS0010") */
    uint8_t tail[8];           /* the last 8 bytes seen, oldest first */
};

void rdb_check_init(struct rdb_check *c);
void rdb_check_update(struct rdb_check *c, const uint8_t *data, size_t len);
/* 0 when the file is an RDB whose trailer matches (or is zero: *unchecked
 * set); -1 with err naming what is wrong. */
int rdb_check_finish(const struct rdb_check *c, int *unchecked, struct tm_error *err);

#endif
