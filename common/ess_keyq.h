/*
 * ess_keyq -- the delivery window: journaled events waiting for the partner,
 * kept in order per key while many keys are in flight at once.
 *
 * DESIGN
 * Events enter in journal order (increasing seq). Each key has a FIFO; only
 * the head of a key may be in flight, so a key's events reach the partner in
 * order while different keys proceed concurrently. Heads that may go (not in
 * flight) sit in a min-heap ordered by (due time, seq): oldest first, and a
 * head waiting for a retry back-off simply has a later due time.
 *
 * The low-water mark is the largest seq such that every event at or below it
 * is done (delivered or parked): that, and only that, is safe to store as the
 * connector's delivered offset. Done events are released as the mark passes
 * them.
 *
 * Ownership: the queue owns each item and the strings given to push (which
 * takes them over, on success and failure). An item returned by take stays
 * owned by the queue and valid until done() is called on it.
 */
#ifndef ESS_KEYQ_H
#define ESS_KEYQ_H

#include <stddef.h>

struct ess_keyq;

struct ess_keyq_item {
    long long seq;
    char *key;
    char *event_id;
    char *body;
    long long received_ms;
    int attempts;           /* failed attempts that counted towards max_retry */
    long long due_ms;       /* earliest time it may be sent */
    long long first_ms;     /* wall-clock ms of its first attempt, 0 before */
    long long failed_ms;    /* monotonic ms of its latest failed attempt */
    long last_status;       /* HTTP status of the last attempt, 0 when none */
    long long quiet_cap_ms; /* debounce: latest due time however busy the key */
    int merged;             /* debounce: later changes merged into this one */
};

struct ess_keyq *ess_keyq_new(void);
void ess_keyq_free(struct ess_keyq *q);

/* Append an event; seq must be greater than every seq pushed before.
 * Takes ownership of key, event_id and body (malloc'd). ESS_OK/ESS_ENOMEM/ESS_EINVAL. */
int ess_keyq_push(struct ess_keyq *q, long long seq, char *key, char *event_id, char *body,
                  long long received_ms);

/* Record seq as done without an event (a replay skips it): the low-water
 * mark may pass it. seq must be greater than every seq pushed before. */
int ess_keyq_skip(struct ess_keyq *q, long long seq);

/* The oldest due head not in flight, marked in flight; NULL when none is due. */
struct ess_keyq_item *ess_keyq_take(struct ess_keyq *q, long long now_ms);

/* Delivered or parked: releases the key's next event. */
void ess_keyq_done(struct ess_keyq *q, struct ess_keyq_item *it);

/* Not delivered: back in line at due_ms, still the head of its key. */
void ess_keyq_retry(struct ess_keyq *q, struct ess_keyq_item *it, long long due_ms);

/* The key's last event when it is waiting (not in flight), else NULL: a
 * debounce merges a newer change into it instead of queueing another. */
struct ess_keyq_item *ess_keyq_tail(struct ess_keyq *q, const char *key);

/* The event queued right behind it in its key (in flight it may have one
 * waiting), else NULL. */
struct ess_keyq_item *ess_keyq_successor(struct ess_keyq *q, struct ess_keyq_item *it);

/* The in-flight it takes over its successor (a file drop merged the later
 * change into it): the successor leaves the key's queue and counts as done,
 * yet the low-water mark cannot pass it before it is done, its seq being
 * lower. The successor is invalid afterwards. */
void ess_keyq_absorb(struct ess_keyq *q, struct ess_keyq_item *it);

/* Change when a waiting event may go (a debounce's quiet period). */
void ess_keyq_reschedule(struct ess_keyq *q, struct ess_keyq_item *it, long long due_ms);

/* Largest seq with everything at or below it done; `floor` until then. */
long long ess_keyq_low_water(const struct ess_keyq *q);

/* Set the mark's floor (the stored offset) when the window is empty. */
void ess_keyq_set_floor(struct ess_keyq *q, long long seq);

/* Events not yet done (waiting or in flight). */
size_t ess_keyq_pending(const struct ess_keyq *q);

/* received_ms of the oldest event not yet done (the backlog's age), -1 when
 * none. Walks from the low-water mark: done events past it are few. */
long long ess_keyq_oldest_received_ms(const struct ess_keyq *q);

/* Events held in memory: not done, or done but not yet passed by the
 * low-water mark (one slow event holds every later one of the window). */
size_t ess_keyq_held(const struct ess_keyq *q);

/* Every waiting head that failed before (failed_ms != 0) and is due later
 * than now_ms is due at now_ms: the partner is back, so retries scheduled for
 * the outage go at once, in seq order (a debounce's wait is left alone). */
void ess_keyq_retry_now(struct ess_keyq *q, long long now_ms);

/* Highest seq ever pushed (the read cursor), or the floor. */
long long ess_keyq_last_seq(const struct ess_keyq *q);

/* ms until the earliest waiting head is due: 0 if one is due now, -1 if none waits. */
long long ess_keyq_next_due(const struct ess_keyq *q, long long now_ms);

#endif
