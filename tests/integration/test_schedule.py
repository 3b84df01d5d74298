"""ess-it-schedule: partner schedules -- during a blackout events are journaled
and held (nothing reaches the partner, heartbeats say `held`), and when it ends
the backlog is delivered by itself, in journal order, without a restart."""
import json
import os
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (OPS, Bus, Partner, Worker, check, manifest, run, sql,  # noqa: E402
                    unique_id, wait_for_queue, wait_until)

HOLD_SEC = 8  # the blackout ends this long after the worker starts


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


if __name__ == "__main__":
    run([test_blackout_holds_then_releases_in_order])
