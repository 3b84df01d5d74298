#!/usr/bin/python3
"""replicas_bench.py -- drain throughput of one connector run by 1, 2 (or N)
replicas (`replicas: N`), in two scenarios, each clearly labelled:

  machine   the fast sink (answers at once), max_in_flight 16: one worker is
            limited by the CPU it gets. On a machine where the broker,
            Postgres and every replica share few cores, a second replica adds
            little: the ratio says more about the machine than about ESS.
  latency   the sink answers each POST --delay-ms late (default 20 ms, many
            connections served side by side, so the partner is not the
            bottleneck) and max_in_flight is fixed (default 4): one worker is
            limited by its own bounded concurrency (at most max_in_flight x
            1000 / delay events/s), and a second replica adds as much
            delivery concurrency again.

Against a private stack (ESS_AMQP_URL, ESS_PG_URL in the environment, e.g.
`set -a; . DIR/env`): for each scenario, replica count and run, a fresh
connector's queue is filled with N persistent events (ess-bench-publish,
1,000 keys), then the replicas start and the time from their start to the
sink's N-th 2xx is taken (and, as the steady rate without start-up and
rebalancing, the time from the 10 % to the 90 % mark). Reported per
configuration (median of the runs): events/s, CPU seconds of each replica
(utime + stime from /proc, read before the SIGTERM), and -- from each
replica's stop line -- the journal rows its reads looked at and were sent. Measured, never asserted. Every load is
bounded: N events, 600 s per run at most.

  /usr/bin/python3 bench/replicas_bench.py --bin-dir BUILD-Release \
      [--scenario machine|latency|both] [--replicas 1,2] [--runs 2] \
      [--events 10000] [--latency-events 6000] [--delay-ms 20] [--latency-in-flight 4]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import urllib.request

import pika

RUN_TIMEOUT_S = 600
READS = re.compile(r"journal reads looked at (\d+) rows, returned (\d+), (\d+) of them")


def sink_count(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/_count" % port, timeout=5) as r:
        return json.loads(r.read())["count"]


def declare(cid, replicas):
    """ess.<cid> as ess_bus declares it, bound to bench.<cid>."""
    c = pika.BlockingConnection(pika.URLParameters(os.environ["ESS_AMQP_URL"]))
    ch = c.channel()
    ch.exchange_declare("hms.events", "topic", durable=True)
    ch.exchange_declare("ess.dlx", "direct", durable=True)
    q = "ess." + cid
    args = {"x-queue-type": "classic", "x-dead-letter-exchange": "ess.dlx",
            "x-dead-letter-routing-key": q}
    if replicas > 1:
        args["x-single-active-consumer"] = True  # as ess_bus_set_single_active
    ch.queue_declare(q, durable=True, arguments=args)
    ch.queue_bind(q, "hms.events", "bench." + cid)
    c.close()


def cpu_seconds(pid):
    """utime + stime of a live process, in seconds (None once it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(args, sc, port, replicas, tag):
    """One drain; {"eps" (start to last), "steady" (10 % to 90 % of the events), "cpu": [per
    replica], "reads": [(looked, returned, kept)]}."""
    cid = "bench-%s-r%d-%s" % (sc["name"], replicas, tag)
    declare(cid, replicas)
    subprocess.run([os.path.join(args.bin_dir, "bench", "ess-bench-publish"), "--routing-key",
                    "bench." + cid, "--count", str(sc["events"]), "--id-prefix", cid],
                   check=True, stdout=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S)
    tmp = tempfile.mkdtemp(prefix="ess-replbench-")
    path = os.path.join(tmp, "m.yml")
    with open(path, "w") as f:
        f.write("id: %s\nkind: push\nlisten_topic: bench.%s\nkey: permit_id\n"
                "target_url: http://127.0.0.1:%d/partner\nheartbeat_sec: 5\nmax_in_flight: %d\n"
                "prefetch: 500\nreplicas: %d\n" % (cid, cid, port, sc["in_flight"], replicas))
    base = sink_count(port)
    start = time.monotonic()
    procs, logs = [], []
    for i in range(replicas):
        logs.append(os.path.join(tmp, "worker-%d.log" % i))
        with open(logs[-1], "w") as log:
            procs.append(subprocess.Popen([os.path.join(args.bin_dir, "workers", "push",
                                                        "ess-push"), "--manifest", path],
                                          stdout=log, stderr=log))
    cpu = []
    marks = {}  # when 10 % and 90 % of the events were delivered
    try:
        deadline = start + RUN_TIMEOUT_S
        while True:
            got = sink_count(port) - base
            for frac in (0.1, 0.9):
                if frac not in marks and got >= frac * sc["events"]:
                    marks[frac] = time.monotonic()
            if got >= sc["events"]:
                break
            if time.monotonic() > deadline:
                raise SystemExit("replicas_bench: %s did not deliver %d events in %d s (logs "
                                 "in %s)" % (cid, sc["events"], RUN_TIMEOUT_S, tmp))
            time.sleep(0.02)
        eps = sc["events"] / (time.monotonic() - start)
        steady = 0.8 * sc["events"] / max(marks[0.9] - marks[0.1], 1e-3)
        cpu = [cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    reads = []
    for path in logs:
        with open(path) as f:
            m = READS.search(f.read())
        if m:
            reads.append(tuple(int(x) for x in m.groups()))
    return {"eps": eps, "steady": steady, "cpu": cpu, "reads": reads}


def scenarios(args):
    out = []
    if args.scenario in ("machine", "both"):
        out.append({"name": "machine", "delay_ms": 0, "in_flight": 16, "events": args.events,
                    "label": "CPU-bound: fast sink, max_in_flight 16, broker + Postgres + "
                             "replicas on %d cores" % os.cpu_count()})
    if args.scenario in ("latency", "both"):
        out.append({"name": "latency", "delay_ms": args.delay_ms,
                    "in_flight": args.latency_in_flight, "events": args.latency_events,
                    "label": "latency-bound: sink answers %d ms late, max_in_flight %d (one "
                             "worker's ceiling %d events/s)"
                             % (args.delay_ms, args.latency_in_flight,
                                args.latency_in_flight * 1000 // max(args.delay_ms, 1))})
    return out


def run_scenario(args, sc, counts):
    cmd = [os.path.join(args.bin_dir, "bench", "ess-bench-sink"), "--port", "0"]
    if sc["delay_ms"] > 0:
        cmd += ["--delay-ms", str(sc["delay_ms"])]
    sink = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline().split()[1])
    results = {n: [] for n in counts}
    load = [os.getloadavg()]
    try:
        for run in range(args.runs):  # alternate, so a burst of load hits each alike
            for n in counts:
                r = one_run(args, sc, port, n, "%d-%d" % (os.getpid(), run))
                results[n].append(r)
                print("%s: replicas %d run %d: %.0f events/s (steady %.0f), cpu s per replica %s"
                      % (sc["name"], n, run + 1, r["eps"], r["steady"],
                         " ".join("%.2f" % c for c in r["cpu"] if c is not None)), flush=True)
    finally:
        sink.terminate()
        sink.wait(10)
    load.append(os.getloadavg())
    return results, load


def report(sc, results, load, runs):
    counts = sorted(results)
    print("\n### %s\n\n%s; %d events over 1,000 keys, median of %d run(s); load average "
          "%.2f %.2f %.2f at start, %.2f %.2f %.2f at end.\n"
          % (sc["name"], sc["label"], sc["events"], runs, *load[0], *load[1]))
    print("| replicas | events/s, start to last | events/s, 10 % to 90 % | CPU s per replica "
          "(median run) | events per CPU s | journal rows looked at / sent, per replica |")
    print("| --- | --- | --- | --- | --- | --- |")
    med, steady = {}, {}
    for n in counts:
        rs = sorted(results[n], key=lambda r: r["eps"])
        mid = rs[len(rs) // 2]
        med[n] = statistics.median(r["eps"] for r in rs)
        steady[n] = statistics.median(r["steady"] for r in rs)
        cpu = [c for c in mid["cpu"] if c is not None]
        reads = ", ".join("%d / %d" % (lk, rt) for lk, rt, _ in mid["reads"]) or "–"
        print("| %d | %.0f | %.0f | %s | %.0f | %s |"
              % (n, med[n], steady[n], " + ".join("%.2f" % c for c in cpu),
                 sc["events"] / sum(cpu) if cpu and sum(cpu) > 0 else 0, reads))
    if 1 in med:
        for n in counts:
            if n > 1:
                print("\n%d replicas / 1 replica: **%.2f** start to last, **%.2f** 10 %% to 90 %%"
                      % (n, med[n] / med[1], steady[n] / steady[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--scenario", choices=("machine", "latency", "both"), default="both")
    ap.add_argument("--replicas", default="1,2", help="replica counts, e.g. 1,2 or 3")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--events", type=int, default=10000, help="machine scenario")
    ap.add_argument("--latency-events", type=int, default=6000)
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--latency-in-flight", type=int, default=4)
    args = ap.parse_args()
    counts = [int(x) for x in args.replicas.split(",")]
    if not counts or min(counts) < 1 or max(counts) > 8 or args.runs < 1 or args.runs > 10:
        raise SystemExit("replicas_bench: --replicas 1..8 each, --runs 1..10")
    if min(args.events, args.latency_events) < 1 or max(args.events, args.latency_events) > 10**6:
        raise SystemExit("replicas_bench: events 1..1,000,000")
    for sc in scenarios(args):
        results, load = run_scenario(args, sc, counts)
        report(sc, results, load, args.runs)


if __name__ == "__main__":
    main()
