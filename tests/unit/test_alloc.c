/* test_alloc.c — the failure injector and the live-block count. */
#include <pthread.h>

#include "harness.h"

static void test_fail_after(void **state)
{
    (void)state;
    tr_alloc_fail_after(2);
    void *a = tr_malloc(8), *b = tr_malloc(8), *c = tr_malloc(8), *d = tr_malloc(8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);           /* the third fails ... */
    assert_non_null(d);       /* ... and only that one */
    assert_int_equal(tr_alloc_pending(), -1);
    tr_alloc_fail_after(0);
    assert_null(tr_realloc(a, 64));   /* a is untouched on failure */
    tr_free(a);
    tr_free(b);
    tr_free(d);
}

static void *other_thread(void *arg)
{
    (void)arg;
    return tr_malloc(16);
}

static void test_injection_is_per_thread(void **state)
{
    (void)state;
    tr_alloc_fail_after(0);
    pthread_t t;
    void *p = NULL;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &p);
    assert_non_null(p);       /* another thread's allocation is not the one to fail */
    assert_null(tr_malloc(16));
    tr_free(p);
}

static void test_live_count(void **state)
{
    (void)state;
    tr_alloc_track(1);
    void *a = tr_malloc(10), *b = tr_malloc(20);
    assert_int_equal(tr_alloc_live(), 2);
    b = tr_realloc(b, 4000);
    assert_int_equal(tr_alloc_live(), 2);
    tr_free(a);
    tr_free(b);
    tr_free(NULL);
    assert_int_equal(tr_alloc_live(), 0);
    tr_alloc_track(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_after),
        cmocka_unit_test(test_injection_is_per_thread),
        cmocka_unit_test(test_live_count),
    };
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
