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
  type OrderedConsumerOptions,
  type StoredMsg,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { MsgHdrsImpl, nanos, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { PayloadTooLargeError, StreamConfigError } from './errors.js';
import { deltaSigningInput, type Signer, type Verifier } from './signing.js';
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
export async function ensureDeltaStream(
  jsm: JetStreamManager,
  options: DeltaStreamOptions,
): Promise<EnsureStreamResult> {
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
    throw new StreamConfigError(
      `stream ${DeltaStream} exists with subjects ${JSON.stringify(config.subjects)}; kpx needs ["${DeltaSubjectFilter}"]`,
    );
  }
  const wanted = { ...limits, discard: DiscardPolicy.Old, allow_direct: true };
  const differs = (Object.keys(wanted) as (keyof typeof wanted)[]).some((key) => config[key] !== wanted[key]);
  if (!differs) return { action: EnsureAction.Unchanged, info: existing };
  const info = await jsm.streams.update(DeltaStream, { ...config, ...wanted });
  return { action: EnsureAction.Updated, info };
}

function deltaStreamLimits(
  options: DeltaStreamOptions,
): Pick<StreamConfig, 'max_msgs_per_subject' | 'max_age' | 'duplicate_window' | 'num_replicas'> {
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
  /** Signs the delta (Kpx-Key-Id and Kpx-Signature headers); unsigned without. */
  signer?: Signer;
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
export async function publishDelta(
  js: JetStreamClient,
  delta: Delta,
  options: PublishDeltaOptions = {},
): Promise<PublishedDelta> {
  const subject = deltaSubject(delta.node);
  const data = Delta.encode(delta).finish();
  const headers = deltaHeaders(delta, options.traceHeaders ?? {});
  if (options.signer) {
    headers.set(Header.KeyId, options.signer.keyId);
    headers.set(Header.Signature, options.signer.sign(deltaSigningInput(delta.node, String(delta.generation), data)));
  }
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

/**
 * Why a message on a node's subject was not used. readDeltas finds `decode` and `foreign_node`; readers that
 * chain deltas (the executor, replay) find the others.
 */
export const RejectReason = {
  /** Not a kpx.v1.Delta, or its kpx headers disagree with its content. */
  Decode: 'decode',
  /** The delta (or its Kpx-Node header) names another node than the subject's. */
  ForeignNode: 'foreign_node',
  /** Applying the delta does not reach the digest it announces. */
  Digest: 'digest',
  /** Its prev_generation is not the generation the reader holds. */
  Gap: 'gap',
  /** Its generation is at or below the one the reader holds. */
  Old: 'old',
  /** A proxy mode or IP family the reader does not program. */
  ModeFamily: 'mode_family',
  /** It holds an object that is not kpx's own (a chain, set, interface or rule text outside kpx's namespace). */
  ForbiddenObject: 'forbidden_object',
  /** Unsigned, signed by a key the reader does not trust, or a signature that does not match (signing.ts). */
  Signature: 'signature',
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

/** A message of a node's subject that is not a usable delta of that node. */
export interface RejectedMessage {
  /** Stream sequence: a reader that moves past it never sees it again. */
  readonly seq: number;
  readonly reason: RejectReason;
  /** What was wrong, for logs and acks. */
  readonly detail: string;
  readonly headers: Record<string, string>;
  readonly pending: number;
}

/** What readDeltaMessages yields: a delta, or a message that could not be one. */
export type DeltaMessage =
  | { readonly ok: true; readonly record: DeltaRecord }
  | { readonly ok: false; readonly rejected: RejectedMessage };

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
  /** readDeltas only: called for each message it skips because it is not a delta of the node. */
  onRejected?: (rejected: RejectedMessage) => void;
  /** Verify every message's signature with these keys; one that does not verify is rejected (`signature`). */
  verifier?: Verifier;
}

/**
 * The deltas of one node in stream order (see readDeltaMessages). A message that is not a valid delta of the
 * node (garbage, a truncated protobuf, another node's delta) is skipped and given to `onRejected`: it never
 * ends the iteration.
 */
export async function* readDeltas(
  js: JetStreamClient,
  node: string,
  options: ReadDeltasOptions = {},
): AsyncGenerator<DeltaRecord> {
  for await (const m of readDeltaMessages(js, node, options)) {
    if (m.ok) yield m.record;
    else options.onRejected?.(m.rejected);
  }
}

/**
 * The messages of one node in stream order, through an ordered consumer on `kpx.delta.<node>`: each one a
 * decoded delta of the node, or the reason it is not one (never an exception for a bad message). Without startSeq
 * it scans from the subject's first retained message, skipping (by the Kpx-Generation header, without decoding)
 * those at or below fromGeneration.
 */
export async function* readDeltaMessages(
  js: JetStreamClient,
  node: string,
  options: ReadDeltasOptions = {},
): AsyncGenerator<DeltaMessage> {
  const follow = options.follow ?? false;
  if (options.signal?.aborted === true) return;
  const consumer = await js.consumers.get(DeltaStream, consumerOptions(node, options.startSeq));
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
        if (!unwantedByHeaders(msg.headers, options.fromGeneration ?? 0, options.ipFamily)) {
          const m = toMessage(node, msg.seq, msg.headers, msg.data, msg.info.pending, options.verifier);
          if (!m.ok || wanted(m.record, options.fromGeneration ?? 0, options.ipFamily)) yield m;
        }
        if (caughtUp) break;
      }
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      messages.stop();
    }
  } finally {
    // Best effort: the ephemeral consumer also expires by itself after inactive_threshold. An aborted reader does
    // not wait for the server's answer (with NATS gone it would wait for the request's timeout).
    const deleted = consumer.delete().catch(() => false);
    if (!isAborted(options.signal)) await deleted;
  }
}

function consumerOptions(node: string, startSeq: number | undefined): Partial<OrderedConsumerOptions> {
  const options: Partial<OrderedConsumerOptions> = {
    filter_subjects: deltaSubject(node),
    // An abandoned consumer is removed by the server after this long without a pull.
    inactive_threshold: 30_000,
  };
  if (startSeq !== undefined && startSeq > 1) {
    options.deliver_policy = DeliverPolicy.StartSequence;
    options.opt_start_seq = startSeq;
  } else {
    options.deliver_policy = DeliverPolicy.All;
  }
  return options;
}

/** A function, so that TypeScript does not carry a narrowing of `aborted` across awaits. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

/** Skipped without decoding: its Kpx headers put it at or below fromGeneration, or in another family. */
function unwantedByHeaders(
  headers: MsgHdrs | undefined,
  fromGeneration: number,
  ipFamily: string | undefined,
): boolean {
  const generation = headers?.get(Header.Generation) ?? '';
  const family = headers?.get(Header.IpFamily) ?? '';
  if (generation !== '' && /^\d+$/.test(generation) && Number(generation) <= fromGeneration) return true;
  return ipFamily !== undefined && family !== '' && family !== ipFamily;
}

function wanted(record: DeltaRecord, fromGeneration: number, ipFamily: string | undefined): boolean {
  return record.delta.generation > fromGeneration && (ipFamily === undefined || record.delta.ipFamily === ipFamily);
}

/**
 * The newest delta of a node (the last message on its subject), or undefined when it has none. When the last
 * message is not a valid delta of the node, the newest one that is (a scan of the subject).
 */
export async function lastDelta(
  js: JetStreamClient,
  node: string,
  options: { verifier?: Verifier } = {},
): Promise<DeltaRecord | undefined> {
  const msg = await lastMessage(js, node);
  if (msg === null) return undefined;
  const m = toMessage(node, msg.seq, msg.header, msg.data, 0, options.verifier);
  if (m.ok) return m.record;
  let newest: DeltaRecord | undefined;
  for await (const r of readDeltas(js, node, options)) if (r.seq <= msg.seq) newest = r;
  return newest;
}

/** The stream sequence of the last message on the node's subject (0 when it has none), whatever that message holds. */
export async function lastDeltaSeq(js: JetStreamClient, node: string): Promise<number> {
  return (await lastMessage(js, node))?.seq ?? 0;
}

/**
 * The last message of the node's subject, by a direct get whose subject names it
 * (`$JS.API.DIRECT.GET.KPX_DELTAS.kpx.delta.<node>`): a node's NATS user may be allowed exactly its own subject.
 */
async function lastMessage(
  js: JetStreamClient,
  node: string,
): Promise<Pick<StoredMsg, 'seq' | 'header' | 'data'> | null> {
  const jsm = await js.jetstreamManager(false);
  return jsm.direct.getMessage(DeltaStream, { last_by_subj: deltaSubject(node) });
}

function headerRecord(headers: MsgHdrs | undefined): Record<string, string> {
  const record: Record<string, string> = {};
  if (headers !== undefined) {
    for (const name of headers.keys()) record[name] = headers.get(name);
  }
  return record;
}

/** The message as a delta of `node`, or why it is not one. */
function toMessage(
  node: string,
  seq: number,
  headers: MsgHdrs | undefined,
  data: Uint8Array,
  pending = 0,
  verifier?: Verifier,
): DeltaMessage {
  const record = headerRecord(headers);
  const reject = (reason: RejectReason, detail: string): DeltaMessage => ({
    ok: false,
    rejected: { seq, reason, detail: `seq ${seq}: ${detail}`, headers: record, pending },
  });
  if (verifier) {
    // Before decoding: nothing unverified is parsed. The signature binds the Kpx-Node and Kpx-Generation headers,
    // which are then checked against the content below.
    const signed = deltaSigningInput(record[Header.Node] ?? '', record[Header.Generation] ?? '', data);
    const wrong = verifier.check(record[Header.KeyId], record[Header.Signature], signed);
    if (wrong !== undefined) return reject(RejectReason.Signature, wrong);
    if (record[Header.Node] === undefined || record[Header.Generation] === undefined)
      return reject(RejectReason.Signature, `signed without the ${Header.Node} and ${Header.Generation} headers`);
  }
  let delta: Delta;
  try {
    delta = Delta.decode(data);
  } catch (cause) {
    return reject(
      RejectReason.Decode,
      `not a valid kpx.v1.Delta (${data.length} bytes): ${cause instanceof Error ? cause.message : String(cause)}`,
    );
  }
  const headerNode = record[Header.Node];
  if (delta.node !== node || (headerNode !== undefined && headerNode !== node)) {
    return reject(
      RejectReason.ForeignNode,
      `a delta for node ${JSON.stringify(delta.node)} (header ${Header.Node}: ${JSON.stringify(headerNode ?? '')}) on the subject of ${node}`,
    );
  }
  const headerGeneration = record[Header.Generation];
  if (headerGeneration !== undefined && headerGeneration !== String(delta.generation)) {
    return reject(
      RejectReason.Decode,
      `header ${Header.Generation}=${headerGeneration} but the delta is generation ${delta.generation}`,
    );
  }
  const headerFamily = record[Header.IpFamily];
  if (headerFamily !== undefined && headerFamily !== delta.ipFamily) {
    return reject(RejectReason.Decode, `header ${Header.IpFamily}=${headerFamily} but the delta is ${delta.ipFamily}`);
  }
  return { ok: true, record: { delta, seq, headers: record, pending } };
}
