/* ess-bench-floor: what the shared libraries of ess-push cost before any work.
 *
 * Linked like ess-push (libess and everything it needs: libcurl with its TLS, GSSAPI,
 * LDAP and RTMP dependencies, libpq, rabbitmq-c, jansson, libyaml, OpenSSL; not
 * libmicrohttpd, which ess_metrics loads only for metrics_listen) and started as ess-push
 * runs (bench.py sets GNUTLS_NO_IMPLICIT_INIT=1, as ess-push's re-exec does), it calls
 * curl_global_init() as ess-push does and prints its resident memory
 * as one JSON line. bench/bench.py reports it next to ess-push's peak RSS: most of that
 * peak is these pages, shared with every other process that maps the same libraries. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ess_version.h"

/* "Name:   1234 kB" in /proc/self/status: 1234, or -1 when absent or unreadable. */
static long status_kib(const char *status, const char *name)
{
    const char *at = strstr(status, name);
    char *end = NULL;
    long kib;

    if (at == NULL || at[strlen(name)] != ':') {
        return -1;
    }
    kib = strtol(at + strlen(name) + 1, &end, 10);
    return end != NULL && strncmp(end, " kB", 3) == 0 ? kib : -1;
}

int main(void)
{
    char status[8192];
    size_t n;
    FILE *f;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ess-bench-floor: curl_global_init failed\n");
        return 1;
    }
    f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        perror("ess-bench-floor: /proc/self/status");
        return 1;
    }
    n = fread(status, 1, sizeof(status) - 1, f);
    fclose(f);
    status[n] = '\0';
    printf(
        "{\"version\": \"%s\", \"rss_kib\": %ld, \"rss_file_kib\": %ld, \"rss_anon_kib\": %ld}\n",
        ESS_VERSION, status_kib(status, "VmRSS"), status_kib(status, "RssFile"),
        status_kib(status, "RssAnon"));
    curl_global_cleanup();
    return 0;
}
