// The "Active alarms" box's state: what the alerts node's items leave
// raised, in any order of arrival. Run with `npm test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ActiveAlarms, marker } from '../src/alarms.js';

const alert = (id, key, change, extra = {}) => ({
  id: String(id), key, change, severity: 'critical', since: 1000, text: `${key} ${change}`, ...extra,
});

test('raised alarms stay until their clear comes', () => {
  const a = new ActiveAlarms();
  assert.equal(a.apply(alert(1, 'boiler/temperature', 'raised')), true);
  assert.equal(a.apply(alert(2, 'boiler/offline', 'raised', { severity: 'warning' })), true);
  assert.deepEqual(a.list().map((x) => x.key), ['boiler/temperature', 'boiler/offline']);
  assert.equal(a.apply(alert(3, 'boiler/temperature', 'cleared')), true);
  assert.deepEqual(a.list().map((x) => x.key), ['boiler/offline']);
  // A clear of something not raised changes nothing.
  assert.equal(a.apply(alert(4, 'tank/level', 'cleared')), false);
});

test('history and live notifications may arrive in any order: the newest item of a key wins', () => {
  const a = new ActiveAlarms();
  // Live: the clear (id 12) comes before the history's raise (id 11).
  a.apply(alert(12, 'boiler/temperature', 'cleared'));
  assert.equal(a.apply(alert(11, 'boiler/temperature', 'raised')), false);
  assert.deepEqual(a.list(), []);
  // Ids compare as numbers: 100 is newer than 99.
  a.apply(alert(99, 'pump/running', 'raised'));
  a.apply(alert(100, 'pump/running', 'cleared'));
  assert.deepEqual(a.list(), []);
  // The same item twice (history and live) is applied once.
  assert.equal(a.apply(alert(200, 'x/y', 'raised')), true);
  assert.equal(a.apply(alert(200, 'x/y', 'raised')), false);
});

test('a flapping summary leaves the alarm where it stands', () => {
  const a = new ActiveAlarms();
  a.apply(alert(1, 'boiler/temperature', 'raised'));
  a.apply(alert(2, 'boiler/temperature', 'flapping', { raised: false }));
  assert.deepEqual(a.list(), []);
  a.apply(alert(3, 'boiler/temperature', 'flapping'));
  assert.deepEqual(a.list().map((x) => x.text), ['boiler/temperature flapping']);
});

test('most urgent first, then the oldest', () => {
  const a = new ActiveAlarms();
  a.apply(alert(1, 'a/info', 'raised', { severity: 'info', since: 1 }));
  a.apply(alert(2, 'b/late', 'raised', { severity: 'critical', since: 5 }));
  a.apply(alert(3, 'c/warn', 'raised', { severity: 'warning', since: 2 }));
  a.apply(alert(4, 'd/early', 'raised', { severity: 'critical', since: 3 }));
  assert.deepEqual(a.list().map((x) => x.key), ['d/early', 'b/late', 'c/warn', 'a/info']);
  assert.equal(marker('critical'), '🔴 CRITICAL');
  assert.equal(marker('info'), '🔵 INFO');
});
