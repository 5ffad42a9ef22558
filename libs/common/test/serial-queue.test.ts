import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SerialQueue } from '../src/index.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('tasks run one at a time, in the order queued', async () => {
  const q = new SerialQueue();
  const log: string[] = [];
  let release!: () => void;
  const first = q.run(async () => {
    log.push('a start');
    await new Promise<void>((r) => (release = r));
    log.push('a end');
    return 'a';
  });
  const second = q.run(() => {
    log.push('b');
    return 'b';
  });
  await tick();
  assert.deepEqual(log, ['a start'], 'b waits for a');
  release();
  assert.equal(await first, 'a');
  assert.equal(await second, 'b');
  assert.deepEqual(log, ['a start', 'a end', 'b']);
});

test('a rejected task rejects its caller and does not stop the queue', async () => {
  const q = new SerialQueue();
  const failed = q.run(() => Promise.reject(new Error('boom')));
  const next = q.run(() => 42);
  await assert.rejects(failed, /boom/);
  assert.equal(await next, 42);
});

test('idle() waits for everything queued so far and never rejects', async () => {
  const q = new SerialQueue();
  let done = false;
  void q.run(async () => {
    await tick();
    done = true;
  });
  q.run(() => Promise.reject(new Error('ignored'))).catch(() => undefined);
  await q.idle();
  assert.equal(done, true);
});
