/* ess_metrics: the Prometheus text rendered from ess_stats counters, parsed
 * back line by line: HELP/TYPE for every family, label syntax, histogram
 * buckets cumulative and ending in +Inf == _count; the loopback test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_metrics.h"

/* The value of the sample line starting with prefix ("name{labels}"), -1 when absent. */
static double value_of(const char *text, const char *prefix)
{
    const char *at = text;
    size_t n = strlen(prefix);

    while (at != NULL && *at != '\0') {
        if (strncmp(at, prefix, n) == 0 && at[n] == ' ') {
            return strtod(at + n + 1, NULL);
        }
        at = strchr(at, '\n');
        at = at != NULL ? at + 1 : NULL;
    }
    return -1;
}

static int has_line(const char *text, const char *line)
{
    char buf[512];

    snprintf(buf, sizeof(buf), "%s\n", line);
    return strstr(text, buf) != NULL;
}

static char *render_sample(struct ess_stats *st)
{
    struct ess_metrics_sample s;

    ess_metrics_sample_from(&s, st, 1, 0, 42);
    return ess_metrics_render("city2dmv", &s);
}

static void test_counters_and_types(void **state)
{
    static const char *const families[][2] = {
        {"ess_connector_up", "gauge"},
        {"ess_partner_up", "gauge"},
        {"ess_events_consumed_total", "counter"},
        {"ess_deliveries_total", "counter"},
        {"ess_retries_total", "counter"},
        {"ess_parked_total", "counter"},
        {"ess_backlog", "gauge"},
        {"ess_sync_lag_seconds", "histogram"},
    };
    struct ess_stats st;
    char line[256];
    char *text;
    size_t i;

    (void)state;
    ess_stats_init(&st);
    st.consumed = 10;
    st.delivered = 7;
    st.failed = 3;
    st.retried = 2;
    st.parked = 1;
    text = render_sample(&st);
    assert_non_null(text);
    for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        snprintf(line, sizeof(line), "# TYPE %s %s", families[i][0], families[i][1]);
        assert_true(has_line(text, line));
        snprintf(line, sizeof(line), "# HELP %s ", families[i][0]);
        assert_non_null(strstr(text, line));
    }
    assert_true(value_of(text, "ess_connector_up{connector=\"city2dmv\"}") == 1);
    assert_true(value_of(text, "ess_partner_up{connector=\"city2dmv\"}") == 0);
    assert_true(value_of(text, "ess_events_consumed_total{connector=\"city2dmv\"}") == 10);
    assert_true(value_of(text, "ess_deliveries_total{connector=\"city2dmv\",result=\"ok\"}") == 7);
    assert_true(value_of(text, "ess_deliveries_total{connector=\"city2dmv\",result=\"failed\"}") ==
                3);
    assert_true(value_of(text, "ess_deliveries_total{connector=\"city2dmv\",result=\"parked\"}") ==
                1);
    assert_true(value_of(text, "ess_retries_total{connector=\"city2dmv\"}") == 2);
    assert_true(value_of(text, "ess_parked_total{connector=\"city2dmv\"}") == 1);
    assert_true(value_of(text, "ess_backlog{connector=\"city2dmv\"}") == 42);
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(text);
}

static void test_histogram(void **state)
{
    static const long samples[] = {0, 3, 5, 6, 99, 100, 101, 1000, 4000, 400000};
    struct ess_stats st;
    char prefix[128];
    double prev = 0, v;
    char *text;
    size_t i;

    (void)state;
    ess_stats_init(&st);
    for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        ess_stats_lag_add(&st, samples[i]);
    }
    text = render_sample(&st);
    assert_non_null(text);
    for (i = 0; i < ESS_STATS_LAG_BUCKETS; i++) {
        snprintf(prefix, sizeof(prefix),
                 "ess_sync_lag_seconds_bucket{connector=\"city2dmv\",le=\"%g\"}",
                 (double)ess_stats_lag_bounds_ms[i] / 1000.0);
        v = value_of(text, prefix);
        assert_true(v >= prev); /* cumulative */
        prev = v;
    }
    /* <= 5 ms: 0, 3, 5; <= 0.1 s: + 6, 99, 100; <= 1 s: + 101, 1000 */
    assert_true(
        value_of(text, "ess_sync_lag_seconds_bucket{connector=\"city2dmv\",le=\"0.005\"}") == 3);
    assert_true(value_of(text, "ess_sync_lag_seconds_bucket{connector=\"city2dmv\",le=\"0.1\"}") ==
                6);
    assert_true(value_of(text, "ess_sync_lag_seconds_bucket{connector=\"city2dmv\",le=\"1\"}") ==
                8);
    assert_true(value_of(text, "ess_sync_lag_seconds_bucket{connector=\"city2dmv\",le=\"300\"}") ==
                9);
    assert_true(value_of(text, "ess_sync_lag_seconds_bucket{connector=\"city2dmv\",le=\"+Inf\"}") ==
                10);
    assert_true(value_of(text, "ess_sync_lag_seconds_count{connector=\"city2dmv\"}") == 10);
    v = value_of(text, "ess_sync_lag_seconds_sum{connector=\"city2dmv\"}");
    assert_true(v > 405.313 && v < 405.315);
    free(text);
}

static void test_label_escaped(void **state)
{
    struct ess_metrics_sample s;
    char *text;

    (void)state;
    memset(&s, 0, sizeof(s));
    text = ess_metrics_render("a\"b\\c\nd", &s);
    assert_non_null(text);
    assert_non_null(strstr(text, "ess_connector_up{connector=\"a\\\"b\\\\c\\nd\"} 0\n"));
    free(text);
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(ess_metrics_listen_is_loopback("127.0.0.1:9100"));
    assert_true(ess_metrics_listen_is_loopback("127.1.2.3:1"));
    assert_false(ess_metrics_listen_is_loopback("0.0.0.0:9100"));
    assert_false(ess_metrics_listen_is_loopback("10.0.0.1:9100"));
    assert_false(ess_metrics_listen_is_loopback("127.0.0.1"));
    assert_false(ess_metrics_listen_is_loopback("127.0.0.1:0"));
    assert_false(ess_metrics_listen_is_loopback(NULL));
}

static void test_bad_listen(void **state)
{
    struct ess_err err;

    (void)state;
    ess_err_clear(&err);
    assert_null(ess_metrics_new("localhost:x", "c", &err));
    assert_int_equal(err.code, ESS_ECONFIG);
    assert_non_null(strstr(err.msg, "metrics_listen"));
    ess_metrics_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_types), cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_label_escaped),      cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_bad_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
