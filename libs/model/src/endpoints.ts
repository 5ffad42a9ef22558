// EndpointSlice -> endpoints per service port, validated. Mirrors kube-proxy's EndpointSliceCache: the
// first address of each endpoint, readiness conditions with their API defaults, zone and node hints.
import { DiagnosticSink, type Diagnostic } from './diagnostics.js';
import { ipFamilyOf, joinHostPort, IPFamily } from './ip.js';
import { Kind, LabelServiceName, type EndpointSliceObject } from './k8s.js';
import { checkIP, checkObjectMeta, objectRefOf } from './meta.js';
import { Protocol } from './service.js';
import {
  checkDNS1035Label,
  checkDNS1123Label,
  checkDNS1123Subdomain,
  checkLabelValue,
  isPlainObject,
  show,
} from './validation.js';

/** The API server's limits on a slice (discovery/v1 validation). */
const MaxEndpoints = 1000;
const MaxPorts = 20000;
const MaxAddresses = 100;

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

/** A list field that may be absent: its items, or an error when it is not a list. */
function listOf(sink: DiagnosticSink, field: string, v: unknown, max: number): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    sink.error(field, `must be a list, not ${show(v)}`);
    return [];
  }
  if (v.length > max) {
    // The API server refuses more; kube-proxy would still program them all, and so does kpx.
    sink.warn(field, `may hold at most ${max} items in the API, not ${v.length}`);
  }
  return v;
}

/** Hint names (`hints.forZones[].name`, `hints.forNodes[].name`), each checked. */
function hintNames(
  sink: DiagnosticSink,
  field: string,
  v: unknown,
  check: (v: unknown) => string | undefined,
): string[] {
  const out: string[] = [];
  listOf(sink, field, v, 8).forEach((h, i) => {
    const name: unknown = isPlainObject(h) ? h.name : undefined;
    const bad = check(name);
    if (bad !== undefined) sink.error(`${field}[${i}].name`, bad);
    else if (name !== '') out.push(name as string);
  });
  return out;
}

function checkNodeName(v: unknown): string | undefined {
  return checkDNS1123Subdomain(v);
}

function checkZone(v: unknown): string | undefined {
  return checkLabelValue(v);
}

/** One endpoint, or undefined (with a diagnostic) when it is invalid or has no address. */
function convertEndpoint(
  sink: DiagnosticSink,
  f: string,
  e: unknown,
  family: IPFamily,
): Omit<Endpoint, 'port' | 'address'> | undefined {
  if (!isPlainObject(e)) {
    sink.error(f, `must be an object, not ${show(e)}`);
    return undefined;
  }
  const addresses = listOf(sink, `${f}.addresses`, e.addresses, MaxAddresses);
  if (addresses.length === 0) {
    sink.warn(`${f}.addresses`, 'is empty; endpoint ignored');
    return undefined;
  }
  // The API server checks every address against the slice's addressType; kube-proxy uses the first.
  const ips = addresses.map((raw, j) => {
    const ip = checkIP(sink, `${f}.addresses[${j}]`, raw);
    if (ip !== undefined && ipFamilyOf(ip) !== family)
      sink.error(`${f}.addresses[${j}]`, `${ip} is not an ${family} address (addressType ${family})`);
    return ip;
  });
  const ip = ips[0];
  const nodeName = e.nodeName === undefined || e.nodeName === null ? '' : e.nodeName;
  if (nodeName !== '') {
    const bad = checkNodeName(nodeName);
    if (bad !== undefined) sink.error(`${f}.nodeName`, bad);
  }
  const zone = e.zone === undefined || e.zone === null ? '' : e.zone;
  const badZone = checkZone(zone);
  if (badZone !== undefined) sink.error(`${f}.zone`, badZone);
  const c: Record<string, unknown> = isPlainObject(e.conditions) ? e.conditions : {};
  if (e.conditions !== undefined && e.conditions !== null && !isPlainObject(e.conditions))
    sink.error(`${f}.conditions`, `must be an object, not ${show(e.conditions)}`);
  for (const k of ['ready', 'serving', 'terminating']) {
    const v = c[k];
    if (v !== undefined && v !== null && typeof v !== 'boolean')
      sink.error(`${f}.conditions.${k}`, `must be true or false, not ${show(v)}`);
  }
  const hints: Record<string, unknown> = isPlainObject(e.hints) ? e.hints : {};
  const zoneHints = hintNames(sink, `${f}.hints.forZones`, hints.forZones, checkZone);
  const nodeHints = hintNames(sink, `${f}.hints.forNodes`, hints.forNodes, checkNodeName);
  if (ip === undefined || typeof nodeName !== 'string' || typeof zone !== 'string') return undefined;
  const ready = c.ready === undefined || c.ready === null || c.ready === true;
  return {
    ip,
    nodeName,
    zone,
    ready,
    // API semantics: serving defaults to ready when unset; terminating defaults to false.
    serving: c.serving === undefined || c.serving === null ? ready : c.serving === true,
    terminating: c.terminating === true,
    zoneHints,
    nodeHints,
  };
}

export function convertEndpointSlice(
  obj: EndpointSliceObject,
  opts: { source?: string } = {},
): EndpointSliceConversion {
  const sink = new DiagnosticSink(objectRefOf(Kind.EndpointSlice, obj, true), opts.source);
  const meta = checkObjectMeta(sink, obj, { checkName: checkDNS1123Subdomain, namespaced: true });
  if (meta === undefined) return { diagnostics: sink.items };
  const { name, namespace } = meta;
  const serviceName: unknown = obj.metadata?.labels?.[LabelServiceName];
  if (serviceName === undefined || serviceName === null || serviceName === '') {
    sink.error(
      `metadata.labels[${show(LabelServiceName)}]`,
      'is required: kpx cannot tell which service the slice belongs to',
    );
    return { diagnostics: sink.items };
  }
  const badService = checkDNS1035Label(serviceName);
  if (badService !== undefined) {
    sink.error(`metadata.labels[${show(LabelServiceName)}]`, `must name a Service: ${badService}`);
    return { diagnostics: sink.items };
  }
  const addressType = obj.addressType;
  if (addressType === 'FQDN') return { diagnostics: sink.items, skipped: 'FQDN address type' };
  if (addressType !== 'IPv4' && addressType !== 'IPv6') {
    sink.error('addressType', `unsupported value ${show(addressType)}: must be IPv4, IPv6 or FQDN`);
    return { diagnostics: sink.items };
  }
  const family = addressType === 'IPv4' ? IPFamily.IPv4 : IPFamily.IPv6;

  const ports: { portName: string; protocol: Protocol; port: number }[] = [];
  const seenPorts = new Set<string>();
  listOf(sink, 'ports', obj.ports, MaxPorts).forEach((raw, i) => {
    const f = `ports[${i}]`;
    if (!isPlainObject(raw)) {
      sink.error(f, `must be an object, not ${show(raw)}`);
      return;
    }
    const p = raw;
    const protocol =
      p.protocol === undefined || p.protocol === null || p.protocol === ''
        ? Protocol.TCP
        : Object.values(Protocol).find((x) => x === p.protocol);
    if (protocol === undefined)
      sink.error(`${f}.protocol`, `unsupported protocol ${show(p.protocol)}: must be TCP, UDP or SCTP`);
    let portName = '';
    if (p.name !== undefined && p.name !== null && p.name !== '') {
      const bad = checkDNS1123Label(p.name);
      if (bad !== undefined) sink.error(`${f}.name`, bad);
      else portName = p.name as string;
    }
    const key = `${portName}/${protocol ?? ''}`;
    if (seenPorts.has(key)) sink.error(`${f}.name`, `duplicate port name and protocol ${show(key)}`);
    seenPorts.add(key);
    // kube-proxy skips a port without a number (the slice controller writes one for unresolvable named ports).
    if (p.port === undefined || p.port === null) return;
    if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      sink.error(`${f}.port`, `${show(p.port)} is not a valid port number (1-65535)`);
      return;
    }
    if (protocol !== undefined) ports.push({ portName, protocol, port: p.port });
  });

  const eps: Omit<Endpoint, 'port' | 'address'>[] = [];
  listOf(sink, 'endpoints', obj.endpoints, MaxEndpoints).forEach((e, i) => {
    const ep = convertEndpoint(sink, `endpoints[${i}]`, e, family);
    if (ep !== undefined) eps.push(ep);
  });
  if (sink.hasErrors) return { diagnostics: sink.items };

  const slice: EndpointSliceInfo = {
    namespace,
    name,
    serviceName: serviceName as string,
    resourceVersion: typeof obj.metadata?.resourceVersion === 'string' ? obj.metadata.resourceVersion : '',
    ports: ports.map((p) => ({
      portName: p.portName,
      protocol: p.protocol,
      family,
      endpoints: eps.map((e) => withPort(e, p.port)),
    })),
  };
  return { slice, diagnostics: sink.items };
}
