import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { IPFamily, parseCidr, readManifestDir, type KubeObject } from '@kpx/model';
import { defaultIptablesOptions } from '@kpx/compiler';
import { RuleState } from '@kpx/ruleset';
import { Delta } from '@kpx/proto';
import { SpanProcessing, extractTraceContext, startTracing, type Tracing } from '@kpx/telemetry';
import { trace } from '@opentelemetry/api';
import { ControllerPipeline, MemoryGenerationStore, type PipelineMetrics, type PublishedHeads } from '../src/index.js';
import { webSlice } from './fixtures.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;
const exporter = new InMemorySpanExporter();
let tracing: Tracing;
before(() => {
  tracing = startTracing({ serviceName: 'kpx-controller-test', exporter, processing: SpanProcessing.Simple });
});
after(async () => tracing.shutdown());

const silent = { info: () => {}, warn: () => {}, error: () => {} };

function makePipeline(
  opts: {
    generations?: MemoryGenerationStore;
    heads?: PublishedHeads;
    minSyncPeriodMs?: number;
    maxCauses?: number;
    metrics?: PipelineMetrics;
  } = {},
) {
  const published: { delta: Delta; headers: Record<string, string> }[] = [];
  const families = new Map([
    [IPFamily.IPv4, { ...defaultIptablesOptions(IPFamily.IPv4), clusterCIDRs: [parseCidr('10.244.0.0/16')!] }],
    [IPFamily.IPv6, defaultIptablesOptions(IPFamily.IPv6)],
  ]);
  const p = new ControllerPipeline({
    families,
    sink: { publish: (delta, headers) => (published.push({ delta, headers }), Promise.resolve()) },
    generations: opts.generations ?? new MemoryGenerationStore(),
    ...(opts.heads ? { heads: opts.heads } : {}),
    minSyncPeriodMs: opts.minSyncPeriodMs ?? 0,
    ...(opts.maxCauses !== undefined ? { maxCauses: opts.maxCauses } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    logger: silent,
    tracer: tracing.tracer,
  });
  return { p, published };
}

async function feed(p: ControllerPipeline, extra: KubeObject[] = []): Promise<void> {
  for (const object of [...(await readManifestDir(examples)).map((m) => m.object), ...extra]) {
    if (object.kind === 'Service' || object.kind === 'EndpointSlice' || object.kind === 'Node') {
      p.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: Date.now() });
    }
  }
  p.onSynced();
  await new Promise((r) => setTimeout(r, 5));
  await p.settle();
}

async function change(p: ControllerPipeline, object: KubeObject): Promise<void> {
  p.onEvent({ kind: 'EndpointSlice', type: 'upsert', object, observedAt: Date.now() });
  await new Promise((r) => setTimeout(r, 5));
  await p.settle();
}

test('initial sync: one generation, a snapshot delta per node and family; later changes are small deltas', async () => {
  const { p, published } = makePipeline();
  await feed(p);
  assert.equal(p.generation, 1);
  assert.deepEqual(
    published.map((x) => `${x.delta.node}/${x.delta.ipFamily}/${x.delta.snapshot}/${x.delta.prevGeneration}`),
    [
      'node-a/IPv4/true/0',
      'node-b/IPv4/true/0',
      'node-c/IPv4/true/0',
      'node-a/IPv6/true/0',
      'node-b/IPv6/true/0',
      'node-c/IPv6/true/0',
    ],
  );
  // The executor of node-a starts from the controller's snapshot.
  const snap = await p.snapshot('node-a', IPFamily.IPv4);
  assert.ok(snap);
  const applied = RuleState.from(snap.objects, snap.generation);
  assert.equal(applied.digest, snap.digest);
  published.length = 0;
  await change(p, webSlice(['10.244.1.10', '10.244.1.11', '10.244.2.10'], '50'));
  assert.equal(p.generation, 2);
  const v4 = published.filter((x) => x.delta.ipFamily === IPFamily.IPv4);
  assert.equal(v4.length, 3, 'all three nodes use shop/web');
  assert.equal(published.length, 3, 'no IPv6 rule changed');
  const d = v4.find((x) => x.delta.node === 'node-a')!.delta;
  assert.equal(d.prevGeneration, 1);
  assert.deepEqual(d.cause, [{ kind: 'EndpointSlice', namespace: 'shop', name: 'web-abc12', resourceVersion: '50' }]);
  assert.ok(d.triggerTime);
  applied.apply(d);
  assert.equal(applied.digest, (await p.snapshot('node-a', IPFamily.IPv4))?.digest);
  assert.ok(
    d.upserts.length <= 3 && d.upserts.every((u) => /KUBE-(SVC|SEP)-/.test(u.key)),
    JSON.stringify(d.upserts.map((u) => u.key)),
  );
  // Same content, new resourceVersion: no generation.
  published.length = 0;
  await change(p, webSlice(['10.244.1.10', '10.244.1.11', '10.244.2.10'], '51'));
  assert.equal(p.generation, 2);
  assert.equal(published.length, 0);
  await p.stop();
});

test('events within minSyncPeriod are coalesced into one generation', async () => {
  const { p, published } = makePipeline({ minSyncPeriodMs: 200 });
  await feed(p);
  published.length = 0;
  const start = p.generation;
  for (let i = 0; i < 5; i++)
    p.onEvent({
      kind: 'EndpointSlice',
      type: 'upsert',
      object: webSlice([`10.244.1.${20 + i}`], String(60 + i)),
      observedAt: Date.now(),
    });
  await new Promise((r) => setTimeout(r, 350));
  await p.settle();
  assert.equal(p.generation, start + 1, 'one generation for five changes');
  assert.equal(new Set(published.map((x) => x.delta.generation)).size, 1);
  await p.stop();
});

test('a restarted controller continues the generation chain and republishes nothing unchanged', async () => {
  const gens = new MemoryGenerationStore();
  const first = makePipeline({ generations: gens });
  await feed(first.p);
  await change(first.p, webSlice(['10.244.1.10'], '70'));
  await first.p.stop();
  const heads = new Map<string, { generation: number; digest: string }>();
  for (const { delta } of first.published)
    heads.set(`${delta.node}/${delta.ipFamily}`, { generation: delta.generation, digest: delta.digest });
  // The second controller sees the same cluster, and one node changed while it was down.
  const second = makePipeline({
    generations: gens,
    heads: { head: (n, f) => Promise.resolve(heads.get(`${n}/${f}`)) },
  });
  await feed(second.p, [webSlice(['10.244.1.10'], '70')]);
  assert.equal(second.p.generation, first.p.generation, 'adopts the published heads');
  assert.equal(second.published.length, 0, 'nothing republished');
  await change(second.p, webSlice(['10.244.1.11'], '71'));
  assert.ok(second.published.length > 0);
  for (const { delta } of second.published) {
    assert.equal(delta.generation, first.p.generation + 1, 'the next generation, none reused');
    assert.equal(
      delta.prevGeneration,
      heads.get(`${delta.node}/${delta.ipFamily}`)?.generation,
      'chains to the published head',
    );
  }
  heads.set('node-b/IPv4', { generation: 1, digest: 'stale' });
  const third = makePipeline({ generations: gens, heads: { head: (n, f) => Promise.resolve(heads.get(`${n}/${f}`)) } });
  await feed(third.p, [webSlice(['10.244.1.10'], '70')]);
  assert.deepEqual(
    third.published.map((x) => [x.delta.node, x.delta.ipFamily, x.delta.snapshot, x.delta.prevGeneration]),
    [['node-b', 'IPv4', true, 1]],
  );
  await second.p.stop();
  await third.p.stop();
});

test('one trace runs from the API event through compile to every publish', async () => {
  exporter.reset();
  const { p, published } = makePipeline();
  await feed(p);
  published.length = 0;
  exporter.reset();
  await change(p, webSlice(['10.244.1.99'], '80'));
  const spans = exporter.getFinishedSpans();
  const event = spans.find((s) => s.name === 'kpx.event EndpointSlice');
  assert.ok(event);
  const traceId = event.spanContext().traceId;
  for (const name of ['kpx.sync', 'kpx.compile', 'kpx.publish']) {
    assert.ok(
      spans.some((s) => s.name === name && s.spanContext().traceId === traceId),
      `${name} in the event's trace`,
    );
  }
  // The trace context travels with each delta.
  for (const { headers } of published)
    assert.equal(trace.getSpanContext(extractTraceContext(headers))?.traceId, traceId);
  await p.stop();
});

test('a Service and its slice changed in one sync: the new spec is compiled, and slice-only changes after it keep it', async () => {
  const { p, published } = makePipeline();
  await feed(p);
  const snap = await p.snapshot('node-a', IPFamily.IPv4);
  assert.ok(snap);
  const replica = RuleState.from(snap.objects, snap.generation);
  const web = (port: number): KubeObject =>
    ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'shop', resourceVersion: String(port) },
      spec: {
        type: 'NodePort',
        clusterIP: '10.96.0.20',
        clusterIPs: ['10.96.0.20'],
        ports: [{ name: 'http', port, targetPort: 8080, nodePort: 30080, protocol: 'TCP' }],
      },
    }) as KubeObject;
  published.length = 0;
  // Both events before the sync runs: one sync, where shop/web has a Service change and a slice change.
  p.onEvent({ kind: 'Service', type: 'upsert', object: web(81), observedAt: Date.now() });
  p.onEvent({
    kind: 'EndpointSlice',
    type: 'upsert',
    object: webSlice(['10.244.1.10', '10.244.1.12'], '90'),
    observedAt: Date.now(),
  });
  await new Promise((r) => setTimeout(r, 5));
  await p.settle();
  await change(p, webSlice(['10.244.1.10', '10.244.1.13'], '91'));
  for (const { delta } of published)
    if (delta.node === 'node-a' && delta.ipFamily === IPFamily.IPv4) replica.apply(delta);
  const now = await p.snapshot('node-a', IPFamily.IPv4);
  assert.equal(replica.digest, now?.digest);
  const rules = JSON.stringify(replica.sortedObjects());
  assert.ok(rules.includes('-d 10.96.0.20 --dport 81'), 'the new service port');
  assert.ok(!rules.includes('-d 10.96.0.20 --dport 80'), 'not the old one');
  assert.ok(rules.includes('10.244.1.13') && !rules.includes('10.244.1.12'));
  await p.stop();
});

test('a first sync names at most maxCauses causes per delta, with the earliest trigger time of all', async () => {
  const { p, published } = makePipeline({ maxCauses: 2 });
  const objects = (await readManifestDir(examples))
    .map((m) => m.object)
    .filter((o) => ['Service', 'EndpointSlice', 'Node'].includes(o.kind ?? ''));
  objects.forEach((object, i) =>
    p.onEvent({ kind: object.kind as 'Service', type: 'upsert', object, observedAt: 5_000 + 1000 * i }),
  );
  p.onSynced();
  await new Promise((r) => setTimeout(r, 5));
  await p.settle();
  assert.ok(published.length > 0);
  for (const { delta } of published) {
    assert.equal(delta.cause.length, 2, JSON.stringify(delta.cause));
    assert.deepEqual(delta.triggerTime, { seconds: 5, nanos: 0 });
  }
  await p.stop();
});

test('bytes reported per sync are the encoded size of the deltas published', async () => {
  const synced: number[] = [];
  const { p, published } = makePipeline({ metrics: { synced: (s) => synced.push(s.bytes) } });
  await feed(p);
  published.length = 0;
  synced.length = 0;
  await change(p, webSlice(['10.244.1.10', '10.244.2.44'], '95'));
  assert.equal(synced.length, 1);
  assert.ok(published.some((x) => x.delta.upserts.length > 0));
  assert.equal(
    synced[0],
    published.reduce((n, x) => n + Delta.encode(x.delta).finish().length, 0),
  );
  await p.stop();
});
