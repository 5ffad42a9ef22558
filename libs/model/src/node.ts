// Node -> the node facts kube-proxy's rules depend on: name, addresses, zone, pod CIDRs.
import { DiagnosticSink, type Diagnostic } from './diagnostics.js';
import { parseCidr, ipFamilyOf, IPFamily, type Cidr } from './ip.js';
import { Kind, LabelTopologyZone, type NodeObject } from './k8s.js';
import { checkIP, checkObjectMeta, objectRefOf } from './meta.js';
import { checkDNS1123Subdomain, isPlainObject, show } from './validation.js';

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
  const sink = new DiagnosticSink(objectRefOf(Kind.Node, obj, false), opts.source);
  const meta = checkObjectMeta(sink, obj, { checkName: checkDNS1123Subdomain, namespaced: false });
  if (meta === undefined) return { diagnostics: sink.items };
  const { name } = meta;
  const status: unknown = obj.status;
  if (status !== undefined && status !== null && !isPlainObject(status))
    sink.error('status', `must be an object, not ${show(status)}`);
  const spec: unknown = obj.spec;
  if (spec !== undefined && spec !== null && !isPlainObject(spec))
    sink.error('spec', `must be an object, not ${show(spec)}`);
  const rawAddresses: unknown = isPlainObject(status) ? status.addresses : undefined;
  if (rawAddresses !== undefined && rawAddresses !== null && !Array.isArray(rawAddresses))
    sink.error('status.addresses', `must be a list, not ${show(rawAddresses)}`);
  const addresses: NodeAddressInfo[] = [];
  (Array.isArray(rawAddresses) ? (rawAddresses as unknown[]) : []).forEach((a, i) => {
    if (!isPlainObject(a)) {
      sink.error(`status.addresses[${i}]`, `must be an object, not ${show(a)}`);
      return;
    }
    if (a.type !== 'InternalIP' && a.type !== 'ExternalIP') return;
    const ip = checkIP(sink, `status.addresses[${i}].address`, a.address);
    if (ip === undefined) return;
    addresses.push({ type: a.type, ip, family: ipFamilyOf(ip) ?? IPFamily.IPv4 });
  });
  const s: Record<string, unknown> = isPlainObject(spec) ? spec : {};
  const many = Array.isArray(s.podCIDRs) && s.podCIDRs.length > 0;
  if (s.podCIDRs !== undefined && s.podCIDRs !== null && !Array.isArray(s.podCIDRs))
    sink.error('spec.podCIDRs', `must be a list, not ${show(s.podCIDRs)}`);
  const cidrTexts: unknown[] = many ? (s.podCIDRs as unknown[]) : s.podCIDR ? [s.podCIDR] : [];
  const podCIDRs: Cidr[] = [];
  cidrTexts.forEach((t, i) => {
    const c = typeof t === 'string' ? parseCidr(t) : undefined;
    if (c === undefined) sink.error(many ? `spec.podCIDRs[${i}]` : 'spec.podCIDR', `${show(t)} is not a valid CIDR`);
    else podCIDRs.push(c);
  });
  if (sink.hasErrors) return { diagnostics: sink.items };
  const labels: Record<string, string> = { ...(obj.metadata?.labels ?? {}) };
  return {
    node: {
      name,
      resourceVersion: typeof obj.metadata?.resourceVersion === 'string' ? obj.metadata.resourceVersion : '',
      labels,
      zone: labels[LabelTopologyZone] ?? '',
      addresses,
      podCIDRs,
    },
    diagnostics: sink.items,
  };
}
