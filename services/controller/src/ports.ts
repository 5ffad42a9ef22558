// What the controller pipeline needs from the outside world, as narrow interfaces: NATS JetStream in
// production, in-memory fakes in unit tests.
import type { IPFamily } from '@kpx/model';
import type { Delta, NodeRuleSet } from '@kpx/proto';

export interface DeltaSink {
  /** Publishes one node's delta durably; `headers` carry the trace context. */
  publish(delta: Delta, headers: Record<string, string>): Promise<void>;
}

export interface SnapshotSink {
  /** Stores a node's full rule set at a generation where it survives a controller restart. */
  put(snapshot: NodeRuleSet): Promise<void>;
}

export interface GenerationStore {
  /** Reserves the next cluster-wide generation and persists it before returning: never reused. */
  next(): Promise<number>;
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
}
