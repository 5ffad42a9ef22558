// Runs one node's executor: NATS JetStream for deltas, gRPC to the controller, /healthz /livez /metrics.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { createHealthTracker, createLogger, createMetrics, executorMetrics, startHttpServer, startTracing, type HttpServer, type Logger, type Tracer, type Tracing } from '@kpx/telemetry';
import type { Backend } from './backend.js';
import { createConntrackCleaner } from './conntrack.js';
import { ControllerClient } from './controller-client.js';
import { Executor } from './executor.js';

export interface ExecutorRunOptions {
  readonly node: string;
  readonly natsUrl: string;
  /** The controller's gRPC address, host:port. */
  readonly controller: string;
  /** The backend of each IP family the node programs. */
  readonly createBackend: (family: string) => Backend;
  /** IP families (default both). */
  readonly families?: readonly string[];
  /** /healthz, /livez and /metrics (kube-proxy's healthz port by default: 0.0.0.0:10256). */
  readonly healthzListen?: string;
  readonly otlpEndpoint?: string;
  /** A tracer of tracing already started in this process (tests, an all-in-one process): no tracing of its own. */
  readonly tracer?: Tracer;
  readonly logLevel?: string;
  readonly driftCheckMs?: number;
  /** Health timeout: a delta queued longer than this makes /healthz fail (default 60 s, kube-proxy's). */
  readonly healthTimeoutMs?: number;
  /** Delete stale UDP conntrack entries with the conntrack CLI, inside `netns` when set. Absent: no cleanup (dry runs). */
  readonly conntrack?: { readonly netns?: string };
}

export interface RunningExecutor {
  readonly executor: Executor;
  readonly healthzUrl: string;
  readonly logger: Logger;
  stop(): Promise<void>;
}

export async function runExecutor(opts: ExecutorRunOptions): Promise<RunningExecutor> {
  const logger = createLogger({ name: 'kpx-executor', ...(opts.logLevel ? { level: opts.logLevel } : {}) }).child({ node: opts.node });
  // One tracer provider per process: a caller that runs several components in one process passes its own.
  const own: Tracing | undefined = opts.tracer ? undefined : startTracing({ serviceName: 'kpx-executor', ...(opts.otlpEndpoint ? { otlpEndpoint: opts.otlpEndpoint } : {}) });
  const tracer: Tracer = opts.tracer ?? own!.tracer;
  const registry = createMetrics({ processMetrics: true });
  const metrics = executorMetrics(registry);
  const health = createHealthTracker({ healthTimeoutMs: opts.healthTimeoutMs ?? 60_000 });
  const cleanups: (() => Promise<void>)[] = own ? [() => own.shutdown()] : [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      for (const c of [...cleanups].reverse()) await c().catch((err: unknown) => logger.warn({ err }, 'error while stopping'));
    })());
  try {
    const controller = new ControllerClient(opts.controller);
    cleanups.push(() => Promise.resolve(controller.close()));
    const nc: NatsConnection = await connect({ servers: opts.natsUrl, name: `kpx-executor-${opts.node}`, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    cleanups.push(() => nc.close());
    const backends = new Map((opts.families ?? ['IPv4', 'IPv6']).map((f) => [f, opts.createBackend(f)]));
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
      ...(opts.conntrack ? { conntrack: createConntrackCleaner({ logger, ...opts.conntrack }) } : {}),
    });
    const http: HttpServer = await startHttpServer({
      listen: opts.healthzListen ?? '0.0.0.0:10256',
      registry,
      healthz: () => health.report(),
      probeCounters: { proxyHealthz: metrics.proxyHealthz, proxyLivez: metrics.proxyLivez },
    });
    cleanups.push(() => http.close());
    await executor.start();
    cleanups.push(() => executor.stop());
    logger.info({ nats: opts.natsUrl, controller: opts.controller, healthz: http.url, backends: [...backends.values()].map((b) => b.name) }, 'kpx executor running');
    return { executor, healthzUrl: http.url, logger, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
