/*
 * it_store -- ess_store against the stack's real Postgres (ESS_PG_URL):
 * migrations (idempotent, concurrent), journal append/dedupe/read, offsets,
 * dead letters, backlog, retention, pipelined side writes (all or nothing),
 * connection loss + reset, append rate.
 *
 * Connector names carry the pid so a rerun against the same stack starts clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ess_audit.h"
#include "ess_store.h"

#define BODY_FMT                                                             \
    "{\"permit_id\":\"P-%06d\",\"street\":\"1 Main St\",\"truck_limit\":%d," \
    "\"status\":\"PENDING\",\"issued_on\":\"2026-11-26\",\"note\":\"%s\"}"

struct fixture {
    const char *url;
    struct ess_store *store;
    PGconn *check; /* a second session to look at the tables directly */
};

/* ------------------------------------------------------------- helpers -- */

static void name(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "it-%ld-%s", (long)getpid(), what);
}

/* One bigint from a parameterised query on the checking session. */
static long long sql_ll(struct fixture *f, const char *sql, const char *p1, const char *p2)
{
    const char *vals[2] = {p1, p2};
    int n = p1 == NULL ? 0 : p2 == NULL ? 1 : 2;
    PGresult *res = PQexecParams(f->check, sql, n, NULL, vals, NULL, NULL, 0);
    long long v;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fail_msg("%s: %s", sql, PQerrorMessage(f->check));
    }
    v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* n events e<first>..e<first+n-1> for key k<i % keys>; strings owned by the caller. */
static struct ess_store_event *make_events(int first, int n, int keys)
{
    struct ess_store_event *ev = calloc((size_t)n, sizeof(*ev));
    int i;

    assert_non_null(ev);
    for (i = 0; i < n; i++) {
        char buf[512];

        snprintf(buf, sizeof(buf), "e%d", first + i);
        ev[i].event_id = strdup(buf);
        snprintf(buf, sizeof(buf), "k%d", i % keys);
        ev[i].key = strdup(buf);
        ev[i].topic = "permits.changed";
        snprintf(buf, sizeof(buf), BODY_FMT, first + i, i % 40, "quote \" and 'tick' and \\");
        ev[i].body = strdup(buf);
        ev[i].received_ms = 1700000000000LL + first + i;
    }
    return ev;
}

static void free_events(struct ess_store_event *ev, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        free((char *)ev[i].event_id);
        free((char *)ev[i].key);
        free((char *)ev[i].body);
    }
    free(ev);
}

static size_t append(struct fixture *f, const char *conn, struct ess_store_event *ev, size_t n)
{
    struct ess_err err = {0};
    size_t inserted = 12345;
    long long *seqs = calloc(n ? n : 1, sizeof(*seqs));
    long long last = 0;
    size_t fresh = 0;
    size_t i;
    int rc = ess_store_journal_append(f->store, conn, ev, n, &inserted, seqs, &err);

    if (rc != ESS_OK) {
        fail_msg("append: %s", err.msg);
    }
    /* Each new event gets its seq, in order; a duplicate gets -1. */
    for (i = 0; i < n; i++) {
        if (seqs[i] == -2) {
            fail_msg("append: seqs could not be matched");
        }
        if (seqs[i] >= 0) {
            assert_true(seqs[i] > last);
            last = seqs[i];
            fresh++;
        }
    }
    assert_int_equal(fresh, inserted);
    free(seqs);
    return inserted;
}

static long long backlog(struct fixture *f, const char *conn, long long after)
{
    struct ess_err err = {0};
    long long count = -1;

    if (ess_store_backlog(f->store, conn, after, &count, &err) != ESS_OK) {
        fail_msg("backlog: %s", err.msg);
    }
    return count;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------- fixture -- */

static int setup(void **state)
{
    static struct fixture f;
    struct ess_err err = {0};

    f.url = getenv("ESS_PG_URL");
    if (f.url == NULL) {
        fprintf(stderr, "ESS_PG_URL not set (run through with_stack.sh)\n");
        return -1;
    }
    f.store = ess_store_new(f.url, &err);
    if (f.store == NULL || ess_store_migrate(f.store, &err) != ESS_OK) {
        fprintf(stderr, "store: %s\n", err.msg);
        return -1;
    }
    f.check = PQconnectdb(f.url);
    if (PQstatus(f.check) != CONNECTION_OK) {
        fprintf(stderr, "check session: %s", PQerrorMessage(f.check));
        return -1;
    }
    PQclear(PQexec(f.check, "SET application_name = 'ess-it-store'"));
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    ess_store_free(f->store);
    PQfinish(f->check);
    return 0;
}

/* ---------------------------------------------------------- migrations -- */

static void test_migrate_idempotent(void **state)
{
    struct fixture *f = *state;
    struct ess_err err = {0};

    assert_int_equal(ess_store_migrate(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_migrate(f->store, &err), ESS_OK);
    /* every version once, 1..max without a gap */
    assert_int_equal(
        sql_ll(f, "SELECT count(*) FROM ess_schema_migrations", NULL, NULL),
        sql_ll(f, "SELECT count(DISTINCT version) FROM ess_schema_migrations", NULL, NULL));
    assert_int_equal(sql_ll(f, "SELECT count(*) FROM ess_schema_migrations", NULL, NULL),
                     sql_ll(f, "SELECT max(version) FROM ess_schema_migrations", NULL, NULL));
    assert_int_equal(sql_ll(f, "SELECT min(version) FROM ess_schema_migrations", NULL, NULL), 1);
    assert_int_equal(sql_ll(f, "SELECT count(*) FROM pg_tables WHERE tablename = ANY($1::text[])",
                            "{ess_journal,ess_offsets,ess_dead_letters,ess_manifests,ess_controls}",
                            NULL),
                     5);
}

/* sql on c, which must succeed. */
static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
}

/* CREATE or DROP (verb) the scratch database db: ess_it_<our pid>, no quoting. */
static void scratch_db(struct fixture *f, const char *verb, const char *db)
{
    char sql[128];

    snprintf(sql, sizeof(sql), "%s DATABASE %s", verb, db);
    exec_ok(f->check, sql);
}

/* conninfo for database db on the stack's server, from ESS_PG_URL, with
 * these session options (NULL: none; they win over the store's own). */
static void scratch_conninfo(const char *url, const char *db, const char *options, char *buf,
                             size_t len)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    PQconninfoOption *o;
    size_t off = 0;

    assert_non_null(opts);
    for (o = opts; o->keyword != NULL; o++) {
        if (o->val != NULL && strcmp(o->keyword, "dbname") != 0) {
            off += (size_t)snprintf(buf + off, len - off, "%s='%s' ", o->keyword, o->val);
        }
    }
    if (options != NULL) {
        off += (size_t)snprintf(buf + off, len - off, "options='%s' ", options);
    }
    snprintf(buf + off, len - off, "dbname='%s'", db);
    PQconninfoFree(opts);
}

static int migrate_child(const char *conninfo)
{
    struct ess_err err = {0};
    struct ess_store *s = ess_store_new(conninfo, &err);
    int rc = s != NULL ? ess_store_migrate(s, &err) : err.code;

    if (rc != ESS_OK) {
        fprintf(stderr, "child %ld: %s\n", (long)getpid(), err.msg);
    }
    ess_store_free(s);
    return rc == ESS_OK ? 0 : 1;
}

/* Several processes migrate a brand-new database at once. */
static void test_migrate_concurrent(void **state)
{
    struct fixture *f = *state;
    char db[64], conninfo[1024];
    pid_t pids[4];
    int i, status;

    snprintf(db, sizeof(db), "ess_it_mig_%ld", (long)getpid());
    scratch_db(f, "CREATE", db);
    scratch_conninfo(f->url, db, NULL, conninfo, sizeof(conninfo));
    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            _exit(migrate_child(conninfo));
        }
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    scratch_db(f, "DROP", db);
}

/* Migration 10 on a journal written under version 9's indexes: rows kept,
 * the primary key (connector, seq), the per-key index (key), nothing else
 * but the event_id key; appends and dedupe as before. */
static void test_migrate_journal_keys(void **state)
{
    struct fixture *f = *state;
    struct ess_err err = {0};
    char db[64], conninfo[1024];
    struct ess_store *s;
    struct ess_store_event *ev = make_events(0, 300, 7);
    PGconn *c;
    PGresult *res;
    size_t inserted = 0;
    long long seqs[300];

    snprintf(db, sizeof(db), "ess_it_mig10_%ld", (long)getpid());
    scratch_db(f, "CREATE", db);
    scratch_conninfo(f->url, db, NULL, conninfo, sizeof(conninfo));
    s = ess_store_new(conninfo, &err);
    assert_non_null(s);
    assert_int_equal(ess_store_migrate(s, &err), ESS_OK);
    c = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    /* back to version 9's journal indexes, then rows for two connectors */
    exec_ok(c, "ALTER TABLE ess_journal DROP CONSTRAINT ess_journal_pkey,"
               " ADD CONSTRAINT ess_journal_pkey PRIMARY KEY (seq);"
               "CREATE INDEX ess_journal_connector_seq ON ess_journal (connector, seq);"
               "CREATE INDEX ess_journal_connector_key_seq ON ess_journal (connector, key, seq);"
               "DROP INDEX ess_journal_key;"
               "DELETE FROM ess_schema_migrations WHERE version = 10");
    assert_int_equal(ess_store_journal_append(s, "mig-a", ev, 300, &inserted, seqs, &err), ESS_OK);
    assert_int_equal(inserted, 300);
    assert_int_equal(ess_store_journal_append(s, "mig-b", ev, 300, &inserted, seqs, &err), ESS_OK);
    assert_int_equal(inserted, 300);
    exec_ok(c, "INSERT INTO ess_journal (connector, event_id, key, body, received_ms)"
               " SELECT 'mig-old', 'o' || i, 'k' || (i % 7), '{}', i"
               " FROM generate_series(1, 200000) i");

    /* the index rebuild outlasts this session's statement_timeout (50 ms):
     * a migration is never cut off by it */
    ess_store_free(s);
    scratch_conninfo(f->url, db, "-c statement_timeout=50 -c client_min_messages=warning", conninfo,
                     sizeof(conninfo));
    s = ess_store_new(conninfo, &err);
    assert_non_null(s);
    assert_int_equal(ess_store_migrate(s, &err), ESS_OK);
    res = PQexec(c, "SELECT string_agg(indexdef, ' | ' ORDER BY indexname) FROM pg_indexes"
                    " WHERE tablename = 'ess_journal'");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(
        PQgetvalue(res, 0, 0),
        "CREATE UNIQUE INDEX ess_journal_connector_event_id_key ON public.ess_journal USING btree"
        " (connector, event_id) | CREATE INDEX ess_journal_key ON public.ess_journal USING btree"
        " (key) | CREATE UNIQUE INDEX ess_journal_pkey ON public.ess_journal USING btree"
        " (connector, seq)");
    PQclear(res);
    res = PQexec(c, "SELECT count(*), count(DISTINCT (connector, seq)) FROM ess_journal");
    assert_string_equal(PQgetvalue(res, 0, 0), "200600");
    assert_string_equal(PQgetvalue(res, 0, 1), "200600");
    PQclear(res);
    res = PQexec(c, "SELECT 1 FROM pg_constraint WHERE conname = 'ess_journal_pkey'"
                    " AND contype = 'p'");
    assert_int_equal(PQntuples(res), 1);
    PQclear(res);
    /* dedupe per connector still holds; a new event follows the old rows */
    assert_int_equal(ess_store_journal_append(s, "mig-a", ev, 300, &inserted, seqs, &err), ESS_OK);
    assert_int_equal(inserted, 0);
    assert_int_equal(ess_store_journal_append(s, "mig-c", ev, 1, &inserted, seqs, &err), ESS_OK);
    assert_int_equal(inserted, 1);
    res = PQexec(c, "SELECT max(seq) FROM ess_journal WHERE connector <> 'mig-c'");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_true(seqs[0] > atoll(PQgetvalue(res, 0, 0)));
    PQclear(res);

    PQfinish(c);
    ess_store_free(s);
    free_events(ev, 300);
    scratch_db(f, "DROP", db);
}

/* ------------------------------------------------------------- journal -- */

static void test_append_dedupe(void **state)
{
    struct fixture *f = *state;
    char a[64], b[64];
    struct ess_store_event *ev = make_events(1, 6, 3);
    const char *e3 = ev[2].event_id;

    name(a, sizeof(a), "dedupe-a");
    name(b, sizeof(b), "dedupe-b");
    ev[2].event_id = ev[0].event_id; /* a duplicate inside one burst */
    assert_int_equal(append(f, a, ev, 5), 4);
    ev[2].event_id = e3;
    assert_int_equal(append(f, a, ev, 6), 2); /* e3 and e6 are new */
    assert_int_equal(append(f, a, ev, 6), 0); /* all seen */
    assert_int_equal(append(f, b, ev, 1), 1); /* same id, other connector */
    assert_int_equal(append(f, a, ev, 0), 0); /* nothing to do */
    assert_int_equal(backlog(f, a, 0), 6);
    assert_int_equal(backlog(f, b, 0), 1);
    free_events(ev, 6);
}

static void test_append_chunks_atomic(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    size_t inserted = 99;
    struct ess_store_event *ev = make_events(0, 2500, 50);
    const char *body;

    name(c, sizeof(c), "chunks");
    /* a bad row in the third chunk: the first two must be rolled back */
    body = ev[2100].body;
    ev[2100].body = NULL;
    assert_int_equal(ess_store_journal_append(f->store, c, ev, 2500, &inserted, NULL, &err),
                     ESS_EINVAL);
    assert_int_equal(inserted, 0);
    assert_int_equal(backlog(f, c, 0), 0);
    ev[2100].body = body;
    assert_int_equal(append(f, c, ev, 2500), 2500);
    assert_int_equal(append(f, c, ev, 2500), 0);
    assert_int_equal(backlog(f, c, 0), 2500);
    free_events(ev, 2500);
}

static void test_read_order_limit(void **state)
{
    struct fixture *f = *state;
    char c[64], want[32];
    struct ess_err err = {0};
    struct ess_store_rows rows = {0};
    struct ess_store_event *ev = make_events(0, 10, 3);
    long long last;
    size_t i;

    name(c, sizeof(c), "read");
    ev[4].topic = NULL;
    assert_int_equal(append(f, c, ev, 10), 10);
    assert_int_equal(ess_store_journal_read(f->store, c, 0, 4, &rows, &err), ESS_OK);
    assert_int_equal(rows.n, 4);
    for (i = 0; i < rows.n; i++) {
        snprintf(want, sizeof(want), "e%zu", i);
        assert_string_equal(rows.v[i].event_id, want);
        assert_string_equal(rows.v[i].key, ev[i].key);
        assert_string_equal(rows.v[i].body, ev[i].body);
        assert_int_equal(rows.v[i].received_ms, ev[i].received_ms);
        assert_true(i == 0 || rows.v[i].seq > rows.v[i - 1].seq);
    }
    last = rows.v[3].seq;
    ess_store_rows_fini(&rows);
    assert_int_equal(ess_store_journal_read(f->store, c, last, 100, &rows, &err), ESS_OK);
    assert_int_equal(rows.n, 6);
    assert_string_equal(rows.v[0].event_id, "e4");
    assert_string_equal(rows.v[5].event_id, "e9");
    last = rows.v[5].seq;
    ess_store_rows_fini(&rows);
    assert_int_equal(ess_store_journal_read(f->store, c, last, 100, &rows, &err), ESS_OK);
    assert_int_equal(rows.n, 0);
    assert_null(rows.v);
    ess_store_rows_fini(&rows);
    free_events(ev, 10);
}

/* ------------------------------------------- offsets, dead letters, ... -- */

static void test_offsets(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    long long seq = -1;

    name(c, sizeof(c), "offsets");
    assert_int_equal(ess_store_offset_get(f->store, c, &seq, &err), ESS_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(ess_store_offset_set(f->store, c, 42, &err), ESS_OK);
    assert_int_equal(ess_store_offset_get(f->store, c, &seq, &err), ESS_OK);
    assert_int_equal(seq, 42);
    assert_int_equal(ess_store_offset_set(f->store, c, 7, &err), ESS_OK); /* replay moves back */
    assert_int_equal(ess_store_offset_get(f->store, c, &seq, &err), ESS_OK);
    assert_int_equal(seq, 7);
}

/* Tickets: one statement for all of them; NULL where nothing was recorded
 * (no status, no error, never attempted), values byte for byte otherwise. */
static void test_tickets(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    const struct ess_store_ticket t[3] = {
        {7, "e7", "k\"1", "delivered", 1, 200, NULL, 1795729200123LL},
        {8, "e8", "k2", "parked", 8, 503, "HTTP 503: 'busy' \\ \"again\"", 1795729200000LL},
        {9, "e9", "k3", "skipped", 0, 0, "", 0},
    };
    const char *vals[1];
    PGresult *res;

    name(c, sizeof(c), "tickets");
    vals[0] = c;
    assert_int_equal(ess_store_tickets_append(f->store, c, t, 3, &err), ESS_OK);
    assert_int_equal(ess_store_tickets_append(f->store, c, t, 0, &err), ESS_OK);
    res = PQexecParams(f->check,
                       "SELECT seq, event_id, key, outcome, attempts, last_status, last_error,"
                       " (extract(epoch FROM first_at) * 1000)::bigint, done_at IS NOT NULL"
                       " FROM ess_tickets WHERE connector = $1 ORDER BY seq",
                       1, NULL, vals, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 3);
    assert_string_equal(PQgetvalue(res, 0, 2), "k\"1");
    assert_string_equal(PQgetvalue(res, 0, 5), "200");
    assert_true(PQgetisnull(res, 0, 6));
    assert_string_equal(PQgetvalue(res, 0, 7), "1795729200123");
    assert_string_equal(PQgetvalue(res, 1, 3), "parked");
    assert_string_equal(PQgetvalue(res, 1, 4), "8");
    assert_string_equal(PQgetvalue(res, 1, 6), "HTTP 503: 'busy' \\ \"again\"");
    assert_string_equal(PQgetvalue(res, 2, 1), "e9");
    assert_true(PQgetisnull(res, 2, 5));
    assert_true(PQgetisnull(res, 2, 6));
    assert_true(PQgetisnull(res, 2, 7));
    assert_string_equal(PQgetvalue(res, 2, 8), "t");
    PQclear(res);
}

static void test_park(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_row row = {17, "ev-17", "k1", "{\"a\":1}", 1700000000000LL};

    name(c, sizeof(c), "park");
    assert_int_equal(ess_store_park(f->store, c, &row, "HTTP 400: bad request", 1, NULL, 400, &err),
                     ESS_OK);
    assert_int_equal(sql_ll(f,
                            "SELECT last_status FROM ess_dead_letters WHERE connector = $1"
                            " AND status = $2",
                            c, "parked"),
                     400);
    /* Parked again (a replayed event): one row, updated, open as "held". */
    assert_int_equal(ess_store_park(f->store, c, &row, "again", 2, "held", 0, &err), ESS_OK);
    assert_int_equal(
        sql_ll(f, "SELECT count(*) FROM ess_dead_letters WHERE connector = $1", c, NULL), 1);
    assert_int_equal(sql_ll(f,
                            "SELECT attempts FROM ess_dead_letters WHERE connector = $1"
                            " AND reason = $2",
                            c, "again"),
                     2);
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_dead_letters WHERE connector = $1"
                            " AND status = $2",
                            c, "held"),
                     1);
    assert_int_equal(ess_store_park(f->store, c, NULL, "x", 1, NULL, 0, &err), ESS_EINVAL);
}

static void test_backlog_and_retain(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_rows rows = {0};
    struct ess_store_event *ev = make_events(0, 5, 2);

    name(c, sizeof(c), "retain");
    assert_int_equal(append(f, c, ev, 5), 5);
    assert_int_equal(ess_store_journal_read(f->store, c, 0, 5, &rows, &err), ESS_OK);
    assert_int_equal(backlog(f, c, rows.v[1].seq), 3);
    assert_int_equal(backlog(f, c, rows.v[4].seq), 0);
    /* inside the window: nothing goes */
    assert_int_equal(ess_store_retain(f->store, c, rows.v[2].seq, 3600, &err), ESS_OK);
    assert_int_equal(backlog(f, c, 0), 5);
    /* window 0: everything at or below the offset goes, nothing above it */
    assert_int_equal(ess_store_retain(f->store, c, rows.v[2].seq, 0, &err), ESS_OK);
    assert_int_equal(backlog(f, c, 0), 2);
    assert_int_equal(backlog(f, c, rows.v[2].seq), 2);
    ess_store_rows_fini(&rows);
    free_events(ev, 5);
}

/* ------------------------------------------------ pipelined side writes -- */

/* Poll pipe_poll without blocking until done (bounded), as a loop would. */
static int pipe_polling(struct fixture *f, struct ess_err *err)
{
    double deadline = now_s() + 10;
    int done = 0;
    int rc;

    for (;;) {
        rc = ess_store_pipe_poll(f->store, 0, &done, err);
        if (rc != ESS_OK || done) {
            assert_false(ess_store_pipe_busy(f->store));
            return rc;
        }
        if (now_s() > deadline) {
            fail_msg("pipe_poll: not done after 10 s");
        }
        usleep(1000);
    }
}

/* Tickets and the offset in one pipeline commit together, or not at all. */
static void test_pipe_all_or_nothing(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_controls ctl;
    struct ess_store_ticket t[2] = {{1, "ev-1", "k1", "delivered", 1, 200, NULL, 1700000000000LL},
                                    {2, "ev-2", "k2", "parked", 3, 400, "HTTP 400", 0}};
    long long seq = -1;
    int done = 0;

    name(c, sizeof(c), "pipe");
    assert_int_equal(ess_store_pipe_begin(f->store, &err), ESS_OK);
    assert_true(ess_store_pipe_busy(f->store));
    assert_int_equal(ess_store_pipe_begin(f->store, &err), ESS_EINVAL); /* one at a time */
    ess_err_clear(&err);
    assert_int_equal(ess_store_tickets_send(f->store, c, t, 2, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_offset(f->store, c, 9, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_commit(f->store, &err), ESS_OK);
    assert_int_equal(pipe_polling(f, &err), ESS_OK);
    assert_int_equal(sql_ll(f, "SELECT count(*) FROM ess_tickets WHERE connector = $1", c, NULL),
                     2);
    assert_int_equal(ess_store_offset_get(f->store, c, &seq, &err), ESS_OK);
    assert_int_equal(seq, 9);

    /* A failing statement in the middle: the ticket before it and the offset
     * after it are not committed either. */
    assert_int_equal(ess_store_pipe_begin(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_tickets_send(f->store, c, t, 1, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_exec(f->store, "SELECT 1 / 0", 0, NULL, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_offset(f->store, c, 20, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_commit(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_poll(f->store, 1, &done, &err), ESS_ESTORE);
    assert_int_equal(done, 1);
    assert_non_null(strstr(err.msg, "division by zero"));
    assert_int_equal(sql_ll(f, "SELECT count(*) FROM ess_tickets WHERE connector = $1", c, NULL),
                     2);
    assert_int_equal(ess_store_offset_get(f->store, c, &seq, &err), ESS_OK); /* usable again */
    assert_int_equal(seq, 9);

    /* Reads: the backlog's count, the controls (none: all zero). */
    assert_int_equal(ess_store_pipe_begin(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_backlog(f->store, c, 0, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_commit(f->store, &err), ESS_OK);
    assert_int_equal(pipe_polling(f, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_count(f->store, 0), 0);
    assert_int_equal(ess_store_pipe_begin(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_controls(f->store, c, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_commit(f->store, &err), ESS_OK);
    assert_int_equal(pipe_polling(f, &err), ESS_OK);
    ess_store_pipe_controls_take(f->store, &ctl);
    assert_int_equal(ctl.paused, 0);
    assert_int_equal(ctl.replay_id, 0);
    /* A retention step: window 0 and a ticket retention of 1 s sweep nothing
     * younger; the counts are per statement. */
    assert_int_equal(ess_store_pipe_begin(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_retain(f->store, c, 9, 0, 3600, 100, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_commit(f->store, &err), ESS_OK);
    assert_int_equal(pipe_polling(f, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_count(f->store, 0), 0);
    assert_int_equal(ess_store_pipe_count(f->store, 2), 0);
    assert_int_equal(ess_store_pipe_count(f->store, 9), -1);
    /* Outside a pipeline */
    assert_int_equal(ess_store_pipe_exec(f->store, "SELECT 1", 0, NULL, &err), ESS_EINVAL);
    assert_int_equal(ess_store_pipe_commit(f->store, &err), ESS_EINVAL);
    assert_int_equal(ess_store_pipe_poll(f->store, 0, &done, &err), ESS_EINVAL);
}

/* ---------------------------------------------------- pipelined append -- */

/* Poll journal_finish without blocking until done (bounded), as a loop would. */
static int finish_polling(struct ess_store *s, struct ess_store_event *ev, size_t n,
                          size_t *inserted, long long *seqs, struct ess_err *err)
{
    double deadline = now_s() + 10;
    int done = 0;
    int rc;

    for (;;) {
        rc = ess_store_journal_finish(s, ev, n, 0, &done, inserted, seqs, err);
        if (rc != ESS_OK || done) {
            return rc;
        }
        if (now_s() > deadline) {
            fail_msg("journal_finish: not done after 10 s");
        }
        usleep(1000);
    }
}

static void test_send_finish(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_event *ev = make_events(0, 300, 7);
    long long seqs[300];
    size_t inserted = 0;
    int done = 1;
    size_t i;

    name(c, sizeof(c), "send");
    assert_int_equal(ess_store_journal_pending(f->store), 0);
    assert_true(ess_store_fd(f->store) >= 0);
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 200, &err), ESS_OK);
    assert_int_equal(ess_store_journal_pending(f->store), 1);
    /* one at a time */
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 1, &err), ESS_EINVAL);
    ess_err_clear(&err);
    assert_int_equal(finish_polling(f->store, ev, 200, &inserted, seqs, &err), ESS_OK);
    assert_int_equal(ess_store_journal_pending(f->store), 0);
    assert_int_equal(inserted, 200);
    for (i = 1; i < 200; i++) {
        assert_true(seqs[i] > seqs[i - 1]);
    }
    /* overlapping the first: 100 duplicates (-1) and 100 new, in order */
    assert_int_equal(ess_store_journal_send(f->store, c, ev + 100, 200, &err), ESS_OK);
    assert_int_equal(
        ess_store_journal_finish(f->store, ev + 100, 200, 1, &done, &inserted, seqs, &err), ESS_OK);
    assert_int_equal(done, 1);
    assert_int_equal(inserted, 100);
    assert_int_equal(seqs[0], -1);
    assert_int_equal(seqs[99], -1);
    assert_true(seqs[100] > 0);
    assert_int_equal(sql_ll(f, "SELECT count(*) FROM ess_journal WHERE connector = $1", c, NULL),
                     300);
    /* nothing pending: finish refuses; bad sizes refused */
    assert_int_equal(ess_store_journal_finish(f->store, ev, 1, 0, &done, NULL, NULL, &err),
                     ESS_EINVAL);
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 0, &err), ESS_EINVAL);
    assert_int_equal(ess_store_journal_send(f->store, c, ev, ESS_STORE_SEND_MAX + 1, &err),
                     ESS_EINVAL);
    free_events(ev, 300);
}

/* What journal_send stores reads back byte for byte: quotes, backslashes,
 * UTF-8, an empty body, a NULL topic (SQL NULL), received_ms. */
static void test_send_round_trip(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_event ev[3] = {
        {"rt-1", "k\"1", NULL, "{\"a\":\"caf\u00e9 \\\\ \\\"q\\\"\"}", 1700000000123LL},
        {"rt-2", "k2", "t.x", "", -5},
        {"rt-3", "k\u00e9", "t.y", "{}", 0},
    };
    struct ess_store_rows rows = {0};
    size_t inserted = 0;
    int done = 0;
    int i;

    name(c, sizeof(c), "roundtrip");
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 3, &err), ESS_OK);
    assert_int_equal(ess_store_journal_finish(f->store, ev, 3, 1, &done, &inserted, NULL, &err),
                     ESS_OK);
    assert_int_equal(inserted, 3);
    assert_int_equal(ess_store_journal_read(f->store, c, 0, 10, &rows, &err), ESS_OK);
    assert_int_equal(rows.n, 3);
    for (i = 0; i < 3; i++) {
        assert_string_equal(rows.v[i].event_id, ev[i].event_id);
        assert_string_equal(rows.v[i].key, ev[i].key);
        assert_string_equal(rows.v[i].body, ev[i].body);
        assert_true(rows.v[i].received_ms == ev[i].received_ms);
    }
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_journal WHERE connector = $1"
                            " AND topic IS NULL",
                            c, NULL),
                     1);
    ess_store_rows_fini(&rows);
}

/* Another call while an append is pending waits for it; finish still gets it. */
static void test_send_then_other_call(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_event *ev = make_events(0, 50, 5);
    long long count = -1;
    size_t inserted = 0;
    int done = 0;

    name(c, sizeof(c), "settle");
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 50, &err), ESS_OK);
    assert_int_equal(ess_store_backlog(f->store, c, 0, &count, &err), ESS_OK);
    assert_int_equal(count, 50); /* committed before the count ran */
    assert_int_equal(ess_store_journal_pending(f->store), 1);
    assert_int_equal(ess_store_journal_ready(f->store), 1); /* in, not yet taken */
    assert_int_equal(ess_store_journal_finish(f->store, ev, 50, 0, &done, &inserted, NULL, &err),
                     ESS_OK);
    assert_int_equal(done, 1);
    assert_int_equal(inserted, 50);
    free_events(ev, 50);
}

/* A pipelined read returns what journal_read does; it shares the slot. */
static void test_read_send_finish(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_event *ev = make_events(0, 30, 4);
    struct ess_store_rows rows = {0};
    struct ess_store_rows want = {0};
    double deadline = now_s() + 10;
    int done = 0;
    size_t i;

    name(c, sizeof(c), "readsend");
    assert_int_equal(append(f, c, ev, 30), 30);
    assert_int_equal(ess_store_journal_read(f->store, c, 0, 30, &want, &err), ESS_OK);
    assert_int_equal(ess_store_journal_read_send(f->store, c, want.v[4].seq, 10, &err), ESS_OK);
    assert_int_equal(ess_store_journal_pending(f->store), 1);
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 1, &err), ESS_EINVAL);
    assert_int_equal(ess_store_journal_finish(f->store, ev, 1, 0, &done, NULL, NULL, &err),
                     ESS_EINVAL); /* not an append */
    ess_err_clear(&err);
    while (!done) {
        assert_int_equal(ess_store_journal_read_finish(f->store, 0, &done, &rows, &err), ESS_OK);
        if (now_s() > deadline) {
            fail_msg("read_finish: not done after 10 s");
        }
    }
    assert_int_equal(rows.n, 10);
    for (i = 0; i < rows.n; i++) {
        assert_int_equal(rows.v[i].seq, want.v[5 + i].seq);
        assert_string_equal(rows.v[i].event_id, want.v[5 + i].event_id);
        assert_string_equal(rows.v[i].body, want.v[5 + i].body);
    }
    assert_int_equal(ess_store_journal_pending(f->store), 0);
    ess_store_rows_fini(&rows);
    assert_int_equal(ess_store_journal_read_finish(f->store, 1, &done, &rows, &err), ESS_EINVAL);
    ess_store_rows_fini(&want);
    free_events(ev, 30);
}

/* Keys k<i> (make_events) fall in partition i % 4. */
static unsigned part_of(const char *key)
{
    return (unsigned)(strtoul(key + 1, NULL, 10) % 4);
}

/* A partition read run to its end; rows filled, the answer's code returned. */
static int read_parts(struct fixture *f, const char *c, long long after, int scan, int limit,
                      uint64_t parts, struct ess_store_rows *rows)
{
    struct ess_err err = {0};
    double deadline = now_s() + 10;
    int done = 0;
    int rc = ess_store_journal_read_parts_send(f->store, c, after, scan, limit, parts, &err);

    while (rc == ESS_OK && !done) {
        rc = ess_store_journal_read_finish(f->store, 0, &done, rows, &err);
        if (now_s() > deadline) {
            fail_msg("read_parts: not done after 10 s");
        }
    }
    return rc;
}

/* Replicas (migration 9): appends (both paths) fill part; a partition read
 * returns only the asked partitions' rows and unpartitioned ones, and says
 * how far it looked (covered) and whether there is more. */
static void test_partition_read(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_event *ev = make_events(0, 44, 8);
    struct ess_store_rows all = {0};
    struct ess_store_rows rows = {0};
    size_t inserted = 0, i, want = 0;

    name(c, sizeof(c), "parts");
    ess_store_journal_partition(f->store, part_of);
    assert_int_equal(append(f, c, ev, 20), 20); /* journal_append */
    assert_int_equal(ess_store_journal_send(f->store, c, ev + 20, 20, &err), ESS_OK);
    assert_int_equal(finish_polling(f->store, ev + 20, 20, &inserted, NULL, &err), ESS_OK);
    assert_int_equal(inserted, 20);
    ess_store_journal_partition(f->store, NULL); /* one worker again: part NULL */
    assert_int_equal(append(f, c, ev + 40, 4), 4);
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_journal WHERE connector = $1 AND"
                            " part = substr(key, 2)::int % 4",
                            c, NULL),
                     40);
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_journal WHERE connector = $1 AND"
                            " part IS NULL",
                            c, NULL),
                     4);
    assert_int_equal(ess_store_journal_read(f->store, c, 0, 100, &all, &err), ESS_OK);
    assert_int_equal(all.n, 44);

    /* Partitions 0 and 2, the whole journal in the span. */
    assert_int_equal(read_parts(f, c, 0, 100, 100, 0x5, &rows), ESS_OK);
    for (i = 0; i < all.n; i++) {
        want += i >= 40 || part_of(all.v[i].key) % 2 == 0;
    }
    assert_int_equal(rows.n, want);
    for (i = 0; i < rows.n; i++) {
        assert_true(i == 0 || rows.v[i].seq > rows.v[i - 1].seq);
        assert_true(rows.v[i].seq >= all.v[40].seq || part_of(rows.v[i].key) % 2 == 0);
    }
    assert_int_equal(rows.covered, all.v[43].seq);
    assert_int_equal(rows.more, 0);
    assert_int_equal(rows.scanned, 44);
    ess_store_rows_fini(&rows);

    /* A span of 10 rows: covered is the 10th, more follows. */
    assert_int_equal(read_parts(f, c, all.v[0].seq - 1, 10, 100, 0x2, &rows), ESS_OK);
    assert_int_equal(rows.covered, all.v[9].seq);
    assert_int_equal(rows.more, 1);
    for (i = 0; i < rows.n; i++) {
        assert_int_equal(part_of(rows.v[i].key), 1);
        assert_true(rows.v[i].seq <= all.v[9].seq);
    }
    assert_true(rows.n >= 1);
    ess_store_rows_fini(&rows);

    /* Cut short by limit: covered is the last row returned. */
    assert_int_equal(read_parts(f, c, all.v[0].seq - 1, 100, 5, 0xf, &rows), ESS_OK);
    assert_int_equal(rows.n, 5);
    assert_int_equal(rows.covered, all.v[4].seq);
    assert_int_equal(rows.more, 1);
    ess_store_rows_fini(&rows);

    /* None of its partitions in the span: no rows, the span still covered. */
    assert_int_equal(read_parts(f, c, all.v[0].seq - 1, 3, 100, 1ULL << 63, &rows), ESS_OK);
    assert_int_equal(rows.n, 0);
    assert_int_equal(rows.covered, all.v[2].seq);
    ess_store_rows_fini(&rows);

    /* Nothing after the cursor. */
    assert_int_equal(read_parts(f, c, all.v[43].seq, 100, 100, 0xf, &rows), ESS_OK);
    assert_int_equal(rows.n, 0);
    assert_int_equal(rows.covered, -1);
    assert_int_equal(rows.more, 0);
    ess_store_rows_fini(&rows);

    assert_int_equal(ess_store_journal_read_parts_send(f->store, c, 0, 0, 10, 1, &err), ESS_EINVAL);
    ess_store_rows_fini(&all);
    free_events(ev, 44);
}

/* Replicas pipeline their appends: with the append lock on, journal_send
 * takes the per-connector lock in its statement (so it waits for another
 * holder, then commits in seq order) and fills part. */
static void test_send_locked(void **state)
{
    struct fixture *f = *state;
    char c[64], key[128];
    const char *v[1] = {key};
    struct ess_err err = {0};
    struct ess_store_event *ev = make_events(0, 10, 4);
    size_t inserted = 0;
    double until;
    int done = 0;

    name(c, sizeof(c), "sendlock");
    snprintf(key, sizeof(key), "ess_journal:%s", c);
    ess_store_journal_lock(f->store, 1);
    ess_store_journal_partition(f->store, part_of);
    PQclear(
        PQexecParams(f->check, "SELECT pg_advisory_lock(hashtext($1))", 1, NULL, v, NULL, NULL, 0));
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 10, &err), ESS_OK);
    until = now_s() + 0.3;
    while (now_s() < until) { /* held by the other session: the append waits */
        assert_int_equal(
            ess_store_journal_finish(f->store, ev, 10, 0, &done, &inserted, NULL, &err), ESS_OK);
        assert_int_equal(done, 0);
        usleep(10000);
    }
    PQclear(PQexecParams(f->check, "SELECT pg_advisory_unlock(hashtext($1))", 1, NULL, v, NULL,
                         NULL, 0));
    assert_int_equal(finish_polling(f->store, ev, 10, &inserted, NULL, &err), ESS_OK);
    assert_int_equal(inserted, 10);
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_journal WHERE connector = $1 AND"
                            " part = substr(key, 2)::int % 4",
                            c, NULL),
                     10);
    /* the lock without partitions (not a worker's setting): part NULL */
    ess_store_journal_partition(f->store, NULL);
    free_events(ev, 10);
    ev = make_events(10, 2, 4);
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 2, &err), ESS_OK);
    assert_int_equal(finish_polling(f->store, ev, 2, &inserted, NULL, &err), ESS_OK);
    assert_int_equal(inserted, 2);
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_journal WHERE connector = $1 AND"
                            " part IS NULL",
                            c, NULL),
                     2);
    assert_int_equal(append(f, c, ev, 2), 0); /* journal_append under the lock: duplicates */
    ess_store_journal_lock(f->store, 0);
    free_events(ev, 2);
}

/* Appends go without ON CONFLICT until one meets a duplicate: that statement
 * inserts nothing, finish sends the burst again with ON CONFLICT (polled
 * without blocking, as the worker does), and the outcome is what the
 * conflict-tolerant INSERT gives: new rows in order, -1 for each duplicate,
 * also two of one event inside one burst. A fresh store: the optimistic path. */
static void test_send_duplicates(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store *s = ess_store_new(f->url, &err);
    struct ess_store_event *ev = make_events(0, 40, 7);
    struct ess_store_event burst[5];
    long long seqs[5];
    size_t inserted = 0;
    int done = 0;
    int i;

    assert_non_null(s);
    name(c, sizeof(c), "senddup");
    assert_int_equal(ess_store_journal_send(s, c, ev, 10, &err), ESS_OK);
    assert_int_equal(ess_store_journal_finish(s, ev, 10, 1, &done, &inserted, NULL, &err), ESS_OK);
    assert_int_equal(inserted, 10);
    /* e3 again, e10, e11, e10 again, e12 */
    burst[0] = ev[3];
    burst[1] = ev[10];
    burst[2] = ev[11];
    burst[3] = ev[10];
    burst[4] = ev[12];
    assert_int_equal(ess_store_journal_send(s, c, burst, 5, &err), ESS_OK);
    assert_int_equal(finish_polling(s, burst, 5, &inserted, seqs, &err), ESS_OK);
    assert_int_equal(inserted, 3);
    assert_int_equal(seqs[0], -1);
    assert_true(seqs[1] > 0);
    assert_true(seqs[2] > seqs[1]);
    assert_int_equal(seqs[3], -1);
    assert_true(seqs[4] > seqs[2]);
    assert_int_equal(ess_store_journal_pending(s), 0);
    /* later appends (with ON CONFLICT for a while, then without) go on */
    for (i = 13; i < 40; i++) {
        assert_int_equal(ess_store_journal_send(s, c, ev + i, 1, &err), ESS_OK);
        assert_int_equal(ess_store_journal_finish(s, ev + i, 1, 1, &done, &inserted, NULL, &err),
                         ESS_OK);
        assert_int_equal(inserted, 1);
    }
    assert_int_equal(sql_ll(f, "SELECT count(*) FROM ess_journal WHERE connector = $1", c, NULL),
                     40);
    ess_store_free(s);
    free_events(ev, 40);
}

/* The session dies with an append pending: finish reports ESS_ESTORE (never
 * done-and-OK), and a reset store works again. */
static void test_send_connection_loss(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    struct ess_store_event *ev = make_events(0, 20, 5);
    size_t inserted = 0;
    int rc;

    name(c, sizeof(c), "sendloss");
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 20, &err), ESS_OK);
    /* what the server answered may be in or not: either way the loss shows */
    assert_true(sql_ll(f,
                       "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE application_name = $1 AND pid <> pg_backend_pid()",
                       "ess", NULL) >= 1);
    rc = finish_polling(f->store, ev, 20, &inserted, NULL, &err);
    if (rc == ESS_OK) {
        /* the answer (and COMMIT) had come before the kill: the rows are there */
        assert_int_equal(inserted, 20);
        assert_int_equal(
            sql_ll(f, "SELECT count(*) FROM ess_journal WHERE connector = $1", c, NULL), 20);
        rc = ess_store_backlog(f->store, c, 0, &(long long){0}, &err);
    }
    assert_int_equal(rc, ESS_ESTORE);
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(ess_store_journal_pending(f->store), 0);
    ess_err_clear(&err);
    assert_int_equal(ess_store_reset(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_journal_send(f->store, c, ev, 20, &err), ESS_OK);
    assert_int_equal(finish_polling(f->store, ev, 20, &inserted, NULL, &err), ESS_OK);
    free_events(ev, 20);
}

/* ------------------------------------------------------------- failures -- */

static void test_connect_failure(void **state)
{
    struct ess_err err = {0};
    struct ess_store *s = ess_store_new("postgresql://ess@127.0.0.1:1/ess", &err);

    (void)state;
    assert_null(s);
    assert_int_equal(err.code, ESS_ESTORE);
    assert_non_null(strstr(err.msg, "connect"));
    assert_null(strchr(err.msg, '\n'));
}

/* The session's gssencmode as libpq uses it (the conninfo, defaults applied). */
static char *session_gssencmode(struct ess_store *s)
{
    PQconninfoOption *opts = PQconninfo(ess_store_pg(s));
    PQconninfoOption *o;
    char *v = NULL;

    assert_non_null(opts);
    for (o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "gssencmode") == 0 && o->val != NULL) {
            v = strdup(o->val);
        }
    }
    PQconninfoFree(opts);
    assert_non_null(v);
    return v;
}

/* ess_store_new disables libpq's GSSAPI-encryption probe (a Kerberos
 * credential lookup per connect) unless the URL or PGGSSENCMODE asks for a
 * mode: the URL wins over the environment, the environment over the default. */
static void test_gssencmode_default(void **state)
{
    static const struct {
        const char *query; /* appended to ESS_PG_URL */
        const char *env;   /* PGGSSENCMODE, NULL: unset */
        const char *want;
    } cases[] = {
        {"", NULL, "disable"},
        {"gssencmode=prefer", NULL, "prefer"},
        {"", "prefer", "prefer"},
        {"gssencmode=disable", "prefer", "disable"},
    };
    struct fixture *f = *state;
    const char *saved = getenv("PGGSSENCMODE");
    char *keep = saved != NULL ? strdup(saved) : NULL;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ess_err err = {0};
        char url[1024];
        struct ess_store *s;
        char *mode;

        snprintf(url, sizeof(url), "%s%s%s", f->url,
                 cases[i].query[0] == '\0'     ? ""
                 : strchr(f->url, '?') != NULL ? "&"
                                               : "?",
                 cases[i].query);
        if (cases[i].env != NULL) {
            setenv("PGGSSENCMODE", cases[i].env, 1);
        } else {
            unsetenv("PGGSSENCMODE");
        }
        s = ess_store_new(url, &err);
        if (s == NULL) {
            fail_msg("case %zu (%s, PGGSSENCMODE=%s): %s", i, url,
                     cases[i].env != NULL ? cases[i].env : "unset", err.msg);
        }
        mode = session_gssencmode(s);
        if (strcmp(mode, cases[i].want) != 0) {
            fail_msg("case %zu (%s, PGGSSENCMODE=%s): gssencmode %s, want %s", i, url,
                     cases[i].env != NULL ? cases[i].env : "unset", mode, cases[i].want);
        }
        assert_int_equal(PQgssEncInUse(ess_store_pg(s)), 0); /* the stack has no Kerberos */
        free(mode);
        ess_store_free(s);
    }
    if (keep != NULL) {
        setenv("PGGSSENCMODE", keep, 1);
    } else {
        unsetenv("PGGSSENCMODE");
    }
    free(keep);
}

static void test_connection_loss_and_reset(void **state)
{
    struct fixture *f = *state;
    char c[64];
    struct ess_err err = {0};
    long long seq = -1;

    name(c, sizeof(c), "reset");
    assert_int_equal(ess_store_offset_set(f->store, c, 5, &err), ESS_OK); /* prepared */
    assert_true(sql_ll(f,
                       "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE application_name = $1 AND pid <> pg_backend_pid()",
                       "ess", NULL) >= 1);
    assert_int_equal(ess_store_offset_get(f->store, c, &seq, &err), ESS_ESTORE);
    assert_null(strchr(err.msg, '\n'));
    print_message("# after terminate: %s\n", err.msg);
    ess_err_clear(&err);
    assert_int_equal(ess_store_reset(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_offset_get(f->store, c, &seq, &err), ESS_OK); /* re-prepared */
    assert_int_equal(seq, 5);
}

static void test_einval(void **state)
{
    struct fixture *f = *state;
    struct ess_err err = {0};
    struct ess_store_rows rows = {0};
    long long n;

    assert_int_equal(ess_store_offset_get(f->store, NULL, &n, &err), ESS_EINVAL);
    assert_int_equal(ess_store_journal_read(f->store, NULL, 0, 1, &rows, &err), ESS_EINVAL);
    assert_int_equal(ess_store_journal_append(NULL, "x", NULL, 0, NULL, NULL, &err), ESS_EINVAL);
    assert_int_equal(ess_store_reset(NULL, NULL), ESS_EINVAL);
    ess_store_free(NULL);
}

/* --------------------------------------------------------------- audit -- */

/* n attempts queued for events first.. (statuses 200, one 503 in ten). */
static void queue_attempts(struct ess_audit *a, int first, int n)
{
    char id[32];
    int i;

    for (i = first; i < first + n; i++) {
        snprintf(id, sizeof(id), "e%d", i);
        assert_int_equal(ess_audit_attempt(a, i, id, "k1", i % 10 == 0 ? 503 : 200,
                                           i % 10 == 0 ? "HTTP 503 from partner" : NULL),
                         ESS_OK);
    }
}

/* Attempts share rows: up to 100 consecutive ones in an "attempts" row, a
 * manifest record between them a row of its own; the flush and the pipelined
 * send number the rows alike and the chain verifies. */
static void test_audit_rows(void **state)
{
    struct fixture *f = *state;
    struct ess_err err = {0};
    char chain[64];
    struct ess_audit *a;
    json_t *man = json_pack("{s:s}", "sha", "abc");
    long long rows = 0;
    size_t sent = 0;
    int done = 0;

    name(chain, sizeof(chain), "audit-rows");
    a = ess_audit_new(chain);
    assert_non_null(a);
    queue_attempts(a, 1, 250);
    assert_int_equal(ess_audit_add(a, "manifest", 1700000000000LL, man), ESS_OK);
    queue_attempts(a, 251, 3);
    assert_int_equal(ess_audit_pending(a), 254);
    assert_int_equal(ess_audit_flush(a, f->store, &err), ESS_OK);
    assert_int_equal(ess_audit_pending(a), 0);
    assert_int_equal(sql_ll(f, "SELECT count(*) FROM ess_audit WHERE chain = $1", chain, NULL), 5);
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_audit WHERE chain = $1 AND kind = 'attempts'"
                            " AND n IN (1, 2, 3, 5)",
                            chain, NULL),
                     4);
    assert_int_equal(
        sql_ll(f, "SELECT n FROM ess_audit WHERE chain = $1 AND kind = 'manifest'", chain, NULL),
        4);
    assert_int_equal(sql_ll(f,
                            "SELECT sum(json_array_length(content::json)) FROM ess_audit"
                            " WHERE chain = $1 AND kind = 'attempts'",
                            chain, NULL),
                     253);
    /* each attempt with its own time and what it was; the row's time is its first's */
    assert_int_equal(sql_ll(f,
                            "SELECT count(*) FROM ess_audit, json_array_elements(content::json) e"
                            " WHERE chain = $1 AND kind = 'attempts' AND (e->>'at_ms')::bigint"
                            " >= at_ms AND e->>'event_id' LIKE 'e%' AND e->>'key' = 'k1'",
                            chain, NULL),
                     253);
    assert_int_equal(sql_ll(f,
                            "SELECT (content::json->0->>'status')::int FROM ess_audit"
                            " WHERE chain = $1 AND n = 2",
                            chain, NULL),
                     200);
    /* 700 more through the side session's path: two INSERTs, 7 rows after row 5 */
    queue_attempts(a, 254, 700);
    assert_int_equal(ess_store_pipe_begin(f->store, &err), ESS_OK);
    assert_int_equal(ess_audit_head(a, f->store, &err), ESS_OK);
    assert_int_equal(ess_audit_send(a, f->store, 1000, &sent, &err), ESS_OK);
    assert_int_equal(sent, 700);
    assert_int_equal(ess_store_pipe_commit(f->store, &err), ESS_OK);
    assert_int_equal(ess_store_pipe_poll(f->store, 1, &done, &err), ESS_OK);
    assert_true(done);
    ess_audit_sent(a, 1);
    assert_int_equal(ess_audit_pending(a), 0);
    assert_int_equal(sql_ll(f, "SELECT max(n) FROM ess_audit WHERE chain = $1", chain, NULL), 12);
    assert_int_equal(ess_audit_verify(f->store, chain, &rows, &err), ESS_OK);
    assert_int_equal(rows, 12);
    /* and the next flush chains after the sent rows */
    queue_attempts(a, 954, 1);
    assert_int_equal(ess_audit_flush(a, f->store, &err), ESS_OK);
    assert_int_equal(ess_audit_verify(f->store, chain, &rows, &err), ESS_OK);
    assert_int_equal(rows, 13);
    json_decref(man);
    ess_audit_free(a);
}

/* -------------------------------------------------------------- timing -- */

static void time_append(struct fixture *f, const char *what, int total, int burst)
{
    char c[64];
    struct ess_store_event *ev = make_events(0, total, 500);
    double t0, dt;
    size_t n = 0;
    int i;

    name(c, sizeof(c), what);
    t0 = now_s();
    for (i = 0; i < total; i += burst) {
        n += append(f, c, ev + i, (size_t)(total - i < burst ? total - i : burst));
    }
    dt = now_s() - t0;
    assert_int_equal(n, (size_t)total);
    print_message("# append %d events in bursts of %d: %.3f s, %.0f events/s\n", total, burst, dt,
                  total / dt);
    free_events(ev, total);
}

static void test_append_rate(void **state)
{
    struct fixture *f = *state;

    time_append(f, "rate-10000", 10000, 10000);
    time_append(f, "rate-256", 10000, 256);
    time_append(f, "rate-50", 10000, 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_idempotent),
        cmocka_unit_test(test_migrate_concurrent),
        cmocka_unit_test(test_migrate_journal_keys),
        cmocka_unit_test(test_append_dedupe),
        cmocka_unit_test(test_append_chunks_atomic),
        cmocka_unit_test(test_read_order_limit),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_park),
        cmocka_unit_test(test_backlog_and_retain),
        cmocka_unit_test(test_pipe_all_or_nothing),
        cmocka_unit_test(test_send_finish),
        cmocka_unit_test(test_send_round_trip),
        cmocka_unit_test(test_send_then_other_call),
        cmocka_unit_test(test_read_send_finish),
        cmocka_unit_test(test_partition_read),
        cmocka_unit_test(test_send_locked),
        cmocka_unit_test(test_send_duplicates),
        cmocka_unit_test(test_tickets),
        cmocka_unit_test(test_send_connection_loss),
        cmocka_unit_test(test_connect_failure),
        cmocka_unit_test(test_gssencmode_default),
        cmocka_unit_test(test_connection_loss_and_reset),
        cmocka_unit_test(test_einval),
        cmocka_unit_test(test_audit_rows),
        cmocka_unit_test(test_append_rate),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
