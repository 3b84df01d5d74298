/*
 * ess_push -- the push pipeline; see ess_push.h for the design.
 *
 * Ownership: the pipeline owns the manifest, the bus, the store, the partner
 * and the window. A burst holds copies of what it will journal until COMMIT.
 * An in-flight delivery is identified by its window item (the transfer token);
 * the item stays valid until ess_keyq_done/retry.
 *
 * This file is the loop: connections, take, refill, dispatch, collect, the
 * operator's controls, the schedule, cron. The other concerns are files of
 * their own behind push_internal.h: push_delta.c (shape, delta, render),
 * push_side.c (tickets, audit rows, the side session), push_batch.c (file
 * drops), push_ops.c (metrics, alerts, canary, retention), push_dlq.c (the
 * dead-letter re-send workflow).
 */
#include "ess_push.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ess_alert.h"
#include "ess_audit.h"
#include "ess_backoff.h"
#include "ess_batch.h"
#include "ess_breaker.h"
#include "ess_bus.h"
#include "ess_delta.h"
#include "ess_event.h"
#include "ess_keyq.h"
#include "ess_log.h"
#include "ess_metrics.h"
#include "ess_partner.h"
#include "ess_render.h"
#include "ess_schedule.h"
#include "ess_replica.h"
#include "ess_sign.h"
#include "ess_stats.h"
#include "ess_store.h"
#include "ess_twoway.h"
#include "ess_version.h"
#include "push_internal.h"

/* While the partner is down one request at a time probes it, at most every
 * 250 ms: four small requests a second are nothing to a partner, and the
 * backlog starts draining within a quarter second of its recovery (with a 2 s
 * cap, waiting for the next probe was most of an outage drain). */
#define PUSH_PROBE_MIN_MS 100
#define PUSH_PROBE_MAX_MS 250
#define PUSH_OFFSET_EVERY_MS 500 /* a crash repeats at most this much of deliveries */
#define PUSH_ALERT_EVERY_MS 1000
#define PUSH_DRAIN_MAX_MS 15000
/* The window reads no more while it holds this many times window_max events
 * (delivered ones stay until the oldest undelivered one is done): memory
 * stays bounded behind a slow key, the backlog stays in Postgres. */
#define PUSH_HELD_MAX 4
#define PUSH_CONTROL_EVERY_MS 1000

/* The operator's side, defined further down. */
static void push_controls(struct ess_push *p);
static void push_window_add(struct ess_push *p, struct ess_store_row *row);
static int push_refill_due(const struct ess_push *p);
static void push_refill_poll(struct ess_push *p, int block);
static void push_replay_filter(struct ess_push *p, const struct ess_store_controls *c,
                               long long offset);

/* ---- small helpers ---------------------------------------------------- */

void push_error(struct ess_push *p, const char *what, const struct ess_err *e)
{
    char line[600];

    ess_err_format(e, line, sizeof(line));
    snprintf(p->last_error, sizeof(p->last_error), "%s: %s", what, line);
    p->last_error_ms = ess_worker_mono_ms();
}

static void burst_clear(struct push_burst *b)
{
    size_t i;

    for (i = 0; i < b->n; i++) {
        free(b->v[i].event_id);
        free(b->v[i].key);
        free(b->v[i].topic);
        free(b->v[i].body);
    }
    b->n = 0;
    b->has_tag = 0;
}

static int burst_grow(struct push_burst *b, size_t cap)
{
    struct burst_msg *v;
    struct ess_store_event *ev;
    long long *seqs;

    if (cap <= b->cap) {
        return ESS_OK;
    }
    v = realloc(b->v, cap * sizeof(*v));
    if (v != NULL) {
        b->v = v;
    }
    ev = realloc(b->ev, cap * sizeof(*ev));
    if (ev != NULL) {
        b->ev = ev;
    }
    seqs = realloc(b->seqs, cap * sizeof(*seqs));
    if (seqs != NULL) {
        b->seqs = seqs;
    }
    if (v == NULL || ev == NULL || seqs == NULL) {
        return ESS_ENOMEM;
    }
    b->cap = cap;
    return ESS_OK;
}

static void burst_free(struct push_burst *b)
{
    burst_clear(b);
    free(b->v);
    free(b->ev);
    free(b->seqs);
}

/* The journal append of p->journaling will not complete (the store is being
 * dropped): its events go back in front of the burst being filled, in the
 * order they came, to be journaled again. */
static void push_burst_requeue(struct ess_push *p)
{
    struct push_burst *j = &p->journaling;
    struct push_burst *b = &p->burst;
    struct push_burst t;
    struct ess_err err;

    if (j->n == 0 && !j->has_tag) {
        return;
    }
    if (burst_grow(j, j->n + b->n) != ESS_OK) {
        /* Cannot keep both: drop them and the channel, so that the broker
         * sends every unacked message again. */
        burst_clear(j);
        if (p->bus != NULL) {
            ess_err_set(&err, ESS_ENOMEM, "out of memory requeueing a burst");
            push_bus_lost(p, &err);
        }
        burst_clear(b);
    } else {
        memcpy(j->v + j->n, b->v, b->n * sizeof(*b->v));
        j->n += b->n;
        b->n = 0;
        if (b->has_tag) {
            j->last_tag = b->last_tag;
            j->has_tag = 1;
        }
        b->has_tag = 0;
    }
    t = *b;
    *b = *j;
    *j = t;
}

void push_bus_lost(struct ess_push *p, const struct ess_err *e)
{
    char line[600];

    ess_log_warn("bus lost: %s; reconnecting", ess_err_format(e, line, sizeof(line)));
    push_error(p, "bus", e);
    ess_bus_free(p->bus);
    p->bus = NULL;
    /* Unacked messages come back from the broker; the journal dedupes them.
     * A burst being journaled still joins the window, but its delivery tags
     * belonged to the lost channel: never ack them on the next one. */
    burst_clear(&p->burst);
    p->journaling.has_tag = 0;
    ess_worker_retry_failed(&p->bus_retry, ess_worker_mono_ms());
}

void push_store_lost(struct ess_push *p, const struct ess_err *e)
{
    char line[600];

    ess_log_warn("journal store lost: %s; reconnecting", ess_err_format(e, line, sizeof(line)));
    push_error(p, "store", e);
    push_burst_requeue(p);
    p->reading = 0;
    ess_store_free(p->store);
    p->store = NULL;
    ess_worker_retry_failed(&p->store_retry, ess_worker_mono_ms());
}

/* ---- connections ---------------------------------------------------------- */

static int push_bus_open(struct ess_push *p)
{
    struct ess_err err;
    struct ess_bus *bus;

    ess_err_clear(&err);
    bus = ess_bus_new(p->env.amqp_url, &err);
    ess_bus_set_single_active(bus, p->replica != NULL);
    if (bus == NULL ||
        ess_bus_declare_push_typed(bus, p->env.events_exchange, p->env.ops_exchange, p->m->id,
                                   &p->m->topics, p->m->queue_type, &err) != ESS_OK ||
        ess_bus_consume(bus, p->queue, p->m->prefetch, &err) != ESS_OK) {
        ess_bus_free(bus);
        ess_log_warn("bus connect attempt %d failed: %s", p->bus_retry.attempt + 1, err.msg);
        push_error(p, "bus", &err);
        ess_worker_retry_failed(&p->bus_retry, ess_worker_mono_ms());
        return ESS_EBUS;
    }
    ess_log_info("bus connected to %s; consuming %s (prefetch %d)", ess_bus_peer(bus), p->queue,
                 p->m->prefetch);
    p->bus = bus;
    ess_worker_retry_ok(&p->bus_retry);
    return ESS_OK;
}

static int push_store_open(struct ess_push *p)
{
    struct ess_err err;
    struct ess_store *store;
    long long offset = 0;
    char peer[300];

    ess_err_clear(&err);
    store = ess_store_new(p->env.pg_url, &err);
    if (store == NULL || ess_store_migrate(store, &err) != ESS_OK ||
        ess_store_offset_get(store, p->m->id, &offset, &err) != ESS_OK) {
        ess_store_free(store);
        ess_log_warn("journal store connect attempt %d failed: %s", p->store_retry.attempt + 1,
                     err.msg);
        push_error(p, "store", &err);
        ess_worker_retry_failed(&p->store_retry, ess_worker_mono_ms());
        return ESS_ESTORE;
    }
    p->store = store;
    ess_store_journal_lock(store, p->replica != NULL);
    ess_store_journal_partition(store, p->replica != NULL ? ess_replica_part : NULL);
    ess_worker_retry_ok(&p->store_retry);
    push_controls(p);
    push_redeliver(p, ess_worker_mono_ms());
    if (!p->offset_known) {
        ess_keyq_set_floor(p->window, offset);
        p->offset_saved = offset;
        p->offset_known = 1;
        push_replay_filter(p, &p->ctl, offset); /* a replay that was under way */
        ess_log_info("journal store connected to %s; resuming after offset %lld",
                     ess_store_peer(store, peer, sizeof(peer)), offset);
    } else {
        ess_log_info("journal store reconnected to %s", ess_store_peer(store, peer, sizeof(peer)));
    }
    p->journal_more = 1;
    return ESS_OK;
}

static void push_connect(struct ess_push *p, long long now)
{
    if (p->store == NULL && ess_worker_retry_due(&p->store_retry, now)) {
        push_store_open(p);
    }
    if (p->bus == NULL && ess_worker_retry_due(&p->bus_retry, now)) {
        push_bus_open(p);
    }
}

/* ---- take: broker -> journal ----------------------------------------------- */

static int burst_add(struct push_burst *b, struct ess_event *ev, const struct ess_bus_msg *msg)
{
    struct burst_msg *bm;
    size_t cap;

    if (b->n == b->cap) {
        cap = b->cap ? b->cap * 2 : 256;
        if (burst_grow(b, cap) != ESS_OK) {
            return ESS_ENOMEM;
        }
    }
    bm = &b->v[b->n];
    /* A plain object is journaled as received; a CloudEvent as its data. */
    bm->body = ev->cloudevent ? json_dumps(ev->data, JSON_COMPACT) : strndup(msg->body, msg->len);
    bm->topic = strdup(msg->routing_key);
    bm->event_id = ev->id;
    bm->key = ev->key;
    ev->id = NULL;
    ev->key = NULL;
    bm->received_ms = ess_worker_wall_ms();
    if (bm->body == NULL || bm->topic == NULL) {
        free(bm->body);
        free(bm->topic);
        free(bm->event_id);
        free(bm->key);
        return ESS_ENOMEM;
    }
    b->n++;
    return ESS_OK;
}

static int push_origin_skipped(const struct ess_push *p, const char *origin)
{
    size_t i;

    for (i = 0; origin[0] != '\0' && i < p->m->skip_origins.n; i++) {
        if (strcmp(p->m->skip_origins.v[i], origin) == 0) {
            return 1;
        }
    }
    return 0;
}

/* One delivery from the broker: into the burst, or dead-lettered. */
static int push_take_one(struct ess_push *p, const struct ess_bus_msg *msg, struct ess_err *bus_err)
{
    struct ess_event ev;
    struct ess_err err;
    int rc;

    ess_err_clear(&err);
    p->stats.consumed++;
    if (push_origin_skipped(p, msg->origin)) {
        /* It came from the partner side of this pair: sending it back would
         * ping-pong. Acked with the burst, never journaled. */
        ess_log_debug("message %llu skipped: ess-origin %s", (unsigned long long)msg->tag,
                      msg->origin);
        p->burst.last_tag = msg->tag;
        p->burst.has_tag = 1;
        return ESS_OK;
    }
    rc = ess_event_identify(msg->body, msg->len, msg->message_id, p->m->key, &ev, &err);
    if (rc != ESS_OK) {
        p->stats.dead++;
        ess_log_warn("message %llu on %s dead-lettered to %s.dead: %s",
                     (unsigned long long)msg->tag, msg->routing_key, p->queue, err.msg);
        return ess_bus_reject(p->bus, msg->tag, bus_err) == ESS_OK ? ESS_OK : ESS_EBUS;
    }
    rc = burst_add(&p->burst, &ev, msg);
    ess_event_fini(&ev);
    if (rc != ESS_OK) {
        return rc;
    }
    p->burst.last_tag = msg->tag;
    p->burst.has_tag = 1;
    return ESS_OK;
}

/* When the window holds everything journaled so far, the burst's new events
 * join it directly (saving a read of what was just written); otherwise the
 * refill reads them back. Takes the burst's strings. */
static void push_window_direct(struct ess_push *p, struct push_burst *b, size_t inserted)
{
    const long long *seqs = b->seqs;
    struct ess_store_row row;
    size_t i;

    if (inserted == 0) {
        return;
    }
    if (p->replica != NULL || p->journal_more || !p->offset_known || b->n == 0 || seqs[0] == -2 ||
        ess_keyq_pending(p->window) + inserted > p->window_max) {
        p->journal_more = 1;
        return;
    }
    for (i = 0; i < b->n; i++) {
        if (seqs[i] >= 0 && seqs[i] <= ess_keyq_last_seq(p->window)) {
            p->journal_more = 1; /* another writer interleaved: read back instead */
            return;
        }
    }
    for (i = 0; i < b->n; i++) {
        if (seqs[i] < 0) {
            continue; /* a duplicate: journaled before */
        }
        row = (struct ess_store_row){seqs[i], b->v[i].event_id, b->v[i].key, b->v[i].body,
                                     b->v[i].received_ms};
        b->v[i].event_id = NULL;
        b->v[i].key = NULL;
        b->v[i].body = NULL;
        push_window_add(p, &row);
        free(row.event_id);
        free(row.key);
        free(row.body);
    }
}

/* A burst is durable in the journal: its new events join the window, and
 * the broker may forget it (one multiple-ack, never before the COMMIT). */
static void push_journaled(struct ess_push *p, struct push_burst *b, size_t inserted)
{
    struct ess_err err;

    ess_err_clear(&err);
    /* Two-way: HMS's last change per key, recorded before the broker forgets it. */
    if (b->n > 0 && ess_twoway_hms_record(p->store, p->m, b->ev, b->n, &err) != ESS_OK) {
        push_store_lost(p, &err);
        return;
    }
    push_window_direct(p, b, inserted);
    if (b->has_tag && p->bus != NULL && ess_bus_ack_upto(p->bus, b->last_tag, &err) != ESS_OK) {
        burst_clear(b);
        push_bus_lost(p, &err);
        return;
    }
    burst_clear(b);
}

static void burst_events(struct push_burst *b)
{
    size_t i;

    for (i = 0; i < b->n; i++) {
        b->ev[i] = (struct ess_store_event){b->v[i].event_id, b->v[i].key, b->v[i].topic,
                                            b->v[i].body, b->v[i].received_ms};
    }
}

/* The pending append's result, if it is in (block: wait for it). */
static void push_journal_poll(struct ess_push *p, int block)
{
    struct push_burst *j = &p->journaling;
    struct ess_err err;
    size_t inserted = 0;
    int done = 0;

    if (p->store == NULL || j->n == 0) {
        return; /* no append pending (the journaling burst is empty without one) */
    }
    ess_err_clear(&err);
    if (ess_store_journal_finish(p->store, j->ev, j->n, block, &done, &inserted, j->seqs, &err) !=
        ESS_OK) {
        push_store_lost(p, &err); /* requeues the burst: journaled again later */
        return;
    }
    if (done) {
        push_journaled(p, j, inserted);
    }
}

/* Start journaling the burst taken so far, unless an append is pending:
 * deliveries go on while Postgres commits it (push_journal_poll picks up
 * the result). A burst larger than one statement goes synchronously. */
static void push_journal_send(struct ess_push *p)
{
    struct push_burst *b = &p->burst;
    struct push_burst t;
    struct ess_err err;
    size_t inserted = 0;

    if (p->store == NULL || p->bus == NULL || ess_store_journal_pending(p->store) ||
        (b->n == 0 && !b->has_tag)) {
        return;
    }
    ess_err_clear(&err);
    if (b->n == 0) {
        push_journaled(p, b, 0); /* only skipped messages: nothing to journal */
        return;
    }
    burst_events(b);
    /* Replicas too: the store takes their per-connector lock in the statement. */
    if (b->n > ESS_STORE_SEND_MAX) {
        if (ess_store_journal_append(p->store, p->m->id, b->ev, b->n, &inserted, b->seqs, &err) !=
            ESS_OK) {
            push_store_lost(p, &err);
            return;
        }
        push_journaled(p, b, inserted);
        return;
    }
    if (ess_store_journal_send(p->store, p->m->id, b->ev, b->n, &err) != ESS_OK) {
        push_store_lost(p, &err);
        return;
    }
    t = p->journaling;
    p->journaling = *b;
    *b = t;
    /* libpq may have read some of the answer while sending: look at it now,
     * or the loop could sleep on a socket whose data is already in libpq. */
    push_journal_poll(p, 0);
}

/* Everything taken is journaled and acked before returning (SIGTERM). */
static void push_flush(struct ess_push *p)
{
    push_refill_poll(p, 1);
    push_journal_poll(p, 1);
    push_journal_send(p);
    push_journal_poll(p, 1);
}

static void push_take(struct ess_push *p)
{
    struct ess_bus_msg msg;
    struct ess_err err;
    size_t limit = (size_t)p->m->prefetch;
    int rc;

    if (p->bus == NULL || p->store == NULL) {
        return;
    }
    push_journal_poll(p, 0);
    ess_err_clear(&err);
    while (p->bus != NULL && p->burst.n < limit) {
        rc = ess_bus_next(p->bus, 0, &msg, &err);
        if (rc < 0) {
            push_bus_lost(p, &err);
            return;
        }
        if (rc == 0) {
            break;
        }
        if (push_take_one(p, &msg, &err) == ESS_EBUS) {
            push_bus_lost(p, &err);
            return;
        }
    }
    if (!push_refill_due(p)) {
        push_journal_send(p); /* else the refill's read goes first, this next */
    }
}

/* ---- refill: journal -> window ------------------------------------------ */

/* ---- debounce: rapid changes to a key merge and go once, when it is quiet -- */

/* Monotonic time at which a change received at received_ms (wall clock) has
 * been quiet for debounce_sec. */
static long long push_quiet_at(const struct ess_push *p, long long received_ms)
{
    long long wait = received_ms + (long long)p->m->debounce_sec * 1000 - ess_worker_wall_ms();

    return ess_worker_mono_ms() + (wait > 0 ? wait : 0);
}

/* A new waiting event of key: it goes once its key was quiet for a while. */
static void push_debounce_start(struct ess_push *p, const char *key, long long received_ms)
{
    struct ess_keyq_item *it;
    long long max_sec;

    if (p->m->debounce_sec <= 0) {
        return;
    }
    it = ess_keyq_tail(p->window, key);
    if (it == NULL) {
        return;
    }
    /* debounce_max_sec (default 10 x debounce_sec) bounds the wait of a key
     * that never goes quiet, so it cannot starve. */
    max_sec = p->m->debounce_max_sec > 0 ? p->m->debounce_max_sec : 10LL * p->m->debounce_sec;
    it->quiet_cap_ms =
        push_quiet_at(p, received_ms) - (long long)p->m->debounce_sec * 1000 + max_sec * 1000;
    ess_keyq_reschedule(p->window, it, push_quiet_at(p, received_ms));
}

/* Merge a newer change into its key's waiting event (later fields win); the
 * journal keeps both. 1 when merged: the row's seq is then skipped, and the
 * merged event is delivered under the newest event id. */
static int push_debounce_merge(struct ess_push *p, struct ess_store_row *row)
{
    struct ess_keyq_item *it;
    json_t *older;
    json_t *newer;
    char *merged = NULL;
    long long due;

    if (p->m->debounce_sec <= 0) {
        return 0;
    }
    it = ess_keyq_tail(p->window, row->key);
    if (it == NULL || it->first_ms != 0) {
        return 0; /* nothing waiting, or already tried: keep order, queue it */
    }
    older = json_loads(it->body, 0, NULL);
    newer = json_loads(row->body, 0, NULL);
    if (json_is_object(older) && json_is_object(newer) && json_object_update(older, newer) == 0) {
        merged = json_dumps(older, JSON_COMPACT);
    }
    json_decref(older);
    json_decref(newer);
    if (merged == NULL) {
        return 0;
    }
    free(it->body);
    it->body = merged;
    free(it->event_id);
    it->event_id = row->event_id;
    row->event_id = NULL;
    it->merged++;
    due = push_quiet_at(p, row->received_ms);
    ess_keyq_reschedule(p->window, it, due < it->quiet_cap_ms ? due : it->quiet_cap_ms);
    return 1;
}

/* During a replay, events the partner already had that are outside the
 * requested window or key are not sent again. */
static int push_replay_skips(struct ess_push *p, const struct ess_store_row *row)
{
    if (!p->replay.active) {
        return 0;
    }
    if (row->seq > p->replay.resume_seq) {
        p->replay.active = 0; /* past where it was: live delivery again */
        return 0;
    }
    return (p->replay.to_seq >= 0 && row->seq > p->replay.to_seq) ||
           (p->replay.has_key && strcmp(row->key, p->replay.key) != 0);
}

/* A journaled row joins the delivery window -- unless a replay skips it or a
 * debounce merges it into its key's waiting event. The window takes the
 * strings it keeps (those it leaves are still the caller's). */
static void push_window_add(struct ess_push *p, struct ess_store_row *row)
{
    const char *key = row->key; /* the window's copy once pushed */
    int rc;

    if (p->replica != NULL && !ess_replica_wants(p->replica, row->key, row->seq)) {
        ess_keyq_skip(p->window, row->seq); /* another replica's key */
        return;
    }
    if (push_replay_skips(p, row) || push_debounce_merge(p, row)) {
        ess_keyq_skip(p->window, row->seq);
        return;
    }
    rc = ess_keyq_push(p->window, row->seq, row->key, row->event_id, row->body, row->received_ms);
    row->key = NULL;
    row->event_id = NULL;
    row->body = NULL;
    if (rc == ESS_OK) {
        push_debounce_start(p, key, row->received_ms);
    }
}

/* The window is under half full and the journal holds more. */
static int push_refill_due(const struct ess_push *p)
{
    return p->store != NULL && p->offset_known && p->journal_more && !p->reading &&
           ess_keyq_pending(p->window) < p->window_max / 2 &&
           ess_keyq_held(p->window) < p->window_max * PUSH_HELD_MAX;
}

/* Replicas: the rows of a partition read join the window, and the window
 * moves past the other replicas' rows in its span (read cursor and
 * low-water mark, so offsets are saved past them as before). */
static void push_refill_parts(struct ess_push *p, struct ess_store_rows *rows)
{
    size_t i;

    p->reads.looked += rows->scanned;
    p->reads.returned += rows->n;
    for (i = 0; i < rows->n; i++) {
        p->reads.kept += ess_replica_wants(p->replica, rows->v[i].key, rows->v[i].seq) != 0;
        push_window_add(p, &rows->v[i]);
    }
    if (rows->covered > ess_keyq_last_seq(p->window)) {
        ess_keyq_skip(p->window, rows->covered);
    }
    p->journal_more = rows->more;
}

/* The pending read's rows, if they are in (block: wait for them). */
static void push_refill_poll(struct ess_push *p, int block)
{
    struct ess_store_rows rows = {0};
    struct ess_err err;
    size_t i;
    int done = 0;

    if (!p->reading || p->store == NULL) {
        return;
    }
    ess_err_clear(&err);
    if (ess_store_journal_read_finish(p->store, block, &done, &rows, &err) != ESS_OK) {
        ess_store_rows_fini(&rows);
        push_store_lost(p, &err);
        return;
    }
    if (!done) {
        return;
    }
    p->reading = 0;
    if (ess_keyq_last_seq(p->window) != p->read_after ||
        (p->replica != NULL && ess_replica_owned(p->replica) != p->read_parts)) {
        p->journal_more = 1; /* the window moved meanwhile (a replay, a rebalance): read again */
    } else if (p->replica != NULL) {
        push_refill_parts(p, &rows);
    } else {
        for (i = 0; i < rows.n; i++) {
            push_window_add(p, &rows.v[i]);
        }
        p->journal_more = rows.n == (size_t)p->read_want;
    }
    ess_store_rows_fini(&rows);
}

/* journal -> window, pipelined like the appends: the read is sent, and its
 * rows join the window on a later turn while deliveries go on. */
static void push_refill(struct ess_push *p)
{
    struct ess_err err;
    int rc;

    push_refill_poll(p, 0);
    if (!push_refill_due(p) || ess_store_journal_pending(p->store)) {
        return; /* the one pending statement is an append: after it, then */
    }
    ess_err_clear(&err);
    p->read_after = ess_keyq_last_seq(p->window);
    p->read_want = (int)(p->window_max - ess_keyq_pending(p->window));
    if (p->replica != NULL) { /* only its own partitions' rows (and unpartitioned ones) */
        p->read_parts = ess_replica_owned(p->replica);
        rc = ess_store_journal_read_parts_send(p->store, p->m->id, p->read_after,
                                               ess_replica_scan(p->read_parts, p->read_want),
                                               p->read_want, p->read_parts, &err);
    } else {
        rc = ess_store_journal_read_send(p->store, p->m->id, p->read_after, p->read_want, &err);
    }
    if (rc != ESS_OK) {
        push_store_lost(p, &err);
        return;
    }
    p->reading = 1;
    push_refill_poll(p, 0); /* libpq may have read some of it while sending */
}

/* ---- dispatch: window -> partner ----------------------------------------- */

/* Every header of one request: ESS's own, the dialect's, the auth. */
struct curl_slist *push_headers(struct ess_push *p, const char *event_id, const char *content_type,
                                const char *body, size_t len, struct ess_err *err)
{
    struct curl_slist *h = NULL;

    if (ess_render_request_headers(p->m, event_id, content_type, body, len,
                                   ess_worker_wall_ms() / 1000, &h, err) != ESS_OK) {
        curl_slist_free_all(h);
        return NULL;
    }
    return h;
}

/* ---- parking and the quarantine of a parked event's key ---------------- */

int push_quarantined(const struct ess_push *p, const char *key)
{
    return p->quarantine != NULL && json_object_get(p->quarantine, key) != NULL;
}

/* Park (status "parked") or hold (status "held": behind a parked event of its
 * key). Until the store has it, the event stays in the window. */
void push_park(struct ess_push *p, struct ess_keyq_item *it, const char *reason, const char *status)
{
    struct ess_store_row row = {it->seq, it->event_id, it->key, it->body, it->received_ms};
    int held = status != NULL && strcmp(status, "held") == 0;
    struct ess_err err;

    ess_err_clear(&err);
    if (p->store == NULL || ess_store_park(p->store, p->m->id, &row, reason, it->attempts, status,
                                           it->last_status, &err) != ESS_OK) {
        if (p->store != NULL) {
            push_store_lost(p, &err);
        }
        /* Not parked yet: keep it, the offset must not pass it. */
        ess_keyq_retry(p->window, it, ess_worker_mono_ms() + 1000);
        return;
    }
    p->stats.parked++;
    ess_delta_book_dropped(p->delta, it->key); /* the partner did not get it */
    if (p->m->on_park == ESS_ON_PARK_HOLD_KEY && p->quarantine != NULL) {
        json_object_set_new(p->quarantine, it->key, json_true());
    }
    if (held) {
        ess_log_info("event %s held: key %s waits for a parked event (hms ess dlq)", it->event_id,
                     it->key);
    } else {
        ess_log_warn("event %s (key %s) parked after %d attempt(s): %s", it->event_id, it->key,
                     it->attempts, reason);
    }
    push_ticket(p, it->seq, it->event_id, it->key, held ? "held" : "parked", it->attempts,
                it->last_status, reason, it->first_ms);
    ess_keyq_done(p->window, it);
}

static int push_send(struct ess_push *p, struct ess_keyq_item *it)
{
    struct ess_err err;
    struct curl_slist *h;
    const char *ctype = "application/json";
    char *body = NULL;
    size_t len = 0;
    int rc;

    ess_err_clear(&err);
    if (p->m->on_park == ESS_ON_PARK_HOLD_KEY && push_quarantined(p, it->key)) {
        push_park(p, it, "held behind a parked event of its key", "held");
        return ESS_OK;
    }
    rc = push_render_item(p, it, &body, &len, &ctype, &err);
    if (rc == PUSH_DELTA_NOTHING) {
        push_delta_skipped(p, it);
        return ESS_OK;
    }
    if (rc == ESS_ESTORE) {
        ess_keyq_retry(p->window, it, ess_worker_mono_ms() + 1000);
        return ESS_ESTORE;
    }
    if (rc != ESS_OK) {
        push_park(p, it, err.msg, NULL);
        return ESS_OK;
    }
    if (it->first_ms == 0) {
        it->first_ms = ess_worker_wall_ms();
    }
    h = push_headers(p, it->event_id, ctype, body, len, &err);
    if (h == NULL) {
        free(body);
        push_error(p, "auth", &err);
        ess_keyq_retry(p->window, it, ess_worker_mono_ms() + 1000);
        return ESS_ECONFIG;
    }
    if (ess_partner_send(p->partner, (uint64_t)(uintptr_t)it, p->m->target_url, h, body, len,
                         &err) != ESS_OK) {
        push_error(p, "partner", &err);
        ess_keyq_retry(p->window, it, ess_worker_mono_ms() + 1000);
        return ESS_EPARTNER;
    }
    return ESS_OK;
}

/* Paused: journal, deliver nothing. A replay waits for in-flight to end.
 * Holding keys needs the quarantine known first. */
int push_may_dispatch(const struct ess_push *p)
{
    return !p->ctl.paused && !p->held && !p->replay_pending &&
           (p->m->on_park != ESS_ON_PARK_HOLD_KEY || p->quarantine_known) &&
           (p->replica == NULL || ess_replica_may_dispatch(p->replica, ess_worker_mono_ms()));
}

static void push_dispatch(struct ess_push *p, long long now)
{
    struct ess_keyq_item *it;
    int sent_before;
    int rc;

    if (push_batching(p)) {
        push_batch_dispatch(p, now);
        return;
    }
    if (!push_may_dispatch(p)) {
        return;
    }
    while (ess_partner_room(p->partner) > 0 && ess_keyq_next_due(p->window, now) == 0) {
        /* Asked only when something is due: an open breaker hands out its
         * single probe slot here, and it must not be wasted. */
        if (!ess_breaker_allow(&p->breaker, now)) {
            return;
        }
        it = ess_keyq_take(p->window, now);
        if (it == NULL) {
            ess_breaker_release(&p->breaker);
            return;
        }
        sent_before = ess_partner_in_flight(p->partner);
        rc = push_send(p, it);
        if (ess_partner_in_flight(p->partner) == sent_before) {
            ess_breaker_release(&p->breaker); /* parked or not sent: no probe went out */
        }
        if (rc != ESS_OK) {
            return;
        }
    }
}

/* ---- collect: partner results -------------------------------------------- */

static void push_retry_later(struct ess_push *p, struct ess_keyq_item *it,
                             const struct ess_partner_result *r, long long now)
{
    long delay;

    p->stats.retried++;
    if (ess_breaker_open(&p->breaker)) {
        /* An outage: nothing counts towards max_retry, the probe decides. */
        delay = ess_breaker_wait_ms(&p->breaker, now);
    } else if (r->status == 429 && r->retry_after_ms >= 0) {
        delay = r->retry_after_ms;
    } else {
        delay =
            ess_backoff_delay_ms(it->attempts - 1, PUSH_RETRY_BASE_MS, PUSH_RETRY_CAP_MS, &p->rng);
    }
    ess_keyq_retry(p->window, it, now + (delay > 0 ? delay : 0));
}

static struct push_redelivery *push_redelivery_of(struct ess_push *p, uint64_t token)
{
    size_t i;

    for (i = 0; i < PUSH_REDELIVER_MAX; i++) {
        if (p->redeliveries[i].in_use && (uint64_t)(uintptr_t)&p->redeliveries[i] == token) {
            return &p->redeliveries[i];
        }
    }
    return NULL;
}

/* A SOAP Fault is a failed delivery whatever the status: with a 2xx the
 * partner refused the data (park it), with a 5xx it is the usual retry. */
static enum ess_outcome push_soap_outcome(struct ess_push *p, struct ess_partner_result *r,
                                          enum ess_outcome outcome)
{
    char fault[200];

    if (p->m->format != ESS_FORMAT_SOAP || (outcome != ESS_OUTCOME_OK && r->status != 500) ||
        ess_render_soap_fault(r->body, strlen(r->body), fault, sizeof(fault)) != 1) {
        return outcome;
    }
    snprintf(r->error, sizeof(r->error), "HTTP %ld: SOAP Fault: %s", r->status, fault);
    return outcome == ESS_OUTCOME_OK ? ESS_OUTCOME_DROP : outcome;
}

static void push_result(struct ess_push *p, struct ess_partner_result *r, long long now)
{
    struct ess_keyq_item *it = (struct ess_keyq_item *)(uintptr_t)r->token;
    enum ess_outcome outcome = ess_backoff_classify(r->status, r->transport_failed);
    struct push_redelivery *rd = push_redelivery_of(p, r->token);
    int was_open = ess_breaker_open(&p->breaker);

    if (push_canary_result(p, r, now)) {
        return;
    }
    push_audit(p, r, rd != NULL ? &rd->row : NULL);
    if (rd != NULL) {
        push_redelivery_result(p, rd, r);
        return;
    }
    if (push_batch_result(p, r, now)) {
        return;
    }
    outcome = push_soap_outcome(p, r, outcome);
    it->last_status = r->status;
    if (outcome == ESS_OUTCOME_OK) {
        p->stats.delivered++;
        p->last_ok_ms = now;
        ess_stats_lag_add(&p->stats, (long)(ess_worker_wall_ms() - it->received_ms));
        ess_breaker_success(&p->breaker);
        push_ticket(p, it->seq, it->event_id, it->key, "delivered", it->attempts + 1, r->status,
                    it->attempts > 0 ? p->last_error : NULL, it->first_ms);
        ess_delta_book_landed(p->delta, it->key);
        ess_keyq_done(p->window, it);
        return;
    }
    p->stats.failed++;
    snprintf(p->last_error, sizeof(p->last_error), "%s", r->error);
    p->last_error_ms = now;
    if (outcome == ESS_OUTCOME_DROP) {
        ess_breaker_success(&p->breaker); /* it answered: the partner is up */
        it->attempts++;
        push_park(p, it, r->error, NULL);
        return;
    }
    ess_breaker_failure(&p->breaker, now);
    if (!was_open && ess_breaker_open(&p->breaker)) {
        ess_log_warn("partner down after %d consecutive failures (%s); probing",
                     PUSH_BREAKER_THRESHOLD, r->error);
    }
    /* A failure counts towards max_retry when the partner is evidently up:
     * an event's first failure, or a later one when other deliveries went
     * through since its previous failure. Everything failing at once is an
     * outage, the breaker's business: nothing is parked for it. */
    if (!was_open && !ess_breaker_open(&p->breaker) &&
        (it->attempts == 0 || p->last_ok_ms >= it->failed_ms)) {
        it->attempts++;
    }
    it->failed_ms = now;
    if (it->attempts >= p->m->max_retry) {
        push_park(p, it, r->error, NULL);
        return;
    }
    push_retry_later(p, it, r, now);
}

static void push_collect(struct ess_push *p)
{
    struct ess_partner_result r;
    long long now = ess_worker_mono_ms();
    int was_open = ess_breaker_open(&p->breaker);

    ess_partner_perform(p->partner);
    while (ess_partner_next_result(p->partner, &r) == 1) {
        push_result(p, &r, now);
    }
    if (was_open && !ess_breaker_open(&p->breaker)) {
        ess_log_info("partner is back; draining the backlog in order");
        /* Events that failed in the outage wait for probe-paced retries: they
         * go now, or the oldest holds the low-water mark (and every event
         * delivered after it stays in memory) until its timer. */
        ess_keyq_retry_now(p->window, now);
    }
}

/* ---- the operator's controls: pause and replay ------------------------ */

static void push_replay_filter(struct ess_push *p, const struct ess_store_controls *c,
                               long long offset)
{
    memset(&p->replay, 0, sizeof(p->replay));
    if (c->replay_resume_seq < 0 || offset >= c->replay_resume_seq) {
        return;
    }
    p->replay.active = 1;
    p->replay.to_seq = c->replay_to_seq;
    p->replay.resume_seq = c->replay_resume_seq;
    p->replay.has_key = c->has_replay_key;
    snprintf(p->replay.key, sizeof(p->replay.key), "%s", c->replay_key);
}

/* Replicas: the replay lowers the partitions' offsets (once, whichever
 * replica gets there first, see ess_replica_replay); each rebuilds its window
 * from the offsets it owns, skipping what is outside the replay's window. */
static void push_replica_replay(struct ess_push *p)
{
    long long from = p->ctl.replay_from_seq > 0 ? p->ctl.replay_from_seq - 1 : 0;
    long long id = p->ctl.replay_id;
    long long floor = 0;
    struct ess_store_controls c;
    struct ess_keyq *fresh;
    struct ess_err err;

    ess_err_clear(&err);
    if (p->store == NULL || push_tickets_flush(p) != ESS_OK || (fresh = ess_keyq_new()) == NULL) {
        return; /* tried again on the next turn */
    }
    if (ess_replica_save(p->replica, p->store, ess_keyq_low_water(p->window), &err) != ESS_OK ||
        ess_replica_replay(p->replica, p->store, id, from, &floor, &err) != ESS_OK ||
        ess_store_controls_get(p->store, p->m->id, &c, &err) != ESS_OK) {
        ess_keyq_free(fresh);
        push_store_lost(p, &err);
        return;
    }
    ess_keyq_free(p->window);
    p->window = fresh;
    ess_keyq_set_floor(p->window, floor);
    p->offset_saved = floor;
    p->journal_more = 1;
    p->replay_pending = 0;
    p->ctl = c;
    push_replay_filter(p, &p->ctl, floor);
    ess_log_info("replay #%lld: replica %s re-reads from seq %lld (%s)", id,
                 ess_replica_name(p->replica), floor + 1,
                 p->replay.active ? "the replay's events, then live again" : "nothing to re-send");
}

/* In-flight deliveries have finished: rewind the window to the replay's start. */
static void push_replay_apply(struct ess_push *p)
{
    long long resume = ess_keyq_low_water(p->window);
    long long from = p->ctl.replay_from_seq > 0 ? p->ctl.replay_from_seq - 1 : 0;
    struct ess_keyq *fresh;
    struct ess_err err;

    if (p->replica != NULL) {
        push_replica_replay(p);
        return;
    }
    /* A replay only ever moves the offset back: a window that starts past
     * undelivered events (say, while paused) must not skip them. */
    if (from > resume) {
        from = resume;
    }
    fresh = ess_keyq_new();
    ess_err_clear(&err);
    if (fresh == NULL || p->store == NULL ||
        ess_store_replay_apply(p->store, p->m->id, p->ctl.replay_id, from, resume, &err) !=
            ESS_OK) {
        ess_keyq_free(fresh);
        if (err.code != ESS_OK) {
            push_store_lost(p, &err);
        }
        return; /* tried again on the next turn */
    }
    ess_keyq_free(p->window);
    p->window = fresh;
    ess_keyq_set_floor(p->window, from);
    p->offset_saved = from;
    p->journal_more = 1;
    p->replay_pending = 0;
    p->ctl.replay_done_id = p->ctl.replay_id;
    p->ctl.replay_resume_seq = resume;
    push_replay_filter(p, &p->ctl, from);
    ess_log_info(
        "replay #%lld: re-sending from seq %lld up to %lld%s%s (then live again)", p->ctl.replay_id,
        from + 1,
        p->ctl.replay_to_seq >= 0 && p->ctl.replay_to_seq < resume ? p->ctl.replay_to_seq : resume,
        p->ctl.has_replay_key ? ", key " : "", p->ctl.has_replay_key ? p->ctl.replay_key : "");
}

void push_controls_apply(struct ess_push *p, const struct ess_store_controls *cp)
{
    struct ess_store_controls c = *cp;

    if (c.paused != p->ctl.paused) {
        ess_log_info("%s by the operator", c.paused ? "paused" : "resumed");
    }
    if (c.replay_id >
            (p->replica != NULL ? ess_replica_replay_seen(p->replica) : c.replay_done_id) &&
        !p->replay_pending) {
        ess_log_info("replay #%lld requested: finishing in-flight deliveries first", c.replay_id);
        p->replay_pending = 1;
    }
    p->ctl = c;
}

static void push_controls(struct ess_push *p)
{
    struct ess_store_controls c;
    struct ess_err err;

    ess_err_clear(&err);
    if (p->store == NULL) {
        return;
    }
    if (ess_store_controls_get(p->store, p->m->id, &c, &err) != ESS_OK) {
        push_store_lost(p, &err);
        return;
    }
    push_controls_apply(p, &c);
}

/* ---- the partner's schedule: delivery_windows, blackouts ------------------ */

#define PUSH_SCHEDULE_EVERY_MS 1000 /* an open window is looked at once a second */
#define PUSH_SCHEDULE_MAX_WAIT_MS 60000

/* Hold or release deliveries as the schedule says. While held the journal
 * fills as usual; when it opens, the window drains the backlog in order. */
static void push_schedule(struct ess_push *p, long long now)
{
    long long wall = ess_worker_wall_ms();
    long long next;
    long long wait;
    time_t at;
    struct tm tm;
    char when[32] = "never";

    if (ess_schedule_empty(&p->m->schedule)) {
        p->held = 0;
        return;
    }
    if (now < p->sched_check_ms) {
        return;
    }
    if (ess_schedule_open(&p->m->schedule, wall / 1000)) {
        if (p->held) {
            ess_log_info("delivery window open: releasing the backlog in order");
        }
        p->held = 0;
        p->sched_check_ms = now + PUSH_SCHEDULE_EVERY_MS;
        return;
    }
    next = ess_schedule_next_open(&p->m->schedule, wall / 1000);
    wait = next < 0 ? PUSH_SCHEDULE_MAX_WAIT_MS : next * 1000 - wall;
    if (!p->held) {
        at = (time_t)next;
        if (next >= 0 && gmtime_r(&at, &tm) != NULL) {
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        ess_log_info("outside the delivery schedule: holding deliveries until %s", when);
    }
    p->held = 1;
    p->sched_check_ms = now + (wait < 0                           ? 0
                               : wait > PUSH_SCHEDULE_MAX_WAIT_MS ? PUSH_SCHEDULE_MAX_WAIT_MS
                                                                  : wait);
}

/* ---- cron: offsets, heartbeats, retention -------------------------------- */

static void push_save_offset(struct ess_push *p)
{
    struct ess_err err;
    long long mark = ess_keyq_low_water(p->window);

    if (p->store == NULL || mark == p->offset_saved) {
        return;
    }
    ess_err_clear(&err);
    if ((p->replica != NULL ? ess_replica_save(p->replica, p->store, mark, &err)
                            : ess_store_offset_set(p->store, p->m->id, mark, &err)) != ESS_OK) {
        push_store_lost(p, &err);
        return;
    }
    p->offset_saved = mark;
}

const char *push_state(const struct ess_push *p, long long now)
{
    if (p->ctl.paused) {
        return "paused";
    }
    if (p->held) {
        return "held";
    }
    if (ess_breaker_open(&p->breaker)) {
        return "partner_down";
    }
    if (p->store == NULL || p->bus == NULL ||
        (p->last_error_ms != 0 && now - p->last_error_ms < (long long)p->m->heartbeat_sec * 1000)) {
        return "degraded";
    }
    return "ok";
}

/* Publish on hms.ops and record in Postgres (for `hms ess ps`); state NULL
 * means the current one ("stopped" is passed on the way out). */
/* A heartbeat's text (free() it; NULL when out of memory). */
char *push_heartbeat_text(struct ess_push *p, long long now, const char *state, long long backlog)
{
    struct ess_heartbeat hb;
    json_t *extra;
    char *text;

    p->backlog = backlog;
    hb = (struct ess_heartbeat){p->m->id,
                                ess_worker_instance(),
                                ess_worker_host(),
                                ESS_VERSION,
                                state,
                                p->last_error,
                                (long)getpid(),
                                ess_worker_wall_ms(),
                                (now - p->started_ms) / 1000,
                                backlog};
    extra = push_ops_extra(p);
    text = ess_stats_heartbeat_json_with(&p->stats, &hb, extra);
    json_decref(extra);
    return text;
}

/* Record it in store (for `hms ess ps`, the dashboard; NULL: recorded
 * already) and then publish it on hms.ops. */
void push_heartbeat_send(struct ess_push *p, const char *state, const char *text,
                         struct ess_store *store)
{
    struct ess_err err, berr;
    int failed;

    ess_err_clear(&err);
    ess_err_clear(&berr);
    failed = ess_worker_heartbeat_send(p->bus, store, p->env.ops_exchange, p->m->id,
                                       ess_worker_instance(), state, p->m->heartbeat_sec, text,
                                       &err, &berr);
    if (failed & ESS_WORKER_HB_STORE_FAILED) {
        push_store_lost(p, &err);
    }
    if (failed & ESS_WORKER_HB_BUS_FAILED) {
        push_bus_lost(p, &berr);
    }
}

/* Publish and record; state NULL means the current one ("stopped" is passed
 * on the way out). */
static void push_heartbeat(struct ess_push *p, long long now, const char *state)
{
    struct ess_err err;
    long long backlog = (long long)ess_keyq_pending(p->window);
    char *text;

    ess_err_clear(&err);
    if (p->store != NULL &&
        ess_store_backlog(p->store, p->m->id, p->offset_saved, &backlog, &err) != ESS_OK) {
        push_store_lost(p, &err);
    }
    state = state != NULL ? state : push_state(p, now);
    text = push_heartbeat_text(p, now, state, backlog);
    push_heartbeat_send(p, state, text, p->store);
    free(text);
}

/* Replicas: stamp, and when ownership must change rebuild the window from
 * what this replica now owns -- once its transfers have finished. */
static void push_replica_cron(struct ess_push *p, long long now)
{
    struct ess_keyq *fresh;
    struct ess_err err;
    long long floor = 0;

    if (p->replica == NULL || p->store == NULL) {
        return;
    }
    if (ess_replica_poll_due(p->replica, now)) {
        p->journal_more = 1; /* rows the other replicas journaled */
    }
    ess_err_clear(&err);
    if (ess_replica_tick(p->replica, p->store, now, &err) != ESS_OK) {
        push_store_lost(p, &err);
        return;
    }
    if (!ess_replica_rebalance_due(p->replica) || ess_partner_in_flight(p->partner) > 0 ||
        !push_batch_idle(p) || p->replay_pending || push_tickets_flush(p) != ESS_OK) {
        return;
    }
    fresh = ess_keyq_new();
    if (fresh == NULL) {
        return;
    }
    if (ess_replica_rebalance(p->replica, p->store, ess_keyq_low_water(p->window), &floor, &err) !=
        ESS_OK) {
        ess_keyq_free(fresh);
        push_store_lost(p, &err);
        return;
    }
    ess_keyq_free(p->window);
    p->window = fresh;
    ess_keyq_set_floor(p->window, floor);
    p->offset_saved = floor;
    p->journal_more = 1;
}

static void push_cron(struct ess_push *p, long long now)
{
    push_replica_cron(p, now);
    if (now >= p->next_control_ms) {
        if (push_side_ready(p, now)) {
            p->side_want |= SIDE_CONTROLS;
        } else {
            push_controls(p);
        }
        p->next_control_ms = now + PUSH_CONTROL_EVERY_MS;
    }
    if (now >= p->next_redeliver_ms) {
        push_redeliver(p, now);
        /* Every round trip here delays the events behind it: with no key held
         * the dead letters are looked at every 10 s (a `dlq retry` of a
         * skip_event park waits that long), else every second. */
        p->next_redeliver_ms = now + (p->quarantine != NULL && json_object_size(p->quarantine) > 0
                                          ? PUSH_CONTROL_EVERY_MS
                                          : 10 * PUSH_CONTROL_EVERY_MS);
    }
    if (p->replay_pending && ess_partner_in_flight(p->partner) == 0 && push_batch_idle(p)) {
        push_side_poll(p, 1); /* its offset must not land after the rewound one */
        push_replay_apply(p);
    }
    if (now >= p->next_offset_ms && push_side_ready(p, now)) {
        /* Stays due while a transaction is under way or more is left. */
        if (!ess_store_pipe_busy(p->side) && push_delta_flush(p) == ESS_OK &&
            push_side_start(p, 1)) {
            p->next_offset_ms = now + PUSH_OFFSET_EVERY_MS;
        }
    } else if (now >= p->next_offset_ms) {
        /* Tickets first: an event the offset passed always has its record. */
        if (push_tickets_flush(p) == ESS_OK && push_delta_flush(p) == ESS_OK) {
            push_save_offset(p);
        }
        p->next_offset_ms = now + PUSH_OFFSET_EVERY_MS;
    }
    if (now >= p->next_heartbeat_ms) {
        /* The run's first heartbeat is recorded on the loop's session before
         * the loop goes on: a worker that consumes is known to `hms ess ps`,
         * pause and replay at once, not after the side session is opened. */
        if (p->next_heartbeat_ms != p->started_ms && push_side_ready(p, now)) {
            p->side_want |= SIDE_BACKLOG; /* then published, then SIDE_HEARTBEAT */
        } else {
            push_heartbeat(p, now, NULL);
        }
        p->next_heartbeat_ms = now + (long long)p->m->heartbeat_sec * 1000;
    }
    if (now >= p->next_retain_ms && p->store != NULL) {
        if (push_side_ready(p, now)) {
            p->side_want |= SIDE_RETAIN;
            p->next_retain_ms = now + PUSH_RETAIN_EVERY_MS; /* sooner when a batch was full */
        } else {
            push_retain(p, now);
        }
    }
    push_side_next(p);
    if (now >= p->next_alert_ms) {
        push_alerts(p, now);
        p->next_alert_ms = now + PUSH_ALERT_EVERY_MS;
    }
    push_canary_send(p, now);
}

/* ---- the loop -------------------------------------------------------------- */

static long long min_positive(long long a, long long b)
{
    if (a < 0) {
        return b;
    }
    if (b < 0) {
        return a;
    }
    return a < b ? a : b;
}

/* How long the loop may sleep: until the earliest timer, and not at all when
 * the bus already buffered a frame that poll() cannot see. */
static int push_timeout(struct ess_push *p, long long now)
{
    long long t = p->next_offset_ms - now;
    long long due = -1;

    if ((p->bus != NULL && ess_bus_buffered(p->bus)) || ess_store_journal_ready(p->store)) {
        return 0; /* ready, with nothing left to wake poll() */
    }
    if (ess_partner_room(p->partner) > 0 && push_may_dispatch(p) && !push_batch_busy(p)) {
        due = ess_keyq_next_due(p->window, now);
        if (due >= 0 && ess_breaker_open(&p->breaker)) {
            due = min_positive(ess_breaker_wait_ms(&p->breaker, now), 250);
        }
    }
    t = min_positive(t, due);
    t = min_positive(t, push_batch_timeout(p, now));
    t = min_positive(t, p->next_heartbeat_ms - now);
    t = min_positive(t, p->next_alert_ms - now);
    if (push_canary_waits(p)) {
        t = min_positive(t, p->canary.next_ms - now);
    }
    if (p->held) {
        t = min_positive(t, p->sched_check_ms - now);
    }
    if (p->replica != NULL && p->store != NULL) {
        t = min_positive(t, ess_replica_poll_in(p->replica, now));
    }
    if (p->bus == NULL) {
        t = min_positive(t, p->bus_retry.next_ms - now);
    }
    if (p->store == NULL) {
        t = min_positive(t, p->store_retry.next_ms - now);
    }
    if (ess_store_pipe_writing(p->side)) {
        t = min_positive(t, 1); /* the side session's socket was full: write the rest soon */
    }
    if (p->store != NULL && !ess_store_journal_pending(p->store) &&
        (push_refill_due(p) || (p->bus != NULL && (p->burst.n > 0 || p->burst.has_tag)))) {
        t = 0; /* a read or a burst can go now; nothing else would wake us */
    }
    if (t < 0) {
        t = 0;
    }
    return (int)(t > 1000 ? 1000 : t);
}

static void push_reload(struct ess_push *p)
{
    struct ess_manifest *m = NULL;
    struct ess_diags diags;
    struct ess_err err;
    char line[700];
    size_t i;

    ess_diags_init(&diags);
    ess_err_clear(&err);
    if (ess_manifest_load(p->m->path, &m, &diags) != ESS_OK) {
        for (i = 0; i < diags.n; i++) {
            ess_log_error("reload refused: %s", ess_err_format(&diags.v[i], line, sizeof(line)));
        }
    } else if (strcmp(m->id, p->m->id) != 0) {
        ess_log_error("reload refused: id changed from %s to %s (deploy a new connector)", p->m->id,
                      m->id);
    } else if (m->queue_type != p->m->queue_type) {
        ess_log_error("reload refused: queue_type changed; RabbitMQ cannot change the type of "
                      "queue %s: stop the worker, drain and delete the queue, deploy again",
                      p->queue);
    } else if (push_batch_reload_refused(p, m)) {
        ess_log_error("reload refused: target_url moves between HTTP and a file drop "
                      "(deploy a new connector)");
    } else if (ess_manifest_check_env(m, &err) != ESS_OK) {
        ess_log_error("reload refused: %s", err.msg);
    } else {
        /* Window items hold journaled bodies and are shaped at send time, so
         * the new mapping applies to everything not yet delivered. */
        ess_log_info("manifest reloaded (version %.12s)", m->sha256);
        ess_partner_set_timeout(p->partner, m->timeout_ms);
        if (ess_partner_set_tls(p->partner, &m->tls, &err) != ESS_OK) {
            ess_log_error("reload: tls: %s (the previous TLS settings stay)", err.msg);
            ess_err_clear(&err);
        }
        push_ops_reload(p, m);
        if (ess_partner_set_ssh(p->partner, &m->ssh, m->target_url, &err) != ESS_OK) {
            ess_log_error("reload: ssh: %s (the previous SSH settings stay)", err.msg);
            ess_err_clear(&err);
        }
        ess_manifest_free(p->m);
        p->m = m;
        m = NULL;
        p->sched_check_ms = 0; /* the schedule may have changed */
        if (p->bus != NULL &&
            ess_bus_declare_push_typed(p->bus, p->env.events_exchange, p->env.ops_exchange,
                                       p->m->id, &p->m->topics, p->m->queue_type, &err) != ESS_OK) {
            push_bus_lost(p, &err);
        }
    }
    ess_manifest_free(m);
    ess_diags_fini(&diags);
}

static void push_turn(struct ess_push *p)
{
    long long now = ess_worker_mono_ms();
    int fds[3];
    int ready[3];

    push_connect(p, now);
    fds[0] = p->bus != NULL ? ess_bus_fd(p->bus) : -1;
    fds[1] = ess_store_journal_pending(p->store) ? ess_store_fd(p->store) : -1;
    fds[2] = ess_store_pipe_busy(p->side) ? ess_store_fd(p->side) : -1;
    ess_partner_wait_fds(p->partner, fds, ready, 3, push_timeout(p, now));
    push_side_poll(p, 0);
    push_take(p);
    push_refill(p);
    now = ess_worker_mono_ms();
    push_collect(p);
    push_audit_early(p);
    push_schedule(p, now);
    push_dispatch(p, now);
    push_cron(p, now);
    push_metrics_update(p);
}

/* What partitioned reads saved: one reader alone reads every row looked at. */
static void push_replica_reads_log(const struct ess_push *p)
{
    struct rusage ru;
    double cpu = 0;

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
              (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    }
    ess_log_info("replica %s: journal reads looked at %llu rows, returned %llu, %llu of them "
                 "its own to deliver; cpu %.2f s",
                 ess_replica_name(p->replica), p->reads.looked, p->reads.returned, p->reads.kept,
                 cpu);
}

/* SIGTERM: stop consuming, journal what was taken, let in-flight deliveries
 * finish (bounded), save the offset. Undelivered events stay in the journal. */
static void push_drain(struct ess_push *p)
{
    struct ess_err err;
    long long deadline = ess_worker_mono_ms() + PUSH_DRAIN_MAX_MS;
    long long now;
    int ready = 0;

    ess_err_clear(&err);
    ess_log_info("stopping: draining %d in-flight deliveries", ess_partner_in_flight(p->partner));
    if (p->bus != NULL) {
        ess_worker_publish_lifecycle(p->bus, p->env.ops_exchange, p->m->id, "stopping", "", &err);
        ess_bus_cancel(p->bus, &err);
    }
    if (p->bus != NULL && p->store != NULL) {
        push_flush(p);
    }
    push_batch_flush(p);
    now = ess_worker_mono_ms();
    while (ess_partner_in_flight(p->partner) > 0 && now < deadline) {
        ess_partner_wait(p->partner, -1, 100, &ready);
        push_collect(p);
        now = ess_worker_mono_ms();
    }
    if (!push_side_drain(p) && push_tickets_flush(p) == ESS_OK && push_delta_flush(p) == ESS_OK) {
        push_save_offset(p);
    }
    if (p->replica != NULL) {
        ess_replica_leave(p->replica, p->store, ess_keyq_low_water(p->window));
        push_replica_reads_log(p);
    }
    push_heartbeat(p, ess_worker_mono_ms(), "stopped");
    ess_err_clear(&err);
    if (p->bus != NULL) {
        ess_worker_publish_lifecycle(p->bus, p->env.ops_exchange, p->m->id, "stopped", "", &err);
    }
    ess_log_info("stopped; delivered offset %lld", p->offset_saved);
}

int ess_push_run(struct ess_push *p)
{
    struct ess_err err;
    int announced = 0;

    ess_log_info("starting ess-push %s for %s -> %s (manifest %.12s)", ESS_VERSION, p->m->id,
                 p->m->target_url, p->m->sha256);
    while (!ess_worker_quit()) {
        if (ess_worker_take_reload()) {
            push_reload(p);
        }
        push_turn(p);
        if (!announced && p->bus != NULL) {
            ess_err_clear(&err);
            ess_worker_publish_lifecycle(p->bus, p->env.ops_exchange, p->m->id, "started",
                                         p->m->sha256, &err);
            announced = 1;
        }
    }
    push_drain(p);
    return ESS_OK;
}

struct ess_push *ess_push_new(struct ess_manifest *m, const struct ess_worker_env *env,
                              struct ess_err *err)
{
    struct ess_push *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        ess_manifest_free(m);
        ess_err_set(err, ESS_ENOMEM, "out of memory");
        return NULL;
    }
    p->m = m;
    p->env = *env;
    snprintf(p->queue, sizeof(p->queue), "ess.%s", m->id);
    p->window = ess_keyq_new();
    p->delta = ess_delta_book_new();
    p->audit = ess_audit_new(m->id);
    p->partner = ess_partner_new(m->timeout_ms, m->max_in_flight, err);
    if (p->window == NULL || p->partner == NULL || p->delta == NULL || p->audit == NULL ||
        ess_partner_set_tls(p->partner, &m->tls, err) != ESS_OK ||
        ess_partner_set_ssh(p->partner, &m->ssh, m->target_url, err) != ESS_OK) {
        ess_err_set(err, ESS_ENOMEM, "cannot set up the delivery window");
        ess_push_free(p);
        return NULL;
    }
    if (ess_replica_count(m) > 1) {
        p->replica = ess_replica_new(m->id, ess_worker_instance(), m->heartbeat_sec);
        if (p->replica == NULL) {
            ess_err_set(err, ESS_ENOMEM, "cannot set up the replica");
            ess_push_free(p);
            return NULL;
        }
        ess_log_info("one of %d replicas (replica %s): keys are shared out in %d partitions",
                     ess_replica_count(m), ess_replica_name(p->replica), ESS_REPLICA_PARTS);
    }
    if (push_url_is_drop(m->target_url)) {
        p->batch = ess_batch_new();
        if (p->batch == NULL) {
            ess_err_set(err, ESS_ENOMEM, "cannot set up the file batch");
            ess_push_free(p);
            return NULL;
        }
    }
    /* Enough waiting events to keep every transfer slot busy across keys,
     * small enough that the backlog stays in Postgres, not in memory. */
    p->window_max = (size_t)m->max_in_flight * 16 < 512 ? 512 : (size_t)m->max_in_flight * 16;
    ess_breaker_init(&p->breaker, PUSH_BREAKER_THRESHOLD, PUSH_PROBE_MIN_MS, PUSH_PROBE_MAX_MS);
    ess_stats_init(&p->stats);
    ess_worker_retry_init(&p->bus_retry);
    ess_worker_retry_init(&p->store_retry);
    p->rng = p->bus_retry.rng | 1;
    p->started_ms = ess_worker_mono_ms();
    p->next_heartbeat_ms = p->started_ms;
    p->side_mark = -1;
    if (push_ops_new(p, err) != ESS_OK) {
        ess_push_free(p);
        return NULL;
    }
    return p;
}

void ess_push_free(struct ess_push *p)
{
    size_t i;

    if (p == NULL) {
        return;
    }
    burst_free(&p->burst);
    burst_free(&p->journaling);
    push_tickets_drop(p, p->n_tickets);
    free(p->tickets);
    ess_audit_free(p->audit);
    for (i = 0; i < PUSH_REDELIVER_MAX; i++) {
        if (p->redeliveries[i].in_use) {
            push_redelivery_end(&p->redeliveries[i]);
        }
    }
    json_decref(p->quarantine);
    ess_metrics_free(p->metrics);
    ess_alert_free(p->alerts);
    ess_delta_book_free(p->delta);
    ess_batch_free(p->batch);
    ess_replica_free(p->replica);
    ess_partner_free(p->partner);
    ess_keyq_free(p->window);
    ess_bus_free(p->bus);
    free(p->side_hb);
    ess_store_free(p->side);
    ess_store_free(p->store);
    ess_manifest_free(p->m);
    free(p);
}
