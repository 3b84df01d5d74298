/*
 * ess_partner -- deliveries to a partner over libcurl multi.
 *
 * DESIGN
 * One CURLM per partner. The multi handle owns the connection cache, so a
 * connection opened by one transfer is reused by the next (HTTP/1.1
 * keep-alive); CURLMOPT_MAX_HOST_CONNECTIONS bounds the sockets we open to the
 * partner at max_in_flight. Easy handles are never thrown away: a finished
 * transfer goes back to a free pool and the next send curl_easy_reset()s it,
 * which keeps its DNS cache and TLS session cache warm.
 *
 * A transfer ("xfer") lives from ess_partner_send() until its result is taken
 * by ess_partner_next_result(): when curl reports it done, its result is
 * written into the xfer itself and the xfer is queued. Completion therefore
 * allocates nothing and cannot fail, which is what makes "every send yields
 * exactly one result" hold even under memory pressure. The same lifetime is
 * what ess_partner_in_flight() counts, so results not yet taken hold room.
 *
 * Only http:// and https:// are spoken today. The scheme decides in
 * partner_setup(); ftp/sftp drops will be an upload variant there (UPLOAD +
 * READFUNCTION over the same body), not a second module.
 *
 * OWNERSHIP
 * send() takes the headers list and the body on success and on failure; both
 * are freed when the transfer completes (or by ess_partner_free).
 */
#include "ess_partner.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ess_backoff.h"
#include "ess_version.h"

#define PARTNER_ERR_BODY 160 /* body bytes quoted in an "HTTP 503: ..." line */

struct partner_xfer {
    CURL *easy;
    struct curl_slist *headers; /* owned while busy */
    char *body;                 /* owned while busy */
    long timeout_ms;            /* as sent, for the "timeout after" line */
    size_t rlen;                /* bytes kept in res.body */
    struct ess_partner_result res;
    char errbuf[CURL_ERROR_SIZE];
    int running; /* added to the multi handle */
    struct partner_xfer *next; /* free pool or done queue */
};

struct ess_partner {
    CURLM *multi;
    long timeout_ms;
    int max_in_flight;
    int in_flight;              /* sent, result not yet taken */
    struct partner_xfer **all;  /* every xfer ever made, <= max_in_flight */
    int n_all;
    struct partner_xfer *pool;  /* idle xfers, easy handles kept warm */
    struct partner_xfer *done;  /* finished, oldest first */
    struct partner_xfer *done_tail;
};

static size_t partner_on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct partner_xfer *x = ud;
    size_t n = size * nmemb;
    size_t room = sizeof(x->res.body) - 1 - x->rlen;
    size_t take = n < room ? n : room;

    /* Keep the start for the error line; the rest is read and discarded so
     * the connection stays in a reusable state. */
    memcpy(x->res.body + x->rlen, data, take);
    x->rlen += take;
    x->res.body[x->rlen] = '\0';
    return n;
}

static size_t partner_on_header(char *data, size_t size, size_t nitems, void *ud)
{
    struct partner_xfer *x = ud;
    size_t n = size * nitems;
    size_t name = strlen("Retry-After:");
    char value[80];
    size_t vlen;

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        x->res.retry_after_ms = -1; /* a new response (after a 1xx) starts over */
        return n;
    }
    if (n <= name || strncasecmp(data, "Retry-After:", name) != 0) {
        return n;
    }
    vlen = n - name;
    if (vlen >= sizeof(value)) {
        vlen = sizeof(value) - 1;
    }
    memcpy(value, data + name, vlen);
    value[vlen] = '\0';
    value[strcspn(value, "\r\n")] = '\0';
    x->res.retry_after_ms = ess_backoff_retry_after_ms(value, time(NULL));
    return n;
}

static int partner_scheme_is_http(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* "Expect: 100-continue" would cost a round trip (or a 1 s stall against
 * servers that ignore it) on every body over 1 KiB; turn it off unless the
 * caller chose otherwise. */
static struct curl_slist *partner_no_expect(struct curl_slist *headers)
{
    const struct curl_slist *h;

    for (h = headers; h != NULL; h = h->next) {
        if (strncasecmp(h->data, "Expect:", 7) == 0) {
            return headers;
        }
    }
    return curl_slist_append(headers, "Expect:");
}

static CURLcode partner_setup(struct partner_xfer *x, const char *url, size_t len)
{
    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;

    curl_easy_reset(e);
    rc |= curl_easy_setopt(e, CURLOPT_URL, url);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body != NULL ? x->body : "");
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "ess/" ESS_VERSION);
    rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, partner_on_body);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, partner_on_header);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    return rc;
}

/* An idle xfer from the pool, or a new one while under max_in_flight. */
static struct partner_xfer *partner_take(struct ess_partner *p)
{
    struct partner_xfer *x = p->pool;

    if (x != NULL) {
        p->pool = x->next;
        x->next = NULL;
        return x;
    }
    if (p->n_all >= p->max_in_flight) {
        return NULL;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return NULL;
    }
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        free(x);
        return NULL;
    }
    p->all[p->n_all++] = x;
    return x;
}

/* Drop what a transfer owned and put it back in the pool. */
static void partner_release(struct ess_partner *p, struct partner_xfer *x)
{
    curl_slist_free_all(x->headers);
    free(x->body);
    x->headers = NULL;
    x->body = NULL;
    x->running = 0;
    x->next = p->pool;
    p->pool = x;
}

static void partner_reset_result(struct partner_xfer *x, uint64_t token)
{
    memset(&x->res, 0, sizeof(x->res));
    x->res.token = token;
    x->res.retry_after_ms = -1;
    x->rlen = 0;
    x->errbuf[0] = '\0';
}

struct ess_partner *ess_partner_new(long timeout_ms, int max_in_flight, struct ess_err *err)
{
    struct ess_partner *p = NULL;

    if (max_in_flight < 1 || timeout_ms < 1) {
        ess_err_set(err, ESS_EINVAL, "partner needs max_in_flight >= 1 and timeout_ms >= 1");
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        goto fail;
    }
    p->all = calloc((size_t)max_in_flight, sizeof(*p->all));
    p->multi = curl_multi_init();
    if (p->all == NULL || p->multi == NULL) {
        goto fail;
    }
    p->timeout_ms = timeout_ms;
    p->max_in_flight = max_in_flight;
    if (curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_in_flight) !=
            CURLM_OK ||
        curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)max_in_flight) != CURLM_OK) {
        goto fail;
    }
    return p;
fail:
    ess_err_set(err, ESS_ENOMEM, "could not set up the libcurl multi handle");
    ess_partner_free(p);
    return NULL;
}

void ess_partner_free(struct ess_partner *p)
{
    struct partner_xfer *x;
    int i;

    if (p == NULL) {
        return;
    }
    for (i = 0; i < p->n_all; i++) {
        x = p->all[i];
        if (x->running) {
            curl_multi_remove_handle(p->multi, x->easy);
        }
        curl_easy_cleanup(x->easy);
        curl_slist_free_all(x->headers);
        free(x->body);
        free(x);
    }
    if (p->multi != NULL) {
        curl_multi_cleanup(p->multi);
    }
    free(p->all);
    free(p);
}

void ess_partner_set_timeout(struct ess_partner *p, long timeout_ms)
{
    if (timeout_ms > 0) {
        p->timeout_ms = timeout_ms;
    }
}

static int partner_check_send(struct ess_partner *p, const char *url, const char *body,
                              size_t len, struct ess_err *err)
{
    if (p == NULL || url == NULL || (body == NULL && len > 0)) {
        return ess_err_set(err, ESS_EINVAL, "partner send needs a partner, a url and a body");
    }
    if (p->in_flight >= p->max_in_flight) {
        return ess_err_set(err, ESS_EINVAL, "partner is full (%d transfers in flight)",
                           p->in_flight);
    }
    if (!partner_scheme_is_http(url)) {
        /* Name the scheme only: a URL may carry credentials. */
        return ess_err_set(err, ESS_EPARTNER, "url scheme '%.*s' is not supported yet",
                           (int)strcspn(url, ":/"), url);
    }
    return ESS_OK;
}

int ess_partner_send(struct ess_partner *p, uint64_t token, const char *url,
                     struct curl_slist *headers, char *body, size_t len, struct ess_err *err)
{
    struct partner_xfer *x = NULL;
    struct curl_slist *h;
    int rc;

    rc = partner_check_send(p, url, body, len, err);
    if (rc != ESS_OK) {
        goto fail;
    }
    h = partner_no_expect(headers);
    if (h != NULL) {
        headers = h;
    }
    x = partner_take(p);
    if (x == NULL || h == NULL) {
        rc = ess_err_set(err, ESS_ENOMEM, "out of memory starting a partner transfer");
        goto fail;
    }
    x->headers = headers;
    x->body = body;
    headers = NULL;
    body = NULL;
    x->timeout_ms = p->timeout_ms;
    partner_reset_result(x, token);
    if (partner_setup(x, url, len) != CURLE_OK ||
        curl_multi_add_handle(p->multi, x->easy) != CURLM_OK) {
        rc = ess_err_set(err, ESS_EPARTNER, "libcurl refused the transfer setup");
        goto fail;
    }
    x->running = 1;
    p->in_flight++;
    return ESS_OK;
fail:
    if (x != NULL) {
        partner_release(p, x);
    }
    curl_slist_free_all(headers);
    free(body);
    return rc;
}

int ess_partner_in_flight(const struct ess_partner *p)
{
    return p->in_flight;
}

int ess_partner_room(const struct ess_partner *p)
{
    return p->max_in_flight - p->in_flight;
}

/* Copy the start of a response body for a one-line message: control
 * characters (a partner's CR/LF, NULs, tabs) become spaces. */
static void partner_quote_body(const struct partner_xfer *x, char *out, size_t outlen)
{
    size_t n = x->rlen < outlen - 1 ? x->rlen : outlen - 1;
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)x->res.body[i];
        out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    while (n > 0 && out[n - 1] == ' ') {
        n--;
    }
    out[n] = '\0';
}

static void partner_error_line(struct partner_xfer *x, CURLcode res)
{
    struct ess_partner_result *r = &x->res;
    char quoted[PARTNER_ERR_BODY + 1];
    long oserr = 0;

    if (res == CURLE_OPERATION_TIMEDOUT) {
        snprintf(r->error, sizeof(r->error), "timeout after %ld ms", x->timeout_ms);
        return;
    }
    if (res != CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
        if (res == CURLE_COULDNT_CONNECT && oserr == ECONNREFUSED) {
            snprintf(r->error, sizeof(r->error), "connection refused");
        } else {
            snprintf(r->error, sizeof(r->error), "%s",
                     x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(res));
            r->error[strcspn(r->error, "\r\n")] = '\0';
        }
        return;
    }
    if (r->status >= 200 && r->status <= 299) {
        return;
    }
    partner_quote_body(x, quoted, sizeof(quoted));
    snprintf(r->error, sizeof(r->error), "HTTP %ld%s%s", r->status, quoted[0] ? ": " : "",
             quoted);
}

/* A transfer is over: fill its result, free what it owned, queue it. */
static void partner_finish(struct ess_partner *p, struct partner_xfer *x, CURLcode res)
{
    curl_off_t total_us = 0;

    curl_multi_remove_handle(p->multi, x->easy);
    x->running = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->res.status);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    x->res.total_ms = (double)total_us / 1000.0;
    x->res.transport_failed = res != CURLE_OK;
    partner_error_line(x, res);
    curl_slist_free_all(x->headers);
    free(x->body);
    x->headers = NULL;
    x->body = NULL;
    x->next = NULL;
    if (p->done_tail != NULL) {
        p->done_tail->next = x;
    } else {
        p->done = x;
    }
    p->done_tail = x;
}

static void partner_collect(struct ess_partner *p)
{
    struct partner_xfer *x;
    CURLMsg *msg;
    CURLcode res;
    CURL *easy;
    char *priv;
    int left = 0;

    for (;;) {
        msg = curl_multi_info_read(p->multi, &left);
        if (msg == NULL) {
            break;
        }
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        /* msg is invalid once the handle is removed: copy what we need. */
        easy = msg->easy_handle;
        res = msg->data.result;
        priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        x = (struct partner_xfer *)(void *)priv;
        if (x != NULL && x->running) {
            partner_finish(p, x, res);
        }
    }
}

int ess_partner_wait(struct ess_partner *p, int extra_fd, int timeout_ms, int *extra_ready)
{
    struct curl_waitfd wfd;
    CURLMcode mc;

    memset(&wfd, 0, sizeof(wfd));
    wfd.fd = extra_fd;
    wfd.events = CURL_WAIT_POLLIN;
    if (extra_ready != NULL) {
        *extra_ready = 0;
    }
    if (p->done != NULL || timeout_ms < 0) {
        timeout_ms = 0; /* results are waiting: do not sleep on them */
    }
    mc = curl_multi_poll(p->multi, extra_fd >= 0 ? &wfd : NULL, extra_fd >= 0 ? 1 : 0,
                         timeout_ms, NULL);
    if (mc != CURLM_OK) {
        return ESS_EPARTNER;
    }
    if (extra_fd >= 0 && extra_ready != NULL) {
        *extra_ready = (wfd.revents & (CURL_WAIT_POLLIN | CURL_WAIT_POLLPRI)) != 0;
    }
    return ESS_OK;
}

int ess_partner_perform(struct ess_partner *p)
{
    int running = 0;
    CURLMcode mc;

    mc = curl_multi_perform(p->multi, &running);
    partner_collect(p);
    return mc == CURLM_OK ? ESS_OK : ESS_EPARTNER;
}

int ess_partner_next_result(struct ess_partner *p, struct ess_partner_result *r)
{
    struct partner_xfer *x;

    partner_collect(p);
    x = p->done;
    if (x == NULL) {
        return 0;
    }
    p->done = x->next;
    if (p->done == NULL) {
        p->done_tail = NULL;
    }
    *r = x->res;
    p->in_flight--;
    partner_release(p, x);
    return 1;
}
