/*
 * test_replica -- key partitions and rendezvous ownership of ess_replica
 * (the database side is covered by ess-it-replicas).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_replica.h"

static void test_part_in_range_and_stable(void **state)
{
    char key[32];
    int seen[ESS_REPLICA_PARTS] = {0};
    int i, used = 0;

    (void)state;
    for (i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "K%d", i);
        assert_true(ess_replica_part(key) < ESS_REPLICA_PARTS);
        assert_int_equal(ess_replica_part(key), ess_replica_part(key));
        seen[ess_replica_part(key)]++;
    }
    for (i = 0; i < ESS_REPLICA_PARTS; i++) {
        used += seen[i] > 0;
        assert_true(seen[i] < 30); /* 500 keys: about 8 a partition, none hoarding */
    }
    assert_true(used >= 60);
    assert_true(ess_replica_part("") < ESS_REPLICA_PARTS);
}

static void test_owner_empty_and_single(void **state)
{
    const char *one[] = {"host:1"};
    unsigned p;

    (void)state;
    assert_int_equal(ess_replica_owner(NULL, 0, 3), -1);
    for (p = 0; p < ESS_REPLICA_PARTS; p++) {
        assert_int_equal(ess_replica_owner(one, 1, p), 0);
    }
}

/* Every replica gets a fair share, and losing one moves only its share. */
static void test_owner_balanced_and_minimal_moves(void **state)
{
    const char *three[] = {"host:101", "host:202", "host:303"};
    const char *two[] = {"host:101", "host:303"};
    int share[3] = {0};
    unsigned p;
    int before, after;

    (void)state;
    for (p = 0; p < ESS_REPLICA_PARTS; p++) {
        before = ess_replica_owner(three, 3, p);
        assert_true(before >= 0 && before < 3);
        share[before]++;
        after = ess_replica_owner(two, 2, p);
        if (before != 1) {
            /* a partition that was not host:202's stays where it was */
            assert_string_equal(two[after], three[before]);
        }
    }
    assert_true(share[0] >= 10 && share[1] >= 10 && share[2] >= 10);
}

static void test_count_env_overrides(void **state)
{
    struct ess_manifest m;

    (void)state;
    memset(&m, 0, sizeof(m));
    m.replicas = 2;
    unsetenv("ESS_REPLICAS");
    assert_int_equal(ess_replica_count(&m), 2);
    setenv("ESS_REPLICAS", "5", 1);
    assert_int_equal(ess_replica_count(&m), 5);
    setenv("ESS_REPLICAS", "0", 1);
    assert_int_equal(ess_replica_count(&m), 2);
    setenv("ESS_REPLICAS", "3x", 1);
    assert_int_equal(ess_replica_count(&m), 2);
    unsetenv("ESS_REPLICAS");
}

static void test_new_wants_nothing_before_a_claim(void **state)
{
    struct ess_replica *r = ess_replica_new("c", "host:1", 1);

    (void)state;
    assert_non_null(r);
    assert_false(ess_replica_wants(r, "K1", 10));
    assert_false(ess_replica_owns_key(r, "K1"));
    assert_false(ess_replica_may_dispatch(r, 1000)); /* never stamped */
    assert_int_equal(ess_replica_retain_floor(r), -1);
    assert_true(ess_replica_owned(r) == 0);
    ess_replica_free(r);
    ess_replica_free(NULL);
}

/* Two processes with one instance name must still be two replicas. */
static void test_names_unique_for_one_instance(void **state)
{
    struct ess_replica *a = ess_replica_new("c", "pod:1", 1);
    struct ess_replica *b = ess_replica_new("c", "pod:1", 1);

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(strncmp(ess_replica_name(a), "pod:1#", 6), 0);
    assert_int_equal(strlen(ess_replica_name(a)), strlen("pod:1#") + 8);
    assert_string_not_equal(ess_replica_name(a), ess_replica_name(b));
    ess_replica_free(a);
    ess_replica_free(b);
}

/* The span a partition read looks at: about want rows of its own, bounded. */
static void test_scan_budget(void **state)
{
    static const struct {
        uint64_t owned;
        int want, scan;
    } cases[] = {
        {~0ULL, 1000, 1000},                         /* one replica's worth: every row is its own */
        {0xffffffffULL, 1000, 2000},                 /* half the partitions */
        {0x1fffffULL, 1000, 3047},                   /* 21 of 64 (one of three replicas) */
        {0x1ULL, 1000, 1000 * ESS_REPLICA_SCAN_MAX}, /* one partition: capped */
        {0, 1000, 1000 * ESS_REPLICA_SCAN_MAX},      /* none: still moves the cursor on */
        {0x3ULL, 0, 0},
        {0x3ULL, -5, 0},
        {0x1ULL, 0x7fffffff, 0x7fffffff}, /* no overflow */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ess_replica_scan(cases[i].owned, cases[i].want), cases[i].scan);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_part_in_range_and_stable),
        cmocka_unit_test(test_owner_empty_and_single),
        cmocka_unit_test(test_owner_balanced_and_minimal_moves),
        cmocka_unit_test(test_count_env_overrides),
        cmocka_unit_test(test_new_wants_nothing_before_a_claim),
        cmocka_unit_test(test_names_unique_for_one_instance),
        cmocka_unit_test(test_scan_budget),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
