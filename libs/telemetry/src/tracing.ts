// OpenTelemetry tracing for kpx, configured the standard way: @opentelemetry/sdk-node's NodeSDK reads the OTEL_*
// environment (resource, sampler, span limits, exporter and protocol, OTEL_SDK_DISABLED); W3C propagation;
// AsyncLocalStorage context; export off unless an OTLP endpoint is configured.

import { SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import type { Attributes, Context, Span, SpanKind, Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, envDetector, processDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { TracingAlreadyStartedError, TracingConfigError } from './errors.js';
import { createW3CPropagator } from './propagation.js';

/** How ended spans reach an exporter. */
export const SpanProcessing = {
  /** Queue and export in batches (every 5 s or 512 spans, or as OTEL_BSP_* say); the default. */
  Batch: 'batch',
  /** Export each span as it ends (tests, debugging). */
  Simple: 'simple',
} as const;
export type SpanProcessing = (typeof SpanProcessing)[keyof typeof SpanProcessing];

/** OTLP transports (OTEL_EXPORTER_OTLP_PROTOCOL). */
export const OtlpProtocol = {
  HttpProtobuf: 'http/protobuf',
  HttpJson: 'http/json',
  Grpc: 'grpc',
} as const;
export type OtlpProtocol = (typeof OtlpProtocol)[keyof typeof OtlpProtocol];

export interface TracingOptions {
  /** Default `service.name` of the resource (OTEL_SERVICE_NAME overrides it), and the tracer's name. */
  readonly serviceName: string;
  /** `service.version` of the resource. */
  readonly serviceVersion?: string | undefined;
  /** More resource attributes, e.g. `k8s.node.name` (OTEL_RESOURCE_ATTRIBUTES overrides them). */
  readonly resourceAttributes?: Attributes | undefined;
  /**
   * The OTLP endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT (`--otlp-endpoint`): for HTTP a base URL (`/v1/traces` is
   * appended unless the path already ends with it), for gRPC the collector's URL. Takes precedence over the
   * environment. Unset: the OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT environment decides;
   * neither set: nothing is exported.
   */
  readonly otlpEndpoint?: string | undefined;
  /** Default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf. */
  readonly otlpProtocol?: OtlpProtocol | undefined;
  /** Another exporter (tests pass an InMemorySpanExporter). May be combined with an OTLP endpoint. */
  readonly exporter?: SpanExporter | undefined;
  /** Default: batch. */
  readonly processing?: SpanProcessing | undefined;
}

export interface Tracing {
  readonly tracer: Tracer;
  /** Whether any exporter is configured (false: spans and context still work in-process, nothing leaves it). */
  readonly exporting: boolean;
  /** The resource's `service.instance.id` (unique per process). */
  readonly instanceId: string;
  /** Exports every ended span still queued. */
  forceFlush(): Promise<void>;
  /** Flushes, shuts the exporters down and unregisters the globals, so startTracing() may run again. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Starts OpenTelemetry for this process through NodeSDK: a tracer provider with the OTEL_* environment's resource,
 * sampler and span limits, an AsyncLocalStorage context manager (context flows through async/await) and the W3C
 * trace-context + baggage propagator. Without an endpoint or exporter, spans get real ids and propagate but are not
 * exported. OTEL_SDK_DISABLED=true: nothing is registered; the tracer is a no-op one. Throws
 * TracingAlreadyStartedError while an earlier one is not shut down.
 *
 * NodeSDK is given no instrumentations (kpx makes its own spans; auto-instrumenting http would trace every
 * /metrics scrape), no metric readers and no log processors (metrics are Prometheus' /metrics, logs are pino's
 * JSON lines carrying trace ids): left to the environment it would export both to localhost:4318 by default.
 */
export function startTracing(options: TracingOptions): Tracing {
  const env = process.env;
  const instanceId = randomUUID();
  if (env['OTEL_SDK_DISABLED']?.trim().toLowerCase() === 'true')
    return disabledTracing(options.serviceName, instanceId);
  // OTEL_TRACES_EXPORTER=none turns the environment's endpoint off; an explicit otlpEndpoint still exports.
  const tracesOff = (env['OTEL_TRACES_EXPORTER'] ?? '')
    .split(',')
    .map((e) => e.trim())
    .includes('none');
  const endpoint = options.otlpEndpoint ?? (tracesOff ? undefined : configuredEndpoint(env));
  const protocol = options.otlpProtocol ?? protocolFromEnv(env);
  const exporters: SpanExporter[] = [];
  if (endpoint !== undefined) exporters.push(otlpExporter(protocol, options.otlpEndpoint));
  if (options.exporter !== undefined) exporters.push(options.exporter);
  const processing = options.processing ?? SpanProcessing.Batch;
  const spanProcessors: SpanProcessor[] = exporters.map((e) =>
    processing === SpanProcessing.Simple ? new SimpleSpanProcessor(e) : new BatchSpanProcessor(e),
  );
  // NodeSDK registers no tracer provider without a span processor: spans would have no ids and carry no context.
  if (spanProcessors.length === 0) spanProcessors.push(noExport);

  const attributes: Attributes = {
    'service.name': options.serviceName,
    'service.instance.id': instanceId,
    'host.name': hostname(),
    ...options.resourceAttributes,
  };
  if (options.serviceVersion !== undefined) attributes['service.version'] = options.serviceVersion;
  // The propagator is registered here, first: it is the one global NodeSDK would not report as taken.
  if (!propagation.setGlobalPropagator(createW3CPropagator())) {
    void Promise.all(spanProcessors.map((p) => p.shutdown())).catch(() => undefined);
    throw new TracingAlreadyStartedError('propagator');
  }
  const sdk = new NodeSDK({
    // Detected attributes win over these defaults; the env detector (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES)
    // is last, so it wins over the others. No host detector: its host.id is read asynchronously, and every export
    // would wait for it (host.name is set above).
    resource: defaultResource().merge(resourceFromAttributes(attributes)),
    resourceDetectors: [processDetector, envDetector],
    textMapPropagator: null,
    spanProcessors,
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();

  let stopped: Promise<void> | undefined;
  return {
    tracer: trace.getTracer(options.serviceName, options.serviceVersion),
    exporting: exporters.length > 0,
    instanceId,
    forceFlush: () => Promise.all(spanProcessors.map((p) => p.forceFlush())).then(() => undefined),
    shutdown: () => {
      stopped ??= sdk.shutdown().finally(() => {
        trace.disable();
        context.disable();
        propagation.disable();
      });
      return stopped;
    },
  };
}

/** OTEL_SDK_DISABLED: the API's no-op tracer; helpers still run, nothing is recorded. */
function disabledTracing(serviceName: string, instanceId: string): Tracing {
  return {
    tracer: trace.getTracer(serviceName),
    exporting: false,
    instanceId,
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
}

const noExport: SpanProcessor = {
  onStart: () => undefined,
  onEnd: () => undefined,
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

/** The traces endpoint the environment configures, if any (empty values count as unset, as in the SDK). */
function configuredEndpoint(env: NodeJS.ProcessEnv): string | undefined {
  const value = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim() || env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim();
  return value || undefined;
}

function protocolFromEnv(env: NodeJS.ProcessEnv): OtlpProtocol {
  const value =
    env['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL']?.trim() ||
    env['OTEL_EXPORTER_OTLP_PROTOCOL']?.trim() ||
    OtlpProtocol.HttpProtobuf;
  return parseOtlpProtocol(value);
}

/** An OTLP protocol name; anything else is a TracingConfigError naming the value. */
export function parseOtlpProtocol(value: string): OtlpProtocol {
  const known = Object.values(OtlpProtocol) as string[];
  if (!known.includes(value)) {
    throw new TracingConfigError(`unsupported OTLP protocol ${JSON.stringify(value)}: use ${known.join(', ')}`);
  }
  return value as OtlpProtocol;
}

/**
 * An OTLP trace exporter for `protocol`. Without `endpoint` the exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
 * (used as is) or OTEL_EXPORTER_OTLP_ENDPOINT (HTTP: `/v1/traces` appended), headers, timeout and compression itself.
 */
function otlpExporter(protocol: OtlpProtocol, endpoint: string | undefined): SpanExporter {
  switch (protocol) {
    case OtlpProtocol.Grpc:
      return new GrpcTraceExporter(endpoint === undefined ? {} : { url: grpcUrl(endpoint) });
    case OtlpProtocol.HttpJson:
      return new JsonTraceExporter(endpoint === undefined ? {} : { url: otlpTracesUrl(endpoint) });
    case OtlpProtocol.HttpProtobuf:
      return new ProtobufTraceExporter(endpoint === undefined ? {} : { url: otlpTracesUrl(endpoint) });
  }
}

function grpcUrl(endpoint: string): string {
  try {
    return new URL(endpoint).toString();
  } catch (cause) {
    throw new TracingConfigError(`invalid OTLP endpoint ${JSON.stringify(endpoint)}: not an absolute URL`, { cause });
  }
}

/** The OTLP/HTTP traces URL for a collector endpoint (base URL or full `/v1/traces` URL). */
export function otlpTracesUrl(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch (cause) {
    throw new TracingConfigError(`invalid OTLP endpoint ${JSON.stringify(endpoint)}: not an absolute URL`, { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TracingConfigError(`invalid OTLP endpoint ${JSON.stringify(endpoint)}: scheme must be http or https`);
  }
  if (!url.pathname.endsWith('/v1/traces')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  return url.toString();
}

export interface WithSpanOptions {
  readonly kind?: SpanKind | undefined;
  /** Parent context (e.g. from extractTraceHeaders); default: the active context. */
  readonly parent?: Context | undefined;
}

/**
 * Runs `fn` in a new span, a child of the active span (or of `options.parent`), made active for everything `fn` does,
 * including after awaits. If `fn` returns a promise the span ends when it settles. A throw or rejection is recorded
 * on the span (exception event, status ERROR) and passed on; success sets status OK. The span always ends.
 */
export function withSpan<T>(
  tracer: Tracer,
  name: string,
  attributes: Attributes | undefined,
  fn: (span: Span) => T,
  options: WithSpanOptions = {},
): T {
  const parent = options.parent ?? context.active();
  return tracer.startActiveSpan(name, { attributes, kind: options.kind }, parent, (span): T => {
    let result: T;
    try {
      result = fn(span);
    } catch (err) {
      endFailed(span, err);
      throw err;
    }
    if (!isPromiseLike(result)) {
      endOk(span);
      return result;
    }
    return Promise.resolve(result).then(
      (value) => {
        endOk(span);
        return value;
      },
      (err: unknown) => {
        endFailed(span, err);
        throw err;
      },
    ) as T;
  });
}

/** Runs `fn` with `ctx` as the active context (e.g. one returned by extractTraceContext). */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

function endOk(span: Span): void {
  span.setStatus({ code: SpanStatusCode.OK });
  span.end();
}

function endFailed(span: Span, err: unknown): void {
  if (err instanceof Error) span.recordException(err);
  else span.recordException(String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  span.end();
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
