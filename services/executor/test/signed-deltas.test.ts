// Issue #15: signed deltas and snapshots, end to end. The controller signs with key A; a dry-run executor verifies
// with A and B. A well-formed delta that chains and reaches its digest, published into the node's subject but
// signed with an unknown key (or unsigned, or signed by A over other bytes), is not applied: rejected with reason
// `signature`, counted, and the node stays at the controller's digest. Correctly signed deltas are applied as
// deltas; after the controller switches to key B (rotation: both listed) they still are. Replay verifies too.
// Real nats-server, real controller (fed by an in-process source), dry-run executor.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, test } from 'node:test';
import { headers } from '@nats-io/nats-core';
import { Delta } from '@kpx/proto';
import { replayTo } from '@kpx/replay';
import {
  deltaSigningInput,
  getSnapshot,
  Header,
  SignatureError,
  signerFromPem,
  verifierFromPem,
  type Signer,
} from '@kpx/transport';
import { MemoryBackend } from '../src/index.js';
import { Node, newExecutor, setUp, waitFor, type Setup, type TestExecutor } from './harness.js';

const pair = (): { priv: string; pub: string } => {
  const k = generateKeyPairSync('ed25519');
  return {
    priv: k.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    pub: k.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
};
const A = pair();
const B = pair();
const Unknown = pair();

let s: Setup;
before(async () => {
  s = await setUp({ signer: signerFromPem(A.priv) });
});
after(() => s.close());

const subject = `kpx.delta.${Node}`;

const atDesired = (e: TestExecutor): boolean => {
  const st = e.executor.status()[0];
  const want = s.desired();
  return st !== undefined && want !== undefined && st.generation === want.generation && st.digest === want.digest;
};

/** A delta that chains on the controller's state and reaches its digest (it changes nothing): only its signature is wrong. */
function forged(): { data: Uint8Array; generation: string } {
  const want = s.desired()!;
  const d: Delta = {
    node: Node,
    generation: want.generation + 1,
    prevGeneration: want.generation,
    upserts: [],
    deletes: [],
    digest: want.digest,
    cause: [],
    triggerTime: undefined,
    mode: 'iptables',
    ipFamily: 'IPv4',
    snapshot: false,
  };
  return { data: Delta.encode(d).finish(), generation: String(d.generation) };
}

async function publishSigned(
  data: Uint8Array,
  generation: string,
  signer: Signer | undefined,
  signedData = data,
): Promise<void> {
  const h = headers();
  h.set(Header.Node, Node);
  h.set(Header.Generation, generation);
  if (signer) {
    h.set(Header.KeyId, signer.keyId);
    h.set(Header.Signature, signer.sign(deltaSigningInput(Node, generation, signedData)));
  }
  await s.js.publish(subject, data, { headers: h });
}

test(
  'a delta not signed by a listed key is not applied; signed ones are, across a key rotation',
  { timeout: 90_000 },
  async (t) => {
    const backend = new MemoryBackend();
    const e = newExecutor(s, backend, { verifier: verifierFromPem(A.pub + B.pub) });
    try {
      await e.executor.start();
      await waitFor(() => atDesired(e), 'the node at the controller state (snapshot signed by A)');
      let applies = backend.applies;
      await s.change();
      await waitFor(() => atDesired(e), 'a change signed by A');
      assert.equal(backend.applies, applies + 1, 'applied as a delta');

      const cases: { name: string; publish: () => Promise<void> }[] = [
        {
          name: 'signed with an unknown key',
          publish: () =>
            (({ data, generation }) => publishSigned(data, generation, signerFromPem(Unknown.priv)))(forged()),
        },
        {
          name: 'unsigned',
          publish: () => (({ data, generation }) => publishSigned(data, generation, undefined))(forged()),
        },
        {
          name: "A's signature of other bytes",
          publish: () =>
            (({ data, generation }) =>
              publishSigned(data, generation, signerFromPem(A.priv), new Uint8Array([1, 2, 3])))(forged()),
        },
      ];
      const seen: string[] = [];
      e.executor.onChange(() => seen.push(`${e.executor.status()[0]!.generation}/${e.executor.status()[0]!.digest}`));
      let rejected = 0;
      for (const c of cases) {
        const before = s.desired()!;
        await c.publish();
        rejected++;
        await waitFor(
          async () => (await e.rejected())['signature'] === rejected,
          `the delta ${c.name} to be rejected as signature`,
          5_000,
        );
        await waitFor(() => atDesired(e), `the controller's state after a delta ${c.name}`, 5_000);
        assert.deepEqual(s.desired(), before);
        t.diagnostic(`${c.name}: rejected (signature), node at generation ${e.executor.status()[0]!.generation}`);
      }
      // Never applied: the node never held the forged generation.
      for (const st of seen) assert.ok(!st.startsWith(`${s.desired()!.generation + 1}/`), `forged state ${st} applied`);
      assert.ok(
        e.logs.some(
          (l) =>
            l.msg === 'rejected a message of the node subject' &&
            l.reason === 'signature' &&
            /unknown key/.test(String(l['detail'])),
        ),
      );
      await waitFor(
        () => e.client.acks.some((a) => /^signature: /.test(a.lastRejection)),
        'the rejection reported in an ack',
        5_000,
      );

      // Rotation: the controller now signs with B, which the node lists next to A.
      await s.controller.stop();
      await s.restartController({ signer: signerFromPem(B.priv) });
      await s.change();
      await waitFor(() => atDesired(e), 'a change signed by B');
      applies = backend.applies;
      await s.change();
      await waitFor(() => atDesired(e), 'a second change signed by B');
      assert.equal(backend.applies, applies + 1, 'a B-signed delta applied as a delta');
      assert.equal((await e.rejected())['signature'], rejected, 'no B-signed delta rejected');
    } finally {
      await e.close();
    }
  },
);

test('replay verifies deltas and snapshots', { timeout: 60_000 }, async () => {
  const want = s.desired()!;
  const both = await replayTo(s.js, { node: Node, family: 'IPv4', verifier: verifierFromPem(A.pub + B.pub) });
  assert.equal(both.digest, want.digest);
  // An earlier generation, rebuilt from the verified snapshot and deltas before it.
  const first = await replayTo(s.js, {
    node: Node,
    family: 'IPv4',
    verifier: verifierFromPem(A.pub + B.pub),
    to: want.generation - 3,
    onSkipped: () => undefined,
  });
  assert.ok(first.generation <= want.generation - 3);
  // Only A: B's deltas are skipped, never applied (replay stops at what A signed, or refuses a B-signed snapshot).
  const skipped: string[] = [];
  try {
    const onlyA = await replayTo(s.js, {
      node: Node,
      family: 'IPv4',
      verifier: verifierFromPem(A.pub),
      onSkipped: (m) => skipped.push(m.reason),
    });
    assert.notEqual(onlyA.generation, want.generation);
    assert.ok(skipped.includes('signature'));
  } catch (err) {
    assert.ok(err instanceof SignatureError, String(err));
  }
  await assert.rejects(getSnapshot(s.js, Node, 'IPv4', { verifier: verifierFromPem(Unknown.pub) }), SignatureError);
  assert.ok(await getSnapshot(s.js, Node, 'IPv4', { verifier: verifierFromPem(A.pub + B.pub) }));
});
