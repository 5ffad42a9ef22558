// The audit log on JetStream (stream KPX_AUDIT): one JSON record per generation on `kpx.audit.gen` (what caused it,
// which nodes it changed, how many bytes went out) and node events on `kpx.audit.node.<node>` (drift found and
// repaired, failed applies), kept for a configurable time. Records are JSON so that any NATS client can read them.
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
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { DecodeError } from './errors.js';
import { AuditGenerationSubject, AuditStream, AuditSubjectPrefix, auditSubject } from './subjects.js';

export interface AuditStreamOptions {
  /** Stream replicas when the stream is created (default 1). */
  readonly replicas?: number;
  /** How long records are kept, ms (default 7 days; 0: unlimited). */
  readonly maxAgeMs?: number;
  /** At most this many records in all (default 1,000,000). */
  readonly maxMsgs?: number;
}

/** One cause of a generation: the API object and its resourceVersion. */
export interface AuditCause {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
}

/** What one generation changed: `kpx.audit.gen`. */
export interface GenerationRecord {
  readonly type: 'generation';
  readonly generation: number;
  /** When it was published (RFC 3339). */
  readonly time: string;
  /** The earliest trigger time of its causes (RFC 3339), when known. */
  readonly triggerTime?: string | undefined;
  /** The causes, earliest first (at most a few hundred: `causesTotal` says how many there were). */
  readonly causes: readonly AuditCause[];
  readonly causesTotal: number;
  /** Services (`namespace/name`) whose rules were recompiled (capped like causes). */
  readonly services: readonly string[];
  readonly servicesTotal: number;
  /** One entry per node and family that got a delta (capped; `nodesTotal` counts them all). */
  readonly nodes: readonly {
    node: string;
    ipFamily: string;
    snapshot: boolean;
    upserts: number;
    deletes: number;
    bytes: number;
  }[];
  readonly nodesTotal: number;
  /** Bytes of all its deltas. */
  readonly bytes: number;
}

/** Something that happened on a node: `kpx.audit.node.<node>`. */
export interface NodeEventRecord {
  readonly type: 'drift' | 'apply-error';
  readonly node: string;
  readonly ipFamily: string;
  readonly time: string;
  /** The generation the node was at. */
  readonly generation: number;
  /** drift: what differed (one line each); apply-error: the error. */
  readonly details: readonly string[];
}

export type AuditRecord = GenerationRecord | NodeEventRecord;

export interface AuditEntry {
  readonly seq: number;
  readonly subject: string;
  readonly record: AuditRecord;
}

/** Creates the KPX_AUDIT stream or updates its limits. Idempotent. */
export async function ensureAuditStream(jsm: JetStreamManager, options: AuditStreamOptions = {}): Promise<void> {
  const limits = { max_age: nanos(options.maxAgeMs ?? 7 * 24 * 3600 * 1000), max_msgs: options.maxMsgs ?? 1_000_000 };
  try {
    const info = await jsm.streams.info(AuditStream);
    if (info.config.max_age !== limits.max_age || info.config.max_msgs !== limits.max_msgs)
      await jsm.streams.update(AuditStream, { ...info.config, ...limits });
  } catch (error) {
    if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
    await jsm.streams.add({
      name: AuditStream,
      subjects: [`${AuditSubjectPrefix}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: options.replicas ?? 1,
      ...limits,
    });
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Appends one record (generation records to `kpx.audit.gen`, node events to the node's subject). */
export async function publishAuditRecord(js: JetStreamClient, record: AuditRecord): Promise<void> {
  const subject = record.type === 'generation' ? AuditGenerationSubject : auditSubject(record.node);
  await js.publish(
    subject,
    encoder.encode(JSON.stringify(record)),
    record.type === 'generation' ? { msgID: `gen:${record.generation}` } : {},
  );
}

export interface ReadAuditOptions {
  /** Records at or after this time (default: all retained). */
  readonly since?: Date;
}

/** Every retained audit record in order (from `since`), ending once caught up. */
export async function* readAudit(js: JetStreamClient, options: ReadAuditOptions = {}): AsyncGenerator<AuditEntry> {
  const consumerOptions: Partial<OrderedConsumerOptions> = {
    filter_subjects: `${AuditSubjectPrefix}.>`,
    inactive_threshold: 30_000,
  };
  if (options.since) {
    consumerOptions.deliver_policy = DeliverPolicy.StartTime;
    consumerOptions.opt_start_time = options.since.toISOString();
  } else {
    consumerOptions.deliver_policy = DeliverPolicy.All;
  }
  const consumer = await js.consumers.get(AuditStream, consumerOptions);
  try {
    if ((await consumer.info(true)).num_pending === 0) return;
    const messages = await consumer.consume({ max_messages: 512 });
    try {
      for await (const msg of messages) {
        let record: AuditRecord;
        try {
          record = JSON.parse(decoder.decode(msg.data)) as AuditRecord;
        } catch (cause) {
          throw new DecodeError(`audit record at seq ${msg.seq} on ${msg.subject} is not JSON`, { cause });
        }
        yield { seq: msg.seq, subject: msg.subject, record };
        if (msg.info.pending === 0) break;
      }
    } finally {
      messages.stop();
    }
  } finally {
    try {
      await consumer.delete();
    } catch {
      // Best effort: the ordered consumer expires by itself.
    }
  }
}
