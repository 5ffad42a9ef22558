// Assertions over probe outcomes. A failure message names the packet, what kube-proxy semantics expect, what was
// seen, and the rendered rules of the node the packet entered that concern the service.
import { isIPv6 } from 'node:net';
import type { IpFamily, ProbeRequest, ProbeResult } from '@kpx/testing';
import type { Cluster } from './cluster.js';

export interface Where {
  /** The node whose rules handle the packet first (the source pod's node, or the node the client targets). */
  node: string;
  /** The service (namespace/name) the packet is for: selects the rules quoted in a failure message. */
  service: string;
}

export interface ReplyExpectation extends Where {
  /** The only pods allowed to answer. */
  pods: readonly string[];
  /** Every pod in `pods` must answer at least once (spread). Default: true when more than one pod. */
  everyPod?: boolean;
  /** The source address the answering pod must see. */
  clientIP?: string;
  /** The source address the answering pod must not see (e.g. "masqueraded, so not the client's"). */
  notClientIP?: string;
  /** All answers come from one pod (affinity). */
  samePod?: boolean;
}

function packet(from: string, req: ProbeRequest): string {
  const host = isIPv6(req.host) ? `[${req.host}]` : req.host;
  const count = req.count ?? 1;
  return `${count} × ${req.proto.toUpperCase()} ${from} → ${host}:${req.port}`;
}

/** "5 × reply p1a (sees 10.244.3.10), 1 × timeout" */
export function summarize(outcomes: readonly ProbeResult[]): string {
  const counts = new Map<string, number>();
  for (const o of outcomes) {
    const key =
      o.kind === 'reply'
        ? `reply ${o.pod} (sees ${o.clientIP})`
        : o.kind === 'unreachable' || o.kind === 'error'
          ? `${o.kind} ${o.code}`
          : o.kind;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([key, n]) => `${n} × ${key}`).join(', ');
}

const ChainRef = /KUBE-(?:SVC|SVL|EXT|FW|SEP)-[A-Z0-9]+/g;

/** The lines of a rendered rule set that concern a service: lines naming it, and every rule of the chains they use. */
export function rulesAbout(rules: string, service: string): string {
  const lines = rules.split('\n');
  const chains = new Set<string>();
  const selected = new Set<number>();
  lines.forEach((line, i) => {
    if (line.includes(`"${service}:`) || line.includes(` ${service}:`)) {
      selected.add(i);
      for (const m of line.matchAll(ChainRef)) chains.add(m[0]);
    }
  });
  for (let round = 0; round < 3; round++) {
    lines.forEach((line, i) => {
      const owner = /^-A (\S+)/.exec(line)?.[1];
      if (owner !== undefined && chains.has(owner)) {
        selected.add(i);
        for (const m of line.matchAll(ChainRef)) chains.add(m[0]);
      }
    });
  }
  const text = [...selected]
    .sort((a, b) => a - b)
    .map((i) => `    ${lines[i] ?? ''}`)
    .join('\n');
  return text === '' ? '    (no rules mention this service)' : text;
}

function failure(c: Cluster, from: string, req: ProbeRequest, where: Where, expected: string, seen: string): Error {
  const family: IpFamily = isIPv6(req.host) ? 'ipv6' : 'ipv4';
  const rules = c.rules.get(`${where.node}/${family}`) ?? '';
  return new Error(
    [
      `packet:   ${packet(from, req)} (enters node ${where.node})`,
      `expected: ${expected}`,
      `seen:     ${seen}`,
      `rules of ${where.node} (${family}) for ${where.service}:`,
      rulesAbout(rules, where.service),
    ].join('\n'),
  );
}

/** Every connection is answered, by the allowed pods only, seeing the expected source address. */
export async function expectReplies(
  c: Cluster,
  from: string,
  req: ProbeRequest,
  want: ReplyExpectation,
): Promise<ProbeResult[]> {
  const outcomes = await c.probe(from, { stopOnFailure: true, ...req });
  const seen = summarize(outcomes);
  const fail = (expected: string): Error => failure(c, from, req, want, expected, seen);
  const replies = outcomes.filter((o) => o.kind === 'reply');
  if (replies.length !== outcomes.length || outcomes.length === 0) {
    const rest = outcomes.length < (req.count ?? 1) ? ' (stopped at the first failure)' : '';
    throw fail(`every connection answered by ${want.pods.join(' or ')}${rest}`);
  }
  const stray = replies.filter((r) => !want.pods.includes(r.pod));
  if (stray.length > 0) throw fail(`answers only from ${want.pods.join(', ')}`);
  const everyPod = want.everyPod ?? want.pods.length > 1;
  if (everyPod) {
    const missing = want.pods.filter((p) => !replies.some((r) => r.pod === p));
    if (missing.length > 0)
      throw fail(`answers spread over all of ${want.pods.join(', ')} (none from ${missing.join(', ')})`);
  }
  if (want.samePod === true && new Set(replies.map((r) => r.pod)).size > 1) {
    throw fail('every connection answered by the same pod (ClientIP affinity)');
  }
  if (want.clientIP !== undefined && replies.some((r) => r.clientIP !== want.clientIP)) {
    throw fail(`the pod sees source ${want.clientIP}`);
  }
  if (want.notClientIP !== undefined && replies.some((r) => r.clientIP === want.notClientIP)) {
    throw fail(`the pod never sees source ${want.notClientIP}`);
  }
  return outcomes;
}

/** Every connection ends the given way: refused (REJECT), timeout (DROP) or unreachable. */
export async function expectOutcome(
  c: Cluster,
  from: string,
  req: ProbeRequest,
  kind: 'refused' | 'timeout' | 'unreachable',
  where: Where,
): Promise<void> {
  const outcomes = await c.probe(from, req);
  if (outcomes.length === 0 || outcomes.some((o) => o.kind !== kind)) {
    const meaning = { refused: 'refused (REJECT)', timeout: 'timeout (DROP)', unreachable: 'ICMP unreachable' }[kind];
    throw failure(c, from, req, where, `every connection ${meaning}`, summarize(outcomes));
  }
}

/** Number of distinct pods that answered. */
export function distinctPods(outcomes: readonly ProbeResult[]): Set<string> {
  return new Set(outcomes.flatMap((o) => (o.kind === 'reply' ? [o.pod] : [])));
}
