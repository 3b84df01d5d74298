/*
 * test_audit -- the hash chain: a known hash, a chain built and walked,
 * and every way of breaking it (altered content, kind, time, hash recomputed,
 * a row removed, rows renumbered) named at the right row. The store side
 * (flush, verify against Postgres) is tests/integration/test_security.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_audit.h"

#define ZERO "0000000000000000000000000000000000000000000000000000000000000000"
#define NROWS 6

struct chain {
    char content[NROWS][64];
    char prev[NROWS][ESS_AUDIT_HASH_HEX];
    char hash[NROWS][ESS_AUDIT_HASH_HEX];
    struct ess_audit_row row[NROWS];
};

static void chain_build(struct chain *c)
{
    const char *prev = ZERO;
    int i;

    for (i = 0; i < NROWS; i++) {
        snprintf(c->content[i], sizeof(c->content[i]), "{\"seq\":%d,\"status\":200}", i + 1);
        snprintf(c->prev[i], sizeof(c->prev[i]), "%s", prev);
        assert_int_equal(
            ess_audit_hash(prev, i + 1, "city2dmv", "attempt", 1000 + i, c->content[i], c->hash[i]),
            ESS_OK);
        c->row[i] = (struct ess_audit_row){i + 1,         "attempt",  1000 + i,
                                           c->content[i], c->prev[i], c->hash[i]};
        prev = c->hash[i];
    }
}

/* Walk rows[0..n); the code of the first failing step (ESS_OK if none). */
static int chain_walk(const struct ess_audit_row *rows, int n, struct ess_err *err, long long *bad)
{
    struct ess_audit_walk w;
    int i;
    int rc = ESS_OK;

    ess_audit_walk_init(&w);
    ess_err_clear(err);
    for (i = 0; i < n && rc == ESS_OK; i++) {
        rc = ess_audit_walk_step(&w, "city2dmv", &rows[i], err);
    }
    *bad = w.bad_n;
    return rc;
}

static void test_hash_known(void **state)
{
    char h[ESS_AUDIT_HASH_HEX];

    (void)state;
    /* printf '%s\n1\nc\nk\n2\n{}' $ZERO | sha256sum */
    assert_int_equal(ess_audit_hash(ZERO, 1, "c", "k", 2, "{}", h), ESS_OK);
    assert_int_equal(strlen(h), 64);
    assert_string_equal(h, "6b12642434379ad2d6f2aac229549cb4b4de5673decac8c1aaf3b29f7527fb0f");
    assert_int_equal(ess_audit_hash(NULL, 1, "c", "k", 2, "{}", h), ESS_EINVAL);
}

static void test_intact_chain(void **state)
{
    struct chain c;
    struct ess_err err;
    long long bad;

    (void)state;
    chain_build(&c);
    assert_int_equal(chain_walk(c.row, NROWS, &err, &bad), ESS_OK);
    assert_int_equal(bad, 0);
}

/* Each tampering, and the row verify must name. */
static void test_tampering_table(void **state)
{
    static const struct {
        const char *what;
        int row;       /* 0-based row touched */
        int how;       /* 0 content, 1 kind, 2 at_ms, 3 content + own hash, 4 remove, 5 n */
        long long bad; /* the row named */
        const char *msg;
    } cases[] = {
        {"content edited", 2, 0, 3, "row 3 altered (its content"},
        {"kind edited", 0, 1, 1, "row 1 altered (its content"},
        {"time edited", 5, 2, 6, "row 6 altered (its content"},
        {"content edited, hash recomputed", 3, 3, 4, "row 4 altered or a row removed after it"},
        {"middle row removed", 2, 4, 3, "row 3 removed (the next row is 4)"},
        {"first row removed", 0, 4, 1, "row 1 removed"},
        {"renumbered to hide a removal", 2, 5, 2, "row 2 altered or a row removed after it"},
    };
    struct ess_audit_row rows[NROWS];
    char hash[ESS_AUDIT_HASH_HEX];
    struct ess_err err;
    struct chain c;
    long long bad;
    size_t i;
    int n, r;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        chain_build(&c);
        memcpy(rows, c.row, sizeof(rows));
        n = NROWS;
        r = cases[i].row;
        switch (cases[i].how) {
        case 0:
        case 3:
            rows[r].content = "{\"seq\":1,\"status\":500}";
            break;
        case 1:
            rows[r].kind = "manifest";
            break;
        case 2:
            rows[r].at_ms++;
            break;
        default: /* 4, 5: remove row r; 5 also renumbers the rest */
            memmove(rows + r, rows + r + 1, (size_t)(NROWS - r - 1) * sizeof(rows[0]));
            n--;
            for (; cases[i].how == 5 && r < n; r++) {
                rows[r].n--;
            }
            break;
        }
        if (cases[i].how == 3) {
            assert_int_equal(ess_audit_hash(rows[r].prev_hash, rows[r].n, "city2dmv", rows[r].kind,
                                            rows[r].at_ms, rows[r].content, hash),
                             ESS_OK);
            rows[r].hash = hash;
        }
        assert_int_equal(chain_walk(rows, n, &err, &bad), ESS_EPARSE);
        assert_int_equal(bad, cases[i].bad);
        if (strstr(err.msg, cases[i].msg) == NULL) {
            fail_msg("%s: '%s' lacks '%s'", cases[i].what, err.msg, cases[i].msg);
        }
    }
}

static void test_queue(void **state)
{
    struct ess_audit *a = ess_audit_new("x");
    json_t *c = json_pack("{s:s}", "k", "a'b\\c");
    json_t *arr = json_array();

    (void)state;
    assert_non_null(a);
    assert_int_equal(ess_audit_pending(a), 0);
    assert_int_equal(ess_audit_add(a, "attempt", 1, c), ESS_OK);
    assert_int_equal(ess_audit_add(a, "attempt", 1, arr), ESS_EINVAL);
    assert_int_equal(ess_audit_pending(a), 1);
    assert_int_equal(ess_audit_flush(a, NULL, NULL), ESS_EINVAL);
    assert_int_equal(ess_audit_pending(a), 1);
    json_decref(c);
    json_decref(arr);
    ess_audit_free(a);
    ess_audit_free(NULL);
}

/* A store away for long: the queue stays bounded (the oldest go, counted). */
static void test_queue_bounded(void **state)
{
    struct ess_audit *a = ess_audit_new("x");
    json_t *c = json_object();
    long i;

    (void)state;
    for (i = 0; i < ESS_AUDIT_QUEUE_MAX + 10; i++) {
        assert_int_equal(ess_audit_add(a, "attempt", i, c), ESS_OK);
    }
    assert_int_equal(ess_audit_pending(a), ESS_AUDIT_QUEUE_MAX);
    json_decref(c);
    ess_audit_free(a);
}

/* The attempt content built by hand must be the bytes json_dumps writes. */
static void attempt_same(long long seq, const char *event_id, const char *key, long status,
                         const char *error)
{
    json_t *c = json_pack("{s:I, s:s?, s:s?, s:I}", "seq", (json_int_t)seq, "event_id", event_id,
                          "key", key, "status", (json_int_t)status);
    char *want;
    char *got;

    assert_non_null(c);
    if (error != NULL && error[0] != '\0') {
        json_object_set_new(c, "error", json_string(error));
    }
    want = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    got = ess_audit_attempt_content(seq, event_id, key, status, error);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
    json_decref(c);
}

static void test_attempt_content(void **state)
{
    (void)state;
    attempt_same(1, "ev-1", "P-7", 200, NULL);
    attempt_same(-5, NULL, "P/7 ~", -1, "");
    attempt_same(9223372036854775807LL, "a", NULL, 503, "HTTP 503: slow down");
    attempt_same(-9223372036854775807LL - 1, NULL, NULL, 0, "timeout");
    attempt_same(3, "q\"x", "back\\slash", 200, NULL); /* escaped: through jansson */
    attempt_same(3, "caf\xc3\xa9", "k", 200, "line\nbreak\x7f");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_known),      cmocka_unit_test(test_intact_chain),
        cmocka_unit_test(test_tampering_table), cmocka_unit_test(test_queue),
        cmocka_unit_test(test_queue_bounded),   cmocka_unit_test(test_attempt_content),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
