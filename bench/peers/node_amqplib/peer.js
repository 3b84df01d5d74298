#!/usr/bin/env node
// peer.js -- the Node peer of the ESS benchmark: amqplib + fetch, tuned.
//
//   node bench/peers/node_amqplib/peer.js --queue Q --routing-key RK --target URL
//        [--name N] [--prefetch 1000] [--max-in-flight 64] [--client fetch|http]
//        [--amqp-url URL]
//
// Declares the durable queue Q bound to the topic exchange hms.events with RK,
// consumes it with prefetch, POSTs each body unchanged with fetch (Node's
// undici: HTTP/1.1 keep-alive by default) and the headers ESS sends
// (Content-Type, Idempotency-Key "<N>:<event id>", X-ESS-Connector,
// X-ESS-Event-Id; event id = AMQP message_id, else N-<tag>), at most
// max-in-flight POSTs at once (the rest wait in a FIFO), and acks each message
// after its 2xx. A failed POST is nacked with requeue. SIGTERM / SIGINT:
// cancel the consumer, wait for POSTs in flight (5 s at most), close, exit 0.
//
// --client http swaps fetch for node:http with a keep-alive Agent (maxSockets
// = max-in-flight). Same pipeline otherwise. On Node 20 fetch (undici plus the
// WHATWG Request/Response/stream objects around every call) costs several
// times the CPU per request of node:http, so the benchmark reports both: fetch
// is what the issue names, node:http is the faster Node one could write.
'use strict';

const http = require('node:http');
const amqp = require('amqplib');

function parseArgs(argv) {
  const a = {
    name: 'node',
    prefetch: 1000,
    maxInFlight: 64,
    client: 'fetch',
    amqpUrl: process.env.ESS_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/',
  };
  const keys = {
    '--queue': 'queue', '--routing-key': 'routingKey', '--target': 'target', '--name': 'name',
    '--prefetch': 'prefetch', '--max-in-flight': 'maxInFlight', '--amqp-url': 'amqpUrl',
    '--client': 'client',
  };
  for (let i = 2; i < argv.length; i += 2) {
    const k = keys[argv[i]];
    if (!k || i + 1 >= argv.length) {
      throw new Error(`unknown or incomplete option ${argv[i]}`);
    }
    a[k] = typeof a[k] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  for (const k of ['queue', 'routingKey', 'target']) {
    if (!a[k]) throw new Error(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} is required`);
  }
  if (a.client !== 'fetch' && a.client !== 'http') throw new Error('--client is fetch or http');
  return a;
}

// node:http POST with a keep-alive agent; resolves to the status code.
function httpPost(agent, target, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(target, {
      method: 'POST', agent, timeout: 5000,
      headers: { ...headers, 'Content-Length': body.length },
    }, (res) => {
      res.resume(); // drain the body so the socket goes back to the agent
      res.on('end', () => resolve(res.statusCode));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function main() {
  const args = parseArgs(process.argv);
  const conn = await amqp.connect(args.amqpUrl);
  const ch = await conn.createChannel();
  await ch.assertExchange('hms.events', 'topic', { durable: true });
  await ch.assertQueue(args.queue, { durable: true });
  await ch.bindQueue(args.queue, 'hms.events', args.routingKey);
  await ch.prefetch(args.prefetch);

  const agent = args.client === 'http'
    ? new http.Agent({ keepAlive: true, maxSockets: args.maxInFlight })
    : null;
  let inFlight = 0;
  let delivered = 0;
  let failed = 0;
  const waiting = [];

  async function post(msg) {
    const id = msg.properties.messageId || `${args.name}-${msg.fields.deliveryTag}`;
    const headers = {
      'Content-Type': 'application/json',
      'Idempotency-Key': `"${args.name}:${id}"`,
      'X-ESS-Connector': args.name,
      'X-ESS-Event-Id': id,
    };
    let ok = false;
    try {
      if (agent) {
        const status = await httpPost(agent, args.target, msg.content, headers);
        ok = status >= 200 && status < 300;
      } else {
        const res = await fetch(args.target, {
          method: 'POST',
          body: msg.content,
          headers,
          signal: AbortSignal.timeout(5000),
        });
        await res.arrayBuffer(); // drain the body so the connection goes back to the pool
        ok = res.status >= 200 && res.status < 300;
      }
    } catch (e) {
      ok = false;
    }
    if (ok) {
      delivered++;
      ch.ack(msg);
    } else {
      failed++;
      ch.nack(msg, false, true);
    }
  }

  function pump() {
    while (inFlight < args.maxInFlight && waiting.length > 0) {
      const msg = waiting.shift();
      inFlight++;
      post(msg).finally(() => {
        inFlight--;
        pump();
      });
    }
  }

  const { consumerTag } = await ch.consume(args.queue, (msg) => {
    if (msg === null) return; // consumer cancelled by the broker
    waiting.push(msg);
    pump();
  }, { noAck: false });

  let stopping = false;
  async function stop() {
    if (stopping) return;
    stopping = true;
    try {
      await ch.cancel(consumerTag);
    } catch (e) { /* closing anyway */ }
    const deadline = Date.now() + 5000;
    while ((inFlight > 0 || waiting.length > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    process.stderr.write(`node_amqplib: ${delivered} delivered, ${failed} failed POSTs\n`);
    try {
      await conn.close();
    } catch (e) { /* already gone */ }
    process.exit(0);
  }
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  conn.on('error', (e) => process.stderr.write(`node_amqplib: connection error: ${e.message}\n`));
  conn.on('close', () => {
    if (!stopping) {
      process.stderr.write('node_amqplib: connection closed by the broker\n');
      process.exit(1);
    }
  });
}

main().catch((e) => {
  process.stderr.write(`node_amqplib: ${e.stack || e}\n`);
  process.exit(1);
});
