/*
 * test_backoff -- classification, full-jitter delays, Retry-After parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ess_backoff.h"

struct classify_case {
    long status;
    int transport_failed;
    enum ess_outcome want;
};

static const struct classify_case classify_cases[] = {
    {200, 0, ESS_OUTCOME_OK},
    {201, 0, ESS_OUTCOME_OK},
    {204, 0, ESS_OUTCOME_OK},
    {299, 0, ESS_OUTCOME_OK},
    {100, 0, ESS_OUTCOME_DROP},
    {101, 0, ESS_OUTCOME_DROP},
    {301, 0, ESS_OUTCOME_DROP},
    {302, 0, ESS_OUTCOME_DROP},
    {304, 0, ESS_OUTCOME_DROP},
    {400, 0, ESS_OUTCOME_DROP},
    {401, 0, ESS_OUTCOME_DROP},
    {403, 0, ESS_OUTCOME_DROP},
    {404, 0, ESS_OUTCOME_DROP},
    {409, 0, ESS_OUTCOME_DROP},
    {422, 0, ESS_OUTCOME_DROP},
    {408, 0, ESS_OUTCOME_RETRY},
    {429, 0, ESS_OUTCOME_RETRY},
    {500, 0, ESS_OUTCOME_RETRY},
    {502, 0, ESS_OUTCOME_RETRY},
    {503, 0, ESS_OUTCOME_RETRY},
    {504, 0, ESS_OUTCOME_RETRY},
    {599, 0, ESS_OUTCOME_RETRY},
    {600, 0, ESS_OUTCOME_DROP},
    {999, 0, ESS_OUTCOME_DROP},
    {-1, 0, ESS_OUTCOME_DROP},
    {0, 0, ESS_OUTCOME_DROP},
    {0, 1, ESS_OUTCOME_RETRY},
    /* a transfer that failed after the status line still did not complete */
    {200, 1, ESS_OUTCOME_RETRY},
    {404, 1, ESS_OUTCOME_RETRY},
};

static void test_classify_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(classify_cases) / sizeof(classify_cases[0]); i++) {
        const struct classify_case *c = &classify_cases[i];
        if (ess_backoff_classify(c->status, c->transport_failed) != c->want) {
            fail_msg("classify(%ld, %d): want %d", c->status, c->transport_failed, (int)c->want);
        }
    }
}

struct delay_case {
    int attempt;
    long base_ms;
    long cap_ms;
    long ceiling; /* min(cap, base * 2^attempt) */
};

static const struct delay_case delay_cases[] = {
    {0, 100, 30000, 100},
    {1, 100, 30000, 200},
    {2, 100, 30000, 400},
    {5, 100, 30000, 3200},
    {8, 100, 30000, 25600},
    {9, 100, 30000, 30000},
    {20, 100, 30000, 30000},
    {60, 100, 30000, 30000},
    {62, 100, 30000, 30000},
    {63, 100, 30000, 30000},
    {1000, 100, 30000, 30000},
    {60, 1000, 3600000, 3600000},
    {3, 500, 100, 100},
    {0, 1, 1, 1},
    {70, 1L << 40, 1L << 62, 1L << 62},
};

static void test_delay_bounds_table(void **state)
{
    uint64_t rng = 0x1234567887654321ULL;
    size_t i;
    int draw;
    long d, lo, hi;

    (void)state;
    for (i = 0; i < sizeof(delay_cases) / sizeof(delay_cases[0]); i++) {
        const struct delay_case *c = &delay_cases[i];
        lo = c->ceiling;
        hi = 0;
        for (draw = 0; draw < 2000; draw++) {
            d = ess_backoff_delay_ms(c->attempt, c->base_ms, c->cap_ms, &rng);
            if (d < 0 || d > c->ceiling) {
                fail_msg("attempt %d base %ld cap %ld: delay %ld outside [0, %ld]", c->attempt,
                         c->base_ms, c->cap_ms, d, c->ceiling);
            }
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* Full jitter: the draws spread over the range, not one value. */
        if (c->ceiling >= 100) {
            assert_true(lo < hi);
            assert_true(lo < c->ceiling / 4);
            assert_true(hi > c->ceiling / 4 * 3);
        }
    }
}

static void test_delay_degenerate(void **state)
{
    uint64_t rng = 0; /* zero seed must not get stuck */
    int i;
    int nonzero = 0;

    (void)state;
    assert_int_equal(ess_backoff_delay_ms(3, 0, 1000, &rng), 0);
    assert_int_equal(ess_backoff_delay_ms(3, 100, 0, &rng), 0);
    assert_int_equal(ess_backoff_delay_ms(-5, 100, 1000, NULL), 100);
    for (i = 0; i < 100; i++) {
        nonzero += ess_backoff_delay_ms(4, 100, 10000, &rng) != 0;
    }
    assert_true(nonzero > 90);
    assert_true(rng != 0);
}

static void test_rand_deterministic(void **state)
{
    uint64_t a = 42, b = 42, c = 43;

    (void)state;
    assert_true(ess_backoff_rand(&a) == ess_backoff_rand(&b));
    assert_true(ess_backoff_rand(&a) == ess_backoff_rand(&b));
    assert_true(ess_backoff_rand(&a) != ess_backoff_rand(&c));
}

struct retry_after_case {
    const char *value;
    long want;
};

/* now = Sun, 06 Nov 1994 08:49:37 GMT */
#define RA_NOW ((time_t)784111777)

static const struct retry_after_case retry_after_cases[] = {
    {"0", 0},
    {"2", 2000},
    {"120", 120000},
    {"  7 ", 7000},
    {"999999999999999999999999", 7L * 24 * 3600 * 1000}, /* clamped, not overflowed */
    {"Sun, 06 Nov 1994 08:49:47 GMT", 10000},
    {"Sun, 06 Nov 1994 08:49:37 GMT", 0},
    {"Sun, 06 Nov 1994 08:00:00 GMT", 0}, /* past: retry now */
    {"Mon, 07 Nov 1994 08:49:37 GMT", 86400000L},
    {"Sunday, 06-Nov-94 08:50:37 GMT", 60000}, /* RFC 850 */
    {"Sun Nov  6 08:49:38 1994", 1000},        /* asctime */
    {"", -1},
    {"   ", -1},
    {"soon", -1},
    {"-5", -1},
    {"1.5", -1},
    {"5s", -1},
    {"0x10", -1},
    {"Sun, 06 Nov 1994 08:49:47", -1}, /* no zone */
    {"Sun, 06 Nov 1994 08:49:47 GMT junk", -1},
    {"Sun, 32 Nov 1994 08:49:47 GMT", -1},
};

static void test_retry_after_table(void **state)
{
    size_t i;
    long got;

    (void)state;
    for (i = 0; i < sizeof(retry_after_cases) / sizeof(retry_after_cases[0]); i++) {
        got = ess_backoff_retry_after_ms(retry_after_cases[i].value, RA_NOW);
        if (got != retry_after_cases[i].want) {
            fail_msg("Retry-After \"%s\": got %ld, want %ld", retry_after_cases[i].value, got,
                     retry_after_cases[i].want);
        }
    }
    assert_int_equal(ess_backoff_retry_after_ms(NULL, RA_NOW), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),    cmocka_unit_test(test_delay_bounds_table),
        cmocka_unit_test(test_delay_degenerate),  cmocka_unit_test(test_rand_deterministic),
        cmocka_unit_test(test_retry_after_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
