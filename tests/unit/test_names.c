/* test_names.c - database names escaped into one key component and back. */
#include "harness.h"

#include "../../common/names.h"

static void test_escape_round_trip(void)
{
    char key[256], back[256];
    /* configured names are their own key */
    ASSERT_EQ(names_escape("app-1.prod_db", key, sizeof key), 0);
    ASSERT_TRUE(strcmp(key, "app-1.prod_db") == 0);
    ASSERT_EQ(names_escape("tenants/eu/a b%c.db", key, sizeof key), 0);
    ASSERT_TRUE(strcmp(key, "tenants%2Feu%2Fa%20b%25c.db") == 0);
    ASSERT_EQ(names_unescape(key, back, sizeof back), 0);
    ASSERT_TRUE(strcmp(back, "tenants/eu/a b%c.db") == 0);
    /* every byte a file name can hold, one at a time */
    for (int c = 1; c < 256; c++) {
        char name[4] = {'x', (char)c, 'y', 0};
        ASSERT_EQ(names_escape(name, key, sizeof key), 0);
        ASSERT_TRUE(strchr(key, '/') == NULL);
        ASSERT_EQ(names_unescape(key, back, sizeof back), 0);
        ASSERT_TRUE(strcmp(back, name) == 0);
    }
    /* too small a buffer is an error, never a cut name */
    ASSERT_EQ(names_escape("tenants/a", key, 9), -1);
}

static void test_unescape_refuses_what_escape_never_writes(void)
{
    char out[64];
    ASSERT_EQ(names_unescape("a%2f", out, sizeof out), -1);     /* lower-case hex */
    ASSERT_EQ(names_unescape("a%41", out, sizeof out), -1);     /* 'A' escaped */
    ASSERT_EQ(names_unescape("a%2", out, sizeof out), -1);      /* cut */
    ASSERT_EQ(names_unescape("a%00", out, sizeof out), -1);
    ASSERT_EQ(names_unescape("a b", out, sizeof out), -1);      /* a raw space */
    ASSERT_EQ(names_unescape(".hidden", out, sizeof out), -1);
    ASSERT_EQ(names_unescape("", out, sizeof out), -1);
    ASSERT_TRUE(names_is_glob("tenants/*") && names_is_glob("a?") && names_is_glob("[ab]"));
    ASSERT_TRUE(!names_is_glob("tenants/a.db"));
}

int main(void)
{
    static const struct test_case cases[] = {
        {"names: escape and unescape round trip, every byte", test_escape_round_trip},
        {"names: unescape refuses components escape never writes", test_unescape_refuses_what_escape_never_writes},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
