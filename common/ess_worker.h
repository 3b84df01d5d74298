/*
 * ess_worker -- what every ESS binary shares around its pipeline: argument
 * handling (--help, --version, --manifest), the environment (ESS_AMQP_URL,
 * ESS_PG_URL, exchanges), signal flags, clocks, its instance identity, and
 * the ops messages (heartbeat, lifecycle, alert) it publishes on hms.ops.
 *
 * Signal handlers only set flags (SIGTERM/SIGINT: quit; SIGHUP: reload); the
 * loop reads them with ess_worker_quit()/ess_worker_take_reload().
 */
#ifndef ESS_WORKER_H
#define ESS_WORKER_H

#include "ess_bus.h"
#include "ess_err.h"
#include "ess_manifest.h"
#include "ess_store.h"

struct ess_worker_env { /* borrowed from the environment or static defaults */
    const char *amqp_url;
    const char *pg_url;
    const char *events_exchange;
    const char *ops_exchange;
};

/* From the environment; where ESS_AMQP_URL / ESS_PG_URL are unset, from the
 * local stack's env file (<state dir>/dev/env, written by `hms dev up`), so a
 * worker or hms started on a developer machine finds the local stack. */
void ess_worker_env_load(struct ess_worker_env *env);

/* The operator state dir: $HMS_STATE_DIR, else $XDG_STATE_HOME/hms, else
 * $HOME/.local/state/hms. Static storage; not created here. */
const char *ess_worker_state_dir(void);

/* Parse argv: --manifest FILE (or a lone FILE), --check (validate only),
 * --help, --version. Returns -1 to go on, or an exit code (0 after help or
 * version, 64 on a usage error with a message on stderr). */
int ess_worker_args(int argc, char **argv, const char *prog, const char *summary,
                    const char **manifest_path, int *check_only);

/* Call first thing in main(). The Debian libcurl and libpq link libldap,
 * which links GnuTLS; GnuTLS initialises itself (and loads p11-kit trust
 * modules) in a library constructor, about 1 MiB of resident memory per
 * worker for a TLS stack ESS never uses (libcurl and libpq use OpenSSL). When
 * GNUTLS_NO_IMPLICIT_INIT is unset this sets it and re-executes the binary
 * once (by its own path, so the process keeps its name: comm is "ess-push",
 * not "exe"), before any work; if that fails it simply carries on. */
void ess_worker_lean_exec(char **argv);

/* A worker's own manifest checks beyond the key table (kind-specific needs):
 * EX_OK, or a sysexits code after logging "path: key: what is wrong". */
typedef int (*ess_worker_check_fn)(const char *path, const struct ess_manifest *m);

/* The start every worker shares: the lean re-exec, arguments (--help,
 * --version, --check), logging, the manifest (every error reported), its
 * kind, the worker's own check (may be NULL), the *_env variables; --check
 * prints "manifest OK" here. Returns -1 with *m loaded (the caller frees it)
 * to go on, else the exit code to return (nothing left to free). */
int ess_worker_start(int argc, char **argv, const char *prog, const char *kind, const char *summary,
                     ess_worker_check_fn check, struct ess_manifest **m);

void ess_worker_signals_install(void);
int ess_worker_quit(void);
int ess_worker_take_reload(void); /* 1 once per SIGHUP received */

long long ess_worker_mono_ms(void); /* monotonic clock */
long long ess_worker_wall_ms(void); /* epoch ms */

/* "host:pid" unless ESS_INSTANCE is set; hostname in host. Static storage. */
const char *ess_worker_instance(void);
const char *ess_worker_host(void);

/* Publish {"connector","instance","host","pid","version","event","ts","detail"}
 * on ops exchange with routing key ess.lifecycle.<id> (event: started, stopping,
 * stopped) or ess.alert.<id> (event: the alert name; alerts add rule = event and
 * state "fired", the fields of ess_alert.h). */
int ess_worker_publish_lifecycle(struct ess_bus *bus, const char *ops_exchange, const char *id,
                                 const char *event, const char *detail, struct ess_err *err);
int ess_worker_publish_alert(struct ess_bus *bus, const char *ops_exchange, const char *id,
                             const char *alert, const char *detail, struct ess_err *err);

/* A heartbeat body (ess_stats_heartbeat_json) published on ops exchange as
 * ess.heartbeat.<id> and recorded in ess_heartbeats for `hms ess ps`; bus or
 * store NULL skips that side. Returns 0, or ESS_WORKER_HB_* bits naming the
 * side(s) that failed, the detail in store_err / bus_err. */
#define ESS_WORKER_HB_STORE_FAILED 1
#define ESS_WORKER_HB_BUS_FAILED 2
int ess_worker_heartbeat_send(struct ess_bus *bus, struct ess_store *store,
                              const char *ops_exchange, const char *id, const char *instance,
                              const char *state, int heartbeat_sec, const char *text,
                              struct ess_err *store_err, struct ess_err *bus_err);

/* Reconnect pacing: capped exponential with full jitter, logged once per attempt. */
struct ess_worker_retry {
    int attempt;
    long long next_ms; /* monotonic time of the next attempt; 0 = now */
    uint64_t rng;
};

void ess_worker_retry_init(struct ess_worker_retry *r);
int ess_worker_retry_due(const struct ess_worker_retry *r, long long now_ms);
void ess_worker_retry_failed(struct ess_worker_retry *r, long long now_ms);
void ess_worker_retry_ok(struct ess_worker_retry *r);

#endif
