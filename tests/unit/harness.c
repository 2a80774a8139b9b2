/* harness.c - runs a table of tests, TAP output (see harness.h). */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

int harness_failed;

const char *harness_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/tidemark-unit-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return dir;
}

int harness_run(const struct test_case *cases, size_t count)
{
    int failures = 0;
    printf("1..%zu\n", count);
    for (size_t i = 0; i < count; i++) {
        harness_failed = 0;
        cases[i].run();
        printf("%sok %zu - %s\n", harness_failed ? "not " : "", i + 1, cases[i].name);
        fflush(stdout);
        failures += harness_failed;
    }
    if (harness_tmpdir()[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", harness_tmpdir());
        if (system(cmd) != 0)
            fprintf(stderr, "cannot clean %s\n", harness_tmpdir());
    }
    return failures ? 1 : 0;
}
