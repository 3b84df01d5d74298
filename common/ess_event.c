/*
 * ess_event -- from a message body to an event (record, key, id).
 *
 * Every consumed message passes through here, so bad input must end as a clean
 * ESS_EPARSE with a one-line reason (the worker dead-letters it), never a crash:
 * jansson does the parsing, including its depth limit and UTF-8 checks.
 *
 * DESIGN
 * - Duplicate keys are accepted (last wins): HMS producers are not ours to
 *   police and rejecting them would dead-letter otherwise usable events.
 * - A body is a CloudEvent (structured mode) when it is an object with a string
 *   "specversion" and a "data" member; shaping then works on "data".
 * - The fallback id hashes key + "\n" + the raw body bytes, so re-sending the
 *   exact same message gives the same id and the journal dedupes it.
 * - A CloudEvents "time" that is not RFC 3339 is not an error: time_ms is 0.
 *
 * Ownership: ev->root, ev->id and ev->key are owned by ev (ess_event_fini);
 * ev->data is borrowed from ev->root.
 */
#define _GNU_SOURCE /* strptime, timegm */

#include "ess_event.h"
#include "ess_jsoncanon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#define EVENT_SHA256_HEX (2 * 32 + 1)

json_t *ess_event_path_get(json_t *obj, const char *path)
{
    const char *seg;
    const char *dot;
    size_t len;

    if (path == NULL || *path == '\0') {
        return NULL;
    }
    seg = path;
    while (obj != NULL) {
        if (!json_is_object(obj)) {
            return NULL;
        }
        dot = strchr(seg, '.');
        len = dot != NULL ? (size_t)(dot - seg) : strlen(seg);
        if (len == 0) {
            return NULL;
        }
        obj = json_object_getn(obj, seg, len);
        if (dot == NULL) {
            return obj;
        }
        seg = dot + 1;
    }
    return NULL;
}

static const char *event_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

/* Scalar id/key text: a string as is, an integer in decimal; else NULL. */
static char *event_scalar_text(const json_t *v)
{
    char buf[32];

    if (json_is_string(v)) {
        return strndup(json_string_value(v), json_string_length(v));
    }
    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        return strdup(buf);
    }
    return NULL;
}

static int event_load(const char *body, size_t len, struct ess_event *ev, struct ess_err *err)
{
    json_error_t jerr;

    ev->root = json_loadb(body != NULL ? body : "", len, JSON_DECODE_ANY, &jerr);
    if (ev->root == NULL) {
        return ess_err_set(err, ESS_EPARSE, "not JSON: %s at line %d column %d", jerr.text,
                           jerr.line, jerr.column);
    }
    if (!json_is_object(ev->root)) {
        return ess_err_set(err, ESS_EPARSE, "not an object: got %s", event_type_name(ev->root));
    }
    ev->data = ev->root;
    if (json_is_string(json_object_get(ev->root, "specversion")) &&
        json_object_get(ev->root, "data") != NULL) {
        ev->cloudevent = 1;
        ev->data = json_object_get(ev->root, "data");
        if (!json_is_object(ev->data)) {
            return ess_err_set(err, ESS_EPARSE, "CloudEvent data is not an object: got %s",
                               event_type_name(ev->data));
        }
    }
    return ESS_OK;
}

/* A missing key_path means the caller has no record key: the key is "". */
static int event_key(struct ess_event *ev, const char *key_path, struct ess_err *err)
{
    json_t *v;

    if (key_path == NULL || *key_path == '\0') {
        ev->key = strdup("");
        return ev->key != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "out of memory");
    }
    v = ess_event_path_get(ev->data, key_path);
    if (v == NULL) {
        return ess_err_set(err, ESS_EPARSE, "key '%s' missing", key_path);
    }
    if (!json_is_string(v) && !json_is_integer(v)) {
        return ess_err_set(err, ESS_EPARSE, "key '%s' is not a string or integer: got %s", key_path,
                           event_type_name(v));
    }
    if (json_is_string(v) && json_string_length(v) == 0) {
        return ess_err_set(err, ESS_EPARSE, "key '%s' is empty", key_path);
    }
    ev->key = event_scalar_text(v);
    return ev->key != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "out of memory");
}

static int event_hash_id(const char *key, const char *body, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx;
    int ok;
    unsigned int i;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return ESS_ENOMEM;
    }
    ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, key, strlen(key)) == 1 && EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
         EVP_DigestUpdate(ctx, body != NULL ? body : "", len) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen != 32) {
        return ESS_ENOMEM;
    }
    for (i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
    hex[2 * mdlen] = '\0';
    return ESS_OK;
}

/* Only a non-empty string or an integer counts as an id. */
static char *event_id_from(const json_t *v)
{
    if (json_is_string(v) && json_string_length(v) == 0) {
        return NULL;
    }
    return event_scalar_text(v);
}

static int event_id(struct ess_event *ev, const char *body, size_t len, const char *message_id,
                    struct ess_err *err)
{
    char hex[EVENT_SHA256_HEX];

    if (ev->cloudevent) {
        ev->id = event_id_from(json_object_get(ev->root, "id"));
    }
    if (ev->id == NULL && message_id != NULL && *message_id != '\0') {
        ev->id = strdup(message_id);
    }
    if (ev->id == NULL) {
        ev->id = event_id_from(json_object_get(ev->data, "event_id"));
    }
    if (ev->id == NULL && ev->data != ev->root) {
        ev->id = event_id_from(json_object_get(ev->root, "event_id"));
    }
    if (ev->id == NULL) {
        if (event_hash_id(ev->key, body, len, hex) != ESS_OK) {
            return ess_err_set(err, ESS_ENOMEM, "cannot hash the event body");
        }
        ev->id = strdup(hex);
    }
    return ev->id != NULL ? ESS_OK : ess_err_set(err, ESS_ENOMEM, "out of memory");
}

/* ".123" -> milliseconds (extra digits truncated); p advanced past the digits. */
static long long event_fraction_ms(const char **p)
{
    long long ms = 0;
    int n = 0;

    if (**p != '.') {
        return 0;
    }
    (*p)++;
    while (**p >= '0' && **p <= '9') {
        if (n < 3) {
            ms = ms * 10 + (**p - '0');
        }
        n++;
        (*p)++;
    }
    for (; n < 3; n++) {
        ms *= 10;
    }
    return ms;
}

/* "Z" or "+hh:mm"/"-hh:mm" -> offset seconds east of UTC; -1 when malformed. */
static int event_zone_offset(const char *p, long *off)
{
    int sign;

    if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
        *off = 0;
        return 0;
    }
    if ((p[0] != '+' && p[0] != '-') || strlen(p) != 6 || p[3] != ':') {
        return -1;
    }
    if (p[1] < '0' || p[1] > '2' || p[2] < '0' || p[2] > '9' || p[4] < '0' || p[4] > '5' ||
        p[5] < '0' || p[5] > '9') {
        return -1;
    }
    sign = p[0] == '-' ? -1 : 1;
    *off = sign *
           (((p[1] - '0') * 10 + (p[2] - '0')) * 3600L + ((p[4] - '0') * 10 + (p[5] - '0')) * 60L);
    return 0;
}

/* RFC 3339 ("2026-11-26T21:40:00.123+01:00") -> epoch ms; 0 when unparseable. */
static long long event_time_ms(const json_t *v)
{
    struct tm tm;
    const char *p;
    long long ms;
    long off = 0;
    time_t t;

    if (!json_is_string(v)) {
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    p = strptime(json_string_value(v), "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL) {
        return 0;
    }
    ms = event_fraction_ms(&p);
    if (event_zone_offset(p, &off) != 0) {
        return 0;
    }
    t = timegm(&tm);
    if (t == (time_t)-1) {
        return 0;
    }
    return ((long long)t - off) * 1000 + ms;
}

int ess_event_parse(const char *body, size_t len, const char *message_id, const char *key_path,
                    struct ess_event *ev, struct ess_err *err)
{
    int rc;

    if (ev == NULL) {
        return ess_err_set(err, ESS_EINVAL, "ess_event_parse: ev is NULL");
    }
    memset(ev, 0, sizeof(*ev));
    rc = event_load(body, len, ev, err);
    if (rc == ESS_OK) {
        rc = event_key(ev, key_path, err);
    }
    if (rc == ESS_OK) {
        rc = event_id(ev, body, len, message_id, err);
    }
    if (rc != ESS_OK) {
        goto fail;
    }
    if (ev->cloudevent) {
        ev->time_ms = event_time_ms(json_object_get(ev->root, "time"));
    }
    return ESS_OK;
fail:
    ess_event_fini(ev);
    return rc;
}

void ess_event_fini(struct ess_event *ev)
{
    if (ev == NULL) {
        return;
    }
    json_decref(ev->root);
    free(ev->id);
    free(ev->key);
    memset(ev, 0, sizeof(*ev));
}

/* The key from a member's raw JSON text when it reads the same undecoded: a
 * non-empty string without escapes, or an integer (canonical digits are what
 * "%lld" prints). NULL otherwise: ess_event_parse decides (and explains). */
static char *event_plain_key(const char *v, size_t n)
{
    if (n > 2 && v[0] == '"' && memchr(v + 1, '\\', n - 2) == NULL) {
        return strndup(v + 1, n - 2);
    }
    if (n > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))) {
        return strndup(v, n);
    }
    return NULL;
}

int ess_event_identify(const char *body, size_t len, const char *message_id, const char *key_path,
                       struct ess_event *ev, struct ess_err *err)
{
    const char *v;
    size_t n;

    if (ev == NULL) {
        return ess_err_set(err, ESS_EINVAL, "ess_event_identify: ev is NULL");
    }
    memset(ev, 0, sizeof(*ev));
    /* A plain object's id is its message_id when it has one (event_id). */
    if (message_id != NULL && message_id[0] != '\0' && key_path != NULL && key_path[0] != '\0' &&
        ess_jsoncanon_compact(body, len) &&
        !ess_jsoncanon_member(body, len, "specversion", &v, &n) &&
        ess_jsoncanon_member(body, len, key_path, &v, &n)) {
        ev->key = event_plain_key(v, n);
        if (ev->key != NULL) {
            ev->id = strdup(message_id);
            if (ev->id == NULL) {
                ess_event_fini(ev);
                return ess_err_set(err, ESS_ENOMEM, "out of memory");
            }
            return ESS_OK;
        }
    }
    return ess_event_parse(body, len, message_id, key_path, ev, err);
}
