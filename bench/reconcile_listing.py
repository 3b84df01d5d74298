#!/usr/bin/python3
"""reconcile_listing -- generated listings for measuring ess-reconcile at scale.

  /usr/bin/python3 bench/reconcile_listing.py --records 1000000 [--port 0]

prints "PORT <n>", then serves, generated on the fly (streamed, never held in
memory):
  GET /hms      HMS's side, a JSON array of N records {permit_id, street,
                truck_limit, status, issued_on} (hms_snapshot_url)
  GET /partner  the partner's side in partner names (PERMIT_NUM, status codes
                O/C), with planted differences: every 1000th record has another
                status, every 5000th is missing, and 100 records HMS lacks
Use with a manifest like bench/reconcile-bench.yml (rename + values) and
`/usr/bin/time -v build/workers/reconcile/ess-reconcile --manifest ...`.
Expected: mismatched N/1000 - N/5000 overlap..., see the summary the run prints.
"""
import argparse
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

N = 0


def hms_rec(i):
    return {"permit_id": "P-%07d" % i, "street": "Main Street %d" % i, "truck_limit": i % 80,
            "status": "OPEN" if i % 3 else "CLOSED", "issued_on": "2026-%02d-%02d"
            % (1 + i % 12, 1 + i % 28)}


def partner_rec(i):
    r = hms_rec(i)
    out = {"PERMIT_NUM": r["permit_id"], "street": r["street"], "truck_limit": r["truck_limit"],
           "status": "O" if r["status"] == "OPEN" else "C", "issued_on": r["issued_on"],
           "updated_at": "2026-11-01T00:00:00Z"}
    if i % 1000 == 0:
        out["status"] = "X"
    return out


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes: streamed

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path not in ("/hms", "/partner"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        out, sep = [b"["], b""
        for i in range(1, N + 1):
            if self.path == "/partner" and i % 5000 == 0:
                continue
            rec = hms_rec(i) if self.path == "/hms" else partner_rec(i)
            out.append(sep + json.dumps(rec, separators=(",", ":")).encode())
            sep = b","
            if len(out) >= 2000:
                self.wfile.write(b"".join(out))
                out = []
        if self.path == "/partner":
            for j in range(100):
                out.append(sep + json.dumps({"PERMIT_NUM": "Z-%d" % j, "status": "O"}).encode())
                sep = b","
        out.append(b"]")
        self.wfile.write(b"".join(out))


def main():
    global N
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1000000)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    N = a.records
    signal.signal(signal.SIGTERM, lambda *x: sys.exit(0))
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), H)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
