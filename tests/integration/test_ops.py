"""ess-it-ops: what operators watch, against real RabbitMQ, Postgres, partner
stubs and ess-push workers.

* metrics: a worker's GET /metrics (metrics_listen) is scraped and parsed as
  Prometheus text 0.0.4 -- every family has HELP and TYPE, names and label
  syntax are valid, histogram buckets are cumulative and end in +Inf ==
  _count -- and its counts match the deliveries made; scrapers that hang
  hold no delivery up; a port already taken is a configuration error (exit
  78) naming metrics_listen; SIGHUP moves the endpoint to a new address.
* alerts: the partner fails -> ess.alert.<id> "failures" and "partner_down"
  fired on hms.ops (every field) and listed in heartbeats; the partner
  recovers -> both cleared.
* canary: a synthetic record goes through the mapping to the test endpoint
  with X-ESS-Canary: 1; heartbeats carry its result and round-trip time; a
  failing canary raises the canary alert with no real traffic, and clears.
* retention: back-dated journal rows (delivered) and tickets are swept by the
  worker in batches; recent ones stay.
"""
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (OPS, Bus, Failure, Partner, Worker, check, manifest, run,  # noqa: E402
                    sql, unique_id, wait_for_queue, wait_until)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        check(r.status == 200, "GET /metrics: status %d" % r.status)
        ctype = r.headers.get("Content-Type", "")
        check(ctype.startswith("text/plain; version=0.0.4"), "Content-Type %r" % ctype)
        return r.read().decode()


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s)(?:,%s)*\})? (\S+)$" % (NAME, LABEL, LABEL))
LABEL_ONE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _scrapes(port):
    try:
        scrape(port)
        return True
    except OSError:
        return False


def parse_metrics(text):
    """Prometheus text 0.0.4 -> ({family: type}, [(name, {labels}, value)]);
    fails on anything malformed."""
    types, helps, samples = {}, set(), []
    check(text.endswith("\n"), "exposition does not end with a newline")
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            helps.add(ln.split(" ")[2])
            continue
        if ln.startswith("# TYPE "):
            parts = ln.split(" ")
            check(len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram", "summary",
                                                     "untyped"), "bad TYPE line %r" % ln)
            check(parts[2] not in types, "TYPE given twice for %s" % parts[2])
            types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(ln)
        check(m is not None, "malformed sample line %r" % ln)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        check(family in types and family in helps,
              "sample %s before its family's # HELP / # TYPE" % name)
        if types[family] == "counter":
            check(name.endswith("_total"), "counter %s does not end in _total" % name)
        samples.append((name, dict(LABEL_ONE.findall(labels)), float(value)))
    return types, samples


def value(samples, name, **labels):
    for n, lab, v in samples:
        if n == name and all(lab.get(k) == str(x) for k, x in labels.items()):
            return v
    raise Failure("no sample %s%r" % (name, labels))


def check_histogram(samples, cid):
    buckets = [(lab["le"], v) for n, lab, v in samples
               if n == "ess_sync_lag_seconds_bucket" and lab.get("connector") == cid]
    check(len(buckets) >= 2 and buckets[-1][0] == "+Inf",
          "histogram buckets must end in le=\"+Inf\": %r" % buckets)
    bounds = [float(le) for le, _ in buckets[:-1]]
    check(bounds == sorted(bounds), "bucket bounds not increasing: %r" % bounds)
    counts = [v for _, v in buckets]
    check(counts == sorted(counts), "bucket counts not cumulative: %r" % counts)
    check(counts[-1] == value(samples, "ess_sync_lag_seconds_count", connector=cid),
          "+Inf bucket != _count")
    return counts[-1]


def heartbeat(cid):
    rows = sql("SELECT body FROM ess_heartbeats WHERE connector = %s ORDER BY ts DESC LIMIT 1",
               cid)
    return json.loads(rows[0][0]) if rows else None


class OpsListener:
    """A private queue on hms.ops bound to ess.alert.<cid>."""

    def __init__(self, cid):
        self.bus = Bus()
        self.q = self.bus.listen(OPS, "ess.alert." + cid)
        self.seen = []

    def wait(self, rule, state, timeout):
        def found():
            self.seen += [json.loads(b) for _, b in self.bus.drain(self.q)]
            for m in self.seen:
                if m.get("rule") == rule and m.get("state") == state:
                    return m
            return None
        return wait_until(found, timeout, "ess.alert %s %s (seen %r)"
                          % (rule, state, [(m.get("rule"), m.get("state")) for m in self.seen]),
                          0.1)

    def close(self):
        self.bus.close()


def publish(bus, cid, keys):
    for k in keys:
        bus.publish("it.%s.changed" % cid, {"permit_id": k, "street": "Main"},
                    message_id="%s-%s" % (cid, k))


# ------------------------------------------------------------------ tests --

def test_metrics_scrape():
    partner = Partner()
    cid = unique_id("metrics")
    port = free_port()
    w = Worker(manifest(cid, partner.url(), "metrics_listen: 127.0.0.1:%d\n" % port)).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=w)
        w.wait_log("metrics on http://127.0.0.1:%d/metrics" % port, 10)
        # the loop hands scrapes a fresh sample every turn (at most 1 s apart)
        types, samples = wait_until(
            lambda: (lambda r: r if value(r[1], "ess_connector_up", connector=cid) == 1
                     else None)(parse_metrics(scrape(port))), 5, "ess_connector_up 1")
        want = {"ess_connector_up": "gauge", "ess_events_consumed_total": "counter",
                "ess_deliveries_total": "counter", "ess_retries_total": "counter",
                "ess_parked_total": "counter", "ess_backlog": "gauge",
                "ess_sync_lag_seconds": "histogram", "ess_partner_up": "gauge"}
        for name, typ in want.items():
            check(types.get(name) == typ, "%s: TYPE %r, want %s" % (name, types.get(name), typ))
        for n, lab, _ in samples:
            check(lab.get("connector") == cid, "%s without connector=%r: %r" % (n, cid, lab))
        check(value(samples, "ess_partner_up", connector=cid) == 1, "ess_partner_up != 1")
        check(check_histogram(samples, cid) == 0, "lag histogram not empty before deliveries")

        partner.mode(mode="ok", for_key={"field": "permit_id", "value": "BAD", "status": 400})
        publish(bus, cid, ["P%d" % i for i in range(5)] + ["BAD"])
        wait_until(lambda: partner.count() >= 6, 20, "6 requests at the partner")

        def settled():
            _, s = parse_metrics(scrape(port))
            return s if value(s, "ess_parked_total", connector=cid) == 1 and \
                value(s, "ess_deliveries_total", connector=cid, result="ok") == 5 else None
        samples = wait_until(settled, 10, "/metrics showing 5 ok and 1 parked")
        check(value(samples, "ess_events_consumed_total", connector=cid) == 6, "consumed != 6")
        check(value(samples, "ess_deliveries_total", connector=cid, result="failed") == 1,
              "failed != 1")
        check(value(samples, "ess_deliveries_total", connector=cid, result="parked") == 1,
              "deliveries parked != 1")
        check(value(samples, "ess_retries_total", connector=cid) == 0, "retries != 0")
        check(check_histogram(samples, cid) == 5, "lag histogram count != 5 deliveries")
        check(value(samples, "ess_sync_lag_seconds_sum", connector=cid) >= 0, "negative sum")
        check(value(samples, "ess_backlog", connector=cid) == 0, "backlog != 0 after delivery")

        # scrapers that never finish their request hold no delivery up
        stuck = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never end
            stuck.append(s)
        t0 = time.monotonic()
        publish(bus, cid, ["S%d" % i for i in range(5)])
        wait_until(lambda: partner.count() >= 11, 10, "deliveries while scrapers hang")
        print("  5 deliveries in %.2f s with 20 stuck scrapers" % (time.monotonic() - t0))
        for s in stuck:
            s.close()
        wait_until(lambda: value(parse_metrics(scrape(port))[1], "ess_deliveries_total",
                                 connector=cid, result="ok") == 10, 15,
                   "/metrics answering again with 10 ok")

        # only /metrics, only GET
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/other" % port, timeout=5)
            raise Failure("/other answered 2xx")
        except urllib.error.HTTPError as e:
            check(e.code == 404, "/other: %d, want 404" % e.code)

        # the port is taken now: a second worker refuses to start (78)
        cid2 = unique_id("metrics2")
        w2 = Worker(manifest(cid2, partner.url(), "metrics_listen: 127.0.0.1:%d\n" % port))
        w2.start()
        rc = w2.proc.wait(30)
        check(rc == 78, "second worker on a taken metrics port exited %r, want 78:\n%s"
              % (rc, w2.log_text()))
        check("metrics_listen" in w2.log_text(), "no metrics_listen in:\n" + w2.log_text())

        # SIGHUP with a new metrics_listen moves the endpoint
        port2 = free_port()
        w.write_manifest(manifest(cid, partner.url(), "metrics_listen: 127.0.0.1:%d\n" % port2))
        w.signal(signal.SIGHUP)
        wait_until(lambda: _scrapes(port2), 10, "/metrics on the reloaded port %d" % port2)
        check(not _scrapes(port), "the old metrics port %d still answers" % port)
        check(w.stop() == 0, "worker exit code")
    finally:
        bus.close()
        w.stop()
        partner.stop()


def mapped(pid, name):
    with open("/proc/%d/maps" % pid) as f:
        return name in f.read()


def test_metrics_library_loaded_when_asked():
    """libmicrohttpd (whose constructor initialises GnuTLS) is loaded only
    once a manifest asks for metrics: at start or on SIGHUP."""
    partner = Partner()
    cid = unique_id("metrics-lib")
    w = Worker(manifest(cid, partner.url())).start()
    try:
        wait_for_queue(cid, worker=w)
        check(not mapped(w.proc.pid, "libmicrohttpd"),
              "a worker without metrics_listen mapped libmicrohttpd")
        port = free_port()
        w.write_manifest(manifest(cid, partner.url(), "metrics_listen: 127.0.0.1:%d\n" % port))
        w.signal(signal.SIGHUP)
        wait_until(lambda: _scrapes(port), 10, "/metrics on port %d after SIGHUP" % port)
        check(mapped(w.proc.pid, "libmicrohttpd"), "serving /metrics without libmicrohttpd?")
        check(w.stop() == 0, "worker exit code")
    finally:
        w.stop()
        partner.stop()


def test_alerts_fire_and_clear():
    partner = Partner()
    cid = unique_id("alerts")
    extra = ("alerts:\n  failures: {count: 2, within_sec: 4}\n  partner_down_sec: 1\n"
             "  backlog_age_sec: 0\n  parked: false\n")
    listener = OpsListener(cid)
    w = Worker(manifest(cid, partner.url(), extra)).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=w)
        partner.mode(mode="fail", status=503)
        publish(bus, cid, ["A1"])
        fired = listener.wait("failures", "fired", 30)
        for field in ("connector", "instance", "host", "pid", "version", "rule", "state",
                      "value", "threshold", "ts", "ts_ms", "detail"):
            check(field in fired, "alert message lacks %s: %r" % (field, fired))
        check(fired["connector"] == cid and fired["threshold"] == 2 and fired["value"] > 2,
              "failures alert: %r" % fired)
        down = listener.wait("partner_down", "fired", 30)
        check(down["value"] > 1 and down["threshold"] == 1, "partner_down alert: %r" % down)
        wait_until(lambda: set((heartbeat(cid) or {}).get("alerts", [])) >=
                   {"failures", "partner_down"}, 10, "heartbeat listing the open alerts")

        partner.mode(mode="ok")
        wait_until(lambda: any(b.get("permit_id") == "A1" for b in partner.bodies()
                               if isinstance(b, dict)), 20, "A1 delivered after recovery")
        listener.wait("partner_down", "cleared", 10)
        listener.wait("failures", "cleared", 15)
        wait_until(lambda: (heartbeat(cid) or {}).get("alerts") == [], 10,
                   "heartbeat with no open alert")
        fires = [m for m in listener.seen if m.get("state") == "fired"]
        check(len(fires) == 2, "each alert fired once, got %r"
              % [(m["rule"], m["state"]) for m in listener.seen])
        check(w.stop() == 0, "worker exit code")
    finally:
        bus.close()
        listener.close()
        w.stop()
        partner.stop()


def test_canary():
    partner = Partner()
    cid = unique_id("canary")
    extra = ("rename: {permit_id: PERMIT_NUM}\n"
             "canary:\n  every_sec: 1\n  record: {permit_id: CANARY-1, street: Test St}\n"
             "  url: %s\n" % partner.url("/test"))
    listener = OpsListener(cid)
    w = Worker(manifest(cid, partner.url(), extra)).start()
    try:
        def canaries():
            return [r for r in partner.received() if r["path"] == "/test"]
        got = wait_until(canaries, 20, "a canary request at /test")[0]
        check(got["headers"].get("x-ess-canary") == "1", "no X-ESS-Canary: 1: %r" % got["headers"])
        check(json.loads(got["body"]) == {"PERMIT_NUM": "CANARY-1", "street": "Test St"},
              "canary not shaped by the mapping: %r" % got["body"])
        check(got["headers"].get("idempotency-key", "").startswith('"%s:canary-' % cid) or
              ("%s:canary-" % cid) in got["headers"].get("idempotency-key", ""),
              "canary Idempotency-Key: %r" % got["headers"])
        hb = wait_until(lambda: (heartbeat(cid) or {}).get("canary"), 10,
                        "a heartbeat with the canary's result")
        check(hb["result"] == "ok" and isinstance(hb["rtt_ms"], int) and hb["rtt_ms"] >= 0,
              "heartbeat canary: %r" % hb)
        check(not [r for r in partner.received() if r["path"] != "/test"],
              "the canary reached the real endpoint")
        check(sql("SELECT count(*) FROM ess_journal WHERE connector = %s", cid)[0][0] == 0,
              "the canary was journaled")

        partner.mode(mode="fail", status=500)
        fired = listener.wait("canary", "fired", 15)
        check(fired["value"] >= 1, "canary alert: %r" % fired)
        wait_until(lambda: ((heartbeat(cid) or {}).get("canary") or {}).get("result") == "failed",
                   10, "heartbeat canary result failed")
        partner.mode(mode="ok")
        listener.wait("canary", "cleared", 15)
        check(w.stop() == 0, "worker exit code")
    finally:
        listener.close()
        w.stop()
        partner.stop()


def test_retention_sweeps_back_dated_rows():
    partner = Partner()
    cid = unique_id("retain")
    text = manifest(cid, partner.url(), "replay_window: 7d\nticket_retention: 30d\n")
    w = Worker(text).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=w)
        publish(bus, cid, ["R%d" % i for i in range(10)])
        wait_until(lambda: partner.count() >= 10, 20, "10 deliveries")
        wait_until(lambda: (sql("SELECT delivered_seq FROM ess_offsets WHERE connector = %s",
                                cid) or [[0]])[0][0] ==
                   sql("SELECT max(seq) FROM ess_journal WHERE connector = %s", cid)[0][0],
                   10, "the offset past every journaled event")
        check(w.stop() == 0, "worker exit code")
        # 6 of the 10 journal rows older than replay_window; 2,500 tickets older
        # than ticket_retention (more than two sweep batches), 3 recent ones.
        sql("UPDATE ess_journal SET journaled_at = now() - interval '8 days' WHERE seq IN"
            " (SELECT seq FROM ess_journal WHERE connector = %s ORDER BY seq LIMIT 6)", cid)
        sql("INSERT INTO ess_tickets (connector, seq, event_id, key, outcome, attempts, done_at)"
            " SELECT %s, g, 'old-' || g, 'K', 'delivered', 2, now() - interval '31 days'"
            " FROM generate_series(1, 2500) g", cid)
        sql("INSERT INTO ess_tickets (connector, seq, event_id, key, outcome, attempts, done_at)"
            " SELECT %s, g, 'new-' || g, 'K', 'parked', 3, now() - interval '29 days'"
            " FROM generate_series(2501, 2503) g", cid)
        w = Worker(text, env={"ESS_LOG_LEVEL": "debug"}).start()
        wait_until(lambda: sql("SELECT count(*) FROM ess_tickets WHERE connector = %s"
                               " AND event_id LIKE 'old-%%'", cid)[0][0] == 0, 30,
                   "the 2,500 old tickets swept")
        left = sql("SELECT count(*) FROM ess_journal WHERE connector = %s", cid)[0][0]
        check(left == 4, "journal rows left %d, want the 4 recent ones" % left)
        steps = [int(n) for n in re.findall(r"retention: swept (\d+) rows", w.log_text())]
        check(len(steps) >= 3 and max(steps) <= 1000,
              "the sweep should take batches of at most 1,000 rows: %r" % steps)
        new = sql("SELECT count(*) FROM ess_tickets WHERE connector = %s"
                  " AND event_id LIKE 'new-%%'", cid)[0][0]
        check(new == 3, "recent tickets left %d, want 3" % new)
        # delivery carries on while it sweeps
        publish(bus, cid, ["R-after"])
        wait_until(lambda: partner.count() >= 11, 20, "a delivery after the sweep")
        check(w.stop() == 0, "worker exit code")
    finally:
        bus.close()
        w.stop()
        partner.stop()


if __name__ == "__main__":
    run([test_metrics_scrape, test_metrics_library_loaded_when_asked, test_alerts_fire_and_clear,
         test_canary,
         test_retention_sweeps_back_dated_rows])
