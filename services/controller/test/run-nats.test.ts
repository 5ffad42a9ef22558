// The whole controller against a real nats-server: what lands in JetStream.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { RuleState } from '@kpx/ruleset';
import { getSnapshot, lastDelta, readDeltas } from '@kpx/transport';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { runController, type RunningController, type Source } from '../src/index.js';
import { exampleObjects, waitFor, webSlice as slice } from './fixtures.js';
import { ScriptedSource } from './scripted-source.js';

let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;

async function start(source: Source): Promise<RunningController> {
  const c = await runController({
    source,
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
  });
  await waitFor(() => c.pipeline.generation > 0);
  await c.pipeline.settle();
  return c;
}

before(async () => {
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
});
after(async () => {
  await nc.close();
  await nats.stop();
});

test('initial state for every node, then small deltas; a restart continues the chain without republishing', async (t) => {
  const source = new ScriptedSource(await exampleObjects());
  const c1 = await start(source);
  t.after(() => c1.stop());
  for (const node of ['node-a', 'node-b', 'node-c']) {
    const last = await lastDelta(js, node);
    assert.ok(last, node);
    assert.equal(last.delta.snapshot, true);
    assert.equal(last.headers['Kpx-Node'], node);
    assert.match(last.headers.traceparent ?? '', /^00-[0-9a-f]{32}-/);
    // The snapshot the marker points at is stored where it survives a restart.
    const snap = await getSnapshot(js, node, last.delta.ipFamily, { generation: last.delta.generation });
    assert.ok(snap);
    assert.equal(RuleState.from(snap.objects).digest, last.delta.digest);
  }
  source.upsert(slice(['10.244.1.10', '10.244.1.77'], '500'));
  await waitFor(() => c1.pipeline.generation === 2);
  await c1.pipeline.settle();
  const d = (await lastDelta(js, 'node-b'))!.delta;
  assert.equal(d.generation, 2);
  assert.equal(d.snapshot, false);
  assert.ok(d.upserts.length > 0 && d.upserts.length <= 3);
  // node-b rebuilt from stored snapshot + deltas reaches the published digest.
  const snap = (await getSnapshot(js, 'node-b', 'IPv4', { generation: 1 }))!;
  const state = RuleState.from(snap.objects, 1);
  for await (const r of readDeltas(js, 'node-b', { fromGeneration: 1, ipFamily: 'IPv4' })) state.apply(r.delta);
  assert.equal(state.digest, d.digest);
  await c1.stop();

  // Restart with the same cluster: nothing republished, generations continue.
  const before = (await jetstream(nc).jetstreamManager()).streams.info('KPX_DELTAS');
  const msgs = (await before).state.messages;
  const source2 = new ScriptedSource([
    ...(await exampleObjects()).filter((o) => o.metadata?.name !== 'web-abc12'),
    slice(['10.244.1.10', '10.244.1.77'], '500'),
  ]);
  const c2 = await runController({
    source: source2,
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
  });
  t.after(() => c2.stop());
  await c2.pipeline.settle();
  assert.equal(c2.pipeline.generation, 2, 'the restarted controller adopts the published heads');
  assert.equal(
    (await (await jetstream(nc).jetstreamManager()).streams.info('KPX_DELTAS')).state.messages,
    msgs,
    'nothing republished',
  );
  source2.upsert(slice(['10.244.1.10'], '501'));
  await c2.pipeline.settle();
  const after = (await lastDelta(js, 'node-b'))!.delta;
  assert.equal(after.generation, 3, 'the next generation, none reused or skipped');
  assert.equal(after.prevGeneration, 2, 'chain continues from what node-b had');
});
