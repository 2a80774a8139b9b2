/* test_textsafe.c - control characters in names shown as \xHH
 * (common/textsafe.h), and drill records written back as JSON from their
 * parsed fields only (common/drill_record.h). */
#include "harness.h"

#include "../../common/drill_record.h"
#include "../../common/textsafe.h"

#include <stdlib.h>

static void test_control_characters_are_escaped(void)
{
    char out[256];
    ASSERT_STR_EQ(textsafe("tenants/a b.db", out, sizeof out), "tenants/a b.db");
    ASSERT_STR_EQ(textsafe("x\x1b[2J\ny\x7f", out, sizeof out), "x\\x1b[2J\\x0ay\\x7f");
    ASSERT_STR_EQ(textsafe("caf\xc3\xa9 \xc2\x9b" "1m", out, sizeof out), "caf\xc3\xa9 \\xc2\\x9b1m");
    /* cut to fit, never in the middle of an escape */
    ASSERT_STR_EQ(textsafe("ab\x1b", out, 6), "ab");
    ASSERT_STR_EQ(textsafe("ab\x1b", out, 7), "ab\\x1b");
}

static void test_print_escapes_long_text(void)
{
    char text[300], *printed = NULL;
    size_t len = 0;
    for (size_t i = 0; i < sizeof text - 1; i++)
        text[i] = i % 3 == 0 ? '\n' : 'a';
    text[sizeof text - 1] = '\0';
    FILE *fp = open_memstream(&printed, &len);
    textsafe_print(fp, text);
    fclose(fp);
    ASSERT_EQ(len, 100 * 4 + 199);
    ASSERT_TRUE(strchr(printed, '\n') == NULL);
    free(printed);
}

/* A planted record that closes its object and opens another (a forged
 * database entry) comes out as one object of the known fields. */
static void test_drill_json_is_rebuilt_not_echoed(void)
{
    const char *planted = "{\"time\": \"2026-11-24T04:00:01.234Z\", \"db\": \"app\", \"ok\": true, \"rto_ms\": 520,"
                          " \"error\": \"a\\u001b\\ud800\\\"b\"}, {\"database\": \"forged\", \"replica\": \"x\"}";
    struct drill_summary s;
    struct tm_error err;
    ASSERT_EQ(drill_record_parse(planted, &s, &err), 0);
    char *json = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&json, &len);
    drill_summary_write_json(&s, fp);
    fclose(fp);
    ASSERT_STR_EQ(json, "{\"time\": \"2026-11-24T04:00:01.234Z\", \"ok\": true, \"rto_ms\": 520, \"rpo_ms\": null, "
                        "\"error\": \"a\\u001b?\\\"b\"}");
    free(json);
    /* invalid UTF-8 in a string is replaced, so the JSON stays valid */
    ASSERT_EQ(drill_record_parse("{\"time\": \"\xff\xc3(\", \"ok\": false}", &s, &err), 0);
    ASSERT_STR_EQ(s.time, "?" "?(");
}

int main(void)
{
    static const struct test_case cases[] = {
        {"textsafe: C0, DEL and C1 control characters shown as \\xHH, the rest kept",
         test_control_characters_are_escaped},
        {"textsafe: print escapes text longer than its chunk", test_print_escapes_long_text},
        {"drill record: JSON rebuilt from parsed fields, a planted extra object dropped",
         test_drill_json_is_rebuilt_not_echoed},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
