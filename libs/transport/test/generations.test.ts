import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { Kvm } from '@nats-io/kv';
import { FencedError, GenerationKey, openGenerationCounter, StateBucket } from '../src/index.js';
import { decodeCounter, encodeCounter } from '../src/generations.js';

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

test('a counter whose bucket goes backwards under it never repeats a generation; fence moves it past one in use', async () => {
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  const a = await openGenerationCounter(js);
  const start = await a.next();
  // Someone rewrites the key to an old value (a restored backup, a lost bucket recreated).
  const kv = await new Kvm(js).open(StateBucket);
  await kv.put(GenerationKey, '1');
  assert.equal(await a.next(), start + 1, 'not 2: the counter never goes below what it handed out');
  await a.fence(start + 100);
  assert.equal(await a.next(), start + 101, 'above the fence');
  const b = await openGenerationCounter(js);
  assert.equal(b.current(), start + 101, 'the fence is stored, not only remembered');
  await a.fence(3);
  assert.equal(await a.next(), start + 102, 'a lower fence changes nothing');
  await nc.close();
});

test('a claimed epoch fences the counter: a deposed leader gets FencedError, the old format still reads', async () => {
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  const kv = await new Kvm(js).open(StateBucket);
  await kv.put(GenerationKey, '500');
  const old = await openGenerationCounter(js);
  await old.claim(1);
  assert.equal(await old.next(), 501);
  assert.equal(new TextDecoder().decode((await kv.get(GenerationKey))?.value), '{"generation":501,"epoch":1}');
  const successor = await openGenerationCounter(js);
  await successor.claim(2);
  assert.equal(await successor.next(), 502);
  await assert.rejects(
    old.next(),
    (err: Error) => err instanceof FencedError && err.epoch === 1 && err.storedEpoch === 2,
  );
  await assert.rejects(old.fence(10_000), FencedError);
  await assert.rejects(old.claim(1), FencedError, 'a stale epoch cannot claim back');
  // A controller without leader election keeps the stored epoch: the leader goes on, the value stays fenced.
  const plain = await openGenerationCounter(js);
  assert.equal(await plain.next(), 503);
  assert.equal(await successor.next(), 504);
  assert.deepEqual(decodeCounter(new TextEncoder().encode('42')), { generation: 42, epoch: 0 });
  assert.equal(encodeCounter({ generation: 42, epoch: 0 }), '42');
  await nc.close();
});
