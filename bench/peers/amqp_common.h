/*
 * amqp_common.h -- what the C peers of the benchmark share: parse
 * ESS_AMQP_URL, connect, log in, open channel 1, and say why an AMQP call
 * failed. Plain rabbitmq-c 0.11 (Debian 12: <amqp.h>), no libess: the peers
 * are what an engineer would write without ESS.
 */
#ifndef BENCH_AMQP_COMMON_H
#define BENCH_AMQP_COMMON_H

#include <stdint.h>

#include <amqp.h>

/* Connects to url (amqp://user:pass@host:port/vhost; NULL or "" means
 * $ESS_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/), logs in with
 * heartbeat_s and opens channel 1. Returns the connection (the caller frees it
 * with bench_amqp_close) or NULL after printing one line on stderr. */
amqp_connection_state_t bench_amqp_connect(const char *prog, const char *url, int heartbeat_s);

/* Closes channel 1 and the connection (best effort) and frees the state. */
void bench_amqp_close(amqp_connection_state_t conn);

/* 0 when r is AMQP_RESPONSE_NORMAL; else prints "prog: what: why" and -1. */
int bench_amqp_check(const char *prog, amqp_rpc_reply_t r, const char *what);

/* Declares a durable queue (no arguments) and binds it to the durable topic
 * exchange hms.events (declared too) with routing_key. 0 or -1 (printed). */
int bench_amqp_declare_bound(const char *prog, amqp_connection_state_t conn, const char *queue,
                             const char *routing_key);

/* CLOCK_REALTIME / CLOCK_MONOTONIC in ns. */
int64_t bench_now_ns(void);
int64_t bench_mono_ns(void);

#endif
