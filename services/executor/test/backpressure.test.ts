// Backpressure: a node whose apply is stuck while the controller keeps publishing. Deltas pile up on the node's
// JetStream subject, not in the executor: the ordered consumer holds at most its batch (256 messages) in the
// process, the rest stays on the server, which itself keeps at most the subject's history (1,000 by default) and
// discards older deltas. Once the apply returns, the node jumps to the controller's snapshot instead of applying
// the pile one by one, and converges to the controller's digest:
//  - with the default history (1,000 per subject) the server discarded deltas: the executor sees the gap;
//  - with a longer history, it sees more than maxBehind deltas pending (the check of a delta delivered later
//    than the pile-up began: the batch delivered before it was counted with few pending and is applied first). Real nats-server, real controller (fed by an in-process source), dry-run backend.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { defaultKubeProxyConfig, type EndpointSliceObject, type NodeObject, type ServiceObject } from '@kpx/model';
import { ObjectKind, runController, type RunningController } from '@kpx/controller';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { createLogger } from '@kpx/telemetry';
import { ControllerClient } from '@kpx/transport';
import { Executor, MemoryBackend } from '../src/index.js';
import { PushSource } from './harness.js';

const node: NodeObject = {
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: 'n1' },
  spec: { podCIDR: '10.244.1.0/24' },
  status: { addresses: [{ type: 'InternalIP', address: '10.0.0.11' }] },
};
const service: ServiceObject = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'bp' },
  spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
};
/** The service's slice with one endpoint, 10.244.x.y for the i-th change (every change is a new rule set). */
const slice = (i: number): EndpointSliceObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-1', namespace: 'bp', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [
    { addresses: [`10.244.${Math.floor(i / 250)}.${(i % 250) + 1}`], nodeName: 'n1', conditions: { ready: true } },
  ],
});

/** MemoryBackend whose applies can be held until released. */
class GatedBackend extends MemoryBackend {
  private gate: Promise<void> | undefined;
  private release: (() => void) | undefined;
  blocked = false;
  hold(): void {
    this.gate = new Promise((resolve) => (this.release = resolve));
  }
  open(): void {
    this.release?.();
    this.gate = undefined;
  }
  override async apply(): Promise<void> {
    if (this.gate) {
      this.blocked = true;
      await this.gate;
      this.blocked = false;
    }
    await super.apply();
  }
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Scenario {
  /** Deltas kept per node subject (the controller's historyPerSubject; default 1,000). */
  readonly history?: number;
  /** The executor's maxBehind (default 1,000). */
  readonly maxBehind?: number;
  /** Deltas published while the apply is stuck. */
  readonly total: number;
  /** What the executor logs as the reason of its jump. */
  readonly reason: RegExp;
}

async function farBehind(sc: Scenario): Promise<void> {
  const nats: NatsServer = await startNatsServer({ jetstream: true });
  const nc: NatsConnection = await connect({ servers: nats.url });
  const source = new PushSource([
    { kind: ObjectKind.Node, object: node },
    { kind: ObjectKind.Service, object: service },
    { kind: ObjectKind.EndpointSlice, object: slice(0) },
  ]);
  const controller: RunningController = await runController({
    source,
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    config: { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 },
    logLevel: 'silent',
    families: ['IPv4'],
    ...(sc.history !== undefined ? { historyPerSubject: sc.history } : {}),
  });
  const desired = (): { generation: number; digest: string } | undefined => {
    const s = controller.pipeline.tracker.status().find((n) => n.node === 'n1' && n.ipFamily === 'IPv4');
    return s ? { generation: s.desiredGeneration, digest: s.desiredDigest } : undefined;
  };
  const backend = new GatedBackend();
  const client = new ControllerClient(controller.grpcAddress);
  const logs: string[] = [];
  const executor = new Executor({
    node: 'n1',
    js: jetstream(nc),
    controller: client,
    backends: new Map([['IPv4', backend]]),
    logger: createLogger({
      name: 'test',
      level: 'info',
      destination: { write: (line: string) => void logs.push(line) },
    }),
    tracer: trace.getTracer('test'),
    driftCheckMs: 0,
    ...(sc.maxBehind !== undefined ? { maxBehind: sc.maxBehind } : {}),
  });
  const jsm = await jetstreamManager(nc);
  try {
    await waitFor(() => (desired()?.generation ?? 0) > 0, 'the controller to publish n1');
    await executor.start();
    assert.equal(backend.restores, 1, 'converged from a snapshot on start');

    // The first delta's apply gets stuck; the controller publishes many more behind it.
    backend.hold();
    let i = 1;
    const publishOne = async (): Promise<void> => {
      const g = controller.pipeline.generation;
      source.upsert(ObjectKind.EndpointSlice, slice(i++));
      await waitFor(() => controller.pipeline.generation > g, `generation after ${g}`);
    };
    await publishOne();
    await waitFor(() => backend.blocked, 'the first apply to block');
    /** The executor's consumer: messages delivered to the process, and pending on the server. */
    const consumer = async (): Promise<{ delivered: number; serverPending: number }> => {
      const consumers = await jsm.consumers.list('KPX_DELTAS').next();
      const mine = consumers.filter(
        (c) => c.config.filter_subjects?.includes('kpx.delta.n1') || c.config.filter_subject === 'kpx.delta.n1',
      );
      assert.equal(mine.length, 1, 'one consumer of the node subject');
      return { delivered: mine[0]!.delivered.consumer_seq, serverPending: mine[0]!.num_pending };
    };
    let maxDelivered = 0;
    let maxServerPending = 0;
    while (i <= sc.total + 1) {
      await publishOne();
      if (i % 50 === 0) {
        const c = await consumer();
        maxDelivered = Math.max(maxDelivered, c.delivered);
        maxServerPending = Math.max(maxServerPending, c.serverPending);
      }
    }
    const blockedAt = await consumer();
    maxDelivered = Math.max(maxDelivered, blockedAt.delivered);
    // In the process: the delta being applied and at most one batch of the ordered consumer (256).
    assert.ok(maxDelivered <= 257, `at most one batch delivered while the apply is stuck, got ${maxDelivered}`);
    const history = sc.history ?? 1_000;
    assert.ok(maxServerPending <= history, `the server keeps at most the history: ${maxServerPending}`);
    assert.ok(
      blockedAt.serverPending >= Math.min(history, sc.total) - 257,
      `the rest waits on the server: ${blockedAt.serverPending} pending`,
    );
    assert.equal(backend.applies, 0, 'nothing applied yet');
    assert.equal(executor.status()[0]?.resyncs, 1);

    // Released: the node jumps to the controller's snapshot.
    backend.open();
    await waitFor(() => desired()?.generation === controller.pipeline.generation, 'the tracker to see the last delta');
    const want = desired()!;
    await waitFor(
      () => executor.status()[0]?.generation === want.generation,
      `the executor to reach generation ${want.generation}`,
    );
    const st = executor.status()[0]!;
    assert.equal(st.digest, want.digest, "the controller's digest");
    assert.equal(st.resyncs, 2, 'one jump to a snapshot');
    assert.equal(backend.restores, 2);
    assert.ok(
      backend.applies <= 257,
      `the deltas behind the jump were skipped, not applied: ${backend.applies} applied`,
    );
    const jumps = logs
      .map((l) => JSON.parse(l) as { msg: string; reason?: string })
      .filter((l) => l.msg === 'resyncing from a snapshot' && l.reason !== 'start');
    assert.equal(jumps.length, 1, JSON.stringify(jumps));
    assert.match(jumps[0]!.reason ?? '', sc.reason);
    await waitFor(
      () => controller.pipeline.tracker.status().every((n) => n.inSync),
      'the controller to see n1 in sync',
    );

    // Caught up, it follows deltas one by one again.
    const appliesBefore = backend.applies;
    await publishOne();
    await waitFor(() => (desired()?.generation ?? 0) > want.generation, 'the tracker to see the next delta');
    const next = desired()!;
    await waitFor(() => executor.status()[0]?.generation === next.generation, 'the next delta');
    assert.equal(executor.status()[0]?.digest, next.digest);
    assert.equal(backend.applies, appliesBefore + 1);
    assert.equal(executor.status()[0]?.resyncs, 2);
  } finally {
    backend.open();
    await executor.stop();
    client.close();
    await controller.stop();
    await nc.close();
    await nats.stop();
  }
}

test('defaults (1,000 deltas kept per node): a node 1,500 deltas behind finds the gap and jumps to a snapshot', () =>
  farBehind({ total: 1_500, reason: /^gap: / }));

test('a longer history: a node more than maxBehind deltas behind jumps to a snapshot', () =>
  farBehind({ history: 5_000, maxBehind: 300, total: 700, reason: /^\d+ deltas behind$/ }));
