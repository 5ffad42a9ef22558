// Per-node facts every rule family needs, computed once per compile.
import {
  IPFamily,
  LocalMode,
  NodePortAddressesKind,
  cidrContains,
  isLoopback,
  parseCidr,
  primaryNodeIP,
  type Cidr,
  type NodeInfo,
} from '@kpx/model';
import type { IptablesOptions } from './options.js';

export interface LocalDetector {
  /** Matches traffic from local pods. */
  readonly ifLocal: string;
  /** Matches traffic not from local pods. */
  readonly ifNotLocal: string;
}

export interface NodePortDestinations {
  /** Match every local address (`-m addrtype --dst-type LOCAL`, with the loopback guard). */
  readonly matchAll: boolean;
  /** Otherwise the node addresses NodePorts answer on. */
  readonly ips: readonly string[];
}

export interface CompileContext {
  readonly node: NodeInfo;
  readonly nodeIP: string | undefined;
  readonly opts: IptablesOptions;
  readonly isIPv6: boolean;
  /** kube-proxy's `%#08x` of 1<<masqueradeBit, e.g. 0x004000. */
  readonly masqMark: string;
  readonly localDetector: LocalDetector | undefined;
  readonly localhostNodePorts: boolean;
  readonly nodePorts: NodePortDestinations;
  /** More than 1000 endpoints: per-endpoint comments are left out, as kube-proxy does. */
  readonly largeClusterMode: boolean;
}

export const LargeClusterEndpointsThreshold = 1000;

export function masqueradeMark(bit: number): string {
  return `0x${(2 ** bit).toString(16).padStart(6, '0')}`;
}

function localDetector(node: NodeInfo, opts: IptablesOptions): LocalDetector | undefined {
  const bySource = (cidr: string): LocalDetector => ({ ifLocal: `-s ${cidr}`, ifNotLocal: `! -s ${cidr}` });
  switch (opts.detectLocalMode) {
    case LocalMode.ClusterCIDR: {
      const c = opts.clusterCIDRs.find((x) => x.family === opts.family);
      return c ? bySource(c.text) : undefined;
    }
    case LocalMode.NodeCIDR: {
      const c = node.podCIDRs.find((x) => x.family === opts.family);
      return c ? bySource(c.text) : undefined;
    }
    case LocalMode.BridgeInterface:
      return opts.bridgeInterface
        ? { ifLocal: `-i ${opts.bridgeInterface}`, ifNotLocal: `! -i ${opts.bridgeInterface}` }
        : undefined;
    case LocalMode.InterfaceNamePrefix:
      return opts.interfaceNamePrefix
        ? { ifLocal: `-i ${opts.interfaceNamePrefix}+`, ifNotLocal: `! -i ${opts.interfaceNamePrefix}+` }
        : undefined;
  }
}

/**
 * kube-proxy's NodePortAddresses for one family. kube-proxy reads the node's interface addresses; kpx
 * compiles centrally and uses the Node object's addresses (plus 127.0.0.1 where a CIDR covers loopback).
 */
function nodePortDestinations(
  node: NodeInfo,
  opts: IptablesOptions,
  nodeIP: string | undefined,
): { dest: NodePortDestinations; containsLoopback: boolean } {
  const family = opts.family;
  const npa = opts.nodePortAddresses;
  const isPrimary = npa.kind === NodePortAddressesKind.Primary;
  const parsed = (texts: readonly string[]): Cidr[] =>
    texts.map((t) => parseCidr(t)).filter((c): c is Cidr => c !== undefined && c.family === family);
  let cidrs = npa.kind === NodePortAddressesKind.CIDRs ? npa.cidrs.filter((c) => c.family === family) : [];
  if (cidrs.length === 0) {
    const fallback =
      isPrimary && nodeIP
        ? `${nodeIP}/${family === IPFamily.IPv4 ? 32 : 128}`
        : family === IPFamily.IPv4
          ? '0.0.0.0/0'
          : '::/0';
    cidrs = parsed([fallback]);
  }
  const containsLoopback = family === IPFamily.IPv4 && cidrs.some((c) => cidrContains(c, '127.0.0.1'));
  if (cidrs.some((c) => c.prefix === 0)) return { dest: { matchAll: true, ips: [] }, containsLoopback };
  const candidates = node.addresses.filter((a) => a.family === family).map((a) => a.ip);
  if (family === IPFamily.IPv4) candidates.push('127.0.0.1');
  const ips = [...new Set(candidates.filter((ip) => cidrs.some((c) => cidrContains(c, ip))))];
  return { dest: { matchAll: false, ips }, containsLoopback };
}

export function makeContext(node: NodeInfo, opts: IptablesOptions, totalEndpoints: number): CompileContext {
  const nodeIP = primaryNodeIP(node, opts.family);
  const np = nodePortDestinations(node, opts, nodeIP);
  const isIPv6 = opts.family === IPFamily.IPv6;
  return {
    node,
    nodeIP,
    opts,
    isIPv6,
    masqMark: masqueradeMark(opts.masqueradeBit),
    localDetector: localDetector(node, opts),
    // kube-proxy turns localhost NodePorts off when nodePortAddresses exclude loopback; never on IPv6.
    localhostNodePorts: opts.localhostNodePorts && np.containsLoopback && !isIPv6,
    nodePorts: {
      matchAll: np.dest.matchAll,
      ips: np.dest.ips.filter((ip) => !isLoopback(ip) || (!isIPv6 && opts.localhostNodePorts && np.containsLoopback)),
    },
    largeClusterMode: totalEndpoints > LargeClusterEndpointsThreshold,
  };
}
