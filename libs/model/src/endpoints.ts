// EndpointSlice -> endpoints per service port, validated. Mirrors kube-proxy's EndpointSliceCache: the
// first address of each endpoint, readiness conditions with their API defaults, zone and node hints.
import { DiagnosticSink, type Diagnostic } from './diagnostics.js';
import { canonicalIP, ipFamilyOf, joinHostPort, IPFamily } from './ip.js';
import { Kind, LabelServiceName, type EndpointSliceObject } from './k8s.js';
import { Protocol } from './service.js';

export interface Endpoint {
  readonly ip: string;
  readonly port: number;
  /** `ip:port` (`[ip]:port` for IPv6): kube-proxy's Endpoint.String(). */
  readonly address: string;
  readonly nodeName: string;
  readonly zone: string;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  readonly zoneHints: readonly string[];
  readonly nodeHints: readonly string[];
}

export interface SlicePort {
  readonly portName: string;
  readonly protocol: Protocol;
  readonly family: IPFamily;
  readonly endpoints: readonly Endpoint[];
}

export interface EndpointSliceInfo {
  readonly namespace: string;
  readonly name: string;
  readonly serviceName: string;
  readonly resourceVersion: string;
  readonly ports: readonly SlicePort[];
}

export interface EndpointSliceConversion {
  /** undefined when the slice is invalid or carries nothing kube-proxy uses (FQDN). */
  readonly slice?: EndpointSliceInfo;
  readonly diagnostics: Diagnostic[];
  readonly skipped?: string;
}

/**
 * An endpoint of one slice port. Spelled out field by field (same key order as before) rather than spread:
 * `{ ...e }` gave nearly every endpoint its own hidden class, which made every later read megamorphic.
 */
function withPort(e: Omit<Endpoint, 'port' | 'address'>, port: number): Endpoint {
  return {
    ip: e.ip,
    nodeName: e.nodeName,
    zone: e.zone,
    ready: e.ready,
    serving: e.serving,
    terminating: e.terminating,
    zoneHints: e.zoneHints,
    nodeHints: e.nodeHints,
    port,
    address: joinHostPort(e.ip, port),
  };
}

export function convertEndpointSlice(obj: EndpointSliceObject, opts: { source?: string } = {}): EndpointSliceConversion {
  const name = obj.metadata?.name ?? '';
  const namespace = obj.metadata?.namespace || 'default';
  const sink = new DiagnosticSink({ kind: Kind.EndpointSlice, namespace, name: name || '<unnamed>' }, opts.source);
  if (!name) {
    sink.error('metadata.name', 'is required');
    return { diagnostics: sink.items };
  }
  const serviceName = obj.metadata?.labels?.[LabelServiceName];
  if (!serviceName) {
    sink.error(`metadata.labels[${LabelServiceName}]`, 'is required: kpx cannot tell which service the slice belongs to');
    return { diagnostics: sink.items };
  }
  const addressType = obj.addressType;
  if (addressType === 'FQDN') return { diagnostics: sink.items, skipped: 'FQDN address type' };
  if (addressType !== 'IPv4' && addressType !== 'IPv6') {
    sink.error('addressType', `unsupported value ${JSON.stringify(addressType)}: must be IPv4, IPv6 or FQDN`);
    return { diagnostics: sink.items };
  }
  const family = addressType === 'IPv4' ? IPFamily.IPv4 : IPFamily.IPv6;

  const ports: { portName: string; protocol: Protocol; port: number }[] = [];
  (Array.isArray(obj.ports) ? obj.ports : []).forEach((p, i) => {
    const f = `ports[${i}]`;
    const protocol = p?.protocol === undefined || p.protocol === '' ? Protocol.TCP : Object.values(Protocol).find((x) => x === p.protocol);
    if (protocol === undefined) sink.error(`${f}.protocol`, `unsupported protocol ${JSON.stringify(p?.protocol)}: must be TCP, UDP or SCTP`);
    // kube-proxy skips a port without a number (the slice controller writes one for unresolvable named ports).
    if (p?.port === undefined || p.port === null) return;
    if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      sink.error(`${f}.port`, `${JSON.stringify(p.port)} is not a valid port number (1-65535)`);
      return;
    }
    if (protocol !== undefined) ports.push({ portName: typeof p.name === 'string' ? p.name : '', protocol, port: p.port });
  });

  const eps: Omit<Endpoint, 'port' | 'address'>[] = [];
  (Array.isArray(obj.endpoints) ? obj.endpoints : []).forEach((e, i) => {
    const f = `endpoints[${i}]`;
    const addresses = Array.isArray(e?.addresses) ? e.addresses : [];
    if (addresses.length === 0) {
      sink.warn(`${f}.addresses`, 'is empty; endpoint ignored');
      return;
    }
    const ip = canonicalIP(String(addresses[0]));
    if (ip === undefined) {
      sink.error(`${f}.addresses[0]`, `${JSON.stringify(addresses[0])} is not a valid IP address`);
      return;
    }
    if (ipFamilyOf(ip) !== family) {
      sink.error(`${f}.addresses[0]`, `${ip} is not an ${addressType} address`);
      return;
    }
    const c = e.conditions ?? {};
    const ready = c.ready === undefined || c.ready === null || c.ready === true;
    eps.push({
      ip,
      nodeName: typeof e.nodeName === 'string' ? e.nodeName : '',
      zone: typeof e.zone === 'string' ? e.zone : '',
      ready,
      // API semantics: serving defaults to ready when unset; terminating defaults to false.
      serving: c.serving === undefined || c.serving === null ? ready : c.serving === true,
      terminating: c.terminating === true,
      zoneHints: (e.hints?.forZones ?? []).map((z) => z?.name ?? '').filter((z) => z !== ''),
      nodeHints: (e.hints?.forNodes ?? []).map((n) => n?.name ?? '').filter((n) => n !== ''),
    });
  });
  if (sink.hasErrors) return { diagnostics: sink.items };

  const slice: EndpointSliceInfo = {
    namespace,
    name,
    serviceName,
    resourceVersion: obj.metadata?.resourceVersion ?? '',
    ports: ports.map((p) => ({
      portName: p.portName,
      protocol: p.protocol,
      family,
      endpoints: eps.map((e) => withPort(e, p.port)),
    })),
  };
  return { slice, diagnostics: sink.items };
}
