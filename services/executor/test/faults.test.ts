// Executors under faults (issue #12): the controller down, NATS down, and SIGTERM at any moment — also during a
// startup that cannot converge. Real nats-server, real controller, dry-run backends; the SIGTERM cases run the
// real `kpx executor --dry-run` process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { startNatsServer } from '@kpx/testing';
import { ensureSnapshotStore, putSnapshot } from '@kpx/transport';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { MemoryBackend, runExecutor } from '../src/index.js';
import { Node, newExecutor, setUp, waitFor } from './harness.js';

const kpx = new URL('../../../cli/bin/kpx.js', import.meta.url).pathname;

test(
  'controller down: the node converges from JetStream, and acks once the controller is back',
  { timeout: 60_000 },
  async (t) => {
    const s = await setUp();
    const e = newExecutor(s, new MemoryBackend(), { driftCheckMs: 200 });
    try {
      await s.change();
      await s.change();
      const want = s.desired()!;
      await s.controller.stop();
      const t0 = performance.now();
      await e.executor.start();
      const st = e.executor.status()[0]!;
      t.diagnostic(`converged from JetStream in ${Math.round(performance.now() - t0)} ms with the controller down`);
      assert.equal(st.generation, want.generation);
      assert.equal(st.digest, want.digest);
      assert.ok(e.logs.some((l) => l.msg === 'controller snapshot unavailable; trying JetStream'));
      const acksBefore = e.client.acks.length;
      await s.restartController();
      const ms = await waitFor(
        () => s.controller.pipeline.tracker.status().some((n) => n.node === Node && n.inSync),
        'the restarted controller to see n1 in sync',
        15_000,
      );
      t.diagnostic(`in sync on the restarted controller ${Math.round(ms)} ms after it started`);
      assert.ok(e.client.acks.length > acksBefore);
    } finally {
      await e.close();
      await s.close();
    }
  },
);

test(
  'NATS down: the rules stay, /healthz fails after the grace, and the node resumes from its last delta',
  { timeout: 90_000 },
  async (t) => {
    const s = await setUp();
    const backend = new MemoryBackend();
    const run = await runExecutor({
      node: Node,
      natsUrl: s.nats.url,
      controller: s.grpcListen,
      createBackend: () => backend,
      families: ['IPv4'],
      healthzListen: '127.0.0.1:0',
      metricsListen: '127.0.0.1:0',
      logLevel: 'silent',
      driftCheckMs: 0,
      natsGraceMs: 1_000,
      tracer: trace.getTracer('test'),
    });
    const healthz = async (): Promise<number> => (await fetch(`${run.healthzUrl}/healthz`)).status;
    try {
      const want = s.desired()!;
      await waitFor(() => run.executor.status()[0]?.digest === want.digest, 'the node at the controller state');
      assert.equal(await healthz(), 200);
      const restores = backend.restores;
      await s.nats.kill9();
      const down = performance.now();
      await waitFor(async () => (await healthz()) === 503, '/healthz to fail', 10_000);
      t.diagnostic(`/healthz failed ${Math.round(performance.now() - down)} ms after NATS went down (grace 1 s)`);
      const st = run.executor.status()[0]!;
      assert.equal(st.digest, want.digest, 'the rules stay');
      assert.equal(backend.restores, restores, 'nothing restored while NATS is down');
      await s.nats.restart();
      await waitFor(async () => (await healthz()) === 200, '/healthz to pass again', 15_000);
      // The next change arrives as a delta on the last applied one: no resync.
      const applies = backend.applies;
      await waitFor(
        () => s.controller.pipeline.tracker.status().some((n) => n.node === Node && n.inSync),
        'the controller to see n1 in sync',
        15_000,
      );
      await s.change();
      const next = s.desired()!;
      await waitFor(() => run.executor.status()[0]?.digest === next.digest, 'the change after NATS came back', 15_000);
      assert.equal(backend.applies, applies + 1);
      assert.equal(run.executor.status()[0]!.resyncs, st.resyncs, 'resumed without a resync');
    } finally {
      await run.stop();
      await s.close();
    }
  },
);

/** Runs `kpx executor --dry-run`, waits for `ready` on its output, sends SIGTERM and measures how long it takes to exit. */
async function sigtermAfter(
  args: readonly string[],
  ready: RegExp,
  prepare?: () => Promise<void>,
): Promise<{ ms: number; code: number | null; out: string }> {
  const child = spawn(
    process.execPath,
    [
      kpx,
      'executor',
      '--dry-run',
      '--node',
      'sigterm-node',
      '--healthz-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
      '--ip-families',
      'ipv4',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  try {
    await waitFor(() => ready.test(out), `${ready} in the executor's output`, 20_000);
    await prepare?.();
    const t0 = performance.now();
    child.kill('SIGTERM');
    const [code] = await Promise.race([
      exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`no exit 10 s after SIGTERM:\n${out}`)), 10_000),
      ),
    ]);
    return { ms: performance.now() - t0, code, out };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

test(
  'SIGTERM during a startup resync that keeps failing (controller unreachable, then NATS gone) stops within 2 s',
  { timeout: 60_000 },
  async (t) => {
    // The controller is unreachable and the only snapshot of the node in JetStream does not reach its digest: the
    // start retries for ever. Then NATS goes away too.
    const nats = await startNatsServer({ jetstream: true });
    const nc = await connect({ servers: nats.url });
    try {
      const js = jetstream(nc);
      await ensureSnapshotStore(js);
      await putSnapshot(js, {
        node: 'sigterm-node',
        mode: 'iptables',
        ipFamily: 'IPv4',
        generation: 5,
        objects: [],
        digest: 'f'.repeat(64),
      });
      await nc.close();
      const r = await sigtermAfter(
        ['--nats', nats.url, '--controller', '127.0.0.1:1'],
        /resync failed; retrying[^]*resync failed; retrying/,
        async () => {
          await nats.kill9();
          await new Promise((resolve) => setTimeout(resolve, 500));
        },
      );
      t.diagnostic(`stopped ${Math.round(r.ms)} ms after SIGTERM (exit code ${r.code})`);
      assert.ok(r.ms < 2_000, `stopped in ${Math.round(r.ms)} ms:\n${r.out}`);
      assert.equal(r.code, 0);
    } finally {
      await nats.stop();
    }
  },
);

test(
  'SIGTERM while the start waits on a controller that accepts connections and never answers stops within 2 s',
  { timeout: 60_000 },
  async (t) => {
    const nats = await startNatsServer({ jetstream: true });
    const sockets: Socket[] = [];
    const hung = createServer((sock) => void sockets.push(sock));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    const port = (hung.address() as AddressInfo).port;
    try {
      const r = await sigtermAfter(
        ['--nats', nats.url, '--controller', `127.0.0.1:${port}`],
        /resyncing from a snapshot/,
        () => new Promise((resolve) => setTimeout(resolve, 500)),
      );
      t.diagnostic(`stopped ${Math.round(r.ms)} ms after SIGTERM (exit code ${r.code})`);
      assert.ok(r.ms < 2_000, `stopped in ${Math.round(r.ms)} ms:\n${r.out}`);
      assert.equal(r.code, 0);
    } finally {
      for (const sock of sockets) sock.destroy();
      hung.close();
      await nats.stop();
    }
  },
);

test('SIGTERM of a running executor whose NATS is gone stops within 2 s', { timeout: 60_000 }, async (t) => {
  const s = await setUp();
  try {
    const r = await sigtermAfter(
      ['--nats', s.nats.url, '--controller', s.grpcListen, '--drift-check', '0'],
      /kpx executor running/,
      async () => {
        await s.nats.kill9();
        await new Promise((resolve) => setTimeout(resolve, 300));
      },
    );
    t.diagnostic(`stopped ${Math.round(r.ms)} ms after SIGTERM (exit code ${r.code})`);
    assert.ok(r.ms < 2_000, `stopped in ${Math.round(r.ms)} ms:\n${r.out}`);
    assert.equal(r.code, 0);
    assert.match(r.out, /NATS disconnected/);
    for (const line of r.out.split('\n').filter((l) => /stop step unfinished/.test(l))) t.diagnostic(line);
  } finally {
    await s.nats.restart();
    await s.close();
  }
});

test(
  'a quiet executor heartbeats (drift checks off, nothing changing); once it stops, the controller shows it stale',
  { timeout: 60_000 },
  async () => {
    const s = await setUp();
    const e = newExecutor(s, new MemoryBackend(), { driftCheckMs: 0, heartbeatMs: 150 });
    try {
      await e.executor.start();
      await waitFor(
        () => s.controller.pipeline.tracker.status().some((n) => n.node === Node && n.inSync),
        'n1 in sync',
      );
      const before = e.client.acks.length;
      await new Promise((r) => setTimeout(r, 1000));
      const beats = e.client.acks.length - before;
      assert.ok(beats >= 4, `${beats} heartbeats in 1 s`);
      assert.ok(e.client.acks.slice(before).every((a) => a.error === '' && a.digest === s.desired()?.digest));
      await e.close();
      const lastAck = Date.now();
      const st = (now: number) => s.controller.pipeline.tracker.status(Node, now)[0]!;
      assert.equal(st(lastAck + 1000).stale, false);
      assert.equal(st(lastAck + 61_000).stale, true, 'silent beyond the bound: stale');
      assert.equal(st(lastAck + 61_000).inSync, false);
    } finally {
      await e.close().catch(() => undefined);
      await s.close();
    }
  },
);
