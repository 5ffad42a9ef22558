// kube-proxy's defaults (pkg/proxy/apis/config/v1alpha1/defaults.go, the Linux platform defaults of
// cmd/kube-proxy/app/server_linux.go, pkg/cluster/ports, pkg/kubelet/qos).
import {
  IPVSScheduler,
  type IPTablesSection,
  type IPVSSection,
  type KubeProxyConntrackConfig,
  type ModeSections,
  type NFTablesSection,
} from './types.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

export const PROXY_HEALTHZ_PORT = 10256;
export const PROXY_STATUS_PORT = 10249;
export const KUBE_PROXY_OOM_SCORE_ADJ = -999;

export const DEFAULT_IPTABLES: IPTablesSection = {
  masqueradeBit: 14,
  masqueradeAll: false,
  localhostNodePorts: true,
  syncPeriodMs: 30 * SECOND,
  minSyncPeriodMs: 1 * SECOND,
};
export const DEFAULT_IPVS: IPVSSection = {
  scheduler: IPVSScheduler.RoundRobin,
  syncPeriodMs: 30 * SECOND,
  minSyncPeriodMs: 0,
  excludeCIDRs: [],
  strictARP: false,
  tcpTimeoutMs: 0,
  tcpFinTimeoutMs: 0,
  udpTimeoutMs: 0,
};
export const DEFAULT_NFTABLES: NFTablesSection = {
  masqueradeBit: 14,
  masqueradeAll: false,
  syncPeriodMs: 30 * SECOND,
  minSyncPeriodMs: 1 * SECOND,
};
export const DEFAULT_SECTIONS: ModeSections = {
  iptables: DEFAULT_IPTABLES,
  ipvs: DEFAULT_IPVS,
  nftables: DEFAULT_NFTABLES,
};
export const DEFAULT_CONNTRACK: KubeProxyConntrackConfig = {
  maxPerCore: 32 * 1024,
  min: 128 * 1024,
  tcpEstablishedTimeoutMs: 24 * HOUR,
  tcpCloseWaitTimeoutMs: 1 * HOUR,
  tcpBeLiberal: false,
  udpTimeoutMs: 0,
  udpStreamTimeoutMs: 0,
};
export const DEFAULT_CONFIG_SYNC_PERIOD_MS = 15 * MINUTE;
export const DEFAULT_CONTENT_TYPE = 'application/vnd.kubernetes.protobuf';
export const DEFAULT_QPS = 5;
export const DEFAULT_BURST = 10;

/** v1alpha1 defaulting of a non-pointer field: absent and 0 both take the default. */
export function nonZeroOr(value: number | undefined, dflt: number): number {
  return value === undefined || value === 0 ? dflt : value;
}
