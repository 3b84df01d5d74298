/*
 * fuzz_render -- libFuzzer target: the push shaping path. Any bytes as an
 * event body (ess_event_parse, JSON or CloudEvents) are shaped and rendered
 * with one fixed manifest per format: the shipped examples (json, soap, xml,
 * csv, fixed; their transforms, values and columns) and an inline form one.
 * Either a body or an error with a reason, never a crash. The one-pass
 * shortcuts are held to what they stand for: ess_jsoncanon_compact accepts
 * only what jansson writes back byte for byte, and ess_event_identify gives
 * ess_event_parse's outcome, id and key.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ess_event.h"
#include "ess_jsoncanon.h"
#include "ess_manifest.h"
#include "ess_shape.h"

#ifndef ESS_FUZZ_MANIFEST_DIR
#error "ESS_FUZZ_MANIFEST_DIR (the repository's manifests/) must be defined"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_files[] = {
    "city2dmv.yml",     "dmv-appointments.yml",   "lotus-rangers.yml",
    "fhwa-bridges.yml", "mainframe-flatfile.yml",
};

static const char fuzz_form[] = "id: fuzz-form\n"
                                "kind: push\n"
                                "listen_topic: a.b\n"
                                "key: k\n"
                                "target_url: http://127.0.0.1:1/x\n"
                                "format: form\n"
                                "drop: [secret]\n"
                                "rename: {k: K, a.b: AB}\n"
                                "transforms: {n: [trim, upper, {truncate: {length: 3}}]}\n";

#define FUZZ_N (sizeof(fuzz_files) / sizeof(fuzz_files[0]) + 1)

static struct ess_manifest *fuzz_m[FUZZ_N];

static struct ess_manifest *fuzz_load_one(size_t i)
{
    struct ess_manifest *m = NULL;
    struct ess_diags d;
    char path[1024];
    int rc;

    ess_diags_init(&d);
    if (i < FUZZ_N - 1) {
        snprintf(path, sizeof(path), "%s/%s", ESS_FUZZ_MANIFEST_DIR, fuzz_files[i]);
        rc = ess_manifest_load(path, &m, &d);
    } else {
        snprintf(path, sizeof(path), "inline form manifest");
        rc = ess_manifest_parse(fuzz_form, strlen(fuzz_form), "form.yml", &m, &d);
    }
    ess_diags_fini(&d);
    if (rc != 0 || m == NULL) {
        fprintf(stderr, "fuzz_render: %s does not load\n", path);
        abort(); /* a broken harness must not fuzz nothing quietly */
    }
    return m;
}

static void fuzz_one(const struct ess_manifest *m, const char *body, size_t len)
{
    struct ess_event ev;
    struct ess_err err;
    json_t *shaped = NULL;
    const char *ct = NULL;
    char *out = NULL;
    size_t outlen = 0;

    ess_err_clear(&err);
    if (ess_event_parse(body, len, NULL, m->key, &ev, &err) != ESS_OK) {
        return;
    }
    if (ess_shape_apply(m, ev.data, &shaped, &err) == ESS_OK &&
        ess_shape_render(m, shaped, &out, &outlen, &ct, &err) == ESS_OK) {
        if (out == NULL || ct == NULL || memchr(out, '\0', outlen) != NULL) {
            abort(); /* a body is always bytes without NUL, with a type */
        }
    }
    free(out);
    json_decref(shaped);
    ess_event_fini(&ev);
}

static void fuzz_shortcuts(const char *body, size_t len)
{
    struct ess_event a;
    struct ess_event b;
    struct ess_err ea;
    struct ess_err eb;
    json_t *v;
    char *out;
    int ra, rb;

    if (ess_jsoncanon_compact(body, len)) {
        v = json_loadb(body, len, 0, NULL);
        out = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
        if (out == NULL || strlen(out) != len || memcmp(out, body, len) != 0) {
            abort(); /* accepted, yet jansson writes something else */
        }
        free(out);
        json_decref(v);
    }
    ess_err_clear(&ea);
    ess_err_clear(&eb);
    ra = ess_event_parse(body, len, "m-1", "permit_id", &a, &ea);
    rb = ess_event_identify(body, len, "m-1", "permit_id", &b, &eb);
    if (ra != rb || (ra == ESS_OK && (strcmp(a.id, b.id) != 0 || strcmp(a.key, b.key) != 0)) ||
        (ra != ESS_OK && strcmp(ea.msg, eb.msg) != 0)) {
        abort(); /* the one-pass reading disagrees with the parse */
    }
    ess_event_fini(&a);
    ess_event_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i;

    if (fuzz_m[0] == NULL) {
        for (i = 0; i < FUZZ_N; i++) {
            fuzz_m[i] = fuzz_load_one(i);
        }
    }
    for (i = 0; i < FUZZ_N; i++) {
        fuzz_one(fuzz_m[i], (const char *)data, size);
    }
    fuzz_shortcuts((const char *)data, size);
    return 0;
}
