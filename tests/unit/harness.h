/* harness.h - a tiny test harness: each test file defines test functions
 * and a table, main() runs them and prints TAP lines ("ok 3 - name").
 * Assertions print both values and the line, then fail the test. */
#ifndef TM_HARNESS_H
#define TM_HARNESS_H

#include <stdio.h>
#include <string.h>

struct test_case {
    const char *name;
    void (*run)(void);
};

extern int harness_failed;

#define ASSERT_TRUE(cond) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
    harness_failed = 1; return; } } while (0)
#define ASSERT_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { \
    fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, _a, #b, _b); \
    harness_failed = 1; return; } } while (0)
#define ASSERT_STR_CONTAINS(haystack, needle) do { if (!strstr((haystack), (needle))) { \
    fprintf(stderr, "  %s:%d: '%s' does not contain '%s'\n", __FILE__, __LINE__, (haystack), (needle)); \
    harness_failed = 1; return; } } while (0)

/* Runs the table; returns the process exit code. */
int harness_run(const struct test_case *cases, size_t count);

/* A fresh empty directory for this process's test files. */
const char *harness_tmpdir(void);

#endif
