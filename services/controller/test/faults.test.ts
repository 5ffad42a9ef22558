// The pipeline under publish faults (in memory): nothing compiled is lost, a node's head advances only when the
// sink acknowledged its delta, every delta chains to what was really published, a generation is never reused,
// and status says "pending" while a node's desired state is not published.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { IPFamily, parseCidr, readManifestDir, type KubeObject } from '@kpx/model';
import { ExamplesDir, waitFor, webSlice } from './fixtures.js';
import { defaultIptablesOptions } from '@kpx/compiler';
import { RuleState } from '@kpx/ruleset';
import { Delta, type NodeRuleSet } from '@kpx/proto';
import {
  ControllerPipeline,
  MemoryGenerationStore,
  type GenerationSummary,
  type PublishOutcome,
} from '../src/index.js';

const silent = { info: () => {}, warn: () => {}, error: () => {} };

/** A sink that fails while `fail` says so, recording what it stored. */
class FlakySink {
  readonly stored: Delta[] = [];
  readonly attempts: Delta[] = [];
  fail: (d: Delta) => boolean = () => false;
  /** Answers a publish as a duplicate of another delta (the generation was taken). */
  taken: (d: Delta) => boolean = () => false;
  publish(d: Delta): Promise<PublishOutcome> {
    this.attempts.push(d);
    if (this.fail(d)) return Promise.reject(new Error('nats: timeout'));
    if (this.taken(d)) return Promise.resolve({ duplicate: { sameDelta: false } });
    // A retry of a delta already stored is a duplicate of itself (the server drops it).
    const same = this.stored.find(
      (s) => s.node === d.node && s.ipFamily === d.ipFamily && s.generation === d.generation,
    );
    if (same)
      return Promise.resolve({
        duplicate: { sameDelta: Buffer.from(Delta.encode(same).finish()).equals(Delta.encode(d).finish()) },
      });
    this.stored.push(d);
    return Promise.resolve({});
  }
}

function makePipeline(
  opts: {
    generations?: MemoryGenerationStore;
    snapshots?: { put(s: NodeRuleSet): Promise<void> };
    audit?: { append(o: GenerationSummary): Promise<void> };
  } = {},
) {
  const sink = new FlakySink();
  const families = new Map([
    [IPFamily.IPv4, { ...defaultIptablesOptions(IPFamily.IPv4), clusterCIDRs: [parseCidr('10.244.0.0/16')!] }],
    [IPFamily.IPv6, defaultIptablesOptions(IPFamily.IPv6)],
  ]);
  const generations = opts.generations ?? new MemoryGenerationStore();
  const p = new ControllerPipeline({
    families,
    sink,
    generations,
    ...(opts.snapshots ? { snapshots: opts.snapshots } : {}),
    ...(opts.audit ? { audit: opts.audit } : {}),
    minSyncPeriodMs: 0,
    retry: { initialMs: 10, maxMs: 50 },
    logger: silent,
    tracer: trace.getTracer('test'),
  });
  return { p, sink, generations };
}

async function feed(p: ControllerPipeline): Promise<void> {
  for (const object of (await readManifestDir(ExamplesDir)).map((m) => m.object)) {
    if (object.kind === 'Service' || object.kind === 'EndpointSlice' || object.kind === 'Node')
      p.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: Date.now() });
  }
  p.onSynced();
  await waitFor(() => p.generation > 0);
  await p.settle();
}

const event = (p: ControllerPipeline, object: KubeObject): void =>
  p.onEvent({ kind: 'EndpointSlice', type: 'upsert', object, observedAt: Date.now() });

/** Replays a node's stored deltas on the state it started from, checking each chains and reaches its digest. */
function replay(start: NodeRuleSet, stored: readonly Delta[]): RuleState {
  const state = RuleState.from(start.objects, start.generation);
  for (const d of stored) {
    if (d.node !== start.node || d.ipFamily !== start.ipFamily || d.generation <= start.generation) continue;
    assert.equal(d.snapshot, false, 'no snapshot needed after an outage');
    state.apply(d); // throws on a broken chain or a digest not reached
  }
  return state;
}

test('NATS down during a change: the sync is retried without another event, status says pending, and every delta chains', async () => {
  const { p, sink } = makePipeline();
  await feed(p);
  const nodes = ['node-a', 'node-b', 'node-c'];
  const starts = new Map<string, NodeRuleSet>();
  for (const n of nodes) starts.set(n, (await p.snapshot(n, IPFamily.IPv4))!);
  const before = p.generation;

  sink.fail = () => true;
  event(p, webSlice(['10.244.1.20', '10.244.2.20'], '50'));
  await waitFor(() => p.failingSyncs >= 2);
  const during = p.tracker.status().filter((s) => s.ipFamily === IPFamily.IPv4);
  assert.ok(
    during.every((s) => s.pending && !s.inSync),
    'every changed node shows pending, not in sync',
  );
  assert.ok(
    during.every((s) => s.publishedGeneration === before),
    'nothing published past the outage',
  );
  // A second change while down is composed with the first (the built delta waits to be retried verbatim).
  event(p, webSlice(['10.244.1.20', '10.244.2.21'], '51'));
  await waitFor(() => p.failingSyncs >= 4);
  const attemptsDown = sink.attempts.length;

  sink.fail = () => false;
  await waitFor(() => p.outbox.owed().length === 0); // no further event: the retry publishes
  await p.settle();
  assert.ok(sink.attempts.length > attemptsDown);
  for (const n of nodes) {
    const state = replay(starts.get(n)!, sink.stored);
    assert.equal(
      state.digest,
      (await p.snapshot(n, IPFamily.IPv4))?.digest,
      `${n} reaches the desired state from what was stored`,
    );
  }
  const status = p.tracker.status();
  assert.ok(status.every((s) => !s.pending && s.publishedDigest === s.desiredDigest));
  // Generations strictly increase per node; the retried delta kept its generation (msg id).
  for (const n of nodes) {
    const gens = sink.stored.filter((d) => d.node === n && d.ipFamily === IPFamily.IPv4).map((d) => d.generation);
    assert.deepEqual(
      gens,
      [...gens].sort((a, b) => a - b),
    );
    assert.equal(new Set(gens).size, gens.length);
  }
  const retried = sink.attempts.filter(
    (d) => d.generation === before + 1 && d.node === 'node-a' && d.ipFamily === IPFamily.IPv4,
  );
  assert.ok(retried.length > 1, 'the first built delta was retried');
  assert.ok(
    retried.every((d) => Buffer.from(Delta.encode(d).finish()).equals(Delta.encode(retried[0]!).finish())),
    'verbatim',
  );
  await p.stop();
});

test('one node failing does not hold back the others; its later changes chain from its retried delta', async () => {
  const { p, sink } = makePipeline();
  await feed(p);
  const startB = (await p.snapshot('node-b', IPFamily.IPv4))!;
  let failures = 0;
  sink.fail = (d) => d.node === 'node-b' && failures++ < 3;
  event(p, webSlice(['10.244.1.30'], '60'));
  await waitFor(() => sink.stored.some((d) => d.node === 'node-a' && d.generation > startB.generation));
  await p.settle();
  event(p, webSlice(['10.244.1.31'], '61'));
  await waitFor(() => p.outbox.owed().length === 0);
  await p.settle();
  const b = sink.stored.filter(
    (d) => d.node === 'node-b' && d.ipFamily === IPFamily.IPv4 && d.generation > startB.generation,
  );
  assert.equal(b.length, 2);
  assert.equal(b[1]!.prevGeneration, b[0]!.generation, 'chains from the delta that was retried');
  assert.equal(replay(startB, sink.stored).digest, (await p.snapshot('node-b', IPFamily.IPv4))?.digest);
  await p.stop();
});

test('a generation another delta already holds is never reused: the counter is fenced and the change rebuilt above it', async () => {
  const generations = new MemoryGenerationStore();
  const { p, sink } = makePipeline({ generations });
  await feed(p);
  const start = (await p.snapshot('node-a', IPFamily.IPv4))!;
  const taken = p.generation + 1;
  // The store's counter went backwards: the next generation is one the subject already has.
  sink.taken = (d) => d.generation === taken && d.node === 'node-a';
  event(p, webSlice(['10.244.1.40'], '70'));
  await waitFor(() => p.outbox.owed().length === 0);
  await p.settle();
  const a = sink.stored.filter(
    (d) => d.node === 'node-a' && d.ipFamily === IPFamily.IPv4 && d.generation > start.generation,
  );
  assert.equal(a.length, 1);
  assert.ok(a[0]!.generation > taken, `rebuilt at ${a[0]!.generation}, above the taken ${taken}`);
  assert.equal(a[0]!.snapshot, true, 'the head is unknown after a clash: the node gets its whole state');
  assert.ok((await generations.next()) > a[0]!.generation);
  await p.stop();
});

test('a snapshot that cannot be stored holds back only its delta; the audit log gets every generation, late or not', async () => {
  let snapshotFailures = 2;
  let auditFailures = 3;
  const audited: number[] = [];
  const { p, sink } = makePipeline({
    snapshots: {
      put: () => (snapshotFailures-- > 0 ? Promise.reject(new Error('object store: timeout')) : Promise.resolve()),
    },
    audit: {
      append: (o) =>
        auditFailures-- > 0
          ? Promise.reject(new Error('nats: timeout'))
          : (audited.push(o.generation), Promise.resolve()),
    },
  });
  await feed(p);
  await waitFor(() => p.outbox.owed().length === 0 && audited.length > 0);
  await p.settle();
  const gens = [...new Set(sink.stored.map((d) => d.generation))].sort((a, b) => a - b);
  assert.ok(gens.length >= 2, 'the nodes whose snapshot failed went out in a later generation');
  assert.deepEqual(audited, gens, 'every generation with a delta is in the audit log, in order');
  assert.ok(
    sink.stored.every((d) => d.snapshot),
    'first deltas are snapshot deltas',
  );
  await p.stop();
});

test('status: stale after the bound without acks, drift capped with its total', () => {
  const { p } = makePipeline();
  const t = p.tracker;
  t.compiled({ node: 'n', family: 'IPv4', mode: 'iptables', digest: 'd1', at: 0 });
  t.built({ node: 'n', family: 'IPv4', mode: 'iptables', generation: 5, digest: 'd1', triggerTime: undefined });
  t.published({
    node: 'n',
    family: 'IPv4',
    mode: 'iptables',
    generation: 5,
    digest: 'd1',
    triggerTime: undefined,
    at: 0,
  });
  const drift = Array.from({ length: 5000 }, (_, i) => `nat/KUBE-SVC-${i}: rules differ ${'x'.repeat(2000)}`);
  t.ack(
    {
      node: 'n',
      ipFamily: 'IPv4',
      mode: 'iptables',
      generation: 5,
      digest: 'd1',
      applyDurationSeconds: 0,
      error: '',
      actualDigest: 'd1',
      drift,
      driftTotal: 5000,
      rejectedMessages: 2,
      lastRejection: 'decode',
    },
    1000,
  );
  const [fresh] = t.status('n', 2000);
  assert.equal(fresh?.inSync, true);
  assert.equal(fresh?.lastDrift.length, 100);
  assert.equal(fresh?.lastDriftTotal, 5000);
  assert.ok(fresh.lastDrift.every((l) => l.length <= 1001));
  assert.equal(fresh?.rejectedMessages, 2);
  const [later] = t.status('n', 1000 + 61_000);
  assert.equal(later?.stale, true);
  assert.equal(later?.inSync, false, 'a silent executor is not in sync');
  // A digest the controller never built at that generation asks for a resync; the delta's own digest does not.
  assert.equal(
    t.ack({
      node: 'n',
      ipFamily: 'IPv4',
      mode: 'iptables',
      generation: 5,
      digest: 'other',
      applyDurationSeconds: 0,
      error: '',
      actualDigest: '',
      drift: [],
      driftTotal: 0,
      rejectedMessages: 0,
      lastRejection: '',
    }).response.resyncRequired,
    true,
  );
  assert.equal(
    t.ack({
      node: 'n',
      ipFamily: 'IPv4',
      mode: 'iptables',
      generation: 9,
      digest: 'd1',
      applyDurationSeconds: 0,
      error: '',
      actualDigest: '',
      drift: [],
      driftTotal: 0,
      rejectedMessages: 0,
      lastRejection: '',
    }).response.resyncRequired,
    true,
  );
});

test('an audit log that cannot be appended to keeps the controller unpublished since the record was owed', async () => {
  let failing = true;
  const { p } = makePipeline({
    audit: { append: () => (failing ? Promise.reject(new Error('nats: timeout')) : Promise.resolve()) },
  });
  const before = Date.now();
  for (const object of (await readManifestDir(ExamplesDir)).map((m) => m.object)) {
    if (object.kind === 'Service' || object.kind === 'EndpointSlice' || object.kind === 'Node')
      p.onEvent({ kind: object.kind, type: 'upsert', object, observedAt: Date.now() });
  }
  p.onSynced();
  await waitFor(() => p.failingSyncs >= 3 && p.outbox.owed().length === 0);
  const since = p.unpublishedSince();
  assert.ok(since !== undefined && since >= before && since < Date.now() - 20, `owed since ${since}, not now`);
  failing = false;
  await waitFor(() => p.unpublishedSince() === undefined);
  await p.stop();
});
