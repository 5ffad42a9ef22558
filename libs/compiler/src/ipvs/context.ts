// Per-node facts the IPVS rule families need, computed once per compile.
import {
  IPFamily,
  NodePortAddressesKind,
  cidrContains,
  isLoopback,
  parseCidr,
  type Cidr,
  type NodeInfo,
} from '@kpx/model';
import { makeContext, type LocalDetector } from '../iptables/context.js';
import type { IpvsOptions } from './options.js';

export interface IpvsContext {
  readonly node: NodeInfo;
  readonly opts: IpvsOptions;
  readonly isIPv6: boolean;
  /** The node's primary IP of the family (loadBalancerSourceRanges: may the node reach the VIP itself). */
  readonly nodeIP: string | undefined;
  /** kube-proxy's `%#08x` of 1<<masqueradeBit. */
  readonly masqMark: string;
  readonly localDetector: LocalDetector | undefined;
  /** The addresses NodePort virtual servers are created on, sorted. */
  readonly nodePortIPs: readonly string[];
  /** Every address of the node in the family: an externalIP or LB IP among them is not bound to kube-ipvs0. */
  readonly nodeAddresses: ReadonlySet<string>;
}

/**
 * kube-proxy's NodePort addresses in IPVS mode: every local address except loopback and kube-ipvs0's, filtered by
 * nodePortAddresses. kube-proxy lists the node's interfaces; kpx compiles centrally and takes the Node object's
 * InternalIP and ExternalIP addresses of the family as "every local address" (addresses only on other
 * interfaces, docker0 say, get no NodePort virtual servers).
 */
function nodePortIPs(node: NodeInfo, opts: IpvsOptions, nodeIP: string | undefined): string[] {
  const family = opts.family;
  const own = [...new Set(node.addresses.filter((a) => a.family === family).map((a) => a.ip))].filter(
    (ip) => !isLoopback(ip),
  );
  const npa = opts.nodePortAddresses;
  const isPrimary = npa.kind === NodePortAddressesKind.Primary;
  const parsed = (texts: readonly string[]): Cidr[] =>
    texts.map((t) => parseCidr(t)).filter((c): c is Cidr => c !== undefined && c.family === family);
  let cidrs = npa.kind === NodePortAddressesKind.CIDRs ? npa.cidrs.filter((c) => c.family === family) : [];
  if (cidrs.length === 0) {
    if (isPrimary) return nodeIP && !isLoopback(nodeIP) ? [nodeIP] : [];
    cidrs = parsed([family === IPFamily.IPv4 ? '0.0.0.0/0' : '::/0']);
  }
  return own.filter((ip) => cidrs.some((c) => cidrContains(c, ip))).sort();
}

export function makeIpvsContext(node: NodeInfo, opts: IpvsOptions): IpvsContext {
  // The iptables context gives the same node IP, masquerade mark and local traffic detector.
  const base = makeContext(node, opts, 0);
  return {
    node,
    opts,
    isIPv6: base.isIPv6,
    nodeIP: base.nodeIP,
    masqMark: base.masqMark,
    localDetector: base.localDetector,
    nodePortIPs: nodePortIPs(node, opts, base.nodeIP),
    nodeAddresses: new Set(node.addresses.filter((a) => a.family === opts.family).map((a) => a.ip)),
  };
}
