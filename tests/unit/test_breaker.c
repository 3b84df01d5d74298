/*
 * test_breaker -- the circuit breaker state machine on a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ess_breaker.h"

static void test_closed_allows_and_waits_minus_one(void **state)
{
    struct ess_breaker b;
    int i;

    (void)state;
    ess_breaker_init(&b, 3, 1000, 60000);
    assert_false(ess_breaker_open(&b));
    for (i = 0; i < 10; i++) {
        assert_true(ess_breaker_allow(&b, i));
    }
    assert_int_equal(ess_breaker_wait_ms(&b, 0), -1);
}

static void test_opens_after_threshold(void **state)
{
    struct ess_breaker b;

    (void)state;
    ess_breaker_init(&b, 3, 1000, 60000);
    ess_breaker_failure(&b, 100);
    ess_breaker_failure(&b, 200);
    assert_false(ess_breaker_open(&b));
    ess_breaker_failure(&b, 300);
    assert_true(ess_breaker_open(&b));
    assert_int_equal(ess_breaker_wait_ms(&b, 300), 1000);
    assert_int_equal(ess_breaker_wait_ms(&b, 800), 500);
    assert_false(ess_breaker_allow(&b, 1299));
}

static void test_success_resets_count(void **state)
{
    struct ess_breaker b;

    (void)state;
    ess_breaker_init(&b, 3, 1000, 60000);
    ess_breaker_failure(&b, 1);
    ess_breaker_failure(&b, 2);
    ess_breaker_success(&b);
    assert_int_equal(b.failures, 0);
    ess_breaker_failure(&b, 3);
    ess_breaker_failure(&b, 4);
    assert_false(ess_breaker_open(&b));
    ess_breaker_failure(&b, 5);
    assert_true(ess_breaker_open(&b));
}

static void test_one_probe_at_a_time(void **state)
{
    struct ess_breaker b;

    (void)state;
    ess_breaker_init(&b, 1, 1000, 60000);
    ess_breaker_failure(&b, 0);
    assert_true(ess_breaker_open(&b));
    assert_false(ess_breaker_allow(&b, 999));
    assert_true(ess_breaker_allow(&b, 1000)); /* the probe */
    assert_false(ess_breaker_allow(&b, 1000));
    assert_false(ess_breaker_allow(&b, 50000));      /* still out: no second probe */
    assert_true(ess_breaker_wait_ms(&b, 50000) > 0); /* never 0 while the probe is out */
}

/* A granted slot that sent nothing (the event was parked) must not leave the
 * breaker waiting forever for a probe that never went out. */
static void test_release_unused_probe(void **state)
{
    struct ess_breaker b;

    (void)state;
    ess_breaker_init(&b, 1, 1000, 60000);
    ess_breaker_failure(&b, 0);
    assert_true(ess_breaker_allow(&b, 1000));
    ess_breaker_release(&b);
    assert_int_equal(ess_breaker_wait_ms(&b, 1000), 0);
    assert_true(ess_breaker_allow(&b, 1000)); /* the next probe may go now */
    ess_breaker_success(&b);
    ess_breaker_release(&b); /* closed: no effect */
    assert_false(ess_breaker_open(&b));
    assert_true(ess_breaker_allow(&b, 1000));
}

struct probe_step {
    long fail_at;   /* probe sent and failed at this time */
    long want_wait; /* wait_ms right after the failure */
};

static void test_probe_interval_doubles_to_cap(void **state)
{
    static const struct probe_step steps[] = {
        {1000, 2000}, {3000, 4000}, {7000, 8000}, {15000, 10000}, {25000, 10000},
    };
    struct ess_breaker b;
    size_t i;

    (void)state;
    ess_breaker_init(&b, 2, 1000, 10000);
    ess_breaker_failure(&b, 0);
    ess_breaker_failure(&b, 0);
    assert_int_equal(ess_breaker_wait_ms(&b, 0), 1000);
    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        assert_int_equal(ess_breaker_wait_ms(&b, steps[i].fail_at), 0);
        assert_true(ess_breaker_allow(&b, steps[i].fail_at));
        ess_breaker_failure(&b, steps[i].fail_at);
        assert_true(ess_breaker_open(&b));
        assert_int_equal(ess_breaker_wait_ms(&b, steps[i].fail_at), steps[i].want_wait);
        assert_false(ess_breaker_allow(&b, steps[i].fail_at + steps[i].want_wait - 1));
    }
}

static void test_probe_success_closes(void **state)
{
    struct ess_breaker b;

    (void)state;
    ess_breaker_init(&b, 1, 500, 8000);
    ess_breaker_failure(&b, 0);
    assert_true(ess_breaker_allow(&b, 500));
    ess_breaker_failure(&b, 600); /* interval 1000 */
    assert_true(ess_breaker_allow(&b, 1600));
    ess_breaker_success(&b);
    assert_false(ess_breaker_open(&b));
    assert_int_equal(ess_breaker_wait_ms(&b, 1600), -1);
    assert_true(ess_breaker_allow(&b, 1601));
    assert_true(ess_breaker_allow(&b, 1601));
    /* Trips again from a fresh minimum interval. */
    ess_breaker_failure(&b, 2000);
    assert_true(ess_breaker_open(&b));
    assert_int_equal(ess_breaker_wait_ms(&b, 2000), 500);
}

static void test_straggler_failure_keeps_schedule(void **state)
{
    struct ess_breaker b;

    (void)state;
    ess_breaker_init(&b, 2, 1000, 60000);
    ess_breaker_failure(&b, 0);
    ess_breaker_failure(&b, 0);  /* open, first probe at 1000 */
    ess_breaker_failure(&b, 10); /* deliveries already in flight when it tripped */
    ess_breaker_failure(&b, 20);
    assert_int_equal(ess_breaker_wait_ms(&b, 20), 980);
    assert_true(ess_breaker_allow(&b, 1000));
}

static void test_init_clamps(void **state)
{
    struct ess_breaker b;

    (void)state;
    ess_breaker_init(&b, 0, 0, -5);
    assert_int_equal(b.threshold, 1);
    assert_true(b.probe_min_ms >= 1);
    assert_true(b.probe_max_ms >= b.probe_min_ms);
    ess_breaker_failure(&b, 0);
    assert_true(ess_breaker_open(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_allows_and_waits_minus_one),
        cmocka_unit_test(test_opens_after_threshold),
        cmocka_unit_test(test_success_resets_count),
        cmocka_unit_test(test_one_probe_at_a_time),
        cmocka_unit_test(test_release_unused_probe),
        cmocka_unit_test(test_probe_interval_doubles_to_cap),
        cmocka_unit_test(test_probe_success_closes),
        cmocka_unit_test(test_straggler_failure_keeps_schedule),
        cmocka_unit_test(test_init_clamps),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
