/*
 * push_side -- the push pipeline's records: a ticket per final outcome, an
 * audit row per attempt, and the side session that writes them with the
 * delivered offset off the loop's path (see "side writes" below).
 *
 * Ownership: tickets are owned copies in struct ess_push until written; the
 * side session (p->side) is opened and closed here, owned by the pipeline.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ess_audit.h"
#include "ess_keyq.h"
#include "ess_log.h"
#include "ess_store.h"
#include "ess_worker.h"
#include "push_internal.h"

#define PUSH_AUDIT_EARLY_ROWS 1000 /* audit rows held before they go ahead of the 500 ms flush */
/* The same on the side session, ahead of the 500 ms save: 500 rows at once
 * (hashed in the loop, then inserted and committed while the journal's
 * COMMITs wait for the CPU) put a 5-9 ms bump into deliveries every 500 ms
 * at 1,000/s; 100 at a time spread it. At most one such transaction per
 * PUSH_SIDE_EARLY_GAP_MS, though: while draining, 100-row transactions
 * (120 a second) cost 5-10 % of the drain rate; the gap lets them grow --
 * but not past a full transaction (PUSH_SIDE_ROWS): with that many waiting
 * the next one goes as soon as the session is free, or a drain faster than
 * PUSH_SIDE_ROWS per gap (20,000/s) grew the queue for as long as it lasted. */
#define PUSH_SIDE_EARLY_ROWS 100
#define PUSH_SIDE_EARLY_GAP_MS 50
#define PUSH_SIDE_ROWS 500 /* audit rows and tickets per transaction: bounded buffers */

/* ---- tickets: one per final outcome, written with the next offset save ---- */

void push_ticket(struct ess_push *p, long long seq, const char *event_id, const char *key,
                 const char *outcome, int attempts, long last_status, const char *error,
                 long long first_ms)
{
    struct push_ticket *grown;
    struct push_ticket *t;
    size_t cap;

    if (p->m->tickets == ESS_TICKETS_NONE || (p->m->tickets == ESS_TICKETS_FAILURES &&
                                              strcmp(outcome, "delivered") == 0 && attempts <= 1)) {
        return;
    }
    if (p->n_tickets == p->cap_tickets) {
        cap = p->cap_tickets ? p->cap_tickets * 2 : 256;
        grown = realloc(p->tickets, cap * sizeof(*grown));
        if (grown == NULL) {
            return; /* a ticket is a record, not the delivery: never worth stalling for */
        }
        p->tickets = grown;
        p->cap_tickets = cap;
    }
    t = &p->tickets[p->n_tickets];
    *t = (struct push_ticket){seq,
                              strdup(event_id),
                              strdup(key),
                              outcome,
                              attempts,
                              last_status,
                              error != NULL && error[0] != '\0' ? strdup(error) : NULL,
                              first_ms};
    p->n_tickets++;
}

/* Forget the oldest k tickets (written). */
void push_tickets_drop(struct ess_push *p, size_t k)
{
    size_t i;

    for (i = 0; i < k && i < p->n_tickets; i++) {
        free(p->tickets[i].event_id);
        free(p->tickets[i].key);
        free(p->tickets[i].last_error);
    }
    if (i > 0) {
        memmove(p->tickets, p->tickets + i, (p->n_tickets - i) * sizeof(*p->tickets));
    }
    p->n_tickets -= i;
}

/* One audit row per attempt result: the event, or each event of a file. */
void push_audit(struct ess_push *p, const struct ess_partner_result *r,
                const struct ess_store_row *row)
{
    const char *error =
        r->status >= 200 && r->status < 300 && !r->transport_failed ? NULL : r->error;
    const struct ess_keyq_item *it;
    size_t i;

    if (row != NULL) {
        ess_audit_attempt(p->audit, row->seq, row->event_id, row->key, r->status, error);
    } else if (p->batch != NULL && r->token == (uint64_t)(uintptr_t)p->batch) {
        for (i = 0; i < ess_batch_count(p->batch); i++) {
            it = ess_batch_item(p->batch, i);
            ess_audit_attempt(p->audit, it->seq, it->event_id, it->key, r->status, error);
        }
    } else {
        it = (const struct ess_keyq_item *)(uintptr_t)r->token;
        ess_audit_attempt(p->audit, it->seq, it->event_id, it->key, r->status, error);
    }
}

/* Audit rows are written with the tickets every 500 ms; at drain rates that
 * is thousands of rows held in memory, so they go as soon as the side session
 * is free once PUSH_SIDE_EARLY_ROWS wait (past it, the rate sets the batch).
 * On the loop's session, a full chunk, never behind a pending append. */
void push_audit_early(struct ess_push *p)
{
    struct ess_err err;
    size_t pending = ess_audit_pending(p->audit);
    long long now;

    if (pending >= PUSH_SIDE_EARLY_ROWS && p->side != NULL) {
        now = ess_worker_mono_ms();
        if (!ess_store_pipe_busy(p->side) &&
            (now >= p->side_early_ms || pending >= PUSH_SIDE_ROWS)) {
            p->side_early_ms = now + PUSH_SIDE_EARLY_GAP_MS;
            push_side_start(p, 0);
        }
        return;
    }
    if (pending < PUSH_AUDIT_EARLY_ROWS || push_side_ready(p, ess_worker_mono_ms()) ||
        p->store == NULL || ess_store_journal_pending(p->store)) {
        return;
    }
    ess_err_clear(&err);
    if (ess_audit_flush(p->audit, p->store, &err) != ESS_OK) {
        push_store_lost(p, &err);
    }
}

/* The oldest n tickets as the store takes them (borrowed strings); free() it. */
static struct ess_store_ticket *push_ticket_rows(const struct ess_push *p, size_t n)
{
    struct ess_store_ticket *t = calloc(n > 0 ? n : 1, sizeof(*t));
    size_t i;

    for (i = 0; t != NULL && i < n; i++) {
        const struct push_ticket *pt = &p->tickets[i];

        t[i] =
            (struct ess_store_ticket){pt->seq,      pt->event_id,    pt->key,        pt->outcome,
                                      pt->attempts, pt->last_status, pt->last_error, pt->first_ms};
    }
    return t;
}

int push_tickets_flush(struct ess_push *p)
{
    struct ess_store_ticket *t;
    struct ess_err err;
    int rc;

    push_side_poll(p, 1); /* the side session's records first: they are older */
    ess_err_clear(&err);
    if (p->store != NULL && ess_audit_pending(p->audit) > 0 &&
        ess_audit_flush(p->audit, p->store, &err) != ESS_OK) {
        push_store_lost(p, &err);
        return ESS_ESTORE;
    }
    if (p->n_tickets == 0 || p->store == NULL) {
        return p->store == NULL ? ESS_ESTORE : ESS_OK;
    }
    t = push_ticket_rows(p, p->n_tickets);
    if (t == NULL) {
        return ESS_ENOMEM;
    }
    ess_err_clear(&err);
    rc = ess_store_tickets_append(p->store, p->m->id, t, p->n_tickets, &err);
    free(t);
    if (rc != ESS_OK) {
        push_store_lost(p, &err);
        return rc;
    }
    push_tickets_drop(p, p->n_tickets);
    return ESS_OK;
}

/* ---- side writes: audit rows, tickets and the offset, off the loop's path --
 *
 * The loop's session journals and reads; written there, the records and the
 * offset made the loop wait for their COMMIT every 500 ms while events
 * queued behind it (the p99 at 1,000 events/s). They go on a second session
 * as one pipelined transaction the loop does not wait for, in this order:
 * audit rows, tickets, then the offset -- committed together or not at all.
 * So the offset never passes an event whose ticket and audit rows are not
 * committed (they were queued when the event finished, before the mark was
 * taken, and are in this transaction or an earlier one), and a failure loses
 * nothing: records leave memory only once their COMMIT has been read.
 * Without the side session (replicas: their offsets go by partition; or it
 * cannot be opened) the synchronous path on the loop's session does it. */

#define PUSH_SIDE_RETRY_MS 1000

static int push_side_busy(const struct ess_push *p)
{
    return ess_store_pipe_busy(p->side);
}

static void push_side_lost(struct ess_push *p, const struct ess_err *e)
{
    char line[600];

    ess_log_warn("side session (audit, tickets, offset) lost: %s; they stay queued",
                 ess_err_format(e, line, sizeof(line)));
    push_error(p, "store", e);
    ess_audit_sent(p->audit, 0);
    p->side_tickets = 0;
    p->side_mark = -1;
    p->side_job = 0;
    p->side_want = 0; /* the loop's session does them until this one is back */
    if (p->side_hb != NULL) {
        push_heartbeat_send(p, p->side_hb_state, p->side_hb, NULL); /* not recorded: published */
        free(p->side_hb);
        p->side_hb = NULL;
    }
    ess_store_free(p->side);
    p->side = NULL;
    p->side_retry_ms = ess_worker_mono_ms() + PUSH_SIDE_RETRY_MS;
}

/* The side session, opened when the loop's session is up; 0: use the loop's. */
int push_side_ready(struct ess_push *p, long long now)
{
    struct ess_err err;

    if (p->side != NULL || p->replica != NULL) {
        return p->side != NULL;
    }
    if (p->store == NULL || now < p->side_retry_ms) {
        return 0;
    }
    ess_err_clear(&err);
    p->side = ess_store_new(p->env.pg_url, &err);
    if (p->side == NULL) {
        ess_log_warn("side session (audit, tickets, offset): %s; writing them on the journal's",
                     err.msg);
        p->side_retry_ms = now + PUSH_SIDE_RETRY_MS;
    }
    return p->side != NULL;
}

/* A SIDE_* job's transaction committed: use what it read. */
static void push_side_job_done(struct ess_push *p)
{
    struct ess_store_controls c;
    long long now = ess_worker_mono_ms();
    long long deleted;
    long long v;

    switch (p->side_job) {
    case SIDE_CONTROLS:
        ess_store_pipe_controls_take(p->side, &c);
        push_controls_apply(p, &c);
        break;
    case SIDE_BACKLOG:
        v = ess_store_pipe_count(p->side, 0);
        free(p->side_hb);
        p->side_hb_state = push_state(p, now);
        p->side_hb = push_heartbeat_text(p, now, p->side_hb_state,
                                         v >= 0 ? v : (long long)ess_keyq_pending(p->window));
        if (p->side_hb != NULL) {
            p->side_want |= SIDE_HEARTBEAT;
        }
        break;
    case SIDE_HEARTBEAT: /* recorded: now published, in that order as on the loop's session */
        push_heartbeat_send(p, p->side_hb_state, p->side_hb, NULL);
        free(p->side_hb);
        p->side_hb = NULL;
        break;
    case SIDE_RETAIN:
        deleted = ess_store_pipe_count(p->side, 0);
        v = ess_store_pipe_count(p->side, 2);
        deleted = v > deleted ? v : deleted;
        if (deleted > 0) {
            ess_log_debug("retention: swept %lld rows past replay_window / ticket_retention",
                          deleted);
        }
        if (deleted >= PUSH_RETAIN_BATCH) {
            p->next_retain_ms = now + PUSH_RETAIN_MORE_MS;
        }
        break;
    default:
        break;
    }
    p->side_job = 0;
}

/* Start the next SIDE_* job due, if the side session is free. */
void push_side_next(struct ess_push *p)
{
    static const int order[] = {SIDE_CONTROLS, SIDE_HEARTBEAT, SIDE_BACKLOG, SIDE_RETAIN};
    struct ess_err err;
    size_t i;
    int job = 0;
    int rc;

    if (p->side == NULL || push_side_busy(p) || p->side_want == 0) {
        return;
    }
    for (i = 0; i < sizeof(order) / sizeof(order[0]) && job == 0; i++) {
        job = p->side_want & order[i];
    }
    p->side_want &= ~job;
    ess_err_clear(&err);
    rc = ess_store_pipe_begin(p->side, &err);
    if (rc == ESS_OK && job == SIDE_CONTROLS) {
        rc = ess_store_pipe_controls(p->side, p->m->id, &err);
    } else if (rc == ESS_OK && job == SIDE_BACKLOG) {
        rc = ess_store_pipe_backlog(p->side, p->m->id, p->offset_saved, &err);
    } else if (rc == ESS_OK && job == SIDE_HEARTBEAT) {
        rc = ess_store_pipe_heartbeat(p->side, p->m->id, ess_worker_instance(), p->side_hb_state,
                                      p->m->heartbeat_sec, p->side_hb, &err);
    } else if (rc == ESS_OK && job == SIDE_RETAIN) {
        rc = ess_store_pipe_retain(p->side, p->m->id, p->offset_saved, p->m->replay_window_sec,
                                   p->m->ticket_retention_sec, PUSH_RETAIN_BATCH, &err);
    }
    rc = rc == ESS_OK ? ess_store_pipe_commit(p->side, &err) : rc;
    if (rc != ESS_OK) {
        push_side_lost(p, &err);
        return;
    }
    p->side_job = job;
    push_side_poll(p, 0);
}

/* The transaction under way, if it is over (block: wait for it). */
void push_side_poll(struct ess_push *p, int block)
{
    struct ess_err err;
    int done = 0;

    if (!push_side_busy(p)) {
        return;
    }
    ess_err_clear(&err);
    if (ess_store_pipe_poll(p->side, block, &done, &err) != ESS_OK) {
        push_side_lost(p, &err);
        return;
    }
    if (!done) {
        return;
    }
    if (p->side_job != 0) {
        push_side_job_done(p);
        return;
    }
    ess_audit_sent(p->audit, 1);
    push_tickets_drop(p, p->side_tickets);
    p->side_tickets = 0;
    if (p->side_mark >= 0) {
        p->offset_saved = p->side_mark;
        p->side_mark = -1;
    }
}

/* Send the oldest audit rows and tickets (at most PUSH_SIDE_ROWS of each)
 * and, when with_offset and that is all of them, the offset. 1: all sent. */
int push_side_start(struct ess_push *p, int with_offset)
{
    long long mark = ess_keyq_low_water(p->window);
    size_t n_audit = ess_audit_pending(p->audit);
    size_t n_tickets = p->n_tickets < PUSH_SIDE_ROWS ? p->n_tickets : PUSH_SIDE_ROWS;
    size_t sent = 0;
    struct ess_store_ticket *t;
    struct ess_err err;
    int all;
    int rc = ESS_OK;

    if (n_audit == 0 && n_tickets == 0 && (!with_offset || mark == p->offset_saved)) {
        return 1;
    }
    ess_err_clear(&err);
    if (n_audit > 0) {
        rc = ess_audit_head(p->audit, p->side, &err); /* a query when not known */
        n_audit = ess_audit_pending(p->audit);        /* with a gap record */
    }
    rc = rc == ESS_OK ? ess_store_pipe_begin(p->side, &err) : rc;
    if (rc == ESS_OK && n_audit > 0) {
        rc = ess_audit_send(p->audit, p->side, PUSH_SIDE_ROWS, &sent, &err);
    }
    if (rc == ESS_OK && n_tickets > 0) {
        t = push_ticket_rows(p, n_tickets);
        rc = t != NULL ? ess_store_tickets_send(p->side, p->m->id, t, n_tickets, &err)
                       : ess_err_set(&err, ESS_ENOMEM, "tickets: out of memory");
        free(t);
    }
    all = sent == n_audit && n_tickets == p->n_tickets;
    p->side_mark = -1;
    if (rc == ESS_OK && with_offset && all && mark != p->offset_saved) {
        rc = ess_store_pipe_offset(p->side, p->m->id, mark, &err);
        p->side_mark = mark;
    }
    rc = rc == ESS_OK ? ess_store_pipe_commit(p->side, &err) : rc;
    if (rc != ESS_OK) {
        push_side_lost(p, &err);
        return 0;
    }
    p->side_tickets = n_tickets;
    push_side_poll(p, 0); /* libpq may have read the answer while sending */
    return all;
}

/* SIGTERM: everything queued written and the offset saved by the side
 * session; 0 when it could not (the caller falls back to the loop's). */
int push_side_drain(struct ess_push *p)
{
    int all = 0;

    push_side_poll(p, 1);
    while (!all && push_side_ready(p, ess_worker_mono_ms()) && push_delta_flush(p) == ESS_OK) {
        all = push_side_start(p, 1);
        push_side_poll(p, 1);
        if (p->side == NULL) {
            return 0;
        }
    }
    return all;
}
