// Reading the kernel back into kpx's objects, and naming what differs from the desired ones.
//
// Conventions (so that equal rules give equal objects, and so equal digests):
// - A chain is read back when kpx owns it: the desired state has it, or its name is kpx's (isOwnedChain).
// - A desired chain whose kernel rules are, rule for rule, the kernel's spelling of its own rules followed by its
//   fragments' reads back as exactly the desired objects. Otherwise the rules are matched from the front, segment
//   by segment (own rules, then each fragment in order), and from the back; matched segments read back as the
//   desired objects, and the lines in between (in the kernel's spelling) go to the first unmatched segment
//   (the chain object when its own rules did not match), the other unmatched fragments being absent. Lines that
//   stand between two matched segments are appended to the one before. So the read-back objects, assembled as
//   the kernel gets them, give the kernel's chain, and only the segments that differ differ.
// - A chain kpx owns that the state does not want reads back as an iptables.chain with the kernel's rules,
//   unless kpx kept it on purpose (ReadBackOptions.kept) and it is still empty.
// - A rule of a builtin chain that jumps to a chain kpx owns is a jump (key `table/BUILTIN/TARGET`). It reads
//   back as the desired jump when it is spelled like it (its place in the chain is not compared, as kube-proxy's
//   `iptables -C` does not). A second rule with the same key reads back as `table/BUILTIN/TARGET#2` (…#3, …).
import type { RuleObject } from '@kpx/proto';
import { RuleKind } from '@kpx/proto';
import { objectIdOf } from '@kpx/ruleset';
import { BUILTIN_CHAINS, isKubeProxyChain } from './commands.js';
import { chainRef, ruleTarget, type ChainRef } from './rule-text.js';
import type { SavedChain, SavedTables } from './save-format.js';
import { sameObject, type IptablesState } from './state.js';

export interface ReadBackOptions {
  /** The kernel's spelling of a desired rule; undefined means "as written". */
  readonly spell?: (table: string, rule: string) => string | undefined;
  readonly isOwnedChain?: (name: string) => boolean;
  /**
   * Chains kpx deleted from its state but had to keep, flushed, because something still jumps to them. While
   * they are empty they are not read back (they are as kpx left them); with rules they read back as extra.
   */
  readonly kept?: ReadonlySet<ChainRef>;
}

interface Segment {
  /** The desired object: the chain object for segment 0, a fragment after. */
  readonly object: RuleObject;
  readonly rules: readonly string[];
  readonly spelled: readonly string[];
}

function withRules(o: RuleObject, rules: string[]): RuleObject {
  const p = o.payload;
  if (p?.$case === 'iptablesChain') return { ...o, payload: { $case: 'iptablesChain', value: { ...p.value, rules } } };
  if (p?.$case === 'iptablesRules') return { ...o, payload: { $case: 'iptablesRules', value: { ...p.value, rules } } };
  return o;
}

function matchesAt(lines: readonly string[], at: number, seg: Segment): boolean {
  if (at < 0 || at + seg.spelled.length > lines.length) return false;
  return seg.spelled.every((s, i) => lines[at + i] === s);
}

/** Splits a desired chain's kernel rules back into its objects (see the file header). */
function splitChain(lines: readonly string[], segs: readonly Segment[]): RuleObject[] {
  let p = 0;
  let pos = 0;
  while (p < segs.length && matchesAt(lines, pos, segs[p] as Segment)) pos += (segs[p++] as Segment).spelled.length;
  let q = segs.length;
  let end = lines.length;
  while (q > p) {
    const seg = segs[q - 1] as Segment;
    if (end - seg.spelled.length < pos || !matchesAt(lines, end - seg.spelled.length, seg)) break;
    end -= seg.spelled.length;
    q--;
  }
  const middle = lines.slice(pos, end);
  const out: Array<RuleObject | undefined> = segs.map((s, i) => (i < p || i >= q ? s.object : undefined));
  if (p < q) {
    const first = segs[p] as Segment;
    if (p === 0 || middle.length > 0) out[p] = withRules(first.object, middle);
  } else if (middle.length > 0) {
    const host = segs[Math.max(p - 1, 0)] as Segment;
    out[Math.max(p - 1, 0)] = withRules(host.object, p === 0 ? [...middle, ...host.rules] : [...host.rules, ...middle]);
  }
  return out.filter((o): o is RuleObject => o !== undefined);
}

function chainObject(table: string, name: string, rules: string[]): RuleObject {
  return {
    kind: RuleKind.IptablesChain,
    key: chainRef(table, name),
    payload: { $case: 'iptablesChain', value: { table, name, rules } },
  };
}

/** kpx's objects as the kernel holds them (`saved`: the tables kpx manages), read against `desired`. */
export function readBackObjects(
  saved: SavedTables,
  desired: IptablesState,
  options: ReadBackOptions = {},
): RuleObject[] {
  const isOwned = options.isOwnedChain ?? isKubeProxyChain;
  const spell = (table: string, rule: string): string => options.spell?.(table, rule) ?? rule;
  const out: RuleObject[] = [];
  for (const [table, t] of saved) {
    const owned = (name: string): boolean => isOwned(name) || desired.chain(chainRef(table, name)) !== undefined;
    for (const c of t.chains.values()) {
      if (c.policy !== undefined) {
        if (BUILTIN_CHAINS.has(c.name)) out.push(...readJumps(table, c, desired, owned, spell));
        continue;
      }
      if (!owned(c.name)) continue;
      const ref = chainRef(table, c.name);
      const own = desired.get(RuleKind.IptablesChain, ref);
      const wanted = desired.chain(ref);
      if (!own || !wanted) {
        if (c.rules.length === 0 && options.kept?.has(ref)) continue;
        out.push(chainObject(table, c.name, [...c.rules]));
        continue;
      }
      const segs: Segment[] = [{ object: own, rules: wanted.rules, spelled: wanted.rules.map((r) => spell(table, r)) }];
      for (const f of desired.fragments(ref)) {
        const object = desired.get(RuleKind.IptablesRules, f.key);
        if (object) segs.push({ object, rules: f.rules, spelled: f.rules.map((r) => spell(table, r)) });
      }
      for (const o of splitChain(c.rules, segs)) out.push(o);
    }
  }
  return out;
}

function readJumps(
  table: string,
  c: SavedChain,
  desired: IptablesState,
  owned: (name: string) => boolean,
  spell: (table: string, rule: string) => string,
): RuleObject[] {
  const kpx = c.rules
    .map((spec) => ({ spec, target: ruleTarget(spec) }))
    .filter((r): r is { spec: string; target: string } => r.target !== undefined && owned(r.target));
  const taken = new Set<string>();
  const matched = new Set<number>();
  const out: RuleObject[] = [];
  kpx.forEach((r, i) => {
    const key = `${chainRef(table, c.name)}/${r.target}`;
    const want = desired.get(RuleKind.IptablesJump, key);
    const j = want?.payload?.$case === 'iptablesJump' ? want.payload.value : undefined;
    if (want && j && !taken.has(key) && spell(table, j.rule) === r.spec) {
      taken.add(key);
      matched.add(i);
      out.push(want);
    }
  });
  kpx.forEach((r, i) => {
    if (matched.has(i)) return;
    const base = `${chainRef(table, c.name)}/${r.target}`;
    let key = base;
    for (let n = 2; taken.has(key); n++) key = `${base}#${n}`;
    taken.add(key);
    const want = desired.get(RuleKind.IptablesJump, base);
    const wanted = want?.payload?.$case === 'iptablesJump' ? want.payload.value : undefined;
    const value = {
      table,
      chain: c.name,
      target: r.target,
      rule: r.spec,
      prepend: wanted?.prepend ?? true,
      position: wanted?.position ?? 0,
    };
    out.push({ kind: RuleKind.IptablesJump, key, payload: { $case: 'iptablesJump', value } });
  });
  return out;
}

/** What differs between the desired objects and those read back, by chain and by jump. */
export interface IptablesDrift {
  readonly inSync: boolean;
  readonly chains: {
    /** Desired chains the kernel does not have (`table/NAME`). */
    readonly missing: readonly ChainRef[];
    /** Chains kpx owns that the kernel has and the state does not want. */
    readonly extra: readonly ChainRef[];
    /** Chains both have whose rules differ (own rules or any fragment). */
    readonly changed: readonly ChainRef[];
  };
  readonly jumps: {
    /** Keys (`table/BUILTIN/TARGET`) of desired jumps the kernel does not have. */
    readonly missing: readonly string[];
    /** Jumps the kernel has and the state does not want (including doubles, `…#2`). */
    readonly extra: readonly string[];
    /** Jumps both have, spelled differently. */
    readonly changed: readonly string[];
  };
}

function chainOf(o: RuleObject): ChainRef | undefined {
  const p = o.payload;
  if (p?.$case === 'iptablesChain') return chainRef(p.value.table, p.value.name);
  if (p?.$case === 'iptablesRules') return chainRef(p.value.table, p.value.chain);
  return undefined;
}

const sorted = (s: Iterable<string>): string[] => [...s].sort();

/** Compares desired and actual objects (e.g. readBack's) and names the chains and jumps that differ. */
export function diffActual(desired: Iterable<RuleObject>, actual: Iterable<RuleObject>): IptablesDrift {
  const want = new Map<string, RuleObject>();
  for (const o of desired) want.set(objectIdOf(o), o);
  const have = new Map<string, RuleObject>();
  for (const o of actual) have.set(objectIdOf(o), o);
  const chains = { missing: new Set<ChainRef>(), extra: new Set<ChainRef>(), changed: new Set<ChainRef>() };
  const jumps = { missing: new Set<string>(), extra: new Set<string>(), changed: new Set<string>() };
  for (const [id, o] of want) {
    const a = have.get(id);
    if (o.kind === RuleKind.IptablesJump) {
      if (!a) jumps.missing.add(o.key);
      else if (!sameObject(o, a)) jumps.changed.add(o.key);
    } else if (o.kind === RuleKind.IptablesChain && !a) {
      chains.missing.add(o.key);
    } else if (!a || !sameObject(o, a)) {
      const ref = chainOf(o);
      if (ref !== undefined) chains.changed.add(ref);
    }
  }
  for (const [id, a] of have) {
    if (want.has(id)) continue;
    if (a.kind === RuleKind.IptablesJump) jumps.extra.add(a.key);
    else if (a.kind === RuleKind.IptablesChain) chains.extra.add(a.key);
    else {
      const ref = chainOf(a);
      if (ref !== undefined) chains.changed.add(ref);
    }
  }
  for (const ref of [...chains.missing, ...chains.extra]) chains.changed.delete(ref);
  const inSync = [chains.missing, chains.extra, chains.changed, jumps.missing, jumps.extra, jumps.changed].every(
    (s) => s.size === 0,
  );
  return {
    inSync,
    chains: { missing: sorted(chains.missing), extra: sorted(chains.extra), changed: sorted(chains.changed) },
    jumps: { missing: sorted(jumps.missing), extra: sorted(jumps.extra), changed: sorted(jumps.changed) },
  };
}
