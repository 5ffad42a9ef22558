// The whole controller fed by the Kubernetes source: the test API server (loaded with examples/) → client-node
// informers → pipeline → a real nats-server. What lands in JetStream after each kind of API change.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { IPFamily, defaultKubeProxyConfig, readManifestDir, type KubeObject } from '@kpx/model';
import { endpointChainName, iptablesOptionsFromConfig, serviceChainNames } from '@kpx/compiler';
import type { Delta } from '@kpx/proto';
import { SpanProcessing, startTracing } from '@kpx/telemetry';
import { lastDelta } from '@kpx/transport';
import {
  startKubeApiServer,
  startNatsServer,
  type KubeApiObject,
  type KubeApiServer,
  type NatsServer,
} from '@kpx/testing';
import {
  ControllerPipeline,
  createKubernetesSource,
  natsPorts,
  runController,
  type KubernetesSourceOptions,
  type RunningController,
} from '../src/index.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;
const Nodes = ['node-a', 'node-b', 'node-c'];
const silent = { info: () => {}, warn: () => {}, error: () => {} };
/** Short source timers; no coalescing delay, so each API change is one generation. */
const sourceOptions: KubernetesSourceOptions = {
  silentWatchTimeoutMs: 30_000,
  retryInitialMs: 50,
  retryMaxMs: 500,
  listTimeoutMs: 5_000,
};
const config = { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 };

async function waitFor(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function exampleObjects(): Promise<KubeObject[]> {
  return (await readManifestDir(examples))
    .map((m) => m.object)
    .filter((o) => ['Service', 'EndpointSlice', 'Node'].includes(o.kind ?? ''));
}

interface Cluster {
  readonly api: KubeApiServer;
  readonly nats: NatsServer;
  readonly js: JetStreamClient;
}

/** A test API server holding examples/ and a nats-server with JetStream, both ended after the test (last). */
async function startCluster(t: TestContext, cleanups: (() => Promise<void>)[]): Promise<Cluster> {
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  const api = await startKubeApiServer();
  cleanups.push(() => api.close());
  for (const object of await exampleObjects()) api.store.apply(object as KubeApiObject);
  const nats = await startNatsServer({ jetstream: true });
  cleanups.push(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  cleanups.push(() => nc.close());
  return { api, nats, js: jetstream(nc) };
}

/** The last delta on each node's subject. */
async function heads(js: JetStreamClient, nodes: readonly string[]): Promise<Map<string, Delta>> {
  const out = new Map<string, Delta>();
  for (const node of nodes) {
    const last = await lastDelta(js, node);
    if (last) out.set(node, last.delta);
  }
  return out;
}

async function nextGeneration(c: RunningController, after: number): Promise<number> {
  await waitFor(`a generation after ${after}`, () => c.pipeline.generation > after);
  await c.pipeline.settle();
  return c.pipeline.generation;
}

/**
 * The rule objects a service's ports may own: their chains (SVC/SVL/EXT/FW and the SEP chain of any endpoint
 * given), their fragments of the shared chains (key ending in `/<port name>/<PROTOCOL>`) and the service's
 * healthcheck.service object (key: its healthCheckNodePort).
 */
function ownedBy(
  ports: { name: string; protocol: 'TCP' | 'UDP' }[],
  endpoints: string[],
  healthCheckNodePort?: number,
): (key: string) => boolean {
  const chains = new Set<string>();
  for (const { name, protocol } of ports) {
    const proto = protocol.toLowerCase();
    const names = serviceChainNames(name, proto);
    for (const chain of [names.cluster, names.local, names.external, names.firewall]) chains.add(chain);
    for (const ep of endpoints) chains.add(endpointChainName(name, proto, ep));
  }
  const owners = ports.map((p) => `/${p.name}/${p.protocol}`);
  return (key) => {
    const [, chain] = key.split('/');
    return (
      (chain !== undefined && chains.has(chain) && key.split('/').length === 2) ||
      owners.some((o) => key.endsWith(o)) ||
      key === String(healthCheckNodePort)
    );
  };
}

function assertOnly(delta: Delta, owned: (key: string) => boolean, what: string): void {
  const keys = [...delta.upserts.map((u) => u.key), ...delta.deletes.map((d) => d.key)];
  assert.ok(keys.length > 0, `${delta.node}: the delta changes something`);
  const foreign = keys.filter((k) => !owned(k));
  assert.deepEqual(foreign, [], `${delta.node}: only ${what}'s objects change (all keys: ${keys.join(', ')})`);
}

test('API changes through the Kubernetes source reach JetStream as per-node deltas of only what changed', async (t) => {
  const cleanups: (() => Promise<void>)[] = [];
  const { api, nats, js } = await startCluster(t, cleanups);
  const source = createKubernetesSource({ ...sourceOptions, kubeconfigPath: api.kubeconfigPath });
  const c = await runController({
    source,
    sourceName: `kubeconfig ${api.kubeconfigPath}`,
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    logLevel: 'silent',
    config,
  });
  cleanups.push(() => c.stop());

  // 1. Initial sync: a snapshot marker for every node, all in generation 1.
  const g1 = await nextGeneration(c, 0);
  assert.equal(g1, 1);
  const initial = await heads(js, Nodes);
  for (const node of Nodes) {
    const d = initial.get(node);
    assert.ok(d, `${node} got its initial state`);
    assert.equal(d.generation, g1);
    assert.equal(d.snapshot, true);
    assert.equal(d.prevGeneration, 0);
  }
  // The watches are up (one per kind) before the cluster changes.
  await waitFor('three watches', () => api.activeWatches().length === 3);

  // 2. One EndpointSlice changes (a new ready endpoint of shop/web on node-b): every node uses shop/web, so
  //    every node gets a delta, and it holds only shop/web's chains and fragments.
  const slice = api.store.get('EndpointSlice', 'shop', 'web-abc12');
  assert.ok(slice);
  const endpoints = slice.endpoints as { addresses: string[]; nodeName: string; conditions: object }[];
  const changed = api.store.apply({
    ...slice,
    endpoints: [
      ...endpoints,
      { addresses: ['10.244.2.11'], nodeName: 'node-b', zone: 'zone-1', conditions: { ready: true } },
    ],
  });
  const g2 = await nextGeneration(c, g1);
  const afterSlice = await heads(js, Nodes);
  const web = ownedBy(
    [{ name: 'shop/web:http', protocol: 'TCP' }],
    ['10.244.1.10:8080', '10.244.2.10:8080', '10.244.2.11:8080', '10.244.3.10:8080'],
  );
  for (const node of Nodes) {
    const d = afterSlice.get(node);
    assert.ok(d);
    assert.equal(d.generation, g2, `${node} changed in generation ${g2}`);
    assert.equal(d.snapshot, false);
    assert.equal(d.prevGeneration, g1);
    assert.equal(d.ipFamily, IPFamily.IPv4, 'the IPv4 slice changed: no IPv6 delta');
    assertOnly(d, web, 'shop/web');
    assert.ok(
      d.upserts.some((u) => u.key === `nat/${endpointChainName('shop/web:http', 'tcp', '10.244.2.11:8080')}`),
      `${node}: the new endpoint's chain`,
    );
    assert.deepEqual(
      d.cause.map((x) => `${x.kind} ${x.namespace}/${x.name} ${x.resourceVersion}`),
      [`EndpointSlice shop/web-abc12 ${changed.metadata?.resourceVersion}`],
      'the cause names the API object and its resourceVersion',
    );
  }

  // 3. A Node joins: only that node gets a delta (its initial state); the others' last generation stays.
  api.store.apply({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-d', labels: { 'topology.kubernetes.io/zone': 'zone-2' } },
    spec: { podCIDR: '10.244.4.0/24', podCIDRs: ['10.244.4.0/24'] },
    status: { addresses: [{ type: 'InternalIP', address: '10.0.0.14' }] },
  });
  const g3 = await nextGeneration(c, g2);
  const afterNode = await heads(js, [...Nodes, 'node-d']);
  assert.equal(afterNode.get('node-d')?.generation, g3);
  assert.equal(afterNode.get('node-d')?.snapshot, true);
  assert.equal(afterNode.get('node-d')?.prevGeneration, 0);
  for (const node of Nodes)
    assert.equal(afterNode.get(node)?.generation, g2, `${node} is not republished for another node`);

  // 4. A Local-policy endpoint moves from node-a to node-b (edge/ingress, externalTrafficPolicy Local): only the
  //    nodes whose local endpoints change get a delta; the cluster-wide chains stay the same (same pod IP).
  const ingress = api.store.get('EndpointSlice', 'edge', 'ingress-1');
  assert.ok(ingress);
  const ingressEndpoints = ingress.endpoints as { addresses: string[]; nodeName: string }[];
  api.store.apply({
    ...ingress,
    endpoints: ingressEndpoints.map((ep) => (ep.addresses[0] === '10.244.1.21' ? { ...ep, nodeName: 'node-b' } : ep)),
  });
  const g4 = await nextGeneration(c, g3);
  const afterMove = await heads(js, [...Nodes, 'node-d']);
  const edge = ownedBy(
    [{ name: 'edge/ingress:https', protocol: 'TCP' }],
    ['10.244.1.20:8443', '10.244.1.21:8443'],
    32000,
  );
  for (const node of ['node-a', 'node-b']) {
    const d = afterMove.get(node);
    assert.ok(d);
    assert.equal(d.generation, g4, `${node}'s local endpoints changed`);
    assertOnly(d, edge, 'edge/ingress');
  }
  assert.equal(afterMove.get('node-c')?.generation, g2, 'node-c has no local ingress endpoint before or after');
  assert.equal(afterMove.get('node-d')?.generation, g3);

  // 5. node-b moves to zone-2: kube-system/kube-dns routes by zone hints, so node-b (only) now uses the zone-2
  //    endpoint; nothing else on any node depends on node-b's zone.
  const nodeB = api.store.get('Node', undefined, 'node-b');
  assert.ok(nodeB);
  api.store.apply({ ...nodeB, metadata: { ...nodeB.metadata, labels: { 'topology.kubernetes.io/zone': 'zone-2' } } });
  const g5 = await nextGeneration(c, g4);
  const afterZone = await heads(js, [...Nodes, 'node-d']);
  const dns = ownedBy(
    [
      { name: 'kube-system/kube-dns:dns', protocol: 'UDP' },
      { name: 'kube-system/kube-dns:dns-tcp', protocol: 'TCP' },
    ],
    ['10.244.1.2:53', '10.244.3.2:53'],
  );
  const dB = afterZone.get('node-b');
  assert.ok(dB);
  assert.equal(dB.generation, g5);
  assertOnly(dB, dns, 'kube-system/kube-dns');
  assert.deepEqual(
    dB.cause.map((x) => `${x.kind} ${x.name}`),
    ['Node node-b'],
  );
  assert.deepEqual(
    ['node-a', 'node-c', 'node-d'].map((n) => afterZone.get(n)?.generation),
    [g4, g2, g3],
    'the other nodes are untouched',
  );
  // The published state and the controller's own view agree for every node.
  for (const node of [...Nodes, 'node-d']) {
    const snap = await c.pipeline.snapshot(node, IPFamily.IPv4);
    assert.equal(snap?.digest, afterZone.get(node)?.digest, `${node}'s digest`);
  }
});

test('one trace runs from the informer event to the NATS publish', async (t) => {
  const cleanups: (() => Promise<void>)[] = [];
  const { api, nats, js } = await startCluster(t, cleanups);
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing({ serviceName: 'kpx-controller-test', exporter, processing: SpanProcessing.Simple });
  cleanups.push(() => tracing.shutdown());
  const nc = await connect({ servers: nats.url });
  cleanups.push(() => nc.close());
  const ports = await natsPorts(jetstream(nc), await jetstreamManager(nc), {
    historyPerSubject: 100,
    maxAgeMs: 0,
    snapshotsKept: 1,
  });
  const pipeline = new ControllerPipeline({
    families: new Map([[IPFamily.IPv4, iptablesOptionsFromConfig(config, IPFamily.IPv4)]]),
    ...ports,
    minSyncPeriodMs: 0,
    logger: silent,
    tracer: tracing.tracer,
  });
  cleanups.push(() => pipeline.stop());
  const source = createKubernetesSource({ ...sourceOptions, kubeconfigPath: api.kubeconfigPath });
  cleanups.push(() => source.stop());
  await source.start({ onEvent: (e) => pipeline.onEvent(e), onSynced: () => pipeline.onSynced() });
  await waitFor('the initial generation', () => pipeline.generation === 1);
  await pipeline.settle();
  await waitFor('three watches', () => api.activeWatches().length === 3);
  exporter.reset();

  const slice = api.store.get('EndpointSlice', 'shop', 'web-abc12');
  assert.ok(slice);
  const changed = api.store.apply({
    ...slice,
    endpoints: [{ addresses: ['10.244.1.99'], nodeName: 'node-a', conditions: { ready: true } }],
  });
  await waitFor('generation 2', () => pipeline.generation === 2);
  await pipeline.settle();

  const spans = exporter.getFinishedSpans();
  const event = spans.find((s) => s.name === 'kpx.event EndpointSlice');
  assert.ok(event, spans.map((s) => s.name).join(', '));
  assert.equal(event.attributes['k8s.name'], 'web-abc12');
  const traceId = event.spanContext().traceId;
  const sync = spans.find((s) => s.name === 'kpx.sync');
  assert.equal(sync?.spanContext().traceId, traceId, 'the sync continues the event trace');
  assert.equal(sync?.parentSpanContext?.spanId, event.spanContext().spanId, 'the sync is a child of the event');
  const publishes = spans.filter((s) => s.name === 'kpx.publish');
  assert.equal(publishes.length, 3, 'one publish per node');
  for (const p of publishes) assert.equal(p.spanContext().traceId, traceId);
  // What reached JetStream carries the trace: an executor continues it.
  for (const node of Nodes) {
    const last = await lastDelta(js, node);
    assert.equal(last?.delta.generation, 2);
    assert.deepEqual(
      last?.delta.cause.map((x) => x.resourceVersion),
      [changed.metadata?.resourceVersion],
    );
    assert.match(last?.headers.traceparent ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  }
});
