/*
 * push_batch -- the push pipeline's batch delivery: a file-drop partner
 * (ftp://, ftps://, sftp://) gets files of events instead of one request per
 * event. The design is in the comment below; the batch itself (ess_batch.h)
 * is owned by the pipeline, its window items stay the window's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "ess_backoff.h"
#include "ess_batch.h"
#include "ess_breaker.h"
#include "ess_keyq.h"
#include "ess_log.h"
#include "ess_partner.h"
#include "ess_stats.h"
#include "ess_worker.h"
#include "push_internal.h"

/* ---- batch delivery: ftp://, ftps://, sftp:// file drops ---------------- */

/* A file-drop partner gets files, not requests: due events are rendered into
 * the open batch (ess_batch.h) and stay taken -- in flight for the window, so
 * their keys' next events wait -- until the file's upload result. One file at
 * a time: it goes when it holds batch_max events or is batch_sec old, as
 * NAME.part renamed to NAME (ess_partner_upload), so the partner only ever
 * sees whole files. A failed upload is retried with the same events, order and
 * name (replacing the partial .part); on success every event is done and the
 * low-water mark passes them as usual. The breaker and max_retry work per file
 * exactly as per request: an outage counts nothing, and a file that failed
 * max_retry times with the partner up parks each of its events. */

int push_url_is_drop(const char *url)
{
    return strncasecmp(url, "ftp://", 6) == 0 || strncasecmp(url, "ftps://", 7) == 0 ||
           strncasecmp(url, "sftp://", 7) == 0;
}

int push_batching(const struct ess_push *p)
{
    return p->batch != NULL;
}

/* The batch holds the loop's attention: its upload runs or waits for a retry. */
int push_batch_busy(const struct ess_push *p)
{
    return p->batch != NULL && (p->batch_in_flight || ess_batch_sealed(p->batch));
}

/* No window item is held by a batch (a replay may swap the window). */
int push_batch_idle(const struct ess_push *p)
{
    return p->batch == NULL || ess_batch_count(p->batch) == 0;
}

/* ms until the batch needs the loop (-1: it does not). */
static long long push_batch_wait_ms(const struct ess_push *p, long long now)
{
    long long due;

    if (p->batch == NULL || p->batch_in_flight) {
        return -1;
    }
    if (ess_batch_sealed(p->batch)) {
        return p->batch_due_ms > now ? p->batch_due_ms - now : 0;
    }
    due = ess_batch_due_ms(p->batch, (size_t)p->m->batch_max, p->m->batch_sec, now);
    return due >= 0 && p->replay_pending ? 0 : due;
}

/* A reload may not move a connector between requests and file drops: the
 * window's taken events would be stranded in the wrong pipeline. */
int push_batch_reload_refused(const struct ess_push *p, const struct ess_manifest *m)
{
    return push_batching(p) != push_url_is_drop(m->target_url);
}

/* Merge a key's later change into its record in the open file (later fields
 * win) and render it again. ESS_OK with the new record in *body, else the item
 * is as it was (the change then waits for the next file). */
static int push_batch_merge(struct ess_push *p, struct ess_keyq_item *it,
                            const struct ess_keyq_item *next, char **body, size_t *len)
{
    json_t *older = json_loads(it->body, 0, NULL);
    json_t *newer = json_loads(next->body, 0, NULL);
    char *merged = NULL;
    char *was = it->body;
    const char *ctype = NULL;
    struct ess_err err;
    char *junk = NULL;
    size_t jlen = 0;
    int rc = ESS_EINVAL;

    ess_err_clear(&err);
    if (json_is_object(older) && json_is_object(newer) && json_object_update(older, newer) == 0) {
        merged = json_dumps(older, JSON_COMPACT);
    }
    json_decref(older);
    json_decref(newer);
    if (merged != NULL) {
        it->body = merged;
        rc = push_render_item(p, it, body, len, &ctype, &err);
        if (rc != ESS_OK) {
            it->body = was;
            free(merged);
            /* Put the key's pending delta state back as the file has it. */
            if (push_render_item(p, it, &junk, &jlen, &ctype, &err) == ESS_OK) {
                free(junk);
            }
        } else {
            free(was);
        }
    }
    return rc;
}

/* One event per key per file: the key's later changes waiting behind its
 * record in the open file are merged into that record, which keeps its place
 * (files are in order of first appearance). The journal keeps every change;
 * the absorbed ones are done with the file. */
static void push_batch_absorb(struct ess_push *p, struct ess_keyq_item *it, size_t idx)
{
    int strip = p->m->format == ESS_FORMAT_CSV && p->m->csv.header;
    struct ess_keyq_item *next;
    char *body = NULL;
    size_t len = 0;

    while ((next = ess_keyq_successor(p->window, it)) != NULL && !ess_batch_sealed(p->batch)) {
        if (push_batch_merge(p, it, next, &body, &len) != ESS_OK) {
            return;
        }
        if (ess_batch_replace(p->batch, idx, body, len, strip) != ESS_OK) {
            free(body);
            return; /* out of memory: the change goes in the next file */
        }
        free(body);
        it->merged++;
        ess_keyq_absorb(p->window, it);
    }
}

/* Every record of the open file takes its key's later changes. */
static void push_batch_absorb_all(struct ess_push *p)
{
    size_t i;

    for (i = 0; !ess_batch_sealed(p->batch) && i < ess_batch_count(p->batch); i++) {
        push_batch_absorb(p, ess_batch_item(p->batch, i), i);
    }
}

/* A due event joins the open batch, rendered; what cannot be is parked. */
static void push_batch_take(struct ess_push *p, struct ess_keyq_item *it, long long now)
{
    struct ess_err err;
    const char *ctype = NULL;
    char *body = NULL;
    size_t len = 0;
    int strip = p->m->format == ESS_FORMAT_CSV && p->m->csv.header;
    int rc;

    ess_err_clear(&err);
    if (p->m->on_park == ESS_ON_PARK_HOLD_KEY && push_quarantined(p, it->key)) {
        push_park(p, it, "held behind a parked event of its key", "held");
        return;
    }
    rc = push_render_item(p, it, &body, &len, &ctype, &err);
    if (rc == PUSH_DELTA_NOTHING) {
        push_delta_skipped(p, it);
        return;
    }
    if (rc == ESS_ESTORE) {
        ess_keyq_retry(p->window, it, now + 1000);
        return;
    }
    if (rc != ESS_OK) {
        push_park(p, it, err.msg, NULL);
        return;
    }
    if (it->first_ms == 0) {
        it->first_ms = ess_worker_wall_ms();
    }
    if (ess_batch_add(p->batch, it, it->seq, body, len, strip, now) != ESS_OK) {
        ess_keyq_retry(p->window, it, now + 1000); /* out of memory: later */
    } else {
        push_batch_absorb(p, it, ess_batch_count(p->batch) - 1);
    }
    free(body);
}

/* Basic auth names the FTP/SFTP login; anything else logs in as the URL says. */
static void push_batch_login(const struct ess_push *p, struct ess_partner_upload_req *req)
{
    if (p->m->auth.type == ESS_AUTH_BASIC) {
        req->user = getenv(p->m->auth.user_env);
        req->password = getenv(p->m->auth.password_env);
    }
}

/* Start an upload of body as name (via name.part); the partner takes body. */
static int push_batch_send(struct ess_push *p, uint64_t token, const char *name, char *body,
                           size_t len, struct ess_err *err)
{
    struct ess_partner_upload_req req = {p->m->target_url, NULL, name, NULL, NULL};
    char tmp[300];

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.part", name) >= sizeof(tmp)) {
        free(body);
        return ess_err_set(err, ESS_EINVAL, "file name '%s' is too long", name);
    }
    req.tmp_name = tmp;
    push_batch_login(p, &req);
    return ess_partner_upload(p->partner, token, &req, body, len, err);
}

/* Seal the batch (its name is fixed from now on) and start its upload. */
static int push_batch_upload(struct ess_push *p, long long now)
{
    struct ess_err err;
    char *body;
    size_t len = 0;
    int rc;

    ess_err_clear(&err);
    rc = ess_batch_seal(p->batch, p->m->file_name, p->m->id, time(NULL), &err);
    body = rc == ESS_OK ? ess_batch_body(p->batch, &len) : NULL;
    if (rc == ESS_OK && body == NULL) {
        rc = ess_err_set(&err, ESS_ENOMEM, "out of memory copying a file");
    }
    if (rc == ESS_OK) {
        rc = push_batch_send(p, (uint64_t)(uintptr_t)p->batch, ess_batch_name(p->batch), body, len,
                             &err);
    }
    if (rc != ESS_OK) {
        push_error(p, "partner", &err);
        p->batch_due_ms = now + 1000;
        return rc;
    }
    p->batch_in_flight = 1;
    return ESS_OK;
}

/* dispatch for file drops: fill the open batch, upload it when it is due. */
void push_batch_dispatch(struct ess_push *p, long long now)
{
    struct ess_keyq_item *it;
    long long wait;

    if (p->batch_in_flight) {
        return;
    }
    push_batch_absorb_all(p);
    while (push_may_dispatch(p) && !ess_batch_sealed(p->batch) &&
           ess_batch_count(p->batch) < (size_t)p->m->batch_max &&
           ess_keyq_next_due(p->window, now) == 0) {
        it = ess_keyq_take(p->window, now);
        if (it == NULL) {
            break;
        }
        push_batch_take(p, it, now);
    }
    wait = push_batch_wait_ms(p, now);
    if (wait != 0 || p->ctl.paused || p->held || ess_partner_room(p->partner) == 0) {
        return;
    }
    if (!ess_breaker_allow(&p->breaker, now)) {
        return;
    }
    if (push_batch_upload(p, now) != ESS_OK) {
        ess_breaker_release(&p->breaker); /* nothing went out: not a probe */
    }
}

/* The file is in place: every event in it is delivered. */
static void push_batch_delivered(struct ess_push *p, const struct ess_partner_result *r)
{
    struct ess_keyq_item *it;
    size_t n = ess_batch_count(p->batch);
    size_t i;

    ess_breaker_success(&p->breaker);
    ess_log_info("file %s delivered (%zu events, %.0f ms)", ess_batch_name(p->batch), n,
                 r->total_ms);
    for (i = 0; i < n; i++) {
        it = ess_batch_item(p->batch, i);
        it->last_status = r->status;
        p->stats.delivered++;
        ess_stats_lag_add(&p->stats, (long)(ess_worker_wall_ms() - it->received_ms));
        push_ticket(p, it->seq, it->event_id, it->key, "delivered", p->batch_attempts + 1,
                    r->status, p->batch_attempts > 0 ? p->last_error : NULL, it->first_ms);
        ess_delta_book_landed(p->delta, it->key);
        ess_keyq_done(p->window, it);
    }
    ess_batch_reset(p->batch);
    p->batch_attempts = 0;
}

/* Give up on the file: each of its events is parked with the reason. */
static void push_batch_park(struct ess_push *p, const char *reason)
{
    struct ess_keyq_item *it;
    size_t n = ess_batch_count(p->batch);
    size_t i;

    for (i = 0; i < n; i++) {
        it = ess_batch_item(p->batch, i);
        it->attempts = p->batch_attempts;
        push_park(p, it, reason, NULL);
    }
    ess_batch_reset(p->batch);
    p->batch_attempts = 0;
}

/* The upload failed: the same file goes again after a back-off. */
static void push_batch_failed(struct ess_push *p, const struct ess_partner_result *r, long long now)
{
    size_t n = ess_batch_count(p->batch);
    int was_open = ess_breaker_open(&p->breaker);
    long delay;

    p->stats.failed += n;
    snprintf(p->last_error, sizeof(p->last_error), "file %s: %s", ess_batch_name(p->batch),
             r->error);
    p->last_error_ms = now;
    ess_breaker_failure(&p->breaker, now);
    if (!was_open && ess_breaker_open(&p->breaker)) {
        ess_log_warn("partner down after %d consecutive failures (%s); probing",
                     PUSH_BREAKER_THRESHOLD, r->error);
    }
    if (!was_open && !ess_breaker_open(&p->breaker)) {
        p->batch_attempts++;
    }
    if (p->batch_attempts >= p->m->max_retry) {
        push_batch_park(p, p->last_error);
        return;
    }
    p->stats.retried += n;
    delay = ess_breaker_open(&p->breaker)
                ? ess_breaker_wait_ms(&p->breaker, now)
                : ess_backoff_delay_ms(p->batch_attempts > 0 ? p->batch_attempts - 1 : 0,
                                       PUSH_RETRY_BASE_MS, PUSH_RETRY_CAP_MS, &p->rng);
    p->batch_due_ms = now + (delay > 0 ? delay : 0);
}

/* collect for file drops: 1 when r was the batch's upload. */
int push_batch_result(struct ess_push *p, const struct ess_partner_result *r, long long now)
{
    if (p->batch == NULL || r->token != (uint64_t)(uintptr_t)p->batch) {
        return 0;
    }
    p->batch_in_flight = 0;
    if (!r->transport_failed) {
        push_batch_delivered(p, r);
    } else {
        push_batch_failed(p, r, now);
    }
    return 1;
}

/* SIGTERM: what the batch holds goes now rather than waiting for batch_sec. */
void push_batch_flush(struct ess_push *p)
{
    long long now = ess_worker_mono_ms();

    if (p->batch == NULL || p->batch_in_flight || ess_batch_count(p->batch) == 0 || p->ctl.paused ||
        p->held || ess_partner_room(p->partner) == 0) {
        return;
    }
    ess_log_info("stopping: uploading the open file (%zu events)", ess_batch_count(p->batch));
    push_batch_upload(p, now);
}

/* A dead letter released to a file drop goes alone, as a one-event file. */
int push_batch_redeliver(struct ess_push *p, struct push_redelivery *rd, char *body, size_t len,
                         struct ess_err *err)
{
    char name[256];

    if (ess_batch_file_name(p->m->file_name, p->m->id, rd->row.seq, time(NULL), name,
                            sizeof(name)) != ESS_OK) {
        free(body);
        return ess_err_set(err, ESS_EINVAL, "file_name: '%s' does not expand", p->m->file_name);
    }
    return push_batch_send(p, (uint64_t)(uintptr_t)rd, name, body, len, err);
}

/* An upload delivered or not: no status says more (never DROP by itself). */
enum ess_outcome push_batch_outcome(const struct ess_partner_result *r)
{
    return r->transport_failed ? ESS_OUTCOME_RETRY : ESS_OUTCOME_OK;
}

/* push_timeout's share: when the batch wants the loop again. */
long long push_batch_timeout(const struct ess_push *p, long long now)
{
    long long wait = p->ctl.paused || p->held ? -1 : push_batch_wait_ms(p, now);

    if (wait >= 0 && ess_breaker_open(&p->breaker)) {
        wait = ess_breaker_wait_ms(&p->breaker, now) < 250 ? ess_breaker_wait_ms(&p->breaker, now)
                                                           : 250;
    }
    return wait;
}
