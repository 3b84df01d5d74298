/*
 * ess_store -- Postgres through libpq: the journal, delivered offsets and
 * dead letters, and the schema migrations that create them.
 *
 * DESIGN
 * Migrations are a static list of versioned SQL steps, applied at start under
 * pg_advisory_lock so two workers starting at once do not race; each applied
 * version is recorded in ess_schema_migrations, so re-running is a no-op.
 *
 * ess_journal(seq bigserial, connector, event_id, key, topic, body text,
 * received_ms bigint, journaled_at timestamptz) UNIQUE (connector, event_id):
 * a burst of events is one multi-row INSERT ... ON CONFLICT DO NOTHING in one
 * transaction (parameters, never escaping by hand), and the caller acks the
 * burst only after that COMMIT.
 * ess_offsets(connector, delivered_seq): the low-water mark. Every journal row
 * with seq <= delivered_seq was delivered or parked; a restarted worker resumes
 * after it. ess_dead_letters: parked events with reason and attempts.
 *
 * Connection loss is ESS_ESTORE; ess_store_reset() reconnects (the caller paces
 * the attempts). Strings returned in rows are malloc'd copies owned by the rows.
 */
#ifndef ESS_STORE_H
#define ESS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ess_err.h"

struct ess_store;

struct ess_store_event { /* one event to journal; borrowed strings */
    const char *event_id;
    const char *key;
    const char *topic;
    const char *body; /* JSON text of the data to shape */
    long long received_ms;
};

struct ess_store_row { /* one journaled event; owned by ess_store_rows */
    long long seq;
    char *event_id;
    char *key;
    char *body;
    long long received_ms;
};

struct ess_store_rows {
    struct ess_store_row *v;
    size_t n;
};

/* Connect with a libpq conninfo string or URI. NULL with err on failure. */
struct ess_store *ess_store_new(const char *conninfo, struct ess_err *err);
void ess_store_free(struct ess_store *s);

/* Reconnect after a failure. */
int ess_store_reset(struct ess_store *s, struct ess_err *err);

/* Apply pending migrations (idempotent, concurrency-safe). */
int ess_store_migrate(struct ess_store *s, struct ess_err *err);

/* Journal n events in one transaction; *inserted (may be NULL) gets how many
 * were new (the rest were duplicates). */
int ess_store_journal_append(struct ess_store *s, const char *connector,
                             const struct ess_store_event *ev, size_t n, size_t *inserted,
                             struct ess_err *err);

/* Rows with seq > after_seq, in seq order, at most limit. rows is filled
 * (release with ess_store_rows_fini even on failure). */
int ess_store_journal_read(struct ess_store *s, const char *connector, long long after_seq,
                           int limit, struct ess_store_rows *rows, struct ess_err *err);

void ess_store_rows_fini(struct ess_store_rows *rows);

/* Delivered offset (0 when the connector has none yet). */
int ess_store_offset_get(struct ess_store *s, const char *connector, long long *seq,
                         struct ess_err *err);
int ess_store_offset_set(struct ess_store *s, const char *connector, long long seq,
                         struct ess_err *err);

/* Park one event in ess_dead_letters. */
int ess_store_park(struct ess_store *s, const char *connector, const struct ess_store_row *row,
                   const char *reason, int attempts, struct ess_err *err);

/* Journal rows after the offset (the backlog). */
int ess_store_backlog(struct ess_store *s, const char *connector, long long after_seq,
                      long long *count, struct ess_err *err);

/* Delete journal rows older than window_sec that are at or below the offset. */
int ess_store_retain(struct ess_store *s, const char *connector, long long upto_seq,
                     long window_sec, struct ess_err *err);

/* Generic parameterized statements for the operator side (hms): never on a
 * worker's hot path. query_json returns the rows as a JSON array of objects
 * (column -> text or null), a new reference the caller json_decref()s.
 * exec runs a command; *affected (may be NULL) gets the row count. */
int ess_store_query_json(struct ess_store *s, const char *sql, int nparams,
                         const char *const *params, json_t **rows, struct ess_err *err);
int ess_store_exec(struct ess_store *s, const char *sql, int nparams, const char *const *params,
                   long long *affected, struct ess_err *err);

#endif
