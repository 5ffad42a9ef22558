// The whole system on one machine, as the e2e suites run it: `kpx executor`
// processes (one per node, inside its namespace), waiting with the executors' logs at hand, atomic file changes.
import { spawn, type ChildProcess } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RepoRoot } from './cluster.js';

export const KpxBin = `${RepoRoot}services/cli/bin/kpx.js`;

export interface ExecutorProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  log: string;
  readonly exited: Promise<number | null>;
}

/** Starts `kpx executor ARGS…`, collecting its output. */
export function spawnKpxExecutor(args: readonly string[]): ExecutorProcess {
  const child = spawn(process.execPath, [KpxBin, 'executor', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: ExecutorProcess = {
    child,
    log: '',
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  child.stdout?.on('data', (b: Buffer) => (p.log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (p.log += b.toString()));
  return p;
}

/** Kills (SIGKILL) every executor still running and waits for all of them. */
export async function killExecutors(executors: Iterable<ExecutorProcess>): Promise<void> {
  const all = [...executors];
  for (const p of all) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
}

/** The tail of every executor's log, for failure messages. */
export function executorLogs(executors: ReadonlyMap<string, ExecutorProcess>, chars = 3000): string {
  return [...executors].map(([n, p]) => `--- ${n}\n${p.log.slice(-chars)}`).join('\n');
}

/** Polls `cond` every 50 ms; throws after `ms` with `context()` (the executors' logs). Returns the time taken. */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  what: string,
  ms: number,
  context: () => string,
): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - start;
}

/** Writes `dir/file` so that a directory watcher never reads it half-written. */
export async function writeAtomically(dir: string, file: string, text: string): Promise<void> {
  const tmp = join(dir, `.${file}.tmp`);
  await writeFile(tmp, text);
  await rename(tmp, join(dir, file));
}
