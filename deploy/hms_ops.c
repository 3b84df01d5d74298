/*
 * hms_ops -- the operator's daily commands: ps, status, watch, pause, resume,
 * replay, dlq and tickets.
 *
 * DESIGN
 * Everything but `watch` reads or writes the Postgres tables that are the
 * contract with running workers (hms.h): hms never talks to a worker directly,
 * it changes a row and the worker, polling ess_controls about once a second,
 * acts on it. Every value travels as a libpq parameter; the SQL text is fixed.
 * Clocks are Postgres's: ages are now() - ts computed by the server and times
 * are printed by it as ISO-8601 UTC, so a skewed laptop clock does not turn a
 * live worker DOWN. `watch` is the one command on the bus: an exclusive,
 * auto-delete queue bound to hms.ops with "ess.#", gone when hms exits.
 *
 * Options are described by one table (ops_flags[]: name, kind, where it lands
 * in struct ops_args) and each command says which ones it accepts, so every
 * command parses, and refuses, options the same way.
 */
#include "hms.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sysexits.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "ess_err.h"
#include "ess_manifest.h"
#include "ess_worker.h"

/* A timestamptz column as ISO-8601 UTC text ("2026-11-26T10:00:00Z"). */
#define OPS_ISO(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* Every connector hms can name without a journal scan: pause/resume --all. */
#define OPS_KNOWN                                                                         \
    "SELECT connector FROM ess_manifests UNION SELECT connector FROM ess_deploys"         \
    " UNION SELECT connector FROM ess_heartbeats UNION SELECT connector FROM ess_offsets" \
    " UNION SELECT connector FROM ess_controls"

#define OPS_DOWN_FACTOR 3          /* DESIGN.md: older than 3 x heartbeat_sec is down */
#define OPS_DEFAULT_WINDOW 604800L /* 7d, when the key table cannot tell */
#define OPS_TICKETS_LIMIT "50"
#define OPS_WATCH_TICK_MS 250

/* ---- options ------------------------------------------------------------ */

enum ops_flag_bit {
    A_ID = 1 << 0, /* one positional <id> */
    A_ALL = 1 << 1,
    A_SINCE = 1 << 2,
    A_FROM = 1 << 3,
    A_TO = 1 << 4,
    A_KEY = 1 << 5,
    A_EVENT = 1 << 6,
    A_COUNT = 1 << 7,
    A_TIMEOUT = 1 << 8,
    A_LIMIT = 1 << 9,
    A_DRY = 1 << 10
};

enum ops_flag_kind { F_BOOL, F_STR, F_NUM };

struct ops_args {
    const char *id;
    int all;
    int dry_run;
    const char *since;
    const char *from;
    const char *to;
    const char *key;
    const char *event;
    long count;
    long timeout;
    long limit;
};

struct ops_flag {
    const char *name;
    unsigned bit;
    enum ops_flag_kind kind;
    size_t off;
};

static const struct ops_flag ops_flags[] = {
    {"--all", A_ALL, F_BOOL, offsetof(struct ops_args, all)},
    {"--dry-run", A_DRY, F_BOOL, offsetof(struct ops_args, dry_run)},
    {"--since", A_SINCE, F_STR, offsetof(struct ops_args, since)},
    {"--from", A_FROM, F_STR, offsetof(struct ops_args, from)},
    {"--to", A_TO, F_STR, offsetof(struct ops_args, to)},
    {"--key", A_KEY, F_STR, offsetof(struct ops_args, key)},
    {"--event", A_EVENT, F_STR, offsetof(struct ops_args, event)},
    {"--count", A_COUNT, F_NUM, offsetof(struct ops_args, count)},
    {"--timeout", A_TIMEOUT, F_NUM, offsetof(struct ops_args, timeout)},
    {"--limit", A_LIMIT, F_NUM, offsetof(struct ops_args, limit)},
};

#define N_OPS_FLAGS (sizeof(ops_flags) / sizeof(ops_flags[0]))

/* "hms: <why>" and the command's usage on stderr; EX_USAGE. */
static int ops_usage(const char *usage, const char *why, const char *arg)
{
    fprintf(stderr, "hms: %s%s%s\nusage: hms ess %s\n", why, arg != NULL ? ": " : "",
            arg != NULL ? arg : "", usage);
    return EX_USAGE;
}

static int ops_positive(const char *text, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v <= 0) {
        return -1;
    }
    *out = v;
    return 0;
}

/* DESIGN.md's connector id: ^[a-z][a-z0-9-]{1,62}$ */
static int ops_valid_id(const char *id)
{
    size_t n = strlen(id);

    if (n < 2 || n > 63 || id[0] < 'a' || id[0] > 'z') {
        return 0;
    }
    return strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static const struct ops_flag *ops_flag_find(const char *name, unsigned allowed)
{
    size_t i;

    for (i = 0; i < N_OPS_FLAGS; i++) {
        if ((ops_flags[i].bit & allowed) != 0 && strcmp(ops_flags[i].name, name) == 0) {
            return &ops_flags[i];
        }
    }
    return NULL;
}

/* One option (and its value) at argv[*i]; advances *i past a value. */
static int ops_take_flag(const struct ops_flag *f, int argc, char **argv, int *i,
                         struct ops_args *a, const char *usage)
{
    char *field = (char *)a + f->off;

    if (f->kind == F_BOOL) {
        *(int *)(void *)field = 1;
        return EX_OK;
    }
    if (*i + 1 >= argc) {
        return ops_usage(usage, "missing value for", f->name);
    }
    (*i)++;
    if (f->kind == F_STR) {
        *(const char **)(void *)field = argv[*i];
        return EX_OK;
    }
    if (ops_positive(argv[*i], (long *)(void *)field) != 0) {
        return ops_usage(usage, "not a positive number", argv[*i]);
    }
    return EX_OK;
}

/* Parse argv into a, accepting only the options in allowed. */
static int ops_parse(int argc, char **argv, unsigned allowed, const char *usage, struct ops_args *a)
{
    const struct ops_flag *f;
    int rc = EX_OK;
    int i;

    memset(a, 0, sizeof(*a));
    for (i = 0; i < argc && rc == EX_OK; i++) {
        f = ops_flag_find(argv[i], allowed);
        if (f != NULL) {
            rc = ops_take_flag(f, argc, argv, &i, a, usage);
        } else if (argv[i][0] == '-') {
            rc = ops_usage(usage, "unknown option", argv[i]);
        } else if ((allowed & A_ID) != 0 && a->id == NULL) {
            a->id = argv[i];
        } else {
            rc = ops_usage(usage, "unexpected argument", argv[i]);
        }
    }
    if (rc == EX_OK && a->id != NULL && !ops_valid_id(a->id)) {
        rc = ops_usage(usage, "not a connector id (^[a-z][a-z0-9-]{1,62}$)", a->id);
    }
    return rc;
}

/* <id> xor --all, for the commands that take either. */
static int ops_need_id(const struct ops_args *a, unsigned allowed, const char *usage)
{
    if ((allowed & A_ALL) != 0 && a->all && a->id != NULL) {
        return ops_usage(usage, "give a connector id or --all, not both", NULL);
    }
    if (a->id == NULL && !((allowed & A_ALL) != 0 && a->all)) {
        return ops_usage(usage, "which connector?", NULL);
    }
    return EX_OK;
}

/* ---- Postgres ------------------------------------------------------------ */

static int ops_open(struct ess_store **s)
{
    *s = hms_store();
    return *s != NULL ? EX_OK : EX_UNAVAILABLE;
}

/* Run a query; on failure print why and return the sysexits code. */
static int ops_query(struct ess_store *s, const char *sql, int n, const char *const *params,
                     json_t **rows)
{
    struct ess_err err;
    int rc;

    ess_err_clear(&err);
    rc = ess_store_query_json(s, sql, n, params, rows, &err);
    if (rc != ESS_OK) {
        fprintf(stderr, "hms: %s\n", err.msg);
        return ess_err_exit_code(rc);
    }
    return EX_OK;
}

/* A text cell of a result row (NULL for SQL NULL or a missing column). */
static const char *ops_str(json_t *row, const char *col)
{
    return json_string_value(json_object_get(row, col));
}

static double ops_num(json_t *row, const char *col, double def)
{
    const char *text = ops_str(row, col);
    char *end = NULL;
    double v;

    if (text == NULL) {
        return def;
    }
    v = strtod(text, &end);
    return end != text && *end == '\0' ? v : def;
}

/* Text from Postgres as the JSON value it stands for: integer, real, boolean
 * ("t"/"f"), else the text itself. */
static json_t *ops_typed(const char *text)
{
    char *end = NULL;
    long long n;
    double d;

    errno = 0;
    n = strtoll(text, &end, 10);
    if (errno == 0 && end != text && *end == '\0') {
        return json_integer((json_int_t)n);
    }
    d = strtod(text, &end);
    if (end != text && *end == '\0') {
        return json_real(d);
    }
    if (strcmp(text, "t") == 0 || strcmp(text, "f") == 0) {
        return json_boolean(text[0] == 't');
    }
    return json_string(text);
}

/* query_json gives every column as text: type the listed columns. */
static void ops_type_columns(json_t *rows, const char *const *cols)
{
    json_t *row;
    const char *text;
    size_t i;
    size_t c;

    for (i = 0; i < json_array_size(rows); i++) {
        row = json_array_get(rows, i);
        for (c = 0; cols[c] != NULL; c++) {
            text = ops_str(row, cols[c]);
            if (text != NULL) {
                json_object_set_new(row, cols[c], ops_typed(text));
            }
        }
    }
}

/* Is the id recorded anywhere hms or a worker writes? EX_OK, or EX_DATAERR
 * with a message; a failed query returns its own code. */
static int ops_known(struct ess_store *s, const char *id)
{
    static const char sql[] =
        "SELECT EXISTS (SELECT 1 FROM ess_manifests WHERE connector = $1)"
        " OR EXISTS (SELECT 1 FROM ess_deploys WHERE connector = $1)"
        " OR EXISTS (SELECT 1 FROM ess_heartbeats WHERE connector = $1)"
        " OR EXISTS (SELECT 1 FROM ess_offsets WHERE connector = $1)"
        " OR EXISTS (SELECT 1 FROM ess_controls WHERE connector = $1)"
        " OR EXISTS (SELECT 1 FROM ess_journal WHERE connector = $1)"
        " OR EXISTS (SELECT 1 FROM ess_dead_letters WHERE connector = $1) AS known";
    const char *params[1] = {id};
    json_t *rows = NULL;
    const char *known;
    int rc;

    rc = ops_query(s, sql, 1, params, &rows);
    if (rc == EX_OK) {
        known = ops_str(json_array_get(rows, 0), "known");
        if (known == NULL || strcmp(known, "t") != 0) {
            fprintf(stderr,
                    "hms: unknown connector '%s': no manifest, deploy, heartbeat,"
                    " offset or journal recorded for it\n",
                    id);
            rc = EX_DATAERR;
        }
    }
    json_decref(rows);
    return rc;
}

/* Open the store and check the id is known: the prologue of most commands. */
static int ops_open_known(struct ess_store **s, const char *id)
{
    int rc = ops_open(s);

    if (rc == EX_OK && id != NULL) {
        rc = ops_known(*s, id);
    }
    return rc;
}

/* ---- ps ------------------------------------------------------------------ */

/* Latest heartbeat per (connector, instance), plus deployed connectors that
 * never heartbeat. newest: this row is the connector's latest heartbeat. */
static const char ps_sql[] =
    "SELECT connector, instance, state, heartbeat_sec, body, prev_body,"
    " extract(epoch FROM now() - ts)::float8 AS age_s,"
    " extract(epoch FROM ts - prev_ts)::float8 AS span_s,"
    " ts = max(ts) OVER (PARTITION BY connector) AS newest"
    " FROM ess_heartbeats WHERE $1::text IS NULL OR connector = $1"
    " UNION ALL"
    " SELECT d.connector, NULL, 'NEVER', NULL, NULL, NULL, NULL, NULL, true"
    " FROM (SELECT connector FROM ess_manifests UNION SELECT connector FROM ess_deploys) d"
    " WHERE ($1::text IS NULL OR d.connector = $1)"
    " AND NOT EXISTS (SELECT 1 FROM ess_heartbeats h WHERE h.connector = d.connector)"
    " ORDER BY 1, 2";

static const char *const ps_columns[] = {"connector",  "instance",    "state",    "age_s",
                                         "backlog",    "delivered/s", "failed/s", "lag_p99_ms",
                                         "last_error", NULL};

static json_t *ops_parse_col(json_t *row, const char *col)
{
    const char *text = ops_str(row, col);

    return text != NULL ? json_loads(text, 0, NULL) : NULL;
}

/* What ps calls the instance: the worker's word while it heartbeats on time;
 * STOPPED after a graceful exit, DOWN when silent for 3 heartbeats, NEVER when
 * deployed but never heard from. */
static const char *ps_state(json_t *row, json_t *body)
{
    const char *col = ops_str(row, "state");
    const char *said = json_string_value(json_object_get(body, "state"));
    double hb = ops_num(row, "heartbeat_sec", 30);

    if (col == NULL || strcmp(col, "NEVER") == 0) {
        return "NEVER";
    }
    if (strcmp(col, "stopped") == 0 || (said != NULL && strcmp(said, "stopped") == 0)) {
        return "STOPPED";
    }
    if (ops_num(row, "age_s", 0) > OPS_DOWN_FACTOR * (hb > 0 ? hb : 30)) {
        return "DOWN";
    }
    return said != NULL ? said : col;
}

/* A counter's growth per second since the previous heartbeat; null without
 * a previous one or when the counters went back (a restart). */
static json_t *ps_rate(const struct hms_opts *o, json_t *body, json_t *prev, double span,
                       const char *field)
{
    json_t *now = json_object_get(body, field);
    json_t *was = json_object_get(prev, field);
    char text[32];
    double d;

    if (!json_is_number(now) || !json_is_number(was) || span <= 0) {
        return json_null();
    }
    d = (json_number_value(now) - json_number_value(was)) / span;
    if (d < 0) {
        return json_null();
    }
    if (o->json) {
        return json_real(d);
    }
    snprintf(text, sizeof(text), "%.1f", d);
    return json_string(text);
}

/* A body field, or null ("-" in a table); "" counts as absent. */
static json_t *ps_field(json_t *body, const char *field)
{
    json_t *v = json_object_get(body, field);

    if (v == NULL || (json_is_string(v) && json_string_value(v)[0] == '\0')) {
        return json_null();
    }
    return json_incref(v);
}

/* One output row, or NULL when it is a dead instance superseded by a newer
 * heartbeat of the same connector (a restart, a redeploy) and !all. */
static json_t *ps_row(const struct hms_opts *o, json_t *row, int all)
{
    json_t *body = ops_parse_col(row, "body");
    json_t *prev = ops_parse_col(row, "prev_body");
    const char *state = ps_state(row, body);
    double span = ops_num(row, "span_s", 0);
    const char *newest = ops_str(row, "newest");
    json_t *out = NULL;

    if (!all && (strcmp(state, "DOWN") == 0 || strcmp(state, "STOPPED") == 0) && newest != NULL &&
        strcmp(newest, "t") != 0) {
        goto done;
    }
    out = json_object();
    json_object_set(out, "connector", json_object_get(row, "connector"));
    json_object_set(out, "instance", json_object_get(row, "instance"));
    json_object_set_new(out, "state", json_string(state));
    json_object_set_new(out, "age_s",
                        ops_str(row, "age_s") != NULL
                            ? json_integer(llround(ops_num(row, "age_s", 0)))
                            : json_null());
    json_object_set_new(out, "backlog", ps_field(body, "backlog"));
    json_object_set_new(out, "delivered/s", ps_rate(o, body, prev, span, "delivered"));
    json_object_set_new(out, "failed/s", ps_rate(o, body, prev, span, "failed"));
    json_object_set_new(out, "lag_p99_ms", ps_field(body, "lag_ms_p99"));
    json_object_set_new(out, "last_error", ps_field(body, "last_error"));
    json_object_set_new(out, "heartbeat_sec",
                        ops_str(row, "heartbeat_sec") != NULL
                            ? ops_typed(ops_str(row, "heartbeat_sec"))
                            : json_null());
done:
    json_decref(body);
    json_decref(prev);
    return out;
}

/* ps rows for one connector (id) or all (NULL), into *out (a new array). */
static int ps_collect(struct ess_store *s, const struct hms_opts *o, const char *id, int all,
                      json_t **out)
{
    const char *params[1] = {id};
    json_t *rows = NULL;
    json_t *row;
    json_t *r;
    size_t i;
    int rc;

    *out = json_array();
    rc = ops_query(s, ps_sql, 1, params, &rows);
    for (i = 0; i < json_array_size(rows); i++) {
        row = json_array_get(rows, i);
        r = ps_row(o, row, all);
        if (r != NULL) {
            json_array_append_new(*out, r);
        }
    }
    json_decref(rows);
    return rc;
}

int hms_cmd_ps(int argc, char **argv, const struct hms_opts *o)
{
    static const char usage[] = "ps [--all] [--json]";
    struct ess_store *s = NULL;
    struct ops_args a;
    json_t *rows = NULL;
    int rc;

    rc = ops_parse(argc, argv, A_ALL, usage, &a);
    if (rc == EX_OK) {
        rc = ops_open(&s);
    }
    if (rc == EX_OK) {
        rc = ps_collect(s, o, NULL, a.all, &rows);
    }
    if (rc == EX_OK) {
        hms_out_rows(o, rows, ps_columns);
    }
    json_decref(rows);
    ess_store_free(s);
    return rc;
}

/* ---- status -------------------------------------------------------------- */

static const char status_sql[] =
    "SELECT o.delivered_seq, j.events AS journal_events, j.backlog,"
    " " OPS_ISO(
        "j.oldest") " AS journal_oldest,"
                    " coalesce(c.paused, false) AS paused, c.replay_id, c.replay_done_id,"
                    " m.sha AS manifest_sha, " OPS_ISO(
                        "m.deployed_at") " AS manifest_at,"
                                         " d.sha AS deploy_sha, d.target AS deploy_target, d.note "
                                         "AS deploy_note,"
                                         " " OPS_ISO(
                                             "d.deployed_at") " AS deploy_at"
                                                              " FROM (SELECT $1::text AS "
                                                              "connector) k"
                                                              " LEFT JOIN ess_offsets o ON "
                                                              "o.connector = k.connector"
                                                              " LEFT JOIN ess_controls c ON "
                                                              "c.connector = k.connector"
                                                              " LEFT JOIN LATERAL (SELECT count(*) "
                                                              "AS events, min(journaled_at) AS "
                                                              "oldest,"
                                                              "   count(*) FILTER (WHERE seq > "
                                                              "coalesce(o.delivered_seq, 0)) AS "
                                                              "backlog"
                                                              "   FROM ess_journal WHERE connector "
                                                              "= k.connector) j ON true"
                                                              " LEFT JOIN LATERAL (SELECT sha, "
                                                              "deployed_at FROM ess_manifests"
                                                              "   WHERE connector = k.connector "
                                                              "ORDER BY deployed_at DESC LIMIT 1) "
                                                              "m ON true"
                                                              " LEFT JOIN LATERAL (SELECT sha, "
                                                              "target, note, deployed_at FROM "
                                                              "ess_deploys"
                                                              "   WHERE connector = k.connector "
                                                              "ORDER BY id DESC LIMIT 1) d ON true";

static const char status_dlq_sql[] =
    "SELECT status, count(*) AS n FROM ess_dead_letters WHERE connector = $1"
    " GROUP BY status ORDER BY array_position(ARRAY['parked','held','retry','dropped',"
    "'delivered'], status)";

/* The detail row and dead letters by status, merged into one object. */
static int status_detail(struct ess_store *s, const char *id, json_t **detail)
{
    static const char *const typed[] = {"delivered_seq", "journal_events", "backlog", "paused",
                                        "replay_id",     "replay_done_id", NULL};
    const char *params[1] = {id};
    json_t *rows = NULL;
    json_t *dlq = NULL;
    json_t *row;
    size_t i;
    int rc;

    *detail = NULL;
    rc = ops_query(s, status_sql, 1, params, &rows);
    if (rc == EX_OK) {
        rc = ops_query(s, status_dlq_sql, 1, params, &dlq);
    }
    if (rc == EX_OK) {
        ops_type_columns(rows, typed);
        *detail = json_incref(json_array_get(rows, 0));
        json_object_set_new(*detail, "connector", json_string(id));
        json_object_set_new(*detail, "dead_letters", json_object());
        for (i = 0; i < json_array_size(dlq); i++) {
            row = json_array_get(dlq, i);
            json_object_set_new(json_object_get(*detail, "dead_letters"), ops_str(row, "status"),
                                ops_typed(ops_str(row, "n")));
        }
    }
    json_decref(rows);
    json_decref(dlq);
    return rc;
}

static const char *status_text(json_t *d, const char *key)
{
    const char *v = json_string_value(json_object_get(d, key));

    return v != NULL ? v : "-";
}

static void status_print_dlq(json_t *dlq)
{
    void *it;
    int first = 1;

    printf("dead letters:      ");
    for (it = json_object_iter(dlq); it != NULL; it = json_object_iter_next(dlq, it)) {
        printf("%s%s %lld", first ? "" : ", ", json_object_iter_key(it),
               (long long)json_integer_value(json_object_iter_value(it)));
        first = 0;
    }
    printf("%s\n", first ? "none" : "");
}

static void status_print_versions(json_t *d)
{
    json_t *note = json_object_get(d, "deploy_note");

    if (json_is_string(json_object_get(d, "manifest_sha"))) {
        printf("manifest:          %.12s recorded %s\n", status_text(d, "manifest_sha"),
               status_text(d, "manifest_at"));
    } else {
        printf("manifest:          none recorded\n");
    }
    if (json_is_string(json_object_get(d, "deploy_sha"))) {
        printf("last deploy:       %.12s to %s at %s%s%s\n", status_text(d, "deploy_sha"),
               status_text(d, "deploy_target"), status_text(d, "deploy_at"),
               json_is_string(note) ? ": " : "",
               json_is_string(note) ? json_string_value(note) : "");
    } else {
        printf("last deploy:       none recorded\n");
    }
}

static void status_print(json_t *d)
{
    json_int_t rid = json_integer_value(json_object_get(d, "replay_id"));
    json_int_t rdone = json_integer_value(json_object_get(d, "replay_done_id"));
    json_t *offset = json_object_get(d, "delivered_seq");

    printf("\nconnector:         %s\n", status_text(d, "connector"));
    if (json_is_integer(offset)) {
        printf("delivered offset:  seq %lld\n", (long long)json_integer_value(offset));
    } else {
        printf("delivered offset:  none yet\n");
    }
    printf("journal:           %lld events (oldest %s), backlog %lld\n",
           (long long)json_integer_value(json_object_get(d, "journal_events")),
           status_text(d, "journal_oldest"),
           (long long)json_integer_value(json_object_get(d, "backlog")));
    printf("paused:            %s\n", json_is_true(json_object_get(d, "paused")) ? "yes" : "no");
    if (rid > 0) {
        printf("replay:            #%lld requested, #%lld applied%s\n", (long long)rid,
               (long long)rdone, rid > rdone ? " (pending)" : "");
    }
    status_print_dlq(json_object_get(d, "dead_letters"));
    status_print_versions(d);
}

/* 1 when some instance of the connector heartbeats (not DOWN, STOPPED, NEVER). */
static int status_any_live(json_t *rows)
{
    const char *state;
    size_t i;

    for (i = 0; i < json_array_size(rows); i++) {
        state = json_string_value(json_object_get(json_array_get(rows, i), "state"));
        if (state != NULL && strcmp(state, "DOWN") != 0 && strcmp(state, "STOPPED") != 0 &&
            strcmp(state, "NEVER") != 0) {
            return 1;
        }
    }
    return 0;
}

/* Exit 0 while an instance heartbeats, 69 when none does (a liveness probe
 * and scripts rely on it, like `systemctl status`). */
int hms_cmd_status(int argc, char **argv, const struct hms_opts *o)
{
    static const char usage[] = "status <id> [--json]";
    struct ess_store *s = NULL;
    struct ops_args a;
    json_t *rows = NULL;
    json_t *detail = NULL;
    int rc;

    rc = ops_parse(argc, argv, A_ID, usage, &a);
    if (rc == EX_OK) {
        rc = ops_need_id(&a, A_ID, usage);
    }
    if (rc == EX_OK) {
        rc = ops_open_known(&s, a.id);
    }
    if (rc == EX_OK) {
        rc = ps_collect(s, o, a.id, 0, &rows);
    }
    if (rc == EX_OK) {
        rc = status_detail(s, a.id, &detail);
    }
    if (rc == EX_OK && o->json) {
        json_object_set(detail, "instances", rows);
        hms_out_rows(o, detail, NULL);
    } else if (rc == EX_OK) {
        hms_out_rows(o, rows, ps_columns);
        status_print(detail);
    }
    if (rc == EX_OK && !status_any_live(rows)) {
        rc = EX_UNAVAILABLE;
    }
    json_decref(rows);
    json_decref(detail);
    ess_store_free(s);
    return rc;
}

/* ---- pause / resume ------------------------------------------------------ */

/* Set paused for one connector ($1) or every known one ($1 NULL); report each
 * with whether it was paused before (the CTE sees the table as it was). */
static const char toggle_sql[] =
    "WITH target AS (SELECT $1::text AS connector WHERE $1::text IS NOT NULL"
    "   UNION SELECT connector FROM (" OPS_KNOWN ") k WHERE $1::text IS NULL),"
    " old AS (SELECT t.connector, coalesce(c.paused, false) AS was"
    "   FROM target t LEFT JOIN ess_controls c ON c.connector = t.connector),"
    " up AS (INSERT INTO ess_controls (connector, paused, updated_at)"
    "   SELECT connector, $2::boolean, now() FROM target"
    "   ON CONFLICT (connector) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()"
    "   RETURNING connector)"
    " SELECT connector, $2::boolean AS paused, was <> $2::boolean AS changed FROM old"
    " ORDER BY connector";

static void toggle_print(const struct hms_opts *o, json_t *rows, int paused)
{
    static const char *const typed[] = {"paused", "changed", NULL};
    json_t *row;
    size_t i;

    ops_type_columns(rows, typed);
    if (o->json) {
        hms_out_rows(o, rows, NULL);
        return;
    }
    if (json_array_size(rows) == 0) {
        printf("no connectors known\n");
    }
    for (i = 0; i < json_array_size(rows); i++) {
        row = json_array_get(rows, i);
        printf("%s: %s%s\n", ops_str(row, "connector"),
               json_is_true(json_object_get(row, "changed")) ? "" : "already ",
               paused ? "paused" : "resumed");
    }
    if (json_array_size(rows) > 0) {
        printf("(running workers see it within a second)\n");
    }
}

static int ops_toggle(int argc, char **argv, const struct hms_opts *o, int paused)
{
    const char *usage = paused ? "pause <id>|--all" : "resume <id>|--all";
    const char *params[2] = {NULL, paused ? "true" : "false"};
    struct ess_store *s = NULL;
    struct ops_args a;
    json_t *rows = NULL;
    int rc;

    rc = ops_parse(argc, argv, A_ID | A_ALL, usage, &a);
    if (rc == EX_OK) {
        rc = ops_need_id(&a, A_ID | A_ALL, usage);
    }
    if (rc == EX_OK) {
        rc = ops_open_known(&s, a.id);
    }
    params[0] = a.id;
    if (rc == EX_OK) {
        rc = ops_query(s, toggle_sql, 2, params, &rows);
    }
    if (rc == EX_OK) {
        toggle_print(o, rows, paused);
    }
    json_decref(rows);
    ess_store_free(s);
    return rc;
}

int hms_cmd_pause(int argc, char **argv, const struct hms_opts *o)
{
    return ops_toggle(argc, argv, o, 1);
}

int hms_cmd_resume(int argc, char **argv, const struct hms_opts *o)
{
    return ops_toggle(argc, argv, o, 0);
}

/* ---- replay -------------------------------------------------------------- */

/* "30m" -> 1800: a positive number and one of s, m, h, d. */
static int ops_duration(const char *text, long *sec)
{
    static const char units[] = "smhd";
    static const long mult[] = {1, 60, 3600, 86400};
    const char *u;
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || v <= 0 || end[0] == '\0' || end[1] != '\0') {
        return -1;
    }
    u = strchr(units, end[0]);
    if (u == NULL || v > 3650L * 86400 / mult[u - units]) {
        return -1;
    }
    *sec = v * mult[u - units];
    return 0;
}

/* replay_window's default from the manifest key table (one source of truth). */
static long replay_default_window(void)
{
    const struct ess_manifest_key *keys;
    size_t n;
    size_t i;
    long sec = OPS_DEFAULT_WINDOW;

    keys = ess_manifest_keys(&n);
    for (i = 0; i < n; i++) {
        if (strcmp(keys[i].name, "replay_window") == 0 && keys[i].def != NULL &&
            ops_duration(keys[i].def, &sec) != 0) {
            sec = OPS_DEFAULT_WINDOW;
        }
    }
    return sec;
}

/* The connector's replay_window from its latest recorded manifest. */
static int replay_window(struct ess_store *s, const char *id, long *sec)
{
    static const char sql[] = "SELECT body FROM ess_manifests WHERE connector = $1"
                              " ORDER BY deployed_at DESC LIMIT 1";
    const char *params[1] = {id};
    struct ess_manifest *m = NULL;
    struct ess_diags diags;
    json_t *rows = NULL;
    const char *body;
    int rc;

    *sec = replay_default_window();
    ess_diags_init(&diags);
    rc = ops_query(s, sql, 1, params, &rows);
    body = ops_str(json_array_get(rows, 0), "body");
    if (rc == EX_OK && body != NULL) {
        if (ess_manifest_parse(body, strlen(body), "ess_manifests", &m, &diags) == ESS_OK) {
            *sec = m->replay_window_sec;
        } else {
            fprintf(stderr,
                    "hms: warning: the recorded manifest of %s does not parse;"
                    " assuming the default replay_window\n",
                    id);
        }
    }
    ess_manifest_free(m);
    ess_diags_fini(&diags);
    json_decref(rows);
    return rc;
}

/* Let Postgres say whether text is a time: EX_OK or a usage error. */
static int replay_check_time(struct ess_store *s, const char *flag, const char *text,
                             const char *usage)
{
    const char *params[1] = {text};
    struct ess_err err;
    json_t *rows = NULL;
    int rc;

    ess_err_clear(&err);
    rc = ess_store_query_json(s, "SELECT $1::timestamptz AS t", 1, params, &rows, &err);
    json_decref(rows);
    if (rc != ESS_OK) {
        fprintf(stderr, "hms: %s: not an ISO-8601 time: '%s' (%s)\n", flag, text, err.msg);
        fprintf(stderr, "usage: hms ess %s\n", usage);
        return EX_USAGE;
    }
    return EX_OK;
}

/* The window as journal seqs: from_seq/to_seq per the hms.h contract, events
 * and distinct keys (for --key, of that key), and whether it starts before the
 * journal's retention (too_old). */
static const char replay_sql[] =
    "WITH w AS (SELECT CASE WHEN $2::bigint IS NOT NULL"
    "     THEN now() - $2::bigint * interval '1 second' ELSE $3::timestamptz END AS from_ts,"
    "   $4::timestamptz AS to_ts, now() - $5::bigint * interval '1 second' AS keep_ts),"
    " ev AS (SELECT j.seq, j.key FROM ess_journal j, w WHERE j.connector = $1"
    "   AND j.journaled_at >= w.from_ts AND (w.to_ts IS NULL OR j.journaled_at <= w.to_ts)"
    "   AND ($6::text IS NULL OR j.key = $6))"
    " SELECT " OPS_ISO("w.from_ts") " AS from_at, " OPS_ISO(
        "w.to_ts") " AS to_at,"
                   " " OPS_ISO("w.keep_ts") " AS keep_at, w.from_ts < w.keep_ts AS too_old,"
                                            " (SELECT min(seq) FROM ev) AS from_seq,"
                                            " CASE WHEN w.to_ts IS NULL THEN NULL ELSE (SELECT "
                                            "max(seq) FROM ev) END AS to_seq,"
                                            " (SELECT max(seq) FROM ev) AS last_seq, (SELECT "
                                            "count(*) FROM ev) AS events,"
                                            " (SELECT count(DISTINCT key) FROM ev) AS keys FROM w";

static const char replay_set_sql[] =
    "INSERT INTO ess_controls (connector, replay_from_seq, replay_to_seq, replay_key, replay_id,"
    " replay_requested_at, updated_at) VALUES ($1, $2::bigint, $3::bigint, $4, 1, now(), now())"
    " ON CONFLICT (connector) DO UPDATE SET replay_from_seq = EXCLUDED.replay_from_seq,"
    " replay_to_seq = EXCLUDED.replay_to_seq, replay_key = EXCLUDED.replay_key,"
    " replay_id = ess_controls.replay_id + 1, replay_requested_at = now(), updated_at = now()"
    " RETURNING replay_id";

static int replay_parse(int argc, char **argv, const char *usage, struct ops_args *a, long *since)
{
    int rc = ops_parse(argc, argv, A_ID | A_SINCE | A_FROM | A_TO | A_KEY | A_DRY, usage, a);

    if (rc == EX_OK) {
        rc = ops_need_id(a, A_ID, usage);
    }
    if (rc == EX_OK && (a->since == NULL) == (a->from == NULL)) {
        rc = ops_usage(usage, "give one of --since or --from", NULL);
    }
    if (rc == EX_OK && a->since != NULL && ops_duration(a->since, since) != 0) {
        rc = ops_usage(usage, "--since: not a duration like 45s, 30m, 12h, 7d", a->since);
    }
    return rc;
}

/* Resolve the window (*win: one row, new reference). */
static int replay_resolve(struct ess_store *s, const struct ops_args *a, long since, long window,
                          json_t **win)
{
    static const char *const typed[] = {"too_old", "from_seq", "to_seq", "last_seq",
                                        "events",  "keys",     NULL};
    char since_text[32];
    char window_text[32];
    const char *params[6] = {a->id, NULL, a->from, a->to, window_text, a->key};
    json_t *rows = NULL;
    int rc;

    snprintf(since_text, sizeof(since_text), "%ld", since);
    snprintf(window_text, sizeof(window_text), "%ld", window);
    params[1] = a->since != NULL ? since_text : NULL;
    rc = ops_query(s, replay_sql, 6, params, &rows);
    if (rc == EX_OK) {
        ops_type_columns(rows, typed);
        *win = json_incref(json_array_get(rows, 0));
    }
    json_decref(rows);
    return rc;
}

/* Refuse a window past retention, or one that holds nothing: EX_DATAERR. */
static int replay_refuse(const struct ops_args *a, json_t *win, long window)
{
    char wtext[32];

    ess_manifest_duration_text(window, wtext, sizeof(wtext));
    if (json_is_true(json_object_get(win, "too_old"))) {
        fprintf(stderr,
                "hms: replay refused: the window starts %s, but %s keeps its journal for"
                " replay_window %s (nothing before %s is guaranteed); choose a later"
                " --since/--from\n",
                status_text(win, "from_at"), a->id, wtext, status_text(win, "keep_at"));
        return EX_DATAERR;
    }
    if (json_integer_value(json_object_get(win, "events")) == 0) {
        fprintf(stderr, "hms: replay refused: no journaled events of %s%s%s between %s and %s\n",
                a->id, a->key != NULL ? " for key " : "", a->key != NULL ? a->key : "",
                status_text(win, "from_at"), a->to != NULL ? status_text(win, "to_at") : "now");
        return EX_DATAERR;
    }
    return EX_OK;
}

/* Record the request; the worker applies it (hms.h). */
static int replay_request(struct ess_store *s, const struct ops_args *a, json_t *win)
{
    char from_seq[32];
    char to_seq[32];
    const char *params[4] = {a->id, from_seq, NULL, a->key};
    json_t *rows = NULL;
    int rc;

    snprintf(from_seq, sizeof(from_seq), "%lld",
             (long long)json_integer_value(json_object_get(win, "from_seq")));
    snprintf(to_seq, sizeof(to_seq), "%lld",
             (long long)json_integer_value(json_object_get(win, "to_seq")));
    params[2] = json_is_integer(json_object_get(win, "to_seq")) ? to_seq : NULL;
    rc = ops_query(s, replay_set_sql, 4, params, &rows);
    if (rc == EX_OK) {
        json_object_set_new(win, "replay_id",
                            ops_typed(ops_str(json_array_get(rows, 0), "replay_id")));
    }
    json_decref(rows);
    return rc;
}

static void replay_print(const struct hms_opts *o, const struct ops_args *a, json_t *win)
{
    long long events = (long long)json_integer_value(json_object_get(win, "events"));
    long long keys = (long long)json_integer_value(json_object_get(win, "keys"));
    long long from = (long long)json_integer_value(json_object_get(win, "from_seq"));
    long long last = (long long)json_integer_value(json_object_get(win, "last_seq"));

    json_object_set_new(win, "connector", json_string(a->id));
    json_object_set_new(win, "key", a->key != NULL ? json_string(a->key) : json_null());
    json_object_set_new(win, "dry_run", json_boolean(a->dry_run));
    if (o->json) {
        hms_out_rows(o, win, NULL);
    } else if (a->dry_run) {
        printf("dry run: %s from %s to %s%s%s: %lld events, %lld keys, seq %lld..%lld;"
               " nothing changed\n",
               a->id, status_text(win, "from_at"),
               a->to != NULL ? status_text(win, "to_at") : "now", a->key != NULL ? ", key " : "",
               a->key != NULL ? a->key : "", events, keys, from, last);
    } else {
        printf("replay #%lld requested: %lld events, %lld keys, seq %lld..%lld; the worker"
               " applies it within a second\n",
               (long long)json_integer_value(json_object_get(win, "replay_id")), events, keys, from,
               last);
    }
}

int hms_cmd_replay(int argc, char **argv, const struct hms_opts *o)
{
    static const char usage[] =
        "replay <id> --since 30m | --from <ISO-8601> [--to <ISO-8601>] [--key K] [--dry-run]";
    struct ess_store *s = NULL;
    struct ops_args a;
    json_t *win = NULL;
    long since = 0;
    long window = 0;
    int rc;

    rc = replay_parse(argc, argv, usage, &a, &since);
    if (rc == EX_OK) {
        rc = ops_open_known(&s, a.id);
    }
    if (rc == EX_OK && a.from != NULL) {
        rc = replay_check_time(s, "--from", a.from, usage);
    }
    if (rc == EX_OK && a.to != NULL) {
        rc = replay_check_time(s, "--to", a.to, usage);
    }
    if (rc == EX_OK) {
        rc = replay_window(s, a.id, &window);
    }
    if (rc == EX_OK) {
        rc = replay_resolve(s, &a, since, window, &win);
    }
    if (rc == EX_OK) {
        rc = replay_refuse(&a, win, window);
    }
    if (rc == EX_OK && !a.dry_run) {
        rc = replay_request(s, &a, win);
    }
    if (rc == EX_OK) {
        replay_print(o, &a, win);
    }
    json_decref(win);
    ess_store_free(s);
    return rc;
}

/* ---- dlq ----------------------------------------------------------------- */

static const char dlq_usage[] = "dlq list <id> [--all] | dlq retry|drop <id> [--event E]";

static const char dlq_list_sql[] =
    "SELECT seq, event_id, key, status, attempts, last_status, reason,"
    " " OPS_ISO(
        "parked_at") " AS parked_at FROM ess_dead_letters WHERE connector = $1"
                     " AND ($2::boolean OR status IN ('parked', 'held', 'retry')) ORDER BY seq";

/* Move rows of connector $1 (only event $2 when given) whose status is in $3
 * to status $4. */
static const char dlq_move_sql[] =
    "UPDATE ess_dead_letters SET status = $4, updated_at = now() WHERE connector = $1"
    " AND ($2::text IS NULL OR event_id = $2) AND status = ANY ($3::text[])"
    " RETURNING seq, event_id, key";

static const char dlq_open_sql[] =
    "SELECT status FROM ess_dead_letters WHERE connector = $1 AND event_id = $2"
    " AND status IN ('parked', 'held', 'retry') ORDER BY seq LIMIT 1";

static int dlq_list(struct ess_store *s, const struct hms_opts *o, const struct ops_args *a)
{
    static const char *const columns[] = {
        "seq", "event_id", "key", "status", "attempts", "last_status", "reason", "parked_at", NULL};
    static const char *const typed[] = {"seq", "attempts", "last_status", NULL};
    const char *params[2] = {a->id, a->all ? "true" : "false"};
    json_t *rows = NULL;
    int rc;

    rc = ops_query(s, dlq_list_sql, 2, params, &rows);
    if (rc == EX_OK) {
        ops_type_columns(rows, typed);
        hms_out_rows(o, rows, columns);
    }
    json_decref(rows);
    return rc;
}

/* --event named a row the move did not touch: say why; EX_DATAERR. */
static int dlq_explain_miss(struct ess_store *s, const struct ops_args *a, const char *verb)
{
    const char *params[2] = {a->id, a->event};
    json_t *rows = NULL;
    const char *status;
    int rc;

    rc = ops_query(s, dlq_open_sql, 2, params, &rows);
    status = ops_str(json_array_get(rows, 0), "status");
    if (rc == EX_OK && status == NULL) {
        fprintf(stderr,
                "hms: %s has no open dead letter with event id '%s'"
                " (see hms ess dlq list %s --all)\n",
                a->id, a->event, a->id);
        rc = EX_DATAERR;
    } else if (rc == EX_OK) {
        fprintf(stderr, "hms: cannot %s event '%s' of %s: it is %s%s\n", verb, a->event, a->id,
                status,
                strcmp(status, "held") == 0
                    ? " behind an earlier parked event of its key; retry or drop that one"
                    : "");
        rc = EX_DATAERR;
    }
    json_decref(rows);
    return rc;
}

static int dlq_move(struct ess_store *s, const struct hms_opts *o, const struct ops_args *a,
                    int retry)
{
    const char *params[4] = {a->id, a->event, retry ? "{parked}" : "{parked,held}",
                             retry ? "retry" : "dropped"};
    json_t *rows = NULL;
    size_t n;
    int rc;

    rc = ops_query(s, dlq_move_sql, 4, params, &rows);
    n = json_array_size(rows);
    if (rc == EX_OK && n == 0 && a->event != NULL) {
        rc = dlq_explain_miss(s, a, retry ? "retry" : "drop");
    } else if (rc == EX_OK && o->json) {
        hms_out_rows(o, rows, NULL);
    } else if (rc == EX_OK && retry) {
        printf("%s: %zu parked event(s) set to retry; the worker re-sends them, then the events"
               " held behind them, in order\n",
               a->id, n);
    } else if (rc == EX_OK) {
        printf("%s: %zu event(s) dropped; the worker releases their keys\n", a->id, n);
    }
    json_decref(rows);
    return rc;
}

int hms_cmd_dlq(int argc, char **argv, const struct hms_opts *o)
{
    struct ess_store *s = NULL;
    struct ops_args a;
    const char *sub = argc > 0 ? argv[0] : "";
    int list = strcmp(sub, "list") == 0;
    int rc;

    if (!list && strcmp(sub, "retry") != 0 && strcmp(sub, "drop") != 0) {
        return ops_usage(dlq_usage, "dlq needs list, retry or drop", argc > 0 ? sub : NULL);
    }
    rc = ops_parse(argc - 1, argv + 1, A_ID | (list ? A_ALL : A_EVENT), dlq_usage, &a);
    if (rc == EX_OK) {
        rc = ops_need_id(&a, A_ID, dlq_usage);
    }
    if (rc == EX_OK) {
        rc = ops_open_known(&s, a.id);
    }
    if (rc == EX_OK && list) {
        rc = dlq_list(s, o, &a);
    } else if (rc == EX_OK) {
        rc = dlq_move(s, o, &a, strcmp(sub, "retry") == 0);
    }
    ess_store_free(s);
    return rc;
}

/* ---- tickets ------------------------------------------------------------- */

/* Tickets, plus -- with the default `tickets: failures` -- the changes that
 * need none: journaled, at or below the delivered offset, never parked. */
static const char tickets_sql[] = "SELECT seq, event_id, key, outcome, attempts, last_status, "
                                  "last_error, " OPS_ISO("first_at") " AS first_at, " OPS_ISO(
                                      "done_at") " AS done_at FROM ("
                                                 " SELECT id, seq, event_id, key, outcome, "
                                                 "attempts, last_status, last_error, first_at,"
                                                 " done_at FROM ess_tickets WHERE connector = $1 "
                                                 "AND ($2::text IS NULL OR key = $2)"
                                                 " UNION ALL"
                                                 " SELECT 0, j.seq, j.event_id, j.key, "
                                                 "'delivered', 1, NULL, NULL, NULL, NULL"
                                                 " FROM ess_journal j WHERE j.connector = $1 AND "
                                                 "($2::text IS NULL OR j.key = $2)"
                                                 " AND j.seq <= coalesce((SELECT delivered_seq "
                                                 "FROM ess_offsets WHERE connector = $1), 0)"
                                                 " AND NOT EXISTS (SELECT 1 FROM ess_tickets t "
                                                 "WHERE t.connector = $1 AND t.seq = j.seq)"
                                                 " AND NOT EXISTS (SELECT 1 FROM ess_dead_letters "
                                                 "d WHERE d.connector = $1"
                                                 " AND d.seq = j.seq)) x ORDER BY seq DESC, id "
                                                 "DESC LIMIT $3::int";

int hms_cmd_tickets(int argc, char **argv, const struct hms_opts *o)
{
    static const char usage[] = "tickets <id> [--key K] [--limit N] [--json]";
    static const char *const columns[] = {"seq",      "event_id",    "key",        "outcome",
                                          "attempts", "last_status", "last_error", "first_at",
                                          "done_at",  NULL};
    static const char *const typed[] = {"seq", "attempts", "last_status", NULL};
    char limit[32] = OPS_TICKETS_LIMIT;
    const char *params[3] = {NULL, NULL, limit};
    struct ess_store *s = NULL;
    struct ops_args a;
    json_t *rows = NULL;
    int rc;

    rc = ops_parse(argc, argv, A_ID | A_KEY | A_LIMIT, usage, &a);
    if (rc == EX_OK) {
        rc = ops_need_id(&a, A_ID, usage);
    }
    if (rc == EX_OK) {
        rc = ops_open_known(&s, a.id);
    }
    if (a.limit > 0) {
        snprintf(limit, sizeof(limit), "%ld", a.limit);
    }
    params[0] = a.id;
    params[1] = a.key;
    if (rc == EX_OK) {
        rc = ops_query(s, tickets_sql, 3, params, &rows);
    }
    if (rc == EX_OK) {
        ops_type_columns(rows, typed);
        hms_out_rows(o, rows, columns);
    }
    json_decref(rows);
    ess_store_free(s);
    return rc;
}

/* ---- watch --------------------------------------------------------------- */

static volatile sig_atomic_t watch_stop;

static void watch_on_signal(int sig)
{
    (void)sig;
    watch_stop = 1;
}

/* SIGINT/SIGTERM end the watch at the next tick (exit 0). */
static void watch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = watch_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* EX_UNAVAILABLE with the broker's or the library's reason. */
static int watch_reply(amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        return EX_OK;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        fprintf(stderr, "hms: bus: %s: %s\n", what, amqp_error_string2(r.library_error));
    } else {
        fprintf(stderr, "hms: bus: %s: refused by the broker\n", what);
    }
    return EX_UNAVAILABLE;
}

/* Parse the URL (the empty vhost of "amqp://u:p@h:5672/" is "/"), open the
 * socket, log in, open channel 1. */
static int watch_connect(amqp_connection_state_t conn, char *url)
{
    struct amqp_connection_info ci;
    struct timeval tv = {5, 0};
    amqp_socket_t *sock;

    if (amqp_parse_url(url, &ci) != AMQP_STATUS_OK || ci.ssl) {
        fprintf(stderr, "hms: ESS_AMQP_URL is not amqp://user:pass@host:port/vhost\n");
        return EX_CONFIG;
    }
    if (ci.vhost == NULL || ci.vhost[0] == '\0') {
        ci.vhost = "/";
    }
    sock = amqp_tcp_socket_new(conn);
    if (sock == NULL || amqp_socket_open_noblock(sock, ci.host, ci.port, &tv) != AMQP_STATUS_OK) {
        fprintf(stderr, "hms: bus: cannot connect to %s:%d\n", ci.host, ci.port);
        return EX_UNAVAILABLE;
    }
    if (watch_reply(amqp_login(conn, ci.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                               AMQP_SASL_METHOD_PLAIN, ci.user, ci.password),
                    "login") != EX_OK) {
        return EX_UNAVAILABLE;
    }
    amqp_channel_open(conn, 1);
    return watch_reply(amqp_get_rpc_reply(conn), "open channel");
}

/* A private queue on the ops exchange, bound with ess.#, consumed without acks. */
static int watch_subscribe(amqp_connection_state_t conn, const char *ops)
{
    amqp_queue_declare_ok_t *q;
    amqp_bytes_t name;
    int rc;

    amqp_exchange_declare(conn, 1, amqp_cstring_bytes(ops), amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                          amqp_empty_table);
    rc = watch_reply(amqp_get_rpc_reply(conn), "declare the ops exchange");
    if (rc != EX_OK) {
        return rc;
    }
    q = amqp_queue_declare(conn, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    rc = watch_reply(amqp_get_rpc_reply(conn), "declare a queue");
    if (rc != EX_OK) {
        return rc;
    }
    name = amqp_bytes_malloc_dup(q->queue);
    amqp_queue_bind(conn, 1, name, amqp_cstring_bytes(ops), amqp_cstring_bytes("ess.#"),
                    amqp_empty_table);
    rc = watch_reply(amqp_get_rpc_reply(conn), "bind to the ops exchange");
    if (rc == EX_OK) {
        amqp_basic_consume(conn, 1, name, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
        rc = watch_reply(amqp_get_rpc_reply(conn), "consume");
    }
    amqp_bytes_free(name);
    return rc;
}

static long long watch_field(json_t *body, const char *field)
{
    return (long long)json_integer_value(json_object_get(body, field));
}

static const char *watch_text(json_t *body, const char *field)
{
    const char *v = json_string_value(json_object_get(body, field));

    return v != NULL && v[0] != '\0' ? v : "-";
}

/* One human line for a message (time is when hms received it, UTC). */
static void watch_print_human(const char *rk, json_t *body, const char *raw)
{
    char now[32];
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (strncmp(rk, "ess.heartbeat.", 14) == 0) {
        printf("%s  %-36s %-20s %-12s delivered=%lld backlog=%lld last_error=%s\n", now, rk,
               watch_text(body, "connector"), watch_text(body, "state"),
               watch_field(body, "delivered"), watch_field(body, "backlog"),
               watch_text(body, "last_error"));
    } else if (json_is_string(json_object_get(body, "event"))) {
        printf("%s  %-36s %-20s %-12s %s\n", now, rk, watch_text(body, "connector"),
               watch_text(body, "event"), watch_text(body, "detail"));
    } else {
        printf("%s  %-36s %s\n", now, rk, raw);
    }
}

static void watch_print(const struct hms_opts *o, const amqp_envelope_t *env)
{
    char rk[256];
    char *raw = strndup(env->message.body.bytes, env->message.body.len);
    json_t *body = raw != NULL ? json_loads(raw, 0, NULL) : NULL;
    json_t *line;

    snprintf(rk, sizeof(rk), "%.*s", (int)env->routing_key.len,
             (const char *)env->routing_key.bytes);
    if (o->json) {
        line = json_pack("{s:s, s:o}", "routing_key", rk, "body",
                         body != NULL ? json_incref(body) : json_string(raw != NULL ? raw : ""));
        json_dumpf(line, stdout, JSON_COMPACT);
        printf("\n");
        json_decref(line);
    } else {
        watch_print_human(rk, body, raw != NULL ? raw : "");
    }
    fflush(stdout);
    json_decref(body);
    free(raw);
}

/* Print messages until count are seen, the deadline passes or a signal
 * arrives (EX_OK), or the connection fails (EX_UNAVAILABLE). */
static int watch_loop(amqp_connection_state_t conn, const struct hms_opts *o, long count,
                      long long deadline_ms)
{
    struct timeval tv = {0, OPS_WATCH_TICK_MS * 1000};
    amqp_envelope_t env;
    amqp_rpc_reply_t r;
    long seen = 0;

    while (!watch_stop && (count == 0 || seen < count)) {
        if (deadline_ms > 0 && ess_worker_mono_ms() >= deadline_ms) {
            break;
        }
        amqp_maybe_release_buffers(conn);
        r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            watch_print(o, &env);
            amqp_destroy_envelope(&env);
            seen++;
        } else if (!(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                     r.library_error == AMQP_STATUS_TIMEOUT)) {
            return watch_reply(r, "connection lost");
        }
    }
    return EX_OK;
}

int hms_cmd_watch(int argc, char **argv, const struct hms_opts *o)
{
    static const char usage[] = "watch [--count N] [--timeout S] [--json]";
    struct ess_worker_env env;
    amqp_connection_state_t conn = NULL;
    struct ops_args a;
    char *url = NULL;
    int logged_in = 0;
    int rc;

    rc = ops_parse(argc, argv, A_COUNT | A_TIMEOUT, usage, &a);
    if (rc != EX_OK) {
        return rc;
    }
    ess_worker_env_load(&env);
    url = strdup(env.amqp_url);
    conn = amqp_new_connection();
    if (url == NULL || conn == NULL) {
        rc = EX_OSERR;
        goto done;
    }
    rc = watch_connect(conn, url);
    logged_in = rc == EX_OK;
    if (rc == EX_OK) {
        rc = watch_subscribe(conn, env.ops_exchange);
    }
    if (rc == EX_OK) {
        watch_signals();
        rc = watch_loop(conn, o, a.count,
                        a.timeout > 0 ? ess_worker_mono_ms() + a.timeout * 1000LL : 0);
    }
done:
    if (logged_in && rc == EX_OK) {
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    }
    if (conn != NULL) {
        amqp_destroy_connection(conn);
    }
    free(url);
    return rc;
}
