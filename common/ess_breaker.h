/*
 * ess_breaker -- a circuit breaker for a partner that is down.
 *
 * CLOSED: deliveries flow. After `threshold` consecutive retryable failures
 * (and no success in between) it OPENs: state partner_down, nothing is sent
 * except ONE probe at a time, every probe interval (which doubles up to a cap).
 * A probe success closes it; a probe failure keeps it open. While open, failed
 * attempts do not count towards max_retry, so nothing is parked for an outage.
 * Pure state machine on caller-supplied monotonic milliseconds: unit-tested
 * without clocks.
 */
#ifndef ESS_BREAKER_H
#define ESS_BREAKER_H

enum ess_breaker_state { ESS_BREAKER_CLOSED = 0, ESS_BREAKER_OPEN };

struct ess_breaker {
    enum ess_breaker_state state;
    int failures; /* consecutive retryable failures */
    int threshold;
    long probe_ms; /* current probe interval */
    long probe_min_ms;
    long probe_max_ms;
    long next_probe_at;  /* when OPEN: earliest time for the next probe */
    int probe_in_flight; /* when OPEN: 1 while the probe is out */
};

void ess_breaker_init(struct ess_breaker *b, int threshold, long probe_min_ms, long probe_max_ms);

/* May a delivery start now? CLOSED: always 1. OPEN: 1 once per probe slot (the
 * caller must then send exactly one delivery, the probe), else 0. */
int ess_breaker_allow(struct ess_breaker *b, long now_ms);

/* The slot allow() granted was not used (the event was parked before any
 * transfer started): OPEN gives the next probe slot at once. No-op when CLOSED. */
void ess_breaker_release(struct ess_breaker *b);

/* Report the outcome of a finished delivery that was RETRY-class (failure) or OK. */
void ess_breaker_success(struct ess_breaker *b);
void ess_breaker_failure(struct ess_breaker *b, long now_ms);

/* 1 when OPEN (partner_down). */
int ess_breaker_open(const struct ess_breaker *b);

/* ms until the next probe may go (0 if now), or -1 when CLOSED. */
long ess_breaker_wait_ms(const struct ess_breaker *b, long now_ms);

#endif
