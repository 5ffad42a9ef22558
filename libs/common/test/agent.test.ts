import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AgentExitedError, AgentProcess, type AgentProcessOptions } from '../src/index.js';

const script = fileURLToPath(new URL('./agent-fixture.js', import.meta.url));
const start = (o: Partial<AgentProcessOptions> = {}): AgentProcess =>
  new AgentProcess({ name: 'test agent', script, args: ['serve'], ...o });

test('calls are answered by id, in any order, with results and errors', async (t) => {
  const agent = start();
  t.after(() => agent.close());
  const slow = agent.call<string>('slow', 200, 'late');
  const fast = agent.call<string>('slow', 0, 'early');
  const order: string[] = [];
  await Promise.all([slow.then((v) => order.push(v)), fast.then((v) => order.push(v))]);
  assert.deepEqual(order, ['early', 'late']);
  assert.deepEqual(await agent.call('echo', 1, 'two', { three: [3] }), [1, 'two', { three: [3] }]);
  assert.equal(await agent.call('nothing'), null, 'undefined crosses as null');
  await assert.rejects(agent.call('fail', 'no such thing'), /no such thing/);
  await assert.rejects(agent.call('missing'), /unknown method missing/);
});

test('errors and exits are mapped by the options', async () => {
  const agent = start({
    decodeError: (w) => new RangeError(`decoded ${(w as { message: string }).message}`),
    exitError: (why) => new TypeError(`gone: ${why}`),
  });
  await assert.rejects(
    agent.call('fail', 'x'),
    (err: Error) => err instanceof RangeError && err.message === 'decoded x',
  );
  await assert.rejects(agent.call('die'), (err: Error) => err instanceof TypeError && err.message === 'gone: exit 3');
  await agent.close();
});

test('notifications get no answer; events reach onEvent', async (t) => {
  const events: unknown[] = [];
  const agent = start({ onEvent: (e, d) => events.push([e, d]) });
  t.after(() => agent.close());
  agent.notify('set', 7);
  assert.equal(await agent.call('get'), 7, 'a notification runs before later calls');
  assert.deepEqual(events, [['set', 7]]);
});

test('an agent that exits rejects pending and later calls and says why once', async () => {
  const exits: string[] = [];
  const agent = start({ onExit: (why) => exits.push(why) });
  const pending = agent.call('slow', 60_000, 'never');
  const dying = agent.call('die');
  await assert.rejects(
    pending,
    (err: Error) => err instanceof AgentExitedError && /test agent: exit 3/.test(err.message),
  );
  await assert.rejects(dying, AgentExitedError);
  await assert.rejects(agent.call('get'), AgentExitedError);
  assert.ok(agent.exited);
  assert.deepEqual(exits, ['exit 3']);
  await agent.close();
});

test('close ends the agent through its stdin: onClose runs, and it exits 0', async () => {
  const lines: string[] = [];
  const exits: string[] = [];
  const agent = start({ onStderr: (l) => lines.push(l), onExit: (why) => exits.push(why) });
  assert.equal(await agent.call('get'), 0);
  await agent.close();
  assert.deepEqual(lines, ['closing']);
  assert.deepEqual(exits, ['exit 0']);
  await assert.rejects(agent.call('get'), AgentExitedError);
});

test('a script that cannot start fails its calls', async () => {
  const agent = new AgentProcess({ name: 'missing agent', script: '/nonexistent/agent.js' });
  await assert.rejects(agent.call('get'), /missing agent: exit 1/);
});
