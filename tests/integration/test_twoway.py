#!/usr/bin/env python3
"""Two-way sync against the real broker, Postgres and partner stubs.

Conflicts: an ess-push connector (skip_origins naming the reverse ones)
records the HMS change it journals; an ess-webhook with a `conflict` block
then receives the partner's change of the same key and decides it per field:
each strategy (last_write_wins, master_always_wins, first_write_wins, and a
per-field override) is checked by what is published to hms.events, the
ess_conflicts audit row (field, winner, loser value, both timestamps) and the
ess.conflict.<id> message on hms.ops.

Loop: ess-push and ess-pull on the same partner stub (which keeps what it is
sent and lists it with an updated_at it stamps). A change goes out once, comes
back through pull once (ess-origin), is not delivered again, and a partner-side
edit comes in once and is not delivered back: the delivery counts are bounded.
"""
import json
import os
import socket
import urllib.error
import urllib.request

import esslib
from esslib import check, wait_until

HOOK_BIN = os.path.join(esslib.BIN, "workers", "webhook", "ess-webhook")
PULL_BIN = os.path.join(esslib.BIN, "workers", "pull", "ess-pull")
TOKEN_ENV = "IT_TWOWAY_TOKEN"
TOKEN = "t0ken-" + os.urandom(6).hex()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Hook:
    """ess-webhook (bearer) with a conflict block."""

    def __init__(self, conflict, topic):
        self.cid = esslib.unique_id("it-tw-hook")
        self.port = free_port()
        text = ("id: %s\nkind: webhook\nlisten: 127.0.0.1:%d\npath: /hook\n"
                "publish_topic: %s\nkey: permit_id\nrename: {permit_id: PERMIT_NUM}\n"
                "heartbeat_sec: 1\ntimeout_ms: 3000\n"
                "inbound_auth: {type: bearer, token_env: %s}\nconflict: %s\n"
                % (self.cid, self.port, topic, TOKEN_ENV, conflict))
        self.w = esslib.Worker(text, env={TOKEN_ENV: TOKEN})
        self.w.binary = HOOK_BIN

    def start(self):
        self.w.start()

        def listening():
            if not self.w.alive():
                raise esslib.Failure("ess-webhook exited:\n" + self.w.log_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return True
            except OSError:
                return False
        wait_until(listening, 15, "ess-webhook listening on %d" % self.port)
        return self

    def post(self, body):
        req = urllib.request.Request(
            "http://127.0.0.1:%d/hook" % self.port, data=json.dumps(body).encode(),
            method="POST", headers={"Content-Type": "application/json",
                                    "Authorization": "Bearer " + TOKEN})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def get_all(bus, queue):
    out = []
    while True:
        m, props, body = bus.ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((props, json.loads(body)))


def wait_msgs(bus, queue, n, what, timeout=15):
    got = []

    def enough():
        got.extend(get_all(bus, queue))
        return len(got) >= n
    wait_until(enough, timeout, "%d message(s): %s" % (n, what))
    return got


def audit(cid, key):
    return esslib.sql(
        "SELECT field, strategy, winner, winner_value, loser_value,"
        " to_char(hms_changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS'),"
        " to_char(partner_changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        " FROM ess_conflicts WHERE connector = %s AND key = %s ORDER BY field", cid, key)


# The four cases: the manifest's conflict block, HMS's change, the partner's
# change, what HMS must receive back, and the audit rows expected.
T_H = "2026-05-01T10:00:00Z"
T_EARLY = "2026-05-01T09:00:00Z"
T_LATE = "2026-05-01T11:00:00Z"
CASES = [
    ("last_write_wins: the partner's later change wins",
     "{strategy: last_write_wins, updated_at_field: updated_at}",
     {"status": "OPEN"}, T_H, {"status": "CLOSED"}, T_LATE, {"status": "CLOSED"},
     [("status", "last_write_wins", "partner", '"CLOSED"', '"OPEN"')]),
    ("master_always_wins: HMS wins although the partner wrote later",
     "{strategy: master_always_wins}",
     {"status": "OPEN"}, T_H, {"status": "CLOSED"}, T_LATE, {"status": "OPEN"},
     [("status", "master_always_wins", "hms", '"OPEN"', '"CLOSED"')]),
    ("first_write_wins: HMS's earlier change wins",
     "{strategy: first_write_wins}",
     {"status": "OPEN"}, T_H, {"status": "CLOSED"}, T_LATE, {"status": "OPEN"},
     [("status", "first_write_wins", "hms", '"OPEN"', '"CLOSED"')]),
    ("first_write_wins: the partner's earlier change wins",
     "{strategy: first_write_wins}",
     {"status": "OPEN"}, T_H, {"status": "CLOSED"}, T_EARLY, {"status": "CLOSED"},
     [("status", "first_write_wins", "partner", '"CLOSED"', '"OPEN"')]),
    ("per-field: status is master's, note the last writer's",
     "{strategy: last_write_wins, fields: {status: master_always_wins}}",
     {"status": "OPEN", "note": "a"}, T_H, {"status": "CLOSED", "note": "b"}, T_LATE,
     {"status": "OPEN", "note": "b"},
     [("note", "last_write_wins", "partner", '"b"', '"a"'),
      ("status", "master_always_wins", "hms", '"OPEN"', '"CLOSED"')]),
]


def test_conflict_strategies():
    bus = esslib.Bus()
    partner = esslib.Partner()
    back_topic = "it.%s.back" % esslib.unique_id("tw")
    hooks = [Hook(c[1], back_topic) for c in CASES]
    push_id = esslib.unique_id("it-tw-push")
    push = esslib.Worker(esslib.manifest(
        push_id, partner.url(), "rename: {permit_id: PERMIT_NUM}\nskip_origins: [%s]\n"
        % ", ".join(h.cid for h in hooks)))
    back = bus.listen(esslib.EVENTS, back_topic)
    ops = bus.listen(esslib.OPS, "ess.conflict." + hooks[0].cid)
    for h in hooks[1:]:
        bus.ch.queue_bind(ops, esslib.OPS, "ess.conflict." + h.cid)
    try:
        push.start()
        esslib.wait_for_queue(push_id, worker=push)
        for h in hooks:
            h.start()
        for i, (name, _, hms, th, _p, _tp, _w, _a) in enumerate(CASES):
            rec = dict(hms, permit_id="K%d" % i, updated_at=th)
            bus.publish("it.%s.changed" % push_id, rec, message_id="hms-%d" % i)
        wait_until(lambda: partner.count() >= len(CASES), 15, "push delivered HMS's changes")
        for i, h in enumerate(hooks):
            wait_until(lambda: esslib.sql(
                "SELECT 1 FROM ess_conflict_state WHERE connector = %s AND key = %s"
                " AND hms_body IS NOT NULL", h.cid, "K%d" % i), 10,
                "HMS's change recorded for %s" % h.cid)
        for i, (name, _, hms, th, partner_rec, tp, want, rows) in enumerate(CASES):
            h, key = hooks[i], "K%d" % i
            st, text = h.post(dict(partner_rec, PERMIT_NUM=key, updated_at=tp))
            check(st == 202, "%s: webhook answered %d %s\n%s" % (name, st, text, h.w.log_text()))
            (props, got), = wait_msgs(bus, back, 1, name)
            check(props.headers.get("ess-origin") == h.cid, "%s: origin %r" % (name, props))
            check(got == dict(want, permit_id=key, updated_at=tp),
                  "%s: published %r, want %r" % (name, got, want))
            want_rows = [r + (th[:19], tp[:19]) for r in rows]
            check(audit(h.cid, key) == want_rows,
                  "%s: audit %r, want %r" % (name, audit(h.cid, key), want_rows))
            (rk, body), = wait_until(lambda: bus.drain(ops), 10, "ess.conflict for " + name)
            msg = json.loads(body)
            check(rk == "ess.conflict." + h.cid and msg["connector"] == h.cid and
                  msg["key"] == key and msg["hms_changed_at"].startswith(th[:19]) and
                  msg["partner_changed_at"].startswith(tp[:19]),
                  "%s: ess.conflict %s %r" % (name, rk, msg))
            check(sorted((c["field"], c["winner"], json.dumps(c["loser_value"]))
                         for c in msg["conflicts"]) ==
                  sorted((r[0], r[2], r[4]) for r in rows), "%s: conflicts %r" % (name, msg))
        # What was published is HMS's state from now on (HMS applies it).
        for i, h in enumerate(hooks):
            (body,), = esslib.sql("SELECT hms_body FROM ess_conflict_state WHERE connector = %s"
                                  " AND key = %s", h.cid, "K%d" % i)
            check(json.loads(body)["status"] == CASES[i][6]["status"],
                  "%s: HMS's state after the decision: %s" % (CASES[i][0], body))
        # The same partner version again (a retry): decided the same, audited once.
        h = hooks[1]
        st, _ = h.post(dict(CASES[1][4], PERMIT_NUM="K1", updated_at=CASES[1][5]))
        check(st == 202, "retry answered %d" % st)
        wait_msgs(bus, back, 1, "the retry")
        check(len(audit(h.cid, "K1")) == 1, "a plain repeat was audited again: %r"
              % audit(h.cid, "K1"))
        # The partner edits another field, still holding the status that lost:
        # the edit passes, the lost status does not come back into HMS.
        st, _ = h.post({"PERMIT_NUM": "K1", "status": "CLOSED", "note": "gate 4",
                        "updated_at": "2026-05-01T12:00:00Z"})
        check(st == 202, "later edit answered %d" % st)
        (props, got), = wait_msgs(bus, back, 1, "the later edit")
        check(got["status"] == "OPEN" and got["note"] == "gate 4",
              "a lost value came back with a later edit: %r" % got)
        check(len(audit(h.cid, "K1")) == 1, "the stale value was audited: %r"
              % audit(h.cid, "K1"))
        check(partner.count() == len(CASES), "push delivered a partner change back: %r"
              % partner.bodies())
    except Exception:
        print("push log:\n" + push.log_text())
        for h in hooks:
            print("%s log:\n%s" % (h.cid, h.w.log_text()))
        raise
    finally:
        for h in hooks:
            h.w.stop()
        push.stop()
        partner.stop()
        bus.close()


def pull_published(cid):
    rows = esslib.sql("SELECT count(*) FROM ess_pull_hashes WHERE connector = %s", cid)
    return rows[0][0]


def test_push_and_pull_on_one_partner_do_not_ping_pong():
    bus = esslib.Bus()
    partner = esslib.Partner()
    partner.store("PERMIT_NUM")
    push_id = esslib.unique_id("it-tw-push")
    pull_id = esslib.unique_id("it-tw-pull")
    topic = "it.%s.changed" % push_id  # pull publishes where push listens
    push = esslib.Worker(esslib.manifest(
        push_id, partner.url("/permits"),
        "rename: {permit_id: PERMIT_NUM}\nskip_origins: [%s]\n" % pull_id))
    pull = esslib.Worker(
        "id: %s\nkind: pull\nkey: permit_id\nsource_url: %s\npublish_topic: %s\n"
        "poll_sec: 1\nheartbeat_sec: 1\ntimeout_ms: 3000\nrename: {permit_id: PERMIT_NUM}\n"
        "conflict: {strategy: last_write_wins}\n"
        % (pull_id, partner.url("/_listing"), topic))
    pull.binary = PULL_BIN
    seen = bus.listen(esslib.EVENTS, topic)
    msgs = []

    def collect():
        msgs.extend(get_all(bus, seen))
        return msgs

    def from_pull():
        return [m for p, m in collect() if (p.headers or {}).get("ess-origin") == pull_id]

    def polls_after(n):
        """Wait for n more complete polls (the pull heartbeat counts them)."""
        start = polled()
        wait_until(lambda: polled() >= start + n, 20, "%d more poll(s)" % n)

    def polled():
        rows = esslib.sql("SELECT body FROM ess_heartbeats WHERE connector = %s", pull_id)
        return json.loads(rows[0][0]).get("polled", 0) if rows else 0

    try:
        push.start()
        esslib.wait_for_queue(push_id, worker=push)
        pull.start()
        bus.publish(topic, {"permit_id": "P-1", "status": "OPEN"}, message_id="loop-1")
        wait_until(lambda: partner.count() == 1, 15, "the change delivered to the partner")
        wait_until(lambda: len(from_pull()) == 1, 15, "the partner's copy back through pull")
        back = from_pull()[0]
        check(back["permit_id"] == "P-1" and back["status"] == "OPEN", "came back: %r" % back)
        polls_after(3)
        check(partner.count() == 1, "the change was delivered %d times (ping-pong): %r"
              % (partner.count(), partner.bodies()))
        check(len(from_pull()) == 1, "pull republished: %r" % from_pull())
        # A change made on the partner side: in once, never delivered back.
        row = partner.listing()[0]
        partner.edit(dict(row, status="CANCELLED"))
        wait_until(lambda: len(from_pull()) == 2, 15, "the partner's edit through pull")
        check(from_pull()[1]["status"] == "CANCELLED", "edit: %r" % from_pull()[1])
        polls_after(3)
        check(partner.count() == 1, "the partner's edit was sent back to it: %r"
              % partner.bodies())
        check(len(from_pull()) == 2, "pull republished the edit: %r" % from_pull())
        check(esslib.sql("SELECT count(*) FROM ess_conflicts WHERE connector = %s",
                         pull_id)[0][0] == 0, "the echo of HMS's own change was a conflict")
        hms_pushed = [m for p, m in msgs if not (p.headers or {}).get("ess-origin")]
        check(len(hms_pushed) == 1, "messages on the topic not from pull: %r" % hms_pushed)
    except Exception:
        print("push log:\n" + push.log_text())
        print("pull log:\n" + pull.log_text())
        raise
    finally:
        pull.stop()
        push.stop()
        partner.stop()
        bus.close()


def test_pull_conflict_master_wins():
    """ess-pull decides too: HMS changes a permit while the partner is failing
    deliveries, the partner's own edit of the same field comes back through
    pull, HMS's value wins (master_always_wins), the loser is audited and
    announced; once the partner answers again HMS's version reaches it."""
    bus = esslib.Bus()
    partner = esslib.Partner()
    partner.store("PERMIT_NUM")
    push_id = esslib.unique_id("it-tw-push")
    pull_id = esslib.unique_id("it-tw-pull")
    topic = "it.%s.changed" % push_id
    push = esslib.Worker(esslib.manifest(
        push_id, partner.url("/permits"),
        "rename: {permit_id: PERMIT_NUM}\nskip_origins: [%s]\nmax_retry: 1000\n" % pull_id))
    pull = esslib.Worker(
        "id: %s\nkind: pull\nkey: permit_id\nsource_url: %s\npublish_topic: %s\n"
        "poll_sec: 1\nheartbeat_sec: 1\ntimeout_ms: 3000\nrename: {permit_id: PERMIT_NUM}\n"
        "conflict: {strategy: master_always_wins}\n"
        % (pull_id, partner.url("/_listing"), topic))
    pull.binary = PULL_BIN
    seen = bus.listen(esslib.EVENTS, topic)
    ops = bus.listen(esslib.OPS, "ess.conflict." + pull_id)

    def state(col):
        rows = esslib.sql("SELECT %s FROM ess_conflict_state WHERE connector = %%s AND key = 'P-7'"
                          % col, pull_id)
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    try:
        push.start()
        esslib.wait_for_queue(push_id, worker=push)
        pull.start()
        bus.publish(topic, {"permit_id": "P-7", "status": "OPEN"}, message_id="c-1")
        wait_until(lambda: (state("partner_body") or {}).get("status") == "OPEN", 15,
                   "the echo of HMS's change read back by pull")
        partner.mode(mode="fail", status=503)
        bus.publish(topic, {"permit_id": "P-7", "status": "CANCELLED"}, message_id="c-2")
        wait_until(lambda: (state("hms_body") or {}).get("status") == "CANCELLED", 15,
                   "HMS's second change recorded")
        row = partner.listing()[0]
        check(row["status"] == "OPEN", "the partner got HMS's change while failing: %r" % row)
        partner.edit(dict(row, status="CLOSED"))
        got = []

        def decided():
            got.extend(m for p, m in get_all(bus, seen)
                       if (p.headers or {}).get("ess-origin") == pull_id)
            return [m for m in got if m.get("updated_at") == partner.listing()[0]["updated_at"]]
        (msg,), = [wait_until(decided, 15, "the partner's edit through pull")]
        check(msg["status"] == "CANCELLED", "master_always_wins published %r" % msg)
        # The poll audits once its publishes are confirmed: a moment after the message.
        rows = wait_until(lambda: esslib.sql(
            "SELECT field, winner, winner_value, loser_value FROM ess_conflicts"
            " WHERE connector = %s AND key = 'P-7'", pull_id), 10, "the audit row")
        check(rows == [("status", "hms", '"CANCELLED"', '"CLOSED"')], "audit %r" % rows)
        (rk, body), = wait_until(lambda: bus.drain(ops), 10, "ess.conflict." + pull_id)
        check(json.loads(body)["conflicts"][0]["loser_value"] == "CLOSED", "announced %s" % body)
        partner.mode(mode="ok")
        wait_until(lambda: partner.listing()[0]["status"] == "CANCELLED", 20,
                   "HMS's version delivered once the partner answers")
    except Exception:
        print("push log:\n" + push.log_text())
        print("pull log:\n" + pull.log_text())
        raise
    finally:
        pull.stop()
        push.stop()
        partner.stop()
        bus.close()


def test_webhook_conflicts_need_postgres():
    """Without Postgres a webhook with conflict rules cannot decide: 503 (the
    partner retries), nothing published; once Postgres is back, 202."""
    bus = esslib.Bus()
    topic = "it.%s.back" % esslib.unique_id("tw")
    h = Hook("{strategy: master_always_wins}", topic)
    back = bus.listen(esslib.EVENTS, topic)
    try:
        h.start()
        esslib.stack("stop-pg")
        try:
            st, text = h.post({"PERMIT_NUM": "D-1", "status": "CLOSED"})
            check(st == 503 and "postgres" in text, "without Postgres: %d %s" % (st, text))
            check(get_all(bus, back) == [], "published without a decision")
        finally:
            esslib.stack("start-pg")

        def accepted():
            return h.post({"PERMIT_NUM": "D-1", "status": "CLOSED"})[0] == 202
        wait_until(accepted, 30, "202 once Postgres is back", interval=0.5)
        wait_msgs(bus, back, 1, "the record after recovery")
    except Exception:
        print("%s log:\n%s" % (h.cid, h.w.log_text()))
        raise
    finally:
        h.w.stop()
        bus.close()


def test_reverse_workers_heartbeat_into_postgres():
    """hms ess ps reads ess_heartbeats: pull and webhook write there too."""
    partner = esslib.Partner()
    partner.store("PERMIT_NUM")
    h = Hook("{strategy: last_write_wins}", "it.tw.hb")
    pull_id = esslib.unique_id("it-tw-pull")
    pull = esslib.Worker(
        "id: %s\nkind: pull\nkey: permit_id\nsource_url: %s\npublish_topic: it.tw.hb\n"
        "poll_sec: 1\nheartbeat_sec: 1\n" % (pull_id, partner.url("/_listing")))
    pull.binary = PULL_BIN
    state = esslib.state_dir()
    try:
        h.start()
        pull.start()
        for cid in (h.cid, pull_id):
            wait_until(lambda: esslib.sql(
                "SELECT state FROM ess_heartbeats WHERE connector = %s", cid) == [("ok",)],
                15, "an ok heartbeat row of %s" % cid)
        env = {"ESS_PG_URL": esslib.PG_URL, "ESS_AMQP_URL": esslib.AMQP_URL}
        r = esslib.hms(state, "ess", "ps", "--json", env=env, check_rc=0)
        rows = {c.get("connector"): c for c in json.loads(r.stdout)}
        for cid in (h.cid, pull_id):
            check(cid in rows and str(rows[cid].get("state", "")).lower() == "ok",
                  "hms ess ps --json lacks %s: %s" % (cid, r.stdout))
    finally:
        pull.stop()
        h.w.stop()
        partner.stop()


if __name__ == "__main__":
    esslib.run([test_conflict_strategies, test_push_and_pull_on_one_partner_do_not_ping_pong,
                test_pull_conflict_master_wins, test_webhook_conflicts_need_postgres,
                test_reverse_workers_heartbeat_into_postgres])
