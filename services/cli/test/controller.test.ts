// kpx controller: flags, and the real command on a manifests directory against a real nats-server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { lastDelta } from '@kpx/transport';
import { startNatsServer, type NatsServer } from '@kpx/testing';
import { controllerCommand } from '../src/controller.js';
import { parseDuration } from '../src/flags.js';
import { main } from '../src/main.js';
import { runKpx, textIo } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const kpxBin = new URL('../../bin/kpx.js', import.meta.url).pathname;
let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;

before(async () => {
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
});
after(async () => {
  await nc.close();
  await nats.stop();
});

async function waitFor<T>(fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('usage errors name the flag', async () => {
  const io = textIo();
  const run = (...argv: string[]) => main(argv, io);
  assert.equal(await run('controller', '--nats', 'nats://127.0.0.1:1', '--grpc-listen', '127.0.0.1:0'), 2);
  assert.match(io.err, /exactly one of --manifests, --kubeconfig, --in-cluster/);
  io.err = '';
  assert.equal(await run('controller', '--manifests', examples, '--grpc-listen', '127.0.0.1:0'), 2);
  assert.match(io.err, /--nats is required/);
  io.err = '';
  assert.equal(
    await run(
      'controller',
      '--manifests',
      examples,
      '--nats',
      'x',
      '--grpc-listen',
      '127.0.0.1:0',
      '--max-age',
      '10 minutes',
    ),
    2,
  );
  assert.match(io.err, /--max-age must be a duration/);
  assert.equal(parseDuration('1h30m', '--max-age'), 5_400_000);
  assert.equal(parseDuration('250ms', '--max-age'), 250);
  // One parser with the configuration's (Go's syntax), plus days.
  assert.equal(parseDuration('7d', '--max-age'), 7 * 86_400_000);
  assert.equal(parseDuration('1h2m3.5s', '--max-age'), 3_723_500);
  assert.equal(parseDuration('1500us', '--max-age'), 2);
  assert.throws(() => parseDuration('-5s', '--max-age'), /--max-age must be a duration/);
});

test('publishes every node, follows file edits, stops on abort', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-ctl-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(examples, dir, { recursive: true });
  const ac = new AbortController();
  let ready: { grpcAddress: string; metricsUrl: string } | undefined;
  const io = { stdout: () => {}, stderr: (text: string) => process.stderr.write(text) };
  const done = controllerCommand(
    [
      '--manifests',
      dir,
      '--nats',
      nats.url,
      '--grpc-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    io,
    { signal: ac.signal, onReady: (r) => (ready = r) },
  );
  t.after(() => ac.abort());
  const first = await waitFor(async () => (ready ? lastDelta(js, 'node-c') : undefined));
  for (const node of ['node-a', 'node-b']) assert.ok(await lastDelta(js, node), node);
  const metrics = await (await fetch(`${ready!.metricsUrl}/metrics`)).text();
  assert.match(metrics, /kpx_controller_generation \d+/);
  const health = await fetch(`${ready!.metricsUrl}/healthz`);
  assert.equal(health.status, 200);

  const web = join(dir, 'web.yaml');
  await writeFile(web, (await readFile(web, 'utf8')).replace('10.244.1.10]', '10.244.1.99]'));
  const next = await waitFor(async () => {
    const d = await lastDelta(js, 'node-c');
    return d && d.delta.generation > first.delta.generation ? d : undefined;
  });
  assert.equal(next.delta.snapshot, false);
  assert.ok(next.delta.upserts.length > 0);
  // kpx status against the running controller: no executor acked yet, so nothing is in sync (exit 3).
  const json = await runKpx('status', '--controller', ready!.grpcAddress, '-o', 'json');
  assert.equal(json.code, 3, json.err);
  const status = JSON.parse(json.out) as {
    generation: number;
    nodes: { node: string; ipFamily: string; inSync: boolean; desiredGeneration: number; ackedGeneration: number }[];
  };
  assert.equal(status.generation, next.delta.generation);
  assert.deepEqual(
    status.nodes.map((n) => `${n.node}/${n.ipFamily}`),
    ['node-a/IPv4', 'node-a/IPv6', 'node-b/IPv4', 'node-b/IPv6', 'node-c/IPv4', 'node-c/IPv6'],
  );
  assert.ok(status.nodes.every((n) => !n.inSync && n.ackedGeneration === 0 && n.desiredGeneration > 0));
  const table = await runKpx('status', '--controller', ready!.grpcAddress);
  assert.equal(table.code, 3, table.err);
  assert.match(table.out, /^generation \d+\nNODE +FAMILY +DESIRED +ACKED/);
  ac.abort();
  assert.equal(await done, 0);
});

test('the kpx binary exits cleanly on SIGTERM', async (t) => {
  const child = spawn(
    process.execPath,
    [
      kpxBin,
      'controller',
      '--manifests',
      examples,
      '--nats',
      nats.url,
      '--grpc-listen',
      '127.0.0.1:0',
      '--metrics-listen',
      '127.0.0.1:0',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  await waitFor(() => Promise.resolve(out.includes('kpx controller running') ? true : undefined));
  const line = out.split('\n').find((l) => l.includes('kpx controller running')) ?? '';
  assert.equal((JSON.parse(line) as { msg?: string }).msg, 'kpx controller running', 'logs are JSON');
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0, out);
});
