// kpx replay and kpx audit --generation when the node's subject holds messages the controller never published
// (issue #12): garbage, another node's delta, a re-published old delta, a delta that does not chain. They are
// skipped; every retained generation still replays to the digest the controller published.
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { Delta } from '@kpx/proto';
import { readDeltas } from '@kpx/transport';
import { type NatsServer } from '@kpx/testing';
import { startExamplesController, waitFor } from './examples-controller.js';
import { runKpx } from './io.js';

let nats: NatsServer;
let dir: string;
/** node-a's IPv4 deltas as the controller published them: generation → digest. */
const published = new Map<number, string>();

/** node-a's IPv4 delta of `generation`, as the controller published it. */
async function ipv4Delta(js: JetStreamClient, generation: number): Promise<Delta> {
  for await (const r of readDeltas(js, 'node-a', { ipFamily: 'IPv4' }))
    if (r.delta.generation === generation) return r.delta;
  throw new Error(`no IPv4 delta ${generation} of node-a`);
}

before(async () => {
  const started = await startExamplesController('kpx-replay-corrupt-');
  ({ nats, dir } = started);
  const controller = started.controller;
  await controller.pipeline.settle();
  const web = join(dir, 'web.yaml');
  const nc = await connect({ servers: nats.url });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const subject = 'kpx.delta.node-a';
  // Between the controller's generations 1 and 2, and after 3: what it never published.
  await js.publish(subject, new Uint8Array(28).fill(0x5a));
  await js.publish(subject, (await jsm.streams.getMessage('KPX_DELTAS', { last_by_subj: 'kpx.delta.node-b' }))!.data);
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.10]', '10.244.1.20]'));
  await waitFor(() => controller.pipeline.generation === 2);
  await controller.pipeline.settle();
  const second = await ipv4Delta(js, 2);
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.20]', '10.244.1.30]'));
  await waitFor(() => controller.pipeline.generation === 3);
  await controller.pipeline.settle();
  await js.publish(subject, Delta.encode(second).finish());
  await js.publish(subject, Delta.encode({ ...second, generation: 2 ** 50, prevGeneration: 2 ** 50 - 1 }).finish());
  await js.publish(subject, new Uint8Array([0x0a, 0xff, 0x01]));
  await controller.stop();
  for await (const r of readDeltas(js, 'node-a', { ipFamily: 'IPv4' }))
    if (r.headers['Kpx-Generation'] !== undefined) published.set(r.delta.generation, r.delta.digest);
  await nc.close();
});
after(async () => {
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
});

test('kpx replay skips what the controller did not publish: every generation still has its digest', async () => {
  assert.deepEqual([...published.keys()], [1, 2, 3]);
  for (const [generation, digest] of published) {
    const r = await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '--to', String(generation), '-o', 'json');
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as { digest: string }).digest, digest, `generation ${generation}`);
  }
  const newest = await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '-o', 'json');
  assert.equal(newest.code, 0, newest.err);
  assert.equal((JSON.parse(newest.out) as { generation: number }).generation, 3);
  const diff = await runKpx(
    'replay',
    '--nats',
    nats.url,
    '--node',
    'node-a',
    '--from',
    '1',
    '--to',
    '3',
    '--diff',
    '-o',
    'json',
  );
  assert.equal(diff.code, 0, diff.err);
  assert.deepEqual(
    (JSON.parse(diff.out) as { steps: { generation: number }[] }).steps.map((s) => s.generation),
    [2, 3],
  );
});

test('kpx audit --generation skips them too', async () => {
  const r = await runKpx('audit', '--nats', nats.url, '--node', 'node-a', '--generation', '3', '-o', 'json');
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { generation: number; digest: string };
  assert.equal(j.generation, 3);
  assert.equal(j.digest, published.get(3));
});
