// Issue #15 item 4: whoever can publish on a node's subject cannot make the executor touch anything outside kpx's
// namespace. A raw NATS client publishes deltas that chain correctly and announce the right digest, but hold a
// chain outside KUBE-* or a rule carrying an injected COMMIT: each is refused as a whole (nothing applied, the
// node's state and digest unchanged), counted as forbidden_object, logged, reported in an ack, and the node does
// not thrash (one resync at most, like any other rejected message); a real change afterwards still arrives.
// Real nats-server, real controller (fed by an in-process source), dry-run executor.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Delta, RuleKind, type RuleObject } from '@kpx/proto';
import { RuleState, hashed } from '@kpx/ruleset';
import type { CallOptions, FetchedSnapshot } from '@kpx/transport';
import { MemoryBackend } from '../src/index.js';
import { Node, RecordingClient, newExecutor, setUp, waitFor, type Setup, type TestExecutor } from './harness.js';

let s: Setup;
before(async () => {
  s = await setUp();
});
after(() => s.close());

const chain = (name: string, rules: string[]): RuleObject => ({
  kind: RuleKind.IptablesChain,
  key: `nat/${name}`,
  payload: { $case: 'iptablesChain', value: { table: 'nat', name, rules } },
});

/** A delta on top of the controller's current state that chains and reaches the digest it announces. */
async function forged(upserts: RuleObject[]): Promise<{ bytes: Uint8Array; digest: string }> {
  const snap = (await s.controller.pipeline.snapshot(Node, 'IPv4'))!;
  const state = RuleState.from(snap.objects, snap.generation);
  for (const u of upserts) state.upsert(hashed(u));
  const generation = snap.generation + 1;
  const d = {
    node: Node,
    generation,
    prevGeneration: snap.generation,
    upserts,
    deletes: [],
    digest: state.digest,
    cause: [],
    triggerTime: undefined,
    mode: 'iptables',
    ipFamily: 'IPv4',
    snapshot: false,
  };
  // The forgery is otherwise perfect: the state reaches the announced digest.
  RuleState.from(snap.objects, snap.generation).apply(d);
  return { bytes: Delta.encode(d).finish(), digest: state.digest };
}

const atDesired = (e: TestExecutor): boolean => {
  const st = e.executor.status()[0];
  const want = s.desired();
  return st !== undefined && want !== undefined && st.generation === want.generation && st.digest === want.digest;
};

test(
  "a delta with an object outside kpx's namespace is refused as a whole; the node stays as it was",
  { timeout: 60_000 },
  async (t) => {
    const backend = new MemoryBackend();
    const e = newExecutor(s, backend);
    const digests: string[] = [];
    e.executor.onChange(() => digests.push(e.executor.status()[0]!.digest));
    try {
      await e.executor.start();
      await waitFor(() => atDesired(e), 'the node at the controller state');
      const cases = [
        {
          name: 'a chain outside KUBE-*',
          upserts: [chain('KUBE-SVC-HARMLESS', ['-j KUBE-MARK-MASQ']), chain('EVIL-INPUT', ['-j ACCEPT'])],
          log: /EVIL-INPUT.*outside kpx's chains/,
        },
        {
          name: 'an injected COMMIT line',
          upserts: [chain('KUBE-SVC-INJECT', ['-j ACCEPT\nCOMMIT\n*filter\n-I INPUT 1 -j ACCEPT'])],
          log: /KUBE-SVC-INJECT.*line break/,
        },
      ];
      let n = 0;
      const resyncsBefore = e.executor.status()[0]!.resyncs;
      for (const c of cases) {
        const before = { ...e.executor.status()[0]! };
        const applies = backend.applies;
        const f = await forged(c.upserts);
        await s.js.publish(`kpx.delta.${Node}`, f.bytes);
        n++;
        await waitFor(
          async () => (await e.rejected())['forbidden_object'] === n,
          `${c.name} to be rejected as forbidden_object`,
          5_000,
        );
        await waitFor(() => atDesired(e), `the controller's state after ${c.name}`, 5_000);
        assert.equal(backend.applies, applies, `${c.name}: nothing applied`);
        const after = e.executor.status()[0]!;
        assert.equal(after.generation, before.generation);
        assert.equal(after.digest, before.digest);
        assert.notEqual(after.digest, f.digest, 'the forged state was never reached');
        assert.ok(
          e.logs.some(
            (l) =>
              l.msg === 'rejected a message of the node subject' &&
              l.reason === 'forbidden_object' &&
              c.log.test(String(l['detail'])),
          ),
          `${c.name} logged`,
        );
        t.diagnostic(`${c.name}: refused`);
      }
      assert.ok(!digests.some((d) => d !== s.desired()!.digest), "no state but the controller's was ever held");
      const resyncs = e.executor.status()[0]!.resyncs - resyncsBefore;
      assert.ok(resyncs <= 2, `no thrashing: ${resyncs} resyncs`);
      await waitFor(
        () => e.client.acks.some((a) => a.rejectedMessages > 0 && a.lastRejection.startsWith('forbidden_object:')),
        'the rejection reported in an ack',
        5_000,
      );
      // A real change still arrives as a delta.
      const applies = backend.applies;
      await s.change();
      await waitFor(() => atDesired(e), 'the change after the forged deltas');
      assert.equal(backend.applies, applies + 1);
    } finally {
      await e.close();
    }
  },
);

/** A controller client whose snapshots carry one more object, outside kpx's namespace, with a matching digest. */
class PoisonedClient extends RecordingClient {
  poisoned = true;
  override async snapshot(
    node: string,
    mode: string,
    ipFamily: string,
    options?: CallOptions,
  ): Promise<FetchedSnapshot | undefined> {
    const snap = await super.snapshot(node, mode, ipFamily, options);
    if (!snap || !this.poisoned) return snap;
    const objects = [...snap.objects, chain('DOCKER-USER', ['-j ACCEPT'])];
    return { ...snap, objects, digest: RuleState.from(objects, snap.generation).digest };
  }
}

test(
  "a snapshot with an object outside kpx's namespace is never restored; a sound one later is",
  { timeout: 60_000 },
  async () => {
    const backend = new MemoryBackend();
    const client = new PoisonedClient(s.grpcListen);
    const e = newExecutor(s, backend, { controller: client });
    try {
      const started = e.executor.start();
      await waitFor(
        async () => ((await e.rejected())['forbidden_object'] ?? 0) >= 2,
        'the poisoned snapshot refused (and retried with backoff)',
        10_000,
      );
      assert.equal(backend.restores, 0, 'nothing restored');
      assert.equal(e.executor.status()[0]!.generation, 0);
      assert.ok(
        e.logs.some((l) => l.msg === 'resync failed; retrying' && /DOCKER-USER/.test(JSON.stringify(l['err']))),
      );
      client.poisoned = false;
      await started;
      await waitFor(() => atDesired(e), 'the node converged from a sound snapshot');
      assert.equal(backend.restores, 1);
    } finally {
      client.close();
      await e.close();
    }
  },
);
