#!/usr/bin/env python3
"""ess-pull against the real broker and Postgres: a partner stub (an
http.server in this process) serves records changed since a cursor; the
worker publishes only changes (inverse-mapped, ess-origin, confirms), keeps
its cursor in Postgres, resumes from it after a restart, follows pages (a next
link or a page parameter), reads CSV, and rides out a partner that answers 500
or garbage without publishing or moving the cursor."""
import json
import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import esslib
from esslib import check, wait_until

PULL_BIN = os.path.join(esslib.BIN, "workers", "pull", "ess-pull")


class Stub:
    """GET /records?since=C[&page=N]: the records with updated_at >= C, two
    per page. style "next": {"data": {"items": [...]}, "next": "/records?..."};
    style "page": a bare array per page; style "csv": text/csv, one page.
    mode "500" / "garbage" make it fail."""

    def __init__(self, style="next"):
        self.records = []
        self.style = style
        self.mode = "ok"
        self.queries = []
        self.lock = threading.Lock()
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                stub.answer(self)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self):
        return "http://127.0.0.1:%d/records" % self.port

    def set(self, records):
        with self.lock:
            self.records = [dict(r) for r in records]

    def seen(self):
        with self.lock:
            return list(self.queries)

    def _page(self, q):
        since = q.get("since", [""])[0]
        page = int(q.get("page", ["1"])[0])
        with self.lock:
            rows = [r for r in self.records if r["updated_at"] >= since]
        return rows[(page - 1) * 2:page * 2], page, len(rows) > page * 2, since

    def answer(self, h):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        with self.lock:
            self.queries.append(q)
            mode = self.mode
        if mode == "500":
            return self._send(h, 500, b'{"error":"down"}', "application/json")
        if mode == "garbage":
            return self._send(h, 200, b"<html>maintenance</html>", "text/html")
        rows, page, more, since = self._page(q)
        if self.style == "csv":
            lines = ["PERMIT_NUM,status,updated_at,note"]
            lines += ['%s,%s,%s,"a ""quoted"", note"' % (r["PERMIT_NUM"], r["status"],
                                                          r["updated_at"]) for r in rows]
            return self._send(h, 200, ("\r\n".join(lines) + "\r\n").encode(), "text/csv")
        if self.style == "page":
            return self._send(h, 200, json.dumps(rows).encode(), "application/json")
        nxt = ("/records?" + urllib.parse.urlencode({"since": since, "page": page + 1})
               if more else None)
        body = {"data": {"items": rows}, "next": nxt}
        return self._send(h, 200, json.dumps(body).encode(), "application/json")

    def _send(self, h, code, body, ctype):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def rec(n, status, ts):
    return {"PERMIT_NUM": "P-%d" % n, "status": status, "updated_at": ts}


class Pull:
    def __init__(self, stub, extra=""):
        self.cid = esslib.unique_id("it-pull")
        self.topic = "it.%s.pulled" % self.cid
        text = ("id: %s\nkind: pull\nkey: permit_id\nsource_url: %s\npublish_topic: %s\n"
                "poll_sec: 1\nheartbeat_sec: 1\ntimeout_ms: 3000\n"
                "rename: {permit_id: PERMIT_NUM}\n"
                "values: {status: {PENDING: \"07\", CANCELLED: \"09\"}}\n%s"
                % (self.cid, stub.url(), self.topic, extra))
        self.w = esslib.Worker(text)
        self.w.binary = PULL_BIN

    def start(self):
        self.w.start()
        return self

    def check_alive(self):
        if not self.w.alive():
            raise esslib.Failure("ess-pull exited:\n" + self.w.log_text())

    def cursor(self):
        rows = esslib.sql("SELECT cursor FROM ess_pull_cursors WHERE connector = %s", self.cid)
        return rows[0][0] if rows else None


def get_all(bus, queue):
    out = []
    while True:
        m, props, body = bus.ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((props, json.loads(body)))


def wait_msgs(bus, queue, n, timeout=15):
    got = []

    def enough():
        got.extend(get_all(bus, queue))
        return len(got) >= n
    wait_until(enough, timeout, "%d message(s) on %s" % (n, queue))
    return got


def wait_polls(pull, stub, n, timeout=15):
    """n more requests reach the stub (the worker polled again)."""
    start = len(stub.seen())

    def more():
        pull.check_alive()
        return len(stub.seen()) >= start + n
    wait_until(more, timeout, "%d more poll(s)" % n)


def with_pull(stub, fn, extra=""):
    pull = Pull(stub, extra)
    bus = esslib.Bus()
    q = bus.listen(esslib.EVENTS, pull.topic)
    try:
        pull.start()
        try:
            fn(pull, bus, q)
        except Exception:
            print("ess-pull log:\n" + pull.w.log_text())
            raise
        rc = pull.w.stop()
        check(rc == 0, "ess-pull exit code %r after SIGTERM\n%s" % (rc, pull.w.log_text()))
    finally:
        pull.w.stop()
        bus.close()
        stub.stop()


def test_changes_only_and_resume_from_cursor():
    stub = Stub("next")
    stub.set([rec(1, "07", "2026-01-01T00:00:01Z"), rec(2, "09", "2026-01-01T00:00:02Z"),
              rec(3, "07", "2026-01-01T00:00:03Z")])

    def body(pull, bus, q):
        msgs = wait_msgs(bus, q, 3)
        recs = {r["permit_id"]: r for _, r in msgs}
        check(recs.get("P-2") == {"permit_id": "P-2", "status": "CANCELLED",
                                  "updated_at": "2026-01-01T00:00:02Z"},
              "inverse mapping: %r" % recs)
        check(all(p.headers.get("ess-origin") == pull.cid for p, _ in msgs),
              "ess-origin: %r" % [p.headers for p, _ in msgs])
        check(all(p.message_id.startswith("%s:P-" % pull.cid) for p, _ in msgs),
              "message_id: %r" % [p.message_id for p, _ in msgs])
        check(any(q_.get("page") == ["2"] for q_ in stub.seen()), "next link followed")
        pull.w.check_comm()
        wait_until(lambda: pull.cursor() == "2026-01-01T00:00:03Z", 10, "cursor stored")
        wait_polls(pull, stub, 4)
        check(get_all(bus, q) == [], "unchanged records were republished")
        stub.set([rec(1, "07", "2026-01-01T00:00:01Z"), rec(2, "09", "2026-01-01T00:00:02Z"),
                  rec(3, "09", "2026-01-01T00:00:04Z")])
        (props, r), = wait_msgs(bus, q, 1)
        check(r["permit_id"] == "P-3" and r["status"] == "CANCELLED", "changed: %r" % r)
        wait_until(lambda: pull.cursor() == "2026-01-01T00:00:04Z", 10, "cursor advanced")
        wait_polls(pull, stub, 2)
        check(get_all(bus, q) == [], "a change was published twice")
        rc = pull.w.stop()
        check(rc == 0, "exit code %r after SIGTERM" % rc)
        n = len(stub.seen())
        pull.start()
        wait_until(lambda: len(stub.seen()) > n, 15, "a poll after the restart")
        check(stub.seen()[n].get("since") == ["2026-01-01T00:00:04Z"],
              "resumed with %r" % stub.seen()[n])
        wait_polls(pull, stub, 2)
        check(get_all(bus, q) == [], "republished after a restart")
    with_pull(stub, body, "records_path: data.items\nnext_path: next\n")


def test_page_param_until_short_page():
    stub = Stub("page")
    stub.set([rec(i, "07", "2026-02-01T00:00:0%dZ" % i) for i in range(1, 6)])

    def body(pull, bus, q):
        msgs = wait_msgs(bus, q, 5)
        check(sorted(r["permit_id"] for _, r in msgs) == ["P-%d" % i for i in range(1, 6)],
              "all pages: %r" % msgs)
        pages = [q_.get("page") for q_ in stub.seen()[:3]]
        check(pages == [["1"], ["2"], ["3"]], "pages asked: %r" % pages)
        wait_until(lambda: pull.cursor() == "2026-02-01T00:00:05Z", 10, "cursor stored")
        check(not any(q_.get("page") == ["4"] for q_ in stub.seen()), "read past a short page")
    with_pull(stub, body, "page_param: page\n")


def test_csv_source():
    stub = Stub("csv")
    stub.set([rec(1, "09", "2026-03-01T00:00:01Z"), rec(2, "07", "2026-03-01T00:00:02Z")])

    def body(pull, bus, q):
        msgs = wait_msgs(bus, q, 2)
        recs = {r["permit_id"]: r for _, r in msgs}
        check(recs["P-1"] == {"permit_id": "P-1", "status": "CANCELLED", "note":
                              'a "quoted", note', "updated_at": "2026-03-01T00:00:01Z"},
              "CSV record: %r" % recs)
    with_pull(stub, body, "source_format: csv\n")


def heartbeats(bus, hq):
    return [json.loads(b) for _, b in bus.drain(hq)]


def test_partner_down_then_recovers():
    stub = Stub("next")
    stub.set([rec(1, "07", "2026-04-01T00:00:01Z")])
    stub.mode = "500"

    def body(pull, bus, q):
        hq = bus.listen(esslib.OPS, "ess.heartbeat." + pull.cid)
        seen = []

        def degraded():
            pull.check_alive()
            seen.extend(heartbeats(bus, hq))
            return [h for h in seen if h.get("state") == "degraded" and
                    "HTTP 500" in h.get("last_error", "")]
        wait_until(degraded, 15, "a degraded heartbeat naming HTTP 500")
        stub.mode = "garbage"
        wait_polls(pull, stub, 2, timeout=30)
        check(get_all(bus, q) == [], "published while the partner failed")
        check(pull.cursor() is None, "cursor moved while the partner failed")
        log = pull.w.log_text()
        check(log.count("HTTP 500") == 1, "failure streak logged more than once:\n" + log)
        stub.mode = "ok"
        (props, r), = wait_msgs(bus, q, 1, timeout=20)
        check(r["permit_id"] == "P-1" and r["status"] == "PENDING", "after recovery: %r" % r)
        wait_until(lambda: pull.cursor() == "2026-04-01T00:00:01Z", 10, "cursor after recovery")
        seen.clear()

        def ok():
            seen.extend(heartbeats(bus, hq))
            return [h for h in seen if h.get("state") == "ok" and h.get("published") == 1]
        wait_until(ok, 10, "an ok heartbeat after recovery")
        pull.w.wait_log("recovered", 5)
    with_pull(stub, body, "records_path: data.items\n")


if __name__ == "__main__":
    esslib.run([test_changes_only_and_resume_from_cursor, test_page_param_until_short_page,
                test_csv_source, test_partner_down_then_recovers])
