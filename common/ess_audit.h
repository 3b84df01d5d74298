/*
 * ess_audit -- the tamper-evident audit log: an append-only, hash-chained
 * table (ess_audit, migration 7) with one chain per connector. Rows record
 * every delivery attempt a push worker makes and every manifest version
 * `hms ess deploy` records.
 *
 * DESIGN
 * - Row n of a chain carries hash = SHA-256 over
 *     prev_hash "\n" n "\n" chain "\n" kind "\n" at_ms "\n" content
 *   (hex; prev_hash of row 1 is 64 zeros), content being the record as
 *   compact JSON with sorted keys. Altering any column of a row, or removing
 *   a row, breaks the chain at that row; `hms ess audit verify` walks it
 *   (ess_audit_walk_*) and names the first row that does not hold.
 *   Removing the newest rows leaves a valid shorter chain: the worker's
 *   heartbeat carries nothing about it; SECURITY.md says so.
 * - Delivery attempts are stored in rows of kind "attempts": up to 100
 *   consecutive attempts per row, content a JSON array of the attempt
 *   objects, each with its own "at_ms" (the row's at_ms is its first's).
 *   Every attempt is still on the chain -- altering one alters its row --
 *   while the table pays one row, one index entry and one hash per hundred
 *   (a row per attempt was ~40 % of Postgres's time in a benchmark drain).
 *   Chains written before this hold one row of kind "attempt" per attempt
 *   (content the object alone); both verify alike. Any other record
 *   (manifest, gap) is a row of its own.
 * - Appending is cheap: records are queued in memory (ess_audit_add) and
 *   written by ess_audit_flush as one multi-row INSERT, the hashes computed
 *   here from the chain head kept in memory. (chain, n) is the primary key,
 *   so a concurrent writer (`hms ess deploy` while the worker runs, a second
 *   instance) makes the INSERT fail as a whole; the head is then read again
 *   and the batch retried once. A trigger refuses UPDATE, DELETE and TRUNCATE.
 * - While Postgres is down records stay queued, at most ESS_AUDIT_QUEUE_MAX;
 *   past that the oldest are dropped and the next flush writes a "gap" row
 *   saying how many, so a loss is itself on the record.
 */
#ifndef ESS_AUDIT_H
#define ESS_AUDIT_H

#include <stddef.h>

#include <jansson.h>

#include "ess_err.h"
#include "ess_store.h"

#define ESS_AUDIT_HASH_HEX 65 /* 64 hex digits + NUL */
#define ESS_AUDIT_QUEUE_MAX 100000

/* Migration 7 (ess_store.c's table): the table and its append-only triggers. */
#define ESS_AUDIT_MIGRATION_SQL                                                          \
    "CREATE TABLE ess_audit ("                                                           \
    "  chain text NOT NULL,"                                                             \
    "  n bigint NOT NULL,"                                                               \
    "  kind text NOT NULL,"                                                              \
    "  at_ms bigint NOT NULL,"                                                           \
    "  content text NOT NULL,"                                                           \
    "  prev_hash text NOT NULL,"                                                         \
    "  hash text NOT NULL,"                                                              \
    "  PRIMARY KEY (chain, n));"                                                         \
    "CREATE FUNCTION ess_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"        \
    " $f$ BEGIN RAISE EXCEPTION 'ess_audit is append-only (% refused)', TG_OP; END $f$;" \
    "CREATE TRIGGER ess_audit_no_change BEFORE UPDATE OR DELETE ON ess_audit"            \
    "  FOR EACH ROW EXECUTE FUNCTION ess_audit_append_only();"                           \
    "CREATE TRIGGER ess_audit_no_truncate BEFORE TRUNCATE ON ess_audit"                  \
    "  FOR EACH STATEMENT EXECUTE FUNCTION ess_audit_append_only();"

/* The hash of one row (see DESIGN) as lowercase hex into out. prev_hex must
 * be 64 hex digits. ESS_EINVAL on NULL arguments. */
int ess_audit_hash(const char *prev_hex, long long n, const char *chain, const char *kind,
                   long long at_ms, const char *content, char out[ESS_AUDIT_HASH_HEX]);

/* ---- appending ---------------------------------------------------------- */

struct ess_audit;

/* A writer for one chain (the connector id, copied). NULL when out of memory. */
struct ess_audit *ess_audit_new(const char *chain);
void ess_audit_free(struct ess_audit *a);

/* Queue one record: kind ("attempt", "manifest"...), content an object
 * (borrowed; serialized now). ESS_ENOMEM or ESS_EINVAL; never blocks. */
int ess_audit_add(struct ess_audit *a, const char *kind, long long at_ms, json_t *content);

/* An attempt row's content, as ess_audit_add would serialize
 * {seq, event_id, key, status[, error]} (null for a NULL event_id or key; no error
 * when NULL or empty), built without jansson when no value needs escaping.
 * Caller frees; NULL when out of memory. */
char *ess_audit_attempt_content(long long seq, const char *event_id, const char *key, long status,
                                const char *error);

/* Queue one delivery attempt: the journal seq, event id (= the
 * Idempotency-Key sent), key, HTTP status (0: none) and, when it failed, the
 * error line; at_ms is the wall clock now. It is stored in an "attempts" row
 * with the attempts queued next to it (DESIGN). */
int ess_audit_attempt(struct ess_audit *a, long long seq, const char *event_id, const char *key,
                      long status, const char *error);

/* Records (attempts count one each) queued and not yet written. */
size_t ess_audit_pending(const struct ess_audit *a);

/* Write every queued record (chunks of up to 500 rows per INSERT). On
 * failure the unwritten records stay queued and the cached head is dropped. */
int ess_audit_flush(struct ess_audit *a, struct ess_store *s, struct ess_err *err);

/* The same without waiting, in a pipeline of s (ess_store_pipe_begin):
 * ess_audit_head (before the pipeline: it may read the chain's head) then
 * ess_audit_send queues INSERTs for the oldest records, at least max of
 * them when there are (whole chunks), *sent of them. They stay queued
 * until ess_audit_sent(a, 1) after the pipeline committed; ess_audit_sent(a, 0)
 * when it did not (the head is read again next time). One send at a time;
 * records added meanwhile queue behind it. */
int ess_audit_head(struct ess_audit *a, struct ess_store *s, struct ess_err *err);
int ess_audit_send(struct ess_audit *a, struct ess_store *s, size_t max, size_t *sent,
                   struct ess_err *err);
void ess_audit_sent(struct ess_audit *a, int committed);

/* ---- verifying ---------------------------------------------------------- */

struct ess_audit_row { /* one stored row, borrowed strings */
    long long n;
    const char *kind;
    long long at_ms;
    const char *content;
    const char *prev_hash;
    const char *hash;
};

struct ess_audit_walk {
    long long next_n;              /* the n the next row must carry */
    char head[ESS_AUDIT_HASH_HEX]; /* hash of the last good row */
    long long bad_n;               /* 0, or the first row that does not hold */
};

void ess_audit_walk_init(struct ess_audit_walk *w);

/* Check the next row (rows in n order). ESS_OK, or ESS_EPARSE with err
 * naming the row and what is wrong: "row N removed", "row N altered", ... */
int ess_audit_walk_step(struct ess_audit_walk *w, const char *chain,
                        const struct ess_audit_row *row, struct ess_err *err);

/* Read chain from the store in pages and walk it; *rows gets how many were
 * read. ESS_OK with an intact chain, ESS_EPARSE naming the first bad row. */
int ess_audit_verify(struct ess_store *s, const char *chain, long long *rows, struct ess_err *err);

#endif
