// The resolved KubeProxyConfiguration kpx hands to its consumers (as kube-proxy's internal
// pkg/proxy/apis/config/types.go): one value per setting, whatever section of the file it came from.
import type { Cidr } from '../ip.js';
import { ProxyMode } from '@kpx/proto';

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

/**
 * What only iptables mode reads from the `iptables` section. Its masqueradeAll, masqueradeBit and sync periods are
 * resolved into {@link KubeProxyConfig} (ipvs mode reads them too).
 */
export interface KubeProxyIPTablesConfig {
  readonly localhostNodePorts: boolean;
}

/**
 * What only ipvs mode reads from the `ipvs` section; its sync periods are resolved into {@link KubeProxyConfig}.
 * Durations in milliseconds; a timeout of 0 leaves the kernel's value.
 */
export interface KubeProxyIPVSConfig {
  readonly scheduler: IPVSScheduler;
  readonly excludeCIDRs: readonly Cidr[];
  readonly strictARP: boolean;
  readonly tcpTimeoutMs: number;
  readonly tcpFinTimeoutMs: number;
  readonly udpTimeoutMs: number;
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
 * CIDRs parsed, and every setting the file may give in more than one place (`masqueradeAll`, `masqueradeBit`,
 * `syncPeriod`, `minSyncPeriod`: per mode section, or kpx's top-level aliases) resolved once to the value the active
 * mode uses. Consumers read these, never a section of the file.
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

  /** `nftables.masqueradeAll` in nftables mode, else `iptables.masqueradeAll`; the top-level alias when unset. */
  readonly masqueradeAll: boolean;
  /** `nftables.masqueradeBit` in nftables mode, else `iptables.masqueradeBit`. */
  readonly masqueradeBit: number;
  /** The active mode's `syncPeriod`; the top-level alias when unset. */
  readonly syncPeriodMs: number;
  /** The active mode's `minSyncPeriod`; the top-level alias when unset. */
  readonly minSyncPeriodMs: number;

  readonly detectLocalMode: LocalMode;
  readonly detectLocal: KubeProxyDetectLocalConfig;
  /** `clusterCIDR` split and parsed: none, one, or one of each family. Empty unless detectLocalMode is ClusterCIDR. */
  readonly clusterCIDRs: readonly Cidr[];
  readonly nodePortAddresses: NodePortAddresses;

  readonly iptables: KubeProxyIPTablesConfig;
  readonly ipvs: KubeProxyIPVSConfig;
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

// The mode sections as a v1alpha1 file gives them, defaulted: what decode produces and resolve reads. Not exported
// from the package: consumers read the resolved {@link KubeProxyConfig}.

/** The `iptables` section, defaulted. Durations in milliseconds. */
export interface IPTablesSection extends KubeProxyIPTablesConfig {
  readonly masqueradeBit: number;
  readonly masqueradeAll: boolean;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
}

/** The `ipvs` section, defaulted. Durations in milliseconds. */
export interface IPVSSection extends KubeProxyIPVSConfig {
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
}

/** The `nftables` section, defaulted. Durations in milliseconds. */
export interface NFTablesSection {
  readonly masqueradeBit: number;
  readonly masqueradeAll: boolean;
  readonly syncPeriodMs: number;
  readonly minSyncPeriodMs: number;
}

export interface ModeSections {
  readonly iptables: IPTablesSection;
  readonly ipvs: IPVSSection;
  readonly nftables: NFTablesSection;
}
export type SectionName = keyof ModeSections;
