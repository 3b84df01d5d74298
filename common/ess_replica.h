/*
 * ess_replica -- several ess-push processes ("replicas") of one connector
 * sharing its queue and its journal, each key delivered by exactly one of
 * them at a time, in order.
 *
 * DESIGN
 * Keys fall into ESS_REPLICA_PARTS partitions (FNV-1a of the key). Every
 * replica consumes ess.<id> and journals whatever it receives (the journal
 * dedupes; appends are serialised per connector so seqs commit in order, see
 * ess_store_journal_lock). Delivery is partitioned:
 *  - ess_replicas(connector, instance, heartbeat_at): each replica stamps its
 *    row every heartbeat_sec / 3 (at most every second). Live = stamped within
 *    2 x heartbeat_sec, by the database's clock.
 *  - ess_partitions(connector, part, owner, delivered_seq): who delivers a
 *    partition, and the offset below which its events are all done. The rows
 *    start at the connector's single-worker offset (ess_offsets).
 *  - The wanted owner of a partition is chosen by rendezvous hashing over the
 *    live replicas (highest FNV-1a of "instance/part"): every replica computes
 *    the same answer, and a replica coming or going moves only its share.
 *  - A replica delivers only partitions it owns in the table. When what it
 *    owns differs from what it should (a replica joined, left or died, or its
 *    own partition was taken), it stops dispatching, waits for its transfers
 *    to finish, saves its offset, releases what it should not own, claims
 *    what it should and is free (no owner, or an owner that is not live), and
 *    rebuilds its window from the lowest offset it now owns. A partition
 *    taken over from a dead replica restarts at that replica's last saved
 *    offset: at-least-once, with the same idempotency keys.
 *  - Each replica reads only its own rows: appends fill ess_journal.part
 *    with ess_replica_part(key) (ess_store_journal_partition), and a refill
 *    asks for the owned partitions' rows of the next ess_replica_scan rows
 *    and how far that look went (ess_store_journal_read_parts_send), so the
 *    window's cursor and low-water mark pass the others' rows unread.
 *  - A replica whose own stamp is older than 1.5 x heartbeat_sec (it lost the
 *    database) stops dispatching by itself, before the others may take its
 *    partitions at 2 x heartbeat_sec.
 * One replica (replicas: 1, the default) does not use this module at all.
 *
 * Ownership: ess_replica_new returns a heap object freed with
 * ess_replica_free. The store passed to each call is borrowed for the call.
 */
#ifndef ESS_REPLICA_H
#define ESS_REPLICA_H

#include <stdint.h>

#include "ess_err.h"
#include "ess_manifest.h"
#include "ess_store.h"

#define ESS_REPLICA_PARTS 64 /* one bit each in a uint64_t */

struct ess_replica;

/* How many replicas this process is one of: ESS_REPLICAS (set by `hms ess
 * deploy --replicas N`) when it is a number 1..64, else the manifest's. */
int ess_replica_count(const struct ess_manifest *m);

/* connector is copied; the replica's name is instance + "#" + 8 random hex
 * digits (unique even if two processes share an instance name). NULL when out
 * of memory. */
struct ess_replica *ess_replica_new(const char *connector, const char *instance, int heartbeat_sec);
void ess_replica_free(struct ess_replica *r);

/* The partition of a key, 0 .. ESS_REPLICA_PARTS-1. */
unsigned ess_replica_part(const char *key);

/* Rendezvous hashing: the index in live[0..n) of the wanted owner of part,
 * -1 when n is 0. */
int ess_replica_owner(const char *const *live, size_t n, unsigned part);

/* Stamp this replica, read who is live and who owns what (when due; a no-op
 * otherwise). ESS_OK, or ESS_ESTORE (the caller reconnects). */
int ess_replica_tick(struct ess_replica *r, struct ess_store *s, long long now_ms,
                     struct ess_err *err);

/* 1 while this replica may hand events to the partner. */
int ess_replica_may_dispatch(const struct ess_replica *r, long long now_ms);

/* 1 when ownership must change: stop dispatching, let transfers finish, then
 * call ess_replica_rebalance. */
int ess_replica_rebalance_due(const struct ess_replica *r);

/* With nothing in flight: save mark (the window's low-water mark) for the
 * partitions owned so far, release and claim, and set *floor to where the new
 * window starts (the lowest offset owned). ESS_OK or ESS_ESTORE. */
int ess_replica_rebalance(struct ess_replica *r, struct ess_store *s, long long mark,
                          long long *floor, struct ess_err *err);

/* Replay replay_id (the operator's `hms ess replay`), with nothing in flight
 * and this replica's offsets saved: the first replica to get here lowers
 * every partition's offset to from (never raising one) and marks the replay
 * applied, in one statement under the controls row's lock -- exactly once
 * however many replicas race. Every replica then re-reads the offsets it
 * owns and sets *floor to where its window restarts. Until a replica has
 * done this, its saves leave the offsets alone. ESS_OK or ESS_ESTORE. */
int ess_replica_replay(struct ess_replica *r, struct ess_store *s, long long replay_id,
                       long long from, long long *floor, struct ess_err *err);

/* The last replay id passed to ess_replica_replay (0 at first): a replay with
 * a higher id still has to be taken in by this replica. */
long long ess_replica_replay_seen(const struct ess_replica *r);

/* 1 when this replica delivers the event: it owns the key's partition and seq
 * is past that partition's offset. */
int ess_replica_wants(const struct ess_replica *r, const char *key, long long seq);

/* 1 when this replica owns the key's partition (dead letters re-sent). */
int ess_replica_owns_key(const struct ess_replica *r, const char *key);

/* Save mark as the offset of every owned partition (never moving one back),
 * and the connector's lowest offset as ess_offsets (for `hms ess ps`, and a
 * return to one replica). ESS_OK or ESS_ESTORE. */
int ess_replica_save(struct ess_replica *r, struct ess_store *s, long long mark,
                     struct ess_err *err);

/* The lowest offset over all partitions at the last tick: the journal may be
 * trimmed only below it. -1 before the first tick. */
long long ess_replica_retain_floor(const struct ess_replica *r);

/* Graceful exit: save mark, give up every partition and the registration, so
 * the others take over at once. Best effort. */
void ess_replica_leave(struct ess_replica *r, struct ess_store *s, long long mark);

/* The other replicas journal events this one delivers, and nothing tells it:
 * it polls the journal every ESS_REPLICA_POLL_MS. 1 (and re-armed) when a
 * poll is due; ess_replica_poll_in gives the ms until the next (>= 0). */
#define ESS_REPLICA_POLL_MS 50
int ess_replica_poll_due(struct ess_replica *r, long long now_ms);
long long ess_replica_poll_in(const struct ess_replica *r, long long now_ms);

/* How many journal rows a refill should look at to find about want rows of
 * the partitions in owned (rows are spread evenly over partitions): want x
 * ESS_REPLICA_PARTS / owned partitions, at least want, at most
 * ESS_REPLICA_SCAN_MAX x want (few partitions owned: the read still ends
 * soon), and at most INT_MAX. 0 when want <= 0. */
#define ESS_REPLICA_SCAN_MAX 16
int ess_replica_scan(uint64_t owned, int want);

/* The name it registers and owns partitions under. Lives with r. */
const char *ess_replica_name(const struct ess_replica *r);

/* Partitions owned (bit i = partition i), for logs and tests. */
uint64_t ess_replica_owned(const struct ess_replica *r);

#endif
