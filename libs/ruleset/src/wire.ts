// Compiler rule objects <-> wire (protobuf) rule objects.
import { RuleKind, Table, type RuleObject } from '@kpx/compiler';
import type { RuleObject as WireObject } from '@kpx/proto';
import { RuleSetError } from './errors.js';

export function toWire(o: RuleObject): WireObject {
  switch (o.kind) {
    case RuleKind.IptablesChain:
      return { kind: o.kind, key: o.key, payload: { $case: 'iptablesChain', value: { table: o.table, name: o.chain, rules: [...o.rules] } } };
    case RuleKind.IptablesRules:
      return { kind: o.kind, key: o.key, payload: { $case: 'iptablesRules', value: { table: o.table, chain: o.chain, rules: [...o.rules], position: o.position } } };
    case RuleKind.IptablesJump:
      // Jumps are applied in order with -I 1 from the last to the first, as kube-proxy prepends them.
      return { kind: o.kind, key: o.key, payload: { $case: 'iptablesJump', value: { table: o.table, chain: o.chain, target: o.target, rule: o.rule, prepend: true } } };
  }
}

function table(t: string, key: string): Table {
  if (t === Table.Filter || t === Table.Nat) return t;
  throw new RuleSetError(`object ${key}: unsupported table ${JSON.stringify(t)}`);
}

/** Inverse of toWire for the iptables kinds; jump positions come from the key order of the rule set. */
export function fromWire(w: WireObject, jumpPosition = 0): RuleObject {
  const p = w.payload;
  if (!p) throw new RuleSetError(`object ${w.kind} ${w.key} has no payload`);
  switch (p.$case) {
    case 'iptablesChain':
      return { kind: RuleKind.IptablesChain, key: w.key, table: table(p.value.table, w.key), chain: p.value.name, rules: p.value.rules };
    case 'iptablesRules':
      return { kind: RuleKind.IptablesRules, key: w.key, table: table(p.value.table, w.key), chain: p.value.chain, rules: p.value.rules, position: p.value.position };
    case 'iptablesJump':
      return { kind: RuleKind.IptablesJump, key: w.key, table: table(p.value.table, w.key), chain: p.value.chain, target: p.value.target, rule: p.value.rule, position: jumpPosition };
    default:
      throw new RuleSetError(`object ${w.kind} ${w.key}: payload ${p.$case} is not an iptables object`);
  }
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * True when two wire objects of the iptables kinds are equal field for field (so they have the same hash).
 * False for other kinds: callers then treat them as different, which is only ever slower, never wrong.
 */
export function sameWire(a: WireObject, b: WireObject): boolean {
  if (a.kind !== b.kind || a.key !== b.key) return false;
  const p = a.payload;
  const q = b.payload;
  if (!p || !q || p.$case !== q.$case) return false;
  switch (p.$case) {
    case 'iptablesChain':
      return q.$case === 'iptablesChain' && p.value.table === q.value.table && p.value.name === q.value.name && sameStrings(p.value.rules, q.value.rules);
    case 'iptablesRules':
      return (
        q.$case === 'iptablesRules' &&
        p.value.table === q.value.table &&
        p.value.chain === q.value.chain &&
        p.value.position === q.value.position &&
        sameStrings(p.value.rules, q.value.rules)
      );
    case 'iptablesJump':
      return (
        q.$case === 'iptablesJump' &&
        p.value.table === q.value.table &&
        p.value.chain === q.value.chain &&
        p.value.target === q.value.target &&
        p.value.rule === q.value.rule &&
        p.value.prepend === q.value.prepend
      );
    default:
      return false;
  }
}
