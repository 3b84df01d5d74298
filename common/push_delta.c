/*
 * push_delta -- the push pipeline's render step for one journaled event:
 * shape, then with delta: true send only what changed since the key's last
 * 2xx (the book, ess_delta.h, remembers per key what the partner has), then
 * render. The book is owned by the pipeline; the key's next state is staged
 * here and lands with the 2xx (collect) or is dropped with a park.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ess_delta.h"
#include "ess_keyq.h"
#include "ess_log.h"
#include "ess_shape.h"
#include "ess_store.h"
#include "push_internal.h"

/* ---- delta: true -- only what changed since the key's last 2xx ----------- */

/* What the partner has for key (borrowed; NULL: nothing yet): the book, else
 * the store. ESS_ESTORE when it cannot be known now (the event waits). */
static int push_delta_last(struct ess_push *p, const char *key, json_t **last)
{
    json_t *keys;
    json_t *got = NULL;
    struct ess_err err;
    int rc;

    *last = ess_delta_book_known(p->delta, key);
    if (*last != NULL) {
        return ESS_OK;
    }
    if (p->store == NULL) {
        return ESS_ESTORE;
    }
    ess_err_clear(&err);
    keys = json_pack("[s]", key);
    rc = keys != NULL ? ess_store_delta_get(p->store, p->m->id, keys, &got, &err) : ESS_ENOMEM;
    json_decref(keys);
    if (rc != ESS_OK) {
        if (rc == ESS_ESTORE) {
            push_store_lost(p, &err);
        }
        return ESS_ESTORE;
    }
    if (json_object_get(got, key) != NULL) {
        ess_delta_book_learn(p->delta, key, json_object_get(got, key));
    }
    json_decref(got);
    *last = ess_delta_book_known(p->delta, key);
    return ESS_OK;
}

/* shaped -> the record to send: with delta, only what changed (plus the key);
 * the key's next state is staged for the 2xx. A replay re-sends whole records:
 * what the partner lost is not known. */
static int push_delta_apply(struct ess_push *p, const char *key, json_t **shaped,
                            struct ess_err *err)
{
    json_t *last = NULL;
    json_t *send = NULL;
    const char *kf;
    size_t kl;
    size_t changed = 0;

    if (!p->m->delta) {
        return ESS_OK;
    }
    if (push_delta_last(p, key, &last) != ESS_OK) {
        return ess_err_set(err, ESS_ESTORE, "delta: the key's last delivered state is unknown");
    }
    kf = ess_delta_key_field(p->m, &kl);
    if (ess_delta_book_stage(p->delta, key, last, *shaped, kf, kl, p->replay.active, &send,
                             &changed, err) != ESS_OK) {
        return ESS_ESHAPE;
    }
    if (last != NULL && changed == 0) {
        json_decref(send);
        return PUSH_DELTA_NOTHING;
    }
    json_decref(*shaped);
    *shaped = send;
    return ESS_OK;
}

/* Written before the offset passes the events they stand for. A crash in
 * between only makes the next change of a key send more than it needed. */
int push_delta_flush(struct ess_push *p)
{
    json_t *unsaved = ess_delta_book_unsaved(p->delta);
    struct ess_err err;

    if (unsaved == NULL) {
        return ESS_OK;
    }
    ess_err_clear(&err);
    if (p->store == NULL || ess_store_delta_put(p->store, p->m->id, unsaved, &err) != ESS_OK) {
        if (p->store != NULL) {
            push_store_lost(p, &err);
        }
        return ESS_ESTORE;
    }
    ess_delta_book_saved(p->delta);
    return ESS_OK;
}

/* Shape, diff (with delta_key: the event's key, when delta is on) and render
 * an event's journaled body. ESS_ESHAPE parks it, ESS_ESTORE retries it later,
 * PUSH_DELTA_NOTHING: nothing changed. */
int push_render(struct ess_push *p, const char *journaled, const char *delta_key, char **body,
                size_t *len, const char **ctype, struct ess_err *err)
{
    json_error_t jerr;
    json_t *data;
    json_t *shaped = NULL;
    int rc;

    /* Unshaped JSON that is already its own compact encoding goes as it is
     * (same bytes, no parse); delta needs the record to diff. */
    if ((delta_key == NULL || !p->m->delta) &&
        ess_shape_render_text(p->m, journaled, strlen(journaled), body, len, ctype) == ESS_OK) {
        return ESS_OK;
    }
    data = json_loads(journaled, 0, &jerr);
    if (data == NULL) {
        return ess_err_set(err, ESS_ESHAPE, "journaled body is not JSON: %s", jerr.text);
    }
    rc = ess_shape_apply(p->m, data, &shaped, err);
    json_decref(data);
    if (rc == ESS_OK && delta_key != NULL) {
        rc = push_delta_apply(p, delta_key, &shaped, err);
        if (rc == ESS_ESTORE || rc == PUSH_DELTA_NOTHING) {
            json_decref(shaped);
            return rc;
        }
    }
    if (rc == ESS_OK) {
        rc = ess_shape_render(p->m, shaped, body, len, ctype, err);
    }
    json_decref(shaped);
    return rc == ESS_OK ? ESS_OK : ess_err_set(err, ESS_ESHAPE, "cannot shape");
}

/* A window item: delta applies. */
int push_render_item(struct ess_push *p, struct ess_keyq_item *it, char **body, size_t *len,
                     const char **ctype, struct ess_err *err)
{
    return push_render(p, it->body, it->key, body, len, ctype, err);
}

/* Nothing changed for the partner: recorded, not sent (a ticket "skipped"). */
void push_delta_skipped(struct ess_push *p, struct ess_keyq_item *it)
{
    ess_delta_book_landed(p->delta, it->key);
    ess_log_debug("event %s (key %s): no field changed, nothing sent", it->event_id, it->key);
    push_ticket(p, it->seq, it->event_id, it->key, "skipped", 0, 0, NULL, 0);
    ess_keyq_done(p->window, it);
}
