"""ess-it-cluster (labels integration, cluster): a 3-node RabbitMQ cluster on
loopback (stack.sh cluster-up), a connector with `queue_type: quorum` and
ESS_AMQP_URL listing the three nodes. Events are published with confirms to
node 3; half-way, node 1 -- the node the worker is connected to and the
queue's leader -- is stopped. Every confirmed event is delivered, in order per
key; node 1 then rejoins. Postgres is the test stack's."""
import json
import os
import subprocess
import sys
import time

import pika

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (SRC, STACK_DIR, Partner, Worker, check, manifest, run,  # noqa: E402
                    unique_id, wait_until)

STACK_SH = os.path.join(SRC, "deploy", "dev", "stack.sh")
CLUSTER_DIR = os.path.abspath(STACK_DIR or "stack") + "-cluster"  # beside the test stack


def cluster(*args, timeout=300):
    subprocess.run([STACK_SH] + list(args), check=True, stdout=sys.stderr, stderr=sys.stderr,
                   timeout=timeout)


def cluster_env():
    env = {}
    out = subprocess.run(["bash", "-c", 'set -a; . "$1/env"; env', "_", CLUSTER_DIR], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        k, _, v = line.partition("=")
        if k.startswith("ESS_") or k == "ESS_AMQP_URL":
            env[k] = v
    return env


def node_url(env, i):
    return env["ESS_AMQP_URL"].split(",")[i - 1]


def consumers(url, queue):
    try:
        c = pika.BlockingConnection(pika.URLParameters(url))
    except Exception:
        return 0
    try:
        return c.channel().queue_declare(queue, passive=True).method.consumer_count
    except Exception:
        return 0
    finally:
        try:
            c.close()
        except Exception:
            pass


class ConfirmingPublisher:
    """pika with publisher confirms on one node; a nack or a lost connection
    (the cluster electing a new leader) is retried with the same message_id,
    which the journal deduplicates."""

    def __init__(self, url):
        self.url = url
        self.conn = None
        self.ch = None
        self.retries = 0

    def _open(self):
        self.conn = pika.BlockingConnection(pika.URLParameters(self.url))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()

    def publish(self, topic, body, message_id):
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                     message_id=message_id)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.ch is None:
                    self._open()
                self.ch.basic_publish("hms.events", topic, json.dumps(body), props,
                                      mandatory=True)
                return
            except Exception as e:
                self.retries += 1
                self.close()
                if time.monotonic() > deadline:
                    raise AssertionError("publish of %s not confirmed within 60 s: %r"
                                         % (message_id, e))
                time.sleep(0.2)

    def close(self):
        try:
            if self.conn is not None:
                self.conn.close()
        except Exception:
            pass
        self.conn = self.ch = None


def test_quorum_queue_survives_losing_a_node():
    cid = unique_id("it-cluster")
    topic = "it.%s.changed" % cid
    queue = "ess." + cid
    n, keys = 2000, 50
    started = time.monotonic()
    cluster("cluster-up", CLUSTER_DIR)
    partner = worker = pub = None
    try:
        env = cluster_env()
        print("cluster up in %.1f s" % (time.monotonic() - started), flush=True)
        partner = Partner()
        worker = Worker(manifest(cid, partner.url(), "queue_type: quorum\nheartbeat_sec: 1\n"),
                        env={"ESS_AMQP_URL": env["ESS_AMQP_URL"]})
        worker.start()
        def consuming():
            check(worker.alive(), "ess-push exited:\n" + worker.log_text())
            return consumers(node_url(env, 3), queue) > 0
        wait_until(consuming, 60, "a consumer on %s" % queue, 0.2)
        check("bus connected to 127.0.0.1:%s" % env["ESS_CLUSTER_AMQP_PORTS"].split()[0]
              in worker.log_text(), "the worker should be on node 1 first:\n" + worker.log_text())
        info = subprocess.run([STACK_SH, "cluster-ctl", CLUSTER_DIR, "3", "-q", "list_queues",
                               "name", "type", "leader"], check=True, timeout=120,
                              stdout=subprocess.PIPE, text=True).stdout.split()
        check(info[info.index(queue) + 1:info.index(queue) + 3] ==
              ["quorum", env["ESS_CLUSTER_NODES"].split()[0]],
              "expected %s to be a quorum queue led by node 1: %r" % (queue, info))
        pub = ConfirmingPublisher(node_url(env, 3))
        for i in range(n):
            if i == n // 2:
                cluster("cluster-stop-node", CLUSTER_DIR, "1")
            pub.publish(topic, {"permit_id": "K%d" % (i % keys), "n": i}, "cl-%d" % i)
        print("published %d with confirms (%d retried); node 1 stopped at %d"
              % (n, pub.retries, n // 2), flush=True)

        def delivered():
            return {json.loads(r["body"])["n"] for r in partner.received()
                    if 200 <= r.get("status", 200) < 300}
        wait_until(lambda: len(delivered()) == n or None, 120,
                   "all %d events delivered after losing node 1" % n, 0.5)
        last = {}
        seen = set()
        for r in partner.received():
            body = json.loads(r["body"])
            if body["n"] in seen:
                continue
            seen.add(body["n"])
            k = body["permit_id"]
            check(body["n"] > last.get(k, -1), "key %s: %d after %d" % (k, body["n"],
                                                                         last.get(k, -1)))
            last[k] = body["n"]
        log = worker.log_text()
        check("bus connected to 127.0.0.1:%s" % env["ESS_CLUSTER_AMQP_PORTS"].split()[1] in log
              or "bus connected to 127.0.0.1:%s" % env["ESS_CLUSTER_AMQP_PORTS"].split()[2] in log,
              "the worker should have moved to node 2 or 3:\n" + log)
        print("all delivered %.1f s after the start" % (time.monotonic() - started), flush=True)
        # node 1 comes back into the cluster (and the queue's replicas)
        cluster("cluster-start-node", CLUSTER_DIR, "1")
        status = subprocess.run([STACK_SH, "cluster-ctl", CLUSTER_DIR, "1", "-q",
                                 "cluster_status", "--formatter", "json"], check=True,
                                timeout=120, stdout=subprocess.PIPE, text=True).stdout
        running = json.loads(status).get("running_nodes", [])
        check(sorted(running) == sorted(env["ESS_CLUSTER_NODES"].split()),
              "node 1 should be back in a cluster of three: %r" % running)
    finally:
        if pub is not None:
            pub.close()
        if worker is not None:
            worker.stop()
        if partner is not None:
            partner.stop()
        cluster("cluster-down", CLUSTER_DIR)


if __name__ == "__main__":
    run([test_quorum_queue_survives_losing_a_node])
