/*
 * ess_schedule -- a partner's delivery schedule: weekly windows in its own
 * time zone (`delivery_windows`) and dated maintenance windows (`blackouts`).
 * Outside them the push worker journals and holds; this module only answers
 * "is delivery open at t?" and "when does it next open?".
 *
 * DESIGN
 * Times are wall-clock times in an IANA zone (ess_zone.h), so a window is
 * "06:00-20:00 America/Chicago" on both sides of a DST change. A window is
 * [from, to) on each of its days; to earlier than from runs past midnight
 * (its days name the day it starts); to "24:00" is the end of the day. A
 * blackout is [from, to) between two local date-times, converted to epoch
 * seconds when it is parsed. Open = (no windows, or inside one) and inside no
 * blackout. The next opening is the earliest candidate instant -- a window
 * start (for the next 8 days from now and from each blackout's end) or a
 * blackout's end -- at which delivery is open. A local time skipped by a DST
 * change (02:30 on a spring-forward night) opens at the first instant after
 * the gap.
 *
 * Pure: no I/O but the zone files, no globals. Ownership: the schedule owns its
 * arrays and zone names; ess_schedule_fini releases them.
 */
#ifndef ESS_SCHEDULE_H
#define ESS_SCHEDULE_H

#include <stddef.h>

#define ESS_SCHEDULE_EVERY_DAY 0x7fu /* bit 0 Monday ... bit 6 Sunday */

struct ess_schedule_window {
    unsigned days; /* days it starts on, ESS_SCHEDULE_EVERY_DAY bits */
    int from_min;  /* minutes after local midnight, 0..1439 */
    int to_min;    /* 1..1440; < from_min: ends the next day */
    char *tz;      /* IANA zone */
};

struct ess_schedule_blackout {
    long long from; /* epoch seconds, inclusive */
    long long to;   /* epoch seconds, exclusive */
    char *tz;       /* the zone it was written in (for messages) */
};

struct ess_schedule {
    struct ess_schedule_window *windows;
    size_t n_windows;
    struct ess_schedule_blackout *blackouts;
    size_t n_blackouts;
};

/* "mon-fri", "sat,sun", "fri-mon" (wraps), "mon,wed-fri", "daily". 0 or -1
 * with what is wrong in why. */
int ess_schedule_parse_days(const char *s, unsigned *days, char *why, size_t len);

/* "HH:MM" -> minutes after midnight; "24:00" only when allow_end. 0 / -1. */
int ess_schedule_parse_clock(const char *s, int allow_end, int *min, char *why, size_t len);

/* "YYYY-MM-DDTHH:MM[:SS]" in zone tz -> epoch seconds. 0 / -1. */
int ess_schedule_parse_local(const char *s, const char *tz, long long *epoch, char *why,
                             size_t len);

/* 1 when nothing is scheduled (always open). */
int ess_schedule_empty(const struct ess_schedule *s);

/* 1 when delivery is open at epoch second t. */
int ess_schedule_open(const struct ess_schedule *s, long long t);

/* t when open at t, else the first second after t at which it opens; -1 when
 * it never opens again (every window is inside a blackout for good). */
long long ess_schedule_next_open(const struct ess_schedule *s, long long t);

void ess_schedule_fini(struct ess_schedule *s);

#endif
