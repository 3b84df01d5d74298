/*
 * ess_fetch -- what a blocking GET of a partner's records needs from the
 * manifest (ess-pull's polls, ess-reconcile's listing): request headers
 * (Accept, static headers:, bearer auth) and the easy handle's URL, basic auth
 * and TLS. The push side sends through ess_partner (curl multi) instead.
 */
#ifndef ESS_FETCH_H
#define ESS_FETCH_H

#include <curl/curl.h>

struct ess_manifest;

/* "Accept: <accept>", every headers: entry, and "Authorization: Bearer ..."
 * for auth: bearer. A new list the caller frees with curl_slist_free_all();
 * NULL when out of memory (nothing to free then). */
struct curl_slist *ess_fetch_headers(const struct ess_manifest *m, const char *accept);

/* Reset e, then set the URL (http/https only), no signals, any encoding, the
 * user agent, basic auth and the manifest's TLS settings. The caller adds its
 * timeouts, write callback and headers. CURLE_OK or the first failure. */
CURLcode ess_fetch_setup(CURL *e, const struct ess_manifest *m, const char *url,
                         const char *user_agent);

#endif
