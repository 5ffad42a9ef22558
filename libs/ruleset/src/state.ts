// A node's rule set as a keyed map with a running digest: what an executor has applied, what replay rebuilds,
// what the controller last published. Deltas are computed and applied against it.
import type { RuleObject as WireObject } from '@kpx/proto';
import { type ObjectRef } from '@kpx/proto';
import { Digest, formatDigest, objectHash } from './digest.js';
import { DigestMismatchError, RuleSetError } from './errors.js';

/** A wire object with its identity and hash computed once. */
export interface HashedObject {
  /** `kind:key`. */
  readonly id: string;
  readonly wire: WireObject;
  readonly hash: bigint;
}

export function objectIdOf(o: { kind: string; key: string }): string {
  return `${o.kind}:${o.key}`;
}

export function hashed(wire: WireObject): HashedObject {
  return { id: objectIdOf(wire), wire, hash: objectHash(wire) };
}

export interface ObjectChanges {
  readonly upserts: readonly HashedObject[];
  readonly deletes: readonly ObjectRef[];
}

/** What turns `prev` into `next`: objects new or changed (by hash), and keys gone. */
export function diffStates(
  prev: ReadonlyMap<string, HashedObject>,
  next: ReadonlyMap<string, HashedObject>,
): ObjectChanges {
  const upserts: HashedObject[] = [];
  const deletes: ObjectRef[] = [];
  for (const [id, o] of next) if (prev.get(id)?.hash !== o.hash) upserts.push(o);
  for (const [id, o] of prev) if (!next.has(id)) deletes.push({ kind: o.wire.kind, key: o.wire.key });
  upserts.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  deletes.sort((a, b) => (objectIdOf(a) < objectIdOf(b) ? -1 : 1));
  return { upserts, deletes };
}

/**
 * A store of objects keyed by `kind:key` that changes are applied to and undone on: RuleState, and the indexed
 * state of the IPVS applier.
 */
export interface KeyedObjects<T> {
  get(id: string): T | undefined;
  /** Adds or replaces the object of its id. */
  upsert(o: T): void;
  remove(ref: ObjectRef): void;
}

/** The ref of an object id `kind:key` (kinds hold no colon; keys may, e.g. IPv6 addresses). */
export function refOfId(id: string): ObjectRef {
  const i = id.indexOf(':');
  return { kind: id.slice(0, i), key: id.slice(i + 1) };
}

/**
 * Applies deletes, then upserts, to `store`; returns the object each touched id held before the first change to it
 * (undefined: none), in the order first touched. `undoChange(store, previous)` puts them back. `previous` is filled
 * as the change goes, so a caller whose store may throw half way (a validating store) can undo what came before.
 */
export function applyChange<T>(
  store: KeyedObjects<T>,
  deletes: readonly ObjectRef[],
  upserts: readonly T[],
  idOf: (o: T) => string,
  previous = new Map<string, T | undefined>(),
): Map<string, T | undefined> {
  for (const ref of deletes) {
    const id = objectIdOf(ref);
    if (!previous.has(id)) previous.set(id, store.get(id));
    store.remove(ref);
  }
  for (const o of upserts) {
    const id = idOf(o);
    if (!previous.has(id)) previous.set(id, store.get(id));
    store.upsert(o);
  }
  return previous;
}

/** Puts back what `applyChange` changed: every touched id holds again what it held before. */
export function undoChange<T>(store: KeyedObjects<T>, previous: ReadonlyMap<string, T | undefined>): void {
  for (const [id, old] of previous) {
    if (old === undefined) store.remove(refOfId(id));
    else store.upsert(old);
  }
}

/**
 * What `RuleState.apply` did, and what `RuleState.undo` restores: the generation and digest the state had, and the
 * objects of every id the delta touched as they were (undefined: absent). With the delta's upserts, hashed once, and
 * deletes: what a caller programs into the kernel.
 */
export interface UndoToken {
  readonly generation: number;
  readonly digest: string;
  /** The generation the delta reached: undo is only of the last delta applied. */
  readonly reached: number;
  readonly previous: ReadonlyMap<string, HashedObject | undefined>;
  readonly upserts: readonly HashedObject[];
  readonly deletes: readonly ObjectRef[];
}

/** A delta as RuleState applies it (a proto Delta is one). */
export interface StateDelta {
  readonly generation: number;
  readonly prevGeneration: number;
  readonly upserts: readonly WireObject[];
  readonly deletes: readonly ObjectRef[];
  /** The digest the delta reaches; '' announces none (not checked). */
  readonly digest: string;
}

export class RuleState {
  readonly objects = new Map<string, HashedObject>();
  private readonly digestSum = new Digest();
  generation = 0;
  private readonly store: KeyedObjects<HashedObject> = {
    get: (id) => this.objects.get(id),
    upsert: (o) => this.upsert(o),
    remove: (ref) => void this.delete(ref),
  };

  static from(objects: Iterable<WireObject>, generation = 0): RuleState {
    const s = new RuleState();
    for (const o of objects) s.upsert(hashed(o));
    s.generation = generation;
    return s;
  }

  upsert(o: HashedObject): void {
    const old = this.objects.get(o.id);
    if (old) this.digestSum.remove(old.hash);
    this.objects.set(o.id, o);
    this.digestSum.add(o.hash);
  }

  delete(ref: ObjectRef): boolean {
    const id = objectIdOf(ref);
    const old = this.objects.get(id);
    if (!old) return false;
    this.digestSum.remove(old.hash);
    this.objects.delete(id);
    return true;
  }

  get digest(): string {
    return this.digestSum.hex();
  }

  /**
   * Applies a delta: it must continue this state's generation chain (RuleSetError), and the digest it reaches must
   * be the one the delta announces (DigestMismatchError). On any error the state is left as it was. Returns the
   * token with which `undo` puts the state back (e.g. when the kernel refused the delta).
   */
  apply(d: StateDelta): UndoToken {
    if (d.prevGeneration !== this.generation) {
      throw new RuleSetError(
        `delta ${d.generation} continues generation ${d.prevGeneration}, but the state is at ${this.generation}`,
      );
    }
    const sum = this.digestSum.value;
    const upserts = d.upserts.map(hashed);
    const previous = applyChange(this.store, d.deletes, upserts, (o) => o.id);
    const reached = this.digest;
    if (d.digest && reached !== d.digest) {
      undoChange(this.store, previous);
      throw new DigestMismatchError(d.generation, reached, d.digest, this.generation);
    }
    const token: UndoToken = {
      generation: this.generation,
      get digest() {
        return formatDigest(sum);
      },
      reached: d.generation,
      previous,
      upserts,
      deletes: d.deletes,
    };
    this.generation = d.generation;
    return token;
  }

  /** Puts the state back where it was before the `apply` that returned `token`: objects, digest and generation. */
  undo(token: UndoToken): void {
    if (this.generation !== token.reached)
      throw new RuleSetError(`cannot undo delta ${token.reached}: the state is at generation ${this.generation}`);
    undoChange(this.store, token.previous);
    this.generation = token.generation;
    if (this.digest !== token.digest)
      throw new RuleSetError(
        `undoing delta ${token.reached} reached digest ${this.digest}, not ${token.digest}: the state changed after it was applied`,
      );
  }

  sortedObjects(): WireObject[] {
    return [...this.objects.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((o) => o.wire);
  }
}
