// IPVS apply benchmark (issue #5): one node of a synthetic cluster compiled by compileIpvs, programmed by
// @kpx/kernel's IPVS applier into a network namespace created here, under a real IPVS kernel. Interleaved: a
// one-endpoint delta (applyDelta: one netlink batch, ipset lines, the companion iptables delta) and the same state
// programmed from scratch (IPVS table, kube-ipvs0 addresses, ipsets and iptables flushed, then fullRestore).
//
//   node bench/ipvs.mjs [--services 5000] [--reps 5]
//
// This machine's kernel has no IPVS: the script runs itself again inside tools/ipvs-vm/vm-run (qemu TCG, Debian's
// 6.1 kernel) unless KPX_IPVS_VM=1 says it already is. Needs root. Prints a table; raw samples in
// bench/out/ipvs-latest.json.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { IPFamily, loadClusterState, defaultKubeProxyConfig, parseCidr } from '@kpx/model';
import { compileIpvs, ipvsOptionsFromConfig, toWire } from '@kpx/compiler';
import { RuleState, diffStates } from '@kpx/ruleset';
import { createIpvsApplier } from '@kpx/kernel';
import { isDuty } from '@kpx/proto';
import { flipEndpoint, manifestObjects, plainClusterIPSlice, synthCluster } from './synth.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');

if (process.env.KPX_IPVS_VM !== '1') {
  // Re-run inside the VM (the repository is its shared, writable cwd).
  const r = spawnSync(
    join(ROOT, 'tools/ipvs-vm/vm-run'),
    [
      '--mem',
      '3072',
      '--timeout',
      '5400',
      '--',
      'env',
      'KPX_IPVS_VM=1',
      process.execPath,
      '--expose-gc',
      ...process.argv.slice(1),
    ],
    {
      cwd: ROOT,
      stdio: 'inherit',
    },
  );
  process.exit(r.status ?? 1);
}

const { values } = parseArgs({
  options: { services: { type: 'string', default: '5000' }, reps: { type: 'string', default: '5' } },
});
const S = Number(values.services);
const reps = Number(values.reps);

const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const summary = (xs) => ({
  median: quantile(xs, 0.5),
  min: Math.min(...xs),
  max: Math.max(...xs),
  n: xs.length,
  samples: xs,
});
const fmt = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

const cluster = synthCluster({ services: S, endpoints: 10, nodes: Math.max(10, Math.ceil((S * 10) / 3000)) });
const { state } = loadClusterState(manifestObjects(cluster).map((object) => ({ object, source: 'synth' })));
const config = { ...defaultKubeProxyConfig(), clusterCIDRs: [parseCidr(cluster.clusterCIDR)] };
const options = ipvsOptionsFromConfig(config, IPFamily.IPv4);
const node = cluster.nodes[0].metadata.name;
const compile = () =>
  RuleState.from(
    compileIpvs({ state, nodeName: node, options })
      .objects.map(toWire)
      .filter((o) => !isDuty(o)),
  );
const slice = plainClusterIPSlice(cluster);

const ns = `kpxbench${process.pid % 10000}`;
const inNs = (...args) => execFileSync('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
execFileSync('ip', ['netns', 'add', ns]);
inNs('ip', 'link', 'set', 'lo', 'up');
const results = { date: new Date().toISOString(), params: values, figures: {} };
const applier = createIpvsApplier({ family: 'IPv4', netns: ns, drainIntervalMs: 0 });
try {
  let desired = compile();
  const counts = {};
  for (const o of desired.objects.values()) counts[o.wire.kind] = (counts[o.wire.kind] ?? 0) + 1;
  let t = performance.now();
  await applier.fullRestore(desired.sortedObjects());
  const firstFull = performance.now() - t;
  const deltaMs = [];
  const fullMs = [];
  const deltaOps = [];
  const fullPhases = [];
  for (let k = 0; k < reps; k++) {
    state.upsertEndpointSlice(flipEndpoint(slice, k));
    const next = compile();
    const change = diffStates(desired.objects, next.objects);
    t = performance.now();
    const r = await applier.applyDelta({ upserts: change.upserts.map((u) => u.wire), deletes: change.deletes });
    deltaMs.push(performance.now() - t);
    deltaOps.push({
      objects: change.upserts.length + change.deletes.length,
      netlinkOps: r.netlinkOps,
      ipsetLines: r.ipsetLines,
      phasesMs: r.phasesMs,
    });
    desired = next;
    // The same state from scratch (what a resync of an empty node costs): everything of kpx's removed first.
    inNs('ipvsadm', '-C');
    for (const table of ['nat', 'filter']) {
      inNs('iptables', '-t', table, '-F');
      inNs('iptables', '-t', table, '-X');
    }
    inNs('ipset', 'destroy');
    inNs('ip', 'addr', 'flush', 'dev', 'kube-ipvs0');
    t = performance.now();
    const full = await applier.fullRestore(desired.sortedObjects());
    fullMs.push(performance.now() - t);
    fullPhases.push({ netlinkOps: full.netlinkOps, ipsetLines: full.ipsetLines, phasesMs: full.phasesMs });
  }
  const rb = await applier.readBack();
  if (rb.digest !== desired.digest)
    throw new Error('read-back digest differs from the desired state after the benchmark');
  const ratio = quantile(fullMs, 0.5) / quantile(deltaMs, 0.5);
  results.figures.apply = {
    services: S,
    node,
    objects: desired.objects.size,
    kinds: counts,
    firstFullRestoreMs: firstFull,
    delta: summary(deltaMs),
    full: summary(fullMs),
    deltaOps,
    fullPhases,
    ratio,
  };
  console.log(
    `ipvs apply (S=${S}, ${counts['ipvs.service']} virtual servers and ${desired.objects.size} objects on ${node}, ${reps} interleaved pairs, read-back digest verified)`,
  );
  console.log(
    `  one-endpoint delta   median ${fmt(quantile(deltaMs, 0.5))}  (min ${fmt(Math.min(...deltaMs))}, max ${fmt(Math.max(...deltaMs))}; ${deltaOps[0].objects} objects, ${deltaOps[0].netlinkOps} netlink ops, ${deltaOps[0].ipsetLines} ipset lines)`,
  );
  console.log(
    `  from scratch         median ${fmt(quantile(fullMs, 0.5))}  (min ${fmt(Math.min(...fullMs))}, max ${fmt(Math.max(...fullMs))}; first full restore ${fmt(firstFull)})`,
  );
  const ph = (p) =>
    Object.entries(p)
      .map(([k, v]) => `${k} ${fmt(v)}`)
      .join(', ');
  console.log(`  phases of the last delta: ${ph(deltaOps.at(-1).phasesMs)}`);
  console.log(
    `  phases of the last full restore: ${ph(fullPhases.at(-1).phasesMs)} (${fullPhases.at(-1).netlinkOps} netlink ops, ${fullPhases.at(-1).ipsetLines} ipset lines)`,
  );
  console.log(`  ratio                ${ratio.toFixed(1)}x   (target >= 50x)`);
  await mkdir(join(HERE, 'out'), { recursive: true });
  await writeFile(join(HERE, 'out', 'ipvs-latest.json'), JSON.stringify(results, null, 2));
  if (ratio < 50) process.exitCode = 1;
} finally {
  await applier.close();
  execFileSync('ip', ['netns', 'del', ns]);
}
