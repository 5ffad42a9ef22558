// Benchmark of the controller pipeline at scale (issue #3; see docs/benchmarks.md, "Controller at scale").
//
//   npm run build && node --expose-gc bench/controller.mjs --nats-nodes 100,300,1000   # 10,000 services × 10 endpoints × 1,000 nodes
//   node --expose-gc bench/controller.mjs --services 1000 --nodes 50 --extra-nodes 10 --nats-nodes 20   # a quick run
//   node bench/controller.mjs --help
//
// A synthetic cluster (bench/synth.mjs) is fed as source events to a ControllerPipeline (IPv4, minSyncPeriodMs 0,
// real tracing without an exporter, as the controller runs it) whose DeltaSink encodes and counts every delta.
// Measured: the first sync (compile + publish of every node), heap after GC at N and N+extra nodes, one-endpoint
// EndpointSlice changes (bytes published per node, nodes reached, onEvent -> last delta published), a Local-policy
// endpoint moving node, and (section nats) the change -> published latency through a real nats-server.
// Prints a table; writes the figures to bench/out/controller-<time>.json and bench/out/controller-latest.json.
// Exit status 1 when a target is missed (with --check) or a result is inconsistent.
import { cpus, loadavg, release, totalmem } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { IPFamily, loadKubeProxyConfig } from '@kpx/model';
import { iptablesOptionsFromConfig } from '@kpx/compiler';
import { Delta, NodeRuleSet } from '@kpx/proto';
import { RuleState } from '@kpx/ruleset';
import { startTracing } from '@kpx/telemetry';
import { ControllerPipeline, MemoryGenerationStore, natsPorts } from '@kpx/controller';
import { DEFAULTS, kubeProxyConfig, synthCluster } from './synth.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'bench/out');

/** Issue #3's targets. */
const TARGETS = Object.freeze({
  heapBytes: 1.5 * 2 ** 30,
  perNodeHeapBytes: 100 * 1024,
  perNodeDeltaBytes: 2 * 1024,
  changeP50Ms: 50,
});

const SECTIONS = {
  initial: 'first sync: compile every node and publish (runs with every in-process section)',
  memory: 'heap after GC at N nodes and at N+extra nodes (the extra nodes join in one sync, then leave)',
  changes: 'one-endpoint EndpointSlice changes: bytes per node, nodes reached, onEvent -> all deltas published',
  local: 'an eTP Local service endpoint moves to another node: which nodes get deltas',
  nats: 'change -> published through a real nats-server (JetStream), separate pipeline of --nats-nodes nodes',
};

const USAGE = `usage: node --expose-gc bench/controller.mjs [options]

  --only LIST          comma-separated sections (default: all): ${Object.keys(SECTIONS).join(', ')}
  --services N         services (default ${DEFAULTS.services})
  --endpoints N        endpoints per service (default ${DEFAULTS.endpoints})
  --nodes N            nodes at the first sync (default 1000)
  --extra-nodes N      nodes that join afterwards, for the heap growth per node, and leave again (default 200)
  --changes N          timed one-endpoint changes, each to a different service (default 50, after 5 untimed)
  --local-changes N    eTP Local endpoint moves (default 5)
  --nats-nodes LIST    node counts of the nats section, one pipeline each, e.g. 100,1000 (default: --nodes)
  --nats-changes N     timed changes through nats-server (default 30, after 3 untimed)
  --publish-concurrency N   the pipeline's parallel publishes (default 64, the pipeline's default)
  --no-async-traces    connect to NATS with noAsyncTraces (the controller does not, today)
  --seed S             generator seed (default ${DEFAULTS.seed})
  --verify N           apply every delta N nodes get to their first snapshot (chain and digest checked on each)
                       and compare with the controller's state at the end (default 3; 0: off)
  --check              exit 1 when a target is missed

sections:
${Object.entries(SECTIONS)
  .map(([k, v]) => `  ${k.padEnd(8)} ${v}`)
  .join('\n')}
`;

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      services: { type: 'string', default: String(DEFAULTS.services) },
      endpoints: { type: 'string', default: String(DEFAULTS.endpoints) },
      nodes: { type: 'string', default: '1000' },
      'extra-nodes': { type: 'string', default: '200' },
      changes: { type: 'string', default: '50' },
      'local-changes': { type: 'string', default: '5' },
      'nats-nodes': { type: 'string' },
      'nats-changes': { type: 'string', default: '30' },
      'publish-concurrency': { type: 'string', default: '64' },
      'no-async-traces': { type: 'boolean', default: false },
      seed: { type: 'string', default: DEFAULTS.seed },
      verify: { type: 'string', default: '3' },
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
  const only = values.only
    ? values.only
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : Object.keys(SECTIONS);
  for (const s of only)
    if (!(s in SECTIONS))
      throw new Error(`unknown section ${JSON.stringify(s)}: choose from ${Object.keys(SECTIONS).join(', ')}`);
  const nodes = int('nodes', 2);
  return {
    help: values.help ?? false,
    sections: new Set([...(only.some((s) => s !== 'nats') ? ['initial'] : []), ...only]),
    services: int('services', 1),
    endpoints: int('endpoints', 2),
    nodes,
    extraNodes: int('extra-nodes', 1),
    changes: int('changes', 1),
    localChanges: int('local-changes', 0),
    natsNodes:
      values['nats-nodes'] === undefined
        ? [nodes]
        : values['nats-nodes'].split(',').map((x) => {
            const n = Number(x);
            if (!Number.isInteger(n) || n < 2)
              throw new Error(`--nats-nodes: ${JSON.stringify(x)} is not an integer >= 2`);
            return n;
          }),
    natsChanges: int('nats-changes', 1),
    publishConcurrency: int('publish-concurrency', 1),
    noAsyncTraces: values['no-async-traces'] ?? false,
    seed: values.seed,
    verify: int('verify', 0),
    check: values.check ?? false,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const silent = { info: () => {}, warn: () => {}, error: () => {} };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function gcHeap() {
  if (typeof globalThis.gc !== 'function') return undefined;
  for (let i = 0; i < 3; i++) globalThis.gc();
  return process.memoryUsage().heapUsed;
}

/** Nearest-rank percentile. */
function pct(values, p) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function stats(values) {
  return { p50: pct(values, 50), p90: pct(values, 90), min: pct(values, 0), max: pct(values, 100), n: values.length };
}

const fmtMs = (ms) =>
  ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`;
const fmtBytes = (b) =>
  b >= 2 ** 30
    ? `${(b / 2 ** 30).toFixed(2)} GiB`
    : b >= 2 ** 20
      ? `${(b / 2 ** 20).toFixed(1)} MiB`
      : b >= 1024
        ? `${(b / 1024).toFixed(1)} KiB`
        : `${Math.round(b)} B`;

function ip4(text) {
  return text.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}
function ip4Text(n) {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Counts what the pipeline publishes; the bytes are those of Delta.encode, as publishDelta sends them. */
class CountingSink {
  constructor(inner) {
    this.inner = inner;
    /** Node -> RuleState: every delta to these nodes is applied (apply checks chain and digest). */
    this.replicas = new Map();
    this.applied = 0;
    this.reset();
  }
  reset() {
    this.deltas = [];
    this.lastAt = 0;
  }
  async publish(delta, headers) {
    // In front of a real sink, which encodes the delta itself, the bytes are not measured again here.
    const bytes = this.inner ? NaN : Delta.encode(delta).finish().length;
    const replica = this.replicas.get(delta.node);
    if (replica && !delta.snapshot) {
      replica.apply(delta);
      this.applied++;
    }
    if (this.inner) await this.inner.publish(delta, headers);
    this.lastAt = performance.now();
    this.deltas.push({ delta, bytes });
  }
}

function makePipeline({ options, sink, generations, tracer, publishConcurrency }) {
  const syncs = [];
  const pipeline = new ControllerPipeline({
    families: new Map([[IPFamily.IPv4, options]]),
    sink,
    generations,
    minSyncPeriodMs: 0,
    publishConcurrency,
    logger: silent,
    tracer,
    metrics: { synced: (s) => syncs.push(s) },
  });
  return { pipeline, syncs };
}

function feed(pipeline, objects) {
  const now = Date.now();
  for (const object of objects) pipeline.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: now });
}

/** Allocates pod IPs no synthetic endpoint uses: from the top of each node's /20 downwards. */
function podAllocator(nodeObjects, slices) {
  const used = new Set();
  for (const s of slices) for (const ep of s.endpoints) used.add(ep.addresses[0]);
  const next = new Map(nodeObjects.map((n) => [n.metadata.name, ip4(n.spec.podCIDR.split('/')[0]) + 4094]));
  return (node) => {
    let ip = next.get(node);
    if (ip === undefined) throw new Error(`unknown node ${node}`);
    while (used.has(ip4Text(ip))) ip--;
    used.add(ip4Text(ip));
    next.set(node, ip - 1);
    return ip4Text(ip);
  };
}

/** user + system CPU time of a process, ms (Linux /proc; undefined elsewhere). */
async function processCpuMs(pid) {
  try {
    const { readFile } = await import('node:fs/promises');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime), in clock ticks: 100 per second on Linux.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

let rvCounter = 10_000_000;

/** A copy of `slice` with endpoint `index` replaced by a new pod (new IP) on `node` (default: the same node). */
function replaceEndpoint(slice, index, newIP, node) {
  const endpoints = slice.endpoints.map((ep, i) =>
    i === index
      ? {
          ...ep,
          addresses: [newIP],
          ...(node ? { nodeName: node.name, zone: node.zone } : {}),
          targetRef: { ...ep.targetRef, name: `${ep.targetRef.name}-r${rvCounter}` },
        }
      : ep,
  );
  return { ...slice, metadata: { ...slice.metadata, resourceVersion: String(++rvCounter) }, endpoints };
}

/** One change: onEvent -> every delta of the sync it causes published. */
async function timedChange(pipeline, sink, syncs, object) {
  sink.reset();
  const syncsBefore = syncs.length;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  pipeline.onEvent({ kind: 'EndpointSlice', type: 'upsert', object, observedAt: Date.now() });
  await pipeline.settle();
  const tSettled = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const s = syncs.slice(syncsBefore);
  if (s.length > 1) throw new Error(`one change caused ${s.length} syncs`);
  const deltas = sink.deltas;
  const counted = deltas.reduce((n, d) => n + d.bytes, 0);
  if (s[0] && !Number.isNaN(counted) && s[0].bytes !== counted)
    throw new Error(`the pipeline reports ${s[0].bytes} bytes, the sink counted ${counted}`);
  return {
    ms: (deltas.length ? sink.lastAt : tSettled) - t0,
    // CPU time of this process (all threads, GC included) from onEvent to settled: less sensitive than wall
    // time to other load on the machine.
    cpuMs: (cpu.user + cpu.system) / 1000,
    compileMs: s[0] ? s[0].compileSeconds * 1000 : NaN,
    nodes: deltas.length,
    bytes: deltas.map((d) => d.bytes),
    nodeNames: deltas.map((d) => d.delta.node),
  };
}

function byServiceLabel(cluster) {
  const slices = new Map();
  for (const s of cluster.slices) {
    const key = `${s.metadata.namespace}/${s.metadata.labels['kubernetes.io/service-name']}`;
    if (!slices.has(key)) slices.set(key, []);
    slices.get(key).push(s);
  }
  return slices;
}

/** Services spread evenly over the list, each with one slice of >= 2 endpoints, matching `filter`. */
function pickServices(cluster, count, filter) {
  const slicesOf = byServiceLabel(cluster);
  const candidates = cluster.services.filter((svc) => {
    const sl = slicesOf.get(`${svc.metadata.namespace}/${svc.metadata.name}`);
    return sl && sl.length === 1 && sl[0].endpoints.length >= 2 && filter(svc);
  });
  if (candidates.length < count) throw new Error(`only ${candidates.length} services qualify, ${count} needed`);
  const stride = candidates.length / count;
  return Array.from({ length: count }, (_, i) => {
    const svc = candidates[Math.floor(i * stride)];
    return { svc, slice: slicesOf.get(`${svc.metadata.namespace}/${svc.metadata.name}`)[0] };
  });
}

const isLocal = (svc) => svc.spec.externalTrafficPolicy === 'Local' || svc.spec.internalTrafficPolicy === 'Local';

function summarizeChanges(samples) {
  const perNode = samples.map((c) => pct(c.bytes, 50));
  return {
    latencySamplesMs: samples.map((c) => +c.ms.toFixed(2)),
    latencyMs: stats(samples.map((c) => c.ms)),
    cpuMs: stats(samples.map((c) => c.cpuMs)),
    compileMs: stats(samples.map((c) => c.compileMs)),
    nodes: stats(samples.map((c) => c.nodes)),
    bytesPerNode: stats(perNode),
    bytesPerNodeMax: stats(samples.map((c) => Math.max(...c.bytes))),
    bytesTotal: stats(samples.map((c) => c.bytes.reduce((a, b) => a + b, 0))),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Sections

async function runInProcess(opts, tracer, results, lines) {
  const baseHeap = gcHeap();
  const t0 = performance.now();
  const total = opts.nodes + opts.extraNodes;
  const cluster = synthCluster({ services: opts.services, endpoints: opts.endpoints, nodes: total, seed: opts.seed });
  const synthMs = performance.now() - t0;
  const { config, warnings } = loadKubeProxyConfig(JSON.stringify(kubeProxyConfig(cluster)));
  if (warnings.length) throw new Error(`kube-proxy config warnings: ${warnings.join('; ')}`);
  const options = iptablesOptionsFromConfig(config, IPFamily.IPv4);
  const st = cluster.stats;
  results.cluster = { ...st, nodesInitial: opts.nodes, synthMs };
  lines.push(
    `cluster: ${st.services} services (${st.clusterIP} ClusterIP, ${st.nodePort} NodePort, ${st.loadBalancer} LoadBalancer; ${st.externalLocal} eTP Local, ` +
      `${st.internalLocal} iTP Local), ${st.servicePorts} ports, ${st.endpoints} endpoints in ${st.slices} slices; ${opts.nodes} nodes (+${opts.extraNodes} joining and leaving)`,
  );

  // What the later sections change: kept; the rest of the synthetic objects are dropped before heap figures.
  const changeTargets = pickServices(cluster, opts.changes + 5, (svc) => !isLocal(svc));
  const localTargets =
    opts.localChanges > 0
      ? pickServices(cluster, opts.localChanges, (svc) => svc.spec.externalTrafficPolicy === 'Local')
      : [];
  const nodeObjects = cluster.nodes;
  const initialNodes = nodeObjects.slice(0, opts.nodes);
  const extraNodes = nodeObjects.slice(opts.nodes);
  const newPod = podAllocator(nodeObjects, cluster.slices);

  const sink = new CountingSink();
  const { pipeline, syncs } = makePipeline({
    options,
    sink,
    generations: new MemoryGenerationStore(),
    tracer,
    publishConcurrency: opts.publishConcurrency,
  });
  const tLoad = performance.now();
  feed(pipeline, initialNodes);
  feed(pipeline, cluster.services);
  feed(pipeline, cluster.slices);
  const loadMs = performance.now() - tLoad;
  cluster.services = [];
  cluster.slices = [];

  // (1) The first sync.
  const tSync = performance.now();
  pipeline.onSynced();
  await pipeline.settle();
  const firstMs = performance.now() - tSync;
  const first = syncs[0];
  if (!first || sink.deltas.length !== opts.nodes)
    throw new Error(`first sync published ${sink.deltas.length} deltas for ${opts.nodes} nodes`);
  results.initial = {
    loadMs,
    firstSyncMs: firstMs,
    compileMs: first.compileSeconds * 1000,
    deltas: sink.deltas.length,
    bytes: first.bytes,
  };
  lines.push(`load ${initialNodes.length + st.services + st.slices} source events into the pipeline: ${fmtMs(loadMs)}`);
  lines.push(
    `first sync (${opts.nodes} nodes): ${fmtMs(firstMs)} onSynced -> all published; compile ${fmtMs(first.compileSeconds * 1000)}; ${sink.deltas.length} snapshot deltas, ${fmtBytes(first.bytes)}`,
  );
  // Replicas of a few nodes, built from their snapshots: every later delta is applied to them and must reach
  // the digest the controller announces; at the end their digests must equal the controller's.
  for (let i = 0; i < Math.min(opts.verify, opts.nodes); i++) {
    const name = initialNodes[Math.floor((i * opts.nodes) / opts.verify)].metadata.name;
    const tSnap = performance.now();
    const snap = await pipeline.snapshot(name, IPFamily.IPv4);
    if (i === 0) {
      const tEncode = performance.now();
      results.initial.snapshotObjects = snap.objects.length;
      results.initial.snapshotBytes = NodeRuleSet.encode(snap).finish().length;
      results.initial.snapshotAssembleMs = tEncode - tSnap;
      results.initial.snapshotEncodeMs = performance.now() - tEncode;
      lines.push(
        `one node's full rule set (${name}): ${snap.objects.length} objects, ${fmtBytes(results.initial.snapshotBytes)} encoded; ` +
          `assembling it ${fmtMs(results.initial.snapshotAssembleMs)}, encoding ${fmtMs(results.initial.snapshotEncodeMs)} (what storing a snapshot per node costs, each)`,
      );
    }
    sink.replicas.set(name, RuleState.from(snap.objects, snap.generation));
  }
  sink.reset();

  // (2) Heap at N and at N + extra nodes.
  if (opts.sections.has('memory')) {
    const heapN = gcHeap();
    const tJoin = performance.now();
    feed(pipeline, extraNodes);
    await pipeline.settle();
    const joinMs = performance.now() - tJoin;
    const joined = sink.deltas.length;
    const heapN2 = gcHeap();
    sink.reset();
    // The extra nodes leave again: the changes below run at N nodes.
    const tLeave = performance.now();
    for (const object of extraNodes) pipeline.onEvent({ kind: 'Node', type: 'delete', object, observedAt: Date.now() });
    await pipeline.settle();
    const leaveMs = performance.now() - tLeave;
    if (sink.deltas.length !== 0) throw new Error(`nodes leaving published ${sink.deltas.length} deltas`);
    results.memory = {
      leaveMs,
      baseHeap,
      heapAtN: heapN,
      heapAtNExtra: heapN2,
      perExtraNode: heapN !== undefined ? (heapN2 - heapN) / opts.extraNodes : undefined,
      joinMs,
      joinedDeltas: joined,
      rss: process.memoryUsage().rss,
    };
    if (heapN === undefined) lines.push('heap: run node with --expose-gc for heap figures');
    else {
      lines.push(
        `heap after GC: ${fmtBytes(heapN)} at ${opts.nodes} nodes (process baseline ${fmtBytes(baseHeap)}); ${fmtBytes(heapN2)} at ${opts.nodes + opts.extraNodes}; rss ${fmtBytes(results.memory.rss)}`,
      );
      lines.push(
        `  growth per extra node: ${fmtBytes(results.memory.perExtraNode)}; ${opts.extraNodes} nodes joined in one sync: ${fmtMs(joinMs)}, ${joined} deltas (and left again: ${fmtMs(leaveMs)}, no delta)`,
      );
    }
  }
  const liveNodes = initialNodes;

  // (3) + (4) One-endpoint changes to different services.
  if (opts.sections.has('changes')) {
    const samples = [];
    let i = 0;
    for (const t of changeTargets) {
      // A ready endpoint (a not-serving one is in no rule: replacing it changes nothing).
      const ready = t.slice.endpoints.map((e, j) => (e.conditions.ready ? j : -1)).filter((j) => j >= 0);
      const index = ready[i % ready.length];
      const ep = t.slice.endpoints[index];
      const next = replaceEndpoint(t.slice, index, newPod(ep.nodeName));
      const r = await timedChange(pipeline, sink, syncs, next);
      if (r.nodes === 0) throw new Error(`changing ${t.svc.metadata.name} published nothing`);
      t.slice = next;
      if (i++ >= 5) samples.push(r);
      else continue;
      if (samples.length === opts.changes) break;
    }
    sink.reset();
    results.changes = {
      kind: 'one endpoint replaced by a new pod (new IP, same node)',
      nodesTotal: liveNodes.length,
      ...summarizeChanges(samples),
    };
    const c = results.changes;
    lines.push(`one-endpoint change (pod replaced), ${samples.length} services, ${liveNodes.length} nodes:`);
    lines.push(
      `  onEvent -> all deltas published: p50 ${fmtMs(c.latencyMs.p50)}, p90 ${fmtMs(c.latencyMs.p90)}, max ${fmtMs(c.latencyMs.max)} ` +
        `(compile p50 ${fmtMs(c.compileMs.p50)}; process CPU p50 ${fmtMs(c.cpuMs.p50)}, p90 ${fmtMs(c.cpuMs.p90)})`,
    );
    lines.push(
      `  nodes with a delta: p50 ${c.nodes.p50} of ${liveNodes.length}; bytes per node p50 ${fmtBytes(c.bytesPerNode.p50)} (p90 ${fmtBytes(c.bytesPerNode.p90)}, largest ${fmtBytes(c.bytesPerNodeMax.max)}); total p50 ${fmtBytes(c.bytesTotal.p50)}`,
    );
  }

  // Node-specific: an eTP Local endpoint moves to another node.
  if (opts.sections.has('local') && localTargets.length) {
    const samples = [];
    let k = 0;
    for (const t of localTargets) {
      const index = Math.max(
        0,
        t.slice.endpoints.findIndex((e) => e.conditions.ready),
      );
      const from = t.slice.endpoints[index].nodeName;
      const to =
        liveNodes[(liveNodes.findIndex((n) => n.metadata.name === from) + 1 + 37 * k++) % liveNodes.length].metadata
          .name;
      const toZone = liveNodes.find((n) => n.metadata.name === to).metadata.labels['topology.kubernetes.io/zone'];
      const next = replaceEndpoint(t.slice, index, newPod(to), { name: to, zone: toZone });
      const r = await timedChange(pipeline, sink, syncs, next);
      t.slice = next;
      const special = new Set([from, to]);
      const sizes = r.nodeNames.map((node, j) => ({ node, bytes: r.bytes[j] }));
      const others = sizes.filter((s) => !special.has(s.node)).map((s) => s.bytes);
      samples.push({
        ...r,
        from,
        to,
        specialBytes: sizes.filter((s) => special.has(s.node)).map((s) => s.bytes),
        otherBytes: pct(others, 50),
      });
    }
    sink.reset();
    results.local = {
      kind: 'eTP Local service: one endpoint moves to another node (new pod IP there)',
      ...summarizeChanges(samples),
      moves: samples.map((s) => ({
        from: s.from,
        to: s.to,
        nodes: s.nodes,
        fromOrToBytes: s.specialBytes,
        otherNodesBytesP50: s.otherBytes,
      })),
    };
    const l = results.local;
    lines.push(`eTP Local endpoint moves node, ${samples.length} services:`);
    lines.push(
      `  nodes with a delta: p50 ${l.nodes.p50} of ${liveNodes.length}; the two nodes involved: ${samples.map((s) => s.specialBytes.map(fmtBytes).join('+')).join(', ')}; other nodes p50 ${fmtBytes(
        pct(
          samples.map((s) => s.otherBytes),
          50,
        ),
      )}; latency p50 ${fmtMs(l.latencyMs.p50)} (process CPU p50 ${fmtMs(l.cpuMs.p50)})`,
    );
  }

  for (const [name, replica] of sink.replicas) {
    const want = await pipeline.snapshot(name, IPFamily.IPv4);
    if (replica.digest !== want.digest || replica.generation !== want.generation)
      throw new Error(`replica of ${name} diverged from the controller's state`);
  }
  if (results.memory?.heapAtN !== undefined && (opts.sections.has('changes') || opts.sections.has('local'))) {
    results.memory.heapAfterChanges = gcHeap();
    lines.push(`heap after GC once the changes are done: ${fmtBytes(results.memory.heapAfterChanges)}`);
  }
  results.verified = { nodes: [...sink.replicas.keys()], deltasApplied: sink.applied };
  if (sink.replicas.size)
    lines.push(
      `verified: ${sink.applied} deltas applied to replicas of ${sink.replicas.size} nodes reach the controller's digests`,
    );
  await pipeline.stop();
}

async function runNats(opts, natsNodes, tracer, results, lines) {
  const { startNatsServer } = await import('@kpx/testing');
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
  const cluster = synthCluster({
    services: opts.services,
    endpoints: opts.endpoints,
    nodes: natsNodes,
    seed: opts.seed,
  });
  const { config } = loadKubeProxyConfig(JSON.stringify(kubeProxyConfig(cluster)));
  const options = iptablesOptionsFromConfig(config, IPFamily.IPv4);
  const targets = pickServices(cluster, opts.natsChanges + 3, (svc) => !isLocal(svc));
  const newPod = podAllocator(cluster.nodes, cluster.slices);
  const server = await startNatsServer({ jetstream: true });
  const nc = await connect({ servers: server.url, ...(opts.noAsyncTraces ? { noAsyncTraces: true } : {}) });
  try {
    const js = jetstream(nc);
    const ports = await natsPorts(js, await jetstreamManager(nc), {
      historyPerSubject: 100,
      maxAgeMs: 0,
      snapshotsKept: 0,
    });
    const sink = new CountingSink(ports.sink);
    const { pipeline, syncs } = makePipeline({
      options,
      sink,
      generations: ports.generations,
      tracer,
      publishConcurrency: opts.publishConcurrency,
    });
    feed(pipeline, cluster.nodes);
    feed(pipeline, cluster.services);
    feed(pipeline, cluster.slices);
    const t0 = performance.now();
    pipeline.onSynced();
    await pipeline.settle();
    const firstMs = performance.now() - t0;
    if (sink.deltas.length !== natsNodes)
      throw new Error(`nats: first sync published ${sink.deltas.length} deltas for ${natsNodes} nodes`);
    const samples = [];
    let i = 0;
    let serverCpu0;
    for (const t of targets) {
      if (i === 3) serverCpu0 = await processCpuMs(server.pid);
      const index = Math.max(
        0,
        t.slice.endpoints.findIndex((e) => e.conditions.ready),
      );
      const next = replaceEndpoint(t.slice, index, newPod(t.slice.endpoints[index].nodeName));
      const r = await timedChange(pipeline, sink, syncs, next);
      t.slice = next;
      if (i++ >= 3) samples.push(r);
    }
    const serverCpu1 = await processCpuMs(server.pid);
    await pipeline.stop();
    const serverCpuMs =
      serverCpu0 !== undefined && serverCpu1 !== undefined ? (serverCpu1 - serverCpu0) / samples.length : undefined;
    const n = {
      nodesTotal: natsNodes,
      noAsyncTraces: opts.noAsyncTraces,
      firstSyncMs: firstMs,
      serverCpuMsPerChange: serverCpuMs,
      ...summarizeChanges(samples),
    };
    (results.nats ??= []).push(n);
    lines.push(`through nats-server (JetStream, ${natsNodes} nodes, separate pipeline; snapshots not stored):`);
    lines.push(
      `  first sync ${fmtMs(firstMs)}; one-endpoint change -> all ${n.nodes.p50} deltas acked by JetStream: p50 ${fmtMs(n.latencyMs.p50)}, p90 ${fmtMs(n.latencyMs.p90)} (compile p50 ${fmtMs(n.compileMs.p50)})`,
    );
    lines.push(
      `  CPU per change: controller process p50 ${fmtMs(n.cpuMs.p50)}; nats-server mean ${serverCpuMs === undefined ? '?' : fmtMs(serverCpuMs)}`,
    );
  } finally {
    await nc.close();
    await server.stop();
  }
}

function verdicts(opts, results) {
  const out = [];
  const add = (name, value, target, ok, note = '') => out.push({ name, value, target, ok, note });
  if (results.memory?.heapAtN !== undefined) {
    add(
      `heap after GC at ${opts.nodes} nodes`,
      fmtBytes(results.memory.heapAtN),
      '< 1.5 GiB',
      results.memory.heapAtN < TARGETS.heapBytes,
    );
    add(
      'heap per extra node',
      fmtBytes(results.memory.perExtraNode),
      '< 100 KB',
      results.memory.perExtraNode < TARGETS.perNodeHeapBytes,
    );
  }
  if (results.changes) {
    add(
      'bytes per node, one-endpoint change (p50)',
      fmtBytes(results.changes.bytesPerNode.p50),
      '< 2 KB',
      results.changes.bytesPerNode.p50 < TARGETS.perNodeDeltaBytes,
    );
    add(
      'change -> all deltas published (p50, in-memory sink)',
      fmtMs(results.changes.latencyMs.p50),
      '< 50 ms',
      results.changes.latencyMs.p50 < TARGETS.changeP50Ms,
    );
  }
  for (const n of results.nats ?? []) {
    add(
      `change -> all deltas published (p50, nats-server, ${n.nodesTotal} nodes)`,
      fmtMs(n.latencyMs.p50),
      '< 50 ms',
      n.latencyMs.p50 < TARGETS.changeP50Ms,
    );
  }
  return out;
}

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
  if (typeof globalThis.gc !== 'function') process.stderr.write('note: run with node --expose-gc for heap figures\n');
  const tracing = startTracing({ serviceName: 'kpx-bench-controller' });
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
    params: { ...opts, sections: [...opts.sections] },
  };
  const lines = [];
  const say = () => {
    for (const l of lines.splice(0)) process.stdout.write(`${l}\n`);
  };
  process.stdout.write(
    `kpx controller benchmark: S=${opts.services} E=${opts.endpoints} N=${opts.nodes}, seed ${opts.seed}; ${results.machine.nproc} CPUs (${results.machine.cpu}), node ${process.version}\n`,
  );
  try {
    if (opts.sections.has('initial')) {
      await runInProcess(opts, tracing.tracer, results, lines);
      say();
    }
    gcHeap();
    if (opts.sections.has('nats')) {
      for (const n of opts.natsNodes) {
        await runNats(opts, n, tracing.tracer, results, lines);
        say();
        gcHeap();
      }
    }
  } finally {
    say();
    await tracing.shutdown();
  }
  results.machine.loadavgEnd = loadavg();
  results.verdicts = verdicts(opts, results);
  process.stdout.write('\ntarget                                                   value        target     verdict\n');
  for (const v of results.verdicts)
    process.stdout.write(
      `${v.name.padEnd(56)} ${v.value.padEnd(12)} ${v.target.padEnd(10)} ${v.ok ? 'met' : 'MISSED'}\n`,
    );
  await mkdir(OUT, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  await writeFile(join(OUT, `controller-${results.date.replace(/[:.]/g, '-')}.json`), json);
  await writeFile(join(OUT, 'controller-latest.json'), json);
  process.stdout.write(
    `\nload average at start ${results.machine.loadavgStart.map((x) => x.toFixed(2)).join(' ')}, at end ${results.machine.loadavgEnd.map((x) => x.toFixed(2)).join(' ')} (${results.machine.nproc} CPUs)\nfigures: ${join('bench/out', 'controller-latest.json')}\n`,
  );
  return opts.check && results.verdicts.some((v) => !v.ok) ? 1 : 0;
}

process.exitCode = await main();
