// kpx controller and kpx executor started before NATS is up: they wait for it (logging why), then converge; and
// SIGTERM while they wait stops them at once with exit status 0.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { test } from 'node:test';
import { startNatsServer, freePort } from '@kpx/testing';
import { runKpx } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const kpxBin = new URL('../../bin/kpx.js', import.meta.url).pathname;

interface Proc {
  readonly child: ChildProcess;
  log: string;
  readonly exited: Promise<number | null>;
}

function kpx(args: readonly string[]): Proc {
  const child = spawn(process.execPath, [kpxBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, log: '', exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
  child.stdout?.on('data', (b: Buffer) => (p.log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (p.log += b.toString()));
  return p;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a controller and an executor started before NATS wait for it, then converge; SIGTERM while waiting exits 0 at once', async (t) => {
  // A port NATS will come back on: start it, note the port, kill it.
  const nats = await startNatsServer({ jetstream: true });
  t.after(() => nats.stop());
  await nats.kill9();
  const procs: Proc[] = [];
  t.after(() => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  });
  const grpcPort = await freePort();
  const controller = kpx([
    'controller',
    '--manifests',
    examples,
    '--nats',
    nats.url,
    '--grpc-listen',
    `127.0.0.1:${grpcPort}`,
    '--metrics-listen',
    '127.0.0.1:0',
  ]);
  const executor = kpx([
    'executor',
    '--node',
    'node-a',
    '--nats',
    nats.url,
    '--controller',
    `127.0.0.1:${grpcPort}`,
    '--dry-run',
    '--healthz-listen',
    '127.0.0.1:0',
    '--metrics-listen',
    '127.0.0.1:0',
  ]);
  const quitter = kpx([
    'executor',
    '--node',
    'node-b',
    '--nats',
    nats.url,
    '--controller',
    `127.0.0.1:${grpcPort}`,
    '--dry-run',
    '--healthz-listen',
    '127.0.0.1:0',
    '--metrics-listen',
    '127.0.0.1:0',
  ]);
  procs.push(controller, executor, quitter);
  for (const p of procs)
    await waitFor(() => p.log.includes('cannot reach NATS yet'), 'a process to say it waits for NATS');
  assert.ok(
    procs.every((p) => p.child.exitCode === null),
    'none gave up',
  );

  const t0 = Date.now();
  quitter.child.kill('SIGTERM');
  assert.equal(await quitter.exited, 0, quitter.log.slice(-2000));
  const stopMs = Date.now() - t0;
  t.diagnostic(`SIGTERM while waiting for NATS: exited in ${stopMs} ms`);
  assert.ok(stopMs < 3000, `exited in ${stopMs} ms`);

  await nats.restart();
  await waitFor(
    async () => {
      const r = await runKpx('status', '--controller', `127.0.0.1:${grpcPort}`, '--node', 'node-a', '-o', 'json');
      if (r.code !== 0) return false;
      const s = JSON.parse(r.out) as { nodes: { inSync: boolean }[] };
      return s.nodes.length > 0 && s.nodes.every((n) => n.inSync);
    },
    'node-a in sync once NATS is up',
    30_000,
  ).catch((err: Error) => {
    throw new Error(
      `${err.message}\n--- controller\n${controller.log.slice(-2000)}\n--- executor\n${executor.log.slice(-2000)}`,
    );
  });
});
