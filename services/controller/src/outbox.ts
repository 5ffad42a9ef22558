// What the controller owes every node: changes compiled but not yet acknowledged by JetStream.
//
// The compiler's node states (FamilyStates) always hold the newest desired state. What a node can have received is
// its head: the last delta JetStream acknowledged for it. Between the two sit, per node and family,
//  - `unsent`: changes compiled since, composed into one (the newest value of every object touched), waiting for a
//    generation; and
//  - `inFlight`: a delta built with a generation whose publish failed or timed out. JetStream may have stored it
//    anyway, so it is retried verbatim (same msg id: the server drops a stored copy as a duplicate) until it is
//    acknowledged; later changes wait in `unsent` and chain from it.
// A head advances only on JetStream's acknowledgement, so the next delta always continues what was really published.
import type { HashedObject } from '@kpx/ruleset';
import type { Cause, Delta, ObjectRef } from '@kpx/proto';
import type { Span } from '@opentelemetry/api';

export interface PendingCause {
  readonly cause: Cause;
  readonly observedAt: number;
  readonly span: Span;
}

/** The causes of one sync: per node and per service (`namespace/name`), shared by every node the sync changed. */
export interface SyncCauses {
  readonly nodes: ReadonlyMap<string, readonly PendingCause[]>;
  readonly services: ReadonlyMap<string, readonly PendingCause[]>;
}

/** The last delta JetStream acknowledged for a node and family. */
export interface NodeHead {
  readonly generation: number;
  readonly digest: string;
}

/** One compiled change of a node, as FamilyStates reports it. */
export interface CompiledChange {
  readonly upserts: readonly HashedObject[];
  readonly deletes: readonly ObjectRef[];
  readonly digest: string;
  readonly initial: boolean;
  readonly services: ReadonlySet<string>;
}

/**
 * Changes of one node and family since its head (or since its in-flight delta), composed: applying `upserts` and
 * `deletes` to the state they started from gives the state of `digest`. A delete may name an object that did not
 * exist there (added, then removed again): appliers ignore those.
 */
export class PendingChange {
  readonly upserts = new Map<string, HashedObject>();
  readonly deletes = new Map<string, ObjectRef>();
  readonly services = new Set<string>();
  /** The whole state is sent (a new node, or one whose head is unknown): as a snapshot delta. */
  initial = false;
  digest = '';
  /** The syncs that contributed, for their causes. */
  readonly syncs: { readonly causes: SyncCauses; readonly services: ReadonlySet<string> | 'all' }[] = [];
  /** When the first of these changes was compiled (ms). */
  readonly since: number;

  constructor(since: number) {
    this.since = since;
  }

  /** Composes a later change onto this one. */
  add(c: CompiledChange, causes: SyncCauses): void {
    // An initial change's upserts are the node's whole state, assembled on first read: never read here.
    if (c.initial) this.compose(true, c.digest, [], []);
    else
      this.compose(
        false,
        c.digest,
        c.upserts,
        c.deletes.map((r) => [`${r.kind}:${r.key}`, r] as const),
      );
    if (!c.initial) for (const s of c.services) this.services.add(s);
    this.syncs.push({ causes, services: c.initial ? 'all' : c.services });
  }

  /** Composes `later` (changes made after this one's) onto this one. */
  append(later: PendingChange): void {
    this.compose(later.initial, later.digest, later.upserts.values(), later.deletes);
    for (const s of later.services) this.services.add(s);
    this.syncs.push(...later.syncs);
  }

  /** Sends the node's whole state (as a snapshot delta) instead of the object changes. */
  sendWholeState(): void {
    this.initial = true;
    this.upserts.clear();
    this.deletes.clear();
  }

  /** The newest value of every object wins; a whole state replaces everything before it. */
  private compose(
    initial: boolean,
    digest: string,
    upserts: Iterable<HashedObject>,
    deletes: Iterable<readonly [string, ObjectRef]>,
  ): void {
    this.digest = digest;
    if (initial) return this.sendWholeState();
    if (this.initial) return;
    for (const [id, r] of deletes) {
      this.upserts.delete(id);
      this.deletes.set(id, r);
    }
    for (const o of upserts) {
      this.deletes.delete(o.id);
      this.upserts.set(o.id, o);
    }
  }

  /** Nothing to send: no object changes and not a whole state. */
  get empty(): boolean {
    return !this.initial && this.upserts.size === 0 && this.deletes.size === 0;
  }

  /** Every cause of the contributing syncs that concerns this node (its own and its services'). */
  causesOf(node: string): PendingCause[] {
    const out: PendingCause[] = [];
    for (const s of this.syncs) {
      for (const pc of s.causes.nodes.get(node) ?? []) out.push(pc);
      if (s.services === 'all') for (const l of s.causes.services.values()) out.push(...l);
      else for (const svc of s.services) for (const pc of s.causes.services.get(svc) ?? []) out.push(pc);
    }
    return out;
  }
}

/** A delta built with a generation and sent, not yet acknowledged by JetStream. */
export interface InFlight {
  readonly delta: Delta;
  /** The change it carries, kept to rebuild it should its generation turn out to be taken. */
  readonly change: PendingChange;
  /** Its encoded size. */
  readonly bytes: number;
  /** Trace context of its publish span. */
  readonly headers: Record<string, string>;
  attempts: number;
}

/** What the controller owes one node and family. */
export interface Owed {
  readonly node: string;
  readonly family: string;
  /** undefined: nothing published in this controller's life yet (an earlier one's head is looked up). */
  head: NodeHead | undefined;
  /** The head was looked up in JetStream (or found to be none). */
  headKnown: boolean;
  unsent: PendingChange | undefined;
  inFlight: InFlight | undefined;
}

const key = (node: string, family: string): string => `${node}\u0000${family}`;

/** Per node and family, what was published and what is still owed. */
export class Outbox {
  private readonly entries = new Map<string, Owed>();

  entry(node: string, family: string): Owed {
    const k = key(node, family);
    let e = this.entries.get(k);
    if (!e)
      this.entries.set(
        k,
        (e = { node, family, head: undefined, headKnown: false, unsent: undefined, inFlight: undefined }),
      );
    return e;
  }

  get(node: string, family: string): Owed | undefined {
    return this.entries.get(key(node, family));
  }

  /** A node left the cluster: nothing is owed to it any more. */
  forget(node: string, family: string): void {
    this.entries.delete(key(node, family));
  }

  /** Records a compiled change of a node. */
  compiled(node: string, family: string, c: CompiledChange, causes: SyncCauses, now: number): Owed {
    const e = this.entry(node, family);
    e.unsent ??= new PendingChange(now);
    e.unsent.add(c, causes);
    return e;
  }

  /** Entries with something owed: a delta in flight or changes unsent. */
  owed(): Owed[] {
    const out: Owed[] = [];
    for (const e of this.entries.values()) if (e.inFlight || e.unsent) out.push(e);
    return out;
  }

  /** When the oldest change still owed to any node was compiled (ms), undefined when nothing is owed. */
  oldestOwed(): number | undefined {
    let oldest: number | undefined;
    for (const e of this.entries.values()) {
      const t = e.inFlight ? e.inFlight.change.since : e.unsent?.since;
      if (t !== undefined && (oldest === undefined || t < oldest)) oldest = t;
    }
    return oldest;
  }

  /** Distinct generations in flight, plus one when changes wait for a generation. */
  pendingGenerations(): number {
    const gens = new Set<number>();
    let unsent = false;
    for (const e of this.entries.values()) {
      if (e.inFlight) gens.add(e.inFlight.delta.generation);
      else if (e.unsent) unsent = true;
    }
    return gens.size + (unsent ? 1 : 0);
  }

  /** The newest generation built for a node (in flight or published), 0 if none. */
  builtGeneration(node: string, family: string): number {
    const e = this.get(node, family);
    return e?.inFlight?.delta.generation ?? e?.head?.generation ?? 0;
  }
}
