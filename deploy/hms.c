/*
 * hms -- the ESS operator CLI: global options, the command table, --help at
 * every level, and the commands that need no service (validate, explain).
 */
#include "hms.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "ess_err.h"
#include "ess_log.h"
#include "ess_manifest.h"
#include "ess_version.h"
#include "ess_worker.h"

struct hms_cmd {
    const char *group; /* "ess", "ops" or "dev" */
    const char *name;
    hms_cmd_fn fn;
    const char *usage;
    const char *doc;
};

static const struct hms_cmd commands[] = {
    {"ess", "validate", hms_cmd_validate, "<manifest>...", "check manifests, every error at once"},
    {"ess", "explain", hms_cmd_explain, "", "every manifest key: type, default, meaning"},
    {"ess", "render", hms_cmd_render, "<manifest> [event.json|-] [--show-secrets] [--at EPOCH]",
     "the exact request ESS would send for an event (offline; secrets masked)"},
    {"ess", "test", hms_cmd_test, "<manifest> [--tests FILE]",
     "run <manifest-name>.tests.yml: each case PASS/FAIL (offline)"},
    {"ess", "deploy", hms_cmd_deploy,
     "<manifest> [--target local|systemd|compose|k8s] [--auto-rollback] [--wait S] [--out DIR]",
     "validate, record the version, declare the topology, start or render the worker"},
    {"ess", "diff", hms_cmd_diff, "<manifest>", "what would change against the deployed version"},
    {"ess", "rollback", hms_cmd_rollback, "<id>", "redeploy the previous recorded version"},
    {"ess", "stop", hms_cmd_stop, "<id>", "stop a locally deployed worker (graceful drain)"},
    {"ess", "ps", hms_cmd_ps, "[--all]",
     "every connector: instance, state, heartbeat age, backlog"},
    {"ess", "status", hms_cmd_status, "<id>", "one connector in detail"},
    {"ess", "watch", hms_cmd_watch, "[--count N] [--timeout S]",
     "live heartbeats and alerts from hms.ops"},
    {"ess", "pause", hms_cmd_pause, "<id>|--all", "keep journaling, deliver nothing"},
    {"ess", "resume", hms_cmd_resume, "<id>|--all", "deliver again, from where it stopped"},
    {"ess", "replay", hms_cmd_replay,
     "<id> --since 30m | --from <ISO-8601> [--to <ISO-8601>] [--key K] [--dry-run]",
     "re-send a journal window with the original idempotency keys"},
    {"ess", "dlq", hms_cmd_dlq, "list [--all]|retry|drop <id> [--event E]",
     "parked and held events"},
    {"ess", "tickets", hms_cmd_tickets, "<id> [--key K] [--limit N]", "per-change delivery record"},
    {"ess", "audit", hms_cmd_audit, "verify <id>",
     "walk the hash-chained audit log; name the first altered or removed row"},
    {"ops", "serve", hms_cmd_ops_serve, "[--listen 127.0.0.1:8080] [--public]",
     "live fleet dashboard: tiles, events, JSON API, Server-Sent Events"},
    {"dev", "", hms_cmd_dev, "up|down|status|partner [--port P]",
     "a private RabbitMQ + Postgres on loopback for this user"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out, const char *group)
{
    size_t i;

    fprintf(out, "usage: hms [--json] [--state-dir DIR] <command>\n\n");
    for (i = 0; i < N_COMMANDS; i++) {
        if (group == NULL || strcmp(group, commands[i].group) == 0) {
            fprintf(out, "  hms %s%s%s %s\n      %s\n", commands[i].group,
                    commands[i].name[0] != '\0' ? " " : "", commands[i].name, commands[i].usage,
                    commands[i].doc);
        }
    }
    fprintf(out,
            "\nenvironment: ESS_AMQP_URL, ESS_PG_URL (default: the local stack of `hms dev up`)\n"
            "exit codes: 0 ok, 64 usage, 65 bad data, 69 unavailable, 78 configuration\n");
}

static int wants_help(int argc, char **argv)
{
    int i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return 1;
        }
    }
    return 0;
}

static const struct hms_cmd *find_command(const char *group, const char *name)
{
    size_t i;

    for (i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].group, group) == 0 &&
            (commands[i].name[0] == '\0' ||
             (name != NULL && strcmp(commands[i].name, name) == 0))) {
            return &commands[i];
        }
    }
    return NULL;
}

/* Global options may stand anywhere: take them out of argv. */
static int take_globals(int *argc, char **argv, struct hms_opts *o)
{
    int i;
    int n = 0;

    for (i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
        } else if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < *argc) {
            o->state_dir = argv[++i];
        } else if (strcmp(argv[i], "--state-dir") == 0) {
            fprintf(stderr, "hms: --state-dir needs a directory\n");
            return EX_USAGE;
        } else {
            argv[n++] = argv[i];
        }
    }
    *argc = n;
    return EX_OK;
}

int main(int argc, char **argv)
{
    struct hms_opts o = {0};
    const struct hms_cmd *c;
    int skip;

    ess_log_init("hms", NULL);
    argc--;
    argv++;
    if (take_globals(&argc, argv, &o) != EX_OK) {
        return EX_USAGE;
    }
    if (o.state_dir != NULL) {
        setenv("HMS_STATE_DIR", o.state_dir, 1); /* workers and ess_worker_env_load see it */
    }
    o.state_dir = ess_worker_state_dir();
    if (argc >= 1 && strcmp(argv[0], "--version") == 0) {
        printf("hms %s\n", ESS_VERSION);
        return EX_OK;
    }
    if (argc == 0 || (argc == 1 && wants_help(argc, argv))) {
        usage(argc == 0 ? stderr : stdout, NULL);
        return argc == 0 ? EX_USAGE : EX_OK;
    }
    c = find_command(argv[0], argc > 1 ? argv[1] : NULL);
    if (c == NULL) {
        usage(stderr, strcmp(argv[0], "ess") == 0 || strcmp(argv[0], "ops") == 0 ||
                              strcmp(argv[0], "dev") == 0
                          ? argv[0]
                          : NULL);
        return wants_help(argc, argv) ? EX_OK : EX_USAGE;
    }
    skip = c->name[0] != '\0' ? 2 : 1;
    if (wants_help(argc - skip, argv + skip)) {
        printf("usage: hms %s%s%s %s\n  %s\n", c->group, c->name[0] != '\0' ? " " : "", c->name,
               c->usage, c->doc);
        return EX_OK;
    }
    return c->fn(argc - skip, argv + skip, &o);
}

/* ---- commands without services ---------------------------------------- */

int hms_cmd_validate(int argc, char **argv, const struct hms_opts *o)
{
    struct ess_manifest *m = NULL;
    int worst = ESS_OK;
    int rc;
    int i;

    (void)o;
    if (argc < 1) {
        fprintf(stderr, "usage: hms ess validate <manifest>...\n");
        return EX_USAGE;
    }
    for (i = 0; i < argc; i++) {
        rc = ess_manifest_load_reported(argv[i], &m, stderr);
        if (rc == ESS_OK) {
            printf("%s: manifest OK: %s (%s, %zu topic(s) -> %s, version %.12s)\n", argv[i], m->id,
                   m->kind, m->topics.n, m->target_url != NULL ? m->target_url : "-", m->sha256);
        } else if (worst == ESS_OK || rc == ESS_EMANIFEST) {
            worst = rc;
        }
        ess_manifest_free(m);
        m = NULL;
    }
    return ess_err_exit_code(worst);
}

int hms_cmd_explain(int argc, char **argv, const struct hms_opts *o)
{
    const struct ess_manifest_key *keys;
    json_t *rows;
    size_t n;
    size_t i;

    (void)argc;
    (void)argv;
    if (!o->json) {
        ess_manifest_explain(stdout);
        return EX_OK;
    }
    keys = ess_manifest_keys(&n);
    rows = json_array();
    for (i = 0; i < n; i++) {
        json_array_append_new(rows, json_pack("{s:s, s:s?, s:s?, s:b, s:s}", "key", keys[i].name,
                                              "default", keys[i].def, "choices", keys[i].choices,
                                              "required", keys[i].required, "doc", keys[i].doc));
    }
    hms_out_rows(o, rows, NULL);
    json_decref(rows);
    return EX_OK;
}

struct ess_store *hms_store(void)
{
    struct ess_worker_env env;
    struct ess_store *s;
    struct ess_err err;

    ess_err_clear(&err);
    ess_worker_env_load(&env);
    if (env.pg_url[0] == '\0') {
        fprintf(stderr, "hms: no database: set ESS_PG_URL, or run `hms dev up`\n");
        return NULL;
    }
    s = ess_store_new(env.pg_url, &err);
    if (s == NULL || ess_store_migrate(s, &err) != ESS_OK) {
        fprintf(stderr, "hms: %s\n", err.msg);
        ess_store_free(s);
        return NULL;
    }
    return s;
}
