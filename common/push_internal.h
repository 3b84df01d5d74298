/*
 * push_internal -- what the push pipeline's files share; internal to libess,
 * not installed (ess_push.h is the interface).
 *
 * ess_push.c runs the pipeline: connections, take, refill, dispatch,
 * collect, the operator's controls, the schedule, cron and
 * ess_push_new/free/run. Each other concern is a file of its own working on
 * the one struct ess_push:
 *   push_delta.c  delta: true, within the shape -> delta -> render step
 *   push_side.c   tickets, audit rows and the side session (push_side_*)
 *   push_batch.c  batch delivery: ftp://, ftps://, sftp:// file drops
 *   push_ops.c    ops visibility: metrics, alerts, canary, retention
 *   push_dlq.c    the dead-letter workflow: re-send what `hms ess dlq` released
 * Functions called across these files keep their push_ prefix and are
 * declared here; everything else stays static in its file. Ownership is as
 * ess_push.c's header comment says: the pipeline owns everything below.
 */
#ifndef PUSH_INTERNAL_H
#define PUSH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ess_alert.h"
#include "ess_audit.h"
#include "ess_backoff.h"
#include "ess_batch.h"
#include "ess_breaker.h"
#include "ess_bus.h"
#include "ess_delta.h"
#include "ess_err.h"
#include "ess_keyq.h"
#include "ess_manifest.h"
#include "ess_metrics.h"
#include "ess_partner.h"
#include "ess_push.h"
#include "ess_replica.h"
#include "ess_stats.h"
#include "ess_store.h"
#include "ess_worker.h"

#define PUSH_BREAKER_THRESHOLD 5
#define PUSH_RETRY_BASE_MS 200
#define PUSH_RETRY_CAP_MS 30000

#define PUSH_DELTA_NOTHING 1 /* push_render_item: no field changed, nothing to send */

#define PUSH_RETAIN_EVERY_MS 15000 /* a sweep step a few times a minute ... */
#define PUSH_RETAIN_MORE_MS 1000   /* ... every second while a step found a full batch */
#define PUSH_RETAIN_BATCH 1000     /* rows per DELETE: each step stays short */

/* Other periodic work the loop must not wait for either, each a short
 * transaction of its own on the side session, in this order of priority
 * (the records go first whenever they are due). */
#define SIDE_CONTROLS 1  /* the operator's controls (pause, replay) */
#define SIDE_HEARTBEAT 2 /* record the heartbeat published after SIDE_BACKLOG */
#define SIDE_BACKLOG 4   /* count the backlog for the next heartbeat */
#define SIDE_RETAIN 8    /* one retention step */

struct burst_msg { /* a consumed message waiting for its journal COMMIT */
    char *event_id;
    char *key;
    char *topic;
    char *body;
    long long received_ms;
};

struct push_burst {
    struct burst_msg *v;
    struct ess_store_event *ev; /* v as the store reads it (borrowed strings), cap entries */
    long long *seqs;            /* journal seqs of v once journaled, cap entries */
    size_t n;
    size_t cap;
    uint64_t last_tag; /* ack up to this once journaled */
    int has_tag;
};

#define PUSH_REDELIVER_MAX 8

struct push_replay { /* events at or below resume_seq outside [.., to_seq] / key are skipped */
    int active;
    long long to_seq; /* -1: open-ended */
    long long resume_seq;
    int has_key;
    char key[256];
};

struct push_redelivery { /* a dead letter being re-sent (dlq retry / held behind it) */
    int in_use;
    struct ess_store_row row;
    long long first_ms;
};

struct push_ticket { /* owned copies */
    long long seq;
    char *event_id;
    char *key;
    const char *outcome;
    int attempts;
    long last_status;
    char *last_error;
    long long first_ms;
};

struct ess_push {
    struct ess_manifest *m;
    struct ess_worker_env env;
    char queue[80];
    struct ess_bus *bus;
    struct ess_store *store;
    struct ess_partner *partner;
    struct ess_keyq *window;
    struct ess_breaker breaker;
    struct ess_stats stats;
    struct push_burst burst;      /* being filled from the broker */
    struct push_burst journaling; /* its INSERT is pending (ess_store_journal_send) */
    struct ess_worker_retry bus_retry;
    struct ess_worker_retry store_retry;
    uint64_t rng;
    size_t window_max;
    int journal_more;     /* the journal may hold rows past the window */
    int reading;          /* a refill read is pending (ess_store_journal_read_send) */
    long long read_after; /* its seq cursor: the window's last seq when sent */
    int read_want;        /* its limit */
    int offset_known;     /* the stored offset was read into the window */
    long long offset_saved;
    long long next_offset_ms;
    long long next_heartbeat_ms;
    long long next_retain_ms;
    long long started_ms;
    long long last_error_ms;
    long long last_ok_ms; /* monotonic time of the latest 2xx */
    char last_error[256];
    /* the operator's controls (deploy/hms.h), polled every PUSH_CONTROL_EVERY_MS */
    struct ess_store_controls ctl;
    long long next_control_ms;
    long long next_redeliver_ms;
    int replay_pending;        /* a replay request waits for in-flight to finish */
    struct push_replay replay; /* the filter of an applied replay */
    /* dead-letter workflow */
    json_t *quarantine;   /* keys held behind a parked event (a set) */
    int quarantine_known; /* loaded from the store since it (re)connected */
    struct push_redelivery redeliveries[PUSH_REDELIVER_MAX];
    /* every delivery attempt, for the audit chain; written with the tickets */
    struct ess_audit *audit;
    /* tickets waiting for the next offset save */
    struct push_ticket *tickets;
    size_t n_tickets;
    size_t cap_tickets;
    /* side writes (audit rows, tickets, offset) on a session of their own */
    struct ess_store *side;
    size_t side_tickets;     /* the first tickets are in its transaction */
    long long side_mark;     /* the offset in it; -1: none */
    long long side_retry_ms; /* monotonic: open it again no earlier */
    long long side_early_ms; /* monotonic: no early audit transaction before */
    int side_job;            /* the transaction under way: 0 the records, else a SIDE_* */
    int side_want;           /* SIDE_* jobs due */
    char *side_hb;           /* a heartbeat to record (SIDE_HEARTBEAT) */
    const char *side_hb_state;
    /* batch delivery (file drops): the file being built or uploaded */
    struct ess_batch *batch; /* NULL for http(s) partners */
    int batch_in_flight;     /* its upload is running */
    int batch_attempts;      /* failed uploads counted towards max_retry */
    long long batch_due_ms;  /* a sealed batch's next upload (monotonic) */
    /* ops visibility: metrics endpoint, alert rules, canary */
    struct ess_metrics *metrics; /* NULL: metrics_listen off */
    struct ess_alert *alerts;
    long long next_alert_ms;
    long long backlog;                    /* as of the last heartbeat */
    unsigned long long parked_at_refresh; /* stats.parked when the quarantine was read */
    struct push_canary {
        int in_flight;
        long long next_ms;  /* monotonic */
        long long sent_ms;  /* monotonic, of the one in flight */
        long long failures; /* consecutive */
        int has_result;
        int last_ok;
        long last_rtt_ms;
        long last_status;
        long long last_ts_ms; /* wall clock of the last result */
        char last_error[256];
    } canary;
    struct ess_delta_book *delta; /* delta: true -- per key, what the partner has */
    /* delivery_windows / blackouts: outside them everything is journaled and held */
    int held;
    long long sched_check_ms;    /* monotonic: when to look at the schedule again */
    struct ess_replica *replica; /* replicas > 1 (ess_replica.h); NULL: the only worker */

    /* replicas: the partitions the pending read asked for; journal rows read */
    uint64_t read_parts;
    struct push_reads {
        unsigned long long looked;   /* the reads' spans: what one reader alone would read */
        unsigned long long returned; /* sent by Postgres (own partitions or unpartitioned) */
        unsigned long long kept;     /* of those, this replica's to deliver */
    } reads;
};

/* ess_push.c */
void push_error(struct ess_push *p, const char *what, const struct ess_err *e);
void push_store_lost(struct ess_push *p, const struct ess_err *e);
void push_controls_apply(struct ess_push *p, const struct ess_store_controls *cp);
const char *push_state(const struct ess_push *p, long long now);
char *push_heartbeat_text(struct ess_push *p, long long now, const char *state, long long backlog);
void push_heartbeat_send(struct ess_push *p, const char *state, const char *text,
                         struct ess_store *store);
int push_quarantined(const struct ess_push *p, const char *key);
void push_park(struct ess_push *p, struct ess_keyq_item *it, const char *reason,
               const char *status);
int push_may_dispatch(const struct ess_push *p);
void push_bus_lost(struct ess_push *p, const struct ess_err *e);
struct curl_slist *push_headers(struct ess_push *p, const char *event_id, const char *content_type,
                                const char *body, size_t len, struct ess_err *err);

/* push_delta.c: shape, delta (only what changed), render */
int push_delta_flush(struct ess_push *p);
int push_render(struct ess_push *p, const char *journaled, const char *delta_key, char **body,
                size_t *len, const char **ctype, struct ess_err *err);
int push_render_item(struct ess_push *p, struct ess_keyq_item *it, char **body, size_t *len,
                     const char **ctype, struct ess_err *err);
void push_delta_skipped(struct ess_push *p, struct ess_keyq_item *it);

/* push_side.c: tickets, audit rows, the side session */
void push_ticket(struct ess_push *p, long long seq, const char *event_id, const char *key,
                 const char *outcome, int attempts, long last_status, const char *error,
                 long long first_ms);
void push_tickets_drop(struct ess_push *p, size_t k);
void push_audit(struct ess_push *p, const struct ess_partner_result *r,
                const struct ess_store_row *row);
void push_audit_early(struct ess_push *p);
int push_tickets_flush(struct ess_push *p);
int push_side_ready(struct ess_push *p, long long now);
void push_side_next(struct ess_push *p);
void push_side_poll(struct ess_push *p, int block);
int push_side_start(struct ess_push *p, int with_offset);
int push_side_drain(struct ess_push *p);

/* push_batch.c: batch delivery (ftp://, ftps://, sftp:// file drops) */
int push_url_is_drop(const char *url);
int push_batching(const struct ess_push *p);
int push_batch_busy(const struct ess_push *p);
int push_batch_idle(const struct ess_push *p);
int push_batch_reload_refused(const struct ess_push *p, const struct ess_manifest *m);
void push_batch_dispatch(struct ess_push *p, long long now);
int push_batch_result(struct ess_push *p, const struct ess_partner_result *r, long long now);
void push_batch_flush(struct ess_push *p);
int push_batch_redeliver(struct ess_push *p, struct push_redelivery *rd, char *body, size_t len,
                         struct ess_err *err);
enum ess_outcome push_batch_outcome(const struct ess_partner_result *r);
long long push_batch_timeout(const struct ess_push *p, long long now);

/* push_ops.c: ops visibility (metrics, alerts, canary, retention) */
json_t *push_ops_extra(const struct ess_push *p);
void push_retain(struct ess_push *p, long long now);
void push_alerts(struct ess_push *p, long long now);
void push_canary_send(struct ess_push *p, long long now);
int push_canary_waits(const struct ess_push *p);
int push_canary_result(struct ess_push *p, const struct ess_partner_result *r, long long now);
void push_metrics_update(struct ess_push *p);
void push_ops_reload(struct ess_push *p, const struct ess_manifest *m);
int push_ops_new(struct ess_push *p, struct ess_err *err);

/* push_dlq.c: the dead-letter workflow (re-send what `hms ess dlq` released) */
void push_redelivery_end(struct push_redelivery *rd);
void push_redelivery_result(struct ess_push *p, struct push_redelivery *rd,
                            const struct ess_partner_result *r);
void push_redeliver(struct ess_push *p, long long now);

#endif
