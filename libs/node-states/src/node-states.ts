// Every node's desired rule set, kept with structural sharing: a service port is compiled once per distinct
// variant key (its part's keyFn) and the resulting objects are shared by every node with that key. Nothing is
// stored per node and per port: a node's state is implicit (its base objects plus, for every port, the variant
// its key selects); only its digest and last generation are kept. A sync turns changed ports and changed nodes
// into per-node object changes, computed once per distinct (old variant, new variant) pair.
//
// Most ports have one variant for every node ("shared" ports: no key function). Their changes are diffed and
// summed once per sync and applied to every node as one block, a new node's digest starts from the running sum
// of all shared ports, and a node whose facts change only looks at node-dependent ports: per-node work scales
// with the node-dependent ports, not with all ports. Objects equal across a port's variants (or across nodes'
// base layers) are one object in memory.
//
// The compile functions come from a mode's ModeCompiler (@kpx/compiler; iptables by default). A mode may split a
// service port into parts that depend on the node differently (IPVS: the VIP virtual servers, the per-node NodePort
// ones, the hairpin members), each kept as an owner of its own; and may have units several ports claim (IPVS: a VIP
// bound to kube-ipvs0, which every port of a service and services sharing an external IP need once), kept as owners
// too and compiled while any port claims them.
import {
  LargeClusterEndpointsThreshold,
  IptablesMode,
  modeCompiler,
  portOwner,
  toWire,
  type AnyModeCompiler,
  type IptablesOptions,
  type ModeCompiler,
  type NodeContext,
  type RuleObject,
  type UnitClaim,
} from '@kpx/compiler';
import type { ClusterState, Endpoint, IPFamily, NodeInfo, ServicePort } from '@kpx/model';
import type { ObjectRef, RuleObject as WireObject } from '@kpx/proto';
import { Digest, hashed, objectIdOf, type HashedObject } from '@kpx/ruleset';

/** A service port as read from the state, with its endpoints. */
interface PortRead {
  readonly svc: ServicePort;
  readonly endpoints: readonly Endpoint[];
}

function portRead(state: ClusterState, svc: ServicePort): PortRead {
  return { svc, endpoints: state.endpoints(svc) };
}

/** The objects of one port (or of a node's base) for one variant, with their digest sum. */
export interface Layer {
  readonly objects: ReadonlyMap<string, HashedObject>;
  readonly sum: bigint;
}

const EMPTY: Layer = { objects: new Map(), sum: 0n };

/**
 * Hashes compiled objects into a layer. `reuse` offers an existing object with the same id: when the mode's
 * equality says it is equal, it is taken instead of a new one (no hash computed, one copy in memory).
 */
function layerOf(
  objects: RuleObject[],
  same: (a: WireObject, b: WireObject) => boolean,
  reuse?: (id: string) => HashedObject | undefined,
): Layer {
  const map = new Map<string, HashedObject>();
  const d = new Digest();
  for (const o of objects) {
    const w = toWire(o);
    const id = objectIdOf(w);
    const prev = reuse?.(id);
    const h = prev && same(prev.wire, w) ? prev : hashed(w);
    map.set(id, h);
    d.add(h.hash);
  }
  return { objects: map, sum: d.value };
}

const byId = (a: HashedObject, b: HashedObject): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A service port, or a unit several ports claim (see {@link UnitClaim}): an owner of objects. */
interface PortEntry<C extends NodeContext, U extends UnitClaim> {
  readonly id: string;
  /** Undefined for a unit. */
  readonly svc: ServicePort | undefined;
  readonly endpoints: readonly Endpoint[];
  /** The service (`namespace/name`) whose change a change of these objects is; undefined for a unit but a health check. */
  readonly service: string | undefined;
  /** The units the port claims. */
  readonly claims: readonly U[];
  /** Canonical JSON of (svc, endpoints) or of the merged claim: equal means nothing rule-relevant changed. */
  readonly fingerprint: string;
  /** Undefined: the objects are the same on every node (a shared port). */
  readonly keyFn: ((ctx: C) => string) | undefined;
  readonly compile: (ctx: C) => RuleObject[];
  readonly variants: Map<string, Layer>;
}

/** An owner's entry before and after a sync (undefined: absent). */
interface PortChange<C extends NodeContext, U extends UnitClaim> {
  readonly old: PortEntry<C, U> | undefined;
  readonly next: PortEntry<C, U> | undefined;
}

/** Ids of unit entries, apart from service port owners (`ns/name:port/PROTOCOL` has no `:` before its first `/`). */
const unitId = (id: string): string => `unit:${id}`;

interface NodeEntry<C extends NodeContext> {
  ctx: C;
  base: Layer;
  readonly digest: Digest;
  /** Generation of the last delta published for this node and family (0: none yet). */
  generation: number;
}

/** What one node's state does in a sync. */
export interface NodeChange {
  readonly node: string;
  readonly family: IPFamily;
  /**
   * Objects new or changed. For an initial change, the node's whole state, assembled on first read (read it
   * before the next sync).
   */
  readonly upserts: HashedObject[];
  readonly deletes: ObjectRef[];
  /** Digest after the change. */
  readonly digest: string;
  /** The node's previous generation (0 for a node seen for the first time). */
  readonly prevGeneration: number;
  /** True for a node that just appeared: upserts are its whole state. */
  readonly initial: boolean;
  /**
   * Services (namespace/name) whose rules changed on this node; for an initial change every service with
   * ports, assembled on first read.
   */
  readonly services: Set<string>;
}

export interface SyncInput {
  readonly state: ClusterState;
  /**
   * Services (`namespace/name`) whose Service or EndpointSlices changed. Every service must be named once
   * after it appears: only named services are (re)read from the state.
   */
  readonly services: ReadonlySet<string>;
  /** Nodes added, changed or removed. */
  readonly nodes: ReadonlySet<string>;
  /**
   * Of `services`, those whose Service object did not change since the last sync (only their EndpointSlices
   * did): their ports are the ones held, only their endpoints are re-read. Saves listing every port of the
   * state when no Service changed.
   */
  readonly endpointsOnly?: ReadonlySet<string>;
}

export interface FamilyStatesOptions {
  readonly family: IPFamily;
  /** The iptables options, used when no compiler is given. */
  readonly options: IptablesOptions;
  /** The mode's compiler (default: iptables with `options`); see modeCompiler in @kpx/compiler. */
  readonly compiler?: AnyModeCompiler;
  /** Which nodes get a rule set of this family (default: nodes with an address of the family). */
  readonly nodeFilter?: (node: NodeInfo) => boolean;
}

const NONE: ReadonlySet<string> = new Set();

const serviceKey = (svc: ServicePort): string => `${svc.service.namespace}/${svc.service.name}`;

interface ObjectDiff {
  readonly upserts: HashedObject[];
  readonly deletes: ObjectRef[];
}

function diffLayers(a: Layer, b: Layer): ObjectDiff {
  const upserts: HashedObject[] = [];
  const deletes: ObjectRef[] = [];
  for (const [id, o] of b.objects) if (a.objects.get(id)?.hash !== o.hash) upserts.push(o);
  for (const [id, o] of a.objects) if (!b.objects.has(id)) deletes.push({ kind: o.wire.kind, key: o.wire.key });
  return { upserts, deletes };
}

/** Diffs between two layers, computed once per distinct pair (within one sync). */
class PairDiffs {
  private readonly byFrom = new Map<Layer, Map<Layer, ObjectDiff>>();

  get(a: Layer, b: Layer): ObjectDiff {
    let m = this.byFrom.get(a);
    if (!m) this.byFrom.set(a, (m = new Map<Layer, ObjectDiff>()));
    let d = m.get(b);
    if (!d) m.set(b, (d = diffLayers(a, b)));
    return d;
  }
}

/** Object changes being collected, for one node or for every node (the shared ports' change). */
class ChangeSet {
  readonly upserts: HashedObject[] = [];
  readonly deletes: ObjectRef[] = [];
  readonly services = new Set<string>();

  add(d: ObjectDiff, service: string | undefined): void {
    for (const o of d.upserts) this.upserts.push(o);
    for (const o of d.deletes) this.deletes.push(o);
    if (service) this.services.add(service);
  }

  get empty(): boolean {
    return this.upserts.length === 0 && this.deletes.length === 0;
  }
}

/** The shared ports' change: the same on every node that existed before the sync, with its digest sum. */
interface SharedChange {
  readonly objects: ChangeSet;
  readonly sum: bigint;
}

/** What one sync works from once ports and nodes are read. */
interface Round<C extends NodeContext, U extends UnitClaim> {
  /** Owners (ports, units) whose entries changed. */
  readonly changedPorts: ReadonlyMap<string, PortChange<C, U>>;
  /** Of those, the ones whose objects depend on the node (before or after). */
  readonly perNodePorts: PortChange<C, U>[];
  /** And the others: the same change on every node. */
  readonly sharedPorts: PortChange<C, U>[];
  /** Nodes named or re-read in this sync, with their context before it (undefined: new). */
  readonly oldCtx: ReadonlyMap<string, C | undefined>;
  readonly diffs: PairDiffs;
  /** Computed on the first node that existed before the sync. */
  shared: SharedChange | undefined;
}

/** The ports a sync re-reads, and whether the large-cluster mode holds. */
interface PortsRead {
  readonly byService: ReadonlyMap<string, PortRead[]>;
  /** Services whose ports are compared: the named ones, or every one when the large-cluster mode flips. */
  readonly services: ReadonlySet<string>;
  readonly large: boolean;
  /** The large-cluster mode flipped: every port and node is compiled again. */
  readonly everything: boolean;
}

/** What FamilyStates does, whatever the mode's context and claim types. */
interface States {
  nodeNames(): string[];
  digest(node: string): string | undefined;
  generation(node: string): number | undefined;
  setGeneration(node: string, generation: number): void;
  objects(node: string): HashedObject[];
  variantCount(): number;
  sync(input: SyncInput): NodeChange[];
}

/** Node states of one IP family. */
export class FamilyStates implements States {
  readonly family: IPFamily;
  /** The proxy mode of the rule sets. */
  readonly mode: string;
  private readonly states: States;

  constructor(opts: FamilyStatesOptions) {
    const compiler = opts.compiler ?? modeCompiler(IptablesMode, opts.options);
    const nodeFilter = opts.nodeFilter ?? ((n: NodeInfo): boolean => n.addresses.some((a) => a.family === opts.family));
    this.family = opts.family;
    this.mode = compiler.mode;
    this.states = compiler.open<States>((c) => new ModeStates(c, opts.family, nodeFilter));
  }

  nodeNames(): string[] {
    return this.states.nodeNames();
  }

  digest(node: string): string | undefined {
    return this.states.digest(node);
  }

  generation(node: string): number | undefined {
    return this.states.generation(node);
  }

  /** Records the generation of the delta just published for a node. */
  setGeneration(node: string, generation: number): void {
    this.states.setGeneration(node, generation);
  }

  /** A node's full state, assembled from its base and its ports' variants, sorted by id. */
  objects(node: string): HashedObject[] {
    return this.states.objects(node);
  }

  /** Distinct port variants held (for sharing figures). */
  variantCount(): number {
    return this.states.variantCount();
  }

  /** Applies a change set and returns, per node whose state changed, what changed. Pure computation. */
  sync(input: SyncInput): NodeChange[] {
    return this.states.sync(input);
  }
}

/** FamilyStates of one mode, with that mode's context `C` and unit claims `U`. */
class ModeStates<C extends NodeContext, U extends UnitClaim> implements States {
  private readonly ports = new Map<string, PortEntry<C, U>>();
  private readonly portsByService = new Map<string, Set<string>>();
  private readonly nodes = new Map<string, NodeEntry<C>>();
  private largeClusterMode = false;
  /** Endpoints of every port held (decides large-cluster mode). */
  private endpointTotal = 0;
  /** Ports whose objects depend on the node. */
  private readonly nodeDependent = new Set<string>();
  /** Shared ports not compiled yet (no node existed since they appeared). */
  private readonly uncounted = new Set<string>();
  /** Sum of the digests of every compiled shared port: the part of every node's digest they make. */
  private sharedSum = 0n;
  /** Every shared port's objects, sorted by id (cached for objects()). */
  private sharedSorted: HashedObject[] | undefined;
  /** The last base object compiled per id, offered for reuse to the next node's base. */
  private readonly baseObjects = new Map<string, HashedObject>();
  /** Per unit id, the claims of the ports claiming it (by port id). */
  private readonly claimants = new Map<string, Map<string, U>>();

  constructor(
    private readonly compiler: ModeCompiler<C, U>,
    private readonly family: IPFamily,
    private readonly nodeFilter: (node: NodeInfo) => boolean,
  ) {}

  nodeNames(): string[] {
    return [...this.nodes.keys()].sort();
  }

  digest(node: string): string | undefined {
    return this.nodes.get(node)?.digest.hex();
  }

  generation(node: string): number | undefined {
    return this.nodes.get(node)?.generation;
  }

  setGeneration(node: string, generation: number): void {
    const n = this.nodes.get(node);
    if (n) n.generation = generation;
  }

  objects(node: string): HashedObject[] {
    const n = this.nodes.get(node);
    if (!n) return [];
    this.countShared(n.ctx);
    if (!this.sharedSorted) {
      const all: HashedObject[] = [];
      for (const [id, p] of this.ports)
        if (!this.nodeDependent.has(id)) for (const o of this.variant(p, n.ctx).objects.values()) all.push(o);
      this.sharedSorted = all.sort(byId);
    }
    const own = [...n.base.objects.values()];
    for (const id of this.nodeDependent) {
      const p = this.ports.get(id);
      if (p) for (const o of this.variant(p, n.ctx).objects.values()) own.push(o);
    }
    own.sort(byId);
    // Merge of two sorted lists.
    const shared = this.sharedSorted;
    const out: HashedObject[] = new Array<HashedObject>(shared.length + own.length);
    let i = 0;
    let j = 0;
    let k = 0;
    while (i < shared.length && j < own.length) out[k++] = byId(shared[i]!, own[j]!) <= 0 ? shared[i++]! : own[j++]!;
    while (i < shared.length) out[k++] = shared[i++]!;
    while (j < own.length) out[k++] = own[j++]!;
    return out;
  }

  variantCount(): number {
    let n = 0;
    for (const p of this.ports.values()) n += p.variants.size;
    return n;
  }

  sync(input: SyncInput): NodeChange[] {
    const read = this.readChanges(input);
    const named = read.everything ? new Set([...input.nodes, ...this.nodes.keys()]) : input.nodes;
    const oldCtx = this.updateNodeContexts(input.state, named, read.large);
    const changedPorts = this.updatePorts(read);
    const anyNode = this.nodes.values().next().value;
    if (!anyNode) return [];
    this.countShared(anyNode.ctx);
    const round: Round<C, U> = {
      changedPorts,
      perNodePorts: [],
      sharedPorts: [],
      oldCtx,
      diffs: new PairDiffs(),
      shared: undefined,
    };
    for (const change of changedPorts.values())
      (change.old?.keyFn || change.next?.keyFn ? round.perNodePorts : round.sharedPorts).push(change);
    const changes: NodeChange[] = [];
    for (const [name, entry] of this.nodes) {
      const isNew = oldCtx.has(name) && oldCtx.get(name) === undefined;
      const change = isNew ? this.initialChange(name, entry) : this.nodeChange(name, entry, round);
      if (change) changes.push(change);
    }
    return changes.sort((a, b) => (a.node < b.node ? -1 : 1));
  }

  /**
   * Step 1 of a sync: the ports of the named services, and whether the large-cluster mode holds (it follows the
   * endpoint total once those are re-read; when it flips, every service is read again).
   */
  private readChanges({ state, services, endpointsOnly = NONE }: SyncInput): PortsRead {
    const byService = this.readPorts(state, services, endpointsOnly);
    let total = this.endpointTotal;
    for (const k of services) {
      for (const id of this.portsByService.get(k) ?? []) total -= this.ports.get(id)?.endpoints.length ?? 0;
      for (const { endpoints } of byService.get(k) ?? []) total += endpoints.length;
    }
    const large = this.compiler.largeClusterMode && total > LargeClusterEndpointsThreshold;
    if (large === this.largeClusterMode) return { byService, services, large, everything: false };
    this.largeClusterMode = large;
    const every = new Set([...services, ...this.portsByService.keys()]);
    return { byService: this.readPorts(state, every, NONE), services: every, large, everything: true };
  }

  /**
   * Step 2: new contexts of the named nodes (nodes gone or filtered out are dropped). Returns each named node's
   * context before the sync (undefined for a new node), kept for the duration of the sync.
   */
  private updateNodeContexts(
    state: ClusterState,
    names: ReadonlySet<string>,
    large: boolean,
  ): Map<string, C | undefined> {
    const ctxTotal = large ? LargeClusterEndpointsThreshold + 1 : 0;
    const oldCtx = new Map<string, C | undefined>();
    for (const name of names) {
      const info = state.node(name);
      const entry = this.nodes.get(name);
      oldCtx.set(name, entry?.ctx);
      if (!info || !this.nodeFilter(info)) {
        this.nodes.delete(name);
        continue;
      }
      const ctx = this.compiler.makeContext(info, ctxTotal);
      if (entry) entry.ctx = ctx;
      else this.nodes.set(name, { ctx, base: EMPTY, digest: new Digest(), generation: 0 });
    }
    return oldCtx;
  }

  /**
   * Step 3: the owners whose entries changed (fingerprint), appeared or went away, among the re-read services'
   * ports and the units they claim; the new entries are installed.
   */
  private updatePorts({ byService, services, large }: PortsRead): Map<string, PortChange<C, U>> {
    const changedPorts = new Map<string, PortChange<C, U>>();
    for (const k of services) {
      const oldIds = this.portsByService.get(k) ?? new Set<string>();
      const newIds = new Set<string>();
      for (const read of byService.get(k) ?? []) {
        for (const next of this.makePort(read, large)) {
          const id = next.id;
          newIds.add(id);
          const old = this.ports.get(id);
          if (old && old.fingerprint === next.fingerprint) continue;
          changedPorts.set(id, { old, next });
          this.removePort(id);
          this.addPort(id, next);
        }
      }
      for (const id of oldIds) {
        if (newIds.has(id)) continue;
        changedPorts.set(id, { old: this.ports.get(id), next: undefined });
        this.removePort(id);
      }
      if (newIds.size) this.portsByService.set(k, newIds);
      else this.portsByService.delete(k);
    }
    // Units claimed by the changed ports: compiled while any port claims them.
    for (const [id, change] of this.unitChanges(changedPorts)) changedPorts.set(id, change);
    return changedPorts;
  }

  /**
   * The shared ports' change, computed once on the first node that existed before the sync (when every node is
   * new, old shared ports may never have been compiled).
   */
  private sharedChange(ctx: C, round: Round<C, U>): SharedChange {
    const objects = new ChangeSet();
    let sum = 0n;
    for (const { old, next } of round.sharedPorts) {
      const from = old ? this.compiledVariant(old, ctx) : EMPTY;
      const to = next ? this.variant(next, ctx) : EMPTY;
      sum += to.sum - from.sum;
      const d = round.diffs.get(from, to);
      if (d.upserts.length || d.deletes.length) objects.add(d, (next ?? old)?.service);
    }
    return { objects, sum };
  }

  /**
   * A node's move from one layer to another (of its base or of one owner): its digest follows; the objects are
   * added to `c`, created when the first difference shows. Returns `c`.
   */
  private record(
    entry: NodeEntry<C>,
    diffs: PairDiffs,
    c: ChangeSet | undefined,
    from: Layer,
    to: Layer,
    service: string | undefined,
  ): ChangeSet | undefined {
    if (from === to) return c;
    const d = diffs.get(from, to);
    entry.digest.merge(from.sum, -1);
    entry.digest.merge(to.sum, 1);
    if (d.upserts.length === 0 && d.deletes.length === 0) return c;
    c ??= new ChangeSet();
    c.add(d, service);
    return c;
  }

  /**
   * Step 4, for a node that existed before the sync: its base (when its facts changed), the shared change, and
   * its variant of every node-dependent owner that changed (of every one, when its facts changed).
   */
  private nodeChange(name: string, entry: NodeEntry<C>, round: Round<C, U>): NodeChange | undefined {
    const nodeChanged = round.oldCtx.has(name);
    const before = round.oldCtx.get(name) ?? entry.ctx;
    let c: ChangeSet | undefined;
    if (nodeChanged) {
      const base = this.nodeBase(entry.ctx);
      c = this.record(entry, round.diffs, c, entry.base, base, undefined);
      entry.base = base;
    }
    const shared = (round.shared ??= this.sharedChange(entry.ctx, round));
    if (shared.sum !== 0n) entry.digest.merge(shared.sum, 1);
    if (!shared.objects.empty) {
      c ??= new ChangeSet();
      for (const o of shared.objects.upserts) c.upserts.push(o);
      for (const o of shared.objects.deletes) c.deletes.push(o);
      for (const s of shared.objects.services) c.services.add(s);
    }
    // Node-dependent owners that changed: old variant (the node's context before this sync) -> new variant.
    for (const { old, next } of round.perNodePorts) {
      const from = old ? this.compiledVariant(old, before) : EMPTY;
      const to = next ? this.variant(next, entry.ctx) : EMPTY;
      c = this.record(entry, round.diffs, c, from, to, (next ?? old)?.service);
    }
    // A node whose facts changed: every other node-dependent owner may select another variant.
    if (nodeChanged) {
      for (const id of this.nodeDependent) {
        if (round.changedPorts.has(id)) continue;
        const p = this.ports.get(id)!;
        c = this.record(entry, round.diffs, c, this.compiledVariant(p, before), this.variant(p, entry.ctx), p.service);
      }
    }
    if (!c) return undefined;
    return {
      node: name,
      family: this.family,
      upserts: c.upserts,
      deletes: c.deletes,
      services: c.services,
      digest: entry.digest.hex(),
      prevGeneration: entry.generation,
      initial: false,
    };
  }

  /** Step 4, for a new node: its digest from the shared sum, its base and its node-dependent variants; the rest on read. */
  private initialChange(name: string, entry: NodeEntry<C>): NodeChange {
    entry.base = this.nodeBase(entry.ctx);
    let sum = this.sharedSum + entry.base.sum;
    for (const id of this.nodeDependent) sum += this.variant(this.ports.get(id)!, entry.ctx).sum;
    entry.digest.merge(entry.digest.value, -1);
    entry.digest.merge(sum, 1);
    let upserts: HashedObject[] | undefined;
    let services: Set<string> | undefined;
    const objects = (): HashedObject[] => this.objects(name);
    const serviceNames = (): Set<string> => new Set(this.portsByService.keys());
    return {
      node: name,
      family: this.family,
      get upserts(): HashedObject[] {
        return (upserts ??= objects());
      },
      deletes: [],
      digest: entry.digest.hex(),
      prevGeneration: entry.generation,
      initial: true,
      get services(): Set<string> {
        return (services ??= serviceNames());
      },
    };
  }

  private variant(p: PortEntry<C, U>, ctx: C): Layer {
    const key = p.keyFn ? p.keyFn(ctx) : '';
    let v = p.variants.get(key);
    if (!v) {
      const others = [...p.variants.values()];
      const reuse = others.length
        ? (id: string): HashedObject | undefined => {
            for (const l of others) {
              const o = l.objects.get(id);
              if (o) return o;
            }
            return undefined;
          }
        : undefined;
      v = layerOf(p.compile(ctx), this.compiler.same, reuse);
      p.variants.set(key, v);
    }
    return v;
  }

  /**
   * The variant a node had for an owner being replaced. Every node that existed got every owner's variant
   * compiled when it or the owner appeared, so this is a lookup.
   */
  private compiledVariant(p: PortEntry<C, U>, ctx: C): Layer {
    const v = p.variants.get(p.keyFn ? p.keyFn(ctx) : '');
    if (!v) throw new Error(`internal: no compiled variant of ${p.id} for node ${ctx.node.name}`);
    return v;
  }

  /**
   * The entries of a service port: one per part, the first (id: the port owner) holding its endpoints (counted for
   * large-cluster mode) and its claims.
   */
  private makePort({ svc, endpoints }: PortRead, large: boolean): PortEntry<C, U>[] {
    const owner = portOwner(svc);
    const fingerprint = JSON.stringify([svc, endpoints, large]);
    const service = serviceKey(svc);
    return this.compiler.servicePortParts(svc, endpoints).map((part, i) => ({
      id: part.name ? `${owner}#${part.name}` : owner,
      svc,
      endpoints: i === 0 ? endpoints : [],
      service,
      claims: i === 0 ? (this.compiler.units?.claims(svc, endpoints) ?? []) : [],
      fingerprint,
      keyFn: part.keyFn,
      compile: part.compile,
      variants: new Map(),
    }));
  }

  /** The entry of a unit from the claims of every port claiming it; undefined when none does. */
  private makeUnit(id: string): PortEntry<C, U> | undefined {
    const units = this.compiler.units;
    const claims = [...(this.claimants.get(id)?.values() ?? [])];
    if (claims.length === 0 || !units) return undefined;
    const claim = units.merge(claims);
    return {
      id: unitId(id),
      svc: undefined,
      endpoints: [],
      // A unit that is one service's (a health check): its changes are that service's causes.
      service: claim.service,
      claims: [],
      fingerprint: JSON.stringify(claim),
      keyFn: units.keyFn(claim),
      compile: (ctx) => units.compile(ctx, claim),
      variants: new Map(),
    };
  }

  /**
   * Units whose claims changed with the given port changes: updates the claimants and returns each changed unit's
   * old and new entry (the new one installed).
   */
  private unitChanges(changedPorts: ReadonlyMap<string, PortChange<C, U>>): Map<string, PortChange<C, U>> {
    const touched = new Set<string>();
    for (const [portId, { old, next }] of changedPorts) {
      for (const cl of old?.claims ?? []) {
        const m = this.claimants.get(cl.id);
        m?.delete(portId);
        if (m?.size === 0) this.claimants.delete(cl.id);
        touched.add(cl.id);
      }
      for (const cl of next?.claims ?? []) {
        let m = this.claimants.get(cl.id);
        if (!m) this.claimants.set(cl.id, (m = new Map<string, U>()));
        m.set(portId, cl);
        touched.add(cl.id);
      }
    }
    const out = new Map<string, PortChange<C, U>>();
    for (const u of touched) {
      const id = unitId(u);
      const old = this.ports.get(id);
      const next = this.makeUnit(u);
      if (old?.fingerprint === next?.fingerprint) continue;
      out.set(id, { old, next });
      this.removePort(id);
      if (next) this.addPort(id, next);
    }
    return out;
  }

  private addPort(id: string, p: PortEntry<C, U>): void {
    this.ports.set(id, p);
    this.endpointTotal += p.endpoints.length;
    if (p.keyFn) this.nodeDependent.add(id);
    else {
      this.uncounted.add(id);
      this.sharedSorted = undefined;
    }
  }

  private removePort(id: string): void {
    const p = this.ports.get(id);
    if (!p) return;
    this.ports.delete(id);
    this.endpointTotal -= p.endpoints.length;
    if (p.keyFn) this.nodeDependent.delete(id);
    else if (!this.uncounted.delete(id)) {
      this.sharedSum -= p.variants.get('')?.sum ?? 0n;
      this.sharedSorted = undefined;
    }
  }

  /** Compiles the shared ports not compiled yet (any node's context does) and adds them to the shared sum. */
  private countShared(ctx: C): void {
    for (const id of this.uncounted) {
      const p = this.ports.get(id);
      if (p) this.sharedSum += this.variant(p, ctx).sum;
    }
    this.uncounted.clear();
  }

  private nodeBase(ctx: C): Layer {
    const layer = layerOf(this.compiler.nodeBase(ctx), this.compiler.same, (id) => this.baseObjects.get(id));
    for (const [id, o] of layer.objects) this.baseObjects.set(id, o);
    return layer;
  }

  /**
   * The ports of the named services, each with its endpoints, read from the state; for services in
   * `endpointsOnly`, the ports held (the state's ServicePort objects did not change) with fresh endpoints.
   */
  private readPorts(
    state: ClusterState,
    services: ReadonlySet<string>,
    endpointsOnly: ReadonlySet<string>,
  ): Map<string, PortRead[]> {
    const out = new Map<string, PortRead[]>();
    let reread = 0;
    for (const k of services) {
      if (!endpointsOnly.has(k)) {
        reread++;
        continue;
      }
      const l: PortRead[] = [];
      // A port's parts share its ServicePort: each port once.
      const held = new Set<ServicePort>();
      for (const id of this.portsByService.get(k) ?? []) {
        const svc = this.ports.get(id)?.svc;
        if (svc && !held.has(svc)) {
          held.add(svc);
          l.push(portRead(state, svc));
        }
      }
      if (l.length) out.set(k, l);
    }
    if (reread === 0) return out;
    for (const svc of state.servicePorts(this.family)) {
      const k = serviceKey(svc);
      if (!services.has(k) || endpointsOnly.has(k)) continue;
      let l = out.get(k);
      if (!l) out.set(k, (l = []));
      l.push(portRead(state, svc));
    }
    return out;
  }
}
