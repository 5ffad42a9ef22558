// Snapshots in the JetStream object store against a real nats-server: size, retention, restart.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodeRuleSet } from '@kpx/proto';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { Objm } from '@nats-io/obj';
import {
  deleteSnapshots,
  ensureSnapshotStore,
  getSnapshot,
  listSnapshots,
  putSnapshot,
  SnapshotBucket,
  SnapshotError,
  snapshotObjectName,
} from '../src/index.js';
import { bigRuleSet, connectTo, type Client } from './fixtures.js';

const Timeout = { timeout: 120_000 };

describe('snapshots', Timeout, () => {
  let storeDir: string;
  let server: NatsServer;
  let client: Client;

  before(async () => {
    storeDir = await mkdtemp(path.join(tmpdir(), 'kpx-snap-store-'));
    server = await startNatsServer({ jetstream: true, storeDir });
    client = await connectTo(server.url);
    await ensureSnapshotStore(client.js);
    await ensureSnapshotStore(client.js); // idempotent
  });

  after(async () => {
    await client?.nc.close();
    await server?.stop();
    if (storeDir !== undefined) await rm(storeDir, { recursive: true, force: true });
  });

  it('round-trips a ~5 MB rule set byte for byte, far above max_payload', async (t) => {
    const ruleSet = bigRuleSet('big-node.example.com', 42, 10_000);
    const encoded = NodeRuleSet.encode(ruleSet).finish();
    assert.ok(encoded.length > 4 * 1024 * 1024, `only ${encoded.length} bytes`);
    assert.ok(encoded.length > (client.nc.info?.max_payload ?? 0) * 4);

    const putStarted = performance.now();
    const info = await putSnapshot(client.js, ruleSet);
    const putMs = performance.now() - putStarted;
    assert.equal(info.size, encoded.length);
    assert.ok(info.chunks > 1);

    const getStarted = performance.now();
    const back = await getSnapshot(client.js, 'big-node.example.com', 'IPv4');
    const getMs = performance.now() - getStarted;
    assert.ok(back !== undefined);
    assert.deepEqual(Buffer.from(NodeRuleSet.encode(back).finish()), Buffer.from(encoded));
    // The stored bytes themselves (not just their decoding) are the encoding we put.
    const raw = await (await new Objm(client.js).open(SnapshotBucket)).getBlob(info.object);
    assert.ok(raw !== null);
    assert.ok(Buffer.from(raw).equals(Buffer.from(encoded)));
    // Only one family stored: no family needed.
    assert.equal((await getSnapshot(client.js, 'big-node.example.com'))?.generation, 42);
    t.diagnostic(
      `${(encoded.length / 1e6).toFixed(2)} MB in ${info.chunks} chunks: put ${putMs.toFixed(0)} ms, get ${getMs.toFixed(0)} ms`,
    );
  });

  it('keeps the latest and keepOlder older generations per node and family', async () => {
    const node = 'retain-node';
    for (const generation of [1, 2, 3, 4, 5])
      await putSnapshot(client.js, bigRuleSet(node, generation, 3), { keepOlder: 2 });
    assert.deepEqual(await listSnapshots(client.js, node), [
      { node, ipFamily: 'IPv4', generation: 5, latest: true },
      { node, ipFamily: 'IPv4', generation: 4, latest: false },
      { node, ipFamily: 'IPv4', generation: 3, latest: false },
    ]);
    assert.equal((await getSnapshot(client.js, node, 'IPv4'))?.generation, 5);
    assert.deepEqual(await getSnapshot(client.js, node, 'IPv4', { generation: 3 }), bigRuleSet(node, 3, 3));
    assert.equal(await getSnapshot(client.js, node, 'IPv4', { generation: 2 }), undefined);
    // Dropped generations are deleted from the bucket, not just forgotten.
    const os = await new Objm(client.js).open(SnapshotBucket);
    assert.equal((await os.info(snapshotObjectName(node, 'IPv4', 1)))?.deleted, true);
    assert.equal((await os.info(snapshotObjectName(node, 'IPv4', 3)))?.deleted, false);
    // An older generation put late does not become the latest.
    await putSnapshot(client.js, bigRuleSet(node, 6, 3), { keepOlder: 2 });
    await putSnapshot(client.js, bigRuleSet(node, 4, 4), { keepOlder: 2 });
    assert.equal((await getSnapshot(client.js, node, 'IPv4'))?.generation, 6);
    assert.equal((await getSnapshot(client.js, node, 'IPv4', { generation: 4 }))?.objects.length, 4);
  });

  it('keeps both generations when two writers put concurrently', async () => {
    const node = 'race-node';
    await Promise.all(
      [10, 11, 12, 13].map((generation) => putSnapshot(client.js, bigRuleSet(node, generation, 2), { keepOlder: 5 })),
    );
    assert.deepEqual(
      (await listSnapshots(client.js, node)).map((ref) => ref.generation),
      [13, 12, 11, 10],
    );
  });

  it('separates IP families and refuses to guess between them', async () => {
    const node = 'dual-node';
    assert.equal(await getSnapshot(client.js, node), undefined);
    await putSnapshot(client.js, bigRuleSet(node, 7, 2, 'IPv6'));
    assert.equal((await getSnapshot(client.js, node))?.ipFamily, 'IPv6');
    await putSnapshot(client.js, bigRuleSet(node, 8, 2, 'IPv4'));
    await assert.rejects(getSnapshot(client.js, node), SnapshotError);
    assert.equal((await getSnapshot(client.js, node, 'IPv6'))?.generation, 7);
    assert.equal((await getSnapshot(client.js, node, 'IPv4'))?.generation, 8);
    assert.deepEqual(
      (await listSnapshots(client.js, node)).map((ref) => `${ref.ipFamily}@${ref.generation}`),
      ['IPv4@8', 'IPv6@7'],
    );
    assert.equal(await deleteSnapshots(client.js, node), 2);
    assert.deepEqual(await listSnapshots(client.js, node), []);
    assert.equal(await getSnapshot(client.js, node, 'IPv4'), undefined);
  });

  it('survives a server restart on the same store directory', async () => {
    const ruleSet = bigRuleSet('restart-node', 99, 2_000);
    await putSnapshot(client.js, ruleSet);
    const pid = server.pid;
    await server.restart();
    assert.notEqual(server.pid, pid);
    assert.equal(server.storeDir, storeDir);
    await client.nc.close();
    client = await connectTo(server.url);
    const back = await getSnapshot(client.js, 'restart-node', 'IPv4');
    assert.ok(back !== undefined);
    assert.ok(Buffer.from(NodeRuleSet.encode(back).finish()).equals(Buffer.from(NodeRuleSet.encode(ruleSet).finish())));
    assert.equal((await getSnapshot(client.js, 'big-node.example.com', 'IPv4'))?.objects.length, 10_000);
  });
});
