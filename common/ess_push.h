/*
 * ess_push -- the push pipeline: hms.events -> ess.<id> -> Postgres journal ->
 * shaped delivery to the partner, with retries, a breaker, heartbeats.
 *
 * DESIGN (DESIGN.md "Delivery semantics")
 * One thread, one loop; each turn waits once (curl_multi_poll over the partner
 * sockets plus the AMQP socket and, while a statement is pending, each Postgres
 * session; timeout = the earliest timer), then:
 *   take     drain what the broker delivered into a burst; unusable messages are
 *            rejected (-> ess.dlx -> ess.<id>.dead); the burst is journaled in
 *            ONE transaction and only after COMMIT acked with one multiple-ack.
 *            The INSERT is pipelined (ess_store_journal_send): deliveries go on
 *            while Postgres commits it, the next burst fills meanwhile, and the
 *            burst is acked on the turn its result (after COMMIT) comes in.
 *   refill   the delivery window (ess_keyq) is filled from the journal after
 *            the last seq it holds: restart, backlog and live traffic are one path.
 *            Pipelined the same way; one statement is pending at a time.
 *   dispatch due heads of keys -> shape (-> delta: only changed fields) -> POST,
 *            bounded in flight; nothing while paused or outside the partner's
 *            schedule (ess_schedule: heartbeats say held; the journal fills).
 *   collect  finished transfers: OK -> done; RETRY -> back-off (or the breaker);
 *            DROP / max_retry -> dead-letter table -> done.
 *   cron     delta states, then audit rows, tickets and the delivered offset
 *            (the window's low-water mark) in one transaction, heartbeats,
 *            controls, retention, reconnects with back-off. These go on a
 *            second Postgres session, pipelined: the loop never waits for
 *            their COMMIT (the loop's session journals and reads; replicas,
 *            or no second session, write them there synchronously).
 * Nothing is acked before it is journaled and the offset never passes an event
 * that is not delivered or parked, so kill -9 anywhere loses nothing: at worst
 * a delivery is repeated with the same Idempotency-Key.
 */
#ifndef ESS_PUSH_H
#define ESS_PUSH_H

#include "ess_err.h"
#include "ess_manifest.h"
#include "ess_worker.h"

struct ess_push;

/* Takes ownership of m (on success and failure). env is copied. */
struct ess_push *ess_push_new(struct ess_manifest *m, const struct ess_worker_env *env,
                              struct ess_err *err);
void ess_push_free(struct ess_push *p);

/* Run until SIGTERM/SIGINT, then drain in-flight deliveries (bounded) and
 * return ESS_OK. SIGHUP reloads the manifest from its file. */
int ess_push_run(struct ess_push *p);

#endif
