// The nats-server launcher of @kpx/testing: ports, restart, crash, cleanup of its own process and files.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { startNatsServer } from '@kpx/testing';
import { connectTo, processExists } from './fixtures.js';

describe('startNatsServer', { timeout: 60_000 }, () => {
  it('starts on its own port with JetStream, restarts on the same port, and cleans up', async () => {
    const a = await startNatsServer({ jetstream: true, maxPayload: 2 * 1024 * 1024 });
    const b = await startNatsServer({ jetstream: false });
    try {
      assert.notEqual(a.port, b.port);
      assert.match(a.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
      const client = await connectTo(a.url);
      assert.equal(client.nc.info?.max_payload, 2 * 1024 * 1024);
      assert.equal(client.nc.info?.jetstream, true);
      const account = await client.jsm.getAccountInfo();
      assert.equal(account.streams, 0);
      await client.nc.close();

      const port = a.port;
      const pid = a.pid;
      await a.restart();
      assert.equal(a.port, port);
      assert.notEqual(a.pid, pid);
      assert.equal(processExists(pid), false);

      await a.kill9();
      assert.equal(processExists(a.pid), false);
      await a.restart();
      assert.equal(processExists(a.pid), true);
      const again = await connectTo(a.url);
      await again.nc.close();
    } finally {
      await a.stop();
      await b.stop();
    }
    assert.equal(processExists(a.pid), false);
    assert.equal(processExists(b.pid), false);
    await assert.rejects(access(a.storeDir));
    assert.equal(b.storeDir, '');
  });
});
