// Node + cluster state + options -> the node's IPVS rule set, with kube-proxy's semantics
// (pkg/proxy/ipvs/proxier.go syncProxyRules, syncEndpoint, writeIptablesRules): virtual servers with their real
// servers, the ipsets, the VIPs bound to kube-ipvs0 and the companion iptables rules.
//
// The rule set splits into three kinds of owners, so that the controller can compile and share each once:
// - the node base: the companion iptables chains and jumps and the ipset declarations. Its match-set rules are
//   always present: kube-proxy leaves a rule out while its set is empty, which matches no packet either, and
//   writing it unconditionally keeps the base independent of the services.
// - each service port: its virtual servers, its members of the ipsets (ipset.entries fragments keyed
//   `SET/ns/name:port/PROTOCOL`) and its KUBE-IPVS-OUT-FILTER rules (an iptables.rules fragment), in parts that
//   depend on the node differently ({@link ipvsServicePortParts}). A set is the union of its fragments: the same
//   member may stand in two (two services reaching the same pod port both list it in KUBE-LOOP-BACK), and it stays
//   in the kernel's set while any fragment holds it.
// - each bound address: the ipvs.address object and its KUBE-IPVS-IPS member. Several service ports share an
//   address (every port of a service its cluster IP; services their externalIPs or LB IPs), and a rule set holds
//   an object once: a port claims its addresses ({@link ipvsAddressClaims}) and an address is compiled while any
//   port claims it ({@link compileIpvsAddress}).
//
// A service port without endpoints keeps its virtual servers, with no real server: IPVS answers a connection to
// them with an ICMP port unreachable (ip_vs_leave), which is how kube-proxy's IPVS mode rejects it; and
// KUBE-IPVS-FILTER rejects new connections to the other ports of the bound addresses.
import { conntrackObjects } from '../conntrack.js';
import { serviceHealthChecks } from '../healthcheck.js';
import { policyDependence } from '../policy-nodes.js';
import {
  IPVSScheduler,
  Protocol,
  categorizeEndpoints,
  cidrContains,
  isLocalEndpoint,
  joinHostPort,
  type ClusterState,
  type Endpoint,
  type ServicePort,
} from '@kpx/model';
import { ProxyMode } from '@kpx/proto';
import { NodeNotFoundError } from '../errors.js';
import { RuleBuilder, comment } from '../iptables/builder.js';
import { portOwner } from '../iptables/compile.js';
import {
  RuleKind,
  Table,
  objectId,
  sortObjects,
  type IpsetSetObject,
  type IpvsRealServer,
  type IpvsServiceObject,
  type NodeRuleSet,
  type RuleObject,
} from '../ruleset.js';
import { makeIpvsContext, type IpvsContext } from './context.js';
import { DummyInterface, IPSETS, IpsetName, IpsetType, IpvsChain, IpvsFlag, ipsetInfo, ipsetName } from './names.js';
import type { IpvsOptions } from './options.js';

export const IpvsMode = ProxyMode.IPVS;

/** Default hash set options kube-proxy creates its sets with; bitmap:port sets get the whole port range. */
const HashSize = 1024;
const MaxElem = 65536;
const PortRange = '0-65535';

// ---------------------------------------------------------------------------------------------------------------
// Node base: ipset declarations, companion chains, jumps.

function ipsetDeclarations(ctx: IpvsContext): IpsetSetObject[] {
  return IPSETS.map((s) => {
    const name = ipsetName(s.name, ctx.isIPv6);
    const bitmap = s.type === IpsetType.BitmapPort;
    return {
      kind: RuleKind.IpsetSet,
      key: name,
      name,
      type: s.type,
      family: bitmap ? '' : ctx.isIPv6 ? 'inet6' : 'inet',
      comment: s.comment,
      hashSize: bitmap ? 0 : HashSize,
      maxElem: bitmap ? 0 : MaxElem,
      portRange: bitmap ? PortRange : '',
      entries: [],
    };
  });
}

/** Jumps from builtin chains in the order they end up on a fresh node (kube-proxy prepends each in turn). */
function writeJumps(b: RuleBuilder): void {
  const j = (table: Table, chain: string, target: string, text: string): void =>
    b.jump(table, chain, target, `${comment(text)} -j ${target}`);
  j(Table.Filter, 'INPUT', IpvsChain.IpvsFilter, 'kubernetes ipvs access filter');
  j(Table.Filter, 'INPUT', IpvsChain.ProxyFirewall, 'kube-proxy firewall rules');
  j(Table.Filter, 'INPUT', IpvsChain.NodePort, 'kubernetes health check rules');
  j(Table.Filter, 'FORWARD', IpvsChain.ProxyFirewall, 'kube-proxy firewall rules');
  j(Table.Filter, 'FORWARD', IpvsChain.Forward, 'kubernetes forwarding rules');
  j(Table.Filter, 'OUTPUT', IpvsChain.IpvsOutFilter, 'kubernetes ipvs access filter');
  j(Table.Nat, 'PREROUTING', IpvsChain.Services, 'kubernetes service portals');
  j(Table.Nat, 'OUTPUT', IpvsChain.Services, 'kubernetes service portals');
  j(Table.Nat, 'POSTROUTING', IpvsChain.Postrouting, 'kubernetes postrouting rules');
}

/** `-m comment --comment "<the set's comment>" -m set --match-set SET` */
function matchSet(ctx: IpvsContext, set: IpsetName, withComment = true): string {
  const text = `-m set --match-set ${ipsetName(set, ctx.isIPv6)}`;
  return withComment ? `${comment(ipsetInfo(set).comment)} ${text}` : text;
}

/** kube-proxy's ipsetWithIptablesChain rules, in its order (NodePort local sets before the others). */
function writeSetJumps(b: RuleBuilder, ctx: IpvsContext): void {
  const MASQ = `-j ${IpvsChain.MarkMasq}`;
  b.nat(IpvsChain.Postrouting, matchSet(ctx, IpsetName.LoopBack), 'dst,dst,src -j MASQUERADE');
  b.nat(IpvsChain.Services, matchSet(ctx, IpsetName.LoadBalancer), `dst,dst -j ${IpvsChain.LoadBalancer}`);
  b.nat(IpvsChain.LoadBalancer, matchSet(ctx, IpsetName.LoadBalancerLocal), 'dst,dst -j RETURN');
  const nodePortSets: [string, IpsetName, IpsetName, string][] = [
    ['tcp', IpsetName.NodePortLocalTCP, IpsetName.NodePortTCP, 'dst'],
    ['udp', IpsetName.NodePortLocalUDP, IpsetName.NodePortUDP, 'dst'],
    ['sctp', IpsetName.NodePortLocalSCTP, IpsetName.NodePortSCTP, 'dst,dst'],
  ];
  for (const [proto, local, all, dir] of nodePortSets) {
    b.nat(IpvsChain.NodePort, `-p ${proto}`, matchSet(ctx, local), dir, '-j RETURN');
    b.nat(IpvsChain.NodePort, `-p ${proto}`, matchSet(ctx, all), dir, MASQ);
  }
  b.filter(
    IpvsChain.ProxyFirewall,
    matchSet(ctx, IpsetName.LoadBalancerFW),
    `dst,dst -j ${IpvsChain.SourceRangesFirewall}`,
  );
  b.filter(IpvsChain.SourceRangesFirewall, matchSet(ctx, IpsetName.LoadBalancerSourceCIDR), 'dst,dst,src -j RETURN');
  b.filter(IpvsChain.SourceRangesFirewall, matchSet(ctx, IpsetName.LoadBalancerSourceIP), 'dst,dst,src -j RETURN');
}

/** KUBE-SERVICES after the set jumps: cluster IP masquerade, external IPs, the NodePort and accept rules. */
function writeServicesRules(b: RuleBuilder, ctx: IpvsContext): void {
  const MASQ = `-j ${IpvsChain.MarkMasq}`;
  const clusterIP = matchSet(ctx, IpsetName.ClusterIP);
  if (ctx.opts.masqueradeAll) b.nat(IpvsChain.Services, clusterIP, 'dst,dst', MASQ);
  else if (ctx.localDetector) b.nat(IpvsChain.Services, clusterIP, 'dst,dst', ctx.localDetector.ifNotLocal, MASQ);
  // Without a local traffic detector: masquerade node traffic whose source is a VIP (it picks kube-ipvs0's).
  else b.nat(IpvsChain.Services, clusterIP, 'src,dst', MASQ);
  // Traffic to external IPs from off the machine (not bridged, not local) and to external IPs that are local.
  const acceptExternal = (set: IpsetName): void => {
    b.nat(
      IpvsChain.Services,
      matchSet(ctx, set),
      'dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT',
    );
    b.nat(IpvsChain.Services, matchSet(ctx, set), 'dst,dst -m addrtype --dst-type LOCAL -j ACCEPT');
  };
  b.nat(IpvsChain.Services, matchSet(ctx, IpsetName.ExternalIP), 'dst,dst', MASQ);
  acceptExternal(IpsetName.ExternalIP);
  acceptExternal(IpsetName.ExternalIPLocal);
  b.nat(IpvsChain.Services, `-m addrtype --dst-type LOCAL -j ${IpvsChain.NodePort}`);
  b.nat(IpvsChain.LoadBalancer, MASQ);
  b.filter(IpvsChain.SourceRangesFirewall, '-j DROP');
  // Accept traffic to virtual services in case other rules would drop it (kube-proxy's acceptIPVSTraffic).
  b.nat(IpvsChain.Services, matchSet(ctx, IpsetName.ClusterIP, false), 'dst,dst -j ACCEPT');
  b.nat(IpvsChain.Services, matchSet(ctx, IpsetName.LoadBalancer, false), 'dst,dst -j ACCEPT');
}

function writeFilterRules(b: RuleBuilder, ctx: IpvsContext): void {
  const m = ctx.masqMark;
  b.filter(IpvsChain.Forward, comment('kubernetes forwarding rules'), `-m mark --mark ${m}/${m}`, '-j ACCEPT');
  b.filter(
    IpvsChain.Forward,
    comment('kubernetes forwarding conntrack rule'),
    '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );
  b.filter(IpvsChain.NodePort, matchSet(ctx, IpsetName.HealthCheckNodePort), 'dst -j ACCEPT');
  // No access to host ports through the VIPs on kube-ipvs0 (kubernetes#72236), only to the services themselves.
  for (const set of [IpsetName.LoadBalancer, IpsetName.ClusterIP, IpsetName.ExternalIP, IpsetName.ExternalIPLocal]) {
    b.filter(IpvsChain.IpvsFilter, matchSet(ctx, set, false), 'dst,dst -j RETURN');
  }
  b.filter(IpvsChain.IpvsFilter, matchSet(ctx, IpsetName.HealthCheckNodePort, false), 'dst -j RETURN');
  b.filter(
    IpvsChain.IpvsFilter,
    '-m conntrack --ctstate NEW',
    matchSet(ctx, IpsetName.IpvsIPs, false),
    'dst -j REJECT',
  );
}

function writePostrouting(b: RuleBuilder, ctx: IpvsContext): void {
  const m = ctx.masqMark;
  b.nat(IpvsChain.Postrouting, `-m mark ! --mark ${m}/${m} -j RETURN`);
  b.nat(IpvsChain.Postrouting, `-j MARK --xor-mark ${m}`);
  b.nat(
    IpvsChain.Postrouting,
    comment('kubernetes service traffic requiring SNAT'),
    '-j MASQUERADE',
    ctx.opts.randomFully && '--random-fully',
  );
  b.nat(IpvsChain.MarkMasq, `-j MARK --or-mark ${m}`);
}

/** The node's own objects: ipset declarations, companion chains with their fixed rules, jumps. */
export function compileIpvsNodeBase(ctx: IpvsContext): RuleObject[] {
  const b = new RuleBuilder();
  for (const c of [
    IpvsChain.Services,
    IpvsChain.Postrouting,
    IpvsChain.NodePort,
    IpvsChain.LoadBalancer,
    IpvsChain.MarkMasq,
  ])
    b.chain(Table.Nat, c);
  for (const c of [
    IpvsChain.Forward,
    IpvsChain.NodePort,
    IpvsChain.ProxyFirewall,
    IpvsChain.SourceRangesFirewall,
    IpvsChain.IpvsFilter,
    IpvsChain.IpvsOutFilter,
  ]) {
    b.chain(Table.Filter, c);
  }
  writeJumps(b);
  // Dismiss connections from localhost early.
  b.nat(IpvsChain.Services, `-s ${ctx.isIPv6 ? '::1/128' : '127.0.0.0/8'} -j RETURN`);
  writeSetJumps(b, ctx);
  writeServicesRules(b, ctx);
  writeFilterRules(b, ctx);
  writePostrouting(b, ctx);
  return sortObjects([...b.unsortedObjects(), ...ipsetDeclarations(ctx)]);
}

// ---------------------------------------------------------------------------------------------------------------
// Service ports.

/** Chains owned by the node to which a service port adds rules. */
const SHARED_CHAINS: ReadonlySet<string> = new Set([`${Table.Filter}/${IpvsChain.IpvsOutFilter}`]);

/** Key of an ipvs.service: `PROTOCOL/address:port`, IPv6 in brackets. */
export function ipvsServiceKey(protocol: string, address: string, port: number): string {
  return `${protocol}/${joinHostPort(address, port)}`;
}

const realServers = (endpoints: readonly Endpoint[]): IpvsRealServer[] =>
  endpoints.map((ep) => ({ address: ep.ip, port: ep.port, weight: 1 }));

/** Builds one service port's objects. */
class PortBuilder {
  private readonly services = new Map<string, IpvsServiceObject>();
  private readonly entries = new Map<string, Set<string>>();
  readonly rules: RuleBuilder;

  constructor(
    private readonly ctx: IpvsContext,
    private readonly svc: ServicePort,
    private readonly owner: string,
  ) {
    this.rules = new RuleBuilder(SHARED_CHAINS, owner);
  }

  /** A virtual server (the first one wins when an address is listed twice). */
  virtualServer(address: string, port: number, endpoints: readonly Endpoint[]): void {
    const key = ipvsServiceKey(this.svc.protocol, address, port);
    if (this.services.has(key)) return;
    const scheduler = this.ctx.opts.scheduler || IPVSScheduler.RoundRobin;
    const affinity = this.svc.affinityTimeoutSeconds > 0;
    // mh needs the source-hash flag to hash source ports too (kube-proxy sets it for mh).
    const flags =
      (affinity ? IpvsFlag.Persistent : 0) | (scheduler === IPVSScheduler.MaglevHashing ? IpvsFlag.SourceHash : 0);
    this.services.set(key, {
      kind: RuleKind.IpvsService,
      key,
      protocol: this.svc.protocol,
      address,
      port,
      scheduler,
      flags,
      timeoutSeconds: affinity ? this.svc.affinityTimeoutSeconds : 0,
      realServers: realServers(endpoints),
    });
  }

  entry(set: IpsetName, entry: string): void {
    let s = this.entries.get(set);
    if (!s) this.entries.set(set, (s = new Set()));
    s.add(entry);
  }

  objects(): RuleObject[] {
    const out: RuleObject[] = [...this.services.values(), ...this.rules.unsortedObjects()];
    for (const [set, entries] of this.entries) {
      const name = ipsetName(set as IpsetName, this.ctx.isIPv6);
      out.push({ kind: RuleKind.IpsetEntries, key: `${name}/${this.owner}`, set: name, entries: [...entries].sort() });
    }
    return out;
  }
}

/** `ip,proto:port`: a hash:ip,port member. */
const ipPort = (ip: string, proto: string, port: number): string => `${ip},${proto}:${port}`;

/** Endpoints of a port on a node, with kube-proxy's policy applied. */
interface PortEndpoints {
  /** For the cluster IP (iTP). */
  readonly internal: readonly Endpoint[];
  /** For NodePorts, externalIPs and LB IPs (eTP). */
  readonly external: readonly Endpoint[];
}

function portEndpoints(ctx: IpvsContext, svc: ServicePort, endpoints: readonly Endpoint[]): PortEndpoints {
  const cat = categorizeEndpoints(endpoints, svc, ctx.node, ctx.opts.topology);
  // kube-proxy's syncEndpoint: a Local policy uses the local endpoints, or the cluster ones when there are none
  // (kubernetes#97081: pods on the node can still reach the service).
  const pick = (onlyLocal: boolean): readonly Endpoint[] =>
    onlyLocal && cat.local.length > 0 ? cat.local : cat.cluster;
  return { internal: pick(svc.internalPolicyLocal), external: pick(svc.externalPolicyLocal) };
}

/** The VIP part: virtual servers and members of the cluster IP, externalIPs and LB IPs; the health check port. */
function writeVipPart(b: PortBuilder, ctx: IpvsContext, svc: ServicePort, eps: PortEndpoints): void {
  const proto = svc.protocol.toLowerCase();
  b.entry(IpsetName.ClusterIP, ipPort(svc.clusterIP, proto, svc.port));
  b.virtualServer(svc.clusterIP, svc.port, eps.internal);

  for (const ip of svc.externalIPs) {
    b.entry(svc.externalPolicyLocal ? IpsetName.ExternalIPLocal : IpsetName.ExternalIP, ipPort(ip, proto, svc.port));
    b.virtualServer(ip, svc.port, eps.external);
  }

  for (const ip of svc.loadBalancerVIPs) {
    const e = ipPort(ip, proto, svc.port);
    b.entry(IpsetName.LoadBalancer, e);
    if (svc.externalPolicyLocal) b.entry(IpsetName.LoadBalancerLocal, e);
    if (svc.loadBalancerSourceRanges.length > 0) {
      b.entry(IpsetName.LoadBalancerFW, e);
      let allowFromNode = false;
      for (const cidr of svc.loadBalancerSourceRanges) {
        b.entry(IpsetName.LoadBalancerSourceCIDR, `${e},${cidr.text}`);
        if (ctx.nodeIP !== undefined && cidrContains(cidr, ctx.nodeIP)) allowFromNode = true;
      }
      // A node inside the source ranges reaches the VIP itself with the VIP as source; otherwise the node may not
      // reach the LB at all (kubernetes#119656): the source ranges cannot tell it apart on the IPVS path.
      if (allowFromNode) b.entry(IpsetName.LoadBalancerSourceIP, `${e},${ip}`);
      else
        b.rules.filter(
          IpvsChain.IpvsOutFilter,
          `-s ${ip} -m ipvs --vaddr ${ip} --vproto ${proto} --vport ${svc.port} -j DROP`,
        );
    }
    b.virtualServer(ip, svc.port, eps.external);
  }

  if (svc.healthCheckNodePort !== 0) b.entry(IpsetName.HealthCheckNodePort, String(svc.healthCheckNodePort));
}

/** The NodePort part: a virtual server per node address and the NodePort set members. */
function writeNodePortPart(b: PortBuilder, ctx: IpvsContext, svc: ServicePort, eps: PortEndpoints): void {
  if (svc.nodePort === 0 || ctx.nodePortIPs.length === 0) return;
  const proto = svc.protocol.toLowerCase();
  const sets: readonly [IpsetName, IpsetName] = {
    [Protocol.TCP]: [IpsetName.NodePortTCP, IpsetName.NodePortLocalTCP] as const,
    [Protocol.UDP]: [IpsetName.NodePortUDP, IpsetName.NodePortLocalUDP] as const,
    [Protocol.SCTP]: [IpsetName.NodePortSCTP, IpsetName.NodePortLocalSCTP] as const,
  }[svc.protocol];
  // bitmap:port sets hold the port; SCTP's hash:ip,port set holds it per node address.
  const members =
    svc.protocol === Protocol.SCTP
      ? ctx.nodePortIPs.map((ip) => ipPort(ip, proto, svc.nodePort))
      : [String(svc.nodePort)];
  for (const m of members) {
    b.entry(sets[0], m);
    if (svc.externalPolicyLocal) b.entry(sets[1], m);
  }
  for (const ip of ctx.nodePortIPs) b.virtualServer(ip, svc.nodePort, eps.external);
}

/** The hairpin part: a pod reaching itself through the service is masqueraded (endpoints on this node, any state). */
function writeLoopBackPart(b: PortBuilder, ctx: IpvsContext, svc: ServicePort, endpoints: readonly Endpoint[]): void {
  const proto = svc.protocol.toLowerCase();
  for (const ep of endpoints)
    if (isLocalEndpoint(ep, ctx.node)) b.entry(IpsetName.LoopBack, `${ipPort(ep.ip, proto, ep.port)},${ep.ip}`);
}

/** {@link compileIpvsServicePort}'s objects, unsorted. */
function servicePortObjects(ctx: IpvsContext, svc: ServicePort, endpoints: readonly Endpoint[]): RuleObject[] {
  const owner = portOwner(svc);
  const b = new PortBuilder(ctx, svc, owner);
  const eps = portEndpoints(ctx, svc, endpoints);
  writeVipPart(b, ctx, svc, eps);
  writeNodePortPart(b, ctx, svc, eps);
  writeLoopBackPart(b, ctx, svc, endpoints);
  // Not IPVS: a node duty the executor runs (as in iptables mode). The health check is the service's.
  return [...b.objects(), ...conntrackObjects(owner, svc, endpoints)];
}

/**
 * The objects one service port contributes on a node: its virtual servers, its ipset members and its
 * KUBE-IPVS-OUT-FILTER rules (not the addresses it binds: see {@link ipvsAddressClaims}). The union of its parts'
 * objects ({@link ipvsServicePortParts}).
 */
export function compileIpvsServicePort(
  ctx: IpvsContext,
  svc: ServicePort,
  endpoints: readonly Endpoint[],
): RuleObject[] {
  return sortObjects(servicePortObjects(ctx, svc, endpoints));
}

/**
 * One part of a service port's objects, with its own dependence on the node: a port splits so that what varies per
 * node (NodePort virtual servers, hairpin members) does not make the rest be compiled and held per node too.
 */
export interface IpvsPortPart {
  /** '' for the VIP part; `np` (NodePorts), `lb` (KUBE-LOOP-BACK members), `hc` (the health check server). */
  readonly name: string;
  /**
   * undefined when the part's objects are the same on every node, else a function giving a string equal for two
   * nodes exactly when {@link compile} gives them the same objects.
   */
  readonly keyFn: ((ctx: IpvsContext) => string) | undefined;
  compile(ctx: IpvsContext): RuleObject[];
}

/** Node facts the endpoint policy depends on: zone (topology hints), the node hosting local endpoints or named in hints. */
function policyKeyFn(
  opts: IpvsOptions,
  svc: ServicePort,
  endpoints: readonly Endpoint[],
): ((ctx: IpvsContext) => string) | undefined {
  const { byZone, nodes: special } = policyDependence(svc, endpoints, opts.topology.preferSameNodeHints ?? true);
  if (!byZone && special.size === 0) return undefined;
  return (ctx) => `${byZone ? `z=${ctx.node.zone}` : ''},${special.has(ctx.node.name) ? `n=${ctx.node.name}` : ''}`;
}

/** Joins key functions (undefined ones dropped); undefined when none is left. */
function joinKeyFns(
  ...fns: (((ctx: IpvsContext) => string) | undefined)[]
): ((ctx: IpvsContext) => string) | undefined {
  const present = fns.filter((f): f is (ctx: IpvsContext) => string => f !== undefined);
  if (present.length === 0) return undefined;
  return (ctx) => present.map((f) => f(ctx)).join(';');
}

/** The parts of a service port (see {@link IpvsPortPart}); their objects together are {@link compileIpvsServicePort}'s. */
export function ipvsServicePortParts(
  opts: IpvsOptions,
  svc: ServicePort,
  endpoints: readonly Endpoint[],
): IpvsPortPart[] {
  const owner = portOwner(svc);
  const policy = policyKeyFn(opts, svc, endpoints);
  const ranges = svc.loadBalancerVIPs.length > 0 ? svc.loadBalancerSourceRanges : [];
  const inRanges =
    ranges.length > 0
      ? (ctx: IpvsContext): string =>
          `f=${ctx.nodeIP !== undefined && ranges.some((c) => cidrContains(c, ctx.nodeIP ?? ''))}`
      : undefined;
  const build = (ctx: IpvsContext, write: (b: PortBuilder) => void): RuleObject[] => {
    const b = new PortBuilder(ctx, svc, owner);
    write(b);
    return sortObjects(b.objects());
  };
  const parts: IpvsPortPart[] = [
    {
      name: '',
      keyFn: joinKeyFns(policy, inRanges),
      compile: (ctx) => build(ctx, (b) => writeVipPart(b, ctx, svc, portEndpoints(ctx, svc, endpoints))),
    },
  ];
  if (svc.nodePort !== 0) {
    const addresses = (ctx: IpvsContext): string => `p=${ctx.nodePortIPs.join(',')}`;
    parts.push({
      name: 'np',
      keyFn: joinKeyFns(policy, addresses),
      compile: (ctx) => build(ctx, (b) => writeNodePortPart(b, ctx, svc, portEndpoints(ctx, svc, endpoints))),
    });
  }
  const hosts = new Set(endpoints.map((ep) => ep.nodeName).filter((n) => n !== ''));
  if (endpoints.length > 0) {
    const keyFn =
      hosts.size > 0 ? (ctx: IpvsContext): string => (hosts.has(ctx.node.name) ? ctx.node.name : '') : undefined;
    parts.push({ name: 'lb', keyFn, compile: (ctx) => build(ctx, (b) => writeLoopBackPart(b, ctx, svc, endpoints)) });
  }
  // The same on every node.
  const conntrack = conntrackObjects(owner, svc, endpoints);
  if (conntrack.length > 0) parts.push({ name: 'ct', keyFn: undefined, compile: () => conntrack });
  return parts;
}

// ---------------------------------------------------------------------------------------------------------------
// Bound addresses.

export interface IpvsAddressClaim {
  readonly address: string;
  /**
   * Bound on every node (a cluster IP). Otherwise (an externalIP or LB IP) bound unless it is one of the node's own
   * addresses: kube-proxy never adds an address of another interface to kube-ipvs0.
   */
  readonly always: boolean;
}

/** The addresses a service port binds to kube-ipvs0, each once, sorted. */
export function ipvsAddressClaims(svc: ServicePort): IpvsAddressClaim[] {
  const claims = new Map<string, boolean>([[svc.clusterIP, true]]);
  for (const ip of [...svc.externalIPs, ...svc.loadBalancerVIPs]) if (!claims.has(ip)) claims.set(ip, false);
  return [...claims].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([address, always]) => ({ address, always }));
}

/** Owner part of the key of an address's KUBE-IPVS-IPS member: `address/<ip>`. */
export const addressOwner = (address: string): string => `address/${address}`;

/**
 * The objects of one bound address on a node: the ipvs.address and its KUBE-IPVS-IPS member; none for an
 * externalIP or LB IP that is one of the node's own addresses.
 */
export function compileIpvsAddress(ctx: IpvsContext, claim: IpvsAddressClaim): RuleObject[] {
  if (!claim.always && ctx.nodeAddresses.has(claim.address)) return [];
  const set = ipsetName(IpsetName.IpvsIPs, ctx.isIPv6);
  return [
    { kind: RuleKind.IpsetEntries, key: `${set}/${addressOwner(claim.address)}`, set, entries: [claim.address] },
    {
      kind: RuleKind.IpvsAddress,
      key: `${DummyInterface}/${claim.address}`,
      interface: DummyInterface,
      address: claim.address,
    },
  ];
}

/** How an address's objects depend on the node: only an externalIP or LB IP, through the node's own addresses. */
export function ipvsAddressVariantKeyFn(claim: IpvsAddressClaim): ((ctx: IpvsContext) => string) | undefined {
  return claim.always ? undefined : (ctx) => (ctx.nodeAddresses.has(claim.address) ? 'node' : '');
}

/** Merges claims of one address by several ports: bound on every node if any of them says so. */
export function mergeAddressClaims(claims: Iterable<IpvsAddressClaim>): Map<string, IpvsAddressClaim> {
  const out = new Map<string, IpvsAddressClaim>();
  for (const c of claims) {
    const prev = out.get(c.address);
    if (!prev || (!prev.always && c.always)) out.set(c.address, c);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

export interface CompileIpvsInput {
  readonly state: ClusterState;
  readonly nodeName: string;
  readonly options: IpvsOptions;
}

/** Compiles one node's IPVS rule set for one IP family. Pure: no I/O, same input -> same output. */
export function compileIpvs({ state, nodeName, options }: CompileIpvsInput): NodeRuleSet {
  const node = state.node(nodeName);
  if (!node) throw new NodeNotFoundError(nodeName, state.nodeNames());
  const ctx = makeIpvsContext(node, options);
  const objects = compileIpvsNodeBase(ctx);
  const claims: IpvsAddressClaim[] = [];
  const read = state.servicePorts(options.family).map((svc) => ({ svc, endpoints: state.endpoints(svc) }));
  for (const { svc, endpoints } of read) {
    objects.push(...servicePortObjects(ctx, svc, endpoints));
    claims.push(...ipvsAddressClaims(svc));
  }
  // Node duties of a whole service: its health check server.
  objects.push(...serviceHealthChecks(nodeName, read));
  for (const claim of mergeAddressClaims(claims).values()) objects.push(...compileIpvsAddress(ctx, claim));
  // Two services claiming the same virtual server (an address and port both list) would hold it twice: the first
  // (in service port order) wins, as one object.
  const seen = new Set<string>();
  const unique = objects.filter((o) => {
    const id = objectId(o);
    return seen.has(id) ? false : (seen.add(id), true);
  });
  return { node: nodeName, mode: IpvsMode, family: options.family, objects: sortObjects(unique) };
}

export { makeIpvsContext };
export type { IpvsContext };
