/*
 * push_dlq -- the push pipeline's dead-letter workflow: dead letters the
 * operator released (`hms ess dlq retry`) are re-sent one per key, at most
 * PUSH_REDELIVER_MAX at a time, and the quarantine of keys held behind a
 * parked event follows the store's open dead letters. A redelivery slot owns
 * its row's strings until push_redelivery_end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ess_backoff.h"
#include "ess_breaker.h"
#include "ess_log.h"
#include "ess_partner.h"
#include "ess_replica.h"
#include "ess_stats.h"
#include "ess_store.h"
#include "ess_worker.h"
#include "push_internal.h"

/* ---- the dead-letter workflow: re-send what `hms ess dlq` released ------ */

void push_redelivery_end(struct push_redelivery *rd)
{
    free(rd->row.event_id);
    free(rd->row.key);
    free(rd->row.body);
    memset(rd, 0, sizeof(*rd));
}

void push_redelivery_result(struct ess_push *p, struct push_redelivery *rd,
                            const struct ess_partner_result *r)
{
    enum ess_outcome outcome = push_batching(p)
                                   ? push_batch_outcome(r)
                                   : ess_backoff_classify(r->status, r->transport_failed);
    const char *status = outcome == ESS_OUTCOME_OK ? "delivered" : "parked";
    struct ess_err err;

    ess_err_clear(&err);
    if (outcome == ESS_OUTCOME_RETRY) {
        /* Left as it is: the next poll sends it again (the breaker paces it). */
        ess_breaker_failure(&p->breaker, ess_worker_mono_ms());
        snprintf(p->last_error, sizeof(p->last_error), "%s", r->error);
        push_redelivery_end(rd);
        return;
    }
    ess_breaker_success(&p->breaker);
    if (p->store == NULL ||
        ess_store_dlq_set(p->store, p->m->id, rd->row.seq, status,
                          outcome == ESS_OUTCOME_OK ? NULL : r->error, r->status, &err) != ESS_OK) {
        if (p->store != NULL) {
            push_store_lost(p, &err);
        }
        push_redelivery_end(rd); /* still open in the store: sent again later */
        return;
    }
    if (outcome == ESS_OUTCOME_OK) {
        p->stats.delivered++;
        p->next_redeliver_ms = 0; /* the key's next held event may go now */
    }
    ess_log_info("dead letter %s (key %s) re-sent: %s", rd->row.event_id, rd->row.key,
                 outcome == ESS_OUTCOME_OK ? "delivered" : r->error);
    push_ticket(p, rd->row.seq, rd->row.event_id, rd->row.key, status, 1, r->status,
                outcome == ESS_OUTCOME_OK ? NULL : r->error, rd->first_ms);
    push_redelivery_end(rd);
}

static int push_redelivering(const struct ess_push *p, const char *key)
{
    size_t i;

    for (i = 0; i < PUSH_REDELIVER_MAX; i++) {
        if (p->redeliveries[i].in_use && strcmp(p->redeliveries[i].row.key, key) == 0) {
            return 1;
        }
    }
    return 0;
}

static struct push_redelivery *push_redelivery_slot(struct ess_push *p)
{
    size_t i;

    for (i = 0; i < PUSH_REDELIVER_MAX; i++) {
        if (!p->redeliveries[i].in_use) {
            return &p->redeliveries[i];
        }
    }
    return NULL;
}

/* Start one dead letter's transfer; takes the row's strings over. */
static void push_redeliver_one(struct ess_push *p, struct ess_store_row *row)
{
    struct push_redelivery *rd = push_redelivery_slot(p);
    const char *ctype = "application/json";
    struct curl_slist *h = NULL;
    struct ess_err err;
    char *body = NULL;
    size_t len = 0;

    ess_err_clear(&err);
    if (rd == NULL || push_redelivering(p, row->key) || ess_partner_room(p->partner) == 0) {
        return;
    }
    rd->row = *row;
    memset(row, 0, sizeof(*row));
    rd->in_use = 1;
    rd->first_ms = ess_worker_wall_ms();
    if (push_render(p, rd->row.body, NULL, &body, &len, &ctype, &err) == ESS_OK) {
        h = push_headers(p, rd->row.event_id, ctype, body, len, &err);
    }
    if (h == NULL) {
        free(body);
        push_error(p, "dlq", &err);
        push_redelivery_end(rd);
        return;
    }
    if (push_batching(p)) {
        curl_slist_free_all(h);
        if (push_batch_redeliver(p, rd, body, len, &err) != ESS_OK) {
            push_error(p, "partner", &err);
            push_redelivery_end(rd);
        }
        return;
    }
    if (ess_partner_send(p->partner, (uint64_t)(uintptr_t)rd, p->m->target_url, h, body, len,
                         &err) != ESS_OK) {
        push_error(p, "partner", &err);
        push_redelivery_end(rd);
    }
}

/* Once a second: send each released key's oldest open dead letter, and lift
 * the quarantine of keys that have none left. */
void push_redeliver(struct ess_push *p, long long now)
{
    struct ess_store_rows rows = {0};
    json_t *open_keys = NULL;
    struct ess_err err;
    size_t i;

    ess_err_clear(&err);
    if (p->store == NULL || p->ctl.paused || p->held || ess_breaker_open(&p->breaker) ||
        ess_store_dlq_next(p->store, p->m->id, PUSH_REDELIVER_MAX, &rows, &err) != ESS_OK ||
        ess_store_dlq_open_keys(p->store, p->m->id, &open_keys, &err) != ESS_OK) {
        if (err.code != ESS_OK) {
            push_store_lost(p, &err);
        }
        ess_store_rows_fini(&rows);
        return;
    }
    for (i = 0; i < rows.n; i++) {
        if (p->replica == NULL || ess_replica_owns_key(p->replica, rows.v[i].key)) {
            push_redeliver_one(p, &rows.v[i]);
        }
    }
    ess_store_rows_fini(&rows);
    /* The store's open keys are the quarantine; keys being re-sent stay in it. */
    for (i = 0; i < PUSH_REDELIVER_MAX; i++) {
        if (p->redeliveries[i].in_use) {
            json_object_set_new(open_keys, p->redeliveries[i].row.key, json_true());
        }
    }
    json_decref(p->quarantine);
    p->quarantine = open_keys;
    p->quarantine_known = 1;
    p->parked_at_refresh = p->stats.parked;
    (void)now;
}
