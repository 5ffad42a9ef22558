// Rebuilding a node's rule set at any retained generation from JetStream alone (no controller): the newest
// snapshot at or before the generation (KPX_SNAPSHOTS), then the node's deltas after it (KPX_DELTAS).
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Cause, Delta, RuleObject, Timestamp } from '@kpx/proto';
import { DigestMismatchError, RuleState, diffStates, objectIdOf, type HashedObject } from '@kpx/ruleset';
import {
  getSnapshot,
  lastDelta,
  listSnapshots,
  readDeltaMessages,
  readDeltas,
  RejectReason,
  type DeltaMessage,
  type DeltaRecord,
  type Verifier,
} from '@kpx/transport';
import { OutsideRetentionError, ReplayError } from './errors.js';

export interface ReplayOptions {
  readonly node: string;
  /** "IPv4" or "IPv6". */
  readonly family: string;
  /** The generation to reach (default: the newest). The node's state at G is the one of its newest delta at or before G. */
  readonly to?: number;
  /** Called every few hundred deltas: deltas applied so far. */
  readonly onProgress?: (applied: number, generation: number) => void;
  /**
   * A delta that chains but does not reach the digest it announces: `fail` (default: ReplayError, the history is
   * inconsistent) or `skip` it like any other message that is not part of the node's chain (the executor, which
   * needs the newest state it can trust).
   */
  readonly badDigest?: 'fail' | 'skip';
  /** Called for each message skipped (see ReplayedState.skipped). */
  readonly onSkipped?: (skipped: SkippedMessage) => void;
  /**
   * Verify signatures with these keys: a delta that does not verify is skipped (reason `signature`), a snapshot
   * that does not verify fails the replay (SignatureError).
   */
  readonly verifier?: Verifier | undefined;
}

/** A message of the node's subject that replay did not apply. */
export interface SkippedMessage {
  readonly seq: number;
  readonly reason: RejectReason;
  readonly detail: string;
}

export interface ReplayedState {
  readonly node: string;
  readonly family: string;
  /** The node's generation reached: the newest generation at or before `to` that changed this node. */
  readonly generation: number;
  readonly digest: string;
  readonly state: RuleState;
  /** The snapshot replay started from, and how many deltas were applied on it. */
  readonly snapshotGeneration: number;
  readonly deltasApplied: number;
  /**
   * Messages of the node's subject skipped as not part of its chain: undecodable, another node's, at or below
   * the generation reached (a re-published old delta), or not continuing it while later deltas do.
   */
  readonly skipped: number;
}

/** One delta of a node as replay saw it, with the objects it changed before and after. */
export interface ReplayStep {
  readonly generation: number;
  readonly prevGeneration: number;
  readonly digest: string;
  readonly cause: readonly Cause[];
  readonly triggerTime?: Timestamp | undefined;
  /** The delta was a snapshot marker: the changes are the difference between the two whole states. */
  readonly snapshot: boolean;
  readonly changes: readonly ObjectChange[];
}

export interface ObjectChange {
  readonly kind: string;
  readonly key: string;
  /** Undefined: the object was created. */
  readonly before?: RuleObject | undefined;
  /** Undefined: the object was deleted. */
  readonly after?: RuleObject | undefined;
}

async function startingPoint(
  js: JetStreamClient,
  node: string,
  family: string,
  to: number | undefined,
  verifier: Verifier | undefined,
): Promise<RuleState> {
  const refs = (await listSnapshots(js, node)).filter((r) => r.ipFamily === family);
  const usable = refs.filter((r) => to === undefined || r.generation <= to).sort((a, b) => b.generation - a.generation);
  const best = usable[0];
  if (!best) {
    const held = refs.map((r) => r.generation).sort((a, b) => a - b);
    throw new OutsideRetentionError(
      held.length === 0
        ? `node ${node} has no ${family} snapshot in JetStream: nothing to replay from`
        : `generation ${to ?? 'latest'} of node ${node} ${family} is outside retention: the oldest retained snapshot is generation ${held[0]} (retained: ${held.join(', ')})`,
    );
  }
  const snap = await getSnapshot(js, node, family, { generation: best.generation, ...(verifier ? { verifier } : {}) });
  if (!snap)
    throw new OutsideRetentionError(
      `snapshot ${best.generation} of node ${node} ${family} disappeared while reading it`,
    );
  const state = RuleState.from(snap.objects, snap.generation);
  if (snap.digest && state.digest !== snap.digest)
    throw new ReplayError(`snapshot ${snap.generation} of node ${node} ${family} does not reach its own digest`);
  return state;
}

/** Applies a delta that chains onto `state`; on a digest mismatch the state stays as it was and ReplayError is thrown. */
function applyChained(node: string, family: string, state: RuleState, d: Delta): void {
  try {
    state.apply(d);
  } catch (err) {
    if (err instanceof DigestMismatchError)
      throw new ReplayError(
        `delta ${d.generation} of node ${node} ${family} reaches digest ${err.reached}, not the announced ${d.digest}`,
      );
    throw err;
  }
}

/** The first delta that did not continue the chain, kept until a later one does (it was a stray) or replay ends. */
interface Break {
  readonly seq: number;
  readonly held: number;
  readonly delta: Delta;
}

/**
 * Walks a node's retained messages from a starting state: applies each delta that continues the chain and skips
 * what does not (counted). A delta that does not continue it is a stray when a later one does, or when the chain
 * had already moved past the snapshot before it (JetStream discards a subject's oldest messages first, so a
 * delta lost to retention can only be missing before every retained one). A break that nothing explains is
 * deltas no longer retained: finish() throws OutsideRetentionError.
 */
class ChainWalk {
  applied = 0;
  skipped = 0;
  private brk: Break | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly opts: ReplayOptions,
    public state: RuleState,
  ) {}

  /** Offers the next message; returns the delta when it was applied (the state moved). */
  async offer(m: DeltaMessage): Promise<Delta | undefined> {
    if (!m.ok) return this.skip(m.rejected.seq, m.rejected.reason, m.rejected.detail);
    const { delta: d, seq } = m.record;
    if (this.opts.to !== undefined && d.generation > this.opts.to) return undefined;
    if (d.generation <= this.state.generation)
      return this.skip(
        seq,
        RejectReason.Old,
        `delta ${d.generation} is at or below generation ${this.state.generation}`,
      );
    if (d.snapshot) return this.snapshotMarker(seq, d);
    if (d.prevGeneration !== this.state.generation) return this.breakAt(seq, d);
    try {
      applyChained(this.opts.node, this.opts.family, this.state, d);
    } catch (err) {
      if (!(err instanceof ReplayError) || this.opts.badDigest !== 'skip') throw err;
      return this.skip(seq, RejectReason.Digest, err.message);
    }
    return this.moved(d);
  }

  /** Throws OutsideRetentionError when a break stayed unexplained (see the class). */
  async finish(): Promise<void> {
    const brk = this.brk;
    if (!brk || this.applied > 0 || (await this.olderRetained(brk))) return;
    const { node, family } = this.opts;
    if (brk.delta.snapshot)
      throw new OutsideRetentionError(
        `delta ${brk.delta.generation} of node ${node} ${family} is a snapshot marker, and that snapshot is no longer retained`,
      );
    throw new OutsideRetentionError(
      `the deltas of node ${node} ${family} between generations ${brk.held} and ${brk.delta.prevGeneration} are no longer retained (next retained delta: ${brk.delta.generation})`,
    );
  }

  private async snapshotMarker(seq: number, d: Delta): Promise<Delta | undefined> {
    const snap = await getSnapshot(this.js, this.opts.node, this.opts.family, {
      generation: d.generation,
      ...this.verifying(),
    });
    if (!snap) return this.breakAt(seq, d);
    this.state = RuleState.from(snap.objects, snap.generation);
    return this.moved(d);
  }

  private verifying(): { verifier?: Verifier } {
    return this.opts.verifier ? { verifier: this.opts.verifier } : {};
  }

  private moved(d: Delta): Delta {
    if (this.brk) this.skipped++; // the break was a stray: the chain continued past it
    this.brk = undefined;
    this.applied++;
    if (this.applied % 500 === 0) this.opts.onProgress?.(this.applied, this.state.generation);
    return d;
  }

  private breakAt(seq: number, d: Delta): undefined {
    if (this.brk)
      return this.skip(
        seq,
        RejectReason.Gap,
        `delta ${d.generation} continues generation ${d.prevGeneration}, not ${this.state.generation}`,
      );
    this.brk = { seq, held: this.state.generation, delta: d };
    this.opts.onSkipped?.({
      seq,
      reason: RejectReason.Gap,
      detail: `delta ${d.generation} continues generation ${d.prevGeneration}, not ${this.state.generation}`,
    });
    return undefined;
  }

  private skip(seq: number, reason: RejectReason, detail: string): undefined {
    this.skipped++;
    this.opts.onSkipped?.({ seq, reason, detail });
    return undefined;
  }

  /** A message of the family at or before the starting generation precedes the break: retention reaches back past it. */
  private async olderRetained(brk: Break): Promise<boolean> {
    for await (const r of readDeltas(this.js, this.opts.node, { ipFamily: this.opts.family, ...this.verifying() })) {
      if (r.seq >= brk.seq) return false;
      if (r.delta.generation <= brk.held) return true;
    }
    return false;
  }

  /** The result, counting an unexplained break the walk accepted as a stray. */
  result(snapshotGeneration: number): ReplayedState {
    const { node, family } = this.opts;
    const skipped = this.skipped + (this.brk ? 1 : 0);
    return {
      node,
      family,
      generation: this.state.generation,
      digest: this.state.digest,
      state: this.state,
      snapshotGeneration,
      deltasApplied: this.applied,
      skipped,
    };
  }
}

/** The node's rule set at generation `to` (default: the newest), rebuilt from JetStream. */
export async function replayTo(js: JetStreamClient, opts: ReplayOptions): Promise<ReplayedState> {
  const walk = new ChainWalk(js, opts, await startingPoint(js, opts.node, opts.family, opts.to, opts.verifier));
  const snapshotGeneration = walk.state.generation;
  const verifying = opts.verifier ? { verifier: opts.verifier } : {};
  for await (const m of readDeltaMessages(js, opts.node, {
    fromGeneration: snapshotGeneration,
    ipFamily: opts.family,
    ...verifying,
  }))
    await walk.offer(m);
  await walk.finish();
  return walk.result(snapshotGeneration);
}

/** Every delta of the node after generation `from` up to `to`, with what each changed (skipping what replayTo skips). */
export async function* replaySteps(
  js: JetStreamClient,
  opts: ReplayOptions & { readonly from: number },
): AsyncGenerator<ReplayStep, ReplayedState> {
  const start = await replayTo(js, { ...opts, to: opts.from });
  const walk = new ChainWalk(js, opts, start.state);
  for await (const m of readDeltaMessages(js, opts.node, {
    fromGeneration: start.generation,
    ipFamily: opts.family,
    ...(opts.verifier ? { verifier: opts.verifier } : {}),
  })) {
    // A delta changes the state in place: its changes are read before; a snapshot marker replaces the state.
    const before = walk.state;
    const deltaChanges = m.ok && !m.record.delta.snapshot ? changesOf(m.record.delta, before.objects) : [];
    const d = await walk.offer(m);
    if (!d) continue;
    const changes = d.snapshot ? snapshotChanges(before.objects, walk.state.objects) : deltaChanges;
    yield {
      generation: d.generation,
      prevGeneration: d.prevGeneration,
      digest: walk.state.digest,
      cause: d.cause,
      triggerTime: d.triggerTime,
      snapshot: d.snapshot,
      changes,
    };
  }
  await walk.finish();
  const r = walk.result(start.snapshotGeneration);
  return { ...r, deltasApplied: start.deltasApplied + r.deltasApplied, skipped: start.skipped + r.skipped };
}

/** What a delta changes in `before`: its upserts and deletes with the objects they replace. */
function changesOf(d: Delta, before: ReadonlyMap<string, HashedObject>): ObjectChange[] {
  return [
    ...d.upserts.map((u) => ({ kind: u.kind, key: u.key, before: before.get(objectIdOf(u))?.wire, after: u })),
    ...d.deletes.map((r) => ({ kind: r.kind, key: r.key, before: before.get(objectIdOf(r))?.wire })),
  ];
}

/** What a snapshot marker changed: the difference of the two whole states. */
function snapshotChanges(
  before: ReadonlyMap<string, HashedObject>,
  after: ReadonlyMap<string, HashedObject>,
): ObjectChange[] {
  const diff = diffStates(before, after);
  return [
    ...diff.upserts.map((u) => ({ kind: u.wire.kind, key: u.wire.key, before: before.get(u.id)?.wire, after: u.wire })),
    ...diff.deletes.map((r) => ({ kind: r.kind, key: r.key, before: before.get(objectIdOf(r))?.wire })),
  ];
}

/** Live deltas of a node from now on (all families), until `signal` aborts. */
export async function* followDeltas(
  js: JetStreamClient,
  node: string,
  signal?: AbortSignal,
  verifier?: Verifier,
  onRejected?: (rejected: { seq: number; reason: string; detail: string }) => void,
): AsyncGenerator<DeltaRecord> {
  const last = await lastDelta(js, node, verifier ? { verifier } : {});
  yield* readDeltas(js, node, {
    follow: true,
    ...(last ? { startSeq: last.seq + 1 } : {}),
    ...(signal ? { signal } : {}),
    ...(verifier ? { verifier } : {}),
    ...(onRejected ? { onRejected } : {}),
  });
}
