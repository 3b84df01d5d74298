/*
 * ess_twoway -- two-way sync around a partner: the push connector records the
 * HMS changes it journals, and the reverse connectors (ess-pull, ess-webhook)
 * decide partner changes against them (ess_conflict), then record the
 * partner's version, audit what lost, and announce it on hms.ops as
 * ess.conflict.<id>.
 *
 * DESIGN
 * The pair is named once: the push manifest's skip_origins lists its reverse
 * connectors (already needed so their records are not sent back). The push
 * worker writes HMS's last change per key under each of those ids
 * (ess_store_conflict_hms_put), so a reverse connector reads only its own rows.
 * Only push connectors with skip_origins pay for it (one statement per burst,
 * in the same turn as the journal write, before the ack).
 * On the reverse side, per batch of partner records (one poll, one request):
 * load the keys' state (one query), decide each record as it is about to be
 * published, and, after the broker confirmed those publishes, commit the new
 * partner versions and the audit rows in one transaction. A retry after a
 * failure decides again against the same state: no duplicate audit rows.
 */
#ifndef ESS_TWOWAY_H
#define ESS_TWOWAY_H

#include <jansson.h>

#include "ess_bus.h"
#include "ess_err.h"
#include "ess_manifest.h"
#include "ess_store.h"

/* Push side: n journaled events (borrowed) become HMS's last change of their
 * keys for every id in m->skip_origins. A no-op without skip_origins. */
int ess_twoway_hms_record(struct ess_store *s, const struct ess_manifest *m,
                          const struct ess_store_event *ev, size_t n, struct ess_err *err);

/* A record's key field as text (string or integer); 0 when absent or another type. */
int ess_twoway_key_text(json_t *rec, const char *path, char *buf, size_t len);

/* Reverse side: the state of keys (JSON array of strings, borrowed) as a new
 * object (ess_store_conflict_get). */
int ess_twoway_load(const struct ess_manifest *m, struct ess_store *s, json_t *keys, json_t **state,
                    struct ess_err *err);

/* Decide one partner record (mapped back, borrowed) of key against state
 * (borrowed, from ess_twoway_load). *resolved: a new reference to what to
 * publish; *entry: a new {key, body, ms, hms_ms, losses} to pass to
 * ess_twoway_commit once the publish was confirmed. now_ms is the partner
 * time when the record has no readable conflict.updated_at_field. */
int ess_twoway_decide(const struct ess_manifest *m, json_t *state, const char *key, json_t *rec,
                      long long now_ms, json_t **resolved, json_t **entry, struct ess_err *err);

/* Commit entries (a JSON array, borrowed) in one transaction, then announce
 * each entry with losses on ops_exchange as ess.conflict.<id> (bus may be NULL:
 * not announced). ESS_ESTORE when nothing was committed; ESS_EBUS when the
 * audit is committed but an announcement failed. *conflicts (may be NULL)
 * gets how many fields were decided. */
int ess_twoway_commit(const struct ess_manifest *m, struct ess_store *s, struct ess_bus *bus,
                      const char *ops_exchange, json_t *entries, size_t *conflicts,
                      struct ess_err *err);

#endif
