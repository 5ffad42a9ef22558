// `kpx executor --cleanup` (as `kube-proxy --cleanup`): remove what kpx and kube-proxy installed on a node, in
// either migration direction: the KUBE-* iptables chains and the jumps to them (both families), IPVS virtual
// services and the kube-ipvs0 dummy link, the KUBE-* ipsets, and kube-proxy's nftables tables. Everything else
// is left alone. Idempotent: a second run finds nothing and succeeds.
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { IpFamily } from '@kpx/proto';
import { CommandError } from './errors.js';
import { BUILTIN_CHAINS, compareTables, iptablesCommands, waitArgs } from './iptables/commands.js';
import { ruleTarget } from './iptables/rule-text.js';
import { parseSave, type SavedTables } from './iptables/save-format.js';
import { createCommandRunner, type CommandRunner } from './runner.js';

/**
 * kubelet's KUBE-* chains, kept by a cleanup: its canary and the iptables-mode hint. KUBE-FIREWALL goes: since
 * Kubernetes 1.28 kubelet no longer creates it, kube-proxy (and kpx) do. kube-proxy's canary goes too.
 */
export const KUBELET_CHAINS: ReadonlySet<string> = new Set(['KUBE-KUBELET-CANARY', 'KUBE-IPTABLES-HINT']);

/** Whether a cleanup removes this chain: every KUBE-* chain but kubelet's. */
export function isCleanupChain(name: string): boolean {
  return name.startsWith('KUBE-') && !KUBELET_CHAINS.has(name) && !BUILTIN_CHAINS.has(name);
}

/** How one step of a cleanup ended. */
export const CleanupOutcome = {
  /** Something was found and removed. */
  Removed: 'removed',
  /** Looked, found nothing of kube-proxy's. */
  Clean: 'clean',
  /** Could not look: the tool or the kernel support is missing (so nothing of that kind can be installed). */
  Skipped: 'skipped',
  Failed: 'failed',
} as const;
export type CleanupOutcome = (typeof CleanupOutcome)[keyof typeof CleanupOutcome];

export interface CleanupStep {
  /** What the step cleans, e.g. `iptables (IPv4)`, `ipsets`. */
  readonly what: string;
  readonly outcome: CleanupOutcome;
  /** What was removed, why it was skipped, or the error. */
  readonly detail: string;
}

export interface CleanupOptions {
  /** Clean this network namespace (`ip netns exec`). */
  readonly netns?: string | undefined;
  /** Default: a runner for `netns`. */
  readonly runner?: CommandRunner | undefined;
  /** Whether a program is on PATH (default: looks it up on $PATH). */
  readonly hasTool?: ((name: string) => Promise<boolean>) | undefined;
}

/** The result of a cleanup: one entry per step, in order. ok when no step failed. */
export interface CleanupReport {
  readonly ok: boolean;
  readonly steps: readonly CleanupStep[];
}

/**
 * Removes every rule kube-proxy (or kpx) installed: iptables first (rules may reference ipsets), then IPVS virtual
 * services (all of them, as kube-proxy's cleanup), the kube-ipvs0 link, the KUBE-* ipsets, and the nftables tables
 * `ip kube-proxy` / `ip6 kube-proxy`. A failing step does not stop the others; the report names it.
 */
export async function cleanupKubeProxy(options: CleanupOptions = {}): Promise<CleanupReport> {
  const runner = options.runner ?? createCommandRunner(options.netns === undefined ? {} : { netns: options.netns });
  const hasTool = options.hasTool ?? onPath;
  const steps: CleanupStep[] = [];
  const step = async (what: string, fn: () => Promise<Omit<CleanupStep, 'what'>>): Promise<void> => {
    try {
      steps.push({ what, ...(await fn()) });
    } catch (err) {
      steps.push({ what, outcome: CleanupOutcome.Failed, detail: describeError(err) });
    }
  };
  for (const family of [IpFamily.IPv4, IpFamily.IPv6]) {
    await step(`iptables (${family === IpFamily.IPv6 ? 'IPv6' : 'IPv4'})`, () =>
      cleanIptables(runner, hasTool, family),
    );
  }
  await step('IPVS virtual services', () => cleanIpvs(runner, hasTool));
  await step('kube-ipvs0 link', () => cleanDummyLink(runner));
  await step('ipsets', () => cleanIpsets(runner, hasTool));
  await step('nftables', () => cleanNftables(runner, hasTool));
  return { ok: steps.every((s) => s.outcome !== CleanupOutcome.Failed), steps };
}

/**
 * The iptables-restore --noflush input removing, in every table, each cleanup chain and every rule elsewhere that
 * jumps (or goes) to one: the chains are declared (which flushes them, so they no longer reference each other),
 * the jumps deleted by their exact spec, then the chains deleted. Empty when there is nothing to remove.
 */
export function planIptablesCleanup(saved: SavedTables): { input: string; chains: number; jumps: number } {
  const out: string[] = [];
  let chains = 0;
  let jumps = 0;
  for (const table of [...saved.values()].sort((a, b) => compareTables(a.name, b.name))) {
    const owned = [...table.chains.keys()].filter(isCleanupChain);
    const deletes: string[] = [];
    for (const chain of table.chains.values()) {
      if (isCleanupChain(chain.name)) continue;
      for (const spec of chain.rules) {
        const target = ruleTarget(spec);
        if (target !== undefined && isCleanupChain(target)) deletes.push(`-D ${chain.name} ${spec}`);
      }
    }
    if (owned.length === 0 && deletes.length === 0) continue;
    out.push(
      `*${table.name}`,
      ...owned.map((c) => `:${c} - [0:0]`),
      ...deletes,
      ...owned.map((c) => `-X ${c}`),
      'COMMIT',
    );
    chains += owned.length;
    jumps += deletes.length;
  }
  return { input: out.length === 0 ? '' : `${out.join('\n')}\n`, chains, jumps };
}

async function cleanIptables(
  runner: CommandRunner,
  hasTool: (name: string) => Promise<boolean>,
  family: IpFamily,
): Promise<Omit<CleanupStep, 'what'>> {
  const cmds = iptablesCommands(family);
  if (!(await hasTool(cmds.save)) || !(await hasTool(cmds.restore)))
    return { outcome: CleanupOutcome.Skipped, detail: `${cmds.save} or ${cmds.restore} not found` };
  const { stdout } = await runner.run({ file: cmds.save, args: [] });
  const plan = planIptablesCleanup(parseSave(stdout));
  if (plan.input === '') return { outcome: CleanupOutcome.Clean, detail: 'no KUBE-* chains' };
  await runner.run({ file: cmds.restore, args: [...waitArgs(5), '--noflush'], input: plan.input });
  return { outcome: CleanupOutcome.Removed, detail: `${plan.chains} chains, ${plan.jumps} jumps to them` };
}

async function cleanIpvs(
  runner: CommandRunner,
  hasTool: (name: string) => Promise<boolean>,
): Promise<Omit<CleanupStep, 'what'>> {
  if (!(await hasTool('ipvsadm'))) return { outcome: CleanupOutcome.Skipped, detail: 'ipvsadm not found' };
  // Without the ip_vs module nothing can be left; ipvsadm would try to load it (a change to the host): look first.
  const loaded = await runner.run({ file: 'test', args: ['-e', '/proc/net/ip_vs'] }).then(
    () => true,
    () => false,
  );
  if (!loaded)
    return { outcome: CleanupOutcome.Skipped, detail: 'IPVS is not loaded in this kernel (no /proc/net/ip_vs)' };
  const { stdout } = await runner.run({ file: 'ipvsadm', args: ['-S', '-n'] });
  const services = stdout.split('\n').filter((l) => l.startsWith('-A ')).length;
  if (services === 0) return { outcome: CleanupOutcome.Clean, detail: 'no virtual services' };
  await runner.run({ file: 'ipvsadm', args: ['-C'] });
  return { outcome: CleanupOutcome.Removed, detail: `${services} virtual services` };
}

async function cleanDummyLink(runner: CommandRunner): Promise<Omit<CleanupStep, 'what'>> {
  const { stdout } = await runner.run({ file: 'ip', args: ['-o', 'link', 'show'] });
  if (!/^\d+: kube-ipvs0[:@]/m.test(stdout)) return { outcome: CleanupOutcome.Clean, detail: 'no kube-ipvs0 link' };
  await runner.run({ file: 'ip', args: ['link', 'del', 'kube-ipvs0'] });
  return { outcome: CleanupOutcome.Removed, detail: 'kube-ipvs0' };
}

async function cleanIpsets(
  runner: CommandRunner,
  hasTool: (name: string) => Promise<boolean>,
): Promise<Omit<CleanupStep, 'what'>> {
  if (!(await hasTool('ipset'))) return { outcome: CleanupOutcome.Skipped, detail: 'ipset not found' };
  let names: string[];
  try {
    names = (await runner.run({ file: 'ipset', args: ['list', '-n'] })).stdout.split('\n').map((l) => l.trim());
  } catch (err) {
    // No ip_set support in the kernel: no set can exist.
    if (err instanceof CommandError && /protocol not (available|supported)|kernel error|module/i.test(err.stderr)) {
      return { outcome: CleanupOutcome.Skipped, detail: `ipset cannot list sets: ${err.stderr.trim()}` };
    }
    throw err;
  }
  const kube = names.filter((n) => n.startsWith('KUBE-'));
  if (kube.length === 0) return { outcome: CleanupOutcome.Clean, detail: 'no KUBE-* sets' };
  // Lists (list:set) may hold other sets: empty every set first, then destroy them.
  const input = [...kube.map((n) => `flush ${n}`), ...kube.map((n) => `destroy ${n}`)].join('\n');
  await runner.run({ file: 'ipset', args: ['restore'], input: `${input}\n` });
  return { outcome: CleanupOutcome.Removed, detail: `${kube.length} sets` };
}

async function cleanNftables(
  runner: CommandRunner,
  hasTool: (name: string) => Promise<boolean>,
): Promise<Omit<CleanupStep, 'what'>> {
  if (!(await hasTool('nft'))) return { outcome: CleanupOutcome.Skipped, detail: 'nft not found' };
  const { stdout } = await runner.run({ file: 'nft', args: ['list', 'tables'] });
  const tables = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l === 'table ip kube-proxy' || l === 'table ip6 kube-proxy');
  if (tables.length === 0) return { outcome: CleanupOutcome.Clean, detail: 'no kube-proxy tables' };
  // One transaction: both tables go, or neither.
  await runner.run({ file: 'nft', args: ['-f', '-'], input: `${tables.map((t) => `delete ${t}`).join('\n')}\n` });
  return { outcome: CleanupOutcome.Removed, detail: tables.map((t) => t.slice('table '.length)).join(', ') };
}

/** Whether `name` is an executable file in a directory of $PATH. */
async function onPath(name: string): Promise<boolean> {
  for (const dir of (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    if (dir === '') continue;
    try {
      await access(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // Not in this directory.
    }
  }
  return false;
}

/** The message of a failed step; a CommandError's names the command line and carries its stderr. */
function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
