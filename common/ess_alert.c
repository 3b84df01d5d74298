/*
 * ess_alert -- alert rules; see ess_alert.h.
 *
 * The failure rate is counted over a sliding window from samples of the
 * failed-attempts counter, at most one a second: failures within the window
 * = the counter now minus the counter as it was window seconds ago (the
 * latest sample at or before then; 0 when the worker is younger). A sample
 * is only kept when the counter moved: between two samples it was constant,
 * so the counts are as exact as one sample a second, and a worker that is not
 * failing keeps a few bytes of ring instead of an hour's worth (58 KiB). The
 * ring grows (doubling) up to ALERT_SAMPLES as failures come.
 */
#include "ess_alert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ess_ring.h"

#define ALERT_SAMPLES 3700 /* one a second covers within_sec up to 3600 */
#define ALERT_SAMPLE_MS 1000
#define ALERT_SAMPLES_FIRST 16

struct alert_sample {
    long long ms;
    unsigned long long failed;
};

struct ess_alert {
    struct ess_alerts rules;
    int open[ESS_ALERT__COUNT];
    int announced[ESS_ALERT__COUNT];
    double value[ESS_ALERT__COUNT];
    double threshold[ESS_ALERT__COUNT];
    long long down_since_ms;      /* -1 while the partner is up */
    struct alert_sample *samples; /* ring of cap, oldest at head */
    size_t cap;
    size_t head;
    size_t n;
};

static const char *const rule_names[ESS_ALERT__COUNT] = {
    [ESS_ALERT_FAILURES] = "failures",       [ESS_ALERT_PARTNER_DOWN] = "partner_down",
    [ESS_ALERT_BACKLOG_AGE] = "backlog_age", [ESS_ALERT_PARKED] = "parked",
    [ESS_ALERT_CANARY] = "canary",
};

const char *ess_alert_rule_name(enum ess_alert_rule rule)
{
    return (int)rule >= 0 && rule < ESS_ALERT__COUNT ? rule_names[rule] : "?";
}

struct ess_alert *ess_alert_new(const struct ess_alerts *rules)
{
    struct ess_alert *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        return NULL;
    }
    a->rules = *rules;
    a->down_since_ms = -1;
    a->cap = ALERT_SAMPLES_FIRST;
    a->samples = malloc(a->cap * sizeof(*a->samples));
    if (a->samples == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void ess_alert_free(struct ess_alert *a)
{
    if (a != NULL) {
        free(a->samples);
    }
    free(a);
}

void ess_alert_set_rules(struct ess_alert *a, const struct ess_alerts *rules)
{
    a->rules = *rules;
}

/* A full ring of less than ALERT_SAMPLES doubles (oldest first again); 0
 * when it cannot (the oldest sample then makes room, as at the limit). */
static int ring_grow(struct ess_alert *a)
{
    size_t cap = a->cap * 2 < ALERT_SAMPLES ? a->cap * 2 : ALERT_SAMPLES;
    struct alert_sample *v;

    if (cap <= a->cap) {
        return 0;
    }
    v = ess_ring_unwrap(a->samples, sizeof(*a->samples), a->cap, a->head, a->n, cap);
    if (v == NULL) {
        return 0;
    }
    free(a->samples);
    a->samples = v;
    a->cap = cap;
    a->head = 0;
    return 1;
}

static void sample_add(struct ess_alert *a, long long now, unsigned long long failed)
{
    const struct alert_sample *last;

    if (a->samples == NULL || a->cap == 0) {
        return; /* never: ess_alert_new made the ring */
    }
    last = a->n > 0 ? &a->samples[(a->head + a->n - 1) % a->cap] : NULL;
    if (last != NULL && (now - last->ms < ALERT_SAMPLE_MS || last->failed == failed)) {
        return;
    }
    if (a->n == a->cap && !ring_grow(a)) {
        a->head = (a->head + 1) % a->cap;
        a->n--;
    }
    a->samples[(a->head + a->n) % a->cap] = (struct alert_sample){now, failed};
    a->n++;
}

/* Failed attempts within the last window_ms. */
static unsigned long long failures_within(const struct ess_alert *a, long long now,
                                          unsigned long long failed, long long window_ms)
{
    unsigned long long before = 0;
    const struct alert_sample *s;
    size_t i;

    for (i = 0; i < a->n; i++) {
        s = &a->samples[(a->head + i) % a->cap];
        if (s->ms > now - window_ms) {
            break;
        }
        before = s->failed;
    }
    return failed >= before ? failed - before : failed; /* a reset counter: count afresh */
}

static void rule_set(struct ess_alert *a, enum ess_alert_rule r, int open, double value,
                     double threshold)
{
    a->open[r] = open;
    a->value[r] = value;
    a->threshold[r] = threshold;
}

static void eval_rules(struct ess_alert *a, const struct ess_alert_input *in)
{
    const struct ess_alerts *r = &a->rules;
    long long window_ms =
        (long long)(r->failures.within_sec > 0 ? r->failures.within_sec : 1) * 1000;
    unsigned long long n = failures_within(a, in->now_ms, in->failed, window_ms);
    double down_s;
    double age_s = in->backlog_age_ms >= 0 ? (double)in->backlog_age_ms / 1000.0 : 0;

    rule_set(a, ESS_ALERT_FAILURES,
             r->failures.count > 0 && n > (unsigned long long)r->failures.count, (double)n,
             r->failures.count);
    if (!in->partner_down) {
        a->down_since_ms = -1;
    } else if (a->down_since_ms < 0) {
        a->down_since_ms = in->now_ms;
    }
    down_s = a->down_since_ms >= 0 ? (double)(in->now_ms - a->down_since_ms) / 1000.0 : 0;
    rule_set(a, ESS_ALERT_PARTNER_DOWN,
             r->partner_down_sec > 0 && in->partner_down && down_s > r->partner_down_sec, down_s,
             r->partner_down_sec);
    rule_set(a, ESS_ALERT_BACKLOG_AGE,
             r->backlog_age_sec > 0 && in->backlog_age_ms >= 0 && age_s > r->backlog_age_sec, age_s,
             r->backlog_age_sec);
    rule_set(a, ESS_ALERT_PARKED, r->parked && in->open_parked > 0, (double)in->open_parked, 0);
    rule_set(a, ESS_ALERT_CANARY, in->canary_on && in->canary_failures > 0,
             (double)in->canary_failures, 0);
}

size_t ess_alert_eval(struct ess_alert *a, const struct ess_alert_input *in,
                      struct ess_alert_change *out, size_t max)
{
    size_t n = 0;
    int r;

    sample_add(a, in->now_ms, in->failed);
    eval_rules(a, in);
    for (r = 0; r < ESS_ALERT__COUNT && n < max; r++) {
        if (a->open[r] != a->announced[r]) {
            out[n++] = (struct ess_alert_change){(enum ess_alert_rule)r, a->open[r], a->value[r],
                                                 a->threshold[r]};
        }
    }
    return n;
}

void ess_alert_announced(struct ess_alert *a, enum ess_alert_rule rule, int fired)
{
    if ((int)rule >= 0 && rule < ESS_ALERT__COUNT) {
        a->announced[rule] = fired != 0;
    }
}

int ess_alert_is_open(const struct ess_alert *a, enum ess_alert_rule rule)
{
    return (int)rule >= 0 && rule < ESS_ALERT__COUNT && a->open[rule];
}

json_t *ess_alert_open_json(const struct ess_alert *a)
{
    json_t *list = json_array();
    int r;

    for (r = 0; list != NULL && r < ESS_ALERT__COUNT; r++) {
        if (a->open[r]) {
            json_array_append_new(list, json_string(rule_names[r]));
        }
    }
    return list;
}

/* One line a person reads in `hms ess watch` or on the dashboard, after
 * the event ("<rule> <state>"), so it does not repeat them. */
static void alert_detail(const struct ess_alert_change *c, char *buf, size_t len)
{
    switch (c->rule) {
    case ESS_ALERT_FAILURES:
        snprintf(buf, len, "%.0f failed attempts in the window (alert above %.0f)", c->value,
                 c->threshold);
        break;
    case ESS_ALERT_PARTNER_DOWN:
        snprintf(buf, len, "partner down for %.0f s (alert after %.0f s)", c->value, c->threshold);
        break;
    case ESS_ALERT_BACKLOG_AGE:
        snprintf(buf, len, "oldest undelivered event %.0f s old (alert after %.0f s)", c->value,
                 c->threshold);
        break;
    case ESS_ALERT_PARKED:
        snprintf(buf, len, "%.0f parked event(s) open (hms ess dlq)", c->value);
        break;
    case ESS_ALERT_CANARY:
        snprintf(buf, len, "%.0f consecutive canary failure(s)", c->value);
        break;
    default:
        snprintf(buf, len, "%s", ess_alert_rule_name(c->rule));
        break;
    }
}

static void alert_iso(long long ts_ms, char *buf, size_t len)
{
    time_t sec = (time_t)(ts_ms / 1000);
    struct tm tm;
    char base[24];

    gmtime_r(&sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03lldZ", base, ts_ms % 1000);
}

char *ess_alert_message_json(const char *connector, const char *instance, const char *host,
                             long pid, const char *version, const struct ess_alert_change *c,
                             long long ts_ms)
{
    const char *state = c->fired ? "fired" : "cleared";
    char detail[256];
    char event[64];
    char ts[40];
    json_t *o;
    char *text;

    alert_detail(c, detail, sizeof(detail));
    snprintf(event, sizeof(event), "%s %s", ess_alert_rule_name(c->rule), state);
    alert_iso(ts_ms, ts, sizeof(ts));
    o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:f, s:f, s:s, s:I, s:s, s:s}", "connector",
                  connector, "instance", instance, "host", host, "pid", (json_int_t)pid, "version",
                  version, "rule", ess_alert_rule_name(c->rule), "state", state, "value", c->value,
                  "threshold", c->threshold, "ts", ts, "ts_ms", (json_int_t)ts_ms, "event", event,
                  "detail", detail);
    if (o == NULL) {
        return NULL;
    }
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}
