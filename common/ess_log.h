/*
 * ess_log -- structured log lines on stderr, one event per line.
 *
 * Format (logfmt, greppable at 3 a.m., parseable by Loki/Fluent Bit):
 *   ts=2026-11-26T21:40:00.123Z level=info prog=ess-push connector=city2dmv msg="..."
 * The message is quoted and escaped so that input quoted in it (a partner's
 * garbage answer, a bad event) can never forge a second line or field.
 * Secrets are never passed here: callers log env-var names, never values.
 */
#ifndef ESS_LOG_H
#define ESS_LOG_H

enum ess_log_level { ESS_LOG_DEBUG = 0, ESS_LOG_INFO, ESS_LOG_WARN, ESS_LOG_ERROR };

/* prog and connector are copied; connector may be NULL. Level from the
 * ESS_LOG_LEVEL environment variable (debug|info|warn|error), default info. */
void ess_log_init(const char *prog, const char *connector);
void ess_log_set_connector(const char *connector);

void ess_log(enum ess_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ess_log_debug(...) ess_log(ESS_LOG_DEBUG, __VA_ARGS__)
#define ess_log_info(...) ess_log(ESS_LOG_INFO, __VA_ARGS__)
#define ess_log_warn(...) ess_log(ESS_LOG_WARN, __VA_ARGS__)
#define ess_log_error(...) ess_log(ESS_LOG_ERROR, __VA_ARGS__)

#endif
