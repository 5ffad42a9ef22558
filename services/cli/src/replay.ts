// kpx replay: a node's rules at any retained generation, the steps between two, a past state loaded into a
// namespace, or live deltas — from NATS JetStream alone, without the controller.
import { jetstream } from '@nats-io/jetstream';
import { msFromTimestamp } from '@kpx/common';
import { RuleObject, type Cause, type Delta, type Timestamp } from '@kpx/proto';
import { IptablesState, createIptablesApplier, isIptablesObject, planFullRestore } from '@kpx/kernel';
import {
  followDeltas,
  replaySteps,
  replayTo,
  type ObjectChange,
  type ReplayStep,
  type ReplayedState,
} from '@kpx/replay';
import { UsageError } from './errors.js';
import {
  generationOf,
  IpFamilyFlag,
  ipFamilyOf,
  OutputFlag,
  OutputFormat,
  outputFormat,
  parseFlags,
  required,
} from './flags.js';
import type { Io, LongRunningOptions } from './io.js';
import {
  connectOperator,
  loadVerifier,
  NatsAuthFlags,
  NatsAuthUsage,
  VerifyFlags,
  VerifyUsage,
} from './security-flags.js';

export const REPLAY_USAGE = `usage: kpx replay --nats URL --node NAME --to G [--ip-family ipv4|ipv6] [-o table|json]
       kpx replay --nats URL --node NAME --from G1 --to G2 --diff [-o table|json]
       kpx replay --nats URL --node NAME --to G --apply --netns NAMESPACE
       kpx replay --nats URL --node NAME --follow [-o table|json]

Rebuilds node NAME's rules from JetStream alone (the newest retained snapshot at or before the generation, then
the node's deltas): the controller need not run. The node's state at generation G is the one of its newest delta
at or before G. Generations outside retention (older than the oldest retained snapshot) are refused, saying so.

  --to G             the generation to rebuild (default: the newest)
  --from G1 --diff   print every delta after G1 up to G2: its causes and the rules it changed
  --apply --netns N  load the rebuilt state into network namespace N (iptables-restore; kpx's chains only)
  --follow           print live deltas as they are published (all families) until Ctrl-C
  --ip-family F      ipv4 (default) or ipv6
  -o FORMAT          table (default: iptables-restore text, or a readable diff) or json:
                       --to:   {"node","ipFamily","generation","digest","objects":[...]}
                       --diff: {"node","ipFamily","from","to","steps":[{"generation","prevGeneration","digest",
                                "cause":[...],"triggerTime","snapshot","changes":[{"kind","key","change","before","after"}]}]}
                       --follow: one JSON object per line per delta
${VerifyUsage}
${NatsAuthUsage}`;

const fmtCause = (c: Cause): string =>
  `${c.kind} ${c.namespace ? `${c.namespace}/` : ''}${c.name}${c.resourceVersion ? ` (resourceVersion ${c.resourceVersion})` : ''}`;
const fmtTime = (t: Timestamp | undefined): string => (t ? new Date(msFromTimestamp(t)).toISOString() : '');

/** The rule lines of an object (chain rules, fragment rules, or the one jump rule). */
function linesOf(o: RuleObject | undefined): string[] {
  const p = o?.payload;
  if (!p) return [];
  switch (p.$case) {
    case 'iptablesChain':
      return p.value.rules.map((r) => `-A ${p.value.name} ${r}`);
    case 'iptablesRules':
      return p.value.rules.map((r) => `-A ${p.value.chain} ${r}`);
    case 'iptablesJump':
      return [`${p.value.prepend ? '-I' : '-A'} ${p.value.chain} ${p.value.rule}`];
    default:
      return [JSON.stringify(RuleObject.toJSON(o))];
  }
}

const changeKind = (c: ObjectChange): 'added' | 'removed' | 'changed' =>
  c.before === undefined ? 'added' : c.after === undefined ? 'removed' : 'changed';

/** A readable diff of one step: header, causes, then each changed object with its removed and added lines. */
export function formatStep(s: ReplayStep): string {
  const out = [
    `generation ${s.generation} (after ${s.prevGeneration}) digest ${s.digest}${s.snapshot ? ' [snapshot]' : ''}${s.triggerTime ? ` trigger ${fmtTime(s.triggerTime)}` : ''}`,
  ];
  for (const c of s.cause) out.push(`  cause: ${fmtCause(c)}`);
  for (const c of s.changes) {
    const kind = changeKind(c);
    out.push(`  ${kind === 'added' ? '+' : kind === 'removed' ? '-' : '~'} ${c.kind} ${c.key}`);
    const before = linesOf(c.before);
    const after = linesOf(c.after);
    const kept = new Set(before.filter((l) => after.includes(l)));
    for (const l of before) if (!kept.has(l)) out.push(`      - ${l}`);
    for (const l of after) if (!kept.has(l)) out.push(`      + ${l}`);
  }
  return `${out.join('\n')}\n`;
}

const stepJson = (s: ReplayStep): unknown => ({
  generation: s.generation,
  prevGeneration: s.prevGeneration,
  digest: s.digest,
  cause: s.cause,
  triggerTime: fmtTime(s.triggerTime) || undefined,
  snapshot: s.snapshot,
  changes: s.changes.map((c) => ({
    kind: c.kind,
    key: c.key,
    change: changeKind(c),
    before: c.before ? RuleObject.toJSON(c.before) : undefined,
    after: c.after ? RuleObject.toJSON(c.after) : undefined,
  })),
});

/** The rebuilt state as the iptables-restore input that programs it into an empty namespace. */
export function restoreText(r: ReplayedState): string {
  // Rules only: the state also holds node duties (healthcheck.service objects).
  return planFullRestore(IptablesState.from(r.state.sortedObjects().filter(isIptablesObject)), new Map()).text;
}

export async function replayCommand(argv: readonly string[], io: Io, run: LongRunningOptions): Promise<number> {
  const values = parseFlags(
    argv,
    {
      nats: { type: 'string' },
      node: { type: 'string' },
      to: { type: 'string' },
      from: { type: 'string' },
      diff: { type: 'boolean' },
      apply: { type: 'boolean' },
      netns: { type: 'string' },
      follow: { type: 'boolean' },
      ...IpFamilyFlag,
      ...OutputFlag,
      ...NatsAuthFlags,
      ...VerifyFlags,
    },
    REPLAY_USAGE,
    io,
  );
  if (!values) return 0;
  const nats = required(values.nats, 'nats', REPLAY_USAGE);
  const node = required(values.node, 'node', REPLAY_USAGE);
  const family = ipFamilyOf(values['ip-family']);
  const json = outputFormat(values.output, [OutputFormat.Table, OutputFormat.Json]) === OutputFormat.Json;
  const to = generationOf(values.to, '--to');
  const from = generationOf(values.from, '--from');
  if (values.diff && from === undefined)
    throw new UsageError('--diff needs --from G1 (and --to G2, default the newest)');
  if (from !== undefined && !values.diff) throw new UsageError('--from is only used with --diff');
  if (values.apply && !values.netns)
    throw new UsageError('--apply needs --netns NAMESPACE (kpx never loads a replay into the root namespace)');
  if (from !== undefined && to !== undefined && from > to) throw new UsageError(`--from ${from} is after --to ${to}`);
  const progress = (applied: number, g: number): void =>
    io.stderr(`replay: ${applied} deltas applied (generation ${g})\n`);

  const verifier = await loadVerifier(values['verify-keys']);
  const skipped = (s: { seq: number; reason: string; detail: string }): void =>
    io.stderr(`replay: skipped seq ${s.seq} (${s.reason}): ${s.detail}\n`);
  const verifying = verifier ? { verifier, onSkipped: skipped } : {};
  const nc = await connectOperator(nats, values, 'kpx-replay');
  try {
    const js = jetstream(nc);
    if (values.follow) {
      for await (const rec of followDeltas(js, node, run.signal, verifier, verifier ? skipped : undefined)) {
        const d: Delta = rec.delta;
        if (json)
          io.stdout(
            `${JSON.stringify({ node: d.node, ipFamily: d.ipFamily, generation: d.generation, prevGeneration: d.prevGeneration, digest: d.digest, snapshot: d.snapshot, upserts: d.upserts.map((u) => u.key), deletes: d.deletes.map((r) => r.key), cause: d.cause, triggerTime: fmtTime(d.triggerTime) || undefined })}\n`,
          );
        else
          io.stdout(
            `generation ${d.generation} (after ${d.prevGeneration}) ${d.ipFamily} digest ${d.digest}${d.snapshot ? ' [snapshot]' : ` +${d.upserts.length} -${d.deletes.length}`}  ${d.cause.map(fmtCause).join('; ')}\n`,
          );
      }
      return 0;
    }
    if (values.diff && from !== undefined) {
      const steps = replaySteps(js, {
        node,
        family,
        from,
        ...(to !== undefined ? { to } : {}),
        onProgress: progress,
        ...verifying,
      });
      const collected: unknown[] = [];
      let r = await steps.next();
      while (!r.done) {
        if (json) collected.push(stepJson(r.value));
        else io.stdout(formatStep(r.value));
        r = await steps.next();
      }
      if (json)
        io.stdout(
          `${JSON.stringify({ node, ipFamily: family, from, to: r.value.generation, steps: collected }, null, 2)}\n`,
        );
      return 0;
    }
    const state = await replayTo(js, {
      node,
      family,
      ...(to !== undefined ? { to } : {}),
      onProgress: progress,
      ...verifying,
    });
    if (values.apply && values.netns) {
      const applier = createIptablesApplier({ family: family, netns: values.netns });
      await applier.fullRestore(state.state.sortedObjects().filter(isIptablesObject));
      io.stdout(
        `loaded node ${node} ${family} at generation ${state.generation} (digest ${state.digest}) into network namespace ${values.netns}\n`,
      );
      return 0;
    }
    if (json) {
      io.stdout(
        `${JSON.stringify({ node, ipFamily: family, generation: state.generation, digest: state.digest, objects: state.state.sortedObjects().map((o) => RuleObject.toJSON(o)) }, null, 2)}\n`,
      );
    } else {
      io.stdout(
        `# node ${node} ${family} generation ${state.generation} digest ${state.digest} (snapshot ${state.snapshotGeneration} + ${state.deltasApplied} deltas)\n`,
      );
      io.stdout(restoreText(state));
    }
    return 0;
  } finally {
    await nc.close();
  }
}
