/* Shared helpers for the cmocka unit tests: one runtime per test, a poll-until wait
 * (tests never sleep a fixed time to "let things happen"), and a teardown that proves
 * every allocation made during the test was freed. */
#ifndef TR_TEST_HARNESS_H
#define TR_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <stdatomic.h>

#include "troupe.h"

static inline uint64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void th_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Polls expr every millisecond for up to ms; evaluates to 1 when it became true. */
#define TH_WAIT_UNTIL(expr, ms) ({                                   \
        uint64_t th__end = th_now_ms() + (ms); int th__ok = 0;       \
        for (;;) {                                                   \
            if (expr) { th__ok = 1; break; }                         \
            if (th_now_ms() > th__end) break;                        \
            th_sleep_ms(1);                                          \
        }                                                            \
        th__ok; })

/* Live actors, for waiting until an exit has run to its end (tr_alive turns false
 * as an exit begins; terminate and the mailbox sweep come after). */
static inline uint64_t th_live(tr_runtime *rt)
{
    tr_stats st;
    tr_runtime_stats(rt, &st);
    return st.actors_live;
}

/* A started runtime with n workers, allocation tracking on. */
static inline tr_runtime *th_runtime(int workers)
{
    tr_alloc_track(1);
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = workers;
    tr_runtime *rt = NULL;
    assert_int_equal(tr_runtime_new(&cfg, &rt), 0);
    assert_int_equal(tr_runtime_start(rt), 0);
    return rt;
}

/* Stops and frees rt, then checks that nothing the runtime allocated is left. */
static inline void th_finish(tr_runtime *rt)
{
    assert_int_equal(tr_runtime_stop(rt, 5000), 0);
    assert_int_equal(tr_runtime_wait(rt), 0);
    tr_runtime_free(rt);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

#endif
