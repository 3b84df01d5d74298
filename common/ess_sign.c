/*
 * ess_sign -- Standard Webhooks HMAC-SHA256 signatures, bearer and basic auth.
 *
 * DESIGN
 * The MAC is streamed through OpenSSL's EVP_MAC over "id", ".", "ts", ".",
 * body, so a large body is never copied just to be signed. Verification
 * decodes each "v1,<b64>" candidate and compares raw MACs with
 * CRYPTO_memcmp (constant time); candidates with another version prefix are
 * skipped, as the spec asks, so a partner can add "v1a,..." without breaking us.
 *
 * Secrets: read with getenv at call time (a restarted worker or a SIGHUP
 * picks up a rotated secret), copied only into short-lived buffers that are
 * wiped with OPENSSL_cleanse, and never put in an error message: errors name
 * the environment variable, never its value. Header values are refused when
 * they contain CR/LF, which would let an environment value inject headers.
 */
#include "ess_sign.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define SIGN_MAC_LEN 32 /* SHA-256 */
#define SIGN_PREFIX "whsec_"
#define SIGN_KEY_MAX 512     /* decoded secret bytes we accept */
#define SIGN_HEADER_MAX 1024 /* one "Name: value" header line */

/* Decode standard base64 of n chars into out. Padding is optional (some
 * libraries strip it); anything outside the alphabet is an error. */
static int sign_b64_decode(const char *in, size_t n, unsigned char *out, size_t outcap,
                           size_t *outlen)
{
    char buf[SIGN_KEY_MAX * 2];
    size_t i;
    size_t pad = 0;
    int got;

    while (n > 0 && in[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (n == 0 || n % 4 == 1 || n + 3 >= sizeof(buf)) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", in[i]) ==
                NULL ||
            in[i] == '\0') {
            return -1;
        }
        buf[i] = in[i];
    }
    pad = (4 - n % 4) % 4;
    memset(buf + n, '=', pad);
    buf[n + pad] = '\0';
    if ((n + pad) / 4 * 3 > outcap) {
        return -1;
    }
    got = EVP_DecodeBlock(out, (const unsigned char *)buf, (int)(n + pad));
    if (got < 0) {
        return -1;
    }
    /* EVP_DecodeBlock counts the zero bytes that padding stands for. */
    *outlen = (size_t)got - pad;
    return 0;
}

/* The HMAC key: base64 after "whsec_", else the secret's own bytes. */
static int sign_key(const char *secret, unsigned char *key, size_t *keylen, struct ess_err *err)
{
    size_t plen = strlen(SIGN_PREFIX);
    size_t n;

    if (secret == NULL || secret[0] == '\0') {
        return ess_err_set(err, ESS_EINVAL, "webhook secret is empty");
    }
    if (strncmp(secret, SIGN_PREFIX, plen) == 0) {
        if (sign_b64_decode(secret + plen, strlen(secret + plen), key, SIGN_KEY_MAX, keylen) != 0) {
            return ess_err_set(err, ESS_EINVAL, "webhook secret is not valid base64 after '%s'",
                               SIGN_PREFIX);
        }
        return ESS_OK;
    }
    n = strlen(secret);
    if (n > SIGN_KEY_MAX) {
        return ess_err_set(err, ESS_EINVAL, "webhook secret is longer than %d bytes", SIGN_KEY_MAX);
    }
    memcpy(key, secret, n);
    *keylen = n;
    return ESS_OK;
}

/* HMAC-SHA256 of "<msg_id>.<ts>.<body>". */
static int sign_mac(const unsigned char *key, size_t keylen, const char *msg_id, long long ts,
                    const char *body, size_t len, unsigned char mac[SIGN_MAC_LEN])
{
    OSSL_PARAM params[2];
    EVP_MAC *alg = NULL;
    EVP_MAC_CTX *ctx = NULL;
    char tsbuf[32];
    size_t maclen = 0;
    int ok = 0;

    snprintf(tsbuf, sizeof(tsbuf), ".%lld.", ts);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (alg == NULL) {
        goto cleanup;
    }
    ctx = EVP_MAC_CTX_new(alg);
    if (ctx == NULL || !EVP_MAC_init(ctx, key, keylen, params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)tsbuf, strlen(tsbuf)) ||
        (len > 0 && !EVP_MAC_update(ctx, (const unsigned char *)body, len)) ||
        !EVP_MAC_final(ctx, mac, &maclen, SIGN_MAC_LEN)) {
        goto cleanup;
    }
    ok = maclen == SIGN_MAC_LEN;
cleanup:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(alg);
    return ok ? ESS_OK : ESS_EINVAL;
}

/* Key + MAC in one step, wiping the key copy whatever happens. */
static int sign_compute(const char *secret, const char *msg_id, long long ts, const char *body,
                        size_t len, unsigned char mac[SIGN_MAC_LEN], struct ess_err *err)
{
    unsigned char key[SIGN_KEY_MAX];
    size_t keylen = 0;
    int rc;

    if (msg_id == NULL || (body == NULL && len > 0)) {
        return ess_err_set(err, ESS_EINVAL, "webhook signature needs an id and a body");
    }
    rc = sign_key(secret, key, &keylen, err);
    if (rc == ESS_OK) {
        rc = sign_mac(key, keylen, msg_id, ts, body, len, mac);
        if (rc != ESS_OK) {
            ess_err_set(err, rc, "HMAC-SHA256 failed in OpenSSL");
        }
    }
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

char *ess_sign_base64(const unsigned char *data, size_t len)
{
    char *out;

    if (len > ((size_t)1 << 30)) {
        return NULL;
    }
    out = malloc(4 * ((len + 2) / 3) + 1);
    if (out == NULL) {
        return NULL;
    }
    out[0] = '\0';
    if (len > 0) {
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    }
    return out;
}

int ess_sign_webhook(const char *secret, const char *msg_id, long long ts, const char *body,
                     size_t len, char *out, size_t outlen, struct ess_err *err)
{
    unsigned char mac[SIGN_MAC_LEN];
    char b64[4 * ((SIGN_MAC_LEN + 2) / 3) + 1];
    int rc;

    rc = sign_compute(secret, msg_id, ts, body, len, mac, err);
    if (rc != ESS_OK) {
        return rc;
    }
    EVP_EncodeBlock((unsigned char *)b64, mac, SIGN_MAC_LEN);
    if (out == NULL || (size_t)snprintf(out, outlen, "v1,%s", b64) >= outlen) {
        return ess_err_set(err, ESS_EINVAL, "signature buffer too small (%zu bytes)", outlen);
    }
    return ESS_OK;
}

/* Does one "v1,<b64>" candidate of n chars match mac? Other versions never do. */
static int sign_candidate_matches(const char *cand, size_t n, const unsigned char *mac)
{
    unsigned char got[SIGN_MAC_LEN + 3];
    size_t gotlen = 0;

    if (n < 3 || memcmp(cand, "v1,", 3) != 0) {
        return 0;
    }
    if (sign_b64_decode(cand + 3, n - 3, got, sizeof(got), &gotlen) != 0) {
        return 0;
    }
    return gotlen == SIGN_MAC_LEN && CRYPTO_memcmp(got, mac, SIGN_MAC_LEN) == 0;
}

int ess_sign_verify(const char *secret, const char *msg_id, long long ts, const char *body,
                    size_t len, const char *header, struct ess_err *err)
{
    unsigned char mac[SIGN_MAC_LEN];
    const char *p = header;
    size_t n;
    int rc;

    if (header == NULL) {
        return ess_err_set(err, ESS_EPARSE, "no webhook-signature header");
    }
    rc = sign_compute(secret, msg_id, ts, body, len, mac, err);
    if (rc != ESS_OK) {
        return rc;
    }
    while (*p != '\0') {
        p += strspn(p, " ");
        n = strcspn(p, " ");
        if (n > 0 && sign_candidate_matches(p, n, mac)) {
            return ESS_OK;
        }
        p += n;
    }
    return ess_err_set(err, ESS_EPARSE, "no v1 signature in webhook-signature matches");
}

int ess_sign_check_request(const char *secret, const char *id, const char *ts, const char *sig,
                           const char *body, size_t len, long long now_s, long long skew_s,
                           struct ess_err *err)
{
    char *end = NULL;
    long long t;

    if (id == NULL || ts == NULL || sig == NULL) {
        return ess_err_set(err, ESS_EPARSE,
                           "missing webhook-id, webhook-timestamp or "
                           "webhook-signature");
    }
    errno = 0;
    t = strtoll(ts, &end, 10);
    if (end == ts || *end != '\0' || errno != 0) {
        return ess_err_set(err, ESS_EPARSE, "webhook-timestamp is not a number: %.40s", ts);
    }
    /* both within +-2^62: the difference cannot overflow */
    if (t < -(1LL << 62) || t > (1LL << 62) || now_s - t > skew_s || t - now_s > skew_s) {
        return ess_err_set(err, ESS_EPARSE, "webhook-timestamp is more than %lld s off", skew_s);
    }
    /* the detail (a bad secret, say) is the operator's, not the sender's */
    if (ess_sign_verify(secret, id, t, body, len, sig, NULL) != ESS_OK) {
        return ess_err_set(err, ESS_EPARSE, "no webhook-signature matches");
    }
    return ESS_OK;
}

/* The value of the environment variable named by the manifest's `what` key. */
static int sign_env(const char *name, const char *what, const char **value, struct ess_err *err)
{
    const char *v;

    if (name == NULL || name[0] == '\0') {
        return ess_err_set(err, ESS_ECONFIG, "auth.%s is required for this auth type", what);
    }
    v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        return ess_err_set(err, ESS_ECONFIG, "environment variable %s (auth.%s) is not set", name,
                           what);
    }
    if (strpbrk(v, "\r\n") != NULL) {
        return ess_err_set(err, ESS_ECONFIG,
                           "environment variable %s (auth.%s) contains a line break", name, what);
    }
    *value = v;
    return ESS_OK;
}

/* Append "Name: value" to *headers; the list is unchanged when it fails. */
static int sign_append(struct curl_slist **headers, const char *name, const char *value,
                       struct ess_err *err)
{
    char line[SIGN_HEADER_MAX];
    struct curl_slist *grown;
    int n;

    n = snprintf(line, sizeof(line), "%s: %s", name, value);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        OPENSSL_cleanse(line, sizeof(line));
        return ess_err_set(err, ESS_ECONFIG, "%s header value is too long", name);
    }
    grown = curl_slist_append(*headers, line);
    OPENSSL_cleanse(line, sizeof(line));
    if (grown == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "out of memory adding the %s header", name);
    }
    *headers = grown;
    return ESS_OK;
}

static int sign_headers_hmac(const struct ess_auth *auth, const char *event_id, long long now_s,
                             const char *body, size_t len, struct curl_slist **headers,
                             struct ess_err *err)
{
    const char *secret = NULL;
    char sig[64];
    char ts[32];
    int rc;

    rc = sign_env(auth->secret_env, "secret_env", &secret, err);
    if (rc != ESS_OK) {
        return rc;
    }
    if (event_id == NULL || event_id[0] == '\0' || strpbrk(event_id, "\r\n") != NULL) {
        return ess_err_set(err, ESS_EINVAL, "webhook-id needs a one-line event id");
    }
    /* err stays NULL here: the message we set names the variable, not a value. */
    rc = ess_sign_webhook(secret, event_id, now_s, body, len, sig, sizeof(sig), NULL);
    if (rc != ESS_OK) {
        return ess_err_set(err, ESS_ECONFIG,
                           "environment variable %s (auth.secret_env) is not a usable secret "
                           "(want whsec_<base64>)",
                           auth->secret_env);
    }
    snprintf(ts, sizeof(ts), "%lld", now_s);
    rc = sign_append(headers, "webhook-id", event_id, err);
    if (rc == ESS_OK) {
        rc = sign_append(headers, "webhook-timestamp", ts, err);
    }
    if (rc == ESS_OK) {
        rc = sign_append(headers, "webhook-signature", sig, err);
    }
    return rc;
}

static int sign_headers_basic(const struct ess_auth *auth, struct curl_slist **headers,
                              struct ess_err *err)
{
    const char *user = NULL;
    const char *pass = NULL;
    char pair[SIGN_HEADER_MAX / 2];
    char value[SIGN_HEADER_MAX];
    char *b64 = NULL;
    int n;
    int rc;

    rc = sign_env(auth->user_env, "user_env", &user, err);
    if (rc == ESS_OK) {
        rc = sign_env(auth->password_env, "password_env", &pass, err);
    }
    if (rc != ESS_OK) {
        return rc;
    }
    n = snprintf(pair, sizeof(pair), "%s:%s", user, pass);
    if (n < 0 || (size_t)n >= sizeof(pair)) {
        rc = ess_err_set(err, ESS_ECONFIG, "basic auth credentials (%s, %s) are too long",
                         auth->user_env, auth->password_env);
        goto cleanup;
    }
    b64 = ess_sign_base64((const unsigned char *)pair, (size_t)n);
    if (b64 == NULL) {
        rc = ess_err_set(err, ESS_ENOMEM, "out of memory encoding basic auth");
        goto cleanup;
    }
    snprintf(value, sizeof(value), "Basic %s", b64);
    rc = sign_append(headers, "Authorization", value, err);
cleanup:
    OPENSSL_cleanse(pair, sizeof(pair));
    OPENSSL_cleanse(value, sizeof(value));
    if (b64 != NULL) {
        OPENSSL_cleanse(b64, strlen(b64));
        free(b64);
    }
    return rc;
}

static int sign_headers_bearer(const struct ess_auth *auth, struct curl_slist **headers,
                               struct ess_err *err)
{
    const char *token = NULL;
    char value[SIGN_HEADER_MAX];
    int n;
    int rc;

    rc = sign_env(auth->token_env, "token_env", &token, err);
    if (rc != ESS_OK) {
        return rc;
    }
    n = snprintf(value, sizeof(value), "Bearer %s", token);
    if (n < 0 || (size_t)n >= sizeof(value)) {
        rc = ess_err_set(err, ESS_ECONFIG, "environment variable %s (auth.token_env) is too long",
                         auth->token_env);
    } else {
        rc = sign_append(headers, "Authorization", value, err);
    }
    OPENSSL_cleanse(value, sizeof(value));
    return rc;
}

int ess_sign_headers(const struct ess_auth *auth, const char *event_id, long long now_s,
                     const char *body, size_t len, struct curl_slist **headers, struct ess_err *err)
{
    if (auth == NULL || headers == NULL) {
        return ess_err_set(err, ESS_EINVAL, "ess_sign_headers: auth and headers are required");
    }
    switch (auth->type) {
    case ESS_AUTH_NONE:
        return ESS_OK;
    case ESS_AUTH_BASIC:
        return sign_headers_basic(auth, headers, err);
    case ESS_AUTH_BEARER:
        return sign_headers_bearer(auth, headers, err);
    case ESS_AUTH_HMAC:
        return sign_headers_hmac(auth, event_id, now_s, body, len, headers, err);
    }
    return ess_err_set(err, ESS_ECONFIG, "unknown auth type %d", (int)auth->type);
}
