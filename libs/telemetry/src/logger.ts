// JSON logs (pino) that carry the active OpenTelemetry span's ids, so a log line finds its trace.

import { hostname } from 'node:os';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import { LogLevelError } from './errors.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** Logger name (pino's `name` field), e.g. `kpx-controller`. */
  readonly name: string;
  /** The `service` field of every line; defaults to `name`. */
  readonly service?: string | undefined;
  /** Minimum level: trace, debug, info (default), warn, error, fatal or silent. */
  readonly level?: string | undefined;
  /** Where lines go; defaults to stdout. Anything with `write(line)` works (tests pass a collecting stream). */
  readonly destination?: DestinationStream | undefined;
}

/** Fields that tie a log line to the span active when it was written (names as the OpenTelemetry pino instrumentation). */
export interface TraceLogFields {
  readonly trace_id: string;
  readonly span_id: string;
  readonly trace_flags: string;
}

/** The trace fields of the span active right now, or undefined outside any (valid) span. */
export function activeTraceFields(): TraceLogFields | undefined {
  const span = trace.getActiveSpan();
  if (span === undefined) return undefined;
  const sc = span.spanContext();
  if (!isSpanContextValid(sc)) return undefined;
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: sc.traceFlags.toString(16).padStart(2, '0') };
}

/**
 * A pino logger writing one JSON object per line: `level` (as a label), `time` (ISO 8601), `service`, `pid`,
 * `hostname`, `name`, `msg`, and `trace_id` / `span_id` / `trace_flags` whenever an OpenTelemetry span is active.
 */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? 'info';
  const known = [...Object.keys(pino.levels.values), 'silent'];
  if (!known.includes(level)) throw new LogLevelError(level, known);
  const pinoOptions = {
    name: options.name,
    level,
    base: { service: options.service ?? options.name, pid: process.pid, hostname: hostname() },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
    mixin: () => activeTraceFields() ?? {},
  };
  return options.destination === undefined ? pino(pinoOptions) : pino(pinoOptions, options.destination);
}
