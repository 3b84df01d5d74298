/*
 * ess_delta -- `delta: true`: send a partner only what changed since the last
 * delivery of a key.
 *
 * DESIGN
 * The diff runs on SHAPED records (after fields, drop, transforms, values,
 * rename): what was delivered is what the partner saw, in its own names. It is
 * top-level and by value (json_equal: a nested object is one value). The key
 * field (the partner name of the manifest's `key`) is always kept, so the
 * partner knows which record the change is for. A field absent from the new
 * record is not a change (events may be partial): it is neither sent nor
 * forgotten. After a 2xx the key's state becomes the previous state updated
 * with the record (ess_delta_merge); the worker keeps it in Postgres
 * (ess_store_delta_*). A first delivery (no state) sends everything; a change
 * with no changed field sends nothing (the worker records it as "skipped").
 *
 * Pure functions of their arguments: no I/O, no globals.
 * Ownership: arguments are borrowed; *out is a new reference the caller
 * json_decref()s.
 */
#ifndef ESS_DELTA_H
#define ESS_DELTA_H

#include <stddef.h>

#include <jansson.h>

#include "ess_err.h"
#include "ess_manifest.h"

/* The top-level field of shaped records that carries the key: `rename` of
 * `key` when it has one, else the key's first path segment. Points into m. */
const char *ess_delta_key_field(const struct ess_manifest *m, size_t *len);

/* shaped minus what last already holds with an equal value, plus the key
 * field. last NULL: everything. *changed = fields that differ (the key field
 * counts only when it changed). ESS_EINVAL when shaped is not an object. */
int ess_delta_diff(const json_t *last, const json_t *shaped, const char *key_field,
                   size_t key_len, json_t **out, size_t *changed, struct ess_err *err);

/* The partner's state after shaped was delivered: a copy of last (NULL: {})
 * updated with shaped's fields. */
int ess_delta_merge(const json_t *last, const json_t *shaped, json_t **out, struct ess_err *err);

#endif
