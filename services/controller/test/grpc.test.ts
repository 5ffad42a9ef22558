import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { credentials, Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { IPFamily, readManifestDir } from '@kpx/model';
import { defaultIptablesOptions } from '@kpx/compiler';
import { RuleState } from '@kpx/ruleset';
import {
  NodeSyncClient,
  AckRequest,
  type AckResponse,
  type Delta,
  type SnapshotChunk,
  type StatusResponse,
} from '@kpx/proto';
import { SpanProcessing, extractTraceContext, injectTraceMetadata, startTracing, type Tracing } from '@kpx/telemetry';
import { context, trace } from '@opentelemetry/api';
import { ControllerPipeline, MemoryGenerationStore, startGrpcServer, type RunningGrpcServer } from '../src/index.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;
const exporter = new InMemorySpanExporter();
const silent = { info: () => {}, warn: () => {}, error: () => {} };
let tracing: Tracing;
let pipeline: ControllerPipeline;
let server: RunningGrpcServer;
let client: NodeSyncClient;
const published: { delta: Delta; headers: Record<string, string> }[] = [];
const latencies: number[] = [];

before(async () => {
  tracing = startTracing({ serviceName: 'kpx-grpc-test', exporter, processing: SpanProcessing.Simple });
  pipeline = new ControllerPipeline({
    families: new Map([[IPFamily.IPv4, defaultIptablesOptions(IPFamily.IPv4)]]),
    sink: { publish: (delta, headers) => (published.push({ delta, headers }), Promise.resolve()) },
    generations: new MemoryGenerationStore(),
    minSyncPeriodMs: 0,
    logger: silent,
    tracer: tracing.tracer,
  });
  for (const { object } of await readManifestDir(examples)) {
    if (object.kind === 'Service' || object.kind === 'EndpointSlice' || object.kind === 'Node')
      pipeline.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: Date.now() });
  }
  pipeline.onSynced();
  await new Promise((r) => setTimeout(r, 5));
  await pipeline.settle();
  server = await startGrpcServer({
    pipeline,
    listen: '127.0.0.1:0',
    logger: silent,
    tracer: tracing.tracer,
    onChangeToAck: (s) => latencies.push(s),
  });
  client = new NodeSyncClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
});

after(async () => {
  client.close();
  await server.close();
  await pipeline.stop();
  await tracing.shutdown();
});

function snapshot(req: { node: string; ipFamily: string; maxObjectsPerChunk?: number }): Promise<SnapshotChunk[]> {
  return new Promise((resolve, reject) => {
    const chunks: SnapshotChunk[] = [];
    const stream: ClientReadableStream<SnapshotChunk> = client.getSnapshot({
      node: req.node,
      mode: 'iptables',
      ipFamily: req.ipFamily,
      generation: 0,
      maxObjectsPerChunk: req.maxObjectsPerChunk ?? 0,
    });
    stream.on('data', (c: SnapshotChunk) => chunks.push(c));
    stream.on('error', reject);
    stream.on('end', () => resolve(chunks));
  });
}

const ack = (req: Partial<AckRequest>, md = new Metadata()): Promise<AckResponse> =>
  new Promise((resolve, reject) => {
    client.ack(
      { ...AckRequest.fromPartial({ applyDurationSeconds: 0.01, mode: 'iptables', ipFamily: 'IPv4' }), ...req },
      md,
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });

const status = (): Promise<StatusResponse> =>
  new Promise((resolve, reject) => client.status({ node: '' }, (err, res) => (err ? reject(err) : resolve(res))));

test('GetSnapshot streams the node state in chunks that rebuild its digest', async () => {
  const chunks = await snapshot({ node: 'node-a', ipFamily: 'IPv4', maxObjectsPerChunk: 5 });
  assert.ok(chunks.length > 2);
  assert.deepEqual(
    chunks.map((c) => c.index),
    chunks.map((_, i) => i),
  );
  assert.equal(chunks.at(-1)?.last, true);
  const state = RuleState.from(
    chunks.flatMap((c) => c.objects),
    chunks[0]!.generation,
  );
  assert.equal(state.digest, chunks[0]!.digest);
  assert.equal(state.digest, published.find((p) => p.delta.node === 'node-a')?.delta.digest);
  await assert.rejects(snapshot({ node: 'nope', ipFamily: 'IPv4' }), /NOT_FOUND|no rule set/);
});

test('acks drive status: in sync, digest mismatch asks for a resync, failures are reported', async () => {
  const before = await status();
  assert.equal(before.nodes.length, 3);
  assert.ok(before.nodes.every((n) => !n.inSync && n.ackedGeneration === 0));
  const a = published.find((p) => p.delta.node === 'node-a')!.delta;
  // The ack carries the publish's trace context (as the executor will), so the ack joins the trace.
  const md = new Metadata();
  context.with(extractTraceContext(published.find((p) => p.delta.node === 'node-a')!.headers), () =>
    injectTraceMetadata(md),
  );
  assert.deepEqual(await ack({ node: 'node-a', generation: a.generation, digest: a.digest }, md), {
    resyncRequired: false,
    latestGeneration: a.generation,
  });
  assert.equal((await ack({ node: 'node-b', generation: a.generation, digest: 'bad' })).resyncRequired, true);
  assert.equal(
    (await ack({ node: 'node-c', generation: 0, digest: '', error: 'iptables-restore: line 3 failed' })).resyncRequired,
    true,
  );
  const s = await status();
  const byNode = new Map(s.nodes.map((n) => [n.node, n]));
  assert.equal(byNode.get('node-a')?.inSync, true);
  assert.equal(byNode.get('node-b')?.inSync, false);
  assert.equal(byNode.get('node-c')?.lastError, 'iptables-restore: line 3 failed');
  assert.equal(s.generation, a.generation);
  assert.equal(latencies.length, 1, 'change-to-ack observed once, for node-a');
  const spans = exporter.getFinishedSpans();
  const ackSpan = spans.find((x) => x.name === 'kpx.ack' && x.attributes['kpx.node'] === 'node-a');
  const publishSpan = spans.find((x) => x.name === 'kpx.publish' && x.attributes['kpx.node'] === 'node-a');
  assert.ok(ackSpan && publishSpan);
  assert.equal(ackSpan.spanContext().traceId, publishSpan.spanContext().traceId);
  assert.equal(trace.getSpanContext(extractTraceContext(published[0]!.headers))?.traceId !== undefined, true);
  // Drift found and repaired by node-a's executor is reported with the ack that follows the repair.
  await ack({
    node: 'node-a',
    generation: a.generation,
    digest: a.digest,
    actualDigest: 'f00d',
    drift: ['nat/KUBE-SERVICES: missing'],
  });
  await ack({ node: 'node-a', generation: a.generation, digest: a.digest, actualDigest: a.digest });
  const na = (await status()).nodes.find((n) => n.node === 'node-a');
  assert.equal(na?.actualDigest, a.digest);
  assert.deepEqual(na?.lastDrift, ['nat/KUBE-SERVICES: missing']);
  assert.equal(na?.driftRepairs, 1);
  assert.ok(na?.lastDriftTime);
  assert.equal(na?.inSync, true);
});
