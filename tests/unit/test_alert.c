/* ess_alert: each rule fires past its threshold and clears below it, once
 * each (announced changes are not repeated; unannounced ones are), rules
 * with a 0 threshold stay off, and the message carries every field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ess_alert.h"

static struct ess_alerts defaults(void)
{
    struct ess_alerts r;

    memset(&r, 0, sizeof(r));
    r.failures.count = 3;
    r.failures.within_sec = 300;
    r.partner_down_sec = 60;
    r.backlog_age_sec = 300;
    r.parked = 1;
    return r;
}

static struct ess_alert_input quiet(long long now_ms)
{
    struct ess_alert_input in;

    memset(&in, 0, sizeof(in));
    in.now_ms = now_ms;
    in.backlog_age_ms = -1;
    return in;
}

/* Evaluate and announce everything; returns the number of changes. */
static size_t step(struct ess_alert *a, const struct ess_alert_input *in,
                   struct ess_alert_change *out)
{
    size_t i, n = ess_alert_eval(a, in, out, ESS_ALERT__COUNT);

    for (i = 0; i < n; i++) {
        ess_alert_announced(a, out[i].rule, out[i].fired);
    }
    return n;
}

static void test_failures_window(void **state)
{
    struct ess_alerts r = defaults();
    struct ess_alert *a = ess_alert_new(&r);
    struct ess_alert_change ch[ESS_ALERT__COUNT];
    struct ess_alert_input in = quiet(1000);

    (void)state;
    assert_int_equal(step(a, &in, ch), 0);
    in.now_ms = 2000;
    in.failed = 3; /* three failures: not more than 3 */
    assert_int_equal(step(a, &in, ch), 0);
    in.now_ms = 3000;
    in.failed = 4;
    assert_int_equal(step(a, &in, ch), 1);
    assert_int_equal(ch[0].rule, ESS_ALERT_FAILURES);
    assert_int_equal(ch[0].fired, 1);
    assert_true(ch[0].value == 4 && ch[0].threshold == 3);
    assert_true(ess_alert_is_open(a, ESS_ALERT_FAILURES));
    in.now_ms = 4000; /* still open: nothing new to say */
    assert_int_equal(step(a, &in, ch), 0);
    /* 300 s after the 4th failure's sample the window holds none of them */
    in.now_ms = 3000 + 300000;
    assert_int_equal(step(a, &in, ch), 1);
    assert_int_equal(ch[0].fired, 0);
    assert_true(ch[0].value == 0);
    ess_alert_free(a);
}

/* One evaluation a second from t0 to t1 (seconds) with the failed counter at
 * failed; the failures rule's changes: +1 per firing, -1 per clearing. */
static int run_secs(struct ess_alert *a, long long t0, long long t1, unsigned long long failed)
{
    struct ess_alert_change ch[ESS_ALERT__COUNT];
    struct ess_alert_input in = quiet(0);
    int changes = 0;
    size_t i, n;

    in.failed = failed;
    for (in.now_ms = t0 * 1000; in.now_ms <= t1 * 1000; in.now_ms += 1000) {
        n = step(a, &in, ch);
        for (i = 0; i < n; i++) {
            changes += ch[i].rule == ESS_ALERT_FAILURES ? (ch[i].fired ? 1 : -1) : 0;
        }
    }
    return changes;
}

/* Samples are kept only when the counter moves, in a ring that grows with
 * them: counts stay exact as it grows, after a reload that widens the window,
 * and at the hour's limit (where the oldest give way). */
static void test_failures_window_ring(void **state)
{
    struct ess_alerts r = defaults();
    struct ess_alert *a;
    unsigned long long failed = 0;
    long long t;

    (void)state;
    r.failures.count = 5;
    r.failures.within_sec = 10;
    a = ess_alert_new(&r);
    assert_non_null(a);
    assert_int_equal(run_secs(a, 1, 60, failed), 0); /* nothing moves: one sample */
    /* 2 failures per 10 s for 100 s (20 samples: the ring grows), never above 5 */
    for (t = 61; t <= 160; t += 5) {
        assert_int_equal(run_secs(a, t, t + 4, ++failed), 0);
    }
    failed += 6; /* 6 at once: above 5 */
    assert_int_equal(run_secs(a, 161, 161, failed), 1);
    assert_int_equal(run_secs(a, 162, 180, failed), -1); /* out of the window */
    /* widened to 60 s: what happened 20-60 s ago counts at once (6 + 8 + 3) */
    r.failures.within_sec = 60;
    ess_alert_set_rules(a, &r);
    failed += 3;
    assert_int_equal(run_secs(a, 181, 181, failed), 1);
    ess_alert_free(a);

    /* one failure a second for longer than the ring's hour: 3,600 a window */
    r.failures.count = 3650;
    r.failures.within_sec = 3600;
    a = ess_alert_new(&r);
    for (t = 1; t <= 4000; t++) {
        assert_int_equal(run_secs(a, t, t, ++failed), 0);
    }
    failed += 100;
    assert_int_equal(run_secs(a, 4001, 4001, failed), 1);
    ess_alert_free(a);
}

static void test_partner_down_after_threshold(void **state)
{
    struct ess_alerts r = defaults();
    struct ess_alert *a = ess_alert_new(&r);
    struct ess_alert_change ch[ESS_ALERT__COUNT];
    struct ess_alert_input in = quiet(0);

    (void)state;
    r.failures.count = 0; /* off: only the breaker matters here */
    ess_alert_set_rules(a, &r);
    in.partner_down = 1;
    in.failed = 100;
    assert_int_equal(step(a, &in, ch), 0);
    in.now_ms = 60000; /* exactly 60 s: not longer */
    assert_int_equal(step(a, &in, ch), 0);
    in.now_ms = 61000;
    assert_int_equal(step(a, &in, ch), 1);
    assert_int_equal(ch[0].rule, ESS_ALERT_PARTNER_DOWN);
    assert_int_equal(ch[0].fired, 1);
    assert_true(ch[0].value == 61 && ch[0].threshold == 60);
    in.now_ms = 62000;
    in.partner_down = 0;
    assert_int_equal(step(a, &in, ch), 1);
    assert_int_equal(ch[0].fired, 0);
    /* down again: the clock starts afresh */
    in.partner_down = 1;
    in.now_ms = 63000;
    assert_int_equal(step(a, &in, ch), 0);
    ess_alert_free(a);
}

static void test_backlog_parked_canary(void **state)
{
    struct ess_alerts r = defaults();
    struct ess_alert *a = ess_alert_new(&r);
    struct ess_alert_change ch[ESS_ALERT__COUNT];
    struct ess_alert_input in = quiet(0);
    json_t *open;

    (void)state;
    in.backlog_age_ms = 301000;
    in.open_parked = 2;
    in.canary_on = 1;
    in.canary_failures = 1;
    assert_int_equal(step(a, &in, ch), 3);
    assert_int_equal(ch[0].rule, ESS_ALERT_BACKLOG_AGE);
    assert_int_equal(ch[1].rule, ESS_ALERT_PARKED);
    assert_true(ch[1].value == 2);
    assert_int_equal(ch[2].rule, ESS_ALERT_CANARY);
    open = ess_alert_open_json(a);
    assert_int_equal(json_array_size(open), 3);
    assert_string_equal(json_string_value(json_array_get(open, 0)), "backlog_age");
    json_decref(open);
    in.backlog_age_ms = -1;
    in.open_parked = 0;
    in.canary_failures = 0;
    in.now_ms = 1000;
    assert_int_equal(step(a, &in, ch), 3);
    assert_int_equal(ch[0].fired + ch[1].fired + ch[2].fired, 0);
    ess_alert_free(a);
}

static void test_off_rules(void **state)
{
    struct ess_alerts r;
    struct ess_alert *a;
    struct ess_alert_change ch[ESS_ALERT__COUNT];
    struct ess_alert_input in = quiet(1000000);

    (void)state;
    memset(&r, 0, sizeof(r));
    r.failures.within_sec = 300;
    a = ess_alert_new(&r);
    in.failed = 1000;
    in.partner_down = 1;
    in.backlog_age_ms = 1000000000;
    in.open_parked = 5;
    in.canary_failures = 5; /* no canary configured */
    assert_int_equal(step(a, &in, ch), 0);
    in.now_ms += 100000000;
    assert_int_equal(step(a, &in, ch), 0);
    ess_alert_free(a);
}

static void test_unannounced_repeats(void **state)
{
    struct ess_alerts r = defaults();
    struct ess_alert *a = ess_alert_new(&r);
    struct ess_alert_change ch[ESS_ALERT__COUNT];
    struct ess_alert_input in = quiet(0);

    (void)state;
    in.open_parked = 1;
    assert_int_equal(ess_alert_eval(a, &in, ch, ESS_ALERT__COUNT), 1);
    /* not announced (the bus was down): still pending on the next turn */
    in.now_ms = 1000;
    assert_int_equal(ess_alert_eval(a, &in, ch, ESS_ALERT__COUNT), 1);
    ess_alert_announced(a, ch[0].rule, ch[0].fired);
    in.now_ms = 2000;
    assert_int_equal(ess_alert_eval(a, &in, ch, ESS_ALERT__COUNT), 0);
    /* fired and cleared before it could be announced: nothing to say */
    in.open_parked = 0;
    assert_int_equal(ess_alert_eval(a, &in, ch, 0), 0);
    ess_alert_free(a);
}

static void test_rule_names(void **state)
{
    int r;

    (void)state;
    for (r = 0; r < ESS_ALERT__COUNT; r++) {
        assert_string_not_equal(ess_alert_rule_name((enum ess_alert_rule)r), "?");
    }
    assert_string_equal(ess_alert_rule_name(ESS_ALERT__COUNT), "?");
}

static void test_message(void **state)
{
    struct ess_alert_change c = {ESS_ALERT_FAILURES, 1, 5, 3};
    char *text = ess_alert_message_json("city2dmv", "h:1", "h", 1, "0.1.0", &c, 1700000000123LL);
    json_t *o = json_loads(text, 0, NULL);

    (void)state;
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "connector")), "city2dmv");
    assert_string_equal(json_string_value(json_object_get(o, "rule")), "failures");
    assert_string_equal(json_string_value(json_object_get(o, "state")), "fired");
    assert_true(json_number_value(json_object_get(o, "value")) == 5);
    assert_true(json_number_value(json_object_get(o, "threshold")) == 3);
    assert_string_equal(json_string_value(json_object_get(o, "ts")), "2023-11-14T22:13:20.123Z");
    assert_string_equal(json_string_value(json_object_get(o, "event")), "failures fired");
    assert_string_equal(json_string_value(json_object_get(o, "detail")),
                        "5 failed attempts in the window (alert above 3)");
    json_decref(o);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failures_window),
        cmocka_unit_test(test_failures_window_ring),
        cmocka_unit_test(test_partner_down_after_threshold),
        cmocka_unit_test(test_backlog_parked_canary),
        cmocka_unit_test(test_off_rules),
        cmocka_unit_test(test_unannounced_repeats),
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
