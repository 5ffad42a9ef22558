// Node -> the node facts kube-proxy's rules depend on: name, addresses, zone, pod CIDRs.
import { DiagnosticSink, type Diagnostic } from './diagnostics.js';
import { canonicalIP, parseCidr, ipFamilyOf, IPFamily, type Cidr } from './ip.js';
import { Kind, LabelTopologyZone, type NodeObject } from './k8s.js';

export interface NodeAddressInfo {
  readonly type: string;
  readonly ip: string;
  readonly family: IPFamily;
}

export interface NodeInfo {
  readonly name: string;
  readonly resourceVersion: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Value of topology.kubernetes.io/zone, '' when unset. */
  readonly zone: string;
  /** IP addresses from status.addresses (InternalIP first, then ExternalIP), in API order. */
  readonly addresses: readonly NodeAddressInfo[];
  readonly podCIDRs: readonly Cidr[];
}

export interface NodeConversion {
  readonly node?: NodeInfo;
  readonly diagnostics: Diagnostic[];
}

/** The node's primary IP of a family: its first InternalIP, else its first ExternalIP (kube-proxy's node IP). */
export function primaryNodeIP(node: NodeInfo, family: IPFamily): string | undefined {
  const of = node.addresses.filter((a) => a.family === family);
  return (of.find((a) => a.type === 'InternalIP') ?? of.find((a) => a.type === 'ExternalIP'))?.ip;
}

export function convertNode(obj: NodeObject, opts: { source?: string } = {}): NodeConversion {
  const name = obj.metadata?.name ?? '';
  const sink = new DiagnosticSink({ kind: Kind.Node, name: name || '<unnamed>' }, opts.source);
  if (!name) {
    sink.error('metadata.name', 'is required');
    return { diagnostics: sink.items };
  }
  const addresses: NodeAddressInfo[] = [];
  (obj.status?.addresses ?? []).forEach((a, i) => {
    if (a?.type !== 'InternalIP' && a?.type !== 'ExternalIP') return;
    const ip = canonicalIP(String(a.address));
    if (ip === undefined) {
      sink.error(`status.addresses[${i}].address`, `${JSON.stringify(a.address)} is not a valid IP address`);
      return;
    }
    addresses.push({ type: a.type, ip, family: ipFamilyOf(ip) ?? IPFamily.IPv4 });
  });
  const cidrTexts = obj.spec?.podCIDRs?.length ? obj.spec.podCIDRs : obj.spec?.podCIDR ? [obj.spec.podCIDR] : [];
  const podCIDRs: Cidr[] = [];
  cidrTexts.forEach((t, i) => {
    const c = parseCidr(String(t));
    if (c === undefined) sink.error(obj.spec?.podCIDRs?.length ? `spec.podCIDRs[${i}]` : 'spec.podCIDR', `${JSON.stringify(t)} is not a valid CIDR`);
    else podCIDRs.push(c);
  });
  if (sink.hasErrors) return { diagnostics: sink.items };
  const labels = { ...(obj.metadata?.labels ?? {}) };
  return {
    node: {
      name,
      resourceVersion: obj.metadata?.resourceVersion ?? '',
      labels,
      zone: labels[LabelTopologyZone] ?? '',
      addresses,
      podCIDRs,
    },
    diagnostics: sink.items,
  };
}
