/*
 * ess_records -- partner record readers; see ess_records.h.
 *
 * DESIGN
 * - CSV is read byte by byte into one growing field buffer reused for every
 *   field; a quoted field may hold commas, newlines and doubled quotes.
 * - JSON is jansson's; NUL bytes inside strings are refused by jansson unless
 *   asked, so every value read here is a C string.
 */
#include "ess_records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ess_event.h"

struct rec_buf {
    char *p;
    size_t len;
    size_t cap;
};

/* Append one byte, keeping the buffer NUL-terminated; 0 when out of memory. */
static int buf_put(struct rec_buf *b, char c)
{
    size_t cap;
    char *nb;

    if (b->len + 2 > b->cap) {
        cap = b->cap == 0 ? 64 : b->cap * 2;
        nb = realloc(b->p, cap);
        if (nb == NULL) {
            return 0;
        }
        b->p = nb;
        b->cap = cap;
    }
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
    return 1;
}

/* One RFC 4180 field starting at s[*i] into b. Returns -1 on an unterminated
 * quote or out of memory. *end gets the character that ended it (',' '\n'
 * '\r' or 0 at the end of input). */
static int csv_field(const char *s, size_t n, size_t *i, struct rec_buf *b, char *end)
{
    size_t j = *i;
    int quoted = j < n && s[j] == '"';
    int ok = 1;

    b->len = 0;
    if (b->p != NULL) {
        b->p[0] = '\0';
    }
    j += (size_t)quoted;
    while (j < n && ok) {
        if (quoted && s[j] == '"' && j + 1 < n && s[j + 1] == '"') {
            ok = buf_put(b, '"');
            j += 2;
        } else if (quoted && s[j] == '"') {
            quoted = 0;
            j++;
        } else if (!quoted && (s[j] == ',' || s[j] == '\n' || s[j] == '\r')) {
            break;
        } else {
            ok = buf_put(b, s[j]);
            j++;
        }
    }
    if (quoted || !ok) {
        return -1;
    }
    *end = j < n ? s[j] : '\0';
    j += j < n && s[j] == '\r';
    *i = j < n ? j + 1 : j;
    return 0;
}

/* One line as an array of strings; NULL on a bad quote or a field that is not
 * UTF-8. A field holding a NUL byte is cut there (values are C strings). */
static json_t *csv_line(const char *s, size_t n, size_t *i, struct rec_buf *b)
{
    json_t *row = json_array();
    json_t *v;
    char end = ',';

    while (row != NULL && end == ',') {
        if (csv_field(s, n, i, b, &end) != 0) {
            json_decref(row);
            return NULL;
        }
        v = json_string(b->p != NULL ? b->p : "");
        if (v == NULL || json_array_append_new(row, v) != 0) {
            json_decref(row);
            return NULL;
        }
    }
    return row;
}

static int csv_blank(json_t *row)
{
    return json_array_size(row) == 1 && json_string_length(json_array_get(row, 0)) == 0;
}

static void csv_record(json_t *head, json_t *row, json_t *out)
{
    json_t *rec = json_object();
    size_t c;

    for (c = 0; c < json_array_size(head); c++) {
        json_object_set(rec, json_string_value(json_array_get(head, c)), json_array_get(row, c));
    }
    json_array_append_new(out, rec);
}

int ess_records_csv(const char *s, size_t n, json_t *out, struct ess_err *err)
{
    struct rec_buf b = {NULL, 0, 0};
    json_t *head;
    json_t *row;
    size_t i = 0;
    int rc = ESS_OK;

    head = csv_line(s, n, &i, &b);
    if (head == NULL) {
        rc = ess_err_set(err, ESS_EPARTNER,
                         "partner: CSV header has an unterminated quote "
                         "or is not UTF-8");
    }
    while (rc == ESS_OK && i < n) {
        row = csv_line(s, n, &i, &b);
        if (row == NULL) {
            rc = ess_err_set(err, ESS_EPARTNER,
                             "partner: CSV line before byte %zu has an unterminated "
                             "quote or is not UTF-8",
                             i);
        } else if (json_array_size(row) == json_array_size(head)) {
            csv_record(head, row, out);
        } else if (!csv_blank(row)) {
            rc = ess_err_set(err, ESS_EPARTNER,
                             "partner: CSV line before byte %zu does not match the header", i);
        }
        json_decref(row);
    }
    json_decref(head);
    free(b.p);
    return rc;
}

int ess_records_json(const char *s, size_t n, const char *records_path, const char *next_path,
                     json_t *out, char **next, struct ess_err *err)
{
    json_t *doc = json_loadb(s != NULL ? s : "", n, JSON_DECODE_ANY, NULL);
    json_t *recs = doc;
    json_t *link = NULL;
    int rc = ESS_OK;

    if (next != NULL) {
        *next = NULL;
    }
    if (doc == NULL) {
        return ess_err_set(err, ESS_EPARTNER, "partner: answer is not JSON");
    }
    if (records_path != NULL) {
        recs = json_is_object(doc) ? ess_event_path_get(doc, records_path) : NULL;
    }
    if (!json_is_array(recs)) {
        rc = ess_err_set(err, ESS_EPARTNER, "partner: no records array at %s",
                         records_path != NULL ? records_path : "the top level");
    } else {
        json_array_extend(out, recs);
    }
    if (json_is_object(doc) && next_path != NULL) {
        link = ess_event_path_get(doc, next_path);
    }
    if (rc == ESS_OK && next != NULL && json_is_string(link) && json_string_length(link) > 0) {
        *next = strdup(json_string_value(link));
    }
    json_decref(doc);
    return rc;
}

int ess_records_body(const char *s, size_t n, json_t **records, struct ess_err *err)
{
    json_error_t jerr;
    json_t *doc;
    int rc = ESS_OK;

    *records = NULL;
    doc = json_loadb(s != NULL ? s : "", n, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        return ess_err_set(err, ESS_EPARSE, "body is not JSON: %s (line %d, column %d)", jerr.text,
                           jerr.line, jerr.column);
    }
    if (json_is_object(doc)) {
        *records = json_array();
        if (*records == NULL || json_array_append(*records, doc) != 0) {
            rc = ess_err_set(err, ESS_ENOMEM, "out of memory");
        }
    } else if (json_is_array(doc) && json_array_size(doc) > 0) {
        *records = json_incref(doc);
    } else {
        rc = ess_err_set(err, ESS_EPARSE,
                         "body must be one JSON object or a non-empty array of objects");
    }
    json_decref(doc);
    if (rc != ESS_OK) {
        json_decref(*records);
        *records = NULL;
    }
    return rc;
}

int ess_records_scalar_text(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v)) {
        snprintf(buf, len, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, len, "%.17g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
    } else {
        return 0;
    }
    return 1;
}
