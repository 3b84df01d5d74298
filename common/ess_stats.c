/*
 * ess_stats -- counters and lag percentiles; see ess_stats.h.
 */
#include "ess_stats.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

const long ess_stats_lag_bounds_ms[ESS_STATS_LAG_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000};

void ess_stats_init(struct ess_stats *s)
{
    memset(s, 0, sizeof(*s));
}

void ess_stats_lag_add(struct ess_stats *s, long ms)
{
    size_t b = 0;

    ms = ms < 0 ? 0 : ms;
    s->lag[s->lag_pos] = ms;
    while (b < ESS_STATS_LAG_BUCKETS && ms > ess_stats_lag_bounds_ms[b]) {
        b++;
    }
    s->lag_hist[b]++;
    s->lag_count++;
    s->lag_sum_ms += (unsigned long long)ms;
    s->lag_pos = (s->lag_pos + 1) % ESS_STATS_LAG_N;
    if (s->lag_n < ESS_STATS_LAG_N) {
        s->lag_n++;
    }
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a;
    long y = *(const long *)b;

    return (x > y) - (x < y);
}

/* nearest-rank: the smallest sample with at least pct% at or below it */
static long lag_rank(const long *sorted, size_t n, int pct)
{
    size_t idx = (n * (size_t)pct + 99) / 100;

    idx = idx == 0 ? 0 : idx - 1;
    return sorted[idx < n ? idx : n - 1];
}

/* The samples sorted into out (ESS_STATS_LAG_N long); how many. */
static size_t lag_sorted(const struct ess_stats *s, long *out)
{
    memcpy(out, s->lag, s->lag_n * sizeof(out[0]));
    qsort(out, s->lag_n, sizeof(out[0]), cmp_long);
    return s->lag_n;
}

long ess_stats_lag_pct(const struct ess_stats *s, int pct)
{
    long sorted[ESS_STATS_LAG_N];

    if (s->lag_n == 0) {
        return 0;
    }
    return lag_rank(sorted, lag_sorted(s, sorted), pct);
}

static void iso_time(long long ts_ms, char *buf, size_t len)
{
    time_t sec = (time_t)(ts_ms / 1000);
    struct tm tm;
    char base[24];

    gmtime_r(&sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03lldZ", base, ts_ms % 1000);
}

char *ess_stats_heartbeat_json(const struct ess_stats *s, const struct ess_heartbeat *hb)
{
    return ess_stats_heartbeat_json_with(s, hb, NULL);
}

char *ess_stats_heartbeat_json_with(const struct ess_stats *s, const struct ess_heartbeat *hb,
                                    json_t *extra)
{
    long sorted[ESS_STATS_LAG_N];
    long p50 = 0, p99 = 0;
    size_t n;
    char ts[40];
    json_t *o;
    char *text;

    iso_time(hb->ts_ms, ts, sizeof(ts));
    if (s->lag_n > 0) { /* one sort for both percentiles */
        n = lag_sorted(s, sorted);
        p50 = lag_rank(sorted, n, 50);
        p99 = lag_rank(sorted, n, 99);
    }
    o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I,"
                  " s:I, s:I, s:s}",
                  "connector", hb->connector, "instance", hb->instance, "host", hb->host, "pid",
                  (json_int_t)hb->pid, "version", hb->version, "ts", ts, "uptime_s",
                  (json_int_t)hb->uptime_s, "state", hb->state, "consumed", (json_int_t)s->consumed,
                  "delivered", (json_int_t)s->delivered, "failed", (json_int_t)s->failed, "retried",
                  (json_int_t)s->retried, "parked", (json_int_t)s->parked, "backlog",
                  (json_int_t)hb->backlog, "lag_ms_p50", (json_int_t)p50, "lag_ms_p99",
                  (json_int_t)p99, "last_error", hb->last_error != NULL ? hb->last_error : "");
    if (o == NULL) {
        return NULL;
    }
    /* ts_ms lets dashboards compute the age without parsing the ISO time. */
    json_object_set_new(o, "ts_ms", json_integer((json_int_t)hb->ts_ms));
    json_object_set_new(o, "dead_lettered", json_integer((json_int_t)s->dead));
    if (json_is_object(extra)) {
        json_object_update(o, extra);
    }
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}
