/* test_error.c — every TR_E* code has a distinct name and message. */
#include "harness.h"

static void test_names_and_messages(void **state)
{
    (void)state;
    static const int codes[] = {
#define X(name, code, text) TR_##name,
        TR_ERRNO_MAP(X)
#undef X
    };
    size_t n = sizeof codes / sizeof codes[0];
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i] < 0);
        assert_string_not_equal(tr_strerror(codes[i]), "unknown error");
        assert_string_not_equal(tr_errname(codes[i]), "UNKNOWN");
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i], codes[j]);
            assert_string_not_equal(tr_errname(codes[i]), tr_errname(codes[j]));
        }
    }
    assert_string_equal(tr_errname(TR_ENOMEM), "ENOMEM");
    assert_string_equal(tr_strerror(TR_ENOPROC), "no such actor (stale or unknown pid)");
    assert_string_equal(tr_strerror(0), "success");
    assert_string_equal(tr_strerror(-9999), "unknown error");
    assert_string_equal(tr_errname(12345), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_messages),
    };
    return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
