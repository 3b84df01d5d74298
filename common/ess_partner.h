/*
 * ess_partner -- deliveries to a partner over libcurl multi: many transfers in
 * flight, keep-alive connections reused, each bounded by timeout_ms.
 *
 * DESIGN
 * The caller owns ordering and retries; this module only moves bytes. A send is
 * tagged with a caller token (the journal seq) and comes back, exactly once, as
 * a struct ess_partner_result from ess_partner_next_result(). The worker's loop
 * waits in ess_partner_wait(), which is curl_multi_poll() plus one extra fd
 * (the AMQP socket), so the bus, the partner sockets and the timers share one
 * poll() and nothing blocks the loop.
 */
#ifndef ESS_PARTNER_H
#define ESS_PARTNER_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "ess_err.h"

struct ess_partner;

struct ess_partner_result {
    uint64_t token;
    long status;          /* HTTP status, 0 when no response */
    int transport_failed; /* 1 on timeout / refused / reset / DNS... */
    long retry_after_ms;  /* from Retry-After, -1 when absent */
    double total_ms;      /* transfer time */
    char error[256];      /* one line: curl's error, or "HTTP 503: <start of body>" */
    char body[512];       /* start of the response body, NUL-terminated */
};

/* NULL on failure with err set. max_in_flight >= 1. Free with ess_partner_free. */
struct ess_partner *ess_partner_new(long timeout_ms, int max_in_flight, struct ess_err *err);
void ess_partner_free(struct ess_partner *p);

void ess_partner_set_timeout(struct ess_partner *p, long timeout_ms);

struct ess_tls; /* ess_manifest.h */
struct ess_ssh; /* ess_manifest.h */

/* TLS settings for the transfers sent from now on (tls NULL: the defaults,
 * system CAs, no client certificate, verification on). The strings are copied;
 * tls is only read during the call. With verification off this logs a warning
 * (call it at every start). ESS_OK, or ESS_ENOMEM with the old settings kept. */
int ess_partner_set_tls(struct ess_partner *p, const struct ess_tls *tls, struct ess_err *err);

/* SSH settings for sftp:// uploads from now on (ssh NULL: none): the private
 * key to log in with, and the server's host key (a SHA256 fingerprint and/or a
 * known_hosts file; a server with another key is refused). Without either, the
 * host key is not checked: this logs a warning (call it at every start, with
 * the target url). Strings copied. ESS_OK, or ESS_ENOMEM with the old kept. */
int ess_partner_set_ssh(struct ess_partner *p, const struct ess_ssh *ssh, const char *url,
                        struct ess_err *err);

/* Start a POST of body to url. Ownership of headers (curl_slist) and body
 * (malloc'd) passes to the partner on success AND failure. ESS_EAGAIN-like
 * refusal when full is ESS_EINVAL: check ess_partner_room() first. */
int ess_partner_send(struct ess_partner *p, uint64_t token, const char *url,
                     struct curl_slist *headers, char *body, size_t len, struct ess_err *err);

/* A file drop: upload body to <url>/<tmp_name>, then rename it to final_name
 * in the same session, so the partner never sees a partial file under the final
 * name; a retry with the same names replaces a partial tmp file. url is the
 * directory: ftp:// (explicit FTPS when tls is set), ftps:// (implicit TLS) or
 * sftp:// (ess_partner_set_ssh); missing directories are created. Names are one plain path segment ([A-Za-z0-9._-+=,@]). All of req is
 * borrowed for the call only. Ownership of body (malloc'd) passes to the partner
 * on success AND failure. The result comes back through next_result() with
 * transport_failed 0 when the file is in place; status is then the server's last
 * reply code (FTP 250) or 0 (SFTP), never an HTTP status. */
struct ess_partner_upload_req {
    const char *url;
    const char *tmp_name;
    const char *final_name;
    const char *user;     /* NULL: the URL's user, or anonymous */
    const char *password; /* with user */
};

int ess_partner_upload(struct ess_partner *p, uint64_t token,
                       const struct ess_partner_upload_req *req, char *body, size_t len,
                       struct ess_err *err);

int ess_partner_in_flight(const struct ess_partner *p);
int ess_partner_room(const struct ess_partner *p); /* max_in_flight - in_flight */

/* Wait up to timeout_ms for partner sockets or extra_fd (>= 0, readable).
 * *extra_ready is set to 1 when extra_fd is readable. Returns ESS_OK. */
int ess_partner_wait(struct ess_partner *p, int extra_fd, int timeout_ms, int *extra_ready);

/* The same with up to 4 extra fds (a negative one is skipped): ready[i] is
 * set to 1 when fds[i] is readable (the AMQP socket, the journal's session). */
int ess_partner_wait_fds(struct ess_partner *p, const int *fds, int *ready, int n, int timeout_ms);

/* Drive all transfers without blocking. */
int ess_partner_perform(struct ess_partner *p);

/* 1 and *r filled when a transfer finished, 0 when none is pending. */
int ess_partner_next_result(struct ess_partner *p, struct ess_partner_result *r);

#endif
