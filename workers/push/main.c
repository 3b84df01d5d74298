/*
 * ess-push -- bus -> partner. Wires the modules together: arguments, manifest,
 * environment, then the push pipeline (common/ess_push.c) until SIGTERM.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <curl/curl.h>

#include "ess_err.h"
#include "ess_log.h"
#include "ess_manifest.h"
#include "ess_push.h"
#include "ess_worker.h"


int main(int argc, char **argv)
{
    struct ess_worker_env env;
    struct ess_manifest *m = NULL;
    struct ess_push *p;
    struct ess_err err;
    const char *path;
    int check_only;
    int rc;

    ess_worker_lean_exec(argv);
    rc = ess_worker_args(argc, argv, "ess-push",
                         "Consumes ess.<id> from hms.events, journals every event to Postgres and "
                         "delivers it to the partner, in order per key.",
                         &path, &check_only);
    if (rc >= 0) {
        return rc;
    }
    ess_log_init("ess-push", NULL);
    ess_err_clear(&err);
    rc = ess_manifest_load_reported(path, &m, NULL);
    if (rc != ESS_OK) {
        return ess_err_exit_code(rc);
    }
    ess_log_set_connector(m->id);
    if (strcmp(m->kind, "push") != 0) {
        ess_log_error("%s: kind: ess-push runs kind push, not %s", path, m->kind);
        ess_manifest_free(m);
        return EX_CONFIG;
    }
    if (ess_manifest_check_env(m, &err) != ESS_OK) {
        ess_log_error("%s: %s", path, err.msg);
        ess_manifest_free(m);
        return EX_CONFIG;
    }
    if (check_only) {
        printf("manifest OK: %s (%s, version %.12s)\n", m->id, path, m->sha256);
        ess_manifest_free(m);
        return EX_OK;
    }
    ess_worker_env_load(&env);
    ess_worker_signals_install();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    p = ess_push_new(m, &env, &err);
    if (p == NULL) {
        ess_log_error("%s", err.msg);
        curl_global_cleanup();
        return ess_err_exit_code(err.code);
    }
    rc = ess_push_run(p);
    ess_push_free(p);
    curl_global_cleanup();
    return rc == ESS_OK ? EX_OK : ess_err_exit_code(rc);
}
