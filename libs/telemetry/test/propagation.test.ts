import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT_CONTEXT, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import {
  SpanKind,
  SpanProcessing,
  extractTraceContext,
  extractTraceHeaders,
  extractTraceMetadata,
  injectTraceContext,
  injectTraceHeaders,
  injectTraceMetadata,
  startTracing,
  withContext,
  withSpan,
} from '../src/index.js';
import type { Tracing } from '../src/index.js';
import { FakeMetadata, FakeMsgHdrs } from './helpers.js';

let tracing: Tracing;
const exporter = new InMemorySpanExporter();

before(() => {
  tracing = startTracing({ serviceName: 'kpx-test', exporter, processing: SpanProcessing.Simple });
});
beforeEach(() => exporter.reset());
after(async () => {
  await tracing.shutdown();
});

const traceparentPattern = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;

test("inject into a plain object, carry it over a fake transport, extract: the receiver's span is a child in the same trace", async () => {
  // "Transport": a JSON round trip through a queue, consumed later by a handler with no shared context.
  const queue: string[] = [];
  let sender = { traceId: '', spanId: '' };
  await withSpan(
    tracing.tracer,
    'publish',
    undefined,
    async (span) => {
      sender = span.spanContext();
      await sleep(1);
      const headers = injectTraceContext();
      assert.match(headers.traceparent ?? '', traceparentPattern);
      assert.ok(headers.traceparent?.includes(sender.traceId));
      assert.ok(headers.traceparent?.includes(sender.spanId), 'traceparent names the active span');
      queue.push(JSON.stringify({ headers, body: 'delta' }));
    },
    { kind: SpanKind.PRODUCER },
  );

  assert.equal(trace.getActiveSpan(), undefined, 'the receiver starts outside any span');
  const message = JSON.parse(queue.shift()!) as { headers: Record<string, string> };
  const parent = extractTraceContext(message.headers);
  let receiver = { traceId: '', spanId: '' };
  await withSpan(
    tracing.tracer,
    'apply',
    undefined,
    async (span) => {
      receiver = span.spanContext();
      await sleep(1);
    },
    { parent, kind: SpanKind.CONSUMER },
  );

  assert.equal(receiver.traceId, sender.traceId);
  assert.notEqual(receiver.spanId, sender.spanId);
  const apply = exporter.getFinishedSpans().find((s) => s.name === 'apply');
  assert.equal(apply?.parentSpanContext?.spanId, sender.spanId);
  assert.equal(apply?.parentSpanContext?.isRemote, true);
});

test('outside a span nothing is injected; a missing or malformed traceparent extracts to the base context', () => {
  assert.deepEqual(injectTraceContext({}), {});
  assert.equal(trace.getSpanContext(extractTraceContext({}, ROOT_CONTEXT)), undefined);
  const bad = extractTraceContext({ traceparent: '00-zz-not-a-trace-01' }, ROOT_CONTEXT);
  assert.equal(trace.getSpanContext(bad), undefined);
  const zero = extractTraceContext({ traceparent: `00-${'0'.repeat(32)}-${'1'.repeat(16)}-01` }, ROOT_CONTEXT);
  assert.equal(trace.getSpanContext(zero), undefined, 'an all-zero trace id is invalid');
});

test('extract matches header names case-insensitively and keeps tracestate; withContext makes it active', () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const ctx = extractTraceContext({ Traceparent: `00-${traceId}-00f067aa0ba902b7-01`, TraceState: 'kpx=g42,vendor=x' });
  const sc = trace.getSpanContext(ctx);
  assert.equal(sc?.traceId, traceId);
  assert.equal(sc?.spanId, '00f067aa0ba902b7');
  assert.equal(sc?.traceState?.get('kpx'), 'g42');
  withContext(ctx, () => {
    withSpan(tracing.tracer, 'child', undefined, (span) => {
      assert.equal(span.spanContext().traceId, traceId);
      const out = injectTraceContext();
      assert.equal(out.tracestate, 'kpx=g42,vendor=x', 'tracestate passes through');
    });
  });
});

test('NATS-style headers (get gives "" when absent) round-trip trace context and baggage', () => {
  const headers = new FakeMsgHdrs();
  let sender = { traceId: '', spanId: '' };
  const withBaggage = propagation.setBaggage(ROOT_CONTEXT, propagation.createBaggage({ node: { value: 'n1' } }));
  withContext(withBaggage, () => {
    withSpan(tracing.tracer, 'publish', undefined, (span) => {
      sender = span.spanContext();
      injectTraceHeaders(headers);
    });
  });
  assert.match(headers.get('traceparent'), traceparentPattern);
  assert.equal(headers.get('baggage'), 'node=n1');
  const ctx = extractTraceHeaders(headers, ROOT_CONTEXT);
  assert.equal(trace.getSpanContext(ctx)?.traceId, sender.traceId);
  assert.equal(trace.getSpanContext(ctx)?.spanId, sender.spanId);
  assert.equal(propagation.getBaggage(ctx)?.getEntry('node')?.value, 'n1');
  // Empty headers: '' means absent, not a malformed value.
  assert.equal(trace.getSpanContext(extractTraceHeaders(new FakeMsgHdrs(), ROOT_CONTEXT)), undefined);
  // A Map works as a carrier too.
  const map = new Map<string, string>();
  withContext(ctx, () => injectTraceHeaders(map));
  assert.equal(trace.getSpanContext(extractTraceHeaders(map, ROOT_CONTEXT))?.traceId, sender.traceId);
});

test('gRPC-style metadata (get gives an array) round-trips, binary values included', () => {
  const md = new FakeMetadata();
  let sender = { traceId: '', spanId: '' };
  withSpan(tracing.tracer, 'ack', undefined, (span) => {
    sender = span.spanContext();
    injectTraceMetadata(md);
  });
  assert.equal(md.get('traceparent').length, 1);
  const ctx = extractTraceMetadata(md, ROOT_CONTEXT);
  assert.equal(trace.getSpanContext(ctx)?.spanId, sender.spanId);

  const binary = new FakeMetadata();
  binary.set('traceparent', Buffer.from(`00-${sender.traceId}-${sender.spanId}-01`));
  binary.add('tracestate', 'a=1');
  binary.add('tracestate', 'b=2');
  const ctx2 = extractTraceMetadata(binary, ROOT_CONTEXT);
  assert.equal(trace.getSpanContext(ctx2)?.traceId, sender.traceId);
  assert.equal(trace.getSpanContext(ctx2)?.traceState?.serialize(), 'a=1,b=2', 'repeated tracestate values are joined');
  assert.equal(trace.getSpanContext(extractTraceMetadata(new FakeMetadata(), ROOT_CONTEXT)), undefined);
});
