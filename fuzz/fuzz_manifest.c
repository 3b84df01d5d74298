/*
 * fuzz_manifest -- libFuzzer target: any bytes as a manifest (YAML) through
 * ess_manifest_parse. Either a manifest or positioned errors, never a crash;
 * a manifest that parses is also printed back through the explain helpers.
 */
#include <stddef.h>
#include <stdint.h>

#include "ess_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ess_manifest *m = NULL;
    struct ess_diags diags;
    char buf[32];

    ess_diags_init(&diags);
    if (ess_manifest_parse((const char *)data, size, "fuzz.yml", &m, &diags) == 0 && m != NULL) {
        ess_manifest_duration_text(m->replay_window_sec, buf, sizeof(buf));
        (void)ess_manifest_format_name(m->format);
    }
    ess_manifest_free(m);
    ess_diags_fini(&diags);
    return 0;
}
