/*
 * ess_ring -- growing a circular buffer; see ess_ring.h.
 */
#include "ess_ring.h"

#include <stdlib.h>
#include <string.h>

void *ess_ring_unwrap(const void *ring, size_t size, size_t cap, size_t head, size_t n,
                      size_t new_cap)
{
    char *out;
    size_t first;

    if (new_cap < n || size == 0 || new_cap == 0 || (n > 0 && (ring == NULL || head >= cap))) {
        return NULL;
    }
    out = malloc(new_cap * size);
    if (out == NULL || n == 0) {
        return out;
    }
    first = cap - head < n ? cap - head : n; /* up to the end, then the wrapped rest */
    memcpy(out, (const char *)ring + head * size, first * size);
    memcpy(out + first * size, ring, (n - first) * size);
    return out;
}
