/*
 * test_records -- the partner record readers: CSV (quotes, CRLF, blank lines,
 * bad quotes, not UTF-8), JSON pages (records_path, next link) and webhook
 * bodies (object, array, errors with position).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_records.h"

/* CSV cases: input, expected code, the records as compact sorted JSON. */
static void test_csv_table(void **state)
{
    static const struct {
        const char *in;
        size_t len; /* 0: strlen */
        int rc;
        const char *want;
    } cases[] = {
        {"a,b\n1,2\n", 0, ESS_OK, "[{\"a\":\"1\",\"b\":\"2\"}]"},
        {"a,b\r\n1,2\r\n\r\n3,4", 0, ESS_OK,
         "[{\"a\":\"1\",\"b\":\"2\"},{\"a\":\"3\",\"b\":\"4\"}]"},
        {"a\n\"x,\"\"y\"\"\nz\"\n", 0, ESS_OK, "[{\"a\":\"x,\\\"y\\\"\\nz\"}]"},
        {"a,b\n1\n", 0, ESS_EPARTNER, "[]"},
        {"a\n\"open\n", 0, ESS_EPARTNER, "[]"},
        {"\"a\n", 0, ESS_EPARTNER, "[]"},
        {"a\n\xff\n", 0, ESS_EPARTNER, "[]"},
        {"a\nx\0y\n", 6, ESS_OK, "[{\"a\":\"x\"}]"},
        {"", 0, ESS_OK, "[]"},
        {"a,a\n1,2\n", 0, ESS_OK, "[{\"a\":\"2\"}]"},
    };
    struct ess_err err;
    json_t *out;
    char *text;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        out = json_array();
        ess_err_clear(&err);
        assert_int_equal(ess_records_csv(cases[i].in,
                                         cases[i].len ? cases[i].len : strlen(cases[i].in), out,
                                         &err),
                         cases[i].rc);
        if (cases[i].rc != ESS_OK) {
            assert_non_null(strstr(err.msg, "partner: CSV"));
        }
        text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(text, cases[i].want);
        free(text);
        json_decref(out);
    }
}

static void test_json_pages(void **state)
{
    struct ess_err err;
    json_t *out = json_array();
    char *next = NULL;
    const char *page = "{\"data\": {\"items\": [{\"k\": 1}]}, \"links\": {\"next\": \"/p2\"}}";

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(
        ess_records_json(page, strlen(page), "data.items", "links.next", out, &next, &err), ESS_OK);
    assert_int_equal(json_array_size(out), 1);
    assert_string_equal(next, "/p2");
    free(next);
    assert_int_equal(ess_records_json(page, strlen(page), "data.none", NULL, out, &next, &err),
                     ESS_EPARTNER);
    assert_non_null(strstr(err.msg, "no records array at data.none"));
    assert_null(next);
    ess_err_clear(&err);
    assert_int_equal(ess_records_json("[1,", 3, NULL, NULL, out, &next, &err), ESS_EPARTNER);
    assert_non_null(strstr(err.msg, "not JSON"));
    assert_int_equal(ess_records_json("[{}, {}]", 8, NULL, "next", out, &next, &err), ESS_OK);
    assert_int_equal(json_array_size(out), 3);
    json_decref(out);
}

static void test_body_table(void **state)
{
    static const struct {
        const char *in;
        int rc;
        size_t n;
        const char *msg;
    } cases[] = {
        {"{\"a\": 1}", ESS_OK, 1, ""},
        {"[{\"a\": 1}, {\"a\": 2}]", ESS_OK, 2, ""},
        {"[]", ESS_EPARSE, 0, "non-empty array"},
        {"3", ESS_EPARSE, 0, "not JSON"},
        {"{\"a\": 1, \"a\": 2}", ESS_EPARSE, 0, "duplicate"},
        {"{\n  \"a\": }", ESS_EPARSE, 0, "line 2"},
        {"", ESS_EPARSE, 0, "not JSON"},
    };
    struct ess_err err;
    json_t *recs;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ess_err_clear(&err);
        assert_int_equal(ess_records_body(cases[i].in, strlen(cases[i].in), &recs, &err),
                         cases[i].rc);
        if (strstr(err.msg, cases[i].msg) == NULL) {
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
        }
        assert_int_equal(json_array_size(recs), cases[i].n);
        json_decref(recs);
    }
    assert_int_equal(ess_records_body(NULL, 0, &recs, &err), ESS_EPARSE);
    assert_null(recs);
}

static void test_scalar_text(void **state)
{
    static const struct {
        const char *json;
        int ok;
        const char *text;
    } cases[] = {
        {"\"40\"", 1, "40"},
        {"40", 1, "40"},
        {"-7", 1, "-7"},
        {"0.5", 1, "0.5"},
        {"true", 1, "true"},
        {"false", 1, "false"},
        {"null", 0, NULL},
        {"{}", 0, NULL},
        {"[1]", 0, NULL},
        {"\"0123456789abc\"", 1, "0123456"}, /* cut to the buffer, NUL-terminated */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        char buf[8];

        assert_non_null(v);
        snprintf(buf, sizeof(buf), "%s", "untouch");
        assert_int_equal(ess_records_scalar_text(v, buf, sizeof(buf)), cases[i].ok);
        assert_string_equal(buf, cases[i].ok ? cases[i].text : "untouch");
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_table),
        cmocka_unit_test(test_json_pages),
        cmocka_unit_test(test_body_table),
        cmocka_unit_test(test_scalar_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
