/* test_runtime.c — lifecycle: defaults, start/stop, stop with pending messages
 * (drained before the deadline, dropped and counted after it), stop from inside an
 * actor with the foreground mode, and allocation failure in tr_runtime_new. */
#include <pthread.h>
#include <unistd.h>

#include "harness.h"

typedef struct {
    atomic_int got;
    atomic_int terminated;
    atomic_int reason;
    int        delay_ms;
} slow;

static int slow_init(tr_ctx *ctx, void *arg, void **st) { (void)ctx; *st = arg; return 0; }
static int slow_receive(tr_ctx *ctx, void *st, tr_msg *m)
{
    (void)ctx; (void)m;
    slow *s = st;
    if (s->delay_ms)
        th_sleep_ms((unsigned)s->delay_ms);
    atomic_fetch_add(&s->got, 1);
    return 0;
}
static void slow_terminate(tr_ctx *ctx, void *st, int reason)
{
    (void)ctx;
    slow *s = st;
    atomic_store(&s->reason, reason);
    atomic_fetch_add(&s->terminated, 1);
}
static const tr_behaviour slow_b = { "slow", slow_init, slow_receive, slow_terminate };

static void test_defaults(void **state)
{
    (void)state;
    tr_alloc_track(1);
    tr_runtime *rt;
    assert_int_equal(tr_runtime_new(NULL, &rt), 0);
    assert_int_equal(tr_runtime_workers(rt), (int)sysconf(_SC_NPROCESSORS_ONLN));
    tr_runtime_free(rt);   /* never started */
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

/* Actors spawned before start run once it is called; free without stop stops. */
static void test_spawn_before_start(void **state)
{
    (void)state;
    tr_alloc_track(1);
    tr_runtime *rt;
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = 2;
    assert_int_equal(tr_runtime_new(&cfg, &rt), 0);
    slow s = { 0 };
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &slow_b, &s, NULL, &pid), 0);
    assert_int_equal(tr_send(rt, pid, 0, NULL, 0), 0);
    th_sleep_ms(20);
    assert_int_equal(atomic_load(&s.got), 0);
    assert_int_equal(tr_runtime_start(rt), 0);
    assert_int_equal(tr_runtime_start(rt), TR_ESTATE);
    assert_true(TH_WAIT_UNTIL(atomic_load(&s.got) == 1, 5000));
    tr_runtime_free(rt);
    assert_int_equal(atomic_load(&s.terminated), 1);
    assert_int_equal(atomic_load(&s.reason), TR_EXIT_SHUTDOWN);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

/* Messages sent before the stop are delivered, then the actor terminates. */
static void test_stop_drains(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    slow s = { .delay_ms = 0 };
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &slow_b, &s, NULL, &pid), 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(tr_send(rt, pid, 0, NULL, 0), 0);
    assert_int_equal(tr_runtime_stop(rt, 10000), 0);
    assert_int_equal(tr_spawn(rt, &slow_b, &s, NULL, &pid), TR_ESTOPPED);
    assert_int_equal(tr_runtime_wait(rt), 0);
    assert_int_equal(atomic_load(&s.got), 20000);
    assert_int_equal(atomic_load(&s.terminated), 1);
    assert_int_equal(atomic_load(&s.reason), TR_EXIT_SHUTDOWN);
    tr_stats st;
    tr_runtime_stats(rt, &st);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.delivered, 20000);
    assert_int_equal(st.actors_live, 0);
    tr_runtime_free(rt);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

/* Past the deadline, the rest is dropped and counted, and terminate still runs. */
static void test_stop_deadline(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    slow s = { .delay_ms = 5 };
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &slow_b, &s, NULL, &pid), 0);
    for (int i = 0; i < 400; i++)
        assert_int_equal(tr_send(rt, pid, 0, NULL, 0), 0);
    uint64_t t0 = th_now_ms();
    assert_int_equal(tr_runtime_stop(rt, 100), 0);
    assert_int_equal(tr_runtime_wait(rt), 0);
    uint64_t took = th_now_ms() - t0;
    tr_stats st;
    tr_runtime_stats(rt, &st);
    int got = atomic_load(&s.got);
    print_message("stopped in %llu ms: %d delivered, %llu dropped\n",
                  (unsigned long long)took, got, (unsigned long long)st.dropped);
    assert_true(got < 400);
    assert_int_equal(st.dropped, (uint64_t)(400 - got));
    assert_int_equal(atomic_load(&s.terminated), 1);
    assert_int_equal(atomic_load(&s.reason), TR_EXIT_KILLED);
    assert_true(took < 2000);
    tr_runtime_free(rt);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

/* An actor stops the runtime that the main thread runs in the foreground. */
static atomic_int wait_rc;
static int stopper_receive(tr_ctx *ctx, void *st, tr_msg *m)
{
    (void)st; (void)m;
    atomic_store(&wait_rc, tr_runtime_wait(tr_ctx_runtime(ctx)));   /* not from a worker */
    return tr_runtime_stop(tr_ctx_runtime(ctx), 1000);
}
static const tr_behaviour stopper_b = { "stopper", NULL, stopper_receive, NULL };

static void test_foreground_run_stopped_by_actor(void **state)
{
    (void)state;
    tr_alloc_track(1);
    tr_runtime *rt;
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = 2;
    assert_int_equal(tr_runtime_new(&cfg, &rt), 0);
    tr_pid pid;
    assert_int_equal(tr_spawn(rt, &stopper_b, NULL, NULL, &pid), 0);
    assert_int_equal(tr_send(rt, pid, 0, NULL, 0), 0);
    assert_int_equal(tr_runtime_run(rt), 0);   /* returns once the actor stopped it */
    assert_int_equal(atomic_load(&wait_rc), TR_ESTATE);
    assert_false(tr_alive(rt, pid));
    tr_runtime_free(rt);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

static void test_new_enomem(void **state)
{
    (void)state;
    tr_alloc_track(1);
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = 2;
    int failures = 0;
    for (long n = 0; n < 50; n++) {
        tr_runtime *rt = NULL;
        tr_alloc_fail_after(n);
        int rc = tr_runtime_new(&cfg, &rt);
        tr_alloc_fail_after(-1);
        if (rc == 0) {
            tr_runtime_free(rt);
            break;
        }
        assert_int_equal(rc, TR_ENOMEM);
        assert_null(rt);
        assert_int_equal(tr_alloc_live(), 0);
        failures++;
    }
    assert_true(failures >= 3);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

static int ext_freed;
static void ext_free_fn(void *p)
{
    ext_freed++;
    tr_free(p);
}

/* Extension slots: set once, refused twice, freed with the runtime; worker loops
 * are reachable by index and the current worker is -1 off the workers. */
static void test_extensions(void **state)
{
    (void)state;
    tr_alloc_track(1);
    tr_runtime *rt;
    tr_config cfg;
    tr_config_init(&cfg);
    cfg.workers = 2;
    assert_int_equal(tr_runtime_new(&cfg, &rt), 0);
    assert_null(tr_runtime_ext(rt, TR_EXT_USER));
    void *p = tr_malloc(16), *q = tr_malloc(16);
    assert_int_equal(tr_runtime_ext_set(rt, TR_EXT_USER, p, ext_free_fn), 0);
    assert_int_equal(tr_runtime_ext_set(rt, TR_EXT_USER, q, ext_free_fn), TR_EEXIST);
    assert_int_equal(tr_runtime_ext_set(rt, TR_EXT_MAX, q, ext_free_fn), TR_EINVAL);
    assert_int_equal(tr_runtime_ext_set(rt, -1, q, ext_free_fn), TR_EINVAL);
    tr_free(q);
    assert_ptr_equal(tr_runtime_ext(rt, TR_EXT_USER), p);
    assert_null(tr_runtime_ext(rt, TR_EXT_MAX));
    assert_non_null(tr_worker_loop(rt, 0));
    assert_non_null(tr_worker_loop(rt, 1));
    assert_ptr_not_equal(tr_worker_loop(rt, 0), tr_worker_loop(rt, 1));
    assert_null(tr_worker_loop(rt, 2));
    assert_int_equal(tr_current_worker(rt), -1);
    ext_freed = 0;
    tr_runtime_free(rt);
    assert_int_equal(ext_freed, 1);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_spawn_before_start),
        cmocka_unit_test(test_stop_drains),
        cmocka_unit_test(test_stop_deadline),
        cmocka_unit_test(test_foreground_run_stopped_by_actor),
        cmocka_unit_test(test_new_enomem),
        cmocka_unit_test(test_extensions),
    };
    return cmocka_run_group_tests_name("runtime", tests, NULL, NULL);
}
