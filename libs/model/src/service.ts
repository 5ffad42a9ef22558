// Service -> service ports, validated. Mirrors kube-proxy's ServiceChangeTracker / BaseServicePortInfo:
// one ServicePort per (service, spec port, IP family that has a cluster IP).
import { DiagnosticSink, type Diagnostic } from './diagnostics.js';
import { ipFamilyOf, parseCidr, IPFamily, type Cidr } from './ip.js';
import { Kind, type ServiceObject } from './k8s.js';
import { checkIP, checkObjectMeta, objectRefOf } from './meta.js';
import { checkDNS1035Label, checkDNS1123Label, checkIANAServiceName, isPlainObject, show } from './validation.js';

export const Protocol = { TCP: 'TCP', UDP: 'UDP', SCTP: 'SCTP' } as const;
export type Protocol = (typeof Protocol)[keyof typeof Protocol];

export const ServiceType = {
  ClusterIP: 'ClusterIP',
  NodePort: 'NodePort',
  LoadBalancer: 'LoadBalancer',
  ExternalName: 'ExternalName',
} as const;
export type ServiceType = (typeof ServiceType)[keyof typeof ServiceType];

export const TrafficPolicy = { Cluster: 'Cluster', Local: 'Local' } as const;
export type TrafficPolicy = (typeof TrafficPolicy)[keyof typeof TrafficPolicy];

/** Default ClientIP affinity timeout (v1.DefaultClientIPServiceAffinitySeconds). */
export const DefaultAffinityTimeoutSeconds = 10800;
const MaxAffinityTimeoutSeconds = 86400;

export interface ServiceRef {
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
}

/** One port of one service in one IP family: what kube-proxy calls a ServicePort. */
export interface ServicePort {
  readonly service: ServiceRef;
  /** kube-proxy's ServicePortName.String(): `ns/name` or `ns/name:portName`. */
  readonly name: string;
  readonly portName: string;
  readonly protocol: Protocol;
  readonly family: IPFamily;
  readonly clusterIP: string;
  readonly port: number;
  /** 0 when the service has no node port. */
  readonly nodePort: number;
  readonly externalIPs: readonly string[];
  /** LoadBalancer ingress IPs of this family in VIP mode (ipMode Proxy excluded). */
  readonly loadBalancerVIPs: readonly string[];
  readonly loadBalancerSourceRanges: readonly Cidr[];
  /** 0 when ClientIP affinity is off, else the stickiness timeout in seconds. */
  readonly affinityTimeoutSeconds: number;
  readonly externalPolicyLocal: boolean;
  readonly internalPolicyLocal: boolean;
  /** 0 unless the service is a LoadBalancer with eTP Local. */
  readonly healthCheckNodePort: number;
  /**
   * True on every port of a service that serves a health check on its healthCheckNodePort (one server per
   * service, whatever its number of ports); absent when it serves none (no port, or another service holds it).
   */
  readonly servesHealthCheck?: true;
}

/** Key joining a service port to its endpoints: `ns/name:portName/PROTOCOL/family`. */
export function servicePortKey(p: {
  service: { namespace: string; name: string };
  portName: string;
  protocol: Protocol;
  family: IPFamily;
}): string {
  return `${p.service.namespace}/${p.service.name}:${p.portName}/${p.protocol}/${p.family}`;
}

/** kube-proxy's ServicePortName.String(). */
export function servicePortNameString(namespace: string, name: string, portName: string): string {
  return portName ? `${namespace}/${name}:${portName}` : `${namespace}/${name}`;
}

export function externallyAccessible(p: ServicePort): boolean {
  return p.nodePort !== 0 || p.loadBalancerVIPs.length > 0 || p.externalIPs.length > 0;
}

/** Cluster endpoints are needed unless iTP is Local and nothing external reaches the port. */
export function usesClusterEndpoints(p: ServicePort): boolean {
  return !p.internalPolicyLocal || externallyAccessible(p);
}

export function usesLocalEndpoints(p: ServicePort): boolean {
  return p.internalPolicyLocal || (p.externalPolicyLocal && externallyAccessible(p));
}

export interface ServiceConversion {
  /** Service ports of every family; empty for headless / ExternalName / invalid services. */
  readonly ports: ServicePort[];
  readonly diagnostics: Diagnostic[];
  /** Why the service produces no rules, when it produces none on purpose (headless, ExternalName). */
  readonly skipped?: string;
}

type ServiceIngress = { ip?: unknown; ipMode?: unknown } | null | undefined;

function isPortNumber(v: unknown, allowZero = false): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v <= 65535 && (allowZero ? v >= 0 : v >= 1);
}

function parseProtocol(v: unknown): Protocol | undefined {
  if (v === undefined || v === null || v === '') return Protocol.TCP;
  return Object.values(Protocol).find((p) => p === v);
}

function parsePolicy(sink: DiagnosticSink, field: string, v: unknown): TrafficPolicy {
  if (v === undefined || v === null || v === '') return TrafficPolicy.Cluster;
  if (v === TrafficPolicy.Cluster || v === TrafficPolicy.Local) return v;
  sink.error(field, `unsupported value ${show(v)}: must be "Cluster" or "Local"`);
  return TrafficPolicy.Cluster;
}

const IPFamilyPolicies = ['SingleStack', 'PreferDualStack', 'RequireDualStack'];

/** spec.ipFamilies as the API validates it: at most two distinct families. Undefined when not given. */
function ipFamiliesOf(sink: DiagnosticSink, spec: Record<string, unknown>): (IPFamily | undefined)[] | undefined {
  const v = spec.ipFamilies;
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) {
    sink.error('spec.ipFamilies', `must be a list of IP families, not ${show(v)}`);
    return undefined;
  }
  if (v.length > 2) sink.error('spec.ipFamilies', `may hold at most two families, not ${v.length}`);
  const out = (v as unknown[]).map((f, i): IPFamily | undefined => {
    if (f === IPFamily.IPv4 || f === IPFamily.IPv6) return f;
    sink.error(`spec.ipFamilies[${i}]`, `unsupported value ${show(f)}: must be IPv4 or IPv6`);
    return undefined;
  });
  if (out.length === 2 && out[0] !== undefined && out[0] === out[1])
    sink.error('spec.ipFamilies[1]', `duplicate family ${out[0]}`);
  return out;
}

function clusterIPsOf(sink: DiagnosticSink, spec: Record<string, unknown>): Map<IPFamily, string> | 'headless' {
  if (spec.clusterIPs !== undefined && spec.clusterIPs !== null && !Array.isArray(spec.clusterIPs)) {
    sink.error('spec.clusterIPs', `must be a list of IP addresses, not ${show(spec.clusterIPs)}`);
    return new Map();
  }
  if (spec.clusterIP !== undefined && spec.clusterIP !== null && typeof spec.clusterIP !== 'string') {
    sink.error('spec.clusterIP', `must be a string, not ${show(spec.clusterIP)}`);
    return new Map();
  }
  const clusterIPs = spec.clusterIPs as unknown[] | undefined;
  const list: unknown[] =
    Array.isArray(clusterIPs) && clusterIPs.length > 0
      ? clusterIPs
      : typeof spec.clusterIP === 'string'
        ? [spec.clusterIP]
        : [];
  if (list.length === 0 || list[0] === 'None' || list[0] === '') return 'headless';
  if (
    typeof spec.clusterIP === 'string' &&
    spec.clusterIP !== '' &&
    Array.isArray(clusterIPs) &&
    clusterIPs.length > 0 &&
    clusterIPs[0] !== spec.clusterIP
  ) {
    sink.error('spec.clusterIPs[0]', `must equal spec.clusterIP ${show(spec.clusterIP)}`);
  }
  if (list.length > 2) sink.error('spec.clusterIPs', `may hold at most two addresses, not ${list.length}`);
  const families = ipFamiliesOf(sink, spec);
  const policy = spec.ipFamilyPolicy;
  if (policy !== undefined && policy !== null && !IPFamilyPolicies.includes(policy as string)) {
    sink.error('spec.ipFamilyPolicy', `unsupported value ${show(policy)}: must be ${IPFamilyPolicies.join(', ')}`);
  }
  const byFamily = new Map<IPFamily, string>();
  const field = Array.isArray(clusterIPs) && clusterIPs.length > 0 ? 'spec.clusterIPs' : 'spec.clusterIP';
  list.forEach((raw, i) => {
    const f = field === 'spec.clusterIPs' ? `${field}[${i}]` : field;
    const ip = checkIP(sink, f, raw);
    if (ip === undefined) return;
    const family = ipFamilyOf(ip) ?? IPFamily.IPv4;
    if (byFamily.has(family)) sink.error(f, `more than one ${family} cluster IP`);
    const expected = families?.[i];
    if (expected !== undefined && expected !== family)
      sink.error(f, `${ip} is an ${family} address, but spec.ipFamilies[${i}] is ${expected}`);
    byFamily.set(family, ip);
  });
  if (policy === 'SingleStack' && (list.length > 1 || (families?.length ?? 0) > 1)) {
    sink.error('spec.ipFamilyPolicy', 'SingleStack allows one IP family and one cluster IP');
  }
  return byFamily;
}

function ipList(sink: DiagnosticSink, field: string, v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    sink.error(field, 'must be a list of IP addresses');
    return [];
  }
  const out: string[] = [];
  v.forEach((raw, i) => {
    const ip = checkIP(sink, `${field}[${i}]`, raw);
    if (ip !== undefined) out.push(ip);
  });
  return out;
}

/** spec.ports[i].targetPort: a port number, or a port name (an IANA service name); absent or 0 means `port`. */
function checkTargetPort(sink: DiagnosticSink, field: string, v: unknown): void {
  if (v === undefined || v === null || v === 0) return;
  if (typeof v === 'number') {
    if (!isPortNumber(v)) sink.error(field, `${show(v)} is not a valid port number (1-65535)`);
    return;
  }
  const bad = checkIANAServiceName(v);
  if (bad !== undefined) sink.error(field, `must be a port number or an IANA service name: ${bad}`);
}

/** Converts one Service object. Invalid services yield no ports and at least one error diagnostic. */
export function convertService(obj: ServiceObject, opts: { source?: string } = {}): ServiceConversion {
  const sink = new DiagnosticSink(objectRefOf(Kind.Service, obj, true), opts.source);
  const meta = checkObjectMeta(sink, obj, { checkName: checkDNS1035Label, namespaced: true });
  if (meta === undefined) return { ports: [], diagnostics: sink.items };
  const { name, namespace } = meta;
  const rawSpec: unknown = obj.spec ?? {};
  if (!isPlainObject(rawSpec)) {
    sink.error('spec', `must be an object, not ${show(rawSpec)}`);
    return { ports: [], diagnostics: sink.items };
  }
  const spec = rawSpec as NonNullable<ServiceObject['spec']> & Record<string, unknown>;
  const type = spec.type ?? ServiceType.ClusterIP;
  if (!Object.values(ServiceType).includes(type as ServiceType)) {
    sink.error(
      'spec.type',
      `unsupported value ${show(type)}: must be ClusterIP, NodePort, LoadBalancer or ExternalName`,
    );
    return { ports: [], diagnostics: sink.items };
  }
  if (type === ServiceType.ExternalName) return { ports: [], diagnostics: sink.items, skipped: 'ExternalName service' };
  const clusterIPs = clusterIPsOf(sink, spec);
  if (clusterIPs === 'headless')
    return { ports: [], diagnostics: sink.items, skipped: 'headless service (clusterIP None)' };

  if (spec.ports !== undefined && spec.ports !== null && !Array.isArray(spec.ports))
    sink.error('spec.ports', `must be a list of ports, not ${show(spec.ports)}`);
  const ports: unknown[] = Array.isArray(spec.ports) ? spec.ports : [];
  if (ports.length === 0) sink.error('spec.ports', 'a service with a cluster IP needs at least one port');
  const seenNames = new Set<string>();
  const seenPorts = new Set<string>();
  const seenNodePorts = new Set<string>();
  const portSpecs: { portName: string; protocol: Protocol; port: number; nodePort: number }[] = [];
  const hasNodePorts = type === ServiceType.NodePort || type === ServiceType.LoadBalancer;
  ports.forEach((raw, i) => {
    const f = `spec.ports[${i}]`;
    if (!isPlainObject(raw)) {
      sink.error(f, `must be an object, not ${show(raw)}`);
      return;
    }
    const p = raw;
    let portName = '';
    if (p.name !== undefined && p.name !== null && p.name !== '') {
      const bad = checkDNS1123Label(p.name);
      if (bad !== undefined) sink.error(`${f}.name`, bad);
      else portName = p.name as string;
    }
    if (ports.length > 1 && (p.name === undefined || p.name === null || p.name === ''))
      sink.error(`${f}.name`, 'is required when a service has more than one port');
    if (portName && seenNames.has(portName)) sink.error(`${f}.name`, `duplicate port name ${show(portName)}`);
    seenNames.add(portName);
    const protocol = parseProtocol(p.protocol);
    if (protocol === undefined)
      sink.error(`${f}.protocol`, `unsupported protocol ${show(p.protocol)}: must be TCP, UDP or SCTP`);
    if (!isPortNumber(p.port)) sink.error(`${f}.port`, `${show(p.port)} is not a valid port number (1-65535)`);
    checkTargetPort(sink, `${f}.targetPort`, p.targetPort);
    let nodePort = 0;
    if (p.nodePort !== undefined && p.nodePort !== null && p.nodePort !== 0) {
      if (!isPortNumber(p.nodePort))
        sink.error(`${f}.nodePort`, `${show(p.nodePort)} is not a valid port number (1-65535)`);
      else if (!hasNodePorts) sink.error(`${f}.nodePort`, `may not be used when spec.type is ${type}`);
      else {
        nodePort = p.nodePort;
        const nk = `${nodePort}/${protocol ?? ''}`;
        if (seenNodePorts.has(nk)) sink.error(`${f}.nodePort`, `duplicate node port ${nk}`);
        seenNodePorts.add(nk);
      }
    }
    const key = `${show(p.port)}/${protocol ?? ''}`;
    if (seenPorts.has(key)) sink.error(`${f}.port`, `duplicate port ${key}`);
    seenPorts.add(key);
    if (protocol !== undefined && isPortNumber(p.port)) portSpecs.push({ portName, protocol, port: p.port, nodePort });
  });

  const externalIPs = ipList(sink, 'spec.externalIPs', spec.externalIPs);
  const sourceRanges: Cidr[] = [];
  (Array.isArray(spec.loadBalancerSourceRanges) ? spec.loadBalancerSourceRanges : []).forEach((raw, i) => {
    const cidr = typeof raw === 'string' ? parseCidr(raw) : undefined;
    if (cidr === undefined) sink.error(`spec.loadBalancerSourceRanges[${i}]`, `${show(raw)} is not a valid CIDR`);
    else sourceRanges.push(cidr);
  });
  const lbVIPs: string[] = [];
  const ingress: unknown =
    isPlainObject(obj.status) && isPlainObject(obj.status.loadBalancer) ? obj.status.loadBalancer.ingress : undefined;
  (Array.isArray(ingress) ? (ingress as ServiceIngress[]) : []).forEach((ing, i) => {
    const f = `status.loadBalancer.ingress[${i}]`;
    if (ing?.ipMode !== undefined && ing.ipMode !== 'VIP' && ing.ipMode !== 'Proxy') {
      sink.error(`${f}.ipMode`, `unsupported value ${show(ing.ipMode)}: must be "VIP" or "Proxy"`);
    }
    if (!ing?.ip) return;
    const ip = checkIP(sink, `${f}.ip`, ing.ip);
    if (ip === undefined) return;
    // Proxy-mode load balancers deliver to the node themselves: kube-proxy programs nothing for their IPs.
    if (ing.ipMode !== 'Proxy') lbVIPs.push(ip);
  });
  const eTP = parsePolicy(sink, 'spec.externalTrafficPolicy', spec.externalTrafficPolicy);
  const iTP = parsePolicy(sink, 'spec.internalTrafficPolicy', spec.internalTrafficPolicy);
  let affinityTimeoutSeconds = 0;
  const affinity = spec.sessionAffinity ?? 'None';
  if (affinity === 'ClientIP') {
    const t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DefaultAffinityTimeoutSeconds;
    if (!Number.isInteger(t) || t < 1 || t > MaxAffinityTimeoutSeconds) {
      sink.error(
        'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
        `${show(t)} must be an integer from 1 to ${MaxAffinityTimeoutSeconds}`,
      );
    } else affinityTimeoutSeconds = t;
  } else if (affinity !== 'None' && affinity !== '') {
    sink.error('spec.sessionAffinity', `unsupported value ${show(affinity)}: must be "None" or "ClientIP"`);
  }
  const externalPolicyLocal = hasNodePorts && eTP === TrafficPolicy.Local;
  let healthCheckNodePort = 0;
  if (type === ServiceType.LoadBalancer && eTP === TrafficPolicy.Local) {
    const h = spec.healthCheckNodePort ?? 0;
    if (h === 0)
      sink.warn(
        'spec.healthCheckNodePort',
        'a LoadBalancer service with externalTrafficPolicy Local has no health check node port',
      );
    else if (!isPortNumber(h))
      sink.error('spec.healthCheckNodePort', `${show(h)} is not a valid port number (1-65535)`);
    else healthCheckNodePort = h;
  }
  if (sink.hasErrors) return { ports: [], diagnostics: sink.items };

  const service: ServiceRef = {
    namespace,
    name,
    resourceVersion: typeof obj.metadata?.resourceVersion === 'string' ? obj.metadata.resourceVersion : '',
  };
  const out: ServicePort[] = [];
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    const clusterIP = clusterIPs.get(family);
    if (clusterIP === undefined) continue;
    for (const ps of portSpecs) {
      out.push({
        service,
        name: servicePortNameString(namespace, name, ps.portName),
        portName: ps.portName,
        protocol: ps.protocol,
        family,
        clusterIP,
        port: ps.port,
        nodePort: ps.nodePort,
        externalIPs: externalIPs.filter((ip) => ipFamilyOf(ip) === family),
        loadBalancerVIPs: lbVIPs.filter((ip) => ipFamilyOf(ip) === family),
        loadBalancerSourceRanges: sourceRanges.filter((c) => c.family === family),
        affinityTimeoutSeconds,
        externalPolicyLocal,
        internalPolicyLocal: iTP === TrafficPolicy.Local,
        healthCheckNodePort,
        ...(healthCheckNodePort !== 0 ? { servesHealthCheck: true as const } : {}),
      });
    }
  }
  return { ports: out, diagnostics: sink.items };
}
