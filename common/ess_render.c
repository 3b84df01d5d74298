/*
 * ess_render -- shaped record -> partner body (json, form, xml, soap, csv, fixed).
 *
 * DESIGN
 * Every renderer writes into an open_memstream, so each one is a short walk of
 * the record with no size arithmetic; the stream is closed once in
 * ess_render_body, which owns the buffer until it is handed to the caller.
 * Key order is computed once (render_order) and shared by every format but json.
 * No XML library is linked: writing XML needs only name checks and escaping,
 * and reading a SOAP fault needs only a bounded scan for two elements.
 */
#define _GNU_SOURCE /* open_memstream, memmem, strcasestr */
#include "ess_render.h"

#include "ess_sign.h"
#include "ess_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ess_event.h"
#include "ess_jsoncanon.h"

#define XML_MAX_DEPTH 64
#define SOAP_ENV_NS "http://schemas.xmlsoap.org/soap/envelope/"

struct rctx {
    const struct ess_manifest *m;
    const char *fmt; /* format name, for messages */
    FILE *f;
    struct ess_err *err;
};

/* ---------------------------------------------------------------- order and text */

static const char *rename_of(const struct ess_manifest *m, const char *src)
{
    size_t i;

    for (i = 0; i < m->rename.n; i++) {
        if (strcmp(m->rename.keys[i], src) == 0) {
            return m->rename.vals[i];
        }
    }
    return NULL;
}

static void order_add(json_t *rec, const char *name, size_t nlen, const char **keys, size_t *n)
{
    void *it;
    char buf[256];
    size_t i;

    snprintf(buf, sizeof(buf), "%.*s", (int)nlen, name);
    it = json_object_iter_at(rec, buf);
    if (it == NULL) {
        return;
    }
    for (i = 0; i < *n; i++) {
        if (strcmp(keys[i], buf) == 0) {
            return;
        }
    }
    keys[(*n)++] = json_object_iter_key(it);
}

/* The record's keys (borrowed from rec) in render order; caller frees the array. */
static const char **render_order(const struct ess_manifest *m, json_t *rec, size_t *n)
{
    const char **keys = calloc(json_object_size(rec) + 1, sizeof(*keys));
    const char *k;
    const char *to;
    json_t *v;
    size_t i;

    *n = 0;
    if (keys == NULL) {
        return NULL;
    }
    for (i = 0; i < m->fields.n; i++) {
        to = rename_of(m, m->fields.v[i]);
        k = to != NULL ? to : m->fields.v[i];
        order_add(rec, k, to != NULL ? strlen(k) : strcspn(k, "."), keys, n);
    }
    json_object_foreach(rec, k, v)
    {
        order_add(rec, k, strlen(k), keys, n);
    }
    return keys;
}

/* A value as flat text (csv, fixed, form): malloc'd, NULL when out of memory. */
static char *flat_text(const json_t *v)
{
    char buf[64];

    switch (json_typeof(v)) {
    case JSON_STRING:
        return strndup(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        return strdup(buf);
    case JSON_TRUE:
        return strdup("true");
    case JSON_FALSE:
        return strdup("false");
    case JSON_NULL:
        return strdup("");
    default:
        return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    }
}

/* A printable copy of a record key for a message (keys come from events). */
static const char *shown(const char *s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 1 < len; i++) {
        buf[i] = ((unsigned char)s[i] >= 0x20 && s[i] != 0x7f) ? s[i] : '?';
    }
    buf[i] = '\0';
    return buf;
}

static int render_nomem(struct ess_err *err)
{
    return ess_err_set(err, ESS_ENOMEM, "out of memory while rendering");
}

/* ---------------------------------------------------------------- form */

static void form_escape(FILE *f, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;

    for (; *p != '\0'; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            fputc(*p, f);
        } else if (*p == ' ') {
            fputc('+', f);
        } else {
            fputc('%', f);
            fputc(hex[*p >> 4], f);
            fputc(hex[*p & 15], f);
        }
    }
}

static int render_form(struct rctx *r, json_t *rec, const char **keys, size_t n)
{
    char *text;
    size_t i;

    for (i = 0; i < n; i++) {
        text = flat_text(json_object_get(rec, keys[i]));
        if (text == NULL) {
            return render_nomem(r->err);
        }
        fputs(i ? "&" : "", r->f);
        form_escape(r->f, keys[i]);
        fputc('=', r->f);
        form_escape(r->f, text);
        free(text);
    }
    return ESS_OK;
}

/* ---------------------------------------------------------------- csv */

static void csv_field(FILE *f, const char *s, char delim)
{
    const char *p;

    if (strchr(s, delim) == NULL && strpbrk(s, "\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (p = s; *p != '\0'; p++) {
        if (*p == '"') {
            fputc('"', f);
        }
        fputc(*p, f);
    }
    fputc('"', f);
}

static int render_csv(struct rctx *r, json_t *rec, const char **keys, size_t n)
{
    const char *d = r->m->csv.delimiter;
    char delim = d != NULL && d[0] != '\0' ? d[0] : ',';
    char *text;
    size_t i;

    for (i = 0; r->m->csv.header && i < n; i++) {
        if (i > 0) {
            fputc(delim, r->f);
        }
        csv_field(r->f, keys[i], delim);
    }
    fputs(r->m->csv.header ? "\r\n" : "", r->f);
    for (i = 0; i < n; i++) {
        text = flat_text(json_object_get(rec, keys[i]));
        if (text == NULL) {
            return render_nomem(r->err);
        }
        if (i > 0) {
            fputc(delim, r->f);
        }
        csv_field(r->f, text, delim);
        free(text);
    }
    fputs("\r\n", r->f);
    return ESS_OK;
}

/* ---------------------------------------------------------------- fixed */

/* The column's value cut to width per its rule; NULL + ESS_ESHAPE when refused. */
static const char *fixed_fit(struct rctx *r, const struct ess_column *c, const char *text,
                             size_t have, int *rc)
{
    *rc = ESS_OK;
    if (strpbrk(text, "\r\n") != NULL) {
        *rc = ess_err_set(r->err, ESS_ESHAPE, "fixed: field '%s' contains a line break", c->field);
        return NULL;
    }
    if (have <= (size_t)c->width) {
        return text;
    }
    if (c->truncate == ESS_TRUNCATE_ERROR) {
        *rc = ess_err_set(r->err, ESS_ESHAPE,
                          "fixed: field '%s' is %zu characters, wider than its column (%d)",
                          c->field, have, c->width);
        return NULL;
    }
    if (c->truncate == ESS_TRUNCATE_LEFT) {
        return text + ess_text_utf8_offset(text, have - (size_t)c->width);
    }
    return text; /* right: the writer stops at width */
}

static int fixed_column(struct rctx *r, json_t *rec, const struct ess_column *c)
{
    json_t *v = ess_event_path_get(rec, c->field);
    char *text = v != NULL ? flat_text(v) : strdup("");
    const char *fit;
    size_t have, i;
    int rc;

    if (text == NULL) {
        return render_nomem(r->err);
    }
    have = ess_text_utf8_len(text);
    fit = fixed_fit(r, c, text, have, &rc);
    if (fit != NULL) {
        have = have > (size_t)c->width ? (size_t)c->width : have;
        for (i = 0; c->align == ESS_ALIGN_RIGHT && i < (size_t)c->width - have; i++) {
            fputs(c->pad != NULL ? c->pad : " ", r->f);
        }
        fwrite(fit, 1, ess_text_utf8_offset(fit, have), r->f);
        for (i = 0; c->align == ESS_ALIGN_LEFT && i < (size_t)c->width - have; i++) {
            fputs(c->pad != NULL ? c->pad : " ", r->f);
        }
    }
    free(text);
    return rc;
}

static int render_fixed(struct rctx *r, json_t *rec)
{
    size_t i;
    int rc;

    if (r->m->n_columns == 0) {
        return ess_err_set(r->err, ESS_EINVAL, "fixed: the manifest has no columns");
    }
    for (i = 0; i < r->m->n_columns; i++) {
        rc = fixed_column(r, rec, &r->m->columns[i]);
        if (rc != ESS_OK) {
            return rc;
        }
    }
    fputc('\n', r->f);
    return ESS_OK;
}

/* ---------------------------------------------------------------- xml and soap */

/* An XML 1.0 element name without a prefix: a letter, '_' or non-ASCII first,
 * then also digits, '-' and '.'. Non-ASCII is accepted as a whole (UTF-8). */
static int xml_name_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' || *p >= 0x80)) {
        return 0;
    }
    for (p++; *p != '\0'; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || *p >= 0x80)) {
            return 0;
        }
    }
    return 1;
}

/* The five XML entities, and CR as a reference so a parser's line-end
 * normalisation cannot turn it into LF. */
static const char *xml_entity(unsigned char c)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&apos;";
    case '\r':
        return "&#13;";
    default:
        return NULL;
    }
}

/* Escaped character data; ESS_ESHAPE for a control character XML 1.0 cannot hold. */
static int xml_text(struct rctx *r, const char *name, const char *s, size_t n)
{
    char sh[81];
    size_t i;
    unsigned char c;

    for (i = 0; i < n; i++) {
        c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            return ess_err_set(r->err, ESS_ESHAPE,
                               "%s: field '%s' holds control character U+%04X, which XML cannot "
                               "carry",
                               r->fmt, shown(name, sh, sizeof(sh)), c);
        }
        if (xml_entity(c) != NULL) {
            fputs(xml_entity(c), r->f);
        } else {
            fputc(c, r->f);
        }
    }
    return ESS_OK;
}

static int xml_element(struct rctx *r, const char *name, json_t *v, int depth);

static int xml_children(struct rctx *r, json_t *obj, int depth)
{
    const char *k;
    json_t *v;
    int rc;

    json_object_foreach(obj, k, v)
    {
        rc = xml_element(r, k, v, depth + 1);
        if (rc != ESS_OK) {
            return rc;
        }
    }
    return ESS_OK;
}

static int xml_scalar(struct rctx *r, const char *name, json_t *v)
{
    char *text;
    int rc;

    if (json_is_string(v)) {
        return xml_text(r, name, json_string_value(v), json_string_length(v));
    }
    text = flat_text(v);
    if (text == NULL) {
        return render_nomem(r->err);
    }
    rc = xml_text(r, name, text, strlen(text));
    free(text);
    return rc;
}

/* <name>v</name>; an array repeats the element, null is <name/>. */
static int xml_element(struct rctx *r, const char *name, json_t *v, int depth)
{
    char sh[81];
    size_t i;
    int rc = ESS_OK;

    if (depth > XML_MAX_DEPTH) {
        return ess_err_set(r->err, ESS_ESHAPE, "%s: field '%s' is nested too deeply", r->fmt,
                           shown(name, sh, sizeof(sh)));
    }
    if (!xml_name_ok(name)) {
        return ess_err_set(r->err, ESS_ESHAPE,
                           "%s: field '%s' is not a valid XML element name (rename it)", r->fmt,
                           shown(name, sh, sizeof(sh)));
    }
    if (json_is_array(v)) {
        for (i = 0; i < json_array_size(v) && rc == ESS_OK; i++) {
            rc = xml_element(r, name, json_array_get(v, i), depth + 1);
        }
        return rc;
    }
    if (json_is_null(v)) {
        fprintf(r->f, "<%s/>", name);
        return ESS_OK;
    }
    fprintf(r->f, "<%s>", name);
    rc = json_is_object(v) ? xml_children(r, v, depth) : xml_scalar(r, name, v);
    fprintf(r->f, "</%s>", name);
    return rc;
}

static int xml_fields(struct rctx *r, json_t *rec, const char **keys, size_t n)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        rc = xml_element(r, keys[i], json_object_get(rec, keys[i]), 1);
        if (rc != ESS_OK) {
            return rc;
        }
    }
    return ESS_OK;
}

static int render_xml(struct rctx *r, json_t *rec, const char **keys, size_t n)
{
    const char *root = r->m->xml.root != NULL ? r->m->xml.root : "record";
    int rc;

    if (!xml_name_ok(root)) {
        return ess_err_set(r->err, ESS_EINVAL, "xml: root '%.80s' is not an XML name", root);
    }
    fprintf(r->f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><%s>", root);
    rc = xml_fields(r, rec, keys, n);
    fprintf(r->f, "</%s>", root);
    return rc;
}

static int render_soap(struct rctx *r, json_t *rec, const char **keys, size_t n)
{
    const struct ess_soap *s = &r->m->soap;
    const char *op = s->operation != NULL ? s->operation : s->action;
    const char *pfx = s->namespace != NULL ? "ns:" : "";
    int rc;

    if (op == NULL || !xml_name_ok(op)) {
        return ess_err_set(r->err, ESS_EINVAL, "soap: the operation is missing or not an XML name");
    }
    fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"" SOAP_ENV_NS
          "\"><soap:Body>",
          r->f);
    fprintf(r->f, "<%s%s", pfx, op);
    if (s->namespace != NULL) {
        fputs(" xmlns:ns=\"", r->f);
        rc = xml_text(r, "soap.namespace", s->namespace, strlen(s->namespace));
        fputc('"', r->f);
        if (rc != ESS_OK) {
            return rc;
        }
    }
    fputc('>', r->f);
    rc = xml_fields(r, rec, keys, n);
    fprintf(r->f, "</%s%s></soap:Body></soap:Envelope>", pfx, op);
    return rc;
}

/* ---------------------------------------------------------------- body */

static const char *content_type_of(const struct ess_manifest *m)
{
    switch (m->format) {
    case ESS_FORMAT_SOAP:
        return "text/xml; charset=utf-8";
    case ESS_FORMAT_XML:
        return "application/xml; charset=utf-8";
    case ESS_FORMAT_CSV:
        return m->csv.header ? "text/csv; charset=utf-8; header=present"
                             : "text/csv; charset=utf-8; header=absent";
    case ESS_FORMAT_FIXED:
        return "text/plain; charset=utf-8";
    case ESS_FORMAT_FORM:
        return "application/x-www-form-urlencoded";
    default:
        return "application/json";
    }
}

static int render_dispatch(struct rctx *r, json_t *rec, const char **keys, size_t n)
{
    char *text;

    switch (r->m->format) {
    case ESS_FORMAT_SOAP:
        return render_soap(r, rec, keys, n);
    case ESS_FORMAT_XML:
        return render_xml(r, rec, keys, n);
    case ESS_FORMAT_CSV:
        return render_csv(r, rec, keys, n);
    case ESS_FORMAT_FIXED:
        return render_fixed(r, rec);
    case ESS_FORMAT_FORM:
        return render_form(r, rec, keys, n);
    case ESS_FORMAT_JSON:
        text = json_dumps(rec, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL) {
            return ess_err_set(r->err, ESS_ENOMEM, "render: cannot encode JSON");
        }
        fputs(text, r->f);
        free(text);
        return ESS_OK;
    default:
        return ess_err_set(r->err, ESS_EINVAL, "render: unknown format %d", (int)r->m->format);
    }
}

int ess_render_body(const struct ess_manifest *m, json_t *record, char **body, size_t *len,
                    const char **content_type, struct ess_err *err)
{
    struct rctx r = {m, NULL, NULL, err};
    const char **keys = NULL;
    char *buf = NULL;
    size_t n = 0, blen = 0;
    int rc;

    if (body == NULL || len == NULL || content_type == NULL) {
        return ess_err_set(err, ESS_EINVAL, "render: missing argument");
    }
    *body = NULL;
    *len = 0;
    *content_type = NULL;
    if (m == NULL || !json_is_object(record)) {
        return ess_err_set(err, ESS_EINVAL, "render: need a manifest and an object");
    }
    if (m->format == ESS_FORMAT_JSON) {
        /* The hot path: JSON needs no key order and no stream, just the text. */
        buf = json_dumps(record, JSON_COMPACT | JSON_ENCODE_ANY);
        if (buf == NULL) {
            return ess_err_set(err, ESS_ENOMEM, "render: cannot encode JSON");
        }
        *body = buf;
        *len = strlen(buf);
        *content_type = content_type_of(m);
        return ESS_OK;
    }
    r.fmt = ess_manifest_format_name(m->format);
    keys = render_order(m, record, &n);
    r.f = keys != NULL ? open_memstream(&buf, &blen) : NULL;
    if (r.f == NULL) {
        rc = render_nomem(err);
        goto cleanup;
    }
    rc = render_dispatch(&r, record, keys, n);
    if (fclose(r.f) != 0 && rc == ESS_OK) {
        rc = render_nomem(err);
    }
cleanup:
    free(keys);
    if (rc != ESS_OK) {
        free(buf);
        return rc;
    }
    *body = buf;
    *len = blen;
    *content_type = content_type_of(m);
    return ESS_OK;
}

int ess_render_json_text(const struct ess_manifest *m, const char *text, size_t len, char **body,
                         size_t *blen, const char **content_type)
{
    char *copy;

    if (m == NULL || m->format != ESS_FORMAT_JSON || !ess_jsoncanon_compact(text, len)) {
        return ESS_ENOTFOUND;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        return ESS_ENOMEM;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    *body = copy;
    *blen = len;
    *content_type = content_type_of(m);
    return ESS_OK;
}

/* ---------------------------------------------------------------- request headers */

int ess_render_soap_action(const struct ess_manifest *m, char *buf, size_t len)
{
    const char *a = m != NULL ? m->soap.action : NULL;
    const char *ns = m != NULL ? m->soap.namespace : NULL;
    size_t nl = ns != NULL ? strlen(ns) : 0;

    if (len > 0) {
        buf[0] = '\0';
    }
    if (m == NULL || m->format != ESS_FORMAT_SOAP || a == NULL) {
        return ESS_ENOTFOUND;
    }
    if (strchr(a, ':') != NULL || ns == NULL) {
        snprintf(buf, len, "\"%s\"", a);
    } else {
        snprintf(buf, len, "\"%s%s%s\"", ns, nl > 0 && ns[nl - 1] == '/' ? "" : "/", a);
    }
    return ESS_OK;
}

static int header_add(struct curl_slist **h, const char *name, const char *value,
                      struct ess_err *err)
{
    char line[2048];
    struct curl_slist *n;

    snprintf(line, sizeof(line), "%s: %s", name, value);
    n = curl_slist_append(*h, line);
    if (n == NULL) {
        return render_nomem(err);
    }
    *h = n;
    return ESS_OK;
}

int ess_render_headers(const struct ess_manifest *m, struct curl_slist **h, struct ess_err *err)
{
    char action[1024];
    size_t i;
    int rc = ESS_OK;

    if (m == NULL || h == NULL) {
        return ess_err_set(err, ESS_EINVAL, "render: missing argument");
    }
    if (ess_render_soap_action(m, action, sizeof(action)) == ESS_OK) {
        rc = header_add(h, "SOAPAction", action, err);
    }
    for (i = 0; i < m->headers.n && rc == ESS_OK; i++) {
        rc = header_add(h, m->headers.keys[i], m->headers.vals[i], err);
    }
    return rc;
}

/* ---------------------------------------------------------------- SOAP faults */

/* The next start tag at or after s whose local name (any prefix) is name. */
static const char *find_tag(const char *s, const char *name)
{
    size_t want = strlen(name);
    const char *p;

    for (p = strchr(s, '<'); p != NULL; p = strchr(p + 1, '<')) {
        const char *q = p + 1;
        size_t n = strcspn(q, " \t\r\n/>");
        const char *colon = memchr(q, ':', n);
        const char *local = colon != NULL ? colon + 1 : q;

        if (strchr("/?!", *q) == NULL && (size_t)(q + n - local) == want &&
            strncmp(local, name, want) == 0) {
            return p;
        }
    }
    return NULL;
}

/* UTF-8 for code point c into out (at least 4 bytes); returns the length. */
static size_t utf8_put(unsigned long c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((c >> 18) & 0x07));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Decode the entity at s ('&'); *used = bytes consumed (1 when not an entity). */
static size_t entity_decode(const char *s, char *out, size_t *used)
{
    static const char *const names[][2] = {
        {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}};
    const char *semi = strchr(s, ';');
    unsigned long c;
    char *end = NULL;
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strncmp(s, names[i][0], strlen(names[i][0])) == 0) {
            *used = strlen(names[i][0]);
            out[0] = names[i][1][0];
            return 1;
        }
    }
    *used = 1;
    out[0] = '&';
    if (s[1] != '#' || semi == NULL || semi - s > 12) {
        return 1;
    }
    c = s[2] == 'x' ? strtoul(s + 3, &end, 16) : strtoul(s + 2, &end, 10);
    if (end != semi || c == 0 || c > 0x10FFFF) {
        return 1;
    }
    *used = (size_t)(semi - s) + 1;
    return utf8_put(c, out);
}

/* The text content of the element whose start tag is at tag, decoded, white
 * space runs folded to one space, into out (NUL-terminated). */
static void tag_text(const char *tag, char *out, size_t outlen)
{
    const char *p = strchr(tag, '>');
    const char *end;
    char dec[4];
    size_t o = 0, used, n, i;

    if (p == NULL || outlen == 0 || p[-1] == '/') {
        out[0] = '\0';
        return;
    }
    p++;
    if (strncmp(p, "<![CDATA[", 9) == 0) {
        p += 9;
        end = strstr(p, "]]>");
    } else {
        end = strchr(p, '<');
    }
    end = end != NULL ? end : p + strlen(p);
    while (p < end && o + 4 < outlen) {
        if (*p == '&') {
            n = entity_decode(p, dec, &used);
        } else {
            dec[0] = *p;
            used = 1;
            n = 1;
        }
        for (i = 0; i < n; i++) {
            char c = strchr("\t\r\n", dec[i]) != NULL ? ' ' : dec[i];

            if (c != ' ' || (o > 0 && out[o - 1] != ' ')) {
                out[o++] = c;
            }
        }
        p += used;
    }
    o -= o > 0 && out[o - 1] == ' ';
    out[o] = '\0';
}

int ess_render_soap_fault(const char *body, size_t len, char *fault, size_t faultlen)
{
    static const char *const texts[] = {"faultstring", "Reason", "faultcode", "Code"};
    const char *f, *t = NULL;
    char *copy;
    size_t i;

    if (fault != NULL && faultlen > 0) {
        fault[0] = '\0';
    }
    copy = body != NULL ? strndup(body, len) : NULL;
    f = copy != NULL ? find_tag(copy, "Fault") : NULL;
    if (f == NULL) {
        free(copy);
        return 0;
    }
    for (i = 0; i < sizeof(texts) / sizeof(texts[0]) && t == NULL; i++) {
        t = find_tag(f, texts[i]);
        if (t != NULL && i % 2 == 1) { /* SOAP 1.2 wraps the text in Text / Value */
            t = find_tag(t, i == 1 ? "Text" : "Value");
        }
    }
    if (fault != NULL && faultlen > 0) {
        tag_text(t != NULL ? t : "<x>SOAP Fault<", fault, faultlen);
        if (fault[0] == '\0') {
            snprintf(fault, faultlen, "SOAP Fault");
        }
    }
    free(copy);
    return 1;
}

/* ---- the whole request's headers ----------------------------------------- */

/* A header value from event data: printable ASCII only, so an event id can
 * never inject a header line or break the quoted Idempotency-Key. */
static void render_header_safe(char *dst, size_t len, const char *src)
{
    size_t o = 0;

    for (; *src != '\0' && o + 1 < len; src++) {
        dst[o++] = (*src >= 0x20 && *src < 0x7f && *src != '"' && *src != '\\') ? *src : '_';
    }
    dst[o] = '\0';
}

/* a, b, c, d and e (from the first NULL: none) one after the other in line, cut like
 * snprintf: per-event header lines without a format string to interpret. */
static void render_line(char *line, size_t size, const char *a, const char *b, const char *c,
                        const char *d, const char *e)
{
    const char *parts[5] = {a, b, c, d, e};
    size_t o = 0, n, i;

    for (i = 0; i < 5 && parts[i] != NULL; i++) {
        n = strlen(parts[i]);
        n = n < size - 1 - o ? n : size - 1 - o;
        memcpy(line + o, parts[i], n);
        o += n;
    }
    line[o] = '\0';
}

int ess_render_request_headers(const struct ess_manifest *m, const char *event_id,
                               const char *content_type, const char *body, size_t len,
                               long long now_s, struct curl_slist **h, struct ess_err *err)
{
    char id[300];
    char line[400];
    struct curl_slist *grown;

    render_header_safe(id, sizeof(id), event_id);
    render_line(line, sizeof(line), "Content-Type: ", content_type != NULL ? content_type : "",
                NULL, NULL, NULL);
    grown = curl_slist_append(*h, line);
    /* IETF draft: the value is a Structured Field string, hence the quotes. */
    render_line(line, sizeof(line), "Idempotency-Key: \"", m->id, ":", id, "\"");
    grown = grown != NULL ? curl_slist_append(grown, line) : NULL;
    render_line(line, sizeof(line), "X-ESS-Connector: ", m->id, NULL, NULL, NULL);
    grown = grown != NULL ? curl_slist_append(grown, line) : NULL;
    render_line(line, sizeof(line), "X-ESS-Event-Id: ", id, NULL, NULL, NULL);
    grown = grown != NULL ? curl_slist_append(grown, line) : NULL;
    if (grown == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "out of memory building request headers");
    }
    *h = grown;
    if (ess_render_headers(m, h, err) != ESS_OK) {
        return ESS_ENOMEM;
    }
    return ess_sign_headers(&m->auth, id, now_s, body, len, h, err);
}
