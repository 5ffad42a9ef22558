// Stale UDP conntrack cleanup, a node duty: what kube-proxy's pkg/proxy/conntrack CleanStaleEntries does after a
// sync that changed a UDP service's endpoints, driven by the node's conntrack.port duties (every mode).
//
// UDP has no connection to close: the conntrack entry of a flow keeps the NAT it got on its first packet (or the
// absence of one) for as long as packets keep coming, whatever the rules say now. So kube-proxy (1.32+) deletes,
// for every UDP service port that has endpoints, the entries whose original destination is one of the port's
// frontends (ClusterIP:port, external IP:port, load-balancer IP:port, or any address:NodePort) and whose reply
// source is not one of its serving endpoints: flows DNATed to an endpoint that is gone, and flows that were never
// DNATed because the port had no endpoints or did not exist yet. A port without endpoints is left alone: its stale
// flows go when it gets endpoints again.
//
// The compiler gives every UDP service port with serving endpoints a conntrack.port object (its frontends and
// endpoint IPs); kpx derives the deletions from the changes of those objects:
//  - a frontend that had endpoints before and still has: the flows DNATed to each endpoint IP the port lost,
//      conntrack -D -f ipv4 -p udp [--orig-dst IP] --orig-port-dst PORT --reply-src ENDPOINT
//  - a frontend that gains endpoints (the object is new, or the frontend is): every flow to it whose reply source
//    is not an endpoint it has now, found with conntrack -L and deleted by reply source.
// The commands run after the kernel transaction succeeded, inside the node's network namespace when there is one.
// A command that finds nothing exits 1 ("0 flow entries have been deleted"): not an error. Failures are logged
// and never fail the apply.
import { createCommandRunner, CommandError, type Command, type CommandRunner } from '@kpx/kernel';
import { RuleKind, type RuleObject as WireObject } from '@kpx/proto';
import { diffStates, objectIdOf, type RuleState } from '@kpx/ruleset';
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
  | {
      readonly kind: typeof StaleFlows.GoneEndpoint;
      readonly family: string;
      readonly servicePort: string;
      readonly frontend: UdpFrontend;
      readonly endpoint: string;
    }
  | {
      readonly kind: typeof StaleFlows.NewFrontend;
      readonly family: string;
      readonly servicePort: string;
      readonly frontend: UdpFrontend;
      readonly keep: readonly string[];
    };

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

/** A UDP service port with endpoints, as its conntrack.port object has it. */
interface PortView {
  /** By `ip:port`, or `*:nodePort`. */
  readonly frontends: Map<string, UdpFrontend>;
  readonly endpoints: Set<string>;
}

const DutyPrefix = `${RuleKind.ConntrackPort}:`;
const UdpOwnerSuffix = '/UDP';

/** IPv6 in its canonical text (as conntrack prints it); anything else as is. */
export function normalizeIP(ip: string): string {
  if (!ip.includes(':')) return ip;
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return ip;
  }
}

const frontendKey = (f: UdpFrontend): string => (f.ip === undefined ? `*:${f.port}` : `${f.ip}:${f.port}`);

/** The port a conntrack.port object describes; undefined without one (the port has no endpoints, or is gone). */
function portView(o: WireObject | undefined): PortView | undefined {
  const p = o?.payload;
  if (p?.$case !== 'conntrackPort' || p.value.protocol !== 'UDP') return undefined;
  const v = p.value;
  const frontends = new Map<string, UdpFrontend>();
  const add = (f: UdpFrontend): void => void frontends.set(frontendKey(f), f);
  for (const ip of v.ips) add({ ip: normalizeIP(ip), port: v.port });
  if (v.nodePort !== 0) add({ ip: undefined, port: v.nodePort });
  return { frontends, endpoints: new Set(v.endpoints.map(normalizeIP)) };
}

/** The stale UDP flows one change leaves behind, as kube-proxy would delete them. Pure. */
export function deriveConntrackDeletions({ family, before, after, changed }: DeriveInput): ConntrackDeletion[] {
  const out: ConntrackDeletion[] = [];
  for (const id of [...changed].filter((i) => i.startsWith(DutyPrefix)).sort()) {
    const was = portView(before(id));
    const now = portView(after(id));
    // kube-proxy: "a Service without endpoints does not require to clean the conntrack entries associated".
    if (now === undefined) continue;
    const owner = id.slice(DutyPrefix.length);
    const servicePort = owner.endsWith(UdpOwnerSuffix) ? owner.slice(0, -UdpOwnerSuffix.length) : owner;
    const gone = was === undefined ? [] : [...was.endpoints].filter((e) => !now.endpoints.has(e)).sort();
    const keep = [...now.endpoints].sort();
    for (const [key, frontend] of now.frontends) {
      if (was === undefined || !was.frontends.has(key))
        out.push({ kind: StaleFlows.NewFrontend, family, servicePort, frontend, keep });
      else
        for (const endpoint of gone)
          out.push({ kind: StaleFlows.GoneEndpoint, family, servicePort, frontend, endpoint });
    }
  }
  return out;
}

/** {@link deriveConntrackDeletions} for a delta the executor applied: `state` is after it, `change.previous` before. */
export function deletionsForChange(family: string, state: RuleState, change: AppliedChange): ConntrackDeletion[] {
  const after: ObjectLookup = (id) => state.objects.get(id)?.wire;
  const before: ObjectLookup = (id) =>
    change.previous.has(id) ? change.previous.get(id)?.wire : state.objects.get(id)?.wire;
  return deriveConntrackDeletions({ family, before, after, changed: change.previous.keys() });
}

/** {@link deriveConntrackDeletions} between two whole states (a resync; from an empty state on start). */
export function deletionsForRestore(family: string, before: RuleState, after: RuleState): ConntrackDeletion[] {
  const { upserts, deletes } = diffStates(before.objects, after.objects);
  return deriveConntrackDeletions({
    family,
    before: (id) => before.objects.get(id)?.wire,
    after: (id) => after.objects.get(id)?.wire,
    changed: [...upserts.map((o) => o.id), ...deletes.map(objectIdOf)],
  });
}

// ---- the conntrack CLI ----

const CommandTimeoutMs = 30_000;

function selector(family: string, frontend: UdpFrontend | undefined): string[] {
  const f = family === 'IPv6' ? 'ipv6' : 'ipv4';
  if (!frontend) return ['-f', f, '-p', 'udp'];
  return [
    '-f',
    f,
    '-p',
    'udp',
    ...(frontend.ip !== undefined ? ['--orig-dst', frontend.ip] : []),
    '--orig-port-dst',
    String(frontend.port),
  ];
}

/** Deletes the UDP flows of `frontend` whose reply source is `replySource` (kube-proxy's filterForIPPortNAT / filterForPortNAT). */
export function deleteCommand(family: string, frontend: UdpFrontend, replySource: string): Command {
  return {
    file: 'conntrack',
    args: ['-D', ...selector(family, frontend), '--reply-src', replySource],
    timeoutMs: CommandTimeoutMs,
  };
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
    const values = (name: string): string[] =>
      fields.filter((f) => f.startsWith(`${name}=`)).map((f) => f.slice(name.length + 1));
    const [origDst] = values('dst');
    const [origDport] = values('dport');
    const replySrc = values('src')[1];
    if (origDst === undefined || origDport === undefined || replySrc === undefined) continue;
    flows.push({ origDst: normalizeIP(origDst), origDstPort: Number(origDport), replySrc: normalizeIP(replySrc) });
  }
  return flows;
}

/** Reply sources of the flows to a frontend that just got endpoints that are not one of them. */
export function staleReplySources(
  flows: readonly ConntrackFlow[],
  d: Extract<ConntrackDeletion, { kind: 'new-frontend' }>,
): string[] {
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
      for (const d of fresh)
        for (const src of staleReplySources(flows, d)) addDelete(deleteCommand(family, d.frontend, src));
    } else {
      for (const d of fresh)
        for (const src of staleReplySources(await list(d.frontend), d))
          addDelete(deleteCommand(family, d.frontend, src));
    }
    let deleted = 0;
    for (const c of deletes.values()) {
      commands++;
      try {
        deleted += deletedCount((await this.runner.run(c)).stderr);
      } catch (err) {
        // Nothing matched: conntrack exits 1 saying it deleted 0 entries.
        if (
          err instanceof CommandError &&
          err.exitCode === 1 &&
          deletedCount(err.stderr) === 0 &&
          DeletedCount.test(err.stderr)
        )
          continue;
        errors.push(err);
      }
    }
    const result = { deletions: deletions.length, commands, deleted, failed: errors.length };
    const labels = { ip_family: family };
    if (deleted > 0) this.metrics?.conntrackEntriesDeleted.inc(labels, deleted);
    if (errors.length > 0) this.metrics?.conntrackFailures.inc(labels, errors.length);
    const ms = Math.round(performance.now() - t0);
    if (errors.length > 0) {
      this.logger.warn(
        { err: errors[0], family, failed: errors.length, commands, deleted, ms },
        'stale UDP conntrack cleanup failed; those flows stay until they time out',
      );
    } else {
      this.logger[deleted > 0 ? 'info' : 'debug'](
        { family, deleted, commands, ms, servicePorts: [...new Set(deletions.map((d) => d.servicePort))].slice(0, 20) },
        'deleted stale UDP conntrack entries',
      );
    }
    return result;
  }
}

function deletedCount(stderr: string): number {
  const m = DeletedCount.exec(stderr);
  return m?.[1] !== undefined ? Number(m[1]) : 0;
}
