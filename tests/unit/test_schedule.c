/* ess_schedule: day lists, clock times and local date-times parsed with clear
 * reasons; open / next opening for weekly windows in IANA zones, overnight
 * windows, blackouts, DST gaps and repeats (America/Chicago 2026), half-hour
 * zones; and the manifest keys delivery_windows / blackouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_manifest.h"
#include "ess_schedule.h"

/* Epoch seconds (UTC), computed with Python's zoneinfo. */
#define FRI_1800Z 1795802400LL /* 2026-11-27 12:00 CST, a Friday */
#define SAT_0200Z 1795831200LL /* Fri 20:00 CST */
#define MON_1200Z 1796040000LL /* Mon 2026-11-30 06:00 CST */
#define FRI_2159Z 1795816740LL /* 2026-11-27 21:59Z */
#define SAT_0100Z 1795827600LL
#define NEXT_FRI_2200Z 1796421600LL
#define SPRING_0700Z 1772953200LL /* 2026-03-08 01:00 CST, before the gap */
#define SPRING_0800Z 1772956800LL /* 03:00 CDT: the gap's end */
#define FALL_0615Z 1793513700LL   /* 2026-11-01 01:15 CDT */
#define FALL_0645Z 1793515500LL   /* 01:45 CDT */
#define FALL_0700Z 1793516400LL   /* 01:00 CST, the second 01:00 */
#define FALL_0715Z 1793517300LL   /* 01:15 CST */
#define XMAS_1200Z 1798200000LL
#define BO_FROM 1798156800LL  /* 2026-12-24T18:00 America/Chicago */
#define BO_TO 1798286400LL    /* 2026-12-26T06:00 America/Chicago */
#define IST_0900 1795750200LL /* 2026-11-27 09:00 Asia/Kolkata (+05:30) */

static const struct {
    const char *text;
    int rc;
    unsigned days;
} day_cases[] = {
    {"mon-fri", 0, 0x1f},     {"sat,sun", 0, 0x60},   {"fri-mon", 0, 0x71}, {"daily", 0, 0x7f},
    {"mon,wed-fri", 0, 0x1d}, {"sun", 0, 0x40},       {"mon-sun", 0, 0x7f}, {"", -1, 0},
    {"mon-", -1, 0},          {"fur", -1, 0},         {"mon,,tue", -1, 0},  {"mon,", -1, 0},
    {"Monday", -1, 0},        {"mon-fri-sat", -1, 0},
};

static void test_days(void **state)
{
    char why[200];
    unsigned days;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(day_cases) / sizeof(day_cases[0]); i++) {
        why[0] = '\0';
        assert_int_equal(ess_schedule_parse_days(day_cases[i].text, &days, why, sizeof(why)),
                         day_cases[i].rc);
        if (day_cases[i].rc == 0) {
            assert_int_equal(days, day_cases[i].days);
        } else {
            assert_true(strlen(why) > 0);
        }
    }
    ess_schedule_parse_days("fur", &days, why, sizeof(why));
    assert_non_null(strstr(why, "'fur' is not a day"));
}

static void test_clock(void **state)
{
    char why[200];
    int min = -1;

    (void)state;
    assert_int_equal(ess_schedule_parse_clock("06:00", 0, &min, why, sizeof(why)), 0);
    assert_int_equal(min, 360);
    assert_int_equal(ess_schedule_parse_clock("23:59", 0, &min, why, sizeof(why)), 0);
    assert_int_equal(min, 1439);
    assert_int_equal(ess_schedule_parse_clock("24:00", 1, &min, why, sizeof(why)), 0);
    assert_int_equal(min, 1440);
    assert_int_equal(ess_schedule_parse_clock("24:00", 0, &min, why, sizeof(why)), -1);
    assert_int_equal(ess_schedule_parse_clock("6:00", 0, &min, why, sizeof(why)), -1);
    assert_int_equal(ess_schedule_parse_clock("12:60", 0, &min, why, sizeof(why)), -1);
    assert_int_equal(ess_schedule_parse_clock("24:01", 1, &min, why, sizeof(why)), -1);
    assert_int_equal(ess_schedule_parse_clock("noon", 0, &min, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "'noon' is not a time of day HH:MM"));
}

static void test_local(void **state)
{
    char why[200];
    long long t = 0;

    (void)state;
    assert_int_equal(
        ess_schedule_parse_local("2026-12-24T18:00", "America/Chicago", &t, why, sizeof(why)), 0);
    assert_true(t == BO_FROM);
    assert_int_equal(ess_schedule_parse_local("2026-12-24T18:00:30", "UTC", &t, why, sizeof(why)),
                     0);
    assert_true(t == 1798135230LL);
    assert_int_equal(ess_schedule_parse_local("2028-02-29T00:00", "UTC", &t, why, sizeof(why)), 0);
    assert_true(t == 1835395200LL);
    assert_int_equal(ess_schedule_parse_local("2026-02-29T00:00", "UTC", &t, why, sizeof(why)), -1);
    assert_int_equal(ess_schedule_parse_local("2026-12-24 18:00", "UTC", &t, why, sizeof(why)), -1);
    assert_int_equal(ess_schedule_parse_local("2026-12-24T18", "UTC", &t, why, sizeof(why)), -1);
    assert_int_equal(ess_schedule_parse_local("2026-13-01T00:00", "UTC", &t, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "YYYY-MM-DDTHH:MM[:SS]"));
}

static struct ess_schedule_window win(const char *days, int from, int to, const char *tz)
{
    struct ess_schedule_window w = {0, from, to, (char *)tz};
    char why[200];

    assert_int_equal(ess_schedule_parse_days(days, &w.days, why, sizeof(why)), 0);
    return w;
}

static void test_weekday_window(void **state)
{
    struct ess_schedule_window w = win("mon-fri", 360, 1200, "America/Chicago");
    struct ess_schedule s = {&w, 1, NULL, 0};

    (void)state;
    assert_int_equal(ess_schedule_open(&s, FRI_1800Z), 1);
    assert_true(ess_schedule_next_open(&s, FRI_1800Z) == FRI_1800Z);
    assert_int_equal(ess_schedule_open(&s, SAT_0200Z - 1), 1);       /* 19:59:59 */
    assert_int_equal(ess_schedule_open(&s, SAT_0200Z), 0);           /* 20:00: [from, to) */
    assert_true(ess_schedule_next_open(&s, SAT_0200Z) == MON_1200Z); /* over the weekend */
    assert_int_equal(ess_schedule_open(&s, MON_1200Z - 1), 0);
    assert_int_equal(ess_schedule_open(&s, MON_1200Z), 1);
}

static void test_overnight_window(void **state)
{
    struct ess_schedule_window w = win("fri", 22 * 60, 2 * 60, "UTC");
    struct ess_schedule s = {&w, 1, NULL, 0};

    (void)state;
    assert_int_equal(ess_schedule_open(&s, FRI_2159Z), 0);
    assert_int_equal(ess_schedule_open(&s, FRI_2159Z + 60), 1);
    assert_int_equal(ess_schedule_open(&s, SAT_0100Z), 1); /* still Friday's window */
    assert_int_equal(ess_schedule_open(&s, SAT_0200Z), 0);
    assert_true(ess_schedule_next_open(&s, FRI_2159Z) == FRI_2159Z + 60);
    assert_true(ess_schedule_next_open(&s, SAT_0200Z) == NEXT_FRI_2200Z);
}

static void test_half_hour_zone(void **state)
{
    struct ess_schedule_window w = win("daily", 9 * 60, 17 * 60, "Asia/Kolkata");
    struct ess_schedule s = {&w, 1, NULL, 0};

    (void)state;
    assert_int_equal(ess_schedule_open(&s, IST_0900 - 1), 0);
    assert_int_equal(ess_schedule_open(&s, IST_0900), 1);
    assert_true(ess_schedule_next_open(&s, IST_0900 - 3600) == IST_0900);
}

static void test_dst_gap(void **state)
{
    /* 02:30 does not exist on 2026-03-08 in Chicago: it opens when the gap ends. */
    struct ess_schedule_window w = win("daily", 150, 240, "America/Chicago");
    struct ess_schedule s = {&w, 1, NULL, 0};

    (void)state;
    assert_int_equal(ess_schedule_open(&s, SPRING_0700Z), 0);
    assert_int_equal(ess_schedule_open(&s, SPRING_0800Z - 1), 0); /* 01:59:59 CST */
    assert_int_equal(ess_schedule_open(&s, SPRING_0800Z), 1);     /* 03:00 CDT */
    assert_true(ess_schedule_next_open(&s, SPRING_0700Z) == SPRING_0800Z);
}

static void test_dst_repeat(void **state)
{
    /* 01:00-01:30 happens twice on 2026-11-01 in Chicago: open both times. */
    struct ess_schedule_window w = win("sun", 60, 90, "America/Chicago");
    struct ess_schedule s = {&w, 1, NULL, 0};

    (void)state;
    assert_int_equal(ess_schedule_open(&s, FALL_0615Z), 1);
    assert_int_equal(ess_schedule_open(&s, FALL_0645Z), 0);
    assert_int_equal(ess_schedule_open(&s, FALL_0715Z), 1);
    assert_true(ess_schedule_next_open(&s, FALL_0645Z) == FALL_0700Z);
}

static void test_blackouts(void **state)
{
    struct ess_schedule_blackout b = {BO_FROM, BO_TO, (char *)"America/Chicago"};
    struct ess_schedule only = {NULL, 0, &b, 1};
    struct ess_schedule_window w = win("mon-fri", 360, 1200, "America/Chicago");
    struct ess_schedule both = {&w, 1, &b, 1};

    (void)state;
    assert_int_equal(ess_schedule_open(&only, BO_FROM - 1), 1);
    assert_int_equal(ess_schedule_open(&only, BO_FROM), 0);
    assert_int_equal(ess_schedule_open(&only, XMAS_1200Z), 0);
    assert_int_equal(ess_schedule_open(&only, BO_TO), 1);
    assert_true(ess_schedule_next_open(&only, XMAS_1200Z) == BO_TO);
    /* Ends Saturday 06:00: the next weekday window is Monday 06:00 CST. */
    assert_int_equal(ess_schedule_open(&both, BO_TO), 0);
    assert_true(ess_schedule_next_open(&both, XMAS_1200Z) == BO_TO + 2 * 86400);
}

static void test_empty(void **state)
{
    struct ess_schedule s = {NULL, 0, NULL, 0};

    (void)state;
    assert_int_equal(ess_schedule_empty(&s), 1);
    assert_int_equal(ess_schedule_open(&s, FRI_1800Z), 1);
    assert_true(ess_schedule_next_open(&s, FRI_1800Z) == FRI_1800Z);
    ess_schedule_fini(&s);
}

static void test_manifest_keys(void **state)
{
    static const char text[] =
        "id: dmv\nkind: push\nlisten_topic: a.b\nkey: k\ntarget_url: https://x.example/\n"
        "delivery_windows:\n"
        "  - {days: mon-fri, from: \"06:00\", to: \"20:00\", tz: America/Chicago}\n"
        "  - {from: \"22:00\", to: \"02:00\"}\n"
        "blackouts:\n"
        "  - {from: \"2026-12-24T18:00\", to: \"2026-12-26T06:00\", tz: America/Chicago}\n";
    struct ess_manifest *m = NULL;
    struct ess_diags d;

    (void)state;
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_parse(text, strlen(text), "t.yml", &m, &d), ESS_OK);
    assert_int_equal(m->schedule.n_windows, 2);
    assert_int_equal(m->schedule.windows[0].days, 0x1f);
    assert_int_equal(m->schedule.windows[0].from_min, 360);
    assert_int_equal(m->schedule.windows[0].to_min, 1200);
    assert_string_equal(m->schedule.windows[0].tz, "America/Chicago");
    assert_int_equal(m->schedule.windows[1].days, ESS_SCHEDULE_EVERY_DAY);
    assert_string_equal(m->schedule.windows[1].tz, "UTC");
    assert_int_equal(m->schedule.n_blackouts, 1);
    assert_true(m->schedule.blackouts[0].from == BO_FROM);
    assert_true(m->schedule.blackouts[0].to == BO_TO);
    ess_manifest_free(m);
    ess_diags_fini(&d);
}

static void test_manifest_errors(void **state)
{
    static const char text[] =
        "id: dmv\nkind: push\nlisten_topic: a.b\nkey: k\ntarget_url: https://x.example/\n"
        "delivery_windows: {days: mon}\n";
    struct ess_manifest *m = NULL;
    struct ess_diags d;

    (void)state;
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_parse(text, strlen(text), "t.yml", &m, &d), ESS_EMANIFEST);
    assert_null(m);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 6);
    assert_int_equal(d.v[0].column, 19);
    assert_string_equal(d.v[0].msg, "delivery_windows: expected a list of mappings, got a mapping");
    ess_diags_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_local),
        cmocka_unit_test(test_weekday_window),
        cmocka_unit_test(test_overnight_window),
        cmocka_unit_test(test_half_hour_zone),
        cmocka_unit_test(test_dst_gap),
        cmocka_unit_test(test_dst_repeat),
        cmocka_unit_test(test_blackouts),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_manifest_keys),
        cmocka_unit_test(test_manifest_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
