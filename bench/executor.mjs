// Executor benchmarks (issue #4), measured side by side in one run:
//   apply    on the real kernel, in a network namespace created here: one node of S services x 10 endpoints;
//            time of a one-endpoint delta (iptables-restore --noflush of the changed chains) vs a full restore of
//            the same state, interleaved.
//   latency  nats-server + controller on a manifests directory + N dry-run executors in this process: time from
//            an EndpointSlice file change to every node's ack of the new generation.
//
//   node bench/executor.mjs [--only apply,latency] [--services 10000] [--reps 7] [--executors 50] [--changes 30]
// Needs root for `apply` (ip netns). Prints a table; raw samples in bench/out/executor-latest.json.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { IPFamily, loadClusterState, defaultKubeProxyConfig, parseCidr } from '@kpx/model';
import { iptablesOptionsFromConfig } from '@kpx/compiler';
import { FamilyStates } from '@kpx/node-states';
import { digestOf } from '@kpx/ruleset';
import { createIptablesApplier, isIptablesObject } from '@kpx/kernel';
import { ManifestsDirSource, runController } from '@kpx/controller';
import { MemoryBackend, runExecutor } from '@kpx/executor';
import { startNatsServer } from '@kpx/testing';
import { startTracing } from '@kpx/telemetry';
import { flipEndpoint, manifestObjects, plainClusterIPSlice, synthCluster, writeCluster } from './synth.mjs';

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'apply,latency' },
    services: { type: 'string', default: '10000' },
    reps: { type: 'string', default: '7' },
    executors: { type: 'string', default: '50' },
    'latency-services': { type: 'string', default: '1000' },
    changes: { type: 'string', default: '30' },
  },
});
const sections = new Set(values.only.split(','));
const results = { date: new Date().toISOString(), params: values, figures: {} };

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const summary = (xs) => ({
  median: quantile(xs, 0.5),
  p90: quantile(xs, 0.9),
  p99: quantile(xs, 0.99),
  min: Math.min(...xs),
  max: Math.max(...xs),
  n: xs.length,
  samples: xs,
});
const fmt = (ms) => `${ms.toFixed(1)} ms`;
/** Each sample as it is measured (stderr): a long run that dies late still leaves its figures. */
const progress = (line) => process.stderr.write(`  [${new Date().toISOString().slice(11, 19)}] ${line}\n`);

async function benchApply() {
  const S = Number(values.services);
  const reps = Number(values.reps);
  const cluster = synthCluster({ services: S, endpoints: 10, nodes: Math.max(10, Math.ceil((S * 10) / 3000)) });
  const { state } = loadClusterState(manifestObjects(cluster).map((object) => ({ object, source: 'synth' })));
  const config = { ...defaultKubeProxyConfig(), clusterCIDRs: [parseCidr(cluster.clusterCIDR)] };
  const fam = new FamilyStates({ family: IPFamily.IPv4, options: iptablesOptionsFromConfig(config, IPFamily.IPv4) });
  const node = cluster.nodes[0].metadata.name;
  const all = new Set(cluster.services.map((s) => `${s.metadata.namespace}/${s.metadata.name}`));
  fam.sync({ state, services: all, nodes: new Set(cluster.nodes.map((n) => n.metadata.name)) });
  const slice = plainClusterIPSlice(cluster);
  const svcKey = `${slice.metadata.namespace}/${slice.metadata.labels['kubernetes.io/service-name']}`;
  const ns = `kpxbench-${process.pid}`.slice(0, 15);
  execFileSync('ip', ['netns', 'add', ns]);
  const deltaMs = [];
  const fullMs = [];
  const objectsPerDelta = [];
  try {
    const applier = createIptablesApplier({ family: 'IPv4', netns: ns });
    let t = performance.now();
    await applier.fullRestore(
      fam
        .objects(node)
        .map((o) => o.wire)
        .filter(isIptablesObject),
    );
    const firstFull = performance.now() - t;
    progress(`first full restore of ${fam.objects(node).length} objects: ${fmt(firstFull)}`);
    for (let k = 0; k < reps; k++) {
      state.upsertEndpointSlice(flipEndpoint(slice, k));
      const changes = fam
        .sync({ state, services: new Set([svcKey]), nodes: new Set(), endpointsOnly: new Set([svcKey]) })
        .filter((c) => c.node === node);
      const change = changes[0];
      objectsPerDelta.push(change.upserts.length + change.deletes.length);
      t = performance.now();
      await applier.applyDelta({
        upserts: change.upserts.map((u) => u.wire).filter(isIptablesObject),
        deletes: change.deletes.filter(isIptablesObject),
      });
      deltaMs.push(performance.now() - t);
      progress(`rep ${k + 1}/${reps}: one-endpoint delta (${objectsPerDelta[k]} objects) ${fmt(deltaMs[k])}`);
      // The same state, programmed from scratch (what a resync costs): flush kpx's tables, then a full restore.
      execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-F']);
      execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-X']);
      execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'filter', '-F']);
      execFileSync('ip', ['netns', 'exec', ns, 'iptables', '-t', 'filter', '-X']);
      t = performance.now();
      await applier.fullRestore(
        fam
          .objects(node)
          .map((o) => o.wire)
          .filter(isIptablesObject),
      );
      fullMs.push(performance.now() - t);
      progress(`rep ${k + 1}/${reps}: full restore ${fmt(fullMs[k])}`);
    }
    t = performance.now();
    const rb = await applier.readBack();
    const readBackMs = performance.now() - t;
    // The kernel's part of the node's state: not its healthcheck.service objects (the executor's health servers).
    const desired = digestOf(
      fam
        .objects(node)
        .map((o) => o.wire)
        .filter(isIptablesObject),
    );
    if (rb.digest !== desired) throw new Error('read-back digest differs from the desired state after the benchmark');
    progress(
      `read-back (iptables-save, and the kernel's spelling of every rule the first time): ${fmt(readBackMs)}, digest equal to the desired one`,
    );
    results.figures.apply = {
      services: S,
      objects: fam.objects(node).length,
      firstFullRestoreMs: firstFull,
      readBackMs,
      delta: summary(deltaMs),
      full: summary(fullMs),
      objectsPerDelta,
    };
    if (reps === 0) return;
    const ratio = quantile(fullMs, 0.5) / quantile(deltaMs, 0.5);
    console.log(
      `apply (S=${S}, ${fam.objects(node).length} objects on ${node}, ${reps} interleaved pairs, read-back digest verified)`,
    );
    console.log(
      `  one-endpoint delta   median ${fmt(quantile(deltaMs, 0.5))}  (min ${fmt(Math.min(...deltaMs))}, max ${fmt(Math.max(...deltaMs))}; ${objectsPerDelta[0]} objects)`,
    );
    console.log(
      `  full restore         median ${fmt(quantile(fullMs, 0.5))}  (min ${fmt(Math.min(...fullMs))}, max ${fmt(Math.max(...fullMs))})`,
    );
    console.log(`  ratio full/delta     ${ratio.toFixed(1)}x   (target >= 50x)`);
    results.figures.apply.ratio = ratio;
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

async function benchLatency() {
  const N = Number(values.executors);
  const S = Number(values['latency-services']);
  const cluster = synthCluster({ services: S, endpoints: 10, nodes: N });
  const dir = await mkdtemp(join(tmpdir(), 'kpx-bench-exec-'));
  const nats = await startNatsServer({ jetstream: true });
  const tracing = startTracing({ serviceName: 'kpx-bench' });
  const executors = [];
  let controller;
  try {
    // The changed slice lives in its own file; everything else in the synthetic cluster's files.
    const target = cluster.slices.find((s) => s.endpoints.length > 1);
    cluster.slices = cluster.slices.filter((s) => s !== target);
    await mkdir(join(dir, 'manifests'), { recursive: true });
    await writeCluster(cluster, dir);
    const sliceFile = join(dir, 'manifests', 'zz-changed.json');
    await writeFile(sliceFile, JSON.stringify(target));
    controller = await runController({
      source: new ManifestsDirSource({ dir: join(dir, 'manifests'), debounceMs: 20 }),
      sourceName: 'bench',
      natsUrl: nats.url,
      grpcListen: '127.0.0.1:0',
      metricsListen: '127.0.0.1:0',
      config: { ...defaultKubeProxyConfig(), clusterCIDRs: [parseCidr(cluster.clusterCIDR)] },
      families: [IPFamily.IPv4],
      logLevel: 'error',
      tracer: tracing.tracer,
    });
    for (const n of cluster.nodes) {
      executors.push(
        await runExecutor({
          node: n.metadata.name,
          natsUrl: nats.url,
          controller: controller.grpcAddress,
          createBackend: () => new MemoryBackend(),
          families: ['IPv4'],
          healthzListen: '127.0.0.1:0',
          metricsListen: '127.0.0.1:0',
          logLevel: 'error',
          driftCheckMs: 0,
          tracer: tracing.tracer,
        }),
      );
    }
    const allAcked = (g) => {
      const s = controller.pipeline.tracker.status();
      return s.length === N && s.every((x) => x.inSync && x.ackedGeneration >= g);
    };
    const wait = async (cond, ms) => {
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end) throw new Error('timed out');
        await new Promise((r) => setImmediate(r));
      }
    };
    await wait(() => allAcked(1), 60_000);
    const samples = [];
    const changes = Number(values.changes);
    for (let k = 0; k < changes; k++) {
      // Spaced past minSyncPeriod (1 s) so each change is its own sync, as with sparse real changes.
      await new Promise((r) => setTimeout(r, 1100));
      const g = controller.pipeline.generation;
      const tmp = `${sliceFile}.tmp`;
      await writeFile(tmp, JSON.stringify(flipEndpoint(target, k)));
      const t0 = performance.now();
      await rename(tmp, sliceFile);
      await wait(() => controller.pipeline.generation > g && allAcked(g + 1), 10_000);
      samples.push(performance.now() - t0);
    }
    results.figures.latency = { executors: N, services: S, ...summary(samples) };
    console.log(
      `latency (file change -> every ack; ${N} dry-run executors, S=${S}, ${changes} changes; includes the 20 ms file-watch debounce)`,
    );
    console.log(
      `  p50 ${fmt(quantile(samples, 0.5))}  p90 ${fmt(quantile(samples, 0.9))}  p99 ${fmt(quantile(samples, 0.99))}  max ${fmt(Math.max(...samples))}   (target p99 < 500 ms)`,
    );
  } finally {
    for (const e of executors) await e.stop();
    await controller?.stop();
    await nats.stop();
    await tracing.shutdown();
    await rm(dir, { recursive: true, force: true });
  }
}

if (sections.has('apply')) await benchApply();
if (sections.has('latency')) await benchLatency();
await mkdir(new URL('./out/', import.meta.url), { recursive: true });
await writeFile(new URL('./out/executor-latest.json', import.meta.url), JSON.stringify(results, null, 2));
