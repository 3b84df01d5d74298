/*
 * hms_dev -- `hms dev up|down|status|partner`: the local stack.
 *
 * A private RabbitMQ + Postgres for this user, on loopback ports, with every
 * file under <state dir>/dev, started and stopped by deploy/dev/stack.sh (the
 * same script the integration tests use, so there is one way to run the
 * servers). stack.sh writes <state dir>/dev/env, and ess_worker_env_load()
 * falls back to that file when ESS_AMQP_URL / ESS_PG_URL are unset: after
 * `hms dev up`, hms and the workers find the local stack by themselves.
 *
 * DESIGN
 * - stack.sh is found next to the binary: <exe dir>/../../deploy/dev in a
 *   build tree, else $ESS_SHARE_DIR, else /usr/share/ess (hms_share_find,
 *   also used by hms_deploy.c for the systemd unit template).
 * - As root, stack.sh runs the servers as the users rabbitmq and postgres,
 *   which must be able to reach their data: the state dir is then made
 *   traversable (0711, not listable), and when one of its parents is not
 *   (root's default state dir is under /root, 0700), <state>/dev is a symlink
 *   to /var/tmp/hms-dev-<uid>-<hash of the state dir>.
 * - `dev partner` is a demo partner in libmicrohttpd (one internal polling
 *   thread, so printing needs no lock): every request is answered 200
 *   {"ok":true} and printed, so an operator sees what a connector sends.
 */
#include "hms.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <microhttpd.h>

#define DEV_PARTNER_PORT 18080
#define DEV_BODY_MAX (1024 * 1024)

/* ---- finding files and running programs --------------------------------- */

/* The directory holding the running hms binary. 0, or -1 when unknown. */
int hms_exe_dir(char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash;

    if (n <= 0) {
        return -1;
    }
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash == NULL) {
        return -1;
    }
    *slash = '\0';
    snprintf(buf, len, "%s", exe);
    return 0;
}

/* A shipped file: <exe dir>/../../<src_rel> (build tree), <source dir>/<src_rel>
 * (compiled in), $ESS_SHARE_DIR/<name>, /usr/share/ess/<name>. 0 with the path in out; -1 with the
 * places looked in tried ("a, b, c"). */
int hms_share_find(const char *name, const char *src_rel, char *out, size_t len, char *tried,
                   size_t tried_len)
{
    char cand[4][PATH_MAX];
    char dir[PATH_MAX];
    const char *share = getenv("ESS_SHARE_DIR");
    size_t n = 0;
    size_t i;

    if (hms_exe_dir(dir, sizeof(dir)) == 0) {
        snprintf(cand[n++], sizeof(cand[0]), "%s/../../%s", dir, src_rel);
    }
#ifdef HMS_SOURCE_DIR /* a build dir outside the source tree */
    snprintf(cand[n++], sizeof(cand[0]), "%s/%s", HMS_SOURCE_DIR, src_rel);
#endif
    if (share != NULL && share[0] != '\0') {
        snprintf(cand[n++], sizeof(cand[0]), "%s/%s", share, name);
    }
    snprintf(cand[n++], sizeof(cand[0]), "/usr/share/ess/%s", name);
    for (i = 0; i < n; i++) {
        if (access(cand[i], R_OK) == 0) {
            if (realpath(cand[i], out) == NULL || strlen(out) >= len) {
                snprintf(out, len, "%s", cand[i]);
            }
            return 0;
        }
    }
    tried[0] = '\0';
    for (i = 0; i < n; i++) {
        size_t used = strlen(tried);

        snprintf(tried + used, tried_len - used, "%s%s", i > 0 ? ", " : "", cand[i]);
    }
    return -1;
}

/* Run argv (a path, not searched in PATH), wait; its exit code, or 70 when it
 * could not run or died of a signal. */
int hms_run(char *const argv[], int stdout_to_stderr)
{
    int status = 0;
    pid_t pid;

    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "hms: fork: %s\n", strerror(errno));
        return EX_OSERR;
    }
    if (pid == 0) {
        if (stdout_to_stderr) {
            dup2(STDERR_FILENO, STDOUT_FILENO);
        }
        execv(argv[0], argv);
        fprintf(stderr, "hms: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(EX_SOFTWARE);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return EX_SOFTWARE;
        }
    }
    if (!WIFEXITED(status)) {
        fprintf(stderr, "hms: %s died of signal %d\n", argv[0], WTERMSIG(status));
        return EX_SOFTWARE;
    }
    return WEXITSTATUS(status);
}

/* ---- the state dir ------------------------------------------------------ */

static int mkdir_mode(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        fprintf(stderr, "hms: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* mkdir -p: missing parents 0755 (like mkdir -p), the last one with mode. */
static int mkdir_parents(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    char *p;

    snprintf(buf, sizeof(buf), "%s", path);
    for (p = buf + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir_mode(buf, 0755) != 0) {
            return -1;
        }
        *p = '/';
    }
    return mkdir_mode(buf, mode);
}

/* 1 when every directory on the way to path is searchable by "other" users. */
static int reachable_by_others(const char *path)
{
    char real[PATH_MAX];
    struct stat st;
    char *p;

    if (realpath(path, real) == NULL) {
        return 0;
    }
    for (p = real + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;

            *p = '\0';
            if (stat(real, &st) != 0 || (st.st_mode & S_IXOTH) == 0) {
                return 0;
            }
            *p = c;
            if (c == '\0') {
                return 1;
            }
        }
    }
}

/* FNV-1a of the state dir: a stable name for its out-of-tree data dir. */
static unsigned long long path_hash(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;

    while (*s != '\0') {
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    }
    return h;
}

/* Create <state>/dev (see DESIGN about root); its path in dir. */
static int dev_dir_prepare(const char *state, char *dir, size_t len)
{
    int root = geteuid() == 0;
    char real[PATH_MAX];
    struct stat st;

    snprintf(dir, len, "%s/dev", state);
    if (mkdir_parents(state, root ? 0711 : 0700) != 0) {
        return -1;
    }
    if (root) {
        chmod(state, 0711); /* the service users pass through it, no more */
    }
    if (!root || lstat(dir, &st) == 0 || reachable_by_others(state)) {
        return mkdir_mode(dir, root ? 0711 : 0700);
    }
    snprintf(real, sizeof(real), "/var/tmp/hms-dev-%d-%016llx", (int)geteuid(), path_hash(state));
    if (mkdir_mode(real, 0711) != 0) {
        return -1;
    }
    if (symlink(real, dir) != 0) {
        fprintf(stderr, "hms: cannot link %s -> %s: %s\n", dir, real, strerror(errno));
        return -1;
    }
    return 0;
}

/* KEY=VALUE from DIR/env (stack.sh quotes with %q; our URLs need none). */
static int env_value(const char *dir, const char *key, char *out, size_t len)
{
    char path[PATH_MAX];
    char line[2048];
    size_t klen = strlen(key);
    int found = -1;
    FILE *f;

    snprintf(path, sizeof(path), "%s/env", dir);
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (found != 0 && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            line[strcspn(line, "\r\n")] = '\0';
            snprintf(out, len, "%s", line + klen + 1);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* ---- up / down / status -------------------------------------------------- */

/* stack.sh VERB DIR, with DIR resolved: as root the service users reach the
 * data through the real path only (see DESIGN). */
static int stack_run(const char *verb, const char *dir)
{
    char script[PATH_MAX];
    char tried[4 * PATH_MAX];
    char real[PATH_MAX];
    char *argv[4];

    if (hms_share_find("stack.sh", "deploy/dev/stack.sh", script, sizeof(script), tried,
                       sizeof(tried)) != 0) {
        fprintf(stderr, "hms: stack.sh not found (looked in %s); set ESS_SHARE_DIR\n", tried);
        return EX_CONFIG;
    }
    argv[0] = script;
    argv[1] = (char *)verb;
    argv[2] = realpath(dir, real) != NULL ? real : (char *)dir;
    argv[3] = NULL;
    return hms_run(argv, strcmp(verb, "status") != 0); /* only status talks to the user */
}

static int dev_up(const char *dir)
{
    char amqp[1024];
    char pg[1024];
    int rc = stack_run("up", dir);

    if (rc != 0) {
        fprintf(stderr, "hms: the local stack did not start (stack.sh exit %d)\n", rc);
        return rc == EX_CONFIG ? EX_CONFIG : EX_UNAVAILABLE;
    }
    if (env_value(dir, "ESS_AMQP_URL", amqp, sizeof(amqp)) != 0 ||
        env_value(dir, "ESS_PG_URL", pg, sizeof(pg)) != 0) {
        fprintf(stderr, "hms: %s/env lacks the URLs\n", dir);
        return EX_SOFTWARE;
    }
    printf("local stack up (%s)\n", dir);
    printf("  rabbitmq  %s\n  postgres  %s\n", amqp, pg);
    printf("hms and workers use it while ESS_AMQP_URL/ESS_PG_URL are unset; "
           "shell: . %s/env; stop: hms dev down\n",
           dir);
    return EX_OK;
}

static int dev_status(const char *dir)
{
    char path[PATH_MAX];
    int rc;

    snprintf(path, sizeof(path), "%s/env", dir);
    if (access(path, R_OK) != 0) {
        printf("rabbitmq  down  (never started here: hms dev up)\n"
               "postgres  down  (never started here: hms dev up)\n");
        return EX_UNAVAILABLE;
    }
    rc = stack_run("status", dir);
    if (rc == EX_CONFIG) {
        return rc;
    }
    return rc == 0 ? EX_OK : EX_UNAVAILABLE;
}

static int dev_down(const char *dir)
{
    int rc = stack_run("down", dir);

    if (rc != 0) {
        fprintf(stderr, "hms: stack.sh down failed (exit %d)\n", rc);
        return rc == EX_CONFIG ? EX_CONFIG : EX_SOFTWARE;
    }
    printf("local stack stopped (%s)\n", dir);
    return EX_OK;
}

/* ---- partner -------------------------------------------------------------- */

struct partner_req {
    char *body;
    size_t len;
    int truncated;
};

static int interesting_header(const char *name)
{
    static const char *const prefixes[] = {"content-type", "idempotency-key", "x-ess-",
                                           "webhook-",     "authorization",   "soapaction"};
    size_t i;

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (strncasecmp(name, prefixes[i], strlen(prefixes[i])) == 0) {
            return 1;
        }
    }
    return 0;
}

static enum MHD_Result print_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)cls;
    (void)kind;
    if (interesting_header(key)) {
        printf("  %s: %s\n", key, value != NULL ? value : "");
    }
    return MHD_YES;
}

static int req_append(struct partner_req *r, const char *data, size_t n)
{
    char *grown;

    if (r->len + n > DEV_BODY_MAX) {
        n = DEV_BODY_MAX - r->len;
        r->truncated = 1;
    }
    grown = realloc(r->body, r->len + n + 1);
    if (grown == NULL) {
        return -1;
    }
    r->body = grown;
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

static enum MHD_Result answer_ok(struct MHD_Connection *c)
{
    static const char ok[] = "{\"ok\":true}";
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(sizeof(ok) - 1, (void *)ok, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct partner_req *r = *con_cls;

    (void)cls;
    (void)version;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        *con_cls = r;
        return r != NULL ? MHD_YES : MHD_NO;
    }
    if (*upload_data_size > 0) {
        if (req_append(r, upload_data, *upload_data_size) != 0) {
            return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    printf("%s %s\n", method, url);
    MHD_get_connection_values(c, MHD_HEADER_KIND, print_header, NULL);
    if (r->len > 0) {
        printf("  %s%s\n", r->body, r->truncated ? " [truncated]" : "");
    }
    fflush(stdout);
    return answer_ok(c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct partner_req *r = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (r != NULL) {
        free(r->body);
        free(r);
        *con_cls = NULL;
    }
}

static int parse_port(int argc, char **argv, int *port)
{
    char *end = NULL;
    long v;

    *port = DEV_PARTNER_PORT;
    if (argc == 0) {
        return 0;
    }
    if (argc != 2 || strcmp(argv[0], "--port") != 0) {
        fprintf(stderr, "usage: hms dev partner [--port P]\n");
        return -1;
    }
    errno = 0;
    v = strtol(argv[1], &end, 10);
    if (errno != 0 || end == argv[1] || *end != '\0' || v < 1 || v > 65535) {
        fprintf(stderr, "hms: --port: not a port number: %s\n", argv[1]);
        return -1;
    }
    *port = (int)v;
    return 0;
}

static int dev_partner(int argc, char **argv)
{
    struct sockaddr_in sin;
    struct MHD_Daemon *d;
    sigset_t set;
    int port;
    int sig = 0;

    if (parse_port(argc, argv, &port) != 0) {
        return EX_USAGE;
    }
    /* Blocked before the daemon's thread starts, so it inherits the mask and
     * only sigwait() below sees SIGINT/SIGTERM. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL,
                         NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sin,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "hms: partner: cannot listen on 127.0.0.1:%d (in use?)\n", port);
        return EX_UNAVAILABLE;
    }
    printf("partner listening on http://127.0.0.1:%d/\n", port);
    fflush(stdout);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    fprintf(stderr, "partner stopped (signal %d)\n", sig);
    return EX_OK;
}

/* ---- the command ------------------------------------------------------------ */

static void dev_usage(FILE *out)
{
    fprintf(out,
            "usage: hms dev up|down|status\n"
            "       hms dev partner [--port P]   (default %d)\n",
            DEV_PARTNER_PORT);
}

int hms_cmd_dev(int argc, char **argv, const struct hms_opts *o)
{
    char dir[PATH_MAX];

    if (argc < 1) {
        dev_usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[0], "partner") == 0) {
        return dev_partner(argc - 1, argv + 1);
    }
    if (argc != 1 || (strcmp(argv[0], "up") != 0 && strcmp(argv[0], "down") != 0 &&
                      strcmp(argv[0], "status") != 0)) {
        dev_usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[0], "up") != 0) {
        snprintf(dir, sizeof(dir), "%s/dev", o->state_dir);
        return strcmp(argv[0], "down") == 0 ? dev_down(dir) : dev_status(dir);
    }
    if (dev_dir_prepare(o->state_dir, dir, sizeof(dir)) != 0) {
        return EX_CANTCREAT;
    }
    return dev_up(dir);
}
