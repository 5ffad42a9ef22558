// Controller + dry-run executors over a real nats-server: convergence, acks, restarts, gaps.
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { defaultKubeProxyConfig } from '@kpx/model';
import { ManifestsDirSource, runController, type RunningController } from '@kpx/controller';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { startTracing, type Tracing } from '@kpx/telemetry';
import type { RuleState } from '@kpx/ruleset';
import { MemoryBackend, runExecutor, type ReadBack, type RunningExecutor } from '../src/index.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;
const nodes = ['node-a', 'node-b', 'node-c'];
let nats: NatsServer;
let dir: string;
let controller: RunningController;
let tracing: Tracing;

before(async () => {
  tracing = startTracing({ serviceName: 'kpx-test' });
  nats = await startNatsServer({ jetstream: true });
  dir = await mkdtemp(join(tmpdir(), 'kpx-exec-'));
  await cp(examples, dir, { recursive: true });
  controller = await runController({
    source: new ManifestsDirSource({ dir, debounceMs: 20 }),
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    config: { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 },
    logLevel: 'silent',
    tracer: tracing.tracer,
  });
});
after(async () => {
  await controller.stop();
  await nats.stop();
  await rm(dir, { recursive: true, force: true });
  await tracing.shutdown();
});

const startExecutor = (node: string): Promise<RunningExecutor> =>
  runExecutor({
    node,
    natsUrl: nats.url,
    controller: controller.grpcAddress,
    createBackend: () => new MemoryBackend(),
    healthzListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    driftCheckMs: 0,
    tracer: tracing.tracer,
  });

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const allInSync = (): boolean => {
  const s = controller.pipeline.tracker.status();
  return s.length === nodes.length * 2 && s.every((n) => n.inSync);
};

async function editWeb(from: string, to: string): Promise<void> {
  const web = join(dir, 'web.yaml');
  const text = await readFile(web, 'utf8');
  assert.ok(text.includes(from), from);
  await writeFile(web, text.replace(from, to));
}

test('executors converge, follow changes, and a restarted executor catches up', async (t) => {
  const executors = new Map<string, RunningExecutor>();
  t.after(async () => {
    for (const e of executors.values()) await e.stop();
  });
  for (const n of nodes) executors.set(n, await startExecutor(n));
  await waitFor(allInSync, 'initial convergence');
  const health = await fetch(`${executors.get('node-a')!.healthzUrl}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { nodeEligible: boolean }).nodeEligible, true);
  // /metrics has its own listener (kube-proxy's 127.0.0.1:10249 by default), not the healthz port's.
  assert.equal((await fetch(`${executors.get('node-a')!.healthzUrl}/metrics`)).status, 404);
  assert.match(
    await (await fetch(`${executors.get('node-a')!.metricsUrl}/metrics`)).text(),
    /kubeproxy_sync_proxy_rules_duration_seconds/,
  );

  const g0 = controller.pipeline.generation;
  await editWeb('10.244.1.10]', '10.244.1.11]');
  // Every node's IPv4 rules changed: in sync only once each acked a generation after g0.
  const v4Acked = (after: number) => () =>
    allInSync() &&
    controller.pipeline.tracker
      .status()
      .filter((n) => n.ipFamily === 'IPv4')
      .every((n) => n.ackedGeneration > after);
  await waitFor(v4Acked(g0), 'the change acked by every node');
  for (const [node, e] of executors) {
    const v4 = e.executor.status().find((s) => s.family === 'IPv4')!;
    const want = await controller.pipeline.snapshot(node, 'IPv4');
    assert.equal(v4.digest, want?.digest, node);
    assert.equal(v4.generation, want?.generation, node);
    assert.equal(v4.resyncs, 1, `${node}: only the start resync, then deltas`);
  }

  // node-b is down while two changes happen; back up, it converges without losing any.
  await executors.get('node-b')!.stop();
  executors.delete('node-b');
  const g1 = controller.pipeline.generation;
  await editWeb('10.244.1.11]', '10.244.1.12]');
  await waitFor(() => controller.pipeline.generation > g1, 'first change while node-b is down');
  await editWeb('10.244.1.12]', '10.244.1.13]');
  await waitFor(() => controller.pipeline.generation > g1 + 1, 'second change');
  assert.equal(allInSync(), false);
  executors.set('node-b', await startExecutor('node-b'));
  await waitFor(v4Acked(g1 + 1), 'node-b caught up');
  const b = executors
    .get('node-b')!
    .executor.status()
    .find((s) => s.family === 'IPv4')!;
  assert.equal(b.digest, (await controller.pipeline.snapshot('node-b', 'IPv4'))?.digest);
});

test('without the controller, an executor converges from the snapshots and deltas in JetStream', async (t) => {
  const e = await runExecutor({
    node: 'node-c',
    natsUrl: nats.url,
    controller: '127.0.0.1:1',
    createBackend: () => new MemoryBackend(),
    healthzListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    driftCheckMs: 0,
    tracer: tracing.tracer,
  });
  t.after(() => e.stop());
  for (const family of ['IPv4', 'IPv6']) {
    const want = await controller.pipeline.snapshot('node-c', family);
    const got = e.executor.status().find((s) => s.family === family);
    assert.equal(got?.generation, want?.generation, family);
    assert.equal(got?.digest, want?.digest, family);
  }
});

/** A dry-run backend whose read-back takes `ms` (one iptables-save of a 10,000-service node takes minutes). */
class SlowReadBack extends MemoryBackend {
  readBacks = 0;
  constructor(private readonly ms: number) {
    super();
  }
  override async readBack(state: RuleState): Promise<ReadBack> {
    this.readBacks++;
    await new Promise((r) => setTimeout(r, this.ms));
    return super.readBack(state);
  }
}

test('periodic drift checks are spaced by ten times their read-back time, and do not pile up', async (t) => {
  const backend = new SlowReadBack(100);
  const e = await runExecutor({
    node: 'node-a',
    families: ['IPv4'],
    natsUrl: nats.url,
    controller: controller.grpcAddress,
    createBackend: () => backend,
    healthzListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    driftCheckMs: 10,
    tracer: tracing.tracer,
  });
  t.after(() => e.stop());
  const before = backend.readBacks;
  await new Promise((r) => setTimeout(r, 2500));
  const n = backend.readBacks - before;
  // Every 10 ms, the 100 ms read-backs would run back to back (~25 in 2.5 s, with more checks queued behind them
  // each time); spaced by 10 x 100 ms, a check comes about every 1.1 s.
  assert.ok(n >= 2 && n <= 4, `${n} read-backs in 2.5 s`);
  // Asked for together, checks share one read-back (at most one waits in the lane; one more if one had started).
  const before2 = backend.readBacks;
  await Promise.all([e.executor.checkDrift(), e.executor.checkDrift(), e.executor.checkDrift()]);
  const shared = backend.readBacks - before2;
  assert.ok(shared >= 1 && shared <= 2, `${shared} read-backs for 3 asks`);
});

test('the read-back after a burst of applies waits for the periodic check when the last check was recent', async (t) => {
  const backend = new SlowReadBack(300);
  const e = await runExecutor({
    node: 'node-a',
    families: ['IPv4'],
    natsUrl: nats.url,
    controller: controller.grpcAddress,
    createBackend: () => backend,
    healthzListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    driftCheckMs: 60_000,
    tracer: tracing.tracer,
  });
  t.after(() => e.stop());
  const generation = (): number => e.executor.status()[0]?.generation ?? 0;
  // A change: its read-back follows 500 ms after the apply (the last check is long ago: the start's resync).
  let g = generation();
  let before = backend.readBacks;
  await editWeb('10.244.1.13]', '10.244.1.14]');
  await waitFor(() => generation() > g && backend.readBacks > before, 'the apply and its read-back');
  // Another right after: within 10 x 300 ms of that read-back, so none follows it (the periodic check is due).
  g = generation();
  before = backend.readBacks;
  await editWeb('10.244.1.14]', '10.244.1.15]');
  await waitFor(() => generation() > g, 'the second apply');
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(backend.readBacks - before, 0);
});
