// Every node's desired rule set, kept with structural sharing: a service port is compiled once per distinct
// variant key (portVariantKeyFn) and the resulting objects are shared by every node with that key. Nothing is
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
// The compile functions come from a ModeCompiler (iptables by default, or IPVS). A mode may split a service port
// into parts that depend on the node differently (IPVS: the VIP virtual servers, the per-node NodePort ones, the
// hairpin members), each kept as an owner of its own; and may have units several ports claim (IPVS: a VIP bound to
// kube-ipvs0, which every port of a service and services sharing an external IP need once), kept as owners too and
// compiled while any port claims them.
import {
  IptablesMode,
  IpvsMode,
  compileIpvsAddress,
  compileIpvsNodeBase,
  compileNodeBase,
  compileServicePort,
  healthCheckClaims,
  healthCheckObjects,
  healthCheckVariantKeyFn,
  ipvsAddressClaims,
  isHealthCheckClaim,
  ipvsAddressVariantKeyFn,
  ipvsServicePortParts,
  makeContext,
  makeIpvsContext,
  mergeAddressClaims,
  mergeHealthCheckClaims,
  portOwner,
  portVariantKeyFn,
  LargeClusterEndpointsThreshold,
  type IptablesOptions,
  type IpvsAddressClaim,
  type IpvsOptions,
  type RuleObject,
} from '@kpx/compiler';
import { IPVSScheduler, type ClusterState, type Endpoint, type IPFamily, type NodeInfo, type ServicePort } from '@kpx/model';
import type { ObjectRef } from '@kpx/proto';
import { Digest } from './digest.js';
import { hashed, objectIdOf, type HashedObject } from './state.js';
import { sameWire, toWire } from './wire.js';

/** What a mode's compile context has in common: the node it is for. */
export interface NodeContext {
  readonly node: NodeInfo;
}

/**
 * An object several service ports may need once on a node (IPVS: a VIP bound to kube-ipvs0). Each port claims the
 * units it needs; a unit is compiled, as an owner of its own, while any port claims it.
 */
export interface UnitClaim {
  /** Names the unit; claims with the same id are merged by {@link ModeCompiler.mergeClaims}. */
  readonly id: string;
}

/** Objects of a service port that depend on the node in one way (a port may split into several). */
export interface PortPart<C extends NodeContext = NodeContext> {
  /** '' for the first part; the others are named (entry ids `owner#name`). */
  readonly name: string;
  /** undefined when the objects are the same on every node, else a key equal for nodes that get the same objects. */
  readonly keyFn: ((ctx: C) => string) | undefined;
  compile(ctx: C): RuleObject[];
}

/**
 * The per-mode compile functions FamilyStates drives: a node base, service ports decomposed by owner with a
 * variant key telling which nodes share a port's objects, and optionally units several ports claim. Methods (not
 * function properties) so that a compiler of a specific context type is a ModeCompiler of NodeContext.
 */
export interface ModeCompiler<C extends NodeContext = NodeContext, U extends UnitClaim = UnitClaim> {
  /** The proxy mode of the rule sets: "iptables", "ipvs". */
  readonly mode: string;
  /** Whether compiled objects depend on the large-cluster endpoint threshold (iptables' per-endpoint comments). */
  readonly largeClusterMode: boolean;
  makeContext(node: NodeInfo, totalEndpoints: number): C;
  nodeBase(ctx: C): RuleObject[];
  /** A service port's objects, as one or more parts with their own dependence on the node. */
  servicePortParts(svc: ServicePort, endpoints: readonly Endpoint[]): readonly PortPart<C>[];
  claims?(svc: ServicePort, endpoints: readonly Endpoint[]): readonly U[];
  /** One claim standing for several ports' claims of the same unit. */
  mergeClaims?(claims: readonly U[]): U;
  compileUnit?(ctx: C, claim: U): RuleObject[];
  unitVariantKeyFn?(claim: U): ((ctx: C) => string) | undefined;
}

/**
 * A compiler of a specific context and claim type as a ModeCompiler of any: FamilyStates hands a compiler only the
 * contexts and claims that compiler made.
 */
function erased<C extends NodeContext, U extends UnitClaim>(c: ModeCompiler<C, U>): ModeCompiler {
  return c as unknown as ModeCompiler;
}

/**
 * A mode's compiler with the per-service health check (a node duty, every mode) as one more unit: every port of a
 * service that serves one claims it with its ready endpoints; the unit counts the node's over them all.
 */
function withHealthChecks(c: ModeCompiler): ModeCompiler {
  return {
    mode: c.mode,
    largeClusterMode: c.largeClusterMode,
    makeContext: (node, total) => c.makeContext(node, total),
    nodeBase: (ctx) => c.nodeBase(ctx),
    servicePortParts: (svc, endpoints) => c.servicePortParts(svc, endpoints),
    claims: (svc, endpoints) => [...(c.claims?.(svc, endpoints) ?? []), ...healthCheckClaims(svc, endpoints)],
    mergeClaims: (claims) => {
      const [first] = claims;
      if (first !== undefined && isHealthCheckClaim(first)) return mergeHealthCheckClaims(claims.filter(isHealthCheckClaim));
      return c.mergeClaims ? c.mergeClaims(claims) : (first as UnitClaim);
    },
    compileUnit: (ctx, claim) => (isHealthCheckClaim(claim) ? healthCheckObjects(ctx.node.name, claim) : (c.compileUnit?.(ctx, claim) ?? [])),
    unitVariantKeyFn: (claim) => (isHealthCheckClaim(claim) ? healthCheckVariantKeyFn(claim) : c.unitVariantKeyFn?.(claim)),
  };
}

/** The iptables mode (the default). */
export function iptablesModeCompiler(options: IptablesOptions): ModeCompiler {
  return withHealthChecks(
    erased<ReturnType<typeof makeContext>, UnitClaim>({
      mode: IptablesMode,
      largeClusterMode: true,
      makeContext: (node, total) => makeContext(node, options, total),
      nodeBase: compileNodeBase,
      servicePortParts: (svc, endpoints) => [{ name: '', keyFn: portVariantKeyFn(options, svc, endpoints), compile: (ctx) => compileServicePort(ctx, svc, endpoints) }],
    }),
  );
}

type AddressUnit = IpvsAddressClaim & UnitClaim;

/** The IPVS mode: bound addresses are units, claimed by every service port with that VIP. */
export function ipvsModeCompiler(options: IpvsOptions): ModeCompiler {
  const unit = (c: IpvsAddressClaim): AddressUnit => ({ id: c.address, address: c.address, always: c.always });
  return withHealthChecks(
    erased<ReturnType<typeof makeIpvsContext>, AddressUnit>({
      mode: IpvsMode,
      largeClusterMode: false,
      makeContext: (node) => makeIpvsContext(node, options),
      nodeBase: compileIpvsNodeBase,
      servicePortParts: (svc, endpoints) => ipvsServicePortParts(options, svc, endpoints),
      claims: (svc) => ipvsAddressClaims(svc).map(unit),
      mergeClaims: (claims) => unit([...mergeAddressClaims(claims).values()][0] ?? { address: '', always: false }),
      compileUnit: (ctx, claim) => compileIpvsAddress(ctx, claim),
      unitVariantKeyFn: (claim) => ipvsAddressVariantKeyFn(claim),
    }),
  );
}

/** A service port as read from the state, with its endpoints. */
interface PortRead {
  readonly svc: ServicePort;
  readonly endpoints: readonly Endpoint[];
}

function portRead(state: ClusterState, svc: ServicePort): PortRead {
  return { svc, endpoints: state.endpoints(svc) };
}

/** The compiler of a mode: ipvs, else iptables (options without a scheduler get rr in ipvs mode). */
export function modeCompiler(mode: string, options: IptablesOptions | IpvsOptions): ModeCompiler {
  if (mode === IpvsMode) return ipvsModeCompiler({ scheduler: IPVSScheduler.RoundRobin, ...options, localhostNodePorts: false });
  return iptablesModeCompiler(options);
}

/** The objects of one port (or of a node's base) for one variant, with their digest sum. */
export interface Layer {
  readonly objects: ReadonlyMap<string, HashedObject>;
  readonly sum: bigint;
}

const EMPTY: Layer = { objects: new Map(), sum: 0n };

/**
 * Hashes compiled objects into a layer. `reuse` offers an existing object with the same id: when it is equal,
 * it is taken instead of a new one (no hash computed, one copy in memory).
 */
function layerOf(objects: Parameters<typeof toWire>[0][], reuse?: (id: string) => HashedObject | undefined): Layer {
  const map = new Map<string, HashedObject>();
  const d = new Digest();
  for (const o of objects) {
    const w = toWire(o);
    const id = objectIdOf(w);
    const prev = reuse?.(id);
    const h = prev && (sameWire(prev.wire, w) || sameIpvsWire(prev.wire, w)) ? prev : hashed(w);
    map.set(id, h);
    d.add(h.hash);
  }
  return { objects: map, sum: d.value };
}

/**
 * sameWire for the IPVS kinds it leaves out (virtual servers, addresses, set declarations): an IPVS node's NodePort
 * ports are compiled per node, and their other virtual servers are then still one object in memory.
 */
function sameIpvsWire(a: HashedObject['wire'], b: HashedObject['wire']): boolean {
  const p = a.payload;
  const q = b.payload;
  if (a.kind !== b.kind || a.key !== b.key || !p || !q) return false;
  if (p.$case === 'ipvsService' && q.$case === 'ipvsService') {
    const x = p.value;
    const y = q.value;
    if (x.protocol !== y.protocol || x.address !== y.address || x.port !== y.port || x.scheduler !== y.scheduler || x.flags !== y.flags || x.timeoutSeconds !== y.timeoutSeconds) return false;
    if (x.realServers.length !== y.realServers.length) return false;
    return x.realServers.every((r, i) => {
      const o = y.realServers[i];
      return o !== undefined && r.address === o.address && r.port === o.port && r.weight === o.weight;
    });
  }
  if (p.$case === 'ipvsAddress' && q.$case === 'ipvsAddress') return p.value.interface === q.value.interface && p.value.address === q.value.address;
  return false;
}

const byId = (a: HashedObject, b: HashedObject): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A service port, or a unit several ports claim (see {@link UnitClaim}): an owner of objects. */
interface PortEntry {
  readonly id: string;
  /** Undefined for a unit. */
  readonly svc: ServicePort | undefined;
  readonly endpoints: readonly Endpoint[];
  /** The service (`namespace/name`) whose change a change of these objects is; undefined for a unit but a health check. */
  readonly service: string | undefined;
  /** The units the port claims. */
  readonly claims: readonly UnitClaim[];
  /** Canonical JSON of (svc, endpoints) or of the merged claim: equal means nothing rule-relevant changed. */
  readonly fingerprint: string;
  /** Undefined: the objects are the same on every node (a shared port). */
  readonly keyFn: ((ctx: NodeContext) => string) | undefined;
  readonly compile: (ctx: NodeContext) => RuleObject[];
  readonly variants: Map<string, Layer>;
}

/** Ids of unit entries, apart from service port owners (`ns/name:port/PROTOCOL` has no `:` before its first `/`). */
const unitId = (id: string): string => `unit:${id}`;

interface NodeEntry {
  ctx: NodeContext;
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
  /** The mode's compile functions (default: iptables with `options`). */
  readonly compiler?: ModeCompiler;
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

/** Node states of one IP family. */
export class FamilyStates {
  readonly family: IPFamily;
  readonly compiler: ModeCompiler;
  private readonly nodeFilter: (node: NodeInfo) => boolean;
  private readonly ports = new Map<string, PortEntry>();
  private readonly portsByService = new Map<string, Set<string>>();
  private readonly nodes = new Map<string, NodeEntry>();
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
  private readonly claimants = new Map<string, Map<string, UnitClaim>>();

  constructor(opts: FamilyStatesOptions) {
    this.family = opts.family;
    this.compiler = opts.compiler ?? iptablesModeCompiler(opts.options);
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

  /** A node's full state, assembled from its base and its ports' variants, sorted by id. */
  objects(node: string): HashedObject[] {
    const n = this.nodes.get(node);
    if (!n) return [];
    this.countShared(n.ctx);
    if (!this.sharedSorted) {
      const all: HashedObject[] = [];
      for (const [id, p] of this.ports) if (!this.nodeDependent.has(id)) for (const o of this.variant(p, n.ctx).objects.values()) all.push(o);
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

  /** Distinct port variants held (for sharing figures). */
  variantCount(): number {
    let n = 0;
    for (const p of this.ports.values()) n += p.variants.size;
    return n;
  }

  get mode(): string {
    return this.compiler.mode;
  }

  private variant(p: PortEntry, ctx: NodeContext): Layer {
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
      v = layerOf(p.compile(ctx), reuse);
      p.variants.set(key, v);
    }
    return v;
  }

  /**
   * The entries of a service port: one per part, the first (id: the port owner) holding its endpoints (counted for
   * large-cluster mode) and its claims.
   */
  private makePort({ svc, endpoints }: PortRead, large: boolean): PortEntry[] {
    const owner = portOwner(svc);
    const fingerprint = JSON.stringify([svc, endpoints, large]);
    const service = serviceKey(svc);
    return this.compiler.servicePortParts(svc, endpoints).map((part, i) => ({
      id: part.name ? `${owner}#${part.name}` : owner,
      svc,
      endpoints: i === 0 ? endpoints : [],
      service,
      claims: i === 0 ? (this.compiler.claims?.(svc, endpoints) ?? []) : [],
      fingerprint,
      keyFn: part.keyFn,
      compile: (ctx) => part.compile(ctx),
      variants: new Map(),
    }));
  }

  /** The entry of a unit from the claims of every port claiming it; undefined when none does. */
  private makeUnit(id: string): PortEntry | undefined {
    const c = this.compiler;
    const claims = [...(this.claimants.get(id)?.values() ?? [])];
    if (claims.length === 0 || !c.compileUnit) return undefined;
    const claim = c.mergeClaims ? c.mergeClaims(claims) : (claims[0] as UnitClaim);
    const compileUnit = c.compileUnit.bind(c);
    return {
      id: unitId(id),
      svc: undefined,
      endpoints: [],
      // A health check is its service's (its changes are that service's causes); other units are no one service's.
      service: isHealthCheckClaim(claim) ? `${claim.namespace}/${claim.name}` : undefined,
      claims: [],
      fingerprint: JSON.stringify(claim),
      keyFn: c.unitVariantKeyFn?.(claim),
      compile: (ctx) => compileUnit(ctx, claim),
      variants: new Map(),
    };
  }

  /**
   * Units whose claims changed with the given port changes: updates the claimants and returns each changed unit's
   * old and new entry (the new one installed).
   */
  private unitChanges(changedPorts: ReadonlyMap<string, { old: PortEntry | undefined; next: PortEntry | undefined }>): Map<string, { old: PortEntry | undefined; next: PortEntry | undefined }> {
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
        if (!m) this.claimants.set(cl.id, (m = new Map<string, UnitClaim>()));
        m.set(portId, cl);
        touched.add(cl.id);
      }
    }
    const out = new Map<string, { old: PortEntry | undefined; next: PortEntry | undefined }>();
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

  private addPort(id: string, p: PortEntry): void {
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
  private countShared(ctx: NodeContext): void {
    for (const id of this.uncounted) {
      const p = this.ports.get(id);
      if (p) this.sharedSum += this.variant(p, ctx).sum;
    }
    this.uncounted.clear();
  }

  private nodeBase(ctx: NodeContext): Layer {
    const layer = layerOf(this.compiler.nodeBase(ctx), (id) => this.baseObjects.get(id));
    for (const [id, o] of layer.objects) this.baseObjects.set(id, o);
    return layer;
  }

  /**
   * The ports of the named services, each with its endpoints, read from the state; for services in
   * `endpointsOnly`, the ports held (the state's ServicePort objects did not change) with fresh endpoints.
   */
  private readPorts(state: ClusterState, services: ReadonlySet<string>, endpointsOnly: ReadonlySet<string>): Map<string, PortRead[]> {
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

  /** Applies a change set and returns, per node whose state changed, what changed. Pure computation. */
  sync({ state, services, nodes, endpointsOnly = NONE }: SyncInput): NodeChange[] {
    // Large-cluster mode follows the endpoint total once the named services are re-read.
    let byService = this.readPorts(state, services, endpointsOnly);
    let total = this.endpointTotal;
    for (const k of services) {
      for (const id of this.portsByService.get(k) ?? []) total -= this.ports.get(id)?.endpoints.length ?? 0;
      for (const { endpoints } of byService.get(k) ?? []) total += endpoints.length;
    }
    const large = this.compiler.largeClusterMode && total > LargeClusterEndpointsThreshold;
    const everything = large !== this.largeClusterMode;
    this.largeClusterMode = large;
    const touchedServices = everything ? new Set([...services, ...this.portsByService.keys()]) : services;
    if (everything) byService = this.readPorts(state, touchedServices, NONE);
    const ctxTotal = large ? LargeClusterEndpointsThreshold + 1 : 0;

    // New node contexts; old ones kept for the duration of the sync.
    const oldCtx = new Map<string, NodeContext | undefined>();
    const nodeNames = everything ? new Set([...nodes, ...this.nodes.keys()]) : nodes;
    for (const name of nodeNames) {
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

    // Ports: which changed (fingerprint), which went away.
    const changedPorts = new Map<string, { old: PortEntry | undefined; next: PortEntry | undefined }>();
    for (const k of touchedServices) {
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

    const anyNode = this.nodes.values().next().value;
    if (!anyNode) return [];
    this.countShared(anyNode.ctx);

    // Diffs between two layers, computed once per distinct pair.
    const pairDiffs = new Map<Layer, Map<Layer, ObjectDiff>>();
    const diff = (a: Layer, b: Layer): ObjectDiff => {
      let m = pairDiffs.get(a);
      if (!m) pairDiffs.set(a, (m = new Map<Layer, ObjectDiff>()));
      let d = m.get(b);
      if (!d) m.set(b, (d = diffLayers(a, b)));
      return d;
    };

    // Shared ports that changed: the same change on every node that existed before, computed once (on the
    // first such node: when every node is new, old shared ports may never have been compiled).
    const perNodePorts: { old: PortEntry | undefined; next: PortEntry | undefined }[] = [];
    const sharedPorts: { old: PortEntry | undefined; next: PortEntry | undefined }[] = [];
    for (const change of changedPorts.values()) (change.old?.keyFn || change.next?.keyFn ? perNodePorts : sharedPorts).push(change);
    let shared: { upserts: HashedObject[]; deletes: ObjectRef[]; sum: bigint; services: Set<string> } | undefined;
    const sharedChange = (ctx: NodeContext): NonNullable<typeof shared> => {
      if (shared) return shared;
      shared = { upserts: [], deletes: [], sum: 0n, services: new Set() };
      for (const { old, next } of sharedPorts) {
        const from = old ? this.compiledVariant(old, ctx) : EMPTY;
        const to = next ? this.variant(next, ctx) : EMPTY;
        const d = diff(from, to);
        shared.sum += to.sum - from.sum;
        if (d.upserts.length === 0 && d.deletes.length === 0) continue;
        for (const o of d.upserts) shared.upserts.push(o);
        for (const o of d.deletes) shared.deletes.push(o);
        const service = (next ?? old)?.service;
        if (service) shared.services.add(service);
      }
      return shared;
    };

    const changes: NodeChange[] = [];
    for (const [name, entry] of this.nodes) {
      const nodeChanged = oldCtx.has(name);
      const previous = oldCtx.get(name);
      if (nodeChanged && previous === undefined) {
        changes.push(this.initialChange(name, entry));
        continue;
      }
      let c: { upserts: HashedObject[]; deletes: ObjectRef[]; services: Set<string> } | undefined;
      const record = (from: Layer, to: Layer, svc?: string): void => {
        if (from === to) return;
        const d = diff(from, to);
        entry.digest.merge(from.sum, -1);
        entry.digest.merge(to.sum, 1);
        if (d.upserts.length === 0 && d.deletes.length === 0) return;
        c ??= { upserts: [], deletes: [], services: new Set() };
        for (const o of d.upserts) c.upserts.push(o);
        for (const o of d.deletes) c.deletes.push(o);
        if (svc) c.services.add(svc);
      };
      if (nodeChanged) {
        const base = this.nodeBase(entry.ctx);
        record(entry.base, base);
        entry.base = base;
      }
      const sh = sharedChange(entry.ctx);
      if (sh.sum !== 0n) entry.digest.merge(sh.sum, 1);
      if (sh.upserts.length || sh.deletes.length) {
        c ??= { upserts: [], deletes: [], services: new Set() };
        for (const o of sh.upserts) c.upserts.push(o);
        for (const o of sh.deletes) c.deletes.push(o);
        for (const s of sh.services) c.services.add(s);
      }
      // Node-dependent ports that changed: old variant (the node's context before this sync) -> new variant.
      const before = previous ?? entry.ctx;
      for (const { old, next } of perNodePorts) {
        const from = old ? this.compiledVariant(old, before) : EMPTY;
        const to = next ? this.variant(next, entry.ctx) : EMPTY;
        record(from, to, (next ?? old)?.service);
      }
      // A node whose facts changed: every other node-dependent port may select another variant.
      if (nodeChanged) {
        for (const id of this.nodeDependent) {
          if (changedPorts.has(id)) continue;
          const p = this.ports.get(id)!;
          record(this.compiledVariant(p, before), this.variant(p, entry.ctx), p.service);
        }
      }
      if (c) changes.push({ node: name, family: this.family, ...c, digest: entry.digest.hex(), prevGeneration: entry.generation, initial: false });
    }
    return changes.sort((a, b) => (a.node < b.node ? -1 : 1));
  }

  /** A new node: its digest from the shared sum, its base and its node-dependent variants; the rest on read. */
  private initialChange(name: string, entry: NodeEntry): NodeChange {
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

  /**
   * The variant a node had for a port being replaced. Every node that existed got every port's variant compiled
   * when it or the port appeared, so this is a lookup.
   */
  private compiledVariant(p: PortEntry, ctx: NodeContext): Layer {
    const v = p.variants.get(p.keyFn ? p.keyFn(ctx) : '');
    if (!v) throw new Error(`internal: no compiled variant of ${p.id} for node ${ctx.node.name}`);
    return v;
  }
}
