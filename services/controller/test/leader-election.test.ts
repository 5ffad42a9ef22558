// HA controllers on one NATS: only the leader publishes; kill -9 of the leader hands over within the lease duration
// with generations strictly increasing; a leader paused past its lease (SIGSTOP/SIGCONT) publishes nothing more and
// exits; a leader whose lease store lies to it is still refused by the generation counter's epoch.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { IPFamily, readManifestDir, type KubeObject } from '@kpx/model';
import { openGenerationCounter, readDeltas } from '@kpx/transport';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { credentials } from '@grpc/grpc-js';
import { NodeSyncClient, type StatusResponse } from '@kpx/proto';
import { LeaderElector, runController, type LeaseRecord, type LeaseStore, type SourceEvent } from '../src/index.js';
import { StandbyBuffer } from '../src/standby-buffer.js';
import { ScriptedSource } from './scripted-source.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;
const kpxBin = new URL('../../../cli/bin/kpx.js', import.meta.url).pathname;

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
before(async () => {
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
});
after(async () => {
  await nc.close();
  await nats.stop();
});

/** Every generation of node-a's IPv4 deltas, in stream order. */
async function generations(node = 'node-a'): Promise<number[]> {
  const out: number[] = [];
  for await (const r of readDeltas(js, node, {})) if (r.delta.ipFamily === IPFamily.IPv4) out.push(r.delta.generation);
  return out;
}

interface Controller {
  readonly child: ChildProcess;
  readonly log: () => string;
  readonly exited: Promise<number | null>;
}

function spawnController(dir: string, name: string): Controller {
  const args = [
    'controller',
    '--manifests',
    dir,
    '--nats',
    nats.url,
    '--grpc-listen',
    '127.0.0.1:0',
    '--metrics-listen',
    '127.0.0.1:0',
    '--leader-elect',
    '--leader-elect-lease-duration',
    '3s',
    '--leader-elect-renew-deadline',
    '2s',
    '--leader-elect-retry-period',
    '500ms',
    '--leader-elect-resource-name',
    name,
  ];
  const child = spawn(process.execPath, [kpxBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, log: () => out, exited };
}

const count = (text: string, what: string): number => text.split('\n').filter((l) => l.includes(what)).length;

/** The leader's gRPC address, from its log. */
const grpcOf = (log: string): string | undefined =>
  /"grpc":"([^"]+)","msg":"gRPC NodeSync listening \(leader\)"/.exec(log)?.[1];

function status(address: string): Promise<StatusResponse> {
  const client = new NodeSyncClient(address, credentials.createInsecure());
  return new Promise<StatusResponse>((resolve, reject) =>
    client.status({ node: '' }, (err, res) => (err ? reject(err) : resolve(res))),
  ).finally(() => client.close());
}

test('two controllers: only the leader publishes; kill -9 hands over; a paused leader that comes back publishes nothing and exits', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-ha-'));
  const kids: Controller[] = [];
  t.after(async () => {
    for (const k of kids) if (k.child.exitCode === null && k.child.signalCode === null) k.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  await cp(examples, dir, { recursive: true });
  // A Service without endpoints changes every node's rules (its REJECT rule).
  const node = (i: number): string =>
    `apiVersion: v1\nkind: Service\nmetadata: {name: x${i}, namespace: ha}\nspec: {clusterIP: 10.96.200.${i}, ports: [{port: 80}]}\n`;

  const a = spawnController(dir, 'ha-test');
  kids.push(a);
  await waitFor(() => a.log().includes('published generation'), 15_000, 'the first controller to lead and publish');
  const b = spawnController(dir, 'ha-test');
  kids.push(b);
  await waitFor(() => b.log().includes('a standby compiles nothing'), 15_000, 'the second controller to stand by');
  await writeFile(join(dir, 'x1.yaml'), node(1));
  await waitFor(() => count(a.log(), 'published generation') >= 2, 10_000, 'the leader to publish the change');
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(count(b.log(), 'published generation'), 0, 'the standby published nothing');
  assert.ok(!b.log().includes('became the leader'));
  assert.equal(grpcOf(b.log()), undefined, 'the standby does not listen on gRPC');
  const leaderStatus = await status(grpcOf(a.log())!);
  assert.equal(leaderStatus.standby, false);
  assert.match(leaderStatus.leaderIdentity, /_/);
  assert.ok(leaderStatus.leaderEpoch >= 1);
  assert.ok(leaderStatus.nodes.length > 0);
  const metricsOf = (log: string): string => /"metrics":"([^"]+)"/.exec(log)![1]!;
  assert.match(await (await fetch(`${metricsOf(a.log())}/metrics`)).text(), /^kpx_controller_leader 1$/m);
  assert.match(await (await fetch(`${metricsOf(b.log())}/metrics`)).text(), /^kpx_controller_leader 0$/m);
  const beforeKill = await generations();

  a.child.kill('SIGKILL');
  const killedAt = Date.now();
  await writeFile(join(dir, 'x2.yaml'), node(2));
  await waitFor(() => b.log().includes('published generation'), 10_000, 'the standby to take over and publish');
  const handover = Date.now() - killedAt;
  t.diagnostic(`standby published ${handover} ms after kill -9 of the leader`);
  // Lease duration 3 s, observed from the standby's last sight of a renewal, plus a retry period and the sync.
  assert.ok(handover < 6000, `published within the lease duration (+ retry period and sync): ${handover} ms`);
  await waitFor(async () => (await generations()).length > beforeKill.length, 5000, 'a new delta for node-a');
  const takenOver = await status(grpcOf(b.log())!);
  assert.ok(
    !takenOver.standby && takenOver.leaderEpoch > leaderStatus.leaderEpoch,
    `epoch ${leaderStatus.leaderEpoch} → ${takenOver.leaderEpoch}`,
  );

  // B leads; C stands by. Pause B past the lease: C takes over; B, resumed, must not publish.
  const c = spawnController(dir, 'ha-test');
  kids.push(c);
  await waitFor(() => c.log().includes('a standby compiles nothing'), 15_000, 'the third controller to stand by');
  b.child.kill('SIGSTOP');
  await waitFor(
    () => c.log().includes('generation counter claimed'),
    10_000,
    'the standby to take over from the paused leader',
  );
  await writeFile(join(dir, 'x3.yaml'), node(3));
  await waitFor(() => count(c.log(), 'published generation') >= 1, 10_000, 'the new leader to publish a change');
  const publishedByB = count(b.log(), 'published generation');
  const beforeResume = await generations();
  b.child.kill('SIGCONT');
  const code = await Promise.race([b.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 8000))]);
  t.diagnostic(
    b
      .log()
      .split('\n')
      .filter((l) => /leader election lost|refus|deposed/.test(l))
      .join('\n'),
  );
  assert.equal(code, 1, `the deposed leader exits 1\n${b.log().slice(-3000)}`);
  assert.match(b.log(), /leader election lost/);
  assert.equal(count(b.log(), 'published generation'), publishedByB, 'nothing published after SIGCONT');
  await writeFile(join(dir, 'x4.yaml'), node(4));
  await waitFor(() => count(c.log(), 'published generation') >= 2, 10_000, 'the leader to go on');
  const all = await generations();
  assert.ok(all.length > beforeResume.length);
  for (let i = 1; i < all.length; i++)
    assert.ok(all[i]! > all[i - 1]!, `generations strictly increase on node-a: ${all.join(',')}`);
  assert.equal(a.child.signalCode, 'SIGKILL');
  c.child.kill('SIGTERM');
  assert.equal(await c.exited, 0);
});

/** A lease store that always says this process holds the lease: the split brain fencing must survive. */
class LyingLeaseStore implements LeaseStore {
  readonly description = 'lying';
  private version = 0;
  private record: LeaseRecord | undefined;
  get(): Promise<{ record: LeaseRecord; version: string } | undefined> {
    return Promise.resolve(this.record ? { record: this.record, version: String(this.version) } : undefined);
  }
  create(record: LeaseRecord): Promise<string> {
    this.record = record;
    return Promise.resolve(String(++this.version));
  }
  update(record: LeaseRecord): Promise<string> {
    this.record = record;
    return Promise.resolve(String(++this.version));
  }
}

test('a leader whose lease store says it still leads is refused by the counter once a newer epoch claimed it', async () => {
  const objects: KubeObject[] = (await readManifestDir(examples))
    .map((m) => m.object)
    .filter((o) => ['Service', 'EndpointSlice', 'Node'].includes(o.kind ?? ''));
  const source = new ScriptedSource(objects);
  let lost: string | undefined;
  const controller = await runController({
    source,
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    leaderElection: {
      store: () => Promise.resolve(new LyingLeaseStore()),
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 200,
      onLost: (r) => (lost = r),
    },
  });
  try {
    await waitFor(
      async () =>
        (await fetch(`${controller.metricsUrl}/metrics`).then((r) => r.text())).includes('kpx_controller_leader 1'),
      5000,
      'leading',
    );
    const leading = controller.pipeline.generation;
    // A newer leader elsewhere claims the counter with epoch 1000.
    const successor = await openGenerationCounter(js);
    await successor.claim(1000);
    const taken = await successor.next();
    source.upsert({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-fenced', resourceVersion: '9' },
      status: { addresses: [{ type: 'InternalIP', address: '192.168.7.7' }] },
    } as KubeObject);
    await waitFor(() => lost !== undefined, 5000, 'the deposed leader to stop');
    assert.match(lost!, /generation counter holds epoch 1000/);
    assert.ok(
      controller.pipeline.generation < taken,
      `no generation reserved after the claim (${leading} → ${controller.pipeline.generation}, successor ${taken})`,
    );
    const text = await fetch(`${controller.metricsUrl}/metrics`).then((r) => r.text());
    assert.match(text, /kpx_controller_leader 0/);
  } finally {
    await controller.stop();
  }
});

test('the elector: a standby takes an unrenewed lease over only after the lease duration, and the epoch increments', async () => {
  const store = new LyingLeaseStore();
  await store.create({ holder: 'gone', epoch: 4, leaseDurationMs: 1000, acquireTime: '', renewTime: '' });
  let now = 0;
  let started: number | undefined;
  const e = new LeaderElector({
    store,
    identity: 'me',
    leaseDurationMs: 1000,
    renewDeadlineMs: 600,
    retryPeriodMs: 100,
    now: () => now,
    logger: { info: () => undefined, warn: () => undefined },
    onStartedLeading: (epoch) => (started = epoch),
    onStoppedLeading: () => undefined,
  });
  e.start();
  await waitFor(async () => (await store.get())?.record.holder === 'gone' && now === 0, 1000);
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(started, undefined, 'no takeover before the lease duration');
  now = 1500;
  await waitFor(() => started !== undefined, 2000, 'takeover');
  assert.equal(started, 5);
  assert.equal(e.isLeader(), true);
  now = 1500 + 700;
  assert.equal(e.isLeader(), false, 'not renewed within the renew deadline (own clock): not the leader');
  await e.stop();
});

test('a standby keeps only the newest version of each object, and hands them over oldest change first', () => {
  const buffer = new StandbyBuffer();
  const ev = (
    kind: 'Service' | 'Node',
    name: string,
    type: 'upsert' | 'delete',
    at: number,
    rv: string,
  ): SourceEvent => ({
    kind,
    type,
    observedAt: at,
    object: { metadata: { name, namespace: kind === 'Node' ? undefined : 'ns', resourceVersion: rv } },
  });
  for (let i = 0; i < 1000; i++) buffer.add(ev('Service', 'web', 'upsert', 10 + i, String(i)));
  buffer.add(ev('Node', 'n1', 'upsert', 5, 'a'));
  buffer.add(ev('Service', 'gone', 'upsert', 6, 'b'));
  buffer.add(ev('Service', 'gone', 'delete', 7, 'c'));
  assert.equal(buffer.size, 2, 'bounded by objects, not events');
  const out: string[] = [];
  buffer.drain((e) => out.push(`${e.kind}/${e.object.metadata?.name}@${e.object.metadata?.resourceVersion}`));
  assert.deepEqual(out, ['Node/n1@a', 'Service/web@999']);
  assert.equal(buffer.size, 0);
});
