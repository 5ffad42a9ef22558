import assert from 'node:assert/strict';
import { test } from 'node:test';
import { msFromTimestamp, secondsFromMs, timestampFromMs } from '../src/index.js';

test('timestampFromMs splits milliseconds into seconds and nanos', () => {
  assert.deepEqual(timestampFromMs(5000), { seconds: 5, nanos: 0 });
  assert.deepEqual(timestampFromMs(1_700_000_000_123), { seconds: 1_700_000_000, nanos: 123_000_000 });
  assert.deepEqual(timestampFromMs(1500.25), { seconds: 1, nanos: 500_250_000 });
  assert.deepEqual(timestampFromMs(0), { seconds: 0, nanos: 0 });
});

test('timestampFromMs keeps nanos in [0, 1e9), carrying and borrowing whole seconds', () => {
  assert.deepEqual(timestampFromMs(1999.9999999), { seconds: 2, nanos: 0 }, 'rounding up to a whole second carries');
  assert.deepEqual(
    timestampFromMs(-1),
    { seconds: -1, nanos: 999_000_000 },
    'before the epoch: negative seconds, positive nanos',
  );
  for (const ms of [0.4, 999.9999996, 1_733_000_000_999.9999, -0.5, -1000.25]) {
    const t = timestampFromMs(ms);
    assert.ok(
      Number.isInteger(t.seconds) && Number.isInteger(t.nanos) && t.nanos >= 0 && t.nanos < 1e9,
      `${ms}: ${JSON.stringify(t)}`,
    );
  }
});

test('msFromTimestamp inverts timestampFromMs', () => {
  assert.equal(msFromTimestamp({ seconds: 1_700_000_000, nanos: 123_000_000 }), 1_700_000_000_123);
  assert.equal(msFromTimestamp({ seconds: 1, nanos: 500_250_000 }), 1500.25);
  for (const ms of [0, 1, 999, 1_700_000_000_123, -1]) assert.equal(msFromTimestamp(timestampFromMs(ms)), ms);
});

test('secondsFromMs is a float of seconds', () => {
  assert.equal(secondsFromMs(1_700_000_000_500), 1_700_000_000.5);
});
