// Network namespace names: one short prefix per run, and sweeping namespaces left behind by a run.
import { randomBytes } from 'node:crypto';
import { run } from './exec.js';

/** Linux limits interface names to 15 characters; namespace names are kept within the same bound. */
export const MaxNameLength = 15;

/**
 * A fresh prefix for this run: "k", the PID modulo 10^4 and two random base-36 characters, then "-"
 * (e.g. "k4821x7-"), so parallel runs never share a namespace name. 8 characters at most.
 */
export function makeRunPrefix(): string {
  const rand = (randomBytes(2).readUInt16BE(0) % 1296).toString(36).padStart(2, '0');
  return `k${process.pid % 10_000}${rand}-`;
}

/** The names of all network namespaces (`ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
}

/** Deletes every network namespace whose name starts with `prefix`; returns the names deleted. */
export async function sweepNamespaces(prefix: string): Promise<string[]> {
  if (prefix.length < 3) throw new Error(`refusing to sweep with a prefix this short: "${prefix}"`);
  const victims = (await listNamespaces()).filter((name) => name.startsWith(prefix));
  for (const name of victims) {
    try {
      await run('ip', ['netns', 'del', name]);
    } catch {
      // Already gone (a concurrent cleanup); nothing left to do.
    }
  }
  return victims;
}
