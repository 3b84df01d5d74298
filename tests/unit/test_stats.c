/* ess_stats: percentiles and a heartbeat with every DESIGN.md field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>
#include <jansson.h>

#include "ess_stats.h"

static void test_percentiles(void **state)
{
    struct ess_stats s;
    long i;

    (void)state;
    ess_stats_init(&s);
    assert_int_equal(ess_stats_lag_pct(&s, 99), 0);
    for (i = 100; i >= 1; i--) {
        ess_stats_lag_add(&s, i);
    }
    assert_int_equal(ess_stats_lag_pct(&s, 50), 50);
    assert_int_equal(ess_stats_lag_pct(&s, 99), 99);
    assert_int_equal(ess_stats_lag_pct(&s, 100), 100);
    assert_int_equal(ess_stats_lag_pct(&s, 0), 1);
}

static void test_ring_keeps_recent(void **state)
{
    struct ess_stats s;
    long i;

    (void)state;
    ess_stats_init(&s);
    for (i = 0; i < ESS_STATS_LAG_N; i++) {
        ess_stats_lag_add(&s, 1000);
    }
    for (i = 0; i < ESS_STATS_LAG_N; i++) {
        ess_stats_lag_add(&s, 2);
    }
    assert_int_equal(ess_stats_lag_pct(&s, 99), 2);
}

static void test_heartbeat_fields(void **state)
{
    static const char *const fields[] = {
        "connector", "instance", "host",       "pid",        "version",   "ts",
        "uptime_s",  "state",    "consumed",   "delivered",  "failed",    "retried",
        "parked",    "backlog",  "lag_ms_p50", "lag_ms_p99", "last_error"};
    struct ess_stats s;
    struct ess_heartbeat hb = {.connector = "city2dmv",
                               .instance = "h:1",
                               .host = "h",
                               .version = "0.1.0",
                               .state = "ok",
                               .last_error = NULL,
                               .pid = 1,
                               .ts_ms = 1700000000123LL,
                               .uptime_s = 5,
                               .backlog = 7};
    json_t *o;
    char *text;
    size_t i;

    (void)state;
    ess_stats_init(&s);
    s.delivered = 3;
    text = ess_stats_heartbeat_json(&s, &hb);
    assert_non_null(text);
    o = json_loads(text, 0, NULL);
    assert_non_null(o);
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        assert_non_null(json_object_get(o, fields[i]));
    }
    assert_int_equal(json_integer_value(json_object_get(o, "delivered")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "backlog")), 7);
    assert_string_equal(json_string_value(json_object_get(o, "ts")), "2023-11-14T22:13:20.123Z");
    assert_string_equal(json_string_value(json_object_get(o, "last_error")), "");
    json_decref(o);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_ring_keeps_recent),
        cmocka_unit_test(test_heartbeat_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
