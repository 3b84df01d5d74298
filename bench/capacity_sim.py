#!/usr/bin/python3
"""capacity_sim.py -- replay a recorded event-rate curve against the ESS
capacity model (docs/capacity.md) and say where the fleet queues up.

Input: a CSV with a header `t_sec,events_per_sec` (the fleet's total rate,
piecewise constant from each row's t_sec to the next; the last row lasts
--tail seconds). The events are spread evenly over --connectors connectors,
each run by --replicas workers.

The model (every figure measured, see docs/capacity.md; override with flags):
  a worker delivers at most --worker-eps events/s (bench drain), costs
  --cpu-us of CPU per event and --rss-mib of memory;
  Postgres journals at most --pg-eps events/s in total (the journal fill
  rate of the bench); each event costs --wal-bytes of WAL (per-event commits
  at low rates, --wal-bytes-burst when backlogged) and --journal-bytes on disk
  while it is kept (--replay-window-days).
A connector whose rate exceeds what it can take builds a backlog in RabbitMQ /
the journal, drained once the rate falls again.

Prints a summary (peak backlog, time queued, drain time, peak cores, WAL, journal
size); --steps FILE writes every step as CSV.

  /usr/bin/python3 bench/capacity_sim.py curve.csv --connectors 400
"""
import argparse
import collections
import csv
import sys

MODEL = {  # docs/capacity.md, "Measured"
    "worker_eps": 12500.0,     # ess-push drain, events/s per worker
    "cpu_us": 30.0,            # CPU µs per delivered event (27 measured)
    "rss_mib": 11.7,           # peak RSS per worker
    "pg_eps": 12100.0,         # journal fill, events/s (one Postgres)
    "wal_bytes": 650.0,        # WAL per event, paced (593 measured + ~50 for random event ids)
    "wal_bytes_burst": 600.0,  # WAL per event in bursts (backlog; 542 measured + ~50)
    "journal_bytes": 430.0,    # ess_journal on disk per event (70-byte body, indexes; 350
                               # measured + ~80 for 36-character UUID event ids)
    "audit_bytes": 66.0,       # ess_audit per delivery attempt, random UUID event ids (kept)
    "replay_window_days": 7.0,
}


def read_curve(path):
    """[(t_sec, events_per_sec)] sorted by time; errors name the line."""
    points = []
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        if rows.fieldnames is None or not {"t_sec", "events_per_sec"} <= set(rows.fieldnames):
            raise ValueError("%s: header must hold t_sec,events_per_sec" % path)
        for i, row in enumerate(rows, start=2):
            try:
                t, r = float(row["t_sec"]), float(row["events_per_sec"])
            except (TypeError, ValueError):
                raise ValueError("%s:%d: not numbers: %r" % (path, i, row))
            if r < 0 or (points and t <= points[-1][0]):
                raise ValueError("%s:%d: times must increase and rates be >= 0" % (path, i))
            points.append((t, r))
    if not points:
        raise ValueError("%s: no rows" % path)
    return points


def simulate(points, connectors=1, replicas=1, tail=60.0, dt=1.0, model=None):
    """Step the model through the curve; returns (summary dict, steps list)."""
    m = dict(MODEL, **(model or {}))
    cap = min(connectors * replicas * m["worker_eps"], m["pg_eps"])
    workers = connectors * replicas
    ends = [p[0] for p in points[1:]] + [points[-1][0] + tail]
    backlog = peak_backlog = queued_s = journal_events = delivered = 0.0
    peak_cpu = peak_wal = 0.0
    drained = None
    peak_at = points[0][0]
    kept = collections.deque()  # (t, events journaled in the step): the replay window
    steps = []
    t = points[0][0]
    for (start, rate), end in zip(points, ends):
        t = start
        while t < end - 1e-9:
            step = min(dt, end - t)
            before = backlog
            offered = rate * step + backlog
            done = min(offered, cap * step)
            backlog = offered - done
            bursting = backlog > 0
            wal = done * (m["wal_bytes_burst"] if bursting else m["wal_bytes"]) / step
            cpu = done * m["cpu_us"] / 1e6 / step
            kept.append((t, done))
            journal_events += done
            delivered += done  # one audit row per attempt: at least one per event
            while kept and kept[0][0] < t - m["replay_window_days"] * 86400:
                journal_events -= kept.popleft()[1]
            if before > 0 or bursting:
                queued_s += step  # part of this step had a queue
            if before > 0 and not bursting:
                drained = t + step
            if backlog > peak_backlog:
                peak_backlog, peak_at = backlog, t + step
            peak_cpu = max(peak_cpu, cpu)
            peak_wal = max(peak_wal, wal)
            t += step
            steps.append({"t_sec": t, "offered_eps": rate, "delivered_eps": done / step,
                          "backlog": backlog, "cores": cpu, "wal_mib_s": wal / 2**20,
                          "journal_gib": journal_events * m["journal_bytes"] / 2**30})
    summary = {
        "capacity_eps": cap,
        "workers": workers,
        "memory_mib": workers * m["rss_mib"],
        "peak_backlog": peak_backlog,
        "peak_backlog_at": peak_at,
        "queued_seconds": queued_s,
        "drained_at": drained if backlog == 0 else None,
        "drain_seconds": (drained - peak_at) if backlog == 0 and drained is not None else 0.0,
        "backlog_at_end": backlog,
        "peak_cores": peak_cpu,
        "peak_wal_mib_s": peak_wal / 2**20,
        "journal_gib_at_end": journal_events * m["journal_bytes"] / 2**30,
        "audit_gib_at_end": delivered * m["audit_bytes"] / 2**30,
    }
    return summary, steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("curve", help="CSV with t_sec,events_per_sec (the fleet's total)")
    ap.add_argument("--connectors", type=int, default=1)
    ap.add_argument("--replicas", type=int, default=1, help="workers per connector")
    ap.add_argument("--tail", type=float, default=3600.0, help="seconds the last rate lasts")
    ap.add_argument("--dt", type=float, default=1.0, help="simulation step, seconds")
    ap.add_argument("--steps", help="write every step here as CSV")
    for k, v in MODEL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=float, default=v)
    a = ap.parse_args(argv)
    if a.connectors < 1 or a.replicas < 1 or a.dt <= 0:
        ap.error("--connectors, --replicas >= 1 and --dt > 0")
    try:
        points = read_curve(a.curve)
    except (OSError, ValueError) as e:
        print("capacity_sim: %s" % e, file=sys.stderr)
        return 65
    model = {k: getattr(a, k) for k in MODEL}
    s, steps = simulate(points, a.connectors, a.replicas, a.tail, a.dt, model)
    for k, v in s.items():
        print("%-18s %s" % (k, "%.2f" % v if isinstance(v, float) else v))
    if a.steps:
        with open(a.steps, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(steps[0].keys()))
            w.writeheader()
            w.writerows(steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
