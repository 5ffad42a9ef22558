// The NodeSync client against a NodeSync server written for each case: snapshots put together from their chunks
// (and refused when the chunks do not belong together), a node the controller does not know, status, failures in
// words, and calls given up when the caller stops.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type ServerWritableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  AckRequest,
  AckResponse,
  NodeSyncService,
  RuleObject,
  StatusResponse,
  type NodeSyncServer,
  type SnapshotChunk,
  type SnapshotRequest,
} from '@kpx/proto';
import { ControllerCallError, ControllerClient, StoppingError } from '../src/index.js';

const obj = (key: string): RuleObject => RuleObject.fromPartial({ kind: 'iptables.chain', key });
const chunk = (index: number, keys: string[], generation = 7): SnapshotChunk => ({
  node: 'n1',
  mode: 'iptables',
  ipFamily: 'IPv4',
  generation,
  digest: `d${generation}`,
  index,
  objects: keys.map(obj),
  last: false,
});

/** What the server answers GetSnapshot for each node. */
const snapshots: Record<string, (call: ServerWritableStream<SnapshotRequest, SnapshotChunk>) => void> = {
  n1: (call) => {
    call.write(chunk(0, ['nat/A', 'nat/B']));
    call.write({ ...chunk(1, ['nat/C']), last: true });
    call.end();
  },
  mixed: (call) => {
    call.write(chunk(0, ['nat/A']));
    call.write(chunk(1, ['nat/B'], 8));
    call.end();
  },
  gap: (call) => {
    call.write(chunk(0, ['nat/A']));
    call.write(chunk(2, ['nat/B']));
    call.end();
  },
  hang: () => undefined,
};

let server: Server;
let address: string;

before(async () => {
  server = new Server();
  const impl: NodeSyncServer = {
    ack: (call, cb) =>
      call.request.node === 'hang'
        ? undefined
        : cb(null, AckResponse.fromPartial({ resyncRequired: call.request.generation === 0 })),
    getSnapshot: (call) => {
      const answer = snapshots[call.request.node];
      if (answer) answer(call);
      else
        call.emit('error', {
          code: GrpcStatus.NOT_FOUND,
          details: `node ${call.request.node} unknown`,
        } as ServiceError);
    },
    status: (call, cb) => {
      if (call.request.node === 'denied')
        cb({ code: GrpcStatus.PERMISSION_DENIED, details: 'an executor may not ask for status' });
      else
        cb(
          null,
          StatusResponse.fromPartial({ generation: 9, nodes: [{ node: call.request.node || 'n1', ipFamily: 'IPv4' }] }),
        );
    },
  };
  server.addService(NodeSyncService, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});
after(() => server.forceShutdown());

test('a snapshot is its chunks put together; chunks of two generations or out of order are refused; an unknown node is undefined', async () => {
  const client = new ControllerClient(address);
  try {
    const snap = await client.snapshot('n1', 'iptables', 'IPv4');
    assert.deepEqual(
      { generation: snap?.generation, digest: snap?.digest, keys: snap?.objects.map((o) => o.key) },
      { generation: 7, digest: 'd7', keys: ['nat/A', 'nat/B', 'nat/C'] },
    );
    await assert.rejects(
      client.snapshot('mixed', 'iptables', 'IPv4'),
      /snapshot of mixed IPv4: chunk 1 out of order or from another generation/,
    );
    await assert.rejects(client.snapshot('gap', 'iptables', 'IPv4'), /snapshot of gap IPv4: chunk 2 out of order/);
    assert.equal(await client.snapshot('n9', 'iptables', 'IPv4'), undefined);
  } finally {
    client.close();
  }
});

test('ack and status answer; a refusal and an unreachable controller are ControllerCallErrors in words', async () => {
  const client = new ControllerClient(address);
  try {
    assert.equal(
      (await client.ack(AckRequest.fromPartial({ node: 'n1', mode: 'iptables', ipFamily: 'IPv4', generation: 0 })))
        .resyncRequired,
      true,
    );
    assert.deepEqual(
      (await client.status('n2')).nodes.map((n) => n.node),
      ['n2'],
    );
    const denied = await client.status('denied').catch((err: unknown) => err);
    assert.ok(denied instanceof ControllerCallError);
    assert.equal(denied.code, GrpcStatus.PERMISSION_DENIED);
    assert.equal(denied.message, `controller ${address} refused Status: an executor may not ask for status`);
  } finally {
    client.close();
  }
  const nowhere = new ControllerClient('127.0.0.1:1', { deadlineMs: 2_000 });
  try {
    const err = await nowhere.status().catch((e: unknown) => e);
    assert.ok(err instanceof ControllerCallError);
    assert.match(err.message, /^cannot reach controller 127\.0\.0\.1:1 \(Status\): /);
  } finally {
    nowhere.close();
  }
});

test('a call given up by its signal rejects with StoppingError, before it starts or while it waits', async () => {
  const client = new ControllerClient(address);
  try {
    await assert.rejects(client.snapshot('n1', 'iptables', 'IPv4', { signal: AbortSignal.abort() }), StoppingError);
    const ac = new AbortController();
    const waiting = client.snapshot('hang', 'iptables', 'IPv4', { signal: ac.signal });
    const acking = client.ack(
      AckRequest.fromPartial({ node: 'hang', mode: 'iptables', ipFamily: 'IPv4', generation: 1 }),
      { signal: ac.signal },
    );
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(waiting, { name: 'StoppingError', message: 'snapshot: the executor is stopping' });
    await assert.rejects(acking, { name: 'StoppingError', message: 'ack: the executor is stopping' });
  } finally {
    client.close();
  }
});
