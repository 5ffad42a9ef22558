// Planning iptables-restore --noflush transactions: one for a change (planDelta), one to converge the kernel to
// a whole state (planFullRestore). Pure: the kernel's rules come in as arguments.
//
// Layout of a transaction, per table (kube-proxy writes the same shape: chain lines, then rules, then -X):
//   :CHAIN - [0:0]        every chain rewritten, and every chain to delete (under --noflush this flushes it,
//                         which also drops every reference it held)
//   -D BUILTIN <spec>     kpx jumps that are stale or doubled
//   -A CHAIN <rule>       the whole content of each rewritten chain: own rules, then fragments by (position, key)
//   -I BUILTIN <n> <rule> missing jumps (targets exist by now: they were declared above)
//   -X CHAIN              chains to delete; last, when every rule that jumped to them is gone
// A chain to delete that something kpx keeps still jumps to (a jump object, or a rule of a chain that stays) is
// only flushed, and deleted by a later transaction once nothing does.
import type { IptablesJump, RuleObject } from '@kpx/proto';
import { BUILTIN_CHAINS, compareTables, isKubeProxyChain } from './commands.js';
import { wireJumpOrder, type JumpOrder } from './jump-order.js';
import { planBuiltinJumps } from './jumps.js';
import { chainRef, parseChainRef, ruleTarget, type ChainRef } from './rule-text.js';
import type { SavedChain, SavedTables } from './save-format.js';
import { IptablesState, sameObject, type IptablesChange, type Transition } from './state.js';

export interface PlanOptions {
  /**
   * The rules of builtin chains as the kernel holds them (`iptables -S`), by `table/BUILTIN`. planDelta needs
   * them for each builtin chain whose jumps change; without them it trusts `before` (the jumps it says are in
   * the kernel are, and nothing else of kpx's is).
   */
  readonly builtinRules?: ReadonlyMap<ChainRef, readonly string[]>;
  /** The kernel's spelling of a jump rule (see RuleCanonicalizer), to compare with builtinRules. */
  readonly spell?: (table: string, rule: string) => string | undefined;
  /** Order of prepended jumps within a builtin chain. Default: the compiler's (IptablesJump.position). */
  readonly jumpOrder?: JumpOrder;
  /** Which chain names kpx owns beyond those of its state. Default: isKubeProxyChain (KUBE-* but foreign ones). */
  readonly isOwnedChain?: (name: string) => boolean;
}

export interface RestorePlan {
  /** The iptables-restore --noflush input: one transaction. "" when the kernel needs no change. */
  readonly text: string;
  /** Chains declared and rewritten (`table/NAME`). */
  readonly chainsWritten: readonly ChainRef[];
  /** Chains deleted. */
  readonly chainsDeleted: readonly ChainRef[];
  /** Chains kpx no longer wants that stay, flushed, because something still jumps to them. */
  readonly chainsKept: readonly ChainRef[];
  /** Keys of the jumps added (`table/BUILTIN/TARGET`). */
  readonly jumpsAdded: readonly string[];
  /** Builtin rules deleted, as `table/BUILTIN <spec>`. */
  readonly jumpsDeleted: readonly string[];
}

/** A delta plan also says which chains the state keeps for later deletion (see IptablesState.keptChains). */
export interface DeltaPlan extends RestorePlan {
  readonly keptAfter: ReadonlySet<ChainRef>;
}

interface TableBlock {
  readonly declare: string[];
  readonly deleteRules: string[];
  readonly rules: string[];
  readonly adds: string[];
  readonly deleteChains: string[];
}

class Transaction {
  private readonly tables = new Map<string, TableBlock>();
  readonly chainsWritten: ChainRef[] = [];
  readonly chainsDeleted: ChainRef[] = [];
  readonly chainsKept: ChainRef[] = [];
  readonly jumpsAdded: string[] = [];
  readonly jumpsDeleted: string[] = [];

  private block(table: string): TableBlock {
    let b = this.tables.get(table);
    if (!b) this.tables.set(table, (b = { declare: [], deleteRules: [], rules: [], adds: [], deleteChains: [] }));
    return b;
  }

  write(ref: ChainRef, rules: readonly string[]): void {
    const { table, chain } = parseChainRef(ref);
    const b = this.block(table);
    b.declare.push(`:${chain} - [0:0]`);
    for (const r of rules) b.rules.push(`-A ${chain} ${r}`);
    this.chainsWritten.push(ref);
  }

  /** Flushes a chain; deletes it too unless `keep`. */
  remove(ref: ChainRef, keep: boolean): void {
    const { table, chain } = parseChainRef(ref);
    const b = this.block(table);
    b.declare.push(`:${chain} - [0:0]`);
    if (keep) {
      this.chainsKept.push(ref);
    } else {
      b.deleteChains.push(`-X ${chain}`);
      this.chainsDeleted.push(ref);
    }
  }

  jumps(table: string, builtin: string, plan: ReturnType<typeof planBuiltinJumps>): void {
    const b = this.block(table);
    for (const spec of plan.deletes) {
      b.deleteRules.push(`-D ${builtin} ${spec}`);
      this.jumpsDeleted.push(`${table}/${builtin} ${spec}`);
    }
    b.adds.push(...plan.adds);
    for (const j of plan.added) this.jumpsAdded.push(`${table}/${builtin}/${j.target}`);
  }

  render(): string {
    const lines: string[] = [];
    for (const table of [...this.tables.keys()].sort(compareTables)) {
      const b = this.tables.get(table) as TableBlock;
      const parts = [b.declare, b.deleteRules, b.rules, b.adds, b.deleteChains];
      if (parts.every((p) => p.length === 0)) continue;
      // No spread: a table of a 10,000-service node has hundreds of thousands of lines (call stack limit).
      lines.push(`*${table}`);
      for (const part of parts) for (const line of part) lines.push(line);
      lines.push('COMMIT');
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  plan(): RestorePlan {
    return {
      text: this.render(),
      chainsWritten: this.chainsWritten,
      chainsDeleted: this.chainsDeleted,
      chainsKept: this.chainsKept,
      jumpsAdded: this.jumpsAdded,
      jumpsDeleted: this.jumpsDeleted,
    };
  }
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

interface JumpContext {
  readonly state: IptablesState;
  readonly order: JumpOrder;
  readonly isOwned: (name: string) => boolean;
}

interface EnsureJumps {
  /** The builtin chain, `table/BUILTIN`. */
  readonly builtin: ChainRef;
  /** Its rules as the kernel holds them (or as `before` says). */
  readonly current: readonly string[];
  /** A desired jump's rule spelled as `current` spells rules. */
  readonly spell: (j: IptablesJump) => string;
  /** Chains that are kpx's although neither owned by name nor in the state (chains being deleted). */
  readonly alsoKpx: (ref: ChainRef) => boolean;
}

/** Plans one builtin chain's jumps into the transaction. */
function ensureJumps(tx: Transaction, ctx: JumpContext, e: EnsureJumps): void {
  const { table, chain } = parseChainRef(e.builtin);
  const desired = ctx.state.jumpsFrom(e.builtin).sort(ctx.order);
  const isKpxTarget = (t: string): boolean =>
    ctx.isOwned(t) || ctx.state.chain(chainRef(table, t)) !== undefined || e.alsoKpx(chainRef(table, t));
  tx.jumps(table, chain, planBuiltinJumps({ chain, current: e.current, desired, isKpxTarget, spell: e.spell }));
}

/** The plan of a transition the state has just gone through (the state is the "after"). */
export function planTransition(state: IptablesState, tr: Transition, options: PlanOptions = {}): DeltaPlan {
  const tx = new Transaction();
  const isOwned = options.isOwnedChain ?? isKubeProxyChain;
  for (const ref of [...tr.rewritten].sort(byName)) tx.write(ref, state.chainRules(ref) ?? []);

  // Deletions: chains this change deletes, and chains kept by an earlier one that may now go.
  const keptAfter = new Set<ChainRef>();
  const candidates = new Set([...tr.deleted, ...state.keptChains]);
  for (const ref of [...candidates].sort(byName)) {
    if (state.chain(ref)) continue; // wanted again: rewritten above
    const referenced = state.isReferenced(ref);
    if (referenced) keptAfter.add(ref);
    if (tr.deleted.has(ref) || !referenced) tx.remove(ref, referenced);
  }

  if (tr.builtins.size > 0) {
    const ctx: JumpContext = { state, order: options.jumpOrder ?? wireJumpOrder, isOwned };
    for (const builtin of [...tr.builtins].sort(byName)) {
      const observed = options.builtinRules?.get(builtin);
      const { table } = parseChainRef(builtin);
      if (observed) {
        ensureJumps(tx, ctx, {
          builtin,
          current: observed,
          spell: (j) => options.spell?.(table, j.rule) ?? j.rule,
          alsoKpx: (r) => candidates.has(r),
        });
      } else {
        // Trust `before`: its jumps, in order, are what the chain holds of kpx's.
        const before = [...(tr.jumpsBefore.get(builtin) ?? [])].sort(ctx.order).map((j) => j.rule);
        ensureJumps(tx, ctx, { builtin, current: before, spell: (j) => j.rule, alsoKpx: (r) => candidates.has(r) });
      }
    }
  }
  return { ...tx.plan(), keptAfter };
}

/** What turns `before` into `after`, by comparing every object: O(state). */
export function changeBetween(before: IptablesState, after: IptablesState): IptablesChange {
  const upserts: RuleObject[] = [];
  const deletes: Array<{ kind: string; key: string }> = [];
  for (const o of after.objects()) {
    const old = before.get(o.kind, o.key);
    if (!old || !sameObject(old, o)) upserts.push(o);
  }
  for (const o of before.objects()) if (!after.get(o.kind, o.key)) deletes.push({ kind: o.kind, key: o.key });
  return { upserts, deletes };
}

/**
 * The transaction that takes the kernel from `before` to `after` (a state, or a change of `before`), touching only
 * the chains that change. O(size of the change plus the size of the chains it rewrites) for a change; O(state)
 * when `after` is a whole state (it is diffed first). `before` is left as it was.
 */
export function planDelta(
  before: IptablesState,
  after: IptablesState | IptablesChange,
  options: PlanOptions = {},
): DeltaPlan {
  const change = after instanceof IptablesState ? changeBetween(before, after) : after;
  const tr = before.apply(change);
  try {
    return planTransition(before, tr, options);
  } finally {
    tr.undo();
  }
}

export interface FullRestoreOptions extends PlanOptions {
  /** Tables kpx manages even when the state has nothing in them (its chains there are removed). */
  readonly tables?: Iterable<string>;
}

/** Refs of a list grouped by their table. */
function byTable(refs: Iterable<ChainRef>): Map<string, ChainRef[]> {
  const out = new Map<string, ChainRef[]>();
  for (const ref of refs) {
    const { table } = parseChainRef(ref);
    let l = out.get(table);
    if (!l) out.set(table, (l = []));
    l.push(ref);
  }
  return out;
}

/**
 * kpx's chains in one saved table that the state does not want, and those of them a chain of someone else
 * (neither kpx's nor builtin) still jumps to.
 */
function staleChains(
  table: string,
  chains: ReadonlyMap<string, SavedChain>,
  desired: IptablesState,
  isOwned: (name: string) => boolean,
): { stale: string[]; pinned: Set<string> } {
  const stale = [...chains.values()]
    .filter((c) => c.policy === undefined && isOwned(c.name) && !desired.chain(chainRef(table, c.name)))
    .map((c) => c.name);
  const staleSet = new Set(stale);
  const pinned = new Set<string>();
  for (const c of chains.values()) {
    if (c.policy !== undefined || isOwned(c.name) || desired.chain(chainRef(table, c.name))) continue;
    for (const r of c.rules) {
      const t = ruleTarget(r);
      if (t !== undefined && staleSet.has(t)) pinned.add(t);
    }
  }
  return { stale: stale.sort(byName), pinned };
}

/**
 * The transaction that converges the kernel (as `saved` shows it) to exactly `desired`: every chain of the state
 * declared and rewritten; every other chain kpx owns flushed and deleted (kept, flushed, while a chain of
 * someone else still jumps to it); kpx's jumps ensured in every builtin chain. Chains of others, and rules of
 * builtin chains that do not jump to kpx's chains, are left alone.
 */
export function planFullRestore(
  desired: IptablesState,
  saved: SavedTables,
  options: FullRestoreOptions = {},
): RestorePlan {
  const tx = new Transaction();
  const isOwned = options.isOwnedChain ?? isKubeProxyChain;
  const ctx: JumpContext = { state: desired, order: options.jumpOrder ?? wireJumpOrder, isOwned };
  const chainsOf = byTable(desired.chainRefs());
  const builtinsOf = byTable(desired.builtinRefs());
  const tables = new Set([...desired.tables(), ...(options.tables ?? [])]);
  for (const table of [...tables].sort(compareTables)) {
    const chains = saved.get(table)?.chains ?? new Map<string, SavedChain>();
    for (const ref of (chainsOf.get(table) ?? []).sort(byName)) tx.write(ref, desired.chainRules(ref) ?? []);

    const { stale, pinned } = staleChains(table, chains, desired, isOwned);
    for (const name of stale) {
      const ref = chainRef(table, name);
      tx.remove(ref, pinned.has(name) || desired.isReferenced(ref));
    }

    // Jumps: every builtin chain that holds one of kpx's jumps, or should.
    const staleSet = new Set(stale);
    const isKpx = (t: string): boolean => isOwned(t) || desired.chain(chainRef(table, t)) !== undefined;
    const builtins = new Set(builtinsOf.get(table) ?? []);
    for (const c of chains.values()) {
      if (c.policy !== undefined && BUILTIN_CHAINS.has(c.name) && c.rules.some((r) => isKpx(ruleTarget(r) ?? '')))
        builtins.add(chainRef(table, c.name));
    }
    for (const builtin of [...builtins].sort(byName)) {
      const current = chains.get(parseChainRef(builtin).chain)?.rules ?? [];
      ensureJumps(tx, ctx, {
        builtin,
        current,
        spell: (j) => options.spell?.(table, j.rule) ?? j.rule,
        alsoKpx: (r) => staleSet.has(parseChainRef(r).chain),
      });
    }
  }
  return tx.plan();
}
