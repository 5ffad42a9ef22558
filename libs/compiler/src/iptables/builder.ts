// Accumulates chains and rules for one node, then freezes them into keyed rule objects.
import { RuleKind, Table, sortObjects, type IptablesChainObject, type IptablesJumpObject, type RuleObject } from '../ruleset.js';

/** `-m comment --comment TEXT`, quoted the way kube-proxy quotes it (only when it holds spaces). */
export function comment(text: string): string {
  return /\s/.test(text) ? `-m comment --comment "${text}"` : `-m comment --comment ${text}`;
}

export class RuleBuilder {
  private readonly chains = new Map<string, { table: Table; chain: string; rules: string[] }>();
  private readonly jumps: IptablesJumpObject[] = [];

  /** Declares a chain (idempotent) so that it exists even when empty. */
  chain(table: Table, chain: string): void {
    const key = `${table}/${chain}`;
    if (!this.chains.has(key)) this.chains.set(key, { table, chain, rules: [] });
  }

  /** Appends a rule to a chain; the chain must be declared first. */
  rule(table: Table, chain: string, ...parts: (string | undefined | false)[]): void {
    const c = this.chains.get(`${table}/${chain}`);
    if (!c) throw new Error(`internal: rule for undeclared chain ${table}/${chain}`);
    c.rules.push(parts.filter((p): p is string => typeof p === 'string' && p !== '').join(' '));
  }

  nat(chain: string, ...parts: (string | undefined | false)[]): void {
    this.rule(Table.Nat, chain, ...parts);
  }

  filter(chain: string, ...parts: (string | undefined | false)[]): void {
    this.rule(Table.Filter, chain, ...parts);
  }

  jump(table: Table, chain: string, target: string, rule: string): void {
    const position = this.jumps.filter((j) => j.table === table && j.chain === chain).length;
    this.jumps.push({ kind: RuleKind.IptablesJump, key: `${table}/${chain}/${target}`, table, chain, target, rule, position });
  }

  objects(): RuleObject[] {
    const chains: IptablesChainObject[] = [...this.chains.entries()].map(([key, c]) => ({ kind: RuleKind.IptablesChain, key, table: c.table, chain: c.chain, rules: c.rules }));
    return sortObjects<RuleObject>([...chains, ...this.jumps]);
  }
}
