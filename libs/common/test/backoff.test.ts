import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, backoffDelay, sleep } from '../src/index.js';

test('backoffDelay doubles from initialMs and stops at maxMs', () => {
  const o = { initialMs: 500, maxMs: 30_000 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay(n, o)),
    [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000],
  );
  assert.equal(backoffDelay(0, o), 500, 'attempt 0 counts as the first');
  assert.equal(backoffDelay(10_000, o), 30_000, 'a long streak stays finite');
});

test('Backoff counts a failure streak until reset', () => {
  const b = new Backoff({ initialMs: 200, maxMs: 1000 });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next()], [200, 400, 800, 1000]);
  assert.equal(b.attempts, 4);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.equal(b.next(), 200);
});

test('sleep resolves after the time, or at once when aborted', async () => {
  const t0 = Date.now();
  await sleep(20);
  assert.ok(Date.now() - t0 >= 15);
  const ac = new AbortController();
  const t1 = Date.now();
  const p = sleep(60_000, ac.signal);
  ac.abort();
  await p;
  assert.ok(Date.now() - t1 < 1000, 'an abort ends the wait');
  await sleep(60_000, ac.signal);
  assert.ok(Date.now() - t1 < 1000, 'an aborted signal does not wait at all');
});
