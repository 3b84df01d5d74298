/*
 * ess-reconcile -- one-shot comparison of both sides of a push connector:
 * the partner's full listing (`reconcile_url`) against the HMS side (the last
 * state ESS knows per key in Postgres, or `hms_snapshot_url`). It reports keys
 * missing on either side and fields that differ -- a JSON report file and a
 * human summary on stdout, published as ess.reconcile.<id> on hms.ops -- and
 * with --repair queues the HMS version of every key the partner lacks or has
 * differently on the connector's queue ess.<id>, so the running ess-push
 * delivers it like any change (journal, retries, idempotency key).
 *
 * DESIGN
 * - Linear time, bounded memory: the HMS side goes into one open-addressing
 *   hash table (per key the record as the partner should have it: shaped by
 *   the manifest, canonical JSON), then the partner listing streams past it
 *   (ess_jsonstream: one record in memory at a time; with records_path, one
 *   page at a time, following next_path links). Keys never seen on the partner
 *   are missing there. Memory is the HMS side's shaped text plus the table
 *   (about 200 bytes a record); the partner side costs nothing per record.
 * - Compared in the partner's terms: HMS's record shaped like a delivery
 *   (fields, drop, transforms, values, rename), each of its fields against the
 *   partner's field of that name; fields only the partner has (its own
 *   timestamps) are not differences; 40 and "40" are the same value. The
 *   partner's key is read by mapping its record back (ess_shape_inverse).
 * - Repairs need HMS's original record, not the shaped one: a second pass over
 *   the HMS side publishes the flagged keys (publisher confirms, mandatory: a
 *   missing queue means the connector is not deployed, exit 69).
 * - The report is written to NAME.part and renamed when complete.
 * - SIGTERM/SIGINT (a CronJob's deadline): the run stops at the next record
 *   or chunk read, removes its NAME.part, publishes nothing and exits 75.
 * Exit: 0 done (differences or not), 64 usage, 65 a listing that is not JSON,
 * 69 broker, Postgres or a listing unreachable, 75 interrupted, 78 config.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ess_bus.h"
#include "ess_err.h"
#include "ess_event.h"
#include "ess_fetch.h"
#include "ess_jsonstream.h"
#include "ess_log.h"
#include "ess_manifest.h"
#include "ess_records.h"
#include "ess_shape.h"
#include "ess_store.h"
#include "ess_twoway.h"
#include "ess_version.h"
#include "ess_worker.h"

#define REC_PAGE_MAX (64L * 1024 * 1024) /* one page with records_path */
#define REC_PAGES_MAX 100000
#define REC_KEY_MAX 512
#define REC_SAMPLE 20 /* differences printed on stdout */

/* ------------------------------------------------------------ the table -- */

struct rec_entry {
    char *kv;           /* "key\0shaped JSON\0", one allocation; NULL: empty slot */
    unsigned char seen; /* the partner listed the key */
    unsigned char repair;
};

struct rec_table {
    struct rec_entry *v;
    size_t cap; /* a power of two */
    size_t n;
};

static uint64_t rec_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

static struct rec_entry *table_find(struct rec_table *t, const char *key)
{
    size_t i;

    if (t->cap == 0) {
        return NULL;
    }
    for (i = rec_hash(key) & (t->cap - 1); t->v[i].kv != NULL; i = (i + 1) & (t->cap - 1)) {
        if (strcmp(t->v[i].kv, key) == 0) {
            return &t->v[i];
        }
    }
    return &t->v[i]; /* the empty slot where key belongs */
}

static int table_grow(struct rec_table *t)
{
    struct rec_table nt = {NULL, t->cap == 0 ? 1024 : t->cap * 2, t->n};
    struct rec_entry *slot;
    size_t i;

    nt.v = calloc(nt.cap, sizeof(*nt.v));
    if (nt.v == NULL) {
        return 0;
    }
    for (i = 0; i < t->cap; i++) {
        if (t->v[i].kv != NULL) {
            slot = table_find(&nt, t->v[i].kv);
            *slot = t->v[i];
        }
    }
    free(t->v);
    *t = nt;
    return 1;
}

/* Insert or replace key's shaped text. 0 when out of memory. */
static int table_put(struct rec_table *t, const char *key, const char *shaped)
{
    size_t kl = strlen(key), sl = strlen(shaped);
    struct rec_entry *slot;
    char *kv;

    if ((t->n + 1) * 4 > t->cap * 3 && !table_grow(t)) {
        return 0;
    }
    kv = malloc(kl + sl + 2);
    if (kv == NULL) {
        return 0;
    }
    memcpy(kv, key, kl + 1);
    memcpy(kv + kl + 1, shaped, sl + 1);
    slot = table_find(t, key);
    if (slot->kv == NULL) {
        t->n++;
    }
    free(slot->kv);
    slot->kv = kv;
    return 1;
}

static const char *entry_shaped(const struct rec_entry *e)
{
    return e->kv + strlen(e->kv) + 1;
}

static void table_fini(struct rec_table *t)
{
    size_t i;

    for (i = 0; i < t->cap; i++) {
        free(t->v[i].kv);
    }
    free(t->v);
}

/* ------------------------------------------------------------ the run ---- */

struct counts {
    unsigned long long hms, hms_bad, partner, partner_bad, matched, mismatched;
    unsigned long long missing_on_partner, missing_in_hms, repaired;
};

struct rec {
    struct ess_manifest *m;
    struct ess_worker_env env;
    struct ess_store *store;
    struct ess_bus *bus;
    CURL *curl;
    struct rec_table t;
    struct counts c;
    FILE *report;
    char report_path[4096];
    char part_path[4200];
    size_t ndiff;
    json_t *fields; /* field -> mismatches */
    json_t *sample; /* the first REC_SAMPLE differences */
    int repair;
    char run_id[40];
    char started[40];
    long long started_ms;
    struct ess_err err; /* first failure inside a callback */
};

static void iso_now(char *buf, size_t len, int compact)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, compact ? "%Y%m%dT%H%M%SZ" : "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One difference: into the report (streamed), the counts and the sample. */
static int rec_diff(struct rec *r, json_t *d)
{
    if (r->ndiff > 0 && fputs(",\n", r->report) == EOF) {
        return ess_err_set(&r->err, ESS_EIO, "report %s: %s", r->part_path, strerror(errno));
    }
    if (json_dumpf(d, r->report, JSON_COMPACT) != 0) {
        return ess_err_set(&r->err, ESS_EIO, "report %s: %s", r->part_path, strerror(errno));
    }
    r->ndiff++;
    if (json_array_size(r->sample) < REC_SAMPLE) {
        json_array_append(r->sample, d);
    }
    return ESS_OK;
}

/* ------------------------------------------------------------ HMS side --- */

/* One HMS record (its data) shaped like a delivery into the table. */
static int hms_add(struct rec *r, const char *key, json_t *data)
{
    struct ess_err err;
    json_t *shaped = NULL;
    char *text = NULL;
    int rc = ESS_OK;

    ess_err_clear(&err);
    if (ess_shape_apply(r->m, data, &shaped, &err) != ESS_OK) {
        r->c.hms_bad++;
        ess_log_warn("HMS record %s cannot be shaped: %s (not compared)", key, err.msg);
        return ESS_OK;
    }
    text = json_dumps(shaped, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL || !table_put(&r->t, key, text)) {
        rc = ess_err_set(&r->err, ESS_ENOMEM, "out of memory after %zu HMS records", r->t.n);
    }
    r->c.hms++;
    free(text);
    json_decref(shaped);
    return rc;
}

static int hms_from_store(void *arg, const char *key, const char *body)
{
    struct rec *r = arg;
    json_t *data;
    int rc = ESS_OK;

    if (ess_worker_quit()) {
        return ess_err_set(&r->err, ESS_EIO, "interrupted by a signal: run abandoned");
    }
    data = json_loads(body, 0, NULL);
    if (json_is_object(data)) {
        rc = hms_add(r, key, data);
    } else {
        r->c.hms_bad++;
    }
    json_decref(data);
    return rc;
}

/* --------------------------------------------------------- partner side -- */

static int value_same(json_t *a, json_t *b)
{
    char ta[256], tb[256];

    if (json_equal(a, b)) {
        return 1;
    }
    return ess_records_scalar_text(a, ta, sizeof(ta)) &&
           ess_records_scalar_text(b, tb, sizeof(tb)) && strcmp(ta, tb) == 0;
}

/* The fields where the partner's record differs from HMS's shaped one, as
 * [{field, hms, partner}] (partner null when it lacks the field). */
static json_t *field_diffs(struct rec *r, json_t *hms, json_t *partner)
{
    json_t *out = json_array();
    const char *f;
    json_t *hv, *pv;

    json_object_foreach(hms, f, hv)
    {
        pv = json_object_get(partner, f);
        if (pv != NULL && value_same(hv, pv)) {
            continue;
        }
        json_array_append_new(out, json_pack("{s:s, s:O, s:O}", "field", f, "hms", hv, "partner",
                                             pv != NULL ? pv : json_null()));
        json_object_set_new(r->fields, f,
                            json_integer(json_integer_value(json_object_get(r->fields, f)) + 1));
    }
    return out;
}

/* Compare one partner record of key with HMS's version. */
static int partner_compare(struct rec *r, const char *key, json_t *rec, struct rec_entry *e)
{
    json_t *hms = json_loads(entry_shaped(e), 0, NULL);
    json_t *diffs = hms != NULL ? field_diffs(r, hms, rec) : NULL;
    json_t *d;
    int rc = ESS_OK;

    if (diffs == NULL) {
        rc = ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
    } else if (json_array_size(diffs) == 0) {
        r->c.matched++;
    } else {
        r->c.mismatched++;
        e->repair = (unsigned char)r->repair;
        d = json_pack("{s:s, s:s, s:O}", "key", key, "kind", "mismatch", "fields", diffs);
        rc = d != NULL ? rec_diff(r, d) : ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
        json_decref(d);
    }
    json_decref(diffs);
    json_decref(hms);
    return rc;
}

/* One partner record: its key found by mapping it back; then compared, or
 * reported missing in HMS. */
static int partner_record(struct rec *r, json_t *rec)
{
    struct ess_err err;
    json_t *back = NULL, *d;
    char key[REC_KEY_MAX];
    struct rec_entry *e;
    int rc = ESS_OK;

    r->c.partner++;
    ess_err_clear(&err);
    if (!json_is_object(rec) || ess_shape_inverse(r->m, rec, &back, &err) != ESS_OK ||
        !ess_twoway_key_text(back, r->m->key, key, sizeof(key))) {
        r->c.partner_bad++;
        json_decref(back);
        return ESS_OK;
    }
    e = table_find(&r->t, key);
    if (e == NULL || e->kv == NULL) {
        r->c.missing_in_hms++;
        d = json_pack("{s:s, s:s}", "key", key, "kind", "missing_in_hms");
        rc = d != NULL ? rec_diff(r, d) : ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
        json_decref(d);
    } else if (!e->seen) {
        e->seen = 1;
        rc = partner_compare(r, key, rec, e);
    }
    json_decref(back);
    return rc;
}

static int partner_element(void *arg, const char *text, size_t len, size_t index)
{
    struct rec *r = arg;
    json_error_t jerr;
    json_t *rec = json_loadb(text, len, 0, &jerr);
    int rc;

    if (rec == NULL) {
        return ess_err_set(&r->err, ESS_EPARSE, "partner listing: record %zu is not JSON: %s",
                           index, jerr.text);
    }
    rc = partner_record(r, rec);
    json_decref(rec);
    return rc;
}

/* ---------------------------------------------------------------- HTTP --- */

struct fetch {
    struct rec *r;
    struct ess_jsonstream *js; /* streaming a bare array */
    char *buf;                 /* or collecting one page */
    size_t len, cap;
    int (*element)(void *arg, const char *text, size_t len, size_t index);
    int failed;
};

static size_t fetch_write(char *data, size_t size, size_t n, void *arg)
{
    struct fetch *f = arg;
    size_t len = size * n, cap;
    char *nb;

    if (ess_worker_quit()) {
        ess_err_set(&f->r->err, ESS_EIO, "interrupted by a signal: run abandoned");
        f->failed = 1;
        return 0;
    }
    if (f->js != NULL) {
        if (ess_jsonstream_feed(f->js, data, len, &f->r->err) != ESS_OK) {
            f->failed = 1;
            return 0;
        }
        return len;
    }
    if (f->len + len + 1 > (size_t)REC_PAGE_MAX) {
        ess_err_set(&f->r->err, ESS_EPARSE, "a page of the listing is larger than %ld bytes",
                    REC_PAGE_MAX);
        f->failed = 1;
        return 0;
    }
    if (f->len + len + 1 > f->cap) {
        for (cap = f->cap ? f->cap : 65536; cap < f->len + len + 1; cap *= 2) {
        }
        nb = realloc(f->buf, cap);
        if (nb == NULL) {
            f->failed = 1;
            return 0;
        }
        f->buf = nb;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, data, len);
    f->len += len;
    f->buf[f->len] = '\0';
    return len;
}

/* GET url through f (streamed or collected); ESS_EPARTNER unless 2xx. */
static int rec_get(struct rec *r, const char *url, struct fetch *f)
{
    const struct ess_manifest *m = r->m;
    struct curl_slist *hdrs = ess_fetch_headers(m, "application/json");
    long status = 0;
    CURLcode cc;
    int rc = ESS_OK;

    cc = CURLE_OUT_OF_MEMORY;
    if (hdrs != NULL) {
        /* Bounded connect; a long listing is fine as long as it keeps flowing. */
        cc = ess_fetch_setup(r->curl, m, url, "ess-reconcile/" ESS_VERSION);
        cc |= curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)m->timeout_ms);
        cc |= curl_easy_setopt(r->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        cc |= curl_easy_setopt(r->curl, CURLOPT_LOW_SPEED_TIME, (long)(m->timeout_ms / 1000 + 1));
        cc |= curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, fetch_write);
        cc |= curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, f);
        cc |= curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, hdrs);
        cc = cc == CURLE_OK ? curl_easy_perform(r->curl) : CURLE_FAILED_INIT;
    }
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (f->failed) {
        rc = r->err.code != 0 ? r->err.code : ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
    } else if (cc != CURLE_OK) {
        rc = ess_err_set(&r->err, ESS_EPARTNER, "GET %s: %s", url, curl_easy_strerror(cc));
    } else if (status < 200 || status > 299) {
        rc = ess_err_set(&r->err, ESS_EPARTNER, "GET %s: HTTP %ld", url, status);
    }
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    return rc;
}

/* A bare JSON array, streamed: every element to element(). */
static int listing_stream(struct rec *r, const char *url, ess_jsonstream_fn element)
{
    struct fetch f = {r, NULL, NULL, 0, 0, element, 0};
    int rc;

    f.js = ess_jsonstream_new(element, r);
    if (f.js == NULL) {
        return ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
    }
    rc = rec_get(r, url, &f);
    if (rc == ESS_OK) {
        rc = ess_jsonstream_finish(f.js, &r->err);
        if (rc != ESS_OK) {
            snprintf(r->err.msg, sizeof(r->err.msg), "GET %s: %.900s", url,
                     "not a complete JSON array");
        }
    }
    ess_jsonstream_free(f.js);
    return rc;
}

/* One page in memory: its records (at records_path) to fn, its next link. */
static int listing_page(struct rec *r, const char *url, struct fetch *f, char **next)
{
    json_error_t jerr;
    json_t *doc, *recs, *link;
    size_t i;
    int rc = ESS_OK;

    *next = NULL;
    f->len = 0;
    rc = rec_get(r, url, f);
    if (rc != ESS_OK) {
        return rc;
    }
    doc = json_loadb(f->buf != NULL ? f->buf : "", f->len, 0, &jerr);
    recs = doc != NULL ? ess_event_path_get(doc, r->m->records_path) : NULL;
    if (!json_is_array(recs)) {
        json_decref(doc);
        return ess_err_set(&r->err, ESS_EPARSE, "GET %s: no array at records_path '%s'%s%s", url,
                           r->m->records_path, doc == NULL ? ": " : "",
                           doc == NULL ? jerr.text : "");
    }
    for (i = 0; rc == ESS_OK && i < json_array_size(recs); i++) {
        rc = partner_record(r, json_array_get(recs, i));
    }
    link = r->m->next_path != NULL ? ess_event_path_get(doc, r->m->next_path) : NULL;
    if (rc == ESS_OK && json_is_string(link) && json_string_length(link) > 0) {
        CURLU *u = curl_url();

        if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_URL, json_string_value(link), 0) == CURLUE_OK) {
            curl_url_get(u, CURLUPART_URL, next, 0);
        }
        curl_url_cleanup(u);
    }
    json_decref(doc);
    return rc;
}

/* The partner listing: streamed, or paged when records_path is set. */
static int partner_fetch(struct rec *r)
{
    struct fetch f = {r, NULL, NULL, 0, 0, NULL, 0};
    char *url, *next = NULL;
    long page;
    int rc = ESS_OK;

    if (r->m->records_path == NULL) {
        return listing_stream(r, r->m->reconcile_url, partner_element);
    }
    url = strdup(r->m->reconcile_url);
    for (page = 0; rc == ESS_OK && url != NULL && page < REC_PAGES_MAX; page++) {
        rc = listing_page(r, url, &f, &next);
        free(url);
        url = next != NULL ? strdup(next) : NULL;
        curl_free(next);
        next = NULL;
    }
    free(url);
    free(f.buf);
    return rc;
}

/* hms_snapshot_url: a JSON array of HMS records, streamed. */
static int snapshot_element(void *arg, const char *text, size_t len, size_t index)
{
    struct rec *r = arg;
    json_t *data = json_loadb(text, len, 0, NULL);
    char key[REC_KEY_MAX];
    int rc = ESS_OK;

    (void)index;
    if (json_is_object(data) && ess_twoway_key_text(data, r->m->key, key, sizeof(key))) {
        rc = hms_add(r, key, data);
    } else {
        r->c.hms_bad++;
    }
    json_decref(data);
    return rc;
}

/* ------------------------------------------------------------- repairs --- */

/* Queue HMS's version of key on ess.<id>: the push worker journals and
 * delivers it like any change. */
static int repair_one(struct rec *r, const char *key, const char *body, size_t len)
{
    struct rec_entry *e = table_find(&r->t, key);
    char queue[128], mid[REC_KEY_MAX + 64];
    int rc;

    if (e == NULL || e->kv == NULL || !e->repair) {
        return ESS_OK;
    }
    snprintf(queue, sizeof(queue), "ess.%s", r->m->id);
    snprintf(mid, sizeof(mid), "reconcile:%s:%s", r->run_id, key);
    rc = ess_bus_publish_confirmed_id(r->bus, "", queue, mid, body, len, "ess-reconcile",
                                      r->m->timeout_ms, &r->err);
    if (rc == ESS_ENOTFOUND) {
        return ess_err_set(&r->err, ESS_EBUS,
                           "repair: queue %s does not exist (deploy the push "
                           "connector first)",
                           queue);
    }
    if (rc == ESS_OK) {
        e->repair = 0;
        r->c.repaired++;
    }
    return rc;
}

static int repair_from_store(void *arg, const char *key, const char *body)
{
    struct rec *r = arg;

    if (ess_worker_quit()) {
        return ess_err_set(&r->err, ESS_EIO, "interrupted by a signal: run abandoned");
    }
    return repair_one(r, key, body, strlen(body));
}

static int repair_from_snapshot(void *arg, const char *text, size_t len, size_t index)
{
    struct rec *r = arg;
    json_t *data = json_loadb(text, len, 0, NULL);
    char key[REC_KEY_MAX];
    int rc = ESS_OK;

    (void)index;
    if (json_is_object(data) && ess_twoway_key_text(data, r->m->key, key, sizeof(key))) {
        rc = repair_one(r, key, text, len);
    }
    json_decref(data);
    return rc;
}

/* ------------------------------------------------------------- report ---- */

static int report_open(struct rec *r)
{
    json_t *head;
    char *text;
    size_t len;

    snprintf(r->part_path, sizeof(r->part_path), "%s.part", r->report_path);
    r->report = fopen(r->part_path, "w");
    if (r->report == NULL) {
        return ess_err_set(&r->err, ESS_EIO, "report %s: %s", r->part_path, strerror(errno));
    }
    head = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "connector", r->m->id, "run_id", r->run_id,
                     "started_at", r->started, "partner_url", r->m->reconcile_url, "hms_source",
                     r->m->hms_snapshot_url != NULL ? r->m->hms_snapshot_url : "postgres", "repair",
                     r->repair);
    text = head != NULL ? json_dumps(head, JSON_COMPACT) : NULL;
    json_decref(head);
    if (text == NULL) {
        return ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
    }
    len = strlen(text);
    text[len - 1] = '\0'; /* drop '}': the differences follow */
    fprintf(r->report, "%s,\"differences\":[\n", text);
    free(text);
    return ESS_OK;
}

static long rec_peak_rss_kb(void)
{
    struct rusage ru;

    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

static json_t *summary_json(struct rec *r)
{
    char done[40];

    iso_now(done, sizeof(done), 0);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:O, s:s, s:I}",
        "connector", r->m->id, "event", "reconcile", "run_id", r->run_id, "started_at", r->started,
        "finished_at", done, "duration_ms", (json_int_t)(ess_worker_mono_ms() - r->started_ms),
        "hms_records", (json_int_t)r->c.hms, "hms_unusable", (json_int_t)r->c.hms_bad,
        "partner_records", (json_int_t)r->c.partner, "partner_unusable",
        (json_int_t)r->c.partner_bad, "matched", (json_int_t)r->c.matched, "mismatched",
        (json_int_t)r->c.mismatched, "missing_on_partner", (json_int_t)r->c.missing_on_partner,
        "missing_in_hms", (json_int_t)r->c.missing_in_hms, "repaired", (json_int_t)r->c.repaired,
        "mismatched_fields", r->fields, "report", r->report_path, "peak_rss_kb",
        (json_int_t)rec_peak_rss_kb());
}

/* Close the differences, append the summary, rename NAME.part to NAME. */
static int report_close(struct rec *r, json_t *summary)
{
    char *text = json_dumps(summary, JSON_COMPACT);
    int bad;

    if (text == NULL) {
        return ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
    }
    fprintf(r->report, "\n],\"summary\":%s}\n", text);
    free(text);
    bad = ferror(r->report);
    bad |= fclose(r->report) != 0;
    r->report = NULL;
    if (bad || rename(r->part_path, r->report_path) != 0) {
        return ess_err_set(&r->err, ESS_EIO, "report %s: %s", r->report_path, strerror(errno));
    }
    return ESS_OK;
}

static unsigned long long summary_int(json_t *s, const char *k)
{
    return (unsigned long long)json_integer_value(json_object_get(s, k));
}

/* The human summary on stdout. */
static void summary_print(struct rec *r, json_t *s)
{
    const char *f;
    json_t *v, *d;
    size_t i;

    printf("reconcile %s (run %s): %llu HMS record(s), %llu partner record(s)\n", r->m->id,
           r->run_id, summary_int(s, "hms_records"), summary_int(s, "partner_records"));
    printf("  %-20s %10llu\n", "matched", summary_int(s, "matched"));
    printf("  %-20s %10llu", "field mismatches", summary_int(s, "mismatched"));
    json_object_foreach(r->fields, f, v)
    {
        printf("  %s: %lld", f, (long long)json_integer_value(v));
    }
    printf("\n  %-20s %10llu\n", "missing on partner", summary_int(s, "missing_on_partner"));
    printf("  %-20s %10llu\n", "missing in HMS", summary_int(s, "missing_in_hms"));
    if (summary_int(s, "hms_unusable") + summary_int(s, "partner_unusable") > 0) {
        printf("  %-20s %10llu HMS, %llu partner (not compared; see the log)\n", "unusable",
               summary_int(s, "hms_unusable"), summary_int(s, "partner_unusable"));
    }
    if (r->repair) {
        printf("  %-20s %10llu (queued on ess.%s for delivery)\n", "repaired",
               summary_int(s, "repaired"), r->m->id);
    }
    json_array_foreach(r->sample, i, d)
    {
        char *text = json_dumps(d, JSON_COMPACT);

        printf("  %s %s\n", i == 0 ? "first differences:" : "                  ",
               text != NULL ? text : "?");
        free(text);
    }
    printf("report: %s (%.1f s, peak RSS %.1f MiB)\n", r->report_path,
           (double)summary_int(s, "duration_ms") / 1000.0,
           (double)summary_int(s, "peak_rss_kb") / 1024.0);
    fflush(stdout);
}

/* ---------------------------------------------------------------- run ---- */

static int rec_connect(struct rec *r)
{
    r->bus = ess_bus_new(r->env.amqp_url, &r->err);
    if (r->bus == NULL || ess_bus_confirm_select(r->bus, &r->err) != ESS_OK ||
        ess_bus_declare_exchanges(r->bus, r->env.events_exchange, r->env.ops_exchange, &r->err) !=
            ESS_OK) {
        return ESS_EBUS;
    }
    if (r->m->hms_snapshot_url != NULL) {
        return ESS_OK;
    }
    r->store = ess_store_new(r->env.pg_url, &r->err);
    if (r->store == NULL || ess_store_migrate(r->store, &r->err) != ESS_OK) {
        return ESS_ESTORE;
    }
    return ESS_OK;
}

static int hms_load(struct rec *r)
{
    if (r->m->hms_snapshot_url != NULL) {
        return listing_stream(r, r->m->hms_snapshot_url, snapshot_element);
    }
    return ess_store_latest_each(r->store, r->m->id, hms_from_store, r, &r->err);
}

/* Keys the partner never listed. */
static int missing_walk(struct rec *r)
{
    json_t *d;
    size_t i;
    int rc = ESS_OK;

    for (i = 0; rc == ESS_OK && i < r->t.cap; i++) {
        if (r->t.v[i].kv == NULL || r->t.v[i].seen) {
            continue;
        }
        r->c.missing_on_partner++;
        r->t.v[i].repair = (unsigned char)r->repair;
        d = json_pack("{s:s, s:s}", "key", r->t.v[i].kv, "kind", "missing_on_partner");
        rc = d != NULL ? rec_diff(r, d) : ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
        json_decref(d);
    }
    return rc;
}

static int repair_pass(struct rec *r)
{
    if (!r->repair || r->c.mismatched + r->c.missing_on_partner == 0) {
        return ESS_OK;
    }
    ess_log_info("repair: queueing %llu record(s) on ess.%s",
                 r->c.mismatched + r->c.missing_on_partner, r->m->id);
    if (r->m->hms_snapshot_url != NULL) {
        return listing_stream(r, r->m->hms_snapshot_url, repair_from_snapshot);
    }
    return ess_store_latest_each(r->store, r->m->id, repair_from_store, r, &r->err);
}

static int rec_publish(struct rec *r, json_t *summary)
{
    char rk[128];
    char *text = json_dumps(summary, JSON_COMPACT);
    int rc;

    snprintf(rk, sizeof(rk), "ess.reconcile.%s", r->m->id);
    rc = text != NULL ? ess_bus_publish_confirmed(r->bus, r->env.ops_exchange, rk, text,
                                                  strlen(text), NULL, r->m->timeout_ms, &r->err)
                      : ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
    free(text);
    /* Nobody bound to ess.reconcile.* yet is not a failure of the run. */
    return rc == ESS_ENOTFOUND ? ESS_OK : rc;
}

static int rec_run(struct rec *r)
{
    json_t *summary = NULL;
    int rc;

    rc = rec_connect(r);
    if (rc == ESS_OK) {
        rc = hms_load(r);
    }
    if (rc == ESS_OK) {
        ess_log_info("HMS side: %llu record(s) (%zu keys); reading the partner listing", r->c.hms,
                     r->t.n);
        rc = report_open(r);
    }
    if (rc == ESS_OK) {
        rc = partner_fetch(r);
    }
    if (rc == ESS_OK) {
        rc = missing_walk(r);
    }
    if (rc == ESS_OK) {
        rc = repair_pass(r);
    }
    if (rc == ESS_OK) {
        summary = summary_json(r);
        rc = summary != NULL ? report_close(r, summary)
                             : ess_err_set(&r->err, ESS_ENOMEM, "out of memory");
    }
    if (rc == ESS_OK) {
        rc = rec_publish(r, summary);
        summary_print(r, summary);
    }
    json_decref(summary);
    return rc;
}

static int rec_exit_code(int rc)
{
    if (rc != ESS_OK && ess_worker_quit()) {
        return EX_TEMPFAIL; /* stopped by SIGTERM/SIGINT */
    }
    switch (rc) {
    case ESS_OK:
        return EX_OK;
    case ESS_EPARSE:
        return EX_DATAERR;
    case ESS_EIO:
        return EX_IOERR;
    case ESS_ENOMEM:
        return EX_OSERR;
    default:
        return EX_UNAVAILABLE;
    }
}

/* ---------------------------------------------------------------- main --- */

static const char *rec_summary =
    "Compares a push connector's partner listing (reconcile_url) with the HMS side (the last\n"
    "state ESS knows per key in Postgres, or hms_snapshot_url); writes a JSON report, prints a\n"
    "summary, publishes ess.reconcile.<id> on hms.ops.\n\n"
    "  --repair         queue HMS's version of every differing or missing key on ess.<id>\n"
    "  --report FILE    where the JSON report goes (default\n"
    "                   ./ess-reconcile-<id>-<yyyymmddThhmmssZ>.json)";

static int check_manifest(const char *path, const struct ess_manifest *m)
{
    if (m->reconcile_url == NULL || (strncmp(m->reconcile_url, "http://", 7) != 0 &&
                                     strncmp(m->reconcile_url, "https://", 8) != 0)) {
        ess_log_error("%s: reconcile_url: ess-reconcile needs an http:// or https:// URL", path);
        return EX_CONFIG;
    }
    if (m->hms_snapshot_url != NULL && strncmp(m->hms_snapshot_url, "http://", 7) != 0 &&
        strncmp(m->hms_snapshot_url, "https://", 8) != 0) {
        ess_log_error("%s: hms_snapshot_url: ess-reconcile needs an http:// or https:// URL", path);
        return EX_CONFIG;
    }
    return EX_OK;
}

/* Take --repair and --report FILE out of argv (the rest is the workers'
 * common --manifest/--check/--help/--version). */
static int rec_args(int argc, char **argv, char **rest, int *nrest, struct rec *r)
{
    int i;

    *nrest = 0;
    for (i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--repair") == 0) {
            r->repair = 1;
        } else if (i > 0 && strcmp(argv[i], "--report") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ess-reconcile: --report needs a FILE\n");
                return EX_USAGE;
            }
            snprintf(r->report_path, sizeof(r->report_path), "%s", argv[++i]);
        } else {
            rest[(*nrest)++] = argv[i];
        }
    }
    rest[*nrest] = NULL;
    return -1;
}

int main(int argc, char **argv)
{
    struct ess_manifest *m = NULL;
    struct rec r;
    char **rest;
    char stamp[32];
    int nrest, rc;

    ess_worker_lean_exec(argv);
    memset(&r, 0, sizeof(r));
    rest = calloc((size_t)argc + 1, sizeof(*rest));
    if (rest == NULL) {
        return EX_OSERR;
    }
    rc = rec_args(argc, argv, rest, &nrest, &r);
    if (rc < 0) {
        rc =
            ess_worker_start(nrest, rest, "ess-reconcile", "push", rec_summary, check_manifest, &m);
    }
    free(rest);
    if (rc >= 0) {
        return rc;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    r.m = m;
    ess_worker_env_load(&r.env);
    ess_worker_signals_install();
    r.curl = curl_easy_init();
    r.fields = json_object();
    r.sample = json_array();
    r.started_ms = ess_worker_mono_ms();
    iso_now(r.started, sizeof(r.started), 0);
    iso_now(stamp, sizeof(stamp), 1);
    snprintf(r.run_id, sizeof(r.run_id), "%s-%ld", stamp, (long)getpid());
    if (r.report_path[0] == '\0') {
        snprintf(r.report_path, sizeof(r.report_path), "ess-reconcile-%s-%s.json", m->id, stamp);
    }
    ess_err_clear(&r.err);
    rc = r.curl != NULL && r.fields != NULL && r.sample != NULL
             ? rec_run(&r)
             : ess_err_set(&r.err, ESS_ENOMEM, "out of memory");
    if (rc != ESS_OK) {
        ess_log_error("%s", r.err.msg);
    }
    if (r.report != NULL) {
        fclose(r.report);
        unlink(r.part_path);
    }
    ess_bus_free(r.bus);
    ess_store_free(r.store);
    curl_easy_cleanup(r.curl);
    table_fini(&r.t);
    json_decref(r.fields);
    json_decref(r.sample);
    ess_manifest_free(m);
    curl_global_cleanup();
    return rec_exit_code(rc);
}
