// The observed cluster: services, endpoint slices and nodes, converted and validated one object at a time,
// with endpoints merged per service port the way kube-proxy's EndpointSliceCache merges them.
import { Severity, type Diagnostic } from './diagnostics.js';
import { convertEndpointSlice, type Endpoint, type EndpointSliceInfo } from './endpoints.js';
import type { IPFamily } from './ip.js';
import { Kind, type EndpointSliceObject, type NodeObject, type ServiceObject } from './k8s.js';
import { convertNode, type NodeInfo } from './node.js';
import { convertService, servicePortKey, type ServicePort } from './service.js';
import { sortDistinctEndpoints, sortEndpoints } from './topology.js';

const nsName = (namespace: string, name: string): string => `${namespace}/${name}`;

const clusterIPClaim = (p: ServicePort): string => `ip ${p.clusterIP} ${p.port} ${p.protocol}`;
/** The API server allocates a node port by number, whatever the protocol. */
const nodePortClaim = (p: ServicePort): string => `nodePort ${p.nodePort}`;

function claimKeys(ports: readonly ServicePort[]): Set<string> {
  const out = new Set<string>();
  for (const p of ports) {
    out.add(clusterIPClaim(p));
    if (p.nodePort !== 0) out.add(nodePortClaim(p));
  }
  return out;
}

function portsSignature(ports: readonly ServicePort[]): string {
  return ports.map((p) => `${p.family} ${p.clusterIP} ${p.port} ${p.protocol} ${p.nodePort}`).join(',');
}

/**
 * The endpoints with one per address (a later one replacing an earlier one), sorted. Sorting first finds out
 * whether there is any address twice, usually not; only then are they deduplicated by address.
 */
function uniqueByAddress(endpoints: readonly Endpoint[]): readonly Endpoint[] {
  const sorted = sortDistinctEndpoints([...endpoints]);
  if (sorted) return sorted;
  const byAddress = new Map<string, Endpoint>();
  for (const ep of endpoints) byAddress.set(ep.address, ep);
  return sortEndpoints([...byAddress.values()]);
}

/** Mutable, validated view of the cluster. Invalid objects are kept out and reported; the rest still works. */
export class ClusterState {
  private readonly services = new Map<string, readonly ServicePort[]>();
  private readonly slices = new Map<string, EndpointSliceInfo>();
  /** service ns/name -> slice keys */
  private readonly slicesByService = new Map<string, Set<string>>();
  private readonly nodes = new Map<string, NodeInfo>();
  private readonly diagnosticsByObject = new Map<string, Diagnostic[]>();
  private readonly endpointCache = new Map<string, Map<string, readonly Endpoint[]>>();
  /** {@link servicePorts} per family, until the next Service change. */
  private readonly sortedPorts = new Map<IPFamily, readonly ServicePort[]>();
  /**
   * Per ServicePort object, the answer of {@link endpoints} and the service's cache entry it came from: valid
   * while that entry is still the service's (any slice change replaces or drops it). Saves building two
   * string keys per lookup, which a compile does twice for each of tens of thousands of ports.
   */
  private readonly portEndpoints = new WeakMap<
    ServicePort,
    { svcKey: string; byPort: Map<string, readonly Endpoint[]>; endpoints: readonly Endpoint[] }
  >();
  /** healthCheckNodePort -> the service (`ns/name`) whose health check server it is, and the reverse. */
  private readonly healthCheckHolders = new Map<number, string>();
  private readonly healthCheckPorts = new Map<string, number>();
  /**
   * What the API server allocates once per cluster — a cluster IP's port and protocol, a node port — and the
   * services (`ns/name`) that claim it. When two do, the first by namespace/name gets it, whatever the order
   * they came in (see {@link effectivePorts}).
   */
  private readonly claims = new Map<string, Set<string>>();
  /** Per service: its ports before conflicts are resolved, its own diagnostics and its source. */
  private readonly claimed = new Map<
    string,
    { ports: readonly ServicePort[]; diagnostics: readonly Diagnostic[]; source: string | undefined }
  >();
  /** Services whose rules changed because another service took or released a port they share. */
  private readonly affected = new Set<string>();

  /** Adds or replaces a Service. Returns its diagnostics. */
  upsertService(obj: ServiceObject, opts: { source?: string } = {}): Diagnostic[] {
    const res = convertService(obj, opts);
    const key = nsName(obj.metadata?.namespace || 'default', obj.metadata?.name ?? '');
    const diagnostics = [...res.diagnostics];
    const ports = this.claimHealthCheck(key, res.ports, diagnostics, opts.source);
    const touched = this.releaseClaims(key);
    this.claimed.set(key, { ports, diagnostics, source: opts.source });
    for (const c of claimKeys(ports)) {
      touched.add(c);
      let holders = this.claims.get(c);
      if (!holders) this.claims.set(c, (holders = new Set()));
      holders.add(key);
    }
    this.resolve(key);
    this.resolveOthers(key, touched);
    this.sortedPorts.clear();
    return this.diagnosticsByObject.get(`Service/${key}`) ?? diagnostics;
  }

  /**
   * The services (`ns/name`) whose ports changed since the last call because another service's change took or
   * gave back a cluster IP port or a node port they share: a controller recompiles them too.
   */
  takeAffectedServices(): string[] {
    const out = [...this.affected].sort();
    this.affected.clear();
    return out;
  }

  /** Drops a service's claims; returns the claim keys it held. */
  private releaseClaims(key: string): Set<string> {
    const touched = new Set<string>();
    const before = this.claimed.get(key);
    if (!before) return touched;
    for (const c of claimKeys(before.ports)) {
      touched.add(c);
      const holders = this.claims.get(c);
      holders?.delete(key);
      if (holders?.size === 0) this.claims.delete(c);
    }
    this.claimed.delete(key);
    return touched;
  }

  /** Re-resolves the other holders of `touched` claims; those whose ports changed are {@link affected}. */
  private resolveOthers(key: string, touched: ReadonlySet<string>): void {
    const others = new Set<string>();
    for (const c of touched) for (const h of this.claims.get(c) ?? []) if (h !== key) others.add(h);
    for (const other of others) {
      const before = portsSignature(this.services.get(other) ?? []);
      this.resolve(other);
      if (portsSignature(this.services.get(other) ?? []) !== before) this.affected.add(other);
    }
  }

  /** The first holder (by namespace/name) of a claim. */
  private winner(claim: string): string | undefined {
    let first: string | undefined;
    for (const h of this.claims.get(claim) ?? []) if (first === undefined || h < first) first = h;
    return first;
  }

  /**
   * A service's ports as programmed: a port whose cluster IP, port and protocol an earlier service (by
   * namespace/name) holds is left out; a node port an earlier service holds is left off the port (its cluster
   * IP part stays). Each with an error naming the holder.
   */
  private resolve(key: string): void {
    const c = this.claimed.get(key);
    if (!c) return;
    const [namespace = '', name = ''] = key.split('/');
    const conflicts: Diagnostic[] = [];
    const error = (field: string, message: string): void => {
      conflicts.push({
        severity: Severity.Error,
        object: { kind: Kind.Service, namespace, name },
        field,
        message,
        ...(c.source ? { source: c.source } : {}),
      });
    };
    const out: ServicePort[] = [];
    const index = new Map<string, number>();
    for (const p of c.ports) {
      const i = index.get(p.family) ?? 0;
      index.set(p.family, i + 1);
      const ipHolder = this.winner(clusterIPClaim(p));
      if (ipHolder !== undefined && ipHolder !== key) {
        error(
          `spec.ports[${i}].port`,
          `${p.clusterIP} port ${p.port}/${p.protocol} is also Service ${ipHolder}'s, which comes first by namespace/name: this port is not programmed`,
        );
        continue;
      }
      const npHolder = p.nodePort !== 0 ? this.winner(nodePortClaim(p)) : undefined;
      if (npHolder !== undefined && npHolder !== key) {
        error(
          `spec.ports[${i}].nodePort`,
          `${p.nodePort} is also a node port of Service ${npHolder}, which comes first by namespace/name: not programmed for this service`,
        );
        out.push({ ...p, nodePort: 0 });
        continue;
      }
      out.push(p);
    }
    this.services.set(key, conflicts.length === 0 ? c.ports : out);
    this.diagnosticsByObject.set(
      `Service/${key}`,
      conflicts.length === 0 ? [...c.diagnostics] : [...c.diagnostics, ...conflicts],
    );
  }

  /**
   * One health check server per port: a service whose healthCheckNodePort another service already holds (the
   * API server never allocates one twice; a manifests directory may) keeps its rules but gets no server, with an
   * error on the field. It gets one when it is upserted again after the holder let the port go.
   */
  private claimHealthCheck(
    key: string,
    ports: ServicePort[],
    diagnostics: Diagnostic[],
    source: string | undefined,
  ): ServicePort[] {
    this.releaseHealthCheck(key);
    const port = ports.find((p) => p.servesHealthCheck)?.healthCheckNodePort;
    if (port === undefined) return ports;
    const holder = this.healthCheckHolders.get(port);
    if (holder === undefined) {
      this.healthCheckHolders.set(port, key);
      this.healthCheckPorts.set(key, port);
      return ports;
    }
    const [namespace = '', name = ''] = key.split('/');
    diagnostics.push({
      severity: Severity.Error,
      object: { kind: Kind.Service, namespace, name },
      field: 'spec.healthCheckNodePort',
      message: `${port} is already the health check node port of Service ${holder}: no health check server for this service`,
      ...(source ? { source } : {}),
    });
    return ports.map((p) => {
      if (!p.servesHealthCheck) return p;
      const { servesHealthCheck: _, ...rest } = p;
      return rest;
    });
  }

  private releaseHealthCheck(key: string): void {
    const port = this.healthCheckPorts.get(key);
    if (port === undefined) return;
    this.healthCheckPorts.delete(key);
    this.healthCheckHolders.delete(port);
  }

  deleteService(namespace: string, name: string): void {
    const key = nsName(namespace, name);
    this.releaseHealthCheck(key);
    const touched = this.releaseClaims(key);
    this.services.delete(key);
    this.resolveOthers(key, touched);
    this.sortedPorts.clear();
    this.diagnosticsByObject.delete(`Service/${key}`);
  }

  upsertEndpointSlice(obj: EndpointSliceObject, opts: { source?: string } = {}): Diagnostic[] {
    const namespace = obj.metadata?.namespace || 'default';
    const key = nsName(namespace, obj.metadata?.name ?? '');
    this.removeSlice(key);
    const res = convertEndpointSlice(obj, opts);
    this.diagnosticsByObject.set(`EndpointSlice/${key}`, res.diagnostics);
    if (res.slice) {
      this.slices.set(key, res.slice);
      const svcKey = nsName(namespace, res.slice.serviceName);
      let set = this.slicesByService.get(svcKey);
      if (!set) this.slicesByService.set(svcKey, (set = new Set()));
      set.add(key);
      this.endpointCache.delete(svcKey);
    }
    return res.diagnostics;
  }

  /** The service (`namespace/name`) a held slice belongs to. */
  sliceService(namespace: string, name: string): string | undefined {
    const s = this.slices.get(nsName(namespace, name));
    return s ? nsName(s.namespace, s.serviceName) : undefined;
  }

  deleteEndpointSlice(namespace: string, name: string): void {
    const key = nsName(namespace, name);
    this.removeSlice(key);
    this.diagnosticsByObject.delete(`EndpointSlice/${key}`);
  }

  private removeSlice(key: string): void {
    const old = this.slices.get(key);
    if (!old) return;
    this.slices.delete(key);
    const svcKey = nsName(old.namespace, old.serviceName);
    this.slicesByService.get(svcKey)?.delete(key);
    this.endpointCache.delete(svcKey);
  }

  upsertNode(obj: NodeObject, opts: { source?: string } = {}): Diagnostic[] {
    const res = convertNode(obj, opts);
    const name = obj.metadata?.name ?? '';
    if (res.node) this.nodes.set(name, res.node);
    else this.nodes.delete(name);
    this.diagnosticsByObject.set(`Node/${name}`, res.diagnostics);
    return res.diagnostics;
  }

  deleteNode(name: string): void {
    this.nodes.delete(name);
    this.diagnosticsByObject.delete(`Node/${name}`);
  }

  node(name: string): NodeInfo | undefined {
    return this.nodes.get(name);
  }

  nodeNames(): string[] {
    return [...this.nodes.keys()].sort();
  }

  /** Every valid service port of a family, in canonical order: by `name/PROTOCOL` (the compilers' key order). */
  servicePorts(family: IPFamily): ServicePort[] {
    let sorted = this.sortedPorts.get(family);
    if (!sorted) {
      const out: { key: string; port: ServicePort }[] = [];
      for (const ports of this.services.values())
        for (const p of ports) if (p.family === family) out.push({ key: `${p.name}/${p.protocol}`, port: p });
      sorted = out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((e) => e.port);
      this.sortedPorts.set(family, sorted);
    }
    // A copy: the caller may change its array.
    return [...sorted];
  }

  /**
   * Endpoints of a service port, merged over the service's slices (in slice-name order; a later slice's
   * copy of the same ip:port wins, as in kube-proxy), sorted by address.
   */
  endpoints(port: ServicePort): readonly Endpoint[] {
    const hit = this.portEndpoints.get(port);
    if (hit !== undefined && this.endpointCache.get(hit.svcKey) === hit.byPort) return hit.endpoints;
    const svcKey = nsName(port.service.namespace, port.service.name);
    const byPort = this.mergedPorts(svcKey);
    const endpoints = byPort.get(servicePortKey(port)) ?? [];
    this.portEndpoints.set(port, { svcKey, byPort, endpoints });
    return endpoints;
  }

  /** A service's endpoints by port key, merged over its slices (cached until one of them changes). */
  private mergedPorts(svcKey: string): Map<string, readonly Endpoint[]> {
    let byPort = this.endpointCache.get(svcKey);
    if (!byPort) {
      byPort = this.mergeSlices(svcKey);
      this.endpointCache.set(svcKey, byPort);
    }
    return byPort;
  }

  private mergeSlices(svcKey: string): Map<string, readonly Endpoint[]> {
    const merged = new Map<string, Endpoint[]>();
    const keys = [...(this.slicesByService.get(svcKey) ?? [])].sort();
    for (const key of keys) {
      const slice = this.slices.get(key);
      if (!slice) continue;
      for (const sp of slice.ports) {
        const k = servicePortKey({
          service: { namespace: slice.namespace, name: slice.serviceName },
          portName: sp.portName,
          protocol: sp.protocol,
          family: sp.family,
        });
        let l = merged.get(k);
        if (!l) merged.set(k, (l = []));
        for (const ep of sp.endpoints) l.push(ep);
      }
    }
    const out = new Map<string, readonly Endpoint[]>();
    for (const [k, l] of merged) out.set(k, uniqueByAddress(l));
    return out;
  }

  /** Every diagnostic of every object currently held, sorted by object. */
  diagnostics(): Diagnostic[] {
    return [...this.diagnosticsByObject.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap(([, d]) => d);
  }
}
