// kube-proxy's IPVS mode names: the dummy interface, the companion iptables chains and the ipsets
// (pkg/proxy/ipvs/proxier.go and ipset.go).

/** The dummy interface every bound virtual IP sits on. */
export const DummyInterface = 'kube-ipvs0';

export const IpvsChain = {
  Services: 'KUBE-SERVICES',
  Postrouting: 'KUBE-POSTROUTING',
  MarkMasq: 'KUBE-MARK-MASQ',
  NodePort: 'KUBE-NODE-PORT',
  LoadBalancer: 'KUBE-LOAD-BALANCER',
  Forward: 'KUBE-FORWARD',
  ProxyFirewall: 'KUBE-PROXY-FIREWALL',
  SourceRangesFirewall: 'KUBE-SOURCE-RANGES-FIREWALL',
  IpvsFilter: 'KUBE-IPVS-FILTER',
  IpvsOutFilter: 'KUBE-IPVS-OUT-FILTER',
} as const;

export const IpsetType = {
  HashIP: 'hash:ip',
  HashIPPort: 'hash:ip,port',
  HashIPPortIP: 'hash:ip,port,ip',
  HashIPPortNet: 'hash:ip,port,net',
  BitmapPort: 'bitmap:port',
} as const;
export type IpsetType = (typeof IpsetType)[keyof typeof IpsetType];

/** The IPv4 names of kube-proxy's sets (IPv6 ones: see {@link ipsetName}). */
export const IpsetName = {
  LoopBack: 'KUBE-LOOP-BACK',
  ClusterIP: 'KUBE-CLUSTER-IP',
  ExternalIP: 'KUBE-EXTERNAL-IP',
  ExternalIPLocal: 'KUBE-EXTERNAL-IP-LOCAL',
  LoadBalancer: 'KUBE-LOAD-BALANCER',
  LoadBalancerFW: 'KUBE-LOAD-BALANCER-FW',
  LoadBalancerLocal: 'KUBE-LOAD-BALANCER-LOCAL',
  LoadBalancerSourceIP: 'KUBE-LOAD-BALANCER-SOURCE-IP',
  LoadBalancerSourceCIDR: 'KUBE-LOAD-BALANCER-SOURCE-CIDR',
  NodePortTCP: 'KUBE-NODE-PORT-TCP',
  NodePortLocalTCP: 'KUBE-NODE-PORT-LOCAL-TCP',
  NodePortUDP: 'KUBE-NODE-PORT-UDP',
  NodePortLocalUDP: 'KUBE-NODE-PORT-LOCAL-UDP',
  NodePortSCTP: 'KUBE-NODE-PORT-SCTP-HASH',
  NodePortLocalSCTP: 'KUBE-NODE-PORT-LOCAL-SCTP-HASH',
  HealthCheckNodePort: 'KUBE-HEALTH-CHECK-NODE-PORT',
  IpvsIPs: 'KUBE-IPVS-IPS',
} as const;
export type IpsetName = (typeof IpsetName)[keyof typeof IpsetName];

export interface IpsetInfo {
  readonly name: IpsetName;
  readonly type: IpsetType;
  readonly comment: string;
}

/** kube-proxy's ipsetInfo, in its order. */
export const IPSETS: readonly IpsetInfo[] = [
  {
    name: IpsetName.LoopBack,
    type: IpsetType.HashIPPortIP,
    comment: 'Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose',
  },
  {
    name: IpsetName.ClusterIP,
    type: IpsetType.HashIPPort,
    comment: 'Kubernetes service cluster ip + port for masquerade purpose',
  },
  {
    name: IpsetName.ExternalIP,
    type: IpsetType.HashIPPort,
    comment: 'Kubernetes service external ip + port for masquerade and filter purpose',
  },
  {
    name: IpsetName.ExternalIPLocal,
    type: IpsetType.HashIPPort,
    comment: 'Kubernetes service external ip + port with externalTrafficPolicy=local',
  },
  { name: IpsetName.LoadBalancer, type: IpsetType.HashIPPort, comment: 'Kubernetes service lb portal' },
  {
    name: IpsetName.LoadBalancerFW,
    type: IpsetType.HashIPPort,
    comment: 'Kubernetes service load balancer ip + port for load balancer with sourceRange',
  },
  {
    name: IpsetName.LoadBalancerLocal,
    type: IpsetType.HashIPPort,
    comment: 'Kubernetes service load balancer ip + port with externalTrafficPolicy=local',
  },
  {
    name: IpsetName.LoadBalancerSourceIP,
    type: IpsetType.HashIPPortIP,
    comment: 'Kubernetes service load balancer ip + port + source IP for packet filter purpose',
  },
  {
    name: IpsetName.LoadBalancerSourceCIDR,
    type: IpsetType.HashIPPortNet,
    comment: 'Kubernetes service load balancer ip + port + source cidr for packet filter purpose',
  },
  {
    name: IpsetName.NodePortTCP,
    type: IpsetType.BitmapPort,
    comment: 'Kubernetes nodeport TCP port for masquerade purpose',
  },
  {
    name: IpsetName.NodePortLocalTCP,
    type: IpsetType.BitmapPort,
    comment: 'Kubernetes nodeport TCP port with externalTrafficPolicy=local',
  },
  {
    name: IpsetName.NodePortUDP,
    type: IpsetType.BitmapPort,
    comment: 'Kubernetes nodeport UDP port for masquerade purpose',
  },
  {
    name: IpsetName.NodePortLocalUDP,
    type: IpsetType.BitmapPort,
    comment: 'Kubernetes nodeport UDP port with externalTrafficPolicy=local',
  },
  {
    name: IpsetName.NodePortSCTP,
    type: IpsetType.HashIPPort,
    comment: "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
  },
  {
    name: IpsetName.NodePortLocalSCTP,
    type: IpsetType.HashIPPort,
    comment: "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
  },
  { name: IpsetName.HealthCheckNodePort, type: IpsetType.BitmapPort, comment: 'Kubernetes health check node port' },
  { name: IpsetName.IpvsIPs, type: IpsetType.HashIP, comment: 'Addresses on the ipvs interface' },
];

const INFO = new Map<string, IpsetInfo>(IPSETS.map((s) => [s.name, s]));

export function ipsetInfo(name: IpsetName): IpsetInfo {
  const info = INFO.get(name);
  if (!info) throw new Error(`internal: unknown ipset ${name}`);
  return info;
}

/** ipset names are at most 31 characters. */
const MaxIpsetNameLength = 31;

/**
 * The kernel name of a set in a family: IPv6 sets are `KUBE-6-…` (truncated to 31 characters), so both families'
 * sets coexist on a dual-stack node, as kube-proxy names them.
 */
export function ipsetName(name: IpsetName, isIPv6: boolean): string {
  if (!isIPv6) return name;
  return name.replace(/^KUBE-/, 'KUBE-6-').slice(0, MaxIpsetNameLength);
}

/** IPVS service flags (kube-proxy util/ipvs). The kernel's "hashed" flag (0x2) is never part of the desired state. */
export const IpvsFlag = { Persistent: 0x1, Hashed: 0x2, SourceHash: 0x10 } as const;
