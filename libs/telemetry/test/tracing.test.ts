import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { context, isSpanContextValid, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import {
  OtlpProtocol,
  SpanKind,
  SpanProcessing,
  SpanStatusCode,
  TracingAlreadyStartedError,
  TracingConfigError,
  otlpTracesUrl,
  startTracing,
  withSpan,
} from '../src/index.js';

// Tests here run one after another (node:test runs top-level tests of a file in sequence) and each shuts its
// tracing down, because tracing is registered process-wide.

test('nested withSpan spans are exported with the right parents, one trace id, and context survives awaits', async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing({ serviceName: 'kpx-controller', exporter, processing: SpanProcessing.Simple });
  try {
    assert.equal(tracing.exporting, true);
    const result = await withSpan(tracing.tracer, 'sync', { 'kpx.generation': 7 }, async (root) => {
      await sleep(2);
      assert.equal(trace.getActiveSpan(), root, 'root still active after an await');
      const compiled = await withSpan(tracing.tracer, 'compile', undefined, async () => {
        await sleep(1);
        return withSpan(tracing.tracer, 'render', { node: 'n1' }, () => 'rules');
      });
      await withSpan(tracing.tracer, 'publish', undefined, async () => sleep(1), { kind: SpanKind.PRODUCER });
      return compiled;
    });
    assert.equal(result, 'rules');
    const spans = new Map(exporter.getFinishedSpans().map((s) => [s.name, s]));
    assert.deepEqual([...spans.keys()].sort(), ['compile', 'publish', 'render', 'sync']);
    const id = (name: string) => spans.get(name)!.spanContext();
    const parent = (name: string) => spans.get(name)!.parentSpanContext?.spanId;
    assert.equal(parent('sync'), undefined, 'root has no parent');
    assert.equal(parent('compile'), id('sync').spanId);
    assert.equal(parent('render'), id('compile').spanId);
    assert.equal(parent('publish'), id('sync').spanId, 'publish is a sibling of compile, not its child');
    for (const name of spans.keys()) assert.equal(id(name).traceId, id('sync').traceId);
    assert.equal(spans.get('sync')!.attributes['kpx.generation'], 7);
    assert.equal(spans.get('publish')!.kind, SpanKind.PRODUCER);
    assert.equal(spans.get('sync')!.status.code, SpanStatusCode.OK);
    assert.equal(spans.get('sync')!.resource.attributes['service.name'], 'kpx-controller');
    assert.ok([...spans.values()].every((s) => s.ended));
  } finally {
    await tracing.shutdown();
  }
});

test('a throw or rejection is recorded on the span, which ends with status ERROR, and is passed on', async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing({ serviceName: 't', exporter, processing: SpanProcessing.Simple });
  try {
    assert.throws(
      () =>
        withSpan(tracing.tracer, 'sync-fail', undefined, () => {
          throw new Error('iptables-restore exited 1');
        }),
      /iptables-restore exited 1/,
    );
    await assert.rejects(
      withSpan(tracing.tracer, 'async-fail', undefined, async () => {
        await sleep(1);
        throw new RangeError('bad generation');
      }),
      RangeError,
    );
    const spans = new Map(exporter.getFinishedSpans().map((s) => [s.name, s]));
    for (const [name, message] of [
      ['sync-fail', 'iptables-restore exited 1'],
      ['async-fail', 'bad generation'],
    ] as const) {
      const span = spans.get(name);
      assert.ok(span, name);
      assert.equal(span.status.code, SpanStatusCode.ERROR);
      assert.equal(span.status.message, message);
      const event = span.events.find((e) => e.name === 'exception');
      assert.equal(event?.attributes?.['exception.message'], message);
    }
    assert.equal(trace.getActiveSpan(), undefined, 'no span left active');
  } finally {
    await tracing.shutdown();
  }
});

test('without endpoint or exporter spans still get ids and propagate, but nothing is exported', async () => {
  const tracing = startTracing({ serviceName: 't' });
  try {
    assert.equal(tracing.exporting, false);
    await withSpan(tracing.tracer, 'outer', undefined, async (outer) => {
      assert.ok(isSpanContextValid(outer.spanContext()));
      await sleep(1);
      withSpan(tracing.tracer, 'inner', undefined, (inner) => {
        assert.ok(isSpanContextValid(inner.spanContext()));
        assert.equal(inner.spanContext().traceId, outer.spanContext().traceId);
      });
    });
  } finally {
    await tracing.shutdown();
  }
});

test('a second startTracing fails until the first is shut down; shutdown is idempotent and unregisters', async () => {
  const exporter = new InMemorySpanExporter();
  const first = startTracing({ serviceName: 'a', exporter, processing: SpanProcessing.Simple });
  assert.throws(() => startTracing({ serviceName: 'b' }), TracingAlreadyStartedError);
  // The failed attempt did not disturb the first one.
  withSpan(first.tracer, 'still-works', undefined, () => undefined);
  assert.equal(exporter.getFinishedSpans().length, 1);
  await Promise.all([first.shutdown(), first.shutdown()]);
  await first.shutdown();
  // Globals are gone: the API's tracer is a no-op again and the context does not carry spans.
  const noop = trace.getTracer('x').startSpan('n');
  assert.equal(noop.isRecording(), false);
  noop.end();
  const key = Symbol('k');
  assert.equal(
    context.with(context.active().setValue(key, 1), () => context.active().getValue(key)),
    undefined,
  );
  const second = startTracing({ serviceName: 'b' });
  await second.shutdown();
});

test('batch processing exports on forceFlush', async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing({ serviceName: 't', exporter });
  try {
    withSpan(tracing.tracer, 'queued', undefined, () => undefined);
    assert.equal(exporter.getFinishedSpans().length, 0, 'still queued in the batch');
    await tracing.forceFlush();
    assert.deepEqual(
      exporter.getFinishedSpans().map((s) => s.name),
      ['queued'],
    );
  } finally {
    await tracing.shutdown();
  }
});

test('otlpEndpoint exports OTLP/HTTP (JSON when asked) to <endpoint>/v1/traces', async () => {
  const received: { path: string | undefined; type: string | undefined; body: string }[] = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url, type: req.headers['content-type'], body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  const { port } = collector.address() as AddressInfo;
  const tracing = startTracing({
    serviceName: 'kpx-executor',
    otlpEndpoint: `http://127.0.0.1:${port}`,
    otlpProtocol: OtlpProtocol.HttpJson,
  });
  try {
    let traceId = '';
    withSpan(tracing.tracer, 'apply', { node: 'n1' }, (span) => {
      traceId = span.spanContext().traceId;
    });
    await tracing.forceFlush();
    assert.equal(received.length, 1);
    assert.equal(received[0]?.path, '/v1/traces');
    assert.match(received[0]?.type ?? '', /application\/json/);
    const body = received[0].body;
    assert.ok(body.includes(traceId), "the exported payload carries the span's trace id");
    assert.ok(body.includes('kpx-executor'));
    assert.ok(body.includes('"apply"'));
  } finally {
    await tracing.shutdown();
    collector.closeAllConnections();
    collector.close();
  }
});

test('otlpTracesUrl appends /v1/traces once; malformed endpoints are TracingConfigErrors naming the value', () => {
  assert.equal(otlpTracesUrl('http://collector:4318'), 'http://collector:4318/v1/traces');
  assert.equal(otlpTracesUrl('http://collector:4318/'), 'http://collector:4318/v1/traces');
  assert.equal(otlpTracesUrl('https://c.example/otlp/'), 'https://c.example/otlp/v1/traces');
  assert.equal(otlpTracesUrl('http://c:4318/v1/traces'), 'http://c:4318/v1/traces');
  assert.throws(
    () => otlpTracesUrl('collector:4318x'),
    (err: unknown) => err instanceof TracingConfigError && err.message.includes('"collector:4318x"'),
  );
  assert.throws(() => otlpTracesUrl('grpc://c:4317'), TracingConfigError);
  assert.throws(() => startTracing({ serviceName: 't', otlpEndpoint: 'not a url' }), TracingConfigError);
  // The refused start registered nothing.
  const t = startTracing({ serviceName: 't' });
  return t.shutdown();
});

/** Runs `fn` with these OTEL_* variables set (and every other OTEL_* unset), restoring the environment after. */
async function withOtelEnv(vars: Record<string, string>, fn: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('OTEL_')));
  for (const k of Object.keys(saved)) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    await fn();
  } finally {
    for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_')) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

test('OTEL_* configure the SDK: endpoint and protocol, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over the defaults, the sampler', async () => {
  const bodies: string[] = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(`${req.url ?? ''} ${Buffer.concat(chunks).toString()}`);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  collector.listen(0, '127.0.0.1');
  await once(collector, 'listening');
  const { port } = collector.address() as AddressInfo;
  try {
    await withOtelEnv(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'renamed',
        OTEL_RESOURCE_ATTRIBUTES: 'k8s.node.name=from-env,team=net',
        OTEL_TRACES_SAMPLER: 'traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0',
      },
      async () => {
        const tracing = startTracing({
          serviceName: 'kpx-executor',
          serviceVersion: '1.2.3',
          resourceAttributes: { 'k8s.node.name': 'node-a' },
        });
        try {
          assert.equal(tracing.exporting, true);
          // traceidratio 0: no root span is sampled.
          withSpan(tracing.tracer, 'dropped', undefined, (span) => assert.equal(span.isRecording(), false));
          await tracing.forceFlush();
          assert.deepEqual(bodies, [], 'nothing sampled, nothing sent');
        } finally {
          await tracing.shutdown();
        }
      },
    );
    await withOtelEnv(
      {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${port}/custom/v1/traces`,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_SERVICE_NAME: 'renamed',
        OTEL_RESOURCE_ATTRIBUTES: 'k8s.node.name=from-env,team=net',
      },
      async () => {
        const tracing = startTracing({
          serviceName: 'kpx-executor',
          serviceVersion: '1.2.3',
          resourceAttributes: { 'k8s.node.name': 'node-a' },
        });
        try {
          withSpan(tracing.tracer, 'kept', undefined, () => undefined);
          await tracing.forceFlush();
          assert.equal(bodies.length, 1);
          const [path, json] = [bodies[0]!.split(' ')[0], bodies[0]!.slice(bodies[0]!.indexOf(' ') + 1)];
          assert.equal(path, '/custom/v1/traces', 'the traces endpoint is used as is');
          const attrs = Object.fromEntries(
            (
              JSON.parse(json) as {
                resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] } }[];
              }
            ).resourceSpans[0]!.resource.attributes.map((a) => [a.key, a.value.stringValue]),
          );
          assert.equal(attrs['service.name'], 'renamed');
          assert.equal(attrs['service.version'], '1.2.3');
          assert.equal(attrs['k8s.node.name'], 'from-env');
          assert.equal(attrs['team'], 'net');
          assert.equal(attrs['service.instance.id'], tracing.instanceId);
        } finally {
          await tracing.shutdown();
        }
      },
    );
  } finally {
    collector.closeAllConnections();
    collector.close();
  }
});

test('no endpoint: nothing exported; OTEL_SDK_DISABLED: a no-op tracer and nothing registered; a bad protocol is a TracingConfigError', async () => {
  await withOtelEnv({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' }, async () => {
    const tracing = startTracing({ serviceName: 't' });
    assert.equal(tracing.exporting, false);
    withSpan(tracing.tracer, 'noop', undefined, (span) => assert.equal(span.isRecording(), false));
    // Nothing was registered: another start works at once.
    await tracing.shutdown();
  });
  await withOtelEnv(
    { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/xml', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' },
    () => {
      assert.throws(
        () => startTracing({ serviceName: 't' }),
        (err: unknown) => err instanceof TracingConfigError && err.message.includes('"http/xml"'),
      );
      return Promise.resolve();
    },
  );
  await withOtelEnv({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' }, async () => {
    const tracing = startTracing({ serviceName: 't' });
    assert.equal(tracing.exporting, false);
    await tracing.shutdown();
  });
  await withOtelEnv({}, async () => {
    const tracing = startTracing({ serviceName: 't' });
    assert.equal(tracing.exporting, false);
    await tracing.shutdown();
  });
});
