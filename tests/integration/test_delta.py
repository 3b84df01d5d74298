"""ess-it-delta: `delta: true` end to end -- a key's first delivery carries every
field, later ones only the fields whose values changed (plus the key, in the
partner's names); a change that changes nothing is not sent and is recorded as
a "skipped" ticket; the last-delivered state lives in Postgres, so a restarted
worker keeps diffing against what the partner already has."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (Bus, Partner, Worker, check, manifest, run, sql, unique_id,  # noqa: E402
                    wait_for_queue, wait_until)

EXTRA = """delta: true
tickets: all
max_in_flight: 1
rename: {permit_id: APPT_NUM}
values: {status: {PENDING: "07", CONFIRMED: "08"}}
"""


def test_only_changed_fields_then_nothing_then_after_restart():
    cid = unique_id("it-delta")
    topic = "it.%s.changed" % cid
    partner = Partner()
    bus = Bus()
    worker = Worker(manifest(cid, partner.url("/appts"), EXTRA)).start()
    try:
        wait_for_queue(cid, worker=worker)
        bus.publish(topic, {"permit_id": "A1", "status": "PENDING", "street": "Main"},
                    message_id="d-1")
        wait_until(lambda: partner.count() >= 1, 20, "the first delivery")
        bus.publish(topic, {"permit_id": "A1", "status": "CONFIRMED", "street": "Main"},
                    message_id="d-2")
        bus.publish(topic, {"permit_id": "A1", "status": "CONFIRMED", "street": "Main"},
                    message_id="d-3")  # changes nothing
        bus.publish(topic, {"permit_id": "A1", "street": "Elm"}, message_id="d-4")
        bus.publish(topic, {"permit_id": "B1", "status": "PENDING"}, message_id="d-5")
        wait_until(lambda: partner.count() >= 4, 20, "four deliveries")
        got = [json.loads(r["body"]) for r in partner.received()]
        check(got[0] == {"APPT_NUM": "A1", "status": "07", "street": "Main"},
              "a first delivery sends everything: %r" % got[0])
        check(got[1] == {"APPT_NUM": "A1", "status": "08"},
              "then only the changed field plus the key: %r" % got[1])
        check(got[2] == {"APPT_NUM": "A1", "street": "Elm"},
              "d-3 changed nothing and was not sent; d-4 only its change: %r" % got[2:])
        check(got[3] == {"APPT_NUM": "B1", "status": "07"}, "another key's first: %r" % got[3])
        skipped = wait_until(lambda: sql("SELECT event_id FROM ess_tickets WHERE connector=%s"
                                         " AND outcome='skipped'", cid), 20,
                             "a skipped ticket for the change that changed nothing")
        check([r[0] for r in skipped] == ["d-3"], "skipped tickets: %r" % skipped)
        # Saved with the next offset: one save may still predate d-4's 2xx.
        want = {"APPT_NUM": "A1", "status": "08", "street": "Elm"}
        wait_until(lambda: [r for r in sql("SELECT state FROM ess_delta_state WHERE connector=%s"
                                           " AND key='A1'", cid) if json.loads(r[0]) == want],
                   20, "A1's state in Postgres to be what the partner now has: %r" % want)
        check(worker.stop() == 0, "SIGTERM exits 0")
        check(partner.count() == 4, "nothing more was sent: %d" % partner.count())

        worker = Worker(manifest(cid, partner.url("/appts"), EXTRA)).start()
        wait_for_queue(cid, worker=worker)
        bus.publish(topic, {"permit_id": "A1", "status": "CONFIRMED", "street": "Elm",
                            "note": "late"}, message_id="d-6")
        wait_until(lambda: partner.count() >= 5, 20, "the delivery after a restart")
        got = json.loads(partner.received()[4]["body"])
        check(got == {"APPT_NUM": "A1", "note": "late"},
              "a restarted worker diffs against the stored state: %r" % got)
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
    run([test_only_changed_fields_then_nothing_then_after_restart])
