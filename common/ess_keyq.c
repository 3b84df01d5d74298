/*
 * ess_keyq -- per-key FIFOs + a due-time heap of heads + a seq-ordered ring
 * for the low-water mark. See ess_keyq.h for the design.
 */
#include "ess_keyq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ess_err.h"
#include "ess_ring.h"

struct kq_slot;

struct kq_item {
    struct ess_keyq_item pub;
    struct kq_item *next_in_key;
    struct kq_slot *slot;
    size_t heap_idx;
    int in_heap; /* a head waiting to be taken */
    int done;
    int in_flight;
};

struct kq_slot { /* one key with events in the window */
    char *key;   /* borrowed from the head item... copied: items come and go */
    struct kq_item *head;
    struct kq_item *tail;
    struct kq_slot *next_in_bucket;
};

struct ess_keyq {
    /* seq order, for the low-water mark: ring of items [ring_head, ring_head+ring_n) */
    struct kq_item **ring;
    size_t ring_cap;
    size_t ring_head;
    size_t ring_n;
    size_t pending; /* pushed and not done */
    long long floor;
    long long last_seq;
    /* key -> slot, chained hash, power-of-two buckets */
    struct kq_slot **buckets;
    size_t n_buckets;
    size_t n_slots;
    /* min-heap of waiting heads by (due_ms, seq) */
    struct kq_item **heap;
    size_t heap_n;
    size_t heap_cap;
};

static uint64_t kq_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct ess_keyq *ess_keyq_new(void)
{
    struct ess_keyq *q = calloc(1, sizeof(*q));

    if (q == NULL) {
        return NULL;
    }
    q->n_buckets = 256;
    q->buckets = calloc(q->n_buckets, sizeof(*q->buckets));
    if (q->buckets == NULL) {
        free(q);
        return NULL;
    }
    return q;
}

static void kq_item_free(struct kq_item *it)
{
    free(it->pub.key);
    free(it->pub.event_id);
    free(it->pub.body);
    free(it);
}

void ess_keyq_free(struct ess_keyq *q)
{
    size_t i;
    struct kq_slot *s;
    struct kq_slot *next;

    if (q == NULL) {
        return;
    }
    for (i = 0; i < q->ring_n; i++) {
        kq_item_free(q->ring[(q->ring_head + i) % q->ring_cap]);
    }
    for (i = 0; i < q->n_buckets; i++) {
        for (s = q->buckets[i]; s != NULL; s = next) {
            next = s->next_in_bucket;
            free(s->key);
            free(s);
        }
    }
    free(q->ring);
    free(q->buckets);
    free(q->heap);
    free(q);
}

/* ---- heap of waiting heads ------------------------------------------- */

static int kq_before(const struct kq_item *a, const struct kq_item *b)
{
    if (a->pub.due_ms != b->pub.due_ms) {
        return a->pub.due_ms < b->pub.due_ms;
    }
    return a->pub.seq < b->pub.seq;
}

static void kq_heap_set(struct ess_keyq *q, size_t i, struct kq_item *it)
{
    q->heap[i] = it;
    it->heap_idx = i;
}

static void kq_heap_up(struct ess_keyq *q, size_t i)
{
    struct kq_item *it = q->heap[i];
    size_t parent;

    while (i > 0) {
        parent = (i - 1) / 2;
        if (!kq_before(it, q->heap[parent])) {
            break;
        }
        kq_heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    kq_heap_set(q, i, it);
}

static void kq_heap_down(struct ess_keyq *q, size_t i)
{
    struct kq_item *it = q->heap[i];
    size_t child;

    for (;;) {
        child = 2 * i + 1;
        if (child >= q->heap_n) {
            break;
        }
        if (child + 1 < q->heap_n && kq_before(q->heap[child + 1], q->heap[child])) {
            child++;
        }
        if (!kq_before(q->heap[child], it)) {
            break;
        }
        kq_heap_set(q, i, q->heap[child]);
        i = child;
    }
    kq_heap_set(q, i, it);
}

static int kq_heap_push(struct ess_keyq *q, struct kq_item *it)
{
    it->in_heap = 1;
    struct kq_item **grown;
    size_t cap;

    if (q->heap_n == q->heap_cap) {
        cap = q->heap_cap ? q->heap_cap * 2 : 64;
        grown = realloc(q->heap, cap * sizeof(*grown));
        if (grown == NULL) {
            return ESS_ENOMEM;
        }
        q->heap = grown;
        q->heap_cap = cap;
    }
    q->heap[q->heap_n] = it;
    it->heap_idx = q->heap_n;
    q->heap_n++;
    kq_heap_up(q, it->heap_idx);
    return ESS_OK;
}

static struct kq_item *kq_heap_pop(struct ess_keyq *q)
{
    struct kq_item *top = q->heap[0];

    top->in_heap = 0;
    q->heap_n--;
    if (q->heap_n > 0) {
        kq_heap_set(q, 0, q->heap[q->heap_n]);
        kq_heap_down(q, 0);
    }
    return top;
}

/* ---- key slots ----------------------------------------------------------- */

static int kq_rehash(struct ess_keyq *q)
{
    size_t n = q->n_buckets * 2;
    struct kq_slot **b = calloc(n, sizeof(*b));
    struct kq_slot *s;
    struct kq_slot *next;
    size_t i;
    size_t h;

    if (b == NULL) {
        return ESS_ENOMEM;
    }
    for (i = 0; i < q->n_buckets; i++) {
        for (s = q->buckets[i]; s != NULL; s = next) {
            next = s->next_in_bucket;
            h = kq_hash(s->key) & (n - 1);
            s->next_in_bucket = b[h];
            b[h] = s;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->n_buckets = n;
    return ESS_OK;
}

/* The slot for key, created when absent (NULL only when out of memory). */
static struct kq_slot *kq_slot_get(struct ess_keyq *q, const char *key)
{
    size_t h = kq_hash(key) & (q->n_buckets - 1);
    struct kq_slot *s;

    for (s = q->buckets[h]; s != NULL; s = s->next_in_bucket) {
        if (strcmp(s->key, key) == 0) {
            return s;
        }
    }
    if (q->n_slots >= q->n_buckets && kq_rehash(q) == ESS_OK) {
        h = kq_hash(key) & (q->n_buckets - 1);
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->key = strdup(key);
    if (s->key == NULL) {
        free(s);
        return NULL;
    }
    s->next_in_bucket = q->buckets[h];
    q->buckets[h] = s;
    q->n_slots++;
    return s;
}

static void kq_slot_remove(struct ess_keyq *q, struct kq_slot *slot)
{
    size_t h = kq_hash(slot->key) & (q->n_buckets - 1);
    struct kq_slot **pp = &q->buckets[h];

    while (*pp != NULL && *pp != slot) {
        pp = &(*pp)->next_in_bucket;
    }
    if (*pp != NULL) {
        *pp = slot->next_in_bucket;
    }
    q->n_slots--;
    free(slot->key);
    free(slot);
}

/* ---- ring in seq order ----------------------------------------------- */

static int kq_ring_push(struct ess_keyq *q, struct kq_item *it)
{
    struct kq_item **grown;
    size_t cap;

    if (q->ring_n == q->ring_cap) {
        cap = q->ring_cap ? q->ring_cap * 2 : 256;
        grown =
            ess_ring_unwrap(q->ring, sizeof(*q->ring), q->ring_cap, q->ring_head, q->ring_n, cap);
        if (grown == NULL) {
            return ESS_ENOMEM;
        }
        free(q->ring);
        q->ring = grown;
        q->ring_cap = cap;
        q->ring_head = 0;
    }
    q->ring[(q->ring_head + q->ring_n) % q->ring_cap] = it;
    q->ring_n++;
    return ESS_OK;
}

/* Release done items at the front: the low-water mark moves past them. */
static void kq_ring_advance(struct ess_keyq *q)
{
    struct kq_item *it;

    while (q->ring_n > 0) {
        it = q->ring[q->ring_head];
        if (!it->done) {
            break;
        }
        q->floor = it->pub.seq;
        kq_item_free(it);
        q->ring_head = (q->ring_head + 1) % q->ring_cap;
        q->ring_n--;
    }
}

/* ---- public -------------------------------------------------------------- */

int ess_keyq_push(struct ess_keyq *q, long long seq, char *key, char *event_id, char *body,
                  long long received_ms)
{
    struct kq_item *it = NULL;
    struct kq_slot *slot;

    if (seq <= q->last_seq || key == NULL) {
        goto fail_inval;
    }
    it = calloc(1, sizeof(*it));
    slot = it != NULL ? kq_slot_get(q, key) : NULL;
    if (slot == NULL || kq_ring_push(q, it) != ESS_OK) {
        goto fail_nomem;
    }
    it->pub = (struct ess_keyq_item){
        .seq = seq, .key = key, .event_id = event_id, .body = body, .received_ms = received_ms};
    it->slot = slot;
    q->last_seq = seq;
    q->pending++;
    if (slot->tail != NULL) {
        slot->tail->next_in_key = it;
        slot->tail = it;
        return ESS_OK;
    }
    slot->head = it;
    slot->tail = it;
    return kq_heap_push(q, it);

fail_inval:
    free(key);
    free(event_id);
    free(body);
    return ESS_EINVAL;
fail_nomem:
    free(it);
    free(key);
    free(event_id);
    free(body);
    return ESS_ENOMEM;
}

int ess_keyq_skip(struct ess_keyq *q, long long seq)
{
    struct kq_item *it;

    if (seq <= q->last_seq) {
        return ESS_EINVAL;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL || kq_ring_push(q, it) != ESS_OK) {
        free(it);
        return ESS_ENOMEM;
    }
    it->pub.seq = seq;
    it->done = 1;
    q->last_seq = seq;
    kq_ring_advance(q);
    return ESS_OK;
}

struct ess_keyq_item *ess_keyq_take(struct ess_keyq *q, long long now_ms)
{
    struct kq_item *it;

    if (q->heap_n == 0 || q->heap[0]->pub.due_ms > now_ms) {
        return NULL;
    }
    it = kq_heap_pop(q);
    it->in_flight = 1;
    return &it->pub;
}

void ess_keyq_done(struct ess_keyq *q, struct ess_keyq_item *pub)
{
    struct kq_item *it = (struct kq_item *)pub;
    struct kq_slot *slot = it->slot;

    it->in_flight = 0;
    it->done = 1;
    it->slot = NULL;
    q->pending--;
    slot->head = it->next_in_key;
    if (slot->head == NULL) {
        kq_slot_remove(q, slot);
    } else {
        /* The key's next event becomes its head: it goes when due (at once,
         * unless a debounce set its quiet period). */
        kq_heap_push(q, slot->head);
    }
    kq_ring_advance(q);
}

void ess_keyq_retry(struct ess_keyq *q, struct ess_keyq_item *pub, long long due_ms)
{
    struct kq_item *it = (struct kq_item *)pub;

    it->in_flight = 0;
    it->pub.due_ms = due_ms;
    kq_heap_push(q, it);
}

long long ess_keyq_low_water(const struct ess_keyq *q)
{
    return q->floor;
}

void ess_keyq_set_floor(struct ess_keyq *q, long long seq)
{
    if (q->ring_n == 0) {
        q->floor = seq;
        if (q->last_seq < seq) {
            q->last_seq = seq;
        }
    }
}

size_t ess_keyq_pending(const struct ess_keyq *q)
{
    return q->pending;
}

long long ess_keyq_oldest_received_ms(const struct ess_keyq *q)
{
    const struct kq_item *it;
    size_t i;

    for (i = 0; i < q->ring_n; i++) {
        it = q->ring[(q->ring_head + i) % q->ring_cap];
        if (!it->done) {
            return it->pub.received_ms;
        }
    }
    return -1;
}

size_t ess_keyq_held(const struct ess_keyq *q)
{
    return q->ring_n;
}

void ess_keyq_retry_now(struct ess_keyq *q, long long now_ms)
{
    size_t i;

    for (i = 0; i < q->heap_n; i++) {
        if (q->heap[i]->pub.failed_ms != 0 && q->heap[i]->pub.due_ms > now_ms) {
            q->heap[i]->pub.due_ms = now_ms;
        }
    }
    /* Ties at now_ms reorder by seq: rebuild the heap bottom-up. */
    for (i = q->heap_n / 2; i-- > 0;) {
        kq_heap_down(q, i);
    }
}

long long ess_keyq_last_seq(const struct ess_keyq *q)
{
    return q->last_seq;
}

long long ess_keyq_next_due(const struct ess_keyq *q, long long now_ms)
{
    long long due;

    if (q->heap_n == 0) {
        return -1;
    }
    due = q->heap[0]->pub.due_ms - now_ms;
    return due > 0 ? due : 0;
}

struct ess_keyq_item *ess_keyq_successor(struct ess_keyq *q, struct ess_keyq_item *pub)
{
    struct kq_item *it = (struct kq_item *)pub;

    (void)q;
    return it->next_in_key != NULL ? &it->next_in_key->pub : NULL;
}

void ess_keyq_absorb(struct ess_keyq *q, struct ess_keyq_item *pub)
{
    struct kq_item *it = (struct kq_item *)pub;
    struct kq_item *next = it->next_in_key;

    if (next == NULL || !it->in_flight) {
        return;
    }
    it->next_in_key = next->next_in_key;
    if (it->slot->tail == next) {
        it->slot->tail = it;
    }
    next->next_in_key = NULL;
    next->slot = NULL;
    next->done = 1;
    q->pending--;
    kq_ring_advance(q);
}

struct ess_keyq_item *ess_keyq_tail(struct ess_keyq *q, const char *key)
{
    size_t h = kq_hash(key) & (q->n_buckets - 1);
    struct kq_slot *slot;

    for (slot = q->buckets[h]; slot != NULL; slot = slot->next_in_bucket) {
        if (strcmp(slot->key, key) == 0) {
            return slot->tail != NULL && !slot->tail->in_flight ? &slot->tail->pub : NULL;
        }
    }
    return NULL;
}

void ess_keyq_reschedule(struct ess_keyq *q, struct ess_keyq_item *pub, long long due_ms)
{
    struct kq_item *it = (struct kq_item *)pub;
    long long old = it->pub.due_ms;

    it->pub.due_ms = due_ms;
    if (!it->in_heap) {
        return;
    }
    if (due_ms < old) {
        kq_heap_up(q, it->heap_idx);
    } else {
        kq_heap_down(q, it->heap_idx);
    }
}
