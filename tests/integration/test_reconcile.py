#!/usr/bin/env python3
"""ess-reconcile against the real broker, Postgres, ess-push and a partner
stub that keeps what it is sent (and lists it at /_listing).

HMS changes go out through ess-push; then differences are planted on the
partner (a changed field, a deleted record, a record HMS never had). The
one-shot run must report exactly those -- report file, stdout summary, the
ess.reconcile.<id> message -- and --repair must queue HMS's versions on
ess.<id>, so the running push worker delivers them and a second run finds
only the record HMS lacks (which nothing can repair from HMS). A second test
reads the partner page by page (records_path + next_path) and the HMS side
from hms_snapshot_url instead of Postgres.
"""
import json
import os
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import esslib
from esslib import check, wait_until

REC_BIN = os.path.join(esslib.BIN, "workers", "reconcile", "ess-reconcile")
VALUES = "values: {status: {OPEN: \"O\", CLOSED: \"C\"}}\n"


def reconcile(manifest_path, *args):
    r = subprocess.run([REC_BIN, "--manifest", manifest_path] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    return r


def run_ok(manifest_path, *args):
    report = tempfile.mktemp(prefix="ess-rec-", suffix=".json")
    r = reconcile(manifest_path, "--report", report, *args)
    check(r.returncode == 0, "ess-reconcile exited %d\nstdout:\n%s\nstderr:\n%s"
          % (r.returncode, r.stdout, r.stderr))
    with open(report) as f:
        doc = json.load(f)
    os.unlink(report)
    check(not os.path.exists(report + ".part"), "the .part file was left behind")
    return doc, r.stdout


def diffs(doc):
    out = {}
    for d in doc["differences"]:
        out.setdefault(d["kind"], []).append(d)
    return out


def plant(partner):
    """P-2: status changed on the partner; P-3 deleted there; P-9 only there."""
    rows = {r["PERMIT_NUM"]: r for r in partner.listing()}
    partner.edit(dict(rows["P-2"], status="C"))
    partner.edit(delete="P-3")
    partner.edit({"PERMIT_NUM": "P-9", "status": "O", "street": "Elm"})


def check_planted(doc):
    d = diffs(doc)
    mm = d.get("mismatch", [])
    check([x["key"] for x in mm] == ["P-2"] and
          mm[0]["fields"] == [{"field": "status", "hms": "O", "partner": "C"}],
          "mismatches: %r" % mm)
    check([x["key"] for x in d.get("missing_on_partner", [])] == ["P-3"],
          "missing on partner: %r" % d.get("missing_on_partner"))
    check([x["key"] for x in d.get("missing_in_hms", [])] == ["P-9"],
          "missing in HMS: %r" % d.get("missing_in_hms"))
    s = doc["summary"]
    want = {"hms_records": 5, "partner_records": 5, "matched": 3, "mismatched": 1,
            "missing_on_partner": 1, "missing_in_hms": 1}
    check({k: s[k] for k in want} == want, "summary %r" % s)


def test_planted_differences_found_and_repaired():
    bus = esslib.Bus()
    partner = esslib.Partner()
    partner.store("PERMIT_NUM")
    cid = esslib.unique_id("it-rec")
    text = esslib.manifest(cid, partner.url("/permits"),
                           "rename: {permit_id: PERMIT_NUM}\n" + VALUES +
                           "reconcile_url: %s\n" % partner.url("/_listing"))
    push = esslib.Worker(text)
    ops = bus.listen(esslib.OPS, "ess.reconcile." + cid)
    try:
        push.start()
        esslib.wait_for_queue(cid, worker=push)
        for i in range(1, 6):
            bus.publish("it.%s.changed" % cid, {"permit_id": "P-%d" % i, "status": "OPEN",
                                                "street": "Main %d" % i})
        wait_until(lambda: len(partner.listing()) == 5, 15, "5 records on the partner")
        plant(partner)
        doc, out = run_ok(push.manifest)
        check_planted(doc)
        check("field mismatches" in out and "missing on partner" in out and
              "status: 1" in out, "stdout summary:\n" + out)
        (rk, body), = wait_until(lambda: bus.drain(ops), 10, "ess.reconcile." + cid)
        msg = json.loads(body)
        check(msg["mismatched"] == 1 and msg["missing_on_partner"] == 1 and
              msg["missing_in_hms"] == 1 and msg["connector"] == cid, "ops message %r" % msg)
        check(partner.count() == 5, "a run without --repair delivered something")

        doc, out = run_ok(push.manifest, "--repair")
        check(doc["summary"]["repaired"] == 2, "repaired %r" % doc["summary"])
        wait_until(lambda: partner.count() == 7, 15, "the 2 repairs delivered")
        repaired = sorted((b["PERMIT_NUM"], b["status"]) for b in partner.bodies()[5:])
        check(repaired == [("P-2", "O"), ("P-3", "O")], "repairs delivered: %r" % repaired)
        wait_until(lambda: bus.drain(ops), 10, "ess.reconcile after --repair")

        doc, out = run_ok(push.manifest)
        d = diffs(doc)
        check(set(d) == {"missing_in_hms"} and doc["summary"]["matched"] == 5,
              "after repair: %r" % doc)
    except Exception:
        print("push log:\n" + push.log_text())
        raise
    finally:
        push.stop()
        partner.stop()
        bus.close()


class Snapshot:
    """HMS's side as a JSON array served over HTTP."""

    def __init__(self, records):
        body = json.dumps(records).encode()

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/snapshot" % self.srv.server_address[1]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_paged_listing_and_snapshot():
    partner = esslib.Partner()
    partner.store("PERMIT_NUM")
    hms = [{"permit_id": "P-%d" % i, "status": "OPEN", "street": "Main %d" % i}
           for i in range(1, 6)]
    for h in hms:
        partner.edit({"PERMIT_NUM": h["permit_id"], "status": "O", "street": h["street"]})
    plant(partner)
    snap = Snapshot(hms)
    cid = esslib.unique_id("it-rec")
    man = esslib.Worker(esslib.manifest(
        cid, partner.url("/permits"),
        "rename: {permit_id: PERMIT_NUM}\n" + VALUES +
        "reconcile_url: %s\nrecords_path: data.items\nnext_path: links.next\n"
        "hms_snapshot_url: %s\n" % (partner.url("/_listing?per=2"), snap.url)))
    bad = esslib.Worker(esslib.manifest(cid, partner.url("/p"),
                                        "reconcile_url: %s\n" % partner.url("/_count")))
    try:
        doc, out = run_ok(man.manifest)
        check_planted(doc)
        check(doc["hms_source"] == snap.url, "hms_source %r" % doc["hms_source"])
        # A listing that is not an array: exit 65, the reason, no report left.
        r = reconcile(bad.manifest, "--report", os.path.join(tempfile.gettempdir(), cid))
        check(r.returncode == 65 and "expected a JSON array" in r.stderr,
              "not an array: %d %s" % (r.returncode, r.stderr))
    finally:
        snap.stop()
        partner.stop()


def test_process_contract():
    """--help, --version, sysexits codes, --check on the shipped FHWA manifest."""
    r = subprocess.run([REC_BIN, "--help"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "--repair" in r.stdout and "--report" in r.stdout,
          "help: %d %r" % (r.returncode, r.stdout))
    r = subprocess.run([REC_BIN, "--version"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.startswith("ess-reconcile "), "version %r" % r.stdout)
    for args in ([], ["--bogus"], ["--manifest", "x.yml", "--report"]):
        r = subprocess.run([REC_BIN] + args, capture_output=True, text=True, timeout=30)
        check(r.returncode == 64, "%r: exit %d, want 64" % (args, r.returncode))
    fhwa = os.path.join(esslib.SRC, "manifests", "fhwa-bridges.yml")
    env = dict(os.environ, FHWA_SFTP_USER="u", FHWA_SFTP_PASSWORD="p")
    r = subprocess.run([REC_BIN, "--check", "--manifest", fhwa], capture_output=True, text=True,
                       timeout=30, env=env)
    check(r.returncode == 0 and r.stdout.startswith("manifest OK: fhwa-bridges"),
          "check: %d %r %s" % (r.returncode, r.stdout, r.stderr))
    cid = esslib.unique_id("it-rec")
    no_url = esslib.Worker(esslib.manifest(cid, "http://127.0.0.1:1/p"))
    r = reconcile(no_url.manifest)
    check(r.returncode == 78 and "reconcile_url" in r.stderr, "no reconcile_url: %d %s"
          % (r.returncode, r.stderr))
    down = esslib.Worker(esslib.manifest(cid, "http://127.0.0.1:1/p",
                                         "reconcile_url: http://127.0.0.1:1/listing\n"))
    r = reconcile(down.manifest, "--report", os.path.join(tempfile.gettempdir(), cid + ".json"))
    check(r.returncode == 69 and "127.0.0.1:1/listing" in r.stderr,
          "partner down: %d %s" % (r.returncode, r.stderr))
    check(not os.path.exists(os.path.join(tempfile.gettempdir(), cid + ".json.part")),
          "a failed run left its .part report")


class Trickle:
    """A listing that never ends: '[' and then one record every 50 ms."""

    def __init__(self):
        self.started = threading.Event()
        self.stop_ev = threading.Event()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"[")
                i = 0
                while not outer.stop_ev.wait(0.05) and i < 1200:
                    self.wfile.write(b'%s{"PERMIT_NUM":"T-%d"}' % (b"," if i else b"", i))
                    self.wfile.flush()
                    i += 1
                    outer.started.set()

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/slow" % self.srv.server_address[1]

    def stop(self):
        self.stop_ev.set()
        self.srv.shutdown()
        self.srv.server_close()


def test_sigterm_abandons_the_run():
    """A CronJob deadline: SIGTERM mid-listing exits 75, leaves no .part, publishes nothing."""
    bus = esslib.Bus()
    slow = Trickle()
    cid = esslib.unique_id("it-rec")
    man = esslib.Worker(esslib.manifest(cid, "http://127.0.0.1:1/p",
                                        "rename: {permit_id: PERMIT_NUM}\n"
                                        "reconcile_url: %s\n" % slow.url))
    ops = bus.listen(esslib.OPS, "ess.reconcile." + cid)
    report = os.path.join(tempfile.gettempdir(), cid + ".json")
    proc = subprocess.Popen([REC_BIN, "--manifest", man.manifest, "--report", report],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        check(slow.started.wait(15), "the listing was never requested")
        wait_until(lambda: os.path.exists(report + ".part"), 10, "the report being written")
        proc.terminate()
        out, err = proc.communicate(timeout=15)
        check(proc.returncode == 75 and "interrupted" in err,
              "after SIGTERM: exit %r\n%s" % (proc.returncode, err))
        check(not os.path.exists(report + ".part") and not os.path.exists(report),
              "an interrupted run left a report behind")
        check(bus.drain(ops) == [], "an interrupted run published a summary")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        slow.stop()
        bus.close()


if __name__ == "__main__":
    esslib.run([test_planted_differences_found_and_repaired, test_paged_listing_and_snapshot,
                test_process_contract, test_sigterm_abandons_the_run])
