"""ess-ut-capacity-sim: bench/capacity_sim.py on tiny curves whose answer is
known by hand (no services)."""
import os
import shutil
import sys
import tempfile

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "bench"))
import capacity_sim  # noqa: E402


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


TMP = tempfile.mkdtemp(prefix="ess-capacity-sim-")


def curve(text):
    fd, path = tempfile.mkstemp(suffix=".csv", dir=TMP)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def test_under_capacity_never_queues():
    pts = capacity_sim.read_curve(curve("t_sec,events_per_sec\n0,1000\n10,2000\n"))
    s, steps = capacity_sim.simulate(pts, connectors=10, tail=10)
    check(s["peak_backlog"] == 0 and s["queued_seconds"] == 0, s)
    check(abs(s["peak_cores"] - 2000 * 30e-6) < 1e-9, s)
    check(abs(s["memory_mib"] - 10 * 11.7) < 1e-9, s)
    check(len(steps) == 20 and steps[-1]["delivered_eps"] == 2000, steps[-1])


def test_spike_backlog_and_drain():
    # capacity 100/s; 150/s for 10 s builds 500, 50/s afterwards drains it in 10 s
    pts = capacity_sim.read_curve(curve("t_sec,events_per_sec\n0,50\n10,150\n20,50\n"))
    s, _ = capacity_sim.simulate(pts, tail=100, model={"pg_eps": 100})
    check(abs(s["peak_backlog"] - 500) < 1e-6 and s["peak_backlog_at"] == 20, s)
    check(s["drained_at"] == 30 and s["drain_seconds"] == 10 and s["queued_seconds"] == 20, s)
    check(s["backlog_at_end"] == 0, s)
    # journal: every event kept (window of 7 days) at 430 bytes
    check(abs(s["journal_gib_at_end"] * 2**30 - (50 * 10 + 150 * 10 + 50 * 100) * 430) < 1, s)
    # audit: every delivery attempt kept, never removed (66 bytes each)
    check(abs(s["audit_gib_at_end"] * 2**30 - (50 * 10 + 150 * 10 + 50 * 100) * 66) < 1, s)


def test_bad_curve_is_refused_with_the_line():
    bad = curve("t_sec,events_per_sec\n0,10\n0,20\n")
    try:
        capacity_sim.read_curve(bad)
        raise AssertionError("times that do not increase were accepted")
    except ValueError as e:
        check(":3:" in str(e), str(e))
    check(capacity_sim.main([curve("a,b\n1,2\n")]) == 65, "a wrong header must exit 65")


try:
    for t in (test_under_capacity_never_queues, test_spike_backlog_and_drain,
              test_bad_curve_is_refused_with_the_line):
        t()
        print("PASS", t.__name__)
finally:
    shutil.rmtree(TMP, ignore_errors=True)
