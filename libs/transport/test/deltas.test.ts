// The delta stream against a real nats-server (JetStream, file storage).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Delta } from '@kpx/proto';
import { headers, type MsgHdrs } from '@nats-io/nats-core';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import {
  DeltaStream,
  deltaSubject,
  EnsureAction,
  ensureDeltaStream,
  Header,
  lastDelta,
  lastDeltaSeq,
  PayloadTooLargeError,
  publishDelta,
  readDeltaMessages,
  readDeltas,
  RejectReason,
  type DeltaRecord,
  type RejectedMessage,
} from '../src/index.js';
import { chainObject, connectTo, makeDelta, type Client } from './fixtures.js';

const Timeout = { timeout: 60_000 };

function headersOf(values: Record<string, string>): MsgHdrs {
  const h = headers();
  for (const [k, v] of Object.entries(values)) h.set(k, v);
  return h;
}

async function collect(iterable: AsyncIterable<DeltaRecord>): Promise<DeltaRecord[]> {
  const out: DeltaRecord[] = [];
  for await (const record of iterable) out.push(record);
  return out;
}

describe('delta stream', Timeout, () => {
  let server: NatsServer;
  let client: Client;

  before(async () => {
    server = await startNatsServer({ jetstream: true });
    client = await connectTo(server.url);
  });

  after(async () => {
    await client?.nc.close();
    await server?.stop();
  });

  it('creates the stream, is idempotent, and updates a changed limit', async () => {
    const created = await ensureDeltaStream(client.jsm, { historyPerSubject: 100, maxAgeMs: 0 });
    assert.equal(created.action, EnsureAction.Created);
    assert.deepEqual(created.info.config.subjects, ['kpx.delta.>']);
    assert.equal(created.info.config.storage, 'file');
    assert.equal(created.info.config.discard, 'old');
    assert.equal(created.info.config.max_msgs_per_subject, 100);
    assert.equal(created.info.config.duplicate_window, 120_000_000_000);

    const again = await ensureDeltaStream(client.jsm, { historyPerSubject: 100, maxAgeMs: 0 });
    assert.equal(again.action, EnsureAction.Unchanged);

    const updated = await ensureDeltaStream(client.jsm, {
      historyPerSubject: 5,
      maxAgeMs: 3_600_000,
      duplicateWindowMs: 60_000,
    });
    assert.equal(updated.action, EnsureAction.Updated);
    const info = await client.jsm.streams.info(DeltaStream);
    assert.equal(info.config.max_msgs_per_subject, 5);
    assert.equal(info.config.max_age, 3_600_000_000_000);
    assert.equal(info.config.duplicate_window, 60_000_000_000);
  });

  it('publishes and reads one node in order with the kpx and trace headers', async () => {
    await ensureDeltaStream(client.jsm, { historyPerSubject: 100, maxAgeMs: 0 });
    const node = 'worker-1.example.com';
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const seqs: number[] = [];
    for (let generation = 1; generation <= 4; generation++) {
      const { seq, duplicate } = await publishDelta(client.js, makeDelta(node, generation * 10), {
        traceHeaders: { traceparent, tracestate: 'kpx=1' },
      });
      assert.equal(duplicate, false);
      seqs.push(seq);
    }
    await publishDelta(client.js, makeDelta('other-node', 1));

    const records = await collect(readDeltas(client.js, node));
    assert.deepEqual(
      records.map((r) => r.delta.generation),
      [10, 20, 30, 40],
    );
    assert.deepEqual(
      records.map((r) => r.seq),
      seqs,
    );
    const first = records[0];
    assert.ok(first !== undefined);
    assert.deepEqual(first.delta, makeDelta(node, 10));
    assert.equal(first.headers[Header.Node], node);
    assert.equal(first.headers[Header.Generation], '10');
    assert.equal(first.headers[Header.PrevGeneration], '9');
    assert.equal(first.headers[Header.Digest], 'digest-10');
    assert.equal(first.headers[Header.IpFamily], 'IPv4');
    assert.equal(first.headers[Header.TraceParent], traceparent);
    assert.equal(first.headers[Header.TraceState], 'kpx=1');
    assert.equal(first.headers[Header.MsgId], `${node}:IPv4:10`);

    const last = await lastDelta(client.js, node);
    assert.equal(last?.delta.generation, 40);
    assert.equal(last?.seq, seqs[3]);
    assert.equal(last?.headers[Header.TraceParent], traceparent);
    assert.equal(await lastDelta(client.js, 'never-published'), undefined);
    assert.deepEqual(await collect(readDeltas(client.js, 'never-published')), []);
    // Stopping early also ends the consumer; none is left behind on the server.
    for await (const record of readDeltas(client.js, node)) {
      assert.equal(record.delta.generation, 10);
      break;
    }
    assert.equal((await client.jsm.streams.info(DeltaStream)).state.consumer_count, 0);
  });

  it('stores a republished delta (same msg id) once', async () => {
    const node = 'dedupe-node';
    const delta = makeDelta(node, 7);
    const first = await publishDelta(client.js, delta);
    const before = (await client.jsm.streams.info(DeltaStream)).state.messages;
    const second = await publishDelta(client.js, delta);
    assert.equal(second.duplicate, true);
    assert.equal(second.seq, first.seq);
    assert.equal((await client.jsm.streams.info(DeltaStream)).state.messages, before);
    // The other family of the same generation is a different delta.
    const v6 = await publishDelta(client.js, makeDelta(node, 7, { ipFamily: 'IPv6' }));
    assert.equal(v6.duplicate, false);
    assert.deepEqual(
      (await collect(readDeltas(client.js, node))).map((r) => [r.delta.generation, r.delta.ipFamily]),
      [
        [7, 'IPv4'],
        [7, 'IPv6'],
      ],
    );
    assert.deepEqual(
      (await collect(readDeltas(client.js, node, { ipFamily: 'IPv6' }))).map((r) => r.seq),
      [v6.seq],
    );
  });

  it('keeps only historyPerSubject deltas per node', async () => {
    await ensureDeltaStream(client.jsm, { historyPerSubject: 5, maxAgeMs: 0 });
    for (let generation = 1; generation <= 12; generation++)
      await publishDelta(client.js, makeDelta('history-node', generation));
    await publishDelta(client.js, makeDelta('history-other', 1));
    const kept = await collect(readDeltas(client.js, 'history-node'));
    assert.deepEqual(
      kept.map((r) => r.delta.generation),
      [8, 9, 10, 11, 12],
    );
    assert.equal((await collect(readDeltas(client.js, 'history-other'))).length, 1);
    const info = await client.jsm.streams.info(DeltaStream, { subjects_filter: deltaSubject('history-node') });
    assert.equal(info.state.subjects?.[deltaSubject('history-node')], 5);
    await ensureDeltaStream(client.jsm, { historyPerSubject: 100, maxAgeMs: 0 });
  });

  it('reads from a generation (scan) or a stream sequence, skipping older deltas', async () => {
    const node = 'replay-node';
    const seqs = new Map<number, number>();
    for (let generation = 101; generation <= 110; generation++) {
      seqs.set(generation, (await publishDelta(client.js, makeDelta(node, generation))).seq);
      await publishDelta(client.js, makeDelta('noise-node', generation));
    }
    const fromGen = await collect(readDeltas(client.js, node, { fromGeneration: 106 }));
    assert.deepEqual(
      fromGen.map((r) => r.delta.generation),
      [107, 108, 109, 110],
    );
    const fromSeq = await collect(readDeltas(client.js, node, { startSeq: seqs.get(108) }));
    assert.deepEqual(
      fromSeq.map((r) => r.delta.generation),
      [108, 109, 110],
    );
    // Both: the sequence positions the consumer, the generation still filters.
    const both = await collect(readDeltas(client.js, node, { startSeq: seqs.get(103), fromGeneration: 108 }));
    assert.deepEqual(
      both.map((r) => r.delta.generation),
      [109, 110],
    );
    assert.deepEqual(await collect(readDeltas(client.js, node, { fromGeneration: 110 })), []);
  });

  it('follows new deltas until aborted', async () => {
    const node = 'follow-node';
    await publishDelta(client.js, makeDelta(node, 1));
    const abort = new AbortController();
    const seen: number[] = [];
    const reader = (async () => {
      for await (const record of readDeltas(client.js, node, { follow: true, signal: abort.signal })) {
        seen.push(record.delta.generation);
        if (seen.length === 3) abort.abort();
      }
    })();
    await publishDelta(client.js, makeDelta(node, 2));
    await publishDelta(client.js, makeDelta(node, 3));
    await reader;
    assert.deepEqual(seen, [1, 2, 3]);
  });

  it('refuses a delta above max_payload with a typed error and keeps the connection usable', async () => {
    const maxPayload = client.nc.info?.max_payload;
    assert.equal(maxPayload, 1024 * 1024);
    const upserts = Array.from({ length: 3000 }, (_, i) => chainObject(`KUBE-SVC-BIG${i}`, 4));
    const big = makeDelta('big-node', 1, { upserts });
    const size = Delta.encode(big).finish().length;
    assert.ok(size > 1024 * 1024, `test delta is only ${size} bytes`);
    await assert.rejects(publishDelta(client.js, big), (error: unknown) => {
      assert.ok(error instanceof PayloadTooLargeError);
      assert.equal(error.maxPayload, 1024 * 1024);
      assert.ok(error.size > size);
      return true;
    });
    // A delta whose payload alone fits but whose headers push it over is refused too.
    await assert.rejects(
      publishDelta(client.js, makeDelta('big-node', 2), {
        maxPayload: Delta.encode(makeDelta('big-node', 2)).finish().length + 10,
      }),
      PayloadTooLargeError,
    );
    assert.equal(client.nc.isClosed(), false);
    assert.equal((await publishDelta(client.js, makeDelta('big-node', 3))).duplicate, false);
    assert.equal(await lastDelta(client.js, 'big-node').then((r) => r?.delta.generation), 3);
  });

  it('keeps deltas across a crash (SIGKILL) and restart of the server', async () => {
    const node = 'durable-node';
    for (let generation = 1; generation <= 3; generation++) await publishDelta(client.js, makeDelta(node, generation));
    const pid = server.pid;
    await server.kill9();
    await server.restart();
    assert.notEqual(server.pid, pid);
    await client.nc.close();
    client = await connectTo(server.url);
    assert.deepEqual(
      (await collect(readDeltas(client.js, node))).map((r) => r.delta.generation),
      [1, 2, 3],
    );
  });

  it('reports messages that are not deltas of the node with their seq instead of throwing (issue #12)', async () => {
    const node = 'corrupt-node';
    const subject = deltaSubject(node);
    await publishDelta(client.js, makeDelta(node, 1));
    const garbage = await client.js.publish(subject, new Uint8Array(28).fill(0xff));
    const whole = Delta.encode(makeDelta(node, 2)).finish();
    const truncated = await client.js.publish(subject, whole.subarray(0, whole.length - 7));
    const foreign = await client.js.publish(subject, Delta.encode(makeDelta('other-node', 2)).finish());
    const lyingHeader = await client.js.publish(subject, whole, {
      headers: headersOf({ [Header.Node]: 'other-node' }),
    });
    await publishDelta(client.js, makeDelta(node, 2));
    const messages = [];
    for await (const m of readDeltaMessages(client.js, node)) messages.push(m);
    assert.deepEqual(
      messages.map((m) => (m.ok ? `delta ${m.record.delta.generation}` : `${m.rejected.reason} @${m.rejected.seq}`)),
      [
        'delta 1',
        `decode @${garbage.seq}`,
        `decode @${truncated.seq}`,
        `foreign_node @${foreign.seq}`,
        `foreign_node @${lyingHeader.seq}`,
        'delta 2',
      ],
    );
    const rejected: RejectedMessage[] = [];
    const records = await collect(readDeltas(client.js, node, { onRejected: (r) => rejected.push(r) }));
    assert.deepEqual(
      records.map((r) => r.delta.generation),
      [1, 2],
    );
    assert.deepEqual(
      rejected.map((r) => r.reason),
      [RejectReason.Decode, RejectReason.Decode, RejectReason.ForeignNode, RejectReason.ForeignNode],
    );
    assert.match(rejected[0]!.detail, new RegExp(`^seq ${garbage.seq}: not a valid kpx.v1.Delta \\(28 bytes\\)`));
    // The newest message is garbage: lastDelta gives the newest delta of the node.
    const tail = await client.js.publish(subject, new Uint8Array([1, 2, 3]));
    assert.equal((await lastDelta(client.js, node))?.delta.generation, 2);
    assert.equal(await lastDeltaSeq(client.js, node), tail.seq, 'the seq of the last message, whatever it holds');
    assert.equal(await lastDeltaSeq(client.js, 'never-published'), 0);
  });

  it('publishes at a measurable rate', async (t) => {
    const count = 2000;
    const started = performance.now();
    for (let generation = 1; generation <= count; generation++)
      await publishDelta(client.js, makeDelta('rate-node', generation));
    const seconds = (performance.now() - started) / 1000;
    const readStarted = performance.now();
    const read = await collect(readDeltas(client.js, 'rate-node'));
    const readSeconds = (performance.now() - readStarted) / 1000;
    assert.equal(read.length, 100);
    t.diagnostic(
      `publishDelta (awaited one by one, ~${Delta.encode(makeDelta('rate-node', 1)).finish().length} B): ${Math.round(count / seconds)}/s`,
    );
    t.diagnostic(`readDeltas: ${read.length} deltas in ${(readSeconds * 1000).toFixed(1)} ms`);
  });
});
