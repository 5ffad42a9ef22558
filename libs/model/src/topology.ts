// Which endpoints a node uses for a service port: kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go).
// Decided once here; every backend only renders the result.
import type { Endpoint } from './endpoints.js';
import { usesClusterEndpoints, usesLocalEndpoints, type ServicePort } from './service.js';

export const TopologyMode = { None: '', PreferSameZone: 'PreferSameZone', PreferSameNode: 'PreferSameNode' } as const;
export type TopologyMode = (typeof TopologyMode)[keyof typeof TopologyMode];

export interface NodeTopology {
  readonly name: string;
  readonly zone: string;
}

export interface TopologyOptions {
  /** Feature gate PreferSameTrafficDistribution (node hints). Default true, as in Kubernetes 1.34. */
  readonly preferSameNodeHints?: boolean;
}

export interface CategorizedEndpoints {
  /** Endpoints for Cluster traffic policy (topology applied; terminating fallback); empty if unused. */
  readonly cluster: readonly Endpoint[];
  /** Endpoints for Local traffic policy (ready, else serving+terminating, on this node); empty if unused. */
  readonly local: readonly Endpoint[];
  /** Union of the two: every endpoint this node may DNAT to. Sorted by address. */
  readonly allReachable: readonly Endpoint[];
  /** True if the service has usable endpoints anywhere in the cluster. */
  readonly hasAnyEndpoints: boolean;
  readonly topologyMode: TopologyMode;
}

export function isLocalEndpoint(ep: Endpoint, node: NodeTopology): boolean {
  return ep.nodeName !== '' && ep.nodeName === node.name;
}

/** kube-proxy's topologyModeFromHints: hints are used only when every ready endpoint carries them. */
export function topologyModeFromHints(
  endpoints: readonly Endpoint[],
  node: NodeTopology,
  opts: TopologyOptions = {},
): TopologyMode {
  let hasForNode = false;
  let allNodeHints = true;
  let hasForZone = false;
  let allZoneHints = true;
  for (const ep of endpoints) {
    if (!ep.ready) continue;
    if (ep.nodeHints.length === 0) allNodeHints = false;
    else if (ep.nodeHints.includes(node.name)) hasForNode = true;
    if (ep.zoneHints.length === 0) allZoneHints = false;
    else if (ep.zoneHints.includes(node.zone)) hasForZone = true;
  }
  if ((opts.preferSameNodeHints ?? true) && allNodeHints && hasForNode) return TopologyMode.PreferSameNode;
  if (allZoneHints && hasForZone) return TopologyMode.PreferSameZone;
  return TopologyMode.None;
}

function availableForTopology(ep: Endpoint, mode: TopologyMode, node: NodeTopology): boolean {
  switch (mode) {
    case TopologyMode.None:
      return true;
    case TopologyMode.PreferSameNode:
      return ep.nodeHints.includes(node.name);
    case TopologyMode.PreferSameZone:
      return ep.zoneHints.includes(node.zone);
  }
}

const servingTerminating = (ep: Endpoint): boolean => ep.serving && ep.terminating;

export function categorizeEndpoints(
  endpoints: readonly Endpoint[],
  svc: ServicePort,
  node: NodeTopology,
  opts: TopologyOptions = {},
): CategorizedEndpoints {
  let cluster: readonly Endpoint[] = [];
  let local: readonly Endpoint[] = [];
  let hasAnyEndpoints = false;
  let topologyMode: TopologyMode = TopologyMode.None;
  let localUsesTerminating = false;

  if (usesClusterEndpoints(svc)) {
    topologyMode = topologyModeFromHints(endpoints, node, opts);
    cluster = endpoints.filter((ep) => ep.ready && availableForTopology(ep, topologyMode, node));
    // No ready endpoint anywhere (topology already fell back if its zone had none): use serving+terminating.
    if (cluster.length === 0) cluster = endpoints.filter(servingTerminating);
    if (cluster.length > 0) hasAnyEndpoints = true;
  }
  if (!usesLocalEndpoints(svc)) return { cluster, local, allReachable: cluster, hasAnyEndpoints, topologyMode };

  let localReady = false;
  let localTerminating = false;
  for (const ep of endpoints) {
    if (ep.ready) {
      hasAnyEndpoints = true;
      if (isLocalEndpoint(ep, node)) localReady = true;
    } else if (servingTerminating(ep)) {
      hasAnyEndpoints = true;
      if (isLocalEndpoint(ep, node)) localTerminating = true;
    }
  }
  if (localReady) local = endpoints.filter((ep) => isLocalEndpoint(ep, node) && ep.ready);
  else if (localTerminating) {
    localUsesTerminating = true;
    local = endpoints.filter((ep) => isLocalEndpoint(ep, node) && servingTerminating(ep));
  }
  if (!usesClusterEndpoints(svc)) return { cluster, local, allReachable: local, hasAnyEndpoints, topologyMode };
  if (topologyMode === TopologyMode.None && !localUsesTerminating) {
    // cluster holds every ready endpoint, local only ready ones: cluster is a superset.
    return { cluster, local, allReachable: cluster, hasAnyEndpoints, topologyMode };
  }
  const merged = new Map<string, Endpoint>();
  for (const ep of [...cluster, ...local]) merged.set(ep.address, ep);
  const allReachable = sortEndpoints([...merged.values()]);
  return { cluster, local, allReachable, hasAnyEndpoints, topologyMode };
}

/** Endpoint order used everywhere: by IP (numerically within a family), then port. */
export function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.ip !== b.ip) return compareIPs(a.ip, b.ip);
  return a.port - b.port;
}

/**
 * Sorts in place in {@link compareEndpoints} order (stable) and returns the array; each address's sort key is
 * computed once rather than on every comparison.
 */
export function sortEndpoints(endpoints: Endpoint[]): Endpoint[] {
  sortDecorated(endpoints);
  return endpoints;
}

/**
 * {@link sortEndpoints}, or undefined (and the array left in an unspecified order) if two of the endpoints
 * compare equal (the same address twice).
 */
export function sortDistinctEndpoints(endpoints: Endpoint[]): Endpoint[] | undefined {
  return sortDecorated(endpoints) ? endpoints : undefined;
}

const compareDecorated = (
  a: { key: number | string; ep: Endpoint },
  b: { key: number | string; ep: Endpoint },
): number => (a.ep.ip !== b.ep.ip ? compareSortKeys(a.key, b.key) : a.ep.port - b.ep.port);

/** Sorts in compareEndpoints order, each sort key computed once; returns whether no two endpoints compare equal. */
function sortDecorated(endpoints: Endpoint[]): boolean {
  if (endpoints.length < 2) return true;
  const decorated = endpoints.map((ep) => ({ key: ipSortKey(ep.ip), ep }));
  decorated.sort(compareDecorated);
  let distinct = true;
  decorated.forEach((d, i) => {
    endpoints[i] = d.ep;
    if (i > 0 && compareDecorated(decorated[i - 1] ?? d, d) === 0) distinct = false;
  });
  return distinct;
}

function compareIPs(a: string, b: string): number {
  return compareSortKeys(ipSortKey(a), ipSortKey(b));
}

/** Compares sort keys as the zero-padded strings they stand for (numbers are dotted quads, see ipSortKey). */
function compareSortKeys(a: number | string, b: number | string): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = keyText(a);
  const y = keyText(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The number the zero-padded octets of `ip` spell, if `ip` is four dot-separated groups of 1-3 digits; else -1. */
function dottedQuadKey(ip: string): number {
  let key = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (++digits > 3) return -1;
      octet = octet * 10 + (c - 48);
    } else if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      key = key * 1000 + octet;
      octet = 0;
      digits = 0;
    } else return -1;
  }
  return digits === 0 || dots !== 3 ? -1 : key * 1000 + octet;
}

function keyText(key: number | string): string {
  if (typeof key === 'string') return key;
  return [1e9, 1e6, 1e3, 1].map((d) => String(Math.floor(key / d) % 1000).padStart(3, '0')).join('.');
}

/**
 * Sort key of an IP address: its octets zero-padded to three digits (IPv4) or `~` and its words zero-padded to
 * four (IPv6, after every IPv4 address). A dotted quad's key is kept as the number those digits spell, which
 * orders the same as the string and is cheaper to build and compare.
 */
function ipSortKey(ip: string): number | string {
  const quad = dottedQuadKey(ip);
  if (quad >= 0) return quad;
  if (!ip.includes(':'))
    return ip
      .split('.')
      .map((o) => o.padStart(3, '0'))
      .join('.');
  // Canonical IPv6: expand "::" and pad words.
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return `~${words.map((w) => w.padStart(4, '0')).join(':')}`;
}
