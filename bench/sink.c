/*
 * ess-bench-sink -- a fast HTTP/1.1 keep-alive partner for the benchmark.
 *
 * It answers every POST with "200 ok" as quickly as one core allows, so that
 * what bench/bench.py measures is ess-push, not the partner (the Python
 * partner stub of the integration tests tops out at a few thousand requests
 * per second). Control endpoints:
 *
 *   GET  /_count   {"count":N,"first_ns":F,"last_ns":L}  (CLOCK_REALTIME ns of
 *                  the first and last POST answered 200; 0 while none)
 *   POST /_mode    body "down": answer 503 to every POST; "up": back to 200
 *   POST /_reset   count, first/last and the latency samples back to zero
 *
 * --latency-file F: for each counted POST whose body holds "sent_ns":<digits>
 * (a CLOCK_REALTIME stamp put there by the publisher) keep now - sent_ns and
 * write them all to F, one per line, on SIGTERM / SIGINT.
 *
 * --delay-ms N: answer each counted POST N ms after it arrived -- a partner
 * with a fixed per-request latency. Connections wait side by side (one
 * timer list, no thread per request), so with enough connections the sink
 * is still not the bottleneck: a client with k requests in flight gets at
 * most k x 1000 / N answers a second. A held connection is not read from.
 *
 * DESIGN
 * One thread, one epoll (level-triggered), non-blocking sockets. Each
 * connection has a bounded input buffer (a request larger than SINK_REQ_MAX
 * gets 413 and the connection is closed) and a bounded output buffer (reading
 * pauses while responses to pipelined requests wait to be sent). Requests are
 * parsed just enough: request line, Content-Length, Connection, Expect.
 * Chunked request bodies are refused with 501 (libcurl and wrk send
 * Content-Length). Garbage gets 400 and a close, never a crash. Signals arrive
 * through a signalfd in the same epoll, so shutdown is a normal loop exit.
 */
#define _GNU_SOURCE /* memmem, accept4 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#define SINK_HEAD_MAX (16 * 1024) /* request line + headers */
#define SINK_REQ_MAX (1024 * 1024 + SINK_HEAD_MAX)
#define SINK_OUT_MAX (256 * 1024) /* stop reading above this */
#define SINK_READ_CHUNK (64 * 1024)
#define SINK_MAX_CONNS 4096
#define SINK_MAX_SAMPLES (20 * 1000 * 1000) /* 160 MB worst case */
#define SINK_EVENTS 256

static const char RESP_OK[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
static const char RESP_DOWN[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n"
                                "Retry-After: 1\r\n\r\ndown";
static const char RESP_CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char RESP_BAD_MODE[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 10\r\n\r\ndown or up";

struct conn {
    int fd;
    char *in; /* received, not yet consumed */
    size_t in_len;
    size_t in_cap;
    char *out; /* responses not yet written */
    size_t out_len;
    size_t out_off;
    size_t out_cap;
    int close_after; /* close once out is flushed */
    int continued;   /* 100 Continue already sent for the current request */
    int want_out;    /* registered for: 0 EPOLLIN, 1 EPOLLOUT, 2 nothing (held) */
    int64_t hold_ns; /* --delay-ms: its answer goes out at this time; 0 none */
    struct conn *hold_prev;
    struct conn *hold_next;
};

struct sink {
    int ep;
    int lfd;
    int sfd;
    int down;
    int quit;
    size_t nconns;
    uint64_t count;
    uint64_t rejected;
    int64_t first_ns;
    int64_t last_ns;
    int64_t *samples;
    size_t n_samples;
    size_t cap_samples;
    const char *latency_file;
    int64_t delay_ns;
    struct conn *held; /* held connections, oldest first (one delay: sorted) */
    struct conn *held_tail;
};

struct request {
    size_t head_len; /* through the blank line */
    size_t body_len;
    int is_post;
    int http10;
    int keep_alive; /* explicit Connection: keep-alive (HTTP/1.0) */
    int close;      /* Connection: close */
    int expect_100;
    int chunked;
    char path[256];
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void hold_unlink(struct sink *s, struct conn *c)
{
    if (c->hold_prev != NULL) {
        c->hold_prev->hold_next = c->hold_next;
    } else {
        s->held = c->hold_next;
    }
    if (c->hold_next != NULL) {
        c->hold_next->hold_prev = c->hold_prev;
    } else {
        s->held_tail = c->hold_prev;
    }
    c->hold_prev = c->hold_next = NULL;
    c->hold_ns = 0;
}

static void hold(struct sink *s, struct conn *c, int64_t until)
{
    c->hold_ns = until;
    c->hold_prev = s->held_tail;
    c->hold_next = NULL;
    if (s->held_tail != NULL) {
        s->held_tail->hold_next = c;
    } else {
        s->held = c;
    }
    s->held_tail = c;
}

static void conn_free(struct sink *s, struct conn *c)
{
    if (c->hold_ns != 0) {
        hold_unlink(s, c);
    }
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
    s->nconns--;
}

static int conn_events(struct sink *s, struct conn *c)
{
    struct epoll_event ev;
    int want_out = c->hold_ns != 0 ? 2 : c->out_len > c->out_off;

    if (want_out == c->want_out) {
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    /* While output is queued, stop reading: that bounds the output buffer.
     * While held, neither (errors and hang-ups are still reported). */
    ev.events = want_out == 2 ? 0 : want_out ? EPOLLOUT : EPOLLIN;
    ev.data.ptr = c;
    c->want_out = want_out;
    return epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int out_append(struct conn *c, const char *data, size_t len)
{
    size_t need;
    size_t cap;
    char *p;

    need = c->out_len + len;
    if (need > c->out_cap && c->out_off > 0) {
        /* Reuse the already written front before growing. */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        need = c->out_len + len;
    }
    if (need > c->out_cap) {
        cap = c->out_cap ? c->out_cap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        /* conn_process stops below SINK_OUT_MAX; one answer is small. */
        if (cap > 2 * SINK_OUT_MAX) {
            return -1;
        }
        p = realloc(c->out, cap);
        if (p == NULL) {
            return -1;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

/* Write what is queued; 0 when all went out or the socket is full, -1 on error. */
static int conn_flush(struct conn *c)
{
    ssize_t n;

    if (c->hold_ns != 0) {
        return 0; /* --delay-ms: not yet */
    }
    while (c->out_off < c->out_len) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = 0;
    c->out_len = 0;
    return 0;
}

static void reply_error(struct conn *c, int code, const char *reason)
{
    char buf[160];
    int n;

    n = snprintf(buf, sizeof(buf),
                 "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", code, reason);
    if (n > 0) {
        (void)out_append(c, buf, (size_t)n);
    }
    c->close_after = 1;
}

/* The value of header line [p, end) if its name is `name`, else NULL. */
static const char *header_value(const char *p, const char *end, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *v;

    if ((size_t)(end - p) <= nl || strncasecmp(p, name, nl) != 0 || p[nl] != ':') {
        return NULL;
    }
    v = p + nl + 1;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    *vlen = (size_t)(end - v);
    return v;
}

static int token_in(const char *v, size_t vlen, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i;

    for (i = 0; i + tl <= vlen; i++) {
        if (strncasecmp(v + i, tok, tl) == 0) {
            return 1;
        }
    }
    return 0;
}

static int parse_length(const char *v, size_t vlen, size_t *out)
{
    uint64_t n = 0;
    size_t i;

    if (vlen == 0) {
        return -1;
    }
    for (i = 0; i < vlen; i++) {
        if (!isdigit((unsigned char)v[i])) {
            return -1;
        }
        n = n * 10 + (uint64_t)(v[i] - '0');
        if (n > SINK_REQ_MAX) {
            return -2;
        }
    }
    *out = (size_t)n;
    return 0;
}

static int parse_request_line(const char *p, const char *end, struct request *r)
{
    const char *sp1 = memchr(p, ' ', (size_t)(end - p));
    const char *sp2;
    size_t plen;

    if (sp1 == NULL) {
        return -1;
    }
    sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (sp2 == NULL || end - sp2 < 9 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        return -1;
    }
    r->is_post = (sp1 - p == 4 && memcmp(p, "POST", 4) == 0);
    r->http10 = sp2[8] == '0';
    plen = (size_t)(sp2 - sp1 - 1);
    if (plen == 0 || plen >= sizeof(r->path)) {
        plen = plen == 0 ? 0 : sizeof(r->path) - 1;
    }
    memcpy(r->path, sp1 + 1, plen);
    r->path[plen] = '\0';
    return 0;
}

/*
 * Parse the head at buf[0..len). Returns 1 with *r filled when the head is
 * complete, 0 when more bytes are needed, or an HTTP status (400, 413, 431,
 * 501) for a request that will never be valid.
 */
static int parse_head(const char *buf, size_t len, struct request *r)
{
    const char *end;
    const char *line;
    const char *eol;
    const char *v;
    size_t vlen;
    size_t scan = len < SINK_HEAD_MAX ? len : SINK_HEAD_MAX;
    int rc;

    memset(r, 0, sizeof(*r));
    end = memmem(buf, scan, "\r\n\r\n", 4);
    if (end == NULL) {
        return len >= SINK_HEAD_MAX ? 431 : 0;
    }
    r->head_len = (size_t)(end - buf) + 4;
    eol = memmem(buf, (size_t)(end - buf) + 2, "\r\n", 2);
    if (eol == NULL || parse_request_line(buf, eol, r) != 0) {
        return 400;
    }
    for (line = eol + 2; line < end + 2; line = eol + 2) {
        eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        if (eol == NULL) {
            break;
        }
        v = header_value(line, eol, "Content-Length", &vlen);
        if (v != NULL) {
            rc = parse_length(v, vlen, &r->body_len);
            if (rc != 0) {
                return rc == -2 ? 413 : 400;
            }
            continue;
        }
        v = header_value(line, eol, "Connection", &vlen);
        if (v != NULL) {
            r->close = token_in(v, vlen, "close");
            r->keep_alive = token_in(v, vlen, "keep-alive");
            continue;
        }
        v = header_value(line, eol, "Expect", &vlen);
        if (v != NULL) {
            r->expect_100 = token_in(v, vlen, "100-continue");
            continue;
        }
        v = header_value(line, eol, "Transfer-Encoding", &vlen);
        if (v != NULL && !(vlen == 8 && strncasecmp(v, "identity", 8) == 0)) {
            r->chunked = 1;
        }
    }
    if (r->chunked) {
        return 501;
    }
    if (r->head_len + r->body_len > SINK_REQ_MAX) {
        return 413;
    }
    return 1;
}

static void record_latency(struct sink *s, const char *body, size_t len, int64_t now)
{
    static const char tag[] = "\"sent_ns\"";
    const char *p = memmem(body, len, tag, sizeof(tag) - 1);
    const char *end = body + len;
    int64_t sent = 0;
    int64_t *grown;
    size_t cap;
    int digits = 0;

    if (s->latency_file == NULL || p == NULL) {
        return;
    }
    p += sizeof(tag) - 1;
    while (p < end && (*p == ' ' || *p == ':')) {
        p++;
    }
    while (p < end && isdigit((unsigned char)*p) && digits < 19) {
        sent = sent * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || s->n_samples >= SINK_MAX_SAMPLES) {
        return;
    }
    if (s->n_samples == s->cap_samples) {
        cap = s->cap_samples ? s->cap_samples * 2 : 65536;
        grown = realloc(s->samples, cap * sizeof(*grown));
        if (grown == NULL) {
            return;
        }
        s->samples = grown;
        s->cap_samples = cap;
    }
    s->samples[s->n_samples++] = now - sent;
}

static int body_is(const char *body, size_t len, const char *word)
{
    size_t wl = strlen(word);

    while (len > 0 && isspace((unsigned char)body[len - 1])) {
        len--;
    }
    while (len > 0 && (isspace((unsigned char)*body) || *body == '"')) {
        body++;
        len--;
    }
    if (len > 0 && body[len - 1] == '"') {
        len--;
    }
    return len == wl && strncasecmp(body, word, wl) == 0;
}

static int answer_json(struct conn *c, const char *json)
{
    char head[128];
    size_t jl = strlen(json);
    int n;

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 jl);
    if (n < 0 || out_append(c, head, (size_t)n) != 0) {
        return -1;
    }
    return out_append(c, json, jl);
}

/* Answer one complete request whose head starts at req. */
static int handle_request(struct sink *s, struct conn *c, const struct request *r, const char *req)
{
    const char *body = req + r->head_len;
    char json[160];
    int64_t now;

    if (r->is_post && strcmp(r->path, "/_mode") == 0) {
        if (body_is(body, r->body_len, "down")) {
            s->down = 1;
        } else if (body_is(body, r->body_len, "up")) {
            s->down = 0;
        } else {
            return out_append(c, RESP_BAD_MODE, sizeof(RESP_BAD_MODE) - 1);
        }
        return out_append(c, RESP_OK, sizeof(RESP_OK) - 1);
    }
    if (r->is_post && strcmp(r->path, "/_reset") == 0) {
        s->count = 0;
        s->rejected = 0;
        s->first_ns = 0;
        s->last_ns = 0;
        s->n_samples = 0;
        return out_append(c, RESP_OK, sizeof(RESP_OK) - 1);
    }
    if (!r->is_post && strncmp(r->path, "/_count", 7) == 0) {
        snprintf(json, sizeof(json),
                 "{\"count\":%" PRIu64 ",\"first_ns\":%" PRId64 ",\"last_ns\":%" PRId64
                 ",\"rejected\":%" PRIu64 ",\"down\":%s}",
                 s->count, s->first_ns, s->last_ns, s->rejected, s->down ? "true" : "false");
        return answer_json(c, json);
    }
    if (!r->is_post) {
        return out_append(c, RESP_OK, sizeof(RESP_OK) - 1);
    }
    if (s->down) {
        s->rejected++;
        return out_append(c, RESP_DOWN, sizeof(RESP_DOWN) - 1);
    }
    now = now_ns();
    s->count++;
    if (s->first_ns == 0) {
        s->first_ns = now;
    }
    s->last_ns = now;
    record_latency(s, body, r->body_len, now);
    if (s->delay_ns > 0) {
        hold(s, c, now + s->delay_ns);
    }
    return out_append(c, RESP_OK, sizeof(RESP_OK) - 1);
}

/* Consume every complete request in c->in; answers go to c->out. */
static int conn_process(struct sink *s, struct conn *c)
{
    struct request r;
    size_t used = 0;
    size_t total;
    int rc;

    while (!c->close_after && c->hold_ns == 0 && c->out_len - c->out_off < SINK_OUT_MAX) {
        rc = parse_head(c->in + used, c->in_len - used, &r);
        if (rc == 0) {
            break;
        }
        if (rc != 1) {
            reply_error(c, rc,
                        rc == 400   ? "Bad Request"
                        : rc == 413 ? "Content Too Large"
                        : rc == 431 ? "Request Header Fields Too Large"
                                    : "Not Implemented");
            used = c->in_len;
            break;
        }
        total = r.head_len + r.body_len;
        if (c->in_len - used < total) {
            if (r.expect_100 && !c->continued) {
                c->continued = 1;
                if (out_append(c, RESP_CONTINUE, sizeof(RESP_CONTINUE) - 1) != 0) {
                    return -1;
                }
            }
            break;
        }
        if (handle_request(s, c, &r, c->in + used) != 0) {
            return -1;
        }
        c->continued = 0;
        used += total;
        if (r.close || (r.http10 && !r.keep_alive)) {
            c->close_after = 1;
        }
    }
    if (used > 0) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
    return 0;
}

static int conn_read(struct sink *s, struct conn *c)
{
    size_t cap;
    ssize_t n;
    char *p;

    for (;;) {
        if (c->in_cap - c->in_len < SINK_READ_CHUNK / 4) {
            cap = c->in_cap ? c->in_cap * 2 : SINK_READ_CHUNK;
            if (cap > SINK_REQ_MAX + SINK_READ_CHUNK) {
                cap = SINK_REQ_MAX + SINK_READ_CHUNK;
            }
            if (cap <= c->in_len) {
                return -1; /* cannot happen: parse_head bounds a request */
            }
            p = realloc(c->in, cap);
            if (p == NULL) {
                return -1;
            }
            c->in = p;
            c->in_cap = cap;
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n == 0) {
            c->close_after = 1; /* peer is done sending: answer what it sent, then close */
            return 0;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        c->in_len += (size_t)n;
        if (conn_process(s, c) != 0) {
            return -1;
        }
        if (c->close_after || c->hold_ns != 0 || c->out_len - c->out_off >= SINK_OUT_MAX) {
            return 0;
        }
        if ((size_t)n < SINK_READ_CHUNK / 4) {
            return 0; /* drained for now; level-triggered epoll tells us about more */
        }
    }
}

static void on_conn(struct sink *s, struct conn *c, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP)) {
        if (!(events & EPOLLIN)) {
            conn_free(s, c);
            return;
        }
    }
    if ((events & EPOLLIN) && conn_read(s, c) != 0) {
        conn_free(s, c);
        return;
    }
    if (conn_flush(c) != 0) {
        conn_free(s, c);
        return;
    }
    if (c->out_len == c->out_off) {
        if (c->close_after) {
            conn_free(s, c);
            return;
        }
        /* Output drained: requests that waited behind it may be complete. */
        if (c->in_len > 0 && conn_process(s, c) != 0) {
            conn_free(s, c);
            return;
        }
        if (conn_flush(c) != 0) {
            conn_free(s, c);
            return;
        }
    }
    if (conn_events(s, c) != 0) {
        conn_free(s, c);
    }
}

static void on_accept(struct sink *s)
{
    struct epoll_event ev;
    struct conn *c;
    int one = 1;
    int fd;

    for (;;) {
        fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return; /* EAGAIN, or EMFILE & co: try again on the next event */
        }
        if (s->nconns >= SINK_MAX_CONNS) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }
        s->nconns++;
    }
}

static int listen_on(int port)
{
    struct sockaddr_in a;
    int one = 1;
    int fd;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    memset(&a, 0, sizeof(a));
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    return ntohs(a.sin_port);
}

static int write_samples(const struct sink *s)
{
    char tmp[4096];
    FILE *f;
    size_t i;

    snprintf(tmp, sizeof(tmp), "%s.tmp", s->latency_file);
    f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "ess-bench-sink: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    for (i = 0; i < s->n_samples; i++) {
        fprintf(f, "%" PRId64 "\n", s->samples[i]);
    }
    if (fclose(f) != 0 || rename(tmp, s->latency_file) != 0) {
        fprintf(stderr, "ess-bench-sink: %s: %s\n", s->latency_file, strerror(errno));
        return -1;
    }
    return 0;
}

static int setup(struct sink *s, int port)
{
    struct epoll_event ev;
    sigset_t mask;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        return -1;
    }
    s->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->lfd = listen_on(port);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->sfd < 0 || s->lfd < 0 || s->ep < 0) {
        return -1;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &s->lfd;
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) != 0) {
        return -1;
    }
    ev.data.ptr = &s->sfd;
    return epoll_ctl(s->ep, EPOLL_CTL_ADD, s->sfd, &ev);
}

/* --delay-ms: send the answers whose time has come; the ms until the next
 * (-1: none held). */
static int release_held(struct sink *s)
{
    struct conn *c;
    int64_t now = now_ns();

    while (s->held != NULL && s->held->hold_ns <= now) {
        c = s->held;
        hold_unlink(s, c);
        on_conn(s, c, 0); /* write it, then take the next request, if any */
    }
    if (s->held == NULL) {
        return -1;
    }
    return (int)((s->held->hold_ns - now + 999999) / 1000000);
}

static void run(struct sink *s)
{
    struct epoll_event evs[SINK_EVENTS];
    int n;
    int i;

    while (!s->quit) {
        n = epoll_wait(s->ep, evs, SINK_EVENTS, release_held(s));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "ess-bench-sink: epoll_wait: %s\n", strerror(errno));
            return;
        }
        for (i = 0; i < n; i++) {
            if (evs[i].data.ptr == &s->lfd) {
                on_accept(s);
            } else if (evs[i].data.ptr == &s->sfd) {
                s->quit = 1;
            } else {
                on_conn(s, evs[i].data.ptr, evs[i].events);
            }
        }
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: ess-bench-sink [--port N] [--latency-file FILE] [--delay-ms N]\n"
                 "  a fast HTTP/1.1 keep-alive partner on 127.0.0.1 for bench/bench.py;\n"
                 "  prints \"PORT n\" first. GET /_count, POST /_mode (down|up), POST /_reset.\n"
                 "  --delay-ms N: answer each POST N ms after it came (a partner's latency).\n");
}

int main(int argc, char **argv)
{
    struct sink s;
    char *end;
    long port = 0;
    long delay = 0;
    int rc = 0;
    int i;

    memset(&s, 0, sizeof(s));
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            errno = 0;
            port = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || port < 0 || port > 65535) {
                fprintf(stderr, "ess-bench-sink: bad --port '%s'\n", argv[i]);
                return 64;
            }
        } else if (strcmp(argv[i], "--delay-ms") == 0 && i + 1 < argc) {
            errno = 0;
            delay = strtol(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || delay < 0 || delay > 60000) {
                fprintf(stderr, "ess-bench-sink: bad --delay-ms '%s' (0..60000)\n", argv[i]);
                return 64;
            }
            s.delay_ns = (int64_t)delay * 1000000;
        } else if (strcmp(argv[i], "--latency-file") == 0 && i + 1 < argc) {
            s.latency_file = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 64;
        }
    }
    if (setup(&s, (int)port) != 0) {
        fprintf(stderr, "ess-bench-sink: cannot listen on 127.0.0.1:%ld: %s\n", port,
                strerror(errno));
        return 69;
    }
    printf("PORT %d\n", bound_port(s.lfd));
    fflush(stdout);
    run(&s);
    if (s.latency_file != NULL && write_samples(&s) != 0) {
        rc = 74;
    }
    fprintf(stderr,
            "ess-bench-sink: exiting; %" PRIu64 " POSTs answered 200, %" PRIu64
            " answered 503, %zu latency samples\n",
            s.count, s.rejected, s.n_samples);
    free(s.samples);
    return rc;
}
