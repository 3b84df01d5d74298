/*
 * ess_breaker -- circuit breaker for a partner that is down.
 *
 * DESIGN
 * A pure state machine over caller-supplied monotonic milliseconds, so the
 * tests drive it without clocks and the worker's cron can ask it how long to
 * sleep.
 *
 *   CLOSED --(threshold consecutive failures)--> OPEN (probe at now + probe_min)
 *   OPEN   --allow() at/after next_probe_at-->    probe in flight (no more allowed)
 *   probe failure --> interval doubles (capped), next probe at now + interval
 *   any success   --> CLOSED, counters and interval reset
 *
 * While OPEN, a failure that arrives with no probe out is a straggler: a
 * delivery that was already in flight when the breaker tripped. It must not
 * move the probe schedule, or a burst of stragglers would push the first
 * probe far into the future.
 */
#include "ess_breaker.h"

#include <limits.h>
#include <string.h>

void ess_breaker_init(struct ess_breaker *b, int threshold, long probe_min_ms, long probe_max_ms)
{
    memset(b, 0, sizeof(*b));
    b->state = ESS_BREAKER_CLOSED;
    b->threshold = threshold > 0 ? threshold : 1;
    b->probe_min_ms = probe_min_ms > 0 ? probe_min_ms : 1;
    b->probe_max_ms = probe_max_ms > b->probe_min_ms ? probe_max_ms : b->probe_min_ms;
    b->probe_ms = b->probe_min_ms;
}

int ess_breaker_allow(struct ess_breaker *b, long now_ms)
{
    if (b->state == ESS_BREAKER_CLOSED) {
        return 1;
    }
    if (b->probe_in_flight || now_ms < b->next_probe_at) {
        return 0;
    }
    b->probe_in_flight = 1;
    return 1;
}

void ess_breaker_release(struct ess_breaker *b)
{
    b->probe_in_flight = 0;
}

void ess_breaker_success(struct ess_breaker *b)
{
    b->state = ESS_BREAKER_CLOSED;
    b->failures = 0;
    b->probe_ms = b->probe_min_ms;
    b->next_probe_at = 0;
    b->probe_in_flight = 0;
}

static void breaker_trip(struct ess_breaker *b, long now_ms)
{
    b->state = ESS_BREAKER_OPEN;
    b->probe_ms = b->probe_min_ms;
    b->next_probe_at = now_ms + b->probe_ms;
    b->probe_in_flight = 0;
}

void ess_breaker_failure(struct ess_breaker *b, long now_ms)
{
    if (b->failures < INT_MAX) {
        b->failures++;
    }
    if (b->state == ESS_BREAKER_CLOSED) {
        if (b->failures >= b->threshold) {
            breaker_trip(b, now_ms);
        }
        return;
    }
    if (!b->probe_in_flight) {
        return; /* a straggler from before the trip: schedule unchanged */
    }
    b->probe_in_flight = 0;
    if (b->probe_ms > b->probe_max_ms / 2) {
        b->probe_ms = b->probe_max_ms;
    } else {
        b->probe_ms *= 2;
    }
    b->next_probe_at = now_ms + b->probe_ms;
}

int ess_breaker_open(const struct ess_breaker *b)
{
    return b->state == ESS_BREAKER_OPEN;
}

long ess_breaker_wait_ms(const struct ess_breaker *b, long now_ms)
{
    if (b->state == ESS_BREAKER_CLOSED) {
        return -1;
    }
    if (b->probe_in_flight) {
        /* Nothing to do until the probe's transfer ends, and that wakes the
         * loop by itself; report the interval so a caller never spins on 0. */
        return b->probe_ms;
    }
    if (now_ms >= b->next_probe_at) {
        return 0;
    }
    return b->next_probe_at - now_ms;
}
