// kpx replay against a real nats-server, with the controller stopped: states at past generations, diffs, apply.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { defaultKubeProxyConfig } from '@kpx/model';
import { ManifestsDirSource, runController } from '@kpx/controller';
import { readDeltas } from '@kpx/transport';
import { type NatsServer } from '@kpx/testing';
import { startExamplesController, waitFor } from './examples-controller.js';
import { runKpx, textIo } from './io.js';

let nats: NatsServer;
let dir: string;
/** node-a's IPv4 deltas as published: generation → digest. */
const published = new Map<number, string>();

before(async () => {
  const started = await startExamplesController('kpx-replay-');
  ({ nats, dir } = started);
  const controller = started.controller;
  const web = join(dir, 'web.yaml');
  const dns = join(dir, 'dns.json');
  // Generation 2: web's endpoint; 3: dns only (node-a IPv4 changes too); 4: web again.
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.10]', '10.244.1.20]'));
  await waitFor(() => controller.pipeline.generation === 2);
  await writeFile(dns, (await readFile(dns, 'utf8')).replace('"port": 53,', '"port": 5353,'));
  await waitFor(() => controller.pipeline.generation === 3);
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.20]', '10.244.1.30]'));
  await waitFor(() => controller.pipeline.generation === 4);
  await controller.stop();
  const nc = await connect({ servers: nats.url });
  for await (const r of readDeltas(jetstream(nc), 'node-a', { ipFamily: 'IPv4' }))
    published.set(r.delta.generation, r.delta.digest);
  await nc.close();
});
after(async () => {
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
});

test('the state at every past generation reproduces the digest published (and acked) at that generation', async () => {
  assert.deepEqual([...published.keys()], [1, 2, 3, 4], 'the fixture made four generations for node-a');
  for (const [generation, digest] of published) {
    const r = await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '--to', String(generation), '-o', 'json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as {
      node: string;
      ipFamily: string;
      generation: number;
      digest: string;
      objects: { kind: string; key: string }[];
    };
    assert.equal(j.node, 'node-a');
    assert.equal(j.generation, generation);
    assert.equal(j.digest, digest, `generation ${generation}`);
    assert.ok(j.objects.some((o) => o.kind === 'iptables.chain' && o.key === 'nat/KUBE-SERVICES'));
  }
  // The text form is the iptables-restore input of that state.
  const text = await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '--to', '2');
  assert.match(text.out, new RegExp(`^# node node-a IPv4 generation 2 digest ${published.get(2)}`));
  assert.match(text.out, /\*nat\n[\s\S]*-A KUBE-SERVICES [\s\S]*COMMIT\n/);
});

test('--diff lists each changed chain with the objects that caused it', async () => {
  const r = await runKpx(
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
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as {
    from: number;
    to: number;
    steps: {
      generation: number;
      cause: { kind: string; namespace: string; name: string }[];
      changes: { kind: string; key: string; change: string }[];
    }[];
  };
  assert.deepEqual(
    j.steps.map((s) => s.generation),
    [2, 3],
  );
  assert.deepEqual(
    j.steps[0]?.cause.map((c) => `${c.kind} ${c.namespace}/${c.name}`),
    ['EndpointSlice shop/web-abc12'],
  );
  assert.ok(j.steps[0]?.changes.some((c) => c.key.startsWith('nat/KUBE-SEP-') && c.change === 'added'));
  assert.ok(j.steps[0]?.changes.some((c) => c.key.startsWith('nat/KUBE-SEP-') && c.change === 'removed'));
  assert.ok(j.steps[0]?.changes.some((c) => c.key.startsWith('nat/KUBE-SVC-') && c.change === 'changed'));
  assert.ok(
    j.steps[1]?.cause.every((c) => c.kind === 'Service' && c.name === 'kube-dns'),
    JSON.stringify(j.steps[1]?.cause),
  );
  const text = await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '--from', '1', '--to', '2', '--diff');
  assert.match(text.out, /^generation 2 \(after 1\) digest [0-9a-f]{64}/);
  assert.match(text.out, /cause: EndpointSlice shop\/web-abc12/);
  assert.match(text.out, /\+ -A KUBE-SEP-[A-Z0-9]+ .*10\.244\.1\.20/);
  assert.match(text.out, /- -A KUBE-SEP-[A-Z0-9]+ .*10\.244\.1\.10/);
});

test('a generation outside retention is refused, saying so', async () => {
  const r = await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '--to', '0');
  assert.equal(r.code, 1);
  assert.match(r.err, /outside retention: the oldest retained snapshot is generation 1/);
  assert.equal(
    (await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '--to', '2', '--apply')).code,
    2,
    '--apply needs --netns',
  );
});

test('--apply loads a past state into a namespace', async (t) => {
  const ns = `kpxrp-${process.pid}`.slice(0, 15);
  execFileSync('ip', ['netns', 'add', ns]);
  t.after(() => execFileSync('ip', ['netns', 'del', ns]));
  const r = await runKpx('replay', '--nats', nats.url, '--node', 'node-a', '--to', '2', '--apply', '--netns', ns);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`generation 2 \\(digest ${published.get(2)}\\) into network namespace ${ns}`));
  const saved = execFileSync('ip', ['netns', 'exec', ns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' });
  assert.match(saved, /--to-destination 10\.244\.1\.20:8080/);
  assert.doesNotMatch(saved, /10\.244\.1\.30/);
});

test('--follow prints deltas as they are published, until stopped', async (t) => {
  const { replayCommand } = await import('../src/replay.js');
  const controller = await runController({
    source: new ManifestsDirSource({ dir, debounceMs: 20 }),
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    config: { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 },
    logLevel: 'silent',
  });
  t.after(() => controller.stop());
  await controller.pipeline.settle();
  const ac = new AbortController();
  const io = textIo();
  const done = replayCommand(['--nats', nats.url, '--node', 'node-b', '--follow', '-o', 'json'], io, {
    signal: ac.signal,
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(io.out, '', 'only new deltas');
  const web = join(dir, 'web.yaml');
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.30]', '10.244.1.40]'));
  await waitFor(() => io.out.includes('\n'));
  const line = JSON.parse(io.out.split('\n')[0] ?? '') as {
    node: string;
    generation: number;
    cause: { name: string }[];
    upserts: string[];
  };
  assert.equal(line.node, 'node-b');
  assert.equal(line.generation, controller.pipeline.generation);
  assert.deepEqual(
    line.cause.map((c) => c.name),
    ['web-abc12'],
  );
  assert.ok(line.upserts.some((k) => k.startsWith('nat/KUBE-SEP-')));
  ac.abort();
  assert.equal(await done, 0);
});
