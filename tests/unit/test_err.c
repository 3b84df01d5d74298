/* ess_err: every code has a string (walk to the sentinel), first error wins,
 * positioned formatting, diags growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sysexits.h>

#include <cmocka.h>

#include "ess_err.h"

static void test_every_code_has_a_string(void **state)
{
    int code;

    (void)state;
    for (code = ESS_OK; code > ESS__ECOUNT; code--) {
        assert_string_not_equal(ess_strerror(code), "unknown error");
    }
    assert_string_equal(ess_strerror(ESS__ECOUNT), "unknown error");
    assert_string_equal(ess_strerror(1), "unknown error");
}

static void test_first_error_wins(void **state)
{
    struct ess_err e;
    char buf[600];

    (void)state;
    ess_err_clear(&e);
    assert_int_equal(ess_err_set(&e, ESS_ESTORE, "connection lost\nto %s", "db"), ESS_ESTORE);
    assert_int_equal(ess_err_set(&e, ESS_EIO, "later"), ESS_EIO);
    assert_int_equal(e.code, ESS_ESTORE);
    assert_string_equal(e.msg, "connection lost to db");
    assert_string_equal(ess_err_format(&e, buf, sizeof(buf)), "connection lost to db");
    assert_int_equal(ess_err_set(NULL, ESS_EIO, "x"), ESS_EIO);
}

static void test_positioned(void **state)
{
    struct ess_err e;
    char buf[600];

    (void)state;
    ess_err_clear(&e);
    ess_err_setpos(&e, ESS_EMANIFEST, "m.yml", 3, 7, "id: bad");
    assert_string_equal(ess_err_format(&e, buf, sizeof(buf)), "m.yml:3:7: id: bad");
    assert_int_equal(ess_err_exit_code(e.code), EX_DATAERR);
    assert_int_equal(ess_err_exit_code(ESS_ECONFIG), EX_CONFIG);
    assert_int_equal(ess_err_exit_code(ESS_EBUS), EX_UNAVAILABLE);
}

static void test_diags_grow(void **state)
{
    struct ess_diags d;
    int i;

    (void)state;
    ess_diags_init(&d);
    for (i = 0; i < 100; i++) {
        ess_diags_add(&d, ESS_EMANIFEST, "f", i + 1, 1, "e%d", i);
    }
    assert_int_equal(d.n, 100);
    assert_string_equal(d.v[99].msg, "e99");
    assert_int_equal(d.v[99].line, 100);
    ess_diags_fini(&d);
    assert_int_equal(d.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_a_string),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_positioned),
        cmocka_unit_test(test_diags_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
