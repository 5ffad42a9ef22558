// The chaos suite (issue #12 item 6): real nats-server, a `kpx controller` process on a manifests directory and
// one `kpx executor` process per node (n1..n3 in network namespaces with real iptables and pods, the others
// --dry-run), driven through a seeded schedule of manifest changes and faults. After the last step, with no
// further events, everything must converge within a bound to what a fresh compile of the final manifests says.
//
//   KPX_CHAOS_SEED=N     replay a run (the seed is always printed)
//   KPX_CHAOS_CHANGES=N  manifest changes (default 200)
//   KPX_CHAOS_FAULTS=N   faults (default 20)
//   KPX_CHAOS_KEEP=1     keep the run directory (logs, manifests, schedule) also when the run passes
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Harness } from './harness.js';
import {
  independentDigests,
  packetProblems,
  replayProblems,
  streamProblems,
  waitForConvergence,
  type StreamFigures,
} from './checks.js';
import { NetnsNodes, nodesOf } from './model.js';
import { countFromEnv, seedFromEnv } from './prng.js';
import { buildSchedule, describeStep } from './schedule.js';

const seed = seedFromEnv();
const schedule = buildSchedule({
  seed,
  changes: countFromEnv('KPX_CHAOS_CHANGES', 200),
  faults: countFromEnv('KPX_CHAOS_FAULTS', 20),
});
/** After the last step: every node converged within this. */
const ConvergeBoundMs = 60_000;
/** Before the first step: the initial manifests everywhere (no fault yet). */
const StartBoundMs = 60_000;
/** The probes' origin: a pod namespace (connections to a pod's own service go through hairpin NAT). */
const ProbeFrom = 'p3b';

const log = (line: string): void => console.log(`[chaos] ${line}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

log(
  `seed ${seed} (replay: KPX_CHAOS_SEED=${seed}); ${schedule.changes} changes, ${schedule.faults} faults over ${(schedule.durationMs / 1000).toFixed(1)} s`,
);

describe(`chaos (seed ${seed})`, () => {
  let h: Harness | undefined;
  let passed = false;

  before(async () => {
    h = await Harness.start(schedule.initial);
    await writeFile(join(h.runDir, 'schedule.txt'), `seed ${seed}\n${schedule.steps.map(describeStep).join('\n')}\n`);
    log(`run directory ${h.runDir} (logs, manifests, schedule)`);
  });

  after(async () => {
    await h?.cleanup(!passed || process.env['KPX_CHAOS_KEEP'] === '1');
    if (h && (!passed || process.env['KPX_CHAOS_KEEP'] === '1')) log(`kept ${h.runDir} for inspection`);
  });

  it('converges after churn and faults: digests, kernels, packets, replay, stream and audit', async () => {
    const harness = h!;
    const kernelNodes = [...NetnsNodes];
    const runStart = Date.now();
    const start = await waitForConvergence({
      controller: harness.controllerAddress,
      expected: await independentDigests(harness.manifestsDir, harness.configFile),
      kernelNodes,
      timeoutMs: StartBoundMs,
    });
    const findings: string[] = start.problems.map((p) => `initial convergence (before any fault): ${p}`);
    log(
      start.ms === undefined
        ? `initial state NOT converged in ${StartBoundMs / 1000} s`
        : `initial state converged in ${start.ms} ms`,
    );

    const t0 = Date.now();
    for (const [i, step] of schedule.steps.entries()) {
      const wait = t0 + step.at - Date.now();
      if (wait > 0) await sleep(wait);
      await harness.run(step);
      if (step.action.type !== 'change' || i % 50 === 0) log(describeStep(step));
    }
    const churnMs = Date.now() - t0;
    log(
      `schedule done in ${(churnMs / 1000).toFixed(1)} s (planned ${(schedule.durationMs / 1000).toFixed(1)} s); no further events`,
    );

    const expected = await independentDigests(harness.manifestsDir, harness.configFile);
    const nodes = nodesOf(harness.model);
    assert.deepEqual(
      [...new Set([...expected.keys()].map((k) => k.split('/')[0]))].sort(),
      [...nodes].sort(),
      "the manifests name the model's nodes",
    );
    const progress = (ms: number, problems: readonly string[]): void =>
      log(
        `${(ms / 1000).toFixed(0)} s: still pending: ${problems.slice(0, 6).join(' | ')}${problems.length > 6 ? ` (+${problems.length - 6})` : ''}`,
      );
    const conv = await waitForConvergence({
      controller: harness.controllerAddress,
      expected,
      kernelNodes,
      timeoutMs: ConvergeBoundMs,
      progress,
    });
    log(conv.ms === undefined ? `NOT converged within ${ConvergeBoundMs / 1000} s` : `converged in ${conv.ms} ms`);
    findings.push(...conv.problems.map((p) => `convergence: ${p}`));

    const status = (conv.status ?? []).filter((s) => expected.has(`${s.node}/${s.ipFamily}`));
    const replay = await replayProblems(harness.natsUrl, status);
    findings.push(...replay.map((p) => `replay: ${p}`));
    const packets = await packetProblems(harness.topo, harness.model, ProbeFrom);
    findings.push(...packets.problems.map((p) => `packets: ${p}`));
    let stream: StreamFigures | undefined;
    try {
      const s = await streamProblems(harness.natsUrl);
      stream = s.figures;
      findings.push(...s.problems.map((p) => `stream: ${p}`));
    } catch (err) {
      findings.push(`stream: could not read KPX_DELTAS / KPX_AUDIT: ${(err as Error).message}`);
    }

    const f = harness.figures();
    const notConverged = new Set(conv.problems.map((p) => p.split(':')[0])).size;
    const lost = notConverged + (stream?.gaps ?? 0) + (stream?.missingFromAudit ?? 0);
    const figures = [
      `seed ${seed}`,
      `changes ${f.changes} (schedule ${schedule.changes}); faults ${Object.values(f.faults).reduce((a, b) => a + b, 0)}: ${Object.entries(
        f.faults,
      )
        .sort()
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
      `iptables-restore failures injected ${f.injectedRestoreFailures} of ${f.armedRestoreFailures} armed`,
      `nodes ${nodes.length} (${nodes.join(' ')}; kernel: ${kernelNodes.join(' ')}), ${expected.size} node/family states`,
      `time to converge ${conv.ms === undefined ? `> ${ConvergeBoundMs} ms (not converged)` : `${conv.ms} ms`}; churn ${(churnMs / 1000).toFixed(1)} s; run ${((Date.now() - runStart) / 1000).toFixed(1)} s`,
      `stream: ${stream ? `${stream.deltas} deltas, ${stream.generations} generations, ${stream.gaps} gaps, ${stream.missingFromAudit} generations missing from the audit log` : 'unread'}`,
      `services probed ${packets.probed} from ${ProbeFrom}`,
      `restarts after unexpected exits: ${
        Object.entries(f.unexpectedExits)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ') || 'none'
      }`,
      `lost ${lost} (node/family states not converged ${notConverged}, delta chain gaps ${stream?.gaps ?? '?'}, generations missing from the audit log ${stream?.missingFromAudit ?? '?'})`,
    ];
    for (const line of figures) log(line);
    for (const p of findings) log(`FAIL ${p}`);
    passed = findings.length === 0;
    assert.ok(
      passed,
      `chaos run with seed ${seed} (replay: KPX_CHAOS_SEED=${seed}) found ${findings.length} problem(s):\n${findings.join('\n')}\n\n${figures.join('\n')}\n\n${harness.logTails()}`,
    );
  });
});
