// What the controller pipeline needs from the outside world, as narrow interfaces: NATS JetStream in
// production, in-memory fakes in unit tests.
import type { IPFamily } from '@kpx/model';
import type { Cause, Delta, NodeRuleSet } from '@kpx/proto';

/** What JetStream said of a publish. */
export interface PublishOutcome {
  /**
   * The server already held a message with the delta's msg id (`<node>:<family>:<generation>`). `sameDelta` tells
   * whether that message is this delta (a retry of a publish that was stored although its acknowledgement was
   * lost: success) or another one (the generation was used before: the counter went backwards).
   */
  readonly duplicate?: { readonly sameDelta: boolean } | undefined;
}

export interface DeltaSink {
  /** Publishes one node's delta durably; `headers` carry the trace context. Rejects when it may not be stored. */
  publish(delta: Delta, headers: Record<string, string>): Promise<PublishOutcome | void>;
}

export interface SnapshotSink {
  /** Stores a node's full rule set at a generation where it survives a controller restart. */
  put(snapshot: NodeRuleSet): Promise<void>;
}

export interface GenerationStore {
  /** Reserves the next cluster-wide generation and persists it before returning: never reused. */
  next(): Promise<number>;
  /**
   * Makes sure every later reservation is above `floor` (a generation found published: the stored counter may
   * have gone backwards, its bucket lost or rewritten).
   */
  fence(floor: number): Promise<void>;
}

/** Where the audit log's generation records go (KPX_AUDIT); an append may fail and is then retried. */
export interface GenerationAudit {
  append(record: GenerationSummary): Promise<void>;
}

/** What one generation did, for the audit log. */
export interface GenerationSummary {
  readonly generation: number;
  readonly deltas: readonly Delta[];
  /** Encoded size of each delta, in the order of `deltas`. */
  readonly deltaBytes: readonly number[];
  /** Every cause, earliest first, deduplicated. */
  readonly causes: readonly Cause[];
  /** Services (`namespace/name`) whose rules changed. */
  readonly services: readonly string[];
  /** The earliest trigger time of the causes (ms since the epoch). */
  readonly triggerTime: number | undefined;
}

export interface PublishedHead {
  readonly generation: number;
  readonly digest: string;
}

export interface PublishedHeads {
  /** The last delta published for a node and family (generation and digest), if any. */
  head(node: string, family: IPFamily): Promise<PublishedHead | undefined>;
}

/** Keeps generations in memory only (tests, --dry-run). */
export class MemoryGenerationStore implements GenerationStore {
  constructor(private value = 0) {}
  next(): Promise<number> {
    return Promise.resolve(++this.value);
  }
  fence(floor: number): Promise<void> {
    this.value = Math.max(this.value, floor);
    return Promise.resolve();
  }
}
