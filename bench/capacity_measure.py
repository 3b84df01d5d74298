#!/usr/bin/python3
"""capacity_measure.py -- what one journaled event costs Postgres.

Runs one ess-push against a private stack (ESS_AMQP_URL, ESS_PG_URL, e.g. from
`deploy/dev/stack.sh up DIR` and `set -a; . DIR/env`) and the bench sink, and
for each scenario measures over N events: WAL bytes (pg_current_wal_lsn()
difference), rows inserted/updated/deleted per table (pg_stat_user_tables),
transactions (pg_stat_database.xact_commit), and the journal's on-disk growth
(pg_total_relation_size). Scenarios:
  burst  N events published at full speed into a running worker (bursts of up
         to `prefetch` events per journal transaction)
  paced  events at a steady low rate (each event mostly its own transaction)
Nothing else should use the stack meanwhile. Prints a markdown table and
writes JSON (--json FILE). Used for docs/capacity.md.

  /usr/bin/python3 bench/capacity_measure.py --bin-dir BUILD [--events 20000]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import psycopg2

TABLES = ("ess_journal", "ess_offsets", "ess_heartbeats", "ess_tickets", "ess_controls",
          "ess_dead_letters", "ess_audit")


def q(sql, *args):
    with psycopg2.connect(os.environ["ESS_PG_URL"]) as c, c.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def snapshot():
    q("SELECT pg_stat_clear_snapshot()")
    lsn = q("SELECT pg_current_wal_lsn()::text")[0][0]
    rows = dict((t, (i, u, d)) for t, i, u, d in q(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)", list(TABLES)))
    xact = q("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")[0][0]
    size, audit = q("SELECT pg_total_relation_size('ess_journal'),"
                    " pg_total_relation_size('ess_audit')")[0]
    return {"lsn": lsn, "rows": rows, "xact": xact, "journal_bytes": size, "audit_bytes": audit}


def diff(a, b):
    wal = q("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", b["lsn"], a["lsn"])[0][0]
    rows = {}
    for t in TABLES:
        x, y = a["rows"].get(t, (0, 0, 0)), b["rows"].get(t, (0, 0, 0))
        rows[t] = tuple(y[k] - x[k] for k in range(3))
    return {"wal": float(wal), "rows": rows, "xact": b["xact"] - a["xact"],
            "journal_bytes": b["journal_bytes"] - a["journal_bytes"],
            "audit_bytes": b["audit_bytes"] - a["audit_bytes"]}


class Sink:
    def __init__(self, bin_dir):
        self.proc = subprocess.Popen([os.path.join(bin_dir, "bench", "ess-bench-sink"),
                                      "--port", "0"], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split()[1])

    def count(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/_count" % self.port, timeout=5) as r:
            return json.loads(r.read())["count"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    sys.exit("capacity_measure: timed out waiting for %s" % what)


def heartbeats(cid):
    """The worker's heartbeat rows; 0 before its migrations created the table."""
    try:
        return q("SELECT count(*) FROM ess_heartbeats WHERE connector = %s", cid)[0][0]
    except psycopg2.errors.UndefinedTable:
        return 0


def scenario(args, sink, name, n, rate):
    cid = "cap-%s-%d" % (name, os.getpid())
    tmp = tempfile.mkdtemp(prefix="ess-capacity-")
    path = os.path.join(tmp, "m.yml")
    with open(path, "w") as f:
        f.write("id: %s\nkind: push\nlisten_topic: bench.%s\nkey: permit_id\n"
                "target_url: http://127.0.0.1:%d/partner\nheartbeat_sec: 5\nmax_in_flight: 16\n"
                "prefetch: 500\n" % (cid, cid, sink.port))
    log = open(os.path.join(tmp, "worker.log"), "w")
    worker = subprocess.Popen([os.path.join(args.bin_dir, "workers", "push", "ess-push"),
                               "--manifest", path], stdout=log, stderr=log)
    try:
        wait(lambda: heartbeats(cid) > 0, 30, "the worker's first heartbeat")
        base = sink.count()
        time.sleep(2)  # let the statistics of the start-up settle
        before = snapshot()
        t0 = time.monotonic()
        cmd = [os.path.join(args.bin_dir, "bench", "ess-bench-publish"), "--routing-key",
               "bench." + cid, "--count", str(n), "--id-prefix", cid]
        if rate:
            cmd += ["--rate", str(rate)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=600)
        wait(lambda: sink.count() - base >= n, 600, "%d deliveries" % n)
        seconds = time.monotonic() - t0
        wait(lambda: q("SELECT coalesce((SELECT delivered_seq FROM ess_offsets WHERE connector"
                       " = %s), -1) >= (SELECT max(seq) FROM ess_journal WHERE connector = %s)",
                       cid, cid)[0][0], 30, "the offset past the last event")
        # A busy backend flushes its statistics at most once a second, an idle
        # one within 10 s (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): wait until
        # they count every journal and audit insert of the run (the offset
        # above commits with the audit rows: those of the run are all in).
        audit_rows = q("SELECT count(*) FROM ess_audit WHERE chain = %s", cid)[0][0]

        def counted():
            rows = diff(before, snapshot())["rows"]
            return rows["ess_journal"][0] >= n and rows["ess_audit"][0] >= audit_rows
        wait(counted, 20, "the statistics to count %d journal and %d audit inserts"
             % (n, audit_rows))
        d = diff(before, snapshot())
        d.update({"scenario": name, "events": n, "rate": rate, "seconds": seconds,
                  "journal_rows": q("SELECT count(*) FROM ess_journal WHERE connector = %s",
                                    cid)[0][0]})
        return d
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True, help="build directory (ess-push, bench/)")
    ap.add_argument("--events", type=int, default=20000, help="events in the burst scenario")
    ap.add_argument("--paced-rate", type=int, default=100, help="events/s in the paced scenario")
    ap.add_argument("--paced-seconds", type=int, default=20)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    sink = Sink(args.bin_dir)
    try:
        res = [scenario(args, sink, "burst", args.events, 0),
               scenario(args, sink, "paced", args.paced_rate * args.paced_seconds,
                        args.paced_rate)]
    finally:
        sink.stop()
    print("| scenario | events | WAL bytes/event | journal bytes/event | audit bytes/event |"
          " transactions/event | rows written/event (journal ins, audit ins, offsets upd,"
          " heartbeats upd, tickets ins) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in res:
        n = r["events"]
        rw = r["rows"]
        print("| %s%s | %d | %.0f | %.0f | %.0f | %.3f | %.3f (%.3f, %.3f, %.4f, %.4f, %.4f) |" % (
            r["scenario"], " %d/s" % r["rate"] if r["rate"] else "", n, r["wal"] / n,
            r["journal_bytes"] / n, r["audit_bytes"] / n, r["xact"] / n,
            sum(sum(v) for v in rw.values()) / n, rw["ess_journal"][0] / n,
            rw["ess_audit"][0] / n, rw["ess_offsets"][1] / n, rw["ess_heartbeats"][1] / n,
            rw["ess_tickets"][0] / n))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
