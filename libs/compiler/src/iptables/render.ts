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

/** Chains of a table in output order: kube-proxy's top-level chains first, then the rest by name. */
export function orderedChains(chains: readonly IptablesChainObject[], table: Table): IptablesChainObject[] {
  const top = TOP_LEVEL[table];
  const rank = (c: IptablesChainObject): number => {
    const i = top.indexOf(c.chain);
    return i < 0 ? top.length : i;
  };
  return chains
    .filter((c) => c.table === table)
    .sort((a, b) => rank(a) - rank(b) || (a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0));
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
  for (const l of fragments.values()) l.sort((a, b) => a.position - b.position || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return fragments;
}

/** The rules of one chain as the kernel gets them: its own rules, then its fragments. undefined if absent. */
export function chainRules(rs: NodeRuleSet, table: Table, chain: string): string[] | undefined {
  const own = rs.objects.find((o): o is IptablesChainObject => o.kind === RuleKind.IptablesChain && o.table === table && o.chain === chain);
  if (!own) return undefined;
  return [...own.rules, ...(fragmentsByChain(rs.objects).get(`${table}/${chain}`) ?? []).flatMap((f) => f.rules)];
}

export function renderRestore(rs: NodeRuleSet, format: RestoreFormat = RestoreFormat.Full): string {
  const chains = rs.objects.filter((o): o is IptablesChainObject => o.kind === RuleKind.IptablesChain);
  const jumps = rs.objects.filter((o): o is IptablesJumpObject => o.kind === RuleKind.IptablesJump);
  const fragments = fragmentsByChain(rs.objects);
  const lines: string[] = [];
  for (const table of [Table.Filter, Table.Nat]) {
    const ours = orderedChains(chains, table);
    lines.push(`*${table}`);
    if (format === RestoreFormat.Full) for (const b of BUILTIN[table]) lines.push(`:${b} ACCEPT [0:0]`);
    for (const c of ours) lines.push(`:${c.chain} - [0:0]`);
    if (format === RestoreFormat.Full) {
      for (const b of BUILTIN[table]) {
        const js = jumps.filter((j) => j.table === table && j.chain === b).sort((x, y) => x.position - y.position);
        for (const j of js) lines.push(`-A ${b} ${j.rule}`);
      }
    }
    for (const c of ours) {
      for (const r of c.rules) lines.push(`-A ${c.chain} ${r}`);
      for (const f of fragments.get(`${table}/${c.chain}`) ?? []) for (const r of f.rules) lines.push(`-A ${c.chain} ${r}`);
    }
    lines.push('COMMIT');
  }
  return `${lines.join('\n')}\n`;
}
