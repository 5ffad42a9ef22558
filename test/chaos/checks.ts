// The final checks of a chaos run. Each returns what it found wrong (one line per problem) and never throws for
// a finding, so that one report names every failed check. What "right" is comes from outside the system under
// test: each node's digest is compiled here from the final manifests (as `kpx render` does), the stream and the
// audit log are read raw from JetStream, and real packets are sent in the namespaces.
import { connect } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { compileIptables, iptablesOptionsFromConfig, toWire } from '@kpx/compiler';
import { IPFamily, loadClusterState, readKubeProxyConfigFile, readManifestDir } from '@kpx/model';
import { Delta } from '@kpx/proto';
import { digestOf } from '@kpx/ruleset';
import { listSnapshots } from '@kpx/transport';
import { main } from '@kpx/cli';
import type { ProbeResult, Topology } from '@kpx/testing';
import { expectedBackends, vipOf, WebService, type ClusterModel, type ServiceSpec } from './model.js';

export const Families = [IPFamily.IPv4, IPFamily.IPv6] as const;
const key = (node: string, family: string): string => `${node}/${family}`;

/** Every node and family of the manifests in `dir`, compiled here, and its digest: `node/family` → digest. */
export async function independentDigests(dir: string, configFile: string): Promise<Map<string, string>> {
  const { config } = await readKubeProxyConfigFile(configFile);
  const { state } = loadClusterState(await readManifestDir(dir));
  const out = new Map<string, string>();
  for (const node of state.nodeNames()) {
    for (const family of Families) {
      const ruleSet = compileIptables({ state, nodeName: node, options: iptablesOptionsFromConfig(config, family) });
      out.set(key(node, family), digestOf(ruleSet.objects.map(toWire)));
    }
  }
  return out;
}

/** `kpx …` in this process; its stdout and exit status. */
async function kpx(argv: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main([...argv], {
    stdout: (t) => (out += typeof t === 'string' ? t : Buffer.from(t).toString()),
    stderr: (t) => (err += t),
  });
  return { code, out, err };
}

export interface NodeStatus {
  node: string;
  ipFamily: string;
  desiredGeneration: number;
  desiredDigest: string;
  ackedGeneration: number;
  ackedDigest: string;
  actualDigest: string;
  inSync: boolean;
  lastError: string;
}

/** `kpx status -o json`; undefined when the controller does not answer. */
export async function fetchStatus(controller: string): Promise<NodeStatus[] | undefined> {
  try {
    const r = await kpx(['status', '--controller', controller, '-o', 'json']);
    if (r.code !== 0 && r.code !== 3) return undefined;
    return (JSON.parse(r.out) as { nodes: NodeStatus[] }).nodes;
  } catch {
    return undefined;
  }
}

/**
 * What keeps the cluster from being converged: a node and family whose acked digest is not the independent
 * one, a netns node whose kernel read-back differs, a node in status that the manifests do not have.
 */
export function convergenceProblems(
  status: readonly NodeStatus[] | undefined,
  expected: ReadonlyMap<string, string>,
  kernelNodes: readonly string[],
): string[] {
  if (!status) return ['the controller does not answer kpx status'];
  const problems: string[] = [];
  const byKey = new Map(status.map((s) => [key(s.node, s.ipFamily), s]));
  for (const [k, digest] of expected) {
    const s = byKey.get(k);
    if (!s) {
      problems.push(`${k}: not in kpx status`);
      continue;
    }
    const short = (d: string): string => (d ? d.slice(0, 12) : '-');
    if (s.desiredDigest !== digest)
      problems.push(
        `${k}: the controller's desired digest ${short(s.desiredDigest)} (generation ${s.desiredGeneration}) is not the final manifests' ${short(digest)}`,
      );
    if (s.ackedDigest !== digest)
      problems.push(
        `${k}: acked digest ${short(s.ackedDigest)} (generation ${s.ackedGeneration}) is not the final manifests' ${short(digest)}${s.lastError ? `; last error: ${s.lastError}` : ''}`,
      );
    if (kernelNodes.includes(s.node) && s.actualDigest !== digest)
      problems.push(`${k}: the kernel read back ${short(s.actualDigest)}, not ${short(digest)}`);
  }
  for (const k of byKey.keys())
    if (!expected.has(k)) problems.push(`${k}: in kpx status but not in the final manifests`);
  return problems;
}

export interface Convergence {
  /** ms until converged; undefined when it did not within the bound. */
  readonly ms: number | undefined;
  readonly problems: string[];
  readonly status: NodeStatus[] | undefined;
}

/** Polls kpx status until converged or `timeoutMs`; `progress` hears what is still pending every 10 s. */
export async function waitForConvergence(o: {
  controller: string;
  expected: ReadonlyMap<string, string>;
  kernelNodes: readonly string[];
  timeoutMs: number;
  progress?: (elapsedMs: number, problems: readonly string[]) => void;
}): Promise<Convergence> {
  const start = Date.now();
  let nextProgress = 0;
  for (;;) {
    const status = await fetchStatus(o.controller);
    const problems = convergenceProblems(status, o.expected, o.kernelNodes);
    if (problems.length === 0) return { ms: Date.now() - start, problems, status };
    if (Date.now() - start >= nextProgress) {
      o.progress?.(Date.now() - start, problems);
      nextProgress += 10_000;
    }
    if (Date.now() - start > o.timeoutMs) return { ms: undefined, problems, status };
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * `kpx replay` of every node and family to its acked generation reaches its acked digest; and `kpx replay --diff`
 * from the oldest retained snapshot to that generation, which checks every step's digest, gets through.
 */
export async function replayProblems(natsUrl: string, status: readonly NodeStatus[]): Promise<string[]> {
  const problems: string[] = [];
  const oldest = await oldestSnapshots(natsUrl, [...new Set(status.map((s) => s.node))]);
  for (const s of status) {
    const k = key(s.node, s.ipFamily);
    if (s.ackedGeneration <= 0) {
      problems.push(`${k}: nothing acked to replay`);
      continue;
    }
    const family = s.ipFamily.toLowerCase();
    const r = await kpx([
      'replay',
      '--nats',
      natsUrl,
      '--node',
      s.node,
      '--to',
      String(s.ackedGeneration),
      '--ip-family',
      family,
      '-o',
      'json',
    ]);
    if (r.code !== 0)
      problems.push(`${k}: kpx replay --to ${s.ackedGeneration} failed (${r.code}): ${firstLine(r.err)}`);
    else {
      const digest = (JSON.parse(r.out) as { digest: string }).digest;
      if (digest !== s.ackedDigest)
        problems.push(
          `${k}: kpx replay --to ${s.ackedGeneration} reaches ${digest.slice(0, 12)}, the node acked ${s.ackedDigest.slice(0, 12)}`,
        );
    }
    const from = oldest.get(k);
    if (from === undefined) {
      problems.push(`${k}: no snapshot retained in KPX_SNAPSHOTS`);
      continue;
    }
    if (from >= s.ackedGeneration) continue;
    const steps = await kpx([
      'replay',
      '--nats',
      natsUrl,
      '--node',
      s.node,
      '--from',
      String(from),
      '--to',
      String(s.ackedGeneration),
      '--diff',
      '--ip-family',
      family,
      '-o',
      'json',
    ]);
    if (steps.code !== 0)
      problems.push(
        `${k}: kpx replay --diff --from ${from} (oldest retained snapshot) --to ${s.ackedGeneration} failed (${steps.code}): ${firstLine(steps.err)}`,
      );
  }
  return problems;
}

const firstLine = (text: string): string =>
  text
    .trim()
    .split('\n')
    .find((l) => !l.startsWith('replay: ')) ?? '';

/** The oldest retained snapshot generation of every node and family (`node/family` → generation). */
async function oldestSnapshots(natsUrl: string, nodes: readonly string[]): Promise<Map<string, number>> {
  const nc = await connect({ servers: natsUrl, name: 'kpx-chaos-checks' });
  try {
    const js = jetstream(nc);
    const out = new Map<string, number>();
    for (const node of nodes) {
      for (const ref of await listSnapshots(js, node)) {
        const k = key(node, ref.ipFamily);
        out.set(k, Math.min(out.get(k) ?? Infinity, ref.generation));
      }
    }
    return out;
  } finally {
    await nc.close();
  }
}

interface RawMessage {
  readonly seq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: Record<string, string>;
}

/** Every retained message of `stream` on `filter`, in stream order. */
async function readStream(js: JetStreamClient, stream: string, filter: string): Promise<RawMessage[]> {
  const consumer = await js.consumers.get(stream, { filter_subjects: filter });
  const out: RawMessage[] = [];
  try {
    if ((await consumer.info(true)).num_pending === 0) return out;
    const messages = await consumer.consume({ max_messages: 512 });
    try {
      for await (const m of messages) {
        const headers: Record<string, string> = {};
        for (const [k] of m.headers ?? []) headers[k] = m.headers?.get(k) ?? '';
        out.push({ seq: m.seq, subject: m.subject, data: m.data, headers });
        if (m.info.pending === 0) break;
      }
    } finally {
      messages.stop();
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return out;
}

export interface StreamFigures {
  readonly deltas: number;
  readonly generations: number;
  /** Non-snapshot deltas whose prev_generation is not the previous delta of their node and family. */
  readonly gaps: number;
  /** Generations of deltas without a record on kpx.audit.gen. */
  readonly missingFromAudit: number;
}

/**
 * KPX_DELTAS: per node and family, generations strictly increasing in stream order, none used twice, headers
 * agreeing with the payload, each non-snapshot delta continuing the one before it. KPX_AUDIT: a record on
 * kpx.audit.gen for every generation a delta carries, naming that delta's node and family.
 */
export async function streamProblems(natsUrl: string): Promise<{ problems: string[]; figures: StreamFigures }> {
  const nc = await connect({ servers: natsUrl, name: 'kpx-chaos-checks' });
  try {
    const js = jetstream(nc);
    const problems: string[] = [];
    const last = new Map<string, number>();
    const seen = new Set<string>();
    const generations = new Map<number, Set<string>>();
    let gaps = 0;
    const raw = await readStream(js, 'KPX_DELTAS', 'kpx.delta.>');
    for (const m of raw) {
      let d: Delta;
      try {
        d = Delta.decode(m.data);
      } catch (err) {
        problems.push(`KPX_DELTAS seq ${m.seq} (${m.subject}): undecodable: ${(err as Error).message}`);
        continue;
      }
      const k = key(d.node, d.ipFamily);
      if (m.subject !== `kpx.delta.${d.node.replaceAll('.', '_')}`)
        problems.push(`seq ${m.seq}: delta of ${d.node} on ${m.subject}`);
      if (m.headers['Kpx-Generation'] !== String(d.generation))
        problems.push(
          `seq ${m.seq} ${k}: header Kpx-Generation ${m.headers['Kpx-Generation']} but generation ${d.generation}`,
        );
      if (seen.has(`${k}/${d.generation}`))
        problems.push(`seq ${m.seq} ${k}: generation ${d.generation} published twice`);
      seen.add(`${k}/${d.generation}`);
      const prev = last.get(k);
      if (prev !== undefined && d.generation <= prev)
        problems.push(`seq ${m.seq} ${k}: generation ${d.generation} after ${prev} (not increasing)`);
      if (prev !== undefined && !d.snapshot && d.prevGeneration !== prev) {
        gaps++;
        const why =
          d.prevGeneration === 0
            ? 'it restarts the chain from an empty state without being a snapshot'
            : 'a gap: a delta was never stored';
        problems.push(
          `seq ${m.seq} ${k}: delta ${d.generation} continues ${d.prevGeneration}, but the previous delta on the subject is ${prev} (${why})`,
        );
      }
      last.set(k, Math.max(prev ?? 0, d.generation));
      const g = generations.get(d.generation) ?? new Set<string>();
      g.add(k);
      generations.set(d.generation, g);
    }
    const audit = new Map<number, { nodes: { node: string; ipFamily: string }[]; nodesTotal: number }>();
    for (const m of await readStream(js, 'KPX_AUDIT', 'kpx.audit.gen')) {
      const r = JSON.parse(new TextDecoder().decode(m.data)) as {
        generation: number;
        nodes: { node: string; ipFamily: string }[];
        nodesTotal: number;
      };
      if (audit.has(r.generation)) problems.push(`KPX_AUDIT: generation ${r.generation} recorded twice`);
      audit.set(r.generation, r);
    }
    let missingFromAudit = 0;
    for (const [generation, nodes] of [...generations].sort((a, b) => a[0] - b[0])) {
      const r = audit.get(generation);
      if (!r) {
        missingFromAudit++;
        problems.push(`KPX_AUDIT: no record of generation ${generation} (deltas for ${[...nodes].sort().join(', ')})`);
        continue;
      }
      if (r.nodesTotal !== r.nodes.length) continue; // capped list
      const named = new Set(r.nodes.map((n) => key(n.node, n.ipFamily)));
      const unnamed = [...nodes].filter((n) => !named.has(n));
      if (unnamed.length > 0)
        problems.push(`KPX_AUDIT: generation ${generation} does not name ${unnamed.sort().join(', ')}`);
    }
    return { problems, figures: { deltas: raw.length, generations: generations.size, gaps, missingFromAudit } };
  } finally {
    await nc.close();
  }
}

/** Which pods answer a service's ClusterIP from `from` (TCP; UDP too for web): the final endpoints, and only those. */
export async function packetProblems(
  topo: Topology,
  model: ClusterModel,
  from: string,
): Promise<{ problems: string[]; probed: number }> {
  const problems: string[] = [];
  const services = [...model.services.values()].sort((a, b) => a.slot - b.slot);
  for (const s of services) {
    const expected = expectedBackends(s);
    const protos: ('tcp' | 'udp')[] = s.name === WebService ? ['tcp', 'udp'] : ['tcp'];
    for (const proto of protos) {
      const problem = await probeOne(topo, s, proto, expected, from);
      if (problem) problems.push(problem);
    }
  }
  return { problems, probed: services.length };
}

async function probeOne(
  topo: Topology,
  s: ServiceSpec,
  proto: 'tcp' | 'udp',
  expected: readonly string[],
  from: string,
): Promise<string | undefined> {
  const port = proto === 'tcp' ? 80 : 53;
  const what = `${s.name} ${vipOf(s)}:${port}/${proto}`;
  // Each connection picks an endpoint at random: 25 per endpoint miss one of 4 with probability < 1e-3.
  const count = expected.length === 0 ? 3 : Math.max(30, 25 * expected.length);
  const [results = []] = await topo.probe(from, [{ proto, host: vipOf(s), port, count, timeoutMs: 1000 }]);
  const replies = new Set(results.flatMap((r: ProbeResult) => (r.kind === 'reply' ? [r.pod] : [])));
  const failures = results.filter((r) => r.kind !== 'reply').map((r) => r.kind);
  if (expected.length === 0) {
    // No endpoint: REJECT (TCP refused; UDP gets an ICMP error or nothing). No pod may answer.
    if (replies.size > 0) return `${what}: no endpoints, but ${[...replies].sort().join(',')} answered`;
    if (proto === 'tcp' && failures.some((k) => k !== 'refused'))
      return `${what}: no endpoints; expected refused, got ${[...new Set(failures)].join(',')}`;
    return undefined;
  }
  const got = [...replies].sort();
  if (failures.length > 0 || got.join(',') !== expected.join(',')) {
    return `${what}: expected ${expected.join(',')}, answered ${got.join(',') || 'none'}${failures.length ? ` (${failures.length} of ${count} failed: ${[...new Set(failures)].join(',')})` : ''}`;
  }
  return undefined;
}
