// What the IPVS compiler needs from kube-proxy's configuration, already resolved.
import { IPVSScheduler, type IPFamily, type KubeProxyConfig } from '@kpx/model';
import { defaultIptablesOptions, iptablesOptionsFromConfig, type IptablesOptions } from '../iptables/options.js';

/**
 * The iptables options (masquerade, local traffic detection, nodePortAddresses, topology: the companion iptables
 * rules and the endpoint policy use them as in iptables mode) plus the IPVS scheduler.
 */
export interface IpvsOptions extends IptablesOptions {
  /** Scheduler of every virtual server: `ipvs.scheduler`, `rr` when blank. */
  readonly scheduler: string;
}

export function defaultIpvsOptions(family: IPFamily): IpvsOptions {
  return { ...defaultIptablesOptions(family), localhostNodePorts: false, scheduler: IPVSScheduler.RoundRobin };
}

/** The IPVS options a resolved KubeProxyConfiguration gives for one family. */
export function ipvsOptionsFromConfig(config: KubeProxyConfig, family: IPFamily): IpvsOptions {
  // IPVS mode has no localhost NodePorts (loopback addresses are never virtual servers).
  return { ...iptablesOptionsFromConfig(config, family), localhostNodePorts: false, scheduler: config.ipvs.scheduler };
}
