#!/usr/bin/python3
"""bench.py -- ess-push throughput, latency, outage recovery and the sink's
own ceiling, against a real RabbitMQ + Postgres (bench/run.sh starts them and
exports ESS_AMQP_URL / ESS_PG_URL) and ess-bench-sink as the partner.

Scenarios (each run uses a fresh connector id, so journals never mix):
  drain    50,000 events waiting in ess.<id> before the worker starts; time
           until the partner has them all; peak RSS and CPU seconds
  latency  1,000 events/s for 15 s into a running worker; publish-to-partner
           p50 / p99 / max (the sink subtracts the body's "sent_ns")
  outage   partner answers 503; 20,000 events go to the journal; partner back
           up; time to recover and drain; RSS during the outage vs after
  limits   the sink alone under wrk (-t1 -c64 -d5s, POST): the ceiling every
           other figure sits under

Figures are measured and reported, never asserted: a scenario that fails is
recorded as failed in the table and the next one runs.

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


class Failure(Exception):
    pass


def say(msg):
    print("[bench %6.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def wait_until(cond, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise Failure("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


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

class Worker:
    """ess-push with a manifest in the run's raw directory; log beside it."""

    def __init__(self, binary, rawdir, cid, target_url, extra):
        self.binary = binary
        self.cid = cid
        self.manifest = os.path.join(rawdir, cid + ".yml")
        self.log = os.path.join(rawdir, cid + ".log")
        with open(self.manifest, "w") as f:
            f.write("id: %s\nkind: push\nlisten_topic: %s\nkey: permit_id\ntarget_url: %s\n%s"
                    % (cid, topic_of(cid), target_url, extra))
        self.proc = None
        self.started_ns = 0

    def start(self):
        logf = open(self.log, "ab")
        self.started_ns = time.time_ns()
        self.proc = subprocess.Popen([self.binary, "--manifest", self.manifest],
                                     stdout=logf, stderr=logf)
        logf.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise Failure("ess-push exited with code %r; log %s:\n%s"
                          % (self.proc.returncode, self.log, self.log_tail()))

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
        for name in ("VmRSS", "VmHWM"):
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
            raise Failure("ess-push ignored SIGTERM for %d s (killed); log %s"
                          % (timeout, self.log))

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


def topic_of(cid):
    return "bench.%s.changed" % cid


# ------------------------------------------------------------------- bus --

class Bus:
    """A pika connection without publisher confirms (throughput): every
    publish is persistent, and callers prove arrival with passive declares."""

    def __init__(self):
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.ch = self.conn.channel()
        self.ch.exchange_declare(EVENTS, "topic", durable=True)
        self.props = pika.BasicProperties(delivery_mode=2, content_type="application/json")

    def publish(self, topic, body):
        self.ch.basic_publish(EVENTS, topic, body, self.props)

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
        return queue_exists("ess." + worker.cid)
    wait_until(ok, timeout, "queue ess.%s to be declared" % worker.cid, 0.1)


def event(i, extra=None):
    ev = {"permit_id": "K%d" % (i % 1000), "n": i, "street": "Main St", "status": "PENDING"}
    if extra:
        ev.update(extra)
    return json.dumps(ev, separators=(",", ":"))


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
        c = sink.count()
        return c if c >= n else None
    return wait_until(reached, timeout, "%s: partner count %d" % (what, n), 0.05)


# ------------------------------------------------------------- scenarios --

# Tuned for a loopback partner (~0.1 ms per POST): 16 transfers in flight keep
# it busy, and more only cost worker memory (each libcurl handle holds its own
# buffers). A partner 100 ms away wants more: max_in_flight / latency = rate.
BENCH_MANIFEST = {"heartbeat_sec": 5, "max_in_flight": 16, "prefetch": 500, "debounce_sec": 0,
                  "max_retry": 8, "timeout_ms": 5000}


def manifest_extra(**kw):
    base = dict(BENCH_MANIFEST)
    base.update(kw)
    return "".join("%s: %s\n" % kv for kv in base.items())


def scenario_drain(ctx, run):
    n = ctx.args.drain_events
    cid = "bench-drain-%s" % run
    sink = Sink(ctx.sink_bin)
    worker = Worker(ctx.push_bin, ctx.rawdir, cid, sink.url, manifest_extra())
    bus = None
    try:
        worker.start()
        wait_queue(worker)
        code = worker.stop()
        if code != 0:
            raise Failure("first SIGTERM exit code %r (want 0); log %s" % (code, worker.log))
        bus = Bus()
        say("drain %s: publishing %d events (persistent, no confirms)" % (run, n))
        t = time.monotonic()
        topic = topic_of(cid)
        for i in range(n):
            bus.publish(topic, event(i))
        wait_until(lambda: bus.queue_count("ess." + cid) >= n, 120,
                   "ess.%s to hold %d messages" % (cid, n), 0.2)
        pub_s = time.monotonic() - t
        say("drain %s: %d messages in ess.%s (%.1f s, %.0f/s); starting ess-push"
            % (run, n, cid, pub_s, n / pub_s))
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
               "cpu_s": ps["cpu_s"] if ps else None,
               "cpu_us_per_event": ps["cpu_s"] / n * 1e6 if ps else None,
               "delivered": st["count"], "extra_posts": extra, "publish_rate": n / pub_s,
               "exit": code, "log": worker.log_levels()}
        say("drain %s: %d delivered in %.2f s = %.0f ev/s; peak RSS %.1f MiB; CPU %.2f s"
            % (run, st["count"], wall_s, res["rate"], res["rss_peak_mib"] or -1,
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


def scenario_latency(ctx, run):
    rate = ctx.args.latency_rate
    secs = ctx.args.latency_secs
    n = rate * secs
    cid = "bench-lat-%s" % run
    latf = os.path.join(ctx.rawdir, cid + ".latency")
    sink = Sink(ctx.sink_bin, latency_file=latf)
    worker = Worker(ctx.push_bin, ctx.rawdir, cid, sink.url, manifest_extra(debounce_sec=0))
    bus = None
    stopped = False
    try:
        worker.start()
        wait_queue(worker)
        bus = Bus()
        topic = topic_of(cid)
        say("latency %s: publishing %d events/s for %d s" % (run, rate, secs))
        start = time.monotonic()
        behind_max = 0.0
        for i in range(n):
            due = start + i / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                behind_max = max(behind_max, now - due)
            bus.publish(topic, event(i, {"sent_ns": time.time_ns()}))
            if i % 200 == 0:
                bus.pump()
                worker.check_alive()
        pub_s = time.monotonic() - start
        wait_count(sink, worker, n, 120, "latency")
        ps = worker.proc_status()
        code = worker.stop()
        sink.stop()
        stopped = True
        with open(latf) as f:
            lat = sorted(int(x) / 1e6 for x in f if x.strip())
        if len(lat) < n:
            raise Failure("only %d latency samples for %d events" % (len(lat), n))
        res = {"events": n, "publish_s": pub_s, "publisher_behind_max_ms": behind_max * 1e3,
               "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
               "max_ms": lat[-1], "samples": len(lat),
               "rss_peak_mib": ps["VmHWM"] if ps else None,
               "cpu_s": ps["cpu_s"] if ps else None, "exit": code,
               "extra_posts": len(lat) - n, "log": worker.log_levels()}
        say("latency %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d events"
            % (run, res["p50_ms"], res["p99_ms"], res["max_ms"], len(lat)))
        return res
    finally:
        worker.kill()
        if bus:
            bus.close()
        if not stopped:
            sink.stop()


def scenario_outage(ctx, run):
    n = ctx.args.outage_events
    cid = "bench-out-%s" % run
    sink = Sink(ctx.sink_bin)
    worker = Worker(ctx.push_bin, ctx.rawdir, cid, sink.url, manifest_extra())
    bus = None
    try:
        sink.mode("down")
        worker.start()
        wait_queue(worker)
        bus = Bus()
        topic = topic_of(cid)
        say("outage %s: partner down; publishing %d events" % (run, n))
        t = time.monotonic()
        for i in range(n):
            bus.publish(topic, event(i))
        bus.pump()
        pub_s = time.monotonic() - t

        def journaled():
            worker.check_alive()
            c = journal_count(cid)
            return c if c >= n else None
        wait_until(journaled, ctx.args.outage_timeout, "%d events in ess_journal" % n, 0.25)
        journal_s = time.monotonic() - t
        during = worker.proc_status()
        st = sink.stats()
        say("outage %s: %d journaled in %.1f s; %d POSTs answered 503; RSS %.1f MiB"
            % (run, n, journal_s, st["rejected"], during["VmRSS"]))
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
               "publish_rate": n / pub_s,
               "rejected_503": st["rejected"],
               "recover_s": (st["first_ns"] - up_ns) / 1e9,
               "drain_s": drain_s, "rate": n / drain_s, "steady_rate": (n - 1) / steady_s,
               "rss_outage_mib": during["VmRSS"], "rss_after_mib": after["VmRSS"],
               "rss_peak_mib": after["VmHWM"], "cpu_s": after["cpu_s"], "exit": code,
               "extra_posts": extra, "log": worker.log_levels()}
        say("outage %s: first delivery %.2f s after up; %d in %.2f s = %.0f ev/s; RSS %.1f -> "
            "%.1f MiB" % (run, res["recover_s"], n, drain_s, res["rate"], res["rss_outage_mib"],
                          res["rss_after_mib"]))
        return res
    finally:
        worker.kill()
        if bus:
            bus.close()
        sink.stop()


WRK_LUA = """wrk.method = "POST"
wrk.body = '{"permit_id":"K1","n":1,"street":"Main St","status":"PENDING"}'
wrk.headers["Content-Type"] = "application/json"
"""


def scenario_limits(ctx, run):
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
        say("limits %s: %.0f requests/s (wrk -t1 -c64), sink counted %d"
            % (run, res["rps"], counted))
        return res
    finally:
        sink.stop()


SCENARIOS = [("drain", scenario_drain), ("latency", scenario_latency),
             ("outage", scenario_outage), ("limits", scenario_limits)]


# --------------------------------------------------------------- report --

def machine_info(push_bin, src):
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
    try:
        info["ess_push"] = subprocess.run([push_bin, "--version"], capture_output=True,
                                          text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        info["ess_push"] = "? (%s)" % e
    try:
        info["source"] = subprocess.run(
            ["git", "-C", src, "describe", "--always", "--dirty"], capture_output=True,
            text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        info["source"] = "?"
    try:
        info["wrk"] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "wrk"],
                                     capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["wrk"] = "?"
    return info


def fmt(v, nd=0):
    if v is None:
        return "–"
    return ("%%.%df" % nd) % v


def cell(results, key, nd=0):
    """median (min–max) over the successful runs."""
    vals = [r[key] for r in results if isinstance(r, dict) and r.get(key) is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return fmt(vals[0], nd)
    return "%s (%s–%s)" % (fmt(statistics.median(vals), nd), fmt(min(vals), nd),
                           fmt(max(vals), nd))


def runs_note(name, runs, planned):
    ok = [r for r in runs if isinstance(r, dict)]
    if planned == 0:
        return "not run (--only)"
    parts = ["%d/%d ok" % (len(ok), planned)]
    fails = [r for r in runs if isinstance(r, Failure)]
    skipped = planned - len(runs)
    if skipped:
        parts.append("%d skipped (time budget)" % skipped)
    exits = [r.get("exit") for r in ok if "exit" in r]
    if any(e != 0 for e in exits):
        parts.append("ess-push exit codes on SIGTERM: %s" % ", ".join(map(str, exits)))
    extra = [r.get("extra_posts", 0) for r in ok]
    if any(extra):
        parts.append("POSTs beyond one per event: %s" % ", ".join(map(str, extra)))
    for f in fails:
        parts.append("FAILED: " + str(f).splitlines()[0][:160].replace("|", "\\|"))
    return "; ".join(parts)


def report(ctx, info, results, planned, cmdline):
    a = ctx.args
    r = results
    lines = []
    add = lines.append
    add("# ess-push benchmark — %s" % time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(ctx.start)))
    add("")
    add("Measured by `%s`; raw logs, manifests and JSON in `%s` (not committed)."
        % (cmdline, os.path.relpath(ctx.rawdir, ctx.args.src)))
    add("Figures are **median (min–max)** over the successful runs; a single run "
        "shows one number. See bench/README.md for what each figure means.")
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
    add("| wrk | %s |" % info.get("wrk", "?"))
    add("")
    add("| scenario | figure | value | runs |")
    add("| --- | --- | --- | --- |")
    d = r.get("drain", [])
    note = runs_note("drain", d, planned["drain"])
    add("| drain %d pre-queued events | events/s (worker start → last 2xx) | %s | %s |"
        % (a.drain_events, cell(d, "rate"), note))
    add("| | events/s steady (first → last 2xx) | %s | |" % cell(d, "steady_rate"))
    add("| | wall s | %s | |" % cell(d, "wall_s", 2))
    add("| | s to first delivery | %s | |" % cell(d, "first_delivery_s", 2))
    add("| | publisher (pika, no confirms) events/s, for scale | %s | |" % cell(d, "publish_rate"))
    add("| | worker peak RSS MiB (VmHWM) | %s | |" % cell(d, "rss_peak_mib", 1))
    add("| | worker CPU s (user+sys) | %s | |" % cell(d, "cpu_s", 2))
    add("| | worker CPU µs per event | %s | |" % cell(d, "cpu_us_per_event", 1))
    lt = r.get("latency", [])
    add("| latency %d ev/s × %d s | publish → partner p50 ms | %s | %s |"
        % (a.latency_rate, a.latency_secs, cell(lt, "p50_ms", 1),
           runs_note("latency", lt, planned["latency"])))
    add("| | p99 ms | %s | |" % cell(lt, "p99_ms", 1))
    add("| | max ms | %s | |" % cell(lt, "max_ms", 1))
    add("| | publisher max behind schedule ms | %s | |" % cell(lt, "publisher_behind_max_ms", 1))
    o = r.get("outage", [])
    add("| outage %d events while partner 503 | journal fill events/s (publish → all in "
        "ess_journal) | %s | %s |" % (a.outage_events, cell(o, "journal_rate"),
                                      runs_note("outage", o, planned["outage"])))
    add("| | publisher (pika, no confirms) events/s, for scale | %s | |" % cell(o, "publish_rate"))
    add("| | 503 answers during outage | %s | |" % cell(o, "rejected_503"))
    add("| | s from partner up → first 2xx | %s | |" % cell(o, "recover_s", 2))
    add("| | drain events/s (partner up → last 2xx) | %s | |" % cell(o, "rate"))
    add("| | drain events/s steady (first → last 2xx) | %s | |" % cell(o, "steady_rate"))
    add("| | worker RSS MiB during outage | %s | |" % cell(o, "rss_outage_mib", 1))
    add("| | worker RSS MiB after drain | %s | |" % cell(o, "rss_after_mib", 1))
    add("| | worker peak RSS MiB (VmHWM) | %s | |" % cell(o, "rss_peak_mib", 1))
    lm = r.get("limits", [])
    add("| limits: sink alone, wrk -t1 -c64 -d%ds POST | requests/s | %s | %s |"
        % (a.wrk_secs, cell(lm, "rps"), runs_note("limits", lm, planned["limits"])))
    add("")
    add("Manifest for every scenario: %s, `format: json` (no shaping), `auth: none`; "
        % ", ".join("`%s: %s`" % kv for kv in BENCH_MANIFEST.items()) +
        "1,000 distinct keys (`K0`…`K999`). Runs per scenario: drain %d, latency %d, "
        "outage %d, limits %d%s." % (planned["drain"], planned["latency"], planned["outage"],
                                     planned["limits"], a.runs_note))
    logs = []
    for name, runs in r.items():
        for i, x in enumerate(runs, 1):
            if isinstance(x, dict) and "log" in x:
                logs.append("%s #%d %d/%d/%d" % (name, i, x["log"]["warn"], x["log"]["error"],
                                                 x["log"]["other"]))
    if logs:
        add("")
        add("ess-push log lines per run, warn/error/not logfmt: %s. (Expected: warn lines in "
            "outage, where the breaker opens and closes.)" % "; ".join(logs))
    fails = [(name, i, f) for name, runs in r.items() for i, f in enumerate(runs, 1)
             if isinstance(f, Failure)]
    if fails:
        add("")
        add("## Failures")
        for name, i, f in fails:
            add("")
            add("**%s run %d**" % (name, i))
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
    ap.add_argument("--runs-drain", type=int, default=3)
    ap.add_argument("--runs-latency", type=int, default=3)
    ap.add_argument("--runs-outage", type=int, default=3)
    ap.add_argument("--runs-limits", type=int, default=3)
    ap.add_argument("--runs-note", default="", help="appended to the runs sentence")
    ap.add_argument("--only", default="", help="comma list of scenarios to run")
    ap.add_argument("--drain-events", type=int, default=50000)
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--latency-rate", type=int, default=1000)
    ap.add_argument("--latency-secs", type=int, default=15)
    ap.add_argument("--outage-events", type=int, default=20000)
    ap.add_argument("--outage-timeout", type=float, default=300)
    ap.add_argument("--wrk-secs", type=int, default=5)
    ap.add_argument("--budget", type=float, default=480,
                    help="seconds; past it, remaining runs are skipped (and reported)")
    args = ap.parse_args()

    ctx = Ctx()
    ctx.args = args
    ctx.start = time.time()
    ctx.push_bin = os.path.join(args.build, "workers", "push", "ess-push")
    ctx.sink_bin = os.path.join(args.build, "bench", "ess-bench-sink")
    ctx.rawdir = args.rawdir
    os.makedirs(ctx.rawdir, exist_ok=True)
    if not PG_URL:
        say("ESS_PG_URL is not set (run through bench/run.sh)")
        return 78
    info = machine_info(ctx.push_bin, args.src)
    say("machine: %s × %d, %s; RabbitMQ %s, Postgres %s, %s"
        % (info["cpu"], info["nproc"], info["ram"], info.get("rabbitmq"),
           info.get("postgres"), info.get("ess_push")))

    only = set(x for x in args.only.split(",") if x)
    planned = {name: (getattr(args, "runs_" + name) if not only or name in only else 0)
               for name, _ in SCENARIOS}
    results = {name: [] for name, _ in SCENARIOS}
    tag = uuid.uuid4().hex[:6]
    for name, fn in SCENARIOS:
        for i in range(1, planned[name] + 1):
            if time.monotonic() - T0 > args.budget:
                say("%s run %d skipped: past the %.0f s budget" % (name, i, args.budget))
                break
            run = "%s-%d" % (tag, i)
            say("%s run %d/%d (connector suffix %s)" % (name, i, planned[name], run))
            try:
                results[name].append(fn(ctx, run))
            except Exception as e:  # one failed run must not stop the bench
                f = e if isinstance(e, Failure) else Failure(
                    "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
                say("%s run %d FAILED: %s" % (name, i, f))
                results[name].append(f)

    info["load_end"] = "%.2f %.2f %.2f" % os.getloadavg()
    raw = {name: [r if isinstance(r, dict) else {"failed": str(r)} for r in runs]
           for name, runs in results.items()}
    with open(os.path.join(ctx.rawdir, "results.json"), "w") as f:
        json.dump({"machine": info, "planned": planned, "results": raw}, f, indent=1)
    text = report(ctx, info, results, planned, args.cmdline)
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
