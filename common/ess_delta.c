/*
 * ess_delta -- the diff behind `delta: true`; see ess_delta.h.
 */
#include "ess_delta.h"

#include <stdlib.h>
#include <string.h>

#define DELTA_KNOWN_MAX 100000 /* cached states; past it the (saved) cache is dropped */

struct ess_delta_book {
    json_t *known;    /* key -> state the partner has (a cache of the store) */
    json_t *inflight; /* key -> state once the delivery in flight lands */
    json_t *unsaved;  /* key -> state landed, not yet in the store */
};

const char *ess_delta_key_field(const struct ess_manifest *m, size_t *len)
{
    size_t i;

    for (i = 0; i < m->rename.n; i++) {
        if (strcmp(m->rename.keys[i], m->key) == 0) {
            *len = strlen(m->rename.vals[i]);
            return m->rename.vals[i];
        }
    }
    *len = strcspn(m->key, "."); /* a dotted key stays nested under its first segment */
    return m->key;
}

int ess_delta_diff(const json_t *last, const json_t *shaped, const char *key_field, size_t key_len,
                   json_t **out, size_t *changed, struct ess_err *err)
{
    const char *name;
    json_t *value;
    json_t *was;
    int is_key;

    *out = NULL;
    *changed = 0;
    if (!json_is_object(shaped) || (last != NULL && !json_is_object(last))) {
        return ess_err_set(err, ESS_EINVAL, "delta: records must be JSON objects");
    }
    *out = json_object();
    if (*out == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "delta: out of memory");
    }
    json_object_foreach((json_t *)shaped, name, value)
    {
        was = last != NULL ? json_object_get(last, name) : NULL;
        is_key = strlen(name) == key_len && strncmp(name, key_field, key_len) == 0;
        if (was != NULL && json_equal(was, value)) {
            if (!is_key) {
                continue;
            }
        } else {
            (*changed)++;
        }
        if (json_object_set(*out, name, value) != 0) {
            json_decref(*out);
            *out = NULL;
            return ess_err_set(err, ESS_ENOMEM, "delta: out of memory");
        }
    }
    return ESS_OK;
}

int ess_delta_merge(const json_t *last, const json_t *shaped, json_t **out, struct ess_err *err)
{
    *out = last != NULL ? json_deep_copy(last) : json_object();
    if (*out == NULL || json_object_update(*out, (json_t *)shaped) != 0) {
        json_decref(*out);
        *out = NULL;
        return ess_err_set(err, ESS_ENOMEM, "delta: out of memory");
    }
    return ESS_OK;
}

struct ess_delta_book *ess_delta_book_new(void)
{
    struct ess_delta_book *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        return NULL;
    }
    b->known = json_object();
    b->inflight = json_object();
    b->unsaved = json_object();
    if (b->known == NULL || b->inflight == NULL || b->unsaved == NULL) {
        ess_delta_book_free(b);
        return NULL;
    }
    return b;
}

void ess_delta_book_free(struct ess_delta_book *b)
{
    if (b == NULL) {
        return;
    }
    json_decref(b->known);
    json_decref(b->inflight);
    json_decref(b->unsaved);
    free(b);
}

json_t *ess_delta_book_known(const struct ess_delta_book *b, const char *key)
{
    return json_object_get(b->known, key);
}

void ess_delta_book_learn(struct ess_delta_book *b, const char *key, json_t *state)
{
    json_object_set(b->known, key, state);
}

int ess_delta_book_stage(struct ess_delta_book *b, const char *key, const json_t *last,
                         const json_t *shaped, const char *key_field, size_t key_len, int whole,
                         json_t **send, size_t *changed, struct ess_err *err)
{
    json_t *next = NULL;
    int rc;

    rc = ess_delta_diff(whole ? NULL : last, shaped, key_field, key_len, send, changed, err);
    if (rc == ESS_OK) {
        rc = ess_delta_merge(last, shaped, &next, err);
    }
    if (rc == ESS_OK && json_object_set_new(b->inflight, key, next) != 0) {
        rc = ess_err_set(err, ESS_ENOMEM, "delta: out of memory");
    }
    if (rc != ESS_OK) {
        json_decref(*send);
        *send = NULL;
    }
    return rc;
}

void ess_delta_book_landed(struct ess_delta_book *b, const char *key)
{
    json_t *next = json_object_get(b->inflight, key);

    if (next == NULL) {
        return;
    }
    json_object_set(b->known, key, next);
    json_object_set(b->unsaved, key, next);
    json_object_del(b->inflight, key);
}

void ess_delta_book_dropped(struct ess_delta_book *b, const char *key)
{
    json_object_del(b->inflight, key);
}

json_t *ess_delta_book_unsaved(const struct ess_delta_book *b)
{
    return json_object_size(b->unsaved) > 0 ? b->unsaved : NULL;
}

void ess_delta_book_saved(struct ess_delta_book *b)
{
    json_object_clear(b->unsaved);
    if (json_object_size(b->known) > DELTA_KNOWN_MAX) {
        json_object_clear(b->known); /* all of it is stored: read again when needed */
    }
}
