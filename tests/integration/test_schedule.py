"""ess-it-schedule: partner schedules -- during a blackout events are journaled
and held (nothing reaches the partner, heartbeats say `held`), and when it ends
the backlog is delivered by itself, in journal order, without a restart;
outside a weekly delivery window likewise, until a reload drops the window."""
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (OPS, Bus, Partner, Worker, check, manifest, run, sql,  # noqa: E402
                    unique_id, wait_for_queue, wait_until)

HOLD_SEC = 12  # the blackout ends this long after the test starts (room for a slow start)


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def test_blackout_holds_then_releases_in_order():
    cid = unique_id("it-sched")
    topic = "it.%s.changed" % cid
    end = int(time.time()) + HOLD_SEC
    extra = ("max_in_flight: 1\nblackouts:\n  - {from: \"%s\", to: \"%s\", tz: UTC}\n"
             % (iso(end - 3600), iso(end)))
    partner = Partner()
    bus = Bus()
    ops = bus.listen(OPS, "ess.heartbeat.%s" % cid)
    worker = Worker(manifest(cid, partner.url("/appts"), extra)).start()
    try:
        wait_for_queue(cid, worker=worker)
        ids = ["s-%d" % i for i in range(6)]
        for i, mid in enumerate(ids):
            bus.publish(topic, {"permit_id": "K%d" % (i % 2), "n": i}, message_id=mid)
        wait_until(lambda: sql("SELECT count(*) FROM ess_journal WHERE connector=%s",
                               cid)[0][0] == 6, 20, "six events journaled")
        states = []

        def held_heartbeat():
            states.extend(json.loads(b)["state"] for _, b in bus.drain(ops))
            return "held" in states
        wait_until(held_heartbeat, 20, "a heartbeat with state held")
        check(time.time() < end, "the checks below ran inside the blackout (machine too slow?)")
        check(partner.count() == 0, "nothing delivered during the blackout: %d" % partner.count())
        worker.wait_log("holding deliveries until %sZ" % iso(end), 5)

        wait_until(lambda: partner.count() >= 6, HOLD_SEC + 30, "the backlog after the blackout")
        check(time.time() >= end, "delivered only once the blackout ended")
        got = [r["headers"].get("x-ess-event-id") for r in partner.received()]
        check(got == ids, "released in journal order: %r" % got)

        def ok_heartbeat():
            states.extend(json.loads(b)["state"] for _, b in bus.drain(ops))
            return states[-1] == "ok"
        wait_until(ok_heartbeat, 20, "a heartbeat with state ok after the blackout")
        worker.wait_log("delivery window open", 5)
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log:\n%s" % worker.log_text()[-4000:], file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


def test_closed_window_holds_until_a_reload_opens_it():
    """A weekly window that is closed now (only on a day three days away)
    holds; the same manifest without it, reloaded with SIGHUP, releases the
    backlog at once."""
    cid = unique_id("it-sched")
    topic = "it.%s.changed" % cid
    other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][
        (datetime.now(timezone.utc).weekday() + 3) % 7]
    closed = ("delivery_windows:\n  - {days: %s, from: \"00:00\", to: \"24:00\", tz: UTC}\n"
              % other_day)
    partner = Partner()
    bus = Bus()
    ops = bus.listen(OPS, "ess.heartbeat.%s" % cid)
    worker = Worker(manifest(cid, partner.url("/appts"), closed)).start()
    try:
        wait_for_queue(cid, worker=worker)
        for i in range(3):
            bus.publish(topic, {"permit_id": "W%d" % i}, message_id="w-%d" % i)
        wait_until(lambda: sql("SELECT count(*) FROM ess_journal WHERE connector=%s",
                               cid)[0][0] == 3, 20, "three events journaled")
        wait_until(lambda: any(json.loads(b)["state"] == "held" for _, b in bus.drain(ops)),
                   20, "a heartbeat with state held")
        check(partner.count() == 0, "nothing delivered outside the window")
        worker.write_manifest(manifest(cid, partner.url("/appts"), ""))
        worker.signal(signal.SIGHUP)
        worker.wait_log("manifest reloaded")
        wait_until(lambda: partner.count() >= 3, 20, "the backlog once the window is gone")
        got = [r["headers"].get("x-ess-event-id") for r in partner.received()]
        check(sorted(got) == ["w-0", "w-1", "w-2"], "all three: %r" % got)
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log:\n%s" % worker.log_text()[-4000:], file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


if __name__ == "__main__":
    run([test_blackout_holds_then_releases_in_order,
         test_closed_window_holds_until_a_reload_opens_it])
