/* test_cron.c - cron expressions: parsing errors name the field; next
 * fire times in UTC across days, months, leap years and day-of-week. */
#include "harness.h"

#include "../../common/clock.h"
#include "../../common/cron.h"

static int64_t at(const char *text)
{
    int64_t ms = 0;
    struct tm_error err;
    clock_parse_time(text, &ms, &err);
    return ms;
}

/* The next fire after `from`, formatted. */
static const char *next_after(const char *expr, const char *from)
{
    static char out[64];
    static struct tm_error err;
    struct cron c;
    if (cron_parse(expr, &c, &err) != 0)
        return err.msg;
    int64_t next = cron_next(&c, at(from));
    if (next < 0)
        return "never";
    clock_format_ms(next, out, sizeof out);
    return out;
}

#define ASSERT_NEXT(expr, from, expected) ASSERT_STR_CONTAINS(next_after(expr, from), expected)

static void test_daily_and_steps(void)
{
    ASSERT_NEXT("0 3 * * *", "2026-11-24T01:00:00Z", "2026-11-24T03:00:00.000Z");
    ASSERT_NEXT("0 3 * * *", "2026-11-24T03:00:00Z", "2026-11-25T03:00:00.000Z");   /* strictly after */
    ASSERT_NEXT("0 3 * * *", "2026-12-31T23:59:30Z", "2027-01-01T03:00:00.000Z");
    ASSERT_NEXT("*/15 * * * *", "2026-11-24T01:07:12Z", "2026-11-24T01:15:00.000Z");
    ASSERT_NEXT("5/20 * * * *", "2026-11-24T01:26:00Z", "2026-11-24T01:45:00.000Z");
    ASSERT_NEXT("0 */6 * * *", "2026-11-24T07:00:00Z", "2026-11-24T12:00:00.000Z");
    ASSERT_NEXT("30 8-10,20 * * *", "2026-11-24T10:31:00Z", "2026-11-24T20:30:00.000Z");
    ASSERT_NEXT("* * * * *", "2026-11-24T01:00:59.999Z", "2026-11-24T01:01:00.000Z");
}

static void test_months_weekdays_leap_years(void)
{
    ASSERT_NEXT("0 4 1 * *", "2026-11-24T00:00:00Z", "2026-12-01T04:00:00.000Z");
    ASSERT_NEXT("0 0 29 feb *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00.000Z");
    ASSERT_NEXT("0 0 * * 0", "2026-11-24T00:00:00Z", "2026-11-29T00:00:00.000Z");     /* a Sunday */
    ASSERT_NEXT("0 0 * * 7", "2026-11-24T00:00:00Z", "2026-11-29T00:00:00.000Z");
    ASSERT_NEXT("0 0 * * mon-fri", "2026-11-27T12:00:00Z", "2026-11-30T00:00:00.000Z");
    /* both day fields restricted: either matches (13th, or a Friday) */
    ASSERT_NEXT("0 0 13 * fri", "2026-11-24T00:00:00Z", "2026-11-27T00:00:00.000Z");
    ASSERT_NEXT("0 0 31 2 *", "2026-01-01T00:00:00Z", "never");
    ASSERT_NEXT("0 12 31 * *", "2026-11-24T00:00:00Z", "2026-12-31T12:00:00.000Z");
}

static void test_errors_name_the_field(void)
{
    ASSERT_STR_CONTAINS(next_after("0 3 * *", "2026-11-24T00:00:00Z"), "has 4 fields, expected 5");
    ASSERT_STR_CONTAINS(next_after("61 3 * * *", "2026-11-24T00:00:00Z"), "invalid minute field '61'");
    ASSERT_STR_CONTAINS(next_after("0 24 * * *", "2026-11-24T00:00:00Z"), "invalid hour field '24'");
    ASSERT_STR_CONTAINS(next_after("0 3 0 * *", "2026-11-24T00:00:00Z"), "invalid day of month field '0'");
    ASSERT_STR_CONTAINS(next_after("0 3 * 13 *", "2026-11-24T00:00:00Z"), "invalid month field '13'");
    ASSERT_STR_CONTAINS(next_after("0 3 * * 8", "2026-11-24T00:00:00Z"), "invalid day of week field '8'");
    ASSERT_STR_CONTAINS(next_after("0 3 * * fry", "2026-11-24T00:00:00Z"), "invalid day of week field 'fry'");
    ASSERT_STR_CONTAINS(next_after("*/0 3 * * *", "2026-11-24T00:00:00Z"), "invalid minute field '*/0'");
    ASSERT_STR_CONTAINS(next_after("5-2 3 * * *", "2026-11-24T00:00:00Z"), "invalid minute field '5-2'");
}

static void test_spread_offsets(void)
{
    struct cron c;
    struct tm_error err;
    ASSERT_EQ(cron_parse("0 3 * * *", &c, &err), 0);
    ASSERT_EQ(cron_offset_ms("tenants/a.db", 0), 0);
    int64_t hour = 3600 * 1000, base = 1795478400000LL;   /* 2026-11-24T00:00:00Z */
    int buckets[6] = {0};
    for (int n = 0; n < 600; n++) {
        char name[32];
        snprintf(name, sizeof name, "tenants/t%03d.db", n);
        int64_t offset = cron_offset_ms(name, hour);
        ASSERT_TRUE(offset >= 0 && offset < hour);
        ASSERT_EQ(cron_offset_ms(name, hour), offset);   /* fixed by the name */
        buckets[offset / (10 * 60 * 1000)]++;
        int64_t next = cron_next_offset(&c, base, offset);
        ASSERT_EQ(next, base + 3 * hour + offset);        /* 03:00 plus its share */
        ASSERT_EQ(cron_next_offset(&c, next, offset), next + 24 * hour);
        ASSERT_EQ(cron_next_offset(&c, next - 1, offset), next);
    }
    for (int b = 0; b < 6; b++)   /* spread over the hour, not bunched */
        ASSERT_TRUE(buckets[b] > 60 && buckets[b] < 140);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"cron: spread offsets, fixed per name, spread over the window", test_spread_offsets},
        {"cron: daily, steps, ranges and lists", test_daily_and_steps},
        {"cron: months, weekdays, leap years, impossible dates", test_months_weekdays_leap_years},
        {"cron: errors name the field", test_errors_name_the_field},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
