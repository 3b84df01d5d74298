/*
 * ess_shape -- the manifest's fields/drop/values/rename, then render.
 *
 * It runs once per delivered event (~10k/s), and the input is the journal's or
 * the event's JSON, which must stay untouched (it is reused for retries and
 * replays). So the result shares the input's sub-trees and copies on write.
 *
 * DESIGN
 * - Copy on write: the result root is always ours. Before a nested object is
 *   modified, every object on the path whose refcount is above 1 (that is, also
 *   referenced by the input or elsewhere in the result) is replaced by a shallow
 *   json_copy. An object with refcount 1 is reachable only from our result.
 * - fields: a new object holding each selected path with its nesting; missing
 *   paths are simply absent. n == 0 keeps everything.
 * - values: the map is keyed by the SOURCE field name and looked up by the
 *   value's text (strings as is, integers in decimal, booleans true/false);
 *   null and unmapped values are left as they are; arrays, objects and reals
 *   cannot be code-mapped and are ESS_ESHAPE (the event is parked).
 * - transforms (ess_transform.h): compiled at load; each field's chain runs on
 *   the value at its SOURCE path, in manifest order, after drop and before values
 *   (so `values` maps what the transforms produced); a transform that yields a
 *   value for a missing dotted path (default, const, concat) creates the path.
 * - rename: all sources are read first, then removed, then set at top level, so
 *   a swap {a: b, b: a} works and a renamed value wins over an existing key.
 * - render: ess_render_body (ess_render.h) for every format.
 * - No manifest shaping at all: the result is the input, incref'd.
 */
#include "ess_shape.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ess_event.h"
#include "ess_render.h"
#include "ess_transform.h"

static int shape_nomem(struct ess_err *err)
{
    return ess_err_set(err, ESS_ENOMEM, "out of memory while shaping");
}

/* Walk to the object holding the last segment of path, making every object on
 * the way exclusively ours (copy on write). create: make missing levels.
 * Returns the parent (borrowed) and its last segment in *leaf, or NULL when
 * the path does not exist (or on allocation failure, with *nomem set). */
static json_t *shape_own_parent(json_t *root, const char *path, int create, const char **leaf,
                                int *nomem)
{
    const char *seg = path;
    const char *dot = strchr(seg, '.');
    json_t *cur = root;
    json_t *child;
    size_t n;

    while (dot != NULL) {
        n = (size_t)(dot - seg);
        child = json_object_getn(cur, seg, n);
        if ((child == NULL && !create) || (child != NULL && !json_is_object(child))) {
            return NULL;
        }
        if (child == NULL || child->refcount > 1) {
            child = child == NULL ? json_object() : json_copy(child);
            if (child == NULL || json_object_setn_new(cur, seg, n, child) != 0) {
                *nomem = 1;
                return NULL;
            }
        }
        cur = child;
        seg = dot + 1;
        dot = strchr(seg, '.');
    }
    *leaf = seg;
    return cur;
}

static int shape_fields(const struct ess_manifest *m, json_t *data, json_t **res,
                        struct ess_err *err)
{
    json_t *out;
    json_t *v;
    json_t *parent;
    const char *leaf = NULL;
    int nomem = 0;
    size_t i;

    out = json_object();
    if (out == NULL) {
        return shape_nomem(err);
    }
    for (i = 0; i < m->fields.n; i++) {
        v = ess_event_path_get(data, m->fields.v[i]);
        if (v == NULL) {
            continue;
        }
        parent = shape_own_parent(out, m->fields.v[i], 1, &leaf, &nomem);
        if (parent == NULL && !nomem) {
            continue; /* a scalar already sits where the path needs an object */
        }
        if (parent == NULL || json_object_set(parent, leaf, v) != 0) {
            json_decref(out);
            return shape_nomem(err);
        }
    }
    *res = out;
    return ESS_OK;
}

static int shape_drop(const struct ess_manifest *m, json_t *res, struct ess_err *err)
{
    json_t *parent;
    const char *leaf = NULL;
    int nomem = 0;
    size_t i;

    for (i = 0; i < m->drop.n; i++) {
        if (ess_event_path_get(res, m->drop.v[i]) == NULL) {
            continue;
        }
        parent = shape_own_parent(res, m->drop.v[i], 0, &leaf, &nomem);
        if (parent == NULL) {
            return shape_nomem(err);
        }
        json_object_del(parent, leaf);
    }
    return ESS_OK;
}

static const char *shape_kind(const json_t *v)
{
    if (json_is_array(v)) {
        return "an array";
    }
    return json_is_object(v) ? "an object" : "a real number";
}

/* The lookup text of a value, in buf; NULL when it is left alone (null) and
 * ESS_ESHAPE in *rc when it cannot be code-mapped. */
static const char *shape_value_text(const json_t *v, char *buf, size_t len, int *rc)
{
    *rc = ESS_OK;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_string_value(v);
    case JSON_INTEGER:
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        return buf;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return NULL;
    default:
        *rc = ESS_ESHAPE;
        return NULL;
    }
}

/* The TO for code text (reverse: the FROM whose TO is text, the first one
 * when several map to it). NULL when the map does not have it. */
static const char *shape_map_find(const struct ess_strmap *map, const char *text, int reverse)
{
    size_t i;

    for (i = 0; i < map->n; i++) {
        if (strcmp(reverse ? map->vals[i] : map->keys[i], text) == 0) {
            return reverse ? map->keys[i] : map->vals[i];
        }
    }
    return NULL;
}

/* One code map applied to its field: code -> partner code, or back (reverse). */
static int shape_one_value(const struct ess_valuemap *vm, int reverse, json_t *res,
                           struct ess_err *err)
{
    char buf[32];
    const char *text;
    const char *to;
    const char *leaf = NULL;
    json_t *v;
    json_t *parent;
    int nomem = 0;
    int rc;

    v = ess_event_path_get(res, vm->field);
    if (v == NULL) {
        return ESS_OK;
    }
    text = shape_value_text(v, buf, sizeof(buf), &rc);
    if (rc != ESS_OK) {
        return ess_err_set(err, ESS_ESHAPE,
                           "values: field '%s' is %s; code maps apply to strings, integers "
                           "and booleans",
                           vm->field, shape_kind(v));
    }
    to = text != NULL ? shape_map_find(&vm->map, text, reverse) : NULL;
    if (to == NULL) {
        return ESS_OK;
    }
    parent = shape_own_parent(res, vm->field, 0, &leaf, &nomem);
    if (parent == NULL || json_object_set_new(parent, leaf, json_string(to)) != 0) {
        return shape_nomem(err);
    }
    return ESS_OK;
}

/* One field's transform chain; the result replaces the value at its path. */
static int shape_one_transform(const struct ess_transform *t, json_t *res, struct ess_err *err)
{
    const char *field = ess_transform_field(t);
    json_t *v = ess_event_path_get(res, field);
    json_t *nv = NULL;
    json_t *parent;
    const char *leaf = NULL;
    int nomem = 0;
    int rc;

    rc = ess_transform_apply(t, res, v, &nv, err);
    if (rc != ESS_OK || nv == NULL || nv == v) {
        json_decref(nv);
        return rc;
    }
    parent = shape_own_parent(res, field, 1, &leaf, &nomem);
    if (parent == NULL && !nomem) {
        json_decref(nv);
        return ess_err_set(err, ESS_ESHAPE, "transforms.%s: a non-object value sits on the path",
                           field);
    }
    if (parent == NULL || json_object_set_new(parent, leaf, nv) != 0) {
        return shape_nomem(err);
    }
    return ESS_OK;
}

static int shape_transforms(const struct ess_manifest *m, json_t *res, struct ess_err *err)
{
    size_t i;
    int rc;

    for (i = 0; i < m->n_xforms; i++) {
        rc = shape_one_transform(m->xforms[i], res, err);
        if (rc != ESS_OK) {
            return rc;
        }
    }
    return ESS_OK;
}

static int shape_values(const struct ess_manifest *m, json_t *res, struct ess_err *err)
{
    size_t i;
    int rc;

    for (i = 0; i < m->n_values; i++) {
        rc = shape_one_value(&m->values[i], 0, res, err);
        if (rc != ESS_OK) {
            return rc;
        }
    }
    return ESS_OK;
}

/* After a nested field moved out ("owner.name" -> OWNER), remove the objects on
 * its path that it left empty, so the partner gets no "owner": {} husk. The
 * path's parents are already ours (shape_own_parent copied them). */
static void shape_prune_empty(json_t *res, const char *path)
{
    char buf[512];
    char *dot;
    json_t *parent;
    json_t *obj;

    snprintf(buf, sizeof(buf), "%s", path);
    for (;;) {
        dot = strrchr(buf, '.');
        if (dot == NULL) {
            return;
        }
        *dot = '\0';
        obj = ess_event_path_get(res, buf);
        if (obj == NULL || !json_is_object(obj) || json_object_size(obj) != 0) {
            return;
        }
        dot = strrchr(buf, '.');
        parent = dot != NULL ? NULL : res;
        if (dot != NULL) {
            *dot = '\0';
            parent = ess_event_path_get(res, buf);
            *dot = '.';
        }
        if (parent == NULL) {
            return;
        }
        json_object_del(parent, dot != NULL ? dot + 1 : buf);
    }
}

/* Move every renamed field in one pass -- all values read first, so a swap
 * {a: b, b: a} works. Forward: HMS names (dotted paths, emptied parents
 * pruned) -> partner names (top level). Inverse: the other way, re-nesting. */
static int shape_move(const struct ess_strmap *rn, int inverse, json_t *res, struct ess_err *err)
{
    json_t **vals;
    json_t *parent;
    const char *leaf = NULL;
    int nomem = 0;
    size_t i;

    if (rn->n == 0) {
        return ESS_OK;
    }
    vals = calloc(rn->n, sizeof(*vals));
    if (vals == NULL) {
        return shape_nomem(err);
    }
    for (i = 0; i < rn->n; i++) {
        vals[i] = json_incref(inverse ? json_object_get(res, rn->vals[i])
                                      : ess_event_path_get(res, rn->keys[i]));
    }
    for (i = 0; i < rn->n; i++) {
        if (inverse) {
            json_object_del(res, rn->vals[i]);
            continue;
        }
        parent = vals[i] != NULL ? shape_own_parent(res, rn->keys[i], 0, &leaf, &nomem) : NULL;
        if (parent != NULL) {
            json_object_del(parent, leaf);
            shape_prune_empty(res, rn->keys[i]);
        }
    }
    for (i = 0; i < rn->n; i++) {
        parent = vals[i] == NULL ? NULL
                 : inverse       ? shape_own_parent(res, rn->keys[i], 1, &leaf, &nomem)
                                 : res;
        if (parent != NULL && json_object_set(parent, inverse ? leaf : rn->vals[i], vals[i]) != 0) {
            nomem = 1;
        }
        json_decref(vals[i]);
    }
    free(vals);
    return nomem ? shape_nomem(err) : ESS_OK;
}

static int shape_is_identity(const struct ess_manifest *m)
{
    return m->fields.n == 0 && m->drop.n == 0 && m->n_xforms == 0 && m->n_values == 0 &&
           m->rename.n == 0;
}

int ess_shape_apply(const struct ess_manifest *m, json_t *data, json_t **out, struct ess_err *err)
{
    json_t *res = NULL;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (m == NULL || out == NULL || !json_is_object(data)) {
        return ess_err_set(err, ESS_EINVAL, "shape: need a manifest and an object to shape");
    }
    if (shape_is_identity(m)) {
        *out = json_incref(data);
        return ESS_OK;
    }
    if (m->fields.n > 0) {
        rc = shape_fields(m, data, &res, err);
    } else {
        res = json_copy(data);
        rc = res != NULL ? ESS_OK : shape_nomem(err);
    }
    if (rc == ESS_OK) {
        rc = shape_drop(m, res, err);
    }
    if (rc == ESS_OK) {
        rc = shape_transforms(m, res, err);
    }
    if (rc == ESS_OK) {
        rc = shape_values(m, res, err);
    }
    if (rc == ESS_OK) {
        rc = shape_move(&m->rename, 0, res, err);
    }
    if (rc != ESS_OK) {
        goto fail;
    }
    *out = res;
    return ESS_OK;
fail:
    json_decref(res);
    return rc;
}

int ess_shape_render(const struct ess_manifest *m, json_t *shaped, char **body, size_t *len,
                     const char **content_type, struct ess_err *err)
{
    return ess_render_body(m, shaped, body, len, content_type, err);
}

int ess_shape_render_text(const struct ess_manifest *m, const char *text, size_t len, char **body,
                          size_t *blen, const char **content_type)
{
    if (m == NULL || !shape_is_identity(m)) {
        return ESS_ENOTFOUND;
    }
    return ess_render_json_text(m, text, len, body, blen, content_type);
}

/* ---- inverse: partner record -> HMS record (ess-pull, ess-webhook) ------- */

/* Partner names back to source names: all partner values are read and removed
 * first, then set at the source paths (creating nesting), so swaps work. */
int ess_shape_inverse(const struct ess_manifest *m, json_t *record, json_t **out,
                      struct ess_err *err)
{
    json_t *res = NULL;
    size_t i;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (m == NULL || !json_is_object(record) || out == NULL) {
        return ess_err_set(err, ESS_EINVAL, "ess_shape_inverse: need a manifest and an object");
    }
    res = json_deep_copy(record);
    if (res == NULL) {
        return shape_nomem(err);
    }
    rc = shape_move(&m->rename, 1, res, err);
    for (i = 0; rc == ESS_OK && i < m->n_values; i++) {
        rc = shape_one_value(&m->values[i], 1, res, err);
    }
    if (rc != ESS_OK) {
        json_decref(res);
        return rc;
    }
    *out = res;
    return ESS_OK;
}
