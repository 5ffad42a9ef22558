// Issue #15 item 1, end to end: a real `kpx controller` serving mTLS and a real dry-run `kpx executor` with node-a's
// certificate converge, and `kpx status` with an operator's certificate says so. A node's certificate cannot read
// status (PERMISSION_DENIED, counted in the controller's /metrics), a client without a certificate cannot connect,
// a TLS flag given alone and a non-loopback --grpc-listen without TLS are usage errors, and a private key others
// may read is warned about by file name (never its contents).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createTestPki, startNatsServer, type NatsServer, type TestPki } from '@kpx/testing';
import { controllerCommand } from '../src/controller.js';
import { runKpx } from './io.js';

const examples = new URL('../../../../examples', import.meta.url).pathname;
const kpxBin = new URL('../../bin/kpx.js', import.meta.url).pathname;
let nats: NatsServer;
let pki: TestPki;

before(async () => {
  nats = await startNatsServer({ jetstream: true });
  pki = createTestPki({ nodeA: { cn: 'system:node:node-a', o: ['system:nodes'] }, operator: { cn: 'kpx-admin' } });
});
after(async () => {
  await nats.stop();
  pki.remove();
});

const tlsOf = (who: 'nodeA' | 'operator'): string[] => [
  '--tls-cert-file',
  pki.clients[who]!.certFile,
  '--tls-private-key-file',
  pki.clients[who]!.keyFile,
  '--ca-file',
  pki.caFile,
];
const quiet = { stdout: () => {}, stderr: () => {} };

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test(
  'a TLS controller and a TLS dry-run executor converge; status needs an operator certificate',
  { timeout: 60_000 },
  async (t) => {
    const ac = new AbortController();
    t.after(() => ac.abort());
    let ready: { grpcAddress: string; metricsUrl: string } | undefined;
    const controller = controllerCommand(
      [
        '--manifests',
        examples,
        '--nats',
        nats.url,
        '--grpc-listen',
        '127.0.0.1:0',
        '--metrics-listen',
        '127.0.0.1:0',
        '--log-level',
        'silent',
        '--tls-cert-file',
        pki.server.certFile,
        '--tls-private-key-file',
        pki.server.keyFile,
        '--client-ca-file',
        pki.caFile,
      ],
      quiet,
      { signal: ac.signal, onReady: (r) => (ready = r) },
    );
    const { grpcAddress, metricsUrl } = await waitFor(() => Promise.resolve(ready), 'the controller');
    // The executor in its own process (one tracer provider per process), stopped by its PID.
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
        grpcAddress,
        '--dry-run',
        '--ip-families',
        'ipv4',
        '--healthz-listen',
        '127.0.0.1:0',
        '--metrics-listen',
        '127.0.0.1:0',
        '--log-level',
        'warn',
        ...tlsOf('nodeA'),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let executorErr = '';
    executor.stderr.on('data', (b: Buffer) => (executorErr += b.toString()));
    const exited = once(executor, 'exit');
    t.after(() => executor.exitCode === null && executor.kill('SIGTERM'));

    // Converged: the operator's kpx status shows node-a in sync (exit 0 asks every node; node-a alone here).
    const st = await waitFor(async () => {
      const r = await runKpx(
        'status',
        '--controller',
        grpcAddress,
        '--node',
        'node-a',
        '-o',
        'json',
        ...tlsOf('operator'),
      );
      // Exit 3: node-a's IPv6 (not programmed by this executor) is not in sync.
      const j =
        r.code === 0 || r.code === 3
          ? (JSON.parse(r.out) as { nodes: { node: string; ipFamily: string; inSync: boolean }[] })
          : undefined;
      return j?.nodes.some((n) => n.node === 'node-a' && n.ipFamily === 'IPv4' && n.inSync) ? j : undefined;
    }, 'node-a in sync in kpx status').catch((err: unknown) => {
      throw new Error(`${String(err)}; executor stderr: ${executorErr}`);
    });
    assert.ok(st.nodes.length > 0);

    // node-a's certificate is no operator's.
    const asNode = await runKpx('status', '--controller', grpcAddress, ...tlsOf('nodeA'));
    assert.equal(asNode.code, 1);
    assert.match(
      asNode.err,
      /^kpx: controller 127\.0\.0\.1:\d+ refused Status: system:node:node-a is a node identity: status is for operators\n$/,
    );
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    assert.match(metrics, /kpx_controller_denied_requests_total\{method="Status",identity="system:node:node-a"\} 1/);

    // No certificate: no connection.
    const plain = await runKpx('status', '--controller', grpcAddress);
    assert.equal(plain.code, 1);
    assert.match(plain.err, /^kpx: cannot reach controller 127\.0\.0\.1:\d+ \(Status\)/);

    executor.kill('SIGTERM');
    assert.deepEqual(await exited, [0, null]);
    ac.abort();
    assert.equal(await controller, 0);
  },
);

test('usage: TLS flags come together; no TLS on a non-loopback address without --insecure', async () => {
  const partial = await runKpx(
    'status',
    '--controller',
    '127.0.0.1:1',
    '--tls-cert-file',
    pki.clients['operator']!.certFile,
  );
  assert.equal(partial.code, 2);
  assert.match(partial.err, /missing --tls-private-key-file, --ca-file/);
  const open = await runKpx(
    'controller',
    '--manifests',
    examples,
    '--nats',
    'nats://127.0.0.1:1',
    '--grpc-listen',
    '0.0.0.0:0',
  );
  assert.equal(open.code, 2);
  assert.match(
    open.err,
    /refusing to serve gRPC NodeSync on 0\.0\.0\.0:0 without TLS: give --tls-cert-file, --tls-private-key-file and --client-ca-file, listen on loopback, or pass --insecure/,
  );
  const half = await runKpx(
    'controller',
    '--manifests',
    examples,
    '--nats',
    'nats://127.0.0.1:1',
    '--grpc-listen',
    '127.0.0.1:0',
    '--tls-cert-file',
    pki.server.certFile,
  );
  assert.equal(half.code, 2);
  assert.match(half.err, /missing --tls-private-key-file, --client-ca-file/);
});

test('a private key others may read is warned about by name, never printed', async () => {
  const key = join(pki.dir, 'readable.key');
  copyFileSync(pki.clients['operator']!.keyFile, key);
  chmodSync(key, 0o644);
  // Nothing listens on port 1: the call fails after the files were read.
  const r = await runKpx(
    'status',
    '--controller',
    '127.0.0.1:1',
    '--tls-cert-file',
    pki.clients['operator']!.certFile,
    '--tls-private-key-file',
    key,
    '--ca-file',
    pki.caFile,
  );
  assert.match(
    r.err,
    new RegExp(
      `warning: private key file ${key.replace(/[.]/g, '\\.')} is readable by group or others \\(mode 0644\\)`,
    ),
  );
  assert.doesNotMatch(r.err, /BEGIN|PRIVATE KEY-----/);
  const missing = await runKpx(
    'status',
    '--controller',
    '127.0.0.1:1',
    '--tls-cert-file',
    join(pki.dir, 'nope.crt'),
    '--tls-private-key-file',
    key,
    '--ca-file',
    pki.caFile,
  );
  assert.equal(missing.code, 1);
  assert.match(missing.err, /--tls-cert-file .*nope\.crt: no such file/);
});
