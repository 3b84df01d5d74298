/*
 * ess_log -- logfmt lines on stderr. One fprintf per line so concurrent
 * writers (a worker and its libraries) never interleave within a line.
 */
#include "ess_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static char log_prog[64] = "ess";
static char log_connector[80] = "";
static enum ess_log_level log_min = ESS_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ess_log_init(const char *prog, const char *connector)
{
    const char *env = getenv("ESS_LOG_LEVEL");
    int i;

    snprintf(log_prog, sizeof(log_prog), "%s", prog != NULL ? prog : "ess");
    ess_log_set_connector(connector);
    if (env != NULL) {
        for (i = 0; i < 4; i++) {
            if (strcasecmp(env, level_names[i]) == 0) {
                log_min = (enum ess_log_level)i;
            }
        }
    }
}

void ess_log_set_connector(const char *connector)
{
    snprintf(log_connector, sizeof(log_connector), "%s", connector != NULL ? connector : "");
}

/* Escape for a double-quoted logfmt value: \" \\ and control characters. */
static void log_escape(char *dst, size_t len, const char *src)
{
    size_t o = 0;
    unsigned char c;

    for (; *src != '\0' && o + 5 < len; src++) {
        c = (unsigned char)*src;
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c == '\n') {
            dst[o++] = '\\';
            dst[o++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(dst + o, len - o, "\\x%02x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
}

void ess_log(enum ess_log_level level, const char *fmt, ...)
{
    char raw[2048];
    char esc[4096];
    char ts[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    if (level < log_min) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    log_escape(esc, sizeof(esc), raw);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    if (log_connector[0] != '\0') {
        fprintf(stderr, "ts=%s.%03ldZ level=%s prog=%s connector=%s msg=\"%s\"\n", ts,
                (long)(tv.tv_usec / 1000), level_names[level], log_prog, log_connector, esc);
    } else {
        fprintf(stderr, "ts=%s.%03ldZ level=%s prog=%s msg=\"%s\"\n", ts, (long)(tv.tv_usec / 1000),
                level_names[level], log_prog, esc);
    }
}
