/* amqp_common.c -- see amqp_common.h. */
#include "amqp_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <amqp_tcp_socket.h>

#define BENCH_EXCHANGE "hms.events"

int64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t bench_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int bench_amqp_check(const char *prog, amqp_rpc_reply_t r, const char *what)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_NONE:
        fprintf(stderr, "%s: %s: missing RPC reply\n", prog, what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        fprintf(stderr, "%s: %s: %s\n", prog, what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            fprintf(stderr, "%s: %s: connection closed by the server: %u %.*s\n", prog, what,
                    m->reply_code, (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            fprintf(stderr, "%s: %s: channel closed by the server: %u %.*s\n", prog, what,
                    m->reply_code, (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else {
            fprintf(stderr, "%s: %s: server exception, method 0x%08X\n", prog, what, r.reply.id);
        }
        break;
    }
    return -1;
}

amqp_connection_state_t bench_amqp_connect(const char *prog, const char *url, int heartbeat_s)
{
    struct amqp_connection_info ci;
    amqp_connection_state_t conn = NULL;
    amqp_socket_t *sock;
    char *copy = NULL;
    const char *vhost;
    int rc;

    if (url == NULL || *url == '\0') {
        url = getenv("ESS_AMQP_URL");
    }
    if (url == NULL || *url == '\0') {
        url = "amqp://guest:guest@127.0.0.1:5672/";
    }
    copy = strdup(url);
    if (copy == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return NULL;
    }
    amqp_default_connection_info(&ci);
    rc = amqp_parse_url(copy, &ci);
    if (rc != AMQP_STATUS_OK) {
        fprintf(stderr, "%s: bad AMQP URL: %s\n", prog, amqp_error_string2(rc));
        goto fail;
    }
    /* rabbitmq-c 0.11 leaves an empty vhost for amqp://u:p@h:5672/; the
     * broker's default vhost is "/". */
    vhost = (ci.vhost == NULL || *ci.vhost == '\0') ? "/" : ci.vhost;
    conn = amqp_new_connection();
    sock = conn != NULL ? amqp_tcp_socket_new(conn) : NULL;
    if (sock == NULL) {
        fprintf(stderr, "%s: cannot create an AMQP socket\n", prog);
        goto fail;
    }
    rc = amqp_socket_open(sock, ci.host, ci.port);
    if (rc != AMQP_STATUS_OK) {
        fprintf(stderr, "%s: connect %s:%d: %s\n", prog, ci.host, ci.port, amqp_error_string2(rc));
        goto fail;
    }
    if (bench_amqp_check(prog,
                         amqp_login(conn, vhost, 0, 131072, heartbeat_s, AMQP_SASL_METHOD_PLAIN,
                                    ci.user, ci.password),
                         "login") != 0) {
        goto fail;
    }
    amqp_channel_open(conn, 1);
    if (bench_amqp_check(prog, amqp_get_rpc_reply(conn), "channel.open") != 0) {
        goto fail;
    }
    free(copy);
    return conn;
fail:
    if (conn != NULL) {
        amqp_destroy_connection(conn);
    }
    free(copy);
    return NULL;
}

void bench_amqp_close(amqp_connection_state_t conn)
{
    if (conn == NULL) {
        return;
    }
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

int bench_amqp_declare_bound(const char *prog, amqp_connection_state_t conn, const char *queue,
                             const char *routing_key)
{
    amqp_exchange_declare(conn, 1, amqp_cstring_bytes(BENCH_EXCHANGE), amqp_cstring_bytes("topic"),
                          0, 1, 0, 0, amqp_empty_table);
    if (bench_amqp_check(prog, amqp_get_rpc_reply(conn), "exchange.declare hms.events") != 0) {
        return -1;
    }
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
    if (bench_amqp_check(prog, amqp_get_rpc_reply(conn), "queue.declare") != 0) {
        return -1;
    }
    amqp_queue_bind(conn, 1, amqp_cstring_bytes(queue), amqp_cstring_bytes(BENCH_EXCHANGE),
                    amqp_cstring_bytes(routing_key), amqp_empty_table);
    return bench_amqp_check(prog, amqp_get_rpc_reply(conn), "queue.bind");
}
