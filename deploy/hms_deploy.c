/*
 * hms_deploy -- `hms ess deploy|diff|rollback|stop`: getting a manifest version
 * running, and knowing which one runs.
 *
 * A deploy validates the manifest, declares its topology (so events queue in
 * RabbitMQ from this moment, whether or not a worker runs yet), records the
 * manifest text by sha in ess_manifests and the deploy in ess_deploys, then
 * acts on its target:
 *   local    start ess-push detached under <state>/workers/<id>/ (manifest.yml,
 *            worker.log, worker.pid) and wait for its first heartbeat row;
 *            with replicas N > 1 (--replicas or the manifest), replicas 2..N
 *            run from <id>/replica-<i>/ (worker.log, worker.pid), all with
 *            ESS_REPLICAS=N, and `hms ess stop` stops every one;
 *            a running worker of that id is first stopped gracefully (SIGTERM:
 *            it drains in-flight deliveries and exits 0; its queue keeps
 *            filling meanwhile, so the switch loses nothing).
 *   systemd  write an instance of deploy/systemd/ess-worker@.service with
 *            /etc/ess/<id>.yml and <id>.env, print how to install them.
 *   compose  print a docker-compose override file with the worker service.
 *   k8s      print a ConfigMap (the manifest) and a Deployment.
 *
 * DESIGN
 * - History is ess_deploys: a failed local deploy gets note "failed: ...", and
 *   "the deployed version" / "the previous version" only count deploys that
 *   did not fail. diff compares with the latest deploy of any target; rollback
 *   and auto-rollback only look at local deploys (they restart a local worker).
 * - The previous version is the latest earlier deploy with a DIFFERENT sha, so
 *   redeploying the same file does not make rollback a no-op.
 * - --auto-rollback watches the new instance's heartbeat counters; it exits
 *   65 (EX_DATAERR) after rolling back: the new manifest is what the partner
 *   refused, and as for an invalid manifest the fix is in the manifest.
 * - A worker started here is a child of this process until hms exits, so
 *   "gone" checks reap it (waitpid WNOHANG) before asking /proc.
 */
#include "hms.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "ess_audit.h"
#include "ess_bus.h"
#include "ess_err.h"
#include "ess_manifest.h"
#include "ess_replica.h"
#include "ess_version.h"
#include "ess_worker.h"

#define STOP_WAIT_SEC 30
#define KILL_WAIT_SEC 5
#define DEPLOY_WAIT_SEC 30
#define ROLLBACK_WINDOW_SEC 120
#define ROLLBACK_MIN_ATTEMPTS 20
#define ROLLBACK_UNKNOWN_RATE 0.05
#define DIFF_CONTEXT 3
#define DIFF_MAX_LINES 4000

struct deploy_args {
    const char *path;
    const char *target; /* local | systemd | compose | k8s */
    const char *out;    /* --out DIR (systemd) */
    int auto_rollback;
    int wait_sec;
    int replicas; /* --replicas N; 0: the manifest's replicas (ess_replica_count) */
};

struct deploy_src { /* a manifest version: its text and what it parses to */
    struct ess_manifest *m;
    char *text;
    size_t len;
    const char *name; /* file name for messages, or "ess_manifests <sha>" */
};

struct worker_files { /* <state>/workers/<id>/... */
    char dir[PATH_MAX];
    char manifest[PATH_MAX + 16];
    char log[PATH_MAX + 16];
    char pid[PATH_MAX + 16];
};

struct local_run { /* what a local deploy started */
    pid_t pid;
    char instance[320];
    long long deploy_id;
};

/* ---- small helpers ----------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int parse_seconds(const char *s, int *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 86400) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int valid_id(const char *id)
{
    size_t i;
    size_t n = strlen(id);

    if (n < 2 || n > 63 || id[0] < 'a' || id[0] > 'z') {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-')) {
            return 0;
        }
    }
    return 1;
}

/* Whole file into *text (malloc'd, NUL-terminated). 0, or -1 with errno. */
static int read_text(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    size_t got;

    *text = NULL;
    if (f == NULL) {
        return -1;
    }
    do {
        if (n + 4096 + 1 > cap) {
            char *grown = realloc(buf, cap + 65536);

            if (grown == NULL) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = grown;
            cap += 65536;
        }
        got = fread(buf + n, 1, 4096, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/* Write atomically (tmp + rename) with mode. 0, or -1 after a message. */
static int write_text(const char *path, const char *text, size_t len, mode_t mode)
{
    char tmp[PATH_MAX + 32];
    int fd;
    ssize_t w;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "hms: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    w = write(fd, text, len);
    if (w < 0 || (size_t)w != len || fchmod(fd, mode) != 0 || close(fd) != 0) {
        fprintf(stderr, "hms: cannot write %s: %s\n", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "hms: cannot rename %s: %s\n", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    char *p;
    char c;

    snprintf(buf, sizeof(buf), "%s", path);
    for (p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }
        c = *p;
        *p = '\0';
        if (mkdir(buf, c == '\0' ? mode : 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "hms: cannot create %s: %s\n", buf, strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0') {
            return 0;
        }
    }
}

/* The last n lines of a file, on stderr. */
static void tail_file(const char *path, int n)
{
    char *text = NULL;
    size_t len = 0;
    size_t i;
    int lines = 0;

    if (read_text(path, &text, &len) != 0) {
        return;
    }
    for (i = len; i > 0; i--) {
        if (text[i - 1] == '\n' && i != len && ++lines >= n) {
            break;
        }
    }
    fprintf(stderr, "----- last lines of %s -----\n%s", path, text + i);
    if (len > 0 && text[len - 1] != '\n') {
        fputc('\n', stderr);
    }
    free(text);
}

/* ---- the manifest ------------------------------------------------------- */

static void src_fini(struct deploy_src *src)
{
    ess_manifest_free(src->m);
    free(src->text);
    memset(src, 0, sizeof(*src));
}

/* Parse src->text; every error printed like `hms ess validate`. sysexits code. */
static int src_parse(struct deploy_src *src)
{
    struct ess_diags diags;
    char line[700];
    size_t i;
    int rc;

    ess_diags_init(&diags);
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): src->text and src->m are src_fini's */
    rc = ess_manifest_parse(src->text, src->len, src->name, &src->m, &diags);
    for (i = 0; i < diags.n; i++) {
        fprintf(stderr, "%s\n", ess_err_format(&diags.v[i], line, sizeof(line)));
    }
    ess_diags_fini(&diags);
    if (rc == ESS_OK && strcmp(src->m->kind, "push") != 0) {
        fprintf(stderr, "%s: kind: hms deploys push workers, not %s\n", src->name, src->m->kind);
        return EX_DATAERR;
    }
    return rc == ESS_OK ? EX_OK : ess_err_exit_code(rc);
}

static int src_load(const char *path, struct deploy_src *src)
{
    memset(src, 0, sizeof(*src));
    src->name = path;
    if (read_text(path, &src->text, &src->len) != 0) {
        fprintf(stderr, "%s: cannot read: %s\n", path, strerror(errno));
        return EX_CONFIG;
    }
    return src_parse(src);
}

/* The *_env variables the manifest's auth block names (NULL-terminated). */
static void secret_envs(const struct ess_manifest *m, const char *out[5])
{
    const char *all[4] = {m->auth.secret_env, m->auth.token_env, m->auth.user_env,
                          m->auth.password_env};
    int n = 0;
    int i;

    for (i = 0; i < 4; i++) {
        if (all[i] != NULL && all[i][0] != '\0') {
            out[n++] = all[i];
        }
    }
    out[n] = NULL;
}

/* ---- Postgres ------------------------------------------------------------- */

/* First column `col` of the first row into out: 0 found, 1 none, -1 error. */
static int db_one(struct ess_store *s, const char *sql, int n, const char *const *params,
                  const char *col, char *out, size_t len)
{
    struct ess_err err;
    json_t *rows = NULL;
    json_t *v;
    int rc = 1;

    ess_err_clear(&err);
    if (ess_store_query_json(s, sql, n, params, &rows, &err) != ESS_OK) {
        fprintf(stderr, "hms: %s\n", err.msg);
        return -1;
    }
    v = json_object_get(json_array_get(rows, 0), col);
    if (json_is_string(v)) {
        snprintf(out, len, "%s", json_string_value(v));
        rc = 0;
    }
    json_decref(rows);
    return rc;
}

static int db_exec(struct ess_store *s, const char *sql, int n, const char *const *params)
{
    struct ess_err err;

    ess_err_clear(&err);
    if (ess_store_exec(s, sql, n, params, NULL, &err) != ESS_OK) {
        fprintf(stderr, "hms: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int record_manifest(struct ess_store *s, const struct deploy_src *src)
{
    char version[13];
    const char *p[4] = {src->m->id, version, src->m->sha256, src->text};

    struct ess_audit *a = ess_audit_new(src->m->id);
    struct ess_err err;
    long long added = 0;
    json_t *c;
    int rc = 0;

    snprintf(version, sizeof(version), "%.12s", src->m->sha256);
    ess_err_clear(&err);
    if (a == NULL || ess_store_exec(s,
                                    "INSERT INTO ess_manifests (connector, version, sha, body)"
                                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                                    4, p, &added, &err) != ESS_OK) {
        fprintf(stderr, "hms: %s\n", a == NULL ? "out of memory" : err.msg);
        ess_audit_free(a);
        return -1;
    }
    /* a new version goes on the audit chain (the body's sha256 stands for it) */
    c = json_pack("{s:s, s:s}", "sha256", src->m->sha256, "version", version);
    if (added > 0 &&
        (c == NULL || ess_audit_add(a, "manifest", ess_worker_wall_ms(), c) != ESS_OK ||
         ess_audit_flush(a, s, &err) != ESS_OK)) {
        fprintf(stderr, "hms: audit: %s\n", err.msg[0] != '\0' ? err.msg : "out of memory");
        rc = -1;
    }
    json_decref(c);
    ess_audit_free(a);
    return rc;
}

static int record_deploy(struct ess_store *s, const struct deploy_src *src, const char *target,
                         const char *note, long long *id)
{
    const char *p[4] = {src->m->id, src->m->sha256, target, note};
    char buf[32];

    if (db_one(s,
               "INSERT INTO ess_deploys (connector, sha, target, note)"
               " VALUES ($1, $2, $3, $4) RETURNING id::text AS id",
               4, p, "id", buf, sizeof(buf)) != 0) {
        return -1;
    }
    *id = strtoll(buf, NULL, 10);
    return 0;
}

static void mark_failed(struct ess_store *s, long long deploy_id, const char *why)
{
    char id[32];
    const char *p[2] = {id, why};

    snprintf(id, sizeof(id), "%lld", deploy_id);
    db_exec(s,
            "UPDATE ess_deploys SET note = 'failed: ' || $2"
            " || coalesce(' (' || note || ')', '') WHERE id = $1::bigint",
            2, p);
}

#define DEPLOY_OK_SQL "(note IS NULL OR note NOT LIKE 'failed:%')"

/* The latest successful deploy (target NULL: any) before before_id (0: none)
 * whose sha is not not_sha (NULL: any): sha and deploy id. 0, 1 none, -1 err. */
static int deploy_find(struct ess_store *s, const char *id, const char *target, const char *not_sha,
                       long long before_id, char sha[80], long long *dep)
{
    char before[32];
    char buf[128];
    const char *p[4] = {id, target, not_sha, before};
    char *sep;
    int rc;

    snprintf(before, sizeof(before), "%lld", before_id > 0 ? before_id : (long long)9e18);
    rc = db_one(s,
                "SELECT sha || ' ' || id AS r FROM ess_deploys WHERE connector = $1"
                " AND ($2::text IS NULL OR target = $2) AND ($3::text IS NULL OR sha <> $3)"
                " AND id < $4::bigint AND " DEPLOY_OK_SQL " ORDER BY id DESC LIMIT 1",
                4, p, "r", buf, sizeof(buf));
    sep = rc == 0 ? strchr(buf, ' ') : NULL;
    if (sep != NULL) {
        *sep = '\0';
        snprintf(sha, 80, "%s", buf);
        *dep = strtoll(sep + 1, NULL, 10);
    }
    return rc;
}

/* A recorded version's text, parsed. sysexits code. */
static int src_from_db(struct ess_store *s, const char *id, const char *sha, struct deploy_src *src,
                       char *name, size_t name_len)
{
    const char *p[2] = {id, sha};
    struct ess_err err;
    json_t *rows = NULL;
    const char *body;
    int rc;

    memset(src, 0, sizeof(*src));
    ess_err_clear(&err);
    if (ess_store_query_json(s, "SELECT body FROM ess_manifests WHERE connector = $1 AND sha = $2",
                             2, p, &rows, &err) != ESS_OK) {
        fprintf(stderr, "hms: %s\n", err.msg);
        return EX_UNAVAILABLE;
    }
    body = json_string_value(json_object_get(json_array_get(rows, 0), "body"));
    if (body == NULL) {
        fprintf(stderr, "hms: version %.12s of %s is not in ess_manifests\n", sha, id);
        json_decref(rows);
        return EX_DATAERR;
    }
    src->text = strdup(body);
    src->len = strlen(body);
    json_decref(rows);
    snprintf(name, name_len, "%s@%.12s", id, sha);
    src->name = name;
    rc = src->text != NULL ? src_parse(src) : EX_OSERR;
    return rc;
}

/* ---- RabbitMQ ------------------------------------------------------------- */

/* replicas: the count deployed (--replicas or the manifest): above one, ess.<id>
 * has a single active consumer (ess_bus_set_single_active). */
static int declare_topology(const struct ess_manifest *m, int replicas)
{
    struct ess_worker_env env;
    struct ess_bus *bus;
    struct ess_err err;
    int rc;

    ess_err_clear(&err);
    ess_worker_env_load(&env);
    bus = ess_bus_new(env.amqp_url, &err);
    if (bus == NULL) {
        fprintf(stderr, "hms: cannot reach RabbitMQ: %s (set ESS_AMQP_URL, or hms dev up)\n",
                err.msg);
        return EX_UNAVAILABLE;
    }
    ess_bus_set_single_active(bus, replicas > 1);
    rc = ess_bus_declare_push_typed(bus, env.events_exchange, env.ops_exchange, m->id, &m->topics,
                                    m->queue_type, &err);
    ess_bus_free(bus);
    if (rc != ESS_OK) {
        fprintf(stderr, "hms: declaring the topology of %s: %s\n", m->id, err.msg);
        return rc == ESS_ECONFIG ? EX_CONFIG : EX_UNAVAILABLE;
    }
    return EX_OK;
}

static void publish_alert(const char *id, const char *alert, const char *detail)
{
    struct ess_worker_env env;
    struct ess_bus *bus;
    struct ess_err err;

    ess_err_clear(&err);
    ess_worker_env_load(&env);
    bus = ess_bus_new(env.amqp_url, &err);
    if (bus == NULL ||
        ess_worker_publish_alert(bus, env.ops_exchange, id, alert, detail, &err) != ESS_OK) {
        fprintf(stderr, "hms: could not publish the alert on %s: %s\n", env.ops_exchange, err.msg);
    }
    ess_bus_free(bus);
}

/* ---- local workers: files and processes ------------------------------------ */

static void worker_files_init(struct worker_files *f, const char *state, const char *id)
{
    snprintf(f->dir, sizeof(f->dir), "%s/workers/%s", state, id);
    snprintf(f->manifest, sizeof(f->manifest), "%s/manifest.yml", f->dir);
    snprintf(f->log, sizeof(f->log), "%s/worker.log", f->dir);
    snprintf(f->pid, sizeof(f->pid), "%s/worker.pid", f->dir);
}

/* Replica i (2..ESS_REPLICA_MAX) of a local deploy: its own directory, log and
 * pid file; the manifest is the first worker's. */
#define ESS_REPLICA_MAX 64
static void replica_files_init(struct worker_files *f, const struct worker_files *first, int i)
{
    snprintf(f->dir, sizeof(f->dir), "%.*s/replica-%d", PATH_MAX - 24, first->dir, i);
    snprintf(f->manifest, sizeof(f->manifest), "%s", first->manifest);
    snprintf(f->log, sizeof(f->log), "%s/worker.log", f->dir);
    snprintf(f->pid, sizeof(f->pid), "%s/worker.pid", f->dir);
}

static pid_t pid_read(const char *path)
{
    char buf[32] = "";
    char *end = NULL;
    FILE *f = fopen(path, "r");
    long v;

    if (f == NULL) {
        return 0;
    }
    if (fgets(buf, sizeof(buf), f) == NULL) {
        buf[0] = '\0';
    }
    fclose(f);
    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || v <= 1 || v > INT_MAX) {
        return 0;
    }
    return (pid_t)v;
}

/* 1 when pid no longer runs (reaped here if it was our child, or a zombie). */
static int pid_gone(pid_t pid)
{
    char path[64];
    char stat[512];
    char *paren;
    FILE *f;
    int st;

    if (waitpid(pid, &st, WNOHANG) == pid) {
        return 1;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 1;
    }
    if (fgets(stat, sizeof(stat), f) == NULL) {
        stat[0] = '\0';
    }
    fclose(f);
    paren = strrchr(stat, ')');
    return paren == NULL || paren[1] == '\0' || paren[2] == 'Z';
}

/* 1 when pid runs ess-push (a stale pid file may name a recycled pid). */
static int pid_is_push(pid_t pid)
{
    char path[64];
    char cmd[PATH_MAX];
    const char *base;
    size_t n;
    FILE *f;

    if (pid <= 1 || pid_gone(pid)) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    cmd[n] = '\0'; /* argv[0] ends at the first NUL */
    base = strrchr(cmd, '/');
    base = base != NULL ? base + 1 : cmd;
    return strcmp(base, "ess-push") == 0;
}

static int wait_gone(pid_t pid, int sec)
{
    long long deadline = ess_worker_mono_ms() + (long long)sec * 1000;

    while (!pid_gone(pid)) {
        if (ess_worker_mono_ms() >= deadline) {
            return -1;
        }
        sleep_ms(50);
    }
    return 0;
}

/* SIGTERM (graceful drain), bounded wait, SIGKILL as the last resort (the
 * journal makes even that lossless). Removes the pid file. */
static void worker_stop(const struct worker_files *f, pid_t pid, const char *id)
{
    printf("stopping %s (pid %ld): draining in-flight deliveries\n", id, (long)pid);
    fflush(stdout);
    kill(pid, SIGTERM);
    if (wait_gone(pid, STOP_WAIT_SEC) != 0) {
        fprintf(stderr, "hms: %s (pid %ld) did not exit within %d s of SIGTERM; killing it\n", id,
                (long)pid, STOP_WAIT_SEC);
        kill(pid, SIGKILL);
        wait_gone(pid, KILL_WAIT_SEC);
    }
    unlink(f->pid);
}

static int find_push_bin(char *out, size_t len, int quiet)
{
    char dir[PATH_MAX];
    const char *env = getenv("ESS_PUSH_BIN");

    if (hms_exe_dir(dir, sizeof(dir)) == 0) {
        snprintf(out, len, "%s/../workers/push/ess-push", dir);
        if (access(out, X_OK) == 0) {
            return 0;
        }
        snprintf(out, len, "%s/ess-push", dir);
        if (access(out, X_OK) == 0) {
            return 0;
        }
    }
    if (env != NULL && access(env, X_OK) == 0) {
        snprintf(out, len, "%s", env);
        return 0;
    }
    if (!quiet) {
        fprintf(stderr,
                "hms: ess-push not found: looked in %s/../workers/push/, %s/ and "
                "$ESS_PUSH_BIN\n",
                dir, dir);
    }
    return -1;
}

/* Stop replicas 2.. of a local deploy that still run; how many were stopped. */
static int replicas_stop(const struct worker_files *first, const char *id)
{
    struct worker_files f = {0};
    pid_t pid;
    int i, n = 0;

    for (i = 2; i <= ESS_REPLICA_MAX; i++) {
        replica_files_init(&f, first, i);
        pid = pid_read(f.pid);
        if (pid_is_push(pid)) {
            worker_stop(&f, pid, id);
            n++;
        } else if (pid != 0) {
            unlink(f.pid);
        }
    }
    return n;
}

/* In the child: own session, stdin /dev/null, stdout+stderr to the log. */
static void child_exec(const struct worker_files *f, const char *bin)
{
    char *argv[4] = {(char *)bin, "--manifest", (char *)f->manifest, NULL};
    int in = open("/dev/null", O_RDONLY);
    int log = open(f->log, O_WRONLY | O_CREAT | O_APPEND, 0640);

    if (in < 0 || log < 0 || setsid() < 0 || chdir(f->dir) != 0) {
        _exit(EX_OSERR);
    }
    dup2(in, STDIN_FILENO);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    closefrom(3); /* a caller's pipe must not be held open by the worker */
    signal(SIGPIPE, SIG_DFL);
    execv(bin, argv);
    _exit(EX_OSERR);
}

static pid_t worker_spawn(const struct worker_files *f, const char *bin)
{
    char buf[32];
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "hms: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        child_exec(f, bin);
    }
    snprintf(buf, sizeof(buf), "%ld\n", (long)pid);
    if (write_text(f->pid, buf, strlen(buf), 0644) != 0) {
        kill(pid, SIGTERM);
        return -1;
    }
    return pid;
}

/* The instance name the worker will use (ess_worker_instance's format). */
static void instance_of(pid_t pid, char *out, size_t len)
{
    const char *env = getenv("ESS_INSTANCE");

    if (env != NULL && env[0] != '\0') {
        snprintf(out, len, "%s", env);
    } else {
        snprintf(out, len, "%s:%ld", ess_worker_host(), (long)pid);
    }
}

/* Wait for the first heartbeat row of (id, instance) after since: 0 arrived,
 * 1 the worker exited, 2 timed out, -1 database error. */
static int wait_heartbeat(struct ess_store *s, const char *id, const char *instance,
                          const char *since, pid_t pid, int sec)
{
    const char *p[3] = {id, instance, since};
    long long deadline = ess_worker_mono_ms() + (long long)sec * 1000;
    char buf[8];
    int rc;

    for (;;) {
        rc = db_one(s,
                    "SELECT 'y' AS y FROM ess_heartbeats WHERE connector = $1 AND instance = $2"
                    " AND ts >= $3::timestamptz",
                    3, p, "y", buf, sizeof(buf));
        if (rc <= 0) {
            return rc;
        }
        if (pid_gone(pid)) {
            return 1;
        }
        if (ess_worker_mono_ms() >= deadline) {
            return 2;
        }
        sleep_ms(100);
    }
}

/* ---- local target ------------------------------------------------------------ */

static int local_prepare(const struct hms_opts *o, const struct deploy_src *src,
                         struct worker_files *f, char *bin, size_t bin_len)
{
    struct ess_err err;
    char workers[PATH_MAX];

    ess_err_clear(&err);
    if (ess_manifest_check_env(src->m, &err) != ESS_OK) {
        fprintf(stderr, "hms: %s: %s (the worker inherits hms's environment)\n", src->name,
                err.msg);
        return EX_CONFIG;
    }
    if (find_push_bin(bin, bin_len, 0) != 0) {
        return EX_CONFIG;
    }
    snprintf(workers, sizeof(workers), "%s/workers", o->state_dir);
    worker_files_init(f, o->state_dir, src->m->id);
    if (mkdirs(o->state_dir, 0700) != 0 || mkdirs(workers, 0700) != 0 ||
        mkdirs(f->dir, 0700) != 0) {
        return EX_CANTCREAT;
    }
    return EX_OK;
}

/* Stop the running worker of this id, start the new version, wait for its
 * first heartbeat. sysexits code; run->pid and run->instance on success. */
/* Replicas 2..n of a local deploy, after the first: each started and waited
 * for like it. sysexits code. */
static int deploy_local_replicas(struct ess_store *s, const struct deploy_src *src,
                                 const struct worker_files *first, const char *bin, int n,
                                 int wait_sec, const char *since)
{
    struct worker_files f = {0};
    char instance[320];
    pid_t pid;
    int i, rc;

    for (i = 2; i <= n; i++) {
        replica_files_init(&f, first, i);
        if (mkdirs(f.dir, 0700) != 0) {
            return EX_CANTCREAT;
        }
        pid = worker_spawn(&f, bin);
        if (pid < 0) {
            return EX_OSERR;
        }
        instance_of(pid, instance, sizeof(instance));
        rc = wait_heartbeat(s, src->m->id, instance, since, pid, wait_sec);
        if (rc != 0) {
            tail_file(f.log, 20);
            fprintf(stderr, "hms: replica %d of %s (pid %ld) %s\n", i, src->m->id, (long)pid,
                    rc == 1 ? "exited before its first heartbeat" : "sent no heartbeat");
            return EX_UNAVAILABLE;
        }
        printf("  replica %d: pid %ld, log %s\n", i, (long)pid, f.log);
    }
    return EX_OK;
}

static int deploy_local(const struct hms_opts *o, struct ess_store *s, const struct deploy_src *src,
                        int wait_sec, int replicas, struct local_run *run)
{
    struct worker_files f = {0};
    char bin[PATH_MAX];
    char since[64];
    char count[16];
    pid_t old;
    int rc = local_prepare(o, src, &f, bin, sizeof(bin));
    int n = replicas > 0 ? replicas : ess_replica_count(src->m);

    if (rc != EX_OK) {
        return rc;
    }
    old = pid_read(f.pid);
    if (pid_is_push(old)) {
        worker_stop(&f, old, src->m->id);
    }
    replicas_stop(&f, src->m->id);
    /* Every replica learns how many it is one of (ess_replica.h). */
    snprintf(count, sizeof(count), "%d", n);
    setenv("ESS_REPLICAS", count, 1);
    if (db_one(s, "SELECT clock_timestamp()::text AS t", 0, NULL, "t", since, sizeof(since)) != 0 ||
        write_text(f.manifest, src->text, src->len, 0600) != 0) {
        return EX_UNAVAILABLE;
    }
    run->pid = worker_spawn(&f, bin);
    if (run->pid < 0) {
        return EX_OSERR;
    }
    instance_of(run->pid, run->instance, sizeof(run->instance));
    rc = wait_heartbeat(s, src->m->id, run->instance, since, run->pid, wait_sec);
    if (rc == 0) {
        printf("deployed %s version %.12s: pid %ld, log %s\n", src->m->id, src->m->sha256,
               (long)run->pid, f.log);
        return n > 1 ? deploy_local_replicas(s, src, &f, bin, n, wait_sec, since) : EX_OK;
    }
    tail_file(f.log, 20);
    if (rc == 1) {
        unlink(f.pid);
        fprintf(stderr, "hms: %s exited before its first heartbeat (log above)\n", src->m->id);
    } else if (rc == 2) {
        fprintf(stderr, "hms: no heartbeat from %s (pid %ld) within %d s; it is left running\n",
                src->m->id, (long)run->pid, wait_sec);
    }
    return EX_UNAVAILABLE;
}

/* ---- systemd target ---------------------------------------------------------- */

static int write_env_file(const char *path, const struct ess_manifest *m)
{
    const char *secrets[5];
    char buf[4096];
    size_t n;
    int i;

    secret_envs(m, secrets);
    n = (size_t)snprintf(buf, sizeof(buf),
                         "# ess-worker@%s: its environment (EnvironmentFile=/etc/ess/%s.env).\n"
                         "# Mode 0600, owned by root: systemd reads it before dropping to the\n"
                         "# dynamic user. Fill in the URLs of this host's broker and database.\n"
                         "ESS_AMQP_URL=amqp://USER:PASSWORD@HOST:5672/\n"
                         "ESS_PG_URL=postgresql://USER:PASSWORD@HOST:5432/ess\n",
                         m->id, m->id);
    if (secrets[0] != NULL) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                              "# Secrets the manifest's auth block names (values never go in "
                              "the manifest):\n");
    }
    for (i = 0; secrets[i] != NULL && n < sizeof(buf); i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s=\n", secrets[i]);
    }
    return write_text(path, buf, strlen(buf), 0600);
}

static int copy_unit(const char *out_dir, char *unit, size_t unit_len)
{
    char src[PATH_MAX];
    char tried[4 * PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (hms_share_find("ess-worker@.service", "deploy/systemd/ess-worker@.service", src,
                       sizeof(src), tried, sizeof(tried)) != 0) {
        fprintf(stderr, "hms: ess-worker@.service not found (looked in %s)\n", tried);
        return EX_CONFIG;
    }
    if (read_text(src, &text, &len) != 0) {
        fprintf(stderr, "hms: cannot read %s: %s\n", src, strerror(errno));
        return EX_CONFIG;
    }
    snprintf(unit, unit_len, "%s/ess-worker@.service", out_dir);
    rc = write_text(unit, text, len, 0644) == 0 ? EX_OK : EX_CANTCREAT;
    free(text);
    return rc;
}

static int render_systemd(const struct hms_opts *o, const struct deploy_args *a,
                          const struct deploy_src *src)
{
    const char *id = src->m->id;
    char dir[PATH_MAX];
    char unit[PATH_MAX + 32];
    char yml[PATH_MAX + 80];
    char env[PATH_MAX + 80];
    char bin[PATH_MAX];
    int rc;

    if (a->out != NULL) {
        snprintf(dir, sizeof(dir), "%s", a->out);
    } else {
        snprintf(dir, sizeof(dir), "%s/systemd", o->state_dir);
    }
    snprintf(yml, sizeof(yml), "%s/%s.yml", dir, id);
    snprintf(env, sizeof(env), "%s/%s.env", dir, id);
    if (mkdirs(dir, 0700) != 0) {
        return EX_CANTCREAT;
    }
    rc = copy_unit(dir, unit, sizeof(unit));
    if (rc != EX_OK) {
        return rc;
    }
    if (write_text(yml, src->text, src->len, 0644) != 0 || write_env_file(env, src->m) != 0) {
        return EX_CANTCREAT;
    }
    if (find_push_bin(bin, sizeof(bin), 1) != 0) {
        snprintf(bin, sizeof(bin), "ess-push");
    }
    printf("wrote %s, %s, %s (version %.12s)\n"
           "install them as root (fill in %s first):\n"
           "  install -m 0755 %s /usr/local/bin/ess-push\n"
           "  install -m 0644 %s /etc/systemd/system/ess-worker@.service\n"
           "  install -d -m 0755 /etc/ess\n"
           "  install -m 0644 %s /etc/ess/%s.yml\n"
           "  install -m 0600 %s /etc/ess/%s.env\n"
           "  systemctl daemon-reload\n"
           "  systemctl enable --now ess-worker@%s.service\n"
           "a new version later: install the new /etc/ess/%s.yml, then "
           "systemctl reload ess-worker@%s (SIGHUP)\n",
           unit, yml, env, src->m->sha256, env, bin, unit, yml, id, env, id, id, id, id);
    return EX_OK;
}

/* ---- compose target ---------------------------------------------------------- */

static void print_compose_env(const struct ess_manifest *m)
{
    const char *secrets[5];
    int i;

    secret_envs(m, secrets);
    printf("    environment:\n"
           "      ESS_AMQP_URL: amqp://ess:ess@rabbitmq:5672/\n"
           "      ESS_PG_URL: postgresql://ess:ess@postgres:5432/ess\n");
    for (i = 0; secrets[i] != NULL; i++) {
        printf("      %s: ${%s:-}  # secret: from the shell or an .env file\n", secrets[i],
               secrets[i]);
    }
}

static int render_compose(const struct deploy_args *a, const struct deploy_src *src)
{
    const char *id = src->m->id;
    const char *dot = a->path[0] == '/' || strncmp(a->path, "./", 2) == 0 ? "" : "./";

    printf("# hms ess deploy --target compose: connector %s, version %.12s.\n"
           "# An override file for the project's docker-compose.yml (which defines the\n"
           "# rabbitmq and postgres services); relative paths are from the project dir:\n"
           "#   hms ess deploy %s --target compose > ess-%s.compose.yml\n"
           "#   docker-compose -f docker-compose.yml -f ess-%s.compose.yml up -d ess-push-%s\n"
           "version: \"3.8\"\n"
           "services:\n"
           "  ess-push-%s:\n"
           "    build: .\n"
           "    image: ess:%s\n"
           "    command: [\"--manifest\", \"/etc/ess/%s.yml\"]\n"
           "    volumes:\n"
           "      - \"%s%s:/etc/ess/%s.yml:ro\"\n",
           id, src->m->sha256, a->path, id, id, id, id, ESS_VERSION, id, dot, a->path, id);
    print_compose_env(src->m);
    printf("    depends_on:\n"
           "      rabbitmq: {condition: service_healthy}\n"
           "      postgres: {condition: service_healthy}\n"
           "    restart: on-failure\n"
           "    stop_signal: SIGTERM\n"
           "    stop_grace_period: 30s  # the worker drains in-flight deliveries (<= 15 s)\n"
           "    user: \"65534:65534\"\n"
           "    read_only: true\n"
           "    cap_drop: [ALL]\n"
           "    security_opt: [\"no-new-privileges:true\"]\n");
    return EX_OK;
}

/* ---- k8s target -------------------------------------------------------------- */

/* The manifest as a YAML block scalar under a key at indent 2. */
static void print_block(const struct deploy_src *src)
{
    const char *t = src->text;
    const char *chomp = "";
    size_t len = src->len;
    size_t i;

    if (len == 0 || t[len - 1] != '\n') {
        chomp = "-";
    } else if (len >= 2 && t[len - 2] == '\n') {
        chomp = "+";
    }
    printf("  %s.yml: |%s%s\n    ", src->m->id, t[0] == ' ' ? "4" : "", chomp);
    for (i = 0; i < len; i++) {
        putchar(t[i]);
        if (t[i] == '\n' && i + 1 < len) {
            fputs(t[i + 1] == '\n' ? "" : "    ", stdout);
        }
    }
    if (chomp[0] == '-') {
        putchar('\n');
    }
}

static void print_k8s_configmap(const struct deploy_src *src)
{
    const char *id = src->m->id;
    const char *secrets[5];
    int i;

    secret_envs(src->m, secrets);
    printf("# hms ess deploy --target k8s: connector %s, version %.12s.\n"
           "# Apply with kubectl apply -f; first create the Secrets it reads:\n"
           "#   kubectl create secret generic ess-env --from-literal=ESS_AMQP_URL=amqp://... "
           "--from-literal=ESS_PG_URL=postgresql://...\n",
           id, src->m->sha256);
    if (secrets[0] != NULL) {
        printf("#   kubectl create secret generic ess-%s", id);
        for (i = 0; secrets[i] != NULL; i++) {
            printf(" --from-literal=%s=...", secrets[i]);
        }
        printf("\n");
    }
    printf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ess-%s\n  labels:\n"
           "    app.kubernetes.io/name: ess-push\n    app.kubernetes.io/instance: %s\n"
           "    ess.hms/version: \"%.12s\"\ndata:\n",
           id, id, src->m->sha256);
    print_block(src);
}

static void print_k8s_env(const struct ess_manifest *m)
{
    const char *secrets[5];
    const char *shared[3] = {"ESS_AMQP_URL", "ESS_PG_URL", NULL};
    int i;

    secret_envs(m, secrets);
    printf("          env:\n");
    for (i = 0; shared[i] != NULL; i++) {
        printf("            - name: %s\n              valueFrom:\n                secretKeyRef: "
               "{name: ess-env, key: %s}\n",
               shared[i], shared[i]);
    }
    for (i = 0; secrets[i] != NULL; i++) {
        printf("            - name: %s\n              valueFrom:\n                secretKeyRef: "
               "{name: ess-%s, key: %s}\n",
               secrets[i], m->id, secrets[i]);
    }
}

/* Liveness: the worker serves no HTTP, but it heartbeats into Postgres every
 * heartbeat_sec; `hms ess status <id>` (same image) judges that row. */
static void print_k8s_probe(const struct ess_manifest *m)
{
    int period = m->heartbeat_sec * 3 < 10 ? 10 : m->heartbeat_sec * 3;

    printf(
        "          # Liveness from heartbeats: ess-push serves no HTTP, but every heartbeat_sec\n"
        "          # (%d s) it writes its heartbeat row to Postgres. `hms ess status %s` (in\n"
        "          # the same image, same env) exits non-zero when that row is older than\n"
        "          # 3 x heartbeat_sec, i.e. the loop is stuck. A crashed worker needs no\n"
        "          # probe: the container exits and restarts. Caveat: while Postgres is\n"
        "          # unreachable the probe fails too, hence the generous failureThreshold.\n"
        "          livenessProbe:\n"
        "            exec:\n"
        "              command: [/usr/local/bin/hms, ess, status, %s]\n"
        "            initialDelaySeconds: %d\n"
        "            periodSeconds: %d\n"
        "            timeoutSeconds: 10\n"
        "            failureThreshold: 5\n",
        m->heartbeat_sec, m->id, m->id, period + 10, period);
}

static void print_k8s_deployment(const struct deploy_src *src, int replicas)
{
    const char *id = src->m->id;

    printf("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ess-push-%s\n"
           "  labels: {app.kubernetes.io/name: ess-push, app.kubernetes.io/instance: %s}\n"
           "spec:\n  replicas: %d\n"
           "  # Recreate, never RollingUpdate: two workers must never share a key's order.\n"
           "  strategy: {type: Recreate}\n"
           "  selector:\n    matchLabels: {app.kubernetes.io/name: ess-push, "
           "app.kubernetes.io/instance: %s}\n"
           "  template:\n    metadata:\n"
           "      labels: {app.kubernetes.io/name: ess-push, app.kubernetes.io/instance: %s}\n"
           "      annotations:\n"
           "        ess.hms/manifest-sha256: \"%s\"  # a new version rolls the pod\n"
           "    spec:\n"
           "      terminationGracePeriodSeconds: 30  # SIGTERM drains in-flight (<= 15 s)\n"
           "      securityContext:\n        runAsNonRoot: true\n        runAsUser: 65534\n"
           "        runAsGroup: 65534\n        seccompProfile: {type: RuntimeDefault}\n"
           "      containers:\n        - name: ess-push\n          image: ess:%s\n"
           "          args: [--manifest, /etc/ess/%s.yml]\n",
           id, id, replicas, id, id, src->m->sha256, ESS_VERSION, id);
    print_k8s_env(src->m);
    if (replicas != ess_replica_count(src->m)) { /* --replicas N overrides the manifest */
        printf("            - {name: ESS_REPLICAS, value: \"%d\"}\n", replicas);
    }
    printf("          resources:\n            requests: {cpu: 50m, memory: 32Mi}\n"
           "            limits: {cpu: 500m, memory: 64Mi}\n");
    print_k8s_probe(src->m);
    printf("          securityContext:\n            allowPrivilegeEscalation: false\n"
           "            readOnlyRootFilesystem: true\n            capabilities: {drop: [ALL]}\n"
           "          volumeMounts:\n            - {name: manifest, mountPath: /etc/ess, "
           "readOnly: true}\n"
           "      volumes:\n        - name: manifest\n          configMap: {name: ess-%s}\n",
           id);
}

static int render_k8s(const struct deploy_args *a, const struct deploy_src *src)
{
    print_k8s_configmap(src);
    print_k8s_deployment(src, a->replicas > 0 ? a->replicas : ess_replica_count(src->m));
    return EX_OK;
}

/* ---- deploy ------------------------------------------------------------------ */

/* Topology, records, then the target. run is filled for local. */
static int deploy_version(const struct hms_opts *o, struct ess_store *s,
                          const struct deploy_args *a, const struct deploy_src *src,
                          const char *note, struct local_run *run)
{
    int rc = declare_topology(src->m, a->replicas > 0 ? a->replicas : ess_replica_count(src->m));

    if (rc != EX_OK) {
        return rc;
    }
    if (record_manifest(s, src) != 0 ||
        record_deploy(s, src, a->target, note, &run->deploy_id) != 0) {
        return EX_UNAVAILABLE;
    }
    if (strcmp(a->target, "systemd") == 0) {
        return render_systemd(o, a, src);
    }
    if (strcmp(a->target, "compose") == 0) {
        return render_compose(a, src);
    }
    if (strcmp(a->target, "k8s") == 0) {
        return render_k8s(a, src);
    }
    rc = deploy_local(o, s, src, a->wait_sec, a->replicas, run);
    if (rc != EX_OK) {
        mark_failed(s, run->deploy_id, "worker did not start");
    }
    return rc;
}

static int deploy_args_parse(int argc, char **argv, struct deploy_args *a)
{
    int i;

    memset(a, 0, sizeof(*a));
    a->target = "local";
    a->wait_sec = DEPLOY_WAIT_SEC;
    for (i = 0; i < argc && argv[i] != NULL; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--auto-rollback") == 0) {
            a->auto_rollback = 1;
        } else if (strcmp(argv[i], "--target") == 0 && next != NULL) {
            a->target = argv[++i];
        } else if (strcmp(argv[i], "--out") == 0 && next != NULL) {
            a->out = argv[++i];
        } else if (strcmp(argv[i], "--replicas") == 0 && next != NULL) {
            if (parse_seconds(argv[++i], &a->replicas) != 0 || a->replicas > ESS_REPLICA_MAX) {
                fprintf(stderr, "hms: --replicas: not a number 1..%d: %s\n", ESS_REPLICA_MAX,
                        argv[i]);
                return EX_USAGE;
            }
        } else if (strcmp(argv[i], "--wait") == 0 && next != NULL) {
            if (parse_seconds(argv[++i], &a->wait_sec) != 0) {
                fprintf(stderr, "hms: --wait: not a number of seconds: %s\n", argv[i]);
                return EX_USAGE;
            }
        } else if (argv[i][0] != '-' && a->path == NULL) {
            a->path = argv[i];
        } else {
            fprintf(stderr, "hms: deploy: unknown or incomplete option '%s'\n", argv[i]);
            return EX_USAGE;
        }
    }
    return EX_OK;
}

static int deploy_args_check(const struct deploy_args *a)
{
    static const char *const targets[] = {"local", "systemd", "compose", "k8s"};
    size_t i;

    if (a->path == NULL) {
        fprintf(stderr, "usage: hms ess deploy <manifest> [--target local|systemd|compose|k8s]"
                        " [--auto-rollback] [--wait S] [--replicas N] [--out DIR]\n");
        return EX_USAGE;
    }
    for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        if (strcmp(a->target, targets[i]) == 0) {
            break;
        }
    }
    if (i == sizeof(targets) / sizeof(targets[0])) {
        fprintf(stderr, "hms: --target: unknown target '%s' (local, systemd, compose, k8s)\n",
                a->target);
        return EX_USAGE;
    }
    if (a->auto_rollback && strcmp(a->target, "local") != 0) {
        fprintf(stderr, "hms: --auto-rollback watches a local worker; not with --target %s\n",
                a->target);
        return EX_USAGE;
    }
    if (a->replicas > 0 && strcmp(a->target, "local") != 0 && strcmp(a->target, "k8s") != 0) {
        fprintf(stderr,
                "hms: --replicas starts local workers or sets a k8s Deployment's "
                "replicas; with --target %s set replicas: N in the manifest and run N "
                "copies\n",
                a->target);
        return EX_USAGE;
    }
    return EX_OK;
}

/* ---- auto-rollback -------------------------------------------------------------- */

struct rates { /* from heartbeat counters */
    long long delivered;
    long long failed;
};

static int rates_parse(const char *body, struct rates *r)
{
    json_t *hb = body != NULL ? json_loads(body, 0, NULL) : NULL;

    r->delivered = json_integer_value(json_object_get(hb, "delivered"));
    r->failed = json_integer_value(json_object_get(hb, "failed"));
    json_decref(hb);
    return hb != NULL ? 0 : -1;
}

/* failed / (delivered + failed), or -1 with fewer than min attempts. */
static double rates_failure(const struct rates *r, long long min)
{
    long long n = r->delivered + r->failed;

    return n < min || n <= 0 ? -1.0 : (double)r->failed / (double)n;
}

/* The previous version's failure rate, from the latest heartbeat before the
 * deploy (ROLLBACK_UNKNOWN_RATE when there is none or too few attempts). */
static double previous_rate(struct ess_store *s, const char *id)
{
    const char *p[1] = {id};
    char body[4096];
    struct rates r;
    double rate;

    if (db_one(s, "SELECT body FROM ess_heartbeats WHERE connector = $1 ORDER BY ts DESC LIMIT 1",
               1, p, "body", body, sizeof(body)) != 0 ||
        rates_parse(body, &r) != 0) {
        return ROLLBACK_UNKNOWN_RATE;
    }
    rate = rates_failure(&r, ROLLBACK_MIN_ATTEMPTS);
    return rate < 0 ? ROLLBACK_UNKNOWN_RATE : rate;
}

static int window_sec(void)
{
    const char *env = getenv("ESS_AUTOROLLBACK_SEC");
    int sec = ROLLBACK_WINDOW_SEC;

    if (env != NULL && parse_seconds(env, &sec) != 0) {
        fprintf(stderr, "hms: ESS_AUTOROLLBACK_SEC: not a number of seconds: %s\n", env);
        sec = ROLLBACK_WINDOW_SEC;
    }
    return sec;
}

/* Watch the new instance for the window: 1 with why filled when it is
 * failing (or died), 0 when it stayed healthy, -1 on a database error. */
static int watch_failing(struct ess_store *s, const char *id, const struct local_run *run,
                         double prev, char *why, size_t why_len)
{
    const char *p[2] = {id, run->instance};
    long long deadline = ess_worker_mono_ms() + (long long)window_sec() * 1000;
    char body[4096];
    struct rates r = {0, 0};
    double rate;
    int rc;

    while (ess_worker_mono_ms() < deadline) {
        if (pid_gone(run->pid)) {
            snprintf(why, why_len, "the new worker (pid %ld) exited", (long)run->pid);
            return 1;
        }
        rc = db_one(s, "SELECT body FROM ess_heartbeats WHERE connector = $1 AND instance = $2", 2,
                    p, "body", body, sizeof(body));
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            rates_parse(body, &r);
        }
        rate = rates_failure(&r, ROLLBACK_MIN_ATTEMPTS);
        if (rate > 0.5 && rate > 5 * prev) {
            snprintf(why, why_len,
                     "failure rate %.0f%% (%lld of %lld attempts) vs %.0f%% before the deploy",
                     rate * 100, r.failed, r.delivered + r.failed, prev * 100);
            return 1;
        }
        sleep_ms(1000);
    }
    snprintf(why, why_len, "%lld delivered, %lld failed attempts", r.delivered, r.failed);
    return 0;
}

static int roll_back_to(const struct hms_opts *o, struct ess_store *s, const char *id,
                        const char *sha, const char *note)
{
    struct deploy_args a = {NULL, "local", NULL, 0, DEPLOY_WAIT_SEC, 0};
    struct deploy_src src;
    struct local_run run;
    char name[128];
    int rc = src_from_db(s, id, sha, &src, name, sizeof(name));

    if (rc == EX_OK) {
        a.path = name;
        rc = deploy_version(o, s, &a, &src, note, &run);
    }
    src_fini(&src);
    return rc;
}

static int auto_rollback(const struct hms_opts *o, struct ess_store *s,
                         const struct deploy_src *src, const struct local_run *run,
                         const char *prev_sha, double prev)
{
    char why[300];
    char note[400];
    int rc;

    printf("auto-rollback: watching %s for %d s (rolls back to %.12s if the failure rate "
           "exceeds 50%% and 5 x %.0f%%)\n",
           src->m->id, window_sec(), prev_sha, prev * 100);
    fflush(stdout);
    rc = watch_failing(s, src->m->id, run, prev, why, sizeof(why));
    if (rc <= 0) {
        if (rc == 0) {
            printf("auto-rollback: %s version %.12s is healthy (%s)\n", src->m->id, src->m->sha256,
                   why);
        }
        return rc == 0 ? EX_OK : EX_UNAVAILABLE;
    }
    snprintf(note, sizeof(note), "auto-rollback: version %.12s: %s", src->m->sha256, why);
    printf("%s; rolling back to %.12s\n", note, prev_sha);
    mark_failed(s, run->deploy_id, why);
    rc = roll_back_to(o, s, src->m->id, prev_sha, note);
    publish_alert(src->m->id, "auto_rollback", note);
    return rc == EX_OK ? EX_DATAERR : rc;
}

int hms_cmd_deploy(int argc, char **argv, const struct hms_opts *o)
{
    struct deploy_args a;
    struct deploy_src src = {0};
    struct local_run run = {0};
    struct ess_store *s = NULL;
    char prev_sha[80] = "";
    long long prev_dep = 0;
    double prev = ROLLBACK_UNKNOWN_RATE;
    int rc = deploy_args_parse(argc, argv, &a);

    if (rc == EX_OK) {
        rc = deploy_args_check(&a);
    }
    if (rc == EX_OK) {
        rc = src_load(a.path, &src);
    }
    if (rc != EX_OK) {
        goto out;
    }
    s = hms_store();
    if (s == NULL) {
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if (a.auto_rollback) {
        if (deploy_find(s, src.m->id, "local", src.m->sha256, 0, prev_sha, &prev_dep) != 0) {
            printf("auto-rollback: no earlier local version of %s; nothing to roll back to\n",
                   src.m->id);
            a.auto_rollback = 0;
        }
        prev = previous_rate(s, src.m->id);
    }
    rc = deploy_version(o, s, &a, &src, NULL, &run);
    if (rc == EX_OK && a.auto_rollback) {
        rc = auto_rollback(o, s, &src, &run, prev_sha, prev);
    }
out:
    ess_store_free(s);
    src_fini(&src);
    return rc;
}

/* ---- diff ---------------------------------------------------------------------- */

struct lines {
    const char **v; /* start of each line (borrowed from the text) */
    int *len;
    int n;
};

static int lines_split(const char *text, size_t len, struct lines *l)
{
    size_t i;
    size_t start = 0;

    l->n = 0;
    l->v = calloc(len + 1, sizeof(*l->v));
    l->len = calloc(len + 1, sizeof(*l->len));
    if (l->v == NULL || l->len == NULL) {
        return -1;
    }
    for (i = 0; i <= len; i++) {
        if (i == len ? i > start : text[i] == '\n') {
            l->v[l->n] = text + start;
            l->len[l->n++] = (int)(i - start);
            start = i + 1;
        }
    }
    return 0;
}

static void lines_fini(struct lines *l)
{
    free(l->v);
    free(l->len);
}

static int line_eq(const struct lines *a, int i, const struct lines *b, int j)
{
    return a->len[i] == b->len[j] && memcmp(a->v[i], b->v[j], (size_t)a->len[i]) == 0;
}

/* The edit script: ops[k] is ' ', '-' or '+'; 0 and *n set, or -1. */
static int diff_ops(const struct lines *a, const struct lines *b, char **ops, int *n)
{
    int w = b->n + 1;
    int *t = calloc((size_t)(a->n + 1) * (size_t)w, sizeof(int));
    int i;
    int j;
    int k = 0;

    *ops = malloc((size_t)a->n + (size_t)b->n + 1);
    if (t == NULL || *ops == NULL) {
        free(t);
        return -1;
    }
    for (i = a->n - 1; i >= 0; i--) { /* t[i][j]: LCS of a[i..], b[j..] */
        for (j = b->n - 1; j >= 0; j--) {
            t[i * w + j] = line_eq(a, i, b, j)                      ? t[(i + 1) * w + j + 1] + 1
                           : t[(i + 1) * w + j] >= t[i * w + j + 1] ? t[(i + 1) * w + j]
                                                                    : t[i * w + j + 1];
        }
    }
    for (i = 0, j = 0; i < a->n || j < b->n;) {
        if (i < a->n && j < b->n && line_eq(a, i, b, j)) {
            (*ops)[k++] = ' ';
            i++;
            j++;
        } else if (i < a->n && (j == b->n || t[(i + 1) * w + j] >= t[i * w + j + 1])) {
            (*ops)[k++] = '-'; /* removals first, as diff -u prints them */
            i++;
        } else {
            (*ops)[k++] = '+';
            j++;
        }
    }
    free(t);
    *n = k;
    return 0;
}

/* Print ops[from, to) as one hunk; ai/bi are the line indexes at from. */
static void diff_hunk(const struct lines *a, const struct lines *b, const char *ops, int from,
                      int to, int ai, int bi)
{
    int na = 0;
    int nb = 0;
    int k;

    for (k = from; k < to; k++) {
        na += ops[k] != '+';
        nb += ops[k] != '-';
    }
    printf("@@ -%d,%d +%d,%d @@\n", na > 0 ? ai + 1 : ai, na, nb > 0 ? bi + 1 : bi, nb);
    for (k = from; k < to; k++) {
        if (ops[k] == '+') {
            printf("+%.*s\n", b->len[bi], b->v[bi]);
            bi++;
        } else {
            printf("%c%.*s\n", ops[k], a->len[ai], a->v[ai]);
            ai++;
            bi += ops[k] == ' ';
        }
    }
}

/* Hunks with DIFF_CONTEXT lines around each run of changes. */
static void diff_print(const struct lines *a, const struct lines *b, const char *ops, int n)
{
    int k = 0;
    int ai = 0;
    int bi = 0;
    int from;
    int last;
    int j;

    while (k < n) {
        if (ops[k] == ' ') {
            k++;
            ai++;
            bi++;
            continue;
        }
        from = k - DIFF_CONTEXT > 0 ? k - DIFF_CONTEXT : 0;
        for (j = from; j < k; j++) { /* back to the hunk's first line */
            ai--;
            bi--;
        }
        for (last = k, j = k; j < n && j - last <= 2 * DIFF_CONTEXT; j++) {
            last = ops[j] != ' ' ? j : last;
        }
        j = last + DIFF_CONTEXT + 1 < n ? last + DIFF_CONTEXT + 1 : n;
        diff_hunk(a, b, ops, from, j, ai, bi);
        for (; from < j; from++) {
            ai += ops[from] != '+';
            bi += ops[from] != '-';
        }
        k = j;
    }
}

static int diff_texts(const char *old_name, const char *old, const char *new_name,
                      const struct deploy_src *src)
{
    struct lines a = {0};
    struct lines b = {0};
    char *ops = NULL;
    int n = 0;
    int rc = EX_OSERR;

    if (lines_split(old, strlen(old), &a) != 0 || lines_split(src->text, src->len, &b) != 0) {
        goto out;
    }
    if (a.n > DIFF_MAX_LINES || b.n > DIFF_MAX_LINES) {
        fprintf(stderr, "hms: diff: manifests over %d lines are not compared\n", DIFF_MAX_LINES);
        rc = EX_DATAERR;
        goto out;
    }
    if (diff_ops(&a, &b, &ops, &n) != 0) {
        goto out;
    }
    printf("--- %s\n+++ %s\n", old_name, new_name);
    diff_print(&a, &b, ops, n);
    rc = 1;
out:
    free(ops);
    lines_fini(&a);
    lines_fini(&b);
    return rc;
}

int hms_cmd_diff(int argc, char **argv, const struct hms_opts *o)
{
    struct deploy_src src = {0};
    struct deploy_src old = {0};
    struct ess_store *s = NULL;
    char sha[80];
    char old_name[160];
    char new_name[PATH_MAX];
    long long dep = 0;
    int rc;

    (void)o;
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: hms ess diff <manifest>\n");
        return EX_USAGE;
    }
    rc = src_load(argv[0], &src);
    s = rc == EX_OK ? hms_store() : NULL;
    if (rc != EX_OK || s == NULL) {
        rc = rc != EX_OK ? rc : EX_UNAVAILABLE;
        goto out;
    }
    snprintf(new_name, sizeof(new_name), "%s (version %.12s)", argv[0], src.m->sha256);
    rc = deploy_find(s, src.m->id, NULL, NULL, 0, sha, &dep);
    if (rc < 0) {
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if (rc == 1) {
        printf("%s is not deployed yet: everything is new\n", src.m->id);
        snprintf(old_name, sizeof(old_name), "/dev/null");
        rc = diff_texts(old_name, "", new_name, &src);
        goto out;
    }
    if (strcmp(sha, src.m->sha256) == 0) {
        printf("no changes: %s version %.12s is deployed\n", src.m->id, sha);
        rc = EX_OK;
        goto out;
    }
    rc = src_from_db(s, src.m->id, sha, &old, old_name, sizeof(old_name));
    if (rc == EX_OK || old.text != NULL) {
        snprintf(old_name, sizeof(old_name), "deployed %s (version %.12s)", src.m->id, sha);
        rc = diff_texts(old_name, old.text, new_name, &src);
    }
out:
    src_fini(&old);
    src_fini(&src);
    ess_store_free(s);
    return rc;
}

/* ---- rollback, stop ------------------------------------------------------------- */

int hms_cmd_rollback(int argc, char **argv, const struct hms_opts *o)
{
    struct ess_store *s = NULL;
    char cur[80];
    char prev[80];
    long long cur_dep = 0;
    long long prev_dep = 0;
    int rc = EX_DATAERR;

    if (argc != 1 || !valid_id(argv[0])) {
        fprintf(stderr, "usage: hms ess rollback <id>\n");
        return EX_USAGE;
    }
    s = hms_store();
    if (s == NULL) {
        return EX_UNAVAILABLE;
    }
    if (deploy_find(s, argv[0], "local", NULL, 0, cur, &cur_dep) != 0) {
        fprintf(stderr, "hms: no local deploy of %s is recorded\n", argv[0]);
        goto out;
    }
    if (deploy_find(s, argv[0], "local", cur, cur_dep, prev, &prev_dep) != 0) {
        fprintf(stderr, "hms: %s has no earlier version than %.12s to roll back to\n", argv[0],
                cur);
        goto out;
    }
    printf("rolling %s back from %.12s to %.12s (deploy #%lld)\n", argv[0], cur, prev, prev_dep);
    rc = roll_back_to(o, s, argv[0], prev, "rollback");
out:
    ess_store_free(s);
    return rc;
}

int hms_cmd_stop(int argc, char **argv, const struct hms_opts *o)
{
    struct worker_files f = {0};
    pid_t pid;

    if (argc != 1 || !valid_id(argv[0])) {
        fprintf(stderr, "usage: hms ess stop <id>\n");
        return EX_USAGE;
    }
    worker_files_init(&f, o->state_dir, argv[0]);
    pid = pid_read(f.pid);
    if (!pid_is_push(pid)) {
        if (pid != 0) {
            unlink(f.pid); /* stale: the worker is gone */
        }
        if (replicas_stop(&f, argv[0]) > 0) {
            printf("stopped the replicas of %s\n", argv[0]);
            return EX_OK;
        }
        fprintf(stderr, "hms: no local worker for %s is running (%s)\n", argv[0], f.pid);
        return EX_DATAERR;
    }
    worker_stop(&f, pid, argv[0]);
    replicas_stop(&f, argv[0]);
    printf("stopped %s (log %s)\n", argv[0], f.log);
    return EX_OK;
}
