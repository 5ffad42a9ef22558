// The order of kpx's jumps inside one builtin chain. Where several prepended jumps share a builtin chain,
// kube-proxy's order is the one a fresh node ends up with (it ensures each jump with `-I CHAIN` in turn, so the
// last ensured comes first). The compiler knows that order and puts it on the wire: IptablesJump.position.
import type { IptablesJump } from '@kpx/proto';

/** Sorts the jumps of one builtin chain into the order they should stand in the kernel (first = head). */
export type JumpOrder = (a: IptablesJump, b: IptablesJump) => number;

/** By the position the compiler gave each jump, then by target name (jumps of equal positions). */
export const wireJumpOrder: JumpOrder = (a, b) =>
  a.position - b.position || (a.target < b.target ? -1 : a.target > b.target ? 1 : 0);
