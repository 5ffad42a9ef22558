// Parsing what the kernel holds: iptables-save output (whole tables) and `iptables -S CHAIN` (one chain).
import { IptablesParseError } from '../errors.js';

export interface SavedChain {
  readonly name: string;
  /** The policy of a builtin chain ("ACCEPT", "DROP"); undefined for a user-defined chain (`-`). */
  readonly policy: string | undefined;
  /** The rule specs in order, without the leading `-A CHAIN `, as the kernel prints them. */
  readonly rules: string[];
}

export interface SavedTable {
  readonly name: string;
  /** Chains in the order iptables-save lists them (builtin chains first). */
  readonly chains: Map<string, SavedChain>;
}

/** Tables by name. A table iptables-save did not print (nft: never created) is absent. */
export type SavedTables = Map<string, SavedTable>;

/** `-A CHAIN spec` → [CHAIN, spec]. */
function splitAppend(line: string, n: number): [string, string] {
  const rest = line.slice(3);
  const sp = rest.indexOf(' ');
  if (sp <= 0) {
    if (rest.length > 0 && sp < 0) return [rest, ''];
    throw new IptablesParseError(n, line, 'a rule without a chain');
  }
  return [rest.slice(0, sp), rest.slice(sp + 1)];
}

/** Parses iptables-save output (without --counters). */
export function parseSave(text: string): SavedTables {
  const tables: SavedTables = new Map();
  let table: SavedTable | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const n = i + 1;
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      table = { name: line.slice(1).trim(), chains: new Map() };
      tables.set(table.name, table);
      continue;
    }
    if (!table) throw new IptablesParseError(n, line, 'outside of a table');
    if (line === 'COMMIT') {
      table = undefined;
    } else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(' ');
      if (!name || policy === undefined) throw new IptablesParseError(n, line, 'a malformed chain line');
      table.chains.set(name, { name, policy: policy === '-' ? undefined : policy, rules: [] });
    } else if (line.startsWith('-A ')) {
      const [chain, spec] = splitAppend(line, n);
      const c = table.chains.get(chain);
      if (!c) throw new IptablesParseError(n, line, `a rule of the undeclared chain ${chain}`);
      c.rules.push(spec);
    } else {
      throw new IptablesParseError(n, line, 'an unknown line');
    }
  }
  if (table) throw new IptablesParseError(lines.length, '', `table ${table.name} has no COMMIT`);
  return tables;
}

/** Parses `iptables -t TABLE -S CHAIN`: the rule specs of that chain in order. */
export function parseListRules(text: string, chain: string): string[] {
  const rules: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line === '' || line.startsWith('#') || line.startsWith('-P ') || line.startsWith('-N ')) continue;
    if (!line.startsWith('-A ')) throw new IptablesParseError(i + 1, line, 'an unknown line');
    const [c, spec] = splitAppend(line, i + 1);
    if (c !== chain) throw new IptablesParseError(i + 1, line, `a rule of ${c}, not ${chain}`);
    rules.push(spec);
  }
  return rules;
}
