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
 * received_ms bigint, journaled_at timestamptz, part smallint: the key's
 * partition with replicas, else NULL) PRIMARY KEY (connector, seq),
 * UNIQUE (connector, event_id), an index on key (migration 10):
 * a burst of events is one multi-row INSERT ... ON CONFLICT DO NOTHING in one
 * transaction (parameters, never escaping by hand), and the caller acks the
 * burst only after that COMMIT. The worker pipelines it (journal_send /
 * journal_finish: libpq's asynchronous API, one statement pending per store).
 * ess_offsets(connector, delivered_seq): the low-water mark. Every journal row
 * with seq <= delivered_seq was delivered or parked; a restarted worker resumes
 * after it. ess_dead_letters: parked events with reason and attempts.
 * ess_delta_state(connector, key, state): the shaped record last delivered per
 * key, for `delta: true` (migration 4).
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
    /* A partition read (journal_read_parts_send): every row in (after_seq,
     * covered] that is not in v is another partition's; -1 when it looked at
     * nothing (and for other reads). more: the journal may hold rows past
     * covered. */
    long long covered;
    int more;
    size_t scanned; /* journal rows the read looked at (a plain read: n) */
};

/* Connect with a libpq conninfo string or URI. NULL with err on failure.
 * Timeouts, keepalives and gssencmode=disable (unless PGGSSENCMODE is set)
 * are defaults: the conninfo's own values win. */
struct ess_store *ess_store_new(const char *conninfo, struct ess_err *err);
void ess_store_free(struct ess_store *s);

/* "host:port" of the server this session is connected to (with a multi-host
 * conninfo: the one libpq chose). Writes into buf, returns buf. */
const char *ess_store_peer(const struct ess_store *s, char *buf, size_t len);

/* Reconnect after a failure. */
int ess_store_reset(struct ess_store *s, struct ess_err *err);

/* Apply pending migrations (idempotent, concurrency-safe). */
int ess_store_migrate(struct ess_store *s, struct ess_err *err);

/* Journal n events in one transaction; *inserted (may be NULL) gets how many
 * were new (the rest were duplicates). seqs (may be NULL, else n entries)
 * gets each new event's journal seq, -1 for a duplicate, or -2 everywhere when
 * they could not be matched (then read them back with journal_read). */
int ess_store_journal_append(struct ess_store *s, const char *connector,
                             const struct ess_store_event *ev, size_t n, size_t *inserted,
                             long long *seqs, struct ess_err *err);

/* on: every journal_append and journal_send is one transaction holding a
 * per-connector advisory lock (replicas: several processes append to one
 * journal, and readers must see seqs commit in order; journal_send takes it
 * in its one statement). Off (the default) for one writer. */
void ess_store_journal_lock(struct ess_store *s, int on);

/* Replicas (migration 9): with fn set, every append fills ess_journal.part
 * with fn(key) (0..32767), so each replica can read only its partitions.
 * NULL (the default) leaves part NULL: one worker's appends are as before. */
typedef unsigned (*ess_store_part_fn)(const char *key);
void ess_store_journal_partition(struct ess_store *s, ess_store_part_fn fn);

/* The libpq connection (PGconn) for modules with their own tables
 * (ess_replica). Borrowed: valid until ess_store_free/reset. A pending
 * append or read is waited for first (its result kept for its finish). */
struct pg_conn *ess_store_pg(struct ess_store *s);

/* The journal pipelined: send a burst's INSERT (one statement, so one
 * transaction) and return at once; the caller keeps polling journal_finish
 * (with ess_store_fd() in its poll set) while it delivers earlier events, and
 * acks the burst only once finish reports it done with ESS_OK: the statement
 * and its implicit COMMIT are over, the rows durable. One append may be
 * pending per store; any other call on the store waits for it first (its
 * result is still kept for finish). n is 1..ESS_STORE_SEND_MAX; ev is only
 * read during send. finish takes the same ev and n (to match the returned
 * seqs) and fills *inserted / seqs like journal_append; block != 0 waits.
 * *done is 0 while the server is still at it. On an error the append is over
 * and nothing of it can be relied on: journal the burst again. */
#define ESS_STORE_SEND_MAX 1000
int ess_store_journal_send(struct ess_store *s, const char *connector,
                           const struct ess_store_event *ev, size_t n, struct ess_err *err);
int ess_store_journal_finish(struct ess_store *s, const struct ess_store_event *ev, size_t n,
                             int block, int *done, size_t *inserted, long long *seqs,
                             struct ess_err *err);
/* The same for a journal read: read_send starts what journal_read does;
 * read_finish fills rows (release with ess_store_rows_fini, also on failure)
 * once *done. An append and a read share the one pending slot. */
int ess_store_journal_read_send(struct ess_store *s, const char *connector, long long after_seq,
                                int limit, struct ess_err *err);
int ess_store_journal_read_finish(struct ess_store *s, int block, int *done,
                                  struct ess_store_rows *rows, struct ess_err *err);
/* A replica's read, pipelined like read_send: the server looks at the next
 * scan rows after after_seq and returns those of the partitions in parts
 * (bit i = partition i, as ess_store_journal_partition filled them) or of
 * none (NULL part), at most limit, in seq order; read_finish also sets
 * rows->covered and rows->more. Needs the per-connector append lock on the
 * writers (seqs commit in order), so that nothing commits later below covered. */
int ess_store_journal_read_parts_send(struct ess_store *s, const char *connector,
                                      long long after_seq, int scan, int limit, uint64_t parts,
                                      struct ess_err *err);
/* 1 while an append or a read is pending (sent, result not yet taken). */
int ess_store_journal_pending(const struct ess_store *s);
/* 1 when the pending statement's result is already in (another call waited for
 * it): finish returns at once, and its socket will not become readable. */
int ess_store_journal_ready(const struct ess_store *s);
/* The session's socket (readable when the server answers), -1 without one. */
int ess_store_fd(const struct ess_store *s);

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

/* Park one event in ess_dead_letters with status "parked" (status NULL) or
 * "held" (waiting behind a parked event of its key); last_status 0 = none.
 * A row already there (a replayed event) is updated and open again. */
int ess_store_park(struct ess_store *s, const char *connector, const struct ess_store_row *row,
                   const char *reason, int attempts, const char *status, long last_status,
                   struct ess_err *err);

/* Journal rows after the offset (the backlog). */
int ess_store_backlog(struct ess_store *s, const char *connector, long long after_seq,
                      long long *count, struct ess_err *err);

/* Delete journal rows older than window_sec that are at or below the offset,
 * and heartbeat rows of instances silent for a day. */
int ess_store_retain(struct ess_store *s, const char *connector, long long upto_seq,
                     long window_sec, struct ess_err *err);

/* One bounded step of the same sweep, for a worker's loop: among the oldest
 * `limit` journal rows, those older than journal_sec and at or below upto_seq;
 * among the connector's oldest `limit` tickets, those older than tickets_sec
 * (0: tickets are kept). *deleted is the larger of the two counts: while it
 * equals limit there is more to sweep. */
int ess_store_retain_batch(struct ess_store *s, const char *connector, long long upto_seq,
                           long journal_sec, long tickets_sec, int limit, long long *deleted,
                           struct ess_err *err);

/* ---- the operator's controls, seen by a running worker (deploy/hms.h) ---- */

struct ess_store_controls {
    int paused;
    long long replay_id;         /* bumped by `hms ess replay` */
    long long replay_done_id;    /* the last replay the worker applied */
    long long replay_from_seq;   /* -1 when none */
    long long replay_to_seq;     /* -1: open-ended */
    long long replay_resume_seq; /* -1: none; offset when the replay was applied */
    char replay_key[256];
    int has_replay_key;
};

/* The connector's controls; all zero / -1 when it has no row. */
int ess_store_controls_get(struct ess_store *s, const char *connector, struct ess_store_controls *c,
                           struct ess_err *err);

/* Apply replay request replay_id: offset := new_offset, replay_done_id :=
 * replay_id, replay_resume_seq := resume_seq, in one statement. */
int ess_store_replay_apply(struct ess_store *s, const char *connector, long long replay_id,
                           long long new_offset, long long resume_seq, struct ess_err *err);

/* Upsert this instance's latest heartbeat (the previous one kept for rates). */
int ess_store_heartbeat_put(struct ess_store *s, const char *connector, const char *instance,
                            const char *state, int heartbeat_sec, const char *body,
                            struct ess_err *err);

struct ess_store_ticket { /* one final outcome of a change; borrowed strings */
    long long seq;
    const char *event_id;
    const char *key;
    const char *outcome; /* delivered | parked | held */
    int attempts;
    long last_status;       /* 0: none */
    const char *last_error; /* NULL or "": none */
    long long first_ms;     /* first attempt, epoch ms; 0: none */
};

/* Record n tickets (multi-row INSERTs, one round trip per 500). */
int ess_store_tickets_append(struct ess_store *s, const char *connector,
                             const struct ess_store_ticket *t, size_t n, struct ess_err *err);

/* Side writes that the caller does not wait for (ess-push's audit rows,
 * tickets and offset, on a second session): pipe_begin opens a libpq
 * pipeline, pipe_exec / tickets_send / pipe_offset queue statements,
 * pipe_commit ends them with a sync point, and every statement up to it is
 * one implicit transaction: all of it commits, or none of it (one failure
 * aborts the rest). pipe_poll (block != 0 waits) writes out what the socket
 * did not take yet and reads results; *done once the transaction is over,
 * ESS_OK only when it committed. pipe_writing: output still waits for the
 * socket (poll again soon). No other call on the store while pipe_busy. */
int ess_store_pipe_begin(struct ess_store *s, struct ess_err *err);
int ess_store_pipe_exec(struct ess_store *s, const char *sql, int nparams, const char *const *vals,
                        struct ess_err *err);
int ess_store_tickets_send(struct ess_store *s, const char *connector,
                           const struct ess_store_ticket *t, size_t n, struct ess_err *err);
/* The delivered offset, as ess_store_offset_set (synchronous commit). */
int ess_store_pipe_offset(struct ess_store *s, const char *connector, long long seq,
                          struct ess_err *err);
int ess_store_pipe_commit(struct ess_store *s, struct ess_err *err);
int ess_store_pipe_poll(struct ess_store *s, int block, int *done, struct ess_err *err);
int ess_store_pipe_busy(const struct ess_store *s);
int ess_store_pipe_writing(const struct ess_store *s);
/* More side work, each its own pipeline: the operator's controls (as
 * ess_store_controls_get: pipe_controls_take once done), the backlog (as
 * ess_store_backlog: pipe_count(s, 0) once done), a heartbeat (as
 * ess_store_heartbeat_put), a retention step (as ess_store_retain_batch:
 * pipe_count(s, 0) journal rows, pipe_count(s, 2) tickets). pipe_count:
 * statement stmt's row count (its value when it returned one row), -1 none. */
struct ess_store_controls;
int ess_store_pipe_controls(struct ess_store *s, const char *connector, struct ess_err *err);
void ess_store_pipe_controls_take(const struct ess_store *s, struct ess_store_controls *c);
int ess_store_pipe_backlog(struct ess_store *s, const char *connector, long long after_seq,
                           struct ess_err *err);
int ess_store_pipe_heartbeat(struct ess_store *s, const char *connector, const char *instance,
                             const char *state, int heartbeat_sec, const char *body,
                             struct ess_err *err);
int ess_store_pipe_retain(struct ess_store *s, const char *connector, long long upto_seq,
                          long journal_sec, long tickets_sec, int limit, struct ess_err *err);
long long ess_store_pipe_count(const struct ess_store *s, int stmt);

/* Keys with an open dead letter (parked, held, retry), as a JSON object used
 * as a set (key -> true); a new reference. */
int ess_store_dlq_open_keys(struct ess_store *s, const char *connector, json_t **keys,
                            struct ess_err *err);

/* Up to limit rows to re-send: per key, its oldest open row when that row is
 * "retry" or "held" (a "parked" head keeps its key blocked). */
int ess_store_dlq_next(struct ess_store *s, const char *connector, int limit,
                       struct ess_store_rows *rows, struct ess_err *err);

/* Move one dead letter to status (delivered, parked...); reason NULL keeps it. */
int ess_store_dlq_set(struct ess_store *s, const char *connector, long long seq, const char *status,
                      const char *reason, long last_status, struct ess_err *err);

/* Generic parameterized statements for the operator side (hms): never on a
 * worker's hot path. query_json returns the rows as a JSON array of objects
 * (column -> text or null), a new reference the caller json_decref()s.
 * exec runs a command; *affected (may be NULL) gets the row count. */
int ess_store_query_json(struct ess_store *s, const char *sql, int nparams,
                         const char *const *params, json_t **rows, struct ess_err *err);
int ess_store_exec(struct ess_store *s, const char *sql, int nparams, const char *const *params,
                   long long *affected, struct ess_err *err);

/* ---- ess-pull: since-cursor and per-key record hashes (migration 3) ---- */

/* The connector's cursor into cursor (len bytes, truncated), "" when none. */
int ess_store_pull_cursor_get(struct ess_store *s, const char *connector, char *cursor, size_t len,
                              struct ess_err *err);

/* Stored hashes of keys (a JSON array of strings, borrowed) as a new object
 * key -> hash (keys without a row are absent); the caller json_decref()s it. */
int ess_store_pull_hashes_get(struct ess_store *s, const char *connector, json_t *keys,
                              json_t **hashes, struct ess_err *err);

/* In one transaction: upsert hashes (object key -> hash, borrowed) and, when
 * cursor is not NULL, set the cursor. Called only after the broker confirmed
 * every publish these hashes stand for. */
int ess_store_pull_commit(struct ess_store *s, const char *connector, const char *cursor,
                          json_t *hashes, struct ess_err *err);

/* ---- delta: true: the shaped record last delivered per key (migration 4) ---- */

/* The stored states of keys (a JSON array of strings, borrowed) as a new
 * object key -> state object (keys never delivered are absent). */
int ess_store_delta_get(struct ess_store *s, const char *connector, json_t *keys, json_t **states,
                        struct ess_err *err);

/* Upsert states (object key -> state object, borrowed) in one statement.
 * Written after the partner's 2xx, before the offset passes those events. */
int ess_store_delta_put(struct ess_store *s, const char *connector, json_t *states,
                        struct ess_err *err);
/* ---- two-way sync: conflict state and audit (migration 5, ess_conflict.h) ---- */

/* The push connector `from` journaled HMS changes: record each as HMS's last
 * change of its key for every reverse connector in connectors (a JSON array
 * text of ids: from's skip_origins). events: JSON array text of {key, body
 * (the record as JSON text), ms (received, epoch ms)}; a later ms wins. */
int ess_store_conflict_hms_put(struct ess_store *s, const char *from, const char *connectors,
                               const char *events, struct ess_err *err);

/* State of keys (a JSON array of strings, borrowed) as a new object key ->
 * {hms_body, hms_ms, partner_body, partner_ms} (null where unknown); keys
 * without a row are absent. The caller json_decref()s it. */
int ess_store_conflict_get(struct ess_store *s, const char *connector, json_t *keys, json_t **state,
                           struct ess_err *err);

/* In one transaction: each entry {key, body, ms, hms_ms, losses: [{field,
 * strategy, winner, winner_value, loser_value}], and optionally hms_body +
 * hms_stored_ms} (borrowed) becomes the key's last partner change; hms_body
 * (HMS's state once it applied the published record) replaces HMS's last
 * change only while that is still the one stored at hms_stored_ms; each loss
 * is one ess_conflicts row. */
int ess_store_conflict_commit(struct ess_store *s, const char *connector, json_t *entries,
                              struct ess_err *err);

/* ---- ess-reconcile: the last state ESS knows per key of a push connector ---- */

/* Called per key in key order with the record's JSON text (borrowed for the
 * call); a non-ESS_OK return stops the walk and is returned. */
typedef int (*ess_store_latest_fn)(void *arg, const char *key, const char *body);

/* Stream (a server-side cursor, 5000 rows a round trip) the latest body per
 * key: the journal's newest row, or HMS's last change recorded for conflicts
 * when that is newer (it outlives replay_window). */
int ess_store_latest_each(struct ess_store *s, const char *connector, ess_store_latest_fn cb,
                          void *arg, struct ess_err *err);

#endif
