/*
 * ess-webhook -- partner -> bus, pushed. The partner POSTs records to
 * `listen` + `path`; each request is authenticated (Standard Webhooks HMAC or
 * a bearer token), parsed, mapped back to HMS names and codes
 * (ess_shape_inverse) and published to hms.events with `publish_topic`,
 * header ess-origin and publisher confirms. The answer is 202 only once the
 * broker confirmed every record.
 *
 * DESIGN
 * - One thread. libmicrohttpd runs in external-select mode inside our loop
 *   (MHD_get_fdset2 + select + MHD_run_from_select), so the one AMQP
 *   connection is only ever used by this thread. A request is answered from
 *   the access handler synchronously: the confirm wait is bounded by
 *   timeout_ms, so a hung broker stalls the loop for at most that long.
 * - Answers: 202 all confirmed; 400 malformed (with the reason); 401 bad or
 *   missing signature/token, or a timestamp more than 5 minutes off; 404/405
 *   wrong path/method; 413 body over body_limit; 503 broker unreachable or
 *   not confirming (the partner retries). Nothing is published for a request
 *   rejected with 4xx: every check runs before the first publish.
 * - Replays: a webhook-id whose records were all confirmed within the last
 *   10 minutes is answered 200 {"status":"duplicate"} and NOT republished.
 *   200, not 409: a partner that lost our 202 and retries must see success, or
 *   it would retry until it gives up and flags the endpoint as failing. The set
 *   is in memory and bounded (HOOK_SEEN_N ids; beyond that the oldest are
 *   forgotten early) and a restart forgets it; a replay after that is
 *   published again with the same message_id, which HMS dedupes on.
 *   An id is remembered only after success, so a retry after 503 publishes.
 * - A lost broker: the bus is dropped, requests get 503, and the loop
 *   reconnects with back-off (ess_worker_retry_*); heartbeats say degraded.
 * - SIGTERM: stop listening (MHD_quiesce_daemon), let open connections finish
 *   (bounded by HOOK_DRAIN_MS), publish stopping/stopped, exit 0.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "ess_bus.h"
#include "ess_err.h"
#include "ess_event.h"
#include "ess_log.h"
#include "ess_manifest.h"
#include "ess_records.h"
#include "ess_shape.h"
#include "ess_sign.h"
#include "ess_stats.h"
#include "ess_store.h"
#include "ess_twoway.h"
#include "ess_version.h"
#include "ess_worker.h"

#define HOOK_SEEN_N 8192
#define HOOK_SEEN_MS (10LL * 60 * 1000)
#define HOOK_SKEW_S 300
#define HOOK_ID_MAX 200
#define HOOK_DRAIN_MS 10000
#define HOOK_LOOP_MS 250
#define HOOK_REASON_MAX 400

struct hook_seen {
    char *id[HOOK_SEEN_N]; /* ring of webhook-ids confirmed recently */
    long long at[HOOK_SEEN_N];
    size_t pos;
};

struct hook {
    struct ess_manifest *m;
    struct ess_worker_env env;
    struct MHD_Daemon *mhd;
    struct ess_bus *bus;     /* NULL while the broker is unreachable */
    struct ess_store *store; /* heartbeats, conflicts; NULL while Postgres is unreachable */
    struct ess_worker_retry retry;
    struct ess_worker_retry store_retry;
    struct ess_stats stats;
    unsigned long long received, published, rejected, conflicts;
    unsigned long long gen; /* for ids of requests that carry none */
    char last_error[ESS_ERR_MSG_MAX];
    long long started_ms;
    long long next_hb_ms;
    struct hook_seen seen;
};

struct hook_req { /* one request's body, collected across handler calls */
    char *buf;
    size_t len;
    size_t cap;
    int too_big;
};

struct hook_answer {
    unsigned status;
    char reason[HOOK_REASON_MAX];
    size_t accepted;
};

/* ---------------------------------------------------------------- bus ---- */

static void hook_bus_lost(struct hook *h, const struct ess_err *err)
{
    snprintf(h->last_error, sizeof(h->last_error), "%s", err->msg);
    ess_log_warn("broker: %s; answering 503 until it is back", err->msg);
    ess_bus_free(h->bus);
    h->bus = NULL;
    ess_worker_retry_failed(&h->retry, ess_worker_mono_ms());
}

static int hook_bus_connect(struct hook *h)
{
    struct ess_err err;
    struct ess_bus *b;

    ess_err_clear(&err);
    b = ess_bus_new(h->env.amqp_url, &err);
    if (b != NULL && ess_bus_confirm_select(b, &err) == ESS_OK &&
        ess_bus_declare_exchanges(b, h->env.events_exchange, h->env.ops_exchange, &err) == ESS_OK) {
        h->bus = b;
        h->last_error[0] = '\0';
        ess_worker_retry_ok(&h->retry);
        ess_log_info("broker: connected, publisher confirms on");
        return ESS_OK;
    }
    ess_bus_free(b);
    snprintf(h->last_error, sizeof(h->last_error), "%s", err.msg);
    ess_log_warn("broker: %s", err.msg);
    ess_worker_retry_failed(&h->retry, ess_worker_mono_ms());
    return ESS_EBUS;
}

/* Postgres: heartbeats for `hms ess ps`, and the conflict state. Paced by
 * store_retry; a failure is logged once per streak. */
static int hook_store_connect(struct hook *h)
{
    struct ess_err err;
    struct ess_store *s;

    if (h->store != NULL) {
        return ESS_OK;
    }
    if (!ess_worker_retry_due(&h->store_retry, ess_worker_mono_ms())) {
        return ESS_ESTORE;
    }
    ess_err_clear(&err);
    s = ess_store_new(h->env.pg_url, &err);
    if (s != NULL && ess_store_migrate(s, &err) == ESS_OK) {
        h->store = s;
        ess_worker_retry_ok(&h->store_retry);
        ess_log_info("postgres: connected");
        return ESS_OK;
    }
    ess_store_free(s);
    if (h->store_retry.attempt == 0) {
        ess_log_warn("%s", err.msg);
    }
    snprintf(h->last_error, sizeof(h->last_error), "%s", err.msg);
    ess_worker_retry_failed(&h->store_retry, ess_worker_mono_ms());
    return ESS_ESTORE;
}

static void hook_store_lost(struct hook *h, const struct ess_err *err)
{
    snprintf(h->last_error, sizeof(h->last_error), "%s", err->msg);
    ess_log_warn("%s", err->msg);
    ess_store_free(h->store);
    h->store = NULL;
    ess_worker_retry_failed(&h->store_retry, ess_worker_mono_ms());
}

/* Read what the broker sent meanwhile (late confirms, a close): notices a
 * dead connection between requests. */
static void hook_bus_service(struct hook *h)
{
    struct ess_bus_msg msg;
    struct ess_err err;

    ess_err_clear(&err);
    if (h->bus != NULL && ess_bus_next(h->bus, 0, &msg, &err) < 0) {
        hook_bus_lost(h, &err);
    }
}

/* ---------------------------------------------------------------- ops ---- */

static char *hook_heartbeat_text(struct hook *h, long long now, const char *state)
{
    struct ess_heartbeat hb;
    json_t *o = NULL;
    char *text;
    char *out = NULL;

    h->stats.consumed = h->received;
    h->stats.delivered = h->published;
    h->stats.failed = h->rejected;
    hb = (struct ess_heartbeat){h->m->id,
                                ess_worker_instance(),
                                ess_worker_host(),
                                ESS_VERSION,
                                state,
                                h->last_error,
                                (long)getpid(),
                                ess_worker_wall_ms(),
                                (now - h->started_ms) / 1000,
                                0};
    text = ess_stats_heartbeat_json(&h->stats, &hb);
    if (text != NULL) {
        o = json_loads(text, 0, NULL);
    }
    if (o != NULL) {
        json_object_set_new(o, "received", json_integer((json_int_t)h->received));
        json_object_set_new(o, "published", json_integer((json_int_t)h->published));
        json_object_set_new(o, "rejected", json_integer((json_int_t)h->rejected));
        json_object_set_new(o, "conflicts", json_integer((json_int_t)h->conflicts));
        out = json_dumps(o, JSON_COMPACT);
    }
    json_decref(o);
    free(text);
    return out;
}

/* On hms.ops and in ess_heartbeats (for `hms ess ps`), whichever is up. */
static void hook_heartbeat(struct hook *h, long long now, const char *state)
{
    struct ess_err err, berr;
    const char *st = state != NULL                                               ? state
                     : h->bus == NULL || (h->store == NULL && h->m->conflict.on) ? "degraded"
                                                                                 : "ok";
    char *text;
    int failed;

    hook_store_connect(h);
    if (h->bus == NULL && h->store == NULL) {
        return;
    }
    text = hook_heartbeat_text(h, now, st);
    ess_err_clear(&err);
    ess_err_clear(&berr);
    failed = ess_worker_heartbeat_send(h->bus, h->store, h->env.ops_exchange, h->m->id,
                                       ess_worker_instance(), st, h->m->heartbeat_sec, text, &err,
                                       &berr);
    if (failed & ESS_WORKER_HB_STORE_FAILED) {
        hook_store_lost(h, &err);
    }
    if (failed & ESS_WORKER_HB_BUS_FAILED) {
        hook_bus_lost(h, &berr);
    }
    free(text);
}

static void hook_lifecycle(struct hook *h, const char *event, const char *detail)
{
    struct ess_err err;

    ess_err_clear(&err);
    if (h->bus != NULL && ess_worker_publish_lifecycle(h->bus, h->env.ops_exchange, h->m->id, event,
                                                       detail, &err) != ESS_OK) {
        hook_bus_lost(h, &err);
    }
}

/* ---------------------------------------------------------------- replays */

static int hook_seen_has(const struct hook_seen *s, const char *id, long long now)
{
    size_t i;

    for (i = 0; i < HOOK_SEEN_N; i++) {
        if (s->id[i] != NULL && now - s->at[i] < HOOK_SEEN_MS && strcmp(s->id[i], id) == 0) {
            return 1;
        }
    }
    return 0;
}

static void hook_seen_add(struct hook_seen *s, const char *id, long long now)
{
    char *dup = strdup(id);

    if (dup == NULL) {
        return; /* forgetting an id only costs a republish HMS dedupes */
    }
    free(s->id[s->pos]);
    s->id[s->pos] = dup;
    s->at[s->pos] = now;
    s->pos = (s->pos + 1) % HOOK_SEEN_N;
}

static void hook_seen_fini(struct hook_seen *s)
{
    size_t i;

    for (i = 0; i < HOOK_SEEN_N; i++) {
        free(s->id[i]);
        s->id[i] = NULL;
    }
}

/* ---------------------------------------------------------------- checks */

static unsigned hook_fail(struct hook_answer *a, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static unsigned hook_fail(struct hook_answer *a, unsigned status, const char *fmt, ...)
{
    va_list ap;

    a->status = status;
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
    va_end(ap);
    return status;
}

static const char *hook_header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Standard Webhooks: id, timestamp within HOOK_SKEW_S, one matching signature. */
static unsigned hook_check_hmac(const struct hook *h, struct MHD_Connection *c,
                                const struct hook_req *r, struct hook_answer *a)
{
    struct ess_err err;

    ess_err_clear(&err);
    if (ess_sign_check_request(getenv(h->m->inbound_auth.secret_env), hook_header(c, "webhook-id"),
                               hook_header(c, "webhook-timestamp"),
                               hook_header(c, "webhook-signature"), r->buf, r->len, time(NULL),
                               HOOK_SKEW_S, &err) != ESS_OK) {
        return hook_fail(a, MHD_HTTP_UNAUTHORIZED, "%s", err.msg);
    }
    return 0;
}

static unsigned hook_check_bearer(const struct hook *h, struct MHD_Connection *c,
                                  struct hook_answer *a)
{
    const char *got = hook_header(c, "Authorization");
    const char *token = getenv(h->m->inbound_auth.token_env);
    size_t n = token != NULL ? strlen(token) : 0;

    if (got == NULL || strncmp(got, "Bearer ", 7) != 0 || token == NULL || n == 0 ||
        strlen(got + 7) != n || CRYPTO_memcmp(got + 7, token, n) != 0) {
        return hook_fail(a, MHD_HTTP_UNAUTHORIZED, "missing or wrong bearer token");
    }
    return 0;
}

/* The message id base: webhook-id (hmac; also honoured with bearer), else
 * Idempotency-Key, else one made up (no replay detection possible then). */
static void hook_request_id(struct hook *h, struct MHD_Connection *c, char *id, size_t len)
{
    const char *v = hook_header(c, "webhook-id");

    if (v == NULL) {
        v = hook_header(c, "Idempotency-Key");
    }
    if (v != NULL) {
        snprintf(id, len, "%s", v);
        return;
    }
    snprintf(id, len, "%s-%lld-%llu", h->m->id, ess_worker_wall_ms(), ++h->gen);
}

/* ---------------------------------------------------------------- records */

/* Parse the body and map every record back; *records is an array of HMS
 * records (new reference) or NULL with a 400 in a. */
static unsigned hook_parse(const struct hook *h, const struct hook_req *r, json_t **records,
                           struct hook_answer *a)
{
    struct ess_err err;

    ess_err_clear(&err);
    if (ess_records_body(r->buf, r->len, records, &err) != ESS_OK) {
        return hook_fail(
            a, err.code == ESS_ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST, "%s",
            err.msg);
    }
    return 0;
}

static unsigned hook_map_one(const struct hook *h, json_t *in, size_t i, json_t **out,
                             struct hook_answer *a)
{
    struct ess_err err;
    char where[32];

    snprintf(where, sizeof(where), "record %zu", i);
    if (!json_is_object(in)) {
        return hook_fail(a, MHD_HTTP_BAD_REQUEST, "%s is not a JSON object", where);
    }
    ess_err_clear(&err);
    if (ess_shape_inverse(h->m, in, out, &err) != ESS_OK) {
        a->status = MHD_HTTP_BAD_REQUEST;
        snprintf(a->reason, sizeof(a->reason), "%s: %s", where, err.msg);
        return a->status;
    }
    if (ess_event_path_get(*out, h->m->key) == NULL) {
        json_decref(*out);
        *out = NULL;
        a->status = MHD_HTTP_BAD_REQUEST;
        snprintf(a->reason, sizeof(a->reason), "%s has no key field '%s'", where, h->m->key);
        return a->status;
    }
    return 0;
}

/* Replace every record by its inverse-mapped version, or a 400. */
static unsigned hook_map_all(const struct hook *h, json_t *records, struct hook_answer *a)
{
    json_t *mapped = NULL;
    size_t i;
    unsigned st;

    for (i = 0; i < json_array_size(records); i++) {
        st = hook_map_one(h, json_array_get(records, i), i, &mapped, a);
        if (st != 0) {
            return st;
        }
        json_array_set_new(records, i, mapped);
    }
    return 0;
}

/* Under conflict rules: every record replaced by its decided version, the
 * decisions in *entries (committed once all are confirmed); or a 503. */
static unsigned hook_decide_all(struct hook *h, json_t *records, json_t **entries,
                                struct hook_answer *a)
{
    json_t *keys = json_array(), *state = NULL, *resolved, *entry;
    char key[512];
    struct ess_err err;
    size_t i;
    int rc = ESS_OK;

    *entries = json_array();
    ess_err_clear(&err);
    for (i = 0; keys != NULL && i < json_array_size(records); i++) {
        if (ess_twoway_key_text(json_array_get(records, i), h->m->key, key, sizeof(key))) {
            json_array_append_new(keys, json_string(key));
        }
    }
    if (hook_store_connect(h) != ESS_OK) {
        json_decref(keys);
        return hook_fail(a, MHD_HTTP_SERVICE_UNAVAILABLE, "postgres unreachable: %s",
                         h->last_error);
    }
    rc = keys != NULL && *entries != NULL ? ess_twoway_load(h->m, h->store, keys, &state, &err)
                                          : ess_err_set(&err, ESS_ENOMEM, "out of memory");
    for (i = 0; rc == ESS_OK && i < json_array_size(records); i++) {
        if (!ess_twoway_key_text(json_array_get(records, i), h->m->key, key, sizeof(key))) {
            continue; /* an object or array key: published as is, not decided */
        }
        rc = ess_twoway_decide(h->m, state, key, json_array_get(records, i), ess_worker_wall_ms(),
                               &resolved, &entry, &err);
        if (rc == ESS_OK) {
            json_array_set_new(records, i, resolved);
            json_array_append_new(*entries, entry);
        }
    }
    if (rc == ESS_ESTORE) {
        hook_store_lost(h, &err);
    }
    json_decref(keys);
    json_decref(state);
    return rc == ESS_OK ? 0 : hook_fail(a, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", err.msg);
}

/* After every publish was confirmed: the decisions recorded, audited and
 * announced; a 503 when Postgres failed (the partner's retry decides again). */
static unsigned hook_conflicts_commit(struct hook *h, json_t *entries, struct hook_answer *a)
{
    struct ess_err err;
    size_t n = 0;
    int rc;

    ess_err_clear(&err);
    rc = ess_twoway_commit(h->m, h->store, h->bus, h->env.ops_exchange, entries, &n, &err);
    h->conflicts += n;
    if (rc == ESS_EBUS) {
        ess_log_warn("conflict announcement not published: %s", err.msg);
        hook_bus_lost(h, &err);
        return 0;
    }
    if (rc != ESS_OK) {
        hook_store_lost(h, &err);
        return hook_fail(a, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", err.msg);
    }
    return 0;
}

/* Publish every record, each confirmed, or a 503. */
static unsigned hook_publish_all(struct hook *h, json_t *records, const char *id,
                                 struct hook_answer *a)
{
    char mid[HOOK_ID_MAX + 32];
    struct ess_err err;
    json_t *entries = NULL;
    char *text;
    size_t i, n = json_array_size(records);
    int rc = ESS_OK;
    unsigned st;

    if (h->bus == NULL && ess_worker_retry_due(&h->retry, ess_worker_mono_ms())) {
        hook_bus_connect(h);
    }
    if (h->bus == NULL) {
        return hook_fail(a, MHD_HTTP_SERVICE_UNAVAILABLE, "broker unreachable: %s", h->last_error);
    }
    if (h->m->conflict.on) {
        st = hook_decide_all(h, records, &entries, a);
        if (st != 0) {
            json_decref(entries);
            return st;
        }
    }
    ess_err_clear(&err);
    for (i = 0; rc == ESS_OK && i < n; i++) {
        snprintf(mid, sizeof(mid), n > 1 ? "%s:%zu" : "%s", id, i);
        text = json_dumps(json_array_get(records, i), JSON_COMPACT);
        rc = text == NULL
                 ? ess_err_set(&err, ESS_ENOMEM, "out of memory")
                 : ess_bus_publish_confirmed_id(h->bus, h->env.events_exchange, h->m->publish_topic,
                                                mid, text, strlen(text), h->m->id, h->m->timeout_ms,
                                                &err);
        free(text);
        h->published += rc == ESS_OK;
    }
    if (rc == ESS_EBUS) {
        hook_bus_lost(h, &err);
    }
    if (rc != ESS_OK) {
        json_decref(entries);
        return hook_fail(a, MHD_HTTP_SERVICE_UNAVAILABLE, "not confirmed by the broker: %s",
                         err.msg);
    }
    st = entries != NULL ? hook_conflicts_commit(h, entries, a) : 0;
    json_decref(entries);
    if (st != 0) {
        return st;
    }
    a->accepted = n;
    return 0;
}

/* Everything about one complete request, decided in order: size, auth,
 * replay, body, then (only if all passed) publishing. */
static void hook_decide(struct hook *h, struct MHD_Connection *c, const struct hook_req *r,
                        struct hook_answer *a)
{
    json_t *records = NULL;
    char id[HOOK_ID_MAX + 1];
    const char *wid = hook_header(c, "webhook-id");

    a->status = MHD_HTTP_ACCEPTED;
    if (r->too_big) {
        hook_fail(a, MHD_HTTP_CONTENT_TOO_LARGE, "body is larger than body_limit");
        return;
    }
    if ((h->m->inbound_auth.type == ESS_AUTH_HMAC ? hook_check_hmac(h, c, r, a)
                                                  : hook_check_bearer(h, c, a)) != 0) {
        return;
    }
    if (wid != NULL && strlen(wid) > HOOK_ID_MAX) {
        hook_fail(a, MHD_HTTP_BAD_REQUEST, "webhook-id is longer than 200 characters");
        return;
    }
    hook_request_id(h, c, id, sizeof(id));
    if (hook_seen_has(&h->seen, id, ess_worker_mono_ms())) {
        a->status = MHD_HTTP_OK;
        snprintf(a->reason, sizeof(a->reason), "duplicate");
        return;
    }
    if (hook_parse(h, r, &records, a) == 0 && hook_map_all(h, records, a) == 0 &&
        hook_publish_all(h, records, id, a) == 0) {
        hook_seen_add(&h->seen, id, ess_worker_mono_ms());
    }
    json_decref(records);
}

/* ---------------------------------------------------------------- HTTP --- */

static enum MHD_Result hook_respond(struct MHD_Connection *c, const struct hook_answer *a)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;
    json_t *o;
    char *text;

    if (a->status == MHD_HTTP_ACCEPTED) {
        o = json_pack("{s:s, s:I}", "status", "accepted", "records", (json_int_t)a->accepted);
    } else if (a->status == MHD_HTTP_OK) {
        o = json_pack("{s:s}", "status", a->reason);
    } else {
        o = json_pack("{s:s}", "error", a->reason);
    }
    text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    resp = MHD_create_response_from_buffer(text != NULL ? strlen(text) : 0, text,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (a->status == MHD_HTTP_SERVICE_UNAVAILABLE) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "5");
    }
    ret = MHD_queue_response(c, a->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void hook_count(struct hook *h, const struct hook_answer *a)
{
    h->received++;
    if (a->status >= 400 && a->status < 500) {
        h->rejected++;
    }
    if (a->status >= 400) {
        ess_log_info("%u %s", a->status, a->reason);
    }
}

/* First call for a request: route, size from Content-Length, set up the body. */
static enum MHD_Result hook_begin(struct hook *h, struct MHD_Connection *c, const char *url,
                                  const char *method, void **con_cls)
{
    struct hook_answer a = {0, "", 0};
    const char *cl = hook_header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    struct hook_req *r;

    if (strcmp(url, h->m->hook_path) != 0) {
        hook_fail(&a, MHD_HTTP_NOT_FOUND, "no such path: %.100s", url);
    } else if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
        hook_fail(&a, MHD_HTTP_METHOD_NOT_ALLOWED, "only POST");
    } else if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)h->m->body_limit) {
        hook_fail(&a, MHD_HTTP_CONTENT_TOO_LARGE, "body is larger than body_limit");
    }
    if (a.status != 0) {
        hook_count(h, &a);
        return hook_respond(c, &a);
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return MHD_NO;
    }
    *con_cls = r;
    return MHD_YES;
}

static void hook_append(const struct hook *h, struct hook_req *r, const char *data, size_t n)
{
    size_t cap;
    char *nb;

    if (r->too_big || r->len + n > (size_t)h->m->body_limit) {
        r->too_big = 1;
        return;
    }
    if (r->len + n > r->cap) {
        cap = r->cap == 0 ? 4096 : r->cap;
        while (cap < r->len + n) {
            cap *= 2;
        }
        nb = realloc(r->buf, cap);
        if (nb == NULL) {
            r->too_big = 1;
            return;
        }
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
}

static enum MHD_Result hook_access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    struct hook *h = cls;
    struct hook_req *r = *con_cls;
    struct hook_answer a = {0, "", 0};

    (void)version;
    if (r == NULL) {
        return hook_begin(h, c, url, method, con_cls);
    }
    if (*upload_data_size > 0) {
        hook_append(h, r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    hook_decide(h, c, r, &a);
    hook_count(h, &a);
    return hook_respond(c, &a);
}

static void hook_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct hook_req *r = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (r != NULL) {
        free(r->buf);
        free(r);
        *con_cls = NULL;
    }
}

static int hook_listen(struct hook *h, struct ess_err *err)
{
    struct sockaddr_in sa;
    char host[64];
    const char *colon = strrchr(h->m->listen, ':');

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - h->m->listen), h->m->listen);
    inet_pton(AF_INET, host, &sa.sin_addr);
    sa.sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10));
    h->mhd =
        MHD_start_daemon(MHD_USE_ERROR_LOG, 0, NULL, NULL, hook_access, h, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, hook_completed, h,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)256, MHD_OPTION_END);
    if (h->mhd == NULL) {
        return ess_err_set(err, ESS_EIO, "cannot listen on %s (in use, or not a local address?)",
                           h->m->listen);
    }
    ess_log_info("listening on http://%s%s", h->m->listen, h->m->hook_path);
    return ESS_OK;
}

/* ---------------------------------------------------------------- loop --- */

/* One wait: MHD's sockets and the broker's, at most HOOK_LOOP_MS. */
static void hook_wait(struct hook *h)
{
    fd_set rs, ws, es;
    MHD_UNSIGNED_LONG_LONG mt = 0;
    struct timeval tv = {0, HOOK_LOOP_MS * 1000};
    MHD_socket maxfd = -1;
    int bfd = h->bus != NULL ? ess_bus_fd(h->bus) : -1;

    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_ZERO(&es);
    MHD_get_fdset2(h->mhd, &rs, &ws, &es, &maxfd, FD_SETSIZE);
    if (MHD_get_timeout(h->mhd, &mt) == MHD_YES && mt < HOOK_LOOP_MS) {
        tv.tv_usec = (suseconds_t)(mt * 1000);
    }
    if (bfd >= 0 && bfd < FD_SETSIZE) {
        FD_SET(bfd, &rs);
        maxfd = bfd > maxfd ? bfd : maxfd;
    }
    if (select(maxfd + 1, &rs, &ws, &es, &tv) < 0) {
        FD_ZERO(&rs);
        FD_ZERO(&ws);
        FD_ZERO(&es);
    }
    if (bfd >= 0 && bfd < FD_SETSIZE && FD_ISSET(bfd, &rs)) {
        hook_bus_service(h);
    }
    MHD_run_from_select(h->mhd, &rs, &ws, &es);
}

static void hook_cron(struct hook *h)
{
    long long now = ess_worker_mono_ms();

    if (h->bus == NULL && ess_worker_retry_due(&h->retry, now)) {
        if (hook_bus_connect(h) == ESS_OK) {
            hook_heartbeat(h, now, NULL);
        }
    }
    if (now >= h->next_hb_ms) {
        hook_heartbeat(h, now, NULL);
        h->next_hb_ms = now + (long long)h->m->heartbeat_sec * 1000;
    }
}

static void hook_drain(struct hook *h)
{
    const union MHD_DaemonInfo *info;
    long long deadline = ess_worker_mono_ms() + HOOK_DRAIN_MS;
    MHD_socket lfd;

    hook_lifecycle(h, "stopping", "SIGTERM");
    lfd = MHD_quiesce_daemon(h->mhd);
    if (lfd != MHD_INVALID_SOCKET) {
        close(lfd);
    }
    while (ess_worker_mono_ms() < deadline) {
        info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (info == NULL || info->num_connections == 0) {
            break;
        }
        hook_wait(h);
    }
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    hook_heartbeat(h, ess_worker_mono_ms(), "stopped");
    hook_lifecycle(h, "stopped", "");
}

static int hook_run(struct hook *h)
{
    struct ess_err err;
    int rc;

    ess_err_clear(&err);
    rc = hook_listen(h, &err);
    if (rc != ESS_OK) {
        ess_log_error("%s", err.msg);
        return EX_UNAVAILABLE;
    }
    hook_bus_connect(h);
    hook_lifecycle(h, "started", h->m->listen);
    while (!ess_worker_quit()) {
        hook_wait(h);
        hook_cron(h);
        if (ess_worker_take_reload()) {
            ess_log_info("SIGHUP: manifest reload is not supported by ess-webhook; restart it");
        }
    }
    ess_log_info("SIGTERM: no new connections; finishing open ones");
    hook_drain(h);
    return EX_OK;
}

/* ---------------------------------------------------------------- main --- */

/* What the manifest table cannot say: kind, and an inbound auth we implement. */
/* What the key table cannot say: an inbound auth we implement. */
static int check_manifest(const char *path, const struct ess_manifest *m)
{
    if (m->inbound_auth.type != ESS_AUTH_HMAC && m->inbound_auth.type != ESS_AUTH_BEARER) {
        ess_log_error("%s: inbound_auth.type: ess-webhook needs hmac or bearer", path);
        return EX_CONFIG;
    }
    return EX_OK;
}

int main(int argc, char **argv)
{
    struct ess_manifest *m = NULL;
    struct hook *h = NULL;
    int rc;

    rc = ess_worker_start(argc, argv, "ess-webhook", "webhook",
                          "Receives partner webhooks (Standard Webhooks signatures or a bearer "
                          "token) and publishes each record to hms.events with publisher "
                          "confirms.",
                          check_manifest, &m);
    if (rc >= 0) {
        return rc;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        rc = EX_OSERR;
        goto cleanup;
    }
    h->m = m;
    ess_worker_env_load(&h->env);
    ess_worker_retry_init(&h->retry);
    ess_worker_retry_init(&h->store_retry);
    ess_stats_init(&h->stats);
    h->started_ms = ess_worker_mono_ms();
    h->next_hb_ms = h->started_ms;
    ess_worker_signals_install();
    rc = hook_run(h);
cleanup:
    if (h != NULL) {
        ess_bus_free(h->bus);
        ess_store_free(h->store);
        hook_seen_fini(&h->seen);
        free(h);
    }
    ess_manifest_free(m);
    return rc;
}
