// Decoding a KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1): YAML or JSON read the way go-yaml
// reads it, every field type-checked and defaulted (./defaults.ts), each value validated (./validate.ts) where it is
// read. The result keeps the mode sections as the file gives them; ./resolve.ts turns them into the one view
// consumers read.
import { parseAllDocuments, type Document, isMap, isScalar, isSeq, type ParsedNode } from 'yaml';

import { IPFamily, type Cidr } from '../ip.js';
import {
  DEFAULT_BURST,
  DEFAULT_CONFIG_SYNC_PERIOD_MS,
  DEFAULT_CONNTRACK,
  DEFAULT_CONTENT_TYPE,
  DEFAULT_IPTABLES,
  DEFAULT_IPVS,
  DEFAULT_NFTABLES,
  DEFAULT_QPS,
  KUBE_PROXY_OOM_SCORE_ADJ,
  PROXY_HEALTHZ_PORT,
  PROXY_STATUS_PORT,
  nonZeroOr,
} from './defaults.js';
import { parseDuration } from './duration.js';
import { KubeProxyConfigError, type KubeProxyConfigProblem } from './errors.js';
import { closest } from './suggest.js';
import {
  IPVSScheduler,
  KUBE_PROXY_CONFIG_API_VERSION,
  KUBE_PROXY_CONFIG_KIND,
  LocalMode,
  NodePortAddressesKind,
  ProxyMode,
  type IPTablesSection,
  type IPVSSection,
  type KubeProxyClientConnectionConfig,
  type KubeProxyConfig,
  type KubeProxyConntrackConfig,
  type KubeProxyDetectLocalConfig,
  type ModeSections,
  type NFTablesSection,
  type NodePortAddresses,
  type SectionName,
} from './types.js';
import {
  appendPortIfNeeded,
  checkHostPort,
  checkMasqueradeBit,
  checkNonNegative,
  checkNonNegativeDuration,
  ipFamily,
  parseClusterCidrs,
  parseConfigCidr,
  show,
  showDuration,
} from './validate.js';

// Field names of KubeProxyConfiguration v1alpha1 (staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go).
const TOP_LEVEL_FIELDS = [
  'apiVersion',
  'kind',
  'featureGates',
  'clientConnection',
  'logging',
  'hostnameOverride',
  'bindAddress',
  'healthzBindAddress',
  'metricsBindAddress',
  'bindAddressHardFail',
  'enableProfiling',
  'showHiddenMetricsForVersion',
  'mode',
  'iptables',
  'ipvs',
  'nftables',
  'winkernel',
  'detectLocalMode',
  'detectLocal',
  'clusterCIDR',
  'nodePortAddresses',
  'oomScoreAdj',
  'conntrack',
  'configSyncPeriod',
  'portRange',
  'windowsRunAsService',
] as const;
/** Accepted at the top level by kpx although v1alpha1 has them only per mode. */
const TOP_LEVEL_ALIASES = ['masqueradeAll', 'syncPeriod', 'minSyncPeriod'] as const;
const IPTABLES_FIELDS = [
  'masqueradeBit',
  'masqueradeAll',
  'localhostNodePorts',
  'snatNodeInternalIP',
  'syncPeriod',
  'minSyncPeriod',
] as const;
const IPVS_FIELDS = [
  'syncPeriod',
  'minSyncPeriod',
  'scheduler',
  'excludeCIDRs',
  'strictARP',
  'tcpTimeout',
  'tcpFinTimeout',
  'udpTimeout',
] as const;
const NFTABLES_FIELDS = ['masqueradeBit', 'masqueradeAll', 'syncPeriod', 'minSyncPeriod'] as const;
const CONNTRACK_FIELDS = [
  'maxPerCore',
  'min',
  'tcpEstablishedTimeout',
  'tcpCloseWaitTimeout',
  'tcpBeLiberal',
  'udpTimeout',
  'udpStreamTimeout',
] as const;
const DETECT_LOCAL_FIELDS = ['bridgeInterface', 'interfaceNamePrefix'] as const;
const CLIENT_CONNECTION_FIELDS = ['kubeconfig', 'acceptContentTypes', 'contentType', 'qps', 'burst'] as const;

/** Fields older files may still carry; named in the unknown-field warning. */
const REMOVED_FIELDS: Readonly<Record<string, string>> = {
  udpIdleTimeout: 'removed together with the userspace proxy',
  resourceContainer: 'no longer part of KubeProxyConfiguration',
  'conntrack.max': 'no longer part of KubeProxyConfiguration; see conntrack.maxPerCore',
};

// ---------------------------------------------------------------------------------------------------------------
// YAML

type Obj = Record<string, unknown>;

export function parseYaml(text: string, reader: Reader, source: string | undefined): unknown {
  const docs = parseAllDocuments(text, {
    // kube-proxy decodes with go-yaml (YAML 1.1): yes/no/on/off are booleans. Sexagesimal numbers and timestamps,
    // which go-yaml does not resolve either, stay strings.
    version: '1.1',
    customTags: (tags) =>
      tags.filter((t) => typeof t === 'string' || (t.format !== 'TIME' && !t.tag.endsWith(':timestamp'))),
    uniqueKeys: false,
    prettyErrors: true,
  });
  const list = Array.isArray(docs) ? docs : [docs];
  const first = list[0];
  if (first === undefined || first.contents === null) {
    throw new KubeProxyConfigError(
      [{ field: '', message: 'the document is empty; expected a KubeProxyConfiguration' }],
      {
        source,
      },
    );
  }
  for (const doc of list) {
    if (doc.errors.length > 0) {
      const problems = doc.errors.map((e) => ({
        field: '',
        message: `not valid YAML or JSON: ${firstLine(e.message)}`,
      }));
      throw new KubeProxyConfigError(problems, { source, cause: doc.errors[0] });
    }
  }
  if (list.length > 1) {
    reader.warnings.push(`the file holds ${list.length} YAML documents; only the first one is read`);
  }
  for (const w of first.warnings) reader.warnings.push(`YAML: ${firstLine(w.message)}`);
  findDuplicateKeys(first, reader);
  return first.toJS({ maxAliasCount: 100 }) as unknown;
}

function firstLine(message: string): string {
  const line = message.split('\n', 1)[0] ?? message;
  return line.endsWith(':') ? line.slice(0, -1) : line;
}

/** go-yaml accepts repeated keys (the last wins) and kube-proxy warns; so do we. */
function findDuplicateKeys(doc: Document.Parsed, reader: Reader): void {
  const walk = (node: ParsedNode | null, path: string): void => {
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const childPath = joinPath(path, key);
        if (seen.has(key)) reader.warn(childPath, 'duplicate field; the last value is used');
        seen.add(key);
        walk(pair.value, childPath);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => walk(item, `${path}[${i}]`));
    }
  };
  walk(doc.contents, '');
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding

/** Collects problems (refusals) and warnings while decoding. */
export class Reader {
  readonly problems: KubeProxyConfigProblem[] = [];
  readonly warnings: string[] = [];

  problem(field: string, message: string): void {
    this.problems.push({ field, message });
  }

  warn(field: string, message: string): void {
    this.warnings.push(field === '' ? message : `${field}: ${message}`);
  }

  /** A validation finding: a problem when the field is in effect, a warning when kube-proxy would not look at it. */
  report(inEffect: boolean, field: string, message: string): void {
    if (inEffect) this.problem(field, message);
    else this.warn(field, `${message} (not refused: the field is not used in this configuration)`);
  }
}

/** Typed access to one mapping of the file; records a problem for every value of the wrong type. */
class Section {
  constructor(
    private readonly reader: Reader,
    readonly obj: Obj | undefined,
    readonly path: string,
  ) {}

  field(key: string): string {
    return joinPath(this.path, key);
  }

  has(key: string): boolean {
    const v = this.obj?.[key];
    return v !== undefined && v !== null;
  }

  /** The keys of this mapping that are set to a non-null value. */
  written(): ReadonlySet<string> {
    return new Set(Object.keys(this.obj ?? {}).filter((key) => this.has(key)));
  }

  raw(key: string): unknown {
    const v = this.obj?.[key];
    return v === null ? undefined : v;
  }

  private typed<T>(key: string, what: string, accept: (v: unknown) => v is T): T | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (accept(v)) return v;
    this.reader.problem(this.field(key), `invalid value ${show(v)}: must be ${what}`);
    return undefined;
  }

  string(key: string): string | undefined {
    return this.typed(key, 'a string', (v): v is string => typeof v === 'string');
  }

  bool(key: string): boolean | undefined {
    return this.typed(key, 'true or false', (v): v is boolean => typeof v === 'boolean');
  }

  number(key: string): number | undefined {
    return this.typed(key, 'a number', (v): v is number => typeof v === 'number' && Number.isFinite(v));
  }

  int32(key: string): number | undefined {
    return this.typed(
      key,
      'a 32-bit integer',
      (v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31,
    );
  }

  /** A Go duration string ("30s", "1m30s", "500ms"), in milliseconds. */
  duration(key: string): number | undefined {
    const text = this.string(key);
    if (text === undefined) return undefined;
    const ms = parseDuration(text);
    if (ms === undefined) {
      this.reader.problem(
        this.field(key),
        `invalid value ${show(text)}: must be a duration such as "30s", "1m30s" or "500ms" (units h, m, s, ms, us, ns)`,
      );
    }
    return ms;
  }

  stringList(key: string): string[] | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) {
      this.reader.problem(this.field(key), `invalid value ${show(v)}: must be a list of strings`);
      return undefined;
    }
    const out: string[] = [];
    v.forEach((item: unknown, i) => {
      if (typeof item === 'string') out.push(item);
      else this.reader.problem(`${this.field(key)}[${i}]`, `invalid value ${show(item)}: must be a string`);
    });
    return out;
  }

  boolMap(key: string): Record<string, boolean> | undefined {
    const sub = this.section(key);
    if (sub.obj === undefined) return undefined;
    const out: Record<string, boolean> = {};
    for (const name of Object.keys(sub.obj)) {
      const b = sub.bool(name);
      if (b !== undefined) out[name] = b;
    }
    return out;
  }

  /** A nested mapping; absent or null gives an empty section. */
  section(key: string): Section {
    const v = this.raw(key);
    if (v !== undefined && !isObj(v)) {
      this.reader.problem(this.field(key), `invalid value ${show(v)}: must be a mapping`);
    }
    return new Section(this.reader, isObj(v) ? v : undefined, this.field(key));
  }

  /** Warns about every key of this mapping that is not in `known`. */
  checkKnown(known: readonly string[]): void {
    if (this.obj === undefined) return;
    for (const key of Object.keys(this.obj)) {
      if (known.includes(key)) continue;
      const field = this.field(key);
      const removed = REMOVED_FIELDS[field];
      const guess = removed === undefined ? closest(key, known) : undefined;
      let note = '';
      if (removed !== undefined) note = ` (${removed})`;
      else if (guess !== undefined) note = ` (did you mean "${guess}"?)`;
      this.reader.warn(field, `unknown field${note}; it is not part of KubeProxyConfiguration and is ignored`);
    }
  }
}

/** kpx's top-level aliases of per-mode fields, when the file has them (`value` undefined: present but invalid). */
export interface TopLevelAliases {
  readonly masqueradeAll?: { readonly value: boolean | undefined };
  readonly syncPeriod?: { readonly value: number | undefined };
  readonly minSyncPeriod?: { readonly value: number | undefined };
}

/** The settings that are read in one place only: decoded, they are already resolved. */
export type SingleSourceSettings = Omit<
  KubeProxyConfig,
  'masqueradeAll' | 'masqueradeBit' | 'syncPeriodMs' | 'minSyncPeriodMs' | 'iptables' | 'ipvs'
>;

/** A file decoded and defaulted, field by field; the settings given in more than one place are not resolved yet. */
export interface DecodedConfig {
  readonly settings: SingleSourceSettings;
  /** The mode sections as the file gives them, defaulted. */
  readonly sections: ModeSections;
  /** The fields each mode section sets (to a non-null value). */
  readonly written: Readonly<Record<SectionName, ReadonlySet<string>>>;
  readonly aliases: TopLevelAliases;
}

/** Decodes the parsed document; `undefined` when it is not a KubeProxyConfiguration at all (problems say why). */
export function decodeConfig(root: unknown, reader: Reader): DecodedConfig | undefined {
  if (!isObj(root)) {
    reader.problem('', `the document must be a mapping (a KubeProxyConfiguration), not ${show(root)}`);
    return undefined;
  }
  const top = new Section(reader, root, '');
  if (!checkTypeMeta(top, reader)) return undefined;
  top.checkKnown([...TOP_LEVEL_FIELDS, ...TOP_LEVEL_ALIASES]);

  const mode = decodeMode(top, reader);
  const iptSection = top.section('iptables');
  const ipvsSection = top.section('ipvs');
  const nftSection = top.section('nftables');
  iptSection.checkKnown(IPTABLES_FIELDS);
  ipvsSection.checkKnown(IPVS_FIELDS);
  nftSection.checkKnown(NFTABLES_FIELDS);

  const sections: ModeSections = {
    iptables: decodeIPTables(iptSection, reader),
    ipvs: decodeIPVS(ipvsSection, reader, mode === ProxyMode.IPVS),
    nftables: decodeNFTables(nftSection, reader, mode === ProxyMode.NFTables),
  };
  const written = { iptables: iptSection.written(), ipvs: ipvsSection.written(), nftables: nftSection.written() };
  const aliases: TopLevelAliases = {
    ...(top.has('masqueradeAll') ? { masqueradeAll: { value: top.bool('masqueradeAll') } } : {}),
    ...(top.has('syncPeriod') ? { syncPeriod: { value: top.duration('syncPeriod') } } : {}),
    ...(top.has('minSyncPeriod') ? { minSyncPeriod: { value: top.duration('minSyncPeriod') } } : {}),
  };

  const { detectLocalMode, detectLocal, clusterCIDRs } = decodeLocalDetection(top, reader);
  const addresses = decodeAddresses(top, reader);
  warnIgnoredFields(top, reader);

  const configSync = top.duration('configSyncPeriod');
  const configSyncPeriodMs = configSync === undefined || configSync === 0 ? DEFAULT_CONFIG_SYNC_PERIOD_MS : configSync;
  if (configSyncPeriodMs < 0) {
    reader.problem('configSyncPeriod', `invalid value ${showDuration(configSyncPeriodMs)}: must be greater than 0`);
  }

  const featureGates = top.boolMap('featureGates') ?? {};
  const gateNames = Object.keys(featureGates);
  if (gateNames.length > 0)
    reader.warn('featureGates', `ignored: kpx does not act on feature gates (${gateNames.join(', ')})`);

  const settings: SingleSourceSettings = {
    mode,
    ...addresses,
    detectLocalMode,
    detectLocal,
    clusterCIDRs,
    nodePortAddresses: decodeNodePortAddresses(top, reader, mode),
    conntrack: decodeConntrack(top.section('conntrack'), reader),
    configSyncPeriodMs,
    clientConnection: decodeClientConnection(top.section('clientConnection'), reader),
    featureGates,
  };
  return { settings, sections, written, aliases };
}

function checkTypeMeta(top: Section, reader: Reader): boolean {
  const ok = (key: 'apiVersion' | 'kind', expected: string): boolean => {
    const v = top.raw(key);
    if (v === expected) return true;
    if (v === undefined) reader.problem(key, `missing: must be ${show(expected)}`);
    else reader.problem(key, `unsupported value ${show(v)}: kpx reads only ${show(expected)}`);
    return false;
  };
  const apiOk = ok('apiVersion', KUBE_PROXY_CONFIG_API_VERSION);
  const kindOk = ok('kind', KUBE_PROXY_CONFIG_KIND);
  return apiOk && kindOk;
}

function decodeMode(top: Section, reader: Reader): ProxyMode {
  const raw = top.string('mode') ?? '';
  if (raw === '') return ProxyMode.IPTables;
  if (isOneOf(raw, Object.values(ProxyMode))) return raw;
  const why = raw === 'userspace' ? ' (the userspace proxy was removed from kube-proxy)' : '';
  reader.problem(
    'mode',
    `invalid value ${show(raw)}: must be iptables, ipvs, nftables or blank (blank means the best-available proxy [currently iptables])${why}`,
  );
  return ProxyMode.IPTables;
}

function decodeIPTables(s: Section, reader: Reader): IPTablesSection {
  const masqueradeBit = s.int32('masqueradeBit') ?? DEFAULT_IPTABLES.masqueradeBit;
  // kube-proxy validates iptables.masqueradeBit whatever the mode.
  const bitProblem = checkMasqueradeBit(masqueradeBit);
  if (bitProblem !== undefined) reader.problem(s.field('masqueradeBit'), bitProblem);
  if (s.bool('snatNodeInternalIP') === true) {
    reader.warn(
      s.field('snatNodeInternalIP'),
      'ignored: kpx does not support SNAT to the node InternalIP; the egress address is used',
    );
  }
  return {
    masqueradeBit,
    masqueradeAll: s.bool('masqueradeAll') ?? DEFAULT_IPTABLES.masqueradeAll,
    localhostNodePorts: s.bool('localhostNodePorts') ?? DEFAULT_IPTABLES.localhostNodePorts,
    // v1alpha1 defaulting replaces 0 as well as absent: an iptables minSyncPeriod of "0s" becomes 1s.
    syncPeriodMs: nonZeroOr(s.duration('syncPeriod'), DEFAULT_IPTABLES.syncPeriodMs),
    minSyncPeriodMs: nonZeroOr(s.duration('minSyncPeriod'), DEFAULT_IPTABLES.minSyncPeriodMs),
  };
}

function decodeIPVS(s: Section, reader: Reader, inEffect: boolean): IPVSSection {
  const schedulerRaw = s.string('scheduler') ?? '';
  let scheduler: IPVSScheduler = DEFAULT_IPVS.scheduler;
  if (isOneOf(schedulerRaw, Object.values(IPVSScheduler))) {
    scheduler = schedulerRaw;
  } else if (schedulerRaw !== '') {
    const names = Object.values(IPVSScheduler).join(', ');
    reader.report(
      inEffect,
      s.field('scheduler'),
      `invalid value ${show(schedulerRaw)}: must be one of ${names}, or blank for rr`,
    );
  }
  const excludeCIDRs: Cidr[] = [];
  (s.stringList('excludeCIDRs') ?? []).forEach((text, i) => {
    const cidr = parseConfigCidr(text);
    if (cidr === undefined)
      reader.report(inEffect, `${s.field('excludeCIDRs')}[${i}]`, `invalid value ${show(text)}: must be a valid CIDR`);
    else excludeCIDRs.push(cidr);
  });
  const timeout = (key: string): number => {
    const ms = s.duration(key) ?? 0;
    const problem = checkNonNegativeDuration(ms);
    if (problem !== undefined) reader.report(inEffect, s.field(key), problem);
    return ms;
  };
  return {
    scheduler,
    syncPeriodMs: nonZeroOr(s.duration('syncPeriod'), DEFAULT_IPVS.syncPeriodMs),
    minSyncPeriodMs: s.duration('minSyncPeriod') ?? DEFAULT_IPVS.minSyncPeriodMs,
    excludeCIDRs,
    strictARP: s.bool('strictARP') ?? DEFAULT_IPVS.strictARP,
    tcpTimeoutMs: timeout('tcpTimeout'),
    tcpFinTimeoutMs: timeout('tcpFinTimeout'),
    udpTimeoutMs: timeout('udpTimeout'),
  };
}

function decodeNFTables(s: Section, reader: Reader, inEffect: boolean): NFTablesSection {
  const masqueradeBit = s.int32('masqueradeBit') ?? DEFAULT_NFTABLES.masqueradeBit;
  const bitProblem = checkMasqueradeBit(masqueradeBit);
  if (bitProblem !== undefined) reader.report(inEffect, s.field('masqueradeBit'), bitProblem);
  return {
    masqueradeBit,
    masqueradeAll: s.bool('masqueradeAll') ?? DEFAULT_NFTABLES.masqueradeAll,
    syncPeriodMs: nonZeroOr(s.duration('syncPeriod'), DEFAULT_NFTABLES.syncPeriodMs),
    minSyncPeriodMs: nonZeroOr(s.duration('minSyncPeriod'), DEFAULT_NFTABLES.minSyncPeriodMs),
  };
}

function decodeLocalDetection(
  top: Section,
  reader: Reader,
): { detectLocalMode: LocalMode; detectLocal: KubeProxyDetectLocalConfig; clusterCIDRs: Cidr[] } {
  const raw = top.string('detectLocalMode') ?? '';
  let detectLocalMode: LocalMode = LocalMode.ClusterCIDR;
  if (isOneOf(raw, Object.values(LocalMode))) {
    detectLocalMode = raw;
  } else if (raw !== '') {
    const names = Object.values(LocalMode)
      .map((m) => show(m))
      .join(', ');
    reader.problem(
      'detectLocalMode',
      `unsupported value ${show(raw)}: supported values are ${names} (blank means ClusterCIDR)`,
    );
  }

  const dl = top.section('detectLocal');
  dl.checkKnown(DETECT_LOCAL_FIELDS);
  const detectLocal = {
    bridgeInterface: dl.string('bridgeInterface') ?? '',
    interfaceNamePrefix: dl.string('interfaceNamePrefix') ?? '',
  };
  const needs = (key: keyof KubeProxyDetectLocalConfig, localMode: LocalMode): void => {
    const field = dl.field(key);
    if (detectLocalMode === localMode && detectLocal[key] === '') {
      reader.problem(field, `must not be empty when detectLocalMode is ${localMode}`);
    } else if (detectLocalMode !== localMode && detectLocal[key] !== '') {
      reader.warn(field, `ignored: only used when detectLocalMode is ${localMode} (it is ${detectLocalMode})`);
    }
  };
  needs('bridgeInterface', LocalMode.BridgeInterface);
  needs('interfaceNamePrefix', LocalMode.InterfaceNamePrefix);

  const clusterCIDR = top.string('clusterCIDR') ?? '';
  let clusterCIDRs: Cidr[] = [];
  if (clusterCIDR !== '') {
    if (detectLocalMode === LocalMode.ClusterCIDR) {
      const parsed = parseClusterCidrs(clusterCIDR);
      for (const problem of parsed.problems) reader.problem('clusterCIDR', problem);
      clusterCIDRs = parsed.cidrs;
    } else {
      reader.warn('clusterCIDR', `ignored: only used when detectLocalMode is ClusterCIDR (it is ${detectLocalMode})`);
    }
  }
  return { detectLocalMode, detectLocal, clusterCIDRs };
}

function decodeNodePortAddresses(top: Section, reader: Reader, mode: ProxyMode): NodePortAddresses {
  const list = top.stringList('nodePortAddresses') ?? [];
  if (list.length === 0) {
    // cmd/kube-proxy/app/server_linux.go: nftables mode defaults to the primary node IPs.
    return mode === ProxyMode.NFTables ? { kind: NodePortAddressesKind.Primary } : { kind: NodePortAddressesKind.All };
  }
  const cidrs: Cidr[] = [];
  for (const [i, text] of list.entries()) {
    const field = `nodePortAddresses[${i}]`;
    if (text === 'primary') {
      if (list.length !== 1) reader.problem(field, `invalid value "primary": can't use both 'primary' and CIDRs`);
      break;
    }
    const cidr = parseConfigCidr(text);
    if (cidr === undefined) reader.problem(field, `invalid value ${show(text)}: must be a valid CIDR or "primary"`);
    else cidrs.push(cidr);
  }
  if (list.length === 1 && list[0] === 'primary') return { kind: NodePortAddressesKind.Primary };
  return { kind: NodePortAddressesKind.CIDRs, cidrs };
}

function decodeAddresses(
  top: Section,
  reader: Reader,
): Pick<KubeProxyConfig, 'hostnameOverride' | 'bindAddress' | 'healthzBindAddress' | 'metricsBindAddress'> {
  const hostRaw = top.string('hostnameOverride') ?? '';
  let hostnameOverride: string | undefined;
  if (hostRaw !== '') {
    hostnameOverride = hostRaw.trim().toLowerCase();
    if (hostnameOverride === '')
      reader.problem('hostnameOverride', `invalid value ${show(hostRaw)}: must not be blank`);
  }

  const bindAddress = top.string('bindAddress') || '0.0.0.0';
  const bindFamily = ipFamily(bindAddress);
  if (bindFamily === undefined)
    reader.problem('bindAddress', `invalid value ${show(bindAddress)}: not a valid IP address`);
  // kube-proxy picks the default server addresses by the family of bindAddress (not IPv4, or invalid: IPv6).
  const v4 = bindFamily === IPFamily.IPv4;
  const hostPort = (key: string, defaultHost: string, port: number): string => {
    const raw = top.string(key) ?? '';
    const value = raw === '' ? `${defaultHost}:${port}` : appendPortIfNeeded(raw, port);
    const err = checkHostPort(value);
    if (err !== undefined) reader.problem(key, `invalid value ${show(raw)}: ${err}`);
    return value;
  };
  return {
    hostnameOverride,
    bindAddress,
    healthzBindAddress: hostPort('healthzBindAddress', v4 ? '0.0.0.0' : '[::]', PROXY_HEALTHZ_PORT),
    metricsBindAddress: hostPort('metricsBindAddress', v4 ? '127.0.0.1' : '[::1]', PROXY_STATUS_PORT),
  };
}

function decodeConntrack(s: Section, reader: Reader): KubeProxyConntrackConfig {
  s.checkKnown(CONNTRACK_FIELDS);
  const nonNegative = (key: string, value: number, shown: string): number => {
    const problem = checkNonNegative(shown, value);
    if (problem !== undefined) reader.problem(s.field(key), problem);
    return value;
  };
  const int = (key: string, dflt: number): number => {
    const v = s.int32(key) ?? dflt;
    return nonNegative(key, v, String(v));
  };
  const dur = (key: string, dflt: number): number => {
    const v = s.duration(key) ?? dflt;
    return nonNegative(key, v, showDuration(v));
  };
  return {
    maxPerCore: int('maxPerCore', DEFAULT_CONNTRACK.maxPerCore),
    min: int('min', DEFAULT_CONNTRACK.min),
    tcpEstablishedTimeoutMs: dur('tcpEstablishedTimeout', DEFAULT_CONNTRACK.tcpEstablishedTimeoutMs),
    tcpCloseWaitTimeoutMs: dur('tcpCloseWaitTimeout', DEFAULT_CONNTRACK.tcpCloseWaitTimeoutMs),
    tcpBeLiberal: s.bool('tcpBeLiberal') ?? DEFAULT_CONNTRACK.tcpBeLiberal,
    udpTimeoutMs: dur('udpTimeout', DEFAULT_CONNTRACK.udpTimeoutMs),
    udpStreamTimeoutMs: dur('udpStreamTimeout', DEFAULT_CONNTRACK.udpStreamTimeoutMs),
  };
}

function decodeClientConnection(s: Section, reader: Reader): KubeProxyClientConnectionConfig {
  s.checkKnown(CLIENT_CONNECTION_FIELDS);
  const burst = s.int32('burst') || DEFAULT_BURST;
  const burstProblem = checkNonNegative(String(burst), burst);
  if (burstProblem !== undefined) reader.problem(s.field('burst'), burstProblem);
  return {
    kubeconfig: s.string('kubeconfig') ?? '',
    acceptContentTypes: s.string('acceptContentTypes') ?? '',
    contentType: s.string('contentType') || DEFAULT_CONTENT_TYPE,
    qps: s.number('qps') || DEFAULT_QPS,
    burst,
  };
}

/** Fields of KubeProxyConfiguration that kpx accepts but does not act on: warn when they are not at their default. */
function warnIgnoredFields(top: Section, reader: Reader): void {
  const ignored = (key: string): void => reader.warn(key, 'ignored: kpx does not use this field');
  for (const key of ['bindAddressHardFail', 'enableProfiling', 'windowsRunAsService']) {
    if (top.bool(key) === true) ignored(key);
  }
  for (const key of ['showHiddenMetricsForVersion', 'portRange']) {
    if ((top.string(key) ?? '') !== '') ignored(key);
  }
  const oom = top.int32('oomScoreAdj');
  if (oom !== undefined) {
    if (oom < -1000 || oom > 1000)
      reader.problem('oomScoreAdj', `invalid value ${oom}: must be within the range [-1000, 1000]`);
    else if (oom !== KUBE_PROXY_OOM_SCORE_ADJ) ignored('oomScoreAdj');
  }
  const winkernel = top.section('winkernel');
  if (winkernel.obj !== undefined && !isZeroish(winkernel.obj)) ignored('winkernel');
  const logging = top.section('logging');
  if (logging.obj !== undefined) {
    // Defaults as kubeadm writes them: text format, 5s flush.
    const { format, flushFrequency, ...rest } = logging.obj;
    const defaultish =
      (format === undefined || format === '' || format === 'text') &&
      (flushFrequency === undefined || flushFrequency === '5s' || flushFrequency === 5e9 || isZeroish(flushFrequency));
    if (!defaultish || !isZeroish(rest)) ignored('logging');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Values

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isOneOf<T extends string>(value: string, options: readonly T[]): value is T {
  return (options as readonly string[]).includes(value);
}

function isZeroish(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '' || v === '0' || v === '0s') return true;
  if (Array.isArray(v)) return v.every(isZeroish);
  if (isObj(v)) return Object.values(v).every(isZeroish);
  return false;
}

function joinPath(prefix: string, key: string): string {
  return prefix === '' ? key : `${prefix}.${key}`;
}
