/*
 * ess_metrics -- Prometheus text exposition; see ess_metrics.h.
 */
#define _GNU_SOURCE
#include "ess_metrics.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#define METRICS_MAX_CONNECTIONS 16 /* scrapers are few; a flood gets refused, not queued */
#define METRICS_TIMEOUT_SEC 10

/* libmicrohttpd is loaded only when a manifest sets metrics_listen. Linked
 * into every worker, its library constructor initialised GnuTLS (Debian's
 * build serves HTTPS with it) in workers that never serve /metrics: 0.6 MiB
 * of library pages and 0.1 MiB of heap in each (measured on ess-push). The
 * soname is the one the headers we build against belong to (Debian 12:
 * libmicrohttpd12); ess-webhook links it directly and finds it loaded. */
#define METRICS_MHD_SONAME "libmicrohttpd.so.12"

static struct {
    pthread_once_t once;
    char error[256]; /* why loading failed */
    /* the header's own prototypes (typeof does not reference the symbols) */
    __typeof__(&MHD_start_daemon) start_daemon;
    __typeof__(&MHD_stop_daemon) stop_daemon;
    __typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
    __typeof__(&MHD_add_response_header) add_response_header;
    __typeof__(&MHD_queue_response) queue_response;
    __typeof__(&MHD_destroy_response) destroy_response;
} mhd = {PTHREAD_ONCE_INIT, "", NULL, NULL, NULL, NULL, NULL, NULL};

/* dlsym's void * as a function pointer (POSIX guarantees the conversion). */
static int mhd_sym(void *lib, const char *name, void *fn, size_t size)
{
    void *p = dlsym(lib, name);

    if (p == NULL) {
        snprintf(mhd.error, sizeof(mhd.error), "%s has no %s", METRICS_MHD_SONAME, name);
        return -1;
    }
    memcpy(fn, &p, size);
    return 0;
}

static void mhd_load(void)
{
    const char *why;
    void *lib = dlopen(METRICS_MHD_SONAME, RTLD_NOW | RTLD_LOCAL);

    if (lib == NULL) {
        why = dlerror();
        snprintf(mhd.error, sizeof(mhd.error), "%s", why != NULL ? why : METRICS_MHD_SONAME);
        return;
    }
    /* kept loaded for the process's life: its daemon thread runs its code */
    if (mhd_sym(lib, "MHD_start_daemon", &mhd.start_daemon, sizeof(mhd.start_daemon)) != 0 ||
        mhd_sym(lib, "MHD_stop_daemon", &mhd.stop_daemon, sizeof(mhd.stop_daemon)) != 0 ||
        mhd_sym(lib, "MHD_create_response_from_buffer", &mhd.create_response_from_buffer,
                sizeof(mhd.create_response_from_buffer)) != 0 ||
        mhd_sym(lib, "MHD_add_response_header", &mhd.add_response_header,
                sizeof(mhd.add_response_header)) != 0 ||
        mhd_sym(lib, "MHD_queue_response", &mhd.queue_response, sizeof(mhd.queue_response)) != 0 ||
        mhd_sym(lib, "MHD_destroy_response", &mhd.destroy_response, sizeof(mhd.destroy_response)) !=
            0) {
        mhd.start_daemon = NULL;
    }
}

struct ess_metrics {
    struct MHD_Daemon *daemon;
    pthread_mutex_t mu;
    struct ess_metrics_sample sample; /* the latest, under mu */
    char connector[128];
};

void ess_metrics_sample_from(struct ess_metrics_sample *out, const struct ess_stats *st, int up,
                             int partner_up, long long backlog)
{
    memset(out, 0, sizeof(*out));
    out->up = up;
    out->partner_up = partner_up;
    out->consumed = st->consumed;
    out->delivered = st->delivered;
    out->failed = st->failed;
    out->retried = st->retried;
    out->parked = st->parked;
    out->backlog = backlog < 0 ? 0 : backlog;
    memcpy(out->lag_hist, st->lag_hist, sizeof(out->lag_hist));
    out->lag_count = st->lag_count;
    out->lag_sum_ms = st->lag_sum_ms;
}

/* A label value as the format wants it: \\, \" and \n escaped. */
static void label_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;

    for (; *in != '\0' && o + 3 < len; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void lag_histogram(FILE *f, const char *c, const struct ess_metrics_sample *s)
{
    unsigned long long cum = 0;
    size_t i;

    head(f, "ess_sync_lag_seconds", "histogram",
         "Time from journaling an event to the partner's 2xx.");
    for (i = 0; i < ESS_STATS_LAG_BUCKETS; i++) {
        cum += s->lag_hist[i];
        fprintf(f, "ess_sync_lag_seconds_bucket{connector=\"%s\",le=\"%g\"} %llu\n", c,
                (double)ess_stats_lag_bounds_ms[i] / 1000.0, cum);
    }
    /* +Inf is the count by definition (a sample above every bound included). */
    fprintf(f, "ess_sync_lag_seconds_bucket{connector=\"%s\",le=\"+Inf\"} %llu\n", c, s->lag_count);
    fprintf(f, "ess_sync_lag_seconds_sum{connector=\"%s\"} %.3f\n", c,
            (double)s->lag_sum_ms / 1000.0);
    fprintf(f, "ess_sync_lag_seconds_count{connector=\"%s\"} %llu\n", c, s->lag_count);
}

char *ess_metrics_render(const char *connector, const struct ess_metrics_sample *s)
{
    char c[400];
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    if (f == NULL) {
        return NULL;
    }
    label_escape(connector, c, sizeof(c));
    head(f, "ess_connector_up", "gauge", "1 while the worker runs with its bus and database.");
    fprintf(f, "ess_connector_up{connector=\"%s\"} %d\n", c, s->up ? 1 : 0);
    head(f, "ess_partner_up", "gauge", "1 while the partner answers (the breaker is closed).");
    fprintf(f, "ess_partner_up{connector=\"%s\"} %d\n", c, s->partner_up ? 1 : 0);
    head(f, "ess_events_consumed_total", "counter", "Messages taken from the connector's queue.");
    fprintf(f, "ess_events_consumed_total{connector=\"%s\"} %llu\n", c, s->consumed);
    head(f, "ess_deliveries_total", "counter",
         "Delivery attempts by result: ok (2xx), failed (attempts that did not deliver), "
         "parked (events given up on).");
    fprintf(f, "ess_deliveries_total{connector=\"%s\",result=\"ok\"} %llu\n", c, s->delivered);
    fprintf(f, "ess_deliveries_total{connector=\"%s\",result=\"failed\"} %llu\n", c, s->failed);
    fprintf(f, "ess_deliveries_total{connector=\"%s\",result=\"parked\"} %llu\n", c, s->parked);
    head(f, "ess_retries_total", "counter", "Attempts scheduled again after a failure.");
    fprintf(f, "ess_retries_total{connector=\"%s\"} %llu\n", c, s->retried);
    head(f, "ess_parked_total", "counter", "Events moved to the dead-letter table.");
    fprintf(f, "ess_parked_total{connector=\"%s\"} %llu\n", c, s->parked);
    head(f, "ess_backlog", "gauge", "Journaled events not yet delivered or parked.");
    fprintf(f, "ess_backlog{connector=\"%s\"} %lld\n", c, s->backlog);
    lag_histogram(f, c, s);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int parse_listen(const char *listen, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = listen != NULL ? strrchr(listen, ':') : NULL;
    char *end = NULL;
    long port;

    memset(sa, 0, sizeof(*sa));
    if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
        return -1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 1 || port > 65535 ||
        inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        return -1;
    }
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return 0;
}

int ess_metrics_listen_is_loopback(const char *listen)
{
    struct sockaddr_in sa;

    return parse_listen(listen, &sa) == 0 && (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, char *body,
                             const char *ctype)
{
    struct MHD_Response *r =
        mhd.create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result rc;

    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    mhd.add_response_header(r, "Content-Type", ctype);
    rc = mhd.queue_response(conn, status, r);
    mhd.destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct ess_metrics *m = cls;
    struct ess_metrics_sample s;
    char *text;

    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = m; /* first call: headers only */
        return MHD_YES;
    }
    *upload_data_size = 0; /* a body, if any, is ignored */
    if (strcmp(url, "/metrics") != 0) {
        return reply(conn, MHD_HTTP_NOT_FOUND, strdup("not found: try GET /metrics\n"),
                     "text/plain; charset=utf-8");
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("GET only\n"),
                     "text/plain; charset=utf-8");
    }
    pthread_mutex_lock(&m->mu);
    s = m->sample;
    pthread_mutex_unlock(&m->mu);
    text = ess_metrics_render(m->connector, &s);
    if (text == NULL) {
        return MHD_NO;
    }
    return reply(conn, MHD_HTTP_OK, text, "text/plain; version=0.0.4; charset=utf-8");
}

struct ess_metrics *ess_metrics_new(const char *listen, const char *connector, struct ess_err *err)
{
    struct ess_metrics *m;
    struct sockaddr_in sa;

    if (parse_listen(listen, &sa) != 0) {
        ess_err_set(err, ESS_ECONFIG, "metrics_listen: '%s' is not IPv4:PORT",
                    listen != NULL ? listen : "");
        return NULL;
    }
    pthread_once(&mhd.once, mhd_load);
    if (mhd.start_daemon == NULL) {
        ess_err_set(err, ESS_ECONFIG, "metrics_listen: cannot load libmicrohttpd (%s)", mhd.error);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        ess_err_set(err, ESS_ENOMEM, "metrics: out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    snprintf(m->connector, sizeof(m->connector), "%s", connector);
    m->daemon = mhd.start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
                                 on_request, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_MAX_CONNECTIONS,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_TIMEOUT_SEC,
                                 MHD_OPTION_END);
    if (m->daemon == NULL) {
        ess_err_set(err, ESS_ECONFIG, "metrics_listen: cannot listen on %s (address in use?)",
                    listen);
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    return m;
}

void ess_metrics_free(struct ess_metrics *m)
{
    if (m == NULL) {
        return;
    }
    mhd.stop_daemon(m->daemon);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void ess_metrics_update(struct ess_metrics *m, const struct ess_metrics_sample *s)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    m->sample = *s;
    pthread_mutex_unlock(&m->mu);
}
