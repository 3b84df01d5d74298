/*
 * ess-push -- bus -> partner. Wires the modules together: arguments, manifest,
 * environment, then the push pipeline (common/ess_push.c) until SIGTERM.
 */
#include <malloc.h>
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
    int rc;

    rc = ess_worker_start(argc, argv, "ess-push", "push",
                          "Consumes ess.<id> from hms.events, journals every event to Postgres "
                          "and delivers it to the partner, in order per key.",
                          NULL, &m);
    if (rc >= 0) {
        return rc;
    }
    /* Memory: one malloc arena whatever thread libcurl's resolver starts, and
     * fixed mmap / trim thresholds (glibc raises them as big blocks are freed,
     * after which a burst's buffers stay in the heap for good). */
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    ess_err_clear(&err);
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
