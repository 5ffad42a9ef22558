// ipsets through the ipset tool: `ipset save` to read them, `ipset restore` to change them. kpx owns the KUBE-*
// sets of its IP family (kube-proxy's names; IPv6 ones are KUBE-6-*) and leaves every other set alone.
import type { IpsetSet } from '@kpx/proto';
import { CommandError } from '../errors.js';
import type { CommandRunner } from '../runner.js';
import { IpsetError } from './errors.js';

/** A set as `ipset save` prints it. */
export interface SavedSet {
  readonly name: string;
  readonly type: string;
  /** "inet", "inet6", or "" (bitmap types). */
  readonly family: string;
  readonly hashSize: number;
  readonly maxElem: number;
  readonly portRange: string;
  readonly entries: Set<string>;
}

/** Parses `ipset save` output. Entry options (comment, timeout) are dropped; entries are canonical (see entryKey). */
export function parseIpsetSave(text: string): Map<string, SavedSet> {
  const sets = new Map<string, SavedSet>();
  text.split('\n').forEach((line, i) => {
    const t = line.trim().split(/\s+/);
    if (t[0] === 'create' && t.length >= 3) {
      const opt = (name: string): string | undefined => {
        const at = t.indexOf(name, 3);
        return at < 0 ? undefined : t[at + 1];
      };
      const name = t[1] as string;
      sets.set(name, {
        name,
        type: t[2] as string,
        family: opt('family') ?? '',
        hashSize: Number(opt('hashsize') ?? 0),
        maxElem: Number(opt('maxelem') ?? 0),
        portRange: opt('range') ?? '',
        entries: new Set(),
      });
    } else if (t[0] === 'add' && t.length >= 3) {
      const set = sets.get(t[1] as string);
      if (!set) throw new IpsetError(`ipset save line ${i + 1}: entry of an undeclared set: ${JSON.stringify(line)}`);
      set.entries.add(entryKey(t[2] as string));
    }
  });
  return sets;
}

/**
 * How the kernel spells an entry, for comparing desired entries with `ipset save`: lower case, protocol names as
 * ipset prints them, host routes (/32, /128) of hash:net without their prefix.
 */
export function entryKey(entry: string): string {
  return entry
    .trim()
    .toLowerCase()
    .split(',')
    .map((part) => part.replace(/\/(32|128)$/, ''))
    .join(',');
}

/** Whether kpx of this IP family owns a set of this name and family ("" for bitmap sets). */
export function isOwnedSet(name: string, family: string, ipFamily: 'IPv4' | 'IPv6'): boolean {
  if (!name.startsWith('KUBE-')) return false;
  if (family === 'inet') return ipFamily === 'IPv4';
  if (family === 'inet6') return ipFamily === 'IPv6';
  return name.startsWith('KUBE-6-') === (ipFamily === 'IPv6');
}

/** The `create` line of a set (without -exist: the caller decides). */
export function createLine(s: IpsetSet, name = s.name): string {
  const opts: string[] = [];
  if (s.family) opts.push('family', s.family);
  if (s.hashSize) opts.push('hashsize', String(s.hashSize));
  if (s.maxElem) opts.push('maxelem', String(s.maxElem));
  if (s.portRange) opts.push('range', s.portRange);
  return ['create', name, s.type, ...opts].join(' ');
}

/** Whether a set in the kernel has the type and options kpx wants (hashsize grows by itself: not compared). */
export function sameSpec(s: IpsetSet, saved: SavedSet): boolean {
  return (
    saved.type === s.type &&
    saved.family === s.family &&
    (s.maxElem === 0 || saved.maxElem === s.maxElem) &&
    (s.portRange === '' || saved.portRange === s.portRange)
  );
}

/** Runs `ipset save` and `ipset restore` with a CommandRunner (which may work in another network namespace). */
export class IpsetTool {
  constructor(private readonly runner: CommandRunner) {}

  async save(): Promise<Map<string, SavedSet>> {
    try {
      const { stdout } = await this.runner.run({ file: 'ipset', args: ['save'] });
      return parseIpsetSave(stdout);
    } catch (err) {
      if (err instanceof CommandError) throw new IpsetError('ipset save failed', { stderr: err.stderr, cause: err });
      throw err;
    }
  }

  /** Feeds `lines` to `ipset -exist restore` (creating what exists and deleting what is gone are no errors). */
  async restore(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    const input = `${lines.join('\n')}\n`;
    try {
      await this.runner.run({ file: 'ipset', args: ['-exist', 'restore'], input, timeoutMs: 300_000 });
    } catch (err) {
      if (err instanceof CommandError)
        throw new IpsetError(`ipset restore rejected ${lines.length} line(s)`, { stderr: err.stderr, cause: err });
      throw err;
    }
  }
}
