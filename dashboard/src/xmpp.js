// What the page asks the gateway over XMPP, and how it reads the answers:
// service discovery, pubsub (items with XEP-0059 paging, subscriptions,
// notifications in the XEP-0323 `fields` shape), ad-hoc "Set a point".
// No page state here: app.js owns that.

import { $iq } from 'strophe.js';

export const NS = {
  discoInfo: 'http://jabber.org/protocol/disco#info',
  discoItems: 'http://jabber.org/protocol/disco#items',
  pubsub: 'http://jabber.org/protocol/pubsub',
  pubsubEvent: 'http://jabber.org/protocol/pubsub#event',
  rsm: 'http://jabber.org/protocol/rsm',
  sensordata: 'urn:xmpp:iot:sensordata',
  commands: 'http://jabber.org/protocol/commands',
  data: 'jabber:x:data',
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  pointForm: 'urn:fieldbridge:point:0',
  alert: 'urn:fieldbridge:alert:0',
};

/** The gateway's pubsub node of alarm transitions (not a device). */
export const ALERTS_NODE = 'alerts';

/** An IQ error (or a timeout) as people read it: condition and text. */
export class XmppError extends Error {
  constructor(stanza) {
    const error = stanza && child(stanza, 'error');
    let condition = 'remote-server-timeout';
    let text = '';
    if (error) {
      for (const c of error.children) {
        if (c.namespaceURI !== NS.stanzas) continue;
        if (c.localName === 'text') text = c.textContent;
        else condition = c.localName;
      }
    } else if (stanza) {
      condition = 'undefined-condition';
    }
    super(text ? `${condition}: ${text}` : condition);
    this.condition = condition;
    this.text = text;
  }
}

/** The first child element named `name` (in `ns`, if given). */
export function child(el, name, ns) {
  for (const c of el.children) {
    if (c.localName === name && (!ns || c.namespaceURI === ns)) return c;
  }
  return null;
}

function children(el, name) {
  return Array.from(el.children).filter((c) => c.localName === name);
}

/** Sends an IQ; resolves with the result, rejects with an XmppError. */
export function request(conn, stanza, timeout = 20000) {
  return new Promise((resolve, reject) => {
    conn.sendIQ(stanza, resolve, (el) => reject(new XmppError(el)), timeout);
  });
}

/** The devices of the gateway: disco#items of its domain. */
export async function listDevices(conn, component) {
  const answer = await request(conn, $iq({ type: 'get', to: component }).c('query', { xmlns: NS.discoItems }));
  return children(child(answer, 'query'), 'item').map((i) => ({
    id: i.getAttribute('node'),
    name: i.getAttribute('name') || i.getAttribute('node'),
  })).filter((d) => d.id && d.id !== ALERTS_NODE);
}

/** A device's points: disco#items of its JID, then each point node's
 *  description (label, unit, decimals, writable, min, max). */
export async function listPoints(conn, jid) {
  const answer = await request(conn, $iq({ type: 'get', to: jid }).c('query', { xmlns: NS.discoItems }));
  const items = children(child(answer, 'query'), 'item');
  return Promise.all(items.map(async (i) => {
    const id = i.getAttribute('node');
    const point = { id, label: i.getAttribute('name') || id, writable: false };
    try {
      const info = await request(conn, $iq({ type: 'get', to: jid }).c('query', { xmlns: NS.discoInfo, node: id }));
      for (const x of children(child(info, 'query'), 'x')) {
        const form = formValues(x);
        if (form.FORM_TYPE !== NS.pointForm) continue;
        point.label = form.label || id;
        point.unit = form.unit;
        point.type = form.type;
        point.writable = form.writable === 'true';
        if (form.decimals !== undefined) point.decimals = Number(form.decimals);
        if (form.min !== undefined) point.min = Number(form.min);
        if (form.max !== undefined) point.max = Number(form.max);
      }
    } catch {
      // An older gateway without point descriptions: the item name will do.
    }
    return point;
  }));
}

/** A data form's values by var (the first value of each field). */
export function formValues(x) {
  const out = {};
  for (const f of children(x, 'field')) {
    const v = child(f, 'value');
    if (v) out[f.getAttribute('var')] = v.textContent;
  }
  return out;
}

/** Subscribes `jid` (this page's full JID) to the device's node. */
export function subscribe(conn, component, node, jid) {
  return request(conn, $iq({ type: 'set', to: component })
    .c('pubsub', { xmlns: NS.pubsub }).c('subscribe', { node, jid }));
}

export function unsubscribe(conn, component, node, jid) {
  return request(conn, $iq({ type: 'set', to: component })
    .c('pubsub', { xmlns: NS.pubsub }).c('unsubscribe', { node, jid }));
}

/** One page of a node's items, newest `max` before `before` (XEP-0059):
 *  { items (oldest first), first (id of the oldest, for the next page) }. */
export async function itemsPage(conn, component, node, max, before) {
  const answer = await request(conn, $iq({ type: 'get', to: component })
    .c('pubsub', { xmlns: NS.pubsub })
    .c('items', { node }).up()
    .c('set', { xmlns: NS.rsm }).c('max').t(String(max)).up()
    .c('before').t(before || ''));
  const pubsub = child(answer, 'pubsub', NS.pubsub);
  const itemsEl = pubsub && child(pubsub, 'items');
  const items = itemsEl ? children(itemsEl, 'item').map(parseItem).filter(Boolean) : [];
  items.sort((a, b) => compareIds(a.id, b.id));
  const set = pubsub && child(pubsub, 'set', NS.rsm);
  const firstEl = set && child(set, 'first');
  return { items, first: firstEl ? firstEl.textContent : (items[0] && items[0].id) };
}

/** Item ids are the publication time in microseconds, 16 digits. */
function compareIds(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** An item's readings: { id, node, points: { name: { kind, value, text,
 *  unit, at (ms), invalid, questionable } } }, or null when it holds no
 *  sensor data. */
export function parseItem(item) {
  const fields = child(item, 'fields', NS.sensordata);
  if (!fields) return null;
  const points = {};
  let node = null;
  for (const n of children(fields, 'node')) {
    node = n.getAttribute('nodeId');
    for (const ts of children(n, 'timestamp')) {
      const at = Date.parse(ts.getAttribute('value'));
      for (const f of ts.children) {
        const name = f.getAttribute('name');
        if (!name || !['numeric', 'boolean', 'string'].includes(f.localName)) continue;
        const text = f.getAttribute('value') ?? '';
        let value = text;
        if (f.localName === 'numeric') value = Number(text);
        if (f.localName === 'boolean') value = text === 'true' || text === '1';
        points[name] = {
          kind: f.localName,
          value,
          text,
          unit: f.getAttribute('unit') || undefined,
          at: Number.isNaN(at) ? null : at,
          invalid: f.getAttribute('invalid') === 'true',
          questionable: f.getAttribute('questionable') === 'true',
        };
      }
    }
  }
  return { id: item.getAttribute('id'), node, points };
}

/** The items of a pubsub notification: [{ node, item }]. */
export function notificationItems(message) {
  const event = child(message, 'event', NS.pubsubEvent);
  if (!event) return [];
  const out = [];
  for (const items of children(event, 'items')) {
    const node = items.getAttribute('node');
    for (const i of children(items, 'item')) {
      const item = parseItem(i);
      if (item) out.push({ node, item });
    }
  }
  return out;
}

/** An `alerts` item: { id, key, severity, change, raised (flapping: where
 *  it stands, when the item says), at and since (ms), value, text, devices:
 *  [{ id, name }] }, or null when it holds no alert. */
export function parseAlert(item) {
  const a = child(item, 'alert', NS.alert);
  if (!a) return null;
  const time = (name) => {
    const t = Date.parse(a.getAttribute(name) || '');
    return Number.isNaN(t) ? null : t;
  };
  const raised = a.getAttribute('raised');
  const text = child(a, 'text', NS.alert);
  return {
    id: item.getAttribute('id') || '',
    key: a.getAttribute('key'),
    severity: a.getAttribute('severity') || 'warning',
    change: a.getAttribute('change'),
    raised: raised === null ? undefined : raised === 'true',
    at: time('at'),
    since: time('since'),
    value: a.getAttribute('value') ?? undefined,
    text: text ? text.textContent : a.getAttribute('key'),
    devices: children(a, 'device').map((d) => ({ id: d.getAttribute('id'), name: d.getAttribute('name') })),
  };
}

/** The alerts node's items, the newest `max` (oldest first); null when the
 *  gateway has no such node (one older than alarms). */
export async function alertItems(conn, component, max = 500) {
  let answer;
  try {
    answer = await request(conn, $iq({ type: 'get', to: component })
      .c('pubsub', { xmlns: NS.pubsub }).c('items', { node: ALERTS_NODE, max_items: String(max) }));
  } catch (e) {
    if (['item-not-found', 'feature-not-implemented', 'service-unavailable'].includes(e.condition)) return null;
    throw e;
  }
  const pubsub = child(answer, 'pubsub', NS.pubsub);
  const itemsEl = pubsub && child(pubsub, 'items');
  const alerts = itemsEl ? children(itemsEl, 'item').map(parseAlert).filter(Boolean) : [];
  return alerts.sort((a, b) => compareIds(a.id, b.id));
}

/** The alerts of a pubsub notification of the alerts node. */
export function notificationAlerts(message) {
  const event = child(message, 'event', NS.pubsubEvent);
  if (!event) return [];
  return children(event, 'items')
    .filter((items) => items.getAttribute('node') === ALERTS_NODE)
    .flatMap((items) => children(items, 'item').map(parseAlert).filter(Boolean));
}

/** The ad-hoc commands `to` offers this user: their nodes. */
export async function commandNodes(conn, to) {
  const answer = await request(conn, $iq({ type: 'get', to })
    .c('query', { xmlns: NS.discoItems, node: NS.commands }));
  return children(child(answer, 'query'), 'item').map((i) => i.getAttribute('node'));
}

/** "Set a point" (XEP-0050): opens the command, submits point and value;
 *  resolves with { ok, text } from the command's note, rejects with an
 *  XmppError when the request itself is refused. */
export async function setPoint(conn, to, point, value) {
  const opened = await request(conn, $iq({ type: 'set', to })
    .c('command', { xmlns: NS.commands, node: 'set', action: 'execute' }));
  const session = child(opened, 'command', NS.commands).getAttribute('sessionid');
  const done = await request(conn, $iq({ type: 'set', to })
    .c('command', { xmlns: NS.commands, node: 'set', sessionid: session, action: 'complete' })
    .c('x', { xmlns: NS.data, type: 'submit' })
    .c('field', { var: 'point' }).c('value').t(point).up().up()
    .c('field', { var: 'value' }).c('value').t(String(value)));
  const command = child(done, 'command', NS.commands);
  const note = command && child(command, 'note');
  if (!note) return { ok: true, text: 'Done.' };
  return { ok: note.getAttribute('type') !== 'error', text: note.textContent };
}

