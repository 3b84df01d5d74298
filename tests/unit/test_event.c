/*
 * test_event -- ess_event_parse as tables: good bodies (plain, CloudEvents,
 * id precedence, keys) and bad ones (each with its one-line reason).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_event.h"

/* Marks the fallback id (64 hex digits); the exact digest is in test_same_body_same_hash. */
#define HASH_42 "HASH"

struct good_case {
    const char *name;
    const char *body;
    const char *message_id;
    const char *key_path;
    const char *want_id; /* HASH_42: the fallback hash, checked by length */
    const char *want_key;
    int cloudevent;
    long long time_ms;
    const char *data_member; /* a member data must have ("" none) */
};

static const struct good_case good_cases[] = {
    {"plain object", "{\"permit_id\":\"P-1\",\"street\":\"Elm\"}", NULL, "permit_id", HASH_42,
     "P-1", 0, 0, "street"},
    {"plain, message_id", "{\"permit_id\":\"P-1\"}", "m-7", "permit_id", "m-7", "P-1", 0, 0, ""},
    {"plain, body event_id", "{\"permit_id\":\"P-1\",\"event_id\":\"e-9\"}", NULL, "permit_id",
     "e-9", "P-1", 0, 0, ""},
    {"message_id beats body event_id", "{\"permit_id\":\"P-1\",\"event_id\":\"e-9\"}", "m-7",
     "permit_id", "m-7", "P-1", 0, 0, ""},
    {"empty message_id ignored", "{\"permit_id\":\"P-1\",\"event_id\":\"e-9\"}", "", "permit_id",
     "e-9", "P-1", 0, 0, ""},
    {"integer event_id", "{\"permit_id\":\"P-1\",\"event_id\":77}", NULL, "permit_id", "77", "P-1",
     0, 0, ""},
    {"numeric key", "{\"permit_id\":42,\"street\":\"Elm\"}", NULL, "permit_id", HASH_42, "42", 0, 0,
     ""},
    {"negative key", "{\"n\":-9007199254740993}", NULL, "n", HASH_42, "-9007199254740993", 0, 0,
     ""},
    {"nested dotted key", "{\"permit\":{\"id\":\"P-2\"},\"x\":1}", NULL, "permit.id", HASH_42,
     "P-2", 0, 0, "permit"},
    {"duplicate keys accepted, last wins", "{\"k\":\"a\",\"k\":\"b\"}", NULL, "k", HASH_42, "b", 0,
     0, ""},
    {"no key path", "{\"a\":1}", NULL, NULL, HASH_42, "", 0, 0, "a"},
    {"cloudevent",
     "{\"specversion\":\"1.0\",\"id\":\"ce-1\",\"type\":\"permits.changed\","
     "\"time\":\"2026-11-26T21:40:00.123Z\",\"data\":{\"permit_id\":\"P-3\"}}",
     "m-7", "permit_id", "ce-1", "P-3", 1, 1795729200123LL, "permit_id"},
    {"cloudevent, time with offset",
     "{\"specversion\":\"1.0\",\"id\":\"ce-2\","
     "\"time\":\"2026-11-26T22:40:00+01:00\","
     "\"data\":{\"permit_id\":\"P-3\"}}",
     NULL, "permit_id", "ce-2", "P-3", 1, 1795729200000LL, ""},
    {"cloudevent, microseconds and a negative offset",
     "{\"specversion\":\"1.0\",\"id\":\"ce-4\",\"time\":\"2026-11-26T16:40:00.123456-05:00\","
     "\"data\":{\"permit_id\":\"P-3\"}}",
     NULL, "permit_id", "ce-4", "P-3", 1, 1795729200123LL, ""},
    {"cloudevent, empty id falls through to message_id",
     "{\"specversion\":\"1.0\",\"id\":\"\",\"data\":{\"permit_id\":\"P-3\"}}", "m-9", "permit_id",
     "m-9", "P-3", 1, 0, ""},
    {"cloudevent, bad time is 0",
     "{\"specversion\":\"1.0\",\"id\":\"ce-3\",\"time\":\"yesterday\","
     "\"data\":{\"permit_id\":\"P-3\"}}",
     NULL, "permit_id", "ce-3", "P-3", 1, 0, ""},
    {"cloudevent without id: message_id",
     "{\"specversion\":\"1.0\","
     "\"data\":{\"permit_id\":\"P-3\",\"event_id\":\"e\"}}",
     "m-8", "permit_id", "m-8", "P-3", 1, 0, ""},
    {"cloudevent without id: data event_id",
     "{\"specversion\":\"1.0\","
     "\"data\":{\"permit_id\":\"P-3\",\"event_id\":\"e\"}}",
     NULL, "permit_id", "e", "P-3", 1, 0, ""},
    {"cloudevent key is looked up in data",
     "{\"specversion\":\"1.0\",\"id\":\"c\","
     "\"permit_id\":\"outer\","
     "\"data\":{\"permit_id\":\"inner\"}}",
     NULL, "permit_id", "c", "inner", 1, 0, ""},
    {"specversion but no data: plain", "{\"specversion\":\"1.0\",\"permit_id\":\"P\"}", NULL,
     "permit_id", HASH_42, "P", 0, 0, "specversion"},
};

static void test_good(void **state)
{
    const struct good_case *c;
    struct ess_event ev;
    struct ess_err err;
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        c = &good_cases[i];
        ess_err_clear(&err);
        rc = ess_event_parse(c->body, strlen(c->body), c->message_id, c->key_path, &ev, &err);
        if (rc != ESS_OK) {
            fail_msg("%s: rc %d: %s", c->name, rc, err.msg);
        }
        if (strcmp(c->want_id, HASH_42) == 0) {
            assert_int_equal(strlen(ev.id), 64);
            assert_int_equal(strspn(ev.id, "0123456789abcdef"), 64);
        } else if (strcmp(ev.id, c->want_id) != 0) {
            fail_msg("%s: id '%s', want '%s'", c->name, ev.id, c->want_id);
        }
        assert_string_equal(ev.key, c->want_key);
        assert_int_equal(ev.cloudevent, c->cloudevent);
        if (ev.time_ms != c->time_ms) {
            fail_msg("%s: time_ms %lld, want %lld", c->name, ev.time_ms, c->time_ms);
        }
        assert_true(json_is_object(ev.data));
        if (*c->data_member != '\0') {
            assert_non_null(json_object_get(ev.data, c->data_member));
        }
        ess_event_fini(&ev);
        assert_null(ev.root);
    }
}

struct bad_case {
    const char *name;
    const char *body;
    size_t len; /* 0: strlen(body) */
    const char *key_path;
    const char *want_prefix;
};

static const struct bad_case bad_cases[] = {
    {"not JSON", "{\"a\":", 0, "a", "not JSON: "},
    {"trailing garbage", "{\"a\":1} x", 0, "a", "not JSON: end of file expected"},
    {"empty body", "", 0, "a", "not JSON: "},
    {"array", "[1,2]", 0, "a", "not an object: got array"},
    {"string scalar", "\"hi\"", 0, "a", "not an object: got string"},
    {"number scalar", "42", 0, "a", "not an object: got integer"},
    {"null", "null", 0, "a", "not an object: got null"},
    {"cloudevent array data", "{\"specversion\":\"1.0\",\"id\":\"x\",\"data\":[1]}", 0, "a",
     "CloudEvent data is not an object: got array"},
    {"cloudevent string data", "{\"specversion\":\"1.0\",\"data\":\"x\"}", 0, "a",
     "CloudEvent data is not an object: got string"},
    {"missing key", "{\"b\":1}", 0, "permit_id", "key 'permit_id' missing"},
    {"missing nested key", "{\"permit\":{\"no\":1}}", 0, "permit.id", "key 'permit.id' missing"},
    {"key through a scalar", "{\"permit\":5}", 0, "permit.id", "key 'permit.id' missing"},
    {"real key", "{\"permit_id\":1.5}", 0, "permit_id",
     "key 'permit_id' is not a string or integer: got real"},
    {"object key", "{\"permit_id\":{}}", 0, "permit_id",
     "key 'permit_id' is not a string or integer: got object"},
    {"null key", "{\"permit_id\":null}", 0, "permit_id",
     "key 'permit_id' is not a string or integer: got null"},
    {"empty string key", "{\"permit_id\":\"\"}", 0, "permit_id", "key 'permit_id' is empty"},
    {"invalid UTF-8", "{\"a\":\"\xff\xfe\"}", 0, "a", "not JSON: "},
    {"NUL inside body", "{\"a\":1}\0{", 8, "a", "not JSON: "},
};

static void test_bad(void **state)
{
    const struct bad_case *c;
    struct ess_event ev;
    struct ess_err err;
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        c = &bad_cases[i];
        ess_err_clear(&err);
        memset(&ev, 0x5a, sizeof(ev));
        rc = ess_event_parse(c->body, c->len != 0 ? c->len : strlen(c->body), NULL, c->key_path,
                             &ev, &err);
        if (rc != ESS_EPARSE || strncmp(err.msg, c->want_prefix, strlen(c->want_prefix)) != 0) {
            fail_msg("%s: rc %d msg '%s', want EPARSE '%s...'", c->name, rc, err.msg,
                     c->want_prefix);
        }
        assert_null(strchr(err.msg, '\n'));
        assert_null(ev.root);
        assert_null(ev.id);
        assert_null(ev.key);
    }
}

/* ess_event_identify: the same id, key, outcome and message as
 * ess_event_parse for every case above, with and without a message_id; the
 * plain compact bodies with a message_id are read without a parse. */
static void identify_as_parse(const char *body, size_t len, const char *message_id,
                              const char *key_path)
{
    struct ess_event a;
    struct ess_event b;
    struct ess_err ea;
    struct ess_err eb;
    int ra, rb;

    ess_err_clear(&ea);
    ess_err_clear(&eb);
    ra = ess_event_parse(body, len, message_id, key_path, &a, &ea);
    rb = ess_event_identify(body, len, message_id, key_path, &b, &eb);
    if (ra != rb || (ra != ESS_OK && strcmp(ea.msg, eb.msg) != 0)) {
        fail_msg("%s: parse rc %d '%s', identify rc %d '%s'", body, ra, ea.msg, rb, eb.msg);
    }
    if (ra == ESS_OK) {
        assert_string_equal(a.id, b.id);
        assert_string_equal(a.key, b.key);
        assert_int_equal(a.cloudevent, b.cloudevent);
        assert_true(b.time_ms == a.time_ms);
    }
    ess_event_fini(&a);
    ess_event_fini(&b);
}

static void test_identify(void **state)
{
    static const char *const fast[][2] = {
        {"{\"permit_id\":\"K1\",\"n\":1,\"street\":\"Main St\",\"status\":\"PENDING\"}",
         "permit_id"},
        {"{\"n\":-42,\"permit_id\":\"x\"}", "n"},
        {"{\"permit\":{\"a\":[1,{\"id\":2}],\"id\":\"P-2\"},\"id\":\"no\"}", "permit.id"},
        {"{\"permit_id\":\"Stra\xc3\x9f"
         "e\"}",
         "permit_id"},
    };
    static const char *const slow[][2] = {
        {"{\"permit_id\":\"a\\\"b\"}", "permit_id"},                     /* an escape in the key */
        {"{\"permit_id\": \"K1\"}", "permit_id"},                        /* not compact */
        {"{\"permit_id\":\"K1\",\"specversion\":\"1.0\"}", "permit_id"}, /* maybe a CloudEvent */
        {"{\"permit_id\":\"K1\",\"x\":1.5}", "permit_id"},               /* a real */
        {"{\"permit_id\":true}", "permit_id"},                           /* an error to explain */
        {"{\"a\":{\"b\":1}}", "a.c"},                                    /* missing */
        {"{\"a\":{\"b\":1}}", "a..b"},                                   /* an empty segment */
    };
    struct ess_event ev;
    struct ess_err err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
        identify_as_parse(good_cases[i].body, strlen(good_cases[i].body), good_cases[i].message_id,
                          good_cases[i].key_path);
        identify_as_parse(good_cases[i].body, strlen(good_cases[i].body), "m-1",
                          good_cases[i].key_path);
    }
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        size_t len = bad_cases[i].len != 0 ? bad_cases[i].len : strlen(bad_cases[i].body);

        identify_as_parse(bad_cases[i].body, len, NULL, bad_cases[i].key_path);
        identify_as_parse(bad_cases[i].body, len, "m-1", bad_cases[i].key_path);
    }
    for (i = 0; i < sizeof(fast) / sizeof(fast[0]); i++) {
        identify_as_parse(fast[i][0], strlen(fast[i][0]), "m-1", fast[i][1]);
        ess_err_clear(&err);
        assert_int_equal(
            ess_event_identify(fast[i][0], strlen(fast[i][0]), "m-1", fast[i][1], &ev, &err),
            ESS_OK);
        assert_null(ev.root); /* read without a parse */
        ess_event_fini(&ev);
    }
    for (i = 0; i < sizeof(slow) / sizeof(slow[0]); i++) {
        identify_as_parse(slow[i][0], strlen(slow[i][0]), "m-1", slow[i][1]);
        ess_err_clear(&err);
        if (ess_event_identify(slow[i][0], strlen(slow[i][0]), "m-1", slow[i][1], &ev, &err) ==
            ESS_OK) {
            assert_non_null(ev.root); /* parsed */
            ess_event_fini(&ev);
        }
    }
}

static void test_not_json_has_position(void **state)
{
    struct ess_event ev;
    struct ess_err err;
    const char *body = "{\n  \"a\": tru }";

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_event_parse(body, strlen(body), NULL, "a", &ev, &err), ESS_EPARSE);
    assert_non_null(strstr(err.msg, " at line 2 column "));
}

static void test_same_body_same_hash(void **state)
{
    struct ess_event a;
    struct ess_event b;
    struct ess_event c;
    const char *body = "{\"permit_id\":42,\"street\":\"Elm\"}";
    const char *other = "{\"permit_id\":42,\"street\":\"Oak\"}";

    (void)state;
    assert_int_equal(ess_event_parse(body, strlen(body), NULL, "permit_id", &a, NULL), ESS_OK);
    assert_int_equal(ess_event_parse(body, strlen(body), "", "permit_id", &b, NULL), ESS_OK);
    assert_int_equal(ess_event_parse(other, strlen(other), NULL, "permit_id", &c, NULL), ESS_OK);
    assert_string_equal(a.id, b.id);
    assert_string_not_equal(a.id, c.id);
    /* sha256 of "42\n" + body, computed with: printf '42\n%s' BODY | sha256sum */
    assert_string_equal(a.id, "7d4444f7334d4324649808acaa3270bacce2304349db264eddd6eecdecc1bb53");
    ess_event_fini(&a);
    ess_event_fini(&b);
    ess_event_fini(&c);
}

/* Deeply nested input hits jansson's depth limit: an error, not a stack overflow. */
static void test_huge_nesting(void **state)
{
    struct ess_event ev;
    struct ess_err err;
    size_t depth = 100000;
    char *body;
    size_t i;

    (void)state;
    body = malloc(2 * depth + 1);
    assert_non_null(body);
    for (i = 0; i < depth; i++) {
        body[i] = '[';
        body[depth + i] = ']';
    }
    body[2 * depth] = '\0';
    ess_err_clear(&err);
    assert_int_equal(ess_event_parse(body, 2 * depth, NULL, "a", &ev, &err), ESS_EPARSE);
    assert_non_null(strstr(err.msg, "not JSON: "));
    free(body);
}

struct path_case {
    const char *path;
    const char *want; /* JSON text of the result, NULL for not found */
};

static const struct path_case path_cases[] = {
    {"a", "{\"b\":{\"c\":3}}"},
    {"a.b", "{\"c\":3}"},
    {"a.b.c", "3"},
    {"a.b.c.d", NULL},
    {"a.x", NULL},
    {"", NULL},
    {"a.", NULL},
    {".a", NULL},
    {"a..b", NULL},
    {"s", "\"t\""},
    {"s.t", NULL},
};

static void test_path_get(void **state)
{
    json_t *obj;
    json_t *v;
    char *text;
    size_t i;

    (void)state;
    obj = json_loads("{\"a\":{\"b\":{\"c\":3}},\"s\":\"t\"}", 0, NULL);
    assert_non_null(obj);
    for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        v = ess_event_path_get(obj, path_cases[i].path);
        if (path_cases[i].want == NULL) {
            if (v != NULL) {
                fail_msg("path '%s': want not found", path_cases[i].path);
            }
            continue;
        }
        assert_non_null(v);
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_string_equal(text, path_cases[i].want);
        free(text);
    }
    assert_null(ess_event_path_get(NULL, "a"));
    assert_null(ess_event_path_get(obj, NULL));
    json_decref(obj);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_not_json_has_position),
        cmocka_unit_test(test_same_body_same_hash),
        cmocka_unit_test(test_huge_nesting),
        cmocka_unit_test(test_path_get),
        cmocka_unit_test(test_identify),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
