/*
 * ess_bus -- RabbitMQ through rabbitmq-c 0.11: one connection, one channel.
 *
 * The worker polls ess_bus_fd() with everything else and calls ess_bus_next()
 * every loop iteration, so this module never blocks longer than asked and
 * never owns a thread.
 *
 * DESIGN
 * - State is one of: connection gone, channel gone, open. Any broker close
 *   (connection.close / channel.close, e.g. a failed declaration) or socket
 *   error moves it down and every later call returns ESS_EBUS at once: the
 *   caller frees the bus and reconnects with back-off (ess_bus.h).
 * - rabbitmq-c only services heartbeats inside its own calls, so a zero
 *   timeout still goes through amqp_consume_message with an immediate
 *   deadline: that reads what the kernel has, answers heartbeats and notices a
 *   dead peer. RPCs are bounded by an rpc timeout so a hung broker cannot
 *   freeze a worker (ess_bus_free included).
 * - The current delivery's envelope is kept here and destroyed by the next
 *   ess_bus_next or ess_bus_free, which is what makes msg->body borrowable
 *   without a copy.
 * - Error text is one line: rabbitmq-c's status string, or the broker's own
 *   reply text ("NOT_FOUND - no exchange 'x' in vhost '/'"). The URL is never
 *   echoed: it carries the password.
 */
#include "ess_bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/ssl.h>

#define BUS_CHANNEL 1
#define BUS_CONNECT_TIMEOUT_S 5
#define BUS_RPC_TIMEOUT_S 15
#define BUS_HEARTBEAT_S 60
#define BUS_DLX "ess.dlx"
#define BUS_NAME_MAX 256
/* rabbitmq-c sizes its frame buffer and memory pool pages by frame_max: 32 KiB
 * instead of the default 128 KiB keeps ~250 KiB out of a worker's RSS; a
 * larger message simply travels as several body frames. */
#define BUS_FRAME_MAX 32768

enum bus_state { BUS_CONN_GONE = 0, BUS_CHANNEL_GONE, BUS_OPEN };

struct ess_bus {
    amqp_connection_state_t conn;
    enum bus_state state;
    amqp_envelope_t env;
    int have_env;
    char *consumer_tag; /* NULL when not consuming */
    char peer[BUS_NAME_MAX];
    int confirming;    /* confirm.select done */
    uint64_t next_seq; /* publish sequence number = the broker's delivery tag */
    int single_active; /* declare ess.<id> with x-single-active-consumer (replicas) */
};

/* ----------------------------------------------------------- errors ---- */

static int bus_gone(const struct ess_bus *b, struct ess_err *err)
{
    return ess_err_set(err, ESS_EBUS, "connection to RabbitMQ at %s is %s", b->peer,
                       b->state == BUS_CHANNEL_GONE ? "open but its channel was closed" : "closed");
}

static int bus_status_error(struct ess_bus *b, int status, const char *what, struct ess_err *err)
{
    b->state = BUS_CONN_GONE;
    return ess_err_set(err, ESS_EBUS, "%s: %s", what, amqp_error_string2(status));
}

/* A broker-initiated close: answer it (the protocol says so) and go down. */
static int bus_closed_by_broker(struct ess_bus *b, const amqp_method_t *m, const char *what,
                                struct ess_err *err)
{
    amqp_connection_close_ok_t conn_ok = {0};
    amqp_channel_close_ok_t chan_ok = {0};
    const amqp_connection_close_t *cc;
    const amqp_channel_close_t *ch;

    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        cc = m->decoded;
        amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &conn_ok);
        b->state = BUS_CONN_GONE;
        return ess_err_set(err, ESS_EBUS, "%s: %.*s", what, (int)cc->reply_text.len,
                           (const char *)cc->reply_text.bytes);
    }
    if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        ch = m->decoded;
        amqp_send_method(b->conn, BUS_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &chan_ok);
        if (b->state == BUS_OPEN) {
            b->state = BUS_CHANNEL_GONE;
        }
        return ess_err_set(err, ESS_EBUS, "%s: %.*s", what, (int)ch->reply_text.len,
                           (const char *)ch->reply_text.bytes);
    }
    b->state = BUS_CONN_GONE;
    return ess_err_set(err, ESS_EBUS, "%s: unexpected method %s from the broker", what,
                       amqp_method_name(m->id));
}

static int bus_reply_error(struct ess_bus *b, amqp_rpc_reply_t r, const char *what,
                           struct ess_err *err)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return ESS_OK;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return bus_status_error(b, r.library_error, what, err);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        return bus_closed_by_broker(b, &r.reply, what, err);
    default:
        b->state = BUS_CONN_GONE;
        return ess_err_set(err, ESS_EBUS, "%s: no reply from the broker", what);
    }
}

static int bus_check_rpc(struct ess_bus *b, const char *what, struct ess_err *err)
{
    return bus_reply_error(b, amqp_get_rpc_reply(b->conn), what, err);
}

/* ------------------------------------------------------- connecting ---- */

static int bus_parse_url(char *copy, struct amqp_connection_info *ci, struct ess_err *err)
{
    int status;

    status = amqp_parse_url(copy, ci);
    if (status != AMQP_STATUS_OK) {
        return ess_err_set(err, ESS_ECONFIG, "AMQP URL is not amqp://user:pass@host:port/vhost: %s",
                           amqp_error_string2(status));
    }
    /* rabbitmq-c 0.11 parses "amqp://h:5672/" as vhost "", which no broker has. */
    if (ci->vhost == NULL || *ci->vhost == '\0') {
        ci->vhost = "/";
    }
    return ESS_OK;
}

/* amqps://: TLS with the peer's certificate and host name always verified
 * (no switch turns that off): against ESS_AMQP_CA_FILE when set, else the
 * system's trust store; ESS_AMQP_CERT_FILE + ESS_AMQP_KEY_FILE add a client
 * certificate. NULL with err on failure. */
static amqp_socket_t *bus_tls_socket(struct ess_bus *b, struct ess_err *err)
{
    const char *ca = getenv("ESS_AMQP_CA_FILE");
    const char *cert = getenv("ESS_AMQP_CERT_FILE");
    const char *key = getenv("ESS_AMQP_KEY_FILE");
    amqp_socket_t *sock = amqp_ssl_socket_new(b->conn);

    if (sock == NULL) {
        ess_err_set(err, ESS_ENOMEM, "cannot create an AMQP TLS socket");
        return NULL;
    }
    amqp_ssl_socket_set_verify_peer(sock, 1);
    amqp_ssl_socket_set_verify_hostname(sock, 1);
    if (ca != NULL && ca[0] != '\0' && amqp_ssl_socket_set_cacert(sock, ca) != AMQP_STATUS_OK) {
        ess_err_set(err, ESS_ECONFIG, "ESS_AMQP_CA_FILE %s: not a readable PEM CA file", ca);
        return NULL;
    }
    if ((ca == NULL || ca[0] == '\0') &&
        SSL_CTX_set_default_verify_paths(amqp_ssl_socket_get_context(sock)) != 1) {
        ess_err_set(err, ESS_ECONFIG,
                    "amqps: the system trust store cannot be loaded; set "
                    "ESS_AMQP_CA_FILE");
        return NULL;
    }
    if (cert != NULL && cert[0] != '\0' &&
        amqp_ssl_socket_set_key(sock, cert, key != NULL ? key : cert) != AMQP_STATUS_OK) {
        ess_err_set(err, ESS_ECONFIG,
                    "ESS_AMQP_CERT_FILE %s / ESS_AMQP_KEY_FILE: not a readable "
                    "PEM certificate and key",
                    cert);
        return NULL;
    }
    return sock;
}

static int bus_open_socket(struct ess_bus *b, const struct amqp_connection_info *ci,
                           struct ess_err *err)
{
    struct timeval tv = {BUS_CONNECT_TIMEOUT_S, 0};
    amqp_socket_t *sock;
    int status;

    if (ci->ssl) {
        sock = bus_tls_socket(b, err);
        if (sock == NULL) {
            return err != NULL && err->code != ESS_OK ? err->code : ESS_ECONFIG;
        }
    } else {
        sock = amqp_tcp_socket_new(b->conn);
    }
    if (sock == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "cannot create an AMQP socket");
    }
    status = amqp_socket_open_noblock(sock, ci->host, ci->port, &tv);
    if (status == AMQP_STATUS_OK) {
        return ESS_OK;
    }
    /* rabbitmq-c folds refused/unreachable into SOCKET_ERROR (errno is stale
     * by then), so name the likely causes rather than a vague "socket error". */
    if (status == AMQP_STATUS_SOCKET_ERROR) {
        return ess_err_set(err, ESS_EBUS, "cannot connect to %s: connection refused or unreachable",
                           b->peer);
    }
    return ess_err_set(err, ESS_EBUS, "cannot connect to %s: %s", b->peer,
                       amqp_error_string2(status));
}

static int bus_login(struct ess_bus *b, const struct amqp_connection_info *ci, struct ess_err *err)
{
    struct timeval rpc = {BUS_RPC_TIMEOUT_S, 0};
    amqp_rpc_reply_t r;
    char what[BUS_NAME_MAX + 128];

    snprintf(what, sizeof(what), "login to %s vhost '%s' as '%s'", b->peer, ci->vhost, ci->user);
    r = amqp_login(b->conn, ci->vhost, 0, BUS_FRAME_MAX, BUS_HEARTBEAT_S, AMQP_SASL_METHOD_PLAIN,
                   ci->user, ci->password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        return bus_reply_error(b, r, what, err);
    }
    b->state = BUS_CHANNEL_GONE;
    amqp_set_rpc_timeout(b->conn, &rpc);
    amqp_channel_open(b->conn, BUS_CHANNEL);
    if (bus_check_rpc(b, "open channel 1", err) != ESS_OK) {
        return ESS_EBUS;
    }
    b->state = BUS_OPEN;
    return ESS_OK;
}

static struct ess_bus *bus_new_one(const char *url, struct ess_err *err)
{
    struct amqp_connection_info ci;
    struct ess_bus *b = NULL;
    char *copy = NULL;
    int rc = ESS_ENOMEM;

    if (url == NULL) {
        ess_err_set(err, ESS_EINVAL, "ess_bus_new: url is NULL");
        return NULL;
    }
    copy = strdup(url);
    b = calloc(1, sizeof(*b));
    if (copy == NULL || b == NULL) {
        ess_err_set(err, ESS_ENOMEM, "out of memory");
        goto done;
    }
    rc = bus_parse_url(copy, &ci, err);
    if (rc != ESS_OK) {
        goto done;
    }
    snprintf(b->peer, sizeof(b->peer), "%s:%d", ci.host, ci.port);
    b->conn = amqp_new_connection();
    rc = b->conn != NULL ? bus_open_socket(b, &ci, err)
                         : ess_err_set(err, ESS_ENOMEM, "out of memory");
    if (rc == ESS_OK) {
        rc = bus_login(b, &ci, err);
    }
done:
    free(copy);
    if (rc != ESS_OK) {
        ess_bus_free(b);
        return NULL;
    }
    return b;
}

/* "url1,url2,...": the nodes of a cluster, tried in order until one logs us
 * in. Each failure is kept ("host:port: why") so the final error names all. */
static struct ess_bus *bus_new_any(const char *urls, struct ess_err *err)
{
    char why[ESS_ERR_MSG_MAX];
    struct ess_err one;
    struct ess_bus *b = NULL;
    char *copy = strdup(urls);
    char *url;
    char *next;
    size_t used = 0;
    int code = ESS_EBUS;

    if (copy == NULL) {
        ess_err_set(err, ESS_ENOMEM, "out of memory");
        return NULL;
    }
    why[0] = '\0';
    for (url = copy; url != NULL && b == NULL; url = next) {
        next = strchr(url, ',');
        if (next != NULL) {
            *next++ = '\0';
        }
        ess_err_clear(&one);
        b = bus_new_one(url, &one);
        if (b == NULL && used < sizeof(why)) {
            code = one.code == ESS_ECONFIG ? ESS_ECONFIG : code;
            used += (size_t)snprintf(why + used, sizeof(why) - used, "%s%s", used > 0 ? "; " : "",
                                     one.msg);
        }
    }
    free(copy);
    if (b == NULL) {
        ess_err_set(err, code, "no broker node answered: %s", why);
    }
    return b;
}

struct ess_bus *ess_bus_new(const char *url, struct ess_err *err)
{
    if (url == NULL) {
        ess_err_set(err, ESS_EINVAL, "ess_bus_new: url is NULL");
        return NULL;
    }
    return strchr(url, ',') != NULL ? bus_new_any(url, err) : bus_new_one(url, err);
}

const char *ess_bus_peer(const struct ess_bus *b)
{
    return b != NULL ? b->peer : "";
}

static void bus_drop_envelope(struct ess_bus *b)
{
    if (b->have_env) {
        amqp_destroy_envelope(&b->env);
        b->have_env = 0;
    }
}

void ess_bus_free(struct ess_bus *b)
{
    if (b == NULL) {
        return;
    }
    bus_drop_envelope(b);
    if (b->conn != NULL) {
        /* Graceful when we can; errors do not matter any more. */
        if (b->state == BUS_OPEN) {
            amqp_channel_close(b->conn, BUS_CHANNEL, AMQP_REPLY_SUCCESS);
        }
        if (b->state >= BUS_CHANNEL_GONE) {
            amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(b->conn);
    }
    free(b->consumer_tag);
    free(b);
}

/* ------------------------------------------------------- topology ------ */

static int bus_exchange(struct ess_bus *b, const char *name, const char *type, struct ess_err *err)
{
    char what[BUS_NAME_MAX + 32];

    snprintf(what, sizeof(what), "declare exchange %s", name);
    amqp_exchange_declare(b->conn, BUS_CHANNEL, amqp_cstring_bytes(name), amqp_cstring_bytes(type),
                          0, 1, 0, 0, amqp_empty_table);
    return bus_check_rpc(b, what, err);
}

static const char *bus_queue_type_name(enum ess_queue_type t)
{
    return t == ESS_QUEUE_QUORUM ? "quorum" : "classic";
}

/* A queue's type is fixed when it is created: redeclaring it with another
 * x-queue-type is a channel error (406 "inequivalent arg 'x-queue-type'").
 * Say which queue, what it is and what to do instead of the broker's words. */
static int bus_queue_type_error(const char *name, enum ess_queue_type want, struct ess_err *err)
{
    const char *have = want == ESS_QUEUE_QUORUM ? "classic" : "quorum";

    ess_err_clear(err); /* replaces the broker's 406 text */
    return ess_err_set(err, ESS_ECONFIG,
                       "queue %s already exists as a %s queue but the manifest says queue_type: "
                       "%s; RabbitMQ cannot change a queue's type: set queue_type: %s again, or "
                       "stop the worker, let the queue drain (rabbitmqctl list_queues), delete it "
                       "(rabbitmqctl delete_queue %s) and deploy again",
                       name, have, bus_queue_type_name(want), have, name);
}

/* x-single-active-consumer is fixed at creation too (replicas need it). */
static int bus_single_active_error(const char *name, int want, struct ess_err *err)
{
    ess_err_clear(err); /* replaces the broker's 406 text */
    return ess_err_set(err, ESS_ECONFIG,
                       "queue %s already exists %s x-single-active-consumer, which %s; RabbitMQ "
                       "cannot change it: stop every worker of this connector, let the queue "
                       "drain (rabbitmqctl list_queues), delete it (rabbitmqctl delete_queue %s) "
                       "and deploy again",
                       name, want ? "without" : "with",
                       want ? "replicas need (one consumer journals, so each key stays in order)"
                            : "a single worker does not use (replicas: 1)",
                       name);
}

/* dead_rk: route dead letters to ess.dlx with this key; NULL for none. The
 * main queue (dead_rk set) of a replicated connector has one active consumer:
 * replicas competing for messages would journal a key's changes out of order. */
static int bus_queue(struct ess_bus *b, const char *name, const char *dead_rk,
                     enum ess_queue_type type, struct ess_err *err)
{
    amqp_table_entry_t args[4];
    amqp_table_t table = amqp_empty_table;
    char what[BUS_NAME_MAX + 32];
    int rc;

    /* Always explicit: RabbitMQ treats "classic" and an absent x-queue-type
     * as the same, so queues declared before this key existed still match. */
    args[0].key = amqp_cstring_bytes("x-queue-type");
    args[0].value.kind = AMQP_FIELD_KIND_UTF8;
    args[0].value.value.bytes = amqp_cstring_bytes(bus_queue_type_name(type));
    table.num_entries = 1;
    if (dead_rk != NULL) {
        args[1].key = amqp_cstring_bytes("x-dead-letter-exchange");
        args[1].value.kind = AMQP_FIELD_KIND_UTF8;
        args[1].value.value.bytes = amqp_cstring_bytes(BUS_DLX);
        args[2].key = amqp_cstring_bytes("x-dead-letter-routing-key");
        args[2].value.kind = AMQP_FIELD_KIND_UTF8;
        args[2].value.value.bytes = amqp_cstring_bytes(dead_rk);
        table.num_entries = 3;
        if (b->single_active) {
            args[3].key = amqp_cstring_bytes("x-single-active-consumer");
            args[3].value.kind = AMQP_FIELD_KIND_BOOLEAN;
            args[3].value.value.boolean = 1;
            table.num_entries = 4;
        }
    }
    table.entries = args;
    snprintf(what, sizeof(what), "declare queue %s", name);
    amqp_queue_declare(b->conn, BUS_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, table);
    rc = bus_check_rpc(b, what, err);
    if (rc != ESS_OK && err != NULL &&
        strstr(err->msg, "inequivalent arg 'x-queue-type'") != NULL) {
        rc = bus_queue_type_error(name, type, err);
    } else if (rc != ESS_OK && err != NULL &&
               strstr(err->msg, "inequivalent arg 'x-single-active-consumer'") != NULL) {
        rc = bus_single_active_error(name, b->single_active, err);
    }
    return rc;
}

static int bus_bind(struct ess_bus *b, const char *queue, const char *exchange, const char *rk,
                    struct ess_err *err)
{
    char what[3 * BUS_NAME_MAX + 32];

    snprintf(what, sizeof(what), "bind queue %s to %s with '%s'", queue, exchange, rk);
    amqp_queue_bind(b->conn, BUS_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(rk), amqp_empty_table);
    return bus_check_rpc(b, what, err);
}

static int bus_declare_queues(struct ess_bus *b, const char *events, const char *id,
                              const struct ess_strlist *topics, enum ess_queue_type type,
                              struct ess_err *err)
{
    char queue[BUS_NAME_MAX];
    char dead[BUS_NAME_MAX + 8];
    size_t i;
    int rc;

    snprintf(queue, sizeof(queue), "ess.%s", id);
    snprintf(dead, sizeof(dead), "%s.dead", queue);
    rc = bus_queue(b, queue, queue, type, err);
    for (i = 0; rc == ESS_OK && topics != NULL && i < topics->n; i++) {
        rc = bus_bind(b, queue, events, topics->v[i], err);
    }
    if (rc == ESS_OK) {
        rc = bus_queue(b, dead, NULL, type, err);
    }
    if (rc == ESS_OK) {
        rc = bus_bind(b, dead, BUS_DLX, queue, err);
    }
    return rc;
}

void ess_bus_set_single_active(struct ess_bus *b, int on)
{
    if (b != NULL) {
        b->single_active = on != 0;
    }
}

int ess_bus_declare_push(struct ess_bus *b, const char *events_exchange, const char *ops_exchange,
                         const char *id, const struct ess_strlist *topics, struct ess_err *err)
{
    return ess_bus_declare_push_typed(b, events_exchange, ops_exchange, id, topics,
                                      ESS_QUEUE_CLASSIC, err);
}

int ess_bus_declare_push_typed(struct ess_bus *b, const char *events_exchange,
                               const char *ops_exchange, const char *id,
                               const struct ess_strlist *topics, enum ess_queue_type type,
                               struct ess_err *err)
{
    const char *events = events_exchange != NULL ? events_exchange : "hms.events";
    const char *ops = ops_exchange != NULL ? ops_exchange : "hms.ops";
    int rc;

    if (b == NULL || id == NULL || *id == '\0' || strlen(id) > BUS_NAME_MAX - 16) {
        return ess_err_set(err, ESS_EINVAL, "declare: missing bus or bad connector id");
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    rc = bus_exchange(b, events, "topic", err);
    if (rc == ESS_OK) {
        rc = bus_exchange(b, BUS_DLX, "direct", err);
    }
    if (rc == ESS_OK) {
        rc = bus_exchange(b, ops, "topic", err);
    }
    if (rc == ESS_OK) {
        rc = bus_declare_queues(b, events, id, topics, type, err);
    }
    return rc;
}

int ess_bus_declare_exchanges(struct ess_bus *b, const char *events_exchange,
                              const char *ops_exchange, struct ess_err *err)
{
    int rc;

    if (b == NULL) {
        return ess_err_set(err, ESS_EINVAL, "declare: bus is NULL");
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    rc = bus_exchange(b, events_exchange != NULL ? events_exchange : "hms.events", "topic", err);
    if (rc == ESS_OK) {
        rc = bus_exchange(b, ops_exchange != NULL ? ops_exchange : "hms.ops", "topic", err);
    }
    return rc;
}

/* ------------------------------------------------------- consuming ----- */

int ess_bus_consume(struct ess_bus *b, const char *queue, int prefetch, struct ess_err *err)
{
    amqp_basic_consume_ok_t *ok;
    char what[BUS_NAME_MAX + 32];

    if (b == NULL || queue == NULL || prefetch <= 0 || prefetch > 65535) {
        return ess_err_set(err, ESS_EINVAL,
                           "consume: need a bus, a queue and 1 <= prefetch <= 65535");
    }
    if (b->consumer_tag != NULL) {
        return ess_err_set(err, ESS_EINVAL, "consume %s: this bus already has a consumer", queue);
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    amqp_basic_qos(b->conn, BUS_CHANNEL, 0, (uint16_t)prefetch, 0);
    if (bus_check_rpc(b, "basic.qos", err) != ESS_OK) {
        return ESS_EBUS;
    }
    snprintf(what, sizeof(what), "consume from %s", queue);
    ok = amqp_basic_consume(b->conn, BUS_CHANNEL, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0,
                            0, amqp_empty_table);
    if (bus_check_rpc(b, what, err) != ESS_OK) {
        return ESS_EBUS;
    }
    b->consumer_tag = strndup(ok->consumer_tag.bytes, ok->consumer_tag.len);
    if (b->consumer_tag == NULL) {
        return ess_err_set(err, ESS_ENOMEM, "out of memory");
    }
    return ESS_OK;
}

int ess_bus_cancel(struct ess_bus *b, struct ess_err *err)
{
    int rc;

    if (b == NULL) {
        return ess_err_set(err, ESS_EINVAL, "cancel: bus is NULL");
    }
    if (b->consumer_tag == NULL) {
        return ESS_OK;
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    /* Deliveries that raced the cancel are queued by rabbitmq-c, not lost:
     * ess_bus_next still returns them. */
    amqp_basic_cancel(b->conn, BUS_CHANNEL, amqp_cstring_bytes(b->consumer_tag));
    rc = bus_check_rpc(b, "cancel consumer", err);
    free(b->consumer_tag);
    b->consumer_tag = NULL;
    return rc;
}

int ess_bus_fd(const struct ess_bus *b)
{
    if (b == NULL || b->conn == NULL) {
        return -1;
    }
    return amqp_get_sockfd(b->conn);
}

int ess_bus_buffered(const struct ess_bus *b)
{
    if (b == NULL || b->conn == NULL || b->state == BUS_CONN_GONE) {
        return 0;
    }
    return amqp_data_in_buffer(b->conn) || amqp_frames_enqueued(b->conn);
}

static void bus_copy_bytes(char *dst, size_t size, amqp_bytes_t src)
{
    size_t n = src.len < size - 1 ? src.len : size - 1;

    if (n > 0) {
        memcpy(dst, src.bytes, n);
    }
    dst[n] = '\0';
}

static void bus_header_origin(const amqp_table_t *headers, char *dst, size_t size)
{
    const amqp_table_entry_t *e;
    int i;

    for (i = 0; i < headers->num_entries; i++) {
        e = &headers->entries[i];
        if (e->key.len != strlen("ess-origin") ||
            memcmp(e->key.bytes, "ess-origin", e->key.len) != 0) {
            continue;
        }
        if (e->value.kind == AMQP_FIELD_KIND_UTF8 || e->value.kind == AMQP_FIELD_KIND_BYTES) {
            bus_copy_bytes(dst, size, e->value.value.bytes);
        }
        return;
    }
}

static void bus_fill_msg(const struct ess_bus *b, struct ess_bus_msg *msg)
{
    const amqp_basic_properties_t *p = &b->env.message.properties;

    msg->tag = b->env.delivery_tag;
    msg->body = b->env.message.body.len > 0 ? b->env.message.body.bytes : "";
    msg->len = b->env.message.body.len;
    msg->redelivered = b->env.redelivered != 0;
    bus_copy_bytes(msg->routing_key, sizeof(msg->routing_key), b->env.routing_key);
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        bus_copy_bytes(msg->message_id, sizeof(msg->message_id), p->message_id);
    }
    if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) {
        msg->timestamp_ms = (long long)p->timestamp * 1000;
    }
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
        bus_header_origin(&p->headers, msg->origin, sizeof(msg->origin));
    }
}

/* amqp_consume_message saw a frame that is not a delivery: deal with it. */
static int bus_other_frame(struct ess_bus *b, struct ess_err *err)
{
    amqp_frame_t f;
    amqp_message_t returned;
    int status;

    status = amqp_simple_wait_frame(b->conn, &f);
    if (status != AMQP_STATUS_OK) {
        return bus_status_error(b, status, "read from the broker", err);
    }
    if (f.frame_type != AMQP_FRAME_METHOD) {
        return 0;
    }
    switch (f.payload.method.id) {
    case AMQP_BASIC_RETURN_METHOD: /* unroutable publish: read and drop it */
        if (amqp_read_message(b->conn, f.channel, &returned, 0).reply_type !=
            AMQP_RESPONSE_NORMAL) {
            return bus_status_error(b, AMQP_STATUS_UNEXPECTED_STATE, "read returned message", err);
        }
        amqp_destroy_message(&returned);
        return 0;
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        return bus_closed_by_broker(b, &f.payload.method, "closed by the broker", err);
    case AMQP_BASIC_CANCEL_METHOD:
        b->state = BUS_CHANNEL_GONE;
        return ess_err_set(err, ESS_EBUS, "the broker cancelled our consumer (queue deleted?)");
    default:
        return 0;
    }
}

int ess_bus_next(struct ess_bus *b, int timeout_ms, struct ess_bus_msg *msg, struct ess_err *err)
{
    struct timeval tv = {0, 0};
    amqp_rpc_reply_t r;

    if (b == NULL || msg == NULL) {
        return ess_err_set(err, ESS_EINVAL, "ess_bus_next: bus or msg is NULL");
    }
    bus_drop_envelope(b);
    memset(msg, 0, sizeof(*msg));
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    if (timeout_ms > 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
    }
    amqp_maybe_release_buffers(b->conn);
    r = amqp_consume_message(b->conn, &b->env, &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        b->have_env = 1;
        bus_fill_msg(b, msg);
        return 1;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
        return 0;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        return bus_other_frame(b, err);
    }
    return bus_reply_error(b, r, "consume", err);
}

/* ------------------------------------------------------- ack, publish -- */

int ess_bus_ack_upto(struct ess_bus *b, uint64_t tag, struct ess_err *err)
{
    int status;

    if (b == NULL) {
        return ess_err_set(err, ESS_EINVAL, "ack: bus is NULL");
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    status = amqp_basic_ack(b->conn, BUS_CHANNEL, tag, 1);
    if (status != AMQP_STATUS_OK) {
        return bus_status_error(b, status, "basic.ack", err);
    }
    return ESS_OK;
}

int ess_bus_reject(struct ess_bus *b, uint64_t tag, struct ess_err *err)
{
    int status;

    if (b == NULL) {
        return ess_err_set(err, ESS_EINVAL, "reject: bus is NULL");
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    status = amqp_basic_reject(b->conn, BUS_CHANNEL, tag, 0);
    if (status != AMQP_STATUS_OK) {
        return bus_status_error(b, status, "basic.reject", err);
    }
    return ESS_OK;
}

/* Properties of every ESS publish: persistent JSON, timestamp, optional
 * ess-origin header and message_id. hdr must outlive props. */
static void bus_props(amqp_basic_properties_t *props, amqp_table_entry_t *hdr, const char *origin,
                      const char *message_id)
{
    memset(props, 0, sizeof(*props));
    props->_flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    props->content_type = amqp_cstring_bytes("application/json");
    props->delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props->timestamp = (uint64_t)time(NULL);
    if (origin != NULL && *origin != '\0') {
        hdr->key = amqp_cstring_bytes("ess-origin");
        hdr->value.kind = AMQP_FIELD_KIND_UTF8;
        hdr->value.value.bytes = amqp_cstring_bytes(origin);
        props->headers.num_entries = 1;
        props->headers.entries = hdr;
        props->_flags |= AMQP_BASIC_HEADERS_FLAG;
    }
    if (message_id != NULL && *message_id != '\0') {
        props->message_id = amqp_cstring_bytes(message_id);
        props->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    }
}

static int bus_send(struct ess_bus *b, const char *exchange, const char *routing_key,
                    const char *message_id, const char *body, size_t len, const char *origin,
                    int mandatory, struct ess_err *err)
{
    amqp_basic_properties_t props;
    amqp_table_entry_t hdr;
    amqp_bytes_t payload;
    int status;

    if (b == NULL || exchange == NULL || routing_key == NULL || (body == NULL && len > 0)) {
        return ess_err_set(err, ESS_EINVAL, "publish: missing bus, exchange, routing key or body");
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    bus_props(&props, &hdr, origin, message_id);
    payload.len = len;
    payload.bytes = (void *)body;
    status = amqp_basic_publish(b->conn, BUS_CHANNEL, amqp_cstring_bytes(exchange),
                                amqp_cstring_bytes(routing_key), mandatory, 0, &props, payload);
    if (status != AMQP_STATUS_OK) {
        return bus_status_error(b, status, "publish", err);
    }
    return ESS_OK;
}

int ess_bus_publish(struct ess_bus *b, const char *exchange, const char *routing_key,
                    const char *body, size_t len, const char *origin, struct ess_err *err)
{
    int rc = bus_send(b, exchange, routing_key, NULL, body, len, origin, 0, err);

    if (rc == ESS_OK && b->confirming) {
        b->next_seq++; /* on a confirming channel every publish takes a sequence number */
    }
    return rc;
}

/* ------------------------------------------------------- confirms ------ */

int ess_bus_confirm_select(struct ess_bus *b, struct ess_err *err)
{
    if (b == NULL) {
        return ess_err_set(err, ESS_EINVAL, "confirm.select: bus is NULL");
    }
    if (b->state != BUS_OPEN) {
        return bus_gone(b, err);
    }
    if (b->confirming) {
        return ESS_OK;
    }
    amqp_confirm_select(b->conn, BUS_CHANNEL);
    if (bus_check_rpc(b, "confirm.select", err) != ESS_OK) {
        return ESS_EBUS;
    }
    b->confirming = 1;
    b->next_seq = 1;
    return ESS_OK;
}

/* Milliseconds left until deadline (monotonic), never negative. */
static long bus_ms_left(const struct timespec *deadline)
{
    struct timespec now;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
         (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? (long)ms : 0;
}

/* A basic.return arrives as method + header + body: read (and drop) the content. */
static int bus_take_return(struct ess_bus *b, amqp_channel_t ch, struct ess_err *err)
{
    amqp_message_t returned;

    if (amqp_read_message(b->conn, ch, &returned, 0).reply_type != AMQP_RESPONSE_NORMAL) {
        return bus_status_error(b, AMQP_STATUS_UNEXPECTED_STATE, "read returned message", err);
    }
    amqp_destroy_message(&returned);
    return ESS_OK;
}

/* One method frame while waiting for the verdict on seq. Returns 1 when it
 * settled it (*rc holds the result), 0 to keep waiting, or an ESS_E* code. */
static int bus_confirm_frame(struct ess_bus *b, const amqp_frame_t *f, uint64_t seq, int *returned,
                             int *rc, struct ess_err *err)
{
    const amqp_basic_ack_t *ack;
    const amqp_basic_nack_t *nack;

    switch (f->payload.method.id) {
    case AMQP_BASIC_RETURN_METHOD:
        *returned = 1; /* the broker sends the return before its ack */
        return bus_take_return(b, f->channel, err);
    case AMQP_BASIC_ACK_METHOD:
        ack = f->payload.method.decoded;
        if (ack->delivery_tag != seq && !(ack->multiple && ack->delivery_tag > seq)) {
            return 0;
        }
        *rc = *returned ? ess_err_set(err, ESS_ENOTFOUND,
                                      "publish: unroutable (basic.return): "
                                      "no queue is bound to its routing key")
                        : ESS_OK;
        return 1;
    case AMQP_BASIC_NACK_METHOD:
        nack = f->payload.method.decoded;
        if (nack->delivery_tag != seq && !(nack->multiple && nack->delivery_tag > seq)) {
            return 0;
        }
        *rc = ess_err_set(err, ESS_EBUS, "publish: the broker refused the message (basic.nack)");
        return 1;
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        return bus_closed_by_broker(b, &f->payload.method, "publish", err);
    default:
        return 0;
    }
}

/* Read frames until the broker settles seq or the deadline passes. */
static int bus_wait_confirm(struct ess_bus *b, uint64_t seq, int timeout_ms, struct ess_err *err)
{
    struct timespec deadline;
    struct timeval tv;
    amqp_frame_t f;
    int returned = 0, verdict = ESS_OK, status, r;
    long left;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    for (;;) {
        left = bus_ms_left(&deadline);
        tv.tv_sec = left / 1000;
        tv.tv_usec = (left % 1000) * 1000;
        status = amqp_simple_wait_frame_noblock(b->conn, &f, &tv);
        if (status == AMQP_STATUS_TIMEOUT) {
            b->state = BUS_CONN_GONE; /* outcome unknown: make the caller reconnect */
            return ess_err_set(err, ESS_EBUS, "publish: no confirm from %s within %d ms", b->peer,
                               timeout_ms);
        }
        if (status != AMQP_STATUS_OK) {
            return bus_status_error(b, status, "wait for publish confirm", err);
        }
        if (f.frame_type != AMQP_FRAME_METHOD) {
            continue;
        }
        r = bus_confirm_frame(b, &f, seq, &returned, &verdict, err);
        if (r != 0) {
            amqp_maybe_release_buffers(b->conn);
            return r < 0 ? r : verdict;
        }
    }
}

int ess_bus_publish_confirmed_id(struct ess_bus *b, const char *exchange, const char *routing_key,
                                 const char *message_id, const char *body, size_t len,
                                 const char *origin, int timeout_ms, struct ess_err *err)
{
    uint64_t seq;
    int rc;

    if (b != NULL && (!b->confirming || b->consumer_tag != NULL)) {
        return ess_err_set(err, ESS_EINVAL,
                           "publish_confirmed: needs confirm.select on a bus "
                           "that does not consume");
    }
    if (timeout_ms <= 0) {
        return ess_err_set(err, ESS_EINVAL, "publish_confirmed: timeout_ms must be > 0");
    }
    rc = bus_send(b, exchange, routing_key, message_id, body, len, origin, 1, err);
    if (rc != ESS_OK) {
        return rc;
    }
    seq = b->next_seq++;
    return bus_wait_confirm(b, seq, timeout_ms, err);
}

int ess_bus_publish_confirmed(struct ess_bus *b, const char *exchange, const char *routing_key,
                              const char *body, size_t len, const char *origin, int timeout_ms,
                              struct ess_err *err)
{
    return ess_bus_publish_confirmed_id(b, exchange, routing_key, NULL, body, len, origin,
                                        timeout_ms, err);
}
