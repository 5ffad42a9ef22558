// The iptables applier of one IP family: keeps the state it last applied, turns each change into one
// iptables-restore --noflush transaction, converges the kernel with a full restore, and reads the kernel back.
import { SerialQueue } from '@kpx/common';
import type { IpFamily, RuleObject } from '@kpx/proto';
import { RuleKind } from '@kpx/proto';
import { digestOf } from '@kpx/ruleset';
import { CommandError, IptablesReadError, IptablesRestoreError } from '../errors.js';
import { createCommandRunner, type CommandRunner } from '../runner.js';
import {
  createScratchCanonicalizer,
  RuleSpellings,
  type CanonicalRequest,
  type RuleCanonicalizer,
} from './canonical.js';
import {
  IptablesVariant,
  ReadTimeoutMs,
  compareTables,
  iptablesCommands,
  isKubeProxyChain,
  restoreTimeoutMs,
  waitArgs,
  type IptablesCommands,
} from './commands.js';
import { wireJumpOrder, type JumpOrder } from './jump-order.js';
import { planFullRestore, planTransition, type RestorePlan } from './plan.js';
import { readBackObjects } from './read-back.js';
import { chainRef, parseChainRef, ruleTarget, type ChainRef } from './rule-text.js';
import { parseListRules, parseSave, type SavedTables } from './save-format.js';
import { IptablesState, type IptablesChange } from './state.js';

export interface IptablesApplierOptions {
  readonly family: IpFamily;
  /** Runs the commands. Default: createCommandRunner({ netns }). */
  readonly runner?: CommandRunner;
  /** With the default runner: the network namespace to work in (`ip netns exec`). */
  readonly netns?: string;
  /** Which iptables build to run. Default: the system's `iptables`. */
  readonly variant?: IptablesVariant;
  /** `-w` seconds for the xtables lock (kube-proxy: 5). 0 leaves the flag out. */
  readonly waitSeconds?: number;
  /** Tables kpx manages even when its state has nothing there. Default: filter and nat. */
  readonly tables?: readonly string[];
  /** Which chains kpx owns beyond those of its state. Default: isKubeProxyChain. */
  readonly isOwnedChain?: (name: string) => boolean;
  /** Order of prepended jumps within a builtin chain. Default: the compiler's (IptablesJump.position). */
  readonly jumpOrder?: JumpOrder;
  /** How desired rules are brought into the kernel's spelling. Default: a scratch network namespace. */
  readonly canonicalizer?: RuleCanonicalizer;
}

/** A transaction that was applied (or found unnecessary: `text` is ""). */
export interface ApplyResult extends RestorePlan {
  readonly durationMs: number;
}

export interface ReadBack {
  /** kpx's objects as the kernel holds them (see readBackObjects for the conventions). */
  readonly objects: RuleObject[];
  /** digestOf(objects): equal to the desired state's digest exactly when the kernel holds the desired rules. */
  readonly digest: string;
}

const DEFAULT_TABLES = ['filter', 'nat'];

export class IptablesApplier {
  readonly family: IpFamily;
  readonly commands: IptablesCommands;
  private readonly runner: CommandRunner;
  private readonly wait: string[];
  private readonly managedTables: readonly string[];
  private readonly isOwned: (name: string) => boolean;
  private readonly jumpOrder: JumpOrder;
  private readonly spellings: RuleSpellings;
  private current = new IptablesState();
  /** Chains the last full restore kept, flushed, because a chain of someone else jumps to them. */
  private pinned = new Set<ChainRef>();
  /** Serializes the operations: each one reads the kernel and the state, then changes both. */
  private readonly queue = new SerialQueue();

  constructor(options: IptablesApplierOptions) {
    this.family = options.family;
    this.commands = iptablesCommands(options.family, options.variant ?? IptablesVariant.System);
    this.runner = options.runner ?? createCommandRunner(options.netns === undefined ? {} : { netns: options.netns });
    this.wait = waitArgs(options.waitSeconds ?? 5);
    this.managedTables = options.tables ?? DEFAULT_TABLES;
    this.isOwned = options.isOwnedChain ?? isKubeProxyChain;
    this.jumpOrder = options.jumpOrder ?? wireJumpOrder;
    this.spellings = new RuleSpellings(
      options.canonicalizer ??
        createScratchCanonicalizer({
          runner: this.runner,
          commands: this.commands,
          waitSeconds: options.waitSeconds ?? 5,
        }),
    );
  }

  /** The state kpx last applied (what it believes the kernel holds). Do not change it: use applyDelta. */
  get state(): IptablesState {
    return this.current;
  }

  /**
   * Applies a change of the applied state in one transaction that touches only the chains it changes (and the
   * builtin chains whose jumps it changes, read first with `iptables -S`). On failure (IptablesRestoreError) the
   * kernel and the state are as they were; the caller should then converge with fullRestore.
   */
  applyDelta(change: IptablesChange): Promise<ApplyResult> {
    return this.queue.run(async () => {
      const started = performance.now();
      const state = this.current;
      const tr = state.apply(change);
      try {
        const builtinRules = new Map<ChainRef, string[]>();
        for (const ref of tr.builtins) builtinRules.set(ref, await this.listBuiltin(ref));
        await this.spellJumps([...tr.builtins].flatMap((ref) => state.jumpsFrom(ref)));
        const plan = planTransition(state, tr, {
          builtinRules,
          spell: this.spell,
          jumpOrder: this.jumpOrder,
          isOwnedChain: this.isOwned,
        });
        if (plan.text !== '') await this.restore(plan.text);
        state.keptChains.clear();
        for (const ref of plan.keptAfter) state.keptChains.add(ref);
        const { keptAfter: _, ...result } = plan;
        return { ...result, durationMs: performance.now() - started };
      } catch (err) {
        tr.undo();
        throw err;
      }
    });
  }

  /**
   * Converges the kernel to exactly `objects` in one transaction (see planFullRestore) and makes them the
   * applied state. On failure the kernel and the applied state are as they were.
   */
  fullRestore(objects: Iterable<RuleObject>): Promise<ApplyResult> {
    return this.queue.run(async () => {
      const started = performance.now();
      const desired = IptablesState.from(objects);
      const saved = await this.save([...new Set([...this.managedTables, ...desired.tables()])]);
      await this.spellJumps(desired.jumps());
      const plan = planFullRestore(desired, saved, {
        spell: this.spell,
        jumpOrder: this.jumpOrder,
        isOwnedChain: this.isOwned,
        tables: this.managedTables,
      });
      if (plan.text !== '') await this.restore(plan.text);
      const pinned = new Set<ChainRef>();
      for (const ref of plan.chainsKept) (desired.isReferenced(ref) ? desired.keptChains : pinned).add(ref);
      this.current = desired;
      this.pinned = pinned;
      return { ...plan, durationMs: performance.now() - started };
    });
  }

  /**
   * Reads kpx's objects back from the kernel (iptables-save of the managed tables), against the applied state.
   * Compare `digest` with the applied digest; diffActual(applier.state.objects(), objects) names the drift.
   */
  readBack(): Promise<ReadBack> {
    return this.queue.run(async () => {
      const state = this.current;
      const saved = await this.save([...new Set([...this.managedTables, ...state.tables()])]);
      const used = new Set<string>();
      const requests: CanonicalRequest[] = [];
      const ask = (table: string, chain: string, rule: string): void => {
        used.add(RuleSpellings.key(table, rule));
        const target = ruleTarget(rule);
        requests.push({
          table,
          chain,
          rule,
          ...(target !== undefined && this.isChain(state, table, target) ? { target } : {}),
        });
      };
      for (const [table, t] of saved) {
        for (const c of t.chains.values()) {
          const ref = chainRef(table, c.name);
          const own = state.chain(ref);
          if (!own) continue;
          for (const r of own.rules) ask(table, c.name, r);
          for (const f of state.fragments(ref)) for (const r of f.rules) ask(table, c.name, r);
        }
      }
      for (const j of state.jumps()) ask(j.table, j.chain, j.rule);
      await this.spellings.ensure(requests);
      this.spellings.retain(used);
      const kept = new Set([...state.keptChains, ...this.pinned]);
      const objects = readBackObjects(saved, state, { spell: this.spell, isOwnedChain: this.isOwned, kept });
      return { objects, digest: digestOf(objects) };
    });
  }

  /**
   * iptables-save of the given tables (default: the managed ones). A table the kernel does not have is absent.
   * Several tables are read with one iptables-save of every table: iptables-nft reads the whole ruleset for any
   * one table anyway.
   */
  async save(tables: readonly string[] = this.managedTables): Promise<SavedTables> {
    const one = tables.length === 1 ? ['-t', tables[0] as string] : [];
    const { stdout } = await this.read(this.commands.save, one, [this.commands.save, ...one].join(' '));
    const wanted = new Set(tables);
    return new Map([...parseSave(stdout)].filter(([name]) => wanted.has(name)).sort(([a], [b]) => compareTables(a, b)));
  }

  private readonly spell = (table: string, rule: string): string | undefined => this.spellings.get(table, rule);

  private isChain(state: IptablesState, table: string, name: string): boolean {
    return this.isOwned(name) || state.chain(chainRef(table, name)) !== undefined;
  }

  private async spellJumps(
    jumps: Iterable<{ table: string; chain: string; target: string; rule: string }>,
  ): Promise<void> {
    await this.spellings.ensure(
      [...jumps].map((j) => ({ table: j.table, chain: j.chain, rule: j.rule, target: j.target })),
    );
  }

  private async listBuiltin(ref: ChainRef): Promise<string[]> {
    const { table, chain } = parseChainRef(ref);
    const { stdout } = await this.read(
      this.commands.iptables,
      [...this.wait, '-t', table, '-S', chain],
      `${this.commands.iptables} -t ${table} -S ${chain}`,
    );
    return parseListRules(stdout, chain);
  }

  private async read(file: string, args: string[], what: string): Promise<{ stdout: string }> {
    try {
      // iptables-save of a 10,000-service node (iptables-nft) can take minutes on a busy machine.
      return await this.runner.run({ file, args, timeoutMs: ReadTimeoutMs });
    } catch (err) {
      if (err instanceof CommandError)
        throw new IptablesReadError(`${what} failed`, { stderr: err.stderr, cause: err });
      throw err;
    }
  }

  private async restore(text: string): Promise<void> {
    const args = [...this.wait, '--noflush', '--counters'];
    try {
      // A node with 10,000 services is a restore of tens of megabytes, which iptables-nft needs minutes for: the
      // time allowed grows with the input (a restore killed half-way would leave the node unable to converge).
      await this.runner.run({
        file: this.commands.restore,
        args,
        input: text,
        timeoutMs: restoreTimeoutMs(text.length),
      });
    } catch (err) {
      if (err instanceof CommandError)
        throw new IptablesRestoreError({ command: err.command, input: text, stderr: err.stderr, cause: err });
      throw err;
    }
  }
}

export function createIptablesApplier(options: IptablesApplierOptions): IptablesApplier {
  return new IptablesApplier(options);
}

/** Whether an object is one of the iptables kinds this applier handles. */
export function isIptablesObject(o: { kind: string }): boolean {
  return o.kind === RuleKind.IptablesChain || o.kind === RuleKind.IptablesRules || o.kind === RuleKind.IptablesJump;
}
