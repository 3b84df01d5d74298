/*
 * ess_alert -- a worker's alert rules: evaluated from what it already knows,
 * announced on hms.ops as ess.alert.<id> when a rule fires and when it clears.
 *
 * DESIGN
 * Pure logic: no clock, no I/O. The worker feeds an input (its counters, the
 * breaker, the backlog's age, open dead letters, the canary) about once a
 * second; evaluation updates each rule's open/closed truth. What was last
 * *announced* is kept apart from that truth, so an alert that could not be
 * published (bus down) is announced once it can be: the caller publishes each
 * pending change and confirms it with ess_alert_announced(). Rules, thresholds
 * and defaults are the manifest's `alerts:` block (struct ess_alerts); a
 * threshold of 0 turns its rule off. The canary rule is on whenever a canary
 * is configured.
 *
 *   failures      more than failures.count failed attempts within failures.within_sec
 *   partner_down  the breaker open for longer than partner_down_sec
 *   backlog_age   the oldest undelivered event older than backlog_age_sec
 *   parked        any event parked and not yet retried or dropped (parked: true)
 *   canary        the canary's last delivery failed
 *
 * Ownership: ess_alert_new returns a heap object freed by ess_alert_free
 * (NULL is a no-op). The message JSON is malloc'd; the caller frees it.
 */
#ifndef ESS_ALERT_H
#define ESS_ALERT_H

#include <jansson.h>

#include "ess_manifest.h"

enum ess_alert_rule {
    ESS_ALERT_FAILURES = 0,
    ESS_ALERT_PARTNER_DOWN,
    ESS_ALERT_BACKLOG_AGE,
    ESS_ALERT_PARKED,
    ESS_ALERT_CANARY,
    ESS_ALERT__COUNT
};

struct ess_alert_input {
    long long now_ms;          /* monotonic */
    unsigned long long failed; /* failed delivery attempts since start */
    int partner_down;          /* the breaker is open */
    long long backlog_age_ms;  /* the oldest undelivered event's age; < 0: no backlog */
    long long open_parked;     /* parked events not yet retried or dropped */
    int canary_on;             /* a canary is configured */
    long long canary_failures; /* consecutive failed canaries; 0 after a success */
};

struct ess_alert_change {
    enum ess_alert_rule rule;
    int fired;        /* 1 fired, 0 cleared */
    double value;     /* what was measured (count, seconds) */
    double threshold; /* what it was compared with */
};

struct ess_alert;

/* rules is copied. NULL when out of memory. */
struct ess_alert *ess_alert_new(const struct ess_alerts *rules);
void ess_alert_free(struct ess_alert *a);

/* New thresholds (a reload); open alerts are re-evaluated on the next call. */
void ess_alert_set_rules(struct ess_alert *a, const struct ess_alerts *rules);

/* Evaluate; up to max changes not yet announced go to out. Returns their number. */
size_t ess_alert_eval(struct ess_alert *a, const struct ess_alert_input *in,
                      struct ess_alert_change *out, size_t max);

/* The change for rule was published: it is no longer pending. */
void ess_alert_announced(struct ess_alert *a, enum ess_alert_rule rule, int fired);

/* 1 when rule is open (fired, not cleared). */
int ess_alert_is_open(const struct ess_alert *a, enum ess_alert_rule rule);

/* "failures", "partner_down", ...; "?" outside the enum. Static strings. */
const char *ess_alert_rule_name(enum ess_alert_rule rule);

/* The names of the open rules as a new JSON array (for heartbeats). */
json_t *ess_alert_open_json(const struct ess_alert *a);

/* The ess.alert.<id> body: connector, instance, host, pid, version, rule,
 * state (fired | cleared), value, threshold, ts, ts_ms, and for readers of
 * ops lifecycle messages event ("<rule> <state>") and detail (one line). */
char *ess_alert_message_json(const char *connector, const char *instance, const char *host,
                             long pid, const char *version, const struct ess_alert_change *c,
                             long long ts_ms);

#endif
