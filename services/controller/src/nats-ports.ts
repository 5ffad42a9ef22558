// The controller's ports on NATS JetStream: deltas to KPX_DELTAS, snapshots to the KPX_SNAPSHOTS object store,
// the generation counter in KPX_STATE, and the heads of what an earlier controller published.
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { IPFamily } from '@kpx/model';
import { Delta, type NodeRuleSet } from '@kpx/proto';
import {
  DeltaStream,
  ensureDeltaStream,
  ensureSnapshotStore,
  lastDelta,
  openGenerationCounter,
  publishDelta,
  putSnapshot,
  readDeltas,
  type Signer,
} from '@kpx/transport';
import type {
  DeltaSink,
  GenerationStore,
  PublishedHead,
  PublishedHeads,
  PublishOutcome,
  SnapshotSink,
} from './ports.js';

export interface NatsPortsOptions {
  /** How long a publish waits for JetStream's acknowledgement, ms (default 5 s). */
  readonly publishTimeoutMs?: number;
  /** Deltas kept per node subject (both families together). */
  readonly historyPerSubject: number;
  /** Maximum age of deltas, ms (0: unlimited). */
  readonly maxAgeMs: number;
  /** Older snapshots kept per node and family besides the latest. */
  readonly snapshotsKept: number;
  /** Replicas of the stream, the object store and the KV bucket when they are created (default 1). */
  readonly replicas?: number;
  /** Signs every delta and snapshot (issue #15); unsigned without. */
  readonly signer?: Signer;
}

export interface NatsPorts {
  readonly sink: DeltaSink;
  readonly snapshots: SnapshotSink;
  readonly generations: GenerationStore;
  readonly heads: PublishedHeads;
  /** Claims the generation counter for a leader's epoch (leader election); rejects with FencedError if deposed. */
  claimGenerations(epoch: number): Promise<void>;
}

export async function natsPorts(
  js: JetStreamClient,
  jsm: JetStreamManager,
  opts: NatsPortsOptions,
): Promise<NatsPorts> {
  const replicas = opts.replicas !== undefined ? { replicas: opts.replicas } : {};
  await ensureDeltaStream(jsm, { historyPerSubject: opts.historyPerSubject, maxAgeMs: opts.maxAgeMs, ...replicas });
  await ensureSnapshotStore(js, replicas);
  const counter = await openGenerationCounter(js, replicas);
  return {
    sink: {
      async publish(delta: Delta, headers: Record<string, string>): Promise<PublishOutcome> {
        const ack = await publishDelta(js, delta, {
          traceHeaders: headers,
          timeoutMs: opts.publishTimeoutMs ?? 5000,
          ...(opts.signer ? { signer: opts.signer } : {}),
        });
        if (!ack.duplicate) return {};
        // The msg id was seen: is the stored message this very delta (a retry after a lost acknowledgement)?
        const stored = await jsm.streams.getMessage(DeltaStream, { seq: ack.seq });
        return {
          duplicate: { sameDelta: stored !== null && Buffer.from(stored.data).equals(Delta.encode(delta).finish()) },
        };
      },
    },
    snapshots: {
      async put(snapshot: NodeRuleSet): Promise<void> {
        await putSnapshot(js, snapshot, {
          keepOlder: opts.snapshotsKept,
          ...(opts.signer ? { signer: opts.signer } : {}),
        });
      },
    },
    generations: { next: () => counter.next(), fence: (floor) => counter.fence(floor) },
    claimGenerations: (epoch) => counter.claim(epoch),
    heads: {
      async head(node: string, family: IPFamily): Promise<PublishedHead | undefined> {
        const last = await lastDelta(js, node);
        if (!last) return undefined;
        if (last.delta.ipFamily === family) return { generation: last.delta.generation, digest: last.delta.digest };
        // Both families share the subject: find the newest delta of this family.
        let found: PublishedHead | undefined;
        for await (const r of readDeltas(js, node, { ipFamily: family }))
          found = { generation: r.delta.generation, digest: r.delta.digest };
        return found;
      },
    },
  };
}
