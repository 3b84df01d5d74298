/*
 * ess_ring -- growing a circular buffer: the one step ess_keyq's seq ring
 * and ess_alert's failure samples share.
 */
#ifndef ESS_RING_H
#define ESS_RING_H

#include <stddef.h>

/* A new buffer of new_cap elements of size bytes holding the ring's n
 * elements (ring of cap elements, the oldest at head) in order from index 0;
 * the caller frees the old one and sets head to 0. NULL when out of memory
 * (or new_cap < n); the ring is untouched then. */
void *ess_ring_unwrap(const void *ring, size_t size, size_t cap, size_t head, size_t n,
                      size_t new_cap);

#endif
