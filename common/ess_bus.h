/*
 * ess_bus -- RabbitMQ through rabbitmq-c: connect, declare the ESS topology,
 * consume with a prefetch window, ack in bursts, dead-letter, publish.
 *
 * Topology (DESIGN.md): hms.events durable topic exchange; ess.dlx durable
 * direct exchange; queue ess.<id> durable, bound to each listen topic, with
 * x-dead-letter-exchange=ess.dlx and x-dead-letter-routing-key=ess.<id>;
 * queue ess.<id>.dead durable, bound to ess.dlx with ess.<id>; hms.ops durable
 * topic exchange. Declarations are idempotent, so every worker start (and every
 * reconnect) declares them again.
 *
 * One connection, one channel. A lost connection is reported as ESS_EBUS; the
 * caller frees the bus and makes a new one (with back-off): unacked messages are
 * redelivered by the broker and deduped by the journal.
 */
#ifndef ESS_BUS_H
#define ESS_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "ess_err.h"
#include "ess_manifest.h"

struct ess_bus;

struct ess_bus_msg {
    uint64_t tag;     /* delivery tag, for ack/reject */
    const char *body; /* borrowed: valid until the next ess_bus_next/free */
    size_t len;
    char message_id[256]; /* "" when absent */
    char origin[128];     /* header ess-origin, "" when absent */
    char routing_key[256];
    long long timestamp_ms; /* AMQP timestamp property (s) * 1000, or 0 */
    int redelivered;
};

/* Parse url (amqp://user:pass@host:port/vhost; an empty vhost is "/"), connect,
 * log in, open channel 1. NULL with err on failure. amqps:// connects with TLS,
 * the broker's certificate and host name verified against ESS_AMQP_CA_FILE
 * (else the system trust store); ESS_AMQP_CERT_FILE/ESS_AMQP_KEY_FILE give a
 * client certificate. Verification cannot be turned off.
 * A comma-separated list of URLs (the nodes of a cluster) is tried in order
 * until one answers; the error then names every node's failure. A literal
 * comma in a password is %2C. */
struct ess_bus *ess_bus_new(const char *url, struct ess_err *err);

/* "host:port" of the node this bus is connected to. Borrowed, lives with b. */
const char *ess_bus_peer(const struct ess_bus *b);
void ess_bus_free(struct ess_bus *b);

/* Declare hms.events/ess.dlx/hms.ops, ess.<id> (+ bindings) and ess.<id>.dead. */
int ess_bus_declare_push(struct ess_bus *b, const char *events_exchange, const char *ops_exchange,
                         const char *id, const struct ess_strlist *topics, struct ess_err *err);

/* The same with the queue type of ess.<id> and ess.<id>.dead (x-queue-type,
 * always sent; "classic" matches queues declared without it). A queue that
 * exists with the other type is ESS_ECONFIG with a message naming the queue
 * and what to do (RabbitMQ cannot change a queue's type); the channel is then
 * closed, as after any failed declaration: free the bus. */
int ess_bus_declare_push_typed(struct ess_bus *b, const char *events_exchange,
                               const char *ops_exchange, const char *id,
                               const struct ess_strlist *topics, enum ess_queue_type type,
                               struct ess_err *err);

/* on: declare_push gives ess.<id> x-single-active-consumer, so of the workers
 * consuming it (replicas) one at a time gets messages, in order; the broker
 * moves to another when it goes. Set before declaring. */
void ess_bus_set_single_active(struct ess_bus *b, int on);

/* Declare only the exchanges hms.events and hms.ops (reverse connectors,
 * which publish and own no queue). NULL names: the defaults. */
int ess_bus_declare_exchanges(struct ess_bus *b, const char *events_exchange,
                              const char *ops_exchange, struct ess_err *err);

/* basic.qos(prefetch) + basic.consume on queue (no-ack off). */
int ess_bus_consume(struct ess_bus *b, const char *queue, int prefetch, struct ess_err *err);

/* Cancel the consumer (graceful drain): no new deliveries arrive after this. */
int ess_bus_cancel(struct ess_bus *b, struct ess_err *err);

/* The socket to poll for readability. */
int ess_bus_fd(const struct ess_bus *b);

/* 1 when a frame or data is already buffered (poll() would not see it). */
int ess_bus_buffered(const struct ess_bus *b);

/* Next delivery, waiting at most timeout_ms (0: only what is already there).
 * Returns 1 and fills msg, 0 when nothing arrived, or ESS_EBUS when the
 * connection or channel is gone. */
int ess_bus_next(struct ess_bus *b, int timeout_ms, struct ess_bus_msg *msg, struct ess_err *err);

/* basic.ack with multiple=1: every delivery up to and including tag. */
int ess_bus_ack_upto(struct ess_bus *b, uint64_t tag, struct ess_err *err);

/* basic.reject without requeue: the broker dead-letters it via ess.dlx. */
int ess_bus_reject(struct ess_bus *b, uint64_t tag, struct ess_err *err);

/* Publish persistent JSON to exchange/routing_key; origin (may be NULL) goes in
 * header ess-origin. Fire-and-forget (heartbeats, alerts). */
int ess_bus_publish(struct ess_bus *b, const char *exchange, const char *routing_key,
                    const char *body, size_t len, const char *origin, struct ess_err *err);

/* Publisher confirms (confirm.select) on this channel; call once after
 * ess_bus_new (and after every reconnect: a new bus starts unconfirmed). */
int ess_bus_confirm_select(struct ess_bus *b, struct ess_err *err);

/* Publish like ess_bus_publish, but mandatory, and wait up to timeout_ms for
 * the broker's verdict on this message:
 *   ESS_OK        basic.ack (the broker took responsibility; persistent
 *                 messages are on disk in every queue they were routed to);
 *   ESS_ENOTFOUND basic.return: unroutable, no queue is bound to routing_key
 *                 (nothing was stored; success would be a lie);
 *   ESS_EBUS      basic.nack, no verdict within timeout_ms, or the connection
 *                 or channel is gone. After a timeout the bus is marked down
 *                 (the outcome is unknown): free it and reconnect.
 * Needs ess_bus_confirm_select first (ESS_EINVAL otherwise) and a bus that
 * does not consume: it reads frames synchronously and ignores any that are
 * not about its own publishes. Blocks the calling thread up to timeout_ms. */
int ess_bus_publish_confirmed(struct ess_bus *b, const char *exchange, const char *routing_key,
                              const char *body, size_t len, const char *origin, int timeout_ms,
                              struct ess_err *err);

/* The same with an AMQP message_id property (NULL or "" for none). */
int ess_bus_publish_confirmed_id(struct ess_bus *b, const char *exchange, const char *routing_key,
                                 const char *message_id, const char *body, size_t len,
                                 const char *origin, int timeout_ms, struct ess_err *err);

#endif
