/*
 * test_jsonstream -- a streamed JSON array split into element texts, fed in
 * every chunk size from 1 byte to the whole, and the errors it names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ess_jsonstream.h"

struct got {
    char out[1024];
    size_t n;
};

static int collect(void *arg, const char *text, size_t len, size_t index)
{
    struct got *g = arg;
    size_t used = strlen(g->out);

    assert_int_equal(index, g->n);
    assert_int_equal(strlen(text), len);
    snprintf(g->out + used, sizeof(g->out) - used, "%s<%s>", g->n ? "|" : "", text);
    g->n++;
    return ESS_OK;
}

struct ok_case {
    const char *in;
    const char *want; /* elements as <a>|<b> */
    size_t n;
};

static const struct ok_case ok_cases[] = {
    {"[]", "", 0},
    {"  [ ]  \n", "", 0},
    {"[1]", "<1>", 1},
    {"[ {\"a\":1} , {\"b\":[1,2,{\"c\":\"]\"}]} ]", "<{\"a\":1}>|<{\"b\":[1,2,{\"c\":\"]\"}]}>", 2},
    {"[\"a,b\",\"q\\\"],\\\\\",null]", "<\"a,b\">|<\"q\\\"],\\\\\">|<null>", 3},
    {"[{\"k\":\"}{\"},\n  {\"k\":\"x\"}\n]\n", "<{\"k\":\"}{\"}>|<{\"k\":\"x\"}>", 2},
};

static void test_ok_every_chunk_size(void **state)
{
    size_t i, chunk, off;

    (void)state;
    for (i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
        const char *in = ok_cases[i].in;
        size_t len = strlen(in);

        for (chunk = 1; chunk <= len; chunk++) {
            struct got g = {"", 0};
            struct ess_jsonstream *js = ess_jsonstream_new(collect, &g);
            struct ess_err err;

            assert_non_null(js);
            ess_err_clear(&err);
            for (off = 0; off < len; off += chunk) {
                assert_int_equal(
                    ess_jsonstream_feed(js, in + off, len - off < chunk ? len - off : chunk, &err),
                    ESS_OK);
            }
            assert_int_equal(ess_jsonstream_finish(js, &err), ESS_OK);
            assert_string_equal(g.out, ok_cases[i].want);
            assert_int_equal(ess_jsonstream_count(js), ok_cases[i].n);
            ess_jsonstream_free(js);
        }
    }
}

struct bad_case {
    const char *in;
    int at_finish; /* 1: feed passes, finish fails */
    const char *msg;
};

static const struct bad_case bad_cases[] = {
    {"{\"a\":1}", 0, "byte 0: expected a JSON array ('['), got '{'"},
    {"<html>", 0, "expected a JSON array"},
    {"[1,]", 0, "byte 3: expected an element, got ']'"},
    {"[,1]", 0, "byte 1: expected an element, got ','"},
    {"[1] x", 0, "byte 4: 'x' after the end of the array"},
    {"[1,2", 1, "the JSON array ends early, after 4 bytes and 1 element(s)"},
    {"", 1, "ends early"},
};

static void test_bad(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct got g = {"", 0};
        struct ess_jsonstream *js = ess_jsonstream_new(collect, &g);
        struct ess_err err;
        int rc;

        ess_err_clear(&err);
        rc = ess_jsonstream_feed(js, bad_cases[i].in, strlen(bad_cases[i].in), &err);
        if (bad_cases[i].at_finish) {
            assert_int_equal(rc, ESS_OK);
            rc = ess_jsonstream_finish(js, &err);
        }
        assert_int_equal(rc, ESS_EPARSE);
        if (strstr(err.msg, bad_cases[i].msg) == NULL) {
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad_cases[i].msg);
        }
        ess_jsonstream_free(js);
    }
}

static int stop_at_two(void *arg, const char *text, size_t len, size_t index)
{
    (void)arg;
    (void)text;
    (void)len;
    return index == 1 ? ESS_ENOTFOUND : ESS_OK;
}

static void test_callback_stops(void **state)
{
    struct ess_jsonstream *js = ess_jsonstream_new(stop_at_two, NULL);
    struct ess_err err;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_jsonstream_feed(js, "[1,2,3]", 7, &err), ESS_ENOTFOUND);
    ess_jsonstream_free(js);
    ess_jsonstream_free(NULL);
}

static void test_element_too_large(void **state)
{
    struct got g = {"", 0};
    struct ess_jsonstream *js = ess_jsonstream_new(collect, &g);
    static char chunk[65536];
    struct ess_err err;
    size_t i;
    int rc = ESS_OK;

    (void)state;
    ess_err_clear(&err);
    memset(chunk, ' ', sizeof(chunk));
    chunk[0] = '"';
    assert_int_equal(ess_jsonstream_feed(js, "[", 1, &err), ESS_OK);
    for (i = 0; rc == ESS_OK && i < 400; i++) {
        rc = ess_jsonstream_feed(js, chunk, sizeof(chunk), &err);
        chunk[0] = ' ';
    }
    assert_int_equal(rc, ESS_EPARSE);
    if (strstr(err.msg, "element 0 at byte") == NULL) {
        fail_msg("message: %s", err.msg);
    }
    ess_jsonstream_free(js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_every_chunk_size),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_element_too_large),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
