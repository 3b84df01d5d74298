/* ess_delta: the diff behind delta: true -- first delivery sends everything,
 * then only changed fields plus the key; equal values (nested too) are not
 * changes; absent fields are neither sent nor forgotten; the key field is the
 * partner name of `key`; the next state is the old one updated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_delta.h"
#include "ess_manifest.h"

static const struct {
    const char *name;
    const char *last; /* NULL: never delivered */
    const char *shaped;
    const char *want;
    size_t changed;
} cases[] = {
    {"first delivery: everything", NULL, "{\"ID\":\"A1\",\"st\":\"07\",\"n\":1}",
     "{\"ID\":\"A1\",\"st\":\"07\",\"n\":1}", 3},
    {"one field changed", "{\"ID\":\"A1\",\"st\":\"07\",\"n\":1}",
     "{\"ID\":\"A1\",\"st\":\"08\",\"n\":1}", "{\"ID\":\"A1\",\"st\":\"08\"}", 1},
    {"nothing changed", "{\"ID\":\"A1\",\"st\":\"07\"}", "{\"ID\":\"A1\",\"st\":\"07\"}",
     "{\"ID\":\"A1\"}", 0},
    {"a new field is a change", "{\"ID\":\"A1\"}", "{\"ID\":\"A1\",\"note\":\"x\"}",
     "{\"ID\":\"A1\",\"note\":\"x\"}", 1},
    {"absent fields are not changes", "{\"ID\":\"A1\",\"st\":\"07\",\"n\":1}",
     "{\"ID\":\"A1\",\"n\":2}", "{\"ID\":\"A1\",\"n\":2}", 1},
    {"type matters: 1 is not \"1\"", "{\"ID\":\"A1\",\"n\":1}", "{\"ID\":\"A1\",\"n\":\"1\"}",
     "{\"ID\":\"A1\",\"n\":\"1\"}", 1},
    {"null is a value", "{\"ID\":\"A1\",\"n\":1}", "{\"ID\":\"A1\",\"n\":null}",
     "{\"ID\":\"A1\",\"n\":null}", 1},
    {"nested objects compare whole", "{\"ID\":\"A1\",\"a\":{\"x\":1,\"y\":2}}",
     "{\"ID\":\"A1\",\"a\":{\"y\":2,\"x\":1}}", "{\"ID\":\"A1\"}", 0},
    {"nested change sends the whole object", "{\"ID\":\"A1\",\"a\":{\"x\":1,\"y\":2}}",
     "{\"ID\":\"A1\",\"a\":{\"x\":1,\"y\":3}}", "{\"ID\":\"A1\",\"a\":{\"x\":1,\"y\":3}}", 1},
    {"key missing from the record stays missing", "{\"ID\":\"A1\",\"st\":\"07\"}",
     "{\"st\":\"08\"}", "{\"st\":\"08\"}", 1},
};

static void test_diff_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *last = cases[i].last != NULL ? json_loads(cases[i].last, 0, NULL) : NULL;
        json_t *shaped = json_loads(cases[i].shaped, 0, NULL);
        json_t *want = json_loads(cases[i].want, 0, NULL);
        json_t *out = NULL;
        struct ess_err err;
        size_t changed = 99;

        print_message("case: %s\n", cases[i].name);
        ess_err_clear(&err);
        assert_int_equal(ess_delta_diff(last, shaped, "ID", 2, &out, &changed, &err), ESS_OK);
        assert_true(json_equal(out, want));
        assert_int_equal(changed, cases[i].changed);
        json_decref(last);
        json_decref(shaped);
        json_decref(want);
        json_decref(out);
    }
}

static void test_diff_rejects_non_objects(void **state)
{
    json_t *arr = json_array();
    json_t *obj = json_object();
    json_t *out = NULL;
    struct ess_err err;
    size_t changed;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_delta_diff(NULL, arr, "ID", 2, &out, &changed, &err), ESS_EINVAL);
    assert_null(out);
    assert_int_equal(ess_delta_diff(arr, obj, "ID", 2, &out, &changed, &err), ESS_EINVAL);
    assert_null(out);
    json_decref(arr);
    json_decref(obj);
}

static void test_merge(void **state)
{
    json_t *last = json_loads("{\"ID\":\"A1\",\"st\":\"07\",\"n\":1}", 0, NULL);
    json_t *shaped = json_loads("{\"ID\":\"A1\",\"n\":2,\"new\":true}", 0, NULL);
    json_t *want = json_loads("{\"ID\":\"A1\",\"st\":\"07\",\"n\":2,\"new\":true}", 0, NULL);
    json_t *out = NULL;
    struct ess_err err;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_delta_merge(last, shaped, &out, &err), ESS_OK);
    assert_true(json_equal(out, want));
    assert_int_equal(json_integer_value(json_object_get(last, "n")), 1); /* last untouched */
    json_decref(out);
    assert_int_equal(ess_delta_merge(NULL, shaped, &out, &err), ESS_OK);
    assert_true(json_equal(out, shaped));
    json_decref(out);
    json_decref(last);
    json_decref(shaped);
    json_decref(want);
}

static void test_key_field(void **state)
{
    static const char base[] =
        "id: dmv\nkind: push\nlisten_topic: a.b\ntarget_url: https://x.example/\ndelta: true\n";
    static const struct {
        const char *extra;
        const char *want;
    } kcases[] = {
        {"key: appt_id\n", "appt_id"},
        {"key: appt_id\nrename: {status: STATUS, appt_id: APPT_NUM}\n", "APPT_NUM"},
        {"key: appt.id\n", "appt"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(kcases) / sizeof(kcases[0]); i++) {
        char text[512];
        struct ess_manifest *m = NULL;
        struct ess_diags d;
        const char *kf;
        size_t kl = 0;

        snprintf(text, sizeof(text), "%s%s", base, kcases[i].extra);
        ess_diags_init(&d);
        assert_int_equal(ess_manifest_parse(text, strlen(text), "t.yml", &m, &d), ESS_OK);
        assert_int_equal(m->delta, 1);
        kf = ess_delta_key_field(m, &kl);
        assert_int_equal(kl, strlen(kcases[i].want));
        assert_memory_equal(kf, kcases[i].want, kl);
        ess_manifest_free(m);
        ess_diags_fini(&d);
    }
}

static void test_book(void **state)
{
    struct ess_delta_book *b = ess_delta_book_new();
    json_t *v1 = json_loads("{\"ID\":\"A1\",\"st\":\"07\"}", 0, NULL);
    json_t *v2 = json_loads("{\"ID\":\"A1\",\"st\":\"08\"}", 0, NULL);
    json_t *send = NULL;
    struct ess_err err;
    size_t changed = 0;

    (void)state;
    ess_err_clear(&err);
    assert_null(ess_delta_book_known(b, "A1"));
    assert_null(ess_delta_book_unsaved(b));
    /* first delivery: everything; nothing known until it lands */
    assert_int_equal(ess_delta_book_stage(b, "A1", NULL, v1, "ID", 2, 0, &send, &changed, &err),
                     ESS_OK);
    assert_true(json_equal(send, v1));
    json_decref(send);
    assert_null(ess_delta_book_known(b, "A1"));
    ess_delta_book_landed(b, "A1");
    assert_true(json_equal(ess_delta_book_known(b, "A1"), v1));
    assert_non_null(ess_delta_book_unsaved(b));
    ess_delta_book_saved(b);
    assert_null(ess_delta_book_unsaved(b));
    assert_true(json_equal(ess_delta_book_known(b, "A1"), v1)); /* still cached */
    /* a change that is parked leaves the known state as it was */
    assert_int_equal(ess_delta_book_stage(b, "A1", ess_delta_book_known(b, "A1"), v2, "ID", 2, 0,
                                          &send, &changed, &err),
                     ESS_OK);
    assert_int_equal(changed, 1);
    json_decref(send);
    ess_delta_book_dropped(b, "A1");
    ess_delta_book_landed(b, "A1"); /* nothing staged: no-op */
    assert_true(json_equal(ess_delta_book_known(b, "A1"), v1));
    /* whole = 1 (a replay): everything, though the partner had some */
    assert_int_equal(ess_delta_book_stage(b, "A1", ess_delta_book_known(b, "A1"), v2, "ID", 2, 1,
                                          &send, &changed, &err),
                     ESS_OK);
    assert_true(json_equal(send, v2));
    json_decref(send);
    ess_delta_book_landed(b, "A1");
    assert_true(json_equal(ess_delta_book_known(b, "A1"), v2));
    ess_delta_book_learn(b, "B1", v1);
    assert_true(json_equal(ess_delta_book_known(b, "B1"), v1));
    json_decref(v1);
    json_decref(v2);
    ess_delta_book_free(b);
    ess_delta_book_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diff_table), cmocka_unit_test(test_diff_rejects_non_objects),
        cmocka_unit_test(test_merge),      cmocka_unit_test(test_key_field),
        cmocka_unit_test(test_book),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
