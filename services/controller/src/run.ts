// Runs a whole controller: source -> pipeline -> NATS JetStream, gRPC NodeSync, /metrics and /healthz.
import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { SerialQueue } from '@kpx/common';
import { IPFamily, defaultKubeProxyConfig, type KubeProxyConfig } from '@kpx/model';
import type { IptablesOptions, IpvsOptions } from '@kpx/compiler';
import {
  controllerMetrics,
  createLogger,
  createMetrics,
  startHttpServer,
  startTracing,
  type HttpServer,
  type Logger,
  type Tracer,
  type Tracing,
} from '@kpx/telemetry';
import {
  type AuditRecord,
  connectWithRetry,
  ensureAuditStream,
  followConnection,
  type GenerationRecord,
  inboxPrefix,
  type NatsAuth,
  natsConnectionOptions,
  NatsRole,
  publishAuditRecord,
  readTlsFiles,
  type Signer,
  type TlsFiles,
} from '@kpx/transport';
import { insecureListenRefusal, type RunningGrpcServer, startGrpcServer } from './grpc-server.js';
import { Leadership, type ControllerLeaderElection } from './leadership.js';
import { StandbyBuffer } from './standby-buffer.js';
import { MaxDriftLines } from './tracker.js';
import { natsPorts } from './nats-ports.js';
import { ControllerPipeline, familyOptionsFromConfig, pipelineMode, type SyncOutcome } from './pipeline.js';
import type { Source } from './sources/types.js';

/** service.version of the traces' resource: this package's version. */
const PackageVersion = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

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
  /** /healthz fails once a compiled change has waited this long for JetStream (ms, default 30 s). */
  readonly publishGraceMs?: number;
  /** An executor that has not acked for this long is stale in status (ms, default 60 s). */
  readonly staleAfterMs?: number;
  /** How long a publish waits for JetStream's acknowledgement (ms, default 5 s). */
  readonly publishTimeoutMs?: number;
  /** Gives up starting (waiting for NATS) once aborted. */
  readonly signal?: AbortSignal;
  /** Replicas of KPX_DELTAS, KPX_SNAPSHOTS, KPX_STATE, KPX_AUDIT when created (clustered JetStream; default 1). */
  readonly natsReplicas?: number;
  /**
   * Leader election (--leader-elect): only the leader compiles and publishes, and serves gRPC NodeSync (a
   * standby does not listen, so executors' connections land on the leader); see leadership.ts.
   */
  readonly leaderElection?: ControllerLeaderElection;
  /** mTLS of gRPC NodeSync (--tls-cert-file, --tls-private-key-file, --client-ca-file); see grpc-server.ts. */
  readonly grpcTls?: TlsFiles;
  /** Serve gRPC NodeSync without TLS on a non-loopback address (--insecure); refused otherwise. */
  readonly grpcInsecure?: boolean;
  /** NATS credentials and TLS (issue #15). */
  readonly natsAuth?: NatsAuth;
  /** Signs every delta and snapshot (issue #15); without it they go unsigned, and a warning says so. */
  readonly signer?: Signer;
}

export interface RunningController {
  readonly pipeline: ControllerPipeline;
  /** The bound gRPC address; with leader election, the listen address until this controller leads. */
  readonly grpcAddress: string;
  readonly metricsUrl: string;
  readonly logger: Logger;
  stop(): Promise<void>;
}

export async function runController(opts: ControllerRunOptions): Promise<RunningController> {
  const logger = createLogger({ name: 'kpx-controller', ...(opts.logLevel ? { level: opts.logLevel } : {}) });
  // One tracer provider per process: a caller that runs several components in one process passes its own.
  const own: Tracing | undefined = opts.tracer
    ? undefined
    : startTracing({
        serviceName: 'kpx-controller',
        serviceVersion: PackageVersion,
        ...(opts.otlpEndpoint ? { otlpEndpoint: opts.otlpEndpoint } : {}),
      });
  const tracer: Tracer = opts.tracer ?? own!.tracer;
  const config = opts.config ?? defaultKubeProxyConfig();
  const families = new Map<IPFamily, IptablesOptions | IpvsOptions>(
    (opts.families ?? [IPFamily.IPv4, IPFamily.IPv6]).map((f) => [f, familyOptionsFromConfig(config, f)]),
  );
  const registry = createMetrics({ processMetrics: true });
  const metrics = controllerMetrics(registry);
  const cleanups: (() => Promise<void>)[] = own ? [() => own.shutdown()] : [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const c of [...cleanups].reverse())
        await c().catch((err: unknown) => logger.warn({ err }, 'error while stopping'));
    })());
  try {
    // Before anything else: an unreadable key or an unprotected listen address stops the start.
    const tls = opts.grpcTls
      ? readTlsFiles(opts.grpcTls, {
          caFlag: '--client-ca-file',
          warn: (fields, message) => logger.warn(fields, message),
        })
      : undefined;
    const refusal = insecureListenRefusal(opts.grpcListen, {
      tls: tls !== undefined,
      insecure: opts.grpcInsecure === true,
    });
    if (refusal) throw new Error(refusal);
    if (!tls && insecureListenRefusal(opts.grpcListen, { tls: false, insecure: false }) !== undefined) {
      logger.warn(
        { grpc: opts.grpcListen },
        "INSECURE: gRPC NodeSync serves a non-loopback address without TLS (--insecure): anyone who reaches it can ack for any node, fetch any node's rules and read status",
      );
    }
    const nc: NatsConnection = await connectWithRetry(
      {
        servers: opts.natsUrl,
        name: 'kpx-controller',
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        inboxPrefix: inboxPrefix(NatsRole.Controller),
        ...(await natsConnectionOptions(opts.natsAuth ?? {})),
      },
      {
        signal: opts.signal,
        onRetry: (err, attempt, waitMs) =>
          logger.info(
            { err: String(err), nats: opts.natsUrl, attempt, retryInMs: waitMs },
            'cannot reach NATS yet; retrying',
          ),
      },
    );
    let natsUp = true;
    // A drain waits for the server: bounded, and skipped while NATS is down, so SIGTERM always stops the process.
    cleanups.push(() => closeNats(nc, natsUp ? 2000 : 0));
    metrics.natsConnected.set(1);
    // Every JetStream call (publish, KV, object store) waits at most the publish timeout.
    const js = jetstream(nc, { timeout: opts.publishTimeoutMs ?? 5000 });
    const jsm = await jetstreamManager(nc, { timeout: opts.publishTimeoutMs ?? 5000 });
    const ports = await natsPorts(js, jsm, {
      historyPerSubject: opts.historyPerSubject ?? 1000,
      maxAgeMs: opts.maxAgeMs ?? 0,
      snapshotsKept: opts.snapshotsKept ?? 2,
      ...(opts.publishTimeoutMs !== undefined ? { publishTimeoutMs: opts.publishTimeoutMs } : {}),
      ...(opts.natsReplicas !== undefined ? { replicas: opts.natsReplicas } : {}),
      ...(opts.signer ? { signer: opts.signer } : {}),
    });
    if (opts.signer) logger.info({ keyId: opts.signer.keyId }, 'signing deltas and snapshots');
    else logger.warn('deltas and snapshots are unsigned: executors cannot tell them from forged ones (--signing-key)');
    await ensureAuditStream(jsm, {
      ...(opts.auditMaxAgeMs !== undefined ? { maxAgeMs: opts.auditMaxAgeMs } : {}),
      ...(opts.natsReplicas !== undefined ? { replicas: opts.natsReplicas } : {}),
    });
    // One record per generation, appended with its deltas: a failed append is retried like a failed publish.
    const writing = {
      sink: ports.sink,
      snapshots: ports.snapshots,
      generations: ports.generations,
      audit: { append: (o: SyncOutcome) => publishAuditRecord(js, generationRecord(o)) },
    };
    let leadership: Leadership | undefined;
    /** While standing by: the newest version of every object, handed to the pipeline on taking over. */
    let standby: StandbyBuffer | undefined;
    let synced = false;
    let grpc: RunningGrpcServer | undefined;
    let startGrpc: () => Promise<void> = () => Promise.resolve();
    if (opts.leaderElection) {
      const election = opts.leaderElection;
      leadership = new Leadership({
        election,
        store: await election.store(js),
        logger,
        claim: (epoch) => ports.claimGenerations(epoch),
        onLeading: () => {
          metrics.leader.set(1);
          startGrpc().catch((err: unknown) =>
            logger.error({ err, listen: opts.grpcListen }, 'gRPC NodeSync could not listen'),
          );
          const objects = standby?.size ?? 0;
          standby?.drain((e) => pipeline.onEvent(e));
          standby = undefined;
          logger.info({ objects, synced }, 'leading: compiling what the source delivered while standing by');
          if (synced) pipeline.onSynced();
        },
        onLost: (reason) => {
          metrics.leader.set(0);
          // Every write is already refused (gated ports); stop syncing and serving, then let the caller exit.
          void pipeline.stop();
          void grpc?.close();
          election.onLost?.(reason);
        },
      });
      cleanups.push(() => leadership?.stop() ?? Promise.resolve());
      standby = new StandbyBuffer();
    }
    const gated = leadership ? leadership.gate(writing) : writing;
    metrics.leader.set(leadership ? 0 : 1);
    const pipeline = new ControllerPipeline({
      families,
      mode: pipelineMode(config),
      ...ports,
      ...gated,
      snapshotEvery: opts.snapshotEvery ?? 100,
      minSyncPeriodMs: config.minSyncPeriodMs,
      ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
      logger,
      tracer,
      metrics: {
        synced: (s) => {
          metrics.generation.set(s.generation);
          if (s.nodes > 0) metrics.deltaBytes.observe(s.bytes / s.nodes);
          metrics.nodes.set(pipeline.nodes().length);
        },
        published: (n) => metrics.deltasPublished.inc(n),
        publishFailed: (n) => metrics.publishFailures.inc(n),
        syncFailed: () => metrics.syncFailures.inc(),
      },
    });
    // A sync in flight may be waiting on NATS (up to the publish timeout): the stop waits at most a second for it.
    // What it had not published stays owed; the next controller finds each node's head and continues from there.
    cleanups.push(() => withTimeout(pipeline.stop(), 1000));
    // Disconnects and reconnects at info; what failed while NATS was away goes out at once, not after the backoff.
    void followConnection(nc, (up, server) => {
      natsUp = up;
      metrics.natsConnected.set(up ? 1 : 0);
      logger.info({ server }, up ? 'NATS reconnected' : 'NATS disconnected; reconnecting');
      if (up) pipeline.retryNow();
    });
    // Status gauges, kept current by the controller itself (not by whoever scrapes or probes).
    const updateGauges = (): void => {
      const c = pipeline.tracker.counts();
      metrics.nodesInSync.set(c.inSync);
      metrics.nodesPending.set(c.pending);
      metrics.nodesStale.set(c.stale);
      metrics.pendingGenerations.set(pipeline.outbox.pendingGenerations());
      const since = pipeline.unpublishedSince();
      metrics.unpublishedSeconds.set(since === undefined ? 0 : (Date.now() - since) / 1000);
    };
    const gauges = setInterval(updateGauges, 1000);
    gauges.unref();
    cleanups.push(() => Promise.resolve(clearInterval(gauges)));
    // Node events executors report (drift, failed applies), appended in order off the ack path; a failed append
    // is logged and dropped (the node's status keeps the newest).
    const auditQueue = new SerialQueue();
    const audit = (record: AuditRecord): void => {
      auditQueue
        .run(() => publishAuditRecord(js, record))
        .catch((err: unknown) => logger.warn({ err }, 'audit log append failed'));
    };
    cleanups.push(() => withTimeout(auditQueue.idle(), 2000));
    startGrpc = async (): Promise<void> => {
      if (grpc) return;
      grpc = await startGrpcServer({
        pipeline,
        listen: opts.grpcListen,
        logger,
        tracer,
        onChangeToAck: (s) => metrics.changeToAck.observe(s),
        onAck: (req) => {
          const time = new Date().toISOString();
          if (req.drift.length > 0)
            audit({
              type: 'drift',
              node: req.node,
              ipFamily: req.ipFamily,
              time,
              generation: req.generation,
              details: req.drift.slice(0, MaxDriftLines),
            });
          if (req.error)
            audit({
              type: 'apply-error',
              node: req.node,
              ipFamily: req.ipFamily,
              time,
              generation: req.generation,
              details: [req.error],
            });
        },
        ...(leadership ? { leadership: () => leadership.status() } : {}),
        ...(tls ? { tls } : {}),
        insecure: opts.grpcInsecure === true,
        onDenied: (method, identity) => metrics.deniedRequests.inc({ method, identity }),
      });
      if (leadership) logger.info({ grpc: grpc.address }, 'gRPC NodeSync listening (leader)');
    };
    cleanups.push(() => grpc?.close() ?? Promise.resolve());
    if (!leadership) await startGrpc();
    const graceMs = opts.publishGraceMs ?? 30_000;
    const http: HttpServer = await startHttpServer({
      listen: opts.metricsListen,
      registry,
      // Unhealthy until the source synced, and while a compiled change has waited for JetStream longer than the
      // grace period (NATS down, publishes failing): the controller cannot deliver what it knows.
      healthz: () => {
        const since = pipeline.unpublishedSince();
        const stuck = since !== undefined && Date.now() - since > graceMs;
        const leader = leadership ? { leader: leadership.isLeader() } : {};
        const details = {
          generation: pipeline.generation,
          source: opts.sourceName,
          ...leader,
          ...(since !== undefined ? { unpublishedSince: new Date(since).toISOString() } : {}),
        };
        return { ok: synced && !stuck, ...(synced ? { lastUpdated: new Date(since ?? Date.now()) } : {}), details };
      },
    });
    cleanups.push(() => http.close());
    await opts.source.start({
      onEvent: (e) => (standby ? standby.add(e) : pipeline.onEvent(e)),
      onSynced: () => {
        synced = true;
        if (leadership && !leadership.isLeader()) {
          logger.info({ source: opts.sourceName }, 'source synced; a standby compiles nothing until it leads');
          return;
        }
        logger.info({ source: opts.sourceName }, 'source synced; compiling every node');
        pipeline.onSynced();
      },
      onWarning: (message, err) => logger.warn({ err }, message),
    });
    cleanups.push(() => opts.source.stop());
    // Campaign once the source runs: a new leader compiles at once from a warm model.
    leadership?.start();
    logger.info(
      {
        grpc: grpc?.address ?? `${opts.grpcListen} (once leading)`,
        grpcTls: tls !== undefined,
        metrics: http.url,
        nats: opts.natsUrl,
        source: opts.sourceName,
      },
      'kpx controller running',
    );
    return {
      pipeline,
      get grpcAddress() {
        return grpc?.address ?? opts.grpcListen;
      },
      metricsUrl: http.url,
      logger,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Drains the connection, closing it outright after `ms` (a drain waits for a server that may be down). */
async function closeNats(nc: NatsConnection, ms: number): Promise<void> {
  if (nc.isClosed()) return;
  if (ms > 0)
    await withTimeout(
      nc.drain().catch(() => undefined),
      ms,
    );
  if (!nc.isClosed()) await nc.close().catch(() => undefined);
}

/** Waits for `p`, at most `ms`. */
async function withTimeout(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.then(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
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
    causes: o.causes
      .slice(0, AuditMaxCauses)
      .map((c) => ({ kind: c.kind, namespace: c.namespace, name: c.name, resourceVersion: c.resourceVersion })),
    causesTotal: o.causes.length,
    services: o.services.slice(0, AuditMaxCauses),
    servicesTotal: o.services.length,
    nodes: o.deltas.slice(0, AuditMaxNodes).map((d, i) => ({
      node: d.node,
      ipFamily: d.ipFamily,
      snapshot: d.snapshot,
      upserts: d.upserts.length,
      deletes: d.deletes.length,
      bytes: o.deltaBytes[i] ?? 0,
    })),
    nodesTotal: o.deltas.length,
    bytes: o.deltaBytes.reduce((a, b) => a + b, 0),
  };
}
