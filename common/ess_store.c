/*
 * ess_store -- Postgres through libpq: journal, offsets, dead letters and the
 * schema migrations that create them.
 *
 * DESIGN
 * Every value travels as a libpq parameter; the only SQL text built here is the
 * "($1,$2,...),(...)" placeholder list of the multi-row journal INSERT.
 * Statements run often (read, offsets, backlog, the full-chunk INSERT) are
 * prepared once per session; a session that is reset forgets them, so the
 * prepared set is cleared on reset.
 *
 * journal_append sends a burst as INSERT ... VALUES (...),(...) ON CONFLICT
 * (connector, event_id) DO NOTHING in chunks of APPEND_CHUNK rows (5 parameters
 * a row, well under the protocol's 65535), one round trip per chunk. A burst
 * that fits in one chunk is one statement, hence atomic without BEGIN/COMMIT;
 * a larger one is wrapped in BEGIN/COMMIT so the caller's ack still covers a
 * single transaction.
 *
 * journal_send, the worker's pipelined path (libpq's asynchronous API, one
 * statement pending per session), sends a burst of up to 1000 events as one
 * prepared INSERT ... SELECT FROM unnest($2::text[], ...): five parameters in
 * PostgreSQL's binary array format, so the server neither parses nor plans a
 * statement per burst. It goes without ON CONFLICT (cheaper per row) until a
 * burst meets a duplicate (SQLSTATE 23505: the statement inserted nothing);
 * journal_finish then sends that burst again with ON CONFLICT DO NOTHING, as
 * the next few. journal_read_send pipelines the refill read the same way.
 *
 * The session carries connect_timeout, TCP keepalives and a statement_timeout
 * so that a dead or stuck server turns into ESS_ESTORE, never a hang. Values
 * from the caller's conninfo win over these defaults.
 */
#include "ess_store.h"

#include "ess_audit.h"
#include "ess_log.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define APPEND_CHUNK ESS_STORE_SEND_MAX
#define APPEND_COLS 5          /* event_id, key, topic, body, received_ms ($1 is connector) */
#define APPEND_ARRS 6          /* the same as arrays, and each key's partition (replicas) */
#define TICKET_ARRAYS 8        /* seq, event_id, key, outcome, attempts, status, error, first_ms */
#define NUM_MAX 24             /* a long long in decimal, with sign and NUL */
#define MIGRATE_LOCK "4539501" /* pg_advisory_lock key: "ESS" schema migrations */
#define PIPE_COUNTED 4         /* statements of a pipeline whose row counts are kept */

/* ------------------------------------------------------------ migrations -- */

struct migration {
    int version;
    const char *sql;
};

static const struct migration migrations[] = {
    {1, "CREATE TABLE ess_journal ("
        "  seq bigserial PRIMARY KEY,"
        "  connector text NOT NULL,"
        "  event_id text NOT NULL,"
        "  key text NOT NULL,"
        "  topic text,"
        "  body text NOT NULL,"
        "  received_ms bigint NOT NULL,"
        "  journaled_at timestamptz NOT NULL DEFAULT now(),"
        "  UNIQUE (connector, event_id));"
        "CREATE INDEX ess_journal_connector_seq ON ess_journal (connector, seq);"
        "CREATE INDEX ess_journal_connector_key_seq ON ess_journal (connector, key, seq);"
        "CREATE TABLE ess_offsets ("
        "  connector text PRIMARY KEY,"
        "  delivered_seq bigint NOT NULL,"
        "  updated_at timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE ess_dead_letters ("
        "  id bigserial PRIMARY KEY,"
        "  connector text NOT NULL,"
        "  seq bigint NOT NULL,"
        "  event_id text NOT NULL,"
        "  key text NOT NULL,"
        "  body text NOT NULL,"
        "  reason text,"
        "  attempts int NOT NULL DEFAULT 0,"
        "  parked_at timestamptz NOT NULL DEFAULT now(),"
        "  UNIQUE (connector, seq));"
        "CREATE TABLE ess_manifests ("
        "  connector text NOT NULL,"
        "  version text,"
        "  sha text NOT NULL,"
        "  body text NOT NULL,"
        "  deployed_at timestamptz NOT NULL DEFAULT now(),"
        "  PRIMARY KEY (connector, sha));"
        "CREATE TABLE ess_controls ("
        "  connector text PRIMARY KEY,"
        "  paused boolean NOT NULL DEFAULT false,"
        "  replay_from_seq bigint,"
        "  updated_at timestamptz NOT NULL DEFAULT now());"},
    /* 2: the operator's surface -- replay requests, the dead-letter workflow
     * (parked -> retry | dropped; later events of a parked key held behind it),
     * per-change delivery tickets, heartbeats for `hms ess ps`, deploy history. */
    {2, "ALTER TABLE ess_controls"
        "  ADD COLUMN replay_to_seq bigint,"
        "  ADD COLUMN replay_key text,"
        "  ADD COLUMN replay_id bigint NOT NULL DEFAULT 0,"
        "  ADD COLUMN replay_done_id bigint NOT NULL DEFAULT 0,"
        "  ADD COLUMN replay_resume_seq bigint,"
        "  ADD COLUMN replay_requested_at timestamptz;"
        "ALTER TABLE ess_dead_letters"
        "  ADD COLUMN status text NOT NULL DEFAULT 'parked'"
        "    CHECK (status IN ('parked', 'held', 'retry', 'dropped', 'delivered')),"
        "  ADD COLUMN last_status int,"
        "  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();"
        "CREATE INDEX ess_dead_letters_open ON ess_dead_letters (connector, key, seq)"
        "  WHERE status IN ('parked', 'held', 'retry');"
        "CREATE TABLE ess_tickets ("
        "  id bigserial PRIMARY KEY,"
        "  connector text NOT NULL,"
        "  seq bigint NOT NULL,"
        "  event_id text NOT NULL,"
        "  key text NOT NULL,"
        "  outcome text NOT NULL,"
        "  attempts int NOT NULL,"
        "  last_status int,"
        "  last_error text,"
        "  first_at timestamptz,"
        "  done_at timestamptz NOT NULL DEFAULT now());"
        "CREATE INDEX ess_tickets_key ON ess_tickets (connector, key, seq);"
        "CREATE TABLE ess_heartbeats ("
        "  connector text NOT NULL,"
        "  instance text NOT NULL,"
        "  state text NOT NULL,"
        "  heartbeat_sec int NOT NULL,"
        "  body text NOT NULL,"
        "  ts timestamptz NOT NULL DEFAULT now(),"
        "  prev_body text,"
        "  prev_ts timestamptz,"
        "  PRIMARY KEY (connector, instance));"
        "CREATE TABLE ess_deploys ("
        "  id bigserial PRIMARY KEY,"
        "  connector text NOT NULL,"
        "  sha text NOT NULL,"
        "  target text NOT NULL,"
        "  note text,"
        "  deployed_at timestamptz NOT NULL DEFAULT now());"},
    /* 3: ess-pull -- the since-cursor per connector, and a hash per record key
     * so an unchanged record is not republished. */
    {3, "CREATE TABLE ess_pull_cursors ("
        "  connector text PRIMARY KEY,"
        "  cursor text NOT NULL,"
        "  updated_at timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE ess_pull_hashes ("
        "  connector text NOT NULL,"
        "  key text NOT NULL,"
        "  hash text NOT NULL,"
        "  updated_at timestamptz NOT NULL DEFAULT now(),"
        "  PRIMARY KEY (connector, key));"},
    /* 4: delta: true -- the shaped record last delivered (2xx) per key, the
     * base the next change of that key is diffed against. */
    {4, "CREATE TABLE ess_delta_state ("
        "  connector text NOT NULL,"
        "  key text NOT NULL,"
        "  state text NOT NULL,"
        "  updated_at timestamptz NOT NULL DEFAULT now(),"
        "  PRIMARY KEY (connector, key));"},
    /* 5: two-way sync -- per key and reverse connector, HMS's last change (recorded
     * by the push connector that names it in skip_origins: hms_from) and the
     * partner's last change; and the audit of every field a conflict rule decided. */
    {5, "CREATE TABLE ess_conflict_state ("
        "  connector text NOT NULL,"
        "  key text NOT NULL,"
        "  hms_from text,"
        "  hms_body text,"
        "  hms_ms bigint,"
        "  partner_body text,"
        "  partner_ms bigint,"
        "  updated_at timestamptz NOT NULL DEFAULT now(),"
        "  PRIMARY KEY (connector, key));"
        "CREATE INDEX ess_conflict_state_hms_from ON ess_conflict_state (hms_from, key);"
        "CREATE TABLE ess_conflicts ("
        "  id bigserial PRIMARY KEY,"
        "  connector text NOT NULL,"
        "  key text NOT NULL,"
        "  field text NOT NULL,"
        "  strategy text NOT NULL,"
        "  winner text NOT NULL CHECK (winner IN ('hms', 'partner')),"
        "  winner_value text,"
        "  loser_value text,"
        "  hms_changed_at timestamptz,"
        "  partner_changed_at timestamptz,"
        "  decided_at timestamptz NOT NULL DEFAULT now());"
        "CREATE INDEX ess_conflicts_key ON ess_conflicts (connector, key, id);"},
    /* 6: retention sweeps tickets oldest first, one connector at a time. */
    {6, "CREATE INDEX ess_tickets_connector_id ON ess_tickets (connector, id);"},
    /* 7: the tamper-evident audit log (ess_audit.h). */
    {7, ESS_AUDIT_MIGRATION_SQL},
    /* 8: replicas of one connector (ess_replica.h) -- who is alive, and which
     * replica delivers which of the 64 key partitions, from which offset. */
    {8, "CREATE TABLE ess_replicas ("
        "  connector text NOT NULL,"
        "  instance text NOT NULL,"
        "  started_at timestamptz NOT NULL DEFAULT now(),"
        "  heartbeat_at timestamptz NOT NULL DEFAULT now(),"
        "  PRIMARY KEY (connector, instance));"
        "CREATE TABLE ess_partitions ("
        "  connector text NOT NULL,"
        "  part int NOT NULL,"
        "  owner text,"
        "  delivered_seq bigint NOT NULL,"
        "  updated_at timestamptz NOT NULL DEFAULT now(),"
        "  PRIMARY KEY (connector, part));"},
    /* 9: each journal row's key partition when its connector runs replicas
     * (ess_replica_part; NULL for one worker and for rows from before), so a
     * replica reads only its own rows (ST_READ_PARTS). Nullable without a
     * default: adding it rewrites nothing and old rows stay as they are; one
     * worker's statements are unchanged, its new rows carry a null bitmap
     * (~8 bytes a row, docs/capacity.md). No index on it: see ST_READ_PARTS. */
    {9, "ALTER TABLE ess_journal ADD COLUMN part smallint;"},
    /* 10: two fewer index entries per journaled event (the journal INSERT is
     * most of Postgres's work per event, docs/capacity.md). The primary key
     * becomes (connector, seq), which every read by seq already walked, and
     * replaces both the seq key and the (connector, seq) index; logical
     * replication keeps a replica identity. The per-key index becomes (key):
     * btree deduplication keeps one entry per key and leaf page, where
     * (connector, key, seq) took a unique, randomly placed entry per event.
     * Per-key reads (tickets --key, replay --key) filter the connector and
     * sort by seq themselves. Measured on 60,000 bench-like inserts over
     * 200,000 rows: 20.2 -> 17.3 us of Postgres CPU per event, 85 -> 67 MB.
     * Rebuilds two indexes with journal writes waiting (events stay in the
     * broker): 1.9 s per million rows here (docs/capacity.md, "Upgrading"). */
    {10, "CREATE UNIQUE INDEX ess_journal_pkey_10 ON ess_journal (connector, seq);"
         "ALTER TABLE ess_journal DROP CONSTRAINT ess_journal_pkey,"
         "  ADD CONSTRAINT ess_journal_pkey PRIMARY KEY USING INDEX ess_journal_pkey_10;"
         "DROP INDEX ess_journal_connector_seq;"
         "DROP INDEX ess_journal_connector_key_seq;"
         "CREATE INDEX ess_journal_key ON ess_journal (key);"},
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* ---------------------------------------------------- prepared statements -- */

enum stmt_id {
    ST_APPEND_CHUNK, /* SQL built at run time: APPEND_CHUNK rows */
    ST_APPEND_ARRAYS,
    ST_APPEND_PARTS,
    ST_APPEND_LOCKED,
    ST_APPEND_FAST,
    ST_READ,
    ST_READ_PARTS,
    ST_OFFSET_GET,
    ST_OFFSET_SET,
    ST_PARK,
    ST_BACKLOG,
    ST_RETAIN,
    ST_RETAIN_TICKETS,
    ST_TICKETS,
    ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_APPEND_CHUNK] = NULL,
    /* journal_send: one prepared statement for any burst size, the columns
     * as binary arrays (no per-burst parse and plan of a 3000-value list) */
    [ST_APPEND_ARRAYS] =
        "INSERT INTO ess_journal (connector, event_id, key, topic, body, received_ms)"
        " SELECT $1, e, k, t, b, r FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::int8[]) AS u(e, k, t, b, r)"
        " ON CONFLICT (connector, event_id) DO NOTHING RETURNING seq, event_id",
    /* ... and with each row's key partition (replicas, migration 9) */
    [ST_APPEND_PARTS] =
        "INSERT INTO ess_journal (connector, event_id, key, topic, body, received_ms, part)"
        " SELECT $1, e, k, t, b, r, p FROM unnest($2::text[], $3::text[], $4::text[],"
        " $5::text[], $6::int8[], $7::int2[]) AS u(e, k, t, b, r, p)"
        " ON CONFLICT (connector, event_id) DO NOTHING RETURNING seq, event_id",
    /* ... under the per-connector append lock (append_lock), taken by the
     * statement itself before it draws a seq and held to its implicit
     * COMMIT: one round trip, so replicas pipeline their appends too. */
    [ST_APPEND_LOCKED] =
        "WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtext('ess_journal:' || $1)))"
        " INSERT INTO ess_journal (connector, event_id, key, topic, body, received_ms, part)"
        " SELECT $1, e, k, t, b, r, p FROM l, unnest($2::text[], $3::text[], $4::text[],"
        " $5::text[], $6::int8[], $7::int2[]) AS u(e, k, t, b, r, p)"
        " ON CONFLICT (connector, event_id) DO NOTHING RETURNING seq, event_id",
    /* The same without ON CONFLICT: a speculative insertion per row (the
     * pre-check, its token, the confirmation, each WAL-logged) was ~25% of
     * the INSERT's Postgres CPU. A duplicate -- a redelivery after a restart,
     * a producer re-sending -- fails the statement as a whole (nothing is
     * inserted) and journal_finish sends the burst again as ST_APPEND_ARRAYS.
     * Tried and not kept: COPY ess_journal FROM STDIN (FORMAT binary), its
     * seqs reserved by nextval in the same query -- the backend's CPU per
     * event in bursts of 500 was 11.0-11.2 us against this statement's
     * 10.0-11.7 (60,000 events, alternated). */
    [ST_APPEND_FAST] =
        "INSERT INTO ess_journal (connector, event_id, key, topic, body, received_ms)"
        " SELECT $1, e, k, t, b, r FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::int8[]) AS u(e, k, t, b, r) RETURNING seq, event_id",
    [ST_READ] = "SELECT seq, event_id, key, body, received_ms FROM ess_journal"
                " WHERE connector = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3::int",
    /* A replica's refill: the span is the next $3 rows by seq (an index-only
     * walk of (connector, seq)); of those only rows of partitions in $4 (or
     * of none: journaled by one worker) are returned, at most $5. Every row
     * carries the span's end (hi) and size (n); with no row of its own in the
     * span the one row has only those (LEFT JOIN). No index on part: rows of
     * all partitions share the heap pages in insert order, so an index by
     * part would save tuple checks, not page reads; measured on 200k rows, 3
     * replicas (docs/capacity.md), the planner walks the seq range of the
     * span and filters (~200 buffers for 3,000 rows), and an added
     * (connector, part, seq) index was not used by the planner. */
    [ST_READ_PARTS] =
        "WITH span AS (SELECT seq FROM ess_journal WHERE connector = $1 AND seq > $2::bigint"
        " ORDER BY seq LIMIT $3::int), top AS (SELECT max(seq) AS hi, count(*) AS n FROM span)"
        " SELECT j.seq, j.event_id, j.key, j.body, j.received_ms, top.hi, top.n FROM top"
        " LEFT JOIN LATERAL (SELECT seq, event_id, key, body, received_ms FROM ess_journal"
        " WHERE connector = $1 AND seq > $2::bigint AND seq <= top.hi"
        " AND (part = ANY($4::int2[]) OR part IS NULL) ORDER BY seq LIMIT $5::int) j ON true"
        " ORDER BY j.seq",
    [ST_OFFSET_GET] = "SELECT delivered_seq FROM ess_offsets WHERE connector = $1",
    /* Saved every 500 ms with the loop waiting: committed without waiting for
     * the WAL flush (synchronous_commit off for this transaction only). A
     * Postgres crash may lose the last few saves, and the worker then repeats
     * those deliveries, as at-least-once allows; WAL order keeps it behind
     * every synchronous commit (journal, tickets) that follows it. */
    [ST_OFFSET_SET] = "INSERT INTO ess_offsets (connector, delivered_seq, updated_at)"
                      " SELECT $1, $2::bigint, now()"
                      " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
                      " ON CONFLICT (connector) DO UPDATE"
                      " SET delivered_seq = EXCLUDED.delivered_seq, updated_at = now()",
    /* A row parked again (a replayed event, a failed retry) is open again. */
    [ST_PARK] = "INSERT INTO ess_dead_letters (connector, seq, event_id, key, body, reason,"
                " attempts, status, last_status) VALUES ($1, $2::bigint, $3, $4, $5, $6, $7::int,"
                " $8, $9::int) ON CONFLICT (connector, seq) DO UPDATE SET status ="
                " EXCLUDED.status, reason = EXCLUDED.reason, attempts = EXCLUDED.attempts,"
                " last_status = EXCLUDED.last_status, updated_at = now()",
    [ST_BACKLOG] = "SELECT count(*) FROM ess_journal WHERE connector = $1 AND seq > $2::bigint",
    /* Retention looks at the oldest $4 rows only (by seq / id, which follow
     * time), so one sweep step costs the same however large the table is. */
    [ST_RETAIN] = "DELETE FROM ess_journal WHERE connector = $1 AND seq IN (SELECT seq FROM"
                  " (SELECT seq, journaled_at FROM ess_journal WHERE connector = $1"
                  " AND seq <= $2::bigint ORDER BY seq LIMIT $4::int) head"
                  " WHERE journaled_at < now() - $3::bigint * interval '1 second')",
    [ST_RETAIN_TICKETS] = "DELETE FROM ess_tickets WHERE id IN (SELECT id FROM (SELECT id,"
                          " done_at FROM ess_tickets WHERE connector = $1 ORDER BY id"
                          " LIMIT $3::int) head"
                          " WHERE done_at < now() - $2::bigint * interval '1 second')",
    /* All of a flush's tickets in one statement over eight binary arrays
     * (a VALUES list was parsed and planned per 500 rows). */
    [ST_TICKETS] =
        "INSERT INTO ess_tickets (connector, seq, event_id, key, outcome, attempts, last_status,"
        " last_error, first_at, done_at) SELECT $1, s, e, k, o, a, l, x, to_timestamp(f / 1000.0),"
        " now() FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[],"
        " $7::int8[], $8::text[], $9::int8[]) AS u(s, e, k, o, a, l, x, f)",
};

struct store_buf { /* a growing byte buffer */
    char *p;
    size_t len;
    size_t cap;
};

struct ess_store {
    PGconn *conn;
    bool append_lock; /* journal appends serialised per connector (replicas) */
    bool prepared[ST__COUNT];
    /* journal_append scratch, made on first use, reused (sized for one chunk) */
    const char **vals;     /* 1 + APPEND_COLS * APPEND_CHUNK parameter values */
    char (*nums)[NUM_MAX]; /* received_ms as text, one per row */
    char *head;            /* INSERT head and APPEND_CHUNK row tuples, built once */
    size_t head_cap;
    size_t *row_end;                      /* row_end[k]: length of head through row k+1's tuple */
    char *sql;                            /* INSERT text for up to APPEND_CHUNK rows */
    struct store_buf arr[APPEND_ARRS];    /* journal_send's binary array parameters */
    struct store_buf tarr[TICKET_ARRAYS]; /* tickets_append's */
    /* the statement sent by journal_send / read_send until its finish takes the result */
    bool pend;           /* sent, result not taken yet */
    bool pend_read;      /* it is a journal read (read_send), not an append */
    int pend_scan;       /* it is a partition read (read_parts_send) of this span */
    int pend_limit;      /* ... returning at most this many rows */
    bool pend_done;      /* every result of it read (ReadyForQuery seen), or pend_lost */
    bool pend_lost;      /* the session failed while reading it: outcome unknown */
    PGresult *pend_res;  /* its first result (NULL until read, or none came) */
    PGresult *pend_fail; /* a later error result (the COMMIT failed) */
    bool pend_fast;      /* the pending append is ST_APPEND_FAST (no ON CONFLICT) */
    char *pend_conn;     /* the pending append's connector: a resend needs it */
    int append_safe;     /* appends still sent with ON CONFLICT after a duplicate */

    /* replicas: fills ess_journal.part with each key's partition; NULL: left NULL */
    ess_store_part_fn part_fn;

    /* a pipeline of side writes (ess_store_pipe_*): one implicit transaction */
    bool pipe;        /* begun, its sync point's result not read yet */
    bool pipe_failed; /* one of its statements failed: nothing of it committed */
    char pipe_err[ESS_ERR_MSG_MAX];
    PGresult *pipe_rows;                   /* its first statement's rows, when it returned rows */
    int pipe_stmt;                         /* results read so far */
    long long pipe_affected[PIPE_COUNTED]; /* the row count of each of the first statements */
};

/* After a duplicate, this many appends go with ON CONFLICT at once: a
 * restart's redeliveries come in a run, and each would cost two statements. */
#define APPEND_SAFE_AFTER_DUP 16

static void store_settle(struct ess_store *s);
static void build_append_head(struct ess_store *s);
static int copy_rows(const PGresult *res, struct ess_store_rows *rows, struct ess_err *err);
static int append_arrays(struct ess_store *s, const char *connector,
                         const struct ess_store_event *ev, size_t n, PGresult **res,
                         struct ess_err *err);

/* -------------------------------------------------------------- helpers -- */

/* The first line of a libpq message, without the trailing newline. */
static int first_line(const char *msg)
{
    size_t len;

    if (msg == NULL) {
        return 0;
    }
    len = strcspn(msg, "\r\n");
    return len > (size_t)ESS_ERR_MSG_MAX ? ESS_ERR_MSG_MAX : (int)len;
}

/* ESS_ESTORE with the server's primary message (and SQLSTATE) or, when there is
 * no result or the session is gone, libpq's own message. */
static int store_fail(struct ess_store *s, const PGresult *res, const char *what,
                      struct ess_err *err)
{
    const char *msg = NULL;
    const char *state = NULL;

    if (res != NULL && PQstatus(s->conn) == CONNECTION_OK) {
        msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    }
    if (msg != NULL && state != NULL) {
        return ess_err_set(err, ESS_ESTORE, "postgres: %s: %.*s (SQLSTATE %s)", what,
                           first_line(msg), msg, state);
    }
    msg = PQerrorMessage(s->conn);
    if (msg == NULL || msg[0] == '\0') {
        msg = PQstatus(s->conn) == CONNECTION_OK ? "unknown error" : "connection lost";
    }
    return ess_err_set(err, ESS_ESTORE, "postgres: %s: %.*s", what, first_line(msg), msg);
}

/* Check a result against the expected status; clears *res on failure. */
static int check_result(struct ess_store *s, PGresult **res, ExecStatusType want, const char *what,
                        struct ess_err *err)
{
    int rc;

    if (*res != NULL && PQresultStatus(*res) == want) {
        return ESS_OK;
    }
    rc = store_fail(s, *res, what, err);
    PQclear(*res);
    *res = NULL;
    return rc;
}

/* Forget a pending append (its results, if any were read). */
static void store_pend_clear(struct ess_store *s)
{
    PQclear(s->pend_res);
    PQclear(s->pend_fail);
    s->pend_res = NULL;
    s->pend_fail = NULL;
    s->pend = false;
    s->pend_read = false;
    s->pend_scan = 0;
    s->pend_limit = 0;
    s->pend_fast = false;
    s->pend_done = false;
    s->pend_lost = false;
}

/* Read what the server has sent for the pending append without blocking
 * (block: wait for all of it). Its first result is kept for journal_finish,
 * a later error (the implicit COMMIT failed) too; pend_done once libpq
 * returns NULL, i.e. after ReadyForQuery: the transaction is over. */
static void store_pend_read(struct ess_store *s, bool block)
{
    PGresult *r;

    while (s->pend && !s->pend_done) {
        if (!block && PQconsumeInput(s->conn) == 0) {
            s->pend_lost = true; /* the session is gone: nothing more comes */
            s->pend_done = true;
            return;
        }
        if (!block && PQisBusy(s->conn)) {
            return;
        }
        r = PQgetResult(s->conn);
        if (r == NULL) {
            s->pend_done = true;
        } else if (s->pend_res == NULL) {
            s->pend_res = r;
        } else if (s->pend_fail == NULL && PQresultStatus(r) != PGRES_TUPLES_OK &&
                   PQresultStatus(r) != PGRES_COMMAND_OK) {
            s->pend_fail = r;
        } else {
            PQclear(r);
        }
    }
}

/* Before any other statement: the session runs one at a time, so a pending
 * append is waited for; journal_finish still gets its result. */
static void store_settle(struct ess_store *s)
{
    if (s->pend) {
        store_pend_read(s, true);
    }
}

/* Run a parameterless command (BEGIN, COMMIT, a migration script). */
static int exec_simple(struct ess_store *s, const char *sql, const char *what, struct ess_err *err)
{
    PGresult *res;
    int rc;

    store_settle(s);
    res = PQexec(s->conn, sql);
    rc = check_result(s, &res, PGRES_COMMAND_OK, what, err);

    PQclear(res);
    return rc;
}

/* Best effort: leave the session out of any failed transaction. */
static void rollback_quietly(struct ess_store *s)
{
    store_settle(s);
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PQclear(PQexec(s->conn, "ROLLBACK"));
    }
}

static int prepare(struct ess_store *s, enum stmt_id id, const char *sql, int nparams,
                   struct ess_err *err)
{
    char name[32];
    PGresult *res;
    int rc;

    if (s->prepared[id]) {
        return ESS_OK;
    }
    store_settle(s);
    snprintf(name, sizeof(name), "ess_st%d", (int)id);
    res = PQprepare(s->conn, name, sql, nparams, NULL);
    rc = check_result(s, &res, PGRES_COMMAND_OK, "prepare", err);
    PQclear(res);
    if (rc == ESS_OK) {
        s->prepared[id] = true;
    }
    return rc;
}

/* Execute prepared statement id (preparing it on first use in this session).
 * On ESS_OK *res holds a result with status want; the caller PQclear()s it. */
static int exec_prepared(struct ess_store *s, enum stmt_id id, const char *sql, int nparams,
                         const char *const *vals, ExecStatusType want, const char *what,
                         PGresult **res, struct ess_err *err)
{
    char name[32];
    int rc;

    rc = prepare(s, id, sql != NULL ? sql : stmt_sql[id], nparams, err);
    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(name, sizeof(name), "ess_st%d", (int)id);
    store_settle(s);
    *res = PQexecPrepared(s->conn, name, nparams, vals, NULL, NULL, 0);
    return check_result(s, res, want, what, err);
}

static int exec_params(struct ess_store *s, const char *sql, int nparams, const char *const *vals,
                       ExecStatusType want, const char *what, PGresult **res, struct ess_err *err)
{
    store_settle(s);
    *res = PQexecParams(s->conn, sql, nparams, NULL, vals, NULL, NULL, 0);
    return check_result(s, res, want, what, err);
}

static int check_args(const struct ess_store *s, const char *connector, struct ess_err *err)
{
    if (s == NULL || s->conn == NULL || connector == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: NULL store or connector");
    }
    return ESS_OK;
}

static int parse_ll(const char *text, long long *out)
{
    char *end = NULL;

    *out = strtoll(text, &end, 10);
    return end != text && *end == '\0' ? ESS_OK : ESS_ESTORE;
}

/* ------------------------------------------------------------ lifecycle -- */

/* Server notices (client_min_messages=warning keeps them rare) become log
 * lines: libpq's default would print raw text on stderr between our logfmt lines. */
static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    ess_log_warn("postgres: %.*s", first_line(msg), msg);
}

/* libpq reports a failed multi-host conninfo as one line per host tried,
 * each followed by tab-indented hints: keep each host's line, joined by "; ". */
static void host_failures(const char *msg, char *buf, size_t len)
{
    size_t used = 0;
    int n;

    buf[0] = '\0';
    while (*msg != '\0' && used + 1 < len) {
        n = first_line(msg);
        if (n > 0 && msg[0] != '\t') {
            used +=
                (size_t)snprintf(buf + used, len - used, "%s%.*s", used > 0 ? "; " : "", n, msg);
        }
        msg += n;
        msg += strspn(msg, "\r\n");
    }
    if (buf[0] == '\0') {
        snprintf(buf, len, "unknown error");
    }
}

const char *ess_store_peer(const struct ess_store *s, char *buf, size_t len)
{
    const char *host = s != NULL && s->conn != NULL ? PQhost(s->conn) : NULL;
    const char *port = s != NULL && s->conn != NULL ? PQport(s->conn) : NULL;

    snprintf(buf, len, "%s:%s", host != NULL ? host : "?", port != NULL ? port : "?");
    return buf;
}

static void free_scratch(struct ess_store *s)
{
    free(s->vals);
    free(s->nums);
    free(s->head);
    free(s->row_end);
    free(s->sql);
    s->vals = NULL;
    s->nums = NULL;
    s->head = NULL;
    s->row_end = NULL;
    s->sql = NULL;
    s->head_cap = 0;
}

/* journal_append's text INSERT scratch (~190 KiB), made on its first use:
 * the worker's bursts go through journal_send, so a session that never
 * appends (the side session, a normal drain) never pays for it. */
static int alloc_scratch(struct ess_store *s)
{
    /* "($1,$nnnnn,$nnnnn,$nnnnn,$nnnnn,$nnnnn::bigint)," is < 64 chars a row */
    size_t cap = 256 + (size_t)APPEND_CHUNK * 64;

    if (s->head_cap != 0) {
        return ESS_OK;
    }
    s->vals = calloc(1 + (size_t)APPEND_COLS * APPEND_CHUNK, sizeof(*s->vals));
    s->nums = calloc(APPEND_CHUNK, sizeof(*s->nums));
    s->head = malloc(cap);
    s->sql = malloc(cap);
    s->row_end = calloc(APPEND_CHUNK, sizeof(*s->row_end));
    if (s->vals == NULL || s->nums == NULL || s->head == NULL || s->sql == NULL ||
        s->row_end == NULL) {
        free_scratch(s);
        return ESS_ENOMEM;
    }
    s->head_cap = cap;
    build_append_head(s);
    return ESS_OK;
}

struct ess_store *ess_store_new(const char *conninfo, struct ess_err *err)
{
    /* Defaults first, dbname (expanded) last: the caller's conninfo wins.
     * gssencmode: libpq's default (prefer) acquires Kerberos credentials on
     * every connect (krb5.conf, the ccache; ~0.6 MiB of libkrb5/libgssapi
     * pages) for GSSAPI encryption ESS deployments do not use. Disabled
     * unless the conninfo or PGGSSENCMODE asks for it (an empty value is
     * skipped by libpq, so the environment then applies). */
    const char *keys[] = {"connect_timeout",
                          "keepalives",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "application_name",
                          "client_encoding",
                          "options",
                          "gssencmode",
                          "dbname",
                          NULL};
    const char *gss_env = getenv("PGGSSENCMODE");
    const char *vals[] = {"5",
                          "1",
                          "30",
                          "10",
                          "3",
                          "ess",
                          "UTF8",
                          "-c statement_timeout=30000 -c client_min_messages=warning",
                          gss_env != NULL && gss_env[0] != '\0' ? "" : "disable",
                          conninfo,
                          NULL};
    struct ess_store *s;

    if (conninfo == NULL) {
        ess_err_set(err, ESS_EINVAL, "store: NULL conninfo");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        ess_err_set(err, ESS_ENOMEM, "store: out of memory");
        ess_store_free(s);
        return NULL;
    }
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
        char why[ESS_ERR_MSG_MAX];

        host_failures(s->conn != NULL ? PQerrorMessage(s->conn) : "out of memory", why,
                      sizeof(why));
        ess_err_set(err, ESS_ESTORE, "postgres: connect: %s", why);
        ess_store_free(s);
        return NULL;
    }
    PQsetNoticeProcessor(s->conn, on_notice, NULL);
    return s;
}

void ess_store_free(struct ess_store *s)
{
    int i;

    if (s == NULL) {
        return;
    }
    if (s->conn != NULL) {
        PQfinish(s->conn);
    }
    PQclear(s->pend_res);
    PQclear(s->pend_fail);
    PQclear(s->pipe_rows);
    free_scratch(s);
    free(s->pend_conn);
    for (i = 0; i < APPEND_ARRS; i++) {
        free(s->arr[i].p);
    }
    for (i = 0; i < TICKET_ARRAYS; i++) {
        free(s->tarr[i].p);
    }
    free(s);
}

int ess_store_reset(struct ess_store *s, struct ess_err *err)
{
    if (s == NULL || s->conn == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: NULL store");
    }
    /* A new session has no prepared statements, and no pending append. */
    memset(s->prepared, 0, sizeof(s->prepared));
    store_pend_clear(s);
    PQreset(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        return store_fail(s, NULL, "reconnect", err);
    }
    return ESS_OK;
}

/* ------------------------------------------------------------- migrate -- */

/* Apply one version in its own transaction unless it is recorded already. */
static int migrate_one(struct ess_store *s, const struct migration *m, struct ess_err *err)
{
    char ver[NUM_MAX];
    const char *vals[1] = {ver};
    PGresult *res = NULL;
    int rc;

    snprintf(ver, sizeof(ver), "%d", m->version);
    rc = exec_simple(s, "BEGIN", "migrate: begin", err);
    if (rc == ESS_OK) {
        rc = exec_params(s, "SELECT 1 FROM ess_schema_migrations WHERE version = $1::int", 1, vals,
                         PGRES_TUPLES_OK, "migrate: check", &res, err);
    }
    if (rc == ESS_OK && PQntuples(res) == 0) {
        ess_log_info("store: applying schema migration %d", m->version);
        rc = exec_simple(s, m->sql, "migrate: apply", err);
        PQclear(res);
        res = NULL;
        if (rc == ESS_OK) {
            rc = exec_params(s,
                             "INSERT INTO ess_schema_migrations (version, applied_at)"
                             " VALUES ($1::int, now())",
                             1, vals, PGRES_COMMAND_OK, "migrate: record", &res, err);
        }
    }
    PQclear(res);
    if (rc == ESS_OK) {
        rc = exec_simple(s, "COMMIT", "migrate: commit", err);
    }
    if (rc != ESS_OK) {
        rollback_quietly(s);
    }
    return rc;
}

int ess_store_migrate(struct ess_store *s, struct ess_err *err)
{
    const char *lock[1] = {MIGRATE_LOCK};
    PGresult *res = NULL;
    bool locked = false;
    size_t i;
    int rc;

    if (s == NULL || s->conn == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: NULL store");
    }
    /* A migration that rebuilds an index takes ~1.9 s per million journal
     * rows (migration 10), and a starter waiting for it as long: neither is
     * cut off by the session's statement_timeout, restored after. */
    rc = exec_simple(s, "SET statement_timeout = 0", "migrate: no statement timeout", err);
    /* Serialises concurrent starters: the loser waits, then finds all applied. */
    if (rc == ESS_OK) {
        rc = exec_params(s, "SELECT pg_advisory_lock($1::bigint)", 1, lock, PGRES_TUPLES_OK,
                         "migrate: lock", &res, err);
        PQclear(res);
        locked = rc == ESS_OK;
    }
    if (rc == ESS_OK) {
        rc = exec_simple(s,
                         "CREATE TABLE IF NOT EXISTS ess_schema_migrations ("
                         " version int PRIMARY KEY, applied_at timestamptz NOT NULL)",
                         "migrate: create ess_schema_migrations", err);
    }
    for (i = 0; rc == ESS_OK && i < N_MIGRATIONS; i++) {
        rc = migrate_one(s, &migrations[i], err);
    }
    store_settle(s);
    if (locked) {
        PQclear(PQexecParams(s->conn, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, lock, NULL,
                             NULL, 0));
    }
    PQclear(PQexec(s->conn, "RESET statement_timeout"));
    return rc;
}

/* ------------------------------------------------------------- journal -- */

#define APPEND_HEAD \
    "INSERT INTO ess_journal (connector, event_id, key, topic, body, received_ms) VALUES "
#define APPEND_TAIL " ON CONFLICT (connector, event_id) DO NOTHING RETURNING seq, event_id"

/* The placeholder list for APPEND_CHUNK rows is built once: the INSERT for k
 * rows is its first row_end[k-1] bytes and the tail (a memcpy per burst, not
 * a snprintf per row). */
static void build_append_head(struct ess_store *s)
{
    size_t off, i;
    int p = 2;

    off = (size_t)snprintf(s->head, s->head_cap, "%s", APPEND_HEAD);
    for (i = 0; i < APPEND_CHUNK; i++, p += APPEND_COLS) {
        off +=
            (size_t)snprintf(s->head + off, s->head_cap - off, "%s($1,$%d,$%d,$%d,$%d,$%d::bigint)",
                             i > 0 ? "," : "", p, p + 1, p + 2, p + 3, p + 4);
        s->row_end[i] = off;
    }
}

/* INSERT text for rows (1..APPEND_CHUNK) rows into s->sql. */
static void build_append_sql(struct ess_store *s, size_t rows)
{
    size_t off = s->row_end[rows - 1];

    memcpy(s->sql, s->head, off);
    memcpy(s->sql + off, APPEND_TAIL, sizeof(APPEND_TAIL));
}

static int fill_append_params(struct ess_store *s, const char *connector,
                              const struct ess_store_event *ev, size_t rows, struct ess_err *err)
{
    size_t i;
    const char **v = s->vals + 1;

    s->vals[0] = connector;
    for (i = 0; i < rows; i++, v += APPEND_COLS) {
        if (ev[i].event_id == NULL || ev[i].key == NULL || ev[i].body == NULL) {
            return ess_err_set(err, ESS_EINVAL, "store: event %zu has no event_id, key or body", i);
        }
        snprintf(s->nums[i], NUM_MAX, "%lld", ev[i].received_ms);
        v[0] = ev[i].event_id;
        v[1] = ev[i].key;
        v[2] = ev[i].topic; /* NULL is SQL NULL */
        v[3] = ev[i].body;
        v[4] = s->nums[i];
    }
    return ESS_OK;
}

/* seqs[i] for the rows RETURNING gave back, in the order of ev (Postgres
 * returns a multi-row VALUES insert in that order); duplicates get -1. When
 * the order is not as expected every seq is -2 (unknown), never a wrong one. */
static void map_seqs(const PGresult *res, const struct ess_store_event *ev, size_t rows,
                     long long *seqs)
{
    int r = 0;
    int n = PQntuples(res);
    size_t i;

    for (i = 0; i < rows; i++) {
        seqs[i] = -1;
        if (r < n && strcmp(PQgetvalue(res, r, 1), ev[i].event_id) == 0) {
            if (parse_ll(PQgetvalue(res, r, 0), &seqs[i]) != ESS_OK) {
                break;
            }
            r++;
        }
    }
    if (r != n || i != rows) {
        for (i = 0; i < rows; i++) {
            seqs[i] = -2;
        }
    }
}

/* One INSERT for up to APPEND_CHUNK rows; adds the rows it inserted to *count
 * and, with seqs, their journal seqs. */
static int append_chunk(struct ess_store *s, const char *connector,
                        const struct ess_store_event *ev, size_t rows, size_t *count,
                        long long *seqs, struct ess_err *err)
{
    int nparams = 1 + APPEND_COLS * (int)rows;
    PGresult *res = NULL;
    int rc;

    if (s->part_fn != NULL || s->append_lock) { /* replicas: as binary arrays, with partitions */
        rc = append_arrays(s, connector, ev, rows, &res, err);
    } else {
        rc = alloc_scratch(s) == ESS_OK ? fill_append_params(s, connector, ev, rows, err)
                                        : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
        if (rc == ESS_OK) {
            build_append_sql(s, rows);
            rc = rows == APPEND_CHUNK ? exec_prepared(s, ST_APPEND_CHUNK, s->sql, nparams, s->vals,
                                                      PGRES_TUPLES_OK, "journal insert", &res, err)
                                      : exec_params(s, s->sql, nparams, s->vals, PGRES_TUPLES_OK,
                                                    "journal insert", &res, err);
        }
    }
    if (rc == ESS_OK) {
        *count += (size_t)PQntuples(res);
        if (seqs != NULL) {
            map_seqs(res, ev, rows, seqs);
        }
    }
    PQclear(res);
    return rc;
}

/* Several writers of one connector's journal (replicas): seqs are taken and
 * committed under one transaction-scoped lock, so commit order is seq order
 * and a reader's cursor never passes a seq that commits later. */
static int append_lock(struct ess_store *s, const char *connector, struct ess_err *err)
{
    char key[300];
    const char *vals[1] = {key};
    PGresult *res;
    int rc;

    snprintf(key, sizeof(key), "ess_journal:%s", connector);
    res = PQexecParams(s->conn, "SELECT pg_advisory_xact_lock(hashtext($1))", 1, NULL, vals, NULL,
                       NULL, 0);
    rc = check_result(s, &res, PGRES_TUPLES_OK, "journal lock", err);
    PQclear(res);
    return rc;
}

void ess_store_journal_lock(struct ess_store *s, int on)
{
    if (s != NULL) {
        s->append_lock = on != 0;
    }
}

void ess_store_journal_partition(struct ess_store *s, ess_store_part_fn fn)
{
    if (s != NULL) {
        s->part_fn = fn;
    }
}

struct pg_conn *ess_store_pg(struct ess_store *s)
{
    if (s == NULL) {
        return NULL;
    }
    /* The caller's statement would make libpq drop a pending one's result. */
    store_settle(s);
    return s->conn;
}

int ess_store_journal_append(struct ess_store *s, const char *connector,
                             const struct ess_store_event *ev, size_t n, size_t *inserted,
                             long long *seqs, struct ess_err *err)
{
    size_t done, count = 0;
    bool txn = n > APPEND_CHUNK; /* one chunk is one statement: atomic by itself */
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && n > 0 && ev == NULL) {
        rc = ess_err_set(err, ESS_EINVAL, "store: NULL events");
    }
    if (rc == ESS_OK && s->append_lock) {
        txn = true;
    }
    if (rc == ESS_OK && txn) {
        rc = exec_simple(s, "BEGIN", "journal begin", err);
    }
    if (rc == ESS_OK && s->append_lock) {
        rc = append_lock(s, connector, err);
    }
    for (done = 0; rc == ESS_OK && done < n; done += APPEND_CHUNK) {
        size_t rows = n - done < APPEND_CHUNK ? n - done : APPEND_CHUNK;

        rc = append_chunk(s, connector, ev + done, rows, &count, seqs != NULL ? seqs + done : NULL,
                          err);
    }
    if (rc == ESS_OK && txn) {
        rc = exec_simple(s, "COMMIT", "journal commit", err);
    }
    if (rc != ESS_OK && s != NULL && s->conn != NULL) {
        rollback_quietly(s);
        count = 0;
    }
    if (inserted != NULL) {
        *inserted = count;
    }
    return rc;
}

/* ---- binary array parameters (PostgreSQL's array_recv format) ---------- */

#define OID_TEXT 25 /* pg_type.oid of text and int8: fixed in every PostgreSQL */
#define OID_INT8 20
#define OID_INT2 21

static int buf_room(struct store_buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    if (b->len + more <= b->cap) {
        return ESS_OK;
    }
    while (cap < b->len + more) {
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (p == NULL) {
        return ESS_ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return ESS_OK;
}

static void buf_be32(struct store_buf *b, uint32_t v)
{
    unsigned char *o = (unsigned char *)b->p + b->len;

    o[0] = (unsigned char)(v >> 24);
    o[1] = (unsigned char)(v >> 16);
    o[2] = (unsigned char)(v >> 8);
    o[3] = (unsigned char)v;
    b->len += 4;
}

/* Header of a one-dimensional array of n elements of type oid. */
static int buf_array_start(struct store_buf *b, uint32_t oid, size_t n, int has_null)
{
    b->len = 0;
    if (buf_room(b, 20) != ESS_OK) {
        return ESS_ENOMEM;
    }
    buf_be32(b, 1);                /* dimensions */
    buf_be32(b, has_null ? 1 : 0); /* flags: has nulls */
    buf_be32(b, oid);              /* element type */
    buf_be32(b, (uint32_t)n);      /* length */
    buf_be32(b, 1);                /* lower bound */
    return ESS_OK;
}

/* One text element (NULL: SQL NULL): its length, then its bytes. */
static int buf_array_text(struct store_buf *b, const char *text)
{
    size_t len = text != NULL ? strlen(text) : 0;

    if (len > 0x3fffffff || buf_room(b, 4 + len) != ESS_OK) {
        return ESS_ENOMEM;
    }
    buf_be32(b, text != NULL ? (uint32_t)len : 0xffffffffu);
    memcpy(b->p + b->len, text != NULL ? text : "", len);
    b->len += len;
    return ESS_OK;
}

static int buf_array_int8(struct store_buf *b, long long v)
{
    uint64_t u = (uint64_t)v;

    if (buf_room(b, 12) != ESS_OK) {
        return ESS_ENOMEM;
    }
    buf_be32(b, 8);
    buf_be32(b, (uint32_t)(u >> 32));
    buf_be32(b, (uint32_t)u);
    return ESS_OK;
}

static int buf_array_int2(struct store_buf *b, unsigned v)
{
    if (buf_room(b, 6) != ESS_OK) {
        return ESS_ENOMEM;
    }
    buf_be32(b, 2);
    b->p[b->len++] = (char)((v >> 8) & 0xff);
    b->p[b->len++] = (char)(v & 0xff);
    return ESS_OK;
}

/* The statement for a burst of binary arrays, and how many arrays it takes. */
static enum stmt_id append_stmt(const struct ess_store *s, int *cols)
{
    enum stmt_id id = s->append_lock       ? ST_APPEND_LOCKED
                      : s->part_fn != NULL ? ST_APPEND_PARTS
                                           : ST_APPEND_ARRAYS;

    *cols = id == ST_APPEND_ARRAYS ? APPEND_COLS : APPEND_ARRS;
    return id;
}

static int buf_array_null(struct store_buf *b)
{
    if (buf_room(b, 4) != ESS_OK) {
        return ESS_ENOMEM;
    }
    buf_be32(b, 0xffffffffu);
    return ESS_OK;
}

/* The burst as five binary arrays in s->arr (event_id, key, topic, body,
 * received_ms), and for the statements that take it a sixth: each key's
 * partition (NULL without a part_fn). */
static int fill_append_arrays(struct ess_store *s, const struct ess_store_event *ev, size_t n,
                              int cols, struct ess_err *err)
{
    int topic_null = 0;
    int rc = ESS_OK;
    size_t i;

    for (i = 0; i < n; i++) {
        if (ev[i].event_id == NULL || ev[i].key == NULL || ev[i].body == NULL) {
            return ess_err_set(err, ESS_EINVAL, "store: event %zu has no event_id, key or body", i);
        }
        topic_null |= ev[i].topic == NULL;
    }
    rc |= buf_array_start(&s->arr[0], OID_TEXT, n, 0);
    rc |= buf_array_start(&s->arr[1], OID_TEXT, n, 0);
    rc |= buf_array_start(&s->arr[2], OID_TEXT, n, topic_null);
    rc |= buf_array_start(&s->arr[3], OID_TEXT, n, 0);
    rc |= buf_array_start(&s->arr[4], OID_INT8, n, 0);
    for (i = 0; rc == ESS_OK && i < n; i++) {
        rc |= buf_array_text(&s->arr[0], ev[i].event_id);
        rc |= buf_array_text(&s->arr[1], ev[i].key);
        rc |= buf_array_text(&s->arr[2], ev[i].topic);
        rc |= buf_array_text(&s->arr[3], ev[i].body);
        rc |= buf_array_int8(&s->arr[4], ev[i].received_ms);
    }
    if (rc == ESS_OK && cols == APPEND_ARRS) {
        rc = buf_array_start(&s->arr[5], OID_INT2, n, s->part_fn == NULL);
        for (i = 0; rc == ESS_OK && i < n; i++) {
            rc = s->part_fn != NULL ? buf_array_int2(&s->arr[5], s->part_fn(ev[i].key) & 0x7fff)
                                    : buf_array_null(&s->arr[5]);
        }
    }
    return rc == ESS_OK ? ESS_OK
                        : ess_err_set(err, ESS_ENOMEM, "store: out of memory (%zu events)", n);
}

/* The arrays in s->arr as statement id with cols arrays after the
 * connector: run (*res, the caller PQclear()s it), or sent (res NULL: the
 * append is then pending and journal_finish takes its result). */
static int append_exec(struct ess_store *s, enum stmt_id id, int cols, const char *connector,
                       PGresult **res, struct ess_err *err)
{
    const char *vals[1 + APPEND_ARRS];
    int lens[1 + APPEND_ARRS];
    int fmts[1 + APPEND_ARRS];
    char name[32];
    int rc = prepare(s, id, stmt_sql[id], 1 + cols, err);
    int i;

    if (rc != ESS_OK) {
        return rc;
    }
    vals[0] = connector;
    lens[0] = 0;
    fmts[0] = 0;
    for (i = 0; i < cols; i++) {
        if (s->arr[i].len > (size_t)INT32_MAX) {
            return ess_err_set(err, ESS_EINVAL, "store: a burst of %zu bytes is too large",
                               s->arr[i].len);
        }
        vals[1 + i] = s->arr[i].p;
        lens[1 + i] = (int)s->arr[i].len;
        fmts[1 + i] = 1; /* binary */
    }
    snprintf(name, sizeof(name), "ess_st%d", (int)id);
    if (res != NULL) {
        store_settle(s);
        *res = PQexecPrepared(s->conn, name, 1 + cols, vals, lens, fmts, 0);
        return check_result(s, res, PGRES_TUPLES_OK, "journal insert", err);
    }
    /* libpq copies the parameters into its output buffer and, in blocking
     * mode, flushes it before returning: ev is not needed after this (a
     * resend uses s->arr, kept until the next journal_send). */
    if (PQsendQueryPrepared(s->conn, name, 1 + cols, vals, lens, fmts, 0) == 0) {
        return store_fail(s, NULL, "journal insert", err);
    }
    s->pend = true;
    s->pend_fast = id == ST_APPEND_FAST;
    return ESS_OK;
}

/* The burst as one prepared INSERT of binary arrays, run now (*res, the
 * caller PQclear()s it): journal_append's chunks for replicas. */
static int append_arrays(struct ess_store *s, const char *connector,
                         const struct ess_store_event *ev, size_t n, PGresult **res,
                         struct ess_err *err)
{
    int cols;
    enum stmt_id id = append_stmt(s, &cols);
    int rc = fill_append_arrays(s, ev, n, cols, err);

    return rc == ESS_OK ? append_exec(s, id, cols, connector, res, err) : rc;
}

int ess_store_journal_send(struct ess_store *s, const char *connector,
                           const struct ess_store_event *ev, size_t n, struct ess_err *err)
{
    enum stmt_id id = ST_APPEND_ARRAYS;
    int cols = APPEND_COLS;
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && (ev == NULL || n == 0 || n > ESS_STORE_SEND_MAX)) {
        rc = ess_err_set(err, ESS_EINVAL, "store: journal_send takes 1 to %d events",
                         ESS_STORE_SEND_MAX);
    }
    if (rc == ESS_OK && s->pend) {
        rc = ess_err_set(err, ESS_EINVAL, "store: a statement is already pending");
    }
    if (rc == ESS_OK) {
        id = append_stmt(s, &cols);
        rc = fill_append_arrays(s, ev, n, cols, err);
    }
    if (rc == ESS_OK && (s->pend_conn == NULL || strcmp(s->pend_conn, connector) != 0)) {
        free(s->pend_conn);
        s->pend_conn = strdup(connector);
        if (s->pend_conn == NULL) {
            rc = ess_err_set(err, ESS_ENOMEM, "store: out of memory");
        }
    }
    if (rc != ESS_OK) {
        return rc;
    }
    /* One worker goes without ON CONFLICT (ST_APPEND_FAST) unless a duplicate
     * came lately; replicas' statements (partitions, lock) always have it. */
    if (id == ST_APPEND_ARRAYS) {
        if (s->append_safe > 0) {
            s->append_safe--;
        } else {
            id = ST_APPEND_FAST;
        }
    }
    return append_exec(s, id, cols, s->pend_conn, NULL, err);
}

static int store_pend_result(struct ess_store *s, int block, int *done, const char *what,
                             PGresult **res, struct ess_err *err);

/* An error result saying a unique index refused a row (SQLSTATE 23505). */
static int unique_violation(const PGresult *res)
{
    const char *state = res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR
                            ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                            : NULL;

    return state != NULL && strcmp(state, "23505") == 0;
}

int ess_store_journal_finish(struct ess_store *s, const struct ess_store_event *ev, size_t n,
                             int block, int *done, size_t *inserted, long long *seqs,
                             struct ess_err *err)
{
    PGresult *res = NULL;
    bool fast;
    int rc;

    *done = 0;
    if (s == NULL || s->conn == NULL || !s->pend || s->pend_read) {
        return ess_err_set(err, ESS_EINVAL, "store: no append is pending");
    }
    for (;;) {
        fast = s->pend_fast;
        rc = store_pend_result(s, block, done, "journal insert", &res, err);
        if (rc != ESS_OK || !fast || !unique_violation(res)) {
            break;
        }
        /* A duplicate (unique_violation): nothing was inserted; the same
         * arrays again, with ON CONFLICT DO NOTHING. */
        PQclear(res);
        res = NULL;
        *done = 0;
        s->append_safe = APPEND_SAFE_AFTER_DUP;
        rc = append_exec(s, ST_APPEND_ARRAYS, APPEND_COLS, s->pend_conn, NULL, err);
        if (rc != ESS_OK || !block) {
            return rc;
        }
    }
    if (rc == ESS_OK && *done) {
        rc = check_result(s, &res, PGRES_TUPLES_OK, "journal insert", err);
    }
    if (rc == ESS_OK && res != NULL) {
        if (inserted != NULL) {
            *inserted = (size_t)PQntuples(res);
        }
        if (seqs != NULL) {
            map_seqs(res, ev, n, seqs);
        }
    }
    PQclear(res);
    return rc;
}

int ess_store_journal_pending(const struct ess_store *s)
{
    return s != NULL && s->pend;
}

/* The pending statement's result, once every result of it is in: *res (the
 * caller PQclear()s it), not yet checked; 0 with *done 0 before. */
static int store_pend_result(struct ess_store *s, int block, int *done, const char *what,
                             PGresult **res, struct ess_err *err)
{
    int rc;

    *res = NULL;
    store_pend_read(s, block != 0);
    if (!s->pend_done) {
        return ESS_OK;
    }
    *done = 1;
    if (s->pend_lost) {
        rc = store_fail(s, NULL, what, err);
        store_pend_clear(s);
        return rc;
    }
    *res = s->pend_fail != NULL ? s->pend_fail : s->pend_res;
    if (*res == s->pend_res) {
        s->pend_res = NULL;
    } else {
        s->pend_fail = NULL;
    }
    store_pend_clear(s);
    return ESS_OK;
}

/* The pending statement's result, once every result of it is in: *res (the
 * caller PQclear()s it) checked against want; 0 with *done 0 before. */
static int store_pend_take(struct ess_store *s, int block, int *done, ExecStatusType want,
                           const char *what, PGresult **res, struct ess_err *err)
{
    int rc = store_pend_result(s, block, done, what, res, err);

    if (rc != ESS_OK || !*done) {
        return rc;
    }
    return check_result(s, res, want, what, err);
}

int ess_store_journal_read_send(struct ess_store *s, const char *connector, long long after_seq,
                                int limit, struct ess_err *err)
{
    char after[NUM_MAX], lim[NUM_MAX];
    const char *vals[3] = {connector, after, lim};
    char name[32];
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && s->pend) {
        rc = ess_err_set(err, ESS_EINVAL, "store: a statement is already pending");
    }
    if (rc == ESS_OK) {
        rc = prepare(s, ST_READ, stmt_sql[ST_READ], 3, err);
    }
    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(after, sizeof(after), "%lld", after_seq);
    snprintf(lim, sizeof(lim), "%d", limit > 0 ? limit : 0);
    snprintf(name, sizeof(name), "ess_st%d", (int)ST_READ);
    if (PQsendQueryPrepared(s->conn, name, 3, vals, NULL, NULL, 0) == 0) {
        return store_fail(s, NULL, "journal read", err);
    }
    s->pend = true;
    s->pend_read = true;
    return ESS_OK;
}

/* "{0,5,9}": the partitions in parts (bit i = partition i). */
static void parts_text(uint64_t parts, char *buf, size_t len)
{
    size_t used = 1;
    unsigned i;

    buf[0] = '{';
    for (i = 0; i < 64 && used + 5 < len; i++) {
        if (parts & (1ULL << i)) {
            used += (size_t)snprintf(buf + used, len - used, "%s%u", used > 1 ? "," : "", i);
        }
    }
    snprintf(buf + used, len - used, "}");
}

int ess_store_journal_read_parts_send(struct ess_store *s, const char *connector,
                                      long long after_seq, int scan, int limit, uint64_t parts,
                                      struct ess_err *err)
{
    char after[NUM_MAX], span[NUM_MAX], lim[NUM_MAX], set[64 * 3 + 3];
    const char *vals[5] = {connector, after, span, set, lim};
    char name[32];
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && (scan < 1 || limit < 1)) {
        rc = ess_err_set(err, ESS_EINVAL, "store: a partition read needs scan and limit >= 1");
    }
    if (rc == ESS_OK && s->pend) {
        rc = ess_err_set(err, ESS_EINVAL, "store: a statement is already pending");
    }
    if (rc == ESS_OK) {
        rc = prepare(s, ST_READ_PARTS, stmt_sql[ST_READ_PARTS], 5, err);
    }
    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(after, sizeof(after), "%lld", after_seq);
    snprintf(span, sizeof(span), "%d", scan);
    snprintf(lim, sizeof(lim), "%d", limit);
    parts_text(parts, set, sizeof(set));
    snprintf(name, sizeof(name), "ess_st%d", (int)ST_READ_PARTS);
    if (PQsendQueryPrepared(s->conn, name, 5, vals, NULL, NULL, 0) == 0) {
        return store_fail(s, NULL, "journal read", err);
    }
    s->pend = true;
    s->pend_read = true;
    s->pend_scan = scan;
    s->pend_limit = limit;
    return ESS_OK;
}

/* A partition read's span: how far it looked (covered) and whether the
 * journal may go on past that (more). Its rows are in seq order. */
static void parts_span(const PGresult *res, int scan, int limit, struct ess_store_rows *rows)
{
    long long hi = -1, n = 0;

    rows->covered = -1;
    rows->more = 0;
    rows->scanned = 0;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 5) ||
        parse_ll(PQgetvalue(res, 0, 5), &hi) != ESS_OK ||
        parse_ll(PQgetvalue(res, 0, 6), &n) != ESS_OK) {
        return; /* an empty span: nothing after the cursor yet */
    }
    if (rows->n == (size_t)limit) { /* cut short by limit: only up to its last row */
        rows->covered = rows->v[rows->n - 1].seq;
        rows->more = 1;
        rows->scanned = (size_t)n; /* an upper bound: the span went past covered */
        return;
    }
    rows->covered = hi;
    rows->more = n >= scan;
    rows->scanned = (size_t)n;
}

int ess_store_journal_read_finish(struct ess_store *s, int block, int *done,
                                  struct ess_store_rows *rows, struct ess_err *err)
{
    PGresult *res = NULL;
    int scan = s != NULL ? s->pend_scan : 0;
    int limit = s != NULL ? s->pend_limit : 0;
    int rc;

    *done = 0;
    rows->v = NULL;
    rows->n = 0;
    rows->covered = -1;
    rows->more = 0;
    rows->scanned = 0;
    if (s == NULL || s->conn == NULL || !s->pend || !s->pend_read) {
        return ess_err_set(err, ESS_EINVAL, "store: no journal read is pending");
    }
    rc = store_pend_take(s, block, done, PGRES_TUPLES_OK, "journal read", &res, err);
    if (rc == ESS_OK && res != NULL) {
        rc = copy_rows(res, rows, err);
    }
    if (rc == ESS_OK && res != NULL && scan > 0) {
        parts_span(res, scan, limit, rows);
    } else {
        rows->scanned = rows->n;
    }
    PQclear(res);
    return rc;
}

int ess_store_journal_ready(const struct ess_store *s)
{
    return s != NULL && s->pend && s->pend_done;
}

int ess_store_fd(const struct ess_store *s)
{
    return s != NULL && s->conn != NULL ? PQsocket(s->conn) : -1;
}

void ess_store_rows_fini(struct ess_store_rows *rows)
{
    size_t i;

    if (rows == NULL) {
        return;
    }
    for (i = 0; i < rows->n; i++) {
        free(rows->v[i].event_id);
        free(rows->v[i].key);
        free(rows->v[i].body);
    }
    free(rows->v);
    rows->v = NULL;
    rows->n = 0;
}

static int copy_rows(const PGresult *res, struct ess_store_rows *rows, struct ess_err *err)
{
    int i, n = PQntuples(res);

    if (n == 0) {
        return ESS_OK;
    }
    rows->v = calloc((size_t)n, sizeof(*rows->v));
    if (rows->v == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "store: out of memory reading %d rows", n);
    }
    for (i = 0; i < n; i++) {
        struct ess_store_row *r = &rows->v[rows->n];

        if (PQgetisnull(res, i, 0)) {
            continue; /* a partition read's span with none of its rows */
        }
        rows->n++;
        r->event_id = strdup(PQgetvalue(res, i, 1));
        r->key = strdup(PQgetvalue(res, i, 2));
        r->body = strdup(PQgetvalue(res, i, 3));
        if (r->event_id == NULL || r->key == NULL || r->body == NULL ||
            parse_ll(PQgetvalue(res, i, 0), &r->seq) != ESS_OK ||
            parse_ll(PQgetvalue(res, i, 4), &r->received_ms) != ESS_OK) {
            return ess_err_set(err, ESS_ENOMEM, "store: out of memory copying row %d", i);
        }
    }
    return ESS_OK;
}

int ess_store_journal_read(struct ess_store *s, const char *connector, long long after_seq,
                           int limit, struct ess_store_rows *rows, struct ess_err *err)
{
    char after[NUM_MAX], lim[NUM_MAX];
    const char *vals[3] = {connector, after, lim};
    PGresult *res = NULL;
    int rc;

    if (rows == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: NULL rows");
    }
    rows->v = NULL;
    rows->n = 0;
    rows->covered = -1;
    rows->more = 0;
    rows->scanned = 0;
    rc = check_args(s, connector, err);
    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(after, sizeof(after), "%lld", after_seq);
    snprintf(lim, sizeof(lim), "%d", limit > 0 ? limit : 0);
    rc = exec_prepared(s, ST_READ, NULL, 3, vals, PGRES_TUPLES_OK, "journal read", &res, err);
    if (rc == ESS_OK) {
        rc = copy_rows(res, rows, err);
        rows->scanned = rows->n;
    }
    PQclear(res);
    return rc;
}

/* ------------------------------------------------ offsets, dead letters -- */

/* Run a prepared single-value query; *out = the value, or dflt without a row. */
static int query_ll(struct ess_store *s, enum stmt_id id, int nparams, const char *const *vals,
                    long long dflt, long long *out, const char *what, struct ess_err *err)
{
    PGresult *res = NULL;
    int rc;

    rc = exec_prepared(s, id, NULL, nparams, vals, PGRES_TUPLES_OK, what, &res, err);
    if (rc == ESS_OK) {
        *out = dflt;
        if (PQntuples(res) > 0 && parse_ll(PQgetvalue(res, 0, 0), out) != ESS_OK) {
            rc = ess_err_set(err, ESS_ESTORE, "postgres: %s: not a number", what);
        }
    }
    PQclear(res);
    return rc;
}

static int command(struct ess_store *s, enum stmt_id id, int nparams, const char *const *vals,
                   const char *what, struct ess_err *err)
{
    PGresult *res = NULL;
    int rc;

    rc = exec_prepared(s, id, NULL, nparams, vals, PGRES_COMMAND_OK, what, &res, err);
    PQclear(res);
    return rc;
}

int ess_store_offset_get(struct ess_store *s, const char *connector, long long *seq,
                         struct ess_err *err)
{
    const char *vals[1] = {connector};
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && seq == NULL) {
        rc = ess_err_set(err, ESS_EINVAL, "store: NULL seq");
    }
    if (rc != ESS_OK) {
        return rc;
    }
    return query_ll(s, ST_OFFSET_GET, 1, vals, 0, seq, "offset get", err);
}

int ess_store_offset_set(struct ess_store *s, const char *connector, long long seq,
                         struct ess_err *err)
{
    char num[NUM_MAX];
    const char *vals[2] = {connector, num};
    int rc = check_args(s, connector, err);

    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(num, sizeof(num), "%lld", seq);
    return command(s, ST_OFFSET_SET, 2, vals, "offset set", err);
}

int ess_store_park(struct ess_store *s, const char *connector, const struct ess_store_row *row,
                   const char *reason, int attempts, const char *status, long last_status,
                   struct ess_err *err)
{
    char seq[NUM_MAX], att[NUM_MAX], code[NUM_MAX];
    const char *vals[9];
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK &&
        (row == NULL || row->event_id == NULL || row->key == NULL || row->body == NULL)) {
        rc = ess_err_set(err, ESS_EINVAL, "store: park: NULL row or row field");
    }
    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(seq, sizeof(seq), "%lld", row->seq);
    snprintf(att, sizeof(att), "%d", attempts);
    snprintf(code, sizeof(code), "%ld", last_status);
    vals[0] = connector;
    vals[1] = seq;
    vals[2] = row->event_id;
    vals[3] = row->key;
    vals[4] = row->body;
    vals[5] = reason;
    vals[6] = att;
    vals[7] = status != NULL ? status : "parked";
    vals[8] = last_status > 0 ? code : NULL;
    return command(s, ST_PARK, 9, vals, "park", err);
}

int ess_store_backlog(struct ess_store *s, const char *connector, long long after_seq,
                      long long *count, struct ess_err *err)
{
    char after[NUM_MAX];
    const char *vals[2] = {connector, after};
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && count == NULL) {
        rc = ess_err_set(err, ESS_EINVAL, "store: NULL count");
    }
    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(after, sizeof(after), "%lld", after_seq);
    return query_ll(s, ST_BACKLOG, 2, vals, 0, count, "backlog", err);
}

/* A DELETE's row count. */
static int delete_count(struct ess_store *s, enum stmt_id id, int nparams, const char *const *vals,
                        const char *what, long long *count, struct ess_err *err)
{
    PGresult *res = NULL;
    char *end = NULL;
    int rc;

    rc = exec_prepared(s, id, NULL, nparams, vals, PGRES_COMMAND_OK, what, &res, err);
    *count = rc == ESS_OK ? strtoll(PQcmdTuples(res), &end, 10) : 0;
    PQclear(res);
    return rc;
}

/* Instances (host:pid) gone for a day are history, not fleet state. */
#define RETAIN_HEARTBEATS_SQL \
    "DELETE FROM ess_heartbeats WHERE connector = $1 AND ts < now() - interval '1 day'"

int ess_store_retain_batch(struct ess_store *s, const char *connector, long long upto_seq,
                           long journal_sec, long tickets_sec, int limit, long long *deleted,
                           struct ess_err *err)
{
    char upto[NUM_MAX], jwin[NUM_MAX], twin[NUM_MAX], lim[NUM_MAX];
    const char *jvals[4] = {connector, upto, jwin, lim};
    const char *tvals[3] = {connector, twin, lim};
    PGresult *res = NULL;
    long long nj = 0, nt = 0;
    int rc = check_args(s, connector, err);

    *deleted = 0;
    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(upto, sizeof(upto), "%lld", upto_seq);
    snprintf(jwin, sizeof(jwin), "%ld", journal_sec < 0 ? 0L : journal_sec);
    snprintf(twin, sizeof(twin), "%ld", tickets_sec);
    snprintf(lim, sizeof(lim), "%d", limit < 1 ? 1 : limit);
    rc = delete_count(s, ST_RETAIN, 4, jvals, "retain journal", &nj, err);
    if (rc == ESS_OK && tickets_sec > 0) {
        rc = delete_count(s, ST_RETAIN_TICKETS, 3, tvals, "retain tickets", &nt, err);
    }
    if (rc == ESS_OK) {
        rc = exec_params(s, RETAIN_HEARTBEATS_SQL, 1, jvals, PGRES_COMMAND_OK, "retain heartbeats",
                         &res, err);
        PQclear(res);
    }
    *deleted = nj > nt ? nj : nt;
    return rc;
}

int ess_store_retain(struct ess_store *s, const char *connector, long long upto_seq,
                     long window_sec, struct ess_err *err)
{
    long long deleted = 0;
    int rc;

    do {
        rc = ess_store_retain_batch(s, connector, upto_seq, window_sec, 0, 1000, &deleted, err);
    } while (rc == ESS_OK && deleted == 1000);
    return rc;
}

/* ----------------------------------------------- generic (operator side) -- */

/* One row as a JSON object: column name -> text value, or null. */
static json_t *row_json(const PGresult *res, int row)
{
    json_t *o = json_object();
    int c;

    for (c = 0; o != NULL && c < PQnfields(res); c++) {
        json_object_set_new(o, PQfname(res, c),
                            PQgetisnull(res, row, c) ? json_null()
                                                     : json_string(PQgetvalue(res, row, c)));
    }
    return o;
}

int ess_store_query_json(struct ess_store *s, const char *sql, int nparams,
                         const char *const *params, json_t **rows, struct ess_err *err)
{
    PGresult *res = NULL;
    int rc;
    int r;

    *rows = NULL;
    if (s == NULL || s->conn == NULL || sql == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: NULL store or statement");
    }
    rc = exec_params(s, sql, nparams, params, PGRES_TUPLES_OK, "query", &res, err);
    if (rc == ESS_OK) {
        *rows = json_array();
        for (r = 0; *rows != NULL && r < PQntuples(res); r++) {
            json_array_append_new(*rows, row_json(res, r));
        }
        rc = *rows != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    PQclear(res);
    return rc;
}

int ess_store_exec(struct ess_store *s, const char *sql, int nparams, const char *const *params,
                   long long *affected, struct ess_err *err)
{
    PGresult *res = NULL;
    long long n = 0;
    int rc;

    if (s == NULL || s->conn == NULL || sql == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: NULL store or statement");
    }
    rc = exec_params(s, sql, nparams, params, PGRES_COMMAND_OK, "exec", &res, err);
    if (rc == ESS_OK && affected != NULL) {
        parse_ll(PQcmdTuples(res), &n);
        *affected = n;
    }
    PQclear(res);
    return rc;
}

/* ------------------------------------------------ worker-side controls -- */

/* Column c of row 0 as a long long, or dflt when NULL / no row. */
static long long col_ll(const PGresult *res, int c, long long dflt)
{
    long long v = dflt;

    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, c)) {
        parse_ll(PQgetvalue(res, 0, c), &v);
    }
    return v;
}

#define CONTROLS_SQL                                                                 \
    "SELECT paused::int, replay_id, replay_done_id, replay_from_seq, replay_to_seq," \
    " replay_resume_seq, replay_key FROM ess_controls WHERE connector = $1"

static void controls_from(const PGresult *res, struct ess_store_controls *c)
{
    memset(c, 0, sizeof(*c));
    c->paused = (int)col_ll(res, 0, 0);
    c->replay_id = col_ll(res, 1, 0);
    c->replay_done_id = col_ll(res, 2, 0);
    c->replay_from_seq = col_ll(res, 3, -1);
    c->replay_to_seq = col_ll(res, 4, -1);
    c->replay_resume_seq = col_ll(res, 5, -1);
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 6)) {
        snprintf(c->replay_key, sizeof(c->replay_key), "%s", PQgetvalue(res, 0, 6));
        c->has_replay_key = 1;
    }
}

int ess_store_controls_get(struct ess_store *s, const char *connector, struct ess_store_controls *c,
                           struct ess_err *err)
{
    const char *vals[1] = {connector};
    PGresult *res = NULL;
    int rc = check_args(s, connector, err);

    memset(c, 0, sizeof(*c));
    if (rc != ESS_OK) {
        return rc;
    }
    rc = exec_params(s, CONTROLS_SQL, 1, vals, PGRES_TUPLES_OK, "controls", &res, err);
    if (rc == ESS_OK) {
        controls_from(res, c);
    }
    PQclear(res);
    return rc;
}

int ess_store_replay_apply(struct ess_store *s, const char *connector, long long replay_id,
                           long long new_offset, long long resume_seq, struct ess_err *err)
{
    char id[NUM_MAX], off[NUM_MAX], resume[NUM_MAX];
    const char *vals[4] = {connector, id, off, resume};
    PGresult *res = NULL;
    int rc = check_args(s, connector, err);

    snprintf(id, sizeof(id), "%lld", replay_id);
    snprintf(off, sizeof(off), "%lld", new_offset);
    snprintf(resume, sizeof(resume), "%lld", resume_seq);
    /* One statement: the rewound offset and "applied" land together or not at all. */
    if (rc == ESS_OK) {
        rc = exec_params(s,
                         "WITH c AS (UPDATE ess_controls SET replay_done_id = $2::bigint,"
                         " replay_resume_seq = $4::bigint, updated_at = now()"
                         " WHERE connector = $1 RETURNING connector)"
                         " INSERT INTO ess_offsets (connector, delivered_seq, updated_at)"
                         " VALUES ($1, $3::bigint, now()) ON CONFLICT (connector) DO UPDATE"
                         " SET delivered_seq = EXCLUDED.delivered_seq, updated_at = now()",
                         4, vals, PGRES_COMMAND_OK, "replay apply", &res, err);
    }
    PQclear(res);
    return rc;
}

#define HEARTBEAT_SQL                                                                  \
    "INSERT INTO ess_heartbeats (connector, instance, state, heartbeat_sec, body, ts)" \
    " VALUES ($1, $2, $3, $4::int, $5, now()) ON CONFLICT (connector, instance) DO"    \
    " UPDATE SET prev_body = ess_heartbeats.body, prev_ts = ess_heartbeats.ts,"        \
    " state = EXCLUDED.state, heartbeat_sec = EXCLUDED.heartbeat_sec,"                 \
    " body = EXCLUDED.body, ts = now()"

int ess_store_heartbeat_put(struct ess_store *s, const char *connector, const char *instance,
                            const char *state, int heartbeat_sec, const char *body,
                            struct ess_err *err)
{
    char hb[NUM_MAX];
    const char *vals[5] = {connector, instance, state, hb, body};
    PGresult *res = NULL;
    int rc = check_args(s, connector, err);

    snprintf(hb, sizeof(hb), "%d", heartbeat_sec);
    if (rc == ESS_OK) {
        rc = exec_params(s, HEARTBEAT_SQL, 5, vals, PGRES_COMMAND_OK, "heartbeat", &res, err);
    }
    PQclear(res);
    return rc;
}

#define TICKET_COLS (1 + TICKET_ARRAYS) /* the connector, then the arrays */

/* The tickets as eight binary arrays in s->tarr (its own buffers: s->arr may
 * hold a pending append that journal_finish could still have to resend). */
static int tickets_arrays(struct ess_store *s, const struct ess_store_ticket *t, size_t n)
{
    struct store_buf *a = s->tarr;
    int rc = ESS_OK;
    size_t i;

    rc |= buf_array_start(&a[0], OID_INT8, n, 0);
    rc |= buf_array_start(&a[1], OID_TEXT, n, 0);
    rc |= buf_array_start(&a[2], OID_TEXT, n, 0);
    rc |= buf_array_start(&a[3], OID_TEXT, n, 0);
    rc |= buf_array_start(&a[4], OID_INT8, n, 0);
    rc |= buf_array_start(&a[5], OID_INT8, n, 1);
    rc |= buf_array_start(&a[6], OID_TEXT, n, 1);
    rc |= buf_array_start(&a[7], OID_INT8, n, 1);
    for (i = 0; rc == ESS_OK && i < n; i++) {
        if (t[i].event_id == NULL || t[i].key == NULL || t[i].outcome == NULL) {
            return ESS_EINVAL;
        }
        rc |= buf_array_int8(&a[0], t[i].seq);
        rc |= buf_array_text(&a[1], t[i].event_id);
        rc |= buf_array_text(&a[2], t[i].key);
        rc |= buf_array_text(&a[3], t[i].outcome);
        rc |= buf_array_int8(&a[4], t[i].attempts);
        rc |= t[i].last_status > 0 ? buf_array_int8(&a[5], t[i].last_status)
                                   : buf_array_text(&a[5], NULL);
        rc |= buf_array_text(
            &a[6], t[i].last_error != NULL && t[i].last_error[0] != '\0' ? t[i].last_error : NULL);
        rc |=
            t[i].first_ms > 0 ? buf_array_int8(&a[7], t[i].first_ms) : buf_array_text(&a[7], NULL);
    }
    return rc == ESS_OK ? ESS_OK : ESS_ENOMEM;
}

static int pipe_send(struct ess_store *s, const char *sql, int nparams, const char *const *vals,
                     const int *lens, const int *fmts, struct ess_err *err);

/* All the tickets as one INSERT of eight binary arrays: run now (prepared),
 * or sent into the side session's pipeline (send; the unnamed statement is
 * parsed each time -- it is short -- since a pipeline cannot prepare
 * synchronously). libpq copies the parameters when it sends them. */
static int tickets_each(struct ess_store *s, const char *connector,
                        const struct ess_store_ticket *t, size_t n, bool send, struct ess_err *err)
{
    const char *vals[TICKET_COLS];
    int lens[TICKET_COLS];
    int fmts[TICKET_COLS];
    char name[32];
    PGresult *res;
    int rc = check_args(s, connector, err);
    int i;

    if (rc != ESS_OK || n == 0) {
        return rc;
    }
    if (t == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: tickets: NULL tickets");
    }
    rc = tickets_arrays(s, t, n);
    if (rc != ESS_OK) {
        return ess_err_set(err, rc,
                           rc == ESS_EINVAL
                               ? "store: tickets: a ticket without event_id, key or outcome"
                               : "store: tickets: out of memory");
    }
    vals[0] = connector;
    lens[0] = 0;
    fmts[0] = 0;
    for (i = 0; i < TICKET_ARRAYS && rc == ESS_OK; i++) {
        if (s->tarr[i].len > (size_t)INT32_MAX) {
            rc = ess_err_set(err, ESS_EINVAL, "store: tickets: %zu tickets are too large", n);
        }
        vals[1 + i] = s->tarr[i].p;
        lens[1 + i] = (int)s->tarr[i].len;
        fmts[1 + i] = 1; /* binary */
    }
    if (rc == ESS_OK && send) {
        rc = pipe_send(s, stmt_sql[ST_TICKETS], TICKET_COLS, vals, lens, fmts, err);
    } else if (rc == ESS_OK) {
        rc = prepare(s, ST_TICKETS, stmt_sql[ST_TICKETS], TICKET_COLS, err);
        if (rc == ESS_OK) {
            snprintf(name, sizeof(name), "ess_st%d", (int)ST_TICKETS);
            store_settle(s);
            res = PQexecPrepared(s->conn, name, TICKET_COLS, vals, lens, fmts, 0);
            rc = check_result(s, &res, PGRES_COMMAND_OK, "tickets", err);
            PQclear(res);
        }
    }
    for (i = 0; i < TICKET_ARRAYS; i++) { /* a flush every 500 ms: not worth holding */
        /* eight distinct buffers, each reallocated only through its own store_buf: the
         * analyzer cannot tell they do not alias */
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        free(s->tarr[i].p);
        s->tarr[i] = (struct store_buf){NULL, 0, 0};
    }
    return rc;
}

int ess_store_tickets_append(struct ess_store *s, const char *connector,
                             const struct ess_store_ticket *t, size_t n, struct ess_err *err)
{
    return tickets_each(s, connector, t, n, false, err);
}

int ess_store_tickets_send(struct ess_store *s, const char *connector,
                           const struct ess_store_ticket *t, size_t n, struct ess_err *err)
{
    return tickets_each(s, connector, t, n, true, err);
}

/* ------------------------------------------------ dead-letter workflow -- */

int ess_store_dlq_open_keys(struct ess_store *s, const char *connector, json_t **keys,
                            struct ess_err *err)
{
    const char *vals[1] = {connector};
    PGresult *res = NULL;
    int rc = check_args(s, connector, err);
    int i;

    *keys = NULL;
    if (rc == ESS_OK) {
        rc = exec_params(s,
                         "SELECT DISTINCT key FROM ess_dead_letters WHERE connector = $1"
                         " AND status IN ('parked', 'held', 'retry')",
                         1, vals, PGRES_TUPLES_OK, "dlq keys", &res, err);
    }
    if (rc == ESS_OK) {
        *keys = json_object();
        for (i = 0; *keys != NULL && i < PQntuples(res); i++) {
            json_object_set_new(*keys, PQgetvalue(res, i, 0), json_true());
        }
        rc = *keys != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    PQclear(res);
    return rc;
}

int ess_store_dlq_next(struct ess_store *s, const char *connector, int limit,
                       struct ess_store_rows *rows, struct ess_err *err)
{
    char lim[NUM_MAX];
    const char *vals[2] = {connector, lim};
    PGresult *res = NULL;
    int rc = check_args(s, connector, err);

    memset(rows, 0, sizeof(*rows));
    snprintf(lim, sizeof(lim), "%d", limit);
    /* Per key, its oldest open row -- sendable only when it is not "parked". */
    if (rc == ESS_OK) {
        rc = exec_params(s,
                         "SELECT seq, event_id, key, body, 0 FROM (SELECT DISTINCT ON (key) seq,"
                         " event_id, key, body, status FROM ess_dead_letters WHERE connector = $1"
                         " AND status IN ('parked', 'held', 'retry') ORDER BY key, seq) h"
                         " WHERE status <> 'parked' ORDER BY seq LIMIT $2::int",
                         2, vals, PGRES_TUPLES_OK, "dlq next", &res, err);
    }
    if (rc == ESS_OK) {
        rc = copy_rows(res, rows, err);
    }
    PQclear(res);
    return rc;
}

int ess_store_dlq_set(struct ess_store *s, const char *connector, long long seq, const char *status,
                      const char *reason, long last_status, struct ess_err *err)
{
    char sq[NUM_MAX], code[NUM_MAX];
    const char *vals[5] = {connector, sq, status, reason, code};
    PGresult *res = NULL;
    int rc = check_args(s, connector, err);

    snprintf(sq, sizeof(sq), "%lld", seq);
    snprintf(code, sizeof(code), "%ld", last_status);
    vals[4] = last_status > 0 ? code : NULL;
    if (rc == ESS_OK) {
        rc = exec_params(s,
                         "UPDATE ess_dead_letters SET status = $3, reason = coalesce($4, reason),"
                         " last_status = coalesce($5::int, last_status), attempts = attempts + 1,"
                         " updated_at = now() WHERE connector = $1 AND seq = $2::bigint",
                         5, vals, PGRES_COMMAND_OK, "dlq set", &res, err);
    }
    PQclear(res);
    return rc;
}

/* ------------------------------------------------------------ ess-pull -- */

int ess_store_pull_cursor_get(struct ess_store *s, const char *connector, char *cursor, size_t len,
                              struct ess_err *err)
{
    const char *vals[1] = {connector};
    PGresult *res = NULL;
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && (cursor == NULL || len == 0)) {
        rc = ess_err_set(err, ESS_EINVAL, "store: NULL cursor buffer");
    }
    if (rc == ESS_OK) {
        cursor[0] = '\0';
        rc = exec_params(s, "SELECT cursor FROM ess_pull_cursors WHERE connector = $1", 1, vals,
                         PGRES_TUPLES_OK, "pull cursor get", &res, err);
    }
    if (rc == ESS_OK && PQntuples(res) > 0) {
        snprintf(cursor, len, "%s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return rc;
}

/* Run sql with $1 = connector and $2 = keys (a JSON array of strings,
 * borrowed) as JSON text: the "state of these keys" lookups. */
static int keys_select(struct ess_store *s, const char *sql, const char *connector, json_t *keys,
                       const char *what, PGresult **res, struct ess_err *err)
{
    const char *vals[2] = {connector, NULL};
    char *text;
    int rc = check_args(s, connector, err);

    if (rc != ESS_OK) {
        return rc;
    }
    text = json_dumps(keys, JSON_COMPACT);
    if (text == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    vals[1] = text;
    rc = exec_params(s, sql, 2, vals, PGRES_TUPLES_OK, what, res, err);
    free(text);
    return rc;
}

int ess_store_pull_hashes_get(struct ess_store *s, const char *connector, json_t *keys,
                              json_t **hashes, struct ess_err *err)
{
    PGresult *res = NULL;
    int r;
    int rc;

    *hashes = NULL;
    rc = keys_select(s,
                     "SELECT key, hash FROM ess_pull_hashes WHERE connector = $1 AND key IN"
                     " (SELECT json_array_elements_text($2::json))",
                     connector, keys, "pull hashes get", &res, err);
    if (rc == ESS_OK) {
        *hashes = json_object();
        for (r = 0; *hashes != NULL && r < PQntuples(res); r++) {
            json_object_set_new(*hashes, PQgetvalue(res, r, 0), json_string(PQgetvalue(res, r, 1)));
        }
        rc = *hashes != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    PQclear(res);
    return rc;
}

/* Upsert the hashes ({key: hash}) and, when cursor is not NULL, the cursor. */
static int pull_commit_body(struct ess_store *s, const char *connector, const char *cursor,
                            const char *hashes, struct ess_err *err)
{
    const char *hv[2] = {connector, hashes};
    const char *cv[2] = {connector, cursor};
    PGresult *res = NULL;
    int rc;

    rc = exec_params(s,
                     "INSERT INTO ess_pull_hashes (connector, key, hash, updated_at)"
                     " SELECT $1, key, value, now() FROM json_each_text($2::json)"
                     " ON CONFLICT (connector, key) DO UPDATE SET hash = EXCLUDED.hash,"
                     " updated_at = now()",
                     2, hv, PGRES_COMMAND_OK, "pull hashes set", &res, err);
    PQclear(res);
    res = NULL;
    if (rc == ESS_OK && cursor != NULL) {
        rc = exec_params(s,
                         "INSERT INTO ess_pull_cursors (connector, cursor, updated_at)"
                         " VALUES ($1, $2, now()) ON CONFLICT (connector) DO UPDATE"
                         " SET cursor = EXCLUDED.cursor, updated_at = now()",
                         2, cv, PGRES_COMMAND_OK, "pull cursor set", &res, err);
    }
    PQclear(res);
    return rc;
}

int ess_store_pull_commit(struct ess_store *s, const char *connector, const char *cursor,
                          json_t *hashes, struct ess_err *err)
{
    char *text = NULL;
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK) {
        text = json_dumps(hashes, JSON_COMPACT);
        rc = text != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    if (rc == ESS_OK) {
        rc = exec_simple(s, "BEGIN", "pull commit: begin", err);
    }
    if (rc == ESS_OK) {
        rc = pull_commit_body(s, connector, cursor, text, err);
    }
    if (rc == ESS_OK) {
        rc = exec_simple(s, "COMMIT", "pull commit", err);
    }
    if (rc != ESS_OK) {
        rollback_quietly(s);
    }
    free(text);
    return rc;
}

/* ---------------------------------------- delta: true (migration 4) -- */

int ess_store_delta_get(struct ess_store *s, const char *connector, json_t *keys, json_t **states,
                        struct ess_err *err)
{
    PGresult *res = NULL;
    json_t *state;
    int r;
    int rc;

    *states = NULL;
    rc = keys_select(s,
                     "SELECT key, state FROM ess_delta_state WHERE connector = $1 AND key IN"
                     " (SELECT json_array_elements_text($2::json))",
                     connector, keys, "delta state get", &res, err);
    if (rc == ESS_OK) {
        *states = json_object();
        for (r = 0; *states != NULL && r < PQntuples(res); r++) {
            state = json_loads(PQgetvalue(res, r, 1), 0, NULL);
            if (json_is_object(state)) { /* anything else: as if never delivered */
                json_object_set(*states, PQgetvalue(res, r, 0), state);
            }
            json_decref(state);
        }
        rc = *states != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    PQclear(res);
    return rc;
}

int ess_store_delta_put(struct ess_store *s, const char *connector, json_t *states,
                        struct ess_err *err)
{
    const char *vals[2] = {connector, NULL};
    PGresult *res = NULL;
    char *text = NULL;
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK && json_object_size(states) == 0) {
        return ESS_OK;
    }
    text = rc == ESS_OK ? json_dumps(states, JSON_COMPACT) : NULL;
    if (rc == ESS_OK && text == NULL) {
        rc = ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    vals[1] = text;
    if (rc == ESS_OK) {
        rc = exec_params(s,
                         "INSERT INTO ess_delta_state (connector, key, state, updated_at)"
                         " SELECT $1, key, value::text, now() FROM json_each($2::json)"
                         " ON CONFLICT (connector, key) DO UPDATE SET state = EXCLUDED.state,"
                         " updated_at = now()",
                         2, vals, PGRES_COMMAND_OK, "delta state put", &res, err);
    }
    free(text);
    PQclear(res);
    return rc;
}

/* ------------------------------------------------------- two-way: conflicts -- */

int ess_store_conflict_hms_put(struct ess_store *s, const char *from, const char *connectors,
                               const char *events, struct ess_err *err)
{
    const char *vals[3] = {from, connectors, events};
    PGresult *res = NULL;
    int rc = check_args(s, from, err);

    if (rc == ESS_OK && (connectors == NULL || events == NULL)) {
        rc = ess_err_set(err, ESS_EINVAL, "store: NULL connectors or events");
    }
    if (rc == ESS_OK) {
        /* DISTINCT ON: a burst may hold several changes of one key; the last wins. */
        rc = exec_params(s,
                         "INSERT INTO ess_conflict_state AS st (connector, key, hms_from, hms_body,"
                         " hms_ms, updated_at) SELECT c, e.key, $1, e.body, e.ms, now()"
                         " FROM json_array_elements_text($2::json) c, (SELECT DISTINCT ON"
                         " (x->>'key') x->>'key' AS key, x->>'body' AS body, (x->>'ms')::bigint"
                         " AS ms FROM json_array_elements($3::json) WITH ORDINALITY AS t(x, i)"
                         " ORDER BY x->>'key', i DESC) e"
                         " ON CONFLICT (connector, key) DO UPDATE SET hms_from = EXCLUDED.hms_from,"
                         " hms_body = EXCLUDED.hms_body, hms_ms = EXCLUDED.hms_ms, updated_at ="
                         " now() WHERE st.hms_ms IS NULL OR st.hms_ms <= EXCLUDED.hms_ms",
                         3, vals, PGRES_COMMAND_OK, "conflict state (hms)", &res, err);
    }
    PQclear(res);
    return rc;
}

int ess_store_conflict_get(struct ess_store *s, const char *connector, json_t *keys, json_t **state,
                           struct ess_err *err)
{
    PGresult *res = NULL;
    json_t *row;
    int r, c;
    int rc;

    *state = NULL;
    rc = keys_select(s,
                     "SELECT key, hms_body, hms_ms, partner_body, partner_ms"
                     " FROM ess_conflict_state WHERE connector = $1 AND key IN"
                     " (SELECT json_array_elements_text($2::json))",
                     connector, keys, "conflict state get", &res, err);
    if (rc == ESS_OK) {
        *state = json_object();
        for (r = 0; *state != NULL && r < PQntuples(res); r++) {
            static const char *const names[] = {"key", "hms_body", "hms_ms", "partner_body",
                                                "partner_ms"};
            row = json_object();
            for (c = 1; row != NULL && c < 5; c++) {
                json_object_set_new(row, names[c],
                                    PQgetisnull(res, r, c) ? json_null()
                                    : c == 2 || c == 4
                                        ? json_integer(strtoll(PQgetvalue(res, r, c), NULL, 10))
                                        : json_string(PQgetvalue(res, r, c)));
            }
            json_object_set_new(*state, PQgetvalue(res, r, 0), row);
        }
        rc = *state != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    PQclear(res);
    return rc;
}

static int conflict_commit_body(struct ess_store *s, const char *const *vals, struct ess_err *err)
{
    PGresult *res = NULL;
    int rc;

    rc = exec_params(s,
                     "INSERT INTO ess_conflict_state AS st (connector, key, partner_body,"
                     " partner_ms, hms_body, hms_ms, updated_at) SELECT DISTINCT ON (e->>'key')"
                     " $1, e->>'key', e->>'body', (e->>'ms')::bigint, e->>'hms_body',"
                     " (e->>'hms_stored_ms')::bigint, now() FROM json_array_elements($2::json)"
                     " WITH ORDINALITY AS t(e, i) ORDER BY e->>'key', i DESC"
                     " ON CONFLICT (connector, key) DO UPDATE SET partner_body ="
                     " EXCLUDED.partner_body, partner_ms = EXCLUDED.partner_ms, hms_body = CASE"
                     " WHEN EXCLUDED.hms_body IS NOT NULL AND st.hms_ms IS NOT DISTINCT FROM"
                     " EXCLUDED.hms_ms THEN EXCLUDED.hms_body ELSE st.hms_body END,"
                     " updated_at = now()",
                     2, vals, PGRES_COMMAND_OK, "conflict state (partner)", &res, err);
    PQclear(res);
    res = NULL;
    if (rc == ESS_OK) {
        rc = exec_params(s,
                         "INSERT INTO ess_conflicts (connector, key, field, strategy, winner,"
                         " winner_value, loser_value, hms_changed_at, partner_changed_at)"
                         " SELECT $1, e->>'key', l->>'field', l->>'strategy', l->>'winner',"
                         " (l->'winner_value')::text, (l->'loser_value')::text,"
                         " to_timestamp((e->>'hms_ms')::bigint / 1000.0),"
                         " to_timestamp((e->>'ms')::bigint / 1000.0)"
                         " FROM json_array_elements($2::json) e,"
                         " json_array_elements(e->'losses') l",
                         2, vals, PGRES_COMMAND_OK, "conflict audit", &res, err);
    }
    PQclear(res);
    return rc;
}

int ess_store_conflict_commit(struct ess_store *s, const char *connector, json_t *entries,
                              struct ess_err *err)
{
    const char *vals[2] = {connector, NULL};
    char *text = NULL;
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK) {
        text = json_dumps(entries, JSON_COMPACT);
        rc = text != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "store: out of memory");
    }
    vals[1] = text;
    if (rc == ESS_OK) {
        rc = exec_simple(s, "BEGIN", "conflict commit: begin", err);
    }
    if (rc == ESS_OK) {
        rc = conflict_commit_body(s, vals, err);
    }
    if (rc == ESS_OK) {
        rc = exec_simple(s, "COMMIT", "conflict commit", err);
    }
    if (rc != ESS_OK) {
        rollback_quietly(s);
    }
    free(text);
    return rc;
}

/* ------------------------------------------------- ess-reconcile: HMS side -- */

/* One FETCH of the open cursor into cb; *done when it returned no row. */
static int latest_fetch(struct ess_store *s, ess_store_latest_fn cb, void *arg, int *done,
                        struct ess_err *err)
{
    PGresult *res = PQexec(s->conn, "FETCH 5000 FROM ess_latest");
    int rc = check_result(s, &res, PGRES_TUPLES_OK, "latest: fetch", err);
    int r;

    for (r = 0; rc == ESS_OK && r < PQntuples(res); r++) {
        rc = cb(arg, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
    }
    *done = rc != ESS_OK || PQntuples(res) == 0;
    PQclear(res);
    return rc;
}

int ess_store_latest_each(struct ess_store *s, const char *connector, ess_store_latest_fn cb,
                          void *arg, struct ess_err *err)
{
    const char *vals[1] = {connector};
    PGresult *res = NULL;
    int done = 0;
    int rc = check_args(s, connector, err);

    if (rc == ESS_OK) {
        rc =
            exec_simple(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "latest: begin", err);
    }
    if (rc == ESS_OK) {
        /* The journal (within replay_window) and, for a two-way connector, the
         * last HMS change recorded per key (kept beyond the window). */
        rc = exec_params(s,
                         "DECLARE ess_latest NO SCROLL CURSOR FOR SELECT DISTINCT ON (key) key,"
                         " body FROM (SELECT key, body, received_ms AS ms FROM ess_journal"
                         " WHERE connector = $1 UNION ALL SELECT key, hms_body, hms_ms"
                         " FROM ess_conflict_state WHERE hms_from = $1 AND hms_body IS NOT NULL)"
                         " x ORDER BY key, ms DESC",
                         1, vals, PGRES_COMMAND_OK, "latest: declare", &res, err);
        PQclear(res);
    }
    while (rc == ESS_OK && !done) {
        rc = latest_fetch(s, cb, arg, &done, err);
    }
    rollback_quietly(s); /* read only: nothing to keep */
    return rc;
}

/* ------------------------------------------------ pipelined side writes -- */

int ess_store_pipe_begin(struct ess_store *s, struct ess_err *err)
{
    if (s == NULL || s->conn == NULL || s->pend || s->pipe) {
        return ess_err_set(err, ESS_EINVAL, "store: pipe_begin: no session, or one is under way");
    }
    /* Non-blocking: a large pipeline is written out by ess_store_pipe_poll
     * as the socket takes it, never with the caller waiting. */
    if (PQsetnonblocking(s->conn, 1) != 0 || PQenterPipelineMode(s->conn) != 1) {
        PQsetnonblocking(s->conn, 0);
        return store_fail(s, NULL, "pipeline", err);
    }
    s->pipe = true;
    s->pipe_failed = false;
    s->pipe_err[0] = '\0';
    PQclear(s->pipe_rows);
    s->pipe_rows = NULL;
    s->pipe_stmt = 0;
    memset(s->pipe_affected, 0, sizeof(s->pipe_affected));
    return ESS_OK;
}

/* One statement into the open pipeline; lens/fmts NULL: text parameters. */
static int pipe_send(struct ess_store *s, const char *sql, int nparams, const char *const *vals,
                     const int *lens, const int *fmts, struct ess_err *err)
{
    if (s == NULL || s->conn == NULL || !s->pipe || sql == NULL) {
        return ess_err_set(err, ESS_EINVAL, "store: pipe_exec outside a pipeline");
    }
    if (PQsendQueryParams(s->conn, sql, nparams, NULL, vals, lens, fmts, 0) == 0) {
        return store_fail(s, NULL, "pipeline send", err);
    }
    return ESS_OK;
}

int ess_store_pipe_exec(struct ess_store *s, const char *sql, int nparams, const char *const *vals,
                        struct ess_err *err)
{
    return pipe_send(s, sql, nparams, vals, NULL, NULL, err);
}

int ess_store_pipe_offset(struct ess_store *s, const char *connector, long long seq,
                          struct ess_err *err)
{
    char num[NUM_MAX];
    const char *vals[2] = {connector, num};
    int rc = check_args(s, connector, err);

    if (rc != ESS_OK) {
        return rc;
    }
    snprintf(num, sizeof(num), "%lld", seq);
    /* Unlike ST_OFFSET_SET, synchronous_commit stays on: the transaction
     * also holds the audit and ticket rows, and nobody waits for it. */
    return ess_store_pipe_exec(s,
                               "INSERT INTO ess_offsets (connector, delivered_seq, updated_at)"
                               " VALUES ($1, $2::bigint, now()) ON CONFLICT (connector) DO UPDATE"
                               " SET delivered_seq = EXCLUDED.delivered_seq, updated_at = now()",
                               2, vals, err);
}

int ess_store_pipe_commit(struct ess_store *s, struct ess_err *err)
{
    if (s == NULL || s->conn == NULL || !s->pipe) {
        return ess_err_set(err, ESS_EINVAL, "store: pipe_commit outside a pipeline");
    }
    if (PQpipelineSync(s->conn) != 1 || PQflush(s->conn) < 0) {
        return store_fail(s, NULL, "pipeline sync", err);
    }
    return ESS_OK;
}

int ess_store_pipe_busy(const struct ess_store *s)
{
    return s != NULL && s->pipe;
}

int ess_store_pipe_writing(const struct ess_store *s)
{
    return s != NULL && s->pipe && s->conn != NULL && PQflush(s->conn) == 1;
}

/* Read every result that is in; true once the sync point's came. */
static bool pipe_read(struct ess_store *s)
{
    PGresult *r;
    ExecStatusType st;
    bool nothing = false;

    while (!PQisBusy(s->conn)) {
        r = PQgetResult(s->conn);
        if (r == NULL) {
            if (nothing) {
                return false; /* no statement left in the queue */
            }
            nothing = true; /* the end of one statement's results */
            continue;
        }
        nothing = false;
        st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            return true;
        }
        if (st == PGRES_COMMAND_OK && s->pipe_stmt < PIPE_COUNTED) {
            parse_ll(PQcmdTuples(r), &s->pipe_affected[s->pipe_stmt]);
        }
        s->pipe_stmt++;
        if (st == PGRES_TUPLES_OK && s->pipe_stmt == 1) {
            s->pipe_rows = r; /* kept for pipe_controls_take / pipe_count */
            continue;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !s->pipe_failed) {
            struct ess_err e;

            ess_err_clear(&e);
            store_fail(s, st == PGRES_PIPELINE_ABORTED ? NULL : r, "side write", &e);
            snprintf(s->pipe_err, sizeof(s->pipe_err), "%s", e.msg);
            s->pipe_failed = true;
        }
        PQclear(r);
    }
    return false;
}

int ess_store_pipe_poll(struct ess_store *s, int block, int *done, struct ess_err *err)
{
    struct pollfd pfd;
    int flushed;

    *done = 0;
    if (s == NULL || s->conn == NULL || !s->pipe) {
        return ess_err_set(err, ESS_EINVAL, "store: no pipeline under way");
    }
    for (;;) {
        flushed = PQflush(s->conn);
        if (flushed < 0 || PQconsumeInput(s->conn) == 0) {
            s->pipe = false; /* the session is gone: the caller drops the store */
            return store_fail(s, NULL, "side write", err);
        }
        if (pipe_read(s)) {
            break;
        }
        if (!block) {
            return ESS_OK;
        }
        pfd = (struct pollfd){PQsocket(s->conn), POLLIN | (flushed == 1 ? POLLOUT : 0), 0};
        if (poll(&pfd, 1, 1000) < 0) {
            s->pipe = false;
            return ess_err_set(err, ESS_ESTORE, "postgres: side write: poll failed");
        }
    }
    *done = 1;
    s->pipe = false;
    if (PQexitPipelineMode(s->conn) != 1 || PQsetnonblocking(s->conn, 0) != 0) {
        return store_fail(s, NULL, "pipeline end", err);
    }
    if (s->pipe_failed) {
        return ess_err_set(err, ESS_ESTORE, "%s", s->pipe_err);
    }
    return ESS_OK;
}

int ess_store_pipe_controls(struct ess_store *s, const char *connector, struct ess_err *err)
{
    const char *vals[1] = {connector};
    int rc = check_args(s, connector, err);

    return rc == ESS_OK ? ess_store_pipe_exec(s, CONTROLS_SQL, 1, vals, err) : rc;
}

int ess_store_pipe_backlog(struct ess_store *s, const char *connector, long long after_seq,
                           struct ess_err *err)
{
    char after[NUM_MAX];
    const char *vals[2] = {connector, after};
    int rc = check_args(s, connector, err);

    snprintf(after, sizeof(after), "%lld", after_seq);
    return rc == ESS_OK ? ess_store_pipe_exec(s, stmt_sql[ST_BACKLOG], 2, vals, err) : rc;
}

int ess_store_pipe_heartbeat(struct ess_store *s, const char *connector, const char *instance,
                             const char *state, int heartbeat_sec, const char *body,
                             struct ess_err *err)
{
    char hb[NUM_MAX];
    const char *vals[5] = {connector, instance, state, hb, body};
    int rc = check_args(s, connector, err);

    snprintf(hb, sizeof(hb), "%d", heartbeat_sec);
    return rc == ESS_OK ? ess_store_pipe_exec(s, HEARTBEAT_SQL, 5, vals, err) : rc;
}

int ess_store_pipe_retain(struct ess_store *s, const char *connector, long long upto_seq,
                          long journal_sec, long tickets_sec, int limit, struct ess_err *err)
{
    char upto[NUM_MAX], jwin[NUM_MAX], twin[NUM_MAX], lim[NUM_MAX];
    const char *jvals[4] = {connector, upto, jwin, lim};
    const char *tvals[3] = {connector, twin, lim};
    int rc = check_args(s, connector, err);

    snprintf(upto, sizeof(upto), "%lld", upto_seq);
    snprintf(jwin, sizeof(jwin), "%ld", journal_sec < 0 ? 0L : journal_sec);
    snprintf(twin, sizeof(twin), "%ld", tickets_sec);
    snprintf(lim, sizeof(lim), "%d", limit < 1 ? 1 : limit);
    rc = rc == ESS_OK ? ess_store_pipe_exec(s, stmt_sql[ST_RETAIN], 4, jvals, err) : rc;
    rc = rc == ESS_OK ? ess_store_pipe_exec(s, RETAIN_HEARTBEATS_SQL, 1, jvals, err) : rc;
    if (rc == ESS_OK && tickets_sec > 0) {
        rc = ess_store_pipe_exec(s, stmt_sql[ST_RETAIN_TICKETS], 3, tvals, err);
    }
    return rc;
}

void ess_store_pipe_controls_take(const struct ess_store *s, struct ess_store_controls *c)
{
    if (s == NULL || s->pipe_rows == NULL) {
        memset(c, 0, sizeof(*c));
        return;
    }
    controls_from(s->pipe_rows, c);
}

long long ess_store_pipe_count(const struct ess_store *s, int stmt)
{
    long long v = -1;

    if (s == NULL || stmt < 0 || stmt >= PIPE_COUNTED) {
        return -1;
    }
    if (stmt == 0 && s->pipe_rows != NULL) {
        if (PQntuples(s->pipe_rows) < 1 || parse_ll(PQgetvalue(s->pipe_rows, 0, 0), &v) != ESS_OK) {
            return -1;
        }
        return v;
    }
    return s->pipe_affected[stmt];
}
