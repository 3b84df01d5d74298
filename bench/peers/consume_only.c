/*
 * ess-bench-consume -- the broker's bare consume-and-ack rate: a rabbitmq-c
 * consumer that does nothing with a message but ack it.
 *
 *   ess-bench-consume --queue Q --count N [--prefetch 1000] [--ack-every 250]
 *                     [--timeout-s 60] [--url amqp://...]
 *
 * Consumes Q (which must exist: the harness declares it and pre-publishes N
 * persistent events) with basic.qos prefetch, acks with multiple=true every
 * --ack-every deliveries and on the last one, and exits after N. Prints one
 * JSON line: consumed, seconds (basic.consume -> last ack sent), rate, steady
 * rate (first -> last delivery), consume_start_ns / first_ns / last_ns
 * (CLOCK_REALTIME). Exit 1 when N did not arrive within --timeout-s of the
 * previous delivery, or on any AMQP failure.
 *
 * Every other figure of the benchmark reads as a fraction of this one: no
 * worker can consume faster than the broker hands messages out.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>

#include "amqp_common.h"

#define PROG "ess-bench-consume"

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);

    if (end == s || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *queue = NULL, *url = NULL;
    uint64_t count = 0, prefetch = 1000, ack_every = 250, timeout_s = 60;
    uint64_t got = 0, unacked = 0, last_tag = 0;
    int64_t start_ns, first_ns = 0, last_ns = 0, start_mono, end_mono;
    amqp_connection_state_t conn;
    int a, rc = 1;

    for (a = 1; a < argc; a++) {
        int more = a + 1 < argc;
        if (strcmp(argv[a], "--queue") == 0 && more) {
            queue = argv[++a];
        } else if (strcmp(argv[a], "--url") == 0 && more) {
            url = argv[++a];
        } else if (strcmp(argv[a], "--count") == 0 && more && parse_u64(argv[a + 1], &count) == 0) {
            a++;
        } else if (strcmp(argv[a], "--prefetch") == 0 && more &&
                   parse_u64(argv[a + 1], &prefetch) == 0 && prefetch <= 65535) {
            a++;
        } else if (strcmp(argv[a], "--ack-every") == 0 && more &&
                   parse_u64(argv[a + 1], &ack_every) == 0 && ack_every > 0) {
            a++;
        } else if (strcmp(argv[a], "--timeout-s") == 0 && more &&
                   parse_u64(argv[a + 1], &timeout_s) == 0) {
            a++;
        } else {
            fprintf(stderr, "usage: " PROG " --queue Q --count N [--prefetch 1000] "
                            "[--ack-every 250] [--timeout-s 60] [--url URL]\n");
            return 64;
        }
    }
    if (queue == NULL || count == 0) {
        fprintf(stderr, PROG ": --queue and --count are required\n");
        return 64;
    }
    conn = bench_amqp_connect(PROG, url, 0);
    if (conn == NULL) {
        return 1;
    }
    amqp_basic_qos(conn, 1, 0, (uint16_t)prefetch, 0);
    if (bench_amqp_check(PROG, amqp_get_rpc_reply(conn), "basic.qos") != 0) {
        goto out;
    }
    start_ns = bench_now_ns();
    start_mono = bench_mono_ns();
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (bench_amqp_check(PROG, amqp_get_rpc_reply(conn), "basic.consume") != 0) {
        goto out;
    }
    while (got < count) {
        struct timeval tv = {(time_t)timeout_s, 0};
        amqp_envelope_t env;
        amqp_rpc_reply_t r;

        amqp_maybe_release_buffers(conn);
        r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                r.library_error == AMQP_STATUS_TIMEOUT) {
                fprintf(stderr,
                        PROG ": nothing for %" PRIu64 " s after %" PRIu64 " of %" PRIu64 "\n",
                        timeout_s, got, count);
            } else {
                bench_amqp_check(PROG, r, "consume");
            }
            goto out;
        }
        got++;
        last_ns = bench_now_ns();
        if (first_ns == 0) {
            first_ns = last_ns;
        }
        last_tag = env.delivery_tag;
        amqp_destroy_envelope(&env);
        if (++unacked >= ack_every || got == count) {
            if (amqp_basic_ack(conn, 1, last_tag, 1) != AMQP_STATUS_OK) {
                fprintf(stderr, PROG ": basic.ack failed\n");
                goto out;
            }
            unacked = 0;
        }
    }
    end_mono = bench_mono_ns();
    {
        double secs = (double)(end_mono - start_mono) / 1e9;
        double steady = (double)(last_ns - first_ns) / 1e9;
        printf("{\"consumed\":%" PRIu64 ",\"seconds\":%.6f,\"rate\":%.1f,\"steady_rate\":%.1f,"
               "\"consume_start_ns\":%" PRId64 ",\"first_ns\":%" PRId64 ",\"last_ns\":%" PRId64
               "}\n",
               got, secs, secs > 0 ? (double)got / secs : 0.0,
               steady > 0 ? (double)(got - 1) / steady : 0.0, start_ns, first_ns, last_ns);
    }
    rc = 0;
out:
    fflush(stdout);
    bench_amqp_close(conn);
    return rc;
}
