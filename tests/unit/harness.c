/* harness.c - runs a table of tests, one process per test, TAP output
 * (see harness.h).
 *
 * The runner forks a child per test, with SIGCHLD blocked in the runner
 * so that sigtimedwait() can wait for the child's end and the timeout at
 * once (no signal handler, no polling). The child makes itself a process
 * group, so that on a timeout, and after every test, killing the group
 * also ends whatever the test spawned and left running. The child leaves
 * with exit() rather than _exit(): under AddressSanitizer, LeakSanitizer
 * then checks that one test for leaks and fails it with its exit code.
 *
 * The test's temporary directory is made by the runner before the fork
 * and removed by it after the child ended, so that a crashed test leaves
 * nothing behind either. */
#include "harness.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_SECONDS 10.0
/* The child's exit status when an assertion failed (the sanitizers exit
 * with 1, a test might exit() with anything small). */
#define EXIT_ASSERTION_FAILED 99

int harness_failed;

/* The running test's directory; empty between tests. */
static char test_dir[256];

/* The command line, saved before main() runs: glibc passes (argc, argv,
 * envp) to the constructors of the executable, so that every test binary
 * keeps its plain `return harness_run(cases, n)`. */
static int saved_argc;
static char **saved_argv;

__attribute__((constructor)) static void save_command_line(int argc, char **argv, char **envp)
{
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

const char *harness_program(void)
{
    static char path[PATH_MAX];
    if (!path[0] && (saved_argc < 1 || !strchr(saved_argv[0], '/') || !realpath(saved_argv[0], path)))
        snprintf(path, sizeof path, "/proc/self/exe");
    return path;
}

const char *harness_tmpdir(void)
{
    if (!test_dir[0]) {
        snprintf(test_dir, sizeof test_dir, "/tmp/tidemark-unit-XXXXXX");
        if (!mkdtemp(test_dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return test_dir;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "# cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void remove_tmpdir(void)
{
    if (test_dir[0])
        nftw(test_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    test_dir[0] = '\0';
}

static double timeout_seconds(void)
{
    const char *text = getenv("HARNESS_TIMEOUT");
    double seconds = text ? strtod(text, NULL) : 0;
    return seconds > 0 ? seconds : DEFAULT_TIMEOUT_SECONDS;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* How a test ended: passed, or why not (a line for the TAP output). */
struct outcome {
    int passed;
    char why[160];
};

static void describe_status(int status, struct outcome *out)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        out->passed = 1;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_ASSERTION_FAILED) {
        snprintf(out->why, sizeof out->why, "an assertion failed");
    } else if (WIFEXITED(status)) {
        snprintf(out->why, sizeof out->why, "exited with status %d: a sanitizer's report above,"
                 " or exit() in the test", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(out->why, sizeof out->why, "crashed: signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(out->why, sizeof out->why, "ended with wait status %#x", status);
    }
}

/* Waits for child `pid` until `timeout` seconds have passed (SIGCHLD is
 * blocked); kills its process group when it runs over. */
static void wait_child(pid_t pid, double timeout, struct outcome *out)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    double deadline = now_seconds() + timeout;
    int status;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) {
            describe_status(status, out);
            return;
        }
        if (done < 0 && errno != EINTR) {
            snprintf(out->why, sizeof out->why, "waitpid: %s", strerror(errno));
            return;
        }
        double left = deadline - now_seconds();
        if (left <= 0)
            break;
        struct timespec ts = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
        sigtimedwait(&chld, NULL, &ts);
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    snprintf(out->why, sizeof out->why, "timed out after %g s (HARNESS_TIMEOUT)", timeout);
}

static void run_in_child(const struct test_case *tc, const sigset_t *old_mask)
{
    setpgid(0, 0);
    sigprocmask(SIG_SETMASK, old_mask, NULL);
    harness_failed = 0;
    tc->run();
    fflush(NULL);
    exit(harness_failed ? EXIT_ASSERTION_FAILED : 0);
}

static void run_forked(const struct test_case *tc, double timeout, struct outcome *out)
{
    sigset_t chld, old_mask;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old_mask);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        run_in_child(tc, &old_mask);
    if (pid < 0) {
        snprintf(out->why, sizeof out->why, "fork: %s", strerror(errno));
    } else {
        setpgid(pid, pid);   /* also here: whichever runs first makes the group */
        wait_child(pid, timeout, out);
        kill(-pid, SIGKILL); /* what the test spawned and left running */
    }
    sigset_t pending;
    struct timespec zero = {0, 0};
    sigpending(&pending);
    if (sigismember(&pending, SIGCHLD))
        sigtimedwait(&chld, NULL, &zero);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
}

static void run_inline(const struct test_case *tc, struct outcome *out)
{
    harness_failed = 0;
    tc->run();
    if (!harness_failed)
        out->passed = 1;
    else
        snprintf(out->why, sizeof out->why, "an assertion failed");
}

/* Runs one test and prints its TAP line; whether it passed. */
static int run_one(const struct test_case *tc, size_t number, int fork_each, double timeout)
{
    struct outcome out = {0};
    harness_tmpdir();
    if (fork_each)
        run_forked(tc, timeout, &out);
    else
        run_inline(tc, &out);
    remove_tmpdir();
    printf("%sok %zu - %s\n", out.passed ? "" : "not ", number, tc->name);
    if (!out.passed)
        printf("# %s: %s\n", tc->name, out.why);
    fflush(stdout);
    return out.passed;
}

/* Marks the tests `pattern` names: the one of that exact name, or else
 * every test whose name contains it. How many. */
static size_t mark_matches(const struct test_case *cases, size_t count, const char *pattern, char *marked)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(cases[i].name, pattern) == 0)
            return marked[i] = 1;
    size_t found = 0;
    for (size_t i = 0; i < count; i++)
        if (strstr(cases[i].name, pattern)) {
            marked[i] = 1;
            found++;
        }
    return found;
}

/* The tests the command line names (all when it names none), in the
 * table's order, into selected[count]; how many, or -1 after printing
 * the error. */
static long select_cases(const struct test_case *cases, size_t count, const struct test_case **selected)
{
    char *marked = calloc(count ? count : 1, 1);
    if (!marked)
        return -1;
    memset(marked, saved_argc <= 1, count);
    for (int a = 1; a < saved_argc; a++)
        if (mark_matches(cases, count, saved_argv[a], marked) == 0) {
            fprintf(stderr, "%s: no test named '%s' (--list shows them)\n", saved_argv[0], saved_argv[a]);
            free(marked);
            return -1;
        }
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (marked[i])
            selected[n++] = &cases[i];
    free(marked);
    return (long)n;
}

static int listing_asked(const struct test_case *cases, size_t count)
{
    if (saved_argc != 2 || strcmp(saved_argv[1], "--list") != 0)
        return 0;
    for (size_t i = 0; i < count; i++)
        printf("%s\n", cases[i].name);
    return 1;
}

int harness_run(const struct test_case *cases, size_t count)
{
    if (listing_asked(cases, count))
        return 0;
    const struct test_case **selected = calloc(count ? count : 1, sizeof *selected);
    long n = selected ? select_cases(cases, count, selected) : -1;
    if (n < 0) {
        free(selected);
        return 2;
    }
    const char *fork_env = getenv("HARNESS_FORK");
    int fork_each = !(fork_env && strcmp(fork_env, "0") == 0);
    double timeout = timeout_seconds();
    printf("1..%ld\n", n);
    int failures = 0;
    for (long i = 0; i < n; i++)
        failures += !run_one(selected[i], (size_t)i + 1, fork_each, timeout);
    free(selected);
    return failures ? 1 : 0;
}

int harness_fail_all(const struct test_case *cases, size_t count, const char *why)
{
    const struct test_case **selected = calloc(count ? count : 1, sizeof *selected);
    long n = selected ? select_cases(cases, count, selected) : -1;
    if (n < 0) {
        free(selected);
        return 2;
    }
    printf("1..%ld\n", n);
    for (long i = 0; i < n; i++)
        printf("not ok %ld - %s\n# %s: %s\n", i + 1, selected[i]->name, selected[i]->name, why);
    free(selected);
    return 1;
}
