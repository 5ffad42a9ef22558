// The applied IPVS-mode state of one IP family: kpx's objects indexed the way the applier needs them (services by
// key, VIPs, sets with the members their fragments add), validated as they come in.
import { isIP } from 'node:net';
import type { IpsetEntries, IpsetSet, IpvsAddress, IpvsService, ObjectRef, RuleObject } from '@kpx/proto';
import { RuleKind, hasConsistentKind } from '@kpx/proto';
import { hashed } from '@kpx/ruleset';
import { InvalidRuleObjectError } from '../errors.js';
import { isIptablesObject } from '../iptables/applier.js';
import { entryKey } from './ipset.js';
import { serviceKey } from './ipvs-netlink.js';

/** Kinds this module programs itself (iptables kinds go to the iptables applier). */
export function isIpvsObject(o: { kind: string }): boolean {
  return (
    o.kind === RuleKind.IpvsService ||
    o.kind === RuleKind.IpvsAddress ||
    o.kind === RuleKind.IpsetSet ||
    o.kind === RuleKind.IpsetEntries
  );
}

/** Every kind an IPVS-mode node programs into the kernel: IPVS, ipset and the companion iptables kinds. */
export function isIpvsModeKernelObject(o: { kind: string }): boolean {
  return isIpvsObject(o) || isIptablesObject(o);
}

const PROTOCOLS = new Set(['TCP', 'UDP', 'SCTP']);
const SET_NAME = /^[A-Za-z0-9_.:-]{1,31}$/;
const id = (o: { kind: string; key: string }): string => `${o.kind}:${o.key}`;

function bad(o: { kind: string; key: string }, why: string): never {
  throw new InvalidRuleObjectError(o.kind, o.key, why);
}

function checkPort(o: RuleObject, field: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) bad(o, `${field} ${port} is not a port (1-65535)`);
}

/** Throws InvalidRuleObjectError naming the object and field when an IPVS-mode object cannot be programmed. */
export function validateIpvsObject(o: RuleObject): void {
  if (!hasConsistentKind(o)) bad(o, `payload ${o.payload?.$case ?? 'missing'} does not fit kind ${o.kind}`);
  const p = o.payload!;
  switch (p.$case) {
    case 'ipvsService': {
      const s = p.value;
      if (!PROTOCOLS.has(s.protocol)) bad(o, `protocol ${JSON.stringify(s.protocol)} is not TCP, UDP or SCTP`);
      if (!isIP(s.address)) bad(o, `address ${JSON.stringify(s.address)} is not an IP address`);
      checkPort(o, 'port', s.port);
      if (!/^[a-z0-9_]{1,15}$/.test(s.scheduler))
        bad(o, `scheduler ${JSON.stringify(s.scheduler)} is not a scheduler name`);
      if (o.key !== serviceKey(s as { protocol: 'TCP'; address: string; port: number }))
        bad(
          o,
          `key does not match the payload (${serviceKey(s as { protocol: 'TCP'; address: string; port: number })})`,
        );
      const seen = new Set<string>();
      for (const r of s.realServers) {
        if (!isIP(r.address)) bad(o, `real server address ${JSON.stringify(r.address)} is not an IP address`);
        checkPort(o, 'real server port', r.port);
        if (r.weight < 0) bad(o, `real server ${r.address}:${r.port} weight ${r.weight} is negative`);
        const k = `${r.address}/${r.port}`;
        if (seen.has(k)) bad(o, `real server ${r.address}:${r.port} appears twice`);
        seen.add(k);
      }
      return;
    }
    case 'ipvsAddress':
      if (!isIP(p.value.address)) bad(o, `address ${JSON.stringify(p.value.address)} is not an IP address`);
      if (!p.value.interface) bad(o, 'interface is empty');
      if (o.key !== `${p.value.interface}/${p.value.address}`)
        bad(o, `key does not match the payload (${p.value.interface}/${p.value.address})`);
      return;
    case 'ipsetSet':
      if (!SET_NAME.test(p.value.name) || !p.value.name.startsWith('KUBE-'))
        bad(o, `name ${JSON.stringify(p.value.name)} is not a KUBE-* set name of at most 31 characters`);
      if (o.key !== p.value.name) bad(o, 'key does not match the set name');
      if (!/^(hash|bitmap|list):[a-z,]+$/.test(p.value.type))
        bad(o, `type ${JSON.stringify(p.value.type)} is not an ipset type`);
      if (p.value.family !== '' && p.value.family !== 'inet' && p.value.family !== 'inet6')
        bad(o, `family ${JSON.stringify(p.value.family)} is not inet or inet6`);
      for (const e of p.value.entries)
        if (!/^[0-9A-Za-z.:,/_-]+$/.test(e)) bad(o, `entry ${JSON.stringify(e)} is not an ipset entry`);
      return;
    case 'ipsetEntries':
      if (!o.key.startsWith(`${p.value.set}/`)) bad(o, `key does not start with the set name ${p.value.set}/`);
      for (const e of p.value.entries)
        if (!/^[0-9A-Za-z.:,/_-]+$/.test(e)) bad(o, `entry ${JSON.stringify(e)} is not an ipset entry`);
      return;
    default:
      bad(o, 'not an IPVS, ipset or iptables object');
  }
}

/** kpx's IPVS, VIP and ipset objects of one family (iptables objects are kept aside, for the iptables applier). */
export class IpvsState {
  readonly services = new Map<string, IpvsService>();
  /** Address objects by key `<interface>/<address>`. */
  readonly addresses = new Map<string, IpvsAddress>();
  readonly sets = new Map<string, IpsetSet>();
  /** Entry fragments by key `<set>/<owner>`. */
  readonly fragments = new Map<string, IpsetEntries>();
  /** Every object by `kind:key`, IPVS kinds and iptables kinds. */
  readonly objects = new Map<string, RuleObject>();
  /** Fragment keys by set name. */
  private readonly bySet = new Map<string, Set<string>>();
  /** How many objects (the set itself and its fragments) contribute each member (entryKey) of each set. */
  private readonly memberCounts = new Map<string, Map<string, number>>();

  static from(objects: Iterable<RuleObject>): IpvsState {
    const s = new IpvsState();
    for (const o of objects) s.upsert(o);
    s.checkFragments();
    return s;
  }

  clone(): IpvsState {
    return IpvsState.from(this.objects.values());
  }

  upsert(o: RuleObject): void {
    if (isIptablesObject(o)) {
      this.objects.set(id(o), o);
      return;
    }
    validateIpvsObject(o);
    this.remove(o);
    this.objects.set(id(o), o);
    const p = o.payload!;
    if (p.$case === 'ipvsService') this.services.set(o.key, p.value);
    else if (p.$case === 'ipvsAddress') this.addresses.set(o.key, p.value);
    else if (p.$case === 'ipsetSet') {
      this.sets.set(o.key, p.value);
      this.count(p.value.name, p.value.entries, 1);
    } else if (p.$case === 'ipsetEntries') {
      this.fragments.set(o.key, p.value);
      let keys = this.bySet.get(p.value.set);
      if (!keys) this.bySet.set(p.value.set, (keys = new Set()));
      keys.add(o.key);
      this.count(p.value.set, p.value.entries, 1);
    }
  }

  remove(ref: ObjectRef): void {
    this.objects.delete(id(ref));
    if (ref.kind === RuleKind.IpvsService) this.services.delete(ref.key);
    else if (ref.kind === RuleKind.IpvsAddress) this.addresses.delete(ref.key);
    else if (ref.kind === RuleKind.IpsetSet) {
      const s = this.sets.get(ref.key);
      if (s) this.count(s.name, s.entries, -1);
      this.sets.delete(ref.key);
    } else if (ref.kind === RuleKind.IpsetEntries) {
      const f = this.fragments.get(ref.key);
      if (f) {
        this.count(f.set, f.entries, -1);
        this.bySet.get(f.set)?.delete(ref.key);
      }
      this.fragments.delete(ref.key);
    }
  }

  private count(set: string, entries: readonly string[], by: 1 | -1): void {
    let m = this.memberCounts.get(set);
    if (!m) this.memberCounts.set(set, (m = new Map<string, number>()));
    for (const e of new Set(entries.map(entryKey))) {
      const n = (m.get(e) ?? 0) + by;
      if (n > 0) m.set(e, n);
      else m.delete(e);
    }
  }

  /** Whether some object of this state puts `entry` (an entryKey) into set `set`. */
  hasMember(set: string, entry: string): boolean {
    return this.memberCounts.get(set)?.has(entry) ?? false;
  }

  /** The fragments of set `name` with their keys. */
  fragmentsOf(name: string): { key: string; value: IpsetEntries }[] {
    return [...(this.bySet.get(name) ?? [])].sort().map((key) => ({ key, value: this.fragments.get(key)! }));
  }

  /** Every fragment must name a declared set. */
  checkFragments(): void {
    for (const [key, f] of this.fragments)
      if (!this.sets.has(f.set))
        bad({ kind: RuleKind.IpsetEntries, key }, `set ${f.set} is not declared by an ipset.set object`);
  }

  /** The members of set `name` as the kernel spells them (entryKey), own entries and every fragment's. */
  members(name: string): Set<string> {
    return new Set(this.memberCounts.get(name)?.keys() ?? []);
  }

  iptablesObjects(): RuleObject[] {
    return [...this.objects.values()].filter(isIptablesObject);
  }
}

/** Differences between desired and read-back objects, one line each: `<kind> <key>: missing | not wanted | differs`. */
export function diffObjects(desired: Iterable<RuleObject>, actual: Iterable<RuleObject>): string[] {
  const want = new Map([...desired].map((o) => [id(o), o]));
  const have = new Map([...actual].map((o) => [id(o), o]));
  const lines: string[] = [];
  for (const [k, w] of want) {
    const a = have.get(k);
    if (a === undefined) lines.push(`${k.replace(':', ' ')}: missing`);
    else if (hashed(a).hash !== hashed(w).hash) lines.push(`${k.replace(':', ' ')}: differs${serviceDetail(w, a)}`);
  }
  for (const k of have.keys()) if (!want.has(k)) lines.push(`${k.replace(':', ' ')}: not wanted`);
  return lines.sort();
}

/** For a virtual service: which settings and real servers differ, e.g. ` (real server 10.244.1.2:80 missing)`. */
function serviceDetail(want: RuleObject, have: RuleObject): string {
  if (want.payload?.$case !== 'ipvsService' || have.payload?.$case !== 'ipvsService') return '';
  const w = want.payload.value;
  const h = have.payload.value;
  const out: string[] = [];
  for (const f of ['scheduler', 'flags', 'timeoutSeconds'] as const)
    if (w[f] !== h[f]) out.push(`${f} ${h[f]} instead of ${w[f]}`);
  const rs = (list: IpvsService['realServers']): Map<string, number> =>
    new Map(list.map((r) => [`${r.address}:${r.port}`, r.weight]));
  const wr = rs(w.realServers);
  const hr = rs(h.realServers);
  for (const [k, weight] of wr) {
    const got = hr.get(k);
    if (got === undefined) out.push(`real server ${k} missing`);
    else if (got !== weight) out.push(`real server ${k} weight ${got} instead of ${weight}`);
  }
  for (const k of hr.keys()) if (!wr.has(k)) out.push(`real server ${k} not wanted`);
  if (out.length === 0) out.push('real server order');
  return ` (${out.join('; ')})`;
}
