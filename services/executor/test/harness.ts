// What the fault tests share: a controller fed by an in-process source, a dry-run executor whose acks are
// recorded, and waiting helpers. Real nats-server, real controller (@kpx/controller), MemoryBackend.
import { trace } from '@opentelemetry/api';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { AckRequest, AckResponse } from '@kpx/proto';
import {
  defaultKubeProxyConfig,
  type EndpointSliceObject,
  type KubeObject,
  type NodeObject,
  type ServiceObject,
} from '@kpx/model';
import {
  EventType,
  ObjectKind,
  runController,
  type RunningController,
  type Source,
  type SourceHandler,
} from '@kpx/controller';
import { startNatsServer, type NatsServer, freePort } from '@kpx/testing';
import { createLogger, createMetrics, executorMetrics, type ExecutorMetrics } from '@kpx/telemetry';
import { ControllerClient, type CallOptions, type Signer } from '@kpx/transport';
import { Executor, MemoryBackend, type Backend, type ExecutorOptions } from '../src/index.js';

/** The controller's input, pushed by the test. */
export class PushSource implements Source {
  private handler: SourceHandler | undefined;
  constructor(private readonly initial: { kind: ObjectKind; object: KubeObject }[]) {}
  start(handler: SourceHandler): Promise<void> {
    this.handler = handler;
    for (const { kind, object } of this.initial)
      handler.onEvent({ kind, type: EventType.Upsert, object, observedAt: Date.now() });
    handler.onSynced();
    return Promise.resolve();
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  upsert(kind: ObjectKind, object: KubeObject): void {
    this.handler?.onEvent({ kind, type: EventType.Upsert, object, observedAt: Date.now() });
  }
}

export const Node = 'n1';

export const node: NodeObject = {
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: Node },
  spec: { podCIDR: '10.244.1.0/24' },
  status: { addresses: [{ type: 'InternalIP', address: '10.0.0.11' }] },
};
export const service: ServiceObject = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'faults' },
  spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
};
/** The service's slice with one endpoint, 10.244.x.y for the i-th change (every change is a new rule set). */
export const slice = (i: number): EndpointSliceObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-1', namespace: 'faults', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: [
    { addresses: [`10.244.${Math.floor(i / 250)}.${(i % 250) + 1}`], nodeName: Node, conditions: { ready: true } },
  ],
});

/** A ControllerClient that records every ack, and can make every answer ask for a resync. */
export class RecordingClient extends ControllerClient {
  readonly acks: AckRequest[] = [];
  forceResync = false;
  override async ack(req: AckRequest, options?: CallOptions): Promise<AckResponse> {
    this.acks.push(req);
    const res = await super.ack(req, options);
    return this.forceResync ? { ...res, resyncRequired: true } : res;
  }
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<number> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - t0;
}

export interface Setup {
  readonly nats: NatsServer;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly source: PushSource;
  controller: RunningController;
  readonly grpcListen: string;
  /** Starts the controller again on the same address (after controller.stop()), signing with `signer` when given. */
  restartController(options?: { signer?: Signer }): Promise<void>;
  /** The controller's desired generation and digest of n1 IPv4. */
  desired(): { generation: number; digest: string } | undefined;
  /** Makes the controller publish a new rule set for n1; resolves once it did. */
  change(): Promise<void>;
  close(): Promise<void>;
}

/** Options of setUp: the controller signs with `signer` (issue #15). */
export interface SetupOptions {
  readonly signer?: Signer;
}

export async function setUp(options: SetupOptions = {}): Promise<Setup> {
  const nats = await startNatsServer({ jetstream: true });
  const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const source = new PushSource([
    { kind: ObjectKind.Node, object: node },
    { kind: ObjectKind.Service, object: service },
    { kind: ObjectKind.EndpointSlice, object: slice(0) },
  ]);
  const grpcListen = `127.0.0.1:${await freePort()}`;
  const start = (signer = options.signer): Promise<RunningController> =>
    runController({
      source,
      sourceName: 'test',
      natsUrl: nats.url,
      grpcListen,
      metricsListen: '127.0.0.1:0',
      config: { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 },
      logLevel: 'silent',
      families: ['IPv4'],
      ...(signer ? { signer } : {}),
    });
  let i = 1;
  const s: Setup = {
    nats,
    nc,
    js: jetstream(nc),
    source,
    controller: await start(),
    grpcListen,
    async restartController(restart = {}) {
      s.controller = await start(restart.signer ?? options.signer);
    },
    desired() {
      const st = s.controller.pipeline.tracker.status().find((n) => n.node === Node && n.ipFamily === 'IPv4');
      return st ? { generation: st.desiredGeneration, digest: st.desiredDigest } : undefined;
    },
    async change() {
      const g = s.desired()?.generation ?? 0;
      source.upsert(ObjectKind.EndpointSlice, slice(i++));
      await waitFor(() => (s.desired()?.generation ?? 0) > g, `a generation after ${g}`);
    },
    async close() {
      await s.controller.stop().catch(() => undefined);
      await nc.close();
      await nats.stop();
    },
  };
  await waitFor(() => (s.desired()?.generation ?? 0) > 0, 'the controller to publish n1');
  return s;
}

export interface TestExecutor {
  readonly executor: Executor;
  readonly client: RecordingClient;
  readonly metrics: ExecutorMetrics;
  readonly logs: { msg: string; reason?: string; [k: string]: unknown }[];
  /** kpx_executor_rejected_deltas_total by reason. */
  rejected(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export function newExecutor(
  s: Setup,
  backend: Backend = new MemoryBackend(),
  extra: Partial<ExecutorOptions> = {},
): TestExecutor {
  const client = new RecordingClient(s.grpcListen);
  const metrics = executorMetrics(createMetrics());
  const logs: TestExecutor['logs'] = [];
  const executor = new Executor({
    node: Node,
    js: s.js,
    controller: client,
    backends: new Map([['IPv4', backend]]),
    logger: createLogger({
      name: 'test',
      level: 'debug',
      destination: { write: (line: string) => void logs.push(JSON.parse(line) as TestExecutor['logs'][number]) },
    }),
    tracer: trace.getTracer('test'),
    metrics,
    driftCheckMs: 0,
    retryInitialMs: 50,
    retryMaxMs: 500,
    ...extra,
  });
  return {
    executor,
    client,
    metrics,
    logs,
    async rejected() {
      const out: Record<string, number> = {};
      for (const v of (await metrics.rejectedDeltas.get()).values) out[String(v.labels.reason)] = v.value;
      return out;
    },
    async close() {
      await executor.stop();
      client.close();
    },
  };
}
