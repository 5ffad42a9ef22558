// Rule set -> iptables-restore input.
import {
  RuleKind,
  Table,
  type IptablesChainObject,
  type IptablesJumpObject,
  type IptablesRulesObject,
  type NodeRuleSet,
  type RuleObject,
} from '../ruleset.js';
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
  [Table.Filter]: [
    Chain.Services,
    Chain.ExternalServices,
    Chain.Forward,
    Chain.NodePorts,
    Chain.ProxyFirewall,
    Chain.KubeletFirewall,
  ],
  [Table.Nat]: [Chain.Services, Chain.NodePorts, Chain.Postrouting, Chain.MarkMasq],
};

const byChainName = (a: IptablesChainObject, b: IptablesChainObject): number =>
  a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0;
const byPositionThenKey = (a: IptablesRulesObject, b: IptablesRulesObject): number =>
  a.position - b.position || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * Stable sort, skipped when the array is already in order: a rule set's objects come sorted by key, so the
 * chains and fragments usually are (and a stable sort of a sorted array changes nothing).
 */
function sortIfUnsorted<T>(xs: T[], cmp: (a: T, b: T) => number): T[] {
  for (let i = 1; i < xs.length; i++) if (cmp(xs[i - 1] as T, xs[i] as T) > 0) return xs.sort(cmp);
  return xs;
}

/** Rank of each top-level chain of a table (its place in kube-proxy's order). */
const TOP_RANK: Record<Table, ReadonlyMap<string, number>> = {
  [Table.Filter]: new Map(TOP_LEVEL[Table.Filter].map((c, i) => [c, i])),
  [Table.Nat]: new Map(TOP_LEVEL[Table.Nat].map((c, i) => [c, i])),
};

/**
 * A table's chains in output order: kube-proxy's top-level chains first, then the rest by name. The rest are
 * `list[from, to)` but for the indices in `skip` (the top-level chains' own places): a view of the rule set's
 * objects, which in its canonical order hold them so, rather than a copy (a large node has some 120,000 chains,
 * and arrays that size are fresh memory each time).
 */
interface ChainOrder {
  readonly top: readonly IptablesChainObject[];
  readonly list: readonly RuleObject[];
  readonly from: number;
  readonly to: number;
  /** Ascending. */
  readonly skip: readonly number[];
}

/**
 * Orders the chains in `list[from, to)`, every one of them a chain of `table`. One pass finds the top-level
 * chains and whether the rest are in order already: each chain's name is read once, and a large node's are
 * scattered over its heap.
 */
function orderChains(list: readonly RuleObject[], from: number, to: number, table: Table): ChainOrder {
  const rank = TOP_RANK[table];
  const ranked: (IptablesChainObject[] | undefined)[] = [];
  const skip: number[] = [];
  let sorted = true;
  let last: string | undefined;
  for (let i = from; i < to; i++) {
    const c = list[i] as IptablesChainObject;
    const r = rank.get(c.chain);
    if (r !== undefined) {
      (ranked[r] ??= []).push(c);
      skip.push(i);
      continue;
    }
    if (last !== undefined && c.chain < last) sorted = false;
    last = c.chain;
  }
  const top: IptablesChainObject[] = [];
  for (const r of ranked) if (r) for (const c of r) top.push(c);
  if (sorted) return { top, list, from, to, skip };
  const rest: IptablesChainObject[] = [];
  forEachChain({ top: [], list, from, to, skip }, (c) => rest.push(c));
  rest.sort(byChainName);
  return { top, list: rest, from: 0, to: rest.length, skip: [] };
}

function forEachChain(order: ChainOrder, fn: (c: IptablesChainObject) => void): void {
  for (const c of order.top) fn(c);
  const { list, skip } = order;
  let s = 0;
  for (let i = order.from; i < order.to; i++) {
    if (s < skip.length && skip[s] === i) {
      s++;
      continue;
    }
    fn(list[i] as IptablesChainObject);
  }
}

/** A rule set's iptables objects by kind and table, in one pass. */
interface SplitObjects {
  /** Per table, its chains in output order. */
  readonly chains: Record<Table, ChainOrder>;
  readonly jumps: IptablesJumpObject[];
  /** Fragments of shared chains, by table and chain, each chain's in chain order (position, then key). */
  readonly fragments: Record<Table, Map<string, IptablesRulesObject[]>>;
}

function splitObjects(objects: NodeRuleSet['objects']): SplitObjects {
  const jumps: IptablesJumpObject[] = [];
  const fragments: SplitObjects['fragments'] = { [Table.Filter]: new Map(), [Table.Nat]: new Map() };
  // Where each table's chains are: in the canonical order, one run of objects per table.
  const first = { [Table.Filter]: -1, [Table.Nat]: -1 };
  const last = { [Table.Filter]: -1, [Table.Nat]: -1 };
  const count = { [Table.Filter]: 0, [Table.Nat]: 0 };
  objects.forEach((o, i) => {
    if (o.kind === RuleKind.IptablesChain) {
      if (first[o.table] < 0) first[o.table] = i;
      last[o.table] = i;
      count[o.table]++;
    } else if (o.kind === RuleKind.IptablesJump) jumps.push(o);
    else if (o.kind === RuleKind.IptablesRules) {
      const byChain = fragments[o.table];
      let l = byChain.get(o.chain);
      if (!l) byChain.set(o.chain, (l = []));
      l.push(o);
    }
  });
  for (const table of [Table.Filter, Table.Nat])
    for (const l of fragments[table].values()) sortIfUnsorted(l, byPositionThenKey);
  const chainsOf = (table: Table): ChainOrder => {
    if (count[table] === 0) return orderChains([], 0, 0, table);
    if (last[table] - first[table] + 1 === count[table])
      return orderChains(objects, first[table], last[table] + 1, table);
    // Not one run (objects not in canonical order): the table's chains gathered first.
    const own = objects.filter((o): o is IptablesChainObject => o.kind === RuleKind.IptablesChain && o.table === table);
    return orderChains(own, 0, own.length, table);
  };
  return { chains: { [Table.Filter]: chainsOf(Table.Filter), [Table.Nat]: chainsOf(Table.Nat) }, jumps, fragments };
}

/** The rules of one chain as the kernel gets them: its own rules, then its fragments. undefined if absent. */
export function chainRules(rs: NodeRuleSet, table: Table, chain: string): string[] | undefined {
  const own = rs.objects.find(
    (o): o is IptablesChainObject => o.kind === RuleKind.IptablesChain && o.table === table && o.chain === chain,
  );
  if (!own) return undefined;
  const fragments = rs.objects.filter(
    (o): o is IptablesRulesObject => o.kind === RuleKind.IptablesRules && o.table === table && o.chain === chain,
  );
  return [...own.rules, ...sortIfUnsorted(fragments, byPositionThenKey).flatMap((f) => f.rules)];
}

/** One table of the restore input: `*table`, its chain declarations, the jumps, the rules, `COMMIT`. */
interface TableImage {
  readonly table: Table;
  /** `:CHAIN ACCEPT [0:0]` of builtin chains and `-A BUILTIN ...` jump lines (full format only), with newlines. */
  readonly builtinDeclarations: readonly string[];
  readonly jumpLines: readonly string[];
  /** kpx's chains in output order. */
  readonly chains: ChainOrder;
  /** The fragments of its shared chains (their rules follow the chain's own), by chain. */
  readonly fragments: ReadonlyMap<string, readonly IptablesRulesObject[]>;
}

function tableImages(rs: NodeRuleSet, format: RestoreFormat): TableImage[] {
  const { chains, jumps, fragments } = splitObjects(rs.objects);
  const full = format === RestoreFormat.Full;
  return [Table.Filter, Table.Nat].map((table): TableImage => {
    const jumpLines: string[] = [];
    if (full) {
      for (const b of BUILTIN[table]) {
        const js = jumps.filter((j) => j.table === table && j.chain === b).sort((x, y) => x.position - y.position);
        for (const j of js) jumpLines.push(`-A ${b} ${j.rule}\n`);
      }
    }
    return {
      table,
      builtinDeclarations: full ? BUILTIN[table].map((b) => `:${b} ACCEPT [0:0]\n`) : [],
      jumpLines,
      chains: chains[table],
      fragments: fragments[table],
    };
  });
}

/** The rule set as iptables-restore input (see {@link writeRestore}, the same text as bytes). */
export function renderRestore(rs: NodeRuleSet, format: RestoreFormat = RestoreFormat.Full): string {
  const out: string[] = [];
  for (const t of tableImages(rs, format)) {
    out.push(`*${t.table}\n`, ...t.builtinDeclarations);
    forEachChain(t.chains, (c) => out.push(`:${c.chain} - [0:0]\n`));
    out.push(...t.jumpLines);
    forEachChain(t.chains, (c) => {
      const head = `-A ${c.chain} `;
      // One join per rule list, with the chain's prefix in the separator: far fewer pieces than a push per rule.
      const sep = `\n${head}`;
      if (c.rules.length > 0) out.push(head, c.rules.join(sep), '\n');
      for (const f of t.fragments.get(c.chain) ?? []) if (f.rules.length > 0) out.push(head, f.rules.join(sep), '\n');
    });
    out.push('COMMIT\n');
  }
  return out.join('');
}

/** Thrown inside {@link writeRestore} for text it leaves to renderRestore. */
const slowPath = new Error('not ASCII, or a line longer than a chunk');

/** What follows `:CHAIN` in a chain's declaration. */
const DECLARATION_TAIL = Buffer.from(' - [0:0]\n');

/** Size of the chunks {@link writeRestore} hands out. */
const CHUNK_BYTES = 1 << 20;

/** The buffer {@link writeRestore} fills, reused by every render (it hands out one chunk at a time). */
let chunkBuffer: Buffer | undefined;

/**
 * The rule set as iptables-restore input, encoded as UTF-8, handed to `write` in chunks of up to `chunkBytes`
 * (default 1 MiB): what
 * `kpx render` prints and iptables-restore reads. A chunk is valid only during its call (`write` copies it or
 * writes it out synchronously): the next chunk is written into the same memory.
 *
 * A large node's text is some 30 MiB in a few hundred thousand lines. Written piece by piece into one reused
 * buffer, without a string for each chain's lines, it takes about half the time of building the string: no
 * collector copying young strings around (a third of a string render), and no fresh 30 MiB of memory for each
 * render (whose page faults cost as much again on a virtual machine).
 */
export function writeRestore(
  rs: NodeRuleSet,
  format: RestoreFormat,
  write: (chunk: Uint8Array) => void,
  chunkBytes = CHUNK_BYTES,
): void {
  const images = tableImages(rs, format);
  const buf =
    chunkBytes === CHUNK_BYTES ? (chunkBuffer ??= Buffer.allocUnsafe(CHUNK_BYTES)) : Buffer.allocUnsafe(chunkBytes);
  let at = 0;
  let handed = 0;
  const flush = (): void => {
    if (at === 0) return;
    write(buf.subarray(0, at));
    handed += at;
    at = 0;
  };
  // Before each string, room for it and 4 bytes more. Then a string that is not ASCII (no kube-proxy rule text
  // is) always writes a byte count other than its length: more when it fits, and at least one more when it is cut
  // at the end of the room (a character is at most 4 bytes). The text is then finished from renderRestore.
  const room = (n: number): void => {
    if (at + n + 4 <= buf.length) return;
    flush();
    if (n + 4 > buf.length) throw slowPath; // a line longer than a chunk: the slow path, not one of its own
  };
  const put = (text: string): void => {
    room(text.length);
    const n = buf.write(text, at);
    if (n !== text.length) throw slowPath;
    at += n;
  };
  // Chain names, and the short pieces around them, are copied a character at a time: a few hundred thousand
  // native calls of buf.write for some 25 bytes each took longer than the copying.
  const putName = (name: string): void => {
    const b = buf;
    let n = at;
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      if (c > 0x7f) throw slowPath;
      b[n++] = c;
    }
    at = n;
  };
  const putDeclaration = (chain: string): void => {
    room(chain.length + DECLARATION_TAIL.length + 1);
    buf[at++] = 0x3a; // ':'
    putName(chain);
    buf.set(DECLARATION_TAIL, at);
    at += DECLARATION_TAIL.length;
  };
  const putRules = (chain: string, rules: readonly string[]): void => {
    for (const r of rules) {
      room(chain.length + r.length + 5);
      buf[at++] = 0x2d; // '-'
      buf[at++] = 0x41; // 'A'
      buf[at++] = 0x20;
      putName(chain);
      buf[at++] = 0x20;
      const n = buf.write(r, at);
      if (n !== r.length) throw slowPath;
      at += n;
      buf[at++] = 0x0a;
    }
  };
  try {
    for (const t of images) {
      put(`*${t.table}\n`);
      for (const line of t.builtinDeclarations) put(line);
      forEachChain(t.chains, (c) => putDeclaration(c.chain));
      for (const line of t.jumpLines) put(line);
      forEachChain(t.chains, ({ chain, rules }) => {
        putRules(chain, rules);
        for (const f of t.fragments.get(chain) ?? []) putRules(chain, f.rules);
      });
      put('COMMIT\n');
    }
    flush();
  } catch (err) {
    if (err !== slowPath) throw err;
    // What was handed out is ASCII, so as many characters as bytes: the start of the text.
    const rest = Buffer.from(renderRestore(rs, format).slice(handed));
    for (let i = 0; i < rest.length; i += chunkBytes) write(rest.subarray(i, i + chunkBytes));
  }
}

/** {@link writeRestore}'s bytes in one buffer (for tests and small rule sets: a large node's is 30 MiB). */
export function renderRestoreBytes(rs: NodeRuleSet, format: RestoreFormat = RestoreFormat.Full): Buffer {
  const chunks: Buffer[] = [];
  writeRestore(rs, format, (c) => chunks.push(Buffer.from(c)));
  return Buffer.concat(chunks);
}
