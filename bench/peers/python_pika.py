#!/usr/bin/python3
"""python_pika.py -- the Python peer of the ESS benchmark: what a connector
looks like in the seeds' style, written well.

    /usr/bin/python3 bench/peers/python_pika.py --queue Q --routing-key RK \
        --target URL [--name N] [--prefetch 200] [--amqp-url URL]

One pika BlockingConnection consumer on the durable queue Q (declared here and
bound to the topic exchange hms.events with RK), basic_qos prefetch so the
broker streams deliveries ahead of the POSTs, one requests.Session (HTTP/1.1
keep-alive: one TCP connection for the whole run), the body POSTed unchanged
with the headers ESS sends (Content-Type, Idempotency-Key "<N>:<event id>",
X-ESS-Connector, X-ESS-Event-Id; event id = AMQP message_id, else N-<tag>),
and basic_ack only after a 2xx. A failed POST is nacked with requeue (the
broker redelivers it; nothing is kept here). SIGTERM / SIGINT stop consuming
after the current message and exit 0.

Concurrency is one POST at a time: that is how pika's BlockingConnection and
requests are used (a thread pool would need a thread-safe hand-off back to the
connection's thread for every ack, which the seeds did not have).
"""
import argparse
import os
import signal
import sys

import pika
import requests


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queue", required=True)
    ap.add_argument("--routing-key", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--name", default="python")
    ap.add_argument("--prefetch", type=int, default=200)
    ap.add_argument("--amqp-url", default=os.environ.get(
        "ESS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = ap.parse_args()

    conn = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    ch = conn.channel()
    ch.exchange_declare("hms.events", "topic", durable=True)
    ch.queue_declare(args.queue, durable=True)
    ch.queue_bind(args.queue, "hms.events", args.routing_key)
    ch.basic_qos(prefetch_count=args.prefetch)

    http = requests.Session()
    base = {"Content-Type": "application/json", "X-ESS-Connector": args.name}
    counts = {"delivered": 0, "failed": 0}

    def on_message(chan, method, props, body):
        event_id = props.message_id or "%s-%d" % (args.name, method.delivery_tag)
        headers = dict(base)
        headers["Idempotency-Key"] = '"%s:%s"' % (args.name, event_id)
        headers["X-ESS-Event-Id"] = event_id
        try:
            r = http.post(args.target, data=body, headers=headers, timeout=5)
            ok = 200 <= r.status_code < 300
        except requests.RequestException:
            ok = False
        if ok:
            counts["delivered"] += 1
            chan.basic_ack(method.delivery_tag)
        else:
            counts["failed"] += 1
            chan.basic_nack(method.delivery_tag, requeue=True)

    def on_signal(signum, frame):
        # Runs between callbacks; stop_consuming makes start_consuming return.
        ch.stop_consuming()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ch.basic_consume(args.queue, on_message)
    try:
        ch.start_consuming()
    finally:
        print("python_pika: %(delivered)d delivered, %(failed)d failed POSTs" % counts,
              file=sys.stderr)
        try:
            conn.close()
        except Exception:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
