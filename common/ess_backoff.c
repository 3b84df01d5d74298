/*
 * ess_backoff -- classify a delivery's outcome and pick the next retry delay.
 *
 * DESIGN
 * Classification follows Fluent Bit's out_http: a 4xx is the partner telling
 * us the request itself is wrong, so retrying it cannot help (DROP = park),
 * except 408 (it timed out reading us) and 429 (slow down). 5xx, timeouts and
 * connection errors are the partner being unwell: RETRY. A transport failure
 * wins over any status seen before it: the exchange did not complete, and the
 * idempotency key makes a repeat safe.
 *
 * Delays are "full jitter" (AWS architecture blog, flb_scheduler.c): uniform in
 * [0, min(cap, base * 2^attempt)], so a fleet of workers that failed together
 * does not retry together. The ceiling is computed by doubling with an explicit
 * cap test, never by shifting blindly, so attempt 60 or 10000 cannot overflow.
 *
 * Retry-After accepts delta-seconds and the three HTTP-date forms RFC 9110
 * requires recipients to read (IMF-fixdate, obsolete RFC 850, asctime).
 */
#define _GNU_SOURCE /* strptime */
#include "ess_backoff.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Larger delta-seconds are clamped: a partner asking for a day is as good as "much later". */
#define RETRY_AFTER_MAX_S (7L * 24 * 3600)

enum ess_outcome ess_backoff_classify(long http_status, int transport_failed)
{
    if (transport_failed) {
        return ESS_OUTCOME_RETRY;
    }
    if (http_status >= 200 && http_status <= 299) {
        return ESS_OUTCOME_OK;
    }
    if (http_status == 408 || http_status == 429) {
        return ESS_OUTCOME_RETRY;
    }
    if (http_status >= 500 && http_status <= 599) {
        return ESS_OUTCOME_RETRY;
    }
    /* Other 4xx, unfollowed 3xx, 1xx, 0 without a transport error, nonsense. */
    return ESS_OUTCOME_DROP;
}

uint64_t ess_backoff_rand(uint64_t *rng)
{
    uint64_t x = *rng;

    if (x == 0) {
        /* xorshift is stuck at zero forever; any fixed nonzero seed will do. */
        x = 0x9E3779B97F4A7C15ULL;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* min(cap, base * 2^attempt) without overflow. */
static long backoff_ceiling(int attempt, long base_ms, long cap_ms)
{
    long ceiling = base_ms;
    int i;

    if (ceiling >= cap_ms) {
        return cap_ms;
    }
    for (i = 0; i < attempt; i++) {
        if (ceiling > cap_ms / 2) {
            return cap_ms;
        }
        ceiling *= 2;
    }
    return ceiling;
}

long ess_backoff_delay_ms(int attempt, long base_ms, long cap_ms, uint64_t *rng)
{
    long ceiling;
    uint64_t span;

    if (cap_ms <= 0 || base_ms <= 0) {
        return 0;
    }
    if (attempt < 0) {
        attempt = 0;
    }
    ceiling = backoff_ceiling(attempt, base_ms, cap_ms);
    if (rng == NULL) {
        return ceiling;
    }
    span = (uint64_t)ceiling + 1;
    return (long)(ess_backoff_rand(rng) % span);
}

/* Delta-seconds: digits only (RFC 9110 section 10.2.3). -1 when not that form. */
static long retry_after_delta(const char *s, size_t n)
{
    char *end = NULL;
    long secs;
    size_t i;

    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
    }
    errno = 0;
    secs = strtol(s, &end, 10);
    if (end != s + n) {
        return -1;
    }
    if (errno == ERANGE || secs > RETRY_AFTER_MAX_S) {
        secs = RETRY_AFTER_MAX_S;
    }
    return secs * 1000;
}

/* HTTP-date in any of its three forms; the whole string must be consumed. */
static long retry_after_date(const char *s, time_t now)
{
    static const char *const formats[] = {
        "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        "%a %b %e %H:%M:%S %Y",      /* asctime: Sun Nov  6 08:49:37 1994 */
    };
    struct tm tm;
    const char *end;
    time_t when;
    size_t i;

    for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, formats[i], &tm);
        if (end == NULL || *end != '\0') {
            continue;
        }
        when = timegm(&tm);
        if (when == (time_t)-1) {
            return -1;
        }
        if (when <= now) {
            return 0;
        }
        if (when - now > RETRY_AFTER_MAX_S) {
            return RETRY_AFTER_MAX_S * 1000;
        }
        return (long)(when - now) * 1000;
    }
    return -1;
}

long ess_backoff_retry_after_ms(const char *value, time_t now)
{
    char buf[64];
    size_t start = 0;
    size_t n;

    if (value == NULL) {
        return -1;
    }
    n = strlen(value);
    while (start < n && isspace((unsigned char)value[start])) {
        start++;
    }
    while (n > start && isspace((unsigned char)value[n - 1])) {
        n--;
    }
    if (n == start || n - start >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, value + start, n - start);
    buf[n - start] = '\0';
    if (isdigit((unsigned char)buf[0])) {
        return retry_after_delta(buf, n - start);
    }
    return retry_after_date(buf, now);
}
