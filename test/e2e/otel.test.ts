// Traces reach a real OTLP/HTTP receiver from a controller and a dry-run executor configured only by OTEL_*
// environment variables (no --otlp-endpoint): resource attributes, span kinds and messaging/rpc attributes per
// the semantic conventions, one trace from the controller's publish to the executor's apply and ack, and the
// executor's logs carrying the trace ids that were exported.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startNatsServer } from '@kpx/testing';
import { RepoRoot } from './cluster.js';
import { OtlpSpanKind, startOtlpGrpcReceiver, startOtlpReceiver, type ReceivedSpan } from './otlp-receiver.js';
import { KpxBin, waitUntil, writeAtomically } from './system.js';

interface Proc {
  readonly child: ChildProcess;
  log: string;
}

function start(args: readonly string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [KpxBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const p: Proc = { child, log: '' };
  child.stdout?.on('data', (b: Buffer) => (p.log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (p.log += b.toString()));
  return p;
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((resolve) => p.child.once('exit', resolve));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

test('controller and dry-run executor configured only by OTEL_* export to an OTLP/HTTP protobuf receiver with semantic-convention kinds and attributes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-otel-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(`${RepoRoot}examples`, dir, { recursive: true });
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const nats = await startNatsServer({ jetstream: true });
  t.after(() => nats.stop());
  // Nothing of the test runner's own OTEL_* leaks in.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
  const otel = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_TRACES_SAMPLER: 'parentbased_always_on',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=e2e',
    OTEL_BSP_SCHEDULE_DELAY: '200',
  };
  const controller = start(
    [
      'controller',
      '--manifests',
      dir,
      '--nats',
      nats.url,
      '--grpc-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
    ],
    { ...base, ...otel },
  );
  t.after(() => stop(controller));
  const procs: Proc[] = [controller];
  const logs = (): string =>
    `${procs.map((p) => `--- ${p.child.spawnargs[2] ?? ''}\n${p.log.slice(-3000)}`).join('\n')}\n--- spans\n${receiver.spans.map((s) => `${s.resource['service.name']} ${s.name} ${s.kind}`).join('\n')}`;
  await waitUntil(() => controller.log.includes('kpx controller running'), 'the controller', 20_000, logs);
  const running = JSON.parse(controller.log.split('\n').find((l) => l.includes('kpx controller running')) ?? '{}') as {
    grpc?: string;
  };
  const exec = start(
    [
      'executor',
      '--node',
      'node-a',
      '--nats',
      nats.url,
      '--controller',
      running.grpc ?? '',
      '--dry-run',
      '--healthz-listen',
      '127.0.0.1:0',
      '--ip-families',
      'ipv4',
      '--log-level',
      'debug',
    ],
    { ...base, ...otel, OTEL_SERVICE_NAME: 'kpx-executor-e2e' },
  );
  procs.push(exec);
  t.after(() => stop(exec));

  await waitUntil(() => exec.log.includes('kpx executor running'), 'the executor', 20_000, logs);
  // A change after the executor's start: a delta it applies from the stream.
  const web = await readFile(join(dir, 'web.yaml'), 'utf8');
  await writeAtomically(dir, 'web.yaml', web.replace('10.244.2.10', '10.244.2.77'));
  const find = (pred: (s: ReceivedSpan) => boolean): ReceivedSpan | undefined => receiver.spans.find(pred);
  const of =
    (service: string, name: string, kind: number) =>
    (s: ReceivedSpan): boolean =>
      s.resource['service.name'] === service && s.name === name && s.kind === kind;
  // The delta node-a applies is one the executor took from the stream (after its start-up snapshot).
  const applied = (s: ReceivedSpan): boolean =>
    of('kpx-executor-e2e', 'kpx.apply', OtlpSpanKind.Consumer)(s) && s.parentSpanId !== '';
  const waited = await waitUntil(
    () =>
      [
        find(applied),
        find(of('kpx-executor-e2e', 'kpx.ack', OtlpSpanKind.Client)),
        find(of('kpx-controller', 'kpx.ack', OtlpSpanKind.Server)),
        find(of('kpx-executor-e2e', 'kpx.snapshot', OtlpSpanKind.Client)),
        find(of('kpx-controller', 'kpx.snapshot', OtlpSpanKind.Server)),
      ].every(Boolean),
    'publish, apply, ack and snapshot spans at the receiver',
    30_000,
    logs,
  );
  t.diagnostic(
    `all spans at the receiver after ${waited} ms; ${receiver.spans.length} spans in ${receiver.contentTypes.length} requests`,
  );
  assert.ok(
    receiver.contentTypes.every((c) => c === 'application/x-protobuf'),
    receiver.contentTypes.join(', '),
  );

  // The apply is a CONSUMER child of the controller's PRODUCER publish, in one trace.
  const apply = find(applied)!;
  const publish = find((s) => s.spanId === apply.parentSpanId);
  assert.ok(publish, 'the parent of kpx.apply was exported');
  assert.equal(publish.name, 'kpx.publish');
  assert.equal(publish.kind, OtlpSpanKind.Producer);
  assert.equal(publish.traceId, apply.traceId);
  for (const s of [publish, apply]) {
    assert.equal(s.attributes['messaging.system'], 'nats');
    assert.equal(s.attributes['messaging.destination.name'], 'kpx.delta.node-a');
  }
  assert.equal(publish.attributes['messaging.operation.type'], 'send');
  assert.equal(apply.attributes['messaging.operation.type'], 'process');

  // gRPC: every SERVER span has its executor's CLIENT span as parent, with rpc.* attributes.
  for (const method of ['Ack', 'GetSnapshot']) {
    const name = method === 'Ack' ? 'kpx.ack' : 'kpx.snapshot';
    const server = find(
      (s) =>
        of('kpx-controller', name, OtlpSpanKind.Server)(s) && receiver.spans.some((c) => c.spanId === s.parentSpanId),
    )!;
    assert.ok(server, `a ${name} SERVER span whose parent was exported`);
    const client = find((s) => s.spanId === server.parentSpanId)!;
    assert.equal(client.kind, OtlpSpanKind.Client);
    assert.equal(client.resource['service.name'], 'kpx-executor-e2e');
    assert.equal(client.traceId, server.traceId);
    for (const s of [client, server]) {
      assert.equal(s.attributes['rpc.system'], 'grpc');
      assert.equal(s.attributes['rpc.service'], 'kpx.v1.NodeSync');
      assert.equal(s.attributes['rpc.method'], method);
    }
  }
  // The ack after the apply continues its trace.
  assert.ok(
    receiver.spans.some((s) => s.name === 'kpx.ack' && s.kind === OtlpSpanKind.Client && s.traceId === apply.traceId),
    'an ack in the trace of the apply',
  );

  // Resources: defaults, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, the executor's node, one instance id each.
  const c = publish.resource;
  const e = apply.resource;
  assert.equal(c['service.name'], 'kpx-controller');
  assert.equal(e['service.name'], 'kpx-executor-e2e');
  for (const r of [c, e]) {
    assert.equal(r['service.version'], '0.1.0');
    assert.match(String(r['service.instance.id']), /^[0-9a-f-]{36}$/);
    assert.equal(r['deployment.environment.name'], 'e2e');
    assert.equal(typeof r['process.pid'], 'number');
  }
  assert.notEqual(c['service.instance.id'], e['service.instance.id']);
  assert.equal(e['k8s.node.name'], 'node-a');
  assert.equal(c['k8s.node.name'], undefined);
  const instances = new Set(
    receiver.spans
      .filter((s) => s.resource['service.name'] === 'kpx-executor-e2e')
      .map((s) => s.resource['service.instance.id']),
  );
  assert.equal(instances.size, 1, 'one instance id per process');

  // pino logs carry the ids of exported spans: the controller's publish, the executor's apply (at debug).
  const logged = (log: string, msg: string): { trace_id?: string; span_id?: string }[] =>
    log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; trace_id?: string; span_id?: string })
      .filter((l) => l.msg === msg);
  const appliedLog = logged(exec.log, 'applied delta').find((l) => l.span_id === apply.spanId);
  assert.equal(
    appliedLog?.trace_id,
    apply.traceId,
    'the executor\'s "applied delta" line carries the apply span\'s ids',
  );
  const exported = new Set(receiver.spans.map((s) => s.traceId));
  assert.ok(
    logged(controller.log, 'published generation').some((l) => l.trace_id !== undefined && exported.has(l.trace_id)),
    'a controller "published generation" line carries an exported trace id',
  );
});

test('OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports to an OTLP/gRPC receiver', async (t) => {
  const receiver = await startOtlpGrpcReceiver();
  t.after(() => receiver.close());
  const nats = await startNatsServer({ jetstream: true });
  t.after(() => nats.stop());
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
  const env = {
    ...base,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    OTEL_BSP_SCHEDULE_DELAY: '200',
  };
  const controller = start(
    [
      'controller',
      '--manifests',
      `${RepoRoot}examples`,
      '--nats',
      nats.url,
      '--grpc-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
    ],
    env,
  );
  t.after(() => stop(controller));
  await waitUntil(
    () =>
      receiver.spans.some(
        (s) =>
          s.name === 'kpx.publish' &&
          s.kind === OtlpSpanKind.Producer &&
          s.resource['service.name'] === 'kpx-controller',
      ),
    'kpx.publish spans over gRPC',
    20_000,
    () => controller.log.slice(-3000),
  );
  const publish = receiver.spans.find((s) => s.name === 'kpx.publish')!;
  assert.match(String(publish.attributes['messaging.destination.name']), /^kpx\.delta\./);
  assert.equal(publish.resource['service.version'], '0.1.0');
});
