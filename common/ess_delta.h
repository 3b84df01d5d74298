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
 * The diff and merge are pure functions of their arguments. A book keeps a
 * worker's states in memory: known (a cache of what Postgres holds), in flight
 * (a key's next state until its delivery lands: one delivery per key at a
 * time) and unsaved (landed, to be written before the offset passes them). It
 * does no I/O: the worker reads and writes Postgres around it.
 * Ownership: arguments are borrowed; *out is a new reference the caller
 * json_decref()s. A book is freed with ess_delta_book_free (NULL: no-op).
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
int ess_delta_diff(const json_t *last, const json_t *shaped, const char *key_field, size_t key_len,
                   json_t **out, size_t *changed, struct ess_err *err);

/* The partner's state after shaped was delivered: a copy of last (NULL: {})
 * updated with shaped's fields. */
int ess_delta_merge(const json_t *last, const json_t *shaped, json_t **out, struct ess_err *err);

struct ess_delta_book;

struct ess_delta_book *ess_delta_book_new(void);
void ess_delta_book_free(struct ess_delta_book *b);

/* What the partner has for key, borrowed until the next call on b; NULL when
 * the book does not know (ask the store, then learn). */
json_t *ess_delta_book_known(const struct ess_delta_book *b, const char *key);

/* Remember a state read from the store (a reference is taken). */
void ess_delta_book_learn(struct ess_delta_book *b, const char *key, json_t *state);

/* What to send for key: ess_delta_diff of shaped against last (borrowed; NULL
 * or whole = 1: everything), and the key's next state staged as in flight.
 * *send is a new reference; *changed as for ess_delta_diff. */
int ess_delta_book_stage(struct ess_delta_book *b, const char *key, const json_t *last,
                         const json_t *shaped, const char *key_field, size_t key_len, int whole,
                         json_t **send, size_t *changed, struct ess_err *err);

/* The key's delivery landed (2xx, or nothing needed sending): its staged
 * state becomes known and unsaved. dropped: it did not (parked). */
void ess_delta_book_landed(struct ess_delta_book *b, const char *key);
void ess_delta_book_dropped(struct ess_delta_book *b, const char *key);

/* Landed states not yet written (object key -> state, borrowed), or NULL when
 * there are none; saved() once they are in the store. */
json_t *ess_delta_book_unsaved(const struct ess_delta_book *b);
void ess_delta_book_saved(struct ess_delta_book *b);

#endif
