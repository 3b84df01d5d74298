/* hms_ops -- ps, status, watch, pause, resume, replay, dlq, tickets (being written). */
#include "hms.h"

#include <stdio.h>
#include <sysexits.h>

static int not_yet(const char *what)
{
    fprintf(stderr, "hms: %s is not implemented yet\n", what);
    return EX_SOFTWARE;
}

int hms_cmd_ps(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("ps"); }
int hms_cmd_status(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("status"); }
int hms_cmd_watch(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("watch"); }
int hms_cmd_pause(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("pause"); }
int hms_cmd_resume(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("resume"); }
int hms_cmd_replay(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("replay"); }
int hms_cmd_dlq(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("dlq"); }
int hms_cmd_tickets(int argc, char **argv, const struct hms_opts *o) { (void)argc; (void)argv; (void)o; return not_yet("tickets"); }
