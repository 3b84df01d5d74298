/*
 * ess_conflict -- the conflict decision (see ess_conflict.h for the rules).
 * Pure: no I/O, no clock, no globals.
 */
#include "ess_conflict.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ess_event.h"

static const char *const strategy_names[] = {"last_write_wins", "master_always_wins",
                                             "first_write_wins"};

const char *ess_conflict_strategy_name(enum ess_conflict_strategy s)
{
    if ((int)s < 0 || (size_t)s >= sizeof(strategy_names) / sizeof(strategy_names[0])) {
        return "?";
    }
    return strategy_names[s];
}

enum ess_conflict_strategy ess_conflict_strategy_of(const struct ess_conflict_rule *r,
                                                    const char *field)
{
    size_t i, s;

    for (i = 0; i < r->fields.n; i++) {
        if (strcmp(r->fields.keys[i], field) != 0) {
            continue;
        }
        for (s = 0; s < sizeof(strategy_names) / sizeof(strategy_names[0]); s++) {
            if (strcmp(r->fields.vals[i], strategy_names[s]) == 0) {
                return (enum ess_conflict_strategy)s;
            }
        }
    }
    return r->strategy;
}

/* n decimal digits at *s into *out; advances *s. */
static int digits(const char **s, int n, int *out)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*s)[i])) {
            return 0;
        }
        v = v * 10 + ((*s)[i] - '0');
    }
    *s += n;
    *out = v;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (no timezone, no libc). */
static long long days_from_civil(int y, int m, int d)
{
    long long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* hh:mm:ss[.fff] then Z, +hh:mm, -hh:mm, or nothing (UTC). */
static int parse_clock(const char *s, long long *ms)
{
    int hh, mi, ss, oh = 0, om = 0, sign = 0, frac = 0, scale = 100;

    if (!digits(&s, 2, &hh) || *s++ != ':' || !digits(&s, 2, &mi) || *s++ != ':' ||
        !digits(&s, 2, &ss) || hh > 23 || mi > 59 || ss > 60) {
        return 0;
    }
    if (*s == '.') {
        for (s++; isdigit((unsigned char)*s); s++) {
            frac += scale * (*s - '0');
            scale /= 10;
        }
    }
    if (*s == '+' || *s == '-') {
        sign = *s++ == '+' ? 1 : -1;
        if (!digits(&s, 2, &oh)) {
            return 0;
        }
        s += *s == ':';
        if (!digits(&s, 2, &om)) {
            return 0;
        }
    } else if (*s == 'Z' || *s == 'z') {
        s++;
    }
    if (*s != '\0') {
        return 0;
    }
    *ms += ((long long)hh * 3600 + mi * 60 + ss - sign * (oh * 3600 + om * 60)) * 1000 + frac;
    return 1;
}

static int parse_iso(const char *s, long long *ms)
{
    int y, mo, d;

    if (!digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &mo) || *s++ != '-' ||
        !digits(&s, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31) {
        return 0;
    }
    *ms = days_from_civil(y, mo, d) * 86400000LL;
    if (*s == '\0') {
        return 1;
    }
    if (*s != 'T' && *s != 't' && *s != ' ') {
        return 0;
    }
    return parse_clock(s + 1, ms);
}

int ess_conflict_time(const struct ess_conflict_rule *r, json_t *rec, long long *ms)
{
    json_t *v;
    double d;

    if (r->updated_at_field == NULL || !json_is_object(rec)) {
        return 0;
    }
    v = ess_event_path_get(rec, r->updated_at_field);
    if (json_is_string(v)) {
        return parse_iso(json_string_value(v), ms);
    }
    if (!json_is_number(v)) {
        return 0;
    }
    d = json_number_value(v);
    if (d < 0 || d > 1e15) {
        return 0;
    }
    *ms = d < 1e11 ? (long long)(d * 1000) : (long long)d;
    return 1;
}

/* Which side a conflict on a field with strategy s goes to: 1 HMS, 0 partner. */
static int hms_wins(enum ess_conflict_strategy s, long long th, long long tp)
{
    switch (s) {
    case ESS_CONFLICT_MASTER_ALWAYS_WINS:
        return 1;
    case ESS_CONFLICT_FIRST_WRITE_WINS:
        return th <= tp;
    case ESS_CONFLICT_LAST_WRITE_WINS:
    default:
        return th >= tp;
    }
}

static int loss_add(json_t *losses, const char *field, enum ess_conflict_strategy s, int hms,
                    json_t *hv, json_t *pv)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:O, s:O}", "field", field, "strategy",
                          ess_conflict_strategy_name(s), "winner", hms ? "hms" : "partner",
                          "winner_value", hms ? hv : pv, "loser_value", hms ? pv : hv);

    return o != NULL && json_array_append_new(losses, o) == 0;
}

/* One field of the partner version: nothing (equal to HMS's, or HMS never had
 * it), stale (the partner did not touch it: HMS's value stands), a plain
 * partner edit (HMS quiet since the partner's previous version), or a
 * conflict decided by the field's strategy. 0 when out of memory. */
static int decide_field(const struct ess_conflict_rule *r, const char *f, json_t *pv,
                        const struct ess_conflict_side *hms, const struct ess_conflict_side *prev,
                        const struct ess_conflict_side *partner, json_t *out, json_t *losses)
{
    json_t *hv = json_object_get(hms->rec, f);
    json_t *was = prev->rec != NULL ? json_object_get(prev->rec, f) : NULL;
    enum ess_conflict_strategy s;
    int hms_won;

    if (hv == NULL || json_equal(hv, pv)) {
        return 1;
    }
    if (was != NULL && json_equal(was, pv)) {
        return json_object_set(out, f, hv) == 0; /* stale: the partner did not touch it */
    }
    if (prev->rec != NULL && hms->ms <= prev->ms) {
        return 1; /* HMS quiet since the partner's previous version: a plain edit */
    }
    s = ess_conflict_strategy_of(r, f);
    hms_won = hms_wins(s, hms->ms, partner->ms);
    if (hms_won && json_object_set(out, f, hv) != 0) {
        return 0;
    }
    return loss_add(losses, f, s, hms_won, hv, pv);
}

int ess_conflict_resolve(const struct ess_conflict_rule *r, const char *key_field,
                         const struct ess_conflict_side *hms, const struct ess_conflict_side *prev,
                         const struct ess_conflict_side *partner, json_t **resolved,
                         json_t **losses, struct ess_err *err)
{
    const char *f;
    json_t *pv;
    int ok = 1;

    *resolved = NULL;
    *losses = NULL;
    if (!json_is_object(partner->rec)) {
        return ess_err_set(err, ESS_EINVAL, "conflict: the partner version is not an object");
    }
    *resolved = json_deep_copy(partner->rec);
    *losses = json_array();
    if (*resolved == NULL || *losses == NULL) {
        ok = 0;
    }
    if (ok && json_is_object(hms->rec)) {
        json_object_foreach(partner->rec, f, pv)
        {
            if ((key_field != NULL && strcmp(f, key_field) == 0) ||
                (r->updated_at_field != NULL && strcmp(f, r->updated_at_field) == 0)) {
                continue;
            }
            if (!decide_field(r, f, pv, hms, prev, partner, *resolved, *losses)) {
                ok = 0;
                break;
            }
        }
    }
    if (!ok) {
        json_decref(*resolved);
        json_decref(*losses);
        *resolved = NULL;
        *losses = NULL;
        return ess_err_set(err, ESS_ENOMEM, "conflict: out of memory");
    }
    return ESS_OK;
}
