/*
 * hms_audit -- `hms ess audit verify <id>`: walk the connector's hash-chained
 * audit log (common/ess_audit.h) and name the first row that was altered or
 * removed. Exit 0 with the row count when the chain holds, 65 (EX_DATAERR)
 * naming the row when it does not, 66 (EX_NOINPUT) when there are no rows,
 * 69 when Postgres cannot be reached.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <jansson.h>

#include "ess_audit.h"
#include "hms.h"

static int audit_usage(void)
{
    fprintf(stderr, "usage: hms ess audit verify <id> [--json]\n");
    return EX_USAGE;
}

static void audit_report(const struct hms_opts *o, const char *id, int rc, long long rows,
                         const struct ess_err *err)
{
    json_t *out;

    if (!o->json) {
        if (rc == ESS_OK) {
            printf("audit %s: %lld rows, chain intact\n", id, rows);
        } else {
            fprintf(stderr, "hms: %s\n", err->msg);
        }
        return;
    }
    out = json_pack("{s:s, s:I, s:b, s:s}", "connector", id, "rows", (json_int_t)rows, "intact",
                    rc == ESS_OK, "error", rc == ESS_OK ? "" : err->msg);
    if (out != NULL) {
        json_dumpf(out, stdout, JSON_COMPACT);
        fputc('\n', stdout);
    }
    json_decref(out);
}

int hms_cmd_audit(int argc, char **argv, const struct hms_opts *o)
{
    struct ess_store *s;
    struct ess_err err;
    long long rows = 0;
    int rc;

    if (argc != 2 || strcmp(argv[0], "verify") != 0 || argv[1][0] == '-') {
        return audit_usage();
    }
    s = hms_store();
    if (s == NULL) {
        return EX_UNAVAILABLE;
    }
    ess_err_clear(&err);
    rc = ess_audit_verify(s, argv[1], &rows, &err);
    ess_store_free(s);
    audit_report(o, argv[1], rc, rows, &err);
    switch (rc) {
    case ESS_OK:
        return EX_OK;
    case ESS_EPARSE:
        return EX_DATAERR;
    case ESS_ENOTFOUND:
        return EX_NOINPUT;
    default:
        return EX_UNAVAILABLE;
    }
}
