/*
 * ess-pull -- partner -> bus, polled. Every `poll_sec` the worker GETs
 * `source_url` with the since-cursor (`cursor_param`=<cursor>), follows the
 * pages (a `next_path` link in the answer, or `page_param`=1,2,... until a
 * page is empty or shorter than the first), and reads the records (a JSON
 * array, the array at `records_path`, or CSV with a header row). Each record
 * is mapped back (ess_shape_inverse: HMS names and codes; `key` and
 * `updated_at_field` are read from the mapped record); one whose SHA-256
 * (canonical JSON: compact, sorted keys) differs from the one stored for its
 * key is published to hms.events with `publish_topic`, header ess-origin and
 * publisher confirms;
 * message_id = <id>:<key>:<first 16 hex digits of the hash>, so a repeat after
 * a crash is recognisable downstream.
 *
 * DESIGN
 * - One thread, one blocking libcurl easy handle (kept across polls for
 *   keep-alive), bounded by timeout_ms per page. A poller has nothing else to
 *   serve while it waits for its partner, so no multi handle.
 * - Nothing is skipped: a poll either completes (every page read, every
 *   change confirmed by the broker) and then the hashes and the new cursor
 *   (the largest `updated_at_field` seen) are committed in one Postgres
 *   transaction, or it fails and the cursor stays; hashes of changes the
 *   broker did confirm are kept, so a retry does not republish them.
 * - A failing partner (transport error, non-2xx, not JSON, records_path
 *   missing, bad CSV), broker or Postgres: logged once per failure streak,
 *   heartbeat state degraded with last_error, next poll after a capped,
 *   jittered back-off (ess_worker_retry_*); recovery is logged once.
 * - SIGTERM: the poll in progress finishes (bounded by timeout_ms per
 *   request), then stopping/stopped. SIGHUP: the manifest is loaded again and
 *   used from the next poll when it is valid and keeps the same id.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "ess_bus.h"
#include "ess_err.h"
#include "ess_event.h"
#include "ess_fetch.h"
#include "ess_log.h"
#include "ess_manifest.h"
#include "ess_records.h"
#include "ess_shape.h"
#include "ess_stats.h"
#include "ess_store.h"
#include "ess_twoway.h"
#include "ess_version.h"
#include "ess_worker.h"

#define PULL_LOOP_MS 250
#define PULL_BODY_MAX (64L * 1024 * 1024) /* one page; larger is garbage */
#define PULL_PAGES_MAX 10000
#define PULL_CURSOR_MAX 512
#define PULL_KEY_MAX 512

struct pull {
    struct ess_manifest *m;
    const char *path;
    struct ess_worker_env env;
    struct ess_bus *bus;     /* NULL while the broker is unreachable */
    struct ess_store *store; /* NULL while Postgres is unreachable */
    CURL *curl;
    struct ess_worker_retry retry; /* next attempt after any failure */
    struct ess_stats stats;
    unsigned long long polled, published, unchanged, failed, conflicts;
    int failing; /* in a failure streak: logged once */
    char last_error[ESS_ERR_MSG_MAX];
    long long started_ms;
    long long next_hb_ms;
    long long next_poll_ms;
};

struct pull_buf {
    char *p;
    size_t len;
    size_t cap;
};

struct pull_run {    /* one poll */
    json_t *records; /* every record of every page */
    char cursor[PULL_CURSOR_MAX];
    json_t *hashes;  /* key -> hash of changes the broker confirmed */
    json_t *state;   /* conflict: key -> stored versions (ess_twoway_load) */
    json_t *entries; /* conflict: decided and confirmed, to commit */
};

/* ---------------------------------------------------------------- ops ---- */

static const char *pull_state(const struct pull *p)
{
    return p->failing || p->bus == NULL || p->store == NULL ? "degraded" : "ok";
}

static char *pull_heartbeat_text(struct pull *p, long long now, const char *state)
{
    struct ess_heartbeat hb;
    json_t *o = NULL;
    char *text;
    char *out = NULL;

    p->stats.consumed = p->polled;
    p->stats.delivered = p->published;
    p->stats.failed = p->failed;
    hb = (struct ess_heartbeat){p->m->id,
                                ess_worker_instance(),
                                ess_worker_host(),
                                ESS_VERSION,
                                state,
                                p->last_error,
                                (long)getpid(),
                                ess_worker_wall_ms(),
                                (now - p->started_ms) / 1000,
                                0};
    text = ess_stats_heartbeat_json(&p->stats, &hb);
    if (text != NULL) {
        o = json_loads(text, 0, NULL);
    }
    if (o != NULL) {
        json_object_set_new(o, "polled", json_integer((json_int_t)p->polled));
        json_object_set_new(o, "published", json_integer((json_int_t)p->published));
        json_object_set_new(o, "unchanged", json_integer((json_int_t)p->unchanged));
        json_object_set_new(o, "conflicts", json_integer((json_int_t)p->conflicts));
        out = json_dumps(o, JSON_COMPACT);
    }
    json_decref(o);
    free(text);
    return out;
}

static void pull_bus_lost(struct pull *p, const struct ess_err *err)
{
    snprintf(p->last_error, sizeof(p->last_error), "%s", err->msg);
    ess_log_warn("broker: %s", err->msg);
    ess_bus_free(p->bus);
    p->bus = NULL;
}

/* On hms.ops and in ess_heartbeats (for `hms ess ps`), whichever is up. */
static void pull_heartbeat(struct pull *p, long long now, const char *state)
{
    struct ess_err err, berr;
    const char *st = state != NULL ? state : pull_state(p);
    char *text;
    int failed;

    if (p->bus == NULL && p->store == NULL) {
        return;
    }
    text = pull_heartbeat_text(p, now, st);
    ess_err_clear(&err);
    ess_err_clear(&berr);
    failed = ess_worker_heartbeat_send(p->bus, p->store, p->env.ops_exchange, p->m->id,
                                       ess_worker_instance(), st, p->m->heartbeat_sec, text, &err,
                                       &berr);
    if (failed & ESS_WORKER_HB_STORE_FAILED) {
        ess_log_warn("%s", err.msg);
        ess_store_free(p->store);
        p->store = NULL;
    }
    if (failed & ESS_WORKER_HB_BUS_FAILED) {
        pull_bus_lost(p, &berr);
    }
    free(text);
}

static void pull_lifecycle(struct pull *p, const char *event, const char *detail)
{
    struct ess_err err;

    ess_err_clear(&err);
    if (p->bus != NULL && ess_worker_publish_lifecycle(p->bus, p->env.ops_exchange, p->m->id, event,
                                                       detail, &err) != ESS_OK) {
        pull_bus_lost(p, &err);
    }
}

/* ---------------------------------------------------------- connections -- */

static int pull_bus_connect(struct pull *p, struct ess_err *err)
{
    struct ess_bus *b = ess_bus_new(p->env.amqp_url, err);

    if (b != NULL && ess_bus_confirm_select(b, err) == ESS_OK &&
        ess_bus_declare_exchanges(b, p->env.events_exchange, p->env.ops_exchange, err) == ESS_OK) {
        p->bus = b;
        ess_log_info("broker: connected, publisher confirms on");
        return ESS_OK;
    }
    ess_bus_free(b);
    return ESS_EBUS;
}

static int pull_store_connect(struct pull *p, struct ess_err *err)
{
    struct ess_store *s = ess_store_new(p->env.pg_url, err);

    if (s != NULL && ess_store_migrate(s, err) == ESS_OK) {
        p->store = s;
        ess_log_info("postgres: connected");
        return ESS_OK;
    }
    ess_store_free(s);
    return ESS_ESTORE;
}

/* Both connections up, or an error naming the one that is not. */
static int pull_connect(struct pull *p, struct ess_err *err)
{
    int rc = ESS_OK;

    if (p->bus == NULL) {
        rc = pull_bus_connect(p, err);
    }
    if (rc == ESS_OK && p->store == NULL) {
        rc = pull_store_connect(p, err);
    }
    return rc;
}

/* ---------------------------------------------------------------- HTTP --- */

/* Append n bytes to b, keeping it NUL-terminated; 0 past PULL_BODY_MAX or
 * out of memory. */
static int buf_add(struct pull_buf *b, const char *data, size_t n)
{
    size_t cap;
    char *nb;

    if (b->len + n + 1 > (size_t)PULL_BODY_MAX) {
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        cap = b->cap == 0 ? 256 : b->cap;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        nb = realloc(b->p, cap);
        if (nb == NULL) {
            return 0;
        }
        b->p = nb;
        b->cap = cap;
    }
    /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): b->p holds len + n + 1 now */
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 1;
}

static size_t pull_write(char *data, size_t size, size_t n, void *arg)
{
    /* a short count aborts the transfer: CURLE_WRITE_ERROR */
    return buf_add(arg, data, size * n) ? size * n : 0;
}

/* Request headers: the manifest's static ones, Accept, and a bearer token. */
/* The poll's easy handle: shared settings (ess_fetch), then a bounded time and b. */
static CURLcode pull_curl_setup(struct pull *p, const char *url, struct pull_buf *b)
{
    CURLcode rc = ess_fetch_setup(p->curl, p->m, url, "ess-pull/" ESS_VERSION);

    rc |= curl_easy_setopt(p->curl, CURLOPT_TIMEOUT_MS, (long)p->m->timeout_ms);
    rc |= curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, pull_write);
    rc |= curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, b);
    return rc;
}

/* GET url into b (NUL-terminated); ESS_EPARTNER unless the answer is 2xx. */
static int pull_get(struct pull *p, const char *url, struct pull_buf *b, struct ess_err *err)
{
    struct curl_slist *hdrs = ess_fetch_headers(
        p->m, p->m->source_format == ESS_SOURCE_CSV ? "text/csv" : "application/json");
    long status = 0;
    CURLcode cc;
    int rc = ESS_OK;

    b->len = 0;
    cc = CURLE_OUT_OF_MEMORY;
    if (hdrs != NULL) {
        cc = pull_curl_setup(p, url, b);
        cc |= curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, hdrs);
        cc = cc == CURLE_OK ? curl_easy_perform(p->curl) : CURLE_FAILED_INIT;
        curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
    }
    if (cc != CURLE_OK) {
        rc = ess_err_set(err, ESS_EPARTNER, "partner: GET %s: %s", url, curl_easy_strerror(cc));
    } else if (status < 200 || status > 299) {
        rc = ess_err_set(err, ESS_EPARTNER, "partner: GET %s: HTTP %ld", url, status);
    } else if (b->p == NULL && !buf_add(b, "", 0)) {
        rc = ess_err_set(err, ESS_ENOMEM, "out of memory");
    }
    curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return rc;
}

/* The URL of page `page` (0: no page parameter) of source_url at cursor. */
static char *pull_page_url(const struct pull *p, const char *cursor, long page)
{
    CURLU *u = curl_url();
    char q[PULL_CURSOR_MAX + 128];
    char *out = NULL;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, p->m->source_url, 0) != CURLUE_OK) {
        goto cleanup;
    }
    if (cursor[0] != '\0') {
        snprintf(q, sizeof(q), "%s=%s", p->m->cursor_param, cursor);
        curl_url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE);
    }
    if (page > 0 && p->m->page_param != NULL) {
        snprintf(q, sizeof(q), "%s=%ld", p->m->page_param, page);
        curl_url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE);
    }
    curl_url_get(u, CURLUPART_URL, &out, 0);
cleanup:
    curl_url_cleanup(u);
    return out;
}

/* A next link, resolved against the page it came from; NULL when none. */
static char *pull_next_url(const char *base, const char *link)
{
    CURLU *u = curl_url();
    char *out = NULL;

    if (u != NULL && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, link, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_URL, &out, 0);
    }
    curl_url_cleanup(u);
    return out;
}

/* Fetch and read one page; *got = its record count. */
static int pull_page(struct pull *p, const char *url, json_t *all, size_t *got, char **next,
                     struct ess_err *err)
{
    struct pull_buf b = {NULL, 0, 0};
    size_t before = json_array_size(all);
    int rc;

    *next = NULL;
    rc = pull_get(p, url, &b, err);
    if (rc == ESS_OK && p->m->source_format == ESS_SOURCE_CSV) {
        rc = ess_records_csv(b.p, b.len, all, err);
    } else if (rc == ESS_OK) {
        rc = ess_records_json(b.p, b.len, p->m->records_path, p->m->next_path, all, next, err);
    }
    *got = json_array_size(all) - before;
    free(b.p);
    return rc;
}

/* The URL after a page: its next link, else the next page number while
 * pages are full, else NULL (the last page). Frees url. */
static char *pull_advance(const struct pull *p, const struct pull_run *r, char *url,
                          const char *next, long page, size_t got, size_t first)
{
    char *out = NULL;

    if (next != NULL) {
        out = pull_next_url(url, next);
    } else if (p->m->page_param != NULL && got > 0 && got >= first) {
        out = pull_page_url(p, r->cursor, page + 1);
    }
    curl_free(url);
    return out;
}

/* Every page of this poll into r->records. */
static int pull_fetch(struct pull *p, struct pull_run *r, struct ess_err *err)
{
    char *url = pull_page_url(p, r->cursor, p->m->page_param != NULL ? 1 : 0);
    char *next = NULL;
    size_t got = 0, first = 0;
    long page;
    int rc = ESS_OK;

    if (url == NULL) {
        return ess_err_set(err, ESS_EPARTNER, "cannot build a URL from source_url");
    }
    for (page = 1; url != NULL && page <= PULL_PAGES_MAX; page++) {
        if (ess_worker_quit()) {
            rc = ess_err_set(err, ESS_EPARTNER, "stopping: poll abandoned");
            break;
        }
        rc = pull_page(p, url, r->records, &got, &next, err);
        if (rc != ESS_OK) {
            break;
        }
        first = page == 1 ? got : first;
        url = pull_advance(p, r, url, next, page, got, first);
        free(next);
        next = NULL;
    }
    free(next);
    curl_free(url);
    return rc;
}

/* ------------------------------------------------------------ records ---- */

/* A scalar as text (keys, cursors); 0 when it is not a string or number. */
static int pull_scalar_text(json_t *v, char *buf, size_t len)
{
    return !json_is_boolean(v) && ess_records_scalar_text(v, buf, len);
}

/* Cursor order: numerically when both are numbers, else as text (ISO 8601
 * timestamps in one format sort as text). */
static int pull_cursor_cmp(const char *a, const char *b)
{
    char *ea = NULL, *eb = NULL;
    double da, db;

    errno = 0;
    da = strtod(a, &ea);
    db = strtod(b, &eb);
    if (a[0] != '\0' && b[0] != '\0' && *ea == '\0' && *eb == '\0' && errno == 0) {
        return da < db ? -1 : da > db;
    }
    return strcmp(a, b);
}

/* SHA-256 of the record's canonical JSON, as hex. */
static int pull_hash(json_t *rec, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    int ok;
    unsigned i;

    if (text == NULL) {
        return 0;
    }
    ok = EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
    for (i = 0; ok && i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    free(text);
    return ok;
}

/* Every record's key (as text) in one array, for one hash lookup. */
static json_t *pull_keys(const struct pull *p, json_t *records)
{
    json_t *keys = json_array();
    char key[PULL_KEY_MAX];
    size_t i;

    for (i = 0; keys != NULL && i < json_array_size(records); i++) {
        if (json_is_object(json_array_get(records, i)) &&
            pull_scalar_text(ess_event_path_get(json_array_get(records, i), p->m->key), key,
                             sizeof(key))) {
            json_array_append_new(keys, json_string(key));
        }
    }
    return keys;
}

/* Raise r->cursor to the record's updated_at_field when it is larger. */
static void pull_cursor_raise(const struct pull *p, struct pull_run *r, json_t *rec)
{
    char v[PULL_CURSOR_MAX];

    if (pull_scalar_text(ess_event_path_get(rec, p->m->updated_at_field), v, sizeof(v)) &&
        pull_cursor_cmp(v, r->cursor) > 0) {
        snprintf(r->cursor, sizeof(r->cursor), "%s", v);
    }
}

/* Publish one changed (already mapped back) record, confirmed. */
static int pull_publish(struct pull *p, json_t *rec, const char *key, const char *hash,
                        struct ess_err *err)
{
    char mid[PULL_KEY_MAX + 128];
    char *text = json_dumps(rec, JSON_COMPACT);
    int rc;

    if (text == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "out of memory");
    }
    snprintf(mid, sizeof(mid), "%s:%s:%.16s", p->m->id, key, hash);
    rc = ess_bus_publish_confirmed_id(p->bus, p->env.events_exchange, p->m->publish_topic, mid,
                                      text, strlen(text), p->m->id, p->m->timeout_ms, err);
    free(text);
    return rc;
}

/* Replace every record by its inverse-mapped version (HMS names and codes);
 * one that is not an object or cannot be mapped becomes null, counted
 * failed and logged: waiting cannot make it publishable, so it does not hold
 * the cursor. */
static void pull_map_all(struct pull *p, json_t *records)
{
    struct ess_err err;
    json_t *out;
    size_t i;

    for (i = 0; i < json_array_size(records); i++) {
        out = NULL;
        ess_err_clear(&err);
        if (ess_shape_inverse(p->m, json_array_get(records, i), &out, &err) != ESS_OK) {
            p->failed++;
            ess_log_warn("record %zu cannot be mapped back: %s", i, err.msg);
        }
        json_array_set_new(records, i, out != NULL ? out : json_null());
    }
}

/* A changed record under conflict rules: decided against HMS's last change,
 * the resolved version published; the hash stays the partner's own record's,
 * so a version HMS won is not decided (and announced) again next poll. */
static int pull_one_decided(struct pull *p, struct pull_run *r, json_t *rec, const char *key,
                            const char *hash, struct ess_err *err)
{
    json_t *resolved = NULL, *entry = NULL;
    int rc;

    rc = ess_twoway_decide(p->m, r->state, key, rec, ess_worker_wall_ms(), &resolved, &entry, err);
    if (rc == ESS_OK) {
        rc = pull_publish(p, resolved, key, hash, err);
    }
    if (rc == ESS_OK) {
        p->published++;
        json_object_set_new(r->hashes, key, json_string(hash));
        json_array_append(r->entries, entry);
    }
    json_decref(resolved);
    json_decref(entry);
    return rc;
}

/* One mapped record: unchanged, or published. A record without its key is
 * counted failed and logged (it does not hold the cursor). Only a broker
 * failure stops the poll. */
static int pull_one(struct pull *p, struct pull_run *r, json_t *rec, json_t *stored,
                    struct ess_err *err)
{
    char key[PULL_KEY_MAX];
    char hash[65];
    const char *was;
    int rc;

    if (json_is_null(rec)) {
        return ESS_OK; /* counted by pull_map_all */
    }
    if (!pull_scalar_text(ess_event_path_get(rec, p->m->key), key, sizeof(key)) ||
        !pull_hash(rec, hash)) {
        p->failed++;
        ess_log_warn("record without key field '%s': not published", p->m->key);
        return ESS_OK;
    }
    pull_cursor_raise(p, r, rec);
    was = json_string_value(json_object_get(r->hashes, key));
    if (was == NULL) {
        was = json_string_value(json_object_get(stored, key));
    }
    if (was != NULL && strcmp(was, hash) == 0) {
        p->unchanged++;
        return ESS_OK;
    }
    if (p->m->conflict.on) {
        return pull_one_decided(p, r, rec, key, hash, err);
    }
    rc = pull_publish(p, rec, key, hash, err);
    if (rc == ESS_OK) {
        p->published++;
        json_object_set_new(r->hashes, key, json_string(hash));
    }
    return rc;
}

/* ---------------------------------------------------------------- poll --- */

/* Conflict decisions whose publish was confirmed: partner versions and audit
 * rows first (a failure keeps the hashes uncommitted, so the next poll
 * decides those records again), then ess.conflict.<id> on hms.ops. */
static void pull_conflicts_commit(struct pull *p, struct pull_run *r, struct ess_err *err, int *rc)
{
    size_t n = 0;
    int crc;

    if (json_array_size(r->entries) == 0 || p->store == NULL) {
        return;
    }
    crc = ess_twoway_commit(p->m, p->store, p->bus, p->env.ops_exchange, r->entries, &n, err);
    p->conflicts += n;
    if (crc == ESS_EBUS) {
        ess_log_warn("conflict announcement not published: %s", err->msg);
        return; /* audited; only the announcement is lost */
    }
    if (crc != ESS_OK && *rc == ESS_OK) {
        *rc = crc;
    }
    if (crc != ESS_OK) {
        json_object_clear(r->hashes);
    }
}

/* Decide and publish every record; then commit hashes (+ cursor when all
 * went through). Hashes of confirmed changes are committed even after a
 * failure, so a retry does not publish them again. */
static int pull_process(struct pull *p, struct pull_run *r, struct ess_err *err)
{
    struct ess_err cerr;
    json_t *keys;
    json_t *stored = NULL;
    size_t i;
    int rc;

    pull_map_all(p, r->records);
    keys = pull_keys(p, r->records);
    rc = keys != NULL ? ess_store_pull_hashes_get(p->store, p->m->id, keys, &stored, err)
                      : ess_err_set(err, ESS_ENOMEM, "out of memory");
    if (rc == ESS_OK && p->m->conflict.on) {
        rc = ess_twoway_load(p->m, p->store, keys, &r->state, err);
    }
    for (i = 0; rc == ESS_OK && i < json_array_size(r->records); i++) {
        rc = pull_one(p, r, json_array_get(r->records, i), stored, err);
    }
    ess_err_clear(&cerr);
    pull_conflicts_commit(p, r, rc == ESS_OK ? err : &cerr, &rc);
    if (rc == ESS_OK) {
        rc = ess_store_pull_commit(p->store, p->m->id, r->cursor, r->hashes, err);
    } else if (json_object_size(r->hashes) > 0 && p->store != NULL) {
        ess_store_pull_commit(p->store, p->m->id, NULL, r->hashes, &cerr);
    }
    json_decref(keys);
    json_decref(stored);
    return rc;
}

static int pull_poll(struct pull *p, struct ess_err *err)
{
    struct pull_run r;
    char was[PULL_CURSOR_MAX];
    int rc;

    memset(&r, 0, sizeof(r));
    r.records = json_array();
    r.hashes = json_object();
    r.entries = json_array();
    if (r.records == NULL || r.hashes == NULL || r.entries == NULL) {
        rc = ess_err_set(err, ESS_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = ess_store_pull_cursor_get(p->store, p->m->id, r.cursor, sizeof(r.cursor), err);
    if (rc == ESS_OK) {
        snprintf(was, sizeof(was), "%s", r.cursor);
        rc = pull_fetch(p, &r, err);
    }
    if (rc == ESS_OK) {
        p->polled += json_array_size(r.records);
        rc = pull_process(p, &r, err);
    }
    if (rc == ESS_OK && strcmp(was, r.cursor) != 0) {
        ess_log_info("poll: %zu record(s), cursor %s -> %s", json_array_size(r.records), was,
                     r.cursor);
    }
cleanup:
    json_decref(r.records);
    json_decref(r.hashes);
    json_decref(r.state);
    json_decref(r.entries);
    return rc;
}

/* A failed poll: drop the broken connection, log once per streak, back off. */
static void pull_failed(struct pull *p, int rc, const struct ess_err *err)
{
    if (rc == ESS_EBUS && p->bus != NULL) {
        ess_bus_free(p->bus);
        p->bus = NULL;
    }
    if (rc == ESS_ESTORE && p->store != NULL) {
        ess_store_free(p->store);
        p->store = NULL;
    }
    p->failed++;
    snprintf(p->last_error, sizeof(p->last_error), "%s", err->msg);
    if (!p->failing) {
        ess_log_warn("%s; retrying with back-off, the cursor stays", err->msg);
        p->failing = 1;
        pull_heartbeat(p, ess_worker_mono_ms(), NULL);
    }
    ess_worker_retry_failed(&p->retry, ess_worker_mono_ms());
    p->next_poll_ms = p->retry.next_ms;
}

static void pull_cycle(struct pull *p, long long now)
{
    struct ess_err err;
    int rc;

    ess_err_clear(&err);
    rc = pull_connect(p, &err);
    if (rc == ESS_OK) {
        rc = pull_poll(p, &err);
    }
    if (rc != ESS_OK) {
        pull_failed(p, rc, &err);
        return;
    }
    if (p->failing) {
        ess_log_info("recovered: poll complete");
        p->failing = 0;
        p->last_error[0] = '\0';
        pull_heartbeat(p, now, NULL);
    }
    ess_worker_retry_ok(&p->retry);
    p->next_poll_ms = ess_worker_mono_ms() + (long long)p->m->poll_sec * 1000;
}

/* ---------------------------------------------------------------- loop --- */

/* Wait until the next timer (at most PULL_LOOP_MS), reading what the broker
 * sends meanwhile so a closed connection is noticed between polls. */
static void pull_wait(struct pull *p)
{
    struct pollfd pfd = {p->bus != NULL ? ess_bus_fd(p->bus) : -1, POLLIN, 0};
    struct ess_bus_msg msg;
    struct ess_err err;
    long long now = ess_worker_mono_ms();
    long long until = p->next_poll_ms < p->next_hb_ms ? p->next_poll_ms : p->next_hb_ms;
    long long ms = until - now;

    ms = ms < 0 ? 0 : ms > PULL_LOOP_MS ? PULL_LOOP_MS : ms;
    if (poll(&pfd, 1, (int)ms) > 0 && p->bus != NULL) {
        ess_err_clear(&err);
        if (ess_bus_next(p->bus, 0, &msg, &err) < 0) {
            pull_bus_lost(p, &err);
        }
    }
}

/* SIGHUP: a valid manifest with the same id replaces the current one. */
static void pull_reload(struct pull *p)
{
    struct ess_manifest *m = NULL;

    if (ess_manifest_load_reported(p->path, &m, NULL) != ESS_OK) {
        ess_log_warn("SIGHUP: %s is not valid; keeping the running manifest", p->path);
        return;
    }
    if (strcmp(m->kind, "pull") != 0 || strcmp(m->id, p->m->id) != 0 || m->source_url == NULL ||
        m->publish_topic == NULL) {
        ess_log_warn("SIGHUP: %s changes id or kind, or lacks source_url/publish_topic; "
                     "keeping the running manifest",
                     p->path);
        ess_manifest_free(m);
        return;
    }
    ess_manifest_free(p->m);
    p->m = m;
    p->next_poll_ms = ess_worker_mono_ms();
    ess_log_info("SIGHUP: manifest reloaded (version %.12s)", m->sha256);
}

static int pull_run(struct pull *p)
{
    struct ess_err err;
    long long now;

    ess_err_clear(&err);
    if (pull_connect(p, &err) != ESS_OK) {
        snprintf(p->last_error, sizeof(p->last_error), "%s", err.msg);
        ess_log_warn("%s; retrying with back-off", err.msg);
    }
    pull_lifecycle(p, "started", p->m->source_url);
    while (!ess_worker_quit()) {
        if (ess_worker_take_reload()) {
            pull_reload(p);
        }
        now = ess_worker_mono_ms();
        if (now >= p->next_poll_ms) {
            pull_cycle(p, now);
        }
        now = ess_worker_mono_ms();
        if (now >= p->next_hb_ms) {
            pull_heartbeat(p, now, NULL);
            p->next_hb_ms = now + (long long)p->m->heartbeat_sec * 1000;
        }
        pull_wait(p);
    }
    ess_log_info("SIGTERM: stopping");
    pull_lifecycle(p, "stopping", "SIGTERM");
    pull_heartbeat(p, ess_worker_mono_ms(), "stopped");
    pull_lifecycle(p, "stopped", "");
    return EX_OK;
}

/* ---------------------------------------------------------------- main --- */

/* What the manifest table cannot say: kind, and the keys ess-pull needs. */
/* What the key table cannot say for a poller. */
static int check_manifest(const char *path, const struct ess_manifest *m)
{
    if (m->source_url == NULL ||
        (strncmp(m->source_url, "http://", 7) != 0 && strncmp(m->source_url, "https://", 8) != 0)) {
        ess_log_error("%s: source_url: ess-pull needs an http:// or https:// URL", path);
        return EX_CONFIG;
    }
    if (m->publish_topic == NULL) {
        ess_log_error("%s: publish_topic: ess-pull needs it", path);
        return EX_CONFIG;
    }
    if (m->auth.type == ESS_AUTH_HMAC) {
        ess_log_error("%s: auth.type: ess-pull sends none, basic or bearer", path);
        return EX_CONFIG;
    }
    return EX_OK;
}

static struct pull *pull_new(struct ess_manifest *m, const char *path)
{
    struct pull *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return NULL;
    }
    p->curl = curl_easy_init();
    if (p->curl == NULL) {
        free(p);
        return NULL;
    }
    p->m = m;
    p->path = path;
    ess_worker_env_load(&p->env);
    ess_worker_retry_init(&p->retry);
    ess_stats_init(&p->stats);
    p->started_ms = ess_worker_mono_ms();
    p->next_hb_ms = p->started_ms;
    p->next_poll_ms = p->started_ms;
    return p;
}

int main(int argc, char **argv)
{
    struct ess_manifest *m = NULL;
    struct pull *p = NULL;
    int rc;

    rc = ess_worker_start(argc, argv, "ess-pull", "pull",
                          "Polls a partner's source_url with a since-cursor kept in Postgres and "
                          "publishes each changed record to hms.events with publisher confirms.",
                          check_manifest, &m);
    if (rc >= 0) {
        return rc;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    p = pull_new(m, m->path);
    if (p == NULL) {
        ess_manifest_free(m);
        return EX_OSERR;
    }
    ess_worker_signals_install();
    rc = pull_run(p);
    ess_bus_free(p->bus);
    ess_store_free(p->store);
    curl_easy_cleanup(p->curl);
    ess_manifest_free(p->m);
    free(p);
    curl_global_cleanup();
    return rc;
}
