/**
 * kube-proxy's configuration file (KubeProxyConfiguration, kubeproxy.config.k8s.io/v1alpha1), read the way
 * kube-proxy reads it: decoded, defaulted (pkg/proxy/apis/config/v1alpha1/defaults.go plus the Linux platform
 * defaults of cmd/kube-proxy/app/server_linux.go), converted to the values the active proxy mode uses
 * (pkg/proxy/apis/config/v1alpha1/conversion.go) and validated (pkg/proxy/apis/config/validation/validation.go).
 *
 * Differences from kube-proxy, on purpose:
 * - Top-level `syncPeriod`, `minSyncPeriod` and `masqueradeAll` are not v1alpha1 fields (they exist only in kube-proxy's
 *   internal config and in the later v1alpha2 API); kube-proxy ignores them in a v1alpha1 file. kpx accepts them as
 *   aliases with a warning; the per-mode field (`iptables.syncPeriod`, `ipvs.syncPeriod`, `nftables.masqueradeAll`…),
 *   when present in the file, wins.
 * - Fields kube-proxy knows but kpx does not use are accepted with an "ignored" warning when set to a non-default value.
 * - Feature gate names are not checked (kube-proxy rejects unknown gates); they are kept but ignored.
 */
import { readFile } from 'node:fs/promises';
import { parseAllDocuments, type Document, isMap, isScalar, isSeq, type ParsedNode } from 'yaml';
import { ProxyMode } from '@kpx/proto';

import { KubeProxyConfigError, type KubeProxyConfigProblem } from './config-errors.js';
import { type Cidr, IPFamily, ipFamilyOf, parseCidr } from './ip.js';

export const KUBE_PROXY_CONFIG_API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
export const KUBE_PROXY_CONFIG_KIND = 'KubeProxyConfiguration';

/** Proxy modes (the wire's names). A blank `mode` in the file resolves to `iptables` (kube-proxy's Linux default). */
export { ProxyMode };

/** How kube-proxy tells local (pod) traffic from the rest. A blank `detectLocalMode` resolves to `ClusterCIDR`. */
export const LocalMode = {
  ClusterCIDR: 'ClusterCIDR',
  NodeCIDR: 'NodeCIDR',
  BridgeInterface: 'BridgeInterface',
  InterfaceNamePrefix: 'InterfaceNamePrefix',
} as const;
export type LocalMode = (typeof LocalMode)[keyof typeof LocalMode];

/**
 * IPVS schedulers of the Linux kernel (one module ip_vs_<name> each). kube-proxy checks the scheduler by loading
 * its kernel module; kpx compiles centrally, so it checks the name against this list instead. A blank
 * `ipvs.scheduler` resolves to `rr`.
 */
export const IPVSScheduler = {
  RoundRobin: 'rr',
  WeightedRoundRobin: 'wrr',
  LeastConnection: 'lc',
  WeightedLeastConnection: 'wlc',
  LocalityBasedLeastConnection: 'lblc',
  LocalityBasedLeastConnectionWithReplication: 'lblcr',
  DestinationHashing: 'dh',
  SourceHashing: 'sh',
  ShortestExpectedDelay: 'sed',
  NeverQueue: 'nq',
  WeightedFailover: 'fo',
  WeightedOverflow: 'ovf',
  MaglevHashing: 'mh',
  WeightedRandomTwoChoices: 'twos',
} as const;
export type IPVSScheduler = (typeof IPVSScheduler)[keyof typeof IPVSScheduler];

/** Which node addresses accept NodePort traffic. */
export const NodePortAddressesKind = {
  /** `nodePortAddresses` empty in iptables/ipvs mode: every local address. */
  All: 'all',
  /** `["primary"]`, or empty in nftables mode: the Node object's primary IPv4 and/or IPv6 address. */
  Primary: 'primary',
  /** A list of CIDRs: node addresses inside one of them. */
  CIDRs: 'cidrs',
} as const;
export type NodePortAddressesKind = (typeof NodePortAddressesKind)[keyof typeof NodePortAddressesKind];

export type NodePortAddresses =
  | { readonly kind: typeof NodePortAddressesKind.All }
  | { readonly kind: typeof NodePortAddressesKind.Primary }
  | { readonly kind: typeof NodePortAddressesKind.CIDRs; readonly cidrs: readonly Cidr[] };

/** The `iptables` section, defaulted. Durations in milliseconds. */
export interface KubeProxyIPTablesConfig {
  readonly masqueradeBit: number;
  readonly masqueradeAll: boolean;
  readonly localhostNodePorts: boolean;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
}

/** The `ipvs` section, defaulted. Durations in milliseconds; a timeout of 0 leaves the kernel's value. */
export interface KubeProxyIPVSConfig {
  readonly scheduler: IPVSScheduler;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
  readonly excludeCIDRs: readonly Cidr[];
  readonly strictARP: boolean;
  readonly tcpTimeoutMs: number;
  readonly tcpFinTimeoutMs: number;
  readonly udpTimeoutMs: number;
}

/** The `nftables` section, defaulted. Durations in milliseconds. */
export interface KubeProxyNFTablesConfig {
  readonly masqueradeBit: number;
  readonly masqueradeAll: boolean;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
}

/** The `conntrack` section, defaulted. Durations in milliseconds; 0 leaves the kernel's value. */
export interface KubeProxyConntrackConfig {
  readonly maxPerCore: number;
  readonly min: number;
  readonly tcpEstablishedTimeoutMs: number;
  readonly tcpCloseWaitTimeoutMs: number;
  readonly tcpBeLiberal: boolean;
  readonly udpTimeoutMs: number;
  readonly udpStreamTimeoutMs: number;
}

export interface KubeProxyDetectLocalConfig {
  readonly bridgeInterface: string;
  readonly interfaceNamePrefix: string;
}

export interface KubeProxyClientConnectionConfig {
  /** Path of a kubeconfig file; `''` means in-cluster configuration. */
  readonly kubeconfig: string;
  readonly acceptContentTypes: string;
  readonly contentType: string;
  readonly qps: number;
  readonly burst: number;
}

/**
 * A KubeProxyConfiguration, fully resolved: defaults applied, blank enums resolved, durations in milliseconds,
 * CIDRs parsed. The top-level `masqueradeAll`, `masqueradeBit`, `syncPeriodMs` and `minSyncPeriodMs` are the values
 * the active mode uses (taken from its section, as kube-proxy does); the sections keep every value of the file.
 * CIDRs are the package's {@link Cidr}: canonical text with host bits cleared (`10.0.0.7/8` gives `10.0.0.0/8`),
 * where kube-proxy would put the string as written into its rules; the kernel stores the same network either way.
 */
export interface KubeProxyConfig {
  readonly mode: ProxyMode;
  /** Node name override, trimmed and lower-cased as kube-proxy does; `undefined` means the node's hostname. */
  readonly hostnameOverride: string | undefined;
  readonly bindAddress: string;
  /** `host:port` of the health server (`[v6]:port` for IPv6). */
  readonly healthzBindAddress: string;
  /** `host:port` of the metrics server. */
  readonly metricsBindAddress: string;

  readonly masqueradeAll: boolean;
  readonly masqueradeBit: number;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;

  readonly detectLocalMode: LocalMode;
  readonly detectLocal: KubeProxyDetectLocalConfig;
  /** `clusterCIDR` split and parsed: none, one, or one of each family. Empty unless detectLocalMode is ClusterCIDR. */
  readonly clusterCIDRs: readonly Cidr[];
  readonly nodePortAddresses: NodePortAddresses;

  readonly iptables: KubeProxyIPTablesConfig;
  readonly ipvs: KubeProxyIPVSConfig;
  readonly nftables: KubeProxyNFTablesConfig;
  readonly conntrack: KubeProxyConntrackConfig;
  readonly configSyncPeriodMs: number;
  readonly clientConnection: KubeProxyClientConnectionConfig;
  /** Kept as written; kpx does not act on feature gates. */
  readonly featureGates: Readonly<Record<string, boolean>>;
}

export interface LoadKubeProxyConfigOptions {
  /** Where the text came from (a file path); used in error messages. */
  readonly source?: string | undefined;
}

export interface KubeProxyConfigLoadResult {
  readonly config: KubeProxyConfig;
  /** Unknown, duplicate, ignored and unused fields, one line each, starting with the field path. */
  readonly warnings: readonly string[];
}

/**
 * Parses a KubeProxyConfiguration (YAML or JSON), applies kube-proxy's defaults and validates it.
 * Throws {@link KubeProxyConfigError} listing every problem found.
 */
export function loadKubeProxyConfig(text: string, opts: LoadKubeProxyConfigOptions = {}): KubeProxyConfigLoadResult {
  const source = opts.source;
  const reader = new Reader();
  const root = parseYaml(text, reader, source);
  const config = decodeConfig(root, reader);
  if (reader.problems.length > 0 || config === undefined) {
    throw new KubeProxyConfigError(reader.problems, { source });
  }
  return { config, warnings: reader.warnings };
}

/** Reads and loads a configuration file; file system errors are wrapped in a {@link KubeProxyConfigError}. */
export async function readKubeProxyConfigFile(path: string): Promise<KubeProxyConfigLoadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new KubeProxyConfigError([{ field: '', message: `cannot read the file: ${reason}` }], { source: path, cause: err });
  }
  return loadKubeProxyConfig(text, { source: path });
}

/** The configuration kube-proxy runs with when its file holds only apiVersion and kind (Linux). */
export function defaultKubeProxyConfig(): KubeProxyConfig {
  const reader = new Reader();
  const config = decodeConfig({ apiVersion: KUBE_PROXY_CONFIG_API_VERSION, kind: KUBE_PROXY_CONFIG_KIND }, reader);
  if (config === undefined || reader.problems.length > 0) {
    throw new KubeProxyConfigError(reader.problems);
  }
  return config;
}

// ---------------------------------------------------------------------------------------------------------------
// Upstream defaults (pkg/proxy/apis/config/v1alpha1/defaults.go, pkg/cluster/ports, pkg/kubelet/qos).

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const PROXY_HEALTHZ_PORT = 10256;
const PROXY_STATUS_PORT = 10249;
const KUBE_PROXY_OOM_SCORE_ADJ = -999;

const DEFAULT_IPTABLES: KubeProxyIPTablesConfig = {
  masqueradeBit: 14,
  masqueradeAll: false,
  localhostNodePorts: true,
  syncPeriodMs: 30 * SECOND,
  minSyncPeriodMs: 1 * SECOND,
};
const DEFAULT_IPVS: KubeProxyIPVSConfig = {
  scheduler: IPVSScheduler.RoundRobin,
  syncPeriodMs: 30 * SECOND,
  minSyncPeriodMs: 0,
  excludeCIDRs: [],
  strictARP: false,
  tcpTimeoutMs: 0,
  tcpFinTimeoutMs: 0,
  udpTimeoutMs: 0,
};
const DEFAULT_NFTABLES: KubeProxyNFTablesConfig = {
  masqueradeBit: 14,
  masqueradeAll: false,
  syncPeriodMs: 30 * SECOND,
  minSyncPeriodMs: 1 * SECOND,
};
const DEFAULT_CONNTRACK: KubeProxyConntrackConfig = {
  maxPerCore: 32 * 1024,
  min: 128 * 1024,
  tcpEstablishedTimeoutMs: 24 * HOUR,
  tcpCloseWaitTimeoutMs: 1 * HOUR,
  tcpBeLiberal: false,
  udpTimeoutMs: 0,
  udpStreamTimeoutMs: 0,
};
const DEFAULT_CONFIG_SYNC_PERIOD_MS = 15 * MINUTE;
const DEFAULT_CONTENT_TYPE = 'application/vnd.kubernetes.protobuf';
const DEFAULT_QPS = 5;
const DEFAULT_BURST = 10;

// Field names of KubeProxyConfiguration v1alpha1 (staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go).
const TOP_LEVEL_FIELDS = [
  'apiVersion', 'kind', 'featureGates', 'clientConnection', 'logging', 'hostnameOverride', 'bindAddress',
  'healthzBindAddress', 'metricsBindAddress', 'bindAddressHardFail', 'enableProfiling', 'showHiddenMetricsForVersion',
  'mode', 'iptables', 'ipvs', 'nftables', 'winkernel', 'detectLocalMode', 'detectLocal', 'clusterCIDR',
  'nodePortAddresses', 'oomScoreAdj', 'conntrack', 'configSyncPeriod', 'portRange', 'windowsRunAsService',
] as const;
/** Accepted at the top level by kpx although v1alpha1 has them only per mode. */
const TOP_LEVEL_ALIASES = ['masqueradeAll', 'syncPeriod', 'minSyncPeriod'] as const;
const IPTABLES_FIELDS = [
  'masqueradeBit', 'masqueradeAll', 'localhostNodePorts', 'snatNodeInternalIP', 'syncPeriod', 'minSyncPeriod',
] as const;
const IPVS_FIELDS = [
  'syncPeriod', 'minSyncPeriod', 'scheduler', 'excludeCIDRs', 'strictARP', 'tcpTimeout', 'tcpFinTimeout', 'udpTimeout',
] as const;
const NFTABLES_FIELDS = ['masqueradeBit', 'masqueradeAll', 'syncPeriod', 'minSyncPeriod'] as const;
const CONNTRACK_FIELDS = [
  'maxPerCore', 'min', 'tcpEstablishedTimeout', 'tcpCloseWaitTimeout', 'tcpBeLiberal', 'udpTimeout', 'udpStreamTimeout',
] as const;
const DETECT_LOCAL_FIELDS = ['bridgeInterface', 'interfaceNamePrefix'] as const;
const CLIENT_CONNECTION_FIELDS = ['kubeconfig', 'acceptContentTypes', 'contentType', 'qps', 'burst'] as const;

/** Fields older files may still carry; named in the unknown-field warning. */
const REMOVED_FIELDS: Readonly<Record<string, string>> = {
  udpIdleTimeout: 'removed together with the userspace proxy',
  resourceContainer: 'no longer part of KubeProxyConfiguration',
  'conntrack.max': 'no longer part of KubeProxyConfiguration; see conntrack.maxPerCore',
};

// Section fields that only one mode uses, with the resolved property that holds them.
type SectionName = 'iptables' | 'ipvs' | 'nftables';
const SECTION_PROPS: Readonly<Record<SectionName, Readonly<Record<string, string>>>> = {
  iptables: {
    masqueradeBit: 'masqueradeBit', masqueradeAll: 'masqueradeAll', localhostNodePorts: 'localhostNodePorts',
    syncPeriod: 'syncPeriodMs', minSyncPeriod: 'minSyncPeriodMs',
  },
  ipvs: {
    scheduler: 'scheduler', syncPeriod: 'syncPeriodMs', minSyncPeriod: 'minSyncPeriodMs', excludeCIDRs: 'excludeCIDRs',
    strictARP: 'strictARP', tcpTimeout: 'tcpTimeoutMs', tcpFinTimeout: 'tcpFinTimeoutMs', udpTimeout: 'udpTimeoutMs',
  },
  nftables: {
    masqueradeBit: 'masqueradeBit', masqueradeAll: 'masqueradeAll', syncPeriod: 'syncPeriodMs',
    minSyncPeriod: 'minSyncPeriodMs',
  },
};
/** Section fields the given mode does not read (kube-proxy ignores them). */
const UNUSED_IN_MODE: Readonly<Record<ProxyMode, readonly (readonly [SectionName, string])[]>> = {
  iptables: [
    ...Object.keys(SECTION_PROPS.ipvs).map((k) => ['ipvs', k] as const),
    ...Object.keys(SECTION_PROPS.nftables).map((k) => ['nftables', k] as const),
  ],
  ipvs: [
    ['iptables', 'localhostNodePorts'], ['iptables', 'syncPeriod'], ['iptables', 'minSyncPeriod'],
    ...Object.keys(SECTION_PROPS.nftables).map((k) => ['nftables', k] as const),
  ],
  nftables: [
    ...Object.keys(SECTION_PROPS.iptables).map((k) => ['iptables', k] as const),
    ...Object.keys(SECTION_PROPS.ipvs).map((k) => ['ipvs', k] as const),
  ],
};

// ---------------------------------------------------------------------------------------------------------------
// YAML

type Obj = Record<string, unknown>;

function parseYaml(text: string, reader: Reader, source: string | undefined): unknown {
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
    throw new KubeProxyConfigError([{ field: '', message: 'the document is empty; expected a KubeProxyConfiguration' }], {
      source,
    });
  }
  for (const doc of list) {
    if (doc.errors.length > 0) {
      const problems = doc.errors.map((e) => ({ field: '', message: `not valid YAML or JSON: ${firstLine(e.message)}` }));
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
class Reader {
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
    const ms = parseGoDuration(text);
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

function decodeConfig(root: unknown, reader: Reader): KubeProxyConfig | undefined {
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

  const iptables = decodeIPTables(iptSection, reader);
  const ipvs = decodeIPVS(ipvsSection, reader, mode === ProxyMode.IPVS);
  const nftables = decodeNFTables(nftSection, reader, mode === ProxyMode.NFTables);
  const sections = { iptables, ipvs, nftables };
  const sectionReaders = { iptables: iptSection, ipvs: ipvsSection, nftables: nftSection };
  warnUnusedModeFields(mode, sections, sectionReaders, reader);
  const effective = resolveModeValues(mode, top, sections, sectionReaders, reader);

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
  if (gateNames.length > 0) reader.warn('featureGates', `ignored: kpx does not act on feature gates (${gateNames.join(', ')})`);

  return {
    mode,
    ...addresses,
    ...effective,
    detectLocalMode,
    detectLocal,
    clusterCIDRs,
    nodePortAddresses: decodeNodePortAddresses(top, reader, mode),
    iptables,
    ipvs,
    nftables,
    conntrack: decodeConntrack(top.section('conntrack'), reader),
    configSyncPeriodMs,
    clientConnection: decodeClientConnection(top.section('clientConnection'), reader),
    featureGates,
  };
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

function decodeIPTables(s: Section, reader: Reader): KubeProxyIPTablesConfig {
  const masqueradeBit = s.int32('masqueradeBit') ?? DEFAULT_IPTABLES.masqueradeBit;
  // kube-proxy validates iptables.masqueradeBit whatever the mode.
  checkMasqueradeBit(reader, true, s.field('masqueradeBit'), masqueradeBit);
  if (s.bool('snatNodeInternalIP') === true) {
    reader.warn(s.field('snatNodeInternalIP'), 'ignored: kpx does not support SNAT to the node InternalIP; the egress address is used');
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

function decodeIPVS(s: Section, reader: Reader, inEffect: boolean): KubeProxyIPVSConfig {
  const schedulerRaw = s.string('scheduler') ?? '';
  let scheduler: IPVSScheduler = DEFAULT_IPVS.scheduler;
  if (isOneOf(schedulerRaw, Object.values(IPVSScheduler))) {
    scheduler = schedulerRaw;
  } else if (schedulerRaw !== '') {
    const names = Object.values(IPVSScheduler).join(', ');
    reader.report(inEffect, s.field('scheduler'), `invalid value ${show(schedulerRaw)}: must be one of ${names}, or blank for rr`);
  }
  const excludeCIDRs: Cidr[] = [];
  (s.stringList('excludeCIDRs') ?? []).forEach((text, i) => {
    const cidr = parseConfigCidr(text);
    if (cidr === undefined) reader.report(inEffect, `${s.field('excludeCIDRs')}[${i}]`, `invalid value ${show(text)}: must be a valid CIDR`);
    else excludeCIDRs.push(cidr);
  });
  const timeout = (key: string): number => {
    const ms = s.duration(key) ?? 0;
    if (ms < 0) reader.report(inEffect, s.field(key), `invalid value ${showDuration(ms)}: must be greater than or equal to 0`);
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

function decodeNFTables(s: Section, reader: Reader, inEffect: boolean): KubeProxyNFTablesConfig {
  const masqueradeBit = s.int32('masqueradeBit') ?? DEFAULT_NFTABLES.masqueradeBit;
  checkMasqueradeBit(reader, inEffect, s.field('masqueradeBit'), masqueradeBit);
  return {
    masqueradeBit,
    masqueradeAll: s.bool('masqueradeAll') ?? DEFAULT_NFTABLES.masqueradeAll,
    syncPeriodMs: nonZeroOr(s.duration('syncPeriod'), DEFAULT_NFTABLES.syncPeriodMs),
    minSyncPeriodMs: nonZeroOr(s.duration('minSyncPeriod'), DEFAULT_NFTABLES.minSyncPeriodMs),
  };
}

function checkMasqueradeBit(reader: Reader, inEffect: boolean, field: string, bit: number): void {
  if (bit < 0 || bit > 31) reader.report(inEffect, field, `invalid value ${bit}: must be within the range [0, 31]`);
}

interface Sections {
  readonly iptables: KubeProxyIPTablesConfig;
  readonly ipvs: KubeProxyIPVSConfig;
  readonly nftables: KubeProxyNFTablesConfig;
}
const DEFAULT_SECTIONS: Sections = { iptables: DEFAULT_IPTABLES, ipvs: DEFAULT_IPVS, nftables: DEFAULT_NFTABLES };

function warnUnusedModeFields(
  mode: ProxyMode,
  sections: Sections,
  readers: Readonly<Record<SectionName, Section>>,
  reader: Reader,
): void {
  for (const [name, key] of UNUSED_IN_MODE[mode]) {
    const prop = SECTION_PROPS[name][key];
    if (prop === undefined || !readers[name].has(key)) continue;
    const value = (sections[name] as unknown as Obj)[prop];
    const dflt = (DEFAULT_SECTIONS[name] as unknown as Obj)[prop];
    if (JSON.stringify(value) !== JSON.stringify(dflt)) reader.warn(`${name}.${key}`, `ignored in ${mode} mode`);
  }
}

interface ModeValues {
  readonly masqueradeAll: boolean;
  readonly masqueradeBit: number;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
}

/**
 * The values the active mode uses, as kube-proxy's v1alpha1 conversion picks them: sync periods from the mode's own
 * section; masqueradeAll and masqueradeBit from `nftables` in nftables mode, else from `iptables` (ipvs included).
 * kpx's top-level aliases fill in when the section does not set the field.
 */
function resolveModeValues(
  mode: ProxyMode,
  top: Section,
  sections: Sections,
  readers: Readonly<Record<SectionName, Section>>,
  reader: Reader,
): ModeValues {
  const syncName: SectionName = mode;
  const masqName: SectionName = mode === ProxyMode.NFTables ? 'nftables' : 'iptables';
  const masqSection = mode === ProxyMode.NFTables ? sections.nftables : sections.iptables;
  const syncSection = sections[syncName];

  const alias = <T>(key: string, sectionName: SectionName, read: () => T | undefined): T | undefined => {
    if (!top.has(key)) return undefined;
    const value = read();
    const sectionSets = readers[sectionName].has(key);
    const wins = sectionSets ? `; ${sectionName}.${key} is also set and takes precedence` : `; used as ${sectionName}.${key}`;
    const places = key === 'masqueradeAll' ? 'iptables.masqueradeAll or nftables.masqueradeAll' : `iptables.${key}, ipvs.${key} or nftables.${key}`;
    reader.warn(key, `not a KubeProxyConfiguration v1alpha1 field (kube-proxy ignores it; its place is ${places})${wins}`);
    return sectionSets ? undefined : value;
  };

  const masqueradeAll = alias('masqueradeAll', masqName, () => top.bool('masqueradeAll')) ?? masqSection.masqueradeAll;
  const syncAlias = alias('syncPeriod', syncName, () => top.duration('syncPeriod'));
  const minAlias = alias('minSyncPeriod', syncName, () => top.duration('minSyncPeriod'));
  const useSyncAlias = syncAlias !== undefined && syncAlias !== 0;
  const useMinAlias = minAlias !== undefined && minAlias !== 0;
  const syncPeriodMs = useSyncAlias ? syncAlias : syncSection.syncPeriodMs;
  const minSyncPeriodMs = useMinAlias ? minAlias : syncSection.minSyncPeriodMs;
  const syncField = useSyncAlias ? 'syncPeriod' : `${syncName}.syncPeriod`;
  const minField = useMinAlias ? 'minSyncPeriod' : `${syncName}.minSyncPeriod`;

  if (syncPeriodMs <= 0) reader.problem(syncField, `invalid value ${showDuration(syncPeriodMs)}: must be greater than 0`);
  if (minSyncPeriodMs < 0) {
    reader.problem(minField, `invalid value ${showDuration(minSyncPeriodMs)}: must be greater than or equal to 0`);
  }
  if (minSyncPeriodMs > syncPeriodMs && syncPeriodMs > 0) {
    reader.problem(
      syncField,
      `invalid value ${showDuration(syncPeriodMs)}: must be greater than or equal to ${minField} (${showDuration(minSyncPeriodMs)})`,
    );
  }
  return { masqueradeAll, masqueradeBit: masqSection.masqueradeBit, syncPeriodMs, minSyncPeriodMs };
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
    const names = Object.values(LocalMode).map((m) => show(m)).join(', ');
    reader.problem('detectLocalMode', `unsupported value ${show(raw)}: supported values are ${names} (blank means ClusterCIDR)`);
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
      clusterCIDRs = parseClusterCidrs(clusterCIDR, reader);
    } else {
      reader.warn('clusterCIDR', `ignored: only used when detectLocalMode is ClusterCIDR (it is ${detectLocalMode})`);
    }
  }
  return { detectLocalMode, detectLocal, clusterCIDRs };
}

/** `clusterCIDR`: one CIDR, or a comma-separated dual-stack pair (one IPv4, one IPv6). */
function parseClusterCidrs(text: string, reader: Reader): Cidr[] {
  const parts = text.split(',');
  const example = '(e.g. "10.100.0.0/16" or "10.100.0.0/16,fde4:8dba:82e1::/48")';
  if (parts.length > 2) {
    reader.problem('clusterCIDR', `invalid value ${show(text)}: must be a single CIDR or a dual-stack pair of CIDRs ${example}`);
    return [];
  }
  const cidrs: Cidr[] = [];
  for (const part of parts) {
    const cidr = parseConfigCidr(part);
    if (cidr === undefined) {
      const spaces = part !== part.trim() ? ' (no spaces are allowed around the comma)' : '';
      reader.problem('clusterCIDR', `invalid value ${show(text)}: ${show(part)} is not a valid CIDR block${spaces} ${example}`);
    } else {
      cidrs.push(cidr);
    }
  }
  const [a, b] = cidrs;
  if (a !== undefined && b !== undefined && a.family === b.family) {
    reader.problem(
      'clusterCIDR',
      `invalid value ${show(text)}: two ${a.family} CIDRs; a dual-stack pair needs one IPv4 and one IPv6 CIDR ${example}`,
    );
  }
  return cidrs.length === parts.length ? cidrs : [];
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
    if (hostnameOverride === '') reader.problem('hostnameOverride', `invalid value ${show(hostRaw)}: must not be blank`);
  }

  const bindAddress = top.string('bindAddress') || '0.0.0.0';
  const bindFamily = ipFamily(bindAddress);
  if (bindFamily === undefined) reader.problem('bindAddress', `invalid value ${show(bindAddress)}: not a valid IP address`);
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
    if (value < 0) reader.problem(s.field(key), `invalid value ${shown}: must be greater than or equal to 0`);
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
  if (burst < 0) reader.problem(s.field('burst'), `invalid value ${burst}: must be greater than or equal to 0`);
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
    if (oom < -1000 || oom > 1000) reader.problem('oomScoreAdj', `invalid value ${oom}: must be within the range [-1000, 1000]`);
    else if (oom !== KUBE_PROXY_OOM_SCORE_ADJ) ignored('oomScoreAdj');
  }
  const winkernel = top.section('winkernel');
  if (winkernel.obj !== undefined && !isZeroish(winkernel.obj)) ignored('winkernel');
  const logging = top.section('logging');
  if (logging.obj !== undefined) {
    // Defaults as kubeadm writes them: text format, 5s flush.
    const { format, flushFrequency, ...rest } = logging.obj;
    const defaultish = (format === undefined || format === '' || format === 'text') &&
      (flushFrequency === undefined || flushFrequency === '5s' || flushFrequency === 5e9 || isZeroish(flushFrequency));
    if (!defaultish || !isZeroish(rest)) ignored('logging');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Values

function nonZeroOr(value: number | undefined, dflt: number): number {
  return value === undefined || value === 0 ? dflt : value;
}

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

function show(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return v.toString();
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
}

/** The known key closest to an unknown one (case-insensitive match, or at most 2 edits away). */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = candidate.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Go durations (time.ParseDuration)

const NS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  '\u00b5s': 1_000n, // µs, micro sign
  '\u03bcs': 1_000n, // μs, Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const MAX_DURATION_NS = 2n ** 63n - 1n;

/** Parses a Go duration ("1h30m", "1.5s", "-5s", "0") into milliseconds; `undefined` when Go would refuse it. */
function parseGoDuration(text: string): number | undefined {
  let s = text;
  let negative = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s.startsWith('-');
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  let totalNs = 0n;
  const term = /^(\d*)(?:\.(\d*))?([^\d.]+)/;
  while (s !== '') {
    const m = term.exec(s);
    if (m === null) return undefined;
    const [whole, intPart = '', fracPart, unitName = ''] = m;
    if (intPart === '' && (fracPart === undefined || fracPart === '')) return undefined;
    const unit = NS_PER_UNIT[unitName];
    if (unit === undefined) return undefined;
    totalNs += BigInt(intPart === '' ? '0' : intPart) * unit;
    if (fracPart !== undefined && fracPart !== '') {
      totalNs += (BigInt(fracPart) * unit) / 10n ** BigInt(fracPart.length);
    }
    if (totalNs > MAX_DURATION_NS + (negative ? 1n : 0n)) return undefined;
    s = s.slice(whole.length);
  }
  const ms = Number(totalNs) / 1e6;
  return negative ? -ms : ms;
}

/** Formats milliseconds the way Go prints a time.Duration ("1h0m0s", "1.5s", "500ms"). */
function showDuration(ms: number): string {
  if (ms === 0) return '"0s"';
  const sign = ms < 0 ? '-' : '';
  const abs = Math.abs(ms);
  if (abs < SECOND) return `"${sign}${+abs.toFixed(6)}ms"`;
  const h = Math.floor(abs / HOUR);
  const m = Math.floor((abs % HOUR) / MINUTE);
  const sec = +((abs % MINUTE) / SECOND).toFixed(9);
  const hs = h > 0 ? `${h}h` : '';
  const ms2 = h > 0 || m > 0 ? `${m}m` : '';
  return `"${sign}${hs}${ms2}${sec}s"`;
}

// ---------------------------------------------------------------------------------------------------------------
// Addresses

/** A CIDR as kube-proxy's ParseCIDR accepts it (no surrounding spaces), parsed by the package's helper. */
function parseConfigCidr(text: string): Cidr | undefined {
  return text === text.trim() ? parseCidr(text) : undefined;
}

/** The family of an IP address; IPv4-mapped IPv6 counts as IPv4, as Go's To4() does. */
function ipFamily(text: string): IPFamily | undefined {
  return text === text.trim() ? ipFamilyOf(text) : undefined;
}

/** proxyutil.AppendPortIfNeeded: a bare IP gets the default port; anything else is left for validation. */
function appendPortIfNeeded(addr: string, port: number): string {
  if (splitHostPort(addr) !== undefined) return addr;
  const family = ipFamily(addr);
  if (family === undefined) return addr;
  return family === IPFamily.IPv4 ? `${addr}:${port}` : `[${addr}]:${port}`;
}

/** Go's net.SplitHostPort, reduced to what validation needs. */
function splitHostPort(s: string): { host: string; port: string } | undefined {
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') return undefined;
    const host = s.slice(1, end);
    const port = s.slice(end + 2);
    if (host.includes('[') || host.includes(']') || port.includes(']') || port.includes(':')) return undefined;
    return { host, port };
  }
  const i = s.lastIndexOf(':');
  if (i < 0) return undefined;
  const host = s.slice(0, i);
  if (host.includes(':') || host.includes('[') || host.includes(']')) return undefined;
  return { host, port: s.slice(i + 1) };
}

/** validation.validateHostPort: `IP:port` with a valid IP and a port in 1..65535. */
function checkHostPort(s: string): string | undefined {
  const hp = splitHostPort(s);
  if (hp === undefined) return 'must be IP:port';
  if (ipFamily(hp.host) === undefined) return `${show(hp.host)} must be a valid IP`;
  const port = /^[0-9]+$/.test(hp.port) ? Number(hp.port) : NaN;
  if (!(port >= 1 && port <= 65535)) return `port ${show(hp.port)} must be a valid port (1-65535)`;
  return undefined;
}
