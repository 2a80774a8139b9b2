/* test_resp.c - the RESP measuring the Redis capture relies on
 * (replicator/resp.c) and the RDB CRC64 check (common/rdb.c): complete,
 * incomplete at every cut, malformed input; the CRC's reference vector,
 * streaming in any chunking, a damaged byte and a zero (unchecked)
 * trailer. */
#include "harness.h"

#include "../../common/rdb.h"
#include "../../replicator/resp.h"

#include <stdlib.h>

static void test_commands_measured_and_named(void)
{
    const char *set = "*3\r\n$3\r\nset\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    const char *getack = "*3\r\n$8\r\nREPLCONF\r\n$6\r\ngetack\r\n$1\r\n*\r\n";
    struct resp_command cmd;
    char both[256];
    snprintf(both, sizeof both, "%s%s", set, getack);
    ASSERT_EQ(resp_command_parse((const uint8_t *)both, strlen(both), &cmd), RESP_COMPLETE);
    ASSERT_EQ(cmd.length, strlen(set));
    ASSERT_EQ(cmd.argc, 3);
    ASSERT_TRUE(strcmp(cmd.name, "SET") == 0 && strcmp(cmd.arg1, "KEY") == 0);
    ASSERT_EQ(resp_command_parse((const uint8_t *)both + cmd.length, strlen(getack), &cmd), RESP_COMPLETE);
    ASSERT_TRUE(strcmp(cmd.name, "REPLCONF") == 0 && strcmp(cmd.arg1, "GETACK") == 0);
    /* every proper prefix is incomplete, never complete or malformed */
    for (size_t cut = 0; cut < strlen(set); cut++)
        ASSERT_EQ(resp_command_parse((const uint8_t *)set, cut, &cmd), RESP_INCOMPLETE);
    /* binary values with CRLF inside are measured by length */
    const char binary[] = "*2\r\n$3\r\nGET\r\n$4\r\n\r\n\r\n\r\n";
    ASSERT_EQ(resp_command_parse((const uint8_t *)binary, sizeof binary - 1, &cmd), RESP_COMPLETE);
    ASSERT_EQ(cmd.length, sizeof binary - 1);
}

static void test_malformed_input_is_refused(void)
{
    static const char *bad[] = {
        "PING\r\n",                            /* inline, not an array */
        "*0\r\n",                              /* no command */
        "*1\r\n:5\r\n",                        /* not a bulk string */
        "*1\r\n$3\r\nabcX\n",                  /* no CRLF after the bulk */
        "*1\r\n$-1\r\n",                       /* negative length */
        "*99999999999\r\n",                    /* over the argument limit */
        "*1\r\n$999999999999\r\n",             /* over 512 MB */
        "*1x\r\n",                             /* junk in a number */
        "*1\r\n$000000000000000000003\r\nabc\r\n",   /* over 20 digits: refused however the line is cut */
    };
    struct resp_command cmd;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ASSERT_EQ(resp_command_parse((const uint8_t *)bad[i], strlen(bad[i]), &cmd), RESP_MALFORMED);
    size_t line_len, consumed;
    ASSERT_EQ(resp_line((const uint8_t *)"+FULLRESYNC abc 14\r\nREDIS", 25, &line_len, &consumed), RESP_COMPLETE);
    ASSERT_EQ(line_len, 18);
    ASSERT_EQ(consumed, 20);
    ASSERT_EQ(resp_line((const uint8_t *)"+OK\r", 4, &line_len, &consumed), RESP_INCOMPLETE);
}

/* A small RDB-shaped file: header, body, 0xFF, CRC64 little-endian. */
static size_t make_rdb(uint8_t *out, size_t body_len, int zero_crc)
{
    memcpy(out, "REDIS0010", 9);
    for (size_t i = 0; i < body_len; i++)
        out[9 + i] = (uint8_t)(i * 31 + 7);
    out[9 + body_len] = 0xff;
    size_t len = 10 + body_len;
    uint64_t crc = zero_crc ? 0 : rdb_crc64(0, out, len);
    for (int i = 0; i < 8; i++)
        out[len + (size_t)i] = (uint8_t)(crc >> (8 * i));
    return len + 8;
}

static void test_rdb_crc64(void)
{
    ASSERT_TRUE(rdb_crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9caULL);
    uint8_t file[1100];
    size_t len = make_rdb(file, 1000, 0);
    /* any chunking gives the same verdict */
    for (size_t chunk = 1; chunk <= 64; chunk = chunk * 3 + 1) {
        struct rdb_check check;
        rdb_check_init(&check);
        for (size_t at = 0; at < len; at += chunk)
            rdb_check_update(&check, file + at, at + chunk <= len ? chunk : len - at);
        int unchecked;
        struct tm_error err;
        ASSERT_EQ(rdb_check_finish(&check, &unchecked, &err), 0);
        ASSERT_EQ(unchecked, 0);
    }
    file[500] ^= 1;
    struct rdb_check check;
    rdb_check_init(&check);
    rdb_check_update(&check, file, len);
    int unchecked;
    struct tm_error err;
    ASSERT_EQ(rdb_check_finish(&check, &unchecked, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "checksum mismatch");
    len = make_rdb(file, 100, 1);
    rdb_check_init(&check);
    rdb_check_update(&check, file, len);
    ASSERT_EQ(rdb_check_finish(&check, &unchecked, &err), 0);
    ASSERT_EQ(unchecked, 1);
    rdb_check_init(&check);
    rdb_check_update(&check, (const uint8_t *)"NOTREDIS-at-all-really", 22);
    ASSERT_EQ(rdb_check_finish(&check, &unchecked, &err), -1);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"resp: commands measured exactly and named; every prefix incomplete", test_commands_measured_and_named},
        {"resp: malformed input refused; handshake lines", test_malformed_input_is_refused},
        {"rdb: CRC64 reference vector, any chunking, damage and unchecked trailers", test_rdb_crc64},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
