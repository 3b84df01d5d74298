#!/usr/bin/env node
// verify_webhook -- checks ESS's Standard Webhooks signatures with the reference
// `standardwebhooks` npm package, so interop is proven by someone else's code.
//
// Usage:  WEBHOOK_SECRET=whsec_... node verify_webhook.js NPM_PREFIX < requests.json
// NPM_PREFIX is where `npm install --prefix NPM_PREFIX standardwebhooks` put it.
// stdin: a JSON array of recorded requests, each {"headers": {name: value},
// "body_b64": raw body bytes in base64} (partner_stub.py records both).
// stdout: one JSON array, per request {"ok": true} or {"ok": false, "error": "..."}.
// Exit 0 when the verdicts were printed (whatever they are), 2 on bad usage.
// The secret comes from the environment, never argv, so it is not in `ps`.
"use strict";

const path = require("path");

function main() {
  const prefix = process.argv[2];
  const secret = process.env.WEBHOOK_SECRET;
  if (!prefix || !secret) {
    process.stderr.write("usage: WEBHOOK_SECRET=whsec_... node verify_webhook.js NPM_PREFIX\n");
    process.exit(2);
  }
  const { Webhook } = require(path.join(path.resolve(prefix), "node_modules", "standardwebhooks"));
  const wh = new Webhook(secret);
  const chunks = [];
  process.stdin.on("data", (c) => chunks.push(c));
  process.stdin.on("end", () => {
    const requests = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const verdicts = requests.map((r) => {
      try {
        wh.verify(Buffer.from(r.body_b64, "base64"), r.headers);
        return { ok: true };
      } catch (e) {
        return { ok: false, error: String(e && e.message ? e.message : e) };
      }
    });
    process.stdout.write(JSON.stringify(verdicts) + "\n");
  });
}

main();
