#!/usr/bin/python3
"""replicas_bench.py -- drain throughput of one connector run by 1 and by 2
replicas (`replicas: N`), the partner not being the bottleneck.

Against a private stack (ESS_AMQP_URL, ESS_PG_URL in the environment, e.g.
`set -a; . DIR/env`): for each replica count and run, a fresh connector's
queue is filled with N persistent events (ess-bench-publish, 1,000 keys),
then the replicas start and the time from start to the sink's N-th 2xx is
taken. Prints events/s per configuration (median of the runs) and the ratio.
Measured, never asserted: on a machine with fewer cores than replicas + broker
+ Postgres the ratio says more about the machine than about ESS.

  /usr/bin/python3 bench/replicas_bench.py --bin-dir BUILD-Release [--events 30000] [--runs 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request

import pika


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


def one_run(args, port, replicas, tag):
    cid = "bench-repl%d-%s" % (replicas, tag)
    declare(cid, replicas)
    subprocess.run([os.path.join(args.bin_dir, "bench", "ess-bench-publish"), "--routing-key",
                    "bench." + cid, "--count", str(args.events), "--id-prefix", cid],
                   check=True, stdout=subprocess.DEVNULL, timeout=600)
    tmp = tempfile.mkdtemp(prefix="ess-replbench-")
    path = os.path.join(tmp, "m.yml")
    with open(path, "w") as f:
        f.write("id: %s\nkind: push\nlisten_topic: bench.%s\nkey: permit_id\n"
                "target_url: http://127.0.0.1:%d/partner\nheartbeat_sec: 5\nmax_in_flight: 16\n"
                "prefetch: 500\nreplicas: %d\n" % (cid, cid, port, replicas))
    base = sink_count(port)
    start = time.monotonic()
    procs = []
    for i in range(replicas):
        log = open(os.path.join(tmp, "worker-%d.log" % i), "w")
        procs.append(subprocess.Popen([os.path.join(args.bin_dir, "workers", "push", "ess-push"),
                                       "--manifest", path], stdout=log, stderr=log))
        log.close()
    try:
        deadline = start + 600
        while sink_count(port) - base < args.events:
            if time.monotonic() > deadline:
                raise SystemExit("replicas_bench: %s did not deliver %d events in 600 s (logs "
                                 "in %s)" % (cid, args.events, tmp))
            time.sleep(0.02)
        return args.events / (time.monotonic() - start)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--events", type=int, default=30000)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    sink = subprocess.Popen([os.path.join(args.bin_dir, "bench", "ess-bench-sink"), "--port",
                             "0"], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline().split()[1])
    rates = {1: [], 2: []}
    try:
        for run in range(args.runs):  # alternate, so a burst of load hits both alike
            for n in (1, 2):
                rates[n].append(one_run(args, port, n, "%d-%d" % (os.getpid(), run)))
                print("replicas %d run %d: %.0f events/s" % (n, run + 1, rates[n][-1]),
                      flush=True)
    finally:
        sink.terminate()
        sink.wait(10)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print("| replicas | drain events/s (median of %d) |\n| --- | --- |\n| 1 | %.0f |\n| 2 | %.0f |"
          % (args.runs, one, two))
    print("2 replicas / 1 replica: %.2f (load average %.2f %.2f %.2f, %d cores)"
          % ((two / one,) + os.getloadavg() + (os.cpu_count(),)))


if __name__ == "__main__":
    main()
