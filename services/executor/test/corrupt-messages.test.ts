// Issue #12: no message can wedge a node, and no message is waited for. A raw NATS client publishes into the node's
// subject what the controller never would: 28 bytes of garbage, a truncated protobuf, another node's delta, a
// delta that misses its digest, one that does not chain, a re-published old delta, and generation 2^50. Each is
// rejected (kpx_executor_rejected_deltas_total{reason}), reported in an ack, never half-applied (the node's digest
// is only ever one the controller published), and the node stays at or comes back to the controller's digest
// within seconds, without a restart; a real change published afterwards still reaches the node as a delta.
// Real nats-server, real controller (fed by an in-process source), dry-run executor.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Delta, RuleKind } from '@kpx/proto';
import { Header, readDeltas } from '@kpx/transport';
import { MemoryBackend, MaxAckDriftLines, type ReadBack } from '../src/index.js';
import type { RuleState } from '@kpx/ruleset';
import { Node, newExecutor, setUp, waitFor, type Setup, type TestExecutor } from './harness.js';

let s: Setup;
before(async () => {
  s = await setUp();
});
after(() => s.close());

const subject = `kpx.delta.${Node}`;

const delta = (d: Partial<Delta>): Uint8Array =>
  Delta.encode({
    node: Node,
    generation: 0,
    prevGeneration: 0,
    upserts: [],
    deletes: [],
    digest: '',
    cause: [],
    triggerTime: undefined,
    mode: 'iptables',
    ipFamily: 'IPv4',
    snapshot: false,
    ...d,
  }).finish();

const chain = (name: string): Delta['upserts'][number] => ({
  kind: RuleKind.IptablesChain,
  key: `nat/${name}`,
  payload: { $case: 'iptablesChain', value: { table: 'nat', name, rules: ['-j DROP'] } },
});

/** Digests of every delta the controller published on the subject (publishDelta sets the Kpx headers; raw publishes do not). */
async function controllerDigests(): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const r of readDeltas(s.js, Node)) if (r.headers[Header.Generation] !== undefined) out.add(r.delta.digest);
  return out;
}

const atDesired = (e: TestExecutor): boolean => {
  const st = e.executor.status()[0];
  const want = s.desired();
  return st !== undefined && want !== undefined && st.generation === want.generation && st.digest === want.digest;
};

test(
  'every bad message is rejected and counted, nothing is half-applied, and later changes still arrive',
  { timeout: 90_000 },
  async (t) => {
    const backend = new MemoryBackend();
    const e = newExecutor(s, backend);
    const seen: string[] = [];
    e.executor.onChange(() => seen.push(e.executor.status()[0]!.digest));
    try {
      await e.executor.start();
      await waitFor(() => atDesired(e), 'the node at the controller state');
      const cur = (): { generation: number; digest: string } => s.desired()!;
      const old = await (await s.js.jetstreamManager()).streams.getMessage('KPX_DELTAS', { last_by_subj: subject });
      const oldBytes = old!.data;
      await s.change();
      await waitFor(() => atDesired(e), 'the first change');
      const whole = delta({
        generation: cur().generation + 1,
        prevGeneration: cur().generation,
        upserts: [chain('KUBE-SVC-TRUNC')],
      });
      const cases: { name: string; reason: string; data: () => Uint8Array }[] = [
        { name: '28 bytes of garbage', reason: 'decode', data: () => new Uint8Array(28).fill(0xa5) },
        { name: 'a truncated protobuf', reason: 'decode', data: () => whole.subarray(0, whole.length - 9) },
        {
          name: 'a delta for another node',
          reason: 'foreign_node',
          data: () =>
            delta({
              node: 'n2',
              generation: cur().generation + 1,
              prevGeneration: cur().generation,
              digest: cur().digest,
            }),
        },
        {
          name: 'a wrong digest',
          reason: 'digest',
          data: () =>
            delta({
              generation: cur().generation + 1,
              prevGeneration: cur().generation,
              upserts: [chain('KUBE-SVC-EVIL')],
              digest: 'f'.repeat(64),
            }),
        },
        {
          name: 'a gap',
          reason: 'gap',
          data: () =>
            delta({
              generation: cur().generation + 7,
              prevGeneration: cur().generation + 6,
              upserts: [chain('KUBE-SVC-GAP')],
              digest: 'e'.repeat(64),
            }),
        },
        { name: 'a replayed old delta', reason: 'old', data: () => oldBytes },
        {
          name: 'generation 2^50',
          reason: 'gap',
          data: () =>
            delta({
              generation: 2 ** 50,
              prevGeneration: 2 ** 50 - 1,
              upserts: [chain('KUBE-SVC-HUGE')],
              digest: 'd'.repeat(64),
            }),
        },
      ];
      const expected: Record<string, number> = {};
      const resyncsBefore = e.executor.status()[0]!.resyncs;
      for (const c of cases) {
        const t0 = performance.now();
        await s.js.publish(subject, c.data());
        expected[c.reason] = (expected[c.reason] ?? 0) + 1;
        await waitFor(
          async () => (await e.rejected())[c.reason] === expected[c.reason],
          `${c.name} to be rejected as ${c.reason}`,
          5_000,
        );
        await waitFor(() => atDesired(e), `the controller's state after ${c.name}`, 5_000);
        t.diagnostic(
          `${c.name}: rejected (${c.reason}) and at the controller's digest after ${Math.round(performance.now() - t0)} ms`,
        );
      }
      assert.deepEqual(await e.rejected(), expected);
      const resyncs = e.executor.status()[0]!.resyncs - resyncsBefore;
      assert.ok(
        resyncs >= 1 && resyncs <= 3,
        `one resync for the first bad message, at most a held-back one or two after: ${resyncs}`,
      );

      // The controller heard of them: every rejection but the old delta, in acks, with the last reason.
      await waitFor(
        () => e.client.acks.reduce((n, a) => n + a.rejectedMessages, 0) === 6,
        'six rejections reported in acks',
        5_000,
      );
      const lastReported = e.client.acks.filter((a) => a.rejectedMessages > 0).at(-1)!;
      assert.match(lastReported.lastRejection, /^gap: delta 1125899906842624 continues generation 1125899906842623/);

      // A real change after the garbage still reaches the node, as a delta.
      const applies = backend.applies;
      await s.change();
      await waitFor(() => atDesired(e), 'the change after the garbage');
      assert.equal(backend.applies, applies + 1, 'applied as a delta');
      await waitFor(
        () => s.controller.pipeline.tracker.status().every((n) => n.inSync),
        'the controller to see n1 in sync',
      );

      // Never half-applied: every state the node held is one the controller published.
      const published = await controllerDigests();
      for (const d of seen) assert.ok(published.has(d), `digest ${d} was never published by the controller`);
    } finally {
      await e.close();
    }
  },
);

test(
  "a resync never waits for the generation a message named, and obeys the controller's answer",
  { timeout: 60_000 },
  async (t) => {
    const e = newExecutor(s);
    try {
      await e.executor.start();
      await waitFor(() => atDesired(e), 'the node at the controller state');
      // A well-formed delta that chains, reaches its digest (it changes nothing) and names generation 2^50: the
      // executor cannot tell it from a real one, but the controller refuses the ack of a generation it never
      // published; the node resyncs to the controller's newest state instead of waiting for a snapshot at 2^50.
      const want = s.desired()!;
      const t0 = performance.now();
      await s.js.publish(subject, delta({ generation: 2 ** 50, prevGeneration: want.generation, digest: want.digest }));
      await waitFor(() => e.client.acks.some((a) => a.generation === 2 ** 50), 'the ack of the forged delta', 5_000);
      await waitFor(() => atDesired(e), "the controller's generation again", 5_000);
      t.diagnostic(
        `back at the controller's generation ${want.generation} ${Math.round(performance.now() - t0)} ms after a delta named 2^50`,
      );
      assert.ok(
        e.logs.some(
          (l) =>
            l.msg === 'resyncing from a snapshot' &&
            /^the controller refused generation 1125899906842624/.test(l.reason ?? ''),
        ),
      );
      // Later deltas chain on the controller's generation again.
      await s.change();
      await waitFor(() => atDesired(e), 'the next change');
    } finally {
      await e.close();
    }
  },
);

test(
  'answers that keep asking for a resync: one resync per answer, no loop; heartbeats are answered too',
  { timeout: 60_000 },
  async () => {
    const e = newExecutor(s, new MemoryBackend(), { driftCheckMs: 100 });
    try {
      await e.executor.start();
      await waitFor(() => atDesired(e), 'the node at the controller state');
      const before = e.executor.status()[0]!.resyncs;
      // From now on every answer asks for a resync, including those to the drift check's heartbeats.
      e.client.forceResync = true;
      await waitFor(() => e.executor.status()[0]!.resyncs === before + 1, 'a heartbeat answer to be obeyed', 5_000);
      // The resync landed on the state the controller refused: it waits for the next delta instead of looping.
      const acks = e.client.acks.length;
      await waitFor(() => e.client.acks.length >= acks + 10, 'ten more heartbeats', 10_000);
      assert.equal(
        e.executor.status()[0]!.resyncs,
        before + 1,
        `no second resync onto the same refused state ${JSON.stringify(e.logs.filter((l) => Number(l.level) >= 30).map((l) => [l.msg, l.reason, l.generation]))}`,
      );
      assert.ok(
        e.logs.some(
          (l) => l.msg === 'the controller still refuses the state a resync gave; waiting for the next delta',
        ),
      );
      // A new delta is a new state: its refused ack gets one resync, then the guard again.
      await s.change();
      await waitFor(() => atDesired(e), 'the next change');
      await waitFor(
        () => e.executor.status()[0]!.resyncs === before + 2,
        'one resync for the new refused state',
        5_000,
      );
      const acks2 = e.client.acks.length;
      await waitFor(() => e.client.acks.length >= acks2 + 10, 'ten more heartbeats', 10_000);
      assert.equal(e.executor.status()[0]!.resyncs, before + 2);
      // Accepted again: the guard is forgotten.
      e.client.forceResync = false;
      const acks3 = e.client.acks.length;
      await waitFor(() => e.client.acks.length >= acks3 + 3, 'accepted heartbeats', 10_000);
      assert.equal(e.executor.status()[0]!.resyncs, before + 2);
    } finally {
      await e.close();
    }
  },
);

/** A dry-run backend whose next read-back finds `lines` differences. */
class DriftingBackend extends MemoryBackend {
  drift = 0;
  override readBack(state: RuleState): Promise<ReadBack> {
    if (this.drift === 0) return super.readBack(state);
    const lines = Array.from(
      { length: this.drift },
      (_, i) => `nat/KUBE-SVC-${String(i).padStart(6, '0')}: rules differ (${'x'.repeat(200)})`,
    );
    this.drift = 0;
    return Promise.resolve({ digest: '0'.repeat(64), drift: lines });
  }
}

test('an ack carries at most 100 drift lines and the total', { timeout: 30_000 }, async () => {
  const backend = new DriftingBackend();
  const e = newExecutor(s, backend);
  try {
    await e.executor.start();
    backend.drift = 50_000; // ~11 MB of drift text
    const found = await e.executor.checkDrift();
    assert.equal(found.length, 50_000);
    const ack = e.client.acks.at(-1)!;
    assert.equal(ack.drift.length, MaxAckDriftLines);
    assert.equal(ack.driftTotal, 50_000);
    assert.equal(ack.error, '');
  } finally {
    await e.close();
  }
});

test(
  'a burst of garbage: one resync at once, one held back, none more until a delta chains again',
  { timeout: 60_000 },
  async () => {
    const e = newExecutor(s, new MemoryBackend(), { messageResyncHoldMs: 300 });
    try {
      await e.executor.start();
      await waitFor(() => atDesired(e), 'the node at the controller state');
      const resyncs = (): number => e.executor.status()[0]!.resyncs;
      const before = resyncs();
      for (let i = 0; i < 20; i++) await s.js.publish(subject, new Uint8Array([0xff, i]));
      await waitFor(async () => (await e.rejected()).decode === 20, 'twenty rejections', 5_000);
      await waitFor(() => resyncs() === before + 2, 'the held-back resync', 5_000);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(resyncs(), before + 2, 'twenty bad messages: two resyncs');
      assert.ok(e.logs.some((l) => l.msg === 'resyncing from a snapshot' && / \(held back\)$/.test(l.reason ?? '')));
      // A delta chains: the next bad message resyncs at once again.
      await s.change();
      await waitFor(() => atDesired(e), 'the next change');
      await s.js.publish(subject, new Uint8Array([0xff]));
      await waitFor(() => resyncs() === before + 3, 'a resync at once', 2_000);
    } finally {
      await e.close();
    }
  },
);
