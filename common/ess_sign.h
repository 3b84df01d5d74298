/*
 * ess_sign -- request authentication: Standard Webhooks HMAC signatures
 * (standardwebhooks.com), bearer tokens and basic auth.
 *
 * Standard Webhooks: the secret is "whsec_<base64 key>" (a secret without the
 * prefix is used as raw key bytes); the signed content is
 * "<webhook-id>.<webhook-timestamp>.<body>"; the header value is
 * "v1,<base64 HMAC-SHA256>". Several space-separated signatures may stand in
 * one header (secret rotation) and verification accepts any that matches,
 * compared in constant time.
 *
 * Secrets come only from the environment variables the manifest names; this
 * module reads them with getenv at call time and never logs or stores them.
 */
#ifndef ESS_SIGN_H
#define ESS_SIGN_H

#include <stddef.h>

#include <curl/curl.h>

#include "ess_err.h"
#include "ess_manifest.h"

/* Write "v1,<base64>" into out (NUL-terminated). ESS_EINVAL when the secret is
 * not valid base64 after "whsec_" or out is too small. */
int ess_sign_webhook(const char *secret, const char *msg_id, long long ts, const char *body,
                     size_t len, char *out, size_t outlen, struct ess_err *err);

/* Verify a webhook-signature header value (one or more space-separated
 * "v1,<b64>") against the secret. ESS_OK when one matches, ESS_EPARSE if none. */
int ess_sign_verify(const char *secret, const char *msg_id, long long ts, const char *body,
                    size_t len, const char *header, struct ess_err *err);

/* A received Standard Webhooks request, header values as they came (any may
 * be NULL): id, timestamp (decimal seconds, within skew_s of now_s) and one
 * matching signature. ESS_OK, or ESS_EPARSE with the reason in err (never
 * the secret). Pure: the caller reads the secret and the clock. */
int ess_sign_check_request(const char *secret, const char *id, const char *ts, const char *sig,
                           const char *body, size_t len, long long now_s, long long skew_s,
                           struct ess_err *err);

/* Append the auth headers for one request to *headers (curl_slist_append):
 * hmac: webhook-id (= event_id), webhook-timestamp (= now_s), webhook-signature;
 * bearer: Authorization: Bearer <token>; basic: Authorization: Basic <b64>;
 * none: nothing. ESS_ECONFIG naming the variable when it is unset. On failure
 * *headers is left as valid list (caller still frees it). */
int ess_sign_headers(const struct ess_auth *auth, const char *event_id, long long now_s,
                     const char *body, size_t len, struct curl_slist **headers,
                     struct ess_err *err);

/* Standard base64 (with padding) of len bytes; malloc'd, caller frees. */
char *ess_sign_base64(const unsigned char *data, size_t len);

#endif
