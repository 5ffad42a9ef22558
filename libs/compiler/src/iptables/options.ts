// What the iptables compiler needs from kube-proxy's configuration, already resolved.
import type { Cidr, IPFamily, TopologyOptions } from '@kpx/model';

export const LocalMode = {
  ClusterCIDR: 'ClusterCIDR',
  NodeCIDR: 'NodeCIDR',
  BridgeInterface: 'BridgeInterface',
  InterfaceNamePrefix: 'InterfaceNamePrefix',
} as const;
export type LocalMode = (typeof LocalMode)[keyof typeof LocalMode];

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
  /** CIDRs (any family) or ['primary']; empty means every local address. */
  readonly nodePortAddresses: readonly string[];
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
    nodePortAddresses: [],
    localhostNodePorts: true,
    conntrackTCPLiberal: false,
    randomFully: true,
    topology: {},
  };
}
