// Issue #15 from the command line: `kpx nats-config` writes nkey seeds and prints the authorization block; a real
// nats-server runs with it; `kpx controller --nats-creds … --signing-key …`, a dry-run `kpx executor --nats-creds …
// --verify-keys …` that converges, and `kpx replay` with the operator's credentials and the verify keys.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { cp, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startNatsServer } from '@kpx/testing';
import { controllerCommand } from '../src/controller.js';
import { runKpx } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const kpxBin = new URL('../../bin/kpx.js', import.meta.url).pathname;

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('security flags: usage errors', async () => {
  const base = ['executor', '--node', 'n1', '--nats', 'nats://127.0.0.1:1', '--controller', '127.0.0.1:1', '--dry-run'];
  let r = await runKpx(...base, '--nats-user', 'u');
  assert.equal(r.code, 2);
  assert.match(r.err, /--nats-user needs a password/);
  r = await runKpx(...base, '--nats-password-file', '/nonexistent');
  assert.equal(r.code, 2);
  assert.match(r.err, /--nats-password-file needs --nats-user/);
  r = await runKpx(...base, '--nats-tls-cert', 'c.pem');
  assert.equal(r.code, 2);
  assert.match(r.err, /go together/);
  r = await runKpx(...base, '--verify-keys', '/nonexistent.pem');
  assert.equal(r.code, 2);
  assert.match(r.err, /--verify-keys \/nonexistent.pem/);
});

test(
  'kpx nats-config, then controller, executor and replay with their credentials and keys',
  { timeout: 90_000 },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'kpx-secure-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const manifests = join(dir, 'manifests');
    await cp(examples, manifests, { recursive: true });
    const nkeys = join(dir, 'nkeys');
    const config = await runKpx('nats-config', '--nkeys-dir', nkeys, '--node', 'node-a', '--node', 'node-b');
    assert.equal(config.code, 0, config.err);
    assert.match(config.out, /authorization \{/);
    assert.equal((await stat(join(nkeys, 'node-node-a.nk'))).mode & 0o777, 0o600);
    const again = await runKpx('nats-config', '--nkeys-dir', nkeys, '--node', 'node-a', '--node', 'node-b');
    assert.equal(again.out, config.out, 'seeds already there are kept');

    const keys = generateKeyPairSync('ed25519');
    const signingKey = join(dir, 'signing.pem');
    const verifyKeys = join(dir, 'verify.pem');
    await writeFile(signingKey, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await writeFile(verifyKeys, keys.publicKey.export({ type: 'spki', format: 'pem' }));

    const nats = await startNatsServer({ extraConfig: config.out });
    t.after(() => nats.stop());
    const ac = new AbortController();
    t.after(() => ac.abort());
    const quiet = { stdout: () => {}, stderr: () => {} };
    let grpc = '';
    const controller = controllerCommand(
      [
        '--manifests',
        manifests,
        '--nats',
        nats.url,
        '--grpc-listen',
        '127.0.0.1:0',
        '--metrics-listen',
        '127.0.0.1:0',
        '--log-level',
        'warn',
        '--nats-creds',
        join(nkeys, 'controller.nk'),
        '--signing-key',
        signingKey,
      ],
      quiet,
      { signal: ac.signal, onReady: (r) => (grpc = r.grpcAddress) },
    );
    await waitFor(() => Promise.resolve(grpc !== ''), 'the controller');
    // Its own process: one tracer provider per process.
    const executor = spawn(
      process.execPath,
      [
        kpxBin,
        'executor',
        '--node',
        'node-a',
        '--nats',
        nats.url,
        '--controller',
        grpc,
        '--dry-run',
        '--ip-families',
        'ipv4',
        '--healthz-listen',
        '127.0.0.1:0',
        '--metrics-listen',
        '127.0.0.1:0',
        '--drift-check',
        '0',
        '--log-level',
        'warn',
        '--nats-creds',
        join(nkeys, 'node-node-a.nk'),
        '--verify-keys',
        verifyKeys,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) => executor.once('exit', (code) => resolve(code)));
    t.after(() => {
      if (executor.exitCode === null) executor.kill('SIGKILL');
    });
    type Audit = { nodes: { ipFamily: string; desiredDigest: string; inSync: boolean }[] };
    const ipv4 = async (): Promise<Audit['nodes'][number] | undefined> =>
      (
        JSON.parse((await runKpx('audit', '--controller', grpc, '--node', 'node-a', '-o', 'json')).out) as Audit
      ).nodes.find((n) => n.ipFamily === 'IPv4');
    await waitFor(async () => (await ipv4())?.inSync === true, 'node-a IPv4 in sync');
    const want = (await ipv4())!.desiredDigest;

    const replay = await runKpx(
      'replay',
      '--nats',
      nats.url,
      '--node',
      'node-a',
      '-o',
      'json',
      '--nats-creds',
      join(nkeys, 'operator.nk'),
      '--verify-keys',
      verifyKeys,
    );
    assert.equal(replay.code, 0, replay.err);
    assert.equal((JSON.parse(replay.out) as { digest: string }).digest, want);
    const log = await runKpx('audit', 'log', '--nats', nats.url, '--nats-creds', join(nkeys, 'operator.nk'));
    assert.equal(log.code, 0, log.err);
    assert.match(log.out, /generation \d+/);
    // Without credentials the server refuses the connection.
    const anonymous = await runKpx('replay', '--nats', nats.url, '--node', 'node-a');
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.err, /auth/i);

    executor.kill('SIGTERM');
    assert.equal(await exited, 0);
    ac.abort();
    assert.equal(await controller, 0);
  },
);
