/*
 * fuzz_webhook -- libFuzzer target: what ess-webhook does with a request
 * before it publishes. Input: three header lines (webhook-id,
 * webhook-timestamp, webhook-signature; a missing line is a missing header)
 * then the body. The Standard Webhooks check runs with a fixed secret and
 * clock (ess_sign_check_request); the body, as if authenticated (a bearer
 * connector), is read (ess_records_body) and every record mapped back with
 * the shipped lotus-rangers-webhook manifest (ess_shape_inverse).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ess_event.h"
#include "ess_manifest.h"
#include "ess_records.h"
#include "ess_shape.h"
#include "ess_sign.h"

#ifndef ESS_FUZZ_MANIFEST_DIR
#error "ESS_FUZZ_MANIFEST_DIR (the repository's manifests/) must be defined"
#endif

#define FUZZ_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define FUZZ_NOW 1614265330LL
#define FUZZ_HDR_MAX 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ess_manifest *fuzz_m;

static void fuzz_load(void)
{
    struct ess_diags d;

    ess_diags_init(&d);
    if (ess_manifest_load(ESS_FUZZ_MANIFEST_DIR "/lotus-rangers-webhook.yml", &fuzz_m, &d) != 0) {
        fprintf(stderr, "fuzz_webhook: lotus-rangers-webhook.yml does not load\n");
        abort();
    }
    ess_diags_fini(&d);
}

static void fuzz_records(const char *body, size_t len)
{
    struct ess_err err;
    json_t *recs = NULL;
    json_t *out;
    size_t i;

    ess_err_clear(&err);
    if (ess_records_body(body, len, &recs, &err) != ESS_OK) {
        return;
    }
    for (i = 0; i < json_array_size(recs); i++) {
        out = NULL;
        ess_err_clear(&err);
        if (ess_shape_inverse(fuzz_m, json_array_get(recs, i), &out, &err) == ESS_OK) {
            (void)ess_event_path_get(out, fuzz_m->key);
        }
        json_decref(out);
    }
    json_decref(recs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *hdr[FUZZ_HDR_MAX] = {NULL, NULL, NULL};
    const char *p = (const char *)data;
    const char *nl;
    size_t left = size;
    struct ess_err err;
    int i;

    if (fuzz_m == NULL) {
        fuzz_load();
    }
    for (i = 0; i < FUZZ_HDR_MAX && left > 0; i++) {
        nl = memchr(p, '\n', left);
        if (nl == NULL) {
            break;
        }
        hdr[i] = strndup(p, (size_t)(nl - p)); /* stops at a NUL, as a header would */
        left -= (size_t)(nl - p) + 1;
        p = nl + 1;
    }
    ess_err_clear(&err);
    (void)ess_sign_check_request(FUZZ_SECRET, hdr[0], hdr[1], hdr[2], p, left, FUZZ_NOW, 300, &err);
    fuzz_records(p, left);
    for (i = 0; i < FUZZ_HDR_MAX; i++) {
        free(hdr[i]);
    }
    return 0;
}
