/*
 * ess_zone -- IANA time zones from the host's tz database: wall-clock time in a
 * zone <-> seconds since the epoch. Shared by transforms (tz) and delivery
 * schedules (ess_schedule).
 *
 * DESIGN
 * libc knows one zone at a time (TZ); each call switches TZ to the zone,
 * converts, and restores what was there. Not thread-safe (the workers are
 * single-threaded) and not cheap (tzset reads the zone file): callers convert
 * at load time or at most a few times a second.
 */
#ifndef ESS_ZONE_H
#define ESS_ZONE_H

#include <time.h>

/* 1 when zone names a TZif file of the tz database (TZDIR or
 * /usr/share/zoneinfo); names with "..", a leading '/' or odd characters never do. */
int ess_zone_exists(const char *zone);

/* Seconds since the epoch of wall-clock tm (tm_isdst ignored) in zone. *gap = 1
 * when that local time does not exist there (skipped by a DST change; *t is
 * then mktime's normalisation, the same instant one DST step later). -1 on failure. */
int ess_zone_to_epoch(const char *zone, const struct tm *tm, time_t *t, int *gap);

/* The wall-clock time in zone at t. -1 on failure. */
int ess_zone_from_epoch(const char *zone, time_t t, struct tm *out);

#endif
