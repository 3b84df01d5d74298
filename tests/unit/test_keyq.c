/* ess_keyq: per-key order, concurrency across keys, retries, low-water mark. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_err.h"
#include "ess_keyq.h"

static void push(struct ess_keyq *q, long long seq, const char *key)
{
    char id[32];

    snprintf(id, sizeof(id), "e%lld", seq);
    assert_int_equal(ess_keyq_push(q, seq, strdup(key), strdup(id), strdup("{}"), 0), ESS_OK);
}

static void test_one_in_flight_per_key(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *a;
    struct ess_keyq_item *b;

    (void)state;
    push(q, 1, "A");
    push(q, 2, "A");
    push(q, 3, "B");
    a = ess_keyq_take(q, 0);
    assert_non_null(a);
    assert_int_equal(a->seq, 1);
    b = ess_keyq_take(q, 0);
    assert_non_null(b);
    assert_int_equal(b->seq, 3); /* key A's second event waits for its first */
    assert_null(ess_keyq_take(q, 0));
    ess_keyq_done(q, a);
    a = ess_keyq_take(q, 0);
    assert_non_null(a);
    assert_int_equal(a->seq, 2);
    ess_keyq_done(q, a);
    ess_keyq_done(q, b);
    assert_int_equal(ess_keyq_pending(q), 0);
    assert_int_equal(ess_keyq_low_water(q), 3);
    ess_keyq_free(q);
}

static void test_low_water_waits_for_oldest(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *it[3];
    int i;

    (void)state;
    ess_keyq_set_floor(q, 10);
    push(q, 11, "A");
    push(q, 12, "B");
    push(q, 14, "C"); /* gaps in seq are normal (dedupe burns sequence values) */
    for (i = 0; i < 3; i++) {
        it[i] = ess_keyq_take(q, 0);
        assert_non_null(it[i]);
    }
    assert_int_equal(ess_keyq_low_water(q), 10);
    ess_keyq_done(q, it[2]);
    ess_keyq_done(q, it[1]);
    assert_int_equal(ess_keyq_low_water(q), 10); /* 11 still out */
    ess_keyq_done(q, it[0]);
    assert_int_equal(ess_keyq_low_water(q), 14);
    assert_int_equal(ess_keyq_last_seq(q), 14);
    ess_keyq_free(q);
}

static void test_retry_keeps_key_order(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *a;

    (void)state;
    push(q, 1, "A");
    push(q, 2, "A");
    a = ess_keyq_take(q, 100);
    ess_keyq_retry(q, a, 500);
    assert_null(ess_keyq_take(q, 200)); /* not due, and seq 2 must not overtake */
    assert_int_equal(ess_keyq_next_due(q, 200), 300);
    a = ess_keyq_take(q, 500);
    assert_non_null(a);
    assert_int_equal(a->seq, 1);
    ess_keyq_done(q, a);
    a = ess_keyq_take(q, 500);
    assert_int_equal(a->seq, 2);
    ess_keyq_done(q, a);
    assert_int_equal(ess_keyq_next_due(q, 500), -1);
    ess_keyq_free(q);
}

/* held counts what memory keeps: done events stay until the mark passes them. */
static void test_held_until_the_mark_passes(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *it[3];
    int i;

    (void)state;
    push(q, 1, "A");
    push(q, 2, "B");
    push(q, 3, "C");
    for (i = 0; i < 3; i++) {
        it[i] = ess_keyq_take(q, 0);
    }
    ess_keyq_done(q, it[1]);
    ess_keyq_done(q, it[2]);
    assert_int_equal(ess_keyq_pending(q), 1);
    assert_int_equal(ess_keyq_held(q), 3); /* 1 holds 2 and 3 */
    ess_keyq_done(q, it[0]);
    assert_int_equal(ess_keyq_held(q), 0);
    ess_keyq_free(q);
}

/* retry_now: failed heads go at once, in seq order; a debounced (never
 * failed) head keeps its time. */
static void test_retry_now_wakes_failed_heads_only(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *a;
    struct ess_keyq_item *b;
    struct ess_keyq_item *c;

    (void)state;
    push(q, 1, "A");
    push(q, 2, "B");
    push(q, 3, "C");
    a = ess_keyq_take(q, 0);
    b = ess_keyq_take(q, 0);
    c = ess_keyq_tail(q, "C");
    ess_keyq_reschedule(q, c, 5000); /* a debounce wait */
    a->failed_ms = 10;
    b->failed_ms = 10;
    ess_keyq_retry(q, b, 900); /* b due before a, both later than now */
    ess_keyq_retry(q, a, 2000);
    assert_null(ess_keyq_take(q, 100));
    ess_keyq_retry_now(q, 100);
    assert_int_equal(ess_keyq_next_due(q, 100), 0);
    a = ess_keyq_take(q, 100);
    assert_int_equal(a->seq, 1); /* same time now: seq order */
    b = ess_keyq_take(q, 100);
    assert_int_equal(b->seq, 2);
    assert_null(ess_keyq_take(q, 100)); /* C still waits for its quiet time */
    assert_int_equal(ess_keyq_next_due(q, 100), 4900);
    ess_keyq_done(q, a);
    ess_keyq_done(q, b);
    ess_keyq_free(q);
}

static void test_skip_lets_the_mark_pass(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *a;

    (void)state;
    push(q, 1, "A");
    assert_int_equal(ess_keyq_skip(q, 2), ESS_OK);
    assert_int_equal(ess_keyq_skip(q, 2), ESS_EINVAL);
    push(q, 3, "B");
    assert_int_equal(ess_keyq_low_water(q), 0);
    a = ess_keyq_take(q, 0);
    assert_int_equal(a->seq, 1);
    ess_keyq_done(q, a);
    assert_int_equal(ess_keyq_low_water(q), 2); /* past the skipped seq, stops at 3 */
    a = ess_keyq_take(q, 0);
    assert_int_equal(a->seq, 3);
    ess_keyq_done(q, a);
    assert_int_equal(ess_keyq_low_water(q), 3);
    assert_int_equal(ess_keyq_skip(q, 4), ESS_OK); /* nothing waiting: passes at once */
    assert_int_equal(ess_keyq_low_water(q), 4);
    assert_int_equal(ess_keyq_pending(q), 0);
    ess_keyq_free(q);
}

/* Debounce support: the waiting tail of a key, and moving its due time. */
static void test_tail_and_reschedule(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *a;
    struct ess_keyq_item *t;

    (void)state;
    push(q, 1, "A");
    push(q, 2, "B");
    t = ess_keyq_tail(q, "A");
    assert_non_null(t);
    assert_int_equal(t->seq, 1);
    assert_null(ess_keyq_tail(q, "Z"));
    ess_keyq_reschedule(q, t, 500); /* A waits for its quiet period */
    a = ess_keyq_take(q, 0);
    assert_int_equal(a->seq, 2);        /* B goes first */
    assert_null(ess_keyq_tail(q, "B")); /* in flight: nothing to merge into */
    assert_null(ess_keyq_take(q, 499));
    ess_keyq_reschedule(q, t, 100); /* earlier again */
    a = ess_keyq_take(q, 100);
    assert_int_equal(a->seq, 1);
    ess_keyq_done(q, a);
    push(q, 3, "C");
    t = ess_keyq_tail(q, "C");
    ess_keyq_reschedule(q, t, 50);
    push(q, 4, "C"); /* behind C's head: keeps its own due time (0) */
    assert_null(ess_keyq_take(q, 49));
    ess_keyq_free(q);
}

static void test_absorb_successor(void **state)
{
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *a;
    struct ess_keyq_item *next;

    (void)state;
    push(q, 1, "A");
    push(q, 2, "B");
    push(q, 3, "A");
    push(q, 4, "A");
    a = ess_keyq_take(q, 0);
    assert_int_equal(a->seq, 1);
    next = ess_keyq_successor(q, a);
    assert_non_null(next);
    assert_int_equal(next->seq, 3);
    ess_keyq_absorb(q, a); /* seq 3 merged into the in-flight seq 1 */
    assert_int_equal(ess_keyq_pending(q), 3);
    assert_true(ess_keyq_low_water(q) == 0); /* seq 1 is not done: nothing passes */
    next = ess_keyq_successor(q, a);
    assert_int_equal(next->seq, 4);
    ess_keyq_absorb(q, a);
    assert_null(ess_keyq_successor(q, a));
    assert_null(ess_keyq_tail(q, "A")); /* A's last is the in-flight one */
    next = ess_keyq_take(q, 0);
    assert_int_equal(next->seq, 2); /* B; A has nothing waiting */
    assert_null(ess_keyq_take(q, 0));
    ess_keyq_done(q, a);
    assert_true(ess_keyq_low_water(q) == 1); /* B (2) still in flight */
    ess_keyq_done(q, next);
    assert_true(ess_keyq_low_water(q) == 4); /* past the absorbed 3 and 4 */
    assert_int_equal(ess_keyq_pending(q), 0);
    push(q, 5, "A"); /* the key starts afresh */
    assert_int_equal(ess_keyq_take(q, 0)->seq, 5);
    ess_keyq_free(q);
}

static void test_rejects_out_of_order_seq(void **state)
{
    struct ess_keyq *q = ess_keyq_new();

    (void)state;
    push(q, 5, "A");
    assert_int_equal(ess_keyq_push(q, 5, strdup("B"), NULL, NULL, 0), ESS_EINVAL);
    assert_int_equal(ess_keyq_push(q, 4, strdup("B"), NULL, NULL, 0), ESS_EINVAL);
    assert_int_equal(ess_keyq_pending(q), 1);
    ess_keyq_free(q); /* frees the waiting item too */
}

/* Many keys, random completion order: every key sees its events in order and
 * the mark ends at the last seq. */
static void test_many_keys_in_order(void **state)
{
    enum { N = 5000, KEYS = 97 };
    struct ess_keyq *q = ess_keyq_new();
    struct ess_keyq_item *out[64];
    long long last[KEYS];
    char key[16];
    size_t n_out = 0;
    size_t i;
    int k;
    unsigned seed = 7;

    (void)state;
    memset(last, 0, sizeof(last));
    for (i = 1; i <= N; i++) {
        snprintf(key, sizeof(key), "%d", (int)(i * 31 % KEYS));
        push(q, (long long)i, key);
    }
    while (ess_keyq_pending(q) > 0) {
        while (n_out < 64) {
            out[n_out] = ess_keyq_take(q, 0);
            if (out[n_out] == NULL) {
                break;
            }
            n_out++;
        }
        assert_true(n_out > 0);
        i = (size_t)rand_r(&seed) % n_out;
        k = (int)strtol(out[i]->key, NULL, 10);
        assert_true(out[i]->seq > last[k]);
        last[k] = out[i]->seq;
        ess_keyq_done(q, out[i]);
        out[i] = out[--n_out];
    }
    assert_int_equal(ess_keyq_low_water(q), N);
    ess_keyq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_in_flight_per_key),
        cmocka_unit_test(test_low_water_waits_for_oldest),
        cmocka_unit_test(test_retry_keeps_key_order),
        cmocka_unit_test(test_rejects_out_of_order_seq),
        cmocka_unit_test(test_skip_lets_the_mark_pass),
        cmocka_unit_test(test_tail_and_reschedule),
        cmocka_unit_test(test_many_keys_in_order),
        cmocka_unit_test(test_absorb_successor),
        cmocka_unit_test(test_held_until_the_mark_passes),
        cmocka_unit_test(test_retry_now_wakes_failed_heads_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
