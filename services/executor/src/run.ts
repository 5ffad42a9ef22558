// Runs one node's executor: NATS JetStream for deltas, gRPC to the controller, /healthz /livez and /metrics.
import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  ControllerClient,
  connectWithRetry,
  followConnection,
  inboxPrefix,
  type NatsAuth,
  natsConnectionOptions,
  NatsRole,
  readTlsFiles,
  type TlsFiles,
  type Verifier,
} from '@kpx/transport';
import { jetstream } from '@nats-io/jetstream';
import type { NodePortAddresses } from '@kpx/model';
import {
  createHealthTracker,
  createLogger,
  createMetrics,
  executorMetrics,
  startHttpServer,
  startTracing,
  type HttpServer,
  type Logger,
  type Tracer,
  type Tracing,
} from '@kpx/telemetry';
import type { Backend } from './backend.js';
import { createConntrackCleaner } from './conntrack.js';
import { Executor } from './executor.js';
import { createHealthCheckServers, type HealthCheckSyncResult } from './health-check.js';

/** service.version of the traces' resource: this package's version. */
const PackageVersion = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface ExecutorRunOptions {
  readonly node: string;
  readonly natsUrl: string;
  /** The controller's gRPC address, host:port. */
  readonly controller: string;
  /** mTLS to the controller (--tls-cert-file, --tls-private-key-file, --ca-file): the node's certificate. */
  readonly controllerTls?: TlsFiles;
  /** The backend of each IP family the node programs. */
  readonly createBackend: (family: string) => Backend;
  /** IP families (default both). */
  readonly families?: readonly string[];
  /** /healthz and /livez (kube-proxy's healthz port by default: 0.0.0.0:10256). */
  readonly healthzListen?: string;
  /** /metrics (kube-proxy's metrics address by default: 127.0.0.1:10249, loopback only). */
  readonly metricsListen?: string;
  readonly otlpEndpoint?: string;
  /** A tracer of tracing already started in this process (tests, an all-in-one process): no tracing of its own. */
  readonly tracer?: Tracer;
  readonly logLevel?: string;
  readonly driftCheckMs?: number;
  /** Health timeout: a delta queued longer than this makes /healthz fail (default 60 s, kube-proxy's). */
  readonly healthTimeoutMs?: number;
  /**
   * NATS unreachable longer than this makes /healthz fail (default: the health timeout): the kernel keeps the
   * last good rules meanwhile, but they may be stale.
   */
  readonly natsGraceMs?: number;
  /** Aborting it stops a start that is still converging (e.g. controller and NATS down): see RunningExecutor.stop. */
  readonly signal?: AbortSignal;
  /** Delete stale UDP conntrack entries with the conntrack CLI, inside `netns` when set. Absent: no cleanup (dry runs). */
  readonly conntrack?: { readonly netns?: string };
  /**
   * Serve every eTP Local LoadBalancer's healthCheckNodePort, inside `netns` when set (a child process there), on
   * the addresses of `nodePortAddresses` CIDRs (default: every address). Absent: no servers (dry runs).
   */
  readonly healthChecks?: { readonly netns?: string; readonly nodePortAddresses?: NodePortAddresses };
  /** NATS credentials and TLS (issue #15); the connection's inboxes are the node's own (inboxPrefix). */
  readonly natsAuth?: NatsAuth;
  /** Verify deltas and snapshots with the controller's public keys (issue #15); unverified without. */
  readonly verifier?: Verifier;
}

export interface RunningExecutor {
  readonly executor: Executor;
  readonly healthzUrl: string;
  readonly metricsUrl: string;
  readonly logger: Logger;
  stop(): Promise<void>;
}

export async function runExecutor(opts: ExecutorRunOptions): Promise<RunningExecutor> {
  const logger = createLogger({ name: 'kpx-executor', ...(opts.logLevel ? { level: opts.logLevel } : {}) }).child({
    node: opts.node,
  });
  // One tracer provider per process: a caller that runs several components in one process passes its own.
  const own: Tracing | undefined = opts.tracer
    ? undefined
    : startTracing({
        serviceName: 'kpx-executor',
        serviceVersion: PackageVersion,
        resourceAttributes: { 'k8s.node.name': opts.node },
        ...(opts.otlpEndpoint ? { otlpEndpoint: opts.otlpEndpoint } : {}),
      });
  const tracer: Tracer = opts.tracer ?? own!.tracer;
  const registry = createMetrics({ processMetrics: true });
  const metrics = executorMetrics(registry);
  const healthTimeoutMs = opts.healthTimeoutMs ?? 60_000;
  const health = createHealthTracker({ healthTimeoutMs, sourceGraceMs: opts.natsGraceMs ?? healthTimeoutMs });
  const cleanups: Cleanup[] = own ? [{ what: 'tracing', fn: () => own.shutdown() }] : [];
  let stopping: Promise<void> | undefined;
  // Each step of a stop is bounded: a NATS connection that cannot flush, an OTLP endpoint that does not answer,
  // must not keep a SIGTERM'd executor alive. The kernel keeps its rules either way.
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const c of [...cleanups].reverse()) {
        const done = await bounded(c.fn(), StopStepMs).catch(
          (err: unknown) => (logger.warn({ err, step: c.what }, 'error while stopping'), true),
        );
        if (!done) logger.warn({ step: c.what, ms: StopStepMs }, 'stop step unfinished; going on');
      }
    })());
  try {
    const tls = opts.controllerTls
      ? readTlsFiles(opts.controllerTls, {
          caFlag: '--ca-file',
          warn: (fields, message) => logger.warn(fields, message),
        })
      : undefined;
    const controller = new ControllerClient(opts.controller, { tracerName: 'kpx-executor', ...(tls ? { tls } : {}) });
    cleanups.push({ what: 'controller client', fn: () => Promise.resolve(controller.close()) });
    // NATS may not be up yet (a node booting first, an outage): wait for it, stoppable by SIGTERM.
    const nc: NatsConnection = await connectWithRetry(
      {
        servers: opts.natsUrl,
        name: `kpx-executor-${opts.node}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        inboxPrefix: inboxPrefix(NatsRole.Node, opts.node),
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
    cleanups.push({ what: 'NATS connection', fn: () => nc.close() });
    void followConnection(nc, (up, server) => {
      if (up) health.sourceRestored();
      else health.sourceLost();
      logger.info(
        { server },
        up
          ? 'NATS reconnected; resuming from the last applied delta'
          : 'NATS disconnected; the kernel keeps its rules; reconnecting',
      );
    });
    const backends = new Map((opts.families ?? ['IPv4', 'IPv6']).map((f) => [f, opts.createBackend(f)]));
    /** Health check ports failing, `family/port: error`: a failure is logged when it starts and when it ends. */
    const failing = new Set<string>();
    const healthChecks = opts.healthChecks
      ? createHealthCheckServers({
          ...opts.healthChecks,
          proxyHealthy: () => health.report().ok,
          onResult: (r: HealthCheckSyncResult) => {
            if (r.family === '') return;
            const labels = { ip_family: r.family as 'IPv4' };
            metrics.healthCheckServers.set(labels, r.listening.length);
            if (r.failed.length > 0) metrics.healthCheckListenFailures.inc(labels, r.failed.length);
            const now = new Set(r.failed.map((f) => `${f.family}/${f.port}: ${f.error}`));
            const started = r.failed.filter((f) => !failing.has(`${f.family}/${f.port}: ${f.error}`));
            if (started.length > 0)
              logger.error(
                { family: r.family, failed: started },
                'could not serve health check node ports; retrying every few seconds',
              );
            for (const k of [...failing]) {
              if (!k.startsWith(`${r.family}/`) || now.has(k)) continue;
              failing.delete(k);
              const port = Number(k.slice(r.family.length + 1).split(':')[0]);
              if (r.listening.includes(port))
                logger.info({ family: r.family, port }, 'health check node port served again');
            }
            for (const k of now) failing.add(k);
          },
          onStderr: (line: string) => logger.warn({ line }, 'health check process'),
        })
      : undefined;
    if (healthChecks) cleanups.push({ what: 'health check servers', fn: () => healthChecks.close() });
    const executor = new Executor({
      node: opts.node,
      js: jetstream(nc),
      controller,
      backends,
      logger,
      tracer,
      metrics,
      health,
      ...(opts.driftCheckMs !== undefined ? { driftCheckMs: opts.driftCheckMs } : {}),
      ...(opts.verifier ? { verifier: opts.verifier } : {}),
      ...(opts.conntrack ? { conntrack: createConntrackCleaner({ logger, metrics, ...opts.conntrack }) } : {}),
      ...(healthChecks ? { healthChecks } : {}),
    });
    // As kube-proxy: the probes where the kubelet and load balancers reach them, the metrics on loopback unless
    // asked otherwise (they name services and nodes). /metrics on the healthz port is 404.
    const http: HttpServer = await startHttpServer({
      listen: opts.healthzListen ?? '0.0.0.0:10256',
      healthz: () => health.report(),
      probeCounters: { proxyHealthz: metrics.proxyHealthz, proxyLivez: metrics.proxyLivez },
    });
    cleanups.push({ what: 'healthz server', fn: () => http.close() });
    const metricsHttp: HttpServer = await startHttpServer({
      listen: opts.metricsListen ?? '127.0.0.1:10249',
      registry,
    });
    cleanups.push({ what: 'metrics server', fn: () => metricsHttp.close() });
    cleanups.push({ what: 'executor', fn: () => executor.stop() });
    const abortStart = (): void => void executor.stop();
    opts.signal?.addEventListener('abort', abortStart, { once: true });
    try {
      await executor.start();
    } finally {
      opts.signal?.removeEventListener('abort', abortStart);
    }
    logger.info(
      {
        nats: opts.natsUrl,
        controller: opts.controller,
        healthz: http.url,
        metrics: metricsHttp.url,
        backends: [...backends.values()].map((b) => b.name),
      },
      'kpx executor running',
    );
    return { executor, healthzUrl: http.url, metricsUrl: metricsHttp.url, logger, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** How long one step of RunningExecutor.stop may take before the next one runs. */
const StopStepMs = 1_000;

/** One step of a stop. */
interface Cleanup {
  readonly what: string;
  readonly fn: () => Promise<void>;
}

/** Whether `p` settled within `ms` (it is left to settle on its own otherwise). */
function bounded(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  return Promise.race([p.then(() => true), timeout]).finally(() => clearTimeout(timer));
}

/**
 * Logs NATS losing and finding the server (info), and tells the health tracker: /healthz fails once NATS has been
 * gone longer than the grace. The executor keeps its rules meanwhile and resumes from its last seq after.
 */
