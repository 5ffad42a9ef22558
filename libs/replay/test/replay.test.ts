// replayTo and replaySteps against a real nats-server: a snapshot plus deltas whose digests chain as the
// controller's do, interleaved with another node's deltas; and histories replay must refuse.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Delta, RuleKind, type ObjectRef, type RuleObject } from '@kpx/proto';
import { RuleState } from '@kpx/ruleset';
import { ensureDeltaStream, ensureSnapshotStore, publishDelta, putSnapshot } from '@kpx/transport';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { OutsideRetentionError, ReplayError, replaySteps, replayTo } from '../src/index.js';

const chain = (name: string, ...rules: string[]): RuleObject => ({
  kind: RuleKind.IptablesChain,
  key: `nat/${name}`,
  payload: { $case: 'iptablesChain', value: { table: 'nat', name, rules } },
});
const ref = (o: RuleObject): ObjectRef => ({ kind: o.kind, key: o.key });

/** A node's history as the controller writes it: the state kept alongside, every delta announcing its digest. */
class History {
  readonly state: RuleState;
  readonly digests = new Map<number, string>();

  constructor(
    private readonly js: JetStreamClient,
    readonly node: string,
    objects: RuleObject[],
    readonly generation: number,
  ) {
    this.state = RuleState.from(objects, generation);
    this.digests.set(generation, this.state.digest);
  }

  async snapshot(digest = this.state.digest): Promise<void> {
    await putSnapshot(this.js, {
      node: this.node,
      mode: 'iptables',
      ipFamily: 'IPv4',
      generation: this.state.generation,
      objects: [...this.state.objects.values()].map((o) => o.wire),
      digest,
    });
  }

  async delta(
    generation: number,
    upserts: RuleObject[],
    deletes: ObjectRef[],
    override: Partial<Delta> = {},
  ): Promise<void> {
    const prevGeneration = this.state.generation;
    this.state.apply({ generation, prevGeneration, upserts, deletes, digest: '' });
    this.digests.set(generation, this.state.digest);
    await publishDelta(this.js, {
      node: this.node,
      generation,
      prevGeneration,
      upserts,
      deletes,
      digest: this.state.digest,
      cause: [
        { kind: 'EndpointSlice', namespace: 'ns', name: `web-${generation}`, resourceVersion: String(generation) },
      ],
      triggerTime: undefined,
      mode: 'iptables',
      ipFamily: 'IPv4',
      snapshot: false,
      ...override,
    });
  }
}

describe('replay from JetStream', { timeout: 60_000 }, () => {
  let server: NatsServer;
  let nc: Awaited<ReturnType<typeof connect>>;
  let js: JetStreamClient;
  let a: History;

  before(async () => {
    server = await startNatsServer({ jetstream: true });
    nc = await connect({ servers: server.url });
    js = jetstream(nc);
    await ensureDeltaStream(await jetstreamManager(nc), { historyPerSubject: 100, maxAgeMs: 0 });
    await ensureSnapshotStore(js);
    const base = [
      chain('KUBE-SERVICES', '-j KUBE-SVC-A', '-j KUBE-SVC-B'),
      chain('KUBE-SVC-A', '-j KUBE-SEP-A1'),
      chain('KUBE-SVC-B', '-j KUBE-SEP-B1'),
      chain('KUBE-SEP-A1', '-j DNAT'),
      chain('KUBE-SEP-B1', '-j DNAT'),
    ];
    a = new History(js, 'node-a', base, 1);
    const other = new History(js, 'node-b', base, 1);
    await a.snapshot();
    await other.snapshot();
    // Generations 2..7 of the cluster; node-a changes at 2, 3, 5, 6, 7 (not at 4), node-b at each.
    for (const g of [2, 3, 4, 5, 6, 7]) {
      if (g !== 4)
        await a.delta(
          g,
          [chain('KUBE-SVC-A', `-j KUBE-SEP-A${g}`), chain(`KUBE-SEP-A${g}`, '-j DNAT')],
          [ref(chain(`KUBE-SEP-A${g === 5 ? 3 : g === 2 ? 1 : g - 1}`))],
        );
      await other.delta(g, [chain('KUBE-SVC-B', `-j KUBE-SEP-B${g}`)], []);
    }
  });

  after(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('rebuilds the newest state: generation, digest and objects of the controller', async () => {
    const r = await replayTo(js, { node: 'node-a', family: 'IPv4' });
    assert.equal(r.generation, 7);
    assert.equal(r.deltasApplied, 5);
    assert.equal(r.snapshotGeneration, 1);
    assert.equal(r.digest, a.digests.get(7));
    assert.deepEqual(r.state.sortedObjects(), a.state.sortedObjects());
  });

  it('rebuilds every past generation; one that did not change the node gives the state before it', async () => {
    for (const [g, digest] of a.digests) {
      const r = await replayTo(js, { node: 'node-a', family: 'IPv4', to: g });
      assert.equal(r.generation, g);
      assert.equal(r.digest, digest, `generation ${g}`);
    }
    const at4 = await replayTo(js, { node: 'node-a', family: 'IPv4', to: 4 });
    assert.equal(at4.generation, 3);
    assert.equal(at4.digest, a.digests.get(3));
  });

  it('lists the steps between two generations with what each changed', async () => {
    const steps = replaySteps(js, { node: 'node-a', family: 'IPv4', from: 3, to: 6 });
    const seen = [];
    let r = await steps.next();
    while (!r.done) {
      seen.push(r.value);
      r = await steps.next();
    }
    assert.deepEqual(
      seen.map((s) => s.generation),
      [5, 6],
    );
    assert.deepEqual(
      seen.map((s) => s.digest),
      [a.digests.get(5), a.digests.get(6)],
    );
    const svc = seen[0]?.changes.find((c) => c.key === 'nat/KUBE-SVC-A');
    assert.ok(svc?.before && svc.after, 'KUBE-SVC-A was changed');
    assert.equal(
      seen[0]?.changes.find((c) => c.key === 'nat/KUBE-SEP-A3')?.after,
      undefined,
      'KUBE-SEP-A3 was deleted',
    );
    assert.equal(r.value.generation, 6);
    assert.equal(r.value.digest, a.digests.get(6));
  });

  it('refuses a delta that does not reach the digest it announces', async () => {
    const bad = new History(js, 'node-c', [chain('KUBE-SVC-C', '-j KUBE-SEP-C1')], 1);
    await bad.snapshot();
    await bad.delta(2, [chain('KUBE-SVC-C', '-j KUBE-SEP-C2')], []);
    await bad.delta(3, [chain('KUBE-SVC-C', '-j KUBE-SEP-C3')], [], { digest: 'f'.repeat(64) });
    await assert.rejects(
      replayTo(js, { node: 'node-c', family: 'IPv4' }),
      (err: Error) =>
        err instanceof ReplayError &&
        /delta 3 of node node-c IPv4 reaches digest [0-9a-f]{64}, not the announced f{64}/.test(err.message),
    );
    const at2 = await replayTo(js, { node: 'node-c', family: 'IPv4', to: 2 });
    assert.equal(at2.digest, bad.digests.get(2));
  });

  it('refuses a snapshot whose objects do not reach its digest', async () => {
    const bad = new History(js, 'node-d', [chain('KUBE-SVC-D', '-j KUBE-SEP-D1')], 1);
    await bad.snapshot('0'.repeat(64));
    await assert.rejects(
      replayTo(js, { node: 'node-d', family: 'IPv4' }),
      (err: Error) => err instanceof ReplayError && /does not reach its own digest/.test(err.message),
    );
  });

  it('says so when deltas between the snapshot and the next retained one are missing', async () => {
    const gap = new History(js, 'node-e', [chain('KUBE-SVC-E', '-j KUBE-SEP-E1')], 1);
    await gap.snapshot();
    await gap.delta(3, [chain('KUBE-SVC-E', '-j KUBE-SEP-E3')], [], { prevGeneration: 2 });
    await assert.rejects(
      replayTo(js, { node: 'node-e', family: 'IPv4' }),
      (err: Error) => err instanceof OutsideRetentionError && /between generations 1 and 2/.test(err.message),
    );
  });

  it('skips foreign, old, undecodable and stray messages of the subject and counts them (issue #12)', async () => {
    const h = new History(js, 'node-f', [chain('KUBE-SVC-F', '-j KUBE-SEP-F1')], 1);
    await h.snapshot();
    await h.delta(2, [chain('KUBE-SVC-F', '-j KUBE-SEP-F2')], []);
    await h.delta(3, [chain('KUBE-SVC-F', '-j KUBE-SEP-F3')], []);
    const subject = 'kpx.delta.node-f';
    const raw = (d: Partial<Delta>): Uint8Array =>
      Delta.encode({
        node: 'node-f',
        generation: 0,
        prevGeneration: 0,
        upserts: [],
        deletes: [],
        digest: '',
        cause: [],
        mode: 'iptables',
        ipFamily: 'IPv4',
        snapshot: false,
        triggerTime: undefined,
        ...d,
      }).finish();
    await js.publish(subject, new Uint8Array(28).fill(0xab));
    await js.publish(
      subject,
      raw({ node: 'node-z', generation: 4, prevGeneration: 3, upserts: [chain('KUBE-SVC-F', '-j KUBE-SEP-Z')] }),
    );
    await js.publish(
      subject,
      raw({
        generation: 2,
        prevGeneration: 1,
        upserts: [chain('KUBE-SVC-F', '-j KUBE-SEP-F2')],
        digest: h.digests.get(2)!,
      }),
    );
    await js.publish(
      subject,
      raw({ generation: 2 ** 50, prevGeneration: 2 ** 50 - 1, upserts: [chain('KUBE-SVC-F', '-j KUBE-SEP-HUGE')] }),
    );
    await h.delta(4, [chain('KUBE-SVC-F', '-j KUBE-SEP-F4')], []);
    const whole = raw({ generation: 5, prevGeneration: 4, upserts: [chain('KUBE-SVC-F', '-j KUBE-SEP-F5')] });
    await js.publish(subject, whole.subarray(0, whole.length - 5));
    const skipped: string[] = [];
    const r = await replayTo(js, { node: 'node-f', family: 'IPv4', onSkipped: (m) => skipped.push(m.reason) });
    assert.equal(r.generation, 4);
    assert.equal(r.digest, h.digests.get(4));
    assert.equal(r.deltasApplied, 3);
    assert.equal(r.skipped, 5);
    assert.deepEqual(skipped, ['decode', 'foreign_node', 'old', 'gap', 'decode']);
    // A stray after the last delta, and an older target: not "no longer retained".
    await js.publish(subject, raw({ generation: 9, prevGeneration: 8 }));
    const newest = await replayTo(js, { node: 'node-f', family: 'IPv4' });
    assert.equal(newest.generation, 4);
    assert.equal(newest.skipped, 6);
    const at3 = await replayTo(js, { node: 'node-f', family: 'IPv4', to: 3 });
    assert.equal(at3.digest, h.digests.get(3));
    const steps = replaySteps(js, { node: 'node-f', family: 'IPv4', from: 1 });
    const seen: number[] = [];
    let step = await steps.next();
    while (!step.done) {
      seen.push(step.value.generation);
      step = await steps.next();
    }
    assert.deepEqual(seen, [2, 3, 4]);
    assert.equal(step.value.digest, h.digests.get(4));
  });

  it('skips a delta that misses its digest when asked to (the executor), and undoes it', async () => {
    const h = new History(js, 'node-g', [chain('KUBE-SVC-G', '-j KUBE-SEP-G1')], 1);
    await h.snapshot();
    await h.delta(2, [chain('KUBE-SVC-G', '-j KUBE-SEP-G2')], []);
    await js.publish(
      'kpx.delta.node-g',
      Delta.encode({
        node: 'node-g',
        generation: 3,
        prevGeneration: 2,
        upserts: [chain('KUBE-SVC-G', '-j X')],
        deletes: [],
        digest: 'f'.repeat(64),
        cause: [],
        mode: 'iptables',
        ipFamily: 'IPv4',
        snapshot: false,
        triggerTime: undefined,
      }).finish(),
    );
    await assert.rejects(replayTo(js, { node: 'node-g', family: 'IPv4' }), ReplayError);
    const r = await replayTo(js, { node: 'node-g', family: 'IPv4', badDigest: 'skip' });
    assert.equal(r.generation, 2);
    assert.equal(r.digest, h.digests.get(2));
    assert.equal(r.skipped, 1);
  });
});
