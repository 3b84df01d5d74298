/*
 * push_ops -- the push pipeline's ops visibility: the /metrics endpoint,
 * the alert rules announced on hms.ops, the canary request and the bounded
 * retention step. The loop calls in here (cron, collect, each turn); the
 * endpoint and the rules are owned by the pipeline, set up by push_ops_new.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ess_alert.h"
#include "ess_backoff.h"
#include "ess_breaker.h"
#include "ess_bus.h"
#include "ess_keyq.h"
#include "ess_log.h"
#include "ess_metrics.h"
#include "ess_partner.h"
#include "ess_replica.h"
#include "ess_stats.h"
#include "ess_store.h"
#include "ess_version.h"
#include "ess_worker.h"
#include "push_internal.h"

/* ---- ops visibility: metrics, alerts, canary, retention ----------------- */

/* What heartbeats carry beyond ess_stats: open alerts and the canary. */
json_t *push_ops_extra(const struct ess_push *p)
{
    json_t *extra = json_object();
    const struct push_canary *c = &p->canary;

    if (extra == NULL) {
        return NULL;
    }
    if (p->alerts != NULL) {
        json_object_set_new(extra, "alerts", ess_alert_open_json(p->alerts));
    }
    if (p->m->canary.record != NULL && c->has_result) {
        json_object_set_new(
            extra, "canary",
            json_pack("{s:s, s:I, s:I, s:I, s:s}", "result", c->last_ok ? "ok" : "failed", "rtt_ms",
                      (json_int_t)c->last_rtt_ms, "status", (json_int_t)c->last_status, "ts_ms",
                      (json_int_t)c->last_ts_ms, "error", c->last_error));
    }
    return extra;
}

/* One bounded retention step: never a long statement in the loop; while a
 * step finds a full batch the next comes a second later, else in 15 s. */
void push_retain(struct ess_push *p, long long now)
{
    struct ess_err err;
    long long deleted = 0;

    ess_err_clear(&err);
    /* Replicas: only below every partition's offset. */
    if (ess_store_retain_batch(p->store, p->m->id,
                               p->replica != NULL ? ess_replica_retain_floor(p->replica)
                                                  : p->offset_saved,
                               p->m->replay_window_sec, p->m->ticket_retention_sec,
                               PUSH_RETAIN_BATCH, &deleted, &err) != ESS_OK) {
        p->next_retain_ms = now + PUSH_RETAIN_EVERY_MS;
        push_store_lost(p, &err);
        return;
    }
    if (deleted > 0) {
        ess_log_debug("retention: swept %lld rows past replay_window / ticket_retention", deleted);
    }
    p->next_retain_ms =
        now + (deleted >= PUSH_RETAIN_BATCH ? PUSH_RETAIN_MORE_MS : PUSH_RETAIN_EVERY_MS);
}

static int push_alert_publish(struct ess_push *p, const struct ess_alert_change *c)
{
    char rk[128];
    struct ess_err err;
    char *text = ess_alert_message_json(p->m->id, ess_worker_instance(), ess_worker_host(),
                                        (long)getpid(), ESS_VERSION, c, ess_worker_wall_ms());
    int rc;

    if (text == NULL) {
        return ESS_ENOMEM;
    }
    ess_err_clear(&err);
    snprintf(rk, sizeof(rk), "ess.alert.%s", p->m->id);
    rc = ess_bus_publish(p->bus, p->env.ops_exchange, rk, text, strlen(text), NULL, &err);
    free(text);
    if (rc != ESS_OK) {
        push_bus_lost(p, &err);
    }
    return rc;
}

/* Once a second: evaluate the rules and announce what changed (an alert
 * that could not be published is announced once the bus is back). */
void push_alerts(struct ess_push *p, long long now)
{
    struct ess_alert_change ch[ESS_ALERT__COUNT];
    struct ess_alert_input in;
    long long oldest = ess_keyq_oldest_received_ms(p->window);
    size_t i, n;

    memset(&in, 0, sizeof(in));
    in.now_ms = now;
    in.failed = p->stats.failed;
    in.partner_down = ess_breaker_open(&p->breaker);
    in.backlog_age_ms = oldest >= 0 ? ess_worker_wall_ms() - oldest : -1;
    /* open dead letters: the keys the store last said, plus parks since then */
    in.open_parked = (long long)(p->quarantine != NULL ? json_object_size(p->quarantine) : 0) +
                     (long long)(p->stats.parked - p->parked_at_refresh);
    in.canary_on = p->m->canary.record != NULL && !push_batching(p);
    in.canary_failures = p->canary.failures;
    n = ess_alert_eval(p->alerts, &in, ch, ESS_ALERT__COUNT);
    for (i = 0; i < n && p->bus != NULL; i++) {
        if (push_alert_publish(p, &ch[i]) != ESS_OK) {
            return;
        }
        ess_alert_announced(p->alerts, ch[i].rule, ch[i].fired);
        if (ch[i].fired) {
            ess_log_warn("alert %s fired (value %.0f, threshold %.0f)",
                         ess_alert_rule_name(ch[i].rule), ch[i].value, ch[i].threshold);
        } else {
            ess_log_info("alert %s cleared", ess_alert_rule_name(ch[i].rule));
        }
    }
}

static void push_canary_done(struct ess_push *p, int ok, long status, long rtt_ms,
                             const char *error)
{
    struct push_canary *c = &p->canary;

    if (!ok && c->failures == 0) {
        ess_log_warn("canary failed: %s", error);
    } else if (ok && c->failures > 0) {
        ess_log_info("canary ok again after %lld failure(s) (%ld ms)", c->failures, rtt_ms);
    }
    c->failures = ok ? 0 : c->failures + 1;
    c->has_result = 1;
    c->last_ok = ok;
    c->last_status = status;
    c->last_rtt_ms = rtt_ms;
    c->last_ts_ms = ess_worker_wall_ms();
    snprintf(c->last_error, sizeof(c->last_error), "%s", ok ? "" : error);
}

/* A canary goes when its time comes (not paused, a transfer slot free; never
 * to file drops). The loop's timeout counts only such a canary: one that cannot
 * go must not wake it over and over. */
int push_canary_waits(const struct ess_push *p)
{
    return p->m->canary.record != NULL && !p->canary.in_flight && !p->ctl.paused &&
           !push_batching(p) && ess_partner_room(p->partner) > 0;
}

/* Every canary.every_sec: the canary record through the full mapping and
 * the usual headers (plus X-ESS-Canary: 1) to the test endpoint. It is not
 * journaled, counted, retried or seen by the breaker: it only measures. */
void push_canary_send(struct ess_push *p, long long now)
{
    struct push_canary *c = &p->canary;
    const char *ctype = "application/json";
    struct curl_slist *h = NULL;
    struct curl_slist *h2;
    struct ess_err err;
    char event_id[160];
    char *text;
    char *body = NULL;
    size_t len = 0;

    if (!push_canary_waits(p) || now < c->next_ms) {
        return;
    }
    c->next_ms = now + (long long)p->m->canary.every_sec * 1000;
    ess_err_clear(&err);
    snprintf(event_id, sizeof(event_id), "canary-%s-%lld", p->m->id, ess_worker_wall_ms());
    text = json_dumps(p->m->canary.record, JSON_COMPACT);
    if (text == NULL || push_render(p, text, NULL, &body, &len, &ctype, &err) != ESS_OK) {
        free(text);
        push_canary_done(p, 0, 0, 0, err.code != ESS_OK ? err.msg : "out of memory");
        return;
    }
    free(text);
    h = push_headers(p, event_id, ctype, body, len, &err);
    h2 = h != NULL ? curl_slist_append(h, "X-ESS-Canary: 1") : NULL;
    if (h2 == NULL) {
        curl_slist_free_all(h);
        free(body);
        push_canary_done(p, 0, 0, 0, err.code != ESS_OK ? err.msg : "out of memory");
        return;
    }
    if (ess_partner_send(p->partner, (uint64_t)(uintptr_t)c,
                         p->m->canary.url != NULL ? p->m->canary.url : p->m->target_url, h2, body,
                         len, &err) != ESS_OK) {
        push_canary_done(p, 0, 0, 0, err.msg);
        return;
    }
    c->in_flight = 1;
    c->sent_ms = now;
}

/* collect: 1 when r was the canary's. */
int push_canary_result(struct ess_push *p, const struct ess_partner_result *r, long long now)
{
    struct push_canary *c = &p->canary;

    if (r->token != (uint64_t)(uintptr_t)c) {
        return 0;
    }
    c->in_flight = 0;
    push_canary_done(p, ess_backoff_classify(r->status, r->transport_failed) == ESS_OUTCOME_OK,
                     r->status, (long)(ess_worker_mono_ms() - c->sent_ms), r->error);
    (void)now;
    return 1;
}

/* Every turn: a copy of the counters for scrapes (a memcpy under a mutex). */
void push_metrics_update(struct ess_push *p)
{
    struct ess_metrics_sample s;

    if (p->metrics == NULL) {
        return;
    }
    /* With nothing journaled beyond the window, the window is the backlog
     * (exact, every turn); else the heartbeat's count from the journal. */
    ess_metrics_sample_from(
        &s, &p->stats, p->bus != NULL && p->store != NULL, !ess_breaker_open(&p->breaker),
        p->offset_known && !p->journal_more ? (long long)ess_keyq_pending(p->window) : p->backlog);
    ess_metrics_update(p->metrics, &s);
}

static struct ess_metrics *push_metrics_open(const struct ess_manifest *m, struct ess_err *err)
{
    struct ess_metrics *metrics = ess_metrics_new(m->metrics_listen, m->id, err);

    if (metrics == NULL) {
        return NULL;
    }
    if (!ess_metrics_listen_is_loopback(m->metrics_listen)) {
        ess_log_warn("metrics_listen %s is not a loopback address: /metrics is reachable from "
                     "the network, without authentication",
                     m->metrics_listen);
    }
    ess_log_info("metrics on http://%s/metrics", m->metrics_listen);
    return metrics;
}

/* A reload: new alert thresholds; metrics_listen moved or turned off. The
 * old endpoint closes first (a new address may share its port); when the
 * new one cannot be bound, metrics stay off and the error is logged. */
void push_ops_reload(struct ess_push *p, const struct ess_manifest *m)
{
    const char *was = p->m->metrics_listen;
    struct ess_metrics *fresh;
    struct ess_err err;

    ess_alert_set_rules(p->alerts, &m->alerts);
    if ((was == NULL) == (m->metrics_listen == NULL) &&
        (was == NULL || strcmp(was, m->metrics_listen) == 0)) {
        return;
    }
    ess_err_clear(&err);
    fresh = NULL;
    if (m->metrics_listen != NULL) {
        ess_metrics_free(p->metrics);
        p->metrics = NULL;
        fresh = push_metrics_open(m, &err);
        if (fresh == NULL) {
            ess_log_error("reload: %s (metrics off until the next reload)", err.msg);
        }
    } else {
        ess_metrics_free(p->metrics);
        ess_log_info("metrics off");
    }
    p->metrics = fresh;
}

int push_ops_new(struct ess_push *p, struct ess_err *err)
{
    p->alerts = ess_alert_new(&p->m->alerts);
    if (p->alerts == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "cannot set up the alert rules");
    }
    if (p->m->metrics_listen != NULL) {
        p->metrics = push_metrics_open(p->m, err);
        if (p->metrics == NULL) {
            return err != NULL ? err->code : ESS_ECONFIG;
        }
    }
    if (p->m->canary.record != NULL && push_batching(p)) {
        ess_log_warn("canary: not sent to file drops (%s); configured but off", p->m->target_url);
    }
    return ESS_OK;
}
