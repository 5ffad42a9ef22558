// Accumulates chains, fragments of shared chains and jumps, then freezes them into keyed rule objects.
import { RuleKind, Table, sortObjects, type IptablesJumpObject, type RuleObject } from '../ruleset.js';

/**
 * What may not appear in a comment: anything but printable ASCII, and the quote and escape characters of
 * iptables-restore's quoting (a `'` is literal inside the double quotes; kube-proxy's own comments use it).
 */
const UNSAFE_COMMENT = /[^\x20-\x7e]|["\\]/;
const UNSAFE_COMMENT_ALL = new RegExp(UNSAFE_COMMENT.source, 'g');

/**
 * `-m comment --comment TEXT`, quoted the way kube-proxy quotes it (only when it holds spaces). The model only
 * lets valid names through, which never hold an unsafe character; should one come anyway, it is replaced by '?'
 * (and the text cut to iptables' 256 characters), so a comment can never end its quotes or its line.
 */
export function comment(text: string): string {
  const safe = UNSAFE_COMMENT.test(text) ? text.replace(UNSAFE_COMMENT_ALL, '?').slice(0, 255) : text;
  return /\s/.test(safe) ? `-m comment --comment "${safe}"` : `-m comment --comment ${safe}`;
}

type Part = string | undefined | false;

/** The non-empty string parts, space-separated. Compacts `parts` (a rest parameter, ours to change) in place. */
function join(parts: Part[]): string {
  let n = 0;
  for (const p of parts) if (typeof p === 'string' && p !== '') parts[n++] = p;
  parts.length = n;
  return parts.join(' ');
}

/** The text of one rule: its non-empty parts, space-separated. */
export function ruleText(...parts: Part[]): string {
  return join(parts);
}

interface Rules {
  readonly table: Table;
  readonly chain: string;
  readonly rules: string[];
  /** `rules` is exactly as long as its storage (an array literal never appended to): kept, not copied. */
  exact: boolean;
}

/**
 * Per table, chain name -> rules: no `table/CHAIN` key string is built for each rule. A table's map is created
 * on first use (a service port's builder mostly writes nat only).
 */
class ByTable {
  private filter: Map<string, Rules> | undefined;
  private nat: Map<string, Rules> | undefined;

  get(table: Table, chain: string): Rules | undefined {
    return (table === Table.Nat ? this.nat : this.filter)?.get(chain);
  }

  add(table: Table, chain: string, list: string[] = [], exact = false): Rules {
    const rules: Rules = { table, chain, rules: list, exact };
    if (table === Table.Nat) (this.nat ??= new Map()).set(chain, rules);
    else (this.filter ??= new Map()).set(chain, rules);
    return rules;
  }

  /** Filter's entries, then nat's, each in insertion order. */
  forEach(fn: (rules: Rules) => void): void {
    this.filter?.forEach(fn);
    this.nat?.forEach(fn);
  }
}

export class RuleBuilder {
  private readonly chains = new ByTable();
  private readonly fragments = new ByTable();
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
    if (!this.chains.get(table, chain)) this.chains.add(table, chain);
  }

  /**
   * Declares a chain this builder owns with its rules, in an array the builder keeps (the caller's literal,
   * sized exactly: a large node has some 100,000 two-rule endpoint chains, and growing an array from empty
   * reserves 17 slots, copied to size at the end).
   */
  chainWithRules(table: Table, chain: string, rules: string[]): void {
    const own = this.chains.get(table, chain);
    if (!own) {
      this.chains.add(table, chain, rules, true);
      return;
    }
    for (const r of rules) own.rules.push(r);
    own.exact = false;
  }

  /** Appends a rule to an owned chain (declared first) or to the fragment of a shared chain. */
  rule(table: Table, chain: string, ...parts: Part[]): void {
    this.add(table, chain, parts);
  }

  nat(chain: string, ...parts: Part[]): void {
    this.add(Table.Nat, chain, parts);
  }

  filter(chain: string, ...parts: Part[]): void {
    this.add(Table.Filter, chain, parts);
  }

  private add(table: Table, chain: string, parts: Part[]): void {
    const own = this.chains.get(table, chain);
    if (own) {
      own.rules.push(join(parts));
      own.exact = false;
      return;
    }
    let f = this.fragments.get(table, chain);
    if (!f) {
      const key = `${table}/${chain}`;
      if (!this.shared.has(key)) throw new Error(`internal: rule for undeclared chain ${key}`);
      f = this.fragments.add(table, chain);
    }
    f.rules.push(join(parts));
  }

  jump(table: Table, chain: string, target: string, rule: string): void {
    const position = this.jumps.filter((j) => j.table === table && j.chain === chain).length;
    this.jumps.push({
      kind: RuleKind.IptablesJump,
      key: `${table}/${chain}/${target}`,
      table,
      chain,
      target,
      rule,
      position,
    });
  }

  /** Every object, sorted. */
  objects(): RuleObject[] {
    return sortObjects(this.unsortedObjects());
  }

  /**
   * Every object, in no particular order (for a caller that sorts many builders' objects at once). Keys are
   * built as flat strings and rule lists copied to their exact size: a node's rule set holds a few hundred
   * thousand of each, and they outlive the compile.
   */
  unsortedObjects(): RuleObject[] {
    const out: RuleObject[] = [];
    this.chains.forEach((c) => {
      out.push({
        kind: RuleKind.IptablesChain,
        key: [c.table, c.chain].join('/'),
        table: c.table,
        chain: c.chain,
        rules: c.exact ? c.rules : c.rules.slice(),
      });
    });
    this.fragments.forEach((f) => {
      out.push({
        kind: RuleKind.IptablesRules,
        key: [f.table, f.chain, this.owner].join('/'),
        table: f.table,
        chain: f.chain,
        rules: f.rules.slice(),
        position: this.position,
      });
    });
    out.push(...this.jumps);
    return out;
  }
}
