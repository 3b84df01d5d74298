/*
 * test_transform -- every transform step as a table: spec, input value (and the
 * record concat reads), expected value or expected park reason. Compile errors
 * with their step index; TZ is restored after zone conversions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_transform.h"

/* Cases name only what they need; the rest is zero. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MISSING NULL

struct tcase {
    const char *name;
    const char *spec; /* JSON */
    const char *in;   /* JSON value; NULL: the field is missing */
    const char *want; /* JSON value; NULL: still missing (or an error) */
    int want_rc;
    const char *want_msg;
    const char *record; /* JSON object for concat; NULL: {} */
};

#define DATE_US "{\"date\": {\"from\": \"%Y-%m-%d\", \"to\": \"%m/%d/%Y\"}}"
#define NY_UTC "{\"tz\": {\"from\": \"America/New_York\", \"to\": \"UTC\"}}"

static const struct tcase cases[] = {
    /* date */
    {"date", DATE_US, "\"2026-03-01\"", "\"03/01/2026\""},
    {"date no match", DATE_US, "\"2026-13-45\"", NULL, ESS_ESHAPE,
     "transforms.f: '2026-13-45' does not match %Y-%m-%d"},
    {"date day that does not exist", DATE_US, "\"2026-02-31\"", NULL, ESS_ESHAPE,
     "transforms.f: '2026-02-31' does not match %Y-%m-%d"},
    {"date trailing text", DATE_US, "\"2026-03-01x\"", NULL, ESS_ESHAPE,
     "transforms.f: '2026-03-01x' does not match %Y-%m-%d"},
    {"date missing stays missing", DATE_US, MISSING, MISSING},
    {"date null stays null", DATE_US, "null", "null"},
    {"date on an object", DATE_US, "{\"a\": 1}", NULL, ESS_ESHAPE,
     "transforms.f: date applies to text, got an object"},
    {"date on an array", DATE_US, "[1]", NULL, ESS_ESHAPE,
     "transforms.f: date applies to text, got an array"},
    {"date from an integer", "{\"date\": {\"from\": \"%Y%m%d\", \"to\": \"%Y-%m-%d\"}}", "20260301",
     "\"2026-03-01\""},
    {"date iso8601 in, fraction and zone accepted",
     "{\"date\": {\"from\": \"iso8601\", \"to\": \"%d.%m.%Y %H:%M\"}}",
     "\"2026-03-01T10:20:30.123Z\"", "\"01.03.2026 10:20\""},
    {"date iso8601 in with offset", "{\"date\": {\"from\": \"iso8601\", \"to\": \"%H:%M\"}}",
     "\"2026-03-01T10:20+05:30\"", "\"10:20\""},
    {"date iso8601 bad", "{\"date\": {\"from\": \"iso8601\", \"to\": \"%Y\"}}",
     "\"2026-03-01T25:00\"", NULL, ESS_ESHAPE,
     "transforms.f: '2026-03-01T25:00' does not match iso8601"},
    {"date iso8601 out", "{\"date\": {\"from\": \"%m/%d/%Y\", \"to\": \"iso8601\"}}",
     "\"03/01/2026\"", "\"2026-03-01T00:00:00\""},
    {"date day of year and weekday", "{\"date\": {\"from\": \"%Y-%m-%d\", \"to\": \"%j %a\"}}",
     "\"2026-03-01\"", "\"060 Sun\""},
    {"date two-digit month-year", "{\"date\": {\"from\": \"%Y-%m-%d\", \"to\": \"%m%y\"}}",
     "\"2026-03-01\"", "\"0326\""},
    /* tz */
    {"tz summer", NY_UTC, "\"2026-07-01T08:00:00\"", "\"2026-07-01T12:00:00Z\""},
    {"tz winter", NY_UTC, "\"2026-01-15T08:00:00\"", "\"2026-01-15T13:00:00Z\""},
    {"tz to an offset zone", "{\"tz\": {\"from\": \"UTC\", \"to\": \"Europe/Berlin\"}}",
     "\"2026-07-01T12:00:00\"", "\"2026-07-01T14:00:00+02:00\""},
    {"tz west of UTC", "{\"tz\": {\"from\": \"UTC\", \"to\": \"America/Los_Angeles\"}}",
     "\"2026-01-01T02:00:00\"", "\"2025-12-31T18:00:00-08:00\""},
    {"tz input offset wins", "{\"tz\": {\"from\": \"Asia/Tokyo\", \"to\": \"UTC\"}}",
     "\"2026-07-01T12:00:00+05:30\"", "\"2026-07-01T06:30:00Z\""},
    {"tz DST gap", NY_UTC, "\"2026-03-08T02:30:00\"", NULL, ESS_ESHAPE,
     "transforms.f: '2026-03-08T02:30:00' does not exist in America/New_York (a DST gap)"},
    {"tz custom format",
     "{\"tz\": {\"from\": \"America/New_York\", \"to\": \"UTC\", \"format\": \"%Y-%m-%d %H:%M\"}}",
     "\"2026-07-01 08:00\"", "\"2026-07-01 12:00\""},
    {"tz no match", NY_UTC, "\"tomorrow\"", NULL, ESS_ESHAPE,
     "transforms.f: 'tomorrow' does not match iso8601"},
    /* case, trim, truncate, pad */
    {"upper", "\"upper\"", "\"Main st \\u00e9\"", "\"MAIN ST \\u00e9\""},
    {"lower", "\"lower\"", "\"MAIN St\"", "\"main st\""},
    {"upper on an integer", "\"upper\"", "42", "\"42\""},
    {"upper on a boolean", "\"upper\"", "true", "\"TRUE\""},
    {"upper with empty arguments", "{\"upper\": {}}", "\"a\"", "\"A\""},
    {"trim", "\"trim\"", "\"  a b \\t\\n\"", "\"a b\""},
    {"trim all blank", "\"trim\"", "\"   \"", "\"\""},
    {"truncate counts characters", "{\"truncate\": {\"length\": 3}}", "\"h\\u00e9llo\"",
     "\"h\\u00e9l\""},
    {"truncate shorter unchanged", "{\"truncate\": {\"length\": \"30\"}}", "\"abc\"", "\"abc\""},
    {"pad right-aligned zeros", "{\"pad\": {\"width\": 5, \"char\": \"0\", \"align\": \"right\"}}",
     "42", "\"00042\""},
    {"pad default left with spaces", "{\"pad\": {\"width\": 5}}", "\"ab\"", "\"ab   \""},
    {"pad longer unchanged", "{\"pad\": {\"width\": 2}}", "\"abcdef\"", "\"abcdef\""},
    {"pad multibyte char", "{\"pad\": {\"width\": 3, \"char\": \"\\u00b7\"}}", "\"\\u00e9\"",
     "\"\\u00e9\\u00b7\\u00b7\""},
    /* default, const */
    {"default when missing", "{\"default\": {\"value\": \"N/A\"}}", MISSING, "\"N/A\""},
    {"default when null", "{\"default\": {\"value\": \"N/A\"}}", "null", "\"N/A\""},
    {"default keeps a value", "{\"default\": {\"value\": \"N/A\"}}", "0", "0"},
    {"const", "{\"const\": {\"value\": \"HMS\"}}", "\"x\"", "\"HMS\""},
    {"const when missing", "{\"const\": {\"value\": 7}}", MISSING, "\"7\""},
    /* concat */
    {"concat skips missing and null",
     "{\"concat\": {\"fields\": [\"first\", \"mid\", \"nope\", \"p.last\"], \"sep\": \" \"}}",
     MISSING, "\"Ada Lovelace\"", 0, NULL,
     "{\"first\": \"Ada\", \"mid\": null, \"p\": {\"last\": \"Lovelace\"}}"},
    {"concat numbers, no separator", "{\"concat\": {\"fields\": [\"a\", \"b\"]}}", MISSING,
     "\"12true\"", 0, NULL, "{\"a\": 12, \"b\": true}"},
    {"concat of an object", "{\"concat\": {\"fields\": [\"a\"]}}", MISSING, NULL, ESS_ESHAPE,
     "transforms.f: concat applies to text, got an object", "{\"a\": {}}"},
    /* map */
    {"map hit", "{\"map\": {\"A\": \"1\", \"true\": \"Y\", \"3\": \"C\"}}", "\"A\"", "\"1\""},
    {"map miss keeps the value", "{\"map\": {\"A\": \"1\"}}", "5", "5"},
    {"map boolean and integer by text", "{\"map\": {\"true\": \"Y\", \"3\": \"C\"}}", "3", "\"C\""},
    {"map null stays", "{\"map\": {\"\": \"E\"}}", "null", "null"},
    {"map on an array", "{\"map\": {\"A\": \"1\"}}", "[\"A\"]", NULL, ESS_ESHAPE,
     "transforms.f: map applies to text, got an array"},
    /* chains */
    {"chain in order", "[\"trim\", \"upper\", {\"truncate\": {\"length\": 3}}]", "\"  abcd \"",
     "\"ABC\""},
    {"chain default then pad",
     "[{\"default\": {\"value\": \"7\"}}, {\"pad\": {\"width\": 3, "
     "\"char\": \"0\", \"align\": \"right\"}}]",
     MISSING, "\"007\""},
    {"chain stops at the first error", "[\"trim\", " DATE_US ", \"upper\"]", "\" 2026-1-1x \"",
     NULL, ESS_ESHAPE, "transforms.f: '2026-1-1x' does not match %Y-%m-%d"},
};

static json_t *load(const char *text)
{
    json_t *j;

    if (text == NULL) {
        return NULL;
    }
    j = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    return j;
}

static void check_case(const struct tcase *c)
{
    struct ess_transform *t = NULL;
    struct ess_err err;
    json_t *spec = load(c->spec);
    json_t *in = load(c->in);
    json_t *rec = c->record != NULL ? load(c->record) : json_object();
    json_t *want = load(c->want);
    json_t *out = NULL;
    int rc;

    ess_err_clear(&err);
    assert_int_equal(ess_transform_new("f", spec, &t, NULL, &err), ESS_OK);
    rc = ess_transform_apply(t, rec, in, &out, &err);
    if (rc != c->want_rc || (c->want_msg != NULL && strcmp(err.msg, c->want_msg) != 0)) {
        print_error("case '%s': rc %d, msg '%s'\n", c->name, rc, err.msg);
    }
    assert_int_equal(rc, c->want_rc);
    if (c->want_rc != ESS_OK) {
        assert_string_equal(err.msg, c->want_msg);
        assert_null(out);
    } else if (want == NULL || out == NULL) {
        assert_true(want == out);
    } else if (!json_equal(out, want)) {
        char *got = json_dumps(out, JSON_ENCODE_ANY);

        print_error("case '%s': got %s, want %s\n", c->name, got, c->want);
        free(got);
        fail();
    }
    json_decref(out);
    json_decref(want);
    json_decref(rec);
    json_decref(in);
    json_decref(spec);
    ess_transform_free(t);
}

static void test_apply_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cases[i]);
    }
}

struct bad_case {
    const char *spec;
    int step; /* index in a list spec, -1 for the spec as a whole */
    const char *msg;
};

static const struct bad_case bad_cases[] = {
    {"\"shout\"", -1,
     "'shout' is not a transform (valid: date, tz, upper, lower, trim, truncate, pad, default, "
     "const, concat, map)"},
    {"[\"trim\", {\"truncate\": {\"length\": \"x\"}}]", 1,
     "truncate: length must be an integer 1..10000, got 'x'"},
    {"[\"trim\", {\"truncate\": {\"length\": 10001}}]", 1,
     "truncate: length must be an integer 1..10000, got '10001'"},
    {"[\"trim\", [\"upper\"]]", 1,
     "a step is a name (upper) or one {name: arguments} mapping; use a list for several steps"},
    {"{\"date\": {\"from\": \"%Y\", \"to\": \"%\"}}", -1,
     "date.to: '% ' is not a strftime conversion in \"%\""},
    {"{\"date\": {\"from\": \"\", \"to\": \"%Y\"}}", -1, "date.from is empty"},
    {"{\"tz\": {\"from\": \"UTC\", \"to\": \"Nowhere/City\"}}", -1,
     "tz: to 'Nowhere/City' is not a zone in the tz database"},
    {"{\"tz\": {\"from\": \"/etc/passwd\", \"to\": \"UTC\"}}", -1,
     "tz: from '/etc/passwd' is not a zone in the tz database"},
    {"{\"pad\": {\"char\": \"0\"}}", -1, "pad: 'width' is required"},
    {"{\"const\": {\"value\": [1]}}", -1, "const: 'value' must be a single value"},
    {"{\"map\": {\"A\": {\"b\": 1}}}", -1, "map: 'A' must map to a single value"},
    {"{\"concat\": {\"fields\": [\"a\", 1]}}", -1, "concat: fields must be a list of field names"},
    {"{\"date\": \"iso8601\"}", -1, "date needs arguments: {date: {from|to: ...}}"},
};

static void test_compile_errors(void **state)
{
    struct ess_transform *t = (struct ess_transform *)1;
    struct ess_err err;
    json_t *spec;
    size_t i;
    int step;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        spec = load(bad_cases[i].spec);
        ess_err_clear(&err);
        step = 99;
        assert_int_equal(ess_transform_new("f", spec, &t, &step, &err), ESS_EMANIFEST);
        if (strcmp(err.msg, bad_cases[i].msg) != 0) {
            print_error("bad case %zu: got '%s'\n", i, err.msg);
        }
        assert_string_equal(err.msg, bad_cases[i].msg);
        assert_int_equal(step, bad_cases[i].step);
        assert_null(t);
        json_decref(spec);
    }
}

static void convert_once(void)
{
    struct ess_transform *t = NULL;
    json_t *spec = load(NY_UTC);
    json_t *in = json_string("2026-07-01T08:00:00");
    json_t *out = NULL;

    assert_int_equal(ess_transform_new("f", spec, &t, NULL, NULL), ESS_OK);
    assert_int_equal(ess_transform_apply(t, NULL, in, &out, NULL), ESS_OK);
    assert_string_equal(json_string_value(out), "2026-07-01T12:00:00Z");
    json_decref(out);
    json_decref(in);
    json_decref(spec);
    ess_transform_free(t);
}

/* tz switches TZ for one conversion only: a set TZ and an unset TZ both survive. */
static void test_tz_restores_environment(void **state)
{
    (void)state;
    setenv("TZ", "Asia/Tokyo", 1);
    convert_once();
    assert_string_equal(getenv("TZ"), "Asia/Tokyo");
    unsetenv("TZ");
    convert_once();
    assert_null(getenv("TZ"));
}

static void test_args_and_free(void **state)
{
    struct ess_transform *t = (struct ess_transform *)1;
    json_t *spec = json_string("upper");
    json_t *out = (json_t *)1;

    (void)state;
    ess_transform_free(NULL);
    assert_int_equal(ess_transform_new(NULL, spec, &t, NULL, NULL), ESS_EINVAL);
    assert_null(t);
    assert_int_equal(ess_transform_apply(NULL, NULL, NULL, &out, NULL), ESS_EINVAL);
    assert_null(out);
    assert_null(ess_transform_field(NULL));
    assert_int_equal(ess_transform_new("a.b", spec, &t, NULL, NULL), ESS_OK);
    assert_string_equal(ess_transform_field(t), "a.b");
    ess_transform_free(t);
    json_decref(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_table),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_tz_restores_environment),
        cmocka_unit_test(test_args_and_free),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
