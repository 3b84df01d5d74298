/*
 * test_shape -- ess_shape_apply/ess_shape_render as tables. The manifest is
 * built by hand (a zeroed struct ess_manifest), independent of the parser.
 * Every case also checks that the input data was not modified.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_shape.h"
#include "ess_transform.h"

#define MAXN 8

struct vcase {
    const char *field;
    const char *map[MAXN][2];
};

struct shape_case {
    const char *name;
    const char *fields[MAXN];
    const char *drop[MAXN];
    const char *rename[MAXN][2];
    struct vcase values[MAXN];
    const char *in;
    const char *want; /* JSON; NULL when an error is expected */
    int want_rc;
    const char *want_msg;
    const char *transforms[MAXN][2]; /* field, spec as JSON */
};

/* Designated initializers: a case names only what it sets. */
#define STATUS_CODES                            \
    {                                           \
        {"PENDING", "07"}, {"CONFIRMED", "08"}, \
        {                                       \
            "CANCELLED", "09"                   \
        }                                       \
    }
#define CODE_MSG "; code maps apply to strings, integers and booleans"

#define DATE_US "{\"date\": {\"from\": \"%Y-%m-%d\", \"to\": \"%m/%d/%Y\"}}"

static const struct shape_case cases[] = {
    {.name = "transforms run on source names, before values and rename",
     .transforms = {{"status", "[\"trim\", \"upper\"]"}},
     .values = {{"status", {{"DONE", "08"}}}},
     .rename = {{"status", "ST"}},
     .in = "{\"status\":\" done \"}",
     .want = "{\"ST\":\"08\"}"},
    {.name = "transform on a dotted path copies on write",
     .transforms = {{"p.d", DATE_US}},
     .in = "{\"p\":{\"d\":\"2026-03-01\",\"x\":1}}",
     .want = "{\"p\":{\"d\":\"03/01/2026\",\"x\":1}}"},
    {.name = "default creates a missing path",
     .transforms = {{"o.code", "{\"default\": {\"value\": \"NA\"}}"}},
     .in = "{\"a\":1}",
     .want = "{\"a\":1,\"o\":{\"code\":\"NA\"}}"},
    {.name = "transforms see the record after drop, in manifest order",
     .drop = {"secret"},
     .transforms = {{"first", "\"upper\""},
                    {"full", "{\"concat\": {\"fields\": [\"first\", \"secret\", \"last\"], "
                             "\"sep\": \" \"}}"}},
     .in = "{\"first\":\"Ada\",\"last\":\"L\",\"secret\":\"S\"}",
     .want = "{\"first\":\"ADA\",\"last\":\"L\",\"full\":\"ADA L\"}"},
    {.name = "a field not kept by fields stays out",
     .fields = {"a"},
     .transforms = {{"b", "\"upper\""}},
     .in = "{\"a\":\"x\",\"b\":\"y\"}",
     .want = "{\"a\":\"x\"}"},
    {.name = "a value a transform cannot convert parks the event",
     .transforms = {{"issued_on", DATE_US}},
     .in = "{\"issued_on\":\"2026-13-45\"}",
     .want_rc = ESS_ESHAPE,
     .want_msg = "transforms.issued_on: '2026-13-45' does not match %Y-%m-%d"},
    {.name = "a scalar on a transform's path",
     .transforms = {{"a.b", "{\"const\": {\"value\": \"x\"}}"}},
     .in = "{\"a\":5}",
     .want_rc = ESS_ESHAPE,
     .want_msg = "transforms.a.b: a non-object value sits on the path"},
    {.name = "identity", .in = "{\"a\":{\"b\":1},\"d\":3}", .want = "{\"a\":{\"b\":1},\"d\":3}"},
    {.name = "fields top level",
     .fields = {"a", "d"},
     .in = "{\"a\":1,\"b\":2,\"d\":3}",
     .want = "{\"a\":1,\"d\":3}"},
    {.name = "fields dotted keep nesting",
     .fields = {"a.b"},
     .in = "{\"a\":{\"b\":1,\"c\":2},\"d\":3}",
     .want = "{\"a\":{\"b\":1}}"},
    {.name = "fields two in one nest",
     .fields = {"a.b", "a.c.x"},
     .in = "{\"a\":{\"b\":1,\"c\":{\"x\":5,\"y\":6},\"z\":0}}",
     .want = "{\"a\":{\"b\":1,\"c\":{\"x\":5}}}"},
    {.name = "fields missing are absent",
     .fields = {"a", "nope", "a.b.c"},
     .in = "{\"a\":1,\"b\":2}",
     .want = "{\"a\":1}"},
    {.name = "fields whole object then a drop inside",
     .fields = {"a"},
     .drop = {"a.c"},
     .in = "{\"a\":{\"b\":1,\"c\":2},\"d\":3}",
     .want = "{\"a\":{\"b\":1}}"},
    {.name = "drop top and dotted",
     .drop = {"s", "a.c", "zz.q"},
     .in = "{\"a\":{\"b\":1,\"c\":2},\"s\":\"x\",\"d\":3}",
     .want = "{\"a\":{\"b\":1},\"d\":3}"},
    {.name = "values string",
     .values = {{"status", {{"PENDING", "07"}, {"DONE", "08"}}}},
     .in = "{\"status\":\"DONE\"}",
     .want = "{\"status\":\"08\"}"},
    {.name = "values unmapped stays",
     .values = {{"status", {{"PENDING", "07"}}}},
     .in = "{\"status\":\"WEIRD\"}",
     .want = "{\"status\":\"WEIRD\"}"},
    {.name = "values integer by decimal text",
     .values = {{"code", {{"3", "C"}}}},
     .in = "{\"code\":3}",
     .want = "{\"code\":\"C\"}"},
    {.name = "values boolean",
     .values = {{"ok", {{"true", "Y"}, {"false", "N"}}}},
     .in = "{\"ok\":false}",
     .want = "{\"ok\":\"N\"}"},
    {.name = "values null stays",
     .values = {{"s", {{"null", "X"}}}},
     .in = "{\"s\":null}",
     .want = "{\"s\":null}"},
    {.name = "values dotted source",
     .values = {{"p.s", {{"A", "1"}}}},
     .in = "{\"p\":{\"s\":\"A\",\"t\":\"A\"}}",
     .want = "{\"p\":{\"s\":\"1\",\"t\":\"A\"}}"},
    {.name = "values use the source name, before rename",
     .rename = {{"status", "ST"}},
     .values = {{"status", {{"A", "1"}}}},
     .in = "{\"status\":\"A\"}",
     .want = "{\"ST\":\"1\"}"},
    {.name = "values on an array",
     .values = {{"s", {{"A", "1"}}}},
     .in = "{\"s\":[1]}",
     .want_rc = ESS_ESHAPE,
     .want_msg = "values: field 's' is an array" CODE_MSG},
    {.name = "values on a real",
     .values = {{"s", {{"1.5", "1"}}}},
     .in = "{\"s\":1.5}",
     .want_rc = ESS_ESHAPE,
     .want_msg = "values: field 's' is a real number" CODE_MSG},
    {.name = "rename top",
     .rename = {{"a", "A"}},
     .in = "{\"a\":1,\"b\":2}",
     .want = "{\"A\":1,\"b\":2}"},
    {.name = "rename dotted to top",
     .rename = {{"p.id", "PID"}},
     .in = "{\"p\":{\"id\":7,\"n\":1}}",
     .want = "{\"p\":{\"n\":1},\"PID\":7}"},
    {.name = "rename the last nested field leaves no empty parents",
     .rename = {{"p.q.id", "PID"}},
     .in = "{\"p\":{\"q\":{\"id\":7}},\"k\":{}}",
     .want = "{\"k\":{},\"PID\":7}"},
    {.name = "rename swap",
     .rename = {{"a", "b"}, {"b", "a"}},
     .in = "{\"a\":1,\"b\":2}",
     .want = "{\"a\":2,\"b\":1}"},
    {.name = "rename wins over an existing key",
     .rename = {{"a", "b"}},
     .in = "{\"a\":1,\"b\":2}",
     .want = "{\"b\":1}"},
    {.name = "rename missing source",
     .rename = {{"x", "X"}},
     .in = "{\"a\":1}",
     .want = "{\"a\":1}"},
    {.name = "DESIGN.md example (status added to fields)",
     .fields = {"permit_id", "street", "truck_limit", "status"},
     .drop = {"owner_ssn"},
     .rename = {{"permit_id", "PERMIT_NUM"}},
     .values = {{"status", STATUS_CODES}},
     .in = "{\"permit_id\":\"P-1\",\"street\":\"Elm\",\"truck_limit\":12,\"owner_ssn\":\"123\","
           "\"status\":\"CONFIRMED\",\"internal\":true}",
     .want = "{\"PERMIT_NUM\":\"P-1\",\"street\":\"Elm\",\"truck_limit\":12,\"status\":\"08\"}"},
    {.name = "DESIGN.md example as written: status is filtered out",
     .fields = {"permit_id", "street", "truck_limit"},
     .drop = {"owner_ssn"},
     .rename = {{"permit_id", "PERMIT_NUM"}},
     .values = {{"status", STATUS_CODES}},
     .in = "{\"permit_id\":\"P-1\",\"street\":\"Elm\",\"truck_limit\":12,\"owner_ssn\":\"1\","
           "\"status\":\"PENDING\"}",
     .want = "{\"PERMIT_NUM\":\"P-1\",\"street\":\"Elm\",\"truck_limit\":12}"},
    {.name = "drop applies after include",
     .fields = {"permit_id", "owner_ssn"},
     .drop = {"owner_ssn"},
     .rename = {{"permit_id", "PERMIT_NUM"}},
     .in = "{\"permit_id\":1,\"owner_ssn\":\"123\"}",
     .want = "{\"PERMIT_NUM\":1}"},
};

static char **strv(const char *const *src, size_t *n)
{
    char **v = calloc(MAXN, sizeof(*v));
    size_t i;

    assert_non_null(v);
    for (i = 0; i < MAXN && src[i] != NULL; i++) {
        v[i] = (char *)src[i];
    }
    *n = i;
    return v;
}

static void pairs(const char *const (*src)[2], struct ess_strmap *map)
{
    size_t i;

    map->keys = calloc(MAXN, sizeof(char *));
    map->vals = calloc(MAXN, sizeof(char *));
    assert_non_null(map->keys);
    assert_non_null(map->vals);
    for (i = 0; i < MAXN && src[i][0] != NULL; i++) {
        map->keys[i] = (char *)src[i][0];
        map->vals[i] = (char *)src[i][1];
    }
    map->n = i;
}

/* The manifest points at the case's static strings; only arrays are heap. */
static void build(const struct shape_case *c, struct ess_manifest *m)
{
    size_t i;

    memset(m, 0, sizeof(*m));
    m->format = ESS_FORMAT_JSON;
    m->fields.v = strv(c->fields, &m->fields.n);
    m->drop.v = strv(c->drop, &m->drop.n);
    pairs(c->rename, &m->rename);
    m->values = calloc(MAXN, sizeof(*m->values));
    assert_non_null(m->values);
    for (i = 0; i < MAXN && c->values[i].field != NULL; i++) {
        m->values[i].field = (char *)c->values[i].field;
        pairs(c->values[i].map, &m->values[i].map);
    }
    m->n_values = i;
    m->xforms = calloc(MAXN, sizeof(*m->xforms));
    assert_non_null(m->xforms);
    for (i = 0; i < MAXN && c->transforms[i][0] != NULL; i++) {
        json_t *spec = json_loads(c->transforms[i][1], JSON_DECODE_ANY, NULL);

        assert_non_null(spec);
        assert_int_equal(ess_transform_new(c->transforms[i][0], spec, &m->xforms[i], NULL, NULL),
                         ESS_OK);
        json_decref(spec);
    }
    m->n_xforms = i;
}

static void unbuild(struct ess_manifest *m)
{
    size_t i;

    free(m->fields.v);
    free(m->drop.v);
    free(m->rename.keys);
    free(m->rename.vals);
    for (i = 0; i < m->n_values; i++) {
        free(m->values[i].map.keys);
        free(m->values[i].map.vals);
    }
    free(m->values);
    for (i = 0; i < m->n_xforms; i++) {
        ess_transform_free(m->xforms[i]);
    }
    free(m->xforms);
}

static void check_case(const struct shape_case *c)
{
    struct ess_manifest m;
    struct ess_err err;
    json_t *in = json_loads(c->in, 0, NULL);
    json_t *orig = json_deep_copy(in);
    json_t *want = c->want != NULL ? json_loads(c->want, 0, NULL) : NULL;
    json_t *out = NULL;
    char *got;
    int rc;

    assert_non_null(in);
    build(c, &m);
    ess_err_clear(&err);
    rc = ess_shape_apply(&m, in, &out, &err);
    if (!json_equal(in, orig)) {
        fail_msg("%s: input was modified", c->name);
    }
    if (want == NULL) {
        if (rc != c->want_rc || strcmp(err.msg, c->want_msg) != 0 || out != NULL) {
            fail_msg("%s: rc %d '%s', want %d '%s'", c->name, rc, err.msg, c->want_rc, c->want_msg);
        }
    } else {
        got = rc == ESS_OK ? json_dumps(out, JSON_COMPACT) : NULL;
        if (rc != ESS_OK || !json_equal(out, want)) {
            fail_msg("%s: rc %d '%s' got %s want %s", c->name, rc, err.msg, got ? got : "-",
                     c->want);
        }
        free(got);
    }
    unbuild(&m);
    json_decref(out);
    json_decref(want);
    json_decref(orig);
    json_decref(in);
}

static void test_apply_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cases[i]);
    }
}

/* Key order follows the fields list; renamed keys are appended. */
static void test_apply_order(void **state)
{
    static const char *const fields[MAXN] = {"b", "a"};
    struct shape_case c = {.name = "order"};
    struct ess_manifest m;
    json_t *in = json_loads("{\"a\":1,\"b\":2}", 0, NULL);
    json_t *out = NULL;
    char *text;

    (void)state;
    memcpy(c.fields, fields, sizeof(fields));
    build(&c, &m);
    assert_int_equal(ess_shape_apply(&m, in, &out, NULL), ESS_OK);
    text = json_dumps(out, JSON_COMPACT);
    assert_string_equal(text, "{\"b\":2,\"a\":1}");
    free(text);
    unbuild(&m);
    json_decref(out);
    json_decref(in);
}

static void test_identity_shares(void **state)
{
    struct ess_manifest m;
    json_t *in = json_loads("{\"a\":1}", 0, NULL);
    json_t *out = NULL;

    (void)state;
    memset(&m, 0, sizeof(m));
    assert_int_equal(ess_shape_apply(&m, in, &out, NULL), ESS_OK);
    assert_ptr_equal(out, in);
    json_decref(out);
    json_decref(in);
}

static void test_apply_bad_args(void **state)
{
    struct ess_manifest m;
    struct ess_err err;
    json_t *arr = json_array();
    json_t *out = (json_t *)&m;

    (void)state;
    memset(&m, 0, sizeof(m));
    ess_err_clear(&err);
    assert_int_equal(ess_shape_apply(&m, arr, &out, &err), ESS_EINVAL);
    assert_null(out);
    json_decref(arr);
}

struct render_case {
    enum ess_format format;
    const char *in;
    int want_rc;
    const char *want; /* body, or the error message */
    const char *ctype;
};

static const struct render_case render_cases[] = {
    {ESS_FORMAT_JSON, "{\"a\": 1, \"b\": [1, 2], \"s\": \"\\u00e9\"}", ESS_OK,
     "{\"a\":1,\"b\":[1,2],\"s\":\"\xc3\xa9\"}", NULL},
    {ESS_FORMAT_JSON, "{}", ESS_OK, "{}", NULL},
    /* every format goes through ess_render (test_render has the details) */
    {ESS_FORMAT_CSV, "{\"a\": \"x,y\"}", ESS_OK, "\"x,y\"\r\n",
     "text/csv; charset=utf-8; header=absent"},
    {ESS_FORMAT_FORM, "{\"a\": \"b c\"}", ESS_OK, "a=b+c", "application/x-www-form-urlencoded"},
    {ESS_FORMAT_SOAP, "{}", ESS_EINVAL, "soap: the operation is missing or not an XML name", NULL},
    {ESS_FORMAT_XML, "{\"a b\": 1}", ESS_ESHAPE,
     "xml: field 'a b' is not a valid XML element name (rename it)", NULL},
};

static void test_render_table(void **state)
{
    const struct render_case *c;
    struct ess_manifest m;
    struct ess_err err;
    const char *ctype;
    json_t *in;
    char *body;
    size_t len;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(render_cases) / sizeof(render_cases[0]); i++) {
        c = &render_cases[i];
        memset(&m, 0, sizeof(m));
        m.format = c->format;
        in = json_loads(c->in, 0, NULL);
        ess_err_clear(&err);
        assert_int_equal(ess_shape_render(&m, in, &body, &len, &ctype, &err), c->want_rc);
        if (c->want_rc == ESS_OK) {
            assert_string_equal(body, c->want);
            assert_int_equal(len, strlen(c->want));
            assert_string_equal(ctype, c->ctype != NULL ? c->ctype : "application/json");
        } else {
            assert_null(body);
            assert_string_equal(err.msg, c->want);
        }
        free(body);
        json_decref(in);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_table),     cmocka_unit_test(test_apply_order),
        cmocka_unit_test(test_identity_shares), cmocka_unit_test(test_apply_bad_args),
        cmocka_unit_test(test_render_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
