// IPVS rule set -> text: the virtual servers as `ipvsadm -Sn` prints them, the ipsets as `ipset save` prints them
// (and `ipset restore` reads them), the companion iptables rules as iptables-restore input.
import { joinHostPort } from '@kpx/model';
import { RestoreFormat, renderRestore } from '../iptables/render.js';
import { RuleKind, type IpsetSetObject, type IpvsServiceObject, type NodeRuleSet } from '../ruleset.js';
import { IpsetType, IpvsFlag } from './names.js';

const SERVICE_FLAG: Readonly<Record<string, string>> = { TCP: '-t', UDP: '-u', SCTP: '--sctp-service' };

/** ipvsadm's name of the scheduler flag 0x10 (IP_VS_SVC_F_SCHED2) for the schedulers that have one. */
const SCHED2_NAME: Readonly<Record<string, string>> = { sh: 'sh-port', mh: 'mh-port' };

const byKey = <T extends { key: string }>(a: T, b: T): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** One virtual server and its real servers, as `ipvsadm -Sn` lines (no trailing newline). */
export function ipvsadmLines(s: IpvsServiceObject): string[] {
  const vs = `${SERVICE_FLAG[s.protocol] ?? '-t'} ${joinHostPort(s.address, s.port)}`;
  let head = `-A ${vs} -s ${s.scheduler}`;
  if (s.flags & IpvsFlag.SourceHash) head += ` -b ${SCHED2_NAME[s.scheduler] ?? 'flag-2'}`;
  if (s.flags & IpvsFlag.Persistent) head += ` -p ${s.timeoutSeconds}`;
  return [head, ...s.realServers.map((r) => `-a ${vs} -r ${joinHostPort(r.address, r.port)} -m -w ${r.weight}`)];
}

/** Every virtual server of the rule set, in key order, as `ipvsadm -Sn` prints them (`ipvsadm -R` reads them). */
export function renderIpvsadm(rs: NodeRuleSet): string {
  const services = rs.objects.filter((o): o is IpvsServiceObject => o.kind === RuleKind.IpvsService).sort(byKey);
  return services.flatMap((s) => ipvsadmLines(s).map((l) => `${l}\n`)).join('');
}

/** The members of every set: its own entries and its fragments', each once, sorted. */
export function ipsetMembers(rs: NodeRuleSet): Map<string, string[]> {
  const members = new Map<string, Set<string>>();
  for (const o of rs.objects) {
    if (o.kind !== RuleKind.IpsetSet && o.kind !== RuleKind.IpsetEntries) continue;
    const name = o.kind === RuleKind.IpsetSet ? o.name : o.set;
    let s = members.get(name);
    if (!s) members.set(name, (s = new Set()));
    for (const e of o.entries) s.add(e);
  }
  return new Map([...members].map(([name, s]) => [name, [...s].sort()]));
}

/** The `create` line of a set (without `create`'s trailing newline). */
export function ipsetCreateLine(s: IpsetSetObject): string {
  const parts = ['create', s.name, s.type];
  if (s.type === IpsetType.BitmapPort) {
    if (s.portRange) parts.push('range', s.portRange);
  } else {
    if (s.family) parts.push('family', s.family);
    if (s.hashSize) parts.push('hashsize', String(s.hashSize));
    if (s.maxElem) parts.push('maxelem', String(s.maxElem));
  }
  return parts.join(' ');
}

/**
 * The rule set's ipsets as `ipset restore` input: per set (in name order) its `create` line, then an `add` line
 * per member. Members of a set no IpsetSet declares are left out.
 */
export function renderIpsetRestore(rs: NodeRuleSet): string {
  const sets = rs.objects.filter((o): o is IpsetSetObject => o.kind === RuleKind.IpsetSet).sort(byKey);
  const members = ipsetMembers(rs);
  const out: string[] = [];
  for (const s of sets) {
    out.push(`${ipsetCreateLine(s)}\n`);
    for (const e of members.get(s.name) ?? []) out.push(`add ${s.name} ${e}\n`);
  }
  return out.join('');
}

/**
 * The whole IPVS state of a node for review: the virtual servers (`ipvsadm -Sn`), the ipsets (`ipset save`), the
 * companion iptables rules (iptables-restore input), each section headed by a `#` line naming its tool.
 */
export function renderIpvsRuleSet(rs: NodeRuleSet, format: RestoreFormat = RestoreFormat.Full): string {
  const ip6 = rs.family === 'IPv6' ? 'ip6' : 'ip';
  return [
    '# ipvsadm -Sn\n',
    renderIpvsadm(rs),
    '# ipset save\n',
    renderIpsetRestore(rs),
    `# ${ip6}tables-save\n`,
    renderRestore(rs, format),
  ].join('');
}
