import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Server, ServerCredentials, credentials, status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import {
  AckRequest,
  Delta,
  IpFamily,
  NodeSyncClient,
  NodeSyncService,
  ProxyMode,
  RuleKind,
  SnapshotChunk,
  hasConsistentKind,
  kindOfPayloadCase,
} from '../src/index.js';
import type { AckResponse, NodeSyncServer, RuleObject, SnapshotRequest } from '../src/index.js';

function sampleObjects(): RuleObject[] {
  return [
    {
      kind: RuleKind.IptablesChain,
      key: 'nat/KUBE-SVC-ABC',
      payload: {
        $case: 'iptablesChain',
        value: {
          table: 'nat',
          name: 'KUBE-SVC-ABC',
          rules: [
            '-m comment --comment "default/web:http -> 10.0.1.5:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-ONE',
            '-m comment --comment "default/web:http -> 10.0.1.6:8080" -j KUBE-SEP-TWO',
          ],
        },
      },
    },
    {
      kind: RuleKind.IpvsService,
      key: 'TCP/10.96.0.10:53',
      payload: {
        $case: 'ipvsService',
        value: {
          protocol: 'TCP',
          address: '10.96.0.10',
          port: 53,
          scheduler: 'rr',
          flags: 0x1 | 0x2,
          timeoutSeconds: 10800,
          realServers: [
            { address: '10.0.1.5', port: 53, weight: 1 },
            { address: '10.0.1.6', port: 53, weight: 0 },
          ],
        },
      },
    },
    {
      kind: RuleKind.IpsetSet,
      key: 'KUBE-CLUSTER-IP',
      payload: {
        $case: 'ipsetSet',
        value: {
          name: 'KUBE-CLUSTER-IP',
          type: 'hash:ip,port',
          family: 'inet',
          comment: 'Kubernetes service cluster ip + port for masquerade purpose',
          hashSize: 0,
          maxElem: 0,
          portRange: '',
          entries: ['10.96.0.10,tcp:53', '10.96.0.10,udp:53'],
        },
      },
    },
    {
      kind: RuleKind.IpvsAddress,
      key: 'kube-ipvs0/10.96.0.10',
      payload: { $case: 'ipvsAddress', value: { interface: 'kube-ipvs0', address: '10.96.0.10' } },
    },
    {
      kind: RuleKind.NftMap,
      key: 'kube-proxy/service-ips',
      payload: {
        $case: 'nftMap',
        value: {
          family: 'ip',
          table: 'kube-proxy',
          name: 'service-ips',
          type: 'ipv4_addr . inet_proto . inet_service : verdict',
          flags: [],
          comment: 'ClusterIP, ExternalIP and LoadBalancer IP traffic',
          elements: ['10.96.0.10 . tcp . 53 : goto service-ULMVA6XW-kube-system/kube-dns/tcp/dns-tcp'],
        },
      },
    },
  ];
}

function sampleDelta(): Delta {
  return Delta.fromPartial({
    node: 'node-a',
    generation: 42,
    prevGeneration: 40,
    upserts: sampleObjects(),
    deletes: [{ kind: RuleKind.IptablesChain, key: 'nat/KUBE-SEP-OLD' }],
    digest: 'ab'.repeat(32),
    cause: [
      {
        kind: 'EndpointSlice',
        namespace: 'default',
        name: 'web-x7k2p',
        resourceVersion: '1234',
        triggerTime: { seconds: 1_700_000_000, nanos: 123_000_000 },
      },
    ],
    triggerTime: { seconds: 1_700_000_000, nanos: 123_000_000 },
    mode: ProxyMode.IPTables,
    ipFamily: IpFamily.IPv4,
  });
}

describe('Delta serialization', () => {
  it('round-trips through the binary encoding', () => {
    const delta = sampleDelta();
    const bytes = Delta.encode(delta).finish();
    assert.ok(bytes.length > 100);
    const decoded = Delta.decode(bytes);
    assert.deepEqual(decoded, delta);
    assert.equal(decoded.generation, 42);
    const first = decoded.upserts[0]?.payload;
    assert.equal(first?.$case, 'iptablesChain');
    if (first?.$case === 'iptablesChain') {
      assert.equal(first.value.rules.length, 2);
    }
    // Decoding is deterministic: encoding the decoded message gives the same bytes.
    assert.deepEqual(Delta.encode(decoded).finish(), bytes);
  });

  it('round-trips through JSON', () => {
    const delta = sampleDelta();
    const json = JSON.parse(JSON.stringify(Delta.toJSON(delta))) as unknown;
    const record = json as Record<string, unknown>;
    assert.equal(record['prevGeneration'], 40);
    assert.equal(record['triggerTime'], '2023-11-14T22:13:20.123Z');
    assert.deepEqual(Delta.fromJSON(json), delta);
  });

  it('keeps nanoseconds in binary but only milliseconds in JSON timestamps', () => {
    const delta = Delta.fromPartial({ triggerTime: { seconds: 1_700_000_000, nanos: 123_456_789 } });
    assert.deepEqual(Delta.decode(Delta.encode(delta).finish()).triggerTime, {
      seconds: 1_700_000_000,
      nanos: 123_456_789,
    });
    assert.deepEqual(Delta.fromJSON(Delta.toJSON(delta)).triggerTime, { seconds: 1_700_000_000, nanos: 123_000_000 });
  });

  it('keeps proto3 defaults out of the encoding', () => {
    assert.equal(Delta.encode(Delta.create()).finish().length, 0);
    assert.deepEqual(Delta.decode(new Uint8Array()), Delta.create());
    assert.equal(Delta.create().triggerTime, undefined);
  });

  it('rejects generations above 2^53 on decode instead of losing precision', () => {
    const bytes = Delta.encode(Delta.fromPartial({ generation: 2 ** 53 + 2 })).finish();
    assert.throws(() => Delta.decode(bytes), /MAX_SAFE_INTEGER/);
  });

  it('names a kind for every payload case', () => {
    for (const object of sampleObjects()) {
      assert.ok(hasConsistentKind(object), object.key);
    }
    assert.equal(hasConsistentKind({ kind: RuleKind.NftSet, key: 'x', payload: sampleObjects()[0]?.payload }), false);
    assert.equal(hasConsistentKind({ kind: RuleKind.IptablesChain, key: 'x' }), false);
    assert.equal(new Set(Object.values(kindOfPayloadCase)).size, Object.keys(RuleKind).length);
  });
});

describe('NodeSync over a real grpc-js server', { timeout: 10_000 }, () => {
  const received: AckRequest[] = [];
  const snapshot = sampleObjects();
  let server: Server;
  let client: NodeSyncClient;

  const impl: NodeSyncServer = {
    status: (_call, callback) => {
      callback(null, { generation: 45, nodes: [], standby: false, leaderIdentity: '', leaderEpoch: 0 });
    },
    ack: (call, callback) => {
      received.push(call.request);
      callback(null, { resyncRequired: call.request.digest !== 'ab'.repeat(32), latestGeneration: 45 });
    },
    getSnapshot: (call) => {
      const req: SnapshotRequest = call.request;
      if (req.node !== 'node-a') {
        // grpc-js turns an 'error' event on a server stream into the call's status.
        call.emit('error', Object.assign(new Error(`unknown node ${req.node}`), { code: status.NOT_FOUND }));
        return;
      }
      const size = req.maxObjectsPerChunk > 0 ? req.maxObjectsPerChunk : 100;
      const header = {
        node: req.node,
        mode: req.mode,
        ipFamily: req.ipFamily,
        generation: 42,
        digest: 'cd'.repeat(32),
      };
      let index = 0;
      for (let start = 0; start < snapshot.length || index === 0; start += size) {
        const objects = snapshot.slice(start, start + size);
        call.write(SnapshotChunk.fromPartial({ ...header, index, objects, last: start + size >= snapshot.length }));
        index += 1;
      }
      call.end();
    },
  };

  before(async () => {
    server = new Server();
    server.addService(NodeSyncService, impl);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => {
        if (err) reject(err);
        else resolve(bound);
      });
    });
    assert.ok(port > 0);
    client = new NodeSyncClient(`127.0.0.1:${port}`, credentials.createInsecure());
  });

  after(async () => {
    client.close();
    await new Promise<void>((resolve) => {
      server.tryShutdown(() => resolve());
    });
  });

  function ack(request: AckRequest): Promise<AckResponse> {
    return new Promise((resolve, reject) => {
      client.ack(request, (err, response) => {
        if (err) reject(err);
        else resolve(response);
      });
    });
  }

  async function snapshotChunks(request: SnapshotRequest): Promise<SnapshotChunk[]> {
    const chunks: SnapshotChunk[] = [];
    for await (const chunk of client.getSnapshot(request)) {
      chunks.push(chunk as SnapshotChunk);
    }
    return chunks;
  }

  it('acks', async () => {
    const request = AckRequest.fromPartial({
      node: 'node-a',
      generation: 42,
      digest: 'ab'.repeat(32),
      applyDurationSeconds: 0.0125,
      mode: ProxyMode.IPTables,
      ipFamily: IpFamily.IPv4,
      appliedTime: { seconds: 1_700_000_001, nanos: 5 },
    });
    assert.deepEqual(await ack(request), { resyncRequired: false, latestGeneration: 45 });
    assert.deepEqual(received.at(-1), request);

    const bad = await ack({ ...request, digest: 'ff', error: 'iptables-restore: exit status 1' });
    assert.deepEqual(bad, { resyncRequired: true, latestGeneration: 45 });
    assert.equal(received.at(-1)?.error, 'iptables-restore: exit status 1');
    assert.equal(received.length, 2);
  });

  it('streams a snapshot in chunks', async () => {
    const chunks = await snapshotChunks({
      node: 'node-a',
      mode: ProxyMode.IPVS,
      ipFamily: IpFamily.IPv4,
      generation: 0,
      maxObjectsPerChunk: 2,
    });
    assert.deepEqual(
      chunks.map((c) => [c.index, c.objects.length, c.last]),
      [
        [0, 2, false],
        [1, 2, false],
        [2, 1, true],
      ],
    );
    for (const chunk of chunks) {
      assert.equal(chunk.node, 'node-a');
      assert.equal(chunk.mode, 'ipvs');
      assert.equal(chunk.generation, 42);
      assert.equal(chunk.digest, 'cd'.repeat(32));
    }
    assert.deepEqual(
      chunks.flatMap((c) => c.objects),
      snapshot,
    );
  });

  it('uses the server chunk size when none is asked and reports NOT_FOUND', async () => {
    const all = await snapshotChunks({
      node: 'node-a',
      mode: 'iptables',
      ipFamily: 'IPv4',
      generation: 42,
      maxObjectsPerChunk: 0,
    });
    assert.equal(all.length, 1);
    assert.equal(all[0]?.last, true);
    assert.equal(all[0]?.objects.length, snapshot.length);

    await assert.rejects(
      snapshotChunks({ node: 'nope', mode: 'iptables', ipFamily: 'IPv4', generation: 0, maxObjectsPerChunk: 0 }),
      (err: unknown) => (err as ServiceError).code === status.NOT_FOUND,
    );
  });
});
