// Node + cluster state + options -> the node's iptables rule set, with kube-proxy's semantics
// (pkg/proxy/iptables/proxier.go syncProxyRules), one function per rule family.
import {
  LocalMode,
  categorizeEndpoints,
  cidrContains,
  externallyAccessible,
  type ClusterState,
  type Endpoint,
  type ServicePort,
} from '@kpx/model';
import { ProxyMode } from '@kpx/proto';
import { NodeNotFoundError } from '../errors.js';
import { conntrackObjects } from '../conntrack.js';
import { serviceHealthChecks } from '../healthcheck.js';
import { policyDependence } from '../policy-nodes.js';
import { Table, sortObjects, type NodeRuleSet, type RuleObject } from '../ruleset.js';
import { RuleBuilder, comment, ruleText } from './builder.js';
import { makeContext, type CompileContext } from './context.js';
import { Chain, endpointChainNamer, serviceChainNames, type ServiceChainNames } from './names.js';
import type { IptablesOptions } from './options.js';

export const IptablesMode = ProxyMode.IPTables;

/** Jumps from builtin chains, in the order they end up on a fresh node (kube-proxy prepends each in turn). */
function writeJumps(b: RuleBuilder, ctx: CompileContext): void {
  const NEW = '-m conntrack --ctstate NEW';
  const j = (table: Table, chain: string, target: string, text: string | undefined, extra = ''): void =>
    b.jump(table, chain, target, [extra, text ? comment(text) : '', `-j ${target}`].filter(Boolean).join(' '));
  const kubeletGuard = !ctx.isIPv6 && ctx.localhostNodePorts;
  if (kubeletGuard) j(Table.Filter, 'INPUT', Chain.KubeletFirewall, undefined);
  j(Table.Filter, 'INPUT', Chain.ProxyFirewall, 'kubernetes load balancer firewall', NEW);
  j(Table.Filter, 'INPUT', Chain.NodePorts, 'kubernetes health check service ports');
  j(Table.Filter, 'INPUT', Chain.ExternalServices, 'kubernetes externally-visible service portals', NEW);
  j(Table.Filter, 'FORWARD', Chain.ProxyFirewall, 'kubernetes load balancer firewall', NEW);
  j(Table.Filter, 'FORWARD', Chain.Forward, 'kubernetes forwarding rules');
  j(Table.Filter, 'FORWARD', Chain.Services, 'kubernetes service portals', NEW);
  j(Table.Filter, 'FORWARD', Chain.ExternalServices, 'kubernetes externally-visible service portals', NEW);
  if (kubeletGuard) j(Table.Filter, 'OUTPUT', Chain.KubeletFirewall, undefined);
  j(Table.Filter, 'OUTPUT', Chain.ProxyFirewall, 'kubernetes load balancer firewall', NEW);
  j(Table.Filter, 'OUTPUT', Chain.Services, 'kubernetes service portals', NEW);
  j(Table.Nat, 'PREROUTING', Chain.Services, 'kubernetes service portals');
  j(Table.Nat, 'OUTPUT', Chain.Services, 'kubernetes service portals');
  j(Table.Nat, 'POSTROUTING', Chain.Postrouting, 'kubernetes postrouting rules');
}

function writeBaseChains(b: RuleBuilder, ctx: CompileContext): void {
  for (const c of [Chain.Services, Chain.ExternalServices, Chain.Forward, Chain.NodePorts, Chain.ProxyFirewall])
    b.chain(Table.Filter, c);
  for (const c of [Chain.Services, Chain.NodePorts, Chain.Postrouting, Chain.MarkMasq]) b.chain(Table.Nat, c);
  const m = ctx.masqMark;
  b.nat(Chain.Postrouting, `-m mark ! --mark ${m}/${m} -j RETURN`);
  b.nat(Chain.Postrouting, `-j MARK --xor-mark ${m}`);
  b.nat(
    Chain.Postrouting,
    comment('kubernetes service traffic requiring SNAT'),
    '-j MASQUERADE',
    ctx.opts.randomFully && '--random-fully',
  );
  b.nat(Chain.MarkMasq, `-j MARK --or-mark ${m}`);
  if (!ctx.isIPv6 && ctx.localhostNodePorts) {
    // route_localnet opens a hole (kubernetes#90259); kube-proxy (and kubelet) close it with this rule.
    b.chain(Table.Filter, Chain.KubeletFirewall);
    b.filter(
      Chain.KubeletFirewall,
      comment('block incoming localnet connections'),
      '-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    );
  }
}

/** What one service port needs, decided once from its policies and this node's endpoints. */
interface PortPlan {
  readonly svc: ServicePort;
  readonly proto: string;
  readonly chains: ServiceChainNames;
  readonly cluster: readonly Endpoint[];
  readonly local: readonly Endpoint[];
  readonly allReachable: readonly Endpoint[];
  readonly hasEndpoints: boolean;
  readonly hasInternalEndpoints: boolean;
  readonly hasExternalEndpoints: boolean;
  readonly internalChain: string;
  readonly externalPolicyChain: string;
  readonly usesClusterChain: boolean;
  readonly usesLocalChain: boolean;
  readonly usesExternalChain: boolean;
  readonly usesFirewallChain: boolean;
  readonly loadBalancerChain: string;
  /** REJECT (no endpoints anywhere) or DROP (no local ones) for filtered internal / external traffic. */
  readonly internalFilter: { target: string; comment: string } | undefined;
  readonly externalFilter: { target: string; comment: string } | undefined;
  /** The KUBE-SEP- chains of some of the port's endpoints (each named once, though used up to four times). */
  readonly endpointChains: (endpoints: readonly Endpoint[]) => readonly string[];
}

/**
 * The KUBE-SEP- chains of a port's endpoints, each named once: `allReachable` (every endpoint a rule uses) in
 * order, and for another list of them (the cluster or local endpoints, when not the same array), looked up.
 */
function endpointChainNames(
  svc: ServicePort,
  proto: string,
  allReachable: readonly Endpoint[],
): (endpoints: readonly Endpoint[]) => readonly string[] {
  const nameOf = endpointChainNamer(svc.name, proto);
  const names = allReachable.map((ep) => nameOf(ep.address));
  let byEndpoint: Map<Endpoint, string> | undefined;
  return (endpoints) => {
    if (endpoints === allReachable) return names;
    byEndpoint ??= new Map(allReachable.map((ep, i) => [ep, names[i] as string]));
    const index = byEndpoint;
    return endpoints.map((ep) => index.get(ep) ?? nameOf(ep.address));
  };
}

function planPort(ctx: CompileContext, svc: ServicePort, endpoints: readonly Endpoint[]): PortPlan {
  const proto = svc.protocol.toLowerCase();
  const chains = serviceChainNames(svc.name, proto);
  const cat = categorizeEndpoints(endpoints, svc, ctx.node, ctx.opts.topology);
  const hasEndpoints = cat.hasAnyEndpoints;
  const hasInternalEndpoints = hasEndpoints && (!svc.internalPolicyLocal || cat.local.length > 0);
  const hasExternalEndpoints = hasEndpoints && (!svc.externalPolicyLocal || cat.local.length > 0);
  const usesFirewallChain = hasEndpoints && svc.loadBalancerVIPs.length > 0 && svc.loadBalancerSourceRanges.length > 0;
  // REJECT when the service has no endpoints at all, DROP when only the local ones it needs are missing.
  const noEndpoints = hasEndpoints ? undefined : { target: 'REJECT', comment: `${svc.name} has no endpoints` };
  const noLocal = (has: boolean): { target: string; comment: string } | undefined =>
    !hasEndpoints || has ? undefined : { target: 'DROP', comment: `${svc.name} has no local endpoints` };
  return {
    svc,
    proto,
    chains,
    cluster: cat.cluster,
    local: cat.local,
    allReachable: cat.allReachable,
    hasEndpoints,
    hasInternalEndpoints,
    hasExternalEndpoints,
    internalChain: svc.internalPolicyLocal ? chains.local : chains.cluster,
    externalPolicyChain: svc.externalPolicyLocal ? chains.local : chains.cluster,
    usesClusterChain: cat.cluster.length > 0,
    usesLocalChain: cat.local.length > 0,
    usesExternalChain: hasEndpoints && externallyAccessible(svc),
    usesFirewallChain,
    loadBalancerChain: usesFirewallChain ? chains.firewall : chains.external,
    internalFilter: noEndpoints ?? noLocal(hasInternalEndpoints),
    externalFilter: noEndpoints ?? noLocal(hasExternalEndpoints),
    endpointChains: endpointChainNames(svc, proto, cat.allReachable),
  };
}

const match = (p: PortPlan, dst: string, port: number): string =>
  `-m ${p.proto} -p ${p.proto} -d ${dst} --dport ${port}`;

function writeClusterIPRules(b: RuleBuilder, p: PortPlan): void {
  const { svc } = p;
  if (p.hasInternalEndpoints)
    b.nat(
      Chain.Services,
      comment(`${svc.name} cluster IP`),
      match(p, svc.clusterIP, svc.port),
      `-j ${p.internalChain}`,
    );
  else if (p.internalFilter)
    b.filter(
      Chain.Services,
      comment(p.internalFilter.comment),
      match(p, svc.clusterIP, svc.port),
      `-j ${p.internalFilter.target}`,
    );
}

function writeExternalIPRules(b: RuleBuilder, p: PortPlan): void {
  for (const ip of p.svc.externalIPs) {
    if (p.hasEndpoints)
      b.nat(Chain.Services, comment(`${p.svc.name} external IP`), match(p, ip, p.svc.port), `-j ${p.chains.external}`);
    if (p.externalFilter)
      b.filter(
        Chain.ExternalServices,
        comment(p.externalFilter.comment),
        match(p, ip, p.svc.port),
        `-j ${p.externalFilter.target}`,
      );
  }
}

function writeLoadBalancerRules(b: RuleBuilder, p: PortPlan): void {
  const { svc } = p;
  for (const ip of svc.loadBalancerVIPs) {
    if (p.hasEndpoints)
      b.nat(
        Chain.Services,
        comment(`${svc.name} loadbalancer IP`),
        match(p, ip, svc.port),
        `-j ${p.loadBalancerChain}`,
      );
    if (p.usesFirewallChain)
      b.filter(
        Chain.ProxyFirewall,
        comment(`${svc.name} traffic not accepted by ${p.chains.firewall}`),
        match(p, ip, svc.port),
        '-j DROP',
      );
  }
  if (p.externalFilter) {
    for (const ip of svc.loadBalancerVIPs)
      b.filter(
        Chain.ExternalServices,
        comment(p.externalFilter.comment),
        match(p, ip, svc.port),
        `-j ${p.externalFilter.target}`,
      );
  }
}

function writeNodePortRules(b: RuleBuilder, p: PortPlan): void {
  const { svc } = p;
  if (svc.nodePort === 0) return;
  // NodePorts are not subject to loadBalancerSourceRanges (kube-proxy cannot change that).
  if (p.hasEndpoints)
    b.nat(
      Chain.NodePorts,
      comment(svc.name),
      `-m ${p.proto} -p ${p.proto} --dport ${svc.nodePort}`,
      `-j ${p.chains.external}`,
    );
  if (p.externalFilter) {
    b.filter(
      Chain.ExternalServices,
      comment(p.externalFilter.comment),
      '-m addrtype --dst-type LOCAL',
      `-m ${p.proto} -p ${p.proto} --dport ${svc.nodePort}`,
      `-j ${p.externalFilter.target}`,
    );
  }
}

function writeHealthCheckRule(b: RuleBuilder, p: PortPlan): void {
  if (p.svc.healthCheckNodePort === 0) return;
  b.filter(
    Chain.NodePorts,
    comment(`${p.svc.name} health check node port`),
    `-m tcp -p tcp --dport ${p.svc.healthCheckNodePort}`,
    '-j ACCEPT',
  );
}

/** Masquerade off-cluster (or all, with masqueradeAll) traffic to the cluster IP. */
function writeInternalMasq(b: RuleBuilder, ctx: CompileContext, p: PortPlan): void {
  if (!p.hasInternalEndpoints) return;
  const args = [comment(`${p.svc.name} cluster IP`), match(p, p.svc.clusterIP, p.svc.port)];
  if (ctx.opts.masqueradeAll) b.nat(p.internalChain, ...args, `-j ${Chain.MarkMasq}`);
  else if (ctx.localDetector) b.nat(p.internalChain, ...args, ctx.localDetector.ifNotLocal, `-j ${Chain.MarkMasq}`);
}

/** KUBE-EXT-: masquerade (eTP Cluster) or short-circuit pod/host traffic (eTP Local), then the policy chain. */
function writeExternalChain(b: RuleBuilder, ctx: CompileContext, p: PortPlan): void {
  if (!p.usesExternalChain) return;
  const ext = p.chains.external;
  const name = p.svc.name;
  b.chain(Table.Nat, ext);
  if (!p.svc.externalPolicyLocal) {
    b.nat(ext, comment(`masquerade traffic for ${name} external destinations`), `-j ${Chain.MarkMasq}`);
  } else {
    if (ctx.localDetector)
      b.nat(
        ext,
        comment(`pod traffic for ${name} external destinations`),
        ctx.localDetector.ifLocal,
        `-j ${p.chains.cluster}`,
      );
    b.nat(
      ext,
      comment(`masquerade LOCAL traffic for ${name} external destinations`),
      '-m addrtype --src-type LOCAL',
      `-j ${Chain.MarkMasq}`,
    );
    b.nat(
      ext,
      comment(`route LOCAL traffic for ${name} external destinations`),
      '-m addrtype --src-type LOCAL',
      `-j ${p.chains.cluster}`,
    );
  }
  if (p.hasExternalEndpoints) b.nat(ext, `-j ${p.externalPolicyChain}`);
}

/** KUBE-FW-: loadBalancerSourceRanges; what falls through is dropped by KUBE-PROXY-FIREWALL. */
function writeFirewallChain(b: RuleBuilder, ctx: CompileContext, p: PortPlan): void {
  if (!p.usesFirewallChain) return;
  const fw = p.chains.firewall;
  const head = comment(`${p.svc.name} loadbalancer IP`);
  b.chain(Table.Nat, fw);
  let allowFromNode = false;
  for (const cidr of p.svc.loadBalancerSourceRanges) {
    b.nat(fw, head, `-s ${cidr.text}`, `-j ${p.chains.external}`);
    if (ctx.nodeIP !== undefined && cidrContains(cidr, ctx.nodeIP)) allowFromNode = true;
  }
  // A node reaching its own VIP-like LB loops back with the VIP as source.
  if (allowFromNode) for (const ip of p.svc.loadBalancerVIPs) b.nat(fw, head, `-s ${ip}`, `-j ${p.chains.external}`);
  b.nat(fw, comment(`other traffic to ${p.svc.name} will be dropped by KUBE-PROXY-FIREWALL`));
}

// The per-endpoint rules below run some hundred thousand times on a large cluster: what does not depend on the
// endpoint is built once per port, and values are passed as separate parts (joined with a space, the same text)
// rather than spliced into a new string each time.

function writeServiceToEndpointRules(
  b: RuleBuilder,
  ctx: CompileContext,
  p: PortPlan,
  chain: string,
  endpoints: readonly Endpoint[],
): void {
  b.chain(Table.Nat, chain);
  const epComment = (ep: Endpoint): string | undefined =>
    ctx.largeClusterMode ? undefined : comment(`${p.svc.name} -> ${ep.address}`);
  const names = p.endpointChains(endpoints);
  if (p.svc.affinityTimeoutSeconds > 0) {
    const check = `--rcheck --seconds ${p.svc.affinityTimeoutSeconds} --reap`;
    endpoints.forEach((ep, i) => {
      const target = names[i] as string;
      b.nat(chain, epComment(ep), '-m recent --name', target, check, '-j', target);
    });
  }
  const n = endpoints.length;
  endpoints.forEach((ep, i) => {
    b.nat(chain, epComment(ep), i < n - 1 ? statisticMatch(n - i) : undefined, '-j', names[i]);
  });
}

function writeEndpointChains(b: RuleBuilder, ctx: CompileContext, p: PortPlan): void {
  const head = ctx.largeClusterMode ? undefined : comment(p.svc.name);
  const dnat = `-m ${p.proto} -p ${p.proto} -j DNAT --to-destination`;
  const affinity = p.svc.affinityTimeoutSeconds > 0;
  const names = p.endpointChains(p.allReachable);
  p.allReachable.forEach((ep, i) => {
    const chain = names[i] as string;
    // Hairpin: a pod reaching itself through the service must be masqueraded.
    const hairpin = ruleText(head, '-s', ep.ip, JUMP_MARK_MASQ);
    const dnatRule = affinity
      ? ruleText(head, '-m recent --name', chain, '--set', dnat, ep.address)
      : ruleText(head, dnat, ep.address);
    b.chainWithRules(Table.Nat, chain, [hairpin, dnatRule]);
  });
}

const JUMP_MARK_MASQ = `-j ${Chain.MarkMasq}`;

const statisticMatches: string[] = [];
/** `-m statistic --mode random --probability P` for the i-th of n endpoints (n - i left). */
function statisticMatch(left: number): string {
  return (statisticMatches[left] ??= `-m statistic --mode random --probability ${probability(left)}`);
}

const probabilities: string[] = [];
/** kube-proxy's `%0.10f` of 1/n. */
export function probability(n: number): string {
  return (probabilities[n] ??= (1 / n).toFixed(10));
}

/** Chains owned by the node; service ports add fragments to them. */
const SHARED_CHAINS: ReadonlySet<string> = new Set([
  `${Table.Nat}/${Chain.Services}`,
  `${Table.Nat}/${Chain.NodePorts}`,
  `${Table.Filter}/${Chain.Services}`,
  `${Table.Filter}/${Chain.ExternalServices}`,
  `${Table.Filter}/${Chain.NodePorts}`,
  `${Table.Filter}/${Chain.ProxyFirewall}`,
]);

/** Owner part of the keys of a service port's fragments: `ns/name:port/PROTOCOL`. */
export function portOwner(svc: ServicePort): string {
  return `${svc.name}/${svc.protocol}`;
}

/**
 * The rule objects one service port contributes on a node: its own chains (SVC, SVL, EXT, FW, SEP) and its
 * fragments of the node's top-level chains. Depends on the node only through {@link portVariantKey}.
 */
export function compileServicePort(
  ctx: CompileContext,
  svc: ServicePort,
  endpoints: readonly Endpoint[],
): RuleObject[] {
  return sortObjects(servicePortObjects(ctx, svc, endpoints));
}

/** {@link compileServicePort}'s objects, unsorted. */
function servicePortObjects(ctx: CompileContext, svc: ServicePort, endpoints: readonly Endpoint[]): RuleObject[] {
  const owner = portOwner(svc);
  const b = new RuleBuilder(SHARED_CHAINS, owner);
  writeServicePort(b, ctx, svc, endpoints);
  const objects = b.unsortedObjects();
  // Not iptables: a node duty the executor runs (stale UDP flow cleanup). The health check is the service's.
  for (const o of conntrackObjects(owner, svc, endpoints)) objects.push(o);
  return objects;
}

/**
 * How a service port's rules depend on the node. Returns undefined when they do not (the same objects on every
 * node), else a function giving a string that is equal for two nodes exactly when {@link compileServicePort}
 * gives them the same objects: the node facts the rules depend on (zone when topology hints are in play, the
 * node's name when it hosts an endpoint the port uses locally, or is named in node hints, its pod CIDR with
 * NodeCIDR local detection, whether its IP is inside the load balancer source ranges).
 */
export function portVariantKeyFn(
  opts: IptablesOptions,
  svc: ServicePort,
  endpoints: readonly Endpoint[],
): ((ctx: CompileContext) => string) | undefined {
  const { byZone, nodes: special } = policyDependence(svc, endpoints, opts.topology.preferSameNodeHints ?? true);
  const byCidr = opts.detectLocalMode === LocalMode.NodeCIDR;
  const ranges = svc.loadBalancerVIPs.length > 0 ? svc.loadBalancerSourceRanges : [];
  if (!byZone && special.size === 0 && !byCidr && ranges.length === 0) return undefined;
  return (ctx) => {
    const parts: string[] = [];
    if (byZone) parts.push(`z=${ctx.node.zone}`);
    if (special.has(ctx.node.name)) parts.push(`n=${ctx.node.name}`);
    if (byCidr) parts.push(`c=${ctx.localDetector?.ifLocal ?? ''}`);
    if (ranges.length > 0)
      parts.push(`f=${ctx.nodeIP !== undefined && ranges.some((c) => cidrContains(c, ctx.nodeIP ?? ''))}`);
    return parts.join(',');
  };
}

/** {@link portVariantKeyFn} for one node: '' when the port's rules do not depend on the node. */
export function portVariantKey(ctx: CompileContext, svc: ServicePort, endpoints: readonly Endpoint[]): string {
  return portVariantKeyFn(ctx.opts, svc, endpoints)?.(ctx) ?? '';
}

function writeServicePort(b: RuleBuilder, ctx: CompileContext, svc: ServicePort, endpoints: readonly Endpoint[]): void {
  const p = planPort(ctx, svc, endpoints);
  if (p.usesClusterChain) b.chain(Table.Nat, p.chains.cluster);
  if (p.usesLocalChain) b.chain(Table.Nat, p.chains.local);
  writeClusterIPRules(b, p);
  writeExternalIPRules(b, p);
  writeLoadBalancerRules(b, p);
  writeNodePortRules(b, p);
  writeHealthCheckRule(b, p);
  writeInternalMasq(b, ctx, p);
  writeExternalChain(b, ctx, p);
  writeFirewallChain(b, ctx, p);
  if (p.usesClusterChain) writeServiceToEndpointRules(b, ctx, p, p.chains.cluster, p.cluster);
  if (p.usesLocalChain) writeServiceToEndpointRules(b, ctx, p, p.chains.local, p.local);
  writeEndpointChains(b, ctx, p);
}

/** The tail call into KUBE-NODEPORTS; must stay the last rule of nat KUBE-SERVICES (a position-1 fragment). */
function writeNodePortsJump(ctx: CompileContext): RuleObject[] {
  const b = new RuleBuilder(SHARED_CHAINS, 'nodeports', 1);
  const text = comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain');
  if (ctx.nodePorts.matchAll) {
    const guard = ctx.isIPv6 ? '! -d ::1/128' : ctx.localhostNodePorts ? undefined : '! -d 127.0.0.0/8';
    b.nat(Chain.Services, text, '-m addrtype --dst-type LOCAL', guard, `-j ${Chain.NodePorts}`);
  } else {
    for (const ip of ctx.nodePorts.ips) b.nat(Chain.Services, text, `-d ${ip}`, `-j ${Chain.NodePorts}`);
  }
  return b.objects();
}

function writeForwardRules(b: RuleBuilder, ctx: CompileContext): void {
  // Without tcp_be_liberal, out-of-window packets marked INVALID would reset connections (kubernetes#74839).
  if (!ctx.opts.conntrackTCPLiberal) b.filter(Chain.Forward, '-m conntrack --ctstate INVALID -j DROP');
  b.filter(
    Chain.Forward,
    comment('kubernetes forwarding rules'),
    `-m mark --mark ${ctx.masqMark}/${ctx.masqMark}`,
    '-j ACCEPT',
  );
  b.filter(
    Chain.Forward,
    comment('kubernetes forwarding conntrack rule'),
    '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );
}

export interface CompileIptablesInput {
  readonly state: ClusterState;
  readonly nodeName: string;
  readonly options: IptablesOptions;
}

/** The node's own objects: jumps, top-level chains and their fixed rules, the NodePort tail call. */
export function compileNodeBase(ctx: CompileContext): RuleObject[] {
  const b = new RuleBuilder();
  writeJumps(b, ctx);
  writeBaseChains(b, ctx);
  writeForwardRules(b, ctx);
  return [...b.objects(), ...writeNodePortsJump(ctx)];
}

/** Total endpoints of a family: above LargeClusterEndpointsThreshold per-endpoint comments go. */
export function totalEndpoints(state: ClusterState, ports: readonly ServicePort[]): number {
  return ports.reduce((n, svc) => n + state.endpoints(svc).length, 0);
}

/** Compiles one node's iptables rules for one IP family. Pure: no I/O, same input -> same output. */
export function compileIptables({ state, nodeName, options }: CompileIptablesInput): NodeRuleSet {
  const node = state.node(nodeName);
  if (!node) throw new NodeNotFoundError(nodeName, state.nodeNames());
  const ports = state.servicePorts(options.family);
  const ctx = makeContext(node, options, totalEndpoints(state, ports));
  const parts: RuleObject[][] = [compileNodeBase(ctx)];
  const read = ports.map((svc) => ({ svc, endpoints: state.endpoints(svc) }));
  for (const { svc, endpoints } of read) parts.push(servicePortObjects(ctx, svc, endpoints));
  // Node duties of a whole service: its health check server.
  parts.push(serviceHealthChecks(nodeName, read));
  // One array of its final size (a large node's has some 120,000 objects; grown by pushes, it would be copied
  // a dozen times into fresh memory). One stable sort of everything gives what sorting each port's objects first
  // would (a port's ids are distinct).
  const objects = new Array<RuleObject>(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) for (const o of p) objects[i++] = o;
  return { node: nodeName, mode: IptablesMode, family: options.family, objects: sortObjects(objects) };
}
