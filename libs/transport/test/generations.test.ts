import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { openGenerationCounter } from '../src/index.js';

let server: NatsServer;
before(async () => {
  server = await startNatsServer({ jetstream: true });
});
after(async () => server.stop());

test('the generation counter survives restarts and never hands out a value twice, even to racing writers', async () => {
  const nc = await connect({ servers: server.url });
  const a = await openGenerationCounter(jetstream(nc));
  assert.equal(a.current(), 0);
  assert.deepEqual([await a.next(), await a.next()], [1, 2]);
  const b = await openGenerationCounter(jetstream(nc));
  assert.equal(b.current(), 2);
  const got = await Promise.all([a.next(), b.next(), a.next(), b.next()]);
  assert.equal(new Set(got).size, 4, `distinct: ${got.join(',')}`);
  await nc.close();
  await server.restart();
  const nc2 = await connect({ servers: server.url });
  const c = await openGenerationCounter(jetstream(nc2));
  assert.equal(c.current(), Math.max(...got));
  await nc2.close();
});
