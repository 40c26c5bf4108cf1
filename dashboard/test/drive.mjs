// Drives the dashboard in a real browser (Debian's chromium through
// puppeteer-core) the way a person would, and prints what it saw as one
// JSON object on stdout, for tests/tests/suite/dashboard.rs to assert on.
//
//   node test/drive.mjs '{"url": "http://127.0.0.1:8080/", "jid": "...",
//     "password": "...", "component": "gw.localhost", "websocket": "ws://...",
//     "expect_devices": true, "watch": {"device": "boiler", "point": "temperature"},
//     "set": {"device": "boiler", "point": "setpoint", "value": "61.5"},
//     "forge": {"device": "boiler", "point": "setpoint", "value": "1"},
//     "wait_state": {"device": "flaky", "contains": "offline"},
//     "wait_alarm": {"contains": "Pressure"},
//     "remember": true, "reload": true,
//     "screenshot": "/tmp/x.png"}'
//
// Every wait has a deadline; a step that fails puts its reason in `errors`
// and the script still prints what it saw.

import puppeteer from 'puppeteer-core';

const args = JSON.parse(process.argv[2] || '{}');
const WAIT = args.wait_ms || 30000;
const out = { errors: [], console: [] };

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: 'new',
  args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--no-first-run', '--no-default-browser-check'],
});

async function step(name, fn) {
  try {
    return await fn();
  } catch (e) {
    out.errors.push(`${name}: ${e.message.split('\n')[0]}`);
    return undefined;
  }
}

try {
  const page = await browser.newPage();
  await page.setViewport({ width: args.width || 1280, height: args.height || 900 });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') out.console.push(m.text());
  });
  page.on('pageerror', (e) => out.errors.push(`page error: ${e.message}`));
  await page.goto(args.url, { waitUntil: 'load', timeout: WAIT });

  await step('login', async () => {
    for (const [id, value] of [['jid', args.jid], ['password', args.password],
      ['component', args.component], ['websocket', args.websocket], ['bosh', args.bosh]]) {
      if (value === undefined) continue;
      await page.$eval(`#${id}`, (e, v) => { e.value = v; }, value);
    }
    if (args.remember) await page.click('#remember');
    out.prefilled = await page.$eval('#websocket', (e) => e.value);
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => (!document.getElementById('board').hidden
      && !/^Loading/.test(document.getElementById('board-status').textContent))
      || document.getElementById('login-status').className === 'error', { timeout: WAIT });
    if (await page.$eval('#board', (e) => e.hidden)) {
      out.login_error = await page.$eval('#login-status', (e) => e.textContent);
      return;
    }
    out.status = await page.$eval('#board-status', (e) => e.textContent);
    out.connected_url = await page.evaluate(() => window.fieldbridge.connectedUrl());
    out.logged_in = true;
  });

  const devices = () => page.$$eval('.device', (cards) => cards.map((c) => ({
    id: c.dataset.device,
    name: c.querySelector('.name').textContent,
    state: c.querySelector('.state').textContent,
    updated: c.querySelector('.updated').textContent,
    values: Object.fromEntries([...c.querySelectorAll('tr[data-point]')].map((r) => [r.dataset.point, r.querySelector('td').textContent])),
    labels: Object.fromEntries([...c.querySelectorAll('tr[data-point]')].map((r) => [r.dataset.point, r.querySelector('th').textContent])),
    charts: Object.fromEntries([...c.querySelectorAll('.chart')].map((f) => [f.dataset.point, Number(f.dataset.points)])),
    set_form: Boolean(c.querySelector('form.setpoint')),
  })));

  if (out.logged_in && args.expect_devices) {
    await step('values', () => page.waitForFunction(() => {
      const cards = [...document.querySelectorAll('.device')];
      return cards.length > 0 && cards.every((c) => c.querySelector('td.value')
        && ![...c.querySelectorAll('td.value')].some((td) => td.textContent === '—')
        && !/waiting/.test(c.querySelector('.state').textContent));
    }, { timeout: WAIT }));
    // Charts come after the history and the command list.
    await step('charts', () => page.waitForFunction(() => document.querySelectorAll('.chart').length > 0, { timeout: WAIT }));
  }
  if (out.logged_in) {
    out.devices = await devices();
    // How the cards sit: side by side (distinct left edges) or one column,
    // and whether anything sticks out sideways (a phone would scroll).
    out.layout = await page.evaluate(() => ({
      viewport: window.innerWidth,
      scroll_width: document.documentElement.scrollWidth,
      columns: new Set([...document.querySelectorAll('.device')].map((c) => Math.round(c.getBoundingClientRect().left))).size,
    }));
  }

  if (out.logged_in && args.watch) {
    await step('live', async () => {
      const sel = `.device[data-device="${args.watch.device}"] tr[data-point="${args.watch.point}"] td`;
      const chart = `.device[data-device="${args.watch.device}"] .chart[data-point="${args.watch.point}"]`;
      const before = await page.$eval(sel, (e) => e.textContent);
      const pointsBefore = await page.$eval(chart, (e) => Number(e.dataset.points)).catch(() => 0);
      await page.waitForFunction((s, b) => document.querySelector(s).textContent !== b, { timeout: WAIT }, sel, before);
      const after = await page.$eval(sel, (e) => e.textContent);
      await page.waitForFunction((s, n) => Number(document.querySelector(s)?.dataset.points) > n, { timeout: WAIT }, chart, pointsBefore);
      const pointsAfter = await page.$eval(chart, (e) => Number(e.dataset.points));
      out.live = { before, after, chart_before: pointsBefore, chart_after: pointsAfter };
    });
  }

  if (out.logged_in && args.wait_state) {
    // A device's status as the card shows it, once it reads `contains`.
    await step('state', async () => {
      const sel = `.device[data-device="${args.wait_state.device}"] .state`;
      await page.waitForFunction((s, c) => document.querySelector(s).textContent.includes(c),
        { timeout: WAIT }, sel, args.wait_state.contains);
      out.state = await page.$eval(sel, (e) => e.textContent);
    });
  }

  if (out.logged_in && args.wait_alarm) {
    // The "Active alarms" box, once a line of it reads `contains`.
    await step('alarm', async () => {
      await page.waitForFunction((c) => [...document.querySelectorAll('#alarm-list li')]
        .some((li) => li.textContent.includes(c)), { timeout: WAIT }, args.wait_alarm.contains);
      out.alarms = await page.$$eval('#alarm-list li', (lis) => lis.map((li) => ({
        severity: li.querySelector('.severity').textContent,
        text: li.querySelector('.text').textContent,
        since: li.querySelector('.since')?.textContent ?? null,
      })));
      out.alarms_note = await page.$eval('#alarms-none', (e) => (e.hidden ? null : e.textContent));
    });
  }

  if (out.logged_in && args.reconnect) {
    // The test restarts the XMPP server once `ready_file` exists; the page
    // must say so, log in again by itself and show live values again.
    await step('reconnect', async () => {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(args.reconnect.ready_file, 'ready\n');
      await page.waitForFunction(() => /connecting again/.test(document.getElementById('board-status').textContent),
        { timeout: WAIT });
      const lost = await page.$eval('#board-status', (e) => e.textContent);
      const states = await page.$$eval('.device .state', (es) => es.map((e) => e.textContent));
      await page.waitForFunction(() => / devices? on /.test(document.getElementById('board-status').textContent)
        && [...document.querySelectorAll('.device .state')].every((e) => !/unknown|waiting/.test(e.textContent)),
      { timeout: WAIT });
      const sel = `.device[data-device="${args.reconnect.device}"] tr[data-point="${args.reconnect.point}"] td`;
      await page.waitForSelector(sel, { timeout: WAIT });
      const before = await page.$eval(sel, (e) => e.textContent);
      await page.waitForFunction((q, b) => document.querySelector(q).textContent !== b, { timeout: WAIT }, sel, before);
      out.reconnect = { lost, states_while_lost: states, status: await page.$eval('#board-status', (e) => e.textContent),
        before, after: await page.$eval(sel, (e) => e.textContent) };
    });
  }

  if (out.logged_in && args.set) {
    await step('set', async () => {
      const card = `.device[data-device="${args.set.device}"]`;
      await page.waitForSelector(`${card} form.setpoint`, { timeout: WAIT });
      await page.select(`${card} form.setpoint select`, args.set.point);
      await page.$eval(`${card} form.setpoint input`, (e, v) => { e.value = v; }, args.set.value);
      await page.click(`${card} form.setpoint button`);
      await page.waitForFunction((c) => {
        const o = document.querySelector(`${c} form.setpoint output`);
        return o.textContent && o.textContent !== 'Writing …';
      }, { timeout: WAIT }, card);
      const answer = await page.$eval(`${card} form.setpoint output`, (e) => ({ text: e.textContent, ok: e.className === 'ok' }));
      const cell = `${card} tr[data-point="${args.set.point}"] td`;
      const expected = args.set.shown;
      await page.waitForFunction((s, v) => document.querySelector(s).textContent.startsWith(v), { timeout: WAIT }, cell, expected)
        .catch(() => {});
      out.set = { ...answer, value_after: await page.$eval(cell, (e) => e.textContent) };
    });
  }

  if (out.logged_in && args.forge) {
    await step('forge', async () => {
      out.forge = await page.evaluate((f) => window.fieldbridge.setPoint(f.device, f.point, f.value), args.forge);
    });
  }

  if (args.screenshot) {
    await step('screenshot', async () => {
      await page.screenshot({ path: args.screenshot, fullPage: true });
      const png = await page.screenshot({ encoding: 'base64', fullPage: true });
      out.screenshot = await measure(png);
      out.screenshot.path = args.screenshot;
    });
  }

  if (args.reload) {
    // What the browser kept: the form after a reload, and its storage.
    await step('reload', async () => {
      await page.reload({ waitUntil: 'load', timeout: WAIT });
      await page.waitForFunction(() => document.getElementById('websocket').value !== '', { timeout: WAIT });
      out.after_reload = await page.evaluate(() => ({
        jid: document.getElementById('jid').value,
        password: document.getElementById('password').value,
        remember: document.getElementById('remember').checked,
        storage: JSON.stringify({ ...localStorage }),
      }));
    });
  }
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(out)}\n`);

/** How much a screenshot shows: distinct colours and the share of pixels
 *  that are not the background, decoded by the browser's own PNG decoder. */
async function measure(base64) {
  const page = await browser.newPage();
  try {
    return await page.evaluate(async (data) => {
      const img = new Image();
      img.src = `data:image/png;base64,${data}`;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, img.width, img.height).data;
      const colours = new Map();
      for (let i = 0; i < px.length; i += 4) {
        const key = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
        colours.set(key, (colours.get(key) || 0) + 1);
      }
      const total = px.length / 4;
      const background = Math.max(...colours.values());
      return { width: img.width, height: img.height, colours: colours.size, not_background: 1 - background / total };
    }, base64);
  } finally {
    await page.close();
  }
}
