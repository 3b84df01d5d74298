/*
 * ess_zone -- IANA zones through libc's TZ; see ess_zone.h.
 */
#include "ess_zone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An IANA zone name that the tz database on this host has (a TZif file). */
int ess_zone_exists(const char *zone)
{
    const char *dir = getenv("TZDIR");
    char path[1024];
    char magic[4];
    FILE *f;
    size_t n;

    if (zone[0] == '\0' || zone[0] == '/' || strstr(zone, "..") != NULL ||
        strspn(zone, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") !=
            strlen(zone)) {
        return 0;
    }
    snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : "/usr/share/zoneinfo", zone);
    f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    n = fread(magic, 1, sizeof(magic), f);
    fclose(f);
    return n == sizeof(magic) && memcmp(magic, "TZif", 4) == 0;
}

struct tz_saved {
    char *old;
    int had;
};

/* Switch the process TZ to zone; tz_leave restores what was there. */
static int tz_enter(const char *zone, struct tz_saved *s)
{
    const char *old = getenv("TZ");

    s->had = old != NULL;
    s->old = old != NULL ? strdup(old) : NULL;
    if ((s->had && s->old == NULL) || setenv("TZ", zone, 1) != 0) {
        free(s->old);
        return -1;
    }
    tzset();
    return 0;
}

static void tz_leave(struct tz_saved *s)
{
    if (s->had) {
        setenv("TZ", s->old, 1);
    } else {
        unsetenv("TZ");
    }
    tzset();
    free(s->old);
    s->old = NULL;
}

/* Seconds since the epoch of wall-clock tm in zone; -1 in *gap when that local
 * time does not exist there (skipped by a DST change). */
int ess_zone_to_epoch(const char *zone, const struct tm *tm, time_t *t, int *gap)
{
    struct tz_saved s;
    struct tm local = *tm;

    if (tz_enter(zone, &s) != 0) {
        return -1;
    }
    local.tm_isdst = -1;
    *t = mktime(&local);
    tz_leave(&s);
    *gap = local.tm_hour != tm->tm_hour || local.tm_min != tm->tm_min;
    return 0;
}

int ess_zone_from_epoch(const char *zone, time_t t, struct tm *out)
{
    struct tz_saved s;
    struct tm *r;

    if (tz_enter(zone, &s) != 0) {
        return -1;
    }
    r = localtime_r(&t, out);
    tz_leave(&s);
    return r != NULL ? 0 : -1;
}
