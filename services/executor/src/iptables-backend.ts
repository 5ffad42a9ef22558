// The iptables backend: @kpx/kernel's applier for one IP family (iptables-* or ip6tables-*), optionally inside a
// network namespace.
import {
  createIptablesApplier,
  diffActual,
  isIptablesObject,
  type IptablesApplier,
  type IptablesDrift,
} from '@kpx/kernel';
import type { RuleState } from '@kpx/ruleset';
import { readBackDigest, type AppliedChange, type Backend, type ReadBack } from './backend.js';

export interface IptablesBackendOptions {
  /** "IPv4" (iptables) or "IPv6" (ip6tables). */
  readonly family: 'IPv4' | 'IPv6';
  /** Run every command inside this network namespace. */
  readonly netns?: string;
}

/** One line per difference, for logs, acks and `kpx status`. */
export function driftLines(d: IptablesDrift): string[] {
  return [
    ...d.chains.missing.map((c) => `${c}: missing`),
    ...d.chains.extra.map((c) => `${c}: not wanted`),
    ...d.chains.changed.map((c) => `${c}: rules differ`),
    ...d.jumps.missing.map((j) => `jump ${j}: missing`),
    ...d.jumps.extra.map((j) => `jump ${j}: not wanted`),
    ...d.jumps.changed.map((j) => `jump ${j}: differs`),
  ];
}

export class IptablesBackend implements Backend {
  readonly name: string;
  private readonly applier: IptablesApplier;

  constructor(opts: IptablesBackendOptions) {
    this.name = opts.family === 'IPv6' ? 'ip6tables' : 'iptables';
    this.applier = createIptablesApplier({ family: opts.family, ...(opts.netns ? { netns: opts.netns } : {}) });
  }

  // Only iptables objects reach the applier: the state also holds node duties (healthcheck.service).
  async restore(state: RuleState): Promise<void> {
    await this.applier.fullRestore(state.sortedObjects().filter(isIptablesObject));
  }

  async apply(_state: RuleState, change: AppliedChange): Promise<void> {
    const upserts = change.upserts.filter((u) => isIptablesObject(u.wire)).map((u) => u.wire);
    const deletes = change.deletes.filter(isIptablesObject);
    if (upserts.length === 0 && deletes.length === 0) return;
    await this.applier.applyDelta({ upserts, deletes });
  }

  async readBack(state: RuleState): Promise<ReadBack> {
    const rb = await this.applier.readBack();
    const digest = readBackDigest(rb.digest, state, isIptablesObject);
    if (digest === state.digest) return { digest, drift: [] };
    return { digest, drift: driftLines(diffActual(state.sortedObjects().filter(isIptablesObject), rb.objects)) };
  }
}
