// dashboard_browser.js -- drives the dashboard page in real headless Chromium
// (playwright-core, executablePath /usr/bin/chromium) for test_dashboard.py.
//
//   node dashboard_browser.js NPM_DIR URL
//
// NPM_DIR holds node_modules/playwright-core (installed by the test). The
// page is opened once; then one JSON command per stdin line, one JSON answer
// per stdout line:
//   {"op": "wait", "tiles": {"<id>": {"level": "ok", "status": "DOWN",
//                                     "alert": "partner_down"}}, "timeout_ms": N}
//       -> {"ok": true, "elapsed_ms": n, "tiles": {...}} once every listed tile
//          shows all it asks (level: the tile's colour class; status: its state
//          text; alert: a name among its open alerts), else after timeout_ms
//          {"ok": false, "error": "...", "tiles": {...what the page showed}}
//   {"op": "screenshot", "path": "/abs/file.png"} -> {"ok": true, "bytes": n}
//   {"op": "quit"}
// The page's own text is read through the DOM, as a person would see it.
'use strict';

const path = require('path');
const readline = require('readline');

const [npmDir, url] = process.argv.slice(2);
const { chromium } = require(path.join(npmDir, 'node_modules', 'playwright-core'));

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Every tile as shown: {id: {level, status, alerts[]}}.
async function tiles(page) {
  return page.$$eval('article.tile', (els) => {
    const out = {};
    for (const e of els) {
      out[e.dataset.connector] = {
        level: e.className.split(' ')[1] || '',
        status: (e.querySelector('.state') || {}).textContent || '',
        alerts: (e.dataset.alerts || '').split(' ').filter(Boolean),
      };
    }
    return out;
  });
}

function matches(shown, want) {
  return Object.keys(want).every((id) => {
    const t = shown[id];
    const w = want[id];
    return t && (!w.level || t.level === w.level) && (!w.status || t.status === w.status) &&
      (!w.alert || t.alerts.indexOf(w.alert) >= 0);
  });
}

async function wait(page, cmd) {
  const start = Date.now();
  let shown = {};
  while (Date.now() - start < cmd.timeout_ms) {
    shown = await tiles(page);
    if (matches(shown, cmd.tiles)) {
      return { ok: true, elapsed_ms: Date.now() - start, tiles: shown };
    }
    await page.waitForTimeout(50);
  }
  return { ok: false, error: 'timed out after ' + cmd.timeout_ms + ' ms', tiles: shown };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.ESS_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  // A failed resource shows up as a bare console error; the response says
  // which (the browser's own /favicon.ico guess is not the page's doing).
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) {
      problems.push(m.text());
    }
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !/\/favicon\.ico$/.test(r.url())) {
      problems.push(r.status() + ' ' + r.url());
    }
  });
  await page.goto(url, { waitUntil: 'load' });
  say({ ok: true, ready: true });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      say({ ok: false, error: 'bad command: ' + line });
      continue;
    }
    if (cmd.op === 'quit') {
      break;
    }
    try {
      if (cmd.op === 'wait') {
        say(Object.assign(await wait(page, cmd), { page_errors: problems }));
      } else if (cmd.op === 'screenshot') {
        const buf = await page.screenshot({ path: cmd.path, fullPage: true });
        say({ ok: true, bytes: buf.length });
      } else {
        say({ ok: false, error: 'unknown op ' + cmd.op });
      }
    } catch (e) {
      say({ ok: false, error: String(e) });
    }
  }
  await browser.close();
}

main().catch((e) => {
  say({ ok: false, error: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
