import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDuration, parseDuration } from '../src/config/duration.js';

test('Go durations: units h m s ms us µs μs ns, fractions, signs', () => {
  const cases: [string, number][] = [
    ['1h2m3.5s', 3_723_500],
    ['500ms', 500],
    ['100us', 0.1],
    ['100\u00b5s', 0.1],
    ['100\u03bcs', 0.1],
    ['2000000ns', 2],
    ['.5s', 500],
    ['1.5h', 5_400_000],
    ['+5s', 5_000],
    ['-1m', -60_000],
    ['0', 0],
    ['-0', 0],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
  for (const bad of ['', '30', '5 s', '1d', '.s', '1.2.3s', 's', '1s2', '3000000h', '--1s', ' 1s']) {
    assert.equal(parseDuration(bad), undefined, JSON.stringify(bad));
  }
});

test('days only when asked for (command-line flags)', () => {
  assert.equal(parseDuration('7d', { days: true }), 7 * 86_400_000);
  assert.equal(parseDuration('1d12h', { days: true }), 36 * 3_600_000);
  assert.equal(parseDuration('7d'), undefined);
});

test('formatDuration prints as Go does', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [500, '500ms'],
    [1_500, '1.5s'],
    [60_000, '1m0s'],
    [3_600_000, '1h0m0s'],
    [-60_000, '-1m0s'],
    [0.1, '0.1ms'],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, String(ms));
});
