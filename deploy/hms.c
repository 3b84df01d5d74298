/*
 * hms -- the ESS operator CLI. Today: `hms ess validate` and `hms ess explain`;
 * the rest of DESIGN.md's command list (deploy, ps, replay, dlq...) is issue 3.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "ess_err.h"
#include "ess_manifest.h"
#include "ess_version.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: hms ess validate <manifest>...\n"
                 "       hms ess explain\n"
                 "       hms --help | --version\n");
}

/* Every error of every manifest, positioned; 0 and a summary line when valid. */
static int cmd_validate(int argc, char **argv)
{
    struct ess_manifest *m = NULL;
    struct ess_diags diags;
    char line[700];
    int worst = ESS_OK;
    int rc;
    int i;
    size_t j;

    if (argc < 1) {
        usage(stderr);
        return EX_USAGE;
    }
    for (i = 0; i < argc; i++) {
        ess_diags_init(&diags);
        rc = ess_manifest_load(argv[i], &m, &diags);
        for (j = 0; j < diags.n; j++) {
            fprintf(stderr, "%s\n", ess_err_format(&diags.v[j], line, sizeof(line)));
        }
        if (rc == ESS_OK) {
            printf("%s: manifest OK: %s (%s, %zu topic(s) -> %s, version %.12s)\n", argv[i],
                   m->id, m->kind, m->topics.n, m->target_url != NULL ? m->target_url : "-",
                   m->sha256);
        } else if (worst == ESS_OK || rc == ESS_EMANIFEST) {
            worst = rc;
        }
        ess_manifest_free(m);
        m = NULL;
        ess_diags_fini(&diags);
    }
    return ess_err_exit_code(worst);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("hms %s\n", ESS_VERSION);
        return EX_OK;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return EX_OK;
    }
    if (argc >= 3 && strcmp(argv[1], "ess") == 0 && strcmp(argv[2], "validate") == 0) {
        return cmd_validate(argc - 3, argv + 3);
    }
    if (argc == 3 && strcmp(argv[1], "ess") == 0 && strcmp(argv[2], "explain") == 0) {
        ess_manifest_explain(stdout);
        return EX_OK;
    }
    usage(stderr);
    return EX_USAGE;
}
