"""ess-it-hms_ops: the operator commands (hms ess ps, status, watch, pause,
resume, replay, dlq, tickets) against real RabbitMQ, Postgres, partner stubs
and ess-push workers.

SURFACE_TESTS check what hms itself reads and writes (the Postgres contract of
deploy/hms.h); WORKER_TESTS check the workers' side of that contract end to end
(a paused worker holds deliveries, replay re-sends, dlq retry releases a key).
"""
import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (BIN, Bus, Partner, Worker, check, manifest, run, sql,  # noqa: E402
                    unique_id, wait_for_queue, wait_until)

HMS = os.path.join(BIN, "deploy", "hms")


# ---------------------------------------------------------------- helpers --

def hms(*args, env=None, timeout=60):
    """Run hms; returns the CompletedProcess (text stdout/stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([HMS] + list(args), capture_output=True, text=True, env=e,
                          timeout=timeout)


def hms_ok(*args, **kw):
    r = hms(*args, **kw)
    check(r.returncode == 0, "hms %s: exit %d, want 0\nstdout: %s\nstderr: %s"
          % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def hms_json(*args):
    return json.loads(hms_ok("--json", *args).stdout)


def hms_fails(code, *args, **kw):
    r = hms(*args, **kw)
    check(r.returncode == code, "hms %s: exit %d, want %d\nstdout: %s\nstderr: %s"
          % (" ".join(args), r.returncode, code, r.stdout, r.stderr))
    return r


def ps_rows(cid):
    return [r for r in hms_json("ess", "ps") if r["connector"] == cid]


def ps_state(cid):
    rows = ps_rows(cid)
    return rows[0]["state"] if len(rows) == 1 else rows


def record_manifest(cid, text):
    """What `hms ess deploy` records: a manifest version in ess_manifests."""
    sql("INSERT INTO ess_manifests (connector, sha, body) VALUES (%s, %s, %s)",
        cid, unique_id("sha"), text)


def journal(cid, rows):
    """Journal rows directly: (event_id, key, seconds ago)."""
    for event_id, key, ago in rows:
        sql("INSERT INTO ess_journal (connector, event_id, key, topic, body, received_ms,"
            " journaled_at) VALUES (%s, %s, %s, 't', '{}', 0,"
            " now() - %s * interval '1 second')", cid, event_id, key, ago)
    return [r[0] for r in sql("SELECT seq FROM ess_journal WHERE connector=%s ORDER BY seq",
                              cid)]


def controls(cid):
    rows = sql("SELECT paused, replay_from_seq, replay_to_seq, replay_key, replay_id,"
               " replay_done_id FROM ess_controls WHERE connector=%s", cid)
    return rows[0] if rows else None


def idem(rec):
    return {k.lower(): v for k, v in rec["headers"].items()}.get("idempotency-key")


def by_key(partner, key):
    return [json.loads(r["body"]) for r in partner.received()
            if json.loads(r["body"]).get("permit_id") == key]


class Setup:
    """A partner, a bus connection and an ess-push worker for a fresh connector."""

    def __init__(self, prefix, extra=""):
        self.cid = unique_id(prefix)
        self.topic = "it.%s.changed" % self.cid
        self.partner = Partner()
        self.bus = Bus()
        self.worker = Worker(manifest(self.cid, self.partner.url("/permits"), extra)).start()

    def __enter__(self):
        try:
            wait_for_queue(self.cid, worker=self.worker)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def publish(self, key, n, eid=None):
        self.bus.publish(self.topic, {"permit_id": key, "n": n},
                         message_id=eid or "%s-%s-%d" % (self.cid, key, n))

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            print("--- worker log (%s):\n%s" % (self.worker.log, self.worker.log_text()),
                  file=sys.stderr)
        if self.worker.alive():
            self.worker.kill9()
        self.bus.close()
        self.partner.stop()
        return False


# ---------------------------------------------------------- surface tests --

def test_usage_and_exit_codes():
    hms_fails(64, "ess", "ps", "--bogus")
    hms_fails(64, "ess", "status")
    hms_fails(64, "ess", "pause")
    hms_fails(64, "ess", "pause", "some-id", "--all")
    hms_fails(64, "ess", "replay", "some-id")
    hms_fails(64, "ess", "replay", "some-id", "--since", "30x")
    hms_fails(64, "ess", "replay", "some-id", "--since", "30m", "--from", "2026-01-01")
    hms_fails(64, "ess", "dlq", "poke", "some-id")
    hms_fails(64, "ess", "tickets", "some-id", "--limit", "0")
    hms_fails(64, "ess", "watch", "--count", "x")
    r = hms_fails(65, "ess", "status", unique_id("nobody"))
    check("unknown connector" in r.stderr, "status of an unknown id says so: %r" % r.stderr)
    hms_fails(65, "ess", "dlq", "list", unique_id("nobody"))
    hms_fails(65, "ess", "pause", unique_id("nobody"))
    down = {"ESS_PG_URL": "postgresql://ess@127.0.0.1:1/ess"}
    for args in (["ess", "ps"], ["ess", "status", "x1"], ["ess", "tickets", "x1"]):
        r = hms_fails(69, *args, env=down)
        check("127.0.0.1" in r.stderr and "1" in r.stderr, "names the database: %r" % r.stderr)
    hms_fails(69, "ess", "watch", "--count", "1",
              env={"ESS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"})
    check("usage:" in hms_ok("ess", "ps", "--help").stdout, "ps --help")


def test_ps_status_tickets_dlq_after_delivery_and_park():
    with Setup("it-ops", "tickets: all\n") as s:  # the default records failures only
        s.partner.mode(mode="ok", for_key={"field": "permit_id", "value": "BAD", "status": 400})
        s.publish("K1", 1)
        s.publish("BAD", 2)
        s.publish("K2", 3)
        wait_until(lambda: len(by_key(s.partner, "K1") + by_key(s.partner, "K2")) == 2, 20,
                   "the two good events")
        wait_until(lambda: sql("SELECT 1 FROM ess_dead_letters WHERE connector=%s", s.cid), 20,
                   "the 400 event parked")

        def delivered_heartbeat():
            rows = ps_rows(s.cid)
            return rows if len(rows) == 1 and rows[0]["backlog"] == 0 and \
                rows[0]["state"] in ("ok", "degraded") else None
        row = wait_until(delivered_heartbeat, 20, "ps to show the worker with no backlog")[0]
        check(row["instance"] and row["age_s"] is not None and row["age_s"] <= 3,
              "ps row: %r" % row)
        table = hms_ok("ess", "ps").stdout
        check(s.cid in table and "DELIVERED/S" in table and "LAG_P99_MS" in table,
              "ps table:\n%s" % table)

        st = hms_json("ess", "status", s.cid)
        check(st["connector"] == s.cid and len(st["instances"]) == 1, "status: %r" % st)
        check(st["dead_letters"].get("parked") == 1, "status dead letters: %r" % st)
        check(st["paused"] is False and st["journal_events"] == 3, "status: %r" % st)
        wait_until(lambda: hms_json("ess", "status", s.cid)["delivered_seq"] ==
                   sql("SELECT max(seq) FROM ess_journal WHERE connector=%s", s.cid)[0][0],
                   10, "status to show the offset past every event")
        text = hms_ok("ess", "status", s.cid).stdout
        check("parked 1" in text and "paused:" in text, "status text:\n%s" % text)

        dlq = hms_json("ess", "dlq", "list", s.cid)
        check(len(dlq) == 1 and dlq[0]["key"] == "BAD" and dlq[0]["status"] == "parked",
              "dlq list: %r" % dlq)
        check(dlq[0]["last_status"] == 400 and "400" in dlq[0]["reason"], "dlq row: %r" % dlq)
        check("BAD" in hms_ok("ess", "dlq", "list", s.cid).stdout, "dlq list table")

        tickets = wait_until(lambda: (lambda t: t if len(t) == 3 else None)(
            hms_json("ess", "tickets", s.cid)), 20, "three tickets")
        outcomes = {t["key"]: t["outcome"] for t in tickets}
        check(outcomes == {"K1": "delivered", "BAD": "parked", "K2": "delivered"},
              "ticket outcomes: %r" % tickets)
        newest_first = [r[0] for r in sql("SELECT seq FROM ess_tickets WHERE connector=%s"
                                          " ORDER BY seq DESC, id DESC", s.cid)]
        check([t["seq"] for t in tickets] == newest_first,
              "tickets, newest change first: %r" % tickets)
        bad = hms_json("ess", "tickets", s.cid, "--key", "BAD")
        check(len(bad) == 1 and bad[0]["last_status"] == 400, "tickets --key: %r" % bad)
        check(len(hms_json("ess", "tickets", s.cid, "--limit", "1")) == 1, "tickets --limit")

        r = hms_fails(65, "ess", "dlq", "drop", s.cid, "--event", "no-such-event")
        check("no open dead letter" in r.stderr, "names the missing event: %r" % r.stderr)
        out = hms_ok("ess", "dlq", "drop", s.cid, "--event", dlq[0]["event_id"]).stdout
        check("1 event" in out, "drop prints the count: %r" % out)
        check(hms_json("ess", "dlq", "list", s.cid) == [], "no open dead letter after drop")
        every = hms_json("ess", "dlq", "list", s.cid, "--all")
        check([d["status"] for d in every] == ["dropped"], "dlq list --all: %r" % every)
        check(s.worker.stop() == 0, "worker exits 0 on SIGTERM")


def test_tickets_default_lists_first_attempt_deliveries():
    """tickets: failures (the default) records only K2's retries and BAD's park;
    K1, delivered at its first attempt, is listed from the journal and the offset."""
    with Setup("it-tix") as s:
        s.partner.mode(mode="ok", for_key={"field": "permit_id", "value": "BAD", "status": 400})
        s.publish("K1", 1)
        s.publish("BAD", 2)
        wait_until(lambda: sql("SELECT 1 FROM ess_dead_letters WHERE connector=%s", s.cid), 20,
                   "the 400 event parked")
        stored = wait_until(lambda: sql("SELECT key, outcome FROM ess_tickets"
                                        " WHERE connector=%s", s.cid), 10, "the park's ticket")
        check(stored == [("BAD", "parked")], "only the failure is stored: %r" % stored)
        tickets = wait_until(lambda: (lambda t: t if len(t) == 2 else None)(
            hms_json("ess", "tickets", s.cid)), 10, "both changes listed")
        got = [(t["key"], t["outcome"], t["attempts"]) for t in tickets]
        check(got == [("BAD", "parked", 1), ("K1", "delivered", 1)], "tickets: %r" % tickets)


def test_ps_down_after_kill9_and_stopped_after_sigterm():
    with Setup("it-ops-down") as s:
        wait_until(lambda: ps_state(s.cid) == "ok", 20, "ps state ok")
        s.worker.kill9()
        wait_until(lambda: ps_state(s.cid) == "DOWN", 15,
                   "ps to show DOWN after 3 missed heartbeats (heartbeat_sec: 1)", 0.3)
        check("DOWN" in hms_fails(69, "ess", "status", s.cid).stdout,
              "status shows DOWN too, and exits 69 (nothing heartbeats: the liveness probe)")
        s.worker.start()  # a new instance (new pid) supersedes the dead one
        wait_until(lambda: ps_state(s.cid) == "ok", 20, "the restarted instance alone in ps")
        check(len([r for r in hms_json("ess", "ps", "--all") if r["connector"] == s.cid]) == 2,
              "ps --all keeps the dead instance")
        check(s.worker.stop() == 0, "SIGTERM exits 0")
        wait_until(lambda: ps_state(s.cid) == "STOPPED", 10, "ps to show STOPPED, not DOWN")
        wait_until(lambda: ps_rows(s.cid)[0]["age_s"] > 3, 10,
                   "the last heartbeat to be older than 3 x heartbeat_sec", 0.3)
        check(ps_state(s.cid) == "STOPPED", "a gracefully stopped worker never turns DOWN")


def test_ps_never_for_a_recorded_manifest():
    cid = unique_id("it-ops-never")
    record_manifest(cid, manifest(cid, "http://127.0.0.1:9/x"))
    check(ps_state(cid) == "NEVER", "ps: %r" % ps_rows(cid))
    # Nothing heartbeats: status still reports, and exits 69 (the liveness probe's cue).
    st = json.loads(hms_fails(69, "--json", "ess", "status", cid).stdout)
    check(st["instances"][0]["state"] == "NEVER" and st["manifest_sha"], "status: %r" % st)


def test_pause_resume_flip_controls():
    cid = unique_id("it-ops-pause")
    record_manifest(cid, manifest(cid, "http://127.0.0.1:9/x"))
    check(controls(cid) is None, "no control row yet")
    out = hms_ok("ess", "pause", cid).stdout
    check("%s: paused" % cid in out, "pause output: %r" % out)
    check(controls(cid)[0] is True, "paused in ess_controls")
    check("already paused" in hms_ok("ess", "pause", cid).stdout, "pause twice says so")
    check(json.loads(hms_fails(69, "--json", "ess", "status", cid).stdout)["paused"] is True,
          "status shows paused")
    out = hms_ok("ess", "resume", cid).stdout
    check("%s: resumed" % cid in out, "resume output: %r" % out)
    check(controls(cid)[0] is False, "resumed in ess_controls")
    rows = {r["connector"]: r for r in hms_json("ess", "pause", "--all")}
    check(rows.get(cid, {}).get("paused") is True and rows[cid]["changed"] is True,
          "pause --all includes every known connector: %r" % rows.get(cid))
    check(controls(cid)[0] is True, "pause --all wrote the row")
    hms_ok("ess", "resume", "--all")
    check(controls(cid)[0] is False, "resume --all")
    still = sql("SELECT count(*) FROM ess_controls WHERE paused")[0][0]
    check(still == 0, "resume --all left %d paused" % still)


def test_replay_dry_run_counts_and_request():
    cid = unique_id("it-ops-replay")
    seqs = journal(cid, [("a1", "A", 3000), ("b1", "B", 2400), ("a2", "A", 1200),
                         ("b2", "B", 60), ("a3", "A", 30)])
    dry = hms_json("ess", "replay", cid, "--since", "30m", "--dry-run")
    check((dry["events"], dry["keys"]) == (3, 2), "--since 30m: %r" % dry)
    check((dry["from_seq"], dry["to_seq"]) == (seqs[2], None), "seqs: %r / %r" % (dry, seqs))
    check(controls(cid) is None, "dry run changes nothing")
    out = hms_ok("ess", "replay", cid, "--since", "30m", "--key", "A", "--dry-run").stdout
    check("2 events, 1 keys" in out and "nothing changed" in out, "dry run text: %r" % out)
    frm, to = sql("SELECT to_char(now() - interval '55 minutes', 'YYYY-MM-DD\"T\"HH24:MI:SSOF'),"
                  " to_char(now() - interval '30 minutes', 'YYYY-MM-DD\"T\"HH24:MI:SSOF')")[0]
    dry = hms_json("ess", "replay", cid, "--from", frm, "--to", to, "--dry-run")
    check((dry["events"], dry["keys"], dry["from_seq"], dry["to_seq"]) ==
          (2, 2, seqs[0], seqs[1]), "--from/--to: %r" % dry)
    r = hms_fails(64, "ess", "replay", cid, "--from", "yesterday-ish")
    check("--from" in r.stderr, "bad time named: %r" % r.stderr)
    r = hms_fails(65, "ess", "replay", cid, "--since", "10s")
    check("no journaled events" in r.stderr, "empty window refused: %r" % r.stderr)

    out = hms_ok("ess", "replay", cid, "--from", frm, "--to", to, "--key", "B").stdout
    check(out.startswith("replay #1 requested: 1 events, 1 keys"), "replay output: %r" % out)
    c = controls(cid)
    check(c[1:5] == (seqs[1], seqs[1], "B", 1), "ess_controls after replay: %r" % (c,))
    out = hms_ok("ess", "replay", cid, "--since", "30m").stdout
    check(out.startswith("replay #2 requested: 3 events, 2 keys, seq %d..%d" % (seqs[2], seqs[4])),
          "second replay: %r" % out)
    check(controls(cid)[1:5] == (seqs[2], None, None, 2), "open-ended: %r" % (controls(cid),))


def test_replay_refused_outside_replay_window():
    cid = unique_id("it-ops-window")
    record_manifest(cid, manifest(cid, "http://127.0.0.1:9/x", "replay_window: 1m\n"))
    journal(cid, [("w1", "A", 600), ("w2", "A", 20)])
    r = hms_fails(65, "ess", "replay", cid, "--since", "30m")
    check("replay_window 1m" in r.stderr and "refused" in r.stderr,
          "refusal names the window: %r" % r.stderr)
    hms_fails(65, "ess", "replay", cid, "--since", "30m", "--dry-run")
    check(controls(cid) is None, "a refused replay changes nothing")
    dry = hms_json("ess", "replay", cid, "--since", "45s", "--dry-run")
    check(dry["events"] == 1, "inside the window: %r" % dry)


def test_watch_receives_heartbeat():
    with Setup("it-ops-watch") as s:
        r = hms_ok("ess", "watch", "--count", "1", "--timeout", "20", "--json", timeout=30)
        lines = r.stdout.strip().splitlines()
        check(len(lines) == 1, "--count 1 prints one line: %r" % r.stdout)
        msg = json.loads(lines[0])
        check(msg["routing_key"].startswith("ess."), "an ops message: %r" % msg)

        def heartbeat_line():
            out = hms_ok("ess", "watch", "--count", "3", "--timeout", "10", timeout=30).stdout
            return [ln for ln in out.splitlines() if "ess.heartbeat.%s" % s.cid in ln]
        line = wait_until(heartbeat_line, 30, "a heartbeat line of the worker")[0]
        check(" ok " in line and "delivered=" in line and "backlog=" in line,
              "heartbeat line: %r" % line)

        start = time.monotonic()
        s.worker.stop()
        hms_ok("ess", "watch", "--timeout", "1", timeout=30)
        check(time.monotonic() - start < 15, "--timeout 1 ends the watch")

        s.worker.start()
        p = subprocess.Popen([HMS, "ess", "watch"], stdout=subprocess.PIPE, text=True)
        try:
            ready, _, _ = select.select([p.stdout], [], [], 20)
            check(ready and p.stdout.readline(), "watch printed a line")
            p.send_signal(signal.SIGINT)
            check(p.wait(10) == 0, "SIGINT ends watch with 0")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


SURFACE_TESTS = [
    test_usage_and_exit_codes,
    test_ps_status_tickets_dlq_after_delivery_and_park,
    test_tickets_default_lists_first_attempt_deliveries,
    test_ps_down_after_kill9_and_stopped_after_sigterm,
    test_ps_never_for_a_recorded_manifest,
    test_pause_resume_flip_controls,
    test_replay_dry_run_counts_and_request,
    test_replay_refused_outside_replay_window,
    test_watch_receives_heartbeat,
]


# ----------------------------------------------------------- worker tests --

def test_pause_holds_deliveries_resume_drains():
    with Setup("it-ops-hold") as s:
        hms_ok("ess", "pause", s.cid)
        wait_until(lambda: ps_state(s.cid) == "paused", 10, "the worker to heartbeat paused")
        for n in range(3):
            s.publish("P1", n)
        wait_until(lambda: (lambda r: r and r[0]["backlog"] == 3)(ps_rows(s.cid)), 15,
                   "a paused heartbeat with the 3 events in its backlog")
        check(s.partner.count() == 0, "a paused worker delivers nothing: %r"
              % s.partner.bodies())
        hms_ok("ess", "resume", s.cid)
        wait_until(lambda: len(by_key(s.partner, "P1")) == 3, 15, "resume to drain the backlog")
        check([b["n"] for b in by_key(s.partner, "P1")] == [0, 1, 2], "in order")
        wait_until(lambda: ps_state(s.cid) == "ok", 10, "state ok after resume")


def test_replay_resends_with_same_idempotency_keys():
    with Setup("it-ops-resend") as s:
        s.publish("R1", 1)
        s.publish("R2", 2)
        wait_until(lambda: s.partner.count() == 2, 20, "the first deliveries")
        first = sorted(idem(r) for r in s.partner.received())
        wait_until(lambda: hms_json("ess", "status", s.cid)["backlog"] == 0, 10, "offset saved")
        out = hms_ok("ess", "replay", s.cid, "--since", "10m").stdout
        check("2 events" in out, "replay output: %r" % out)
        wait_until(lambda: s.partner.count() == 4, 20, "the replayed deliveries")
        again = sorted(idem(r) for r in s.partner.received()[2:])
        check(again == first, "same Idempotency-Key: %r vs %r" % (again, first))
        wait_until(lambda: (lambda c: c[4] == c[5])(controls(s.cid)), 10, "replay_done_id")
        s.publish("R3", 3)
        wait_until(lambda: by_key(s.partner, "R3"), 20, "live delivery after the replay")
        check(s.partner.count() == 5, "after the replay, R3 alone is new: %r"
              % s.partner.bodies())


def test_dlq_retry_delivers_parked_then_held_in_order():
    with Setup("it-ops-retry") as s:
        s.partner.mode(mode="ok", for_key={"field": "permit_id", "value": "Q", "status": 400})
        s.publish("Q", 1)
        wait_until(lambda: hms_json("ess", "dlq", "list", s.cid), 20, "Q/1 parked")
        s.publish("Q", 2)
        s.publish("OTHER", 3)
        wait_until(lambda: by_key(s.partner, "OTHER"), 20, "another key still delivered")
        dlq = wait_until(lambda: (lambda d: d if len(d) == 2 else None)(
            hms_json("ess", "dlq", "list", s.cid)), 20, "Q/2 held behind Q/1")
        check([d["status"] for d in dlq] == ["parked", "held"], "dlq: %r" % dlq)
        check([b["n"] for b in by_key(s.partner, "Q")] == [1], "held event not sent: %r"
              % by_key(s.partner, "Q"))
        s.partner.mode(mode="ok")
        out = hms_ok("ess", "dlq", "retry", s.cid).stdout
        check("1 parked" in out, "retry output: %r" % out)
        wait_until(lambda: len(by_key(s.partner, "Q")) == 3, 20, "Q/1 and then Q/2 delivered")
        check([b["n"] for b in by_key(s.partner, "Q")] == [1, 1, 2], "order: %r"
              % by_key(s.partner, "Q"))
        wait_until(lambda: hms_json("ess", "dlq", "list", s.cid) == [], 10, "no open row")
        every = hms_json("ess", "dlq", "list", s.cid, "--all")
        check([d["status"] for d in every] == ["delivered", "delivered"], "--all: %r" % every)


def test_replay_window_after_undelivered_backlog_loses_nothing():
    """A replay whose window starts past events not yet delivered (here: held
    by a pause) must not move the offset over them."""
    with Setup("it-ops-gap") as s:
        wait_until(lambda: ps_rows(s.cid), 10, "the worker's first heartbeat to be recorded")
        hms_ok("ess", "pause", s.cid)
        wait_until(lambda: ps_state(s.cid) == "paused", 10, "the worker to heartbeat paused")
        s.publish("G1", 1)
        s.publish("G2", 2)
        wait_until(lambda: sql("SELECT count(*) FROM ess_journal WHERE connector=%s",
                               s.cid)[0][0] == 2, 10, "two events journaled")
        since = sql("SELECT to_char(now(), 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF')")[0][0]
        s.publish("G3", 3)
        wait_until(lambda: sql("SELECT count(*) FROM ess_journal WHERE connector=%s",
                               s.cid)[0][0] == 3, 10, "the third event journaled")
        out = hms_ok("ess", "replay", s.cid, "--from", since).stdout
        check("1 events" in out, "the window holds G3 alone: %r" % out)
        wait_until(lambda: (lambda c: c[4] == c[5])(controls(s.cid)), 10, "replay applied")
        hms_ok("ess", "resume", s.cid)
        wait_until(lambda: {b["permit_id"] for b in s.partner.bodies()} == {"G1", "G2", "G3"},
                   15, "every event delivered after resume (none skipped by the replay)")


WORKER_TESTS = [
    test_pause_holds_deliveries_resume_drains,
    test_replay_resends_with_same_idempotency_keys,
    test_dlq_retry_delivers_parked_then_held_in_order,
    test_replay_window_after_undelivered_backlog_loses_nothing,
]

if __name__ == "__main__":
    run(SURFACE_TESTS + WORKER_TESTS)
