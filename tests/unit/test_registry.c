/* test_registry.c — names: register, whereis, unregister, release on exit. */
#include "harness.h"

static int exit_receive(tr_ctx *ctx, void *st, tr_msg *m)
{
    (void)st; (void)m;
    tr_exit(ctx, TR_EXIT_NORMAL);
    return 0;
}
static const tr_behaviour exit_b = { "exit", NULL, exit_receive, NULL };

static void test_names(void **state)
{
    (void)state;
    tr_runtime *rt = th_runtime(2);
    tr_pid a, b;
    assert_int_equal(tr_spawn(rt, &exit_b, NULL, NULL, &a), 0);
    assert_int_equal(tr_spawn(rt, &exit_b, NULL, NULL, &b), 0);
    assert_int_equal(tr_whereis(rt, "db"), 0);
    assert_int_equal(tr_register(rt, "db", a), 0);
    assert_int_equal(tr_whereis(rt, "db"), a);
    assert_int_equal(tr_register(rt, "db", b), TR_EEXIST);
    assert_int_equal(tr_register(rt, "", b), TR_EINVAL);
    assert_int_equal(tr_register(rt, "cache", b), 0);
    assert_int_equal(tr_unregister(rt, "cache"), 0);
    assert_int_equal(tr_unregister(rt, "cache"), TR_ENOPROC);
    assert_int_equal(tr_whereis(rt, "cache"), 0);
    /* Many names: the table grows and every name is still found. */
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(tr_register(rt, name, b), 0);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(tr_whereis(rt, name), b);
    }
    /* Exit releases every name of the actor, and a dead pid cannot register. */
    assert_int_equal(tr_send(rt, a, 0, NULL, 0), 0);
    assert_int_equal(tr_send(rt, b, 0, NULL, 0), 0);
    assert_true(TH_WAIT_UNTIL(th_live(rt) == 0, 5000));
    assert_int_equal(tr_whereis(rt, "db"), 0);
    assert_int_equal(tr_whereis(rt, "n7"), 0);
    assert_int_equal(tr_register(rt, "db", a), TR_ENOPROC);
    tr_pid c;
    assert_int_equal(tr_spawn(rt, &exit_b, NULL, NULL, &c), 0);
    assert_int_equal(tr_register(rt, "db", c), 0);
    assert_int_equal(tr_whereis(rt, "db"), c);
    th_finish(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
