/*
 * ess_transform -- compile and apply the manifest's per-field transforms.
 *
 * DESIGN
 * One table, step_defs[], names every step, its arguments and its compile and
 * apply functions: adding a step is one entry plus two functions. A compiled
 * step keeps its arguments in a small typed struct (strings, a number, a map),
 * so applying does no parsing beyond the value itself. Values are read as text
 * (strings as is, integers in decimal, reals as JSON writes them, booleans as
 * true/false) and every text step returns a new string.
 *
 * Ownership: a struct ess_transform owns its field name and every step's
 * strings. ess_transform_apply borrows its inputs and returns a new reference.
 */
#define _GNU_SOURCE /* strptime, timegm, tm_gmtoff */
#include "ess_transform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ess_event.h"

#define TEXT_MAX 4096 /* a formatted date or zone conversion */
#define NUM_MAX 10000 /* truncate length, pad width */
#define MAP_MAX 4096
#define ISO8601 "iso8601"
#define ISO_OUT "%Y-%m-%dT%H:%M:%S"

enum step_kind {
    T_DATE,
    T_TZ,
    T_UPPER,
    T_LOWER,
    T_TRIM,
    T_TRUNCATE,
    T_PAD,
    T_DEFAULT,
    T_CONST,
    T_CONCAT,
    T_MAP
};

struct step {
    enum step_kind kind;
    char *a;   /* date/tz from; default/const value; pad char; concat sep */
    char *b;   /* date/tz to */
    char *fmt; /* tz format */
    long n;    /* truncate length; pad width */
    int right; /* pad: align right */
    char **keys; /* map FROM; concat fields */
    char **vals; /* map TO */
    size_t nmap;
};

struct ess_transform {
    char *field;
    struct step *steps;
    size_t n;
};

struct step_def {
    const char *name;
    enum step_kind kind;
    const char *args; /* "from|to": the allowed argument names; NULL: none; "*": a map */
    const char *required;
};

static const struct step_def step_defs[] = {
    {"date", T_DATE, "from|to", "from|to"},
    {"tz", T_TZ, "from|to|format", "from|to"},
    {"upper", T_UPPER, NULL, NULL},
    {"lower", T_LOWER, NULL, NULL},
    {"trim", T_TRIM, NULL, NULL},
    {"truncate", T_TRUNCATE, "length", "length"},
    {"pad", T_PAD, "width|char|align", "width"},
    {"default", T_DEFAULT, "value", "value"},
    {"const", T_CONST, "value", "value"},
    {"concat", T_CONCAT, "fields|sep", "fields"},
    {"map", T_MAP, "*", NULL},
};

#define N_DEFS (sizeof(step_defs) / sizeof(step_defs[0]))

/* ---------------------------------------------------------------- small helpers */

static int tf_nomem(struct ess_err *err)
{
    return ess_err_set(err, ESS_ENOMEM, "out of memory in transforms");
}

/* 1 when word is one of "a|b|c". */
static int in_list(const char *list, const char *word)
{
    size_t wl = strlen(word);
    const char *c = list;

    while (c != NULL && *c != '\0') {
        size_t cl = strcspn(c, "|");

        if (cl == wl && strncmp(c, word, wl) == 0) {
            return 1;
        }
        c = c[cl] == '|' ? c + cl + 1 : NULL;
    }
    return 0;
}

static const struct step_def *def_named(const char *name)
{
    size_t i;

    for (i = 0; i < N_DEFS; i++) {
        if (strcmp(step_defs[i].name, name) == 0) {
            return &step_defs[i];
        }
    }
    return NULL;
}

static void step_names(char *buf, size_t len)
{
    size_t i, used = 0;

    buf[0] = '\0';
    for (i = 0; i < N_DEFS && used < len; i++) {
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", step_defs[i].name);
    }
}

/* Number of UTF-8 code points in s (continuation bytes are not counted). */
static size_t utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        n += ((unsigned char)*s & 0xC0) != 0x80;
    }
    return n;
}

/* Byte offset of code point number cp in s (or strlen(s) when shorter). */
static size_t utf8_offset(const char *s, size_t cp)
{
    size_t i = 0;

    while (s[i] != '\0') {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (cp == 0) {
                return i;
            }
            cp--;
        }
        i++;
    }
    return i;
}

/* ---------------------------------------------------------------- values as text */

/* The text of a scalar in a new malloc'd string; *kind names what it is when
 * it has no text (object, array). NULL with *kind NULL: out of memory. */
static char *value_text(const json_t *v, const char **kind)
{
    char buf[64];

    *kind = NULL;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return strndup(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        return strdup(buf);
    case JSON_REAL:
        return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    case JSON_NULL:
        return strdup("");
    case JSON_ARRAY:
        *kind = "an array";
        return NULL;
    default:
        *kind = "an object";
        return NULL;
    }
}

/* A json string made from text (consumed: freed here). */
static int text_out(char *text, json_t **out, struct ess_err *err)
{
    if (text == NULL) {
        return tf_nomem(err);
    }
    *out = json_string(text);
    free(text);
    return *out != NULL ? ESS_OK : tf_nomem(err);
}

/* ---------------------------------------------------------------- date and zone formats */

/* strptime/strftime conversions we accept ("E" and "O" modifiers allowed). */
static int check_format(const char *fmt, struct ess_err *err, const char *what)
{
    const char *p;

    if (fmt[0] == '\0') {
        return ess_err_set(err, ESS_EMANIFEST, "%s is empty", what);
    }
    if (strcmp(fmt, ISO8601) == 0) {
        return ESS_OK;
    }
    for (p = strchr(fmt, '%'); p != NULL; p = strchr(p + 1, '%')) {
        p++;
        if (*p == 'E' || *p == 'O') {
            p++;
        }
        if (*p == '\0' || strchr("aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%", *p) == NULL) {
            return ess_err_set(err, ESS_EMANIFEST,
                               "%s: '%%%c' is not a strftime conversion in \"%s\"", what,
                               *p != '\0' ? *p : ' ', fmt);
        }
    }
    return ESS_OK;
}

/* "+HH:MM", "+HHMM", "Z" at s: seconds east of UTC in *off; returns the end, or NULL. */
static const char *parse_offset(const char *s, long *off, int *has_off)
{
    int sign;

    if (*s == 'Z') {
        *has_off = 1;
        *off = 0;
        return s + 1;
    }
    if (*s != '+' && *s != '-') {
        return s;
    }
    sign = *s == '-' ? -1 : 1;
    if (strspn(s + 1, "0123456789") < 2) {
        return NULL;
    }
    *off = ((s[1] - '0') * 10 + (s[2] - '0')) * 3600L;
    s += 3;
    s += *s == ':';
    if (strspn(s, "0123456789") < 2) {
        return NULL;
    }
    *off = sign * (*off + ((s[0] - '0') * 10 + (s[1] - '0')) * 60L);
    *has_off = 1;
    return s + 2;
}

/* ISO 8601 date or date-time; the fraction of a second is dropped. */
static const char *parse_iso(const char *s, struct tm *tm, long *off, int *has_off)
{
    const char *p = strptime(s, "%Y-%m-%d", tm);

    if (p == NULL || (*p != 'T' && *p != ' ')) {
        return p;
    }
    p = strptime(p + 1, "%H:%M", tm);
    if (p != NULL && *p == ':') {
        p = strptime(p + 1, "%S", tm);
    }
    if (p != NULL && *p == '.' && p[1] >= '0' && p[1] <= '9') {
        p += 1 + strspn(p + 1, "0123456789");
    }
    return p != NULL ? parse_offset(p, off, has_off) : NULL;
}

/* Parse s with fmt (or iso8601) into a normalised tm; -1 when it does not match
 * or names a day that does not exist (strptime accepts 02-31). */
static int parse_time(const char *fmt, const char *s, struct tm *tm, long *off, int *has_off)
{
    struct tm norm;
    const char *end;

    memset(tm, 0, sizeof(*tm));
    tm->tm_mday = 1;
    *off = 0;
    *has_off = 0;
    end = strcmp(fmt, ISO8601) == 0 ? parse_iso(s, tm, off, has_off) : strptime(s, fmt, tm);
    if (end == NULL || *end != '\0') {
        return -1;
    }
    norm = *tm;
    norm.tm_isdst = 0;
    if (timegm(&norm) == (time_t)-1 && errno == EOVERFLOW) {
        return -1;
    }
    if (norm.tm_mday != tm->tm_mday || norm.tm_mon != tm->tm_mon || norm.tm_hour != tm->tm_hour) {
        return -1;
    }
    *tm = norm; /* with tm_wday and tm_yday for %a, %j */
    return 0;
}

static char *format_time(const char *fmt, const struct tm *tm)
{
    char buf[TEXT_MAX];
    size_t n = strftime(buf, sizeof(buf), strcmp(fmt, ISO8601) == 0 ? ISO_OUT : fmt, tm);

    return n > 0 ? strdup(buf) : strdup("");
}

/* ---------------------------------------------------------------- zones */

/* An IANA zone name that the tz database on this host has (a TZif file). */
static int zone_exists(const char *zone)
{
    const char *dir = getenv("TZDIR");
    char path[1024];
    char magic[4];
    FILE *f;
    size_t n;

    if (zone[0] == '\0' || zone[0] == '/' || strstr(zone, "..") != NULL ||
        strspn(zone, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") !=
            strlen(zone)) {
        return 0;
    }
    snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : "/usr/share/zoneinfo", zone);
    f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    n = fread(magic, 1, sizeof(magic), f);
    fclose(f);
    return n == sizeof(magic) && memcmp(magic, "TZif", 4) == 0;
}

struct tz_saved {
    char *old;
    int had;
};

/* Switch the process TZ to zone; tz_leave restores what was there. */
static int tz_enter(const char *zone, struct tz_saved *s)
{
    const char *old = getenv("TZ");

    s->had = old != NULL;
    s->old = old != NULL ? strdup(old) : NULL;
    if ((s->had && s->old == NULL) || setenv("TZ", zone, 1) != 0) {
        free(s->old);
        return -1;
    }
    tzset();
    return 0;
}

static void tz_leave(struct tz_saved *s)
{
    if (s->had) {
        setenv("TZ", s->old, 1);
    } else {
        unsetenv("TZ");
    }
    tzset();
    free(s->old);
    s->old = NULL;
}

/* Seconds since the epoch of wall-clock tm in zone; -1 in *gap when that local
 * time does not exist there (skipped by a DST change). */
static int zone_to_epoch(const char *zone, const struct tm *tm, time_t *t, int *gap)
{
    struct tz_saved s;
    struct tm local = *tm;

    if (tz_enter(zone, &s) != 0) {
        return -1;
    }
    local.tm_isdst = -1;
    *t = mktime(&local);
    tz_leave(&s);
    *gap = local.tm_hour != tm->tm_hour || local.tm_min != tm->tm_min;
    return 0;
}

static int epoch_to_zone(const char *zone, time_t t, struct tm *out)
{
    struct tz_saved s;
    struct tm *r;

    if (tz_enter(zone, &s) != 0) {
        return -1;
    }
    r = localtime_r(&t, out);
    tz_leave(&s);
    return r != NULL ? 0 : -1;
}

static char *format_zoned(const char *fmt, const struct tm *tm)
{
    char buf[TEXT_MAX];
    long off = tm->tm_gmtoff;
    size_t n;

    if (strcmp(fmt, ISO8601) != 0) {
        return format_time(fmt, tm);
    }
    n = strftime(buf, sizeof(buf), ISO_OUT, tm);
    if (off == 0) {
        snprintf(buf + n, sizeof(buf) - n, "Z");
    } else {
        snprintf(buf + n, sizeof(buf) - n, "%c%02ld:%02ld", off < 0 ? '-' : '+',
                 labs(off) / 3600, labs(off) % 3600 / 60);
    }
    return strdup(buf);
}
