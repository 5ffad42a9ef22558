import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { LogLevelError, SpanProcessing, createLogger, startTracing, withSpan } from '../src/index.js';
import type { Tracing } from '../src/index.js';
import { collectLines } from './helpers.js';

let tracing: Tracing;
const exporter = new InMemorySpanExporter();

before(() => {
  tracing = startTracing({ serviceName: 'kpx-test', exporter, processing: SpanProcessing.Simple });
});
after(async () => {
  await tracing.shutdown();
});

test("a line written inside a span carries that span's trace_id and span_id, also after an await", async () => {
  const { stream, lines } = collectLines();
  const log = createLogger({ name: 'kpx-controller', destination: stream });
  let ids: { traceId: string; spanId: string } | undefined;
  await withSpan(tracing.tracer, 'compile', undefined, async (span) => {
    ids = span.spanContext();
    await sleep(1);
    log.info({ node: 'n1' }, 'compiled');
  });
  assert.ok(ids);
  assert.equal(lines.length, 1);
  const line = lines[0]!;
  assert.equal(line.trace_id, ids.traceId);
  assert.equal(line.span_id, ids.spanId);
  assert.equal(line.trace_flags, '01');
  assert.match(String(line.trace_id), /^[0-9a-f]{32}$/);
  assert.equal(line.msg, 'compiled');
  assert.equal(line.node, 'n1');
  assert.equal(line.level, 'info');
  assert.equal(line.service, 'kpx-controller');
  assert.ok(!Number.isNaN(Date.parse(String(line.time))));
  // The span the log names was exported with the same ids.
  const [exported] = exporter.getFinishedSpans();
  assert.equal(exported?.spanContext().spanId, ids.spanId);
});

test('nested spans: each line names the innermost active span; outside any span there are no trace fields', () => {
  const { stream, lines } = collectLines();
  const log = createLogger({ name: 'kpx-executor', service: 'kpx', destination: stream });
  log.info('before');
  withSpan(tracing.tracer, 'outer', {}, (outer) => {
    log.info('in outer');
    withSpan(tracing.tracer, 'inner', {}, (inner) => {
      log.info('in inner');
      assert.notEqual(inner.spanContext().spanId, outer.spanContext().spanId);
    });
    log.info('back in outer');
  });
  assert.deepEqual(
    lines.map((l) => l.msg),
    ['before', 'in outer', 'in inner', 'back in outer'],
  );
  assert.equal(lines[0]?.trace_id, undefined);
  assert.equal(lines[0]?.span_id, undefined);
  assert.equal(lines[0]?.service, 'kpx');
  assert.equal(lines[0]?.name, 'kpx-executor');
  assert.equal(lines[1]?.trace_id, lines[2]?.trace_id, 'one trace');
  assert.notEqual(lines[1]?.span_id, lines[2]?.span_id);
  assert.equal(lines[1]?.span_id, lines[3]?.span_id);
});

test('level filters lines; unknown level is a LogLevelError naming it', () => {
  const { stream, lines } = collectLines();
  const log = createLogger({ name: 'x', level: 'warn', destination: stream });
  log.info('dropped');
  log.warn('kept');
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [['warn', 'kept']],
  );
  assert.throws(
    () => createLogger({ name: 'x', level: 'verbose' }),
    (err: unknown) => {
      assert.ok(err instanceof LogLevelError);
      assert.equal(err.value, 'verbose');
      assert.match(err.message, /"verbose"/);
      return true;
    },
  );
});
