// Defence in depth on the node (issue #15, item 4): the executor refuses any object that is not kpx's own before
// anything reaches the kernel, whoever published it. kpx owns the KUBE-* iptables chains (isKubeProxyChain, plus
// KUBE-FIREWALL when its state holds it), jumps from builtin chains to those chains, the KUBE-* ipsets, the VIPs on
// kube-ipvs0 and the `kube-proxy` nftables table. A rule's text must stay inside its chain: iptables-restore reads
// it as one line of a transaction, so a line break, a table header, COMMIT or another command would let it write
// outside kpx's chains.
import { isIP } from 'node:net';
import type { RuleObject } from '@kpx/proto';
import { BUILTIN_CHAINS, isKubeProxyChain } from './iptables/commands.js';
import { splitArgs } from './iptables/rule-text.js';

/** Why an object is not kpx's own; thrown by assertOwnObjects. */
export class ForbiddenObjectError extends Error {
  override readonly name = 'ForbiddenObjectError';
  constructor(
    readonly kind: string,
    readonly key: string,
    readonly why: string,
  ) {
    super(`object ${kind} ${JSON.stringify(key)} is not kpx's own: ${why}`);
  }
}

/** Tables kpx writes iptables rules into. */
const TABLES: ReadonlySet<string> = new Set(['filter', 'nat', 'mangle', 'raw']);
/** The interface IPVS mode binds service VIPs to. */
export const IPVS_DUMMY_INTERFACE = 'kube-ipvs0';
/** kube-proxy's nftables table. */
const NFT_TABLE = 'kube-proxy';
/** ipset names: at most 31 characters. */
const IPSET_NAME = /^KUBE-[A-Za-z0-9_.:-]{1,26}$/;

/**
 * iptables(-restore) commands. A rule as kpx carries it is the spec after `-A CHAIN`: one of these in it would
 * act on another chain, or on the table.
 */
const COMMANDS: ReadonlySet<string> = new Set([
  '-A',
  '--append',
  '-I',
  '--insert',
  '-D',
  '--delete',
  '-R',
  '--replace',
  '-F',
  '--flush',
  '-X',
  '--delete-chain',
  '-P',
  '--policy',
  '-N',
  '--new-chain',
  '-E',
  '--rename-chain',
  '-Z',
  '--zero',
  '-L',
  '--list',
  '-S',
  '--list-rules',
  '-C',
  '--check',
]);
const JUMPS: ReadonlySet<string> = new Set(['-j', '--jump', '-g', '--goto']);

/** Whether kpx may write the iptables chain `name`. */
export function isKpxChain(name: string): boolean {
  return isKubeProxyChain(name) || name === 'KUBE-FIREWALL';
}

/** Why a rule's text could leave its chain, or undefined. */
export function forbiddenRuleText(rule: string): string | undefined {
  if (/[\n\r\0]/.test(rule)) return `rule ${JSON.stringify(rule)} holds a line break or NUL`;
  const args = splitArgs(rule);
  const first = args[0] ?? '';
  if (first.startsWith('*') || first.startsWith(':') || first.startsWith('#'))
    return `rule ${JSON.stringify(rule)} starts like a table header, chain declaration or comment line`;
  for (const a of args) {
    if (a === 'COMMIT') return `rule ${JSON.stringify(rule)} holds COMMIT`;
    if (COMMANDS.has(a)) return `rule ${JSON.stringify(rule)} holds the command ${a}`;
  }
  return undefined;
}

/** The targets of every `-j`/`-g` of a rule. */
function jumpTargets(rule: string): string[] {
  const args = splitArgs(rule);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) if (JUMPS.has(args[i] ?? '')) out.push(args[i + 1] ?? '');
  return out;
}

function firstForbidden(rules: readonly string[]): string | undefined {
  for (const r of rules) {
    const why = forbiddenRuleText(r);
    if (why) return why;
  }
  return undefined;
}

function forbiddenTable(table: string): string | undefined {
  return TABLES.has(table) ? undefined : `table ${JSON.stringify(table)} is not one kpx writes`;
}

function forbiddenIpsetEntries(entries: readonly string[]): string | undefined {
  const bad = entries.find((e) => /[\s\0]/.test(e) || e === '');
  return bad === undefined ? undefined : `ipset entry ${JSON.stringify(bad)} holds a blank, a line break or NUL`;
}

/** Why `o` is not an object kpx may apply on a node, or undefined when it is. */
export function forbiddenObject(o: RuleObject): string | undefined {
  const p = o.payload;
  if (!p) return 'no payload';
  switch (p.$case) {
    case 'iptablesChain': {
      const v = p.value;
      if (!isKpxChain(v.name)) return `chain ${JSON.stringify(v.name)} is outside kpx's chains (KUBE-*)`;
      return forbiddenTable(v.table) ?? firstForbidden(v.rules);
    }
    case 'iptablesRules': {
      const v = p.value;
      if (!isKpxChain(v.chain)) return `chain ${JSON.stringify(v.chain)} is outside kpx's chains (KUBE-*)`;
      return forbiddenTable(v.table) ?? firstForbidden(v.rules);
    }
    case 'iptablesJump': {
      const v = p.value;
      if (!BUILTIN_CHAINS.has(v.chain)) return `jump from ${JSON.stringify(v.chain)}, not a builtin chain`;
      if (!isKpxChain(v.target)) return `jump from ${v.chain} to ${JSON.stringify(v.target)}, not a kpx chain`;
      const targets = jumpTargets(v.rule);
      if (targets.length !== 1 || targets[0] !== v.target)
        return `rule ${JSON.stringify(v.rule)} of a jump object must jump to ${v.target} only`;
      return forbiddenTable(v.table) ?? forbiddenRuleText(v.rule);
    }
    case 'ipvsAddress': {
      const v = p.value;
      if (v.interface !== IPVS_DUMMY_INTERFACE)
        return `address on interface ${JSON.stringify(v.interface)}, not ${IPVS_DUMMY_INTERFACE}`;
      if (isIP(v.address) === 0) return `address ${JSON.stringify(v.address)} is not an IP address`;
      return undefined;
    }
    case 'ipvsService': {
      const v = p.value;
      const bad = [v.address, ...v.realServers.map((r) => r.address)].find((a) => isIP(a) === 0);
      return bad === undefined ? undefined : `address ${JSON.stringify(bad)} is not an IP address`;
    }
    case 'ipsetSet': {
      const v = p.value;
      if (!IPSET_NAME.test(v.name)) return `ipset ${JSON.stringify(v.name)} is outside kpx's sets (KUBE-*)`;
      if (/[\s\0]/.test(v.type + v.family + v.portRange) || /[\n\r\0]/.test(v.comment))
        return `ipset ${v.name}: a field holds a line break or NUL`;
      return forbiddenIpsetEntries(v.entries);
    }
    case 'ipsetEntries': {
      const v = p.value;
      if (!IPSET_NAME.test(v.set)) return `ipset ${JSON.stringify(v.set)} is outside kpx's sets (KUBE-*)`;
      return forbiddenIpsetEntries(v.entries);
    }
    case 'nftChain':
    case 'nftSet':
    case 'nftMap': {
      const v = p.value;
      if (v.table !== NFT_TABLE) return `nftables table ${JSON.stringify(v.table)} is not ${NFT_TABLE}`;
      const texts = [v.name, v.comment, ...('rules' in v ? v.rules : v.elements)];
      const bad = texts.find((t) => /[\n\r\0;]/.test(t));
      return bad === undefined ? undefined : `nftables text ${JSON.stringify(bad)} holds a line break, NUL or ';'`;
    }
    case 'healthCheckService':
      return undefined;
    case 'conntrackPort': {
      // The executor hands these to the conntrack CLI as arguments: only IP addresses, never an option.
      const v = p.value;
      if (v.protocol !== 'UDP') return `conntrack cleanup for protocol ${JSON.stringify(v.protocol)}, not UDP`;
      const bad = [...v.ips, ...v.endpoints].find((a) => isIP(a) === 0);
      return bad === undefined ? undefined : `address ${JSON.stringify(bad)} is not an IP address`;
    }
    default:
      return `payload ${(p as { $case: string }).$case} is not one kpx applies`;
  }
}

/** The first object of `objects` that is not kpx's own, with why; undefined when all are. */
export function findForbiddenObject(objects: Iterable<RuleObject>): ForbiddenObjectError | undefined {
  for (const o of objects) {
    const why = forbiddenObject(o);
    if (why !== undefined) return new ForbiddenObjectError(o.kind, o.key, why);
  }
  return undefined;
}

/** Throws ForbiddenObjectError for the first object that is not kpx's own. */
export function assertOwnObjects(objects: Iterable<RuleObject>): void {
  const err = findForbiddenObject(objects);
  if (err) throw err;
}
