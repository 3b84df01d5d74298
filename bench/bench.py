#!/usr/bin/python3
"""bench.py -- ess-push side by side with the workers people would write
instead, against a real RabbitMQ + Postgres (bench/run.sh starts them and
exports ESS_AMQP_URL / ESS_PG_URL) and ess-bench-sink as the partner.

Workers (each consumes its own durable queue bound to hms.events with its own
routing key, POSTs to the same sink with the same headers, acks after 2xx):
  ess-push   the product: Postgres journal, per-key order, retries
  bare       bench/peers/bare_c: rabbitmq-c + libcurl multi, persists nothing
  node       bench/peers/node_amqplib: amqplib + fetch (64 in flight)
  node-http  the same with node:http and a keep-alive Agent instead of fetch
  python     bench/peers/python_pika.py: pika + requests.Session, one at a time

Scenarios (each run uses a fresh queue / connector id, so nothing mixes):
  drain    50,000 events waiting in the worker's queue before it starts; time
           until the partner has them all; peak RSS and CPU seconds
  latency  1,000 events/s for 15 s into a running worker; publish-to-partner
           p50 / p99 / max (the sink subtracts the body's "sent_ns")
  outage   ess-push only: partner answers 503; 20,000 events go to the journal;
           partner back up; time to recover and drain; RSS before/during/after
  limits   the sink alone under wrk (-t1 -c64 -d5s, POST); the broker alone:
           persistent publishing with confirms and bare consume-and-ack
           (bench/peers/publish.c, consume_only.c)

Events are published by ess-bench-publish (rabbitmq-c, persistent, publisher
confirms, message_id set). Figures are measured and reported, never asserted:
a scenario that fails is recorded as failed in the table and the next one runs.

Runs under Debian's /usr/bin/python3 (python3-pika, python3-psycopg2).
"""
import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
import uuid

import pika
import psycopg2

AMQP_URL = os.environ.get("ESS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("ESS_PG_URL", "")
EVENTS = "hms.events"
CLK_TCK = os.sysconf("SC_CLK_TCK")
T0 = time.monotonic()


# The integration tests' bounded wait (one implementation for both).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from esslib import Failure, wait_until  # noqa: E402,F401


def say(msg):
    print("[bench %6.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


# ------------------------------------------------------------------ sink --

class Sink:
    """ess-bench-sink on an ephemeral loopback port."""

    def __init__(self, binary, latency_file=None):
        args = [binary, "--port", "0"]
        if latency_file:
            args += ["--latency-file", latency_file]
        self.latency_file = latency_file
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise Failure("ess-bench-sink did not announce its port: %r" % line)
        self.port = int(line.split()[1])
        self.url = "http://127.0.0.1:%d/partner/permits" % self.port
        self.conn = None

    def _call(self, method, path, body=None):
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.conn.request(method, path, body=body)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, data
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt:
                    raise
        return None, b""

    def stats(self):
        status, data = self._call("GET", "/_count")
        if status != 200:
            raise Failure("sink /_count answered %r" % status)
        return json.loads(data)

    def count(self):
        return self.stats()["count"]

    def mode(self, word):
        status, _ = self._call("POST", "/_mode", word.encode())
        if status != 200:
            raise Failure("sink /_mode %s answered %r" % (word, status))

    def stop(self):
        """SIGTERM (the sink writes its latency file then); returns stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            return self.proc.stderr.read()
        except (OSError, ValueError):
            return ""


# ---------------------------------------------------------------- worker --

class Proc:
    """A worker process (ess-push or a peer); its stdout + stderr go to a log
    in the run's raw directory."""

    label = "worker"

    def __init__(self, rawdir, cid, cmd):
        self.cid = cid
        self.cmd = cmd
        self.log = os.path.join(rawdir, cid + ".log")
        self.proc = None
        self.started_ns = 0

    def start(self):
        logf = open(self.log, "ab")
        self.started_ns = time.time_ns()
        self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise Failure("%s exited with code %r; log %s:\n%s"
                          % (self.label, self.proc.returncode, self.log, self.log_tail()))

    def proc_status(self):
        """VmRSS / VmHWM in MiB and utime+stime in s, from /proc (None if gone)."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                status = f.read()
            with open("/proc/%d/stat" % self.proc.pid) as f:
                stat = f.read()
        except OSError:
            return None
        out = {}
        for name in ("VmRSS", "VmHWM", "RssAnon"):
            m = re.search(r"^%s:\s+(\d+) kB" % name, status, re.M)
            out[name] = int(m.group(1)) / 1024.0 if m else None
        fields = stat[stat.rindex(")") + 2:].split()
        # after "pid (comm) ": state is field 3, utime 14, stime 15 (1-based)
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        return out

    def stop(self, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("%s ignored SIGTERM for %d s (killed); log %s"
                          % (self.label, timeout, self.log))

    def sample_private(self):
        """Keep the highest RssAnon seen (the worker's private pages: heap, stacks,
        written library data), sampled while waiting; the kernel keeps no peak of it."""
        ps = self.proc_status()
        if ps and ps.get("RssAnon") is not None:
            self.private_peak_mib = max(getattr(self, "private_peak_mib", 0.0), ps["RssAnon"])

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def log_levels(self):
        """How many log lines were warn / error / not logfmt at all."""
        out = {"warn": 0, "error": 0, "other": 0}
        try:
            with open(self.log, errors="replace") as f:
                for line in f:
                    m = re.search(r" level=(\w+) ", line)
                    if m is None:
                        out["other"] += 1
                    elif m.group(1) in out:
                        out[m.group(1)] += 1
        except OSError:
            pass
        return out

    def log_tail(self, n=15):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Worker(Proc):
    """ess-push with a manifest in the run's raw directory; log beside it."""

    label = "ess-push"

    def __init__(self, binary, rawdir, cid, target_url, extra):
        self.manifest = os.path.join(rawdir, cid + ".yml")
        with open(self.manifest, "w") as f:
            f.write("id: %s\nkind: push\nlisten_topic: %s\nkey: permit_id\ntarget_url: %s\n%s"
                    % (cid, topic_of(cid), target_url, extra))
        super().__init__(rawdir, cid, [binary, "--manifest", self.manifest])
        self.queue = "ess." + cid


# The peers: (label, how to start one). Each declares its own durable queue
# bench.<cid> bound to hms.events with topic_of(cid), and takes the same
# tuning the issue asks for: prefetch, keep-alive, bounded concurrency.
PEER_PREFETCH = 1000
PEER_IN_FLIGHT = 64
PYTHON_PREFETCH = 200  # one POST at a time: more only sits in the client


class Peer(Proc):
    def __init__(self, ctx, kind, rawdir, cid, target_url):
        queue = "bench." + cid
        common = ["--queue", queue, "--routing-key", topic_of(cid), "--target", target_url]
        if kind == "bare":
            cmd = [ctx.bare_bin] + common + ["--name", cid, "--prefetch", str(PEER_PREFETCH),
                                             "--max-in-flight", str(PEER_IN_FLIGHT)]
        elif kind in ("node", "node-http"):
            cmd = [ctx.node_bin, os.path.join(ctx.peers_dir, "node_amqplib", "peer.js")] + \
                common + ["--name", cid, "--prefetch", str(PEER_PREFETCH),
                          "--max-in-flight", str(PEER_IN_FLIGHT),
                          "--client", "http" if kind == "node-http" else "fetch"]
        elif kind == "python":
            cmd = ["/usr/bin/python3", os.path.join(ctx.peers_dir, "python_pika.py")] + \
                common + ["--name", cid, "--prefetch", str(PYTHON_PREFETCH)]
        else:
            raise ValueError(kind)
        super().__init__(rawdir, cid, cmd)
        self.label = kind
        self.queue = queue


def topic_of(cid):
    return "bench.%s.changed" % cid


# ------------------------------------------------------------------- bus --

class Bus:
    """A pika connection for declarations and queue depths (events are
    published by ess-bench-publish, see publish())."""

    def __init__(self):
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.ch = self.conn.channel()
        self.ch.exchange_declare(EVENTS, "topic", durable=True)
        self.props = pika.BasicProperties(delivery_mode=2, content_type="application/json")

    def publish(self, topic, body):
        self.ch.basic_publish(EVENTS, topic, body, self.props)

    def declare_bound(self, queue, topic):
        """The durable queue a peer declares itself (same arguments: none)."""
        self.ch.queue_declare(queue, durable=True)
        self.ch.queue_bind(queue, EVENTS, topic)

    def queue_count(self, queue):
        return self.ch.queue_declare(queue, passive=True).method.message_count

    def pump(self):
        self.conn.process_data_events(0)

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def queue_exists(queue):
    try:
        c = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    except Exception:
        return False
    try:
        c.channel().queue_declare(queue, passive=True)
        return True
    except Exception:
        return False
    finally:
        try:
            c.close()
        except Exception:
            pass


def wait_queue(worker, timeout=60):
    def ok():
        worker.check_alive()
        return queue_exists(worker.queue)
    wait_until(ok, timeout, "queue %s to be declared" % worker.queue, 0.1)


def publish(ctx, cid, n, rate=0, stamp=False, timeout=None):
    """ess-bench-publish: n persistent events to topic_of(cid) with confirms;
    returns its JSON line (published, confirmed, nacked, seconds, rate,
    behind_max_ms, start_ns, end_ns)."""
    cmd = [ctx.publish_bin, "--routing-key", topic_of(cid), "--count", str(n),
           "--id-prefix", cid, "--window", str(ctx.args.publish_window)]
    if rate:
        cmd += ["--rate", str(rate)]
    if stamp:
        cmd.append("--stamp")
    if timeout is None:
        timeout = 120 + (n / rate if rate else 0)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure("ess-bench-publish took more than %.0f s for %d events" % (timeout, n))
    if out.returncode != 0:
        raise Failure("ess-bench-publish exit %d: %s" % (out.returncode, out.stderr.strip()[-300:]))
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["nacked"]:
        raise Failure("the broker nacked %d of %d publishes" % (res["nacked"], n))
    return res


def journal_count(cid):
    try:
        with psycopg2.connect(PG_URL) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM ess_journal WHERE connector=%s", (cid,))
                return cur.fetchone()[0]
    except psycopg2.Error:
        return 0


def wait_count(sink, worker, n, timeout, what):
    def reached():
        worker.check_alive()
        worker.sample_private()
        c = sink.count()
        return c if c >= n else None
    return wait_until(reached, timeout, "%s: partner count %d" % (what, n), 0.05)


# ------------------------------------------------------------- scenarios --

# Tuned for a loopback partner (~0.1 ms per POST): 16 transfers in flight keep
# it busy, and more only cost worker memory (each libcurl handle holds its own
# buffers). A partner 100 ms away wants more: max_in_flight / latency = rate.
BENCH_MANIFEST = {"heartbeat_sec": 5, "max_in_flight": 16, "prefetch": 500, "debounce_sec": 0,
                  "max_retry": 8, "timeout_ms": 5000}

WORKERS = ["ess-push", "bare", "node", "node-http", "python"]


def manifest_extra(**kw):
    base = dict(BENCH_MANIFEST)
    base.update(kw)
    return "".join("%s: %s\n" % kv for kv in base.items())


def make_worker(ctx, kind, cid, sink):
    if kind == "ess-push":
        return Worker(ctx.push_bin, ctx.rawdir, cid, sink.url, manifest_extra())
    return Peer(ctx, kind, ctx.rawdir, cid, sink.url)


def short(kind):
    return {"ess-push": "push", "node-http": "nodeh"}.get(kind, kind)


def scenario_drain(ctx, kind, run):
    n = ctx.args.drain_events
    cid = "bench-drain-%s-%s" % (short(kind), run)
    sink = Sink(ctx.sink_bin)
    worker = make_worker(ctx, kind, cid, sink)
    bus = None
    try:
        bus = Bus()
        if kind == "ess-push":
            # ess-push declares its own queue (with its dead-letter arguments)
            worker.start()
            wait_queue(worker)
            code = worker.stop()
            if code != 0:
                raise Failure("first SIGTERM exit code %r (want 0); log %s" % (code, worker.log))
        else:
            bus.declare_bound(worker.queue, topic_of(cid))
        say("drain %s %s: publishing %d events (persistent, confirms)" % (kind, run, n))
        pub = publish(ctx, cid, n)
        wait_until(lambda: bus.queue_count(worker.queue) >= n, 60,
                   "%s to hold %d messages" % (worker.queue, n), 0.2)
        say("drain %s %s: %d messages in %s (%.0f/s); starting the worker"
            % (kind, run, n, worker.queue, pub["rate"]))
        worker.start()
        wait_count(sink, worker, n, ctx.args.drain_timeout, "drain")
        st = sink.stats()
        ps = worker.proc_status()
        code = worker.stop()
        extra = sink.count() - n
        wall_s = (st["last_ns"] - worker.started_ns) / 1e9
        steady_s = max((st["last_ns"] - st["first_ns"]) / 1e9, 1e-9)
        res = {"events": n, "wall_s": wall_s, "rate": n / wall_s,
               "steady_rate": (n - 1) / steady_s if n > 1 else None,
               "first_delivery_s": (st["first_ns"] - worker.started_ns) / 1e9,
               "rss_peak_mib": ps["VmHWM"] if ps else None,
               "private_peak_mib": getattr(worker, "private_peak_mib", None),
               "cpu_s": ps["cpu_s"] if ps else None,
               "cpu_us_per_event": ps["cpu_s"] / n * 1e6 if ps else None,
               "delivered": st["count"], "extra_posts": extra, "publish_rate": pub["rate"],
               "exit": code}
        if kind == "ess-push":
            res["log"] = worker.log_levels()
        say("drain %s %s: %d delivered in %.2f s = %.0f ev/s; peak RSS %.1f MiB; CPU %.2f s"
            % (kind, run, st["count"], wall_s, res["rate"], res["rss_peak_mib"] or -1,
               res["cpu_s"] or -1))
        return res
    finally:
        worker.kill()
        if bus:
            bus.close()
        sink.stop()


def percentile(sorted_v, p):
    if not sorted_v:
        return None
    k = (len(sorted_v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_v) - 1)
    return sorted_v[lo] + (sorted_v[hi] - sorted_v[lo]) * (k - lo)


def scenario_latency(ctx, kind, run):
    rate = ctx.args.latency_rate
    secs = ctx.args.latency_secs
    n = rate * secs
    cid = "bench-lat-%s-%s" % (short(kind), run)
    latf = os.path.join(ctx.rawdir, cid + ".latency")
    sink = Sink(ctx.sink_bin, latency_file=latf)
    worker = make_worker(ctx, kind, cid, sink)
    stopped = False
    try:
        worker.start()
        wait_queue(worker)
        time.sleep(0.5)  # the consumer is attached once the queue exists; let it settle
        worker.check_alive()
        say("latency %s %s: publishing %d events/s for %d s" % (kind, run, rate, secs))
        pub = publish(ctx, cid, n, rate=rate, stamp=True)
        worker.check_alive()
        # A worker slower than the offered rate drains its backlog afterwards:
        # wait for it (bounded), the latency then includes the queueing.
        wait_count(sink, worker, n, ctx.args.latency_timeout, "latency")
        st = sink.stats()
        ps = worker.proc_status()
        code = worker.stop()
        sink.stop()
        stopped = True
        with open(latf) as f:
            lat = sorted(int(x) / 1e6 for x in f if x.strip())
        if len(lat) < n:
            raise Failure("only %d latency samples for %d events" % (len(lat), n))
        done_s = max((st["last_ns"] - pub["start_ns"]) / 1e9, 1e-9)
        res = {"events": n, "publish_s": pub["seconds"], "publish_rate": pub["rate"],
               "achieved_rate": n / done_s,
               "publisher_behind_max_ms": pub["behind_max_ms"],
               "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
               "max_ms": lat[-1], "samples": len(lat),
               "rss_peak_mib": ps["VmHWM"] if ps else None,
               "cpu_s": ps["cpu_s"] if ps else None, "exit": code,
               "extra_posts": len(lat) - n}
        if kind == "ess-push":
            res["log"] = worker.log_levels()
        say("latency %s %s: %.0f ev/s delivered; p50 %.1f ms, p99 %.1f ms, max %.1f ms"
            % (kind, run, res["achieved_rate"], res["p50_ms"], res["p99_ms"], res["max_ms"]))
        return res
    finally:
        worker.kill()
        if not stopped:
            sink.stop()


def scenario_outage(ctx, kind, run):
    n = ctx.args.outage_events
    cid = "bench-out-%s" % run
    sink = Sink(ctx.sink_bin)
    worker = Worker(ctx.push_bin, ctx.rawdir, cid, sink.url, manifest_extra())
    try:
        sink.mode("down")
        worker.start()
        wait_queue(worker)
        time.sleep(0.5)
        before = worker.proc_status()
        say("outage %s: partner down; publishing %d events" % (run, n))
        t = time.monotonic()
        pub = publish(ctx, cid, n)

        def journaled():
            worker.check_alive()
            c = journal_count(cid)
            return c if c >= n else None
        wait_until(journaled, ctx.args.outage_timeout, "%d events in ess_journal" % n, 0.25)
        journal_s = time.monotonic() - t
        during = worker.proc_status()
        st = sink.stats()
        say("outage %s: %d journaled in %.1f s; %d POSTs answered 503; RSS %.1f -> %.1f MiB"
            % (run, n, journal_s, st["rejected"], before["VmRSS"], during["VmRSS"]))
        sink.mode("up")
        up_ns = time.time_ns()
        wait_count(sink, worker, n, ctx.args.outage_timeout, "outage drain")
        st = sink.stats()
        after = worker.proc_status()
        code = worker.stop()
        extra = sink.count() - n
        drain_s = (st["last_ns"] - up_ns) / 1e9
        steady_s = max((st["last_ns"] - st["first_ns"]) / 1e9, 1e-9)
        res = {"events": n, "journal_s": journal_s, "journal_rate": n / journal_s,
               "publish_rate": pub["rate"],
               "rejected_503": st["rejected"],
               "recover_s": (st["first_ns"] - up_ns) / 1e9,
               "drain_s": drain_s, "rate": n / drain_s, "steady_rate": (n - 1) / steady_s,
               "rss_before_mib": before["VmRSS"], "rss_outage_mib": during["VmRSS"],
               "rss_growth_mib": during["VmRSS"] - before["VmRSS"],
               "rss_after_mib": after["VmRSS"],
               "rss_peak_mib": after["VmHWM"], "cpu_s": after["cpu_s"], "exit": code,
               "extra_posts": extra, "log": worker.log_levels()}
        say("outage %s: first delivery %.2f s after up; %d in %.2f s = %.0f ev/s; RSS %.1f -> "
            "%.1f MiB" % (run, res["recover_s"], n, drain_s, res["rate"], res["rss_outage_mib"],
                          res["rss_after_mib"]))
        return res
    finally:
        worker.kill()
        sink.stop()


WRK_LUA = """wrk.method = "POST"
wrk.body = '{"permit_id":"K1","n":1,"street":"Main St","status":"PENDING"}'
wrk.headers["Content-Type"] = "application/json"
"""


def scenario_sink(ctx, kind, run):
    wrk = shutil.which("wrk")
    if wrk is None:
        raise Failure("wrk is not installed (apt-get install wrk)")
    lua = os.path.join(ctx.rawdir, "post.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    sink = Sink(ctx.sink_bin)
    try:
        out = subprocess.run([wrk, "-t1", "-c64", "-d%ds" % ctx.args.wrk_secs, "-s", lua,
                              sink.url], capture_output=True, text=True,
                             timeout=ctx.args.wrk_secs + 30)
        with open(os.path.join(ctx.rawdir, "wrk-%s.txt" % run), "w") as f:
            f.write(out.stdout + out.stderr)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
        if out.returncode != 0 or m is None:
            raise Failure("wrk exit %d: %s" % (out.returncode, (out.stdout + out.stderr)[-300:]))
        errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
        lat = re.search(r"Latency\s+(\S+)", out.stdout)
        counted = sink.count()
        res = {"rps": float(m.group(1)), "sink_count": counted,
               "non2xx": int(errs.group(1)) if errs else 0,
               "avg_latency": lat.group(1) if lat else None}
        say("limits sink %s: %.0f requests/s (wrk -t1 -c64), sink counted %d"
            % (run, res["rps"], counted))
        return res
    finally:
        sink.stop()


def scenario_broker(ctx, kind, run):
    """Persistent publish with confirms, then bare consume-and-ack, same queue."""
    n = ctx.args.drain_events
    cid = "bench-broker-%s" % run
    queue = "bench." + cid
    bus = Bus()
    try:
        bus.declare_bound(queue, topic_of(cid))
        pub = publish(ctx, cid, n)
        wait_until(lambda: bus.queue_count(queue) >= n, 60, "%s to hold %d" % (queue, n), 0.1)
    finally:
        bus.close()
    try:
        out = subprocess.run([ctx.consume_bin, "--queue", queue, "--count", str(n),
                              "--prefetch", "1000", "--timeout-s", "30"],
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise Failure("ess-bench-consume took more than 120 s")
    if out.returncode != 0:
        raise Failure("ess-bench-consume exit %d: %s" % (out.returncode, out.stderr.strip()[-300:]))
    con = json.loads(out.stdout.strip().splitlines()[-1])
    res = {"publish_rate": pub["rate"], "consume_rate": con["rate"],
           "consume_steady_rate": con["steady_rate"]}
    say("limits broker %s: publish with confirms %.0f/s; consume-and-ack %.0f/s"
        % (run, res["publish_rate"], res["consume_rate"]))
    return res


# (scenario, worker) pairs in the order they run within one round; round i
# runs every pair that wants at least i runs, so workers alternate and a
# burst of load from elsewhere on the machine does not land on one of them.
def plan(args):
    only = set(x for x in args.only.split(",") if x)
    want = {}

    def add(scen, kind, runs):
        if only and scen not in only and "%s:%s" % (scen, kind) not in only:
            runs = 0
        want[(scen, kind)] = runs
    for kind in WORKERS:
        add("drain", kind, args.runs_drain if kind in ("ess-push", "bare")
            else args.runs_drain_node if kind.startswith("node") else args.runs_drain_python)
    for kind in WORKERS:
        add("latency", kind, args.runs_latency if kind == "ess-push" else args.runs_latency_peers)
    add("outage", "ess-push", args.runs_outage)
    add("limits", "sink", args.runs_limits)
    add("limits", "broker", args.runs_limits)
    return want


SCENARIOS = {"drain": scenario_drain, "latency": scenario_latency, "outage": scenario_outage}


def scenario_fn(scen, kind):
    if scen == "limits":
        return scenario_sink if kind == "sink" else scenario_broker
    return SCENARIOS[scen]


# --------------------------------------------------------------- report --

def run_quiet(cmd, cwd=None):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=15,
                              cwd=cwd).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(ctx):
    info = {"nproc": os.cpu_count(), "cpu": "?", "ram": "?", "kernel": platform.release(),
            "load_start": "%.2f %.2f %.2f" % os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            info["cpu"] = m.group(1).strip() if m else "?"
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M)
            info["ram"] = "%.1f GiB" % (int(m.group(1)) / 1048576.0) if m else "?"
    except OSError:
        pass
    try:
        c = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        props = c._impl.server_properties or {}
        v = props.get("version", b"?")
        info["rabbitmq"] = v.decode() if isinstance(v, bytes) else str(v)
        c.close()
    except Exception as e:  # the table says so rather than failing the run
        info["rabbitmq"] = "? (%s)" % e
    try:
        with psycopg2.connect(PG_URL) as conn:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                info["postgres"] = cur.fetchone()[0]
    except psycopg2.Error as e:
        info["postgres"] = "? (%s)" % str(e).strip()
    info["ess_push"] = run_quiet([ctx.push_bin, "--version"])
    info["source"] = run_quiet(["git", "-C", ctx.args.src, "describe", "--always", "--dirty"])
    dpkg = lambda p: run_quiet(["dpkg-query", "-W", "-f=${Version}", p])  # noqa: E731
    info["wrk"] = dpkg("wrk")
    info["node"] = run_quiet([ctx.node_bin, "--version"])
    info["python"] = platform.python_version()
    info["pika"] = getattr(pika, "__version__", "?")
    info["requests"] = dpkg("python3-requests")
    try:
        with open(os.path.join(ctx.peers_dir, "node_amqplib", "node_modules", "amqplib",
                               "package.json")) as f:
            info["amqplib"] = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        info["amqplib"] = "? (not installed)"
    info["libcurl"] = run_quiet(["pkg-config", "--modversion", "libcurl"])
    info["floor"] = floor_probe(ctx)
    info["rabbitmq_c"] = run_quiet(["pkg-config", "--modversion", "librabbitmq"])
    return info


def floor_probe(ctx):
    """ess-bench-floor: RSS of an empty program linked like ess-push after
    curl_global_init(), i.e. what its shared libraries cost before any work.
    Started as ess-push runs (it re-executes itself with GNUTLS_NO_IMPLICIT_INIT=1,
    so that GnuTLS, which libcurl's LDAP support loads, is not initialised)."""
    env = dict(os.environ, GNUTLS_NO_IMPLICIT_INIT="1")
    try:
        out = subprocess.run([os.path.join(ctx.args.build, "bench", "ess-bench-floor")],
                             capture_output=True, text=True, timeout=30, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def floor_note(info):
    f = info.get("floor")
    if not f:
        return "(ess-bench-floor did not run: no shared-library floor measured.)"
    return ("Shared-library floor: an empty program linked like ess-push (ess-bench-floor: "
            "every library libess needs, GnuTLS not initialised, then `curl_global_init()`) "
            "is resident at %.1f MiB "
            "(%.1f MiB of it library pages, %.1f MiB private) before doing anything."
            % (f["rss_kib"] / 1024.0, f["rss_file_kib"] / 1024.0, f["rss_anon_kib"] / 1024.0))


def fmt(v, nd=0):
    if v is None:
        return "–"
    return ("%%.%df" % nd) % v


def ok_runs(results):
    return [r for r in results if isinstance(r, dict)]


def median(results, key):
    vals = [r[key] for r in ok_runs(results) if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def cell(results, key, nd=0):
    """median (min–max) over the successful runs."""
    vals = [r[key] for r in ok_runs(results) if r.get(key) is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt(vals[0], nd)
    return "%s (%s–%s)" % (fmt(statistics.median(vals), nd), fmt(min(vals), nd),
                           fmt(max(vals), nd))


def runs_note(runs, planned, label="worker"):
    ok = ok_runs(runs)
    if planned == 0:
        return "not run"
    parts = ["%d/%d ok" % (len(ok), planned)]
    fails = [r for r in runs if isinstance(r, Failure)]
    skipped = planned - len(runs)
    if skipped:
        parts.append("%d skipped (time budget)" % skipped)
    exits = [r.get("exit") for r in ok if "exit" in r]
    if any(e not in (0, None) for e in exits):
        parts.append("exit codes on SIGTERM: %s" % ", ".join(map(str, exits)))
    extra = [r.get("extra_posts", 0) for r in ok]
    if any(extra):
        parts.append("POSTs beyond one per event: %s" % ", ".join(map(str, extra)))
    for f in fails:
        parts.append("FAILED: " + str(f).splitlines()[0][:160].replace("|", "\\|"))
    return "; ".join(parts)


WORKER_TITLES = {
    "ess-push": "**ess-push** (journal in Postgres)",
    "bare": "bare C (rabbitmq-c + libcurl multi, no journal)",
    "node": "Node amqplib + fetch",
    "node-http": "Node amqplib + node:http Agent",
    "python": "Python pika + requests",
}


def ratio(a, b):
    return a / b if a is not None and b else None


def targets(r):
    """The issue's targets, computed from this run's medians."""
    d = {k: median(r.get(("drain", k), []), "rate") for k in WORKERS}
    p99 = median(r.get(("latency", "ess-push"), []), "p99_ms")
    rss = median(r.get(("drain", "ess-push"), []), "rss_peak_mib")
    out = r.get(("outage", "ess-push"), [])
    growth = [x["rss_growth_mib"] for x in ok_runs(out)]
    out_rate = median(out, "rate")
    rows = [
        ("ess-push drain ÷ bare C drain", ratio(d["ess-push"], d["bare"]), "≥ 0.8", 2,
         lambda v: v >= 0.8),
        ("ess-push drain ÷ Python drain", ratio(d["ess-push"], d["python"]), "≥ 15", 1,
         lambda v: v >= 15),
        ("ess-push drain ÷ Node (fetch) drain", ratio(d["ess-push"], d["node"]), "≥ 1.8", 2,
         lambda v: v >= 1.8),
        ("ess-push drain ÷ Node (node:http) drain — not an issue target, the faster Node",
         ratio(d["ess-push"], d["node-http"]), "(≥ 1.8)", 2, lambda v: v >= 1.8),
        ("ess-push p99 publish → partner at %s ev/s, ms" % "1,000", p99, "≤ 5", 1,
         lambda v: v <= 5),
        ("ess-push peak RSS during the drain, MiB (of it shared libraries: see the floor "
         "under the drain table)", rss, "≤ 12", 1, lambda v: v <= 12),
        ("ess-push RSS growth during the outage (max over runs), MiB",
         max(growth) if growth else None, "flat (≤ 2)", 1, lambda v: v <= 2),
        ("outage backlog drain ÷ drain rate", ratio(out_rate, d["ess-push"]), "≥ 0.8", 2,
         lambda v: v >= 0.8),
    ]
    lines = ["| target (issue 4) | this run | wanted | |", "| --- | --- | --- | --- |"]
    for name, v, want, nd, test in rows:
        verdict = "–" if v is None else ("met" if test(v) else "**not met**")
        lines.append("| %s | %s | %s | %s |" % (name, fmt(v, nd), want, verdict))
    return lines


def report(ctx, info, r, want, cmdline):
    a = ctx.args
    lines = []
    add = lines.append
    add("# ess-push benchmark — %s" % time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(ctx.start)))
    add("")
    add("Measured by `%s`; raw logs, manifests and JSON in `%s` (not committed)."
        % (cmdline, os.path.relpath(ctx.rawdir, ctx.args.src)))
    add("Figures are **median (min–max)** over the successful runs; a single run "
        "shows one number. Ratios use medians from this run. See bench/README.md for what "
        "each figure means.")
    add("")
    add("| machine | |")
    add("| --- | --- |")
    add("| CPU | %s × %d (nproc) |" % (info["cpu"], info["nproc"]))
    add("| RAM | %s |" % info["ram"])
    add("| kernel | %s |" % info["kernel"])
    add("| load average (1/5/15 min) at start → end | %s → %s |"
        % (info["load_start"], info.get("load_end", "?")))
    add("| RabbitMQ | %s |" % info.get("rabbitmq", "?"))
    add("| Postgres | %s%s |" % (info.get("postgres", "?"),
                                 " (fsync off: ESS_STACK_FAST=1)" if os.environ.get(
                                     "ESS_STACK_FAST") == "1" else ""))
    add("| ess-push | %s (CMAKE_BUILD_TYPE=Release), source `%s` (-dirty: uncommitted "
        "changes in the tree) |" % (info.get("ess_push", "?"), info.get("source", "?")))
    add("| rabbitmq-c / libcurl | %s / %s |" % (info["rabbitmq_c"], info["libcurl"]))
    add("| node / amqplib | %s / %s |" % (info["node"], info["amqplib"]))
    add("| python / pika / requests | %s / %s / %s |"
        % (info["python"], info["pika"], info["requests"]))
    add("| wrk | %s |" % info.get("wrk", "?"))
    add("")
    add("## Targets")
    add("")
    lines.extend(targets(r))
    add("")
    add("## drain: %d pre-published persistent events, then the worker starts" % a.drain_events)
    add("")
    add("| worker | events/s (start → last 2xx) | events/s steady (first → last 2xx) | wall s "
        "| s to first delivery | peak RSS MiB | private peak MiB | CPU s | CPU µs/event | runs |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in WORKERS:
        d = r.get(("drain", k), [])
        add("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (WORKER_TITLES[k], cell(d, "rate"), cell(d, "steady_rate"), cell(d, "wall_s", 2),
               cell(d, "first_delivery_s", 2), cell(d, "rss_peak_mib", 1),
               cell(d, "private_peak_mib", 1), cell(d, "cpu_s", 2),
               cell(d, "cpu_us_per_event", 1), runs_note(d, want[("drain", k)])))
    pubs = [x for k in WORKERS for x in ok_runs(r.get(("drain", k), []))]
    add("")
    add("Publisher (ess-bench-publish, persistent, confirms) while filling the queues: %s "
        "events/s. Peak RSS and CPU are the worker process's own (`VmHWM`, utime+stime "
        "from /proc; for Node and Python the interpreter process). Private peak is the "
        "highest `RssAnon` sampled every 50 ms: the pages no other process shares; the rest "
        "of RSS is shared libraries. %s" % (cell(pubs, "publish_rate"), floor_note(info)))
    add("")
    add("## latency: %d events/s for %d s into a running worker"
        % (a.latency_rate, a.latency_secs))
    add("")
    add("| worker | delivered events/s | p50 ms | p99 ms | max ms | publisher max behind "
        "ms | peak RSS MiB | runs |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in WORKERS:
        lt = r.get(("latency", k), [])
        add("| %s | %s | %s | %s | %s | %s | %s | %s |"
            % (WORKER_TITLES[k], cell(lt, "achieved_rate"), cell(lt, "p50_ms", 1),
               cell(lt, "p99_ms", 1), cell(lt, "max_ms", 1),
               cell(lt, "publisher_behind_max_ms", 1), cell(lt, "rss_peak_mib", 1),
               runs_note(lt, want[("latency", k)])))
    add("")
    add("Delivered events/s = events ÷ (first publish → the partner's last 2xx). A worker "
        "slower than the offered rate builds a queue: its latency then includes the wait.")
    add("")
    o = r.get(("outage", "ess-push"), [])
    add("## outage (ess-push only): %d events while the partner answers 503, then up"
        % a.outage_events)
    add("")
    add("| figure | value | runs |")
    add("| --- | --- | --- |")
    add("| journal fill events/s (publish → all in ess_journal) | %s | %s |"
        % (cell(o, "journal_rate"), runs_note(o, want[("outage", "ess-push")])))
    add("| publisher events/s, for scale | %s | |" % cell(o, "publish_rate"))
    add("| 503 answers during outage | %s | |" % cell(o, "rejected_503"))
    add("| s from partner up → first 2xx | %s | |" % cell(o, "recover_s", 2))
    add("| drain events/s (partner up → last 2xx) | %s | |" % cell(o, "rate"))
    add("| drain events/s steady (first → last 2xx) | %s | |" % cell(o, "steady_rate"))
    add("| worker RSS MiB before the outage / during / after drain | %s / %s / %s | |"
        % (cell(o, "rss_before_mib", 1), cell(o, "rss_outage_mib", 1),
           cell(o, "rss_after_mib", 1)))
    add("| worker peak RSS MiB (VmHWM) | %s | |" % cell(o, "rss_peak_mib", 1))
    add("")
    ls_ = r.get(("limits", "sink"), [])
    lb = r.get(("limits", "broker"), [])
    add("## limits: the partner and the broker alone")
    add("")
    add("| figure | value | runs |")
    add("| --- | --- | --- |")
    add("| sink: wrk -t1 -c64 -d%ds POST, requests/s | %s | %s |"
        % (a.wrk_secs, cell(ls_, "rps"), runs_note(ls_, want[("limits", "sink")])))
    add("| broker: persistent publish with confirms (ess-bench-publish, window %d), events/s "
        "| %s | %s |" % (a.publish_window, cell(lb, "publish_rate"),
                         runs_note(lb, want[("limits", "broker")])))
    add("| broker: consume-and-ack only (ess-bench-consume, prefetch 1000, multiple-ack), "
        "events/s | %s | |" % cell(lb, "consume_rate"))
    d_push = median(r.get(("drain", "ess-push"), []), "rate")
    c_rate = median(lb, "consume_rate")
    if d_push and c_rate:
        add("| ess-push drain as a fraction of the broker's consume-and-ack rate | %.2f | |"
            % (d_push / c_rate))
    add("")
    add("ess-push manifest for every scenario: %s, `format: json` (no shaping), `auth: none`. "
        % ", ".join("`%s: %s`" % kv for kv in BENCH_MANIFEST.items()) +
        "Peers: prefetch %d and at most %d POSTs in flight (bare C, Node); Python: prefetch "
        "%d, one POST at a time (pika's BlockingConnection + requests). Every worker gets "
        "the same events over 1,000 keys (`K0`…`K999`) with `message_id` set, and sends "
        "`Idempotency-Key`, `X-ESS-Connector`, `X-ESS-Event-Id`." % (
            PEER_PREFETCH, PEER_IN_FLIGHT, PYTHON_PREFETCH))
    add("")
    add("Runs: drain ess-push / bare C %d each, Node %d each, Python %d (slow: %s); latency "
        "ess-push %d, each peer %d; outage %d; limits %d%s." % (
            a.runs_drain, a.runs_drain_node, a.runs_drain_python,
            "one 50,000-event drain takes about a minute", a.runs_latency,
            a.runs_latency_peers, a.runs_outage, a.runs_limits, a.runs_note))
    logs = []
    for (scen, kind), runs in r.items():
        for i, x in enumerate(runs, 1):
            if isinstance(x, dict) and "log" in x:
                logs.append("%s #%d %d/%d/%d" % (scen, i, x["log"]["warn"], x["log"]["error"],
                                                 x["log"]["other"]))
    if logs:
        add("")
        add("ess-push log lines per run, warn/error/not logfmt: %s. (Expected: warn lines in "
            "outage, where the breaker opens and closes.)" % "; ".join(logs))
    fails = [(scen, kind, i, f) for (scen, kind), runs in r.items()
             for i, f in enumerate(runs, 1) if isinstance(f, Failure)]
    if fails:
        add("")
        add("## Failures")
        for scen, kind, i, f in fails:
            add("")
            add("**%s %s run %d**" % (scen, kind, i))
            add("")
            add("```")
            add(str(f).rstrip())
            add("```")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- main --

class Ctx:
    pass


def on_sigterm(signum, frame):
    # Unwind through every finally block, so no worker or sink is left behind.
    raise KeyboardInterrupt("SIGTERM")


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="the CMake build directory")
    ap.add_argument("--src", required=True, help="the source tree")
    ap.add_argument("--out", required=True, help="Markdown report to write")
    ap.add_argument("--rawdir", required=True, help="logs, manifests, JSON")
    ap.add_argument("--cmdline", default="bench/run.sh")
    ap.add_argument("--node", default="node", help="the node binary")
    ap.add_argument("--runs-drain", type=int, default=3, help="ess-push and bare C")
    ap.add_argument("--runs-drain-node", type=int, default=2, help="each Node variant")
    ap.add_argument("--runs-drain-python", type=int, default=1)
    ap.add_argument("--runs-latency", type=int, default=3, help="ess-push")
    ap.add_argument("--runs-latency-peers", type=int, default=1, help="each peer")
    ap.add_argument("--runs-outage", type=int, default=3)
    ap.add_argument("--runs-limits", type=int, default=3)
    ap.add_argument("--runs-note", default="", help="appended to the runs sentence")
    ap.add_argument("--only", default="",
                    help="comma list of scenarios (drain,latency,outage,limits) or "
                         "scenario:worker pairs (drain:bare)")
    ap.add_argument("--drain-events", type=int, default=50000)
    ap.add_argument("--drain-timeout", type=float, default=180)
    ap.add_argument("--latency-rate", type=int, default=1000)
    ap.add_argument("--latency-secs", type=int, default=15)
    ap.add_argument("--latency-timeout", type=float, default=90,
                    help="seconds after the last publish for the partner to have them all")
    ap.add_argument("--outage-events", type=int, default=20000)
    ap.add_argument("--outage-timeout", type=float, default=120)
    ap.add_argument("--wrk-secs", type=int, default=5)
    ap.add_argument("--publish-window", type=int, default=5000,
                    help="unconfirmed publishes ess-bench-publish keeps in flight")
    ap.add_argument("--budget", type=float, default=600,
                    help="seconds; past it, remaining runs are skipped (and reported)")
    args = ap.parse_args()

    ctx = Ctx()
    ctx.args = args
    ctx.start = time.time()
    ctx.push_bin = os.path.join(args.build, "workers", "push", "ess-push")
    ctx.sink_bin = os.path.join(args.build, "bench", "ess-bench-sink")
    ctx.bare_bin = os.path.join(args.build, "bench", "ess-bench-bare")
    ctx.publish_bin = os.path.join(args.build, "bench", "ess-bench-publish")
    ctx.consume_bin = os.path.join(args.build, "bench", "ess-bench-consume")
    ctx.peers_dir = os.path.join(args.src, "bench", "peers")
    ctx.node_bin = shutil.which(args.node) or args.node
    ctx.rawdir = args.rawdir
    os.makedirs(ctx.rawdir, exist_ok=True)
    if not PG_URL:
        say("ESS_PG_URL is not set (run through bench/run.sh)")
        return 78
    info = machine_info(ctx)
    say("machine: %s × %d, %s; RabbitMQ %s, Postgres %s, %s"
        % (info["cpu"], info["nproc"], info["ram"], info.get("rabbitmq"),
           info.get("postgres"), info.get("ess_push")))

    want = plan(args)
    results = {key: [] for key in want}
    tag = uuid.uuid4().hex[:6]
    rounds = max(want.values()) if want else 0
    order = ["drain", "latency", "outage", "limits"]
    keys = sorted(want, key=lambda k: order.index(k[0]))
    for scen in order:
        for i in range(1, rounds + 1):
            for key in keys:
                if key[0] != scen or want[key] < i:
                    continue
                kind = key[1]
                if time.monotonic() - T0 > args.budget:
                    say("%s %s run %d skipped: past the %.0f s budget"
                        % (scen, kind, i, args.budget))
                    continue
                run = "%s-%d" % (tag, i)
                say("%s %s run %d/%d (suffix %s)" % (scen, kind, i, want[key], run))
                try:
                    results[key].append(scenario_fn(scen, kind)(ctx, kind, run))
                except Exception as e:  # one failed run must not stop the bench
                    f = e if isinstance(e, Failure) else Failure(
                        "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
                    say("%s %s run %d FAILED: %s" % (scen, kind, i, f))
                    results[key].append(f)

    info["load_end"] = "%.2f %.2f %.2f" % os.getloadavg()
    raw = {"%s:%s" % key: [x if isinstance(x, dict) else {"failed": str(x)} for x in runs]
           for key, runs in results.items()}
    with open(os.path.join(ctx.rawdir, "results.json"), "w") as f:
        json.dump({"machine": info, "planned": {"%s:%s" % k: v for k, v in want.items()},
                   "results": raw}, f, indent=1)
    text = report(ctx, info, results, want, args.cmdline)
    with open(args.out, "w") as f:
        f.write(text)
    say("wrote %s" % args.out)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:  # SIGINT / SIGTERM: finally blocks have run
        say("interrupted (%s); workers and sinks stopped, no report written" % (e or "SIGINT"))
        sys.exit(130)
