/*
 * ess_audit -- the hash-chained audit log; see ess_audit.h.
 */
#include "ess_audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#define AUDIT_CHUNK 500        /* records per INSERT */
#define AUDIT_ROW_ATTEMPTS 100 /* consecutive attempts one "attempts" row carries */
#define AUDIT_PAGE 500         /* rows per SELECT while verifying (up to ~100 attempts each) */
#define AUDIT_COLS 7
#define AUDIT_NUM 24

static const char audit_zero[ESS_AUDIT_HASH_HEX] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct audit_rec {
    char *kind; /* NULL: a delivery attempt, stored in an "attempts" row with its neighbours */
    long long at_ms;
    char *content;
};

struct ess_audit {
    char *chain;
    struct audit_rec *q; /* queued, oldest first */
    size_t n, cap;
    unsigned long long lost; /* dropped from a full queue, not yet recorded */
    int have_head;
    long long head_n; /* the chain's newest row: its n and hash */
    char head[ESS_AUDIT_HASH_HEX];
    /* ess_audit_send: the first sent records are in a pipeline not yet
     * committed, chained up to sent_head; they stay queued until then */
    size_t sent;
    long long sent_n;
    char sent_head[ESS_AUDIT_HASH_HEX];
};

/* v in decimal into buf (at least AUDIT_NUM bytes), NUL-terminated; its length. */
static size_t audit_dec(char *buf, long long v)
{
    char tmp[AUDIT_NUM];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    size_t t = 0, o = 0;

    do {
        tmp[t++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        buf[o++] = '-';
    }
    while (t > 0) {
        buf[o++] = tmp[--t];
    }
    buf[o] = '\0';
    return o;
}

/* "\n<v>\n" into buf (at least AUDIT_NUM + 3 bytes), its length: snprintf per number
 * was most of the hash's cost on the push hot path. */
static size_t audit_num_line(char *buf, long long v)
{
    size_t o;

    buf[0] = '\n';
    o = 1 + audit_dec(buf + 1, v);
    buf[o++] = '\n';
    buf[o] = '\0';
    return o;
}

/* The hash with a context and digest the caller keeps: a flush hashes a whole chunk
 * with one of each (fetching SHA-256 per row cost more than hashing the row). The text
 * before the content goes in one update when it fits a small buffer. */
static int audit_hash_with(EVP_MD_CTX *ctx, const EVP_MD *sha, const char *prev_hex, long long n,
                           const char *chain, const char *kind, long long at_ms,
                           const char *content, char out[ESS_AUDIT_HASH_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char nums[2 * AUDIT_NUM + 8];
    char head[512];
    size_t lp, lc, lk, o = 0;
    unsigned int i;
    int ok;

    if (prev_hex == NULL || chain == NULL || kind == NULL || content == NULL) {
        return ESS_EINVAL;
    }
    lp = strlen(prev_hex);
    lc = strlen(chain);
    lk = strlen(kind);
    ok = EVP_DigestInit_ex(ctx, sha, NULL) == 1;
    if (lp + lc + lk + 2 * (AUDIT_NUM + 3) + 1 <= sizeof(head)) {
        memcpy(head, prev_hex, lp);
        o = lp;
        o += audit_num_line(head + o, n);
        memcpy(head + o, chain, lc);
        o += lc;
        head[o++] = '\n';
        memcpy(head + o, kind, lk);
        o += lk;
        o += audit_num_line(head + o, at_ms);
        ok = ok && EVP_DigestUpdate(ctx, head, o) == 1;
    } else {
        ok = ok && EVP_DigestUpdate(ctx, prev_hex, lp) == 1 &&
             EVP_DigestUpdate(ctx, nums, audit_num_line(nums, n)) == 1 &&
             EVP_DigestUpdate(ctx, chain, lc) == 1 && EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
             EVP_DigestUpdate(ctx, kind, lk) == 1 &&
             EVP_DigestUpdate(ctx, nums, audit_num_line(nums, at_ms)) == 1;
    }
    ok = ok && EVP_DigestUpdate(ctx, content, strlen(content)) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    if (!ok) {
        return ESS_ENOMEM;
    }
    for (i = 0; i < mdlen && i < 32; i++) {
        out[2 * i] = "0123456789abcdef"[md[i] >> 4];
        out[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    out[2 * i] = '\0';
    return ESS_OK;
}

int ess_audit_hash(const char *prev_hex, long long n, const char *chain, const char *kind,
                   long long at_ms, const char *content, char out[ESS_AUDIT_HASH_HEX])
{
    EVP_MD_CTX *ctx;
    int rc;

    if (prev_hex == NULL || chain == NULL || kind == NULL || content == NULL) {
        return ESS_EINVAL;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return ESS_ENOMEM;
    }
    rc = audit_hash_with(ctx, EVP_sha256(), prev_hex, n, chain, kind, at_ms, content, out);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* ---------------------------------------------------------- appending -- */

struct ess_audit *ess_audit_new(const char *chain)
{
    struct ess_audit *a = calloc(1, sizeof(*a));

    if (a == NULL || chain == NULL) {
        free(a);
        return NULL;
    }
    a->chain = strdup(chain);
    if (a->chain == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

static void rec_fini(struct audit_rec *r)
{
    free(r->kind);
    free(r->content);
}

void ess_audit_free(struct ess_audit *a)
{
    size_t i;

    if (a == NULL) {
        return;
    }
    for (i = 0; i < a->n; i++) {
        rec_fini(&a->q[i]);
    }
    free(a->q);
    free(a->chain);
    free(a);
}

size_t ess_audit_pending(const struct ess_audit *a)
{
    return a != NULL ? a->n : 0;
}

/* Room for one more record: grow, or drop the oldest when at the cap. */
static int audit_room(struct ess_audit *a)
{
    struct audit_rec *grown;
    size_t cap;

    if (a->n == ESS_AUDIT_QUEUE_MAX && a->sent < a->n) {
        /* the oldest not being sent: sent rows may still commit */
        rec_fini(&a->q[a->sent]);
        memmove(a->q + a->sent, a->q + a->sent + 1, (a->n - a->sent - 1) * sizeof(*a->q));
        a->n--;
        a->lost++;
    }
    if (a->n < a->cap) {
        return ESS_OK;
    }
    cap = a->cap != 0 ? a->cap * 2 : 64;
    grown = realloc(a->q, cap * sizeof(*grown));
    if (grown == NULL) {
        return ESS_ENOMEM;
    }
    a->q = grown;
    a->cap = cap;
    return ESS_OK;
}

/* Queue an attempt whose content text is already rendered (taken over, freed
 * on failure). No kind is kept per attempt: its row's kind is "attempts". */
static int audit_push_attempt(struct ess_audit *a, long long at_ms, char *content)
{
    if (audit_room(a) != ESS_OK) {
        free(content);
        a->lost++;
        return ESS_ENOMEM;
    }
    a->q[a->n++] = (struct audit_rec){NULL, at_ms, content};
    return ESS_OK;
}

int ess_audit_add(struct ess_audit *a, const char *kind, long long at_ms, json_t *content)
{
    struct audit_rec r = {NULL, at_ms, NULL};

    if (a == NULL || kind == NULL || !json_is_object(content)) {
        return ESS_EINVAL;
    }
    if (audit_room(a) != ESS_OK) {
        a->lost++;
        return ESS_ENOMEM;
    }
    r.kind = strdup(kind);
    r.content = json_dumps(content, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    if (r.kind == NULL || r.content == NULL) {
        rec_fini(&r);
        a->lost++;
        return ESS_ENOMEM;
    }
    a->q[a->n++] = r;
    return ESS_OK;
}

/* Printable ASCII without '"' or '\\': json_dumps writes it unescaped. */
static int audit_plain(const char *v)
{
    if (v == NULL) {
        return 1;
    }
    for (; *v != '\0'; v++) {
        if ((unsigned char)*v < 0x20 || (unsigned char)*v > 0x7e || *v == '"' || *v == '\\') {
            return 0;
        }
    }
    return 1;
}

/* The attempt record's content exactly as json_dumps(JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENSURE_ASCII) writes it, without building and sorting a jansson object per
 * attempt; NULL when a value needs escaping (the caller then goes through jansson). */
static char *audit_attempt_text(long long seq, const char *event_id, const char *key, long status,
                                const char *error)
{
    size_t cap;
    char *out;
    char *o;

    if (!audit_plain(event_id) || !audit_plain(key) || !audit_plain(error)) {
        return NULL;
    }
    if (error != NULL && error[0] == '\0') {
        error = NULL;
    }
    cap = 128 + (event_id != NULL ? strlen(event_id) : 0) + (key != NULL ? strlen(key) : 0) +
          (error != NULL ? strlen(error) : 0);
    out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    /* json_pack's "s?" writes a NULL value as null; no snprintf: this runs per attempt */
    o = out;
    if (error != NULL) {
        o = stpcpy(stpcpy(stpcpy(o, "{\"error\":\""), error), "\",\"event_id\":");
    } else {
        o = stpcpy(o, "{\"event_id\":");
    }
    o = event_id != NULL ? stpcpy(stpcpy(stpcpy(o, "\""), event_id), "\"") : stpcpy(o, "null");
    o = stpcpy(o, ",\"key\":");
    o = key != NULL ? stpcpy(stpcpy(stpcpy(o, "\""), key), "\"") : stpcpy(o, "null");
    o = stpcpy(o, ",\"seq\":");
    o += audit_dec(o, seq);
    o = stpcpy(o, ",\"status\":");
    o += audit_dec(o, (long long)status);
    stpcpy(o, "}");
    return out;
}

char *ess_audit_attempt_content(long long seq, const char *event_id, const char *key, long status,
                                const char *error)
{
    char *text = audit_attempt_text(seq, event_id, key, status, error);
    json_t *c;

    if (text != NULL) {
        return text;
    }
    c = json_pack("{s:I, s:s?, s:s?, s:I}", "seq", (json_int_t)seq, "event_id", event_id, "key",
                  key, "status", (json_int_t)status);
    if (c != NULL && error != NULL && error[0] != '\0') {
        json_object_set_new(c, "error", json_string(error));
    }
    text = c != NULL ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII) : NULL;
    json_decref(c);
    return text;
}

int ess_audit_attempt(struct ess_audit *a, long long seq, const char *event_id, const char *key,
                      long status, const char *error)
{
    struct timespec ts;
    char *text;

    if (a == NULL) {
        return ESS_EINVAL;
    }
    text = ess_audit_attempt_content(seq, event_id, key, status, error);
    if (text == NULL) {
        return ESS_ENOMEM;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    return audit_push_attempt(a, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, text);
}

/* The chain's newest row from the store (n 0 and the zero hash when empty). */
static int audit_read_head(struct ess_audit *a, struct ess_store *s, struct ess_err *err)
{
    const char *params[1] = {a->chain};
    json_t *rows = NULL;
    json_t *row;
    const char *n;
    const char *h;
    int rc;

    rc = ess_store_query_json(s,
                              "SELECT n, hash FROM ess_audit WHERE chain = $1"
                              " ORDER BY n DESC LIMIT 1",
                              1, params, &rows, err);
    if (rc != ESS_OK) {
        return rc;
    }
    row = json_array_get(rows, 0);
    n = json_string_value(json_object_get(row, "n"));
    h = json_string_value(json_object_get(row, "hash"));
    a->head_n = n != NULL ? strtoll(n, NULL, 10) : 0;
    snprintf(a->head, sizeof(a->head), "%s", h != NULL ? h : audit_zero);
    a->have_head = 1;
    json_decref(rows);
    return ESS_OK;
}

/* A full queue dropped records: the first one written says how many. */
static int audit_note_lost(struct ess_audit *a)
{
    struct audit_rec r = {NULL, 0, NULL};
    json_t *c;

    if (audit_room(a) != ESS_OK) { /* first: making room may drop one more */
        return ESS_ENOMEM;
    }
    c = json_pack("{s:I}", "lost", (json_int_t)a->lost);
    r.kind = strdup("gap");
    r.content = c != NULL ? json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    r.at_ms = a->n > 0 ? a->q[0].at_ms : 0; /* where the gap ends */
    json_decref(c);
    if (r.kind == NULL || r.content == NULL) {
        rec_fini(&r);
        return ESS_ENOMEM;
    }
    memmove(a->q + 1, a->q, a->n * sizeof(*a->q));
    a->q[0] = r;
    a->n++;
    a->lost = 0;
    return ESS_OK;
}

/* One chunk as a single short statement over six array parameters (text
 * literals): Postgres parses and plans it in microseconds, where a VALUES list
 * of k rows x 7 placeholders cost it more CPU per row than the insert itself. */
static const char audit_insert_sql[] =
    "INSERT INTO ess_audit (chain, n, kind, at_ms, content, prev_hash, hash)"
    " SELECT $1, n, k, a, c, p, h FROM unnest($2::int8[], $3::text[], $4::int8[], $5::text[],"
    " $6::text[], $7::text[]) AS u(n, k, a, c, p, h)";

struct audit_arr { /* an array literal being written: "{e1,e2,...}" */
    char *p;
    size_t len;
};

/* Room for elements of `bytes` in all, each with its separator. */
static int audit_arr_new(struct audit_arr *a, size_t bytes)
{
    a->p = malloc(bytes + 3);
    a->len = 0;
    if (a->p == NULL) {
        return ESS_ENOMEM;
    }
    a->p[a->len++] = '{';
    return ESS_OK;
}

static void audit_arr_sep(struct audit_arr *a)
{
    if (a->len > 1) {
        a->p[a->len++] = ',';
    }
}

static void audit_arr_num(struct audit_arr *a, long long v)
{
    audit_arr_sep(a);
    a->len += audit_dec(a->p + a->len, v);
}

/* A text element, always quoted (so "NULL" stays a string), " and \ escaped. */
static void audit_arr_text(struct audit_arr *a, const char *s)
{
    size_t run;

    audit_arr_sep(a);
    a->p[a->len++] = '"';
    for (;;) {
        run = strcspn(s, "\"\\"); /* copied in runs: hashes have nothing to escape */
        memcpy(a->p + a->len, s, run);
        a->len += run;
        s += run;
        if (*s == '\0') {
            break;
        }
        a->p[a->len++] = '\\';
        a->p[a->len++] = *s++;
    }
    a->p[a->len++] = '"';
}

/* What audit_arr_text writes for s, with its separator. */
static size_t audit_arr_text_len(const char *s)
{
    size_t n = 3; /* quotes and separator */
    size_t run;

    for (;;) {
        run = strcspn(s, "\"\\");
        n += run;
        s += run;
        if (*s == '\0') {
            return n;
        }
        n += 2;
        s++;
    }
}

static void audit_arr_end(struct audit_arr *a)
{
    a->p[a->len++] = '}';
    a->p[a->len] = '\0';
}

/* One stored row: a queued record, or consecutive attempts in one "attempts" row. */
struct audit_out {
    const char *kind;
    long long at_ms;
    const char *content;
    char *owned; /* content built here, freed with the row */
};

/* The content of an "attempts" row: the k attempt records as a JSON array,
 * each object with its own time first ({"at_ms":..,"error":..,"event_id":..}:
 * sorted keys, as every content is). NULL when out of memory. */
static char *audit_attempts_content(const struct audit_rec *q, size_t k)
{
    size_t i, cap = 3;
    char *out;
    char *o;

    for (i = 0; i < k; i++) {
        cap += strlen(q[i].content) + AUDIT_NUM + 12;
    }
    out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    o = out;
    *o++ = '[';
    for (i = 0; i < k; i++) {
        o = stpcpy(o, i > 0 ? ",{\"at_ms\":" : "{\"at_ms\":");
        o += audit_dec(o, q[i].at_ms);
        *o++ = ',';
        o = stpcpy(o, q[i].content + 1); /* an attempt's object, without its '{' */
    }
    stpcpy(o, "]");
    return out;
}

/* The rows records q[0..k-1] are stored as, into rows (room for k); how many,
 * or 0 when out of memory. An "attempts" row takes up to AUDIT_ROW_ATTEMPTS
 * consecutive attempts (its at_ms is the first one's); any other record is a
 * row of its own. Rows, not attempts, are what the table and its index pay for. */
static size_t audit_rows(const struct audit_rec *q, size_t k, struct audit_out *rows)
{
    size_t i = 0, j, nrows = 0;

    while (i < k) {
        j = i + 1;
        if (q[i].kind == NULL) {
            while (j < k && j - i < AUDIT_ROW_ATTEMPTS && q[j].kind == NULL) {
                j++;
            }
            rows[nrows] = (struct audit_out){"attempts", q[i].at_ms, NULL,
                                             audit_attempts_content(q + i, j - i)};
            if (rows[nrows].owned == NULL) {
                for (j = 0; j < nrows; j++) {
                    free(rows[j].owned);
                }
                return 0;
            }
            rows[nrows].content = rows[nrows].owned;
        } else {
            rows[nrows] = (struct audit_out){q[i].kind, q[i].at_ms, q[i].content, NULL};
        }
        nrows++;
        i = j;
    }
    return nrows;
}

/* INSERT queued records from..from+k-1 chained after row *n, whose hash is
 * head; on success *n and head become the last row's. send: queue the INSERT
 * in s's pipeline, else run it now. */
static int audit_insert(struct ess_audit *a, struct ess_store *s, size_t from, size_t k,
                        long long *n, char head[ESS_AUDIT_HASH_HEX], int send, struct ess_err *err)
{
    struct audit_arr arr[AUDIT_COLS - 1] = {{NULL, 0}}; /* n, kind, at_ms, content, prev, hash */
    const char *vals[AUDIT_COLS];
    struct audit_out *rows = calloc(k, sizeof(*rows));
    char hash_prev[ESS_AUDIT_HASH_HEX], hash[ESS_AUDIT_HASH_HEX];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD *fetched = NULL;
    const EVP_MD *sha;
    size_t i, nrows = 0, kind_bytes = 0, content_bytes = 0, num_bytes, hash_bytes;
    int rc = ESS_OK;

#if OPENSSL_VERSION_MAJOR >= 3
    fetched = EVP_MD_fetch(NULL, "SHA256", NULL); /* once per chunk, not per row */
#endif
    sha = fetched != NULL ? fetched : EVP_sha256();
    nrows = rows != NULL ? audit_rows(a->q + from, k, rows) : 0;
    /* Arrays sized exactly (the contents are most of a chunk's bytes). */
    for (i = 0; i < nrows; i++) {
        kind_bytes += audit_arr_text_len(rows[i].kind);
        content_bytes += audit_arr_text_len(rows[i].content);
    }
    num_bytes = nrows * (AUDIT_NUM + 1);
    hash_bytes = nrows * (ESS_AUDIT_HASH_HEX + 3);
    if (nrows == 0 || ctx == NULL || audit_arr_new(&arr[0], num_bytes) != ESS_OK ||
        audit_arr_new(&arr[1], kind_bytes) != ESS_OK ||
        audit_arr_new(&arr[2], num_bytes) != ESS_OK ||
        audit_arr_new(&arr[3], content_bytes) != ESS_OK ||
        audit_arr_new(&arr[4], hash_bytes) != ESS_OK ||
        audit_arr_new(&arr[5], hash_bytes) != ESS_OK) {
        rc = ess_err_set(err, ESS_ENOMEM, "audit: out of memory");
        goto done;
    }
    /* Each row's hash is the next one's prev: two buffers, not one per row. */
    memcpy(hash_prev, head, sizeof(hash_prev));
    for (i = 0; i < nrows && rc == ESS_OK; i++) {
        rc = audit_hash_with(ctx, sha, hash_prev, *n + 1 + (long long)i, a->chain, rows[i].kind,
                             rows[i].at_ms, rows[i].content, hash);
        if (rc != ESS_OK) {
            break;
        }
        audit_arr_num(&arr[0], *n + 1 + (long long)i);
        audit_arr_text(&arr[1], rows[i].kind);
        audit_arr_num(&arr[2], rows[i].at_ms);
        audit_arr_text(&arr[3], rows[i].content);
        audit_arr_text(&arr[4], hash_prev);
        audit_arr_text(&arr[5], hash);
        memcpy(hash_prev, hash, sizeof(hash_prev));
    }
    if (rc == ESS_OK) {
        vals[0] = a->chain;
        for (i = 0; i < AUDIT_COLS - 1; i++) {
            audit_arr_end(&arr[i]);
            vals[1 + i] = arr[i].p;
        }
        /* libpq copies the parameters as it sends: the arrays go below */
        rc = send ? ess_store_pipe_exec(s, audit_insert_sql, AUDIT_COLS, vals, err)
                  : ess_store_exec(s, audit_insert_sql, AUDIT_COLS, vals, NULL, err);
    }
    if (rc == ESS_OK) {
        *n += (long long)nrows;
        memcpy(head, hash_prev, ESS_AUDIT_HASH_HEX);
    }
done:
    EVP_MD_CTX_free(ctx);
#if OPENSSL_VERSION_MAJOR >= 3
    EVP_MD_free(fetched);
#endif
    for (i = 0; i < AUDIT_COLS - 1; i++) {
        free(arr[i].p);
    }
    for (i = 0; i < nrows; i++) {
        free(rows[i].owned);
    }
    free(rows);
    return rc;
}

static void audit_drop_front(struct ess_audit *a, size_t k)
{
    size_t i;

    for (i = 0; i < k; i++) {
        rec_fini(&a->q[i]);
    }
    memmove(a->q, a->q + k, (a->n - k) * sizeof(*a->q));
    a->n -= k;
}

int ess_audit_flush(struct ess_audit *a, struct ess_store *s, struct ess_err *err)
{
    size_t k;
    int tries = 0;
    int rc = ESS_OK;

    if (a == NULL || s == NULL || a->sent > 0) {
        return ess_err_set(err, ESS_EINVAL, "audit: NULL log or store, or a send under way");
    }
    if (a->lost > 0 && audit_note_lost(a) != ESS_OK) {
        return ess_err_set(err, ESS_ENOMEM, "audit: out of memory");
    }
    while (a->n > 0 && rc == ESS_OK) {
        k = a->n < AUDIT_CHUNK ? a->n : AUDIT_CHUNK;
        rc = a->have_head ? ESS_OK : audit_read_head(a, s, err);
        if (rc == ESS_OK) {
            rc = audit_insert(a, s, 0, k, &a->head_n, a->head, 0, err);
        }
        if (rc != ESS_OK) {
            a->have_head = 0; /* another writer, or a lost connection: read it again */
            if (++tries < 2 && rc != ESS_ENOMEM) {
                ess_err_clear(err);
                rc = ESS_OK;
            }
            continue;
        }
        audit_drop_front(a, k);
    }
    return rc;
}

int ess_audit_head(struct ess_audit *a, struct ess_store *s, struct ess_err *err)
{
    if (a == NULL || s == NULL) {
        return ess_err_set(err, ESS_EINVAL, "audit: NULL log or store");
    }
    if (a->lost > 0 && a->sent == 0 && audit_note_lost(a) != ESS_OK) {
        return ess_err_set(err, ESS_ENOMEM, "audit: out of memory");
    }
    return a->have_head ? ESS_OK : audit_read_head(a, s, err);
}

int ess_audit_send(struct ess_audit *a, struct ess_store *s, size_t max, size_t *sent,
                   struct ess_err *err)
{
    size_t k;
    int rc = ESS_OK;

    *sent = 0;
    if (a == NULL || s == NULL || a->sent > 0 || !a->have_head) {
        return ess_err_set(err, ESS_EINVAL, "audit: send: a send under way, or no head read");
    }
    a->sent_n = a->head_n;
    memcpy(a->sent_head, a->head, sizeof(a->sent_head));
    while (rc == ESS_OK && a->sent < a->n && a->sent < max) {
        k = a->n - a->sent < AUDIT_CHUNK ? a->n - a->sent : AUDIT_CHUNK;
        rc = audit_insert(a, s, a->sent, k, &a->sent_n, a->sent_head, 1, err);
        if (rc == ESS_OK) {
            a->sent += k;
        }
    }
    *sent = a->sent;
    return rc;
}

void ess_audit_sent(struct ess_audit *a, int committed)
{
    if (a == NULL || a->sent == 0) {
        return;
    }
    if (committed) {
        a->head_n = a->sent_n;
        memcpy(a->head, a->sent_head, sizeof(a->head));
        audit_drop_front(a, a->sent);
    } else {
        a->have_head = 0; /* another writer, or a lost connection: read it again */
    }
    a->sent = 0;
}

/* ---------------------------------------------------------- verifying -- */

void ess_audit_walk_init(struct ess_audit_walk *w)
{
    w->next_n = 1;
    memcpy(w->head, audit_zero, sizeof(w->head));
    w->bad_n = 0;
}

int ess_audit_walk_step(struct ess_audit_walk *w, const char *chain,
                        const struct ess_audit_row *row, struct ess_err *err)
{
    char h[ESS_AUDIT_HASH_HEX];

    if (w->bad_n != 0) {
        return ESS_EPARSE; /* the first finding stands */
    }
    if (row->n != w->next_n) {
        w->bad_n = w->next_n;
        return ess_err_set(err, ESS_EPARSE, "audit %s: row %lld removed (the next row is %lld)",
                           chain, w->next_n, row->n);
    }
    if (row->prev_hash == NULL || strcmp(row->prev_hash, w->head) != 0) {
        w->bad_n = row->n > 1 ? row->n - 1 : 1;
        return ess_err_set(err, ESS_EPARSE,
                           "audit %s: row %lld altered or a row removed after it (row %lld "
                           "does not chain to it)",
                           chain, w->bad_n, row->n);
    }
    if (ess_audit_hash(w->head, row->n, chain, row->kind != NULL ? row->kind : "", row->at_ms,
                       row->content != NULL ? row->content : "", h) != ESS_OK ||
        row->hash == NULL || strcmp(h, row->hash) != 0) {
        w->bad_n = row->n;
        return ess_err_set(err, ESS_EPARSE,
                           "audit %s: row %lld altered (its content does not "
                           "match its hash)",
                           chain, row->n);
    }
    memcpy(w->head, h, sizeof(w->head));
    w->next_n++;
    return ESS_OK;
}

static long long col_ll(json_t *row, const char *name)
{
    const char *v = json_string_value(json_object_get(row, name));

    return v != NULL ? strtoll(v, NULL, 10) : -1;
}

static const char *col_s(json_t *row, const char *name)
{
    return json_string_value(json_object_get(row, name));
}

/* Walk one page; *last gets the last n read, *got the row count. */
static int audit_walk_page(struct ess_audit_walk *w, const char *chain, json_t *rows,
                           long long *last, struct ess_err *err)
{
    struct ess_audit_row r;
    json_t *row;
    size_t i;
    int rc = ESS_OK;

    json_array_foreach(rows, i, row)
    {
        r = (struct ess_audit_row){col_ll(row, "n"),        col_s(row, "kind"),
                                   col_ll(row, "at_ms"),    col_s(row, "content"),
                                   col_s(row, "prev_hash"), col_s(row, "hash")};
        *last = r.n;
        rc = ess_audit_walk_step(w, chain, &r, err);
        if (rc != ESS_OK) {
            break;
        }
    }
    return rc;
}

int ess_audit_verify(struct ess_store *s, const char *chain, long long *rows, struct ess_err *err)
{
    struct ess_audit_walk w;
    char after[AUDIT_NUM];
    const char *params[2] = {chain, after};
    json_t *page = NULL;
    long long last = 0;
    size_t got;
    int rc;

    *rows = 0;
    ess_audit_walk_init(&w);
    do {
        snprintf(after, sizeof(after), "%lld", last);
        rc = ess_store_query_json(s,
                                  "SELECT n, kind, at_ms, content, prev_hash, hash"
                                  " FROM ess_audit WHERE chain = $1 AND n > $2::bigint"
                                  " ORDER BY n LIMIT 5000",
                                  2, params, &page, err);
        got = json_array_size(page);
        if (rc == ESS_OK) {
            *rows += (long long)got;
            rc = audit_walk_page(&w, chain, page, &last, err);
        }
        json_decref(page);
        page = NULL;
    } while (rc == ESS_OK && got == AUDIT_PAGE);
    if (rc == ESS_OK && *rows == 0) {
        rc = ess_err_set(err, ESS_ENOTFOUND, "audit %s: no rows", chain);
    }
    return rc;
}
