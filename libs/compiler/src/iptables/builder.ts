// Accumulates chains, fragments of shared chains and jumps, then freezes them into keyed rule objects.
import {
  RuleKind,
  Table,
  sortObjects,
  type IptablesChainObject,
  type IptablesJumpObject,
  type IptablesRulesObject,
  type RuleObject,
} from '../ruleset.js';

/** `-m comment --comment TEXT`, quoted the way kube-proxy quotes it (only when it holds spaces). */
export function comment(text: string): string {
  return /\s/.test(text) ? `-m comment --comment "${text}"` : `-m comment --comment ${text}`;
}

type Part = string | undefined | false;
const join = (parts: readonly Part[]): string => parts.filter((p): p is string => typeof p === 'string' && p !== '').join(' ');

export class RuleBuilder {
  private readonly chains = new Map<string, { table: Table; chain: string; rules: string[] }>();
  private readonly fragments = new Map<string, { table: Table; chain: string; rules: string[] }>();
  private readonly jumps: IptablesJumpObject[] = [];

  /**
   * @param shared chains owned by someone else (the node's top-level chains): rules written to them become a
   *   fragment keyed `table/CHAIN/owner`.
   */
  constructor(
    private readonly shared: ReadonlySet<string> = new Set(),
    private readonly owner = '',
    private readonly position = 0,
  ) {}

  /** Declares a chain this builder owns (idempotent) so that it exists even when empty. */
  chain(table: Table, chain: string): void {
    const key = `${table}/${chain}`;
    if (!this.chains.has(key)) this.chains.set(key, { table, chain, rules: [] });
  }

  /** Appends a rule to an owned chain (declared first) or to the fragment of a shared chain. */
  rule(table: Table, chain: string, ...parts: Part[]): void {
    const key = `${table}/${chain}`;
    const own = this.chains.get(key);
    if (own) {
      own.rules.push(join(parts));
      return;
    }
    if (!this.shared.has(key)) throw new Error(`internal: rule for undeclared chain ${key}`);
    let f = this.fragments.get(key);
    if (!f) this.fragments.set(key, (f = { table, chain, rules: [] }));
    f.rules.push(join(parts));
  }

  nat(chain: string, ...parts: Part[]): void {
    this.rule(Table.Nat, chain, ...parts);
  }

  filter(chain: string, ...parts: Part[]): void {
    this.rule(Table.Filter, chain, ...parts);
  }

  jump(table: Table, chain: string, target: string, rule: string): void {
    const position = this.jumps.filter((j) => j.table === table && j.chain === chain).length;
    this.jumps.push({ kind: RuleKind.IptablesJump, key: `${table}/${chain}/${target}`, table, chain, target, rule, position });
  }

  objects(): RuleObject[] {
    const chains: IptablesChainObject[] = [...this.chains.entries()].map(([key, c]) => ({ kind: RuleKind.IptablesChain, key, table: c.table, chain: c.chain, rules: c.rules }));
    const fragments: IptablesRulesObject[] = [...this.fragments.entries()].map(([key, f]) => ({
      kind: RuleKind.IptablesRules,
      key: `${key}/${this.owner}`,
      table: f.table,
      chain: f.chain,
      rules: f.rules,
      position: this.position,
    }));
    return sortObjects<RuleObject>([...chains, ...fragments, ...this.jumps]);
  }
}
