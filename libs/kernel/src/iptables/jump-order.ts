// The order of kpx's jumps inside one builtin chain. The wire object (IptablesJump) only says "prepend" or
// "append"; where several prepended jumps share a builtin chain, kube-proxy's order is the one a fresh node
// ends up with (it ensures each jump with `-I CHAIN` in turn, so the last ensured comes first). The compiler
// knows that order (the position of its jump objects); kpx asks it instead of keeping a second copy.
import type { IptablesJump } from '@kpx/proto';
import { RuleKind, compileNodeBase, defaultIptablesOptions, makeContext } from '@kpx/compiler';
import { IPFamily, type NodeInfo } from '@kpx/model';

/** Sorts the jumps of one builtin chain into the order they should stand in the kernel (first = head). */
export type JumpOrder = (a: IptablesJump, b: IptablesJump) => number;

const byTarget = (a: IptablesJump, b: IptablesJump): number => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0);

/**
 * kube-proxy's order of the jumps of a builtin chain, taken from the compiler's node-wide objects (IPv4, which
 * holds every jump IPv6 has and more); jumps it does not know go after those it knows, by target name.
 */
export function kubeProxyJumpOrder(): JumpOrder {
  const node: NodeInfo = { name: 'jump-order', resourceVersion: '', labels: {}, zone: '', addresses: [], podCIDRs: [] };
  const rank = new Map<string, number>();
  for (const o of compileNodeBase(makeContext(node, defaultIptablesOptions(IPFamily.IPv4), 0))) {
    if (o.kind === RuleKind.IptablesJump) rank.set(`${o.table}/${o.chain}/${o.target}`, o.position);
  }
  const rankOf = (j: IptablesJump): number => rank.get(`${j.table}/${j.chain}/${j.target}`) ?? Number.MAX_SAFE_INTEGER;
  return (a, b) => rankOf(a) - rankOf(b) || byTarget(a, b);
}

/** Jumps ordered by target name only: for callers that want no kube-proxy knowledge (and for tests). */
export const jumpOrderByTarget: JumpOrder = byTarget;
