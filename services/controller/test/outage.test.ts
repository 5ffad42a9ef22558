// The controller against a real nats-server that goes away: a change made while NATS is down is published once it
// is back, with no further event; /healthz fails meanwhile; every node's chain in JetStream stays whole; the
// audit log gets the late generation; a generation counter that went backwards is never reused; SIGTERM while
// NATS is down stops the process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { RuleState } from '@kpx/ruleset';
import { GenerationKey, StateBucket, getSnapshot, readAudit, readDeltas } from '@kpx/transport';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { runController, type RunningController } from '../src/index.js';
import { ExamplesDir, exampleObjects, waitFor, webSlice as slice } from './fixtures.js';
import { ScriptedSource } from './scripted-source.js';

const examples = ExamplesDir;
const kpxBin = new URL('../../../cli/bin/kpx.js', import.meta.url).pathname;
const Nodes = ['node-a', 'node-b', 'node-c'];

let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
before(async () => {
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  js = jetstream(nc);
});
after(async () => {
  await nc.close();
  await nats.stop();
});

function start(source: ScriptedSource): Promise<RunningController> {
  return runController({
    source,
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    publishTimeoutMs: 500,
    publishGraceMs: 1000,
  });
}

/** Every node's state rebuilt from JetStream alone (newest snapshot, then the deltas after it), per family. */
async function rebuilt(node: string, family: string): Promise<{ generation: number; digest: string }> {
  const snap = (await getSnapshot(js, node, family))!;
  const state = RuleState.from(snap.objects, snap.generation);
  for await (const r of readDeltas(js, node, { fromGeneration: snap.generation, ipFamily: family }))
    state.apply(r.delta);
  return { generation: state.generation, digest: state.digest };
}

const healthz = async (c: RunningController): Promise<number> => (await fetch(`${c.metricsUrl}/healthz`)).status;
const metric = async (c: RunningController, name: string): Promise<number> => {
  const text = await (await fetch(`${c.metricsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
};

test('NATS down during a change: published when NATS is back with no further event; pending and unhealthy meanwhile; chains whole', async (t) => {
  const source = new ScriptedSource(await exampleObjects());
  const c = await start(source);
  t.after(() => c.stop());
  await waitFor(() => c.pipeline.generation > 0 && c.pipeline.outbox.owed().length === 0, 10_000, 'first sync');
  await c.pipeline.settle();
  const before = c.pipeline.generation;
  assert.equal(await healthz(c), 200);

  await nats.kill9();
  const outage = Date.now();
  source.upsert(slice(['10.244.1.10', '10.244.1.66'], '900'));
  await waitFor(() => c.pipeline.tracker.status().some((s) => s.pending), 5000, 'pending');
  const during = c.pipeline.tracker.status().filter((s) => s.ipFamily === 'IPv4');
  assert.ok(
    during.every((s) => s.pending && !s.inSync && s.publishedGeneration === before),
    JSON.stringify(during),
  );
  await waitFor(async () => (await healthz(c)) === 503, 5000, '/healthz to fail after the grace period');
  await waitFor(async () => (await metric(c, 'kpx_controller_sync_failures_total')) > 0, 5000, 'sync failures counted');
  await waitFor(async () => (await metric(c, 'kpx_controller_nats_connected')) === 0, 3000, 'nats_connected 0');
  await waitFor(async () => (await metric(c, 'kpx_controller_nodes_pending')) >= 3, 3000, 'nodes_pending');

  await new Promise((r) => setTimeout(r, Math.max(0, 3000 - (Date.now() - outage))));
  await nats.restart();
  const back = Date.now();
  // No further event: the controller's own retry publishes the change.
  await waitFor(
    () => c.pipeline.outbox.owed().length === 0 && c.pipeline.unpublishedSince() === undefined,
    30_000,
    'the change to be published',
  );
  const publishedAfterMs = Date.now() - back;
  t.diagnostic(`published ${publishedAfterMs} ms after NATS came back`);
  assert.ok(c.pipeline.generation > before);
  for (const node of Nodes) {
    for (const family of ['IPv4', 'IPv6']) {
      const snap = await c.pipeline.snapshot(node, family);
      const got = await rebuilt(node, family);
      assert.equal(got.digest, snap?.digest, `${node}/${family} rebuilt from JetStream reaches the controller's state`);
    }
  }
  assert.ok(c.pipeline.tracker.status().every((s) => !s.pending));
  await waitFor(async () => (await healthz(c)) === 200, 3000, '/healthz back to 200');
  // The late generation is in the audit log, with its cause.
  const audited = new Map<number, string[]>();
  for await (const e of readAudit(js))
    if (e.record.type === 'generation')
      audited.set(
        e.record.generation,
        e.record.causes.map((x) => `${x.name}@${x.resourceVersion}`),
      );
  for (let g = before + 1; g <= c.pipeline.generation; g++) {
    const hasDelta = (
      await Promise.all(
        Nodes.map(async (n) => {
          for await (const r of readDeltas(js, n, { fromGeneration: g - 1 })) if (r.delta.generation === g) return true;
          return false;
        }),
      )
    ).some(Boolean);
    if (hasDelta) assert.ok(audited.has(g), `generation ${g} in the audit log`);
  }
  assert.ok([...audited.values()].some((causes) => causes.includes('web-abc12@900')));
});

test('a generation counter that went backwards is never reused by the next controller', async (t) => {
  const source = new ScriptedSource(await exampleObjects());
  const c1 = await start(source);
  await waitFor(() => c1.pipeline.generation > 0 && c1.pipeline.outbox.owed().length === 0, 10_000, 'first sync');
  source.upsert(slice(['10.244.1.10', '10.244.1.67'], '950'));
  await waitFor(() => c1.pipeline.outbox.owed().length === 0 && c1.pipeline.generation > 1);
  await c1.pipeline.settle();
  const high = c1.pipeline.generation;
  await c1.stop();
  // The KPX_STATE bucket is rewritten (restored from an old backup): the counter says 1.
  const kv = await new Kvm(js).open(StateBucket);
  await kv.put(GenerationKey, '1');
  const source2 = new ScriptedSource([
    ...(await exampleObjects()).filter((o) => o.metadata?.name !== 'web-abc12'),
    slice(['10.244.1.10', '10.244.1.68'], '951'),
  ]);
  const c2 = await start(source2);
  t.after(() => c2.stop());
  await waitFor(
    () => c2.pipeline.generation > high && c2.pipeline.outbox.owed().length === 0,
    10_000,
    'the second controller to publish',
  );
  await c2.pipeline.settle();
  for (const node of Nodes) {
    const gens: number[] = [];
    for await (const r of readDeltas(js, node, { ipFamily: 'IPv4' })) gens.push(r.delta.generation);
    assert.deepEqual(
      gens,
      [...new Set(gens)].sort((a, b) => a - b),
      `${node}: strictly increasing, none reused`,
    );
    assert.equal((await rebuilt(node, 'IPv4')).digest, (await c2.pipeline.snapshot(node, 'IPv4'))?.digest);
  }
});

/** Starts `kpx controller`, kills NATS, changes a file, and sends SIGTERM once `ready(log, ms since the change)` holds; the stop's time. */
async function sigtermWithNatsDown(
  t: TestContext,
  ready: (log: string, sinceChangeMs: number) => boolean,
  what: string,
): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-outage-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(examples, dir, { recursive: true });
  const child = spawn(
    process.execPath,
    [
      kpxBin,
      'controller',
      '--manifests',
      dir,
      '--nats',
      nats.url,
      '--grpc-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  // Its first sync publishes, or adopts the heads an earlier test's controller left (then it logs nothing).
  await waitFor(() => out.includes('kpx controller running'), 15_000, 'the controller to run');
  await new Promise((r) => setTimeout(r, 1500));
  await nats.kill9();
  t.after(() => nats.restart());
  await writeFile(
    join(dir, 'zz-extra.yaml'),
    'apiVersion: v1\nkind: Node\nmetadata: {name: node-z}\nstatus: {addresses: [{type: InternalIP, address: 192.168.9.9}]}\n',
  );
  const changedAt = Date.now();
  await waitFor(() => ready(out, Date.now() - changedAt), 15_000, what);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const t0 = Date.now();
  child.kill('SIGTERM');
  const code = await exited;
  const ms = Date.now() - t0;
  assert.equal(code, 0, out.slice(-2000));
  return ms;
}

test('SIGTERM stops the controller within 3 s while NATS is down and a sync is failing', async (t) => {
  const ms = await sigtermWithNatsDown(t, (log) => log.includes('sync failed'), 'a failing sync');
  t.diagnostic(`stopped ${ms} ms after SIGTERM (sync in backoff)`);
  assert.ok(ms < 3000, `stopped in ${ms} ms`);
});

test('SIGTERM stops the controller within 2 s while a sync waits on a NATS that is gone', async (t) => {
  // The sync starts within a second of the change (minSyncPeriod) and waits up to the 5 s publish timeout: SIGTERM
  // 2.5 s after the change lands while it waits, which the log shows by not having failed yet.
  let logged = '';
  const ms = await sigtermWithNatsDown(
    t,
    (log, since) => ((logged = log), since > 2500),
    'the sync to be waiting on NATS',
  );
  assert.ok(!logged.includes('sync failed'), 'SIGTERM came while the sync was still waiting');
  t.diagnostic(`stopped ${ms} ms after SIGTERM (sync waiting on NATS)`);
  assert.ok(ms < 2000, `stopped in ${ms} ms`);
});
