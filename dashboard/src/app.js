// The fieldbridge dashboard: an XMPP client in the page. It logs in with
// the user's own account over the server's WebSocket (BOSH when the
// WebSocket cannot connect), so the gateway's access rules apply as to any
// client: devices come from disco#items of the component, values from its
// pubsub nodes (history with XEP-0059 paging, then live notifications),
// status from presence (the page subscribes to each device's presence, the
// XMPP way: the devices join the user's roster), set-points from the
// ad-hoc "Set a point" command, offered only to users allowed to write;
// the active alarms from the gateway's `alerts` node (its items at login,
// then its notifications).

import uPlot from 'uplot';
import { Strophe, $pres } from 'strophe.js';
import * as x from './xmpp.js';
import { number, reading, when, ago } from './format.js';
import { ActiveAlarms, marker } from './alarms.js';

/** How far back the charts start. */
const HISTORY_HOURS = 6;
/** Items per history page (the gateway answers at most 500). */
const PAGE = 500;
/** Pages at most per device: 10 × 500 items. */
const MAX_PAGES = 10;
/** Points kept per chart, oldest dropped first. */
const MAX_CHART_POINTS = 20000;
const STORE = 'fieldbridge.dashboard';

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k) e.append(k);
  return e;
};

let conn = null;
/** The endpoint the connection went through (WebSocket, or BOSH after it). */
let connectedUrl = null;
let session = null; // { component, jid (full), devices: Map, alarms: ActiveAlarms }

// ----- settings: config.json, the query string, what was remembered -------

const FIELDS = ['jid', 'component', 'websocket', 'bosh'];

/** What the form starts from, first found first: the query string
 *  (`?websocket=…&component=…`), what was remembered, config.json, and for
 *  the WebSocket the same host's `/xmpp-websocket`. */
async function settings(saved) {
  let config = {};
  try {
    const r = await fetch('config.json', { cache: 'no-store' });
    if (r.ok) config = await r.json();
  } catch {
    // Served without config.json (by the XMPP server): the form asks.
  }
  const q = new URLSearchParams(location.search);
  const out = {};
  for (const key of FIELDS) {
    out[key] = q.get(key) || (saved && saved[key]) || config[key] || '';
  }
  if (!out.websocket && location.protocol.startsWith('http')) {
    // Served by the XMPP server itself: its endpoint, same origin.
    out.websocket = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/xmpp-websocket`;
  }
  return out;
}

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || 'null');
  } catch {
    return null;
  }
}

/** A stable resource per browser: the pubsub subscriptions of this page are
 *  the same full JID at every login, never a new one per visit. */
function resource() {
  const key = `${STORE}.resource`;
  let r = localStorage.getItem(key);
  if (!r) {
    const bytes = crypto.getRandomValues(new Uint8Array(4));
    r = `dashboard-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
    localStorage.setItem(key, r);
  }
  return r;
}

async function init() {
  const saved = remembered();
  const s = await settings(saved);
  for (const key of FIELDS) if (s[key]) $(key).value = s[key];
  if (saved) {
    $('password').value = saved.password || '';
    $('remember').checked = true;
  }
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    login();
  });
  $('logout').addEventListener('click', logout);
}

// ----- logging in ----------------------------------------------------------

function login() {
  const jid = $('jid').value.trim();
  const password = $('password').value;
  const component = $('component').value.trim();
  const urls = [$('websocket').value.trim(), $('bosh').value.trim()].filter(Boolean);
  if (!urls.length) {
    loginStatus('Give the WebSocket or BOSH URL of your XMPP server.', true);
    return;
  }
  if ($('remember').checked) {
    localStorage.setItem(STORE, JSON.stringify({
      jid, password, component, websocket: $('websocket').value.trim(), bosh: $('bosh').value.trim(),
    }));
  } else {
    localStorage.removeItem(STORE);
  }
  $('login').querySelector('button').disabled = true;
  // The page's own resource, whatever was typed after a slash.
  link = { urls, jid: `${Strophe.getBareJidFromJid(jid)}/${resource()}`, password, component, delay: RETRY_FIRST };
  connect(link.urls);
}

/** Until "Log out": what the page logs in with, again after a lost link. */
let link = null;
let retrying = null;
/** Waits before logging in again after the link was lost: doubling from
 *  the first to the last, reset by a login. */
const RETRY_FIRST = 1000;
const RETRY_LAST = 30000;

/** Logs in again later, after the link was lost (the board stays, marked). */
function retryLater() {
  if (!link) return;
  const seconds = Math.round(link.delay / 1000);
  boardStatus(`Disconnected from the XMPP server; connecting again in ${seconds} s …`, true);
  clearTimeout(retrying);
  retrying = setTimeout(() => link && connect(link.urls, true), link.delay);
  link.delay = Math.min(link.delay * 2, RETRY_LAST);
}

/** Connects through the first of `urls`, the next when it fails; `again`
 *  after a lost link, when failing means trying later, not the login form. */
function connect(urls, again = false) {
  const { jid, password, component } = link;
  const [url, ...fallback] = urls;
  if (!again) loginStatus(`Connecting to ${url} …`);
  const c = new Strophe.Connection(url);
  let connected = false;
  // A failed attempt reports CONNFAIL, then DISCONNECTED: move on once.
  let gaveUp = false;
  c.connect(jid, password, (status, condition) => {
    const S = Strophe.Status;
    if (gaveUp) return;
    if (status === S.CONNECTED) {
      connected = true;
      conn = c;
      connectedUrl = url;
      link.delay = RETRY_FIRST;
      start(component).catch((e) => boardStatus(`Cannot load the devices: ${e.message}`, true));
    } else if (status === S.AUTHFAIL) {
      gaveUp = true;
      if (again) {
        conn = null; // gone: nothing to unsubscribe through
        logout();
      }
      failed('Wrong address or password.');
    } else if ((status === S.CONNFAIL || status === S.DISCONNECTED) && !connected) {
      gaveUp = true;
      if (fallback.length) connect(fallback, again);
      else if (again) retryLater();
      else failed(`Cannot connect to ${url}${condition ? ` (${condition})` : ''}.`);
    } else if (status === S.DISCONNECTED && connected && session && link) {
      gaveUp = true;
      markAllUnknown();
      retryLater();
    }
  });
}

function failed(why) {
  $('login').querySelector('button').disabled = false;
  loginStatus(why, true);
}

function loginStatus(text, error = false) {
  $('login-status').textContent = text;
  $('login-status').className = error ? 'error' : '';
}

function boardStatus(text, error = false) {
  $('board-status').textContent = text;
  $('board-status').className = error ? 'error' : '';
}

async function logout() {
  const s = session;
  session = null;
  link = null;
  clearTimeout(retrying);
  if (s && conn) {
    // Best effort: the gateway stops sending to this page.
    await Promise.allSettled([...s.devices.values()].map((d) => d.id)
      .concat(x.ALERTS_NODE)
      .map((node) => x.unsubscribe(conn, s.component, node, s.jid)));
    conn.disconnect('logged out');
  }
  conn = null;
  clearBoard(s);
  $('board').hidden = true;
  $('logout').hidden = true;
  $('who').hidden = true;
  $('login').hidden = false;
  $('login').querySelector('button').disabled = false;
  loginStatus('');
}

// ----- the board -------------------------------------------------------------

/** Removes a session's cards and charts. */
function clearBoard(s) {
  for (const d of s ? s.devices.values() : []) for (const c of d.charts.values()) c.plot.destroy();
  $('devices').replaceChildren();
}

/** After a login (again, after a lost link): the board from the start. */
async function start(component) {
  clearBoard(session);
  session = { component, jid: conn.jid, devices: new Map(), alarms: new ActiveAlarms() };
  $('login').hidden = true;
  $('board').hidden = false;
  $('logout').hidden = false;
  $('who').hidden = false;
  $('who').textContent = `${Strophe.getBareJidFromJid(conn.jid)} · ${component}`;
  boardStatus('Loading devices …');

  conn.addHandler((m) => {
    onMessage(m);
    return true;
  }, null, 'message');
  conn.addHandler((p) => {
    onPresence(p);
    return true;
  }, null, 'presence');
  // Priority -1: chats to the user's bare JID go to their other clients.
  conn.send($pres().c('priority').t('-1'));
  renderAlarms();
  loadAlarms(session);

  let devices;
  try {
    devices = await x.listDevices(conn, component);
  } catch (e) {
    const why = e.condition === 'forbidden'
      ? `This account may not read the devices of ${component}.`
      : `${component} did not list its devices (${e.message}).`;
    boardStatus(why, true);
    return;
  }
  if (!devices.length) {
    boardStatus(`${component} has no devices.`);
    return;
  }
  boardStatus(`${devices.length} device${devices.length === 1 ? '' : 's'} on ${component}.`);
  for (const d of devices) {
    const device = {
      ...d,
      jid: `${d.id}@${component}`,
      points: new Map(),
      values: {},
      updated: null,
      lastItem: null,
      charts: new Map(),
      presence: { state: 'waiting', text: 'waiting for its presence' },
    };
    session.devices.set(d.id, device);
    renderCard(device);
  }
  // Presence: subscribing is what makes the device's presence come.
  for (const d of session.devices.values()) {
    conn.send($pres({ to: d.jid, type: 'subscribe' }));
  }
  await Promise.all([...session.devices.values()].map((d) => loadDevice(d).catch((e) => {
    d.card.querySelector('.updated').textContent = `Cannot load: ${e.message}`;
    d.card.querySelector('.updated').className = 'updated error';
  })));
  tick();
}

async function loadDevice(d) {
  const s = session;
  const points = await x.listPoints(conn, d.jid);
  for (const p of points) d.points.set(p.id, p);
  renderValues(d);
  // Subscribe first, so that nothing published while the history loads
  // is missed; items that arrive twice are dropped by id.
  d.pending = [];
  await x.subscribe(conn, s.component, d.id, s.jid);
  await loadHistory(d);
  const commands = await x.commandNodes(conn, d.jid).catch(() => []);
  if (commands.includes('set') && session === s) renderSetForm(d);
}

/** The last HISTORY_HOURS of a node, page by page from the newest. */
async function loadHistory(d) {
  const s = session;
  const since = Date.now() - HISTORY_HOURS * 3600e3;
  const items = [];
  let before = '';
  for (let page = 0; page < MAX_PAGES; page++) {
    const { items: got, first } = await x.itemsPage(conn, s.component, d.id, PAGE, before);
    items.unshift(...got);
    if (got.length < PAGE || !first) break;
    // Ids are microseconds since the epoch.
    if (Number(first) / 1000 < since) break;
    before = first;
  }
  if (session !== s) return;
  const pending = d.pending || [];
  d.pending = null;
  for (const item of items) applyItem(d, item, false);
  for (const item of pending) applyItem(d, item, false);
  renderValues(d);
  renderUpdated(d);
  for (const p of d.points.values()) chartFor(d, p);
}

function renderCard(d) {
  const card = el('article', { class: 'device', 'data-device': d.id },
    el('h2', {}, el('span', { class: 'name', text: d.name }), el('span', { class: 'jid', text: d.jid })),
    el('p', { class: 'state waiting', text: '… waiting for its presence' }),
    el('p', { class: 'updated', text: 'Last update: none yet' }),
    el('table', { class: 'values' }, el('tbody')),
    el('div', { class: 'charts' }));
  d.card = card;
  $('devices').append(card);
}

function renderValues(d) {
  const body = d.card.querySelector('table.values tbody');
  const names = new Set([...d.points.keys(), ...Object.keys(d.values)]);
  const rows = [];
  for (const name of names) {
    const p = d.points.get(name);
    const r = d.values[name];
    const td = el('td', { class: 'value', text: r ? reading(r, p) : '—' });
    if (r && r.invalid) td.append(' ', el('span', { class: 'flag', text: '(reading failed; last value)' }));
    if (r && r.questionable) td.append(' ', el('span', { class: 'flag', text: '(unconfirmed)' }));
    if (r && r.at) td.title = `read at ${new Date(r.at).toLocaleString()}`;
    rows.push(el('tr', { 'data-point': name }, el('th', { scope: 'row', text: p ? p.label : name }), td));
  }
  body.replaceChildren(...rows);
}

/** Item ids are microseconds, 16 digits: is `a` after `b`? */
const newer = (a, b) => !b || a.length > b.length || (a.length === b.length && a > b);

/** A new item (from history or a notification) into the device's state.
 *  Notifications that come while the history loads wait for it. */
function applyItem(d, item, live) {
  if (live && d.pending) {
    d.pending.push(item);
    return;
  }
  const isNew = newer(item.id, d.lastItem);
  if (live && !isNew) return; // sent twice (on subscribing, after a reconnect)
  if (isNew) {
    d.lastItem = item.id;
    d.values = item.points;
    for (const r of Object.values(item.points)) if (r.at && (!d.updated || r.at > d.updated)) d.updated = r.at;
  }
  for (const [name, r] of Object.entries(item.points)) {
    if (r.kind !== 'numeric' || r.at === null || !Number.isFinite(r.value)) continue;
    const series = d.series || (d.series = new Map());
    let s = series.get(name);
    if (!s) series.set(name, (s = { xs: [], ys: [] }));
    const t = r.at / 1000;
    // Items repeat values that did not change, under their own time.
    if (s.xs.length && t <= s.xs[s.xs.length - 1]) continue;
    s.xs.push(t);
    s.ys.push(r.value);
    if (s.xs.length > MAX_CHART_POINTS) {
      s.xs.shift();
      s.ys.shift();
    }
    if (live) {
      const c = d.charts.get(name);
      if (c) {
        c.plot.setData([s.xs, s.ys]);
        c.wrap.dataset.points = String(s.xs.length);
      }
      else if (d.points.has(name)) chartFor(d, d.points.get(name));
    }
  }
  if (live) {
    renderValues(d);
    renderUpdated(d);
  }
}

function renderUpdated(d) {
  const p = d.card.querySelector('.updated');
  p.className = 'updated';
  p.textContent = d.updated ? `Last update: ${when(d.updated)} (${ago(d.updated)})` : 'Last update: none yet';
}

function chartFor(d, p) {
  const s = d.series && d.series.get(p.id);
  if (!s || !s.xs.length || d.charts.has(p.id)) return;
  const unit = p.unit ? ` (${p.unit})` : '';
  const box = el('div', { class: 'plot' });
  const wrap = el('figure', { class: 'chart', 'data-point': p.id },
    el('h3', { text: `${p.label}${unit}: up to ${HISTORY_HOURS} h of history, then live` }), box);
  wrap.style.margin = '0';
  d.card.querySelector('.charts').append(wrap);
  const width = Math.max(200, box.clientWidth || d.card.clientWidth - 32);
  const fmt = (v) => (v === null || v === undefined ? '—' : number(v, p.decimals));
  const plot = new uPlot({
    width,
    height: 150,
    legend: { show: false },
    scales: { x: { time: true } },
    series: [{}, { label: p.label, stroke: '#0969da', width: 2, fill: 'rgba(9,105,218,0.08)', value: (u, v) => fmt(v) }],
    axes: [
      { stroke: '#57606a', space: 80, size: 36, values: (u, ticks) => ticks.map((t) => tickTime(t, u)) },
      {
        stroke: '#57606a',
        values: (u, vals) => vals.map(fmt),
        // Wide enough for the longest label (1000.00 as well as 1.5).
        size: (u, values) => 16 + 8 * Math.max(3, ...(values || []).map((v) => v.length)),
      },
    ],
  }, [s.xs, s.ys], box);
  new ResizeObserver(() => {
    const w = box.clientWidth;
    if (w > 0 && Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: 150 });
  }).observe(box);
  wrap.dataset.points = String(s.xs.length);
  d.charts.set(p.id, { plot, wrap, series: s });
}

/** An x-axis label: the time of day, to the second over a short span,
 *  with the date when the chart spans days. */
function tickTime(t, u) {
  const xs = u.data[0];
  const span = xs.length ? xs[xs.length - 1] - xs[0] : 0;
  const d = new Date(t * 1000);
  if (span > 2 * 86400) return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`;
  if (span > 1800) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function renderSetForm(d) {
  const writable = [...d.points.values()].filter((p) => p.writable);
  if (!writable.length) return;
  const select = el('select', { name: 'point' },
    ...writable.map((p) => el('option', { value: p.id, text: p.unit ? `${p.label} (${p.unit})` : p.label })));
  const input = el('input', { name: 'value', required: true, autocomplete: 'off' });
  const out = el('output', { 'aria-live': 'polite' });
  const button = el('button', { type: 'submit', text: 'Set' });
  const form = el('form', { class: 'setpoint' },
    el('h3', { text: 'Set a point' }),
    el('label', { text: 'Point ' }, select),
    el('label', { text: 'Value ' }, input),
    button, out);
  const hint = () => {
    const p = d.points.get(select.value);
    const range = [p.min !== undefined ? `from ${p.min}` : '', p.max !== undefined ? `to ${p.max}` : ''].filter(Boolean).join(' ');
    input.placeholder = p.type === 'bool' ? 'on or off' : range || p.type || '';
    input.inputMode = p.type === 'float' || p.type === 'int' ? 'decimal' : 'text';
  };
  select.addEventListener('change', hint);
  hint();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    out.className = '';
    out.textContent = 'Writing …';
    const answer = await writePoint(d.id, select.value, input.value.trim());
    out.className = answer.ok ? 'ok' : 'error';
    out.textContent = answer.text;
    button.disabled = false;
  });
  // Under the values it writes, above the charts.
  d.card.querySelector('.charts').before(form);
}

/** Writes through "Set a point": { ok, text } in words, never throws. */
async function writePoint(device, point, value) {
  const s = session;
  if (!s || !conn) return { ok: false, text: 'Not logged in.' };
  try {
    return await x.setPoint(conn, `${device}@${s.component}`, point, value);
  } catch (e) {
    const text = e.condition === 'forbidden' ? `Refused: this account may not write (${e.message}).` : `Refused: ${e.message}.`;
    return { ok: false, text, condition: e.condition };
  }
}

// ----- alarms ----------------------------------------------------------------

/** Subscribes to the alerts node first (nothing raised meanwhile is
 *  missed; ActiveAlarms orders by item id), then reads its items. */
async function loadAlarms(s) {
  try {
    await x.subscribe(conn, s.component, x.ALERTS_NODE, s.jid);
    const alerts = await x.alertItems(conn, s.component);
    if (session !== s) return;
    if (alerts === null) {
      s.alarmsUnsupported = true;
    } else {
      for (const a of alerts) s.alarms.apply(a);
    }
  } catch (e) {
    if (session !== s) return;
    s.alarmsUnsupported = e.condition === 'item-not-found' || e.condition === 'feature-not-implemented';
    if (!s.alarmsUnsupported) s.alarmsError = `Cannot load the alarms: ${e.message}`;
  }
  s.alarmsLoaded = true;
  renderAlarms();
}

/** The "Active alarms" box: raised alarms, most urgent first. */
function renderAlarms() {
  const s = session;
  const none = $('alarms-none');
  const list = s ? s.alarms.list() : [];
  $('alarm-list').replaceChildren(...list.map((a) => el('li', { class: `alarm ${a.severity}` },
    el('span', { class: 'severity', text: marker(a.severity) }),
    ' ',
    el('span', { class: 'text', text: a.text }),
    a.since ? el('span', { class: 'since', text: ` · since ${when(a.since)} (${ago(a.since)})` }) : null)));
  none.className = s && s.alarmsError ? 'error' : '';
  if (!s || !s.alarmsLoaded) none.textContent = 'Loading alarms …';
  else if (s.alarmsError) none.textContent = s.alarmsError;
  else if (s.alarmsUnsupported) none.textContent = 'No alarms: this gateway does not report alarms.';
  else none.textContent = 'No active alarms.';
  none.hidden = list.length > 0 && !(s && s.alarmsError);
}

// ----- what arrives ----------------------------------------------------------

function onMessage(m) {
  if (!session || Strophe.getBareJidFromJid(m.getAttribute('from') || '') !== session.component) return;
  let changed = false;
  for (const a of x.notificationAlerts(m)) changed = session.alarms.apply(a) || changed;
  if (changed) renderAlarms();
  for (const { node, item } of x.notificationItems(m)) {
    const d = session.devices.get(node);
    if (d) applyItem(d, item, true);
  }
}

const STATES = {
  online: '✔ online',
  stale: '◷ stale',
  offline: '✖ offline',
  waiting: '… waiting for its presence',
  unknown: '? unknown (not connected)',
};

function onPresence(p) {
  if (!session) return;
  const from = Strophe.getBareJidFromJid(p.getAttribute('from') || '');
  const d = [...session.devices.values()].find((dev) => dev.jid === from);
  if (!d) return;
  const type = p.getAttribute('type');
  if (type && type !== 'unavailable') return; // subscribed, errors: not a status
  const show = x.child(p, 'show');
  const status = x.child(p, 'status');
  const text = status ? status.textContent : '';
  let state = 'online';
  if (type === 'unavailable') state = 'offline';
  else if (show && show.textContent === 'xa') state = 'stale';
  d.presence = { state, text };
  const e = d.card.querySelector('.state');
  e.className = `state ${state}`;
  e.textContent = state === 'offline' && text ? `${STATES.offline}: ${text}` : STATES[state];
  e.title = text;
}

function markAllUnknown() {
  for (const d of session.devices.values()) {
    const e = d.card.querySelector('.state');
    e.className = 'state unknown';
    e.textContent = STATES.unknown;
  }
}

/** "12 s ago" stays true. */
let ticking = null;
function tick() {
  clearTimeout(ticking);
  if (!session) return;
  for (const d of session.devices.values()) renderUpdated(d);
  renderAlarms();
  ticking = setTimeout(tick, 5000);
}

// For people scripting the page (and for its end-to-end test): a write
// through this page's own connection, answered as the form answers.
window.fieldbridge = {
  setPoint: writePoint,
  devices: () => (session ? [...session.devices.keys()] : []),
  alarms: () => (session ? session.alarms.list().map((a) => ({ key: a.key, severity: a.severity, text: a.text })) : []),
  connectedUrl: () => connectedUrl,
};

init();
