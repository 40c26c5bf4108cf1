// The page rounds as the gateway's chat does: the cases of
// fieldbridge-core's display.rs, run with `node --test test/format.test.mjs`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { number, reading } from '../src/format.js';

test('floats show four significant digits without losing integer digits', () => {
  const cases = [
    [1670.218989, '1670'],
    [62.79916, '62.80'],
    [0.0012345, '0.001234'],
    [123456.7, '123457'],
    [21.5, '21.50'],
    [-4.56789, '-4.568'],
    [9.99996, '10.00'],
    [999.96, '1000'],
    [0.0, '0'],
    [-0.0, '0'],
    [-0.00000000001, '0'],
    [1e20, '100000000000000000000'],
    [1e-12, '0'],
  ];
  for (const [x, want] of cases) assert.equal(number(x), want, String(x));
});

test('a point\'s decimals win', () => {
  assert.equal(number(62.79916, 1), '62.8');
  assert.equal(number(21.0, 2), '21.00');
  assert.equal(number(1670.218989, 0), '1670');
  assert.equal(number(-0.04, 1), '0.0');
  assert.equal(number(0.5, 200), '0.500000000');
});

test('readings carry their unit; integers and switches read as such', () => {
  const numeric = (text) => ({ kind: 'numeric', value: Number(text), text, unit: '°C' });
  assert.equal(reading(numeric('65'), { type: 'float', decimals: 1 }), '65.0 °C');
  assert.equal(reading(numeric('62.79916'), { type: 'float' }), '62.80 °C');
  assert.equal(reading({ kind: 'numeric', value: 42, text: '42' }, { type: 'int', unit: 'W' }), '42 W');
  assert.equal(reading({ kind: 'boolean', value: true, text: 'true' }, { type: 'bool' }), 'on');
  assert.equal(reading({ kind: 'string', value: 'ok', text: 'ok' }, undefined), 'ok');
});
