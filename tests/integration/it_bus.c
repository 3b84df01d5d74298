/*
 * it_bus -- ess_bus against the real RabbitMQ of stack.sh (ESS_AMQP_URL).
 *
 * HMS-side publishing (with a message_id) and queue inspection use rabbitmq-c
 * directly, as HMS would; everything else goes through ess_bus. Each test uses
 * its own connector id, so tests do not see each other's messages. Every wait
 * is bounded (wait_msg), never a bare sleep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "ess_bus.h"

#define WAIT_MS 5000
#define EVENTS "hms.events"
#define OPS "hms.ops"

static const char *amqp_url(void)
{
    const char *url = getenv("ESS_AMQP_URL");

    if (url == NULL || *url == '\0') {
        fprintf(stderr, "ESS_AMQP_URL is not set: run through ctest (with_stack.sh)\n");
        exit(1);
    }
    return url;
}

/* A URL with other credentials/vhost on the same host:port. */
static void url_with(char *buf, size_t len, const char *userpass, const char *vhost)
{
    char *copy = strdup(amqp_url());
    struct amqp_connection_info ci;

    assert_non_null(copy);
    assert_int_equal(amqp_parse_url(copy, &ci), AMQP_STATUS_OK);
    snprintf(buf, len, "amqp://%s@%s:%d/%s", userpass, ci.host, ci.port, vhost);
    free(copy);
}

static void unique_id(char *buf, size_t len, const char *what)
{
    static int n;

    snprintf(buf, len, "it-bus-%ld-%s-%d", (long)getpid(), what, ++n);
}

static struct ess_bus *bus_open(void)
{
    struct ess_err err;
    struct ess_bus *b;

    ess_err_clear(&err);
    b = ess_bus_new(amqp_url(), &err);
    if (b == NULL) {
        fail_msg("ess_bus_new: %s", err.msg);
    }
    return b;
}

/* Connect, declare ess.<id> for topic, consume it. */
static struct ess_bus *bus_push(const char *id, const char *topic, int prefetch)
{
    char *topics_v[1] = {(char *)topic};
    struct ess_strlist topics = {topics_v, 1};
    struct ess_bus *b = bus_open();
    struct ess_err err;
    char queue[300];

    ess_err_clear(&err);
    if (ess_bus_declare_push(b, EVENTS, OPS, id, &topics, &err) != ESS_OK) {
        fail_msg("declare: %s", err.msg);
    }
    snprintf(queue, sizeof(queue), "ess.%s", id);
    if (ess_bus_consume(b, queue, prefetch, &err) != ESS_OK) {
        fail_msg("consume: %s", err.msg);
    }
    return b;
}

/* 1 and msg when a delivery arrives within ms, else 0. */
static int wait_msg(struct ess_bus *b, int ms, struct ess_bus_msg *msg)
{
    struct ess_err err;
    int i;
    int rc;

    for (i = 0; i < ms / 100; i++) {
        ess_err_clear(&err);
        rc = ess_bus_next(b, 100, msg, &err);
        if (rc < 0) {
            fail_msg("ess_bus_next: %s", err.msg);
        }
        if (rc == 1) {
            return 1;
        }
    }
    return 0;
}

static void publish(struct ess_bus *b, const char *rk, const char *body, const char *origin)
{
    struct ess_err err;

    ess_err_clear(&err);
    if (ess_bus_publish(b, EVENTS, rk, body, strlen(body), origin, &err) != ESS_OK) {
        fail_msg("publish: %s", err.msg);
    }
}

/* ------------------------------------------- raw rabbitmq-c, as HMS ----- */

static amqp_connection_state_t raw_open(void)
{
    char *copy = strdup(amqp_url());
    struct amqp_connection_info ci;
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);

    assert_non_null(copy);
    assert_non_null(s);
    assert_int_equal(amqp_parse_url(copy, &ci), AMQP_STATUS_OK);
    assert_int_equal(amqp_socket_open(s, ci.host, ci.port), AMQP_STATUS_OK);
    assert_int_equal(amqp_login(c, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN,
                                ci.user, ci.password)
                         .reply_type,
                     AMQP_RESPONSE_NORMAL);
    amqp_channel_open(c, 1);
    assert_int_equal(amqp_get_rpc_reply(c).reply_type, AMQP_RESPONSE_NORMAL);
    free(copy);
    return c;
}

static void raw_close(amqp_connection_state_t c)
{
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static void raw_publish(const char *rk, const char *body, const char *message_id,
                        const char *origin_bytes)
{
    amqp_connection_state_t c = raw_open();
    amqp_basic_properties_t p;
    amqp_table_entry_t h;

    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    p.message_id = amqp_cstring_bytes(message_id);
    p.timestamp = 1795729200;
    if (origin_bytes != NULL) {
        h.key = amqp_cstring_bytes("ess-origin");
        h.value.kind = AMQP_FIELD_KIND_BYTES;
        h.value.value.bytes = amqp_cstring_bytes(origin_bytes);
        p.headers.num_entries = 1;
        p.headers.entries = &h;
        p._flags |= AMQP_BASIC_HEADERS_FLAG;
    }
    assert_int_equal(amqp_basic_publish(c, 1, amqp_cstring_bytes(EVENTS), amqp_cstring_bytes(rk), 0,
                                        0, &p, amqp_cstring_bytes(body)),
                     AMQP_STATUS_OK);
    raw_close(c);
}

/* Ready (not unacked) messages in queue. */
static int raw_count(const char *queue)
{
    amqp_connection_state_t c = raw_open();
    amqp_queue_declare_ok_t *ok;
    int n;

    ok = amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
    assert_non_null(ok);
    n = (int)ok->message_count;
    raw_close(c);
    return n;
}

/* ---------------------------------------------------------- tests ------ */

struct url_case {
    const char *url; /* NULL: built from the stack URL */
    const char *userpass;
    const char *vhost;
    int want_rc;
    const char *want_sub;
};

static void test_connect_errors(void **state)
{
    static const struct url_case cases[] = {
        {"http://127.0.0.1/", NULL, NULL, ESS_ECONFIG, "AMQP URL is not amqp://"},
        {"amqp://[::1", NULL, NULL, ESS_ECONFIG, "AMQP URL is not amqp://"},
        {"amqps://guest:guest@127.0.0.1:1/", NULL, NULL, ESS_EBUS,
         "cannot connect to 127.0.0.1:1: connection refused"}, /* TLS: test_security.py */
        {"amqp://guest:guest@127.0.0.1:1/", NULL, NULL, ESS_EBUS,
         "cannot connect to 127.0.0.1:1: connection refused"},
        {"amqp://guest:guest@no-such-host.invalid:5672/", NULL, NULL, ESS_EBUS,
         "cannot connect to no-such-host.invalid:5672: "},
        {NULL, "guest:wrong", "", ESS_EBUS, "ACCESS_REFUSED"},
        {NULL, "nobody:x", "", ESS_EBUS, "ACCESS_REFUSED"},
        {NULL, "guest:guest", "no-such-vhost", ESS_EBUS, "no-such-vhost"},
    };
    struct ess_err err;
    struct ess_bus *b;
    char url[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].url != NULL) {
            snprintf(url, sizeof(url), "%s", cases[i].url);
        } else {
            url_with(url, sizeof(url), cases[i].userpass, cases[i].vhost);
        }
        ess_err_clear(&err);
        b = ess_bus_new(url, &err);
        if (b != NULL || err.code != cases[i].want_rc ||
            strstr(err.msg, cases[i].want_sub) == NULL) {
            fail_msg("case %zu: code %d msg '%s', want %d '...%s...'", i, err.code, err.msg,
                     cases[i].want_rc, cases[i].want_sub);
        }
        assert_null(strstr(err.msg, "wrong")); /* never echo the password */
        assert_null(strchr(err.msg, '\n'));
    }
}

/* "amqp://u:p@h:port/" has an empty vhost in rabbitmq-c 0.11; "%2f" is "/". */
static void test_vhost_forms(void **state)
{
    static const char *const vhosts[] = {"", "%2f"};
    struct ess_err err;
    struct ess_bus *b;
    char url[512];
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        url_with(url, sizeof(url), "guest:guest", vhosts[i]);
        ess_err_clear(&err);
        b = ess_bus_new(url, &err);
        if (b == NULL) {
            fail_msg("vhost '%s': %s", vhosts[i], err.msg);
        }
        assert_true(ess_bus_fd(b) >= 0);
        ess_bus_free(b);
    }
    ess_bus_free(NULL);
}

static void test_declare_idempotent(void **state)
{
    char *tv[2] = {"permits.changed", "permits.*.deleted"};
    struct ess_strlist topics = {tv, 2};
    struct ess_bus *b = bus_open();
    struct ess_err err;
    char id[64];
    int i;

    (void)state;
    unique_id(id, sizeof(id), "decl");
    for (i = 0; i < 2; i++) {
        ess_err_clear(&err);
        if (ess_bus_declare_push(b, EVENTS, OPS, id, &topics, &err) != ESS_OK) {
            fail_msg("declare #%d: %s", i + 1, err.msg);
        }
    }
    ess_bus_free(b);
    /* A reconnect declares again. */
    b = bus_open();
    assert_int_equal(ess_bus_declare_push(b, EVENTS, OPS, id, &topics, &err), ESS_OK);
    ess_bus_free(b);
}

/* An exchange of the wrong type: the broker closes the channel; the message is
 * its own, and every later call reports the closed channel. */
static void test_declare_conflict(void **state)
{
    struct ess_bus *b = bus_open();
    struct ess_bus_msg msg;
    struct ess_err err;
    char id[64];

    (void)state;
    unique_id(id, sizeof(id), "conflict");
    ess_err_clear(&err);
    assert_int_equal(ess_bus_declare_push(b, EVENTS, "ess.dlx", id, NULL, &err), ESS_EBUS);
    assert_non_null(strstr(err.msg, "declare exchange ess.dlx: PRECONDITION_FAILED"));
    ess_err_clear(&err);
    assert_int_equal(ess_bus_next(b, 0, &msg, &err), ESS_EBUS);
    assert_non_null(strstr(err.msg, "channel was closed"));
    ess_bus_free(b);
}

static void test_publish_consume(void **state)
{
    struct ess_bus *b;
    struct ess_bus_msg msg;
    struct ess_err err;
    char id[64];
    char topic[96];

    (void)state;
    unique_id(id, sizeof(id), "pc");
    snprintf(topic, sizeof(topic), "%s.permits.changed", id);
    b = bus_push(id, topic, 10);
    ess_err_clear(&err);
    assert_int_equal(ess_bus_next(b, 0, &msg, &err), 0);
    raw_publish(topic, "{\"permit_id\":1}", "msg-1", "dmv");
    assert_int_equal(wait_msg(b, WAIT_MS, &msg), 1);
    assert_string_equal(msg.message_id, "msg-1");
    assert_string_equal(msg.origin, "dmv");
    assert_string_equal(msg.routing_key, topic);
    assert_int_equal(msg.timestamp_ms, 1795729200000LL);
    assert_int_equal(msg.redelivered, 0);
    assert_int_equal(msg.len, strlen("{\"permit_id\":1}"));
    assert_memory_equal(msg.body, "{\"permit_id\":1}", msg.len);
    publish(b, topic, "{\"permit_id\":2}", "city");
    assert_int_equal(wait_msg(b, WAIT_MS, &msg), 1);
    assert_string_equal(msg.message_id, "");
    assert_string_equal(msg.origin, "city");
    assert_memory_equal(msg.body, "{\"permit_id\":2}", msg.len);
    assert_int_equal(ess_bus_ack_upto(b, msg.tag, &err), ESS_OK);
    ess_bus_free(b);
}

static void test_ack_upto(void **state)
{
    struct ess_bus *b;
    struct ess_bus_msg msg;
    struct ess_err err;
    uint64_t tags[4];
    char id[64];
    char topic[96];
    char queue[96];
    int i;

    (void)state;
    unique_id(id, sizeof(id), "ack");
    snprintf(topic, sizeof(topic), "%s.t", id);
    snprintf(queue, sizeof(queue), "ess.%s", id);
    b = bus_push(id, topic, 10);
    for (i = 0; i < 4; i++) {
        publish(b, topic, "{}", NULL);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(wait_msg(b, WAIT_MS, &msg), 1);
        tags[i] = msg.tag;
    }
    ess_err_clear(&err);
    assert_int_equal(ess_bus_ack_upto(b, tags[2], &err), ESS_OK); /* 3 of 4 */
    ess_bus_free(b);                                              /* 4th goes back */
    assert_int_equal(raw_count(queue), 1);
    b = bus_push(id, topic, 10);
    assert_int_equal(wait_msg(b, WAIT_MS, &msg), 1);
    assert_int_equal(msg.redelivered, 1);
    assert_int_equal(ess_bus_ack_upto(b, msg.tag, &err), ESS_OK);
    ess_bus_free(b);
    assert_int_equal(raw_count(queue), 0);
    (void)tags[3];
}

static void test_reject_dead_letters(void **state)
{
    struct ess_bus *b;
    struct ess_bus *dead;
    struct ess_bus_msg msg;
    struct ess_err err;
    char id[64];
    char topic[96];
    char dq[96];

    (void)state;
    unique_id(id, sizeof(id), "rej");
    snprintf(topic, sizeof(topic), "%s.t", id);
    snprintf(dq, sizeof(dq), "ess.%s.dead", id);
    b = bus_push(id, topic, 10);
    raw_publish(topic, "not json", "bad-1", NULL);
    assert_int_equal(wait_msg(b, WAIT_MS, &msg), 1);
    ess_err_clear(&err);
    assert_int_equal(ess_bus_reject(b, msg.tag, &err), ESS_OK);
    dead = bus_open();
    assert_int_equal(ess_bus_consume(dead, dq, 1, &err), ESS_OK);
    assert_int_equal(wait_msg(dead, WAIT_MS, &msg), 1);
    assert_string_equal(msg.message_id, "bad-1");
    assert_memory_equal(msg.body, "not json", msg.len);
    assert_int_equal(ess_bus_ack_upto(dead, msg.tag, &err), ESS_OK);
    ess_bus_free(dead);
    ess_bus_free(b);
}

/* Queues are FIFO: when the sentinel published after the unbound message is
 * the first to arrive, the unbound one was never delivered. */
static void test_unbound_topic(void **state)
{
    struct ess_bus *b;
    struct ess_bus_msg msg;
    char id[64];
    char topic[96];
    char other[96];

    (void)state;
    unique_id(id, sizeof(id), "unbound");
    snprintf(topic, sizeof(topic), "%s.wanted", id);
    snprintf(other, sizeof(other), "%s.other", id);
    b = bus_push(id, topic, 10);
    publish(b, other, "{\"n\":1}", NULL);
    publish(b, topic, "{\"n\":2}", NULL);
    assert_int_equal(wait_msg(b, WAIT_MS, &msg), 1);
    assert_memory_equal(msg.body, "{\"n\":2}", msg.len);
    assert_string_equal(msg.routing_key, topic);
    assert_int_equal(ess_bus_next(b, 300, &msg, NULL), 0);
    ess_bus_free(b);
}

/* Publishing to a missing exchange: the broker closes the channel
 * asynchronously; ess_bus_next reports its reason. */
static void test_publish_missing_exchange(void **state)
{
    struct ess_bus *b = bus_open();
    struct ess_bus_msg msg;
    struct ess_err err;
    int rc = 0;
    int i;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_bus_publish(b, "no.such.exchange", "x", "{}", 2, NULL, &err), ESS_OK);
    for (i = 0; i < 50 && rc == 0; i++) {
        rc = ess_bus_next(b, 100, &msg, &err);
    }
    assert_int_equal(rc, ESS_EBUS);
    assert_non_null(strstr(err.msg, "NOT_FOUND - no exchange 'no.such.exchange'"));
    ess_err_clear(&err);
    assert_int_equal(ess_bus_publish(b, EVENTS, "x", "{}", 2, NULL, &err), ESS_EBUS);
    ess_bus_free(b);
}

static void test_consume_missing_queue(void **state)
{
    struct ess_bus *b = bus_open();
    struct ess_err err;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_bus_consume(b, "ess.it-bus-no-such-queue", 10, &err), ESS_EBUS);
    assert_non_null(strstr(err.msg, "NOT_FOUND - no queue 'ess.it-bus-no-such-queue'"));
    ess_err_clear(&err);
    assert_int_equal(ess_bus_consume(b, "x", 0, &err), ESS_EINVAL);
    ess_bus_free(b);
}

static void test_cancel(void **state)
{
    struct ess_bus *b;
    struct ess_bus_msg msg;
    struct ess_err err;
    char id[64];
    char topic[96];
    char queue[96];

    (void)state;
    unique_id(id, sizeof(id), "cancel");
    snprintf(topic, sizeof(topic), "%s.t", id);
    snprintf(queue, sizeof(queue), "ess.%s", id);
    b = bus_push(id, topic, 10);
    ess_err_clear(&err);
    assert_int_equal(ess_bus_cancel(b, &err), ESS_OK);
    assert_int_equal(ess_bus_cancel(b, &err), ESS_OK);
    publish(b, topic, "{}", NULL);
    assert_int_equal(ess_bus_next(b, 300, &msg, &err), 0);
    assert_int_equal(ess_bus_buffered(b), 0);
    ess_bus_free(b);
    assert_int_equal(raw_count(queue), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_vhost_forms),
        cmocka_unit_test(test_declare_idempotent),
        cmocka_unit_test(test_declare_conflict),
        cmocka_unit_test(test_publish_consume),
        cmocka_unit_test(test_ack_upto),
        cmocka_unit_test(test_reject_dead_letters),
        cmocka_unit_test(test_unbound_topic),
        cmocka_unit_test(test_publish_missing_exchange),
        cmocka_unit_test(test_consume_missing_queue),
        cmocka_unit_test(test_cancel),
    };

    (void)amqp_url();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
