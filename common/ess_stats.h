/*
 * ess_stats -- a worker's counters, its delivery-lag percentiles, and the
 * heartbeat body built from them (DESIGN.md "Heartbeat body").
 *
 * Lag = journal receipt to partner 2xx, in ms. The last ESS_STATS_LAG_N
 * samples are kept in a ring and sorted only when a heartbeat is built (every
 * heartbeat_sec), so recording a sample on the hot path is one store.
 */
#ifndef ESS_STATS_H
#define ESS_STATS_H

#include <stddef.h>

#include <jansson.h>

#define ESS_STATS_LAG_N 4096

/* Every lag sample is also counted in a histogram of these upper bounds (ms)
 * for the whole run: the ring above forgets, a Prometheus histogram must not. */
#define ESS_STATS_LAG_BUCKETS 14
extern const long ess_stats_lag_bounds_ms[ESS_STATS_LAG_BUCKETS];

struct ess_stats {
    unsigned long long consumed;  /* messages taken from the queue */
    unsigned long long delivered; /* 2xx from the partner */
    unsigned long long failed;    /* attempts that did not deliver */
    unsigned long long retried;   /* attempts scheduled again */
    unsigned long long parked;    /* events moved to dead letters */
    unsigned long long dead;      /* unusable messages dead-lettered on the bus */
    long lag[ESS_STATS_LAG_N];
    size_t lag_n;   /* samples held, <= ESS_STATS_LAG_N */
    size_t lag_pos; /* next slot */
    /* lag_hist[i]: samples <= bound i (and > bound i-1); the last slot: above
     * every bound. Not cumulative; ess_metrics renders the running sums. */
    unsigned long long lag_hist[ESS_STATS_LAG_BUCKETS + 1];
    unsigned long long lag_count;
    unsigned long long lag_sum_ms;
};

struct ess_heartbeat { /* borrowed strings, for one call */
    const char *connector;
    const char *instance;
    const char *host;
    const char *version;
    const char *state;      /* ok | degraded | partner_down | paused */
    const char *last_error; /* "" or NULL when none */
    long pid;
    long long ts_ms;
    long long uptime_s;
    long long backlog;
};

void ess_stats_init(struct ess_stats *s);
void ess_stats_lag_add(struct ess_stats *s, long ms);

/* pct in 0..100 over the samples held; 0 when there are none. */
long ess_stats_lag_pct(const struct ess_stats *s, int pct);

/* The heartbeat JSON (malloc'd, caller frees), NULL when out of memory. */
char *ess_stats_heartbeat_json(const struct ess_stats *s, const struct ess_heartbeat *hb);

/* The same with extra's members added (borrowed, may be NULL): open alerts,
 * the canary's last result. */
char *ess_stats_heartbeat_json_with(const struct ess_stats *s, const struct ess_heartbeat *hb,
                                    json_t *extra);

#endif
