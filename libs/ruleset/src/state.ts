// A node's rule set as a keyed map with a running digest: what an executor has applied, what replay rebuilds,
// what the controller last published. Deltas are computed and applied against it.
import type { RuleObject as WireObject} from '@kpx/proto';
import { type ObjectRef } from '@kpx/proto';
import { Digest, objectHash } from './digest.js';
import { RuleSetError } from './errors.js';

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
export function diffStates(prev: ReadonlyMap<string, HashedObject>, next: ReadonlyMap<string, HashedObject>): ObjectChanges {
  const upserts: HashedObject[] = [];
  const deletes: ObjectRef[] = [];
  for (const [id, o] of next) if (prev.get(id)?.hash !== o.hash) upserts.push(o);
  for (const [id, o] of prev) if (!next.has(id)) deletes.push({ kind: o.wire.kind, key: o.wire.key });
  upserts.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  deletes.sort((a, b) => (objectIdOf(a) < objectIdOf(b) ? -1 : 1));
  return { upserts, deletes };
}

export class RuleState {
  readonly objects = new Map<string, HashedObject>();
  private readonly digestSum = new Digest();
  generation = 0;

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
   * Applies a delta: it must continue this state's generation chain, and the digest it reaches must be the one
   * the delta announces. On any error the state is left as it was.
   */
  applyDelta(d: { generation: number; prevGeneration: number; upserts: readonly WireObject[]; deletes: readonly ObjectRef[]; digest: string }): void {
    if (d.prevGeneration !== this.generation) {
      throw new RuleSetError(`delta ${d.generation} continues generation ${d.prevGeneration}, but the state is at ${this.generation}`);
    }
    const undo = new Map<string, HashedObject | undefined>();
    const remember = (id: string): void => {
      if (!undo.has(id)) undo.set(id, this.objects.get(id));
    };
    for (const ref of d.deletes) {
      remember(objectIdOf(ref));
      this.delete(ref);
    }
    for (const w of d.upserts) {
      const h = hashed(w);
      remember(h.id);
      this.upsert(h);
    }
    const reached = this.digest;
    if (d.digest && reached !== d.digest) {
      for (const [id, old] of undo) {
        const cur = this.objects.get(id);
        if (cur) this.delete(cur.wire);
        if (old) this.upsert(old);
      }
      throw new RuleSetError(`delta ${d.generation} reaches digest ${reached}, not the announced ${d.digest}; state stays at generation ${this.generation}`);
    }
    this.generation = d.generation;
  }

  sortedObjects(): WireObject[] {
    return [...this.objects.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((o) => o.wire);
  }
}
