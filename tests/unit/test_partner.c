/*
 * test_partner -- ess_partner against a real HTTP/1.1 server on 127.0.0.1.
 *
 * The server is a small poll() loop in a thread of this process: keep-alive,
 * Content-Length bodies, a few behaviours chosen by path, and counters of
 * accepted connections and requests so keep-alive can be checked from the
 * server's side. Nothing in libcurl or ess_partner is mocked.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ess_manifest.h"
#include "ess_partner.h"

#define SRV_MAX_CONNS 64
#define SRV_READ 65536

struct srv_conn {
    int fd;
    int hung; /* /hang seen: never answer, ignore further input */
    size_t len;
    size_t cap;
    char *buf; /* grows to hold one whole request */
};

struct srv {
    int lfd;
    int port;
    int stop[2];
    pthread_t thread;
    pthread_mutex_t mu;
    int accepted;         /* under mu */
    int requests;         /* under mu */
    size_t last_body_len; /* under mu */
    int last_had_expect;  /* under mu */
    struct srv_conn conns[SRV_MAX_CONNS];
};

static void srv_reply(struct srv_conn *c, int status, const char *extra, const char *body,
                      size_t blen)
{
    char head[512];
    int n;

    n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, blen,
                 extra);
    (void)!send(c->fd, head, (size_t)n, MSG_NOSIGNAL);
    (void)!send(c->fd, body, blen, MSG_NOSIGNAL);
}

static void srv_route(struct srv *s, struct srv_conn *c, const char *path, size_t blen)
{
    static char big[5000];
    char text[64];

    if (strncmp(path, "/ok ", 4) == 0) {
        srv_reply(c, 200, "", "ok", 2);
    } else if (strncmp(path, "/503 ", 5) == 0) {
        srv_reply(c, 503, "Retry-After: 2\r\n", "down for maintenance\nline two", 29);
    } else if (strncmp(path, "/429date ", 9) == 0) {
        srv_reply(c, 429, "Retry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n", "", 0);
    } else if (strncmp(path, "/hang ", 6) == 0) {
        c->hung = 1;
    } else if (strncmp(path, "/big ", 5) == 0) {
        memset(big, 'b', sizeof(big));
        srv_reply(c, 200, "", big, sizeof(big));
    } else if (strncmp(path, "/echo ", 6) == 0) {
        snprintf(text, sizeof(text), "%zu", blen);
        srv_reply(c, 200, "", text, strlen(text));
    } else {
        srv_reply(c, 404, "", "no such path", 12);
    }
    (void)s;
}

/* Handle every complete request in c->buf. */
static void srv_process(struct srv *s, struct srv_conn *c)
{
    char *end, *cl;
    size_t hlen, blen, total;

    while (!c->hung) {
        c->buf[c->len] = '\0';
        end = strstr(c->buf, "\r\n\r\n");
        if (end == NULL) {
            return;
        }
        hlen = (size_t)(end - c->buf) + 4;
        *end = '\0';
        cl = strcasestr(c->buf, "\r\nContent-Length:");
        blen = cl != NULL ? strtoul(cl + 17, NULL, 10) : 0;
        total = hlen + blen;
        if (c->len < total) {
            *end = '\r';
            return;
        }
        pthread_mutex_lock(&s->mu);
        s->requests++;
        s->last_body_len = blen;
        s->last_had_expect = strcasestr(c->buf, "\r\nExpect:") != NULL;
        pthread_mutex_unlock(&s->mu);
        srv_route(s, c, c->buf + strcspn(c->buf, " ") + 1, blen);
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
    }
}

static void srv_accept(struct srv *s)
{
    int fd = accept(s->lfd, NULL, NULL);
    int i;

    if (fd < 0) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->accepted++;
    pthread_mutex_unlock(&s->mu);
    for (i = 0; i < SRV_MAX_CONNS; i++) {
        if (s->conns[i].fd < 0) {
            s->conns[i].fd = fd;
            s->conns[i].hung = 0;
            return;
        }
    }
    close(fd);
}

static void srv_close(struct srv_conn *c)
{
    close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = 0;
    c->cap = 0;
}

static void srv_read(struct srv *s, struct srv_conn *c)
{
    char *grown;
    ssize_t n;

    if (c->cap - c->len < SRV_READ + 1) {
        grown = realloc(c->buf, c->cap * 2 + SRV_READ + 1);
        if (grown == NULL) {
            srv_close(c);
            return;
        }
        c->buf = grown;
        c->cap = c->cap * 2 + SRV_READ + 1;
    }
    n = read(c->fd, c->buf + c->len, SRV_READ);
    if (n <= 0) {
        srv_close(c);
        return;
    }
    if (c->hung) {
        return; /* drain and ignore */
    }
    c->len += (size_t)n;
    srv_process(s, c);
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    struct pollfd pfd[SRV_MAX_CONNS + 2];
    int map[SRV_MAX_CONNS + 2];
    int i, n;

    for (;;) {
        pfd[0].fd = s->stop[0];
        pfd[0].events = POLLIN;
        pfd[1].fd = s->lfd;
        pfd[1].events = POLLIN;
        n = 2;
        for (i = 0; i < SRV_MAX_CONNS; i++) {
            if (s->conns[i].fd >= 0) {
                pfd[n].fd = s->conns[i].fd;
                pfd[n].events = POLLIN;
                map[n++] = i;
            }
        }
        if (poll(pfd, (nfds_t)n, -1) < 0 && errno != EINTR) {
            break;
        }
        if (pfd[0].revents != 0) {
            break;
        }
        if (pfd[1].revents & POLLIN) {
            srv_accept(s);
        }
        for (i = 2; i < n; i++) {
            if (pfd[i].revents != 0) {
                srv_read(s, &s->conns[map[i]]);
            }
        }
    }
    return NULL;
}

static int srv_start(struct srv *s)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int i;

    memset(s, 0, sizeof(*s));
    for (i = 0; i < SRV_MAX_CONNS; i++) {
        s->conns[i].fd = -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(s->lfd, 64) != 0 || getsockname(s->lfd, (struct sockaddr *)&a, &alen) != 0 ||
        pipe(s->stop) != 0) {
        return -1;
    }
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->thread, NULL, srv_main, s);
}

static void srv_stop(struct srv *s)
{
    int i;

    (void)!write(s->stop[1], "x", 1);
    pthread_join(s->thread, NULL);
    for (i = 0; i < SRV_MAX_CONNS; i++) {
        if (s->conns[i].fd >= 0) {
            srv_close(&s->conns[i]);
        }
    }
    close(s->lfd);
    close(s->stop[0]);
    close(s->stop[1]);
    pthread_mutex_destroy(&s->mu);
}

static int srv_get(struct srv *s, int *field)
{
    int v;

    pthread_mutex_lock(&s->mu);
    v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Run the loop as a worker would until `want` results arrived (or 10 s). */
static int drive(struct ess_partner *p, struct ess_partner_result *out, int want)
{
    long deadline = now_ms() + 10000;
    int got = 0;
    int ready;

    while (got < want && now_ms() < deadline) {
        assert_int_equal(ess_partner_wait(p, -1, 100, &ready), ESS_OK);
        assert_int_equal(ess_partner_perform(p), ESS_OK);
        while (got < want && ess_partner_next_result(p, &out[got])) {
            got++;
        }
    }
    return got;
}

static char *url_for(const struct srv *s, const char *path)
{
    static char url[128];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    return url;
}

static int send_simple(struct ess_partner *p, uint64_t token, const char *url)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");

    return ess_partner_send(p, token, url, h, strdup("{\"a\":1}"), 7, NULL);
}

static int setup(void **state)
{
    struct srv *s = calloc(1, sizeof(*s));

    if (s == NULL || srv_start(s) != 0) {
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    srv_stop(*state);
    free(*state);
    return 0;
}

static void test_ok(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(5000, 4, NULL);
    struct ess_partner_result r;

    assert_non_null(p);
    assert_int_equal(send_simple(p, 7, url_for(s, "/ok")), ESS_OK);
    assert_int_equal(ess_partner_in_flight(p), 1);
    assert_int_equal(ess_partner_room(p), 3);
    assert_int_equal(drive(p, &r, 1), 1);
    assert_int_equal(r.token, 7);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.transport_failed, 0);
    assert_int_equal(r.retry_after_ms, -1);
    assert_string_equal(r.body, "ok");
    assert_string_equal(r.error, "");
    assert_true(r.total_ms > 0.0);
    assert_int_equal(ess_partner_in_flight(p), 0);
    assert_int_equal(ess_partner_next_result(p, &r), 0);
    ess_partner_free(p);
}

static void test_503_retry_after(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(5000, 4, NULL);
    struct ess_partner_result r[2];

    assert_int_equal(send_simple(p, 1, url_for(s, "/503")), ESS_OK);
    assert_int_equal(drive(p, r, 1), 1);
    assert_int_equal(r[0].status, 503);
    assert_int_equal(r[0].transport_failed, 0);
    assert_int_equal(r[0].retry_after_ms, 2000);
    assert_string_equal(r[0].error, "HTTP 503: down for maintenance line two");
    /* An HTTP-date in the past means "now"; the previous transfer's value is gone. */
    assert_int_equal(send_simple(p, 2, url_for(s, "/429date")), ESS_OK);
    assert_int_equal(drive(p, &r[1], 1), 1);
    assert_int_equal(r[1].status, 429);
    assert_int_equal(r[1].retry_after_ms, 0);
    assert_string_equal(r[1].error, "HTTP 429");
    ess_partner_free(p);
}

static void test_hang_times_out(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(300, 2, NULL);
    struct ess_partner_result r;

    assert_int_equal(send_simple(p, 9, url_for(s, "/hang")), ESS_OK);
    assert_int_equal(drive(p, &r, 1), 1);
    assert_int_equal(r.token, 9);
    assert_int_equal(r.transport_failed, 1);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "timeout after 300 ms");
    assert_true(r.total_ms >= 250.0 && r.total_ms < 3000.0);
    ess_partner_free(p);
}

static void test_refused(void **state)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    struct ess_partner *p = ess_partner_new(2000, 2, NULL);
    struct ess_partner_result r;
    char url[64];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    /* A port that was just free and has no listener. */
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ok", ntohs(a.sin_port));
    assert_int_equal(send_simple(p, 3, url), ESS_OK);
    assert_int_equal(drive(p, &r, 1), 1);
    assert_int_equal(r.transport_failed, 1);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.error, "connection refused");
    ess_partner_free(p);
}

static void test_fifty_sends_each_once_keepalive(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(5000, 8, NULL);
    struct ess_partner_result r;
    int seen[51] = {0};
    long deadline = now_ms() + 10000;
    uint64_t next = 1;
    int done = 0;
    int ready;

    while (done < 50 && now_ms() < deadline) {
        while (next <= 50 && ess_partner_room(p) > 0) {
            assert_int_equal(send_simple(p, next++, url_for(s, "/ok")), ESS_OK);
        }
        assert_true(ess_partner_in_flight(p) <= 8);
        ess_partner_wait(p, -1, 100, &ready);
        ess_partner_perform(p);
        while (ess_partner_next_result(p, &r)) {
            assert_true(r.token >= 1 && r.token <= 50);
            assert_int_equal(r.status, 200);
            seen[r.token]++;
            done++;
        }
    }
    assert_int_equal(done, 50);
    for (next = 1; next <= 50; next++) {
        assert_int_equal(seen[next], 1);
    }
    ess_partner_wait(p, -1, 50, &ready);
    ess_partner_perform(p);
    assert_int_equal(ess_partner_next_result(p, &r), 0); /* nothing extra */
    assert_int_equal(srv_get(s, &s->requests), 50);
    assert_true(srv_get(s, &s->accepted) <= 8);
    ess_partner_free(p);
}

static void test_sequential_reuses_one_connection(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(5000, 4, NULL);
    struct ess_partner_result r;
    int i;

    for (i = 0; i < 20; i++) {
        /* /big: the unread tail of a long answer must not spoil the connection */
        assert_int_equal(send_simple(p, (uint64_t)i, url_for(s, i % 2 ? "/big" : "/ok")), ESS_OK);
        assert_int_equal(drive(p, &r, 1), 1);
        assert_int_equal(r.status, 200);
        if (i % 2) {
            assert_int_equal(strlen(r.body), sizeof(r.body) - 1);
        }
    }
    assert_int_equal(srv_get(s, &s->requests), 20);
    assert_int_equal(srv_get(s, &s->accepted), 1);
    ess_partner_free(p);
}

static void test_large_body_no_expect_stall(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(5000, 2, NULL);
    struct ess_partner_result r;
    size_t n = 1500000; /* over both of curl's Expect thresholds (1 KiB old, 1 MiB new) */
    char *body = malloc(n);
    int had_expect;

    memset(body, 'x', n);
    assert_int_equal(ess_partner_send(p, 5, url_for(s, "/echo"), NULL, body, n, NULL), ESS_OK);
    assert_int_equal(drive(p, &r, 1), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "1500000");
    had_expect = srv_get(s, &s->last_had_expect);
    assert_int_equal(had_expect, 0);
    assert_true(r.total_ms < 900.0);
    ess_partner_free(p);
}

static void test_wait_reports_extra_fd(void **state)
{
    struct ess_partner *p = ess_partner_new(5000, 2, NULL);
    int fds[2];
    int ready = -1;
    long t0;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    t0 = now_ms();
    assert_int_equal(ess_partner_wait(p, fds[0], 80, &ready), ESS_OK);
    assert_int_equal(ready, 0);
    assert_true(now_ms() - t0 >= 60);
    assert_int_equal(write(fds[1], "x", 1), 1);
    t0 = now_ms();
    assert_int_equal(ess_partner_wait(p, fds[0], 5000, &ready), ESS_OK);
    assert_int_equal(ready, 1);
    assert_true(now_ms() - t0 < 1000);
    close(fds[0]);
    close(fds[1]);
    ess_partner_free(p);
}

static void test_send_refusals_free_what_they_took(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(5000, 1, NULL);
    struct ess_partner_result r;
    struct ess_err err;

    assert_null(ess_partner_new(5000, 0, NULL));
    assert_int_equal(send_simple(p, 1, url_for(s, "/hang")), ESS_OK);
    ess_err_clear(&err);
    assert_int_equal(ess_partner_send(p, 2, url_for(s, "/ok"), curl_slist_append(NULL, "A: b"),
                                      strdup("{}"), 2, &err),
                     ESS_EINVAL);
    assert_non_null(strstr(err.msg, "full"));
    assert_int_equal(ess_partner_room(p), 0);
    ess_partner_free(p); /* with a transfer still out: nothing leaks */

    p = ess_partner_new(5000, 2, NULL);
    ess_err_clear(&err);
    assert_int_equal(
        ess_partner_send(p, 3, "ftp://user:pw@127.0.0.1/x", NULL, strdup("{}"), 2, &err),
        ESS_EPARTNER);
    assert_non_null(strstr(err.msg, "'ftp'"));
    assert_null(strstr(err.msg, "pw"));
    assert_int_equal(ess_partner_send(p, 4, NULL, NULL, strdup("{}"), 2, NULL), ESS_EINVAL);
    assert_int_equal(ess_partner_in_flight(p), 0);
    assert_int_equal(ess_partner_next_result(p, &r), 0);
    ess_partner_free(p);
    ess_partner_free(NULL);
}

/* https:// to a plain-HTTP server: the handshake fails, and that is a transport
 * failure (retried by the caller) with curl's TLS message, not a crash or a
 * hang. A missing CA file is the same kind of failure. set_tls(NULL) restores
 * the defaults. */
static void test_tls_failures_are_transport_errors(void **state)
{
    struct srv *s = *state;
    struct ess_partner *p = ess_partner_new(3000, 2, NULL);
    struct ess_tls tls = {"/nonexistent/ess-ut/ca.pem", NULL, NULL, 1, 0};
    struct ess_partner_result r;
    char url[64];

    snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", s->port);
    assert_int_equal(ess_partner_set_tls(p, NULL, NULL), ESS_OK);
    assert_int_equal(send_simple(p, 1, url), ESS_OK);
    assert_int_equal(drive(p, &r, 1), 1);
    assert_int_equal(r.transport_failed, 1);
    assert_int_equal(r.status, 0);
    assert_true(r.error[0] != '\0');
    assert_int_equal(ess_partner_set_tls(p, &tls, NULL), ESS_OK);
    assert_int_equal(send_simple(p, 2, url), ESS_OK);
    assert_int_equal(drive(p, &r, 1), 1);
    assert_int_equal(r.transport_failed, 1);
    assert_non_null(strstr(r.error, "/nonexistent/ess-ut/ca.pem"));
    /* plain http ignores the TLS settings */
    assert_int_equal(send_simple(p, 3, url_for(s, "/ok")), ESS_OK);
    assert_int_equal(drive(p, &r, 1), 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(ess_partner_set_tls(NULL, &tls, NULL), ESS_EINVAL);
    ess_partner_free(p);
}

static int group_setup(void **state)
{
    (void)state;
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_503_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifty_sends_each_once_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequential_reuses_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body_no_expect_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_reports_extra_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_refusals_free_what_they_took, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_failures_are_transport_errors, setup, teardown),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
