"""ess-it-pg_multihost: the worker follows a libpq multi-host conninfo
(postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write): with the first
host a dead loopback port it journals and delivers through the second; with
every host dead it says, on one line, what failed for each host and keeps
retrying; with a hot standby (stack.sh standby-up) listed first it skips the
standby, and after the primary stops and the standby is promoted it carries on
against the new primary."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (STACK_DIR, Bus, Partner, Worker, check, manifest, run, sql,  # noqa: E402
                    stack, unique_id, wait_for_queue, wait_until)

PG_PORT = int(os.environ["ESS_PG_PORT"])


def dead_port():
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def multihost_url(*ports):
    hosts = ",".join("127.0.0.1:%d" % p for p in ports)
    return "postgresql://ess@%s/ess?target_session_attrs=read-write" % hosts


def run_connector(pg_url, n=30):
    cid = unique_id("it-pgmh")
    topic = "it.%s.changed" % cid
    partner = Partner()
    worker = Worker(manifest(cid, partner.url()), env={"ESS_PG_URL": pg_url})
    bus = Bus()
    try:
        worker.start()
        wait_for_queue(cid, worker=worker)
        for i in range(n):
            bus.publish(topic, {"permit_id": "K%d" % (i % 3), "n": i}, message_id="mh-%d" % i)
        wait_until(lambda: partner.count() >= n, 30, "%d deliveries via the multi-host conninfo" % n)
        rows = sql("SELECT count(*) FROM ess_journal WHERE connector = %s", cid)[0][0]
        check(rows == n, "expected %d journal rows on the live host, found %d" % (n, rows))
        return worker.log_text()
    finally:
        worker.stop()
        partner.stop()
        bus.close()


def test_first_host_dead_second_used():
    dead = dead_port()
    log = run_connector(multihost_url(dead, PG_PORT))
    check("journal store connected to 127.0.0.1:%d" % PG_PORT in log,
          "the worker should log the host it chose (127.0.0.1:%d):\n%s" % (PG_PORT, log))


def test_every_host_dead_names_each():
    a, b = dead_port(), dead_port()
    cid = unique_id("it-pgmh")
    partner = Partner()
    worker = Worker(manifest(cid, partner.url()), env={"ESS_PG_URL": multihost_url(a, b)})
    try:
        worker.start()
        line = wait_until(lambda: [ln for ln in worker.log_text().splitlines()
                                   if "journal store connect attempt" in ln], 30,
                          "a failed store connect attempt in the worker log")[0]
        check('port %d failed' % a in line and 'port %d failed' % b in line and "\n" not in line,
              "the connect failure should name both hosts on one line: %r" % line)
        check(worker.alive(), "the worker must keep retrying, not exit")
    finally:
        worker.stop()
        partner.stop()


def standby_port():
    with open(os.path.join(STACK_DIR, "standby.env")) as f:
        for line in f:
            if line.startswith("ESS_PG_STANDBY_PORT="):
                return int(line.split("=", 1)[1])
    raise AssertionError("standby.env has no ESS_PG_STANDBY_PORT")


def test_standby_skipped_then_failover_to_it():
    """A hot standby listed first is skipped (read-only); the primary stops,
    the standby is promoted, and the worker carries on against it."""
    cid = unique_id("it-pgfo")
    topic = "it.%s.changed" % cid
    partner = Partner()
    bus = Bus()
    worker = None
    stack("standby-up")
    try:
        sb = standby_port()
        worker = Worker(manifest(cid, partner.url()),
                        env={"ESS_PG_URL": multihost_url(sb, PG_PORT)})
        worker.start()
        wait_for_queue(cid, worker=worker)
        check("journal store connected to 127.0.0.1:%d" % PG_PORT in worker.log_text(),
              "the read-only standby listed first must be skipped:\n" + worker.log_text())
        for i in range(20):
            bus.publish(topic, {"permit_id": "K%d" % (i % 3), "n": i}, message_id="fo-%d" % i)
        wait_until(lambda: partner.count() >= 20, 30, "20 deliveries before the failover")
        stack("stop-pg")
        stack("standby-promote")
        for i in range(20, 40):
            bus.publish(topic, {"permit_id": "K%d" % (i % 3), "n": i}, message_id="fo-%d" % i)
        worker.wait_log("journal store reconnected to 127.0.0.1:%d" % sb, timeout=60)
        wait_until(lambda: {b["n"] for b in partner.bodies()} >= set(range(40)), 60,
                   "all 40 events delivered across the failover")
        last, seen = {}, set()
        for b in partner.bodies():  # first deliveries in order per key (repeats allowed)
            if b["n"] in seen:
                continue
            seen.add(b["n"])
            check(b["n"] > last.get(b["permit_id"], -1),
                  "key %s: %d after %d" % (b["permit_id"], b["n"], last.get(b["permit_id"], -1)))
            last[b["permit_id"]] = b["n"]
    finally:
        if worker is not None:
            worker.stop()
        partner.stop()
        bus.close()
        stack("standby-down")
        stack("start-pg")  # the stack's own primary, for the tests after this one


if __name__ == "__main__":
    run([test_first_host_dead_second_used, test_every_host_dead_names_each,
         test_standby_skipped_then_failover_to_it])
