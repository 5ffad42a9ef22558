// The rule model: a node's rules as a set of keyed objects. Backends produce them; deltas, digests,
// audit and replay work on them without knowing the backend.

export const RuleKind = {
  /** An iptables chain kpx owns; payload: its rules in order. Key `table/CHAIN`. */
  IptablesChain: 'iptables.chain',
  /** A jump from a builtin chain into a kpx chain. Key `table/BUILTIN/TARGET`. */
  IptablesJump: 'iptables.jump',
  /**
   * Rules one service port (or the node) contributes to a shared chain such as KUBE-SERVICES. Key
   * `table/CHAIN/OWNER`. The chain is its own rules followed by its fragments, ordered by (position, key).
   */
  IptablesRules: 'iptables.rules',
} as const;
export type RuleKind = (typeof RuleKind)[keyof typeof RuleKind];

export const Table = { Filter: 'filter', Nat: 'nat' } as const;
export type Table = (typeof Table)[keyof typeof Table];

export interface IptablesChainObject {
  readonly kind: typeof RuleKind.IptablesChain;
  readonly key: string;
  readonly table: Table;
  readonly chain: string;
  /** Rule specifications without the leading `-A CHAIN`, in iptables-restore syntax. */
  readonly rules: readonly string[];
}

export interface IptablesJumpObject {
  readonly kind: typeof RuleKind.IptablesJump;
  readonly key: string;
  readonly table: Table;
  /** The builtin chain holding the jump (INPUT, FORWARD, OUTPUT, PREROUTING, POSTROUTING). */
  readonly chain: string;
  readonly target: string;
  /** The whole rule specification, ending in `-j TARGET`. */
  readonly rule: string;
  /** Position among the jumps of its builtin chain (0 first). */
  readonly position: number;
}

export interface IptablesRulesObject {
  readonly kind: typeof RuleKind.IptablesRules;
  readonly key: string;
  readonly table: Table;
  readonly chain: string;
  readonly rules: readonly string[];
  /** 0: among the service ports' rules (ordered by key); 1: after them (KUBE-SERVICES' NodePort tail call). */
  readonly position: number;
}

export type RuleObject = IptablesChainObject | IptablesJumpObject | IptablesRulesObject;

export interface NodeRuleSet {
  readonly node: string;
  readonly mode: string;
  readonly family: string;
  /** Objects sorted by (kind, key): the canonical order. */
  readonly objects: readonly RuleObject[];
}

export function objectId(o: { kind: string; key: string }): string {
  return `${o.kind}:${o.key}`;
}

export function sortObjects<T extends { kind: string; key: string }>(objects: T[]): T[] {
  return objects.sort((a, b) => {
    const x = objectId(a);
    const y = objectId(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
