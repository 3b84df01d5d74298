/*
 * ess_worker -- the process around a pipeline; see ess_worker.h.
 */
#include "ess_worker.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <sysexits.h>
#include <unistd.h>

#include <jansson.h>

#include "ess_backoff.h"
#include "ess_log.h"
#include "ess_version.h"

static volatile sig_atomic_t quit_flag;
static volatile sig_atomic_t reload_flag;

const char *ess_worker_state_dir(void)
{
    static char dir[1024];
    const char *hms = getenv("HMS_STATE_DIR");
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");

    if (hms != NULL && hms[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s", hms);
    } else if (xdg != NULL && xdg[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s/hms", xdg);
    } else {
        snprintf(dir, sizeof(dir), "%s/.local/state/hms",
                 home != NULL && home[0] != '\0' ? home : "/tmp");
    }
    return dir;
}

/* KEY=VALUE (shell-quoted with '' or not) from the dev stack's env file, into
 * buf; NULL when the file or key is absent. */
static const char *dev_env_value(const char *key, char *buf, size_t len)
{
    char path[1200];
    char line[1024];
    size_t klen = strlen(key);
    const char *found = NULL;
    FILE *f;
    char *v;

    snprintf(path, sizeof(path), "%s/dev/env", ess_worker_state_dir());
    f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    while (found == NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) != 0 || line[klen] != '=') {
            continue;
        }
        v = line + klen + 1;
        v[strcspn(v, "\r\n")] = '\0';
        if (v[0] == '\'' && strlen(v) >= 2 && v[strlen(v) - 1] == '\'') {
            v[strlen(v) - 1] = '\0';
            v++;
        }
        snprintf(buf, len, "%s", v);
        found = buf;
    }
    fclose(f);
    return found;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return (v != NULL && v[0] != '\0') ? v : def;
}

void ess_worker_env_load(struct ess_worker_env *env)
{
    static char amqp[1024];
    static char pg[1024];
    const char *dev_amqp = dev_env_value("ESS_AMQP_URL", amqp, sizeof(amqp));
    const char *dev_pg = dev_env_value("ESS_PG_URL", pg, sizeof(pg));

    env->amqp_url =
        env_or("ESS_AMQP_URL", dev_amqp != NULL ? dev_amqp : "amqp://guest:guest@127.0.0.1:5672/");
    env->pg_url = env_or("ESS_PG_URL", dev_pg != NULL ? dev_pg : "");
    env->events_exchange = env_or("ESS_EVENTS_EXCHANGE", "hms.events");
    env->ops_exchange = env_or("ESS_OPS_EXCHANGE", "hms.ops");
}

static void usage(FILE *out, const char *prog, const char *summary)
{
    fprintf(out,
            "usage: %s --manifest FILE [--check]\n"
            "       %s --help | --version\n\n"
            "%s\n\n"
            "  --manifest FILE  the connector manifest (YAML)\n"
            "  --check          validate the manifest and exit (\"manifest OK\")\n\n"
            "environment: ESS_AMQP_URL, ESS_PG_URL, ESS_EVENTS_EXCHANGE, ESS_OPS_EXCHANGE,\n"
            "             ESS_LOG_LEVEL (debug|info|warn|error)\n"
            "signals:     SIGTERM drains and exits 0; SIGHUP reloads the manifest\n",
            prog, prog, summary);
}

int ess_worker_args(int argc, char **argv, const char *prog, const char *summary,
                    const char **manifest_path, int *check_only)
{
    int i;

    *manifest_path = NULL;
    *check_only = 0;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout, prog, summary);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", prog, ESS_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--check") == 0) {
            *check_only = 1;
        } else if (strcmp(argv[i], "--manifest") == 0 && i + 1 < argc) {
            *manifest_path = argv[++i];
        } else if (argv[i][0] != '-' && *manifest_path == NULL) {
            *manifest_path = argv[i];
        } else {
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, argv[i]);
            usage(stderr, prog, summary);
            return 64;
        }
    }
    if (*manifest_path == NULL) {
        fprintf(stderr, "%s: --manifest FILE is required\n", prog);
        usage(stderr, prog, summary);
        return 64;
    }
    return -1;
}

/* The running binary's own path, to re-execute: the kernel names a process
 * (comm: ps -C, pgrep -x, top, journald's _COMM) after the file it executes,
 * so exec'ing "/proc/self/exe" would rename every worker "exe". That link
 * itself is the fallback when it cannot be read or names a file since
 * replaced (" (deleted)": an upgrade in place), which still runs this binary. */
static const char *self_exe(char *buf, size_t len)
{
    static const char deleted[] = " (deleted)";
    const size_t dlen = sizeof(deleted) - 1;
    ssize_t n = readlink("/proc/self/exe", buf, len);

    if (n <= 0 || (size_t)n >= len || buf[0] != '/') {
        return "/proc/self/exe";
    }
    buf[n] = '\0';
    if ((size_t)n >= dlen && strcmp(buf + n - dlen, deleted) == 0) {
        return "/proc/self/exe";
    }
    return buf;
}

void ess_worker_lean_exec(char **argv)
{
    const char *preload = getenv("LD_PRELOAD");
    char path[PATH_MAX];
    const char *exe;

    /* Under valgrind /proc/self/exe is valgrind's tool, not us: stay put. */
    if (getenv("GNUTLS_NO_IMPLICIT_INIT") != NULL || getenv("ESS_NO_REEXEC") != NULL ||
        (preload != NULL && strstr(preload, "vgpreload") != NULL)) {
        return;
    }
    if (setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 1) != 0) {
        return;
    }
    exe = self_exe(path, sizeof(path));
    execv(exe, argv);
    if (exe == path) {
        /* the path refused (a directory we may not search?): lean, if not named */
        execv("/proc/self/exe", argv);
    }
    /* Still here: exec failed (no /proc?). Nothing is lost but the memory. */
}

static int worker_check(const char *path, const char *kind, ess_worker_check_fn check,
                        const struct ess_manifest *m)
{
    struct ess_err err;
    int rc;

    if (strcmp(m->kind, kind) != 0) {
        ess_log_error("%s: kind: ess-%s runs kind %s, not %s", path, kind, kind, m->kind);
        return EX_CONFIG;
    }
    rc = check != NULL ? check(path, m) : EX_OK;
    if (rc != EX_OK) {
        return rc;
    }
    ess_err_clear(&err);
    if (ess_manifest_check_env(m, &err) != ESS_OK) {
        ess_log_error("%s: %s", path, err.msg);
        return EX_CONFIG;
    }
    return EX_OK;
}

int ess_worker_start(int argc, char **argv, const char *prog, const char *kind, const char *summary,
                     ess_worker_check_fn check, struct ess_manifest **m)
{
    const char *path;
    int check_only;
    int rc;

    *m = NULL;
    ess_worker_lean_exec(argv);
    rc = ess_worker_args(argc, argv, prog, summary, &path, &check_only);
    if (rc >= 0) {
        return rc;
    }
    ess_log_init(prog, NULL);
    rc = ess_manifest_load_reported(path, m, NULL);
    if (rc != ESS_OK) {
        return ess_err_exit_code(rc);
    }
    ess_log_set_connector((*m)->id);
    rc = worker_check(path, kind, check, *m);
    if (rc == EX_OK && check_only) {
        printf("manifest OK: %s (%s, version %.12s)\n", (*m)->id, path, (*m)->sha256);
    }
    if (rc != EX_OK || check_only) {
        ess_manifest_free(*m);
        *m = NULL;
        return rc;
    }
    return -1;
}

static void on_quit(int sig)
{
    (void)sig;
    quit_flag = 1;
}

static void on_reload(int sig)
{
    (void)sig;
    reload_flag = 1;
}

void ess_worker_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_quit;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_reload;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

int ess_worker_quit(void)
{
    return quit_flag != 0;
}

int ess_worker_take_reload(void)
{
    if (reload_flag == 0) {
        return 0;
    }
    reload_flag = 0;
    return 1;
}

long long ess_worker_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long ess_worker_wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

const char *ess_worker_host(void)
{
    static char host[256];

    if (host[0] == '\0' && gethostname(host, sizeof(host) - 1) != 0) {
        snprintf(host, sizeof(host), "unknown");
    }
    return host;
}

const char *ess_worker_instance(void)
{
    static char instance[300];
    const char *env = getenv("ESS_INSTANCE");

    if (instance[0] == '\0') {
        if (env != NULL && env[0] != '\0') {
            snprintf(instance, sizeof(instance), "%s", env);
        } else {
            snprintf(instance, sizeof(instance), "%s:%ld", ess_worker_host(), (long)getpid());
        }
    }
    return instance;
}

static int publish_ops(struct ess_bus *bus, const char *ops_exchange, const char *kind,
                       const char *id, const char *event, const char *detail, struct ess_err *err)
{
    char rk[256];
    json_t *o;
    char *text;
    int rc;

    o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:s}", "connector", id, "instance",
                  ess_worker_instance(), "host", ess_worker_host(), "pid", (json_int_t)getpid(),
                  "version", ESS_VERSION, "event", event, "ts_ms", (json_int_t)ess_worker_wall_ms(),
                  "detail", detail != NULL ? detail : "");
    if (o != NULL && strcmp(kind, "alert") == 0) {
        /* the fields of the workers' rule alerts (ess_alert.h): a one-off
         * alert has no clearing, so it is "fired" */
        json_object_set_new(o, "rule", json_string(event));
        json_object_set_new(o, "state", json_string("fired"));
    }
    text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "cannot build %s message", kind);
    }
    snprintf(rk, sizeof(rk), "ess.%s.%s", kind, id);
    rc = ess_bus_publish(bus, ops_exchange, rk, text, strlen(text), NULL, err);
    free(text);
    return rc;
}

int ess_worker_publish_lifecycle(struct ess_bus *bus, const char *ops_exchange, const char *id,
                                 const char *event, const char *detail, struct ess_err *err)
{
    return publish_ops(bus, ops_exchange, "lifecycle", id, event, detail, err);
}

int ess_worker_publish_alert(struct ess_bus *bus, const char *ops_exchange, const char *id,
                             const char *alert, const char *detail, struct ess_err *err)
{
    return publish_ops(bus, ops_exchange, "alert", id, alert, detail, err);
}

int ess_worker_heartbeat_send(struct ess_bus *bus, struct ess_store *store,
                              const char *ops_exchange, const char *id, const char *instance,
                              const char *state, int heartbeat_sec, const char *text,
                              struct ess_err *store_err, struct ess_err *bus_err)
{
    char rk[128];
    int failed = 0;

    if (text == NULL) {
        return 0;
    }
    if (store != NULL && ess_store_heartbeat_put(store, id, instance, state, heartbeat_sec, text,
                                                 store_err) != ESS_OK) {
        failed |= ESS_WORKER_HB_STORE_FAILED;
    }
    snprintf(rk, sizeof(rk), "ess.heartbeat.%s", id);
    if (bus != NULL &&
        ess_bus_publish(bus, ops_exchange, rk, text, strlen(text), NULL, bus_err) != ESS_OK) {
        failed |= ESS_WORKER_HB_BUS_FAILED;
    }
    return failed;
}

void ess_worker_retry_init(struct ess_worker_retry *r)
{
    r->attempt = 0;
    r->next_ms = 0;
    r->rng = (uint64_t)ess_worker_wall_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
}

int ess_worker_retry_due(const struct ess_worker_retry *r, long long now_ms)
{
    return now_ms >= r->next_ms;
}

void ess_worker_retry_failed(struct ess_worker_retry *r, long long now_ms)
{
    /* 250 ms doubling to 10 s, full jitter but never under 100 ms: a restarted
     * broker is back within seconds, and a tight loop helps nobody. */
    long delay = ess_backoff_delay_ms(r->attempt, 250, 10000, &r->rng);

    r->next_ms = now_ms + (delay < 100 ? 100 : delay);
    if (r->attempt < 30) {
        r->attempt++;
    }
}

void ess_worker_retry_ok(struct ess_worker_retry *r)
{
    r->attempt = 0;
    r->next_ms = 0;
}
