/*
 * ess_jsoncanon -- a one-pass check that a JSON text is jansson's compact
 * encoding of itself. See ess_jsoncanon.h for what is accepted and why.
 */
#include "ess_jsoncanon.h"

#include <string.h>

#define CANON_MAX_DIGITS 18 /* any 18-digit integer fits a json_int_t (long long) */

struct canon {
    const unsigned char *p;
    const unsigned char *end;
};

struct span {
    const unsigned char *s;
    size_t n;
};

static int canon_value(struct canon *c, int depth);

/* One UTF-8 sequence starting at c->p (its first byte >= 0x80), as jansson's
 * utf8_check_first/utf8_check_full accept it; 1 and c->p past it, or 0. */
static int canon_utf8(struct canon *c)
{
    unsigned u = *c->p;
    unsigned long v;
    size_t n, i;

    if (u >= 0xC2 && u <= 0xDF) {
        n = 2;
        v = u & 0x1F;
    } else if (u >= 0xE0 && u <= 0xEF) {
        n = 3;
        v = u & 0x0F;
    } else if (u >= 0xF0 && u <= 0xF4) {
        n = 4;
        v = u & 0x07;
    } else {
        return 0; /* a continuation byte, 0xC0/0xC1 (overlong ASCII) or past 0xF4 */
    }
    if ((size_t)(c->end - c->p) < n) {
        return 0;
    }
    for (i = 1; i < n; i++) {
        u = c->p[i];
        if (u < 0x80 || u > 0xBF) {
            return 0;
        }
        v = (v << 6) | (u & 0x3F);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (n == 3 && v < 0x800) ||
        (n == 4 && v < 0x10000)) {
        return 0;
    }
    c->p += n;
    return 1;
}

/* A string at c->p (on its opening quote); its raw bytes between the quotes
 * in *sp (escapes kept: only one-to-one ones are accepted, so equal raw
 * bytes mean equal strings). */
static int canon_string(struct canon *c, struct span *sp)
{
    const unsigned char *start;

    c->p++; /* the opening quote */
    start = c->p;
    while (c->p < c->end) {
        unsigned char b = *c->p;

        if (b == '"') {
            sp->s = start;
            sp->n = (size_t)(c->p - start);
            c->p++;
            return 1;
        }
        if (b == '\\') {
            if (c->p + 1 >= c->end || strchr("\"\\bfnrt", c->p[1]) == NULL || c->p[1] == '\0') {
                return 0; /* \u, \/ or an invalid escape */
            }
            c->p += 2;
        } else if (b < 0x20) {
            return 0; /* a raw control character: not JSON */
        } else if (b < 0x80) {
            c->p++;
        } else if (!canon_utf8(c)) {
            return 0;
        }
    }
    return 0; /* unterminated */
}

static int canon_integer(struct canon *c)
{
    const unsigned char *digits;

    if (*c->p == '-') {
        c->p++;
    }
    digits = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        c->p++;
    }
    if (c->p == digits || c->p - digits > CANON_MAX_DIGITS ||
        (digits[0] == '0' && (c->p - digits > 1 || digits[-1] == '-'))) {
        return 0; /* no digit, too long, a leading zero or "-0" */
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) {
        return 0; /* a real: jansson writes it its own way */
    }
    return 1;
}

static int canon_word(struct canon *c, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) {
        return 0;
    }
    c->p += n;
    return 1;
}

/* After a member or element: the closing bracket (1, taken), a comma (0,
 * taken: another follows) or anything else (-1). */
static int canon_next(struct canon *c, unsigned char close)
{
    if (c->p >= c->end || (*c->p != close && *c->p != ',')) {
        return -1;
    }
    return *c->p++ == close;
}

static int canon_array(struct canon *c, int depth)
{
    int next;

    c->p++; /* [ */
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 1;
    }
    for (;;) {
        if (!canon_value(c, depth + 1)) {
            return 0;
        }
        next = canon_next(c, ']');
        if (next != 0) {
            return next > 0;
        }
    }
}

static int canon_object(struct canon *c, int depth)
{
    struct span keys[ESS_JSONCANON_MAX_KEYS];
    size_t n = 0, i;
    int next;

    c->p++; /* { */
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
    for (;;) {
        if (n == ESS_JSONCANON_MAX_KEYS || c->p >= c->end || *c->p != '"' ||
            !canon_string(c, &keys[n])) {
            return 0;
        }
        for (i = 0; i < n; i++) {
            if (keys[i].n == keys[n].n && memcmp(keys[i].s, keys[n].s, keys[n].n) == 0) {
                return 0; /* a duplicate key */
            }
        }
        n++;
        if (c->p >= c->end || *c->p != ':') {
            return 0;
        }
        c->p++;
        if (!canon_value(c, depth + 1)) {
            return 0;
        }
        next = canon_next(c, '}');
        if (next != 0) {
            return next > 0;
        }
    }
}

static int canon_value(struct canon *c, int depth)
{
    struct span s;

    if (c->p >= c->end || depth > ESS_JSONCANON_MAX_DEPTH) {
        return 0;
    }
    switch (*c->p) {
    case '{':
        return canon_object(c, depth);
    case '[':
        return canon_array(c, depth);
    case '"':
        return canon_string(c, &s);
    case 't':
        return canon_word(c, "true");
    case 'f':
        return canon_word(c, "false");
    case 'n':
        return canon_word(c, "null");
    default:
        return (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && canon_integer(c);
    }
}

int ess_jsoncanon_compact(const char *text, size_t len)
{
    struct canon c;

    if (text == NULL || len == 0 || text[0] != '{') {
        return 0;
    }
    c.p = (const unsigned char *)text;
    c.end = c.p + len;
    return canon_object(&c, 1) && c.p == c.end;
}

/* A path segment that a raw (escaped) key can equal only when they are the
 * same bytes: nothing a key would have to escape. */
static int canon_segment_plain(const char *seg, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (seg[i] == '"' || seg[i] == '\\' || (unsigned char)seg[i] < 0x20) {
            return 0;
        }
    }
    return n > 0;
}

int ess_jsoncanon_member(const char *text, size_t len, const char *path, const char **val,
                         size_t *vlen)
{
    struct canon c;
    struct span key;
    const unsigned char *start;
    const char *seg = path;
    const char *dot;
    size_t n;
    int found;

    if (text == NULL || path == NULL) {
        return 0;
    }
    c.p = (const unsigned char *)text;
    c.end = c.p + len;
    for (;;) {
        dot = strchr(seg, '.');
        n = dot != NULL ? (size_t)(dot - seg) : strlen(seg);
        if (!canon_segment_plain(seg, n) || c.p >= c.end || *c.p != '{') {
            return 0;
        }
        c.p++;
        found = 0;
        while (!found && c.p < c.end && *c.p == '"') {
            if (!canon_string(&c, &key) || c.p >= c.end || *c.p != ':') {
                return 0;
            }
            c.p++;
            start = c.p;
            found = key.n == n && memcmp(key.s, seg, n) == 0;
            if (found && dot != NULL) {
                break; /* descend: c.p is on the member's value */
            }
            if (!canon_value(&c, 1)) {
                return 0;
            }
            if (found) {
                *val = (const char *)start;
                *vlen = (size_t)(c.p - start);
                return 1;
            }
            if (c.p < c.end && *c.p == ',') {
                c.p++;
            }
        }
        if (!found) {
            return 0;
        }
        seg = dot + 1;
    }
}
