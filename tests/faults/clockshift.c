/* clockshift.c - a test shim (LD_PRELOAD) that puts CLOCK_REALTIME
 * CLOCKSHIFT_MS milliseconds off (negative: behind) for as long as the file
 * CLOCKSHIFT_UNTIL does not exist; once it exists, the clock is right
 * again, as when NTP steps a host's clock that was wrong at boot. Built by
 * tests/integration/test_tamper_honest.py into its temporary directory;
 * nothing in tidemark knows about it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int clock_gettime(clockid_t clock, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(clock, ts);
    const char *shift = getenv("CLOCKSHIFT_MS"), *until = getenv("CLOCKSHIFT_UNTIL");
    if (rc != 0 || clock != CLOCK_REALTIME || !shift || (until && access(until, F_OK) == 0))
        return rc;
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + atoll(shift) * 1000000LL;
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
    return rc;
}
