// The kernel's spelling of rules. iptables-save does not print a rule as it was written: it reorders options
// (`-m tcp -p tcp -d 10.96.0.10` → `-d 10.96.0.10/32 -p tcp -m tcp`), fills in defaults (`-m recent … --mask
// 255.255.255.255 --rsource`) and rewrites targets (`--xor-mark 0x4000` → `--set-xmark 0x4000/0x0`). No table of
// such rules is complete, so kpx asks iptables itself: it loads the rules into a throwaway network namespace
// (`unshare --net`, gone when the command exits; the node's own rules are never touched) and reads them back
// with iptables-save. The answers are cached, so the spelling of a rule is looked up once.
import { CommandError, RuleCanonicalizeError } from '../errors.js';
import type { CommandRunner } from '../runner.js';
import {
  BUILTIN_CHAINS,
  ReadTimeoutMs,
  compareTables,
  restoreTimeoutMs,
  waitArgs,
  type IptablesCommands,
} from './commands.js';
import { parseSave } from './save-format.js';

export interface CanonicalRequest {
  readonly table: string;
  /** The chain the rule belongs in (a builtin chain for a jump). */
  readonly chain: string;
  readonly rule: string;
  /** A chain the rule jumps to, declared (empty) so that the rule loads. */
  readonly target?: string;
}

export interface RuleCanonicalizer {
  /** The kernel's spelling (as iptables-save prints it) of each rule, in the order asked. */
  canonicalize(requests: readonly CanonicalRequest[]): Promise<string[]>;
}

export interface ScratchCanonicalizerOptions {
  readonly runner: CommandRunner;
  readonly commands: IptablesCommands;
  readonly waitSeconds?: number;
  /**
   * Default: an iptables-restore's time for the input, and an iptables-save's. The first call may carry every
   * rule of a large node (10,000 services: 440,000 rules, which took over 2 minutes on a busy machine).
   */
  readonly timeoutMs?: number;
}

const SCRIPT = 'restore="$1"; save="$2"; shift 2; "$restore" "$@" && exec "$save"';

/**
 * Canonicalizes in a throwaway network namespace. Rules of builtin chains (jumps) are loaded in a second
 * namespace of their own, so that no user chain is reachable from a hook there (nf_tables checks that a
 * reachable chain only holds rules valid at that hook).
 */
export function createScratchCanonicalizer(options: ScratchCanonicalizerOptions): RuleCanonicalizer {
  const run = async (requests: readonly CanonicalRequest[]): Promise<string[]> => {
    if (requests.length === 0) return [];
    const byTable = new Map<string, CanonicalRequest[]>();
    for (const r of requests) {
      let l = byTable.get(r.table);
      if (!l) byTable.set(r.table, (l = []));
      l.push(r);
    }
    const lines: string[] = [];
    for (const table of [...byTable.keys()].sort(compareTables)) {
      const reqs = byTable.get(table) ?? [];
      const declare = new Set<string>();
      for (const r of reqs) {
        if (!BUILTIN_CHAINS.has(r.chain)) declare.add(r.chain);
        if (r.target !== undefined && !BUILTIN_CHAINS.has(r.target)) declare.add(r.target);
      }
      // No spread into push(): the first call carries every rule of a large node.
      lines.push(`*${table}`);
      for (const c of declare) lines.push(`:${c} - [0:0]`);
      for (const r of reqs) lines.push(`-A ${r.chain} ${r.rule}`);
      lines.push('COMMIT');
    }
    const { restore, save } = options.commands;
    const input = `${lines.join('\n')}\n`;
    let stdout: string;
    try {
      ({ stdout } = await options.runner.run({
        file: 'unshare',
        args: [
          '--net',
          '--',
          'sh',
          '-c',
          SCRIPT,
          'kpx-canonicalize',
          restore,
          save,
          ...waitArgs(options.waitSeconds ?? 5),
        ],
        input,
        timeoutMs: options.timeoutMs ?? restoreTimeoutMs(input.length) + ReadTimeoutMs,
      }));
    } catch (err) {
      if (err instanceof CommandError)
        throw new RuleCanonicalizeError('the scratch namespace rejected the rules', { stderr: err.stderr, cause: err });
      throw err;
    }
    const saved = parseSave(stdout);
    const cursor = new Map<string, number>();
    return requests.map((r) => {
      const k = `${r.table}/${r.chain}`;
      const i = cursor.get(k) ?? 0;
      cursor.set(k, i + 1);
      const spelled = saved.get(r.table)?.chains.get(r.chain)?.rules[i];
      if (spelled === undefined)
        throw new RuleCanonicalizeError(`iptables-save did not give back rule ${i + 1} of ${k}`);
      return spelled;
    });
  };
  return {
    async canonicalize(requests) {
      const inBuiltin = requests.map((r) => BUILTIN_CHAINS.has(r.chain));
      const [user, builtin] = await Promise.all([
        run(requests.filter((_, i) => !inBuiltin[i])),
        run(requests.filter((_, i) => inBuiltin[i])),
      ]);
      let u = 0;
      let b = 0;
      return requests.map((_, i) => (inBuiltin[i] ? builtin[b++] : user[u++]) as string);
    },
  };
}

/** A cache of spellings by (table, rule) in front of a canonicalizer. */
export class RuleSpellings {
  private readonly map = new Map<string, string>();

  constructor(private readonly canonicalizer: RuleCanonicalizer) {}

  static key(table: string, rule: string): string {
    return `${table}\u0000${rule}`;
  }

  get size(): number {
    return this.map.size;
  }

  get(table: string, rule: string): string | undefined {
    return this.map.get(RuleSpellings.key(table, rule));
  }

  /** Looks up, in one canonicalizer call, every rule not cached yet. */
  async ensure(requests: Iterable<CanonicalRequest>): Promise<void> {
    const missing = new Map<string, CanonicalRequest>();
    for (const r of requests) {
      const k = RuleSpellings.key(r.table, r.rule);
      if (!this.map.has(k) && !missing.has(k)) missing.set(k, r);
    }
    if (missing.size === 0) return;
    const reqs = [...missing.values()];
    const spelled = await this.canonicalizer.canonicalize(reqs);
    reqs.forEach((r, i) => this.map.set(RuleSpellings.key(r.table, r.rule), spelled[i] as string));
  }

  /** Forgets every spelling whose key is not in `used` (keeps the cache the size of the state). */
  retain(used: ReadonlySet<string>): void {
    for (const k of this.map.keys()) if (!used.has(k)) this.map.delete(k);
  }
}
