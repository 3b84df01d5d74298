"""ess-it-quorum: `queue_type: quorum` declares ess.<id> (and ess.<id>.dead)
as quorum queues on the single-node test broker, and such a connector
delivers in order per key and dead-letters what it cannot parse. Asking for
another type than an existing queue has is refused with a message naming the
queue and what to do, by `hms ess deploy` and by the worker. ESS_AMQP_URL may
list several nodes: a dead first one is skipped."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (AMQP_URL, HMS, STACK_DIR, Bus, Partner, Worker, check, manifest, run,  # noqa: E402
                    state_dir, unique_id, wait_for_queue, wait_until)


def queue_types(cid):
    """{queue name: type} of ess.<cid>*, from rabbitmqctl on the test broker."""
    ctl = os.path.join(STACK_DIR, "bin", "rabbitmqctl")
    out = subprocess.run([ctl, "-q", "list_queues", "name", "type"], check=True, timeout=60,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout
    types = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("ess." + cid):
            types[parts[0]] = parts[1]
    return types


def test_quorum_connector_delivers_in_order():
    cid = unique_id("it-quorum")
    topic = "it.%s.changed" % cid
    partner = Partner()
    worker = Worker(manifest(cid, partner.url(), "queue_type: quorum\n"))
    bus = Bus()
    try:
        worker.start()
        wait_for_queue(cid, worker=worker)
        types = queue_types(cid)
        check(types.get("ess." + cid) == "quorum" and types.get("ess.%s.dead" % cid) == "quorum",
              "expected quorum queues ess.%s and ess.%s.dead, rabbitmqctl says %r"
              % (cid, cid, types))
        n = 60
        for i in range(n):
            bus.publish(topic, {"permit_id": "K%d" % (i % 4), "n": i}, message_id="q-%d" % i)
        bus.publish(topic, b"not json", message_id="q-bad")
        wait_until(lambda: partner.count() >= n, 30, "%d deliveries from the quorum queue" % n)
        last = {}
        ids = set()
        for body in partner.bodies():
            ids.add(body["n"])
            check(body["n"] > last.get(body["permit_id"], -1),
                  "key %s: %d after %d" % (body["permit_id"], body["n"], last.get(body["permit_id"], -1)))
            last[body["permit_id"]] = body["n"]
        check(ids == set(range(n)), "missing events: %r" % sorted(set(range(n)) - ids))
        dead = wait_until(lambda: bus.drain("ess.%s.dead" % cid), 30,
                          "the malformed message in ess.%s.dead" % cid)
        check(dead[0][1] == b"not json", "dead letter body changed: %r" % (dead,))
    finally:
        worker.stop()
        partner.stop()
        bus.close()


def test_changing_the_type_is_refused_with_what_to_do():
    cid = unique_id("it-qtype")
    partner = Partner()
    worker = Worker(manifest(cid, partner.url()))  # classic, the default
    tmp = tempfile.mkdtemp(prefix="ess-qtype-")
    state = state_dir()
    quorum = None
    try:
        worker.start()
        wait_for_queue(cid, worker=worker)
        check(worker.stop() == 0, "classic worker did not stop cleanly")
        path = os.path.join(tmp, "m.yml")
        with open(path, "w") as f:
            f.write(manifest(cid, partner.url(), "queue_type: quorum\n"))
        env = dict(os.environ, HMS_STATE_DIR=state)
        r = subprocess.run([HMS, "ess", "deploy", path, "--target", "systemd"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        want = "queue ess.%s already exists as a classic queue" % cid
        check(r.returncode == 78 and want in r.stderr and "delete_queue ess.%s" % cid in r.stderr,
              "hms ess deploy: expected exit 78 and %r, got %d: %s" % (want, r.returncode, r.stderr))
        quorum = Worker(manifest(cid, partner.url(), "queue_type: quorum\n"))
        quorum.start()
        quorum.wait_log(want, timeout=30)
        check(queue_types(cid).get("ess." + cid) == "classic", "the classic queue was changed")
    finally:
        if quorum is not None:
            quorum.stop()
        worker.stop()
        partner.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


def test_amqp_url_list_skips_a_dead_node():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    cid = unique_id("it-urls")
    partner = Partner()
    urls = "amqp://guest:guest@127.0.0.1:%d/,%s" % (dead, AMQP_URL)
    worker = Worker(manifest(cid, partner.url()), env={"ESS_AMQP_URL": urls})
    bus = Bus()
    try:
        worker.start()
        wait_for_queue(cid, worker=worker)
        bus.publish("it.%s.changed" % cid, {"permit_id": "A", "n": 1}, message_id="u-1")
        wait_until(lambda: partner.count() >= 1, 30, "a delivery with a node list in ESS_AMQP_URL")
        port = AMQP_URL.rstrip("/").rsplit(":", 1)[1]
        check("bus connected to 127.0.0.1:%s" % port in worker.log_text(),
              "the worker should log the node it chose:\n" + worker.log_text())
    finally:
        worker.stop()
        partner.stop()
        bus.close()


if __name__ == "__main__":
    run([test_quorum_connector_delivers_in_order, test_changing_the_type_is_refused_with_what_to_do,
         test_amqp_url_list_skips_a_dead_node])
