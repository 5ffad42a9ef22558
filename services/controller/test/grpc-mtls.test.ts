// Issue #15 item 1: gRPC NodeSync with mTLS and node identity, against a real server and a throwaway openssl PKI.
// A node certificate (CN=system:node:node-a, O=system:nodes) may ack and fetch node-a only; another node's ack or
// snapshot is PERMISSION_DENIED, counted in kpx_controller_denied_requests_total{method,identity} and logged;
// Status needs an operator certificate; a client without a certificate fails the handshake; a non-loopback
// listen address without TLS is refused unless insecure.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { credentials, Metadata, status as GrpcStatus, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { IPFamily, readManifestDir } from '@kpx/model';
import { defaultIptablesOptions } from '@kpx/compiler';
import { AckRequest, NodeSyncClient, type AckResponse, type SnapshotChunk, type StatusResponse } from '@kpx/proto';
import { controllerMetrics, createMetrics, type ControllerMetrics } from '@kpx/telemetry';
import { createTestPki, type TestPki } from '@kpx/testing';
import { readTlsFiles } from '@kpx/transport';
import {
  ControllerPipeline,
  MemoryGenerationStore,
  identityOfCertificate,
  insecureListenRefusal,
  startGrpcServer,
  type RunningGrpcServer,
} from '../src/index.js';

const examples = new URL('../../../../examples/', import.meta.url).pathname;
const warnings: { fields: Record<string, unknown>; msg: string }[] = [];
const logger = {
  info: () => {},
  warn: (fields: unknown, msg?: string) =>
    void warnings.push({ fields: fields as Record<string, unknown>, msg: msg ?? '' }),
  error: () => {},
};
let pki: TestPki;
let pipeline: ControllerPipeline;
let server: RunningGrpcServer;
let metrics: ControllerMetrics;
const clients: NodeSyncClient[] = [];

before(async () => {
  pki = createTestPki({
    nodeA: { cn: 'system:node:node-a', o: ['system:nodes'] },
    nodeB: { cn: 'system:node:node-b', o: ['system:nodes'] },
    operator: { cn: 'alice', o: ['kpx-operators'] },
    halfNode: { cn: 'system:node:node-a' },
  });
  pipeline = new ControllerPipeline({
    families: new Map([[IPFamily.IPv4, defaultIptablesOptions(IPFamily.IPv4)]]),
    sink: { publish: () => Promise.resolve() },
    generations: new MemoryGenerationStore(),
    minSyncPeriodMs: 0,
    logger,
    tracer: trace.getTracer('test'),
  });
  for (const { object } of await readManifestDir(examples)) {
    if (object.kind === 'Service' || object.kind === 'EndpointSlice' || object.kind === 'Node')
      pipeline.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: Date.now() });
  }
  pipeline.onSynced();
  await new Promise((r) => setTimeout(r, 5));
  await pipeline.settle();
  metrics = controllerMetrics(createMetrics());
  const tls = readTlsFiles(
    { certFile: pki.server.certFile, keyFile: pki.server.keyFile, caFile: pki.caFile },
    { caFlag: '--client-ca-file' },
  );
  server = await startGrpcServer({
    pipeline,
    listen: '127.0.0.1:0',
    logger,
    tracer: trace.getTracer('test'),
    tls,
    onDenied: (method, identity) => metrics.deniedRequests.inc({ method, identity }),
  });
});

after(async () => {
  for (const c of clients) c.close();
  await server.close();
  await pipeline.stop();
  pki.remove();
});

const creds = (who: keyof TestPki['clients'] | undefined): ChannelCredentials => {
  const ca = readFileSync(pki.caFile);
  if (who === undefined) return credentials.createSsl(ca);
  const c = pki.clients[who]!;
  return credentials.createSsl(ca, readFileSync(c.keyFile), readFileSync(c.certFile));
};
const clientAs = (who: keyof TestPki['clients'] | undefined): NodeSyncClient => {
  const c = new NodeSyncClient(`127.0.0.1:${server.port}`, creds(who));
  clients.push(c);
  return c;
};
const deadline = (): { deadline: number } => ({ deadline: Date.now() + 5000 });

const ack = (c: NodeSyncClient, node: string): Promise<AckResponse> =>
  new Promise((resolve, reject) =>
    c.ack(
      AckRequest.fromPartial({ node, mode: 'iptables', ipFamily: 'IPv4', generation: pipeline.generation, digest: '' }),
      new Metadata(),
      deadline(),
      (err, res) => (err ? reject(err) : resolve(res)),
    ),
  );
const snapshot = (c: NodeSyncClient, node: string): Promise<SnapshotChunk[]> =>
  new Promise((resolve, reject) => {
    const chunks: SnapshotChunk[] = [];
    const s = c.getSnapshot(
      { node, mode: 'iptables', ipFamily: 'IPv4', generation: 0, maxObjectsPerChunk: 0 },
      new Metadata(),
      deadline(),
    );
    s.on('data', (x: SnapshotChunk) => chunks.push(x));
    s.on('error', reject);
    s.on('end', () => resolve(chunks));
  });
const status = (c: NodeSyncClient): Promise<StatusResponse> =>
  new Promise((resolve, reject) =>
    c.status({ node: '' }, new Metadata(), deadline(), (err, res) => (err ? reject(err) : resolve(res))),
  );
const denied =
  (re: RegExp) =>
  (err: unknown): boolean =>
    (err as ServiceError).code === GrpcStatus.PERMISSION_DENIED && re.test((err as ServiceError).details);
const deniedCount = async (method: string, identity: string): Promise<number> =>
  (await metrics.deniedRequests.get()).values.find(
    (v) => v.labels['method'] === method && v.labels['identity'] === identity,
  )?.value ?? 0;

test('a node certificate acks and fetches its own node, and nothing of another node', async () => {
  const a = clientAs('nodeA');
  assert.ok((await ack(a, 'node-a')).latestGeneration > 0);
  const own = await snapshot(a, 'node-a');
  assert.ok(own.length > 0 && own[0]!.objects.length > 0);
  await assert.rejects(ack(a, 'node-b'), denied(/system:node:node-a may ack only node node-a, not "node-b"/));
  await assert.rejects(snapshot(a, 'node-b'), denied(/may fetch only node node-a's rules/));
  assert.equal(await deniedCount('Ack', 'system:node:node-a'), 1);
  assert.equal(await deniedCount('GetSnapshot', 'system:node:node-a'), 1);
  const logged = warnings.filter((w) => w.msg.startsWith('denied NodeSync'));
  assert.deepEqual(
    logged.map((w) => [w.fields['method'], w.fields['identity'], w.fields['node']]),
    [
      ['Ack', 'system:node:node-a', 'node-b'],
      ['GetSnapshot', 'system:node:node-a', 'node-b'],
    ],
  );
  // node-b's own certificate works for node-b.
  assert.ok((await ack(clientAs('nodeB'), 'node-b')).latestGeneration > 0);
});

test('Status is for operators: an operator may call it (and fetch any node), a node may not', async () => {
  const op = clientAs('operator');
  const res = await status(op);
  assert.ok(res.nodes.some((n) => n.node === 'node-a'));
  assert.ok((await snapshot(op, 'node-b')).length > 0, 'an operator reads any node (kpx audit --rules)');
  await assert.rejects(ack(op, 'node-a'), denied(/only a node acks/));
  await assert.rejects(status(clientAs('nodeB')), denied(/node identity: status is for operators/));
  assert.equal(await deniedCount('Status', 'system:node:node-b'), 1);
  assert.equal(await deniedCount('Ack', 'alice'), 1);
});

test('a CN system:node:* without O=system:nodes is no identity at all', async () => {
  const half = clientAs('halfNode');
  await assert.rejects(ack(half, 'node-a'), denied(/needs O=system:nodes/));
  await assert.rejects(status(half), denied(/not a valid identity/));
  assert.equal(identityOfCertificate({ subject: { CN: 'x', O: 'system:nodes' } }).kind, 'invalid');
});

test('a client without a certificate fails the handshake', async () => {
  await assert.rejects(
    status(clientAs(undefined)),
    (err: unknown) => (err as ServiceError).code === GrpcStatus.UNAVAILABLE,
  );
  // A plaintext client does not get through either.
  const plain = new NodeSyncClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  clients.push(plain);
  await assert.rejects(status(plain), (err: unknown) => (err as ServiceError).code === GrpcStatus.UNAVAILABLE);
});

test('without TLS, a non-loopback listen address is refused unless insecure; loopback stays allowed', async () => {
  for (const listen of ['0.0.0.0:0', '[::]:0', '10.1.2.3:10260', 'node-a.example:10260']) {
    assert.match(
      insecureListenRefusal(listen, { tls: false, insecure: false }) ?? '',
      /refusing to serve gRPC NodeSync on .* without TLS.*--insecure/,
      listen,
    );
    assert.equal(insecureListenRefusal(listen, { tls: false, insecure: true }), undefined);
    assert.equal(insecureListenRefusal(listen, { tls: true, insecure: false }), undefined);
  }
  for (const listen of ['127.0.0.1:0', 'localhost:0', '[::1]:0', '127.0.0.2:0', ':10260'])
    assert.equal(insecureListenRefusal(listen, { tls: false, insecure: false }), undefined, listen);
  await assert.rejects(
    startGrpcServer({ pipeline, listen: '0.0.0.0:0', logger, tracer: trace.getTracer('test') }),
    /refusing to serve gRPC NodeSync on 0\.0\.0\.0:0 without TLS/,
  );
});
