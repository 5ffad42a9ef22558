// What the iptables compiler needs from kube-proxy's configuration, already resolved.
import {
  LocalMode,
  NodePortAddressesKind,
  type Cidr,
  type IPFamily,
  type KubeProxyConfig,
  type NodePortAddresses,
  type TopologyOptions,
} from '@kpx/model';

export interface IptablesOptions {
  readonly family: IPFamily;
  /** SNAT every packet sent to a service cluster IP. */
  readonly masqueradeAll: boolean;
  /** Bit of the packet mark meaning "masquerade me" (default 14). */
  readonly masqueradeBit: number;
  readonly detectLocalMode: LocalMode;
  /** clusterCIDR of this family, for ClusterCIDR mode. */
  readonly clusterCIDRs: readonly Cidr[];
  readonly bridgeInterface?: string;
  readonly interfaceNamePrefix?: string;
  /** Every local address, the node's primary address, or the node addresses inside CIDRs (of any family). */
  readonly nodePortAddresses: NodePortAddresses;
  readonly localhostNodePorts: boolean;
  /** nf_conntrack_tcp_be_liberal on the node: when set kube-proxy installs no INVALID drop rule. */
  readonly conntrackTCPLiberal: boolean;
  /** MASQUERADE --random-fully (every iptables >= 1.6.2). */
  readonly randomFully: boolean;
  readonly topology: TopologyOptions;
}

export function defaultIptablesOptions(family: IPFamily): IptablesOptions {
  return {
    family,
    masqueradeAll: false,
    masqueradeBit: 14,
    detectLocalMode: LocalMode.ClusterCIDR,
    clusterCIDRs: [],
    nodePortAddresses: { kind: NodePortAddressesKind.All },
    localhostNodePorts: true,
    conntrackTCPLiberal: false,
    randomFully: true,
    topology: {},
  };
}

/**
 * The iptables options a resolved KubeProxyConfiguration gives for one family: its resolved values (masqueradeAll
 * and masqueradeBit as the mode uses them, wherever the file gave them), never a raw section of the file.
 */
export function iptablesOptionsFromConfig(config: KubeProxyConfig, family: IPFamily): IptablesOptions {
  const preferSameNode = config.featureGates['PreferSameTrafficDistribution'];
  return {
    family,
    masqueradeAll: config.masqueradeAll,
    masqueradeBit: config.masqueradeBit,
    detectLocalMode: config.detectLocalMode,
    clusterCIDRs: config.clusterCIDRs.filter((c) => c.family === family),
    ...(config.detectLocal.bridgeInterface ? { bridgeInterface: config.detectLocal.bridgeInterface } : {}),
    ...(config.detectLocal.interfaceNamePrefix ? { interfaceNamePrefix: config.detectLocal.interfaceNamePrefix } : {}),
    nodePortAddresses: config.nodePortAddresses,
    localhostNodePorts: config.iptables.localhostNodePorts,
    conntrackTCPLiberal: config.conntrack.tcpBeLiberal,
    randomFully: true,
    topology: preferSameNode === undefined ? {} : { preferSameNodeHints: preferSameNode },
  };
}
