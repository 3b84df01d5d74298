/*
 * ess_twoway -- two-way sync glue (see ess_twoway.h): HMS changes recorded by
 * the push side, partner changes decided, recorded and announced by the
 * reverse side. The decision itself is ess_conflict's.
 */
#include "ess_twoway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ess_conflict.h"
#include "ess_event.h"
#include "ess_log.h"
#include "ess_worker.h"

int ess_twoway_hms_record(struct ess_store *s, const struct ess_manifest *m,
                          const struct ess_store_event *ev, size_t n, struct ess_err *err)
{
    json_t *ids = NULL, *evs = NULL;
    char *ids_text = NULL, *evs_text = NULL;
    size_t i;
    int rc = ESS_OK;

    if (m->skip_origins.n == 0 || n == 0) {
        return ESS_OK;
    }
    ids = json_array();
    evs = json_array();
    for (i = 0; ids != NULL && i < m->skip_origins.n; i++) {
        json_array_append_new(ids, json_string(m->skip_origins.v[i]));
    }
    for (i = 0; evs != NULL && i < n; i++) {
        json_array_append_new(evs, json_pack("{s:s, s:s, s:I}", "key", ev[i].key, "body",
                                             ev[i].body, "ms", (json_int_t)ev[i].received_ms));
    }
    ids_text = ids != NULL ? json_dumps(ids, JSON_COMPACT) : NULL;
    evs_text = evs != NULL && json_array_size(evs) == n ? json_dumps(evs, JSON_COMPACT) : NULL;
    if (ids_text == NULL || evs_text == NULL) {
        rc = ess_err_set(err, ESS_ENOMEM, "two-way: out of memory");
    } else {
        rc = ess_store_conflict_hms_put(s, m->id, ids_text, evs_text, err);
    }
    free(ids_text);
    free(evs_text);
    json_decref(ids);
    json_decref(evs);
    return rc;
}

int ess_twoway_key_text(json_t *rec, const char *path, char *buf, size_t len)
{
    json_t *v = ess_event_path_get(rec, path);

    if (json_is_string(v)) {
        snprintf(buf, len, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else {
        return 0;
    }
    return 1;
}

int ess_twoway_load(const struct ess_manifest *m, struct ess_store *s, json_t *keys, json_t **state,
                    struct ess_err *err)
{
    return ess_store_conflict_get(s, m->id, keys, state, err);
}

/* A stored version: its record (new reference, NULL when none) and time (its
 * updated_at field when readable, else the stored ms). */
static void stored_side(const struct ess_manifest *m, json_t *row, const char *body_col,
                        const char *ms_col, struct ess_conflict_side *side)
{
    const char *body = json_string_value(json_object_get(row, body_col));

    side->rec = body != NULL ? json_loads(body, 0, NULL) : NULL;
    side->ms = json_integer_value(json_object_get(row, ms_col));
    if (side->rec != NULL && !json_is_object(side->rec)) {
        json_decref(side->rec);
        side->rec = NULL;
    }
    if (side->rec != NULL) {
        ess_conflict_time(&m->conflict, side->rec, &side->ms);
    }
}

/* What HMS holds once it applied the published record: its last change with
 * the resolved fields over it. Committed only while HMS's stored change is
 * still the one decided against (hms_stored_ms), so a newer one is not lost.
 * 0, or -1 when out of memory. */
static int entry_hms_after(json_t *entry, json_t *hms, json_t *resolved, json_t *stored_ms)
{
    json_t *after = json_deep_copy(hms);
    char *text = NULL;
    int rc = -1;

    if (after != NULL && json_object_update(after, resolved) == 0) {
        text = json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS);
    }
    if (text != NULL && json_object_set_new(entry, "hms_body", json_string(text)) == 0 &&
        json_object_set(entry, "hms_stored_ms",
                        json_is_integer(stored_ms) ? stored_ms : json_null()) == 0) {
        rc = 0;
    }
    free(text);
    json_decref(after);
    return rc;
}

int ess_twoway_decide(const struct ess_manifest *m, json_t *state, const char *key, json_t *rec,
                      long long now_ms, json_t **resolved, json_t **entry, struct ess_err *err)
{
    json_t *row = json_object_get(state, key);
    struct ess_conflict_side hms = {NULL, 0}, prev = {NULL, 0}, partner = {rec, now_ms};
    json_t *losses = NULL;
    char *body = NULL;
    int rc;

    *resolved = NULL;
    *entry = NULL;
    if (row != NULL) {
        stored_side(m, row, "hms_body", "hms_ms", &hms);
        stored_side(m, row, "partner_body", "partner_ms", &prev);
    }
    ess_conflict_time(&m->conflict, rec, &partner.ms);
    rc = ess_conflict_resolve(&m->conflict, m->key, &hms, &prev, &partner, resolved, &losses, err);
    if (rc == ESS_OK) {
        body = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
        *entry = body != NULL ? json_pack("{s:s, s:s, s:I, s:I, s:o}", "key", key, "body", body,
                                          "ms", (json_int_t)partner.ms, "hms_ms",
                                          (json_int_t)hms.ms, "losses", losses)
                              : NULL;
        losses = NULL; /* stolen by "o", or freed below when body failed */
        if (*entry != NULL && hms.rec != NULL &&
            entry_hms_after(*entry, hms.rec, *resolved, json_object_get(row, "hms_ms")) != 0) {
            json_decref(*entry);
            *entry = NULL;
        }
        if (*entry == NULL) {
            json_decref(*resolved);
            *resolved = NULL;
            rc = ess_err_set(err, ESS_ENOMEM, "two-way: out of memory");
        }
    }
    json_decref(losses);
    free(body);
    json_decref(hms.rec);
    json_decref(prev.rec);
    return rc;
}

static void iso_ms(long long ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

/* ess.conflict.<id>: one message per key that had conflicts. */
static int announce(const struct ess_manifest *m, struct ess_bus *bus, const char *ops_exchange,
                    json_t *e, struct ess_err *err)
{
    char rk[128], hts[40], pts[40], now[40];
    json_t *msg;
    char *text;
    int rc;

    iso_ms(json_integer_value(json_object_get(e, "hms_ms")), hts, sizeof(hts));
    iso_ms(json_integer_value(json_object_get(e, "ms")), pts, sizeof(pts));
    iso_ms(ess_worker_wall_ms(), now, sizeof(now));
    msg = json_pack("{s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:s}", "connector", m->id, "event",
                    "conflict", "key", json_string_value(json_object_get(e, "key")), "conflicts",
                    json_object_get(e, "losses"), "hms_changed_at", hts, "partner_changed_at", pts,
                    "ts", now, "instance", ess_worker_instance());
    text = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
    snprintf(rk, sizeof(rk), "ess.conflict.%s", m->id);
    rc = text == NULL ? ess_err_set(err, ESS_ENOMEM, "two-way: out of memory")
                      : ess_bus_publish(bus, ops_exchange, rk, text, strlen(text), NULL, err);
    free(text);
    json_decref(msg);
    return rc;
}

int ess_twoway_commit(const struct ess_manifest *m, struct ess_store *s, struct ess_bus *bus,
                      const char *ops_exchange, json_t *entries, size_t *conflicts,
                      struct ess_err *err)
{
    size_t i, n = 0;
    json_t *e;
    int rc;

    if (json_array_size(entries) == 0) {
        return ESS_OK;
    }
    rc = ess_store_conflict_commit(s, m->id, entries, err);
    json_array_foreach(entries, i, e)
    {
        size_t k = json_array_size(json_object_get(e, "losses"));

        if (rc != ESS_OK || k == 0) {
            continue;
        }
        n += k;
        ess_log_info("conflict: key %s, %zu field(s) decided (%s)",
                     json_string_value(json_object_get(e, "key")), k,
                     ess_conflict_strategy_name(m->conflict.strategy));
        if (bus != NULL) {
            rc = announce(m, bus, ops_exchange, e, err);
        }
    }
    if (conflicts != NULL) {
        *conflicts = n;
    }
    return rc;
}
