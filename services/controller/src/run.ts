// Runs a whole controller: source -> pipeline -> NATS JetStream, gRPC NodeSync, /metrics and /healthz.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { IPFamily, defaultKubeProxyConfig, type KubeProxyConfig } from '@kpx/model';
import type { IptablesOptions, IpvsOptions } from '@kpx/compiler';
import { controllerMetrics, createLogger, createMetrics, startHttpServer, startTracing, type HttpServer, type Logger, type Tracer, type Tracing } from '@kpx/telemetry';
import { ensureAuditStream, publishAuditRecord, type AuditRecord, type GenerationRecord } from '@kpx/transport';
import { startGrpcServer, type RunningGrpcServer } from './grpc-server.js';
import { natsPorts } from './nats-ports.js';
import { ControllerPipeline, familyOptionsFromConfig, pipelineMode, type SyncOutcome } from './pipeline.js';
import type { Source } from './sources/types.js';

export interface ControllerRunOptions {
  readonly source: Source;
  /** What the source is, for logs (`manifests examples/`, `kubeconfig ~/.kube/config`, `in-cluster`). */
  readonly sourceName: string;
  readonly natsUrl: string;
  readonly grpcListen: string;
  readonly metricsListen: string;
  readonly config?: KubeProxyConfig;
  readonly otlpEndpoint?: string;
  /** A tracer of tracing already started in this process (tests, an all-in-one process): no tracing of its own. */
  readonly tracer?: Tracer;
  readonly logLevel?: string;
  /** Deltas kept per node subject (default 1000) and their maximum age in ms (default 0: unlimited). */
  readonly historyPerSubject?: number;
  readonly maxAgeMs?: number;
  /** How long the audit log (KPX_AUDIT) keeps records, ms (default 7 days). */
  readonly auditMaxAgeMs?: number;
  /** Older snapshots kept per node and family besides the newest (default 2). */
  readonly snapshotsKept?: number;
  /** Store a node's snapshot every this many of its generations (default 100). */
  readonly snapshotEvery?: number;
  /** Families compiled (default both). */
  readonly families?: readonly IPFamily[];
}

export interface RunningController {
  readonly pipeline: ControllerPipeline;
  readonly grpcAddress: string;
  readonly metricsUrl: string;
  readonly logger: Logger;
  stop(): Promise<void>;
}

export async function runController(opts: ControllerRunOptions): Promise<RunningController> {
  const logger = createLogger({ name: 'kpx-controller', ...(opts.logLevel ? { level: opts.logLevel } : {}) });
  // One tracer provider per process: a caller that runs several components in one process passes its own.
  const own: Tracing | undefined = opts.tracer ? undefined : startTracing({ serviceName: 'kpx-controller', ...(opts.otlpEndpoint ? { otlpEndpoint: opts.otlpEndpoint } : {}) });
  const tracer: Tracer = opts.tracer ?? own!.tracer;
  const config = opts.config ?? defaultKubeProxyConfig();
  const families = new Map<IPFamily, IptablesOptions | IpvsOptions>((opts.families ?? [IPFamily.IPv4, IPFamily.IPv6]).map((f) => [f, familyOptionsFromConfig(config, f)]));
  const registry = createMetrics({ processMetrics: true });
  const metrics = controllerMetrics(registry);
  const cleanups: (() => Promise<void>)[] = own ? [() => own.shutdown()] : [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const c of [...cleanups].reverse()) await c().catch((err: unknown) => logger.warn({ err }, 'error while stopping'));
    })());
  try {
    const nc: NatsConnection = await connect({ servers: opts.natsUrl, name: 'kpx-controller', maxReconnectAttempts: -1 });
    cleanups.push(() => nc.drain());
    const ports = await natsPorts(jetstream(nc), await jetstreamManager(nc), {
      historyPerSubject: opts.historyPerSubject ?? 1000,
      maxAgeMs: opts.maxAgeMs ?? 0,
      snapshotsKept: opts.snapshotsKept ?? 2,
    });
    const pipeline = new ControllerPipeline({
      families,
      mode: pipelineMode(config),
      ...ports,
      snapshotEvery: opts.snapshotEvery ?? 100,
      minSyncPeriodMs: config.minSyncPeriodMs,
      logger,
      tracer,
      metrics: {
        synced: (s) => {
          metrics.generation.set(s.generation);
          metrics.deltasPublished.inc(s.nodes);
          if (s.nodes > 0) metrics.deltaBytes.observe(s.bytes / s.nodes);
          metrics.nodes.set(pipeline.nodes().length);
        },
      },
    });
    cleanups.push(() => pipeline.stop());
    // The audit log: one record per generation, and the drift and failures executors report. Appended in order,
    // off the sync path; a failed append is logged and does not stop the controller.
    const js = jetstream(nc);
    await ensureAuditStream(await jetstreamManager(nc), { ...(opts.auditMaxAgeMs !== undefined ? { maxAgeMs: opts.auditMaxAgeMs } : {}) });
    let auditChain: Promise<void> = Promise.resolve();
    const audit = (record: AuditRecord): void => {
      auditChain = auditChain.then(() => publishAuditRecord(js, record)).catch((err: unknown) => logger.warn({ err }, 'audit log append failed'));
    };
    cleanups.push(() => auditChain);
    pipeline.onSync((o) => audit(generationRecord(o)));
    const grpc: RunningGrpcServer = await startGrpcServer({
      pipeline,
      listen: opts.grpcListen,
      logger,
      tracer,
      onChangeToAck: (s) => metrics.changeToAck.observe(s),
      onAck: (req) => {
        const time = new Date().toISOString();
        if (req.drift.length > 0) audit({ type: 'drift', node: req.node, ipFamily: req.ipFamily, time, generation: req.generation, details: [...req.drift] });
        if (req.error) audit({ type: 'apply-error', node: req.node, ipFamily: req.ipFamily, time, generation: req.generation, details: [req.error] });
      },
    });
    cleanups.push(() => grpc.close());
    let synced = false;
    const http: HttpServer = await startHttpServer({
      listen: opts.metricsListen,
      registry,
      healthz: () => {
        metrics.nodesInSync.set(pipeline.tracker.status().filter((n) => n.inSync).length);
        return { ok: synced, ...(synced ? { lastUpdated: new Date() } : {}), details: { generation: pipeline.generation, source: opts.sourceName } };
      },
    });
    cleanups.push(() => http.close());
    await opts.source.start({
      onEvent: (e) => pipeline.onEvent(e),
      onSynced: () => {
        synced = true;
        logger.info({ source: opts.sourceName }, 'source synced; compiling every node');
        pipeline.onSynced();
      },
      onWarning: (message, err) => logger.warn({ err }, message),
    });
    cleanups.push(() => opts.source.stop());
    logger.info({ grpc: grpc.address, metrics: http.url, nats: opts.natsUrl, source: opts.sourceName }, 'kpx controller running');
    return { pipeline, grpcAddress: grpc.address, metricsUrl: http.url, logger, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

const AuditMaxCauses = 500;
const AuditMaxNodes = 4000;

/** The audit log record of one generation. */
export function generationRecord(o: SyncOutcome, now = new Date()): GenerationRecord {
  return {
    type: 'generation',
    generation: o.generation,
    time: now.toISOString(),
    ...(o.triggerTime !== undefined ? { triggerTime: new Date(o.triggerTime).toISOString() } : {}),
    // A record stays far below NATS's max payload: an initial sync has a cause per object of the cluster.
    causes: o.causes.slice(0, AuditMaxCauses).map((c) => ({ kind: c.kind, namespace: c.namespace, name: c.name, resourceVersion: c.resourceVersion })),
    causesTotal: o.causes.length,
    services: o.services.slice(0, AuditMaxCauses),
    servicesTotal: o.services.length,
    nodes: o.deltas.slice(0, AuditMaxNodes).map((d, i) => ({ node: d.node, ipFamily: d.ipFamily, snapshot: d.snapshot, upserts: d.upserts.length, deletes: d.deletes.length, bytes: o.deltaBytes[i] ?? 0 })),
    nodesTotal: o.deltas.length,
    bytes: o.deltaBytes.reduce((a, b) => a + b, 0),
  };
}
