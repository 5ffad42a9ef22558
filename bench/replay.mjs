// Benchmark of replay (issue #6: "Replaying 10,000 deltas for one node takes under 5 s"; see docs/benchmarks.md,
// "Replay (issue #6)").
//
//   npm run build && node bench/replay.mjs --runs 5         # 10,000 services × 10 endpoints, 10,000 deltas
//   node bench/replay.mjs --services 1000 --deltas 2000     # a quick run
//   node bench/replay.mjs --help
//
// History is built in a worker thread, the way the controller builds it: a synthetic cluster (bench/synth.mjs) is
// fed to a ControllerPipeline (IPv4, minSyncPeriodMs 0, tracing started as the controller does) whose sink
// publishes the deltas of the measured node and --others more with publishDelta to a real nats-server (JetStream,
// started here), and whose snapshot sink stores the measured node's first-sync snapshot with putSnapshot
// (generation 1). Then --deltas one-endpoint changes, each to another service (one ready endpoint replaced by a new
// pod): one generation and one ~1.4 KB delta per node each.
// Measured, interleaved round by round (median of --runs rounds):
//   lib     replayTo(js, {node, family: 'IPv4'}) to the newest generation, in this process;
//   lib mid replayTo(..., to: the generation of the node's middle delta);
//   cli     `node services/cli/bin/kpx.js replay --nats URL --node N -o json` (and `--to MID`), spawned: wall time
//           from spawn to exit, stdout read to the end by this process;
//   blocks  (once per round) getSnapshot, RuleState.from, readDeltas alone, RuleState.apply alone.
// Every result is checked: generation, digest (the last published delta's, and the controller's own), deltas applied.
// --profile DIR writes a CPU profile of one lib replay (node:inspector) and of one CLI run (--cpu-prof) to DIR.
// Prints a table; writes the figures to bench/out/replay-<time>.json and bench/out/replay-latest.json.
// Exit status 1 when a check fails, or (with --check) when the 5 s target is missed.
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { getSha256Backend, setSha256Backend } from '@nats-io/obj';
import { IPFamily, loadKubeProxyConfig } from '@kpx/model';
import { iptablesOptionsFromConfig } from '@kpx/compiler';
import { RuleState } from '@kpx/ruleset';
import { startTracing } from '@kpx/telemetry';
import { ControllerPipeline, MemoryGenerationStore } from '@kpx/controller';
import {
  ensureDeltaStream,
  ensureSnapshotStore,
  getSnapshot,
  publishDelta,
  putSnapshot,
  readDeltas,
} from '@kpx/transport';
import { replayTo } from '@kpx/replay';
import { startNatsServer } from '@kpx/testing';
import { DEFAULTS, kubeProxyConfig, synthCluster } from './synth.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench/out');
const KPX = join(ROOT, 'services/cli/bin/kpx.js');
const FAMILY = 'IPv4';

/** Issue #6's target. */
const TARGET_MS = 5000;

const USAGE = `usage: node bench/replay.mjs [options]

  --services N       services (default ${DEFAULTS.services})
  --endpoints N      endpoints per service (default ${DEFAULTS.endpoints})
  --nodes N          nodes in the cluster (default 32: 10,000 × 10 endpoints need 25 nodes' pod CIDRs)
  --others N         other nodes whose deltas are published too, interleaved with the replayed node's in the
                     stream (default 2; "all": every node); the rest are dropped by the sink
  --node NAME        the node replayed (default: the first)
  --deltas N         one-endpoint changes after the snapshot: deltas of the node (default 10000)
  --runs N           measurement rounds, each: lib, cli, lib mid, cli mid, phases (default 3)
  --no-cli           skip the spawned kpx replay runs
  --cli-format LIST  output formats of the CLI runs: json, table (default json)
  --window N         publishes in flight while building the history (default 256)
  --seed S           generator seed (default ${DEFAULTS.seed})
  --native-sha256    the measuring thread verifies object store reads with node:crypto (@nats-io/obj's
                     setSha256Backend('native')) instead of its pure-JS default; the spawned CLI keeps the default
  --store-dir DIR    nats-server's JetStream store directory, kept afterwards (default: a temporary one, deleted);
                     must be empty or absent
  --profile DIR      write CPU profiles of one lib replay and one CLI run to DIR
  --check            exit 1 when replaying the deltas takes 5 s or more (median, lib)
`;

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      services: { type: 'string', default: String(DEFAULTS.services) },
      endpoints: { type: 'string', default: String(DEFAULTS.endpoints) },
      nodes: { type: 'string', default: '32' },
      others: { type: 'string', default: '2' },
      node: { type: 'string' },
      deltas: { type: 'string', default: '10000' },
      runs: { type: 'string', default: '3' },
      'no-cli': { type: 'boolean', default: false },
      'cli-format': { type: 'string', default: 'json' },
      window: { type: 'string', default: '256' },
      seed: { type: 'string', default: DEFAULTS.seed },
      profile: { type: 'string' },
      'store-dir': { type: 'string' },
      'native-sha256': { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const int = (name, min) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name} must be an integer >= ${min}, not ${JSON.stringify(values[name])}`);
    return n;
  };
  const formats = values['cli-format']
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const f of formats)
    if (f !== 'json' && f !== 'table') throw new Error(`--cli-format: ${JSON.stringify(f)} is neither json nor table`);
  return {
    help: values.help ?? false,
    services: int('services', 1),
    endpoints: int('endpoints', 2),
    nodes: int('nodes', 1),
    node: values.node,
    others: values.others === 'all' ? Infinity : int('others', 0),
    deltas: int('deltas', 2),
    runs: int('runs', 1),
    cli: !values['no-cli'],
    cliFormats: formats,
    window: int('window', 1),
    seed: values.seed,
    profile: values.profile === undefined ? undefined : resolve(values.profile),
    storeDir: values['store-dir'] === undefined ? undefined : resolve(values['store-dir']),
    nativeSha256: values['native-sha256'] ?? false,
    check: values.check ?? false,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const silent = { info: () => {}, warn: () => {}, error: () => {} };
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmtMs = (ms) =>
  ms >= 10_000
    ? `${(ms / 1000).toFixed(1)} s`
    : ms >= 1000
      ? `${(ms / 1000).toFixed(2)} s`
      : ms >= 100
        ? `${ms.toFixed(0)} ms`
        : `${ms.toFixed(1)} ms`;
const fmtBytes = (b) =>
  b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${Math.round(b)} B`;
const fmtRate = (n, ms) => `${Math.round(n / (ms / 1000)).toLocaleString('en-US')}/s`;

class CheckError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CheckError';
  }
}
function check(cond, message) {
  if (!cond) throw new CheckError(message);
}

function ip4(text) {
  return text.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}
function ip4Text(n) {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Pod IPs no synthetic endpoint uses: from the top of each node's pod CIDR downwards. */
function podAllocator(nodeObjects, slices) {
  const used = new Set();
  for (const s of slices) for (const ep of s.endpoints) used.add(ep.addresses[0]);
  const [, prefix] = nodeObjects[0].spec.podCIDR.split('/');
  const size = 2 ** (32 - Number(prefix));
  const next = new Map(nodeObjects.map((n) => [n.metadata.name, ip4(n.spec.podCIDR.split('/')[0]) + size - 2]));
  return (node) => {
    let ip = next.get(node);
    if (ip === undefined) throw new Error(`unknown node ${node}`);
    while (used.has(ip4Text(ip))) ip--;
    used.add(ip4Text(ip));
    next.set(node, ip - 1);
    return ip4Text(ip);
  };
}

let resourceVersion = 10_000_000;

/** A copy of `slice` whose endpoint `index` is replaced by a new pod (new IP, same node). */
function replaceEndpoint(slice, index, newIP) {
  const endpoints = slice.endpoints.map((ep, i) =>
    i === index
      ? { ...ep, addresses: [newIP], targetRef: { ...ep.targetRef, name: `${ep.targetRef.name}-r${resourceVersion}` } }
      : ep,
  );
  return { ...slice, metadata: { ...slice.metadata, resourceVersion: String(++resourceVersion) }, endpoints };
}

/** Services with Cluster traffic policies and one slice of >= 2 ready endpoints: a change reaches every node. */
function changeableServices(cluster) {
  const slicesOf = new Map();
  for (const s of cluster.slices) {
    const key = `${s.metadata.namespace}/${s.metadata.labels['kubernetes.io/service-name']}`;
    if (!slicesOf.has(key)) slicesOf.set(key, []);
    slicesOf.get(key).push(s);
  }
  const out = [];
  for (const svc of cluster.services) {
    if (svc.spec.externalTrafficPolicy === 'Local' || svc.spec.internalTrafficPolicy === 'Local') continue;
    const sl = slicesOf.get(`${svc.metadata.namespace}/${svc.metadata.name}`);
    if (!sl || sl.length !== 1 || sl[0].endpoints.filter((e) => e.conditions.ready).length < 2) continue;
    out.push({ slice: sl[0], turn: 0 });
  }
  return out;
}

/**
 * A DeltaSink publishing with publishDelta, up to `window` publishes in flight. publish() returns once the
 * publish is sent (js.publish writes in call order on one connection, so each subject keeps generation order)
 * and there is room in the window; drain() waits for every PubAck.
 */
function windowedSink(js, window, onPublished) {
  const inflight = new Set();
  let failure;
  const waitRoom = async () => {
    while (inflight.size >= window) await Promise.race(inflight);
  };
  return {
    async publish(delta, headers) {
      if (failure) throw failure;
      await waitRoom();
      const p = publishDelta(js, delta, { traceHeaders: headers })
        .then((ack) => onPublished(delta, ack))
        .catch((err) => {
          failure ??= err;
        });
      const tracked = p.finally(() => inflight.delete(tracked));
      inflight.add(tracked);
    },
    async drain() {
      await Promise.all(inflight);
      if (failure) throw failure;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Building the history

async function buildHistory(opts, js, jsm, tracer, say) {
  const t0 = performance.now();
  const cluster = synthCluster({
    services: opts.services,
    endpoints: opts.endpoints,
    nodes: opts.nodes,
    seed: opts.seed,
  });
  const { config, warnings } = loadKubeProxyConfig(JSON.stringify(kubeProxyConfig(cluster)));
  if (warnings.length) throw new Error(`kube-proxy config warnings: ${warnings.join('; ')}`);
  const options = iptablesOptionsFromConfig(config, IPFamily.IPv4);
  const node = opts.node ?? cluster.nodes[0].metadata.name;
  if (!cluster.nodes.some((n) => n.metadata.name === node))
    throw new Error(`--node ${node} is not one of the ${opts.nodes} synthetic nodes`);
  const st = cluster.stats;
  // The nodes whose deltas go to the stream: the replayed one and --others more.
  const streamed = new Set([
    node,
    ...cluster.nodes
      .map((n) => n.metadata.name)
      .filter((n) => n !== node)
      .slice(0, opts.others),
  ]);
  say(
    `cluster: ${st.services} services, ${st.servicePorts} ports, ${st.endpoints} endpoints in ${st.slices} slices, ${opts.nodes} nodes; replayed node ${node}, deltas of ${streamed.size} nodes published`,
  );

  // The stream keeps every delta of the node: the first-sync snapshot marker plus the changes.
  const historyPerSubject = opts.deltas + 1;
  await ensureDeltaStream(jsm, { historyPerSubject, maxAgeMs: 0 });
  await ensureSnapshotStore(js);

  /** The measured node's deltas as published: generation, prev, digest, stream seq, encoded bytes. */
  const published = [];
  const publisher = windowedSink(js, opts.window, (delta, ack) => {
    check(!ack.duplicate, `delta ${delta.generation} of ${delta.node} was dropped as a duplicate`);
    if (delta.node === node)
      published.push({
        generation: delta.generation,
        prevGeneration: delta.prevGeneration,
        digest: delta.digest,
        snapshot: delta.snapshot,
        seq: ack.seq,
      });
  });
  let snapshotInfo;
  const snapshots = {
    async put(ruleSet) {
      // Only the measured node's snapshot is stored (each is ~30 MiB at 10,000 services; the others are not replayed).
      if (ruleSet.node !== node || ruleSet.ipFamily !== FAMILY) return;
      check(snapshotInfo === undefined, `a second snapshot of ${node} (generation ${ruleSet.generation}) was stored`);
      snapshotInfo = { ...(await putSnapshot(js, ruleSet, { keepOlder: 2 })), objects: ruleSet.objects.length };
    },
  };
  const sink = {
    publish: (delta, headers) => (streamed.has(delta.node) ? publisher.publish(delta, headers) : Promise.resolve()),
    drain: () => publisher.drain(),
  };
  const pipeline = new ControllerPipeline({
    families: new Map([[IPFamily.IPv4, options]]),
    sink,
    snapshots,
    snapshotEvery: 0,
    generations: new MemoryGenerationStore(),
    minSyncPeriodMs: 0,
    logger: silent,
    tracer,
  });
  const now = Date.now();
  for (const object of [...cluster.nodes, ...cluster.services, ...cluster.slices])
    pipeline.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: now });
  pipeline.onSynced();
  await pipeline.settle();
  await sink.drain();
  check(
    snapshotInfo !== undefined && snapshotInfo.generation === 1,
    `the first sync did not store ${node}'s snapshot at generation 1`,
  );
  say(
    `first sync: generation 1, snapshot of ${node} stored: ${fmtBytes(snapshotInfo.size)} in ${snapshotInfo.chunks} chunks (${fmtMs(performance.now() - t0)} so far)`,
  );

  // The changes.
  const targets = changeableServices(cluster);
  check(targets.length > 0, 'no service qualifies for one-endpoint changes');
  const newPod = podAllocator(cluster.nodes, cluster.slices);
  cluster.services = [];
  cluster.slices = [];
  const tChanges = performance.now();
  /** Encoded bytes of the measured node's deltas, as the pipeline reports them. */
  const nodeBytes = [];
  const off = pipeline.onSync((o) => {
    const k = o.deltas.findIndex((d) => d.node === node);
    if (k >= 0) nodeBytes.push(o.deltaBytes[k]);
  });
  for (let i = 0; i < opts.deltas; i++) {
    // Different services in turn, spread over the list; each time another ready endpoint of the service.
    const t = targets[(i * 7919) % targets.length];
    const ready = t.slice.endpoints.map((e, j) => (e.conditions.ready ? j : -1)).filter((j) => j >= 0);
    const index = ready[t.turn++ % ready.length];
    const next = replaceEndpoint(t.slice, index, newPod(t.slice.endpoints[index].nodeName));
    t.slice = next;
    const before = pipeline.generation;
    pipeline.onEvent({ kind: 'EndpointSlice', type: 'upsert', object: next, observedAt: Date.now() });
    await pipeline.settle();
    check(
      pipeline.generation === before + 1,
      `change ${i} made generations ${before} -> ${pipeline.generation}, not one`,
    );
    if ((i + 1) % 2000 === 0) say(`  ${i + 1} changes (${fmtMs(performance.now() - tChanges)})`);
  }
  off();
  await sink.drain();
  const changesMs = performance.now() - tChanges;
  const truth = await pipeline.snapshot(node, FAMILY);
  await pipeline.stop();

  // The node's history must be complete and chained, in stream order.
  published.sort((a, b) => a.seq - b.seq);
  check(
    published.length === opts.deltas + 1,
    `${node} got ${published.length} deltas, expected ${opts.deltas + 1} (snapshot marker + one per change)`,
  );
  check(
    published[0].snapshot && published[0].generation === 1,
    `${node}'s first delta is not the generation-1 snapshot marker`,
  );
  for (let i = 1; i < published.length; i++) {
    const d = published[i];
    check(!d.snapshot, `${node}'s delta ${d.generation} is a snapshot delta (too large to inline?)`);
    check(
      d.prevGeneration === published[i - 1].generation,
      `${node}'s delta at seq ${d.seq} (generation ${d.generation}) continues ${d.prevGeneration}, not ${published[i - 1].generation}: out of stream order`,
    );
  }
  const last = published.at(-1);
  check(
    truth.generation === last.generation && truth.digest === last.digest,
    `the controller's state of ${node} (${truth.generation}) is not its last delta's (${last.generation})`,
  );
  const info = await jsm.streams.info('KPX_DELTAS');
  say(
    `${opts.deltas} one-endpoint changes: ${fmtMs(changesMs)}; stream KPX_DELTAS: ${info.state.messages} messages (${streamed.size} nodes), ${fmtBytes(info.state.bytes)}; ` +
      `${node}: ${published.length} deltas, generations 1..${last.generation}, ${fmtBytes(median(nodeBytes))} each (median), ${fmtBytes(nodeBytes.reduce((a, b) => a + b, 0))} in all`,
  );
  return {
    node,
    truth: { generation: truth.generation, digest: truth.digest, objects: truth.objects.length },
    published,
    snapshot: {
      generation: snapshotInfo.generation,
      bytes: snapshotInfo.size,
      chunks: snapshotInfo.chunks,
      objects: snapshotInfo.objects,
    },
    stream: {
      messages: info.state.messages,
      bytes: info.state.bytes,
      historyPerSubject,
      nodesPublished: streamed.size,
    },
    cluster: st,
    buildMs: performance.now() - t0,
    changesMs,
    deltaBytes: { p50: median(nodeBytes), total: nodeBytes.reduce((a, b) => a + b, 0), n: nodeBytes.length },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements

const CLOCK_TICK_MS = 10; // Linux USER_HZ is 100

/** utime + stime of a process, and cutime + cstime (its reaped children), ms; undefined off Linux. */
async function procCpu(pid = 'self') {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14-17 of stat: utime, stime, cutime, cstime (clock ticks).
    return {
      own: (Number(f[11]) + Number(f[12])) * CLOCK_TICK_MS,
      children: (Number(f[13]) + Number(f[14])) * CLOCK_TICK_MS,
    };
  } catch {
    return undefined;
  }
}

async function libReplay(js, serverPid, node, to, expect) {
  const s0 = await procCpu(serverPid);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let untilDelta500;
  const r = await replayTo(js, {
    node,
    family: FAMILY,
    ...(to === undefined ? {} : { to }),
    onProgress: (n) => (untilDelta500 ??= n === 500 ? performance.now() - t0 : undefined),
  });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const s1 = await procCpu(serverPid);
  check(
    r.generation === expect.generation,
    `replayTo reached generation ${r.generation}, expected ${expect.generation}`,
  );
  check(
    r.digest === expect.digest,
    `replayTo reached digest ${r.digest} at generation ${r.generation}, the published delta says ${expect.digest}`,
  );
  check(r.deltasApplied === expect.deltas, `replayTo applied ${r.deltasApplied} deltas, expected ${expect.deltas}`);
  check(r.snapshotGeneration === 1, `replayTo started from snapshot ${r.snapshotGeneration}`);
  check(r.state.objects.size > 0, 'replayTo returned an empty state');
  return {
    ms,
    cpuMs: (cpu.user + cpu.system) / 1000,
    serverCpuMs: s0 && s1 ? s1.own - s0.own : undefined,
    untilDelta500Ms: untilDelta500,
  };
}

/** Spawns the kpx CLI; wall time from spawn to exit with stdout read to the end, and the child's CPU time. */
async function cliReplay(url, node, to, format, expect, profileDir) {
  const args = [
    ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    KPX,
    'replay',
    '--nats',
    url,
    '--node',
    node,
    '-o',
    format,
    ...(to === undefined ? [] : ['--to', String(to)]),
  ];
  const c0 = await procCpu();
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let outBytes = 0;
  let head = '';
  let err = '';
  child.stdout.on('data', (b) => {
    if (head.length < 4096) head += b.toString('utf8', 0, Math.min(b.length, 4096));
    outBytes += b.length;
  });
  child.stderr.on('data', (b) => (err += b));
  const code = await new Promise((res, rej) => {
    child.once('error', rej);
    child.once('close', (c) => res(c));
  });
  const ms = performance.now() - t0;
  const c1 = await procCpu();
  check(code === 0, `kpx replay -o ${format} exited ${code}: ${err.slice(-300)}`);
  if (format === 'json') {
    const g = /"generation":\s*(\d+)/.exec(head);
    const d = /"digest":\s*"([0-9a-f]{64})"/.exec(head);
    check(
      g && Number(g[1]) === expect.generation,
      `kpx replay -o json printed generation ${g?.[1]}, expected ${expect.generation}`,
    );
    check(d && d[1] === expect.digest, `kpx replay -o json printed digest ${d?.[1]}, expected ${expect.digest}`);
  } else {
    const m = /^# node \S+ \S+ generation (\d+) digest ([0-9a-f]{64}) \(snapshot (\d+) \+ (\d+) deltas\)/.exec(head);
    check(
      m && Number(m[1]) === expect.generation && m[2] === expect.digest && Number(m[4]) === expect.deltas,
      `kpx replay -o table printed ${head.split('\n')[0]}`,
    );
  }
  return { ms, cpuMs: c0 && c1 ? c1.children - c0.children : undefined, outBytes };
}

/**
 * The building blocks of a replay, measured apart: getSnapshot (object store read, SHA-256 check, decode),
 * RuleState.from on it (@kpx/ruleset's hashing), readDeltas alone, RuleState.apply alone.
 */
async function phases(js, node, expect) {
  const t0 = performance.now();
  const snap = await getSnapshot(js, node, FAMILY, { generation: 1 });
  const t1 = performance.now();
  const state = RuleState.from(snap.objects, snap.generation);
  const t2 = performance.now();
  const deltas = [];
  for await (const rec of readDeltas(js, node, { fromGeneration: snap.generation, ipFamily: FAMILY }))
    deltas.push(rec.delta);
  const t3 = performance.now();
  for (const d of deltas) state.apply(d);
  const t4 = performance.now();
  check(
    deltas.length === expect.deltas && state.digest === expect.digest,
    `phases: ${deltas.length} deltas read, digest ${state.digest}`,
  );
  return { getSnapshotMs: t1 - t0, ruleStateFromMs: t2 - t1, readDeltasMs: t3 - t2, applyDeltaMs: t4 - t3 };
}

async function profileLib(js, serverPid, node, expect, dir) {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.start');
    await libReplay(js, serverPid, node, undefined, expect);
    const { profile } = await session.post('Profiler.stop');
    const file = join(dir, 'replay-lib.cpuprofile');
    await writeFile(file, JSON.stringify(profile));
    return file;
  } finally {
    session.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The history is built in a worker thread: the measuring thread runs only replay code (like the CLI and the
// executors), with a JIT and a heap that never saw the controller pipeline.

function buildInWorker(opts, url, say) {
  const worker = new Worker(new URL(import.meta.url), { workerData: { opts, url } });
  return new Promise((res, rej) => {
    let result;
    worker.on('message', (m) => {
      if (m.say !== undefined) say(m.say);
      if (m.result !== undefined) result = m.result;
    });
    worker.once('error', rej);
    worker.once('exit', (code) =>
      result !== undefined && code === 0
        ? res(result)
        : rej(new Error(`the history builder exited with code ${code} and no result`)),
    );
  });
}

async function workerMain() {
  const { opts, url } = workerData;
  const say = (line) => parentPort.postMessage({ say: line });
  const tracing = startTracing({ serviceName: 'kpx-bench-replay' });
  const nc = await connect({ servers: url, name: 'kpx-bench-replay-build' });
  try {
    const h = await buildHistory(opts, jetstream(nc), await jetstreamManager(nc), tracing.tracer, say);
    parentPort.postMessage({ result: h });
  } finally {
    await nc.close();
    await tracing.shutdown();
  }
}

// ---------------------------------------------------------------------------------------------------------------

async function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const say = (line) => process.stdout.write(`${line}\n`);
  const results = {
    date: new Date().toISOString(),
    machine: {
      nproc: cpus().length,
      cpu: cpus()[0]?.model,
      memGB: +(totalmem() / 2 ** 30).toFixed(1),
      node: process.version,
      kernel: release(),
      loadavgStart: loadavg(),
    },
    params: { ...opts, others: opts.others === Infinity ? 'all' : opts.others },
  };
  say(
    `kpx replay benchmark: S=${opts.services} E=${opts.endpoints} nodes=${opts.nodes} deltas=${opts.deltas}, seed ${opts.seed}; ${results.machine.nproc} CPUs (${results.machine.cpu}), node ${process.version}`,
  );
  if (opts.storeDir) {
    const entries = await readdir(opts.storeDir).catch(() => []);
    if (entries.length > 0) throw new Error(`--store-dir ${opts.storeDir} is not empty`);
  }
  const server = await startNatsServer({ jetstream: true, ...(opts.storeDir ? { storeDir: opts.storeDir } : {}) });
  let nc;
  try {
    const h = await buildInWorker(opts, server.url, say);
    results.history = { ...h, published: undefined };
    if (opts.nativeSha256) setSha256Backend('native');
    nc = await connect({ servers: server.url, name: 'kpx-bench-replay' });
    const js = jetstream(nc);
    const node = h.node;
    const deltas = h.published.slice(1);
    const last = deltas.at(-1);
    const mid = deltas[(deltas.length >> 1) - 1];
    const full = { generation: last.generation, digest: last.digest, deltas: deltas.length };
    const half = { generation: mid.generation, digest: mid.digest, deltas: deltas.length >> 1 };
    const midTo = mid.generation;
    say(
      `measuring: ${opts.runs} rounds (object store SHA-256 in this thread: ${getSha256Backend()}); full = generation ${full.generation} (${full.deltas} deltas), mid = --to ${midTo} (${half.deltas} deltas)`,
    );

    const rounds = [];
    for (let r = 0; r < opts.runs; r++) {
      const round = {};
      round.lib = await libReplay(js, server.pid, node, undefined, full);
      if (opts.cli)
        for (const f of opts.cliFormats) round[`cli-${f}`] = await cliReplay(server.url, node, undefined, f, full);
      round.libMid = await libReplay(js, server.pid, node, midTo, half);
      if (opts.cli)
        for (const f of opts.cliFormats) round[`cli-${f}-mid`] = await cliReplay(server.url, node, midTo, f, half);
      round.phases = await phases(js, node, full);
      rounds.push(round);
      const cliText = opts.cli
        ? opts.cliFormats
            .map((f) => `cli ${f} ${fmtMs(round[`cli-${f}`].ms)} (mid ${fmtMs(round[`cli-${f}-mid`].ms)})`)
            .join(', ')
        : '';
      say(
        `  round ${r + 1}: lib ${fmtMs(round.lib.ms)} (mid ${fmtMs(round.libMid.ms)})${cliText ? `, ${cliText}` : ''}`,
      );
    }
    const med = (f) => median(rounds.map(f));
    const samples = (f) => rounds.map((r) => +f(r).toFixed(1));
    const s = {
      lib: {
        ms: med((r) => r.lib.ms),
        cpuMs: med((r) => r.lib.cpuMs),
        serverCpuMs: med((r) => r.lib.serverCpuMs ?? NaN),
        untilDelta500Ms: rounds[0].lib.untilDelta500Ms === undefined ? undefined : med((r) => r.lib.untilDelta500Ms),
        samplesMs: samples((r) => r.lib.ms),
      },
      libMid: {
        ms: med((r) => r.libMid.ms),
        cpuMs: med((r) => r.libMid.cpuMs),
        samplesMs: samples((r) => r.libMid.ms),
      },
      phases: Object.fromEntries(Object.keys(rounds[0].phases).map((k) => [k, med((r) => r.phases[k])])),
      cli: {},
    };
    for (const f of opts.cli ? opts.cliFormats : []) {
      s.cli[f] = {
        ms: med((r) => r[`cli-${f}`].ms),
        cpuMs: med((r) => r[`cli-${f}`].cpuMs ?? NaN),
        midMs: med((r) => r[`cli-${f}-mid`].ms),
        samplesMs: samples((r) => r[`cli-${f}`].ms),
        midSamplesMs: samples((r) => r[`cli-${f}-mid`].ms),
        outBytes: rounds[0][`cli-${f}`].outBytes,
      };
    }
    results.summary = s;
    const p = s.phases;
    say('');
    say(
      `replay of ${node} (snapshot at generation 1: ${h.snapshot.objects.toLocaleString('en-US')} objects, ${fmtBytes(h.snapshot.bytes)}; then ${full.deltas} deltas), median of ${opts.runs}:`,
    );
    say(
      `  replayTo -> newest, ${full.deltas} deltas: ${fmtMs(s.lib.ms)} wall, ${fmtMs(s.lib.cpuMs)} CPU (nats-server ${fmtMs(s.lib.serverCpuMs)}); samples ${s.lib.samplesMs.map(fmtMs).join(', ')}`,
    );
    if (s.lib.untilDelta500Ms !== undefined && full.deltas > 500) {
      const rest = s.lib.ms - s.lib.untilDelta500Ms;
      say(
        `    snapshot + first 500 deltas ${fmtMs(s.lib.untilDelta500Ms)}; the other ${full.deltas - 500} deltas ${fmtMs(rest)} (${fmtRate(full.deltas - 500, rest)})`,
      );
    }
    say(
      `  replayTo -> --to ${midTo}, ${half.deltas} deltas: ${fmtMs(s.libMid.ms)} wall, ${fmtMs(s.libMid.cpuMs)} CPU; samples ${s.libMid.samplesMs.map(fmtMs).join(', ')}`,
    );
    for (const [f, c] of Object.entries(s.cli)) {
      say(
        `  kpx replay -o ${f} (spawned): ${fmtMs(c.ms)} wall, ${fmtMs(c.cpuMs)} CPU; --to ${midTo}: ${fmtMs(c.midMs)}; stdout ${fmtBytes(c.outBytes)}; samples ${c.samplesMs.map(fmtMs).join(', ')}`,
      );
    }
    say(
      `  building blocks: getSnapshot ${fmtMs(p.getSnapshotMs)}, RuleState.from ${fmtMs(p.ruleStateFromMs)}; readDeltas ${fmtMs(p.readDeltasMs)} (${fmtRate(full.deltas, p.readDeltasMs)}); RuleState.apply ${fmtMs(p.applyDeltaMs)} (${fmtRate(full.deltas, p.applyDeltaMs)})`,
    );
    say(
      `  checked: generation ${full.generation} and digest ${full.digest.slice(0, 16)}… = the last published delta's = the controller's`,
    );

    if (opts.profile) {
      await mkdir(opts.profile, { recursive: true });
      const lib = await profileLib(js, server.pid, node, full, opts.profile);
      if (opts.cli) await cliReplay(server.url, node, undefined, opts.cliFormats[0], full, opts.profile);
      say(`profiles: ${lib}${opts.cli ? ` and CPU.*.cpuprofile of the CLI in ${opts.profile}` : ''}`);
    }
  } finally {
    await nc?.close();
    await server.stop();
  }
  results.machine.loadavgEnd = loadavg();
  const s = results.summary;
  const ok = s.lib.ms < TARGET_MS;
  results.verdict = {
    target: `replay of ${opts.deltas} deltas for one node < 5 s`,
    libMs: s.lib.ms,
    cliJsonMs: s.cli.json?.ms,
    ok,
  };
  say('');
  say(
    `target: replaying ${opts.deltas} deltas for one node < 5 s: replayTo ${fmtMs(s.lib.ms)}${s.cli.json ? `, kpx replay -o json ${fmtMs(s.cli.json.ms)}` : ''} -> ${ok ? 'met' : 'MISSED'}`,
  );
  await mkdir(OUT, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  await writeFile(join(OUT, `replay-${results.date.replace(/[:.]/g, '-')}.json`), json);
  await writeFile(join(OUT, 'replay-latest.json'), json);
  say(
    `load average at start ${results.machine.loadavgStart.map((x) => x.toFixed(2)).join(' ')}, at end ${results.machine.loadavgEnd.map((x) => x.toFixed(2)).join(' ')} (${results.machine.nproc} CPUs); figures: bench/out/replay-latest.json`,
  );
  return opts.check && !ok ? 1 : 0;
}

if (isMainThread) {
  try {
    process.exitCode = await main();
  } catch (err) {
    process.stderr.write(`${err instanceof CheckError ? 'check failed: ' : ''}${err.stack ?? err}\n`);
    process.exitCode = 1;
  }
} else {
  await workerMain();
}
