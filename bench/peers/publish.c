/*
 * ess-bench-publish -- persistent publishing with publisher confirms, the
 * benchmark's event source and the broker's publish ceiling.
 *
 *   ess-bench-publish --routing-key RK --count N [--rate R] [--stamp]
 *                     [--id-prefix P] [--window W] [--url amqp://...]
 *
 * Publishes N events to the durable topic exchange hms.events, each
 * persistent (delivery_mode 2), content_type application/json, message_id
 * "P-i", body {"permit_id":"K<i%1000>","n":i,"street":"Main St",
 * "status":"PENDING"} (plus "sent_ns":<CLOCK_REALTIME ns> with --stamp, taken
 * just before the publish: the partner sink subtracts it). The channel is in
 * confirm mode; at most W publishes wait for their basic.ack at any time
 * (default 2000), and the program exits only once every publish is confirmed.
 * --rate R paces the publishes (event i is due at start + i/R; R 0 = as fast
 * as the window allows) while still reading confirms between them.
 *
 * Prints one JSON line on stdout: published, confirmed, nacked, seconds (first
 * publish -> last confirm), rate, behind_max_ms (how late the pacer was at
 * worst), start_ns / end_ns (CLOCK_REALTIME). Exit 0 when all were confirmed
 * (nacks included: they are reported), 1 on any AMQP failure or timeout.
 *
 * DESIGN
 * Python pika with confirm_delivery waits for each confirm in turn and
 * measures the client, not the broker (about 1,500/s here); rabbitmq-c with a
 * window of unconfirmed publishes keeps the broker's pipeline full. Confirms
 * are tracked in one byte per event (N bytes), advancing the lowest
 * unconfirmed tag, so single and multiple acks in any order are counted once.
 */
#define _GNU_SOURCE /* ppoll */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>

#include "amqp_common.h"

#define PROG "ess-bench-publish"
#define WAIT_LIMIT_NS (60LL * 1000000000LL) /* no confirm for this long: fail */

struct pub {
    amqp_connection_state_t conn;
    uint8_t *done; /* done[tag] for tags 1..count */
    uint64_t count;
    uint64_t published; /* highest tag sent */
    uint64_t low;       /* lowest tag not yet confirmed */
    uint64_t confirmed;
    uint64_t nacked;
};

static void mark(struct pub *p, uint64_t tag, int multiple, int nack)
{
    uint64_t t;

    if (tag > p->published) {
        tag = p->published;
    }
    for (t = multiple ? p->low : tag; t <= tag; t++) {
        if (t >= 1 && !p->done[t]) {
            p->done[t] = 1;
            p->confirmed++;
            p->nacked += nack ? 1 : 0;
        }
    }
    while (p->low <= p->published && p->done[p->low]) {
        p->low++;
    }
}

/* Reads at most one frame, waiting until deadline_ns (monotonic; 0 = do not
 * wait). 1 frame handled, 0 nothing arrived, -1 fatal. */
static int read_confirm(struct pub *p, int64_t deadline_ns)
{
    struct timeval tv = {0, 0};
    amqp_frame_t frame;
    int64_t left;
    int rc;

    if (deadline_ns > 0) {
        left = deadline_ns - bench_mono_ns();
        if (left > 0) {
            tv.tv_sec = (time_t)(left / 1000000000LL);
            tv.tv_usec = (suseconds_t)((left % 1000000000LL) / 1000);
        }
    }
    rc = amqp_simple_wait_frame_noblock(p->conn, &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) {
        return 0;
    }
    if (rc != AMQP_STATUS_OK) {
        fprintf(stderr, PROG ": reading confirms: %s\n", amqp_error_string2(rc));
        return -1;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) {
        return 1; /* heartbeat or the like */
    }
    switch (frame.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = frame.payload.method.decoded;
        mark(p, a->delivery_tag, a->multiple, 0);
        break;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *n = frame.payload.method.decoded;
        mark(p, n->delivery_tag, n->multiple, 1);
        break;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *m = frame.payload.method.decoded;
        fprintf(stderr, PROG ": channel closed by the server: %u %.*s\n", m->reply_code,
                (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        return -1;
    }
    case AMQP_CONNECTION_CLOSE_METHOD:
        fprintf(stderr, PROG ": connection closed by the server\n");
        return -1;
    default:
        break;
    }
    if (!amqp_frames_enqueued(p->conn) && !amqp_data_in_buffer(p->conn)) {
        amqp_maybe_release_buffers(p->conn);
    }
    return 1;
}

/* Handles every frame rabbitmq-c already holds, without reading the socket.
 * 0, or -1 fatal. */
static int read_buffered(struct pub *p)
{
    while (amqp_frames_enqueued(p->conn) || amqp_data_in_buffer(p->conn)) {
        if (read_confirm(p, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Until due_ns (monotonic): read confirms as they come, sleep otherwise.
 * rabbitmq-c waits in whole milliseconds (poll()), so a wait shorter than
 * one -- every slot at 1,000/s and above -- became a busy loop that kept a
 * core at ~85 % and slowed every worker measured beside it; ppoll() sleeps
 * to the nanosecond. 0 at the slot, -1 fatal. */
static int wait_slot(struct pub *p, int64_t due_ns)
{
    struct pollfd pfd = {amqp_get_sockfd(p->conn), POLLIN, 0};
    struct timespec ts;
    int64_t left;

    for (;;) {
        if (read_buffered(p) != 0) {
            return -1;
        }
        left = due_ns - bench_mono_ns();
        if (left <= 0) {
            return 0;
        }
        ts.tv_sec = (time_t)(left / 1000000000LL);
        ts.tv_nsec = (long)(left % 1000000000LL);
        pfd.revents = 0;
        if (ppoll(&pfd, 1, &ts, NULL) > 0 && read_confirm(p, 0) < 0) {
            return -1;
        }
    }
}

/* Blocks until fewer than want_below publishes are unconfirmed. */
static int wait_window(struct pub *p, uint64_t want_below)
{
    int64_t deadline = bench_mono_ns() + WAIT_LIMIT_NS;

    while (p->published - p->confirmed >= want_below) {
        if (bench_mono_ns() > deadline) {
            fprintf(stderr, PROG ": no confirm for %lld s (%" PRIu64 " of %" PRIu64 ")\n",
                    WAIT_LIMIT_NS / 1000000000LL, p->confirmed, p->published);
            return -1;
        }
        if (read_confirm(p, deadline) < 0) {
            return -1;
        }
    }
    return 0;
}

static int publish_one(struct pub *p, const char *rk, const char *prefix, uint64_t i, int stamp)
{
    amqp_basic_properties_t props;
    char body[256];
    char id[128];
    int n;

    if (stamp) {
        n = snprintf(body, sizeof(body),
                     "{\"permit_id\":\"K%" PRIu64 "\",\"n\":%" PRIu64
                     ",\"street\":\"Main St\",\"status\":\"PENDING\",\"sent_ns\":%" PRId64 "}",
                     i % 1000, i, bench_now_ns());
    } else {
        n = snprintf(body, sizeof(body),
                     "{\"permit_id\":\"K%" PRIu64 "\",\"n\":%" PRIu64
                     ",\"street\":\"Main St\",\"status\":\"PENDING\"}",
                     i % 1000, i);
    }
    snprintf(id, sizeof(id), "%s-%" PRIu64, prefix, i);
    memset(&props, 0, sizeof(props));
    props._flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    props.message_id = amqp_cstring_bytes(id);
    amqp_bytes_t b = {(size_t)n, body};
    int rc = amqp_basic_publish(p->conn, 1, amqp_cstring_bytes("hms.events"),
                                amqp_cstring_bytes(rk), 0, 0, &props, b);
    if (rc != AMQP_STATUS_OK) {
        fprintf(stderr, PROG ": basic.publish: %s\n", amqp_error_string2(rc));
        return -1;
    }
    p->published++;
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: " PROG " --routing-key RK --count N [--rate R] [--stamp] "
                 "[--id-prefix P] [--window W] [--url URL]\n");
}

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
    const char *rk = NULL, *url = NULL, *prefix = "ev";
    uint64_t count = 0, rate = 0, window = 2000, i;
    int stamp = 0, a, rc = 1;
    int64_t start, start_real, behind_max = 0, now;
    struct pub p;

    memset(&p, 0, sizeof(p));
    for (a = 1; a < argc; a++) {
        int more = a + 1 < argc;
        if (strcmp(argv[a], "--routing-key") == 0 && more) {
            rk = argv[++a];
        } else if (strcmp(argv[a], "--url") == 0 && more) {
            url = argv[++a];
        } else if (strcmp(argv[a], "--id-prefix") == 0 && more) {
            prefix = argv[++a];
        } else if (strcmp(argv[a], "--count") == 0 && more && parse_u64(argv[a + 1], &count) == 0) {
            a++;
        } else if (strcmp(argv[a], "--rate") == 0 && more && parse_u64(argv[a + 1], &rate) == 0) {
            a++;
        } else if (strcmp(argv[a], "--window") == 0 && more &&
                   parse_u64(argv[a + 1], &window) == 0 && window > 0) {
            a++;
        } else if (strcmp(argv[a], "--stamp") == 0) {
            stamp = 1;
        } else if (strcmp(argv[a], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 64;
        }
    }
    if (rk == NULL || count == 0) {
        usage(stderr);
        return 64;
    }
    p.count = count;
    p.low = 1;
    p.done = calloc(count + 2, 1);
    if (p.done == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    p.conn = bench_amqp_connect(PROG, url, 0);
    if (p.conn == NULL) {
        goto out;
    }
    amqp_exchange_declare(p.conn, 1, amqp_cstring_bytes("hms.events"), amqp_cstring_bytes("topic"),
                          0, 1, 0, 0, amqp_empty_table);
    if (bench_amqp_check(PROG, amqp_get_rpc_reply(p.conn), "exchange.declare") != 0) {
        goto out;
    }
    amqp_confirm_select(p.conn, 1);
    if (bench_amqp_check(PROG, amqp_get_rpc_reply(p.conn), "confirm.select") != 0) {
        goto out;
    }
    start = bench_mono_ns();
    start_real = bench_now_ns();
    for (i = 0; i < count; i++) {
        if (rate > 0) {
            int64_t due = start + (int64_t)(i * 1000000000ULL / rate);
            now = bench_mono_ns();
            if (now > due && now - due > behind_max) {
                behind_max = now - due;
            }
            if (now < due && wait_slot(&p, due) != 0) { /* confirms read meanwhile */
                goto out;
            }
        }
        if (wait_window(&p, window) != 0 || publish_one(&p, rk, prefix, i, stamp) != 0 ||
            read_buffered(&p) != 0) {
            goto out;
        }
    }
    if (wait_window(&p, 1) != 0) {
        goto out;
    }
    now = bench_mono_ns();
    {
        double secs = (double)(now - start) / 1e9;
        printf("{\"published\":%" PRIu64 ",\"confirmed\":%" PRIu64 ",\"nacked\":%" PRIu64
               ",\"seconds\":%.6f,\"rate\":%.1f,\"behind_max_ms\":%.3f,\"start_ns\":%" PRId64
               ",\"end_ns\":%" PRId64 "}\n",
               p.published, p.confirmed, p.nacked, secs, secs > 0 ? (double)count / secs : 0.0,
               (double)behind_max / 1e6, start_real, bench_now_ns());
    }
    rc = 0;
out:
    fflush(stdout);
    bench_amqp_close(p.conn);
    free(p.done);
    return rc;
}
