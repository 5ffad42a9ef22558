// Errors of @kpx/telemetry.

/** A listen address is not `host:port` (IPv6 hosts in brackets: `[::1]:10249`), or its port is out of range. */
export class ListenAddressError extends Error {
  override readonly name = 'ListenAddressError';
  /** The address as given. */
  readonly value: string;

  constructor(value: string, reason: string, options?: { cause?: unknown }) {
    super(`invalid listen address ${JSON.stringify(value)}: ${reason}`, options);
    this.value = value;
  }
}

/** The HTTP server could not bind its address (in use, not local, permission denied). */
export class HttpServerError extends Error {
  override readonly name = 'HttpServerError';
  /** The address the server tried to listen on, as given. */
  readonly listen: string;

  constructor(listen: string, options?: { cause?: unknown }) {
    const reason = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`cannot listen on ${listen}${reason}`, options);
    this.listen = listen;
  }
}

/** Tracing options that kpx refuses: a malformed OTLP endpoint, or both an endpoint and an exporter. */
export class TracingConfigError extends Error {
  override readonly name = 'TracingConfigError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * startTracing() found a tracer provider, context manager or propagator already registered with the OpenTelemetry
 * API in this process: call shutdown() on the earlier one first.
 */
export class TracingAlreadyStartedError extends Error {
  override readonly name = 'TracingAlreadyStartedError';

  constructor(what: string) {
    super(`OpenTelemetry ${what} is already registered in this process; shut the earlier tracing down first`);
  }
}

/** A log level pino does not know. */
export class LogLevelError extends Error {
  override readonly name = 'LogLevelError';
  readonly value: string;

  constructor(value: string, known: readonly string[]) {
    super(`unknown log level ${JSON.stringify(value)} (known: ${known.join(', ')})`);
    this.value = value;
  }
}

/** A metric could not be registered, typically because a registry already holds one of that name. */
export class MetricRegistrationError extends Error {
  override readonly name = 'MetricRegistrationError';
  readonly metric: string;

  constructor(metric: string, options?: { cause?: unknown }) {
    const reason = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`cannot register metric ${metric}${reason}`, options);
    this.metric = metric;
  }
}
