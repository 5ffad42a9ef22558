// Every node's desired rule set, kept with structural sharing: a service port is compiled once per distinct
// variant key (portVariantKeyFn) and the resulting objects are shared by every node with that key. Nothing is
// stored per node and per port: a node's state is implicit (its base objects plus, for every port, the variant
// its key selects); only its digest and last generation are kept. A sync turns changed ports and changed nodes
// into per-node object changes, computed once per distinct (old variant, new variant) pair.
import {
  compileNodeBase,
  compileServicePort,
  makeContext,
  portOwner,
  portVariantKeyFn,
  totalEndpoints,
  LargeClusterEndpointsThreshold,
  type CompileContext,
  type IptablesOptions,
} from '@kpx/compiler';
import type { ClusterState, Endpoint, IPFamily, NodeInfo, ServicePort } from '@kpx/model';
import type { ObjectRef } from '@kpx/proto';
import { Digest } from './digest.js';
import { hashed, type HashedObject } from './state.js';
import { toWire } from './wire.js';

/** The objects of one port (or of a node's base) for one variant, with their digest sum. */
export interface Layer {
  readonly objects: ReadonlyMap<string, HashedObject>;
  readonly sum: bigint;
}

const EMPTY: Layer = { objects: new Map(), sum: 0n };

function layerOf(objects: Parameters<typeof toWire>[0][]): Layer {
  const map = new Map<string, HashedObject>();
  const d = new Digest();
  for (const o of objects) {
    const h = hashed(toWire(o));
    map.set(h.id, h);
    d.add(h.hash);
  }
  return { objects: map, sum: d.value };
}

interface PortEntry {
  readonly svc: ServicePort;
  readonly endpoints: readonly Endpoint[];
  /** Canonical JSON of (svc, endpoints): equal means nothing rule-relevant changed. */
  readonly fingerprint: string;
  readonly keyFn: ((ctx: CompileContext) => string) | undefined;
  readonly variants: Map<string, Layer>;
}

interface NodeEntry {
  ctx: CompileContext;
  base: Layer;
  readonly digest: Digest;
  /** Generation of the last delta published for this node and family (0: none yet). */
  generation: number;
}

/** What one node's state does in a sync. */
export interface NodeChange {
  readonly node: string;
  readonly family: IPFamily;
  readonly upserts: HashedObject[];
  readonly deletes: ObjectRef[];
  /** Digest after the change. */
  readonly digest: string;
  /** The node's previous generation (0 for a node seen for the first time). */
  readonly prevGeneration: number;
  /** True for a node that just appeared: upserts are its whole state. */
  readonly initial: boolean;
  /** Service ports (namespace/name) whose rules changed on this node. */
  readonly services: Set<string>;
}

export interface SyncInput {
  readonly state: ClusterState;
  /** Services (`namespace/name`) whose Service or EndpointSlices changed. */
  readonly services: ReadonlySet<string>;
  /** Nodes added, changed or removed. */
  readonly nodes: ReadonlySet<string>;
}

export interface FamilyStatesOptions {
  readonly family: IPFamily;
  readonly options: IptablesOptions;
  /** Which nodes get a rule set of this family (default: nodes with an address of the family). */
  readonly nodeFilter?: (node: NodeInfo) => boolean;
}

const serviceKey = (svc: ServicePort): string => `${svc.service.namespace}/${svc.service.name}`;

/** Node states of one IP family. */
export class FamilyStates {
  readonly family: IPFamily;
  private readonly options: IptablesOptions;
  private readonly nodeFilter: (node: NodeInfo) => boolean;
  private readonly ports = new Map<string, PortEntry>();
  private readonly portsByService = new Map<string, Set<string>>();
  private readonly nodes = new Map<string, NodeEntry>();
  private largeClusterMode = false;

  constructor(opts: FamilyStatesOptions) {
    this.family = opts.family;
    this.options = opts.options;
    this.nodeFilter = opts.nodeFilter ?? ((n) => n.addresses.some((a) => a.family === opts.family));
  }

  nodeNames(): string[] {
    return [...this.nodes.keys()].sort();
  }

  digest(node: string): string | undefined {
    return this.nodes.get(node)?.digest.hex();
  }

  generation(node: string): number | undefined {
    return this.nodes.get(node)?.generation;
  }

  /** Records the generation of the delta just published for a node. */
  setGeneration(node: string, generation: number): void {
    const n = this.nodes.get(node);
    if (n) n.generation = generation;
  }

  /** A node's full state, assembled from its base and its ports' variants. */
  objects(node: string): HashedObject[] {
    const n = this.nodes.get(node);
    if (!n) return [];
    const out = [...n.base.objects.values()];
    for (const p of this.ports.values()) for (const o of this.variant(p, n.ctx).objects.values()) out.push(o);
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Distinct port variants held (for sharing figures). */
  variantCount(): number {
    let n = 0;
    for (const p of this.ports.values()) n += p.variants.size;
    return n;
  }

  private variant(p: PortEntry, ctx: CompileContext): Layer {
    const key = p.keyFn ? p.keyFn(ctx) : '';
    let v = p.variants.get(key);
    if (!v) {
      v = layerOf(compileServicePort(ctx, p.svc, p.endpoints));
      p.variants.set(key, v);
    }
    return v;
  }

  private makePort(svc: ServicePort, endpoints: readonly Endpoint[]): PortEntry {
    return {
      svc,
      endpoints,
      fingerprint: JSON.stringify([svc, endpoints, this.largeClusterMode]),
      keyFn: portVariantKeyFn(this.options, svc, endpoints),
      variants: new Map(),
    };
  }

  /** Applies a change set and returns, per node whose state changed, what changed. Pure computation. */
  sync({ state, services, nodes }: SyncInput): NodeChange[] {
    const allPorts = state.servicePorts(this.family);
    const large = totalEndpoints(state, allPorts) > LargeClusterEndpointsThreshold;
    const everything = large !== this.largeClusterMode;
    this.largeClusterMode = large;
    const total = large ? LargeClusterEndpointsThreshold + 1 : 0;

    // New node contexts; old ones kept for the duration of the sync.
    const oldCtx = new Map<string, CompileContext | undefined>();
    const changes = new Map<string, NodeChange>();
    const changeOf = (name: string, entry: NodeEntry, initial = false): NodeChange => {
      let c = changes.get(name);
      if (!c) {
        c = { node: name, family: this.family, upserts: [], deletes: [], digest: '', prevGeneration: entry.generation, initial, services: new Set() };
        changes.set(name, c);
      }
      return c;
    };
    const nodeNames = new Set([...nodes, ...(everything ? this.nodes.keys() : [])]);
    for (const name of nodeNames) {
      const info = state.node(name);
      const entry = this.nodes.get(name);
      oldCtx.set(name, entry?.ctx);
      if (!info || !this.nodeFilter(info)) {
        this.nodes.delete(name);
        continue;
      }
      const ctx = makeContext(info, this.options, total);
      if (entry) entry.ctx = ctx;
      else this.nodes.set(name, { ctx, base: EMPTY, digest: new Digest(), generation: 0 });
    }

    // Ports: which changed (fingerprint), which went away.
    const changedPorts = new Map<string, { old: PortEntry | undefined; next: PortEntry | undefined }>();
    const touchedServices = new Set([...services, ...(everything ? this.portsByService.keys() : [])]);
    const byService = new Map<string, ServicePort[]>();
    for (const svc of allPorts) {
      const k = serviceKey(svc);
      if (!touchedServices.has(k)) continue;
      let l = byService.get(k);
      if (!l) byService.set(k, (l = []));
      l.push(svc);
    }
    for (const k of touchedServices) {
      const oldIds = this.portsByService.get(k) ?? new Set<string>();
      const newIds = new Set<string>();
      for (const svc of byService.get(k) ?? []) {
        const id = portOwner(svc);
        newIds.add(id);
        const old = this.ports.get(id);
        const next = this.makePort(svc, state.endpoints(svc));
        if (old && old.fingerprint === next.fingerprint) continue;
        changedPorts.set(id, { old, next });
        this.ports.set(id, next);
      }
      for (const id of oldIds) {
        if (newIds.has(id)) continue;
        changedPorts.set(id, { old: this.ports.get(id), next: undefined });
        this.ports.delete(id);
      }
      if (newIds.size) this.portsByService.set(k, newIds);
      else this.portsByService.delete(k);
    }

    // Diffs between two layers, computed once per distinct pair.
    const pairDiffs = new Map<Layer, Map<Layer, { upserts: HashedObject[]; deletes: ObjectRef[] }>>();
    const diff = (a: Layer, b: Layer): { upserts: HashedObject[]; deletes: ObjectRef[] } => {
      let m = pairDiffs.get(a);
      if (!m) pairDiffs.set(a, (m = new Map<Layer, { upserts: HashedObject[]; deletes: ObjectRef[] }>()));
      let d = m.get(b);
      if (!d) {
        const upserts: HashedObject[] = [];
        const deletes: ObjectRef[] = [];
        for (const [id, o] of b.objects) if (a.objects.get(id)?.hash !== o.hash) upserts.push(o);
        for (const [id, o] of a.objects) if (!b.objects.has(id)) deletes.push({ kind: o.wire.kind, key: o.wire.key });
        m.set(b, (d = { upserts, deletes }));
      }
      return d;
    };
    const record = (name: string, entry: NodeEntry, from: Layer, to: Layer, svc?: string): void => {
      if (from === to) return;
      const d = diff(from, to);
      entry.digest.merge(from.sum, -1);
      entry.digest.merge(to.sum, 1);
      if (d.upserts.length === 0 && d.deletes.length === 0) return;
      const c = changeOf(name, entry);
      c.upserts.push(...d.upserts);
      c.deletes.push(...d.deletes);
      if (svc) c.services.add(svc);
    };

    for (const [name, entry] of this.nodes) {
      const previous = oldCtx.get(name);
      const isNew = oldCtx.has(name) && previous === undefined;
      const nodeChanged = oldCtx.has(name);
      if (isNew) changeOf(name, entry, true);
      if (nodeChanged) {
        const base = layerOf(compileNodeBase(entry.ctx));
        record(name, entry, entry.base, base);
        entry.base = base;
      }
      // Ports that changed: old variant (old context) -> new variant (new context).
      // The context the node had before this sync (its current one if its facts did not change).
      const before = isNew ? undefined : (previous ?? entry.ctx);
      for (const [, { old, next }] of changedPorts) {
        const from = old && before ? this.compiledVariant(old, before) : EMPTY;
        const to = next ? this.variant(next, entry.ctx) : EMPTY;
        record(name, entry, from, to, serviceKey((next ?? old)!.svc));
      }
      // A node whose facts changed: every other port may select another variant.
      if (nodeChanged) {
        for (const [id, p] of this.ports) {
          if (changedPorts.has(id)) continue;
          const from = previous !== undefined ? this.compiledVariant(p, previous) : EMPTY;
          record(name, entry, from, this.variant(p, entry.ctx), serviceKey(p.svc));
        }
      }
    }
    for (const c of changes.values()) {
      const entry = this.nodes.get(c.node);
      (c as { digest: string }).digest = entry?.digest.hex() ?? '';
    }
    return [...changes.values()].filter((c) => c.initial || c.upserts.length > 0 || c.deletes.length > 0).sort((a, b) => (a.node < b.node ? -1 : 1));
  }

  /**
   * The variant a node had for a port being replaced. Every node that existed got every port's variant compiled
   * when it or the port appeared, so this is a lookup.
   */
  private compiledVariant(p: PortEntry, ctx: CompileContext): Layer {
    const v = p.variants.get(p.keyFn ? p.keyFn(ctx) : '');
    if (!v) throw new Error(`internal: no compiled variant of ${portOwner(p.svc)} for node ${ctx.node.name}`);
    return v;
  }
}

