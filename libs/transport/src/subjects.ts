// Every NATS name kpx uses: streams, subjects, buckets, object names and headers. Nothing else in kpx spells one.
//
// Node names in subjects. A Kubernetes Node name is a DNS-1123 subdomain: lowercase letters, digits, '-' and
// '.', at most 253 characters, every dot-separated label starting and ending with a letter or digit. '.' is the
// NATS token separator, so a name like "ip-10-0-0-1.ec2.internal" cannot be one subject token as it is. The
// token replaces every '.' by '_'. This is reversible because '_' can never occur in a valid node name: the
// encoder rejects anything that is not a DNS-1123 subdomain, and the decoder rejects anything that is not the
// image of one, so encode and decode are inverse bijections between valid names and valid tokens. The result
// stays readable in `nats stream view` and needs no escaping of '*', '>', whitespace or '%': none can appear.
// The true node name also travels in the Kpx-Node header and inside every message.
import { InvalidNodeNameError } from './errors.js';

/** The stream holding every node's deltas. */
export const DeltaStream = 'KPX_DELTAS';
/** Prefix of the delta subjects: `kpx.delta.<node token>`. */
export const DeltaSubjectPrefix = 'kpx.delta';
/** The subject filter of the delta stream. */
export const DeltaSubjectFilter = `${DeltaSubjectPrefix}.>`;

/** The JetStream object store bucket holding snapshots (its stream is OBJ_KPX_SNAPSHOTS). */
export const SnapshotBucket = 'KPX_SNAPSHOTS';

/** The audit log: generation records on `kpx.audit.gen`, node events on `kpx.audit.node.<node token>`. */
/** JetStream KV bucket holding the controller's durable counters (the cluster-wide generation). */
export const StateBucket = 'KPX_STATE';
/** Key of the last generation reserved in StateBucket. */
export const GenerationKey = 'generation';

export const AuditStream = 'KPX_AUDIT';
/** Prefix of the audit subjects. */
export const AuditSubjectPrefix = 'kpx.audit';

/** NATS header names set on every delta message. */
export const Header = {
  /** The Kubernetes node name, unencoded. */
  Node: 'Kpx-Node',
  /** The delta's generation (decimal). */
  Generation: 'Kpx-Generation',
  /** The generation the delta applies on (decimal). */
  PrevGeneration: 'Kpx-Prev-Generation',
  /** Digest of the node's state at Kpx-Generation. */
  Digest: 'Kpx-Digest',
  /** IP family of the delta's rule set ("IPv4" or "IPv6"). */
  IpFamily: 'Kpx-Ip-Family',
  /** W3C trace context. */
  TraceParent: 'traceparent',
  TraceState: 'tracestate',
  /** JetStream's de-duplication header (set through the msg id). */
  MsgId: 'Nats-Msg-Id',
  /** Id of the Ed25519 key that signed the delta (signing.ts), and the base64 signature. */
  KeyId: 'Kpx-Key-Id',
  Signature: 'Kpx-Signature',
} as const;
export type Header = (typeof Header)[keyof typeof Header];

/** Snapshot object metadata keys (object store metadata, not NATS headers). */
export const SnapshotMeta = {
  Node: 'kpx-node',
  IpFamily: 'kpx-ip-family',
  Mode: 'kpx-mode',
  Generation: 'kpx-generation',
  Digest: 'kpx-digest',
  /** On a head object: the retained generations, newest first, comma-separated. */
  Generations: 'kpx-generations',
  /** The signature of the encoded snapshot (signing.ts) and the id of its key. */
  KeyId: 'kpx-key-id',
  Signature: 'kpx-signature',
} as const;

/** The IP families a node may have snapshots for (Kubernetes IPFamily names). */
export const SnapshotFamilies = ['IPv4', 'IPv6'] as const;

const DnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NodeToken = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(_[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MaxNodeNameLength = 253;

/** True when `name` is a valid Kubernetes node name (a DNS-1123 subdomain, as apimachinery checks it). */
export function isValidNodeName(name: string): boolean {
  return name.length > 0 && name.length <= MaxNodeNameLength && DnsSubdomain.test(name);
}

/** The subject token of a node name ('.' → '_'); throws InvalidNodeNameError for an invalid name. */
export function encodeNodeToken(node: string): string {
  if (!isValidNodeName(node)) throw new InvalidNodeNameError(node);
  return node.replaceAll('.', '_');
}

/** The node name of a subject token; throws InvalidNodeNameError if no valid node name encodes to it. */
export function decodeNodeToken(token: string): string {
  if (token.length === 0 || token.length > MaxNodeNameLength || !NodeToken.test(token)) {
    throw new InvalidNodeNameError(token, 'not a node subject token');
  }
  return token.replaceAll('_', '.');
}

/** `kpx.delta.<node token>` */
export function deltaSubject(node: string): string {
  return `${DeltaSubjectPrefix}.${encodeNodeToken(node)}`;
}

/** The node name of a delta subject; throws InvalidNodeNameError when it is not one. */
export function nodeOfDeltaSubject(subject: string): string {
  const prefix = `${DeltaSubjectPrefix}.`;
  if (!subject.startsWith(prefix)) throw new InvalidNodeNameError(subject, 'not a delta subject');
  return decodeNodeToken(subject.slice(prefix.length));
}

/** `kpx.audit.gen`: one record per generation (its causes, the nodes it changed, the bytes published). */
export const AuditGenerationSubject = `${AuditSubjectPrefix}.gen`;

/** `kpx.audit.node.<node token>`: what happened on a node (drift found and repaired, failed applies). */
export function auditSubject(node: string): string {
  return `${AuditSubjectPrefix}.node.${encodeNodeToken(node)}`;
}

/** The JetStream msg id of a delta: `<node>:<family>:<generation>` (a republish is dropped as a duplicate). */
export function deltaMsgId(node: string, ipFamily: string, generation: number): string {
  return `${node}:${ipFamily}:${generation}`;
}

/** Object name of one retained snapshot: `<node token>/<family>/<generation, 20 digits>`. */
export function snapshotObjectName(node: string, ipFamily: string, generation: number): string {
  return `${snapshotHeadName(node, ipFamily)}/${String(generation).padStart(20, '0')}`;
}

/**
 * Object name of a node's snapshot head: `<node token>/<family>`. The head is an empty object whose metadata
 * names the latest generation and all retained ones, so the latest snapshot is found with one lookup.
 */
export function snapshotHeadName(node: string, ipFamily: string): string {
  return `${encodeNodeToken(node)}/${ipFamily}`;
}

/** Who talks to NATS, for inbox prefixes and the permissions of `kpx nats-config`. */
export const NatsRole = { Controller: 'controller', Node: 'node', Operator: 'operator' } as const;
export type NatsRole = (typeof NatsRole)[keyof typeof NatsRole];

/**
 * The inbox prefix of a role's connections: `_INBOX.kpx.<role>` (`_INBOX.kpx.node.<node token>` for an executor).
 * Replies (JetStream API answers, consumer deliveries) come there, so each user may subscribe to its own inboxes
 * only: a node cannot read the deliveries of another node's consumers.
 */
export function inboxPrefix(role: NatsRole, node?: string): string {
  if (role === NatsRole.Node) {
    if (node === undefined) throw new InvalidNodeNameError('', 'a node inbox needs the node name');
    return `_INBOX.kpx.node.${encodeNodeToken(node)}`;
  }
  return `_INBOX.kpx.${role}`;
}
