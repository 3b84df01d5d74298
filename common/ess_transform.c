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

#include "ess_zone.h"

#include "ess_text.h"

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
    char *a;     /* date/tz from; default/const value; pad char; concat sep */
    char *b;     /* date/tz to */
    char *fmt;   /* tz format */
    long n;      /* truncate length; pad width */
    int right;   /* pad: align right */
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

/* In enum step_kind order: run_text names a step by step_defs[kind]. */
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

/* The format is the manifest's (validated at load): not a literal by design. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static char *format_time(const char *fmt, const struct tm *tm)
{
    char buf[TEXT_MAX];
    size_t n = strftime(buf, sizeof(buf), strcmp(fmt, ISO8601) == 0 ? ISO_OUT : fmt, tm);

    return n > 0 ? strdup(buf) : strdup("");
}
#pragma GCC diagnostic pop

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
        snprintf(buf + n, sizeof(buf) - n, "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 3600,
                 labs(off) % 3600 / 60);
    }
    return strdup(buf);
}

/* ---------------------------------------------------------------- compile */

/* A scalar argument as new text (strings as is, numbers and booleans as text). */
static int arg_text(const char *step, const char *name, const json_t *v, char **out,
                    struct ess_err *err)
{
    const char *kind = NULL;

    *out = NULL;
    if (json_is_object(v) || json_is_array(v) || json_is_null(v)) {
        return ess_err_set(err, ESS_EMANIFEST, "%s: '%s' must be a single value", step, name);
    }
    *out = value_text(v, &kind);
    return *out != NULL ? ESS_OK : tf_nomem(err);
}

static int arg_number(const struct step_def *d, const json_t *args, const char *name, long *n,
                      struct ess_err *err)
{
    char *text = NULL;
    char *end = NULL;
    int rc = arg_text(d->name, name, json_object_get(args, name), &text, err);

    if (rc != ESS_OK) {
        return rc;
    }
    errno = 0;
    *n = strtol(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || *n < 1 || *n > NUM_MAX) {
        rc = ess_err_set(err, ESS_EMANIFEST, "%s: %s must be an integer 1..%d, got '%.40s'",
                         d->name, name, NUM_MAX, text);
    }
    free(text);
    return rc;
}

/* Optional scalar argument: def when absent. */
static int arg_opt(const struct step_def *d, const json_t *args, const char *name, const char *def,
                   char **out, struct ess_err *err)
{
    const json_t *v = json_object_get(args, name);

    if (v == NULL) {
        *out = def != NULL ? strdup(def) : NULL;
        return (*out != NULL || def == NULL) ? ESS_OK : tf_nomem(err);
    }
    return arg_text(d->name, name, v, out, err);
}

/* Every argument named is allowed and every required one is there. */
static int check_arg_names(const struct step_def *d, const json_t *args, struct ess_err *err)
{
    const char *k;
    const json_t *v;
    const char *r = d->required;
    char want[32];

    json_object_foreach((json_t *)args, k, v)
    {
        if (!in_list(d->args, k)) {
            return ess_err_set(err, ESS_EMANIFEST, "%s: unknown argument '%.40s' (valid: %s)",
                               d->name, k, d->args);
        }
    }
    while (r != NULL && *r != '\0') {
        snprintf(want, sizeof(want), "%.*s", (int)strcspn(r, "|"), r);
        if (json_object_get(args, want) == NULL) {
            return ess_err_set(err, ESS_EMANIFEST, "%s: '%s' is required", d->name, want);
        }
        r += strcspn(r, "|");
        r += *r == '|';
    }
    return ESS_OK;
}

static int compile_date(const struct step_def *d, const json_t *args, struct step *s,
                        struct ess_err *err)
{
    int rc = arg_opt(d, args, "from", NULL, &s->a, err);

    if (rc == ESS_OK) {
        rc = arg_opt(d, args, "to", NULL, &s->b, err);
    }
    if (rc == ESS_OK) {
        rc = check_format(s->a, err, "date.from");
    }
    if (rc == ESS_OK) {
        rc = check_format(s->b, err, "date.to");
    }
    return rc;
}

static int compile_tz(const struct step_def *d, const json_t *args, struct step *s,
                      struct ess_err *err)
{
    int rc = arg_opt(d, args, "from", NULL, &s->a, err);

    if (rc == ESS_OK) {
        rc = arg_opt(d, args, "to", NULL, &s->b, err);
    }
    if (rc == ESS_OK) {
        rc = arg_opt(d, args, "format", ISO8601, &s->fmt, err);
    }
    if (rc == ESS_OK) {
        rc = check_format(s->fmt, err, "tz.format");
    }
    if (rc == ESS_OK && !ess_zone_exists(s->a)) {
        rc = ess_err_set(err, ESS_EMANIFEST, "tz: from '%.60s' is not a zone in the tz database",
                         s->a);
    }
    if (rc == ESS_OK && !ess_zone_exists(s->b)) {
        rc = ess_err_set(err, ESS_EMANIFEST, "tz: to '%.60s' is not a zone in the tz database",
                         s->b);
    }
    return rc;
}

static int compile_pad(const struct step_def *d, const json_t *args, struct step *s,
                       struct ess_err *err)
{
    char *align = NULL;
    int rc = arg_number(d, args, "width", &s->n, err);

    if (rc == ESS_OK) {
        rc = arg_opt(d, args, "char", " ", &s->a, err);
    }
    if (rc == ESS_OK && ess_text_utf8_len(s->a) != 1) {
        rc = ess_err_set(err, ESS_EMANIFEST, "pad: char must be exactly one character, got '%.20s'",
                         s->a);
    }
    if (rc == ESS_OK) {
        rc = arg_opt(d, args, "align", "left", &align, err);
    }
    if (rc == ESS_OK && !in_list("left|right", align)) {
        rc =
            ess_err_set(err, ESS_EMANIFEST, "pad: align must be left or right, got '%.20s'", align);
    }
    s->right = rc == ESS_OK && strcmp(align, "right") == 0;
    free(align);
    return rc;
}

/* Append one key/value to a step's map (val may be NULL for concat fields). */
static int step_map_push(struct step *s, const char *k, const char *v, struct ess_err *err)
{
    char **keys = realloc(s->keys, (s->nmap + 1) * sizeof(*keys));
    char **vals;

    if (keys == NULL) {
        return tf_nomem(err);
    }
    s->keys = keys;
    vals = realloc(s->vals, (s->nmap + 1) * sizeof(*vals));
    if (vals == NULL) {
        return tf_nomem(err);
    }
    s->vals = vals;
    s->keys[s->nmap] = strdup(k);
    s->vals[s->nmap] = v != NULL ? strdup(v) : NULL;
    s->nmap++;
    if (s->keys[s->nmap - 1] == NULL || (v != NULL && s->vals[s->nmap - 1] == NULL)) {
        return tf_nomem(err);
    }
    return ESS_OK;
}

static int compile_concat(const struct step_def *d, const json_t *args, struct step *s,
                          struct ess_err *err)
{
    const json_t *fields = json_object_get(args, "fields");
    const json_t *f;
    size_t i;
    int rc = arg_opt(d, args, "sep", "", &s->a, err);

    if (rc == ESS_OK && (!json_is_array(fields) || json_array_size(fields) == 0)) {
        return ess_err_set(err, ESS_EMANIFEST, "concat: fields must be a list of field names");
    }
    json_array_foreach(fields, i, f)
    {
        if (rc == ESS_OK && (!json_is_string(f) || json_string_length(f) == 0)) {
            rc = ess_err_set(err, ESS_EMANIFEST, "concat: fields must be a list of field names");
        }
        if (rc == ESS_OK) {
            rc = step_map_push(s, json_string_value(f), NULL, err);
        }
    }
    return rc;
}

static int compile_map(const json_t *args, struct step *s, struct ess_err *err)
{
    const char *k;
    const json_t *v;
    int rc = ESS_OK;

    if (json_object_size(args) == 0 || json_object_size(args) > MAP_MAX) {
        return ess_err_set(err, ESS_EMANIFEST, "map: expected {FROM: TO, ...} with 1..%d entries",
                           MAP_MAX);
    }
    json_object_foreach((json_t *)args, k, v)
    {
        if (rc == ESS_OK && (json_is_object(v) || json_is_array(v))) {
            rc = ess_err_set(err, ESS_EMANIFEST, "map: '%.40s' must map to a single value", k);
        }
        if (rc == ESS_OK) {
            char *to = NULL;

            rc = arg_text("map", k, v, &to, err);
            rc = rc == ESS_OK ? step_map_push(s, k, to, err) : rc;
            free(to);
        }
    }
    return rc;
}

static int compile_args(const struct step_def *d, const json_t *args, struct step *s,
                        struct ess_err *err)
{
    switch (d->kind) {
    case T_DATE:
        return compile_date(d, args, s, err);
    case T_TZ:
        return compile_tz(d, args, s, err);
    case T_TRUNCATE:
        return arg_number(d, args, "length", &s->n, err);
    case T_PAD:
        return compile_pad(d, args, s, err);
    case T_DEFAULT:
    case T_CONST:
        return arg_opt(d, args, "value", NULL, &s->a, err);
    case T_CONCAT:
        return compile_concat(d, args, s, err);
    case T_MAP:
        return compile_map(args, s, err);
    default:
        return ESS_OK;
    }
}

/* One step: "upper" or {name: args}. */
static int compile_step(const json_t *spec, struct step *s, struct ess_err *err)
{
    char names[160];
    const char *name = json_string_value(spec);
    const json_t *args = NULL;
    const struct step_def *d;
    int rc;

    if (json_is_object(spec) && json_object_size(spec) == 1) {
        name = json_object_iter_key(json_object_iter((json_t *)spec));
        args = json_object_iter_value(json_object_iter((json_t *)spec));
    } else if (!json_is_string(spec)) {
        return ess_err_set(err, ESS_EMANIFEST,
                           "a step is a name (upper) or one {name: arguments} "
                           "mapping; use a list for several steps");
    }
    d = def_named(name);
    step_names(names, sizeof(names));
    if (d == NULL) {
        return ess_err_set(err, ESS_EMANIFEST, "'%.40s' is not a transform (valid: %s)", name,
                           names);
    }
    s->kind = d->kind;
    if (d->args == NULL && args != NULL && !(json_is_object(args) && json_object_size(args) == 0)) {
        return ess_err_set(err, ESS_EMANIFEST, "%s takes no arguments", d->name);
    }
    if (d->args != NULL && !json_is_object(args)) {
        return ess_err_set(err, ESS_EMANIFEST, "%s needs arguments: {%s: {%s: ...}}", d->name,
                           d->name, d->required != NULL ? d->required : "FROM");
    }
    rc = d->args != NULL && strcmp(d->args, "*") != 0 ? check_arg_names(d, args, err) : ESS_OK;
    return rc == ESS_OK ? compile_args(d, args, s, err) : rc;
}

static void step_fini(struct step *s)
{
    size_t i;

    free(s->a);
    free(s->b);
    free(s->fmt);
    for (i = 0; i < s->nmap; i++) {
        free(s->keys[i]);
        free(s->vals[i]);
    }
    free(s->keys);
    free(s->vals);
}

void ess_transform_free(struct ess_transform *t)
{
    size_t i;

    if (t == NULL) {
        return;
    }
    for (i = 0; i < t->n; i++) {
        step_fini(&t->steps[i]);
    }
    free(t->steps);
    free(t->field);
    free(t);
}

/* The spec's steps: a list, or one step. */
static int compile_all(struct ess_transform *t, const json_t *spec, int *bad_step,
                       struct ess_err *err)
{
    size_t n = json_is_array(spec) ? json_array_size(spec) : 1;
    size_t i;
    int rc = ESS_OK;

    if (n == 0) {
        return ess_err_set(err, ESS_EMANIFEST, "an empty list of steps");
    }
    t->steps = calloc(n, sizeof(*t->steps));
    if (t->steps == NULL) {
        return tf_nomem(err);
    }
    for (i = 0; i < n && rc == ESS_OK; i++) {
        t->n = i + 1;
        rc = compile_step(json_is_array(spec) ? json_array_get(spec, i) : spec, &t->steps[i], err);
        if (rc != ESS_OK && json_is_array(spec)) {
            *bad_step = (int)i;
        }
    }
    return rc;
}

int ess_transform_new(const char *field, const json_t *spec, struct ess_transform **out,
                      int *bad_step, struct ess_err *err)
{
    struct ess_transform *t;
    int bad = -1;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (field == NULL || spec == NULL || out == NULL) {
        return ess_err_set(err, ESS_EINVAL, "transform: missing argument");
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return tf_nomem(err);
    }
    t->field = strdup(field);
    rc = t->field != NULL ? compile_all(t, spec, &bad, err) : tf_nomem(err);
    if (bad_step != NULL) {
        *bad_step = bad;
    }
    if (rc != ESS_OK) {
        ess_transform_free(t);
        return rc;
    }
    *out = t;
    return ESS_OK;
}

const char *ess_transform_field(const struct ess_transform *t)
{
    return t != NULL ? t->field : NULL;
}

/* ---------------------------------------------------------------- apply */

/* The text a text step works on, in *text (malloc'd); NULL when the value passes
 * through untouched (missing or null). ESS_ESHAPE for an object or array. */
static int step_input(const struct ess_transform *t, const char *step, json_t *in, char **text,
                      struct ess_err *err)
{
    const char *kind = NULL;

    *text = NULL;
    if (in == NULL || json_is_null(in)) {
        return ESS_OK;
    }
    *text = value_text(in, &kind);
    if (*text == NULL && kind != NULL) {
        return ess_err_set(err, ESS_ESHAPE, "transforms.%s: %s applies to text, got %s", t->field,
                           step, kind);
    }
    return *text != NULL ? ESS_OK : tf_nomem(err);
}

static void text_case(char *s, int upper)
{
    for (; *s != '\0'; s++) {
        if (upper && *s >= 'a' && *s <= 'z') {
            *s = (char)(*s - 'a' + 'A');
        } else if (!upper && *s >= 'A' && *s <= 'Z') {
            *s = (char)(*s - 'A' + 'a');
        }
    }
}

static char *text_trim(char *s)
{
    const char *ws = " \t\r\n\v\f";
    size_t start = strspn(s, ws);
    size_t end = strlen(s);

    while (end > start && strchr(ws, s[end - 1]) != NULL) {
        end--;
    }
    memmove(s, s + start, end - start);
    s[end - start] = '\0';
    return s;
}

/* s padded to width code points with pad (one code point); s is consumed. */
static char *text_pad(char *s, const struct step *st)
{
    size_t have = ess_text_utf8_len(s);
    size_t need = (size_t)st->n > have ? (size_t)st->n - have : 0;
    size_t plen = strlen(st->a);
    size_t slen = strlen(s);
    char *r;
    size_t i;

    if (need == 0) {
        return s;
    }
    r = malloc(slen + need * plen + 1);
    if (r == NULL) {
        free(s);
        return NULL;
    }
    for (i = 0; i < need; i++) {
        memcpy(r + (st->right ? 0 : slen) + i * plen, st->a, plen);
    }
    memcpy(r + (st->right ? need * plen : 0), s, slen);
    r[slen + need * plen] = '\0';
    free(s);
    return r;
}

static int run_date(const struct ess_transform *t, const struct step *s, char *text, json_t **out,
                    struct ess_err *err)
{
    struct tm tm;
    long off;
    int has_off;

    if (parse_time(s->a, text, &tm, &off, &has_off) != 0) {
        ess_err_set(err, ESS_ESHAPE, "transforms.%s: '%.80s' does not match %s", t->field, text,
                    s->a);
        free(text);
        return ESS_ESHAPE;
    }
    free(text);
    return text_out(format_time(s->b, &tm), out, err);
}

static int run_tz(const struct ess_transform *t, const struct step *s, char *text, json_t **out,
                  struct ess_err *err)
{
    struct tm tm, res;
    time_t when;
    long off;
    int has_off, gap = 0;
    int rc = ESS_OK;

    if (parse_time(s->fmt, text, &tm, &off, &has_off) != 0) {
        rc = ess_err_set(err, ESS_ESHAPE, "transforms.%s: '%.80s' does not match %s", t->field,
                         text, s->fmt);
        goto done;
    }
    if (has_off) {
        when = timegm(&tm) - off;
    } else if (ess_zone_to_epoch(s->a, &tm, &when, &gap) != 0) {
        rc = tf_nomem(err);
        goto done;
    }
    if (gap) {
        rc = ess_err_set(err, ESS_ESHAPE, "transforms.%s: '%.80s' does not exist in %s (a DST gap)",
                         t->field, text, s->a);
    } else if (ess_zone_from_epoch(s->b, when, &res) != 0) {
        rc = ess_err_set(err, ESS_ESHAPE, "transforms.%s: '%.80s' cannot be shown in %s", t->field,
                         text, s->b);
    } else {
        rc = text_out(format_zoned(s->fmt, &res), out, err);
    }
done:
    free(text);
    return rc;
}

/* concat: the texts of the listed fields, missing and null ones skipped. */
static int run_concat(const struct ess_transform *t, const struct step *s, const json_t *record,
                      json_t **out, struct ess_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc = ESS_OK;
    int first = 1;
    size_t i;

    if (f == NULL) {
        return tf_nomem(err);
    }
    for (i = 0; i < s->nmap && rc == ESS_OK; i++) {
        json_t *v = ess_event_path_get((json_t *)record, s->keys[i]);
        char *text = NULL;

        rc = step_input(t, "concat", v, &text, err);
        if (text != NULL) {
            fprintf(f, "%s%s", first ? "" : s->a, text);
            first = 0;
        }
        free(text);
    }
    fclose(f);
    if (rc != ESS_OK) {
        free(buf);
        return rc;
    }
    return text_out(buf, out, err);
}

static int run_map(const struct step *s, json_t *in, char *text, json_t **out, struct ess_err *err)
{
    size_t i;

    for (i = 0; i < s->nmap; i++) {
        if (strcmp(s->keys[i], text) == 0) {
            free(text);
            return text_out(strdup(s->vals[i]), out, err);
        }
    }
    free(text);
    *out = json_incref(in);
    return ESS_OK;
}

/* Steps that work on the value's text. */
static int run_text(const struct ess_transform *t, const struct step *s, json_t *in, json_t **out,
                    struct ess_err *err)
{
    char *text = NULL;
    int rc = step_input(t, step_defs[s->kind].name, in, &text, err);

    if (rc != ESS_OK || text == NULL) {
        *out = json_incref(in);
        return rc;
    }
    switch (s->kind) {
    case T_DATE:
        return run_date(t, s, text, out, err);
    case T_TZ:
        return run_tz(t, s, text, out, err);
    case T_MAP:
        return run_map(s, in, text, out, err);
    case T_UPPER:
    case T_LOWER:
        text_case(text, s->kind == T_UPPER);
        break;
    case T_TRIM:
        text_trim(text);
        break;
    case T_TRUNCATE:
        text[ess_text_utf8_offset(text, (size_t)s->n)] = '\0';
        break;
    default:
        text = text_pad(text, s);
        break;
    }
    return text_out(text, out, err);
}

static int run_step(const struct ess_transform *t, const struct step *s, const json_t *record,
                    json_t *in, json_t **out, struct ess_err *err)
{
    *out = NULL;
    switch (s->kind) {
    case T_DEFAULT:
        if (in != NULL && !json_is_null(in)) {
            *out = json_incref(in);
            return ESS_OK;
        }
        return text_out(strdup(s->a), out, err);
    case T_CONST:
        return text_out(strdup(s->a), out, err);
    case T_CONCAT:
        return run_concat(t, s, record, out, err);
    default:
        return run_text(t, s, in, out, err);
    }
}

int ess_transform_apply(const struct ess_transform *t, const json_t *record, json_t *value,
                        json_t **out, struct ess_err *err)
{
    json_t *cur;
    json_t *next = NULL;
    size_t i;
    int rc = ESS_OK;

    if (out != NULL) {
        *out = NULL;
    }
    if (t == NULL || out == NULL) {
        return ess_err_set(err, ESS_EINVAL, "transform: missing argument");
    }
    cur = json_incref(value);
    for (i = 0; i < t->n && rc == ESS_OK; i++) {
        rc = run_step(t, &t->steps[i], record, cur, &next, err);
        json_decref(cur);
        cur = next;
        next = NULL;
    }
    if (rc != ESS_OK) {
        json_decref(cur);
        return rc;
    }
    *out = cur;
    return ESS_OK;
}
