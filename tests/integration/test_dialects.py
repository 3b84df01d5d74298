"""ess-it-dialects: partner dialects end to end -- a SOAP envelope the partner
parses (SOAPAction, escaping, value codes), a SOAP Fault parks the event,
fixed-width and CSV bodies, transforms converting and parking."""
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (Bus, Partner, Worker, check, manifest, run, sql, unique_id,  # noqa: E402
                    wait_for_queue, wait_until)

SOAP_NS = "{http://schemas.xmlsoap.org/soap/envelope/}"
FAULT = ('<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
         'envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>'
         'Unknown appointment A9</faultstring></soap:Fault></soap:Body></soap:Envelope>')


def with_worker(extra, body):
    cid = unique_id("it-dia")
    partner = Partner()
    worker = Worker(manifest(cid, partner.url("/dmv/soap"), extra)).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=worker)
        body(cid, "it.%s.changed" % cid, partner, bus)
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log:\n%s" % worker.log_text()[-4000:], file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


SOAP = """format: soap
soap: {action: UpdateAppt, namespace: "urn:dmv"}
values: {status: {PENDING: "07", CONFIRMED: "08", CANCELLED: "09"}}
rename: {permit_id: APPT_NUM}
"""


def test_soap_envelope_parsed_by_the_partner():
    def body(cid, topic, partner, bus):
        bus.publish(topic, {"permit_id": "A1", "status": "CANCELLED",
                            "street": "Main & 1st <N>"}, message_id="s-1")
        wait_until(lambda: partner.count() >= 1, 20, "the SOAP request")
        rec = partner.received()[0]
        check(rec["headers"].get("soapaction") == '"urn:dmv/UpdateAppt"',
              "SOAPAction: %r" % rec["headers"])
        check(rec["headers"].get("content-type", "").startswith("text/xml"),
              "content type: %r" % rec["headers"].get("content-type"))
        env = ET.fromstring(rec["body"])
        op = env.find(SOAP_NS + "Body").find("{urn:dmv}UpdateAppt")
        check(op is not None, "operation element in the body: %s" % rec["body"])
        got = {child.tag: child.text for child in op}
        check(got == {"APPT_NUM": "A1", "status": "09", "street": "Main & 1st <N>"},
              "fields survive XML escaping and value codes: %r" % got)
    with_worker(SOAP, body)


def test_soap_fault_on_200_parks_with_the_fault_string():
    def body(cid, topic, partner, bus):
        partner.mode(mode="ok", reply=FAULT)  # a 200 whose body is a SOAP Fault
        bus.publish(topic, {"permit_id": "A9", "status": "PENDING"}, message_id="f-9")
        parked = wait_until(lambda: sql("SELECT reason FROM ess_dead_letters WHERE connector=%s",
                                        cid), 20, "the faulted event parked")
        check("SOAP Fault: Unknown appointment A9" in parked[0][0], "reason: %r" % parked)
    with_worker(SOAP, body)


def test_fixed_width_and_transforms():
    extra = """format: fixed
fields: [permit_id, amount, issued_on]
transforms: {issued_on: {date: {from: "%Y-%m-%d", to: "%m/%d/%Y"}}}
columns:
  - {field: permit_id, width: 8, align: left, pad: " "}
  - {field: amount, width: 6, align: right, pad: "0"}
  - {field: issued_on, width: 10}
"""

    def body(cid, topic, partner, bus):
        bus.publish(topic, {"permit_id": "P1", "amount": 42, "issued_on": "2026-11-26"},
                    message_id="x-1")
        bus.publish(topic, {"permit_id": "P2", "amount": 7, "issued_on": "2026-13-45"},
                    message_id="x-2")
        wait_until(lambda: partner.count() >= 1, 20, "the fixed-width record")
        check(partner.received()[0]["body"] == "P1      00004211/26/2026\n",
              "fixed-width line: %r" % partner.received()[0]["body"])
        parked = wait_until(lambda: sql("SELECT event_id, reason FROM ess_dead_letters"
                                        " WHERE connector=%s", cid), 20, "the bad date parked")
        check(parked[0][0] == "x-2" and "does not match %Y-%m-%d" in parked[0][1],
              "a value a transform cannot convert parks the event: %r" % parked)
    with_worker(extra, body)


def test_csv_quotes_what_needs_quoting():
    extra = """format: csv
csv: {header: true}
fields: [permit_id, street]
"""

    def body(cid, topic, partner, bus):
        bus.publish(topic, {"permit_id": "C1", "street": 'Main & 1st "North", <N>'},
                    message_id="c-1")
        wait_until(lambda: partner.count() >= 1, 20, "the CSV record")
        check(partner.received()[0]["body"] ==
              'permit_id,street\r\nC1,"Main & 1st ""North"", <N>"\r\n',
              "RFC 4180: %r" % partner.received()[0]["body"])
    with_worker(extra, body)


if __name__ == "__main__":
    run([test_soap_envelope_parsed_by_the_partner,
         test_soap_fault_on_200_parks_with_the_fault_string, test_fixed_width_and_transforms,
         test_csv_quotes_what_needs_quoting])
