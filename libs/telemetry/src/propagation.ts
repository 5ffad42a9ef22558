// Carry W3C trace context (traceparent, tracestate, baggage) across transports: plain records, NATS message headers,
// gRPC metadata. Structural types only: this package imports neither nats nor grpc.

import { context } from '@opentelemetry/api';
import type { Context, TextMapGetter, TextMapPropagator, TextMapSetter } from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';

/** The propagator kpx uses everywhere: W3C trace context, then W3C baggage. Stateless. */
export function createW3CPropagator(): TextMapPropagator {
  return new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] });
}

// A stateless constant, not mutable state: the helpers below work whether or not startTracing() ran.
const w3c = createW3CPropagator();

/** A record of header values, e.g. JSON message fields or Node's IncomingHttpHeaders. */
export type TraceCarrier = Record<string, string | readonly string[] | undefined>;

/**
 * NATS message headers (nats.js `MsgHdrs`: `get` returns `''` when absent), or anything shaped like them, such as a
 * `Map<string, string>`.
 */
export interface HeadersCarrier {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  keys?(): Iterable<string>;
}

/** gRPC metadata (grpc-js `Metadata`: `get` returns every value of the key, `set` replaces them). */
export interface MetadataCarrier {
  get(key: string): readonly (string | Uint8Array)[];
  set(key: string, value: string): void;
  getMap?(): Record<string, unknown>;
}

const recordGetter: TextMapGetter<Readonly<TraceCarrier>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const exact = carrier[key];
    if (exact !== undefined) return toGetterValue(exact);
    const lower = key.toLowerCase();
    const found = Object.keys(carrier).find((k) => k.toLowerCase() === lower);
    return found === undefined ? undefined : toGetterValue(carrier[found]);
  },
};

const recordSetter: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/** TextMapGetter over NATS-style headers; an empty value counts as absent. */
export const headersGetter: TextMapGetter<HeadersCarrier> = {
  keys: (carrier) => (carrier.keys === undefined ? [] : Array.from(carrier.keys())),
  get: (carrier, key) => {
    const value = carrier.get(key);
    return value === undefined || value === '' ? undefined : value;
  },
};

/** TextMapSetter over NATS-style headers (replaces any earlier value of the key). */
export const headersSetter: TextMapSetter<HeadersCarrier> = {
  set: (carrier, key, value) => {
    carrier.set(key, value);
  },
};

const utf8 = new TextDecoder();

/** TextMapGetter over gRPC metadata: all values of a key, binary ones decoded as UTF-8. */
export const metadataGetter: TextMapGetter<MetadataCarrier> = {
  keys: (carrier) => (carrier.getMap === undefined ? [] : Object.keys(carrier.getMap())),
  get: (carrier, key) => {
    const values = carrier.get(key).map((v) => (typeof v === 'string' ? v : utf8.decode(v)));
    if (values.length === 0) return undefined;
    return values.length === 1 ? values[0] : values;
  },
};

/** TextMapSetter over gRPC metadata. */
export const metadataSetter: TextMapSetter<MetadataCarrier> = {
  set: (carrier, key, value) => {
    carrier.set(key, value);
  },
};

/**
 * Writes the trace context of `ctx` (default: the active context) into `carrier` as `traceparent` / `tracestate`
 * (and `baggage` when there is any). Writes nothing when there is no valid span in the context. Returns the carrier
 * (a new object when none is given).
 */
export function injectTraceContext(
  carrier: Record<string, string> = {},
  ctx: Context = context.active(),
): Record<string, string> {
  w3c.inject(ctx, carrier, recordSetter);
  return carrier;
}

/**
 * The context `base` (default: the active one) with the remote span found in `carrier`; a span started in it becomes
 * a child of the sender's span. Header names are matched case-insensitively. Without a valid `traceparent`, `base`.
 */
export function extractTraceContext(carrier: Readonly<TraceCarrier>, base: Context = context.active()): Context {
  return w3c.extract(base, carrier, recordGetter);
}

/** injectTraceContext for NATS message headers. */
export function injectTraceHeaders<C extends HeadersCarrier>(headers: C, ctx: Context = context.active()): C {
  w3c.inject(ctx, headers, headersSetter);
  return headers;
}

/** extractTraceContext for NATS message headers. */
export function extractTraceHeaders(headers: HeadersCarrier, base: Context = context.active()): Context {
  return w3c.extract(base, headers, headersGetter);
}

/** injectTraceContext for gRPC metadata. */
export function injectTraceMetadata<C extends MetadataCarrier>(metadata: C, ctx: Context = context.active()): C {
  w3c.inject(ctx, metadata, metadataSetter);
  return metadata;
}

/** extractTraceContext for gRPC metadata. */
export function extractTraceMetadata(metadata: MetadataCarrier, base: Context = context.active()): Context {
  return w3c.extract(base, metadata, metadataGetter);
}

function toGetterValue(value: string | readonly string[] | undefined): string | string[] | undefined {
  if (value === undefined || typeof value === 'string') return value;
  return [...value];
}
