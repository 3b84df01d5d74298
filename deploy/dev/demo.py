"""The ESS demo: city permits flow from HMS's bus to a (stub) DMV partner.

Starts ess-push with manifests/city2dmv.yml against the stack run-demo.sh
started, publishes a few permits.changed events the way HMS does (one of them
a CloudEvent, one of them garbage), then shows what the partner received and
the worker's heartbeat. Uses the integration tests' toolbox (esslib).
"""
import json
import os
import sys

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import esslib  # noqa: E402
from esslib import Bus, Partner, Worker, wait_for_queue, wait_until  # noqa: E402

EVENTS = [
    {"permit_id": "P-1001", "street": "Main St", "truck_limit": 12, "status": "PENDING",
     "owner_ssn": "123-45-6789", "issued_on": "2026-11-26"},
    {"permit_id": "P-1002", "street": "Elm St", "truck_limit": 8, "status": "CONFIRMED",
     "owner_ssn": "987-65-4321", "issued_on": "2026-11-25"},
    {"specversion": "1.0", "id": "ce-7", "source": "/hms/permits", "type": "permits.changed",
     "data": {"permit_id": "P-1001", "street": "Main St", "truck_limit": 10,
              "status": "CANCELLED", "owner_ssn": "123-45-6789"}},
]


def main():
    manifest_path = os.path.join(SRC, "manifests", "city2dmv.yml")
    with open(manifest_path) as f:
        text = f.read()
    partner = Partner()
    # The shipped manifest names the DMV's URL; the demo points it at the stub.
    target = [ln for ln in text.splitlines() if ln.startswith("target_url:")][0]
    text = text.replace(target, "target_url: " + partner.url("/dmv/permits"))
    text = text.replace("heartbeat_sec: 30", "heartbeat_sec: 2")
    worker = Worker(text).start()
    bus = Bus()
    ops = bus.listen("hms.ops", "ess.#")
    try:
        wait_for_queue("city2dmv", worker=worker)
        print("== publishing %d events to hms.events (permits.changed) + 1 garbage message"
              % len(EVENTS))
        for i, ev in enumerate(EVENTS):
            bus.publish("permits.changed", ev, message_id="demo-%d" % i)
        bus.publish("permits.changed", b"not json at all", message_id="demo-bad")
        wait_until(lambda: partner.count() >= len(EVENTS), 30, "the partner to receive them")
        print("\n== what the DMV partner received")
        for r in partner.received():
            hdr = {k: v for k, v in r["headers"].items()
                   if k.lower().startswith(("x-ess", "idempotency", "webhook"))}
            print("POST %s %s\n     %s" % (r["path"], json.dumps(hdr), r["body"]))
        hb = wait_until(lambda: [json.loads(b) for rk, b in bus.drain(ops)
                                 if rk == "ess.heartbeat.city2dmv"
                                 and json.loads(b)["delivered"] >= len(EVENTS)], 30,
                        "a heartbeat")
        print("\n== latest heartbeat on hms.ops (ess.heartbeat.city2dmv)")
        print(json.dumps(hb[-1], indent=2))
        print("\n== dead-lettered (ess.city2dmv.dead): %d message(s)"
              % bus.queue_count("ess.city2dmv.dead"))
        print("\n== worker log: %s" % worker.log)
        print(worker.log_text())
    finally:
        code = worker.stop()
        bus.close()
        partner.stop()
    print("ess-push stopped with exit code %s" % code)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    esslib.check(esslib.PG_URL, "ESS_PG_URL is not set: run ./run-demo.sh")
    sys.exit(main())
