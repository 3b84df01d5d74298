/*
 * ess_partner -- deliveries to a partner over libcurl multi.
 *
 * DESIGN
 * One CURLM per partner. The multi handle owns the connection cache, so a
 * connection opened by one transfer is reused by the next (HTTP/1.1
 * keep-alive); CURLMOPT_MAX_HOST_CONNECTIONS bounds the sockets we open to the
 * partner at max_in_flight. Easy handles are never thrown away: a finished
 * transfer goes back to a free pool, keeping its DNS cache and TLS session
 * cache warm, and the next send sets only what differs per request (URL,
 * body, headers, timeout); the rest stays set (partner_setup).
 *
 * A transfer ("xfer") lives from ess_partner_send() until its result is taken
 * by ess_partner_next_result(): when curl reports it done, its result is
 * written into the xfer itself and the xfer is queued. Completion therefore
 * allocates nothing and cannot fail, which is what makes "every send yields
 * exactly one result" hold even under memory pressure. The same lifetime is
 * what ess_partner_in_flight() counts, so results not yet taken hold room.
 *
 * TLS (ess_partner_set_tls: CA file, client certificate and key, verify) is
 * applied at a handle's full setup, redone after a change; libcurl only
 * reuses a cached connection whose TLS settings match, so changing them never sends a request
 * over a connection set up with the old ones.
 *
 * A manifest `tls` block on ftp:// means explicit FTPS (AUTH TLS required,
 * CURLUSESSL_ALL: never plain). SSH (ess_partner_set_ssh: login key, pinned
 * host key) applies to sftp:// uploads.
 *
 * send() speaks http:// and https://; upload() drops a file on ftp:// (explicit
 * FTPS with tls), ftps:// (implicit TLS) or sftp:// with UPLOAD + READFUNCTION
 * over the same kind of owned body, then renames it in the same session
 * (POSTQUOTE), so a partner
 * polling the directory only ever sees complete files under their final name.
 *
 * OWNERSHIP
 * send() takes the headers list and the body on success and on failure; both
 * are freed when the transfer completes (or by ess_partner_free).
 */
#include "ess_partner.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ess_backoff.h"
#include "ess_log.h"
#include "ess_manifest.h"
#include "ess_version.h"

#define PARTNER_ERR_BODY 160 /* body bytes quoted in an "HTTP 503: ..." line */
#define PARTNER_WAIT_FDS 4   /* extra fds ess_partner_wait_fds() watches */
#define PARTNER_RECV_BUFFER 4096L

struct partner_xfer {
    CURL *easy;
    struct curl_slist *headers; /* owned while busy */
    char *body;                 /* owned while busy */
    size_t len;                 /* an upload's body length */
    size_t roff;                /* an upload's read offset */
    struct curl_slist *quote;   /* an upload's rename commands, owned while busy */
    long timeout_ms;            /* as sent, for the "timeout after" line */
    size_t rlen;                /* bytes kept in res.body */
    struct ess_partner_result res;
    char errbuf[CURL_ERROR_SIZE];
    int running;      /* added to the multi handle */
    int upload;       /* a file drop: success is the transfer's, not an HTTP status */
    int http_set;     /* the handle holds every HTTP option but the request's own */
    unsigned tls_gen; /* the partner's tls_gen when they were set */
    CURLU *url;       /* url_text parsed once (CURLOPT_CURLU); NULL: none */
    char *url_text;
    struct partner_xfer *next; /* free pool or done queue */
};

struct ess_partner {
    CURLM *multi;
    long timeout_ms;
    int max_in_flight;
    int in_flight;             /* sent, result not yet taken */
    struct partner_xfer **all; /* every xfer ever made, <= max_in_flight */
    int n_all;
    struct partner_xfer *pool; /* idle xfers, easy handles kept warm */
    struct partner_xfer *done; /* finished, oldest first */
    struct partner_xfer *done_tail;
    /* TLS (owned copies; NULL: curl's default). verify 0 turns peer and host checks off. */
    char *tls_ca;
    char *tls_cert;
    char *tls_key;
    int tls_verify;
    int tls_required; /* ftp://: AUTH TLS or fail (explicit FTPS) */
    /* SSH for sftp:// (owned copies; NULL: unset). host_sha256 without "SHA256:". */
    char *ssh_key;
    char *ssh_host_sha256;
    char *ssh_known_hosts;
    unsigned tls_gen; /* bumped by set_tls */
    int no_proxy_env; /* no *_proxy variable is set: tell curl not to look, per transfer */
    /* A transfer failed below HTTP since the last one that got an answer: the
     * next ones connect afresh. curl 7.88 sometimes keeps a TLS connection the
     * partner refused in its cache; a transfer reusing it fails at once
     * ("bad write retry") with no handshake of its own to blame. */
    int reconnect;
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

/* After a curl_easy_reset: trust, client
 * certificate, verification. Unused by curl for http:// URLs. */
static CURLcode partner_setup_tls(const struct ess_partner *p, CURL *e)
{
    CURLcode rc = CURLE_OK;

    if (p->tls_ca != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_CAINFO, p->tls_ca);
    }
    if (p->tls_cert != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_SSLCERT, p->tls_cert);
    }
    if (p->tls_key != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_SSLKEY, p->tls_key);
    }
    if (p->tls_required) {
        rc |= curl_easy_setopt(e, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    }
    rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, p->tls_verify ? 1L : 0L);
    rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, p->tls_verify ? 2L : 0L);
    return rc;
}

/* sftp://: the login key and the server's host key. Unused for other schemes. */
static CURLcode partner_setup_ssh(const struct ess_partner *p, CURL *e)
{
    CURLcode rc = CURLE_OK;

    if (p->ssh_key != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_SSH_PRIVATE_KEYFILE, p->ssh_key);
        rc |= curl_easy_setopt(e, CURLOPT_SSH_AUTH_TYPES,
                               (long)(CURLSSH_AUTH_PUBLICKEY | CURLSSH_AUTH_PASSWORD));
    }
    if (p->ssh_host_sha256 != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, p->ssh_host_sha256);
    }
    if (p->ssh_known_hosts != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_SSH_KNOWNHOSTS, p->ssh_known_hosts);
    }
    return rc;
}

/* The request's URL: parsed once per handle and target (CURLOPT_CURLU) --
 * curl parses a CURLOPT_URL string again at every transfer. A URL the
 * parser refuses goes as CURLOPT_URL, for curl to report as it always did. */
static CURLcode partner_setup_url(struct partner_xfer *x, const char *url)
{
    CURL *e = x->easy;

    if (x->url_text == NULL || strcmp(x->url_text, url) != 0) {
        free(x->url_text);
        x->url_text = strdup(url);
        if (x->url == NULL) {
            x->url = curl_url();
        }
        if (x->url_text == NULL || x->url == NULL ||
            curl_url_set(x->url, CURLUPART_URL, url, 0) != CURLUE_OK) {
            free(x->url_text);
            x->url_text = NULL;
            curl_easy_setopt(e, CURLOPT_CURLU, NULL);
            return curl_easy_setopt(e, CURLOPT_URL, url);
        }
    }
    return curl_easy_setopt(e, CURLOPT_CURLU, x->url);
}

/* What each request sets: its URL, body and headers. */
static CURLcode partner_setup_request(struct partner_xfer *x, const char *url, size_t len)
{
    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;

    rc |= partner_setup_url(x, url);
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body != NULL ? x->body : "");
    rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    return rc;
}

/* Everything else, once per handle: a handle that sent the previous request
 * keeps its options (curl_easy_reset and two dozen setopts a request were a
 * measurable share of the CPU per event); an upload or new TLS settings in
 * between mean a full setup again. */
static CURLcode partner_setup(const struct ess_partner *p, struct partner_xfer *x, const char *url,
                              size_t len)
{
    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;

    if (x->http_set && x->tls_gen == p->tls_gen) {
        return partner_setup_request(x, url, len);
    }
    x->http_set = 0;
    curl_easy_reset(e);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, "ess/" ESS_VERSION);
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* Answers are short and only their start is kept: a 4 KiB receive buffer
     * instead of 16 KiB per handle (a longer answer takes more reads). */
    rc |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, PARTNER_RECV_BUFFER);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, partner_on_body);
    rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, partner_on_header);
    rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    if (p->no_proxy_env) {
        rc |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    }
    rc |= partner_setup_tls(p, e);
    rc |= partner_setup_request(x, url, len);
    if (rc == CURLE_OK) {
        x->http_set = 1;
        x->tls_gen = p->tls_gen;
    }
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
    curl_slist_free_all(x->quote);
    free(x->body);
    x->headers = NULL;
    x->quote = NULL;
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

/* libcurl reads the proxy variables (and no_proxy) from the environment at
 * every transfer. With none of them set -- the environment does not change
 * under a running worker -- a no-proxy-for-any-host setting gives the same
 * result without the lookups. With one set, curl keeps doing what it does. */
static int partner_no_proxy_env(void)
{
    static const char *const names[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                        "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (getenv(names[i]) != NULL) {
            return 0;
        }
    }
    return 1;
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
    p->tls_verify = 1;
    p->no_proxy_env = partner_no_proxy_env();
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
        curl_url_cleanup(x->url);
        free(x->url_text);
        curl_slist_free_all(x->headers);
        curl_slist_free_all(x->quote);
        free(x->body);
        free(x);
    }
    if (p->multi != NULL) {
        curl_multi_cleanup(p->multi);
    }
    free(p->all);
    free(p->tls_ca);
    free(p->tls_cert);
    free(p->tls_key);
    free(p->ssh_key);
    free(p->ssh_host_sha256);
    free(p->ssh_known_hosts);
    free(p);
}

void ess_partner_set_timeout(struct ess_partner *p, long timeout_ms)
{
    if (timeout_ms > 0) {
        p->timeout_ms = timeout_ms;
    }
}

/* strdup that keeps NULL as NULL; *failed set when memory ran out. */
static char *partner_dup(const char *s, int *failed)
{
    char *d;

    if (s == NULL) {
        return NULL;
    }
    d = strdup(s);
    if (d == NULL) {
        *failed = 1;
    }
    return d;
}

int ess_partner_set_ssh(struct ess_partner *p, const struct ess_ssh *ssh, const char *url,
                        struct ess_err *err)
{
    const struct ess_ssh none = {NULL, NULL, NULL};
    const char *fp;
    char *key, *host, *known;
    int failed = 0;

    ssh = ssh != NULL ? ssh : &none;
    fp = ssh->host_key_sha256;
    if (fp != NULL && strncmp(fp, "SHA256:", 7) == 0) {
        fp += 7;
    }
    key = partner_dup(ssh->key_file, &failed);
    host = fp != NULL ? strndup(fp, strcspn(fp, "=")) : NULL; /* curl wants no padding */
    failed |= fp != NULL && host == NULL;
    known = partner_dup(ssh->known_hosts, &failed);
    if (failed) {
        free(key);
        free(host);
        free(known);
        return ess_err_set(err, ESS_ENOMEM, "out of memory copying the SSH settings");
    }
    free(p->ssh_key);
    free(p->ssh_host_sha256);
    free(p->ssh_known_hosts);
    p->ssh_key = key;
    p->ssh_host_sha256 = host;
    p->ssh_known_hosts = known;
    if (url != NULL && strncasecmp(url, "sftp://", 7) == 0 && host == NULL && known == NULL) {
        ess_log_warn("sftp: no ssh.host_key_sha256 or ssh.known_hosts: the server's identity "
                     "is not checked");
    }
    return ESS_OK;
}

int ess_partner_set_tls(struct ess_partner *p, const struct ess_tls *tls, struct ess_err *err)
{
    const struct ess_tls none = {NULL, NULL, NULL, 1, 0};
    int failed = 0;
    char *ca, *cert, *key;

    if (p == NULL) {
        return ess_err_set(err, ESS_EINVAL, "no partner");
    }
    tls = tls != NULL ? tls : &none;
    ca = partner_dup(tls->ca_file, &failed);
    cert = partner_dup(tls->cert_file, &failed);
    key = partner_dup(tls->key_file, &failed);
    if (failed) {
        free(ca);
        free(cert);
        free(key);
        return ess_err_set(err, ESS_ENOMEM, "out of memory copying the TLS settings");
    }
    free(p->tls_ca);
    free(p->tls_cert);
    free(p->tls_key);
    p->tls_gen++; /* every kept handle is set up again before its next send */
    p->tls_ca = ca;
    p->tls_cert = cert;
    p->tls_key = key;
    p->tls_verify = tls->verify != 0;
    p->tls_required = tls->given;
    if (!p->tls_verify) {
        ess_log_warn("tls.verify is off: the partner's identity is not checked");
    }
    return ESS_OK;
}

static int partner_check_send(struct ess_partner *p, const char *url, const char *body, size_t len,
                              struct ess_err *err)
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
    x->upload = 0;
    partner_reset_result(x, token);
    if (partner_setup(p, x, url, len) != CURLE_OK ||
        curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, (long)p->reconnect) != CURLE_OK ||
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

/* ---- file drops: ftp://, ftps://, sftp:// ------------------------------- */

static int partner_scheme_is_drop(const char *url)
{
    return strncasecmp(url, "ftp://", 6) == 0 || strncasecmp(url, "ftps://", 7) == 0 ||
           strncasecmp(url, "sftp://", 7) == 0;
}

static size_t partner_on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct partner_xfer *x = ud;
    size_t room = size * nitems;
    size_t left = x->len - x->roff;
    size_t n = left < room ? left : room;

    memcpy(buf, x->body + x->roff, n);
    x->roff += n;
    return n;
}

/* A file name is one path segment of printable ASCII that needs no escaping. */
static int partner_name_ok(const char *name)
{
    size_t i;

    if (name == NULL || name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return 0;
    }
    for (i = 0; name[i] != '\0'; i++) {
        if (!isalnum((unsigned char)name[i]) && strchr("._-+=,@", name[i]) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* dir "/" name into out; ESS_EINVAL when it does not fit. */
static int partner_join(char *out, size_t outlen, const char *dir, const char *name)
{
    size_t dlen = strlen(dir);
    const char *sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";
    int n = snprintf(out, outlen, "%s%s%s", dir, sep, name);

    return n > 0 && (size_t)n < outlen ? ESS_OK : ESS_EINVAL;
}

/* The rename after the upload: RNFR/RNTO in the directory curl changed to
 * (ftp, ftps); an SFTP rename takes paths from the URL's path (which may start
 * "/~/", the home directory) and overwrites the target atomically. */
static struct curl_slist *partner_rename_cmds(const struct ess_partner_upload_req *req)
{
    struct curl_slist *q = NULL;
    char from[1200];
    char to[1200];
    char *path = NULL;
    CURLU *u = curl_url();

    if (strncasecmp(req->url, "sftp://", 7) != 0) {
        snprintf(from, sizeof(from), "RNFR %s", req->tmp_name);
        snprintf(to, sizeof(to), "RNTO %s", req->final_name);
        q = curl_slist_append(NULL, from);
        goto add_to;
    }
    if (u == NULL || curl_url_set(u, CURLUPART_URL, req->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) != CURLUE_OK ||
        strchr(path, '"') != NULL) {
        goto done;
    }
    snprintf(from, sizeof(from), "rename \"%s%s%s\" ", path,
             path[0] != '\0' && path[strlen(path) - 1] == '/' ? "" : "/", req->tmp_name);
    snprintf(to, sizeof(to), "%s\"%s%s%s\"", from, path,
             path[0] != '\0' && path[strlen(path) - 1] == '/' ? "" : "/", req->final_name);
    q = curl_slist_append(NULL, to);
    goto done;
add_to:
    if (q != NULL && curl_slist_append(q, to) == NULL) {
        curl_slist_free_all(q);
        q = NULL;
    }
done:
    curl_free(path);
    curl_url_cleanup(u);
    return q;
}

static CURLcode partner_setup_upload(struct partner_xfer *x, const char *file_url,
                                     const struct ess_partner_upload_req *req)
{
    CURL *e = x->easy;
    long stall_s = x->timeout_ms / 1000 > 0 ? x->timeout_ms / 1000 : 1;
    CURLcode rc = CURLE_OK;

    x->http_set = 0;
    curl_easy_reset(e);
    rc |= curl_easy_setopt(e, CURLOPT_URL, file_url);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "ftp,ftps,sftp");
    rc |= curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_READFUNCTION, partner_on_read);
    rc |= curl_easy_setopt(e, CURLOPT_READDATA, x);
    rc |= curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->len);
    rc |= curl_easy_setopt(e, CURLOPT_POSTQUOTE, x->quote);
    rc |= curl_easy_setopt(e, CURLOPT_FTP_CREATE_MISSING_DIRS, (long)CURLFTP_CREATE_DIR_RETRY);
    if (req->user != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_USERNAME, req->user);
        rc |= curl_easy_setopt(e, CURLOPT_PASSWORD, req->password != NULL ? req->password : "");
    }
    /* A file may be large: bound the connect, each server reply and a stalled
     * transfer by timeout_ms rather than the whole upload. */
    rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->timeout_ms);
    rc |= curl_easy_setopt(e, CURLOPT_SERVER_RESPONSE_TIMEOUT, stall_s);
    rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_s);
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    return rc;
}

static int partner_check_upload(struct ess_partner *p, const struct ess_partner_upload_req *req,
                                const char *body, size_t len, struct ess_err *err)
{
    if (p == NULL || req == NULL || req->url == NULL || (body == NULL && len > 0)) {
        return ess_err_set(err, ESS_EINVAL, "partner upload needs a partner, a url and a body");
    }
    if (p->in_flight >= p->max_in_flight) {
        return ess_err_set(err, ESS_EINVAL, "partner is full (%d transfers in flight)",
                           p->in_flight);
    }
    if (!partner_scheme_is_drop(req->url)) {
        return ess_err_set(err, ESS_EPARTNER, "url scheme '%.*s' is not a file drop",
                           (int)strcspn(req->url, ":/"), req->url);
    }
    if (!partner_name_ok(req->tmp_name) || !partner_name_ok(req->final_name)) {
        return ess_err_set(err, ESS_EINVAL, "'%s' is not a plain file name",
                           partner_name_ok(req->tmp_name) ? req->final_name : req->tmp_name);
    }
    return ESS_OK;
}

int ess_partner_upload(struct ess_partner *p, uint64_t token,
                       const struct ess_partner_upload_req *req, char *body, size_t len,
                       struct ess_err *err)
{
    struct partner_xfer *x = NULL;
    char file_url[2048];
    int rc;

    rc = partner_check_upload(p, req, body, len, err);
    if (rc == ESS_OK && partner_join(file_url, sizeof(file_url), req->url, req->tmp_name) != 0) {
        rc = ess_err_set(err, ESS_EINVAL, "upload url too long");
    }
    if (rc != ESS_OK) {
        goto fail;
    }
    x = partner_take(p);
    if (x == NULL) {
        rc = ess_err_set(err, ESS_ENOMEM, "out of memory starting a partner upload");
        goto fail;
    }
    x->quote = partner_rename_cmds(req);
    x->body = body;
    body = NULL;
    x->len = len;
    x->roff = 0;
    x->upload = 1;
    x->timeout_ms = p->timeout_ms;
    partner_reset_result(x, token);
    if (x->quote == NULL || partner_setup_upload(x, file_url, req) != CURLE_OK ||
        curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, (long)p->reconnect) != CURLE_OK ||
        partner_setup_tls(p, x->easy) != CURLE_OK || partner_setup_ssh(p, x->easy) != CURLE_OK ||
        curl_multi_add_handle(p->multi, x->easy) != CURLM_OK) {
        rc = ess_err_set(err, ESS_EPARTNER, "libcurl refused the upload setup");
        goto fail;
    }
    x->running = 1;
    p->in_flight++;
    return ESS_OK;
fail:
    if (x != NULL) {
        partner_release(p, x);
    }
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
    if (x->upload || (r->status >= 200 && r->status <= 299)) {
        return;
    }
    partner_quote_body(x, quoted, sizeof(quoted));
    snprintf(r->error, sizeof(r->error), "HTTP %ld%s%s", r->status, quoted[0] ? ": " : "", quoted);
}

/* Under TLS 1.3 a partner refusing the client certificate (or its absence)
 * sends its alert after the client already counts the handshake as done, so
 * libcurl often reports only the broken pipe or empty reply that follows.
 * Name the likely cause, unless the alert itself made it into the message. */
static void partner_tls_hint(const struct ess_partner *p, struct partner_xfer *x, CURLcode res)
{
    struct ess_partner_result *r = &x->res;
    char cause[sizeof(r->error)];
    curl_off_t tls_us = 0;

    if ((res != CURLE_SEND_ERROR && res != CURLE_RECV_ERROR && res != CURLE_GOT_NOTHING) ||
        r->status != 0 || strstr(r->error, "alert") != NULL) {
        return;
    }
    /* 0 for plain http and for a reused connection: no new handshake to blame */
    if (curl_easy_getinfo(x->easy, CURLINFO_APPCONNECT_TIME_T, &tls_us) != CURLE_OK ||
        tls_us == 0) {
        return;
    }
    snprintf(cause, sizeof(cause), "%s", r->error);
    snprintf(r->error, sizeof(r->error),
             "TLS connection closed by the partner without an answer: it may %s (%.120s)",
             p->tls_cert != NULL ? "refuse the client certificate (tls.cert_file)"
                                 : "require a client certificate (tls.cert_file is not set)",
             cause);
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
    p->reconnect = x->res.transport_failed;
    partner_error_line(x, res);
    partner_tls_hint(p, x, res);
    curl_slist_free_all(x->headers);
    curl_slist_free_all(x->quote);
    free(x->body);
    x->headers = NULL;
    x->quote = NULL;
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

int ess_partner_wait_fds(struct ess_partner *p, const int *fds, int *ready, int n, int timeout_ms)
{
    struct curl_waitfd wfd[PARTNER_WAIT_FDS];
    unsigned nw = 0;
    CURLMcode mc;
    int i;

    for (i = 0; i < n; i++) {
        ready[i] = 0;
        if (fds[i] >= 0 && nw < PARTNER_WAIT_FDS) {
            wfd[nw] = (struct curl_waitfd){fds[i], CURL_WAIT_POLLIN, 0};
            nw++;
        }
    }
    if (p->done != NULL || timeout_ms < 0) {
        timeout_ms = 0; /* results are waiting: do not sleep on them */
    }
    mc = curl_multi_poll(p->multi, nw > 0 ? wfd : NULL, nw, timeout_ms, NULL);
    if (mc != CURLM_OK) {
        return ESS_EPARTNER;
    }
    for (i = 0, nw = 0; i < n; i++) {
        if (fds[i] >= 0 && nw < PARTNER_WAIT_FDS) {
            ready[i] = (wfd[nw].revents & (CURL_WAIT_POLLIN | CURL_WAIT_POLLPRI)) != 0;
            nw++;
        }
    }
    return ESS_OK;
}

int ess_partner_wait(struct ess_partner *p, int extra_fd, int timeout_ms, int *extra_ready)
{
    int ready = 0;
    int rc = ess_partner_wait_fds(p, &extra_fd, &ready, 1, timeout_ms);

    if (extra_ready != NULL) {
        *extra_ready = ready;
    }
    return rc;
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
