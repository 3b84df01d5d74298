"""ess-it-dashboard: `hms ops serve`, the live fleet dashboard, against real
RabbitMQ, Postgres, partner stubs and ess-push workers.

A real worker's tile turns ok with counters and rates, then DOWN after a
kill -9 (decided by the server from receive times); /api/stream delivers
heartbeats; partner-controlled text comes back JSON-escaped and the page
never uses innerHTML; a second dashboard is seeded from ess_heartbeats; a
non-loopback --listen is refused; SSE clients are bounded. End to end in
real headless Chromium (Debian's chromium driven by playwright-core from
npm): two workers show two green tiles, a partner going down turns its tile
red within 3 heartbeats with the partner_down alert on it, a killed worker's
tile shows DOWN; screenshots go to BUILD/artifacts/.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (AMQP_URL, BIN, OPS, Bus, Failure, Partner, Worker, check,  # noqa: E402
                    manifest, run, unique_id, wait_for_queue, wait_until)

import pika  # noqa: E402

HMS = os.path.join(BIN, "deploy", "hms")
HB_SEC = 1
CHROMIUM = "/usr/bin/chromium"
SLACK_S = 4.0


# ---------------------------------------------------------------- helpers --

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Dashboard:
    """`hms ops serve` on a free loopback port; its output in a log file."""

    def __init__(self):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log = os.path.join(BIN, "dashboard-%d.log" % self.port)
        logf = open(self.log, "wb")
        self.proc = subprocess.Popen([HMS, "ops", "serve", "--listen",
                                      "127.0.0.1:%d" % self.port],
                                     stdout=logf, stderr=logf)
        logf.close()
        wait_until(self._up, 15, "hms ops serve answering on %s" % self.base, 0.1)

    def _up(self):
        if self.proc.poll() is not None:
            raise Failure("hms ops serve exited with %r:\n%s" % (self.proc.returncode,
                                                                 self.log_text()))
        try:
            self.get("/api/connectors")
            return True
        except (OSError, urllib.error.URLError):
            return False

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def get(self, path, headers=None):
        """(status, headers, body bytes)."""
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path):
        status, _, body = self.get(path)
        check(status == 200, "GET %s: %d" % (path, status))
        return json.loads(body)

    def connector(self, cid):
        rows = [r for r in self.json("/api/connectors") if r["connector"] == cid]
        return rows[0] if rows else None

    def stop(self):
        """SIGTERM; it must exit 0 promptly (stream clients and all)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("hms ops serve ignored SIGTERM for 15 s")
        check(self.proc.returncode == 0, "hms ops serve exit %r:\n%s"
              % (self.proc.returncode, self.log_text()))


def publish_ops(routing_key, body):
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        ch = conn.channel()
        ch.exchange_declare(OPS, "topic", durable=True)
        ch.confirm_delivery()
        ch.basic_publish(OPS, routing_key, json.dumps(body),
                         pika.BasicProperties(content_type="application/json"))
    finally:
        conn.close()


def fake_heartbeat(cid, **fields):
    now_ms = int(time.time() * 1000)
    body = {"connector": cid, "instance": "test:1", "host": "test", "pid": 1,
            "version": "test", "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "ts_ms": now_ms, "uptime_s": 1, "state": "ok", "consumed": 0, "delivered": 0,
            "failed": 0, "retried": 0, "parked": 0, "backlog": 0, "lag_ms_p50": 0,
            "lag_ms_p99": 0, "last_error": ""}
    body.update(fields)
    publish_ops("ess.heartbeat." + cid, body)


class SSE:
    """A raw /api/stream reader with deadlines (no client library)."""

    def __init__(self, dash):
        self.sock = socket.create_connection(("127.0.0.1", dash.port), timeout=2)
        self.sock.sendall(("GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Accept: text/event-stream\r\n\r\n" % dash.port).encode())
        self.buf = b""

    def read_until(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            if time.monotonic() >= deadline:
                raise Failure("no %r on /api/stream within %.0f s; got %r"
                              % (needle, timeout, self.buf[-400:]))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise Failure("/api/stream closed; got %r" % self.buf[-400:])
            self.buf += chunk
        return self.buf

    def close(self):
        self.sock.close()


DASH = None


def dash():
    global DASH
    if DASH is None:
        DASH = Dashboard()
    return DASH


# ------------------------------------------------------------------ tests --

def test_worker_tile_ok_then_down():
    d = dash()
    partner = Partner()
    cid = unique_id("dash")
    w = Worker(manifest(cid, partner.url())).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=w)
        for i in range(5):
            bus.publish("it.%s.changed" % cid, {"permit_id": "P%d" % i, "status": "ok"})
        row = wait_until(lambda: (lambda r: r if r and r["status"] == "ok" and
                                  (r["delivered"] or 0) >= 5 and
                                  r["delivered_per_s"] is not None else None)(d.connector(cid)),
                         30, "tile %s ok with 5 delivered and a rate" % cid, 0.2)
        check(row["level"] == "ok", "level %r" % row["level"])
        check(row["heartbeat_sec"] == HB_SEC, "heartbeat_sec %r" % row["heartbeat_sec"])
        check(row["failed"] == 0 and row["backlog"] is not None, "counters %r" % row)
        w.kill9()
        killed = time.monotonic()
        row = wait_until(lambda: (lambda r: r if r["status"] == "DOWN" else None)(
            d.connector(cid)), 3 * HB_SEC + SLACK_S, "tile %s DOWN after kill -9" % cid, 0.1)
        check(row["level"] == "bad", "DOWN is red: %r" % row)
        print("  DOWN %.1f s after kill -9" % (time.monotonic() - killed))
    finally:
        bus.close()
        w.stop()
        partner.stop()


def test_stream_delivers_heartbeats_and_events():
    d = dash()
    cid = unique_id("dash")
    sse = SSE(d)
    try:
        sse.read_until(b": connected", 5)
        head = sse.buf.split(b"\r\n\r\n")[0].decode()
        check("text/event-stream" in head, "stream headers: %s" % head)
        deadline = time.monotonic() + 10
        while b"event: heartbeat" not in sse.buf:
            fake_heartbeat(cid, delivered=3)
            try:
                sse.read_until(b"event: heartbeat", 1)
            except Failure:
                check(time.monotonic() < deadline, "no heartbeat event: %r" % sse.buf[-400:])
        sse.read_until(cid.encode(), 5)
        publish_ops("ess.alert." + cid, {"connector": cid, "event": "failures",
                                         "detail": "4 failures in 5 minutes"})
        sse.read_until(b"event: ops", 10)
        sse.read_until(b"4 failures in 5 minutes", 5)
        events = [e for e in d.json("/api/events") if e["connector"] == cid]
        check(len(events) == 1 and events[0]["kind"] == "alert" and
              events[0]["event"] == "failures", "events %r" % events)
    finally:
        sse.close()


def test_partner_text_escaped():
    d = dash()
    cid = unique_id("dash")
    evil = "<script>alert(1)</script> & \"quotes\" 'n' \u2028"
    fake_heartbeat(cid, last_error=evil, state="partner_down")
    row = wait_until(lambda: d.connector(cid), 10, "tile for the fake heartbeat", 0.1)
    check(row["last_error"] == evil, "last_error round trip: %r" % row["last_error"])
    check(row["status"] == "partner_down" and row["level"] == "bad", "row %r" % row)
    status, headers, raw = d.get("/api/connectors")
    check(headers.get("Content-Type") == "application/json", "type %r" % headers)
    check(headers.get("X-Content-Type-Options") == "nosniff", "nosniff %r" % headers)
    check(b"</script>" not in raw, "raw </script> in the API: %r" % raw[:300])
    for path in ("/", "/app.js"):
        status, headers, page = d.get(path)
        check(status == 200, "GET %s: %d" % (path, status))
        for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write"):
            check(sink not in page, "%s uses %s" % (path, sink))
        csp = headers.get("Content-Security-Policy", "")
        check("default-src 'self'" in csp and "unsafe-inline" not in csp, "CSP %r" % csp)
        check(headers.get("X-Content-Type-Options") == "nosniff", "nosniff on %s" % path)
    check(b"<script src='/app.js'>" in d.get("/")[2], "page loads /app.js")
    check(b"<script>" not in d.get("/")[2], "no inline script")


def test_seeded_from_postgres():
    """A second dashboard shows the connectors of ess_heartbeats at once."""
    d = dash()
    cid = unique_id("dash")
    partner = Partner()
    w = Worker(manifest(cid, partner.url())).start()
    try:
        wait_until(lambda: (d.connector(cid) or {}).get("status") == "ok", 30,
                   "tile %s ok" % cid, 0.2)
    finally:
        w.stop()
        partner.stop()
    second = Dashboard()
    try:
        row = second.connector(cid)
        check(row is not None, "seeded dashboard lacks %s" % cid)
        check(row["status"] == "STOPPED" and row["heartbeat_sec"] == HB_SEC, "row %r" % row)
    finally:
        second.stop()


def test_refusals():
    d = dash()
    r = subprocess.run([HMS, "ops", "serve", "--listen", "0.0.0.0:%d" % free_port()],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 64 and "loopback" in r.stderr and "--public" in r.stderr,
          "non-loopback --listen: %d %s" % (r.returncode, r.stderr))
    status, _, _ = d.get("/", headers={"Host": "attacker.example:80"})
    check(status == 421, "foreign Host header: %d" % status)
    status, _, _ = d.get("/nope")
    check(status == 404, "unknown path: %d" % status)
    req = urllib.request.Request(d.base + "/api/connectors", data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise Failure("POST accepted")
    except urllib.error.HTTPError as e:
        check(e.code == 405, "POST: %d" % e.code)


def test_stream_clients_bounded():
    d = dash()
    streams = []
    try:
        for _ in range(32):
            s = SSE(d)
            s.read_until(b": connected", 5)
            streams.append(s)
        status, _, _ = d.get("/api/stream")
        check(status == 503, "33rd stream client: %d" % status)
    finally:
        for s in streams:
            s.close()


def npm_playwright():
    """playwright-core from npm, installed once into the build dir (a cache
    for the next run, like verify_webhook.js's standardwebhooks in a temp dir);
    a failure fails the test."""
    d = os.path.join(BIN, "npm-playwright")
    if os.path.exists(os.path.join(d, "node_modules", "playwright-core", "package.json")):
        return d
    npm = shutil.which("npm")
    check(npm is not None, "npm is not installed: the browser test needs node + npm "
          "(deploy/dev/install-deps.sh installs them)")
    os.makedirs(d, exist_ok=True)
    try:
        r = subprocess.run([npm, "install", "--prefix", d, "--no-audit", "--no-fund",
                            "playwright-core"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise Failure("npm install playwright-core timed out after 300 s (registry reachable?)")
    check(r.returncode == 0, "npm install --prefix %s playwright-core failed (exit %d):\n%s"
          % (d, r.returncode, r.stdout[-3000:]))
    return d


class Browser:
    """tests/integration/dashboard_browser.js: the page in headless Chromium,
    driven one JSON command per line."""

    def __init__(self, url):
        check(os.path.exists(CHROMIUM), "%s is not installed: the browser test needs Debian's "
              "chromium (deploy/dev/install-deps.sh installs it)" % CHROMIUM)
        self.proc = subprocess.Popen(
            ["node", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "dashboard_browser.js"), npm_playwright(), url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, ESS_CHROMIUM=CHROMIUM))
        ready = self._answer(60)
        check(ready.get("ready"), "the browser did not open the page: %r" % ready)

    def _answer(self, timeout):
        box = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        check(box and box[0], "no answer from dashboard_browser.js within %.0f s (exit %r)"
              % (timeout, self.proc.poll()))
        return json.loads(box[0])

    def call(self, timeout_s=30, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._answer(timeout_s + 30)

    def wait(self, tiles, timeout_s, what):
        r = self.call(timeout_s, op="wait", tiles=tiles, timeout_ms=int(timeout_s * 1000))
        check(r.get("ok"), "browser: %s: %s; the page showed %r"
              % (what, r.get("error"), {k: v for k, v in r.get("tiles", {}).items()
                                        if k in tiles}))
        check(not r.get("page_errors"), "errors in the page: %r" % r.get("page_errors"))
        return r

    def screenshot(self, name):
        out = os.path.join(BIN, "artifacts", name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        r = self.call(op="screenshot", path=out)
        check(r.get("ok") and os.path.getsize(out) > 5000, "screenshot %s: %r" % (out, r))
        print("  screenshot: %s (%d bytes)" % (out, os.path.getsize(out)))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def test_browser_end_to_end():
    """Real headless Chromium (playwright-core): two workers -> two green
    tiles; one partner goes down -> its tile red within 3 heartbeats, with
    the partner_down alert open on it; that worker killed -> DOWN. A
    screenshot of each step is saved under BUILD/artifacts/."""
    d = dash()
    hb = 2
    partners = [Partner(), Partner()]
    ids = [unique_id("e2e"), unique_id("e2e")]
    extra = "heartbeat_sec: %d\nalerts: {partner_down_sec: 1}\n" % hb
    workers = [Worker(manifest(ids[i], partners[i].url(), extra)).start() for i in range(2)]
    bus = Bus()
    browser = None
    try:
        for i in range(2):
            wait_for_queue(ids[i], worker=workers[i])
            for k in range(3):
                bus.publish("it.%s.changed" % ids[i], {"permit_id": "P%d" % k})
        browser = Browser(d.base + "/")
        browser.wait({ids[0]: {"level": "ok", "status": "ok"},
                      ids[1]: {"level": "ok", "status": "ok"}}, 20, "two green tiles")
        browser.screenshot("dashboard-1-two-green.png")

        partners[1].stop()  # the partner is gone: connections refused
        down_at = time.monotonic()
        for k in range(10):
            bus.publish("it.%s.changed" % ids[1], {"permit_id": "D%d" % k})
        r = browser.wait({ids[1]: {"level": "bad", "status": "partner_down"},
                          ids[0]: {"level": "ok"}}, 3 * hb, "tile red within 3 heartbeats")
        print("  partner down -> red tile in %.1f s (3 heartbeats = %d s)"
              % (time.monotonic() - down_at, 3 * hb))
        browser.wait({ids[1]: {"alert": "partner_down"}}, 3 * hb, "partner_down alert on the tile")
        browser.screenshot("dashboard-2-partner-down.png")

        workers[1].kill9()
        killed = time.monotonic()
        browser.wait({ids[1]: {"level": "bad", "status": "DOWN"}, ids[0]: {"level": "ok"}},
                     3 * hb + SLACK_S, "tile DOWN after kill -9")
        print("  kill -9 -> DOWN in %.1f s" % (time.monotonic() - killed))
        browser.screenshot("dashboard-3-worker-down.png")
    finally:
        if browser is not None:
            browser.close()
        bus.close()
        for w in workers:
            w.stop()
        for p in partners:
            p.stop()


def test_sigterm_stops_cleanly():
    d = dash()
    sse = SSE(d)
    try:
        sse.read_until(b": connected", 5)
        d.stop()
    finally:
        sse.close()


if __name__ == "__main__":
    run([test_worker_tile_ok_then_down, test_stream_delivers_heartbeats_and_events,
         test_partner_text_escaped, test_seeded_from_postgres, test_refusals,
         test_stream_clients_bounded, test_browser_end_to_end, test_sigterm_stops_cleanly])
