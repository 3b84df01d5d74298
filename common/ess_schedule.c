/*
 * ess_schedule -- delivery windows and blackouts; see ess_schedule.h.
 */
#include "ess_schedule.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ess_zone.h"

#define SCHEDULE_LOOKAHEAD_DAYS 8 /* a weekly window opens within a week */

static const char *const day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

/* ---------------------------------------------------------------- parsing */

static int day_index(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < 7; i++) {
        if (n == 3 && strncmp(s, day_names[i], 3) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* One item "mon" or "fri-mon" of a day list into *days. */
static int days_item(const char *s, size_t n, unsigned *days)
{
    const char *dash = memchr(s, '-', n);
    int a, b, d;

    if (dash == NULL) {
        a = day_index(s, n);
        b = a;
    } else {
        a = day_index(s, (size_t)(dash - s));
        b = day_index(dash + 1, n - (size_t)(dash - s) - 1);
    }
    if (a < 0 || b < 0) {
        return -1;
    }
    for (d = a;; d = (d + 1) % 7) {
        *days |= 1u << d;
        if (d == b) {
            break;
        }
    }
    return 0;
}

int ess_schedule_parse_days(const char *s, unsigned *days, char *why, size_t len)
{
    size_t n;

    *days = 0;
    if (strcmp(s, "daily") == 0) {
        *days = ESS_SCHEDULE_EVERY_DAY;
        return 0;
    }
    while (*s != '\0') {
        n = strcspn(s, ",");
        if (n == 0 || days_item(s, n, days) != 0) {
            snprintf(why, len,
                     "'%.*s' is not a day or day range (mon..sun, e.g. mon-fri, "
                     "sat,sun, or daily)",
                     (int)(n > 40 ? 40 : n), s);
            *days = 0;
            return -1;
        }
        s += n + (s[n] == ',');
        if (s[-1] == ',' && *s == '\0') {
            snprintf(why, len, "a day list may not end with ','");
            *days = 0;
            return -1;
        }
    }
    if (*days == 0) {
        snprintf(why, len, "expected days (mon..sun, e.g. mon-fri, sat,sun, or daily)");
        return -1;
    }
    return 0;
}

/* Exactly n digits at s into *v. */
static int digits(const char *s, int n, int *v)
{
    int i;

    *v = 0;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

int ess_schedule_parse_clock(const char *s, int allow_end, int *min, char *why, size_t len)
{
    int h, m;

    if (strlen(s) != 5 || s[2] != ':' || digits(s, 2, &h) != 0 || digits(s + 3, 2, &m) != 0 ||
        m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_end))) {
        snprintf(why, len, "'%.20s' is not a time of day HH:MM (00:00..23:59%s)", s,
                 allow_end ? ", or 24:00" : "");
        return -1;
    }
    *min = h * 60 + m;
    return 0;
}

static int days_in_month(int y, int mon)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return mon == 2 && leap ? 29 : dm[mon - 1];
}

int ess_schedule_parse_local(const char *s, const char *tz, long long *epoch, char *why, size_t len)
{
    struct tm tm;
    time_t t;
    int y, mo, d, h, mi, sec = 0, gap = 0;
    size_t n = strlen(s);

    memset(&tm, 0, sizeof(tm));
    if ((n != 16 && n != 19) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        digits(s, 4, &y) != 0 || digits(s + 5, 2, &mo) != 0 || digits(s + 8, 2, &d) != 0 ||
        digits(s + 11, 2, &h) != 0 || digits(s + 14, 2, &mi) != 0 ||
        (n == 19 && (s[16] != ':' || digits(s + 17, 2, &sec) != 0)) || y < 1970 || mo < 1 ||
        mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59) {
        snprintf(why, len, "'%.40s' is not a local date-time YYYY-MM-DDTHH:MM[:SS]", s);
        return -1;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    if (ess_zone_to_epoch(tz, &tm, &t, &gap) != 0 || t == (time_t)-1) {
        snprintf(why, len, "'%.40s' cannot be converted in zone %.60s", s, tz);
        return -1;
    }
    *epoch = (long long)t;
    return 0;
}

/* ---------------------------------------------------------------- questions */

int ess_schedule_empty(const struct ess_schedule *s)
{
    return s == NULL || (s->n_windows == 0 && s->n_blackouts == 0);
}

static int window_open(const struct ess_schedule_window *w, long long t)
{
    struct tm tm;
    int dow, prev, m;

    if (ess_zone_from_epoch(w->tz, (time_t)t, &tm) != 0) {
        return 0;
    }
    dow = (tm.tm_wday + 6) % 7; /* Monday = 0 */
    prev = (dow + 6) % 7;
    m = tm.tm_hour * 60 + tm.tm_min;
    if (w->from_min < w->to_min) {
        return (w->days & (1u << dow)) && m >= w->from_min && m < w->to_min;
    }
    return ((w->days & (1u << dow)) && m >= w->from_min) ||
           ((w->days & (1u << prev)) && m < w->to_min);
}

int ess_schedule_open(const struct ess_schedule *s, long long t)
{
    size_t i;
    int in_window;

    if (ess_schedule_empty(s)) {
        return 1;
    }
    for (i = 0; i < s->n_blackouts; i++) {
        if (t >= s->blackouts[i].from && t < s->blackouts[i].to) {
            return 0;
        }
    }
    in_window = s->n_windows == 0;
    for (i = 0; i < s->n_windows && !in_window; i++) {
        in_window = window_open(&s->windows[i], t);
    }
    return in_window;
}

/* The earliest open candidate so far, updated with c when it is open. */
static void consider(const struct ess_schedule *s, long long t, long long c, long long *best)
{
    if (c > t && (*best < 0 || c < *best) && ess_schedule_open(s, c)) {
        *best = c;
    }
}

/* A start skipped by a DST change (02:30 on a spring-forward night): the
 * window opens with the first second after the gap. mktime put `at` past the
 * gap by the DST step; delivery is closed before the gap and open from its end
 * to `at`, so a binary search over the last two hours finds that second. */
static long long gap_end(const struct ess_schedule *s, long long at)
{
    long long lo = at - 7200; /* closed (no DST step is longer than 2 h) */
    long long hi = at;        /* open */
    long long mid;

    if (ess_schedule_open(s, lo)) {
        return at;
    }
    while (hi - lo > 1) {
        mid = lo + (hi - lo) / 2;
        if (ess_schedule_open(s, mid)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    return hi;
}

/* One local start: a skipped time opens at the gap's end; a time that occurs
 * twice (a fall-back night) is a candidate both times. */
static void consider_start(const struct ess_schedule *s, const struct ess_schedule_window *w,
                           long long t, struct tm start, long long *best)
{
    struct tm again;
    time_t at;
    int gap = 0;
    int d;

    if (ess_zone_to_epoch(w->tz, &start, &at, &gap) != 0 || at == (time_t)-1) {
        return;
    }
    if (gap) {
        if (ess_schedule_open(s, (long long)at)) {
            consider(s, t, gap_end(s, (long long)at), best);
        }
        return;
    }
    consider(s, t, (long long)at, best);
    for (d = -3600; d <= 3600; d += 7200) {
        if (ess_zone_from_epoch(w->tz, at + d, &again) == 0 && again.tm_hour == start.tm_hour &&
            again.tm_min == start.tm_min) {
            consider(s, t, (long long)at + d, best);
        }
    }
}

/* Window w's starts on base's local date (and the day before) and the days after. */
static void consider_starts(const struct ess_schedule *s, const struct ess_schedule_window *w,
                            long long t, long long base, long long *best)
{
    struct tm day;
    struct tm start;
    int i;

    if (ess_zone_from_epoch(w->tz, (time_t)base, &day) != 0) {
        return;
    }
    for (i = -1; i <= SCHEDULE_LOOKAHEAD_DAYS; i++) {
        start = day;
        start.tm_mday += i;
        start.tm_hour = w->from_min / 60;
        start.tm_min = w->from_min % 60;
        start.tm_sec = 0;
        start.tm_isdst = -1;
        consider_start(s, w, t, start, best);
    }
}

long long ess_schedule_next_open(const struct ess_schedule *s, long long t)
{
    long long best = -1;
    size_t i, j;

    if (ess_schedule_open(s, t)) {
        return t;
    }
    for (j = 0; j < s->n_blackouts; j++) {
        consider(s, t, s->blackouts[j].to, &best);
    }
    for (i = 0; i < s->n_windows; i++) {
        consider_starts(s, &s->windows[i], t, t, &best);
        for (j = 0; j < s->n_blackouts; j++) {
            if (s->blackouts[j].to > t) {
                consider_starts(s, &s->windows[i], t, s->blackouts[j].to, &best);
            }
        }
    }
    return best;
}

void ess_schedule_fini(struct ess_schedule *s)
{
    size_t i;

    if (s == NULL) {
        return;
    }
    for (i = 0; i < s->n_windows; i++) {
        free(s->windows[i].tz);
    }
    for (i = 0; i < s->n_blackouts; i++) {
        free(s->blackouts[i].tz);
    }
    free(s->windows);
    free(s->blackouts);
    memset(s, 0, sizeof(*s));
}
