/*
 * ess_delta -- the diff behind `delta: true`; see ess_delta.h.
 */
#include "ess_delta.h"

#include <string.h>

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

int ess_delta_diff(const json_t *last, const json_t *shaped, const char *key_field,
                   size_t key_len, json_t **out, size_t *changed, struct ess_err *err)
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
    json_object_foreach((json_t *)shaped, name, value) {
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
