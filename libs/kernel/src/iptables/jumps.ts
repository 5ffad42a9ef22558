// Ensuring kpx's jumps in one builtin chain without owning the chain.
//
// iptables-restore --noflush cannot "add a rule if it is missing": `-A`/`-I` add a second copy of a rule that
// is there, and `-D` of a rule that is not there fails the whole transaction. kube-proxy runs `iptables -C`
// then `iptables -I` per jump, outside its restore. kpx instead reads the builtin chain (`iptables -S CHAIN`,
// a few rules, whatever the number of services) just before the transaction and plans exact edits from it:
// `-D CHAIN <spec>` for each kpx jump that is stale or doubled, and `-I CHAIN <n> <rule>` for each missing one at
// the place that keeps kpx's jumps in their order, all inside the one transaction. A kpx jump is any rule of a
// builtin chain whose target is a chain kpx owns; other rules are never touched. Should another program edit
// the chain between the read and the restore, a `-D` may miss (the transaction fails and changes nothing; the
// executor's full restore repairs) or an insert may land a place off; neither touches someone else's rule:
// `-D` by spec only deletes a rule equal to the one named.
import type { IptablesJump } from '@kpx/proto';
import { ruleTarget } from './rule-text.js';

export interface BuiltinJumpInput {
  /** The builtin chain, e.g. "PREROUTING". */
  readonly chain: string;
  /** Its rules as the kernel holds them, in order (specs without `-A CHAIN`). */
  readonly current: readonly string[];
  /** The jumps kpx wants in this chain, in their order (see JumpOrder). */
  readonly desired: readonly IptablesJump[];
  /** Whether a rule jumping to this target is kpx's. */
  readonly isKpxTarget: (target: string) => boolean;
  /** The desired jump's rule spelled as `current` spells rules (the kernel's spelling), for comparison. */
  readonly spell: (jump: IptablesJump) => string;
}

export interface BuiltinJumpPlan {
  /** Specs to delete with `-D CHAIN <spec>`, in order. */
  readonly deletes: readonly string[];
  /** Restore lines adding the missing jumps (`-I CHAIN n …` / `-A CHAIN …`), to run after the deletes. */
  readonly adds: readonly string[];
  /** The jumps those lines add, in the same order. */
  readonly added: readonly IptablesJump[];
}

export function planBuiltinJumps(input: BuiltinJumpInput): BuiltinJumpPlan {
  const { chain } = input;
  const wanted = new Set(input.desired.map((j) => input.spell(j)));
  // The chain as it will be, simulated so that insert positions are right.
  const view = [...input.current];
  const deletes: string[] = [];
  const kept = new Set<string>();
  for (const spec of input.current) {
    const target = ruleTarget(spec);
    if (target === undefined || !input.isKpxTarget(target)) continue;
    if (wanted.has(spec) && !kept.has(spec)) {
      kept.add(spec);
      continue;
    }
    deletes.push(spec);
    // `-D CHAIN spec` removes the first equal rule.
    view.splice(view.indexOf(spec), 1);
  }
  const adds: string[] = [];
  const added: IptablesJump[] = [];
  const prepends = input.desired.filter((j) => j.prepend);
  const spelled = prepends.map((j) => input.spell(j));
  prepends.forEach((j, i) => {
    const spec = spelled[i] as string;
    if (kept.has(spec)) return;
    const at = insertionIndex(view, spelled, i, kept);
    view.splice(at, 0, spec);
    kept.add(spec);
    adds.push(`-I ${chain} ${at + 1} ${j.rule}`);
    added.push(j);
  });
  for (const j of input.desired) {
    if (j.prepend || kept.has(input.spell(j))) continue;
    view.push(input.spell(j));
    adds.push(`-A ${chain} ${j.rule}`);
    added.push(j);
  }
  return { deletes, adds, added };
}

/**
 * Where the i-th prepended jump goes: just before the next of kpx's jumps that is present, else just after the
 * previous one, else at the head of the chain.
 */
function insertionIndex(
  view: readonly string[],
  spelled: readonly string[],
  i: number,
  present: ReadonlySet<string>,
): number {
  for (let k = i + 1; k < spelled.length; k++) {
    const s = spelled[k] as string;
    if (present.has(s)) return view.indexOf(s);
  }
  for (let k = i - 1; k >= 0; k--) {
    const s = spelled[k] as string;
    if (present.has(s)) return view.indexOf(s) + 1;
  }
  return 0;
}
