#!/usr/bin/python3
"""partner_stub -- an HTTP partner for ESS integration tests (stdlib only).

Run:  /usr/bin/python3 partner_stub.py --port 0 --bind 127.0.0.1
The first stdout line is "PORT <n>" (flushed), so a test can start it with
--port 0 and read the port it got. HTTP/1.1 with keep-alive; every answer has
a Content-Length.

Every POST/PUT outside the control API is recorded, in arrival order, as
  {"path", "headers" (lower-cased names), "body" (text), "body_b64" (the raw
   bytes, base64: "body" replaces invalid UTF-8), "ts" (epoch seconds),
   "status" (what was answered; null while hanging or for garbage)}
and answered according to the current mode.

Control API (JSON):
  GET  /_received[?since=N]  -> records[N:]
  GET  /_count               -> {"count": n, "connections": accepted connections}
  POST /_mode   {"mode": "ok"|"fail"|"hang"|"garbage"|"close", "status": 503,
                 "retry_after": "1", "delay_ms": 0,
                 "for_key": {"field": "permit_id", "value": "P7", "status": 400},
                 "reply": "<canned body>", "content_type": "text/xml"}
                 (for_key may also be a list; field may be a dotted path; an
                 override wins over the mode, and its own "retry_after" is used)
  POST /_reset  -> records cleared, mode back to ok, hanging requests released

A partner that keeps what it is sent (two-way tests, reconcile):
  POST /_store {"key": "PERMIT_NUM"} -> from now on every POST/PUT answered 2xx
                 whose body is a JSON object (or array of objects) is upserted
                 into a table by that field and stamped "updated_at" (the
                 stub's clock, ISO 8601 UTC with microseconds, increasing)
  GET  /_listing[?since=T] -> the table as a JSON array ordered by key, only
                 rows with updated_at >= T when since is given; with ?per=N[&page=P]
                 one page as {"data": {"items": [...]}, "links": {"next": URL|null}}
  POST /_edit {"set": {...}} | {"delete": "K"} -> a change made on the partner
                 side (stamped like a received one; not recorded as received)
Modes: ok -> 200 {"ok":true}; fail -> status (default 503) with Retry-After when
given; hang -> no answer for up to 60 s, then the connection is closed;
garbage -> non-HTTP bytes, then close; close -> a 200 whose body stops half-way
(Content-Length promises more), then close.

Bounded: exits on SIGTERM/SIGINT, and by itself after --lifetime seconds
(default 3600) so a crashed test cannot leave it behind.
"""

import argparse
import base64
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HANG_MAX_S = 60.0
DEFAULT_MODE = {"mode": "ok"}


class State:
    """Records and mode, shared by the handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.mode = dict(DEFAULT_MODE)
        self.connections = 0
        self.release = threading.Event()  # set by /_reset: hanging requests end
        self.store_key = None  # /_store: the table's key field
        self.table = {}
        self.last_stamp = ""

    def stamp(self):
        """An increasing updated_at (caller holds the lock)."""
        t = time.time()
        while True:
            s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(
                (t % 1) * 1e6)
            if s > self.last_stamp:
                self.last_stamp = s
                return s
            t += 1e-6

    def upsert(self, rec):
        """Keep rec by the table key, stamped (caller holds the lock)."""
        if self.store_key is None or not isinstance(rec, dict) or self.store_key not in rec:
            return
        row = dict(rec)
        row["updated_at"] = self.stamp()
        self.table[str(rec[self.store_key])] = row

    def reset(self):
        with self.lock:
            self.records = []
            self.mode = dict(DEFAULT_MODE)
            old, self.release = self.release, threading.Event()
        old.set()


STATE = State()


def lookup(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def override_for(mode, body):
    """The for_key entry matching this body, or None."""
    rules = mode.get("for_key")
    if not rules:
        return None
    if isinstance(rules, dict):
        rules = [rules]
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    for rule in rules:
        got = lookup(doc, str(rule.get("field", "")))
        if got is not None and str(got) == str(rule.get("value")):
            return rule
    return None


def validate_mode(m):
    if not isinstance(m, dict):
        return "mode must be a JSON object"
    if m.get("mode", "ok") not in ("ok", "fail", "hang", "garbage", "close"):
        return "mode must be ok, fail, hang, garbage or close"
    rules = m.get("for_key")
    if rules is not None:
        rules = [rules] if isinstance(rules, dict) else rules
        if not isinstance(rules, list) or not all(
            isinstance(r, dict) and "field" in r and "value" in r for r in rules
        ):
            return "for_key needs field and value"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ess-partner-stub/1"

    def setup(self):
        super().setup()
        with STATE.lock:
            STATE.connections += 1

    def log_message(self, fmt, *args):  # quiet: tests read the control API instead
        pass

    def send_json(self, status, obj, extra=None):
        self.send_raw(status, json.dumps(obj).encode(), "application/json", extra)

    def send_raw(self, status, data, content_type, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # --- control API -------------------------------------------------------

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/_received":
            try:
                since = int(parse_qs(url.query).get("since", ["0"])[0])
            except ValueError:
                return self.send_json(400, {"error": "since must be an integer"})
            with STATE.lock:
                out = list(STATE.records[max(since, 0):])
            return self.send_json(200, out)
        if url.path == "/_listing":
            q = parse_qs(url.query)
            since = q.get("since", [""])[0]
            with STATE.lock:
                out = [STATE.table[k] for k in sorted(STATE.table)
                       if STATE.table[k]["updated_at"] >= since]
            if "per" not in q:
                return self.send_json(200, out)
            per, page = int(q["per"][0]), int(q.get("page", ["1"])[0])
            nxt = ("/_listing?per=%d&page=%d" % (per, page + 1)
                   if len(out) > page * per else None)
            return self.send_json(200, {"data": {"items": out[(page - 1) * per:page * per]},
                                        "links": {"next": nxt}})
        if url.path == "/_count":
            with STATE.lock:
                out = {"count": len(STATE.records), "connections": STATE.connections}
            return self.send_json(200, out)
        return self.send_json(404, {"error": "no such path"})

    def control_post(self, path, body):
        if path == "/_reset":
            STATE.reset()
            return self.send_json(200, {"ok": True})
        try:
            mode = json.loads(body or b"{}")
        except ValueError:
            return self.send_json(400, {"error": "body is not JSON"})
        if path == "/_store":
            with STATE.lock:
                STATE.store_key = str(mode.get("key"))
            return self.send_json(200, {"ok": True})
        if path == "/_edit":
            with STATE.lock:
                if "delete" in mode:
                    STATE.table.pop(str(mode["delete"]), None)
                else:
                    STATE.upsert(mode.get("set"))
            return self.send_json(200, {"ok": True})
        problem = validate_mode(mode)
        if problem:
            return self.send_json(400, {"error": problem})
        with STATE.lock:
            STATE.mode = mode
        return self.send_json(200, {"ok": True})

    # --- the partner ---------------------------------------------------------

    def do_POST(self):
        body = self.read_body()
        path = urlsplit(self.path).path
        if path in ("/_mode", "/_reset", "/_store", "/_edit"):
            return self.control_post(path, body)
        record = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", errors="replace"),
            "body_b64": base64.b64encode(body).decode("ascii"),  # the exact bytes
            "ts": time.time(),
            "status": None,
        }
        with STATE.lock:
            STATE.records.append(record)
            mode = dict(STATE.mode)
            release = STATE.release
        self.answer(mode, body, record, release)

    do_PUT = do_POST

    def answer(self, mode, body, record, release):
        if mode.get("delay_ms"):
            release.wait(float(mode["delay_ms"]) / 1000.0)
        rule = override_for(mode, body)
        if rule is not None:
            return self.answer_status(int(rule.get("status", 400)), rule, record)
        kind = mode.get("mode", "ok")
        if kind == "hang":
            release.wait(HANG_MAX_S)
            self.close_connection = True
            return None
        if kind == "garbage":
            self.wfile.write(b"\x00\x7fTHIS IS NOT HTTP\r\n\xff\xfe garbage\r\n")
            self.close_connection = True
            return None
        if kind == "close":  # the connection drops in the middle of the answer
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{\"ok\": tr")
            self.wfile.flush()
            self.close_connection = True
            return None
        if kind == "fail":
            return self.answer_status(int(mode.get("status", 503)), mode, record)
        return self.answer_status(200, mode, record)

    def answer_status(self, status, spec, record):
        extra = {}
        if spec.get("retry_after") is not None and status >= 300:
            extra["Retry-After"] = str(spec["retry_after"])
        with STATE.lock:
            record["status"] = status
            if 200 <= status < 300 and STATE.store_key is not None:
                try:
                    doc = json.loads(record["body"])
                except ValueError:
                    doc = None
                for rec in doc if isinstance(doc, list) else [doc]:
                    STATE.upsert(rec)
        if spec.get("reply") is not None:  # a canned body, e.g. a SOAP Fault envelope
            return self.send_raw(status, spec["reply"].encode(),
                                 spec.get("content_type", "text/xml; charset=utf-8"), extra)
        if 200 <= status < 300:
            return self.send_json(status, {"ok": True}, extra)
        return self.send_json(status, {"ok": False, "error": "stub answers %d" % status}, extra)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not hold up exit
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description="HTTP partner stub for ESS integration tests")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--lifetime", type=float, default=3600.0,
                    help="exit after this many seconds (safety net)")
    args = ap.parse_args()

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(args.lifetime)))
    server = Server((args.bind, args.port), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        STATE.release.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
