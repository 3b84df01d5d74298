/*
 * test_ring -- ess_ring_unwrap: a wrapped ring comes out in order, an empty
 * one (no buffer yet) gives a fresh buffer, impossible sizes give NULL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ess_ring.h"

static void test_wrapped_in_order(void **state)
{
    /* cap 5, oldest at 3: 30 40 | 50 60 (slots 3 4 0 1) */
    const int ring[5] = {50, 60, -1, 30, 40};
    int *out = ess_ring_unwrap(ring, sizeof(int), 5, 3, 4, 10);
    int i;

    (void)state;
    assert_non_null(out);
    for (i = 0; i < 4; i++) {
        assert_int_equal(out[i], 30 + 10 * i);
    }
    free(out);
}

static void test_not_wrapped(void **state)
{
    const int ring[4] = {1, 2, 3, 4};
    int *out = ess_ring_unwrap(ring, sizeof(int), 4, 0, 4, 8);

    (void)state;
    assert_non_null(out);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[3], 4);
    free(out);
}

static void test_empty_and_refused(void **state)
{
    const int ring[2] = {1, 2};
    void *out = ess_ring_unwrap(NULL, sizeof(int), 0, 0, 0, 16);

    (void)state;
    assert_non_null(out); /* a first buffer for a ring that has none */
    free(out);
    assert_null(ess_ring_unwrap(ring, sizeof(int), 2, 0, 2, 1)); /* smaller than n */
    assert_null(ess_ring_unwrap(NULL, sizeof(int), 2, 0, 2, 4));
    assert_null(ess_ring_unwrap(ring, sizeof(int), 2, 2, 1, 4)); /* head outside */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrapped_in_order),
        cmocka_unit_test(test_not_wrapped),
        cmocka_unit_test(test_empty_and_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
