/*
 * ess_batch -- the file being built for a file-drop partner; see ess_batch.h.
 */
#include "ess_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_NAME_MAX 256

struct ess_batch {
    char *buf; /* the file's bytes */
    size_t len;
    size_t cap;
    void **items; /* borrowed, in the order added */
    size_t *ends; /* ends[i]: offset just past record i's line in buf */
    size_t n;
    size_t cap_items;
    long long first_seq;
    long long opened_ms;
    int sealed;
    char name[BATCH_NAME_MAX];
};

struct ess_batch *ess_batch_new(void)
{
    return calloc(1, sizeof(struct ess_batch));
}

void ess_batch_free(struct ess_batch *b)
{
    if (b == NULL) {
        return;
    }
    free(b->buf);
    free(b->items);
    free(b->ends);
    free(b);
}

/* Length of the first line of a csv text (CRLF included), quotes respected; 0
 * when there is no complete first line. */
static size_t batch_csv_first_line(const char *s, size_t len)
{
    int quoted = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == '"') {
            quoted = !quoted;
        } else if (!quoted && s[i] == '\n') {
            return i + 1;
        }
    }
    return 0;
}

static int batch_reserve(struct ess_batch *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *grown;
    void **items;

    while (cap < b->len + more + 1) {
        cap *= 2;
    }
    if (cap != b->cap) {
        grown = realloc(b->buf, cap);
        if (grown == NULL) {
            return ESS_ENOMEM;
        }
        b->buf = grown;
        b->cap = cap;
    }
    if (b->n == b->cap_items) {
        size_t ncap = b->cap_items ? b->cap_items * 2 : 64;
        size_t *ends = realloc(b->ends, ncap * sizeof(*ends));

        if (ends == NULL) {
            return ESS_ENOMEM;
        }
        b->ends = ends;
        items = realloc(b->items, ncap * sizeof(*items));
        if (items == NULL) {
            return ESS_ENOMEM;
        }
        b->items = items;
        b->cap_items = ncap;
    }
    return ESS_OK;
}

int ess_batch_add(struct ess_batch *b, void *item, long long seq, const char *rec, size_t len,
                  int strip_header, long long now_ms)
{
    size_t skip = 0;
    int newline;

    if (b == NULL || b->sealed || (rec == NULL && len > 0)) {
        return ESS_EINVAL;
    }
    if (rec == NULL) {
        rec = ""; /* an empty record */
    }
    if (strip_header && b->n > 0) {
        skip = batch_csv_first_line(rec, len);
    }
    newline = len == 0 || len - skip == 0 || rec[len - 1] != '\n';
    if (batch_reserve(b, len - skip + 1) != ESS_OK) {
        return ESS_ENOMEM;
    }
    memcpy(b->buf + b->len, rec + skip, len - skip);
    b->len += len - skip;
    if (newline) {
        b->buf[b->len++] = '\n';
    }
    b->buf[b->len] = '\0';
    if (b->n == 0) {
        b->first_seq = seq;
        b->opened_ms = now_ms;
    }
    b->ends[b->n] = b->len;
    b->items[b->n++] = item;
    return ESS_OK;
}

long ess_batch_find(const struct ess_batch *b, const void *item)
{
    size_t i;

    for (i = 0; b != NULL && i < b->n; i++) {
        if (b->items[i] == item) {
            return (long)i;
        }
    }
    return -1;
}

int ess_batch_replace(struct ess_batch *b, size_t i, const char *rec, size_t len, int strip_header)
{
    size_t skip = 0;
    size_t start, old_len, new_len, j;
    int newline;

    if (b == NULL || b->sealed || i >= b->n || (rec == NULL && len > 0)) {
        return ESS_EINVAL;
    }
    if (rec == NULL) {
        rec = ""; /* an empty record */
    }
    if (strip_header && i > 0) {
        skip = batch_csv_first_line(rec, len);
    }
    newline = len == 0 || len - skip == 0 || rec[len - 1] != '\n';
    start = i > 0 ? b->ends[i - 1] : 0;
    old_len = b->ends[i] - start;
    new_len = len - skip + (size_t)newline;
    if (new_len > old_len && batch_reserve(b, new_len - old_len) != ESS_OK) {
        return ESS_ENOMEM;
    }
    memmove(b->buf + start + new_len, b->buf + b->ends[i], b->len - b->ends[i] + 1);
    memcpy(b->buf + start, rec + skip, len - skip);
    if (newline) {
        b->buf[start + new_len - 1] = '\n';
    }
    b->len = b->len - old_len + new_len;
    for (j = i; j < b->n; j++) {
        b->ends[j] = b->ends[j] - old_len + new_len;
    }
    return ESS_OK;
}

size_t ess_batch_count(const struct ess_batch *b)
{
    return b->n;
}

void *ess_batch_item(const struct ess_batch *b, size_t i)
{
    return i < b->n ? b->items[i] : NULL;
}

long long ess_batch_due_ms(const struct ess_batch *b, size_t batch_max, long batch_sec,
                           long long now_ms)
{
    long long left;

    if (b->n == 0 || b->sealed) {
        return -1;
    }
    if (b->n >= batch_max) {
        return 0;
    }
    left = b->opened_ms + (long long)batch_sec * 1000 - now_ms;
    return left > 0 ? left : 0;
}

/* Append src to out at *at; -1 when it does not fit. */
static int batch_put(char *out, size_t outlen, size_t *at, const char *src)
{
    size_t n = strlen(src);

    if (*at + n >= outlen) {
        return -1;
    }
    memcpy(out + *at, src, n + 1);
    *at += n;
    return 0;
}

/* One {placeholder} at tmpl (after the '{'): its value in val; the length of
 * its name with the closing brace, 0 when it is not one we know. */
static size_t batch_placeholder(const char *tmpl, const char *id, long long seq, time_t ts,
                                char *val, size_t vlen)
{
    struct tm tm;

    if (strncmp(tmpl, "id}", 3) == 0) {
        snprintf(val, vlen, "%s", id);
        return 3;
    }
    if (strncmp(tmpl, "seq}", 4) == 0) {
        snprintf(val, vlen, "%lld", seq);
        return 4;
    }
    if (strncmp(tmpl, "ts}", 3) == 0 && gmtime_r(&ts, &tm) != NULL &&
        strftime(val, vlen, "%Y%m%dT%H%M%SZ", &tm) > 0) {
        return 3;
    }
    return 0;
}

int ess_batch_file_name(const char *tmpl, const char *id, long long seq, time_t ts, char *out,
                        size_t outlen)
{
    char val[BATCH_NAME_MAX];
    char one[2] = {0, 0};
    size_t at = 0;
    size_t used;

    if (outlen == 0) {
        return ESS_EINVAL;
    }
    out[0] = '\0';
    while (*tmpl != '\0') {
        if (*tmpl == '{') {
            used = batch_placeholder(tmpl + 1, id, seq, ts, val, sizeof(val));
            if (used == 0 || batch_put(out, outlen, &at, val) != 0) {
                return ESS_EINVAL;
            }
            tmpl += used + 1;
            continue;
        }
        one[0] = *tmpl++;
        if (one[0] == '}' || batch_put(out, outlen, &at, one) != 0) {
            return ESS_EINVAL;
        }
    }
    return at > 0 ? ESS_OK : ESS_EINVAL;
}

int ess_batch_seal(struct ess_batch *b, const char *tmpl, const char *id, time_t now,
                   struct ess_err *err)
{
    if (b->sealed) {
        return ESS_OK;
    }
    if (b->n == 0) {
        return ess_err_set(err, ESS_EINVAL, "an empty batch has no file");
    }
    if (ess_batch_file_name(tmpl, id, b->first_seq, now, b->name, sizeof(b->name)) != ESS_OK) {
        return ess_err_set(err, ESS_EINVAL, "file_name: '%s' does not expand to a file name", tmpl);
    }
    b->sealed = 1;
    return ESS_OK;
}

int ess_batch_sealed(const struct ess_batch *b)
{
    return b->sealed;
}

const char *ess_batch_name(const struct ess_batch *b)
{
    return b->sealed ? b->name : "";
}

char *ess_batch_body(const struct ess_batch *b, size_t *len)
{
    char *copy = malloc(b->len + 1);

    if (copy == NULL) {
        return NULL;
    }
    if (b->len > 0) {
        memcpy(copy, b->buf, b->len);
    }
    copy[b->len] = '\0';
    *len = b->len;
    return copy;
}

void ess_batch_reset(struct ess_batch *b)
{
    b->len = 0;
    b->n = 0;
    b->first_seq = 0;
    b->opened_ms = 0;
    b->sealed = 0;
    b->name[0] = '\0';
}
