// OpenTelemetry tracing for kpx: W3C propagation, AsyncLocalStorage context, export off unless asked for.

import { SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import type { Attributes, Context, Span, SpanKind, Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { TracingAlreadyStartedError, TracingConfigError } from './errors.js';
import { createW3CPropagator } from './propagation.js';

/** How ended spans reach an exporter. */
export const SpanProcessing = {
  /** Queue and export in batches (every 5 s or 512 spans); the default. */
  Batch: 'batch',
  /** Export each span as it ends (tests, debugging). */
  Simple: 'simple',
} as const;
export type SpanProcessing = (typeof SpanProcessing)[keyof typeof SpanProcessing];

export interface TracingOptions {
  /** `service.name` of the resource, and the tracer's name. */
  readonly serviceName: string;
  /** `service.version` of the resource. */
  readonly serviceVersion?: string | undefined;
  /**
   * OTLP/HTTP (JSON encoding) collector, e.g. `http://otel-collector:4318`; `/v1/traces` is appended unless the path already
   * ends with it. Unset: nothing is exported to a collector.
   */
  readonly otlpEndpoint?: string | undefined;
  /** Another exporter (tests pass an InMemorySpanExporter). May be combined with otlpEndpoint. */
  readonly exporter?: SpanExporter | undefined;
  /** Default: batch. */
  readonly processing?: SpanProcessing | undefined;
}

export interface Tracing {
  readonly tracer: Tracer;
  /** Whether any exporter is configured (false: spans and context still work in-process, nothing leaves it). */
  readonly exporting: boolean;
  /** Exports every ended span still queued. */
  forceFlush(): Promise<void>;
  /** Flushes, shuts the exporters down and unregisters the globals, so startTracing() may run again. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * Registers, for this process, an OpenTelemetry tracer provider, an AsyncLocalStorage context manager (context flows
 * through async/await) and the W3C trace-context + baggage propagator. Without an endpoint or exporter, spans get real
 * ids and propagate but are not exported. Throws TracingAlreadyStartedError while an earlier one is not shut down.
 */
export function startTracing(options: TracingOptions): Tracing {
  const exporters: SpanExporter[] = [];
  if (options.otlpEndpoint !== undefined) {
    exporters.push(new OTLPTraceExporter({ url: otlpTracesUrl(options.otlpEndpoint) }));
  }
  if (options.exporter !== undefined) exporters.push(options.exporter);
  const processing = options.processing ?? SpanProcessing.Batch;
  const spanProcessors: SpanProcessor[] = exporters.map((e) =>
    processing === SpanProcessing.Simple ? new SimpleSpanProcessor(e) : new BatchSpanProcessor(e),
  );

  const attributes: Attributes = { 'service.name': options.serviceName };
  if (options.serviceVersion !== undefined) attributes['service.version'] = options.serviceVersion;
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes(attributes)),
    spanProcessors,
  });

  try {
    registerGlobals(provider);
  } catch (err) {
    // Nothing was started through this provider; release its exporters and report the conflict.
    void provider.shutdown().catch(() => undefined);
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    tracer: provider.getTracer(options.serviceName),
    exporting: exporters.length > 0,
    forceFlush: () => provider.forceFlush(),
    shutdown: () => {
      stopped ??= provider.shutdown().finally(() => {
        trace.disable();
        context.disable();
        propagation.disable();
      });
      return stopped;
    },
  };
}

function registerGlobals(provider: BasicTracerProvider): void {
  if (!trace.setGlobalTracerProvider(provider)) throw new TracingAlreadyStartedError('tracer provider');
  const contextManager = new AsyncLocalStorageContextManager().enable();
  if (!context.setGlobalContextManager(contextManager)) {
    contextManager.disable();
    trace.disable();
    throw new TracingAlreadyStartedError('context manager');
  }
  if (!propagation.setGlobalPropagator(createW3CPropagator())) {
    context.disable();
    trace.disable();
    throw new TracingAlreadyStartedError('propagator');
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
