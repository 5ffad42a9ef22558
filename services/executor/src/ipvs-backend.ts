// The IPVS backend: @kpx/kernel's IPVS applier for one IP family (IPVS services over generic netlink, VIPs on
// kube-ipvs0, KUBE-* ipsets, companion iptables rules), optionally inside a network namespace.
import { createIpvsApplier, diffObjects, isIpvsModeKernelObject, type IpvsApplier } from '@kpx/kernel';
import { ProxyMode } from '@kpx/proto';
import type { RuleState } from '@kpx/ruleset';
import { readBackDigest, type AppliedChange, type Backend, type ReadBack } from './backend.js';

export interface IpvsBackendOptions {
  /** "IPv4" or "IPv6": the services, VIPs and sets of that family (the IPVS table is shared by both). */
  readonly family: 'IPv4' | 'IPv6';
  /** Run every kernel operation inside this network namespace. */
  readonly netns?: string;
  /** How often draining real servers are checked for remaining connections. Default: the applier's (10 s). */
  readonly drainIntervalMs?: number;
  /** Virtual services in these CIDRs are left alone (kube-proxy's --ipvs-exclude-cidrs). */
  readonly excludeCidrs?: readonly string[];
}

export class IpvsBackend implements Backend {
  readonly name: string;
  readonly mode = ProxyMode.IPVS;
  readonly applier: IpvsApplier;

  constructor(opts: IpvsBackendOptions) {
    this.name = opts.family === 'IPv6' ? 'ipvs6' : 'ipvs';
    this.applier = createIpvsApplier({
      family: opts.family,
      ...(opts.netns ? { netns: opts.netns } : {}),
      ...(opts.drainIntervalMs !== undefined ? { drainIntervalMs: opts.drainIntervalMs } : {}),
      ...(opts.excludeCidrs ? { excludeCidrs: opts.excludeCidrs } : {}),
    });
  }

  // Only kernel objects reach the applier: the state also holds node duties (healthcheck.service).
  async restore(state: RuleState): Promise<void> {
    await this.applier.fullRestore(state.sortedObjects().filter(isIpvsModeKernelObject));
  }

  async apply(_state: RuleState, change: AppliedChange): Promise<void> {
    const upserts = change.upserts.filter((u) => isIpvsModeKernelObject(u.wire)).map((u) => u.wire);
    const deletes = change.deletes.filter(isIpvsModeKernelObject);
    if (upserts.length === 0 && deletes.length === 0) return;
    await this.applier.applyDelta({ upserts, deletes });
  }

  async readBack(state: RuleState): Promise<ReadBack> {
    const rb = await this.applier.readBack();
    const digest = readBackDigest(rb.digest, state, isIpvsModeKernelObject);
    if (digest === state.digest) return { digest, drift: [] };
    return { digest, drift: diffObjects(state.sortedObjects().filter(isIpvsModeKernelObject), rb.objects) };
  }

  /** Stops the drain timer and the netlink agent. */
  close(): Promise<void> {
    return this.applier.close();
  }
}
