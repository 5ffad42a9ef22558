// Stale UDP conntrack cleanup, a node duty: what kube-proxy's pkg/proxy/conntrack CleanStaleEntries does after a
// sync that changed a UDP service's endpoints, derived here from one applied change of the node's rule objects.
//
// UDP has no connection to close: the conntrack entry of a flow keeps the NAT it got on its first packet (or the
// absence of one) for as long as packets keep coming, whatever the rules say now. So kube-proxy (1.32+) deletes,
// for every UDP service port that has endpoints, the entries whose original destination is one of the port's
// frontends (ClusterIP:port, external IP:port, load-balancer IP:port, or any address:NodePort) and whose reply
// source is not one of its endpoints: flows DNATed to an endpoint that is gone, and flows that were never DNATed
// because the port had no endpoints or did not exist yet. A port without endpoints is left alone: its stale flows
// go when it gets endpoints again.
//
// kpx derives the same from the rules, for the UDP service ports a change touched (their fragments of the shared
// chains, or their KUBE-SEP chains):
//  - a frontend that had endpoints before and still has: the flows DNATed to each endpoint IP the port lost,
//      conntrack -D -f ipv4 -p udp [--orig-dst IP] --orig-port-dst PORT --reply-src ENDPOINT
//  - a frontend that gains endpoints (it REJECTed, or did not exist): every flow to it whose reply source is not
//    an endpoint it has now, found with conntrack -L and deleted by reply source.
// The commands run after the kernel transaction succeeded, inside the node's network namespace when there is one.
// A command that finds nothing exits 1 ("0 flow entries have been deleted"): not an error. Failures are logged
// and never fail the apply.
import { splitArgs, createCommandRunner, CommandError, type Command, type CommandRunner } from '@kpx/kernel';
import type { RuleObject as WireObject } from '@kpx/proto';
import type { RuleState } from '@kpx/ruleset';
import type { ExecutorMetrics, Logger } from '@kpx/telemetry';
import type { AppliedChange } from './backend.js';

/** Where a UDP service port is reached on this node. */
export interface UdpFrontend {
  /** ClusterIP, external IP or load-balancer IP; undefined for a NodePort (on any local address, as kube-proxy). */
  readonly ip: string | undefined;
  /** The service port, or the NodePort. */
  readonly port: number;
}

export const StaleFlows = {
  /** Flows of a frontend DNATed to an endpoint the service port no longer has. */
  GoneEndpoint: 'gone-endpoint',
  /** Flows of a frontend that just got endpoints, not DNATed to one of them (never DNATed, or to an old one). */
  NewFrontend: 'new-frontend',
} as const;

export type ConntrackDeletion =
  | { readonly kind: typeof StaleFlows.GoneEndpoint; readonly family: string; readonly servicePort: string; readonly frontend: UdpFrontend; readonly endpoint: string }
  | { readonly kind: typeof StaleFlows.NewFrontend; readonly family: string; readonly servicePort: string; readonly frontend: UdpFrontend; readonly keep: readonly string[] };

/** The object of an id (`kind:key`) in one state, before or after a change. */
export type ObjectLookup = (id: string) => WireObject | undefined;

export interface DeriveInput {
  /** "IPv4" or "IPv6". */
  readonly family: string;
  readonly before: ObjectLookup;
  readonly after: ObjectLookup;
  /** Ids of the objects the change upserted or deleted. */
  readonly changed: Iterable<string>;
}

/** The UDP side of one service port as this node's rules have it. */
interface PortView {
  /** By `ip:port`, or `*:nodePort`. */
  readonly frontends: Map<string, UdpFrontend>;
  /** A REJECT rule: the port has no endpoints at all. */
  readonly rejected: boolean;
  /** Endpoint IPs the port's nat chains DNAT to. */
  readonly endpoints: Set<string>;
}

const RulesPrefix = 'iptables.rules:';
const ChainPrefix = 'iptables.chain:';
const UdpOwnerSuffix = '/UDP';
/** Chains of one service port a frontend's nat rule jumps into (and they into each other and the KUBE-SEPs). */
const ServicePortChain = /^KUBE-(SVC|SVL|EXT|FW|SEP)-/;
const EndpointChainId = /^iptables\.chain:nat\/KUBE-SEP-/;

interface ParsedRule {
  proto?: string;
  dst?: string;
  dport?: number;
  target?: string;
  toDestination?: string;
  dstTypeLocal: boolean;
  comment?: string;
}

/** The parts of an iptables rule spec the derivation reads; negated matches (`! -d X`) are skipped. */
function parseRule(spec: string): ParsedRule {
  const args = splitArgs(spec);
  const r: ParsedRule = { dstTypeLocal: false };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = args[i + 1];
    if (args[i - 1] === '!' || value === undefined) continue;
    switch (flag) {
      case '-p':
      case '--protocol':
        r.proto = value.toLowerCase();
        break;
      case '-d':
      case '--destination':
        r.dst = normalizeIP(value.replace(/\/(32|128)$/, ''));
        break;
      case '--dport':
      case '--destination-port':
        r.dport = Number(value);
        break;
      case '-j':
      case '--jump':
      case '-g':
      case '--goto':
        r.target = value;
        break;
      case '--to-destination':
        r.toDestination = value;
        break;
      case '--dst-type':
        r.dstTypeLocal = value === 'LOCAL';
        break;
      case '--comment':
        r.comment = value;
        break;
    }
  }
  return r;
}

/** IPv6 in its canonical text (as conntrack prints it); anything else as is. */
export function normalizeIP(ip: string): string {
  if (!ip.includes(':')) return ip;
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return ip;
  }
}

/** The IP of a DNAT `--to-destination`: `10.0.0.1:80`, `[fd00::1]:80`, or a bare address. */
function destinationIP(to: string): string {
  const v6 = /^\[([^\]]+)\]/.exec(to);
  if (v6?.[1] !== undefined) return normalizeIP(v6[1]);
  const colons = to.split(':').length - 1;
  return normalizeIP(colons === 1 ? to.slice(0, to.indexOf(':')) : to);
}

function objectRules(o: WireObject | undefined): readonly string[] {
  const p = o?.payload;
  if (p?.$case === 'iptablesChain' || p?.$case === 'iptablesRules') return p.value.rules;
  return [];
}

const frontendKey = (f: UdpFrontend): string => (f.ip === undefined ? `*:${f.port}` : `${f.ip}:${f.port}`);

function portView(owner: string, lookup: ObjectLookup): PortView {
  const frontends = new Map<string, UdpFrontend>();
  const add = (f: UdpFrontend): void => void frontends.set(frontendKey(f), f);
  const entries: string[] = [];
  let rejected = false;
  for (const chain of ['KUBE-SERVICES', 'KUBE-NODEPORTS']) {
    for (const spec of objectRules(lookup(`${RulesPrefix}nat/${chain}/${owner}`))) {
      const r = parseRule(spec);
      if (r.proto !== 'udp' || r.dport === undefined || r.target === undefined || !ServicePortChain.test(r.target)) continue;
      if (chain === 'KUBE-NODEPORTS') add({ ip: undefined, port: r.dport });
      else if (r.dst !== undefined) add({ ip: r.dst, port: r.dport });
      else continue;
      entries.push(r.target);
    }
  }
  // No (usable) endpoints: kube-proxy REJECTs (none at all) or DROPs (none for that traffic policy) in filter.
  for (const chain of ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES']) {
    for (const spec of objectRules(lookup(`${RulesPrefix}filter/${chain}/${owner}`))) {
      const r = parseRule(spec);
      if (r.proto !== 'udp' || r.dport === undefined || (r.target !== 'REJECT' && r.target !== 'DROP')) continue;
      if (r.dstTypeLocal) add({ ip: undefined, port: r.dport });
      else if (r.dst !== undefined) add({ ip: r.dst, port: r.dport });
      if (r.target === 'REJECT') rejected = true;
    }
  }
  return { frontends, rejected, endpoints: endpointsFrom(entries, lookup) };
}

/** The DNAT destinations reachable from these nat chains (KUBE-SVC/SVL/EXT/FW into KUBE-SEP). */
function endpointsFrom(chains: readonly string[], lookup: ObjectLookup): Set<string> {
  const endpoints = new Set<string>();
  const seen = new Set<string>(chains);
  const queue = [...seen];
  for (let chain = queue.pop(); chain !== undefined; chain = queue.pop()) {
    for (const spec of objectRules(lookup(`${ChainPrefix}nat/${chain}`))) {
      const r = parseRule(spec);
      if (r.target === 'DNAT' && r.toDestination !== undefined) endpoints.add(destinationIP(r.toDestination));
      else if (r.target !== undefined && ServicePortChain.test(r.target) && !seen.has(r.target)) {
        seen.add(r.target);
        queue.push(r.target);
      }
    }
  }
  return endpoints;
}

/** UDP service ports (compiler owners `ns/name:port/UDP`) whose fragments or endpoint chains the change touched. */
function touchedUdpPorts(changed: Iterable<string>, before: ObjectLookup, after: ObjectLookup): Set<string> {
  const owners = new Set<string>();
  for (const id of changed) {
    if (id.startsWith(RulesPrefix)) {
      // table/CHAIN/OWNER, and an owner holds slashes itself.
      const owner = id.slice(RulesPrefix.length).split('/').slice(2).join('/');
      if (owner.endsWith(UdpOwnerSuffix)) owners.add(owner);
    } else if (EndpointChainId.test(id)) {
      // A KUBE-SEP chain's DNAT rule carries the service port's name as its comment.
      for (const o of [before(id), after(id)]) {
        for (const spec of objectRules(o)) {
          const r = parseRule(spec);
          if (r.target === 'DNAT' && r.proto === 'udp' && r.comment) owners.add(`${r.comment}${UdpOwnerSuffix}`);
        }
      }
    }
  }
  return owners;
}

const hasEndpoints = (v: PortView): boolean => v.frontends.size > 0 && !v.rejected;

/** The stale UDP flows one change leaves behind, as kube-proxy would delete them. Pure. */
export function deriveConntrackDeletions({ family, before, after, changed }: DeriveInput): ConntrackDeletion[] {
  const out: ConntrackDeletion[] = [];
  for (const owner of [...touchedUdpPorts(changed, before, after)].sort()) {
    const was = portView(owner, before);
    const now = portView(owner, after);
    // kube-proxy: "a Service without endpoints does not require to clean the conntrack entries associated".
    if (!hasEndpoints(now)) continue;
    const servicePort = owner.slice(0, -UdpOwnerSuffix.length);
    const gone = [...was.endpoints].filter((e) => !now.endpoints.has(e)).sort();
    const keep = [...now.endpoints].sort();
    for (const [key, frontend] of now.frontends) {
      if (!hasEndpoints(was) || !was.frontends.has(key)) out.push({ kind: StaleFlows.NewFrontend, family, servicePort, frontend, keep });
      else for (const endpoint of gone) out.push({ kind: StaleFlows.GoneEndpoint, family, servicePort, frontend, endpoint });
    }
  }
  return out;
}

/** {@link deriveConntrackDeletions} for a delta the executor applied: `state` is after it, `change.previous` before. */
export function deletionsForChange(family: string, state: RuleState, change: AppliedChange): ConntrackDeletion[] {
  const after: ObjectLookup = (id) => state.objects.get(id)?.wire;
  const before: ObjectLookup = (id) => (change.previous.has(id) ? change.previous.get(id)?.wire : state.objects.get(id)?.wire);
  return deriveConntrackDeletions({ family, before, after, changed: change.previous.keys() });
}

/** {@link deriveConntrackDeletions} between two whole states (a resync; from an empty state on start). */
export function deletionsForRestore(family: string, before: RuleState, after: RuleState): ConntrackDeletion[] {
  const changed = new Set<string>();
  for (const [id, o] of after.objects) if (before.objects.get(id)?.hash !== o.hash) changed.add(id);
  for (const id of before.objects.keys()) if (!after.objects.has(id)) changed.add(id);
  return deriveConntrackDeletions({ family, before: (id) => before.objects.get(id)?.wire, after: (id) => after.objects.get(id)?.wire, changed });
}

// ---- the conntrack CLI ----

const CommandTimeoutMs = 30_000;

function selector(family: string, frontend: UdpFrontend | undefined): string[] {
  const f = family === 'IPv6' ? 'ipv6' : 'ipv4';
  if (!frontend) return ['-f', f, '-p', 'udp'];
  return ['-f', f, '-p', 'udp', ...(frontend.ip !== undefined ? ['--orig-dst', frontend.ip] : []), '--orig-port-dst', String(frontend.port)];
}

/** Deletes the UDP flows of `frontend` whose reply source is `replySource` (kube-proxy's filterForIPPortNAT / filterForPortNAT). */
export function deleteCommand(family: string, frontend: UdpFrontend, replySource: string): Command {
  return { file: 'conntrack', args: ['-D', ...selector(family, frontend), '--reply-src', replySource], timeoutMs: CommandTimeoutMs };
}

/** Lists the UDP flows of `frontend`, or every UDP flow of the family. */
export function listCommand(family: string, frontend?: UdpFrontend): Command {
  return { file: 'conntrack', args: ['-L', ...selector(family, frontend)], timeoutMs: CommandTimeoutMs };
}

/** One flow of `conntrack -L`: its original destination and its reply source. */
export interface ConntrackFlow {
  readonly origDst: string;
  readonly origDstPort: number;
  readonly replySrc: string;
}

/**
 * Parses `conntrack -L` output: `udp 17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=C dst=D sport=… dport=…`,
 * the first tuple the original direction, the second the reply.
 */
export function parseConntrackList(text: string): ConntrackFlow[] {
  const flows: ConntrackFlow[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const values = (name: string): string[] => fields.filter((f) => f.startsWith(`${name}=`)).map((f) => f.slice(name.length + 1));
    const [origDst] = values('dst');
    const [origDport] = values('dport');
    const replySrc = values('src')[1];
    if (origDst === undefined || origDport === undefined || replySrc === undefined) continue;
    flows.push({ origDst: normalizeIP(origDst), origDstPort: Number(origDport), replySrc: normalizeIP(replySrc) });
  }
  return flows;
}

/** Reply sources of the flows to a frontend that just got endpoints that are not one of them. */
export function staleReplySources(flows: readonly ConntrackFlow[], d: Extract<ConntrackDeletion, { kind: 'new-frontend' }>): string[] {
  const keep = new Set(d.keep.map(normalizeIP));
  const ip = d.frontend.ip === undefined ? undefined : normalizeIP(d.frontend.ip);
  const stale = new Set<string>();
  for (const f of flows) {
    if (f.origDstPort !== d.frontend.port || (ip !== undefined && f.origDst !== ip)) continue;
    if (!keep.has(f.replySrc)) stale.add(f.replySrc);
  }
  return [...stale].sort();
}

const DeletedCount = /(\d+) flow entries have been deleted/;

// ---- the cleaner the executor calls ----

export interface ConntrackCleanupResult {
  /** Deletions derived from the change. */
  readonly deletions: number;
  /** conntrack commands run. */
  readonly commands: number;
  /** Flow entries the kernel deleted. */
  readonly deleted: number;
  /** Commands that failed (logged). */
  readonly failed: number;
}

/** Deletes the stale UDP flows of each applied change. Its methods never reject: failures are logged. */
export interface ConntrackCleaner {
  /** After a delta was applied: `state` is the state after it, `change.previous` the objects before. */
  afterApply(family: string, state: RuleState, change: AppliedChange): Promise<ConntrackCleanupResult>;
  /** After a full restore from `before` to `after` (a resync; `before` is empty on start). */
  afterRestore(family: string, before: RuleState, after: RuleState): Promise<ConntrackCleanupResult>;
  /** Runs derived deletions. */
  run(family: string, deletions: readonly ConntrackDeletion[]): Promise<ConntrackCleanupResult>;
}

export interface ConntrackCleanerOptions {
  readonly logger: Logger;
  /** Run `conntrack` inside this network namespace. */
  readonly netns?: string;
  /** Runs the commands (default: createCommandRunner({ netns })). */
  readonly runner?: CommandRunner;
  /** More new frontends than this in one change: list the family's UDP flows once instead of per frontend (default 16). */
  readonly listAllAbove?: number;
  /** Counts the entries deleted and the commands (or derivations) that failed. */
  readonly metrics?: Pick<ExecutorMetrics, 'conntrackEntriesDeleted' | 'conntrackFailures'>;
}

export function createConntrackCleaner(opts: ConntrackCleanerOptions): ConntrackCleaner {
  return new CliConntrackCleaner(opts);
}

const Nothing: ConntrackCleanupResult = { deletions: 0, commands: 0, deleted: 0, failed: 0 };

class CliConntrackCleaner implements ConntrackCleaner {
  private readonly runner: CommandRunner;
  private readonly logger: Logger;
  private readonly listAllAbove: number;
  private readonly metrics: ConntrackCleanerOptions['metrics'];

  constructor(opts: ConntrackCleanerOptions) {
    this.runner = opts.runner ?? createCommandRunner(opts.netns !== undefined ? { netns: opts.netns } : {});
    this.logger = opts.logger;
    this.listAllAbove = opts.listAllAbove ?? 16;
    this.metrics = opts.metrics;
  }

  afterApply(family: string, state: RuleState, change: AppliedChange): Promise<ConntrackCleanupResult> {
    return this.derived(family, () => deletionsForChange(family, state, change));
  }

  afterRestore(family: string, before: RuleState, after: RuleState): Promise<ConntrackCleanupResult> {
    return this.derived(family, () => deletionsForRestore(family, before, after));
  }

  private async derived(family: string, derive: () => ConntrackDeletion[]): Promise<ConntrackCleanupResult> {
    let deletions: ConntrackDeletion[];
    try {
      deletions = derive();
    } catch (err) {
      this.logger.error({ err, family }, 'could not derive the stale UDP conntrack entries of a change');
      this.metrics?.conntrackFailures.inc({ ip_family: family });
      return { ...Nothing, failed: 1 };
    }
    return this.run(family, deletions);
  }

  async run(family: string, deletions: readonly ConntrackDeletion[]): Promise<ConntrackCleanupResult> {
    if (deletions.length === 0) return Nothing;
    const t0 = performance.now();
    const errors: unknown[] = [];
    let commands = 0;
    const deletes = new Map<string, Command>();
    const addDelete = (c: Command): void => void deletes.set(c.args.join(' '), c);
    const fresh: Extract<ConntrackDeletion, { kind: 'new-frontend' }>[] = [];
    for (const d of deletions) {
      if (d.kind === StaleFlows.GoneEndpoint) addDelete(deleteCommand(family, d.frontend, d.endpoint));
      else fresh.push(d);
    }
    const list = async (frontend?: UdpFrontend): Promise<ConntrackFlow[]> => {
      commands++;
      try {
        return parseConntrackList((await this.runner.run(listCommand(family, frontend))).stdout);
      } catch (err) {
        errors.push(err);
        return [];
      }
    };
    if (fresh.length > this.listAllAbove) {
      const flows = await list();
      for (const d of fresh) for (const src of staleReplySources(flows, d)) addDelete(deleteCommand(family, d.frontend, src));
    } else {
      for (const d of fresh) for (const src of staleReplySources(await list(d.frontend), d)) addDelete(deleteCommand(family, d.frontend, src));
    }
    let deleted = 0;
    for (const c of deletes.values()) {
      commands++;
      try {
        deleted += deletedCount((await this.runner.run(c)).stderr);
      } catch (err) {
        // Nothing matched: conntrack exits 1 saying it deleted 0 entries.
        if (err instanceof CommandError && err.exitCode === 1 && deletedCount(err.stderr) === 0 && DeletedCount.test(err.stderr)) continue;
        errors.push(err);
      }
    }
    const result = { deletions: deletions.length, commands, deleted, failed: errors.length };
    const labels = { ip_family: family };
    if (deleted > 0) this.metrics?.conntrackEntriesDeleted.inc(labels, deleted);
    if (errors.length > 0) this.metrics?.conntrackFailures.inc(labels, errors.length);
    const ms = Math.round(performance.now() - t0);
    if (errors.length > 0) {
      this.logger.warn({ err: errors[0], family, failed: errors.length, commands, deleted, ms }, 'stale UDP conntrack cleanup failed; those flows stay until they time out');
    } else {
      this.logger[deleted > 0 ? 'info' : 'debug']({ family, deleted, commands, ms, servicePorts: [...new Set(deletions.map((d) => d.servicePort))].slice(0, 20) }, 'deleted stale UDP conntrack entries');
    }
    return result;
  }
}

function deletedCount(stderr: string): number {
  const m = DeletedCount.exec(stderr);
  return m?.[1] !== undefined ? Number(m[1]) : 0;
}
