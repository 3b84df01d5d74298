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
#include <openssl/evp.h>

#include "ess_audit.h"
#include "hms.h"

static int audit_usage(void)
{
    fprintf(stderr, "usage: hms ess audit verify <id> [--json]\n");
    return EX_USAGE;
}

/* The SHA-256 of text as lowercase hex. */
static void sha256_hex(const char *text, char out[ESS_AUDIT_HASH_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    unsigned int i;

    out[0] = '\0';
    if (EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL) == 1) {
        for (i = 0; i < n && i < 32; i++) {
            snprintf(out + 2 * i, 3, "%02x", md[i]);
        }
    }
}

/* Every manifest version on the (verified) chain against ess_manifests. */
static int audit_manifests(struct ess_store *s, const char *id, struct ess_err *err)
{
    static const char q[] = "SELECT a.n, a.content::json->>'sha256' AS sha, m.body FROM ess_audit a"
                            " LEFT JOIN ess_manifests m ON m.connector = a.chain"
                            "  AND m.sha = a.content::json->>'sha256'"
                            " WHERE a.chain = $1 AND a.kind = 'manifest' ORDER BY a.n";
    const char *params[1] = {id};
    char hex[ESS_AUDIT_HASH_HEX];
    json_t *rows = NULL;
    json_t *row;
    const char *sha;
    const char *body;
    size_t i;
    int rc = ess_store_query_json(s, q, 1, params, &rows, err);

    json_array_foreach(rows, i, row)
    {
        sha = json_string_value(json_object_get(row, "sha"));
        body = json_string_value(json_object_get(row, "body"));
        if (body == NULL) {
            rc = ess_err_set(err, ESS_EPARSE,
                             "audit %s: manifest version %.12s (row %s) is "
                             "missing from ess_manifests",
                             id, sha != NULL ? sha : "?",
                             json_string_value(json_object_get(row, "n")));
            break;
        }
        sha256_hex(body, hex);
        if (sha == NULL || strcmp(hex, sha) != 0) {
            rc = ess_err_set(err, ESS_EPARSE,
                             "audit %s: the stored body of manifest version "
                             "%.12s (row %s) was altered",
                             id, sha != NULL ? sha : "?",
                             json_string_value(json_object_get(row, "n")));
            break;
        }
    }
    json_decref(rows);
    return rc;
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
    if (rc == ESS_OK) {
        rc = audit_manifests(s, argv[1], &err);
    }
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
