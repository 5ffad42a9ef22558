// Deltas on JetStream: the KPX_DELTAS stream (one subject per node), publishing with de-duplication and the
// kpx headers, reading a node's deltas in order, and the newest delta of a node.
import { Delta } from '@kpx/proto';
import {
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type OrderedConsumerOptions,
  type StoredMsg,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { MsgHdrsImpl, nanos, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { DecodeError, PayloadTooLargeError, StreamConfigError } from './errors.js';
import { deltaMsgId, deltaSubject, DeltaStream, DeltaSubjectFilter, Header } from './subjects.js';

/** Limits of the delta stream. */
export interface DeltaStreamOptions {
  /** Deltas kept per node subject (max_msgs_per_subject); older ones are discarded. */
  historyPerSubject: number;
  /** Maximum age of a delta in milliseconds; 0 keeps deltas regardless of age. */
  maxAgeMs: number;
  /** Replicas (clustered JetStream); default 1. */
  replicas?: number;
  /** Window in which a republished msg id is dropped as a duplicate; default 2 minutes, at most maxAgeMs. */
  duplicateWindowMs?: number;
}

export const EnsureAction = { Created: 'created', Updated: 'updated', Unchanged: 'unchanged' } as const;
export type EnsureAction = (typeof EnsureAction)[keyof typeof EnsureAction];

export interface EnsureStreamResult {
  action: EnsureAction;
  info: StreamInfo;
}

const DefaultDuplicateWindowMs = 2 * 60 * 1000;

/**
 * Creates the KPX_DELTAS stream, or updates its limits when they differ. Idempotent. Fails with
 * StreamConfigError when a stream of that name exists with other subjects or storage (those cannot be updated).
 */
export async function ensureDeltaStream(jsm: JetStreamManager, options: DeltaStreamOptions): Promise<EnsureStreamResult> {
  const limits = deltaStreamLimits(options);
  const existing = await streamInfoOrUndefined(jsm, DeltaStream);
  if (existing === undefined) {
    const info = await jsm.streams.add({
      name: DeltaStream,
      subjects: [DeltaSubjectFilter],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      // Direct gets let any replica answer "newest delta of node X" (nats-server 2.9+).
      allow_direct: true,
      ...limits,
    });
    return { action: EnsureAction.Created, info };
  }
  const config = existing.config;
  if (config.storage !== StorageType.File) {
    throw new StreamConfigError(`stream ${DeltaStream} exists with ${config.storage} storage; kpx needs file storage`);
  }
  if (config.subjects.length !== 1 || config.subjects[0] !== DeltaSubjectFilter) {
    throw new StreamConfigError(`stream ${DeltaStream} exists with subjects ${JSON.stringify(config.subjects)}; kpx needs ["${DeltaSubjectFilter}"]`);
  }
  const wanted = { ...limits, discard: DiscardPolicy.Old, allow_direct: true };
  const differs = (Object.keys(wanted) as (keyof typeof wanted)[]).some((key) => config[key] !== wanted[key]);
  if (!differs) return { action: EnsureAction.Unchanged, info: existing };
  const info = await jsm.streams.update(DeltaStream, { ...config, ...wanted });
  return { action: EnsureAction.Updated, info };
}

function deltaStreamLimits(options: DeltaStreamOptions): Pick<StreamConfig, 'max_msgs_per_subject' | 'max_age' | 'duplicate_window' | 'num_replicas'> {
  if (!Number.isInteger(options.historyPerSubject) || options.historyPerSubject < 1) {
    throw new RangeError(`historyPerSubject must be a positive integer, got ${options.historyPerSubject}`);
  }
  if (!Number.isInteger(options.maxAgeMs) || options.maxAgeMs < 0) {
    throw new RangeError(`maxAgeMs must be a non-negative integer, got ${options.maxAgeMs}`);
  }
  let duplicateWindowMs = options.duplicateWindowMs ?? DefaultDuplicateWindowMs;
  // The server refuses a duplicate window longer than max_age.
  if (options.maxAgeMs > 0) duplicateWindowMs = Math.min(duplicateWindowMs, options.maxAgeMs);
  return {
    max_msgs_per_subject: options.historyPerSubject,
    max_age: nanos(options.maxAgeMs),
    duplicate_window: nanos(duplicateWindowMs),
    num_replicas: options.replicas ?? 1,
  };
}

async function streamInfoOrUndefined(jsm: JetStreamManager, stream: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(stream);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw error;
  }
}

/** Options of publishDelta. */
export interface PublishDeltaOptions {
  /**
   * W3C trace context and other propagation headers (traceparent, tracestate, baggage). Names of kpx or
   * NATS headers (Kpx-*, Nats-*) are refused.
   */
  traceHeaders?: Readonly<Record<string, string>>;
  /** The max_payload to enforce; default: the server's, from the connection's INFO. */
  maxPayload?: number;
  /** Publish timeout in milliseconds (default: the JetStream client's). */
  timeoutMs?: number;
}

export interface PublishedDelta {
  /** The stream sequence of the delta (of the first copy when this publish was a duplicate). */
  seq: number;
  /** True when the server dropped this publish as a duplicate msg id. */
  duplicate: boolean;
}

/**
 * Publishes one delta on `kpx.delta.<node>` with the kpx headers and msg id `<node>:<family>:<generation>`, so a
 * republish inside the duplicate window is not stored twice. Throws PayloadTooLargeError, before sending
 * anything, when payload plus headers exceed the server's max_payload: publish a snapshot instead.
 */
export async function publishDelta(js: JetStreamClient, delta: Delta, options: PublishDeltaOptions = {}): Promise<PublishedDelta> {
  const subject = deltaSubject(delta.node);
  const data = Delta.encode(delta).finish();
  const headers = deltaHeaders(delta, options.traceHeaders ?? {});
  const size = data.length + headers.encode().length;
  const maxPayload = options.maxPayload ?? serverMaxPayload(js);
  if (size > maxPayload) {
    throw new PayloadTooLargeError({ node: delta.node, generation: delta.generation, size, maxPayload });
  }
  const ack = await js.publish(subject, data, {
    headers,
    ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
  });
  return { seq: ack.seq, duplicate: ack.duplicate };
}

function deltaHeaders(delta: Delta, trace: Readonly<Record<string, string>>): MsgHdrsImpl {
  const headers = new MsgHdrsImpl();
  for (const [name, value] of Object.entries(trace)) {
    const lower = name.toLowerCase();
    if (lower.startsWith('kpx-') || lower.startsWith('nats-')) {
      throw new TypeError(`trace header ${name} would override a kpx or NATS header`);
    }
    headers.set(name, value);
  }
  headers.set(Header.Node, delta.node);
  headers.set(Header.Generation, String(delta.generation));
  headers.set(Header.PrevGeneration, String(delta.prevGeneration));
  if (delta.digest !== '') headers.set(Header.Digest, delta.digest);
  if (delta.ipFamily !== '') headers.set(Header.IpFamily, delta.ipFamily);
  headers.set(Header.MsgId, deltaMsgId(delta.node, delta.ipFamily, delta.generation));
  return headers;
}

/** The client implementations expose their connection; the public JetStreamClient type does not. */
function hasConnection(js: JetStreamClient): js is JetStreamClient & { getConnection(): NatsConnection } {
  return typeof (js as Partial<{ getConnection: unknown }>).getConnection === 'function';
}

function serverMaxPayload(js: JetStreamClient): number {
  const maxPayload = hasConnection(js) ? js.getConnection().info?.max_payload : undefined;
  if (maxPayload === undefined) {
    throw new StreamConfigError('cannot read max_payload from the connection; pass options.maxPayload');
  }
  return maxPayload;
}

/** One delta read from the stream. */
export interface DeltaRecord {
  delta: Delta;
  /** Stream sequence. */
  seq: number;
  /** The message headers (first value of each), e.g. Kpx-Generation, traceparent. */
  headers: Record<string, string>;
  /** Messages of the node's subject after this one still to be delivered, as the server counted them. */
  pending: number;
}

/** Options of readDeltas. */
export interface ReadDeltasOptions {
  /** Yield only deltas whose generation is greater than this (default 0: all). */
  fromGeneration?: number;
  /** Start at this stream sequence (e.g. the seq after the last one applied) instead of the subject's first message. */
  startSeq?: number;
  /** Yield only deltas of this IP family ("IPv4" or "IPv6"). */
  ipFamily?: string;
  /** Keep waiting for new deltas (executors). Default false: end once caught up with the subject (replay). */
  follow?: boolean;
  /** Ends the iteration (follow mode) when aborted. */
  signal?: AbortSignal;
}

/**
 * The deltas of one node in stream order, through an ordered consumer on `kpx.delta.<node>`. Without startSeq
 * it scans from the subject's first retained message, skipping (by the Kpx-Generation header, without
 * decoding) those at or below fromGeneration.
 */
export async function* readDeltas(js: JetStreamClient, node: string, options: ReadDeltasOptions = {}): AsyncGenerator<DeltaRecord> {
  const subject = deltaSubject(node);
  const fromGeneration = options.fromGeneration ?? 0;
  const follow = options.follow ?? false;
  if (options.signal?.aborted === true) return;
  const consumerOptions: Partial<OrderedConsumerOptions> = {
    filter_subjects: subject,
    // An abandoned consumer is removed by the server after this long without a pull.
    inactive_threshold: 30_000,
  };
  if (options.startSeq !== undefined && options.startSeq > 1) {
    consumerOptions.deliver_policy = DeliverPolicy.StartSequence;
    consumerOptions.opt_start_seq = options.startSeq;
  } else {
    consumerOptions.deliver_policy = DeliverPolicy.All;
  }
  const consumer = await js.consumers.get(DeltaStream, consumerOptions);
  try {
    if (!follow && (await consumer.info(true)).num_pending === 0) return;
    const messages = await consumer.consume({ max_messages: 256 });
    const onAbort = (): void => messages.stop();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // Aborted while the consumer was being set up: the listener above came too late.
    if (isAborted(options.signal)) messages.stop();
    try {
      for await (const msg of messages) {
        const caughtUp = !follow && msg.info.pending === 0;
        if (wanted(msg, fromGeneration, options.ipFamily)) yield toRecord(msg.seq, msg.subject, msg.headers, msg.data, msg.info.pending);
        if (caughtUp) break;
      }
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      messages.stop();
    }
  } finally {
    try {
      await consumer.delete();
    } catch {
      // Best effort: the ephemeral consumer also expires by itself after inactive_threshold.
    }
  }
}

/** A function, so that TypeScript does not carry a narrowing of `aborted` across awaits. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function wanted(msg: JsMsg, fromGeneration: number, ipFamily: string | undefined): boolean {
  const generation = msg.headers?.get(Header.Generation) ?? '';
  const family = msg.headers?.get(Header.IpFamily) ?? '';
  if (generation !== '' && (ipFamily === undefined || family !== '')) {
    return Number(generation) > fromGeneration && (ipFamily === undefined || family === ipFamily);
  }
  // Headers missing (not published by publishDelta): decide on the decoded delta.
  const delta = decodeDelta(msg.seq, msg.data);
  return delta.generation > fromGeneration && (ipFamily === undefined || delta.ipFamily === ipFamily);
}

/** The newest delta of a node (the last message on its subject), or undefined when it has none. */
export async function lastDelta(js: JetStreamClient, node: string): Promise<DeltaRecord | undefined> {
  const subject = deltaSubject(node);
  const jsm = await js.jetstreamManager(false);
  const msg: StoredMsg | null = await jsm.streams.getMessage(DeltaStream, { last_by_subj: subject });
  if (msg === null) return undefined;
  return toRecord(msg.seq, msg.subject, msg.header, msg.data);
}

function toRecord(seq: number, subject: string, headers: MsgHdrs | undefined, data: Uint8Array, pending = 0): DeltaRecord {
  const delta = decodeDelta(seq, data);
  const record: Record<string, string> = {};
  if (headers !== undefined) {
    for (const name of headers.keys()) record[name] = headers.get(name);
  }
  const headerNode = record[Header.Node];
  if (headerNode !== undefined && headerNode !== delta.node) {
    throw new DecodeError(`delta at seq ${seq} on ${subject}: header ${Header.Node}=${headerNode} but the delta is for ${delta.node}`);
  }
  return { delta, seq, headers: record, pending };
}

function decodeDelta(seq: number, data: Uint8Array): Delta {
  try {
    return Delta.decode(data);
  } catch (cause) {
    throw new DecodeError(`delta at stream seq ${seq} is not a valid kpx.v1.Delta`, { cause });
  }
}
