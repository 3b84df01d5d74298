/*
 * ess_fetch -- request headers and easy-handle settings for the blocking GETs
 * of ess-pull and ess-reconcile, from the manifest's auth, headers and tls.
 *
 * DESIGN
 * Both workers fetch the same way (one easy handle, one request at a time), so
 * the settings live here once; each worker adds only what differs: timeouts
 * (a poll is bounded, a long listing only must not stall) and where the body
 * goes. Secrets are read from the environment at each request and never kept.
 */
#include "ess_fetch.h"

#include <stdio.h>
#include <stdlib.h>

#include "ess_manifest.h"

/* Append line to h; on failure free h and return NULL. */
static struct curl_slist *fetch_append(struct curl_slist *h, const char *line)
{
    struct curl_slist *n = curl_slist_append(h, line);

    if (n == NULL) {
        curl_slist_free_all(h);
    }
    return n;
}

struct curl_slist *ess_fetch_headers(const struct ess_manifest *m, const char *accept)
{
    struct curl_slist *h;
    char line[1024];
    const char *tok;
    size_t i;

    snprintf(line, sizeof(line), "Accept: %s", accept);
    h = fetch_append(NULL, line);
    for (i = 0; h != NULL && i < m->headers.n; i++) {
        snprintf(line, sizeof(line), "%s: %s", m->headers.keys[i], m->headers.vals[i]);
        h = fetch_append(h, line);
    }
    if (h != NULL && m->auth.type == ESS_AUTH_BEARER) {
        tok = getenv(m->auth.token_env);
        snprintf(line, sizeof(line), "Authorization: Bearer %s", tok != NULL ? tok : "");
        h = fetch_append(h, line);
    }
    return h;
}

CURLcode ess_fetch_setup(CURL *e, const struct ess_manifest *m, const char *url,
                         const char *user_agent)
{
    CURLcode rc = CURLE_OK;

    curl_easy_reset(e);
    rc |= curl_easy_setopt(e, CURLOPT_URL, url);
    rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent);
    if (m->auth.type == ESS_AUTH_BASIC) {
        rc |= curl_easy_setopt(e, CURLOPT_USERNAME, getenv(m->auth.user_env));
        rc |= curl_easy_setopt(e, CURLOPT_PASSWORD, getenv(m->auth.password_env));
    }
    if (m->tls.ca_file != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_CAINFO, m->tls.ca_file);
    }
    if (m->tls.cert_file != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_SSLCERT, m->tls.cert_file);
    }
    if (m->tls.key_file != NULL) {
        rc |= curl_easy_setopt(e, CURLOPT_SSLKEY, m->tls.key_file);
    }
    if (!m->tls.verify) {
        rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return rc;
}
