/* harness.h - a tiny test harness: each test file defines test functions
 * and a table, main() runs them and prints TAP lines ("ok 3 - name").
 * Assertions print both values and the line, then fail the test.
 *
 * Each test runs in a process of its own (forked from the runner, as in
 * libuv's test runner), with a fresh temporary directory and a timeout:
 * a test that crashes, exits, leaks under LeakSanitizer or runs past the
 * timeout is reported as "not ok" with the cause on a "#" line, and the
 * following tests still run. Child processes a test leaves behind are
 * killed with it (each test is a process group).
 *
 * Command line of every test binary:
 *   test_x              run every test
 *   test_x NAME...      run only these tests: a whole name, or a part of
 *                       names (exit 2 when nothing matches)
 *   test_x --list       print the names
 * Environment: HARNESS_TIMEOUT=SECONDS (default 10) per test;
 * HARNESS_FORK=0 runs the tests in the runner's process (for a debugger). */
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
#define ASSERT_STR_EQ(a, b) do { const char *_a = (a), *_b = (b); if (strcmp(_a, _b) != 0) { \
    fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, _a, _b); \
    harness_failed = 1; return; } } while (0)

/* After calling a helper that asserts: stop the test if it failed. */
#define ASSERT_PASSING() do { if (harness_failed) return; } while (0)

/* Runs the tests the command line selects (all by default), each in its
 * own process; returns the process exit code: 0 all passed, 1 some
 * failed, 2 bad command line. */
int harness_run(const struct test_case *cases, size_t count);

/* For a binary whose fixture (a server, say) could not be set up: reports
 * every selected test as "not ok" with `why`, and returns 1. */
int harness_fail_all(const struct test_case *cases, size_t count, const char *why);

/* The path of this test binary, for tests that run it again in another
 * mode or find files beside it (argv[0] made absolute: /proc/self/exe
 * would name valgrind's tool under valgrind). */
const char *harness_program(void);

/* A fresh empty directory for the running test's files (removed when the
 * test ends, whatever its outcome). */
const char *harness_tmpdir(void);

#endif
