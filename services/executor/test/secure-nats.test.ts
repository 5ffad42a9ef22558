// Issue #15: least-privilege NATS users, verified against a real nats-server started with the authorization block
// `kpx nats-config` prints (natsServerAuthConfig). The controller publishes and signs with its credentials; a real
// dry-run executor with node n1's credentials converges and follows; n1's credentials can follow their own subject
// and build its replay, but get a permission violation from the server for another node's subject (core subscribe,
// filtered consumer, direct get), another node's inbox and any publish of a delta; an operator can replay and read
// the audit log but publishes nothing. A delta signed with an unknown key, published into n1's subject with the
// controller's credentials, is rejected by the executor and n1 stays at the controller's digest.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { headers } from '@nats-io/nats-core';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Delta } from '@kpx/proto';
import { defaultKubeProxyConfig } from '@kpx/model';
import { ObjectKind, runController, type RunningController } from '@kpx/controller';
import { replayTo } from '@kpx/replay';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import {
  deltaSigningInput,
  Header,
  inboxPrefix,
  lastDelta,
  natsConnectionOptions,
  NatsRole,
  natsServerAuthConfig,
  newNkeyUser,
  readAudit,
  readDeltas,
  signerFromPem,
  verifierFromPem,
  type NatsAuth,
} from '@kpx/transport';
import { MemoryBackend, runExecutor, type RunningExecutor } from '../src/index.js';
import { PushSource, node as nodeObject, service, slice, waitFor } from './harness.js';

const N1 = 'n1';
const keys = generateKeyPairSync('ed25519');
const signingPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const verifier = verifierFromPem(keys.publicKey.export({ type: 'spki', format: 'pem' }).toString());

let dir: string;
let nats: NatsServer;
let creds: Record<'controller' | 'operator' | 'n1' | 'n2', NatsAuth>;
let controller: RunningController;
let executor: RunningExecutor;
const source = new PushSource([
  { kind: ObjectKind.Node, object: nodeObject },
  { kind: ObjectKind.Service, object: service },
  { kind: ObjectKind.EndpointSlice, object: slice(0) },
]);

const desired = (): { generation: number; digest: string } | undefined => {
  const st = controller.pipeline.tracker.status().find((n) => n.node === N1 && n.ipFamily === 'IPv4');
  return st ? { generation: st.desiredGeneration, digest: st.desiredDigest } : undefined;
};
const atDesired = (): boolean => {
  const st = executor.executor.status()[0];
  const want = desired();
  return st !== undefined && want !== undefined && st.generation === want.generation && st.digest === want.digest;
};

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kpx-secure-nats-'));
  const users = { controller: newNkeyUser(), operator: newNkeyUser(), n1: newNkeyUser(), n2: newNkeyUser() };
  creds = {} as typeof creds;
  for (const [name, u] of Object.entries(users)) {
    const file = path.join(dir, `${name}.nk`);
    await writeFile(file, `${u.seed}\n`, { mode: 0o600 });
    creds[name as keyof typeof creds] = { credsFile: file };
  }
  const config = natsServerAuthConfig([
    { role: NatsRole.Controller, nkey: users.controller.publicKey },
    { role: NatsRole.Operator, nkey: users.operator.publicKey },
    { role: NatsRole.Node, node: 'n1', nkey: users.n1.publicKey },
    { role: NatsRole.Node, node: 'n2', nkey: users.n2.publicKey },
  ]);
  nats = await startNatsServer({ extraConfig: config });
  controller = await runController({
    source,
    sourceName: 'test',
    natsUrl: nats.url,
    grpcListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    config: { ...defaultKubeProxyConfig(), minSyncPeriodMs: 0 },
    logLevel: 'silent',
    families: ['IPv4'],
    natsAuth: creds.controller,
    signer: signerFromPem(signingPem),
    tracer: trace.getTracer('test'),
  });
  await waitFor(() => (desired()?.generation ?? 0) > 0, 'the controller to publish n1 with its credentials');
  executor = await runExecutor({
    node: N1,
    natsUrl: nats.url,
    controller: controller.grpcAddress,
    createBackend: () => new MemoryBackend(),
    families: ['IPv4'],
    healthzListen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    driftCheckMs: 0,
    logLevel: 'silent',
    tracer: trace.getTracer('test'),
    natsAuth: creds.n1,
    verifier,
  });
});

after(async () => {
  await executor?.stop();
  await controller?.stop();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function connectAs(
  who: keyof typeof creds,
  role: NatsRole,
  node?: string,
): Promise<{ nc: NatsConnection; js: JetStreamClient }> {
  const nc = await connect({
    servers: nats.url,
    inboxPrefix: inboxPrefix(role, node),
    ...(await natsConnectionOptions(creds[who])),
  });
  return { nc, js: jetstream(nc, { timeout: 3000 }) };
}

/** Rejects with a permission violation (the server's -ERR, surfaced by nats.js) within the JetStream timeout. */
async function violation(what: string, p: Promise<unknown>): Promise<void> {
  await assert.rejects(
    p,
    (err: Error) => {
      const cause = (err as { cause?: unknown }).cause;
      const text = `${err.name} ${err.message} ${cause instanceof Error ? cause.message : ''}`;
      assert.match(text, /permission/i, `${what}: ${text}`);
      return true;
    },
    what,
  );
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const rawDelta = (generation: number, prev: number, digest: string): Uint8Array =>
  Delta.encode({
    node: N1,
    generation,
    prevGeneration: prev,
    upserts: [],
    deletes: [],
    digest,
    cause: [],
    triggerTime: undefined,
    mode: 'iptables',
    ipFamily: 'IPv4',
    snapshot: false,
  }).finish();

test(
  'the executor converges and follows with node credentials; the controller publishes with its own',
  { timeout: 30_000 },
  async () => {
    await waitFor(() => atDesired(), 'n1 at the controller state');
    source.upsert(ObjectKind.EndpointSlice, slice(1));
    const g = desired()!.generation;
    await waitFor(() => desired()!.generation > g || atDesired(), 'a change');
    await waitFor(() => atDesired(), 'n1 to follow the change');
    assert.doesNotMatch(nats.logTail(), /Violation/, 'neither the controller nor the executor was refused anything');
  },
);

test(
  "a node's credentials: its own subject and replay, nothing of another node's, no publish",
  { timeout: 60_000 },
  async () => {
    const { nc, js } = await connectAs('n1', NatsRole.Node, N1);
    try {
      // Its own: follow (a filtered consumer), the last message (direct get), a replay (snapshots + deltas).
      assert.ok((await drain(readDeltas(js, N1, { verifier }))).length > 0);
      assert.ok(await lastDelta(js, N1));
      const r = await replayTo(js, { node: N1, family: 'IPv4', verifier });
      assert.equal(r.digest, desired()!.digest);
      // Another node's subject, by every way in.
      const sub = nc.subscribe('kpx.delta.n2');
      const closed = await sub.closed;
      assert.match(String(closed), /permission/i, 'core subscribe to kpx.delta.n2');
      const inbox = nc.subscribe(`${inboxPrefix(NatsRole.Node, 'n2')}.>`);
      assert.match(String(await inbox.closed), /permission/i, "subscribe to n2's inbox");
      await violation('a consumer filtered to kpx.delta.n2', drain(readDeltas(js, 'n2')));
      await violation('a direct get of kpx.delta.n2', lastDelta(js, 'n2'));
      // A hand-made create request whose subject names n1's filter but whose body asks for n2's, or for the whole
      // stream: the server refuses the mismatch.
      for (const filter of ['kpx.delta.n2', undefined]) {
        const body = {
          stream_name: 'KPX_DELTAS',
          config: {
            name: 'evil',
            ack_policy: 'none',
            deliver_policy: 'all',
            ...(filter ? { filter_subject: filter } : {}),
          },
        };
        const res = await nc.request('$JS.API.CONSUMER.CREATE.KPX_DELTAS.evil.kpx.delta.n1', JSON.stringify(body), {
          timeout: 3000,
        });
        const answer = res.json<{ error?: { description: string } }>();
        assert.match(
          answer.error?.description ?? 'created',
          /filter/i,
          `a body filtered to ${filter ?? 'nothing'}: ${JSON.stringify(answer)}`,
        );
      }
      // No publish: not a delta on its own subject, not on another's, not an audit record.
      const d = desired()!;
      await violation(
        'publish a delta on kpx.delta.n1',
        js.publish('kpx.delta.n1', rawDelta(d.generation + 1, d.generation, d.digest)),
      );
      await violation('publish on kpx.delta.n2', js.publish('kpx.delta.n2', new Uint8Array(1)));
      await violation('publish an audit record', js.publish('kpx.audit.gen', new Uint8Array(1)));
    } finally {
      await nc.close();
    }
    assert.ok(atDesired(), 'n1 untouched');
  },
);

test('an operator replays and reads the audit log, and publishes nothing', { timeout: 60_000 }, async () => {
  const { nc, js } = await connectAs('operator', NatsRole.Operator);
  try {
    const r = await replayTo(js, { node: N1, family: 'IPv4', verifier });
    assert.equal(r.digest, desired()!.digest);
    assert.ok((await drain(readAudit(js))).length > 0, 'audit records');
    await violation('operator publishes a delta', js.publish('kpx.delta.n1', new Uint8Array(1)));
    await violation('operator publishes an audit record', js.publish('kpx.audit.gen', new Uint8Array(1)));
  } finally {
    await nc.close();
  }
});

test(
  "a delta signed with an unknown key, published with the controller's credentials, is not applied",
  { timeout: 30_000 },
  async () => {
    const { nc, js } = await connectAs('controller', NatsRole.Controller);
    try {
      await waitFor(() => atDesired(), 'n1 at the controller state');
      const d = desired()!;
      const data = rawDelta(d.generation + 1, d.generation, d.digest);
      const other = signerFromPem(
        generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      );
      const h = headers();
      h.set(Header.Node, N1);
      h.set(Header.Generation, String(d.generation + 1));
      h.set(Header.KeyId, other.keyId);
      h.set(Header.Signature, other.sign(deltaSigningInput(N1, String(d.generation + 1), data)));
      const seqBefore = executor.executor.status()[0]!.resyncs;
      await js.publish('kpx.delta.n1', data, { headers: h });
      await waitFor(
        () => executor.executor.status()[0]!.resyncs > seqBefore,
        'the rejection to cause its one resync',
        5_000,
      );
      await waitFor(() => atDesired(), 'n1 back at the controller state', 5_000);
      assert.equal(executor.executor.status()[0]!.generation, d.generation, 'the forged generation was not applied');
      const metrics = await (await fetch(`${executor.metricsUrl}/metrics`)).text();
      assert.match(metrics, /kpx_executor_rejected_deltas_total\{reason="signature"\} 1/);
    } finally {
      await nc.close();
    }
  },
);
