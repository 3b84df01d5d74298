#!/usr/bin/env python3
"""ess-webhook against the real broker: Standard Webhooks signatures checked,
records mapped back and published to hms.events with confirms, 4xx publishes
nothing, a replay is not republished, 503 while the broker is down."""
import base64
import hashlib
import hmac
import json
import os
import socket
import time
import urllib.error
import urllib.request

import esslib
from esslib import check, wait_until

KEY = os.urandom(24)
SECRET = "whsec_" + base64.b64encode(KEY).decode()
TOKEN_ENV = "IT_HOOK_SECRET"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sign(msg_id, ts, body, key=KEY):
    mac = hmac.new(key, b"%s.%d.%s" % (msg_id.encode(), ts, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class Hook:
    def __init__(self):
        self.cid = esslib.unique_id("it-hook")
        self.port = free_port()
        self.topic = "it.%s.from" % self.cid
        text = ("id: %s\nkind: webhook\nlisten: 127.0.0.1:%d\npath: /hooks/dmv\n"
                "publish_topic: %s\nkey: permit_id\nrename: {permit_id: PERMIT_NUM}\n"
                "values: {status: {PENDING: \"07\", CANCELLED: \"09\"}}\nbody_limit: 2048\n"
                "heartbeat_sec: 1\ntimeout_ms: 2000\n"
                "inbound_auth: {type: hmac, secret_env: %s}\n"
                % (self.cid, self.port, self.topic, TOKEN_ENV))
        self.w = esslib.Worker(text, env={TOKEN_ENV: SECRET})
        self.w.binary = os.path.join(esslib.BIN, "workers", "webhook", "ess-webhook")
        self.url = "http://127.0.0.1:%d/hooks/dmv" % self.port

    def start(self):
        self.w.start()
        wait_until(self.listening, 15, "ess-webhook listening on %d" % self.port)
        return self

    def listening(self):
        if not self.w.alive():
            raise esslib.Failure("ess-webhook exited:\n" + self.w.log_text())
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            return True
        except OSError:
            return False

    def post(self, body, msg_id=None, ts=None, sig=None, headers=None):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        msg_id = msg_id or "msg_" + os.urandom(6).hex()
        ts = int(time.time()) if ts is None else ts
        h = {"Content-Type": "application/json", "webhook-id": msg_id,
             "webhook-timestamp": str(ts),
             "webhook-signature": sig if sig is not None else sign(msg_id, ts, body)}
        h.update(headers or {})
        req = urllib.request.Request(self.url, data=body, headers=h, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw or b"{}")
            except ValueError:
                return e.code, {"raw": raw.decode(errors="replace")}


def get_all(bus, queue):
    out = []
    while True:
        m, props, body = bus.ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((props, json.loads(body)))


def wait_msgs(bus, queue, n, timeout=10):
    got = []

    def enough():
        got.extend(get_all(bus, queue))
        return len(got) >= n
    wait_until(enough, timeout, "%d message(s) on %s" % (n, queue))
    return got


def nothing_else_published(hook, bus, q, what):
    """A sentinel accepted after the requests under test (202 = its publish
    was confirmed) must be the only message: anything those requests
    published would stand before it on the queue."""
    st, resp = hook.post({"PERMIT_NUM": "SENTINEL"})
    check(st == 202, "sentinel: %r %r" % (st, resp))
    got = wait_msgs(bus, q, 1)
    ids = [json.dumps(body) for _, body in got]
    check(len(got) == 1 and "SENTINEL" in ids[0], "%s published: %r" % (what, ids))


def with_hook(fn):
    hook = Hook().start()
    bus = esslib.Bus()
    q = bus.listen(esslib.EVENTS, hook.topic)
    try:
        fn(hook, bus, q)
        rc = hook.w.stop()
        check(rc == 0, "ess-webhook exit code %r after SIGTERM\n%s" % (rc, hook.w.log_text()))
    finally:
        hook.w.stop()
        bus.close()


def test_signed_request_is_published_mapped():
    def body(hook, bus, q):
        st, resp = hook.post({"PERMIT_NUM": "P-1", "status": "09", "street": "Elm"},
                             msg_id="msg_one")
        check(st == 202, "signed request: %r %r" % (st, resp))
        (props, rec), = wait_msgs(bus, q, 1)
        check(rec == {"permit_id": "P-1", "status": "CANCELLED", "street": "Elm"},
              "inverse mapping: %r" % rec)
        check(props.headers.get("ess-origin") == hook.cid, "ess-origin: %r" % props.headers)
        check(props.message_id == "msg_one", "message_id: %r" % props.message_id)
        check(props.delivery_mode == 2, "persistent: %r" % props.delivery_mode)
        st, resp = hook.post([{"PERMIT_NUM": "P-2"}, {"PERMIT_NUM": "P-3", "status": "07"}],
                             msg_id="msg_two")
        check(st == 202 and resp.get("records") == 2, "array: %r %r" % (st, resp))
        msgs = wait_msgs(bus, q, 2)
        check(sorted(p.message_id for p, _ in msgs) == ["msg_two:0", "msg_two:1"],
              "array message ids: %r" % [p.message_id for p, _ in msgs])
        check(msgs[1][1] == {"permit_id": "P-3", "status": "PENDING"}, "%r" % msgs[1][1])
    with_hook(body)


def test_rotated_secret_signature_accepted():
    def body(hook, bus, q):
        raw = json.dumps({"PERMIT_NUM": "P-9"}).encode()
        ts = int(time.time())
        sig = sign("msg_rot", ts, raw, key=b"old-key-not-ours") + " " + sign("msg_rot", ts, raw)
        st, resp = hook.post(raw, msg_id="msg_rot", ts=ts, sig=sig)
        check(st == 202, "two signatures, second valid: %r %r" % (st, resp))
        wait_msgs(bus, q, 1)
    with_hook(body)


def test_rejections_publish_nothing():
    def body(hook, bus, q):
        rec = {"PERMIT_NUM": "P-4"}
        cases = [
            ("bad signature", dict(sig="v1," + base64.b64encode(b"x" * 32).decode()), 401),
            ("old timestamp", dict(ts=int(time.time()) - 600), 401),
            ("no signature header", dict(sig=""), 401),
        ]
        for what, kw, want in cases:
            st, resp = hook.post(rec, **kw)
            check(st == want, "%s: want %d, got %r %r" % (what, want, st, resp))
        st, resp = hook.post(b"{not json")
        check(st == 400 and "not JSON" in resp.get("error", ""), "malformed: %r %r" % (st, resp))
        st, resp = hook.post(b"[1, 2]")
        check(st == 400 and "object" in resp.get("error", ""), "not objects: %r %r" % (st, resp))
        st, resp = hook.post({"street": "no key"})
        check(st == 400 and "permit_id" in resp.get("error", ""), "no key: %r %r" % (st, resp))
        st, resp = hook.post([{"PERMIT_NUM": "ok"}, {"nokey": 1}])
        check(st == 400, "array with one bad record: %r %r" % (st, resp))
        st, resp = hook.post({"PERMIT_NUM": "P-5", "pad": "x" * 4000})
        check(st == 413, "too large: %r %r" % (st, resp))
        nothing_else_published(hook, bus, q, "rejected requests")
    with_hook(body)


def test_replay_is_not_republished():
    def body(hook, bus, q):
        raw = json.dumps({"PERMIT_NUM": "P-6"}).encode()
        ts = int(time.time())
        st, _ = hook.post(raw, msg_id="msg_replay", ts=ts)
        check(st == 202, "first: %r" % st)
        wait_msgs(bus, q, 1)
        st, resp = hook.post(raw, msg_id="msg_replay", ts=ts)
        check(st == 200 and resp.get("status") == "duplicate", "replay: %r %r" % (st, resp))
        nothing_else_published(hook, bus, q, "the replay")
    with_hook(body)


def test_broker_down_is_503_then_recovers():
    hook = Hook().start()
    try:
        bus = esslib.Bus()
        q = bus.listen(esslib.EVENTS, hook.topic)
        st, _ = hook.post({"PERMIT_NUM": "P-7"})
        check(st == 202, "before the outage: %r" % st)
        wait_msgs(bus, q, 1)
        bus.close()
        esslib.stack("stop-rabbit")
        try:
            st, resp = hook.post({"PERMIT_NUM": "P-8"}, msg_id="msg_outage")
            check(st == 503, "broker down: want 503, got %r %r" % (st, resp))
            check(hook.w.alive(), "ess-webhook died with the broker")
        finally:
            esslib.stack("start-rabbit")
        bus = esslib.Bus()
        q = bus.listen(esslib.EVENTS, hook.topic)

        def accepted():
            st, _ = hook.post({"PERMIT_NUM": "P-8"}, msg_id="msg_outage")
            return st == 202
        wait_until(accepted, 60, "202 again after the broker is back", 1.0)
        (props, rec), = wait_msgs(bus, q, 1)
        check(props.message_id == "msg_outage" and rec["permit_id"] == "P-8", "%r" % rec)
        bus.close()
        rc = hook.w.stop()
        check(rc == 0, "exit code %r\n%s" % (rc, hook.w.log_text()))
    finally:
        hook.w.stop()


def test_heartbeat_and_lifecycle():
    bus = esslib.Bus()
    hook = Hook()
    q = bus.listen(esslib.OPS, "ess.*.%s" % hook.cid)
    hook.start()
    try:
        st, resp = hook.post({"PERMIT_NUM": "P-10"}, msg_id="msg_hb0")
        check(st == 503 and "unroutable" in resp.get("error", ""),
              "no queue bound to the topic: want 503, got %r %r" % (st, resp))
        bus.listen(esslib.EVENTS, hook.topic)
        st, _ = hook.post({"PERMIT_NUM": "P-10"}, msg_id="msg_hb")
        check(st == 202, "post: %r" % st)
        seen = {}

        def counted():
            for rk, body in bus.drain(q):
                seen.setdefault(rk.split(".")[1], []).append(json.loads(body))
            return any(h.get("published", 0) >= 1 for h in seen.get("heartbeat", []))
        wait_until(counted, 10, "a heartbeat counting the publish")
        hb = seen["heartbeat"][-1]
        check(hb["state"] == "ok" and hb["received"] >= 1, "heartbeat: %r" % hb)
        check(hook.w.stop() == 0, "exit code")
        events = [m["event"] for m in seen.get("lifecycle", [])]
        events += [json.loads(b)["event"] for rk, b in bus.drain(q) if ".lifecycle." in rk]
        check(events[:1] == ["started"] and events[-2:] == ["stopping", "stopped"],
              "lifecycle: %r" % events)
    finally:
        hook.w.stop()
        bus.close()


if __name__ == "__main__":
    esslib.run([test_signed_request_is_published_mapped, test_rotated_secret_signature_accepted,
                test_rejections_publish_nothing, test_replay_is_not_republished,
                test_heartbeat_and_lifecycle, test_broker_down_is_503_then_recovers])
