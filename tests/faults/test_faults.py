"""ess-it-faults: fault injection. Each scenario runs the real ess-push against
the test stack's RabbitMQ and Postgres and a real partner stub, injects one
fault, and then checks that every event it published was delivered (2xx) at
least once and that every repeat of an event carried the same
Idempotency-Key (and different events different keys). A table of scenarios,
their figures and results is printed at the end; any failure fails the test.

  worker SIGKILL at random points (10 rounds)   broker stopped 10 s
  Postgres stopped 10 s                         partner hangs / answers in 2 s
  partner closes mid-response / invalid HTTP     200 with a SOAP Fault (parked, dlq retry)
  worker log on a full disk (/dev/full)          a 10 MiB message
  100,000 distinct keys, RSS bounded

Environment: ESS_FAULTS_KEYS (default 100000) and ESS_FAULTS_RSS_MB (default
64) for the many-keys scenario; ESS_FAULTS_SEED for the kill points; run some
scenarios only by naming them: test_faults.py sigkill broker.
"""
import json
import os
import random
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from esslib import (Bus, Partner, Worker, check, hms, manifest, sql, stack,  # noqa: E402
                    state_dir, unique_id, wait_for_queue, wait_until)

import pika  # noqa: E402

RESULTS = []  # (scenario, result, events, requests, deliveries, repeats, seconds, note)


# --------------------------------------------------------------- helpers --

class Run:
    """One connector for one scenario: partner stub, worker, bus."""

    def __init__(self, prefix, extra="", env=None):
        self.cid = unique_id(prefix)
        self.topic = "it.%s.changed" % self.cid
        self.partner = Partner()
        given = {ln.split(":")[0] for ln in extra.splitlines() if ln}
        base = "".join(ln for ln in ("max_retry: 10\n", "timeout_ms: 3000\n")
                       if ln.split(":")[0] not in given)
        self.worker = Worker(manifest(self.cid, self.partner.url("/in"), base + extra), env=env)
        self.bus = None
        self.ids = []
        self.skip = 0  # partner records before this index are not deliveries (SOAP Faults)

    def start(self):
        self.worker.start()
        wait_for_queue(self.cid, worker=self.worker)
        self.bus = Bus()
        return self

    def publish(self, n, keys=None, body=None, prefix="e"):
        for _ in range(n):
            i = len(self.ids)
            eid = "%s-%d" % (prefix, i)
            ev = body(i) if body else {"permit_id": "K%d" % (i % (keys or n)), "n": i}
            self.bus.publish(self.topic, ev, message_id=eid)
            self.ids.append(eid)

    def delivered(self):
        return self.partner.count()

    def wait_all(self, timeout, what):
        want = set(self.ids)

        def done():
            got = {r["headers"].get("x-ess-event-id") for r in self.partner.received()[self.skip:]
                   if 200 <= (r.get("status") or 0) < 300}
            return want <= got or len(want - got)
        wait_until(lambda: done() is True, timeout, "%s: all %d events delivered (missing: %s)"
                   % (what, len(want), "?"), 0.25)

    def verify(self):
        """Every event delivered once at least; repeats share one key. Returns
        (deliveries, repeats)."""
        keys = {}
        ok = 0
        for r in self.partner.received()[self.skip:]:
            if not 200 <= (r.get("status") or 0) < 300:
                continue
            h = r["headers"]
            keys.setdefault(h.get("x-ess-event-id"), set()).add(h.get("idempotency-key"))
            ok += 1
        missing = [e for e in self.ids if e not in keys]
        check(not missing, "%d events never delivered, e.g. %s" % (len(missing), missing[:5]))
        for eid, ks in keys.items():
            check(len(ks) == 1, "event %s delivered with different idempotency keys %r"
                  % (eid, ks))
            check(ks == {'"%s:%s"' % (self.cid, eid)},
                  "event %s: idempotency key %r, want \"%s:%s\"" % (eid, ks, self.cid, eid))
        return ok, ok - len(keys)

    def close(self):
        if self.worker.alive():
            self.worker.kill9()
        if self.bus is not None:
            self.bus.close()
        self.partner.stop()


def scenario(name, fn):
    """Run fn(run_notes) -> Run; record its row in RESULTS."""
    start = time.monotonic()
    notes = {}
    r = None
    try:
        r = fn(notes)
        deliveries, repeats = r.verify()
        code = r.worker.stop()  # a clean drain too (and, under ASan, no leak or error)
        check(code == 0, "SIGTERM exit code %r, want 0" % code)
        RESULTS.append((name, "PASS", len(r.ids), r.partner.count(), deliveries, repeats,
                        time.monotonic() - start, notes.get("note", "")))
    except Exception as e:
        traceback.print_exc()
        if r is not None or notes.get("run") is not None:
            w = (r or notes["run"]).worker
            if w.log != "/dev/full":
                print("--- worker log tail (%s):\n%s" % (w.log, w.log_text()[-4000:]),
                      file=sys.stderr)
        RESULTS.append((name, "FAIL", len(notes["run"].ids) if notes.get("run") else 0, 0, 0, 0,
                        time.monotonic() - start, str(e).splitlines()[0][:90]))
    finally:
        if notes.get("run") is not None:
            notes["run"].close()


# ------------------------------------------------------------- scenarios --

def sigkill(notes):
    seed = int(os.environ.get("ESS_FAULTS_SEED", str(int(time.time()))))
    rnd = random.Random(seed)
    r = notes["run"] = Run("f-kill", "tickets: all\n").start()
    r.partner.mode(mode="ok", delay_ms=20)  # deliveries take a while: kills land mid-stream
    at = []
    for _ in range(10):
        r.publish(300, keys=100)
        time.sleep(rnd.uniform(0.05, 0.8))  # the fault point: anywhere in the loop
        at.append("%d/%d" % (r.delivered(), len(r.ids)))
        r.worker.kill9()
        r.worker.start()
    r.wait_all(180, "after 10 kills")
    notes["note"] = "seed %d; killed at requests/published %s" % (seed, " ".join(at))
    return r


def outage(prefix, stop, start_cmd, publish_during):
    def fn(notes):
        r = notes["run"] = Run(prefix).start()
        r.publish(300, keys=30)
        wait_until(lambda: r.delivered() >= 30, 60, "deliveries before the outage")
        if not publish_during:
            r.bus.close()
        t0 = time.monotonic()
        stack(stop)
        if publish_during:
            r.publish(200, keys=30)  # the broker keeps them while Postgres is away
        time.sleep(max(0.0, 10 - (time.monotonic() - t0)))  # the outage lasts 10 s
        stack(start_cmd)
        if not publish_during:
            r.bus = Bus()
        r.publish(300, keys=30)
        r.wait_all(120, "after the outage")
        check(r.worker.alive(), "the worker survived")
        check("reconnect" in r.worker.log_text(), "the reconnect is logged")
        notes["note"] = "down 10 s; worker reconnected"
        return r
    return fn


def partner_fault(prefix, mode, extra="", note=""):
    def fn(notes):
        r = notes["run"] = Run(prefix, extra).start()
        r.partner.mode(**mode)
        r.publish(20)
        wait_until(lambda: r.partner.count() >= 3, 30, "attempts against the faulty partner")
        time.sleep(3)  # the fault lasts a few seconds more
        r.partner.mode(mode="ok")
        r.wait_all(90, "after the partner recovered")
        notes["note"] = note
        return r
    return fn


def slow_partner(notes):
    r = notes["run"] = Run("f-slow", "timeout_ms: 5000\n").start()
    r.partner.mode(mode="ok", delay_ms=2000)
    t0 = time.monotonic()
    r.publish(20)
    r.wait_all(60, "from a partner answering in 2 s")
    notes["note"] = "20 events in %.1f s (answers take 2 s)" % (time.monotonic() - t0)
    return r


SOAP_FAULT = ('<?xml version="1.0"?><soap:Envelope xmlns:soap='
              '"http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
              '<faultcode>soap:Server</faultcode><faultstring>record locked</faultstring>'
              '</soap:Fault></soap:Body></soap:Envelope>')


def soap_fault(notes):
    r = notes["run"] = Run("f-soap", "format: soap\nsoap: {action: Update, namespace: "
                           "\"urn:x\"}\n").start()
    r.partner.mode(mode="ok", reply=SOAP_FAULT, content_type="text/xml")
    r.publish(10)
    wait_until(lambda: sql("SELECT count(*) FROM ess_dead_letters WHERE connector = %s",
                           r.cid)[0][0] == 10, 60, "10 events parked on the SOAP Fault")
    r.partner.mode(mode="ok")
    r.skip = r.partner.count()  # a 200 carrying a Fault is no delivery
    st = state_dir()
    hms(st, "ess", "dlq", "retry", r.cid, check_rc=0)
    r.wait_all(90, "after hms ess dlq retry")
    notes["note"] = "parked on the Fault, delivered after dlq retry"
    return r


def disk_full(notes):
    r = Run("f-full")
    r.worker.log = "/dev/full"  # every log write fails with ENOSPC
    r.worker.log_text = lambda: ""
    notes["run"] = r
    r.start()
    r.publish(200, keys=20)
    r.wait_all(60, "with the log on a full disk")
    check(r.worker.alive(), "the worker survived a full log disk")
    notes["note"] = "stderr on /dev/full"
    return r


def big_message(notes):
    r = notes["run"] = Run("f-big").start()
    blob = "x" * (10 * 1024 * 1024)
    r.publish(1, body=lambda i: {"permit_id": "BIG", "blob": blob}, prefix="big")
    r.publish(5, prefix="small")
    r.wait_all(120, "a 10 MiB message and the events after it")
    got = [x for x in r.partner.received() if x["headers"].get("x-ess-event-id") == "big-0"]
    check(len(json.loads(got[0]["body"])["blob"]) == len(blob), "the 10 MiB body arrived whole")
    notes["note"] = "10 MiB body delivered whole"
    return r


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def asan(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def many_keys(notes):
    n = int(os.environ.get("ESS_FAULTS_KEYS", "100000"))
    limit_mb = int(os.environ.get("ESS_FAULTS_RSS_MB", "64"))
    # under ASan: a small free quarantine, so RSS still says something
    opts = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (opts + ":" if opts else "") + "quarantine_size_mb=8"}
    r = notes["run"] = Run("f-keys", "max_in_flight: 64\n", env=env).start()
    if asan(r.worker.proc.pid):  # shadow memory and allocator overhead
        limit_mb *= 4
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(r.worker.proc.pid))
            stop.wait(0.2)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    # bulk publishing on a channel without confirms; the journal count below
    # proves every one arrived
    conn = pika.BlockingConnection(pika.URLParameters(os.environ["ESS_AMQP_URL"]))
    ch = conn.channel()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    t0 = time.monotonic()
    for i in range(n):
        eid = "k-%d" % i
        props.message_id = eid
        ch.basic_publish("hms.events", r.topic, json.dumps({"permit_id": "K%d" % i, "n": i}),
                         props)
        r.ids.append(eid)
    conn.close()
    wait_until(lambda: r.partner.count() >= n, 600, "%d deliveries" % n, 1.0)
    stop.set()
    t.join()
    secs = time.monotonic() - t0
    check(sql("SELECT count(*) FROM ess_journal WHERE connector = %s", r.cid)[0][0] == n,
          "all %d journaled" % n)
    check(peak[0] < limit_mb * 1024, "worker RSS peaked at %d MiB (limit %d)"
          % (peak[0] // 1024, limit_mb))
    notes["note"] = "%d keys in %.0f s (%.0f/s); RSS peak %d MiB < %d" % (
        n, secs, n / secs, peak[0] // 1024, limit_mb)
    return r


SCENARIOS = [
    ("sigkill", "worker SIGKILL at random points x10", sigkill),
    ("broker", "broker stopped 10 s", outage("f-rmq", "stop-rabbit", "start-rabbit", False)),
    ("postgres", "Postgres stopped 10 s", outage("f-pg", "stop-pg", "start-pg", True)),
    ("hang", "partner hangs (no answer)",
     partner_fault("f-hang", {"mode": "hang"}, "timeout_ms: 1000\n", "timeouts, then delivered")),
    ("slow", "partner answers in 2 s", slow_partner),
    ("close", "partner closes mid-response",
     partner_fault("f-close", {"mode": "close"}, "", "transfer errors, then delivered")),
    ("garbage", "partner answers invalid HTTP",
     partner_fault("f-garb", {"mode": "garbage"}, "", "protocol errors, then delivered")),
    ("soapfault", "partner answers 200 + SOAP Fault", soap_fault),
    ("diskfull", "worker log on a full disk", disk_full),
    ("big", "a 10 MiB message", big_message),
    ("keys", "100,000 distinct keys, RSS bounded", many_keys),
]


def main():
    only = sys.argv[1:]
    for short, name, fn in SCENARIOS:
        if only and short not in only:
            continue
        print("== %s" % name, flush=True)
        scenario(name, fn)
        print("   %s" % RESULTS[-1][1], flush=True)
    w = max(len(r[0]) for r in RESULTS) if RESULTS else 10
    print()
    print("%-*s  %-6s %7s %8s %9s %7s %6s  %s" % (w, "scenario", "result", "events", "requests",
                                                 "delivered", "repeats", "secs", "note"))
    for name, res, ev, req, dl, rep, secs, note in RESULTS:
        print("%-*s  %-6s %7d %8d %9d %7d %6.1f  %s" % (w, name, res, ev, req, dl, rep, secs,
                                                         note))
    failed = [r for r in RESULTS if r[1] != "PASS"]
    print("%d scenario(s), %d failed" % (len(RESULTS), len(failed)))
    sys.exit(1 if failed or not RESULTS else 0)


if __name__ == "__main__":
    main()
