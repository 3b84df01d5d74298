/* ess_batch: file names from the template, records joined as lines, the csv
 * header once, due at batch_max or batch_sec, a sealed name that survives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_batch.h"
#include "ess_err.h"

#define TS_2026 1795685445 /* 2026-11-26T09:30:45Z */

static const struct {
    const char *tmpl;
    int rc;
    const char *want;
} name_cases[] = {
    {"{id}-{seq}-{ts}.txt", ESS_OK, "dmv-42-20261126T093045Z.txt"},
    {"APPT.{seq}.DAT", ESS_OK, "APPT.42.DAT"},
    {"fixed", ESS_OK, "fixed"},
    {"{id}{id}", ESS_OK, "dmvdmv"},
    {"{nope}.txt", ESS_EINVAL, ""},
    {"{id", ESS_EINVAL, ""},
    {"a}b", ESS_EINVAL, ""},
    {"", ESS_EINVAL, ""},
};

static void test_file_names(void **state)
{
    char out[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
        int rc = ess_batch_file_name(name_cases[i].tmpl, "dmv", 42, TS_2026, out, sizeof(out));

        assert_int_equal(rc, name_cases[i].rc);
        if (rc == ESS_OK) {
            assert_string_equal(out, name_cases[i].want);
        }
    }
    assert_int_equal(ess_batch_file_name("{id}-{seq}", "dmv", 42, TS_2026, out, 6), ESS_EINVAL);
}

static char *body_of(struct ess_batch *b)
{
    size_t len = 0;
    char *s = ess_batch_body(b, &len);

    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    return s;
}

static void test_lines_and_csv_header_once(void **state)
{
    struct ess_batch *b = ess_batch_new();
    int items[3];
    char *s;

    (void)state;
    assert_int_equal(ess_batch_add(b, &items[0], 7, "h1,\"a\r\nb\"\r\nA,1\r\n", 16, 1, 0), ESS_OK);
    assert_int_equal(ess_batch_add(b, &items[1], 8, "h1,\"a\r\nb\"\r\nB,2\r\n", 16, 1, 0), ESS_OK);
    s = body_of(b);
    assert_string_equal(s, "h1,\"a\r\nb\"\r\nA,1\r\nB,2\r\n"); /* a quoted CRLF is not a line end */
    free(s);
    ess_batch_reset(b);
    assert_int_equal(ess_batch_add(b, &items[2], 9, "{\"k\":1}", 7, 0, 0), ESS_OK);
    assert_int_equal(ess_batch_add(b, &items[0], 10, "X  1\n", 5, 0, 0), ESS_OK);
    s = body_of(b);
    assert_string_equal(s, "{\"k\":1}\nX  1\n"); /* one line each */
    free(s);
    assert_ptr_equal(ess_batch_item(b, 0), &items[2]);
    assert_ptr_equal(ess_batch_item(b, 1), &items[0]);
    assert_null(ess_batch_item(b, 2));
    ess_batch_free(b);
}

static void test_replace_keeps_place(void **state)
{
    struct ess_batch *b = ess_batch_new();
    struct ess_err err;
    int items[3];
    char *s;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_batch_add(b, &items[0], 1, "h\r\nA,1\r\n", 7, 1, 0), ESS_OK);
    assert_int_equal(ess_batch_add(b, &items[1], 2, "h\r\nB,2\r\n", 7, 1, 0), ESS_OK);
    assert_int_equal(ess_batch_add(b, &items[2], 3, "h\r\nC,3\r\n", 7, 1, 0), ESS_OK);
    assert_int_equal(ess_batch_find(b, &items[1]), 1);
    assert_int_equal(ess_batch_find(b, &b), -1);
    /* longer, shorter, and the first record (which keeps the header) */
    assert_int_equal(ess_batch_replace(b, 1, "h\r\nB,2222\r\n", 10, 1), ESS_OK);
    s = body_of(b);
    assert_string_equal(s, "h\r\nA,1\r\nB,2222\r\nC,3\r\n");
    free(s);
    assert_int_equal(ess_batch_replace(b, 2, "h\r\nC\r\n", 5, 1), ESS_OK);
    assert_int_equal(ess_batch_replace(b, 0, "h\r\nA,9\r\n", 7, 1), ESS_OK);
    s = body_of(b);
    assert_string_equal(s, "h\r\nA,9\r\nB,2222\r\nC\r\n");
    free(s);
    assert_int_equal(ess_batch_replace(b, 1, "x", 1, 0), ESS_OK); /* gets its line end */
    s = body_of(b);
    assert_string_equal(s, "h\r\nA,9\r\nx\nC\r\n");
    free(s);
    assert_int_equal(ess_batch_count(b), 3);
    assert_int_equal(ess_batch_replace(b, 3, "y", 1, 0), ESS_EINVAL);
    assert_int_equal(ess_batch_seal(b, "f", "id", 0, &err), ESS_OK);
    assert_int_equal(ess_batch_replace(b, 0, "y", 1, 0), ESS_EINVAL); /* sealed: fixed */
    ess_batch_free(b);
}

static void test_due_and_seal(void **state)
{
    struct ess_batch *b = ess_batch_new();
    struct ess_err err;
    int item;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_batch_due_ms(b, 2, 10, 0), -1); /* empty */
    assert_int_equal(ess_batch_seal(b, "{id}", "dmv", TS_2026, &err), ESS_EINVAL);
    assert_int_equal(ess_batch_add(b, &item, 42, "a", 1, 0, 1000), ESS_OK);
    assert_int_equal(ess_batch_due_ms(b, 2, 10, 4000), 7000); /* opened at 1000 */
    assert_int_equal(ess_batch_due_ms(b, 2, 10, 11000), 0);   /* batch_sec old */
    assert_int_equal(ess_batch_add(b, &item, 43, "b", 1, 0, 2000), ESS_OK);
    assert_int_equal(ess_batch_due_ms(b, 2, 10, 2000), 0); /* batch_max */
    assert_string_equal(ess_batch_name(b), "");
    assert_int_equal(ess_batch_seal(b, "{id}-{seq}-{ts}.txt", "dmv", TS_2026, &err), ESS_OK);
    assert_string_equal(ess_batch_name(b), "dmv-42-20261126T093045Z.txt");
    /* a retry keeps the name and refuses more records */
    assert_int_equal(ess_batch_seal(b, "{id}-{seq}-{ts}.txt", "dmv", TS_2026 + 60, &err), ESS_OK);
    assert_string_equal(ess_batch_name(b), "dmv-42-20261126T093045Z.txt");
    assert_int_equal(ess_batch_add(b, &item, 44, "c", 1, 0, 2000), ESS_EINVAL);
    assert_int_equal(ess_batch_due_ms(b, 2, 10, 2000), -1);
    assert_int_equal(ess_batch_count(b), 2);
    ess_batch_reset(b);
    assert_int_equal(ess_batch_count(b), 0);
    assert_int_equal(ess_batch_sealed(b), 0);
    ess_batch_free(b);
    ess_batch_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_names),
        cmocka_unit_test(test_lines_and_csv_header_once),
        cmocka_unit_test(test_due_and_seal),
        cmocka_unit_test(test_replace_keeps_place),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
