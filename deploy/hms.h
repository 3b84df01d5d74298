/*
 * hms -- the ESS operator CLI: shared pieces of its command files.
 *
 * hms.c        argument dispatch (the command table), --help at every level
 * hms_out.c    aligned tables / --json output of JSON rows
 * hms_ops.c    ps, status, watch, pause, resume, replay, dlq, tickets
 * hms_deploy.c deploy (local|systemd|compose|k8s), diff, rollback, stop
 * hms_dev.c    dev up|down|status|partner (the local stack)
 * hms_render.c render, test (a manifest's mapping tried offline)
 * hms_dashboard.c ops serve (the live fleet dashboard: HTTP, SSE, hms.ops)
 *
 * THE CONTRACT WITH RUNNING WORKERS is the Postgres schema (common/ess_store.c
 * migrations); workers poll ess_controls about once a second:
 *  - ess_controls.paused: a paused worker journals but delivers nothing and
 *    heartbeats state "paused"; resume clears it.
 *  - replay: hms resolves the window to journal seqs and sets replay_from_seq,
 *    replay_to_seq (NULL: open-ended), replay_key (NULL: all keys) and
 *    replay_id = replay_id + 1. The worker, seeing replay_id > replay_done_id,
 *    lets in-flight deliveries finish, rewinds its delivered offset to
 *    replay_from_seq - 1 (never forward: a window past undelivered events
 *    leaves the offset where it is), sets replay_resume_seq to the old offset and
 *    replay_done_id = replay_id; events up to replay_resume_seq outside
 *    [from, to] or of another key are skipped, the rest re-sent with their
 *    original idempotency keys.
 *  - ess_dead_letters.status: parked (refused by the partner or max_retry),
 *    held (a later event of a key that has a parked one: on_park: hold_key),
 *    retry (hms ess dlq retry), dropped (hms ess dlq drop), delivered (a retry
 *    that went through). The worker re-sends a key's open rows in seq order
 *    once its oldest open row is retry or held, and lifts the key's quarantine
 *    when none is open.
 *  - ess_tickets: one row per final outcome of a change (delivered, parked, held)
 *    -- with the manifest's default `tickets: failures`, only for changes not
 *    delivered at their first attempt; a journal row at or below the delivered
 *    offset without a ticket was delivered at its first attempt.
 *  - ess_heartbeats: each worker upserts its latest heartbeat (body, ts) and keeps
 *    the one before (prev_body, prev_ts) so rates can be computed.
 *  - ess_manifests / ess_deploys: manifest versions by sha; deploy history.
 */
#ifndef HMS_H
#define HMS_H

#include <stdio.h>

#include <jansson.h>

#include "ess_store.h"

struct hms_opts {          /* options common to every command */
    int json;              /* --json */
    const char *state_dir; /* --state-dir, else ess_worker_state_dir() */
};

/* A command: argc/argv start after its name; returns a sysexits.h code. */
typedef int (*hms_cmd_fn)(int argc, char **argv, const struct hms_opts *o);

/* hms_out.c: print rows (JSON array of objects) as an aligned table with the
 * given columns (NULL-terminated; a column missing in a row prints "-"), or as
 * JSON when o->json. */
void hms_out_rows(const struct hms_opts *o, json_t *rows, const char *const *columns);

/* Connect to Postgres from ESS_PG_URL (or the local stack's env) and migrate.
 * NULL after printing the reason on stderr. */
struct ess_store *hms_store(void);

/* hms_dev.c: where things are. hms_exe_dir: the directory of the running hms
 * (0, or -1 when unknown). hms_share_find: a shipped file `name` -- from the
 * source tree next to a build (src_rel), $ESS_SHARE_DIR or /usr/share/ess --
 * into out; 0 when found, else -1 with the places tried listed in `tried`.
 * hms_run: run argv, wait, return its exit status (stdout to stderr if asked). */
int hms_exe_dir(char *buf, size_t len);
int hms_share_find(const char *name, const char *src_rel, char *out, size_t len, char *tried,
                   size_t tried_len);
int hms_run(char *const argv[], int stdout_to_stderr);

/* Commands (one file each, see above). */
int hms_cmd_validate(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_explain(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_deploy(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_diff(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_rollback(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_stop(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_ps(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_status(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_watch(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_pause(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_resume(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_replay(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_dlq(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_tickets(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_audit(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_dev(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_render(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_test(int argc, char **argv, const struct hms_opts *o);
int hms_cmd_ops_serve(int argc, char **argv, const struct hms_opts *o);

#endif
