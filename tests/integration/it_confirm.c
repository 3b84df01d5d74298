/*
 * it_confirm -- publisher confirms (ess_bus_publish_confirmed) against the real
 * RabbitMQ of stack.sh: an ack is ESS_OK, an unroutable publish (basic.return)
 * is ESS_ENOTFOUND rather than success, confirms must be selected first, and
 * a bus whose connection is gone reports ESS_EBUS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ess_bus.h"

#define EVENTS "hms.events"
#define OPS "hms.ops"
#define TIMEOUT_MS 5000

static const char *amqp_url(void)
{
    const char *url = getenv("ESS_AMQP_URL");

    if (url == NULL || *url == '\0') {
        fprintf(stderr, "ESS_AMQP_URL is not set: run through ctest (with_stack.sh)\n");
        exit(1);
    }
    return url;
}

/* A confirming bus; with topic, queue ess.<id> is bound to it first. */
static struct ess_bus *bus_confirming(const char *id, const char *topic)
{
    char *topics_v[1] = {(char *)topic};
    struct ess_strlist topics = {topics_v, 1};
    struct ess_err err;
    struct ess_bus *b;

    ess_err_clear(&err);
    b = ess_bus_new(amqp_url(), &err);
    if (b == NULL) {
        fail_msg("ess_bus_new: %s", err.msg);
    }
    if (topic != NULL && ess_bus_declare_push(b, EVENTS, OPS, id, &topics, &err) != ESS_OK) {
        fail_msg("declare: %s", err.msg);
    }
    if (ess_bus_confirm_select(b, &err) != ESS_OK) {
        fail_msg("confirm.select: %s", err.msg);
    }
    return b;
}

static void test_ack_is_ok(void **state)
{
    char id[64], topic[96];
    struct ess_err err;
    struct ess_bus *b;
    int i;

    (void)state;
    snprintf(id, sizeof(id), "it-confirm-%ld-ack", (long)getpid());
    snprintf(topic, sizeof(topic), "it.%s.x", id);
    b = bus_confirming(id, topic);
    for (i = 0; i < 3; i++) { /* sequence numbers advance per publish */
        ess_err_clear(&err);
        assert_int_equal(
            ess_bus_publish_confirmed_id(b, EVENTS, topic, "m-1", "{}", 2, "it", TIMEOUT_MS, &err),
            ESS_OK);
    }
    /* a fire-and-forget publish in between takes a sequence number too */
    assert_int_equal(ess_bus_publish(b, OPS, "ess.heartbeat.it", "{}", 2, NULL, &err), ESS_OK);
    assert_int_equal(ess_bus_publish_confirmed(b, EVENTS, topic, "{}", 2, NULL, TIMEOUT_MS, &err),
                     ESS_OK);
    ess_bus_free(b);
}

static void test_unroutable_is_an_error(void **state)
{
    char topic[96];
    struct ess_err err;
    struct ess_bus *b;

    (void)state;
    snprintf(topic, sizeof(topic), "it.confirm.%ld.nobody", (long)getpid());
    b = bus_confirming(NULL, NULL);
    ess_err_clear(&err);
    assert_int_equal(ess_bus_publish_confirmed(b, EVENTS, topic, "{}", 2, "it", TIMEOUT_MS, &err),
                     ESS_ENOTFOUND);
    assert_non_null(strstr(err.msg, "unroutable"));
    /* the bus is still usable afterwards */
    ess_err_clear(&err);
    assert_int_equal(ess_bus_publish(b, OPS, "ess.heartbeat.it", "{}", 2, NULL, &err), ESS_OK);
    ess_bus_free(b);
}

static void test_needs_confirm_select(void **state)
{
    struct ess_err err;
    struct ess_bus *b;

    (void)state;
    ess_err_clear(&err);
    b = ess_bus_new(amqp_url(), &err);
    assert_non_null(b);
    assert_int_equal(ess_bus_publish_confirmed(b, EVENTS, "x", "{}", 2, NULL, TIMEOUT_MS, &err),
                     ESS_EINVAL);
    ess_bus_free(b);
}

static void test_missing_exchange_is_bus_error(void **state)
{
    struct ess_err err;
    struct ess_bus *b;

    (void)state;
    b = bus_confirming(NULL, NULL);
    ess_err_clear(&err);
    /* the broker closes the channel (NOT_FOUND): reported as ESS_EBUS, and
     * every later call too */
    assert_int_equal(ess_bus_publish_confirmed(b, "it.confirm.no-such-exchange", "x", "{}", 2, NULL,
                                               TIMEOUT_MS, &err),
                     ESS_EBUS);
    ess_err_clear(&err);
    assert_int_equal(ess_bus_publish_confirmed(b, EVENTS, "x", "{}", 2, NULL, TIMEOUT_MS, &err),
                     ESS_EBUS);
    ess_bus_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ack_is_ok),
        cmocka_unit_test(test_unroutable_is_an_error),
        cmocka_unit_test(test_needs_confirm_select),
        cmocka_unit_test(test_missing_exchange_is_bus_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
