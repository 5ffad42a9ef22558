// Rebuilding a node's rule set at any retained generation from JetStream alone (no controller): the newest
// snapshot at or before the generation (KPX_SNAPSHOTS), then the node's deltas after it (KPX_DELTAS).
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Cause, Delta, RuleObject, Timestamp } from '@kpx/proto';
import { diffStates, objectIdOf, type RuleState } from '@kpx/ruleset';
import { getSnapshot, lastDelta, listSnapshots, readDeltas, type DeltaRecord } from '@kpx/transport';
import { OutsideRetentionError, ReplayError } from './errors.js';
import { ObjectHasher } from './hasher.js';

export interface ReplayOptions {
  readonly node: string;
  /** "IPv4" or "IPv6". */
  readonly family: string;
  /** The generation to reach (default: the newest). The node's state at G is the one of its newest delta at or before G. */
  readonly to?: number;
  /** Called every few hundred deltas: deltas applied so far. */
  readonly onProgress?: (applied: number, generation: number) => void;
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

async function startingPoint(js: JetStreamClient, hasher: ObjectHasher, node: string, family: string, to: number | undefined): Promise<RuleState> {
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
  const snap = await getSnapshot(js, node, family, { generation: best.generation });
  if (!snap) throw new OutsideRetentionError(`snapshot ${best.generation} of node ${node} ${family} disappeared while reading it`);
  const state = hasher.stateOf(snap.objects, snap.generation);
  if (snap.digest && state.digest !== snap.digest) throw new ReplayError(`snapshot ${snap.generation} of node ${node} ${family} does not reach its own digest`);
  return state;
}

async function snapshotAt(js: JetStreamClient, hasher: ObjectHasher, node: string, family: string, generation: number): Promise<RuleState> {
  const snap = await getSnapshot(js, node, family, { generation });
  if (!snap) throw new OutsideRetentionError(`delta ${generation} of node ${node} ${family} is a snapshot marker, and that snapshot is no longer retained`);
  return hasher.stateOf(snap.objects, snap.generation);
}

/** Applies one retained delta to `state` (replacing it for a snapshot marker); returns the new state. */
async function step(js: JetStreamClient, hasher: ObjectHasher, node: string, family: string, state: RuleState, d: Delta): Promise<RuleState> {
  if (d.snapshot) return snapshotAt(js, hasher, node, family, d.generation);
  if (d.prevGeneration !== state.generation) {
    throw new OutsideRetentionError(`the deltas of node ${node} ${family} between generations ${state.generation} and ${d.prevGeneration} are no longer retained (next retained delta: ${d.generation})`);
  }
  // RuleState.applyDelta, hashing with `hasher`. No undo on a digest mismatch: a replay that fails is discarded.
  for (const ref of d.deletes) state.delete(ref);
  for (const w of d.upserts) state.upsert(hasher.hashed(w));
  const reached = state.digest;
  if (d.digest !== '' && reached !== d.digest) {
    throw new ReplayError(`delta ${d.generation} of node ${node} ${family} reaches digest ${reached}, not the announced ${d.digest}`);
  }
  state.generation = d.generation;
  return state;
}

async function* deltasAfter(js: JetStreamClient, node: string, family: string, from: number, to: number | undefined): AsyncGenerator<DeltaRecord> {
  for await (const rec of readDeltas(js, node, { fromGeneration: from, ipFamily: family })) {
    if (to !== undefined && rec.delta.generation > to) return;
    yield rec;
  }
}

/** The node's rule set at generation `to` (default: the newest), rebuilt from JetStream. */
export async function replayTo(js: JetStreamClient, opts: ReplayOptions): Promise<ReplayedState> {
  const hasher = new ObjectHasher();
  let state = await startingPoint(js, hasher, opts.node, opts.family, opts.to);
  const snapshotGeneration = state.generation;
  let applied = 0;
  for await (const rec of deltasAfter(js, opts.node, opts.family, state.generation, opts.to)) {
    state = await step(js, hasher, opts.node, opts.family, state, rec.delta);
    applied++;
    if (applied % 500 === 0) opts.onProgress?.(applied, state.generation);
  }
  return { node: opts.node, family: opts.family, generation: state.generation, digest: state.digest, state, snapshotGeneration, deltasApplied: applied };
}

/** Every delta of the node after generation `from` up to `to`, with what each changed. */
export async function* replaySteps(js: JetStreamClient, opts: ReplayOptions & { readonly from: number }): AsyncGenerator<ReplayStep, ReplayedState> {
  const start = await replayTo(js, { ...opts, to: opts.from });
  const hasher = new ObjectHasher();
  let state = start.state;
  let applied = 0;
  for await (const rec of deltasAfter(js, opts.node, opts.family, state.generation, opts.to)) {
    const d = rec.delta;
    let changes: ObjectChange[];
    if (d.snapshot) {
      const next = await snapshotAt(js, hasher, opts.node, opts.family, d.generation);
      const diff = diffStates(state.objects, next.objects);
      changes = [
        ...diff.upserts.map((u) => ({ kind: u.wire.kind, key: u.wire.key, before: state.objects.get(u.id)?.wire, after: u.wire })),
        ...diff.deletes.map((r) => ({ kind: r.kind, key: r.key, before: state.objects.get(objectIdOf(r))?.wire })),
      ];
      state = next;
    } else {
      changes = [
        ...d.upserts.map((u) => ({ kind: u.kind, key: u.key, before: state.objects.get(objectIdOf(u))?.wire, after: u })),
        ...d.deletes.map((r) => ({ kind: r.kind, key: r.key, before: state.objects.get(objectIdOf(r))?.wire })),
      ];
      state = await step(js, hasher, opts.node, opts.family, state, d);
    }
    applied++;
    if (applied % 500 === 0) opts.onProgress?.(applied, state.generation);
    yield { generation: d.generation, prevGeneration: d.prevGeneration, digest: state.digest, cause: d.cause, triggerTime: d.triggerTime, snapshot: d.snapshot, changes };
  }
  return { node: opts.node, family: opts.family, generation: state.generation, digest: state.digest, state, snapshotGeneration: start.snapshotGeneration, deltasApplied: start.deltasApplied + applied };
}

/** Live deltas of a node from now on (all families), until `signal` aborts. */
export async function* followDeltas(js: JetStreamClient, node: string, signal?: AbortSignal): AsyncGenerator<DeltaRecord> {
  const last = await lastDelta(js, node);
  yield* readDeltas(js, node, { follow: true, ...(last ? { startSeq: last.seq + 1 } : {}), ...(signal ? { signal } : {}) });
}
