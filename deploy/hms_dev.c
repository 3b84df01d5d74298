/* hms_dev -- the local stack (being written). */
#include "hms.h"

#include <stdio.h>
#include <sysexits.h>

int hms_cmd_dev(int argc, char **argv, const struct hms_opts *o)
{
    (void)argc;
    (void)argv;
    (void)o;
    fprintf(stderr, "hms: dev is not implemented yet\n");
    return EX_SOFTWARE;
}
