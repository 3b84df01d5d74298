/*
 * ess_jsonstream -- split a streamed JSON array into element texts (see the
 * header). One pass, one byte at a time, a state machine of four phases.
 */
#include "ess_jsonstream.h"

#include <stdlib.h>
#include <string.h>

enum phase {
    BEFORE,  /* whitespace, then '[' */
    EXPECT,  /* whitespace, then an element or (when no element yet) ']' */
    ELEMENT, /* inside an element */
    AFTER    /* after ']': only whitespace */
};

struct ess_jsonstream {
    ess_jsonstream_fn cb;
    void *arg;
    enum phase phase;
    int depth;     /* [ and { inside the element */
    int in_string; /* inside "..." */
    int escape;    /* the previous byte was a backslash in a string */
    int after_comma;
    char *buf;
    size_t len, cap;
    size_t count;
    unsigned long long offset; /* bytes consumed */
};

struct ess_jsonstream *ess_jsonstream_new(ess_jsonstream_fn cb, void *arg)
{
    struct ess_jsonstream *js = calloc(1, sizeof(*js));

    if (js != NULL) {
        js->cb = cb;
        js->arg = arg;
    }
    return js;
}

void ess_jsonstream_free(struct ess_jsonstream *js)
{
    if (js != NULL) {
        free(js->buf);
        free(js);
    }
}

size_t ess_jsonstream_count(const struct ess_jsonstream *js)
{
    return js->count;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int put(struct ess_jsonstream *js, char c, struct ess_err *err)
{
    size_t cap;
    char *nb;

    if (js->len + 2 > js->cap) {
        if (js->len + 2 > ESS_JSONSTREAM_ELEMENT_MAX) {
            return ess_err_set(err, ESS_EPARSE, "element %zu at byte %llu is larger than %u bytes",
                               js->count, js->offset, ESS_JSONSTREAM_ELEMENT_MAX);
        }
        cap = js->cap == 0 ? 1024 : js->cap * 2;
        nb = realloc(js->buf, cap);
        if (nb == NULL) {
            return ess_err_set(err, ESS_ENOMEM, "out of memory");
        }
        js->buf = nb;
        js->cap = cap;
    }
    js->buf[js->len++] = c;
    return ESS_OK;
}

/* The element ends (',' or ']' at depth 0): hand it over. */
static int emit(struct ess_jsonstream *js)
{
    int rc;

    while (js->len > 0 && is_space(js->buf[js->len - 1])) {
        js->len--;
    }
    js->buf[js->len] = '\0';
    rc = js->cb(js->arg, js->buf, js->len, js->count);
    js->count++;
    js->len = 0;
    return rc;
}

/* One byte inside an element. */
static int element_byte(struct ess_jsonstream *js, char c, struct ess_err *err)
{
    int rc;

    if (js->in_string) {
        if (js->escape) {
            js->escape = 0;
        } else if (c == '\\') {
            js->escape = 1;
        } else if (c == '"') {
            js->in_string = 0;
        }
        return put(js, c, err);
    }
    if (js->depth == 0 && (c == ',' || c == ']')) {
        rc = emit(js);
        js->phase = c == ',' ? EXPECT : AFTER;
        js->after_comma = c == ',';
        return rc;
    }
    if (c == '"') {
        js->in_string = 1;
        js->escape = 0;
    } else if (c == '[' || c == '{') {
        js->depth++;
    } else if ((c == ']' || c == '}') && js->depth > 0) {
        js->depth--;
    }
    return put(js, c, err);
}

static int one_byte(struct ess_jsonstream *js, char c, struct ess_err *err)
{
    switch (js->phase) {
    case BEFORE:
        if (c == '[') {
            js->phase = EXPECT;
        } else if (!is_space(c)) {
            return ess_err_set(err, ESS_EPARSE, "byte %llu: expected a JSON array ('['), got '%c'",
                               js->offset, c);
        }
        return ESS_OK;
    case EXPECT:
        if (is_space(c)) {
            return ESS_OK;
        }
        if (c == ']' && !js->after_comma) {
            js->phase = AFTER;
            return ESS_OK;
        }
        if (c == ']' || c == ',') {
            return ess_err_set(err, ESS_EPARSE, "byte %llu: expected an element, got '%c'",
                               js->offset, c);
        }
        js->phase = ELEMENT;
        js->depth = 0;
        js->in_string = 0;
        return element_byte(js, c, err);
    case ELEMENT:
        return element_byte(js, c, err);
    case AFTER:
    default:
        return is_space(c)
                   ? ESS_OK
                   : ess_err_set(err, ESS_EPARSE, "byte %llu: '%c' after the end of the array",
                                 js->offset, c);
    }
}

int ess_jsonstream_feed(struct ess_jsonstream *js, const char *data, size_t len,
                        struct ess_err *err)
{
    size_t i;
    int rc;

    for (i = 0; i < len; i++) {
        rc = one_byte(js, data[i], err);
        if (rc != ESS_OK) {
            return rc;
        }
        js->offset++;
    }
    return ESS_OK;
}

int ess_jsonstream_finish(struct ess_jsonstream *js, struct ess_err *err)
{
    if (js->phase != AFTER) {
        return ess_err_set(err, ESS_EPARSE,
                           "the JSON array ends early, after %llu bytes and "
                           "%zu element(s)",
                           js->offset, js->count);
    }
    return ESS_OK;
}
