export {
  HttpServerError,
  ListenAddressError,
  LogLevelError,
  MetricRegistrationError,
  TracingAlreadyStartedError,
  TracingConfigError,
} from './errors.js';
export { ToBeDeletedTaint, createHealthTracker, renderProbe } from './health.js';
export type {
  HealthCheck,
  HealthReport,
  HealthTracker,
  HealthTrackerOptions,
  HealthzBody,
  LivezBody,
  NodeEligibilityInput,
  ProbeKind,
} from './health.js';
export { DefaultListenAddress, startHttpServer } from './http-server.js';
export type { HttpServer, HttpServerOptions } from './http-server.js';
export { DefaultListenHost, formatListenAddress, parseListenAddress } from './listen-address.js';
export type { ListenAddress } from './listen-address.js';
export { activeTraceFields, createLogger } from './logger.js';
export type { Logger, LoggerOptions, TraceLogFields } from './logger.js';
export {
  DeltaBytesBuckets,
  MetricName,
  NetworkProgrammingBuckets,
  SyncDurationBuckets,
  controllerMetrics,
  createMetrics,
  executorMetrics,
  kubeProxyMetrics,
} from './metrics.js';
export type {
  ControllerMetrics,
  ExecutorMetrics,
  IpFamilyLabel,
  KubeProxyMetrics,
  MetricsOptions,
  Registry,
} from './metrics.js';
export {
  createW3CPropagator,
  extractTraceContext,
  extractTraceHeaders,
  extractTraceMetadata,
  headersGetter,
  headersSetter,
  injectTraceContext,
  injectTraceHeaders,
  injectTraceMetadata,
  metadataGetter,
  metadataSetter,
} from './propagation.js';
export type { HeadersCarrier, MetadataCarrier, TraceCarrier } from './propagation.js';
export {
  OtlpProtocol,
  SpanProcessing,
  otlpTracesUrl,
  parseOtlpProtocol,
  startTracing,
  withContext,
  withSpan,
} from './tracing.js';
export type { Tracing, TracingOptions, WithSpanOptions } from './tracing.js';
// Re-exported so services need no direct dependency on @opentelemetry/api for the common cases.
export { SpanKind, SpanStatusCode } from '@opentelemetry/api';
export type { Attributes, Context, Span, Tracer } from '@opentelemetry/api';
