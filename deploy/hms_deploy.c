/* hms_deploy -- deploy, diff, rollback, stop (being written). */
#include "hms.h"

#include <stdio.h>
#include <sysexits.h>

static int not_yet(const char *what)
{
    fprintf(stderr, "hms: %s is not implemented yet\n", what);
    return EX_SOFTWARE;
}

int hms_cmd_deploy(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("deploy"); }
int hms_cmd_diff(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("diff"); }
int hms_cmd_rollback(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("rollback"); }
int hms_cmd_stop(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("stop"); }
