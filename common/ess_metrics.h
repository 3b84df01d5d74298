/*
 * ess_metrics -- a worker's Prometheus endpoint: GET /metrics in the text
 * exposition format 0.0.4, on the manifest's metrics_listen (off by default).
 *
 * DESIGN
 * The counters are ess_stats' own (read, never kept twice): the worker's loop
 * copies them into a small sample (ess_metrics_sample_from) and hands it over
 * with ess_metrics_update, which only takes a mutex for a memcpy. The HTTP
 * side is libmicrohttpd's own polling thread: it copies the latest sample
 * under the same mutex and renders outside it, so a slow or stuck scraper
 * never holds up delivery and the loop never waits for a scrape.
 * Rendering is a pure function of a sample (ess_metrics_render), which is
 * what the unit test checks.
 *
 * Ownership: ess_metrics_new returns a heap object freed by ess_metrics_free
 * (stops the thread; NULL is a no-op). Rendered text is malloc'd, the caller
 * frees it.
 */
#ifndef ESS_METRICS_H
#define ESS_METRICS_H

#include "ess_err.h"
#include "ess_stats.h"

struct ess_metrics_sample {
    int up;         /* 1: the worker has its bus and its store */
    int partner_up; /* 1: the breaker is closed */
    unsigned long long consumed;
    unsigned long long delivered;
    unsigned long long failed;
    unsigned long long retried;
    unsigned long long parked;
    long long backlog;
    unsigned long long lag_hist[ESS_STATS_LAG_BUCKETS + 1]; /* as in ess_stats */
    unsigned long long lag_count;
    unsigned long long lag_sum_ms;
};

void ess_metrics_sample_from(struct ess_metrics_sample *out, const struct ess_stats *st, int up,
                             int partner_up, long long backlog);

/* The exposition text for one connector (label connector="<id>", escaped),
 * malloc'd; NULL when out of memory. */
char *ess_metrics_render(const char *connector, const struct ess_metrics_sample *s);

/* 1 when "IPv4:PORT" names a 127.0.0.0/8 address. */
int ess_metrics_listen_is_loopback(const char *listen);

struct ess_metrics;

/* Listen on "IPv4:PORT" (connector copied). NULL with ESS_ECONFIG in err when
 * the address is malformed or cannot be bound. */
struct ess_metrics *ess_metrics_new(const char *listen, const char *connector, struct ess_err *err);
void ess_metrics_free(struct ess_metrics *m);

/* The sample scrapes see from now on (copied). */
void ess_metrics_update(struct ess_metrics *m, const struct ess_metrics_sample *s);

#endif
