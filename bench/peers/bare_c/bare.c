/*
 * ess-bench-bare -- the ceiling: a rabbitmq-c consumer feeding a libcurl
 * multi pipeline that persists nothing.
 *
 *   ess-bench-bare --queue Q --routing-key RK --target URL [--name N]
 *                  [--prefetch 1000] [--max-in-flight 64] [--url amqp://...]
 *
 * Declares the durable queue Q bound to hms.events with RK, consumes it with
 * basic.qos prefetch, POSTs every message body unchanged to URL with the
 * headers ESS sends (Content-Type: application/json, Idempotency-Key:
 * "N:<event id>", X-ESS-Connector: N, X-ESS-Event-Id: <event id>; the event id
 * is the AMQP message_id, else "<N>-<delivery tag>"), and acks once the
 * partner answered 2xx. A failed POST (non-2xx, timeout, refused) is nacked
 * with requeue: the broker redelivers it; nothing is kept here. SIGTERM / SIGINT
 * stop consuming, let transfers in flight finish (5 s at most), ack, exit 0.
 *
 * DESIGN
 * One thread, one wait per iteration: curl_multi_poll on libcurl's sockets
 * plus the AMQP socket (only while a transfer slot is free, so a full pipeline
 * does not spin on a readable broker socket). Each of the max-in-flight slots
 * owns one easy handle, reused for every message (libcurl's connection cache
 * keeps the keep-alive connections, TCP_NODELAY is libcurl's default).
 * Transfers finish out of order, acks must not pass an unfinished delivery:
 * delivery tags wait in a ring in arrival order, and one basic.ack with
 * multiple=true covers the finished prefix after each round of completions.
 * This is what ess-push does minus the journal, the shaping, the per-key
 * ordering and the retries, hence a ceiling for it.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <curl/curl.h>

#include "../amqp_common.h"

#define PROG "ess-bench-bare"
#define RING 65536u /* > the largest prefetch (65535) + max in flight */
#define DRAIN_NS (5LL * 1000000000LL)

struct slot {
    CURL *easy;
    struct curl_slist *headers;
    amqp_envelope_t env;
    uint32_t ring_ix;
    int busy;
};

struct tagent {
    uint64_t tag;
    uint8_t done;
};

struct bare {
    amqp_connection_state_t conn;
    CURLM *multi;
    struct slot *slots;
    int n_slots;
    int busy;
    struct tagent *ring; /* unacked deliveries, arrival order */
    uint32_t head, tail; /* [head, tail) */
    const char *target;
    const char *name;
    uint64_t delivered, failed;
};

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

/* The event id as a header-safe string. */
static void event_id(const amqp_envelope_t *env, const char *name, char *out, size_t len)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    size_t i, n;

    if ((p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) && p->message_id.len > 0) {
        n = p->message_id.len < len - 1 ? p->message_id.len : len - 1;
        for (i = 0; i < n; i++) {
            char c = ((const char *)p->message_id.bytes)[i];
            out[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '_';
        }
        out[n] = '\0';
        return;
    }
    snprintf(out, len, "%s-%" PRIu64, name, env->delivery_tag);
}

static int slot_start(struct bare *b, struct slot *s)
{
    char id[256], line[400];
    struct curl_slist *h = NULL;

    event_id(&s->env, b->name, id, sizeof(id));
    h = curl_slist_append(h, "Content-Type: application/json");
    snprintf(line, sizeof(line), "Idempotency-Key: \"%s:%s\"", b->name, id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "X-ESS-Connector: %s", b->name);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "X-ESS-Event-Id: %s", id);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "Expect:");
    if (h == NULL) {
        return -1;
    }
    s->headers = h;
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, (const char *)s->env.message.body.bytes);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->env.message.body.len);
    if (curl_multi_add_handle(b->multi, s->easy) != CURLM_OK) {
        return -1;
    }
    s->busy = 1;
    b->busy++;
    return 0;
}

static struct slot *free_slot(struct bare *b)
{
    int i;

    for (i = 0; i < b->n_slots; i++) {
        if (!b->slots[i].busy) {
            return &b->slots[i];
        }
    }
    return NULL;
}

/* Handles a frame that is not a delivery. -1 when the consumer is gone. */
static int other_frame(struct bare *b)
{
    amqp_frame_t f;

    if (amqp_simple_wait_frame(b->conn, &f) != AMQP_STATUS_OK) {
        fprintf(stderr, PROG ": lost the broker\n");
        return -1;
    }
    if (f.frame_type != AMQP_FRAME_METHOD) {
        return 0;
    }
    switch (f.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
    case AMQP_BASIC_CANCEL_METHOD:
        fprintf(stderr, PROG ": the broker closed the consumer (method 0x%08X)\n",
                f.payload.method.id);
        return -1;
    default:
        return 0;
    }
}

/* Takes deliveries while a slot is free and the broker has one ready now. */
static int take_messages(struct bare *b)
{
    while (!quit && b->busy < b->n_slots) {
        struct timeval zero = {0, 0};
        struct slot *s = free_slot(b);
        amqp_rpc_reply_t r;

        if (!amqp_frames_enqueued(b->conn) && !amqp_data_in_buffer(b->conn)) {
            amqp_maybe_release_buffers(b->conn);
        }
        r = amqp_consume_message(b->conn, &s->env, &zero, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT) {
            return 0;
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            if (other_frame(b) != 0) {
                return -1;
            }
            continue;
        }
        if (bench_amqp_check(PROG, r, "consume") != 0) {
            return -1;
        }
        s->ring_ix = b->tail;
        b->ring[b->tail % RING].tag = s->env.delivery_tag;
        b->ring[b->tail % RING].done = 0;
        b->tail++;
        if (slot_start(b, s) != 0) {
            fprintf(stderr, PROG ": cannot start a transfer\n");
            return -1;
        }
    }
    return 0;
}

/* Acks the finished prefix of the ring with one multiple ack. */
static int ack_prefix(struct bare *b)
{
    uint64_t last = 0;

    while (b->head != b->tail && b->ring[b->head % RING].done) {
        last = b->ring[b->head % RING].tag;
        b->head++;
    }
    if (last != 0 && amqp_basic_ack(b->conn, 1, last, 1) != AMQP_STATUS_OK) {
        fprintf(stderr, PROG ": basic.ack failed\n");
        return -1;
    }
    return 0;
}

static int collect(struct bare *b)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(b->multi, &left)) != NULL) {
        struct slot *s = NULL;
        long code = 0;

        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
        if (m->data.result == CURLE_OK && code >= 200 && code < 300) {
            b->delivered++;
        } else {
            /* Nothing is persisted here: give it back to the broker. */
            b->failed++;
            if (amqp_basic_nack(b->conn, 1, s->env.delivery_tag, 0, 1) != AMQP_STATUS_OK) {
                fprintf(stderr, PROG ": basic.nack failed\n");
                return -1;
            }
        }
        b->ring[s->ring_ix % RING].done = 1;
        curl_multi_remove_handle(b->multi, s->easy);
        curl_slist_free_all(s->headers);
        s->headers = NULL;
        amqp_destroy_envelope(&s->env);
        s->busy = 0;
        b->busy--;
    }
    return ack_prefix(b);
}

static int run(struct bare *b)
{
    int64_t drain_deadline = 0;
    int running = 0;

    for (;;) {
        struct curl_waitfd wfd;
        unsigned int nwfd = 0;
        int timeout_ms = 100, numfds = 0;

        if (quit && drain_deadline == 0) {
            drain_deadline = bench_mono_ns() + DRAIN_NS;
        }
        if (quit && (b->busy == 0 || bench_mono_ns() > drain_deadline)) {
            return 0;
        }
        if (take_messages(b) != 0) {
            return -1;
        }
        curl_multi_perform(b->multi, &running);
        if (collect(b) != 0) {
            return -1;
        }
        if (!quit && b->busy < b->n_slots) {
            if (amqp_frames_enqueued(b->conn) || amqp_data_in_buffer(b->conn)) {
                timeout_ms = 0;
            }
            wfd.fd = amqp_get_sockfd(b->conn);
            wfd.events = CURL_WAIT_POLLIN;
            wfd.revents = 0;
            nwfd = 1;
        }
        if (curl_multi_poll(b->multi, nwfd ? &wfd : NULL, nwfd, timeout_ms, &numfds) != CURLM_OK) {
            fprintf(stderr, PROG ": curl_multi_poll failed\n");
            return -1;
        }
    }
}

static int setup(struct bare *b, const char *url, const char *queue, const char *rk,
                 uint64_t prefetch)
{
    int i;

    b->conn = bench_amqp_connect(PROG, url, 30);
    if (b->conn == NULL || bench_amqp_declare_bound(PROG, b->conn, queue, rk) != 0) {
        return -1;
    }
    amqp_basic_qos(b->conn, 1, 0, (uint16_t)prefetch, 0);
    if (bench_amqp_check(PROG, amqp_get_rpc_reply(b->conn), "basic.qos") != 0) {
        return -1;
    }
    b->multi = curl_multi_init();
    b->slots = calloc((size_t)b->n_slots, sizeof(*b->slots));
    b->ring = calloc(RING, sizeof(*b->ring));
    if (b->multi == NULL || b->slots == NULL || b->ring == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)b->n_slots);
    for (i = 0; i < b->n_slots; i++) {
        CURL *e = curl_easy_init();
        if (e == NULL) {
            return -1;
        }
        b->slots[i].easy = e;
        curl_easy_setopt(e, CURLOPT_URL, b->target);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "ess-bench-bare");
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        /* libcurl's default 64 KiB upload buffer per handle is most of the
         * RSS at 64 slots; bodies here are under 200 bytes. */
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&b->slots[i]);
    }
    amqp_basic_consume(b->conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    return bench_amqp_check(PROG, amqp_get_rpc_reply(b->conn), "basic.consume");
}

static void teardown(struct bare *b)
{
    int i;

    for (i = 0; b->slots != NULL && i < b->n_slots; i++) {
        struct slot *s = &b->slots[i];
        if (s->busy) {
            curl_multi_remove_handle(b->multi, s->easy);
            curl_slist_free_all(s->headers);
            amqp_destroy_envelope(&s->env);
        }
        curl_easy_cleanup(s->easy);
    }
    free(b->slots);
    free(b->ring);
    if (b->multi != NULL) {
        curl_multi_cleanup(b->multi);
    }
    bench_amqp_close(b->conn); /* unacked deliveries go back to the queue */
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
    const char *queue = NULL, *rk = NULL, *url = NULL;
    uint64_t prefetch = 1000, in_flight = 64;
    struct sigaction sa;
    struct bare b;
    int a, rc = 1;

    memset(&b, 0, sizeof(b));
    b.name = "bare";
    for (a = 1; a < argc; a++) {
        int more = a + 1 < argc;
        if (strcmp(argv[a], "--queue") == 0 && more) {
            queue = argv[++a];
        } else if (strcmp(argv[a], "--routing-key") == 0 && more) {
            rk = argv[++a];
        } else if (strcmp(argv[a], "--target") == 0 && more) {
            b.target = argv[++a];
        } else if (strcmp(argv[a], "--name") == 0 && more) {
            b.name = argv[++a];
        } else if (strcmp(argv[a], "--url") == 0 && more) {
            url = argv[++a];
        } else if (strcmp(argv[a], "--prefetch") == 0 && more &&
                   parse_u64(argv[a + 1], &prefetch) == 0 && prefetch > 0 && prefetch <= 65535) {
            a++;
        } else if (strcmp(argv[a], "--max-in-flight") == 0 && more &&
                   parse_u64(argv[a + 1], &in_flight) == 0 && in_flight > 0 && in_flight <= 4096) {
            a++;
        } else {
            fprintf(stderr, "usage: " PROG " --queue Q --routing-key RK --target URL [--name N] "
                            "[--prefetch 1000] [--max-in-flight 64] [--url URL]\n");
            return 64;
        }
    }
    if (queue == NULL || rk == NULL || b.target == NULL) {
        fprintf(stderr, PROG ": --queue, --routing-key and --target are required\n");
        return 64;
    }
    b.n_slots = (int)in_flight;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return 1;
    }
    if (setup(&b, url, queue, rk, prefetch) == 0 && run(&b) == 0) {
        rc = 0;
    }
    fprintf(stderr, PROG ": %" PRIu64 " delivered, %" PRIu64 " failed POSTs\n", b.delivered,
            b.failed);
    teardown(&b);
    curl_global_cleanup();
    return rc;
}
