// Rule set -> iptables-restore input.
import { RuleKind, Table, type IptablesChainObject, type IptablesJumpObject, type IptablesRulesObject, type NodeRuleSet } from '../ruleset.js';
import { Chain } from './names.js';

export const RestoreFormat = {
  /**
   * A complete image of the filter and nat tables: builtin chains, the jumps into kpx's chains, kpx's chains.
   * For review and for loading into an empty network namespace with plain `iptables-restore`.
   */
  Full: 'full',
  /** Only kpx's chains, as kube-proxy feeds `iptables-restore --noflush` (jumps are ensured separately). */
  Chains: 'chains',
} as const;
export type RestoreFormat = (typeof RestoreFormat)[keyof typeof RestoreFormat];

const BUILTIN: Record<Table, readonly string[]> = {
  [Table.Filter]: ['INPUT', 'FORWARD', 'OUTPUT'],
  [Table.Nat]: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
};

const TOP_LEVEL: Record<Table, readonly string[]> = {
  [Table.Filter]: [Chain.Services, Chain.ExternalServices, Chain.Forward, Chain.NodePorts, Chain.ProxyFirewall, Chain.KubeletFirewall],
  [Table.Nat]: [Chain.Services, Chain.NodePorts, Chain.Postrouting, Chain.MarkMasq],
};

const byChainName = (a: IptablesChainObject, b: IptablesChainObject): number => (a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0);
const byPositionThenKey = (a: IptablesRulesObject, b: IptablesRulesObject): number => a.position - b.position || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * Stable sort, skipped when the array is already in order: a rule set's objects come sorted by key, so the
 * chains and fragments usually are (and a stable sort of a sorted array changes nothing).
 */
function sortIfUnsorted<T>(xs: T[], cmp: (a: T, b: T) => number): T[] {
  for (let i = 1; i < xs.length; i++) if (cmp(xs[i - 1] as T, xs[i] as T) > 0) return xs.sort(cmp);
  return xs;
}

/** Chains of a table in output order: kube-proxy's top-level chains first, then the rest by name. */
export function orderedChains(chains: readonly IptablesChainObject[], table: Table): IptablesChainObject[] {
  const top = TOP_LEVEL[table];
  // A stable sort by (rank, name): the top-level chains bucketed by rank (one name each), the rest by name.
  const ranked: IptablesChainObject[][] = top.map(() => []);
  const rest: IptablesChainObject[] = [];
  for (const c of chains) {
    if (c.table !== table) continue;
    const i = top.indexOf(c.chain);
    if (i < 0) rest.push(c);
    else ranked[i]?.push(c);
  }
  return [...ranked.flat(), ...sortIfUnsorted(rest, byChainName)];
}

/** Fragments of shared chains, grouped by `table/CHAIN`, each group in chain order (position, then key). */
function fragmentsByChain(objects: NodeRuleSet['objects']): Map<string, IptablesRulesObject[]> {
  const fragments = new Map<string, IptablesRulesObject[]>();
  for (const o of objects) {
    if (o.kind !== RuleKind.IptablesRules) continue;
    const k = `${o.table}/${o.chain}`;
    let l = fragments.get(k);
    if (!l) fragments.set(k, (l = []));
    l.push(o);
  }
  for (const l of fragments.values()) sortIfUnsorted(l, byPositionThenKey);
  return fragments;
}

/** The rules of one chain as the kernel gets them: its own rules, then its fragments. undefined if absent. */
export function chainRules(rs: NodeRuleSet, table: Table, chain: string): string[] | undefined {
  const own = rs.objects.find((o): o is IptablesChainObject => o.kind === RuleKind.IptablesChain && o.table === table && o.chain === chain);
  if (!own) return undefined;
  return [...own.rules, ...(fragmentsByChain(rs.objects).get(`${table}/${chain}`) ?? []).flatMap((f) => f.rules)];
}

/**
 * The rule set as iptables-restore input. The text is assembled from pieces joined once (a few hundred
 * thousand lines on a large cluster), each chain's `-A CHAIN ` prefix built once.
 */
export function renderRestore(rs: NodeRuleSet, format: RestoreFormat = RestoreFormat.Full): string {
  const chains: IptablesChainObject[] = [];
  const jumps: IptablesJumpObject[] = [];
  for (const o of rs.objects) {
    if (o.kind === RuleKind.IptablesChain) chains.push(o);
    else if (o.kind === RuleKind.IptablesJump) jumps.push(o);
  }
  const fragments = fragmentsByChain(rs.objects);
  const full = format === RestoreFormat.Full;
  const out: string[] = [];
  for (const table of [Table.Filter, Table.Nat]) {
    const ours = orderedChains(chains, table);
    out.push(`*${table}\n`);
    if (full) for (const b of BUILTIN[table]) out.push(`:${b} ACCEPT [0:0]\n`);
    for (const c of ours) out.push(`:${c.chain} - [0:0]\n`);
    if (full) {
      for (const b of BUILTIN[table]) {
        const js = jumps.filter((j) => j.table === table && j.chain === b).sort((x, y) => x.position - y.position);
        for (const j of js) out.push(`-A ${b} ${j.rule}\n`);
      }
    }
    for (const c of ours) {
      const head = `-A ${c.chain} `;
      // One join per rule list, with the chain's prefix in the separator: far fewer pieces than a push per rule.
      const sep = `\n${head}`;
      if (c.rules.length > 0) out.push(head, c.rules.join(sep), '\n');
      for (const f of fragments.get(`${table}/${c.chain}`) ?? []) if (f.rules.length > 0) out.push(head, f.rules.join(sep), '\n');
    }
    out.push('COMMIT\n');
  }
  return out.join('');
}
