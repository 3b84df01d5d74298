/*
 * ess_backoff -- what to do with a delivery's outcome, and when to try again.
 *
 * Three outcomes (model: Fluent Bit out_http): OK for 2xx; RETRY for 408, 429,
 * 5xx, timeouts and connection errors; DROP (park at once) for other 4xx and
 * for anything else a partner answers (1xx/3xx after redirects are not
 * followed). Delays are capped exponential with full jitter (model:
 * flb_scheduler backoff_full_jitter): uniform in [0, min(cap, base * 2^attempt)].
 * 429's Retry-After (delta-seconds or an HTTP-date) overrides the jitter.
 */
#ifndef ESS_BACKOFF_H
#define ESS_BACKOFF_H

#include <stdint.h>
#include <time.h>

enum ess_outcome { ESS_OUTCOME_OK = 0, ESS_OUTCOME_RETRY, ESS_OUTCOME_DROP };

/* http_status: 0 when no response arrived; transport_failed: nonzero when the
 * transfer failed (timeout, refused, reset...). */
enum ess_outcome ess_backoff_classify(long http_status, int transport_failed);

/* attempt is 0 for the first retry. rng is a caller-owned xorshift state
 * (nonzero). Never negative, never above cap_ms. */
long ess_backoff_delay_ms(int attempt, long base_ms, long cap_ms, uint64_t *rng);

/* Parse a Retry-After value: delta-seconds or an IMF-fixdate HTTP-date
 * relative to now. Returns milliseconds >= 0, or -1 when unparseable. */
long ess_backoff_retry_after_ms(const char *value, time_t now);

/* A small xorshift64* step, shared so tests can seed it. */
uint64_t ess_backoff_rand(uint64_t *rng);

#endif
