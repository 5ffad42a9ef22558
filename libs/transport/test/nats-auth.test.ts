// Issue #15: NATS connection options from the security flags, against a real nats-server that requires TLS with
// client certificates (a throwaway CA made with openssl) and a user with a password.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer } from '@kpx/testing';
import { NatsAuthError, natsAuthFromFlags, natsConnectionOptions } from '../src/index.js';

function pki(dir: string): void {
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ed25519',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=kpx test CA',
  );
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    ssl(
      'req',
      '-newkey',
      'ed25519',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=kpx ${name}`,
    );
    execFileSync('sh', ['-c', `printf '${ext}\\n' > ${name}.ext`], { cwd: dir });
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
    );
  }
}

test('flags that do not go together are refused', async () => {
  await assert.rejects(natsAuthFromFlags({ 'nats-creds': 'a', 'nats-user': 'u' }, {}), NatsAuthError);
  await assert.rejects(natsAuthFromFlags({ 'nats-user': 'u' }, {}), /needs a password/);
  await assert.rejects(natsAuthFromFlags({ 'nats-tls-key': 'k' }, {}), /go together/);
  assert.equal((await natsAuthFromFlags({ 'nats-user': 'u' }, { KPX_NATS_PASSWORD: 'p' })).password, 'p');
  assert.deepEqual(await natsConnectionOptions(await natsAuthFromFlags({}, {})), {});
});

test('TLS with a client certificate and a user whose password is in a file', { timeout: 30_000 }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kpx-nats-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  pki(dir);
  const f = (name: string): string => path.join(dir, name);
  await writeFile(f('password'), 's3cret\n', { mode: 0o600 });
  const nats = await startNatsServer({
    extraConfig: [
      `tls { cert_file: ${JSON.stringify(f('server.pem'))}, key_file: ${JSON.stringify(f('server.key'))}, ca_file: ${JSON.stringify(f('ca.pem'))}, verify: true }`,
      'authorization { user: kpx, password: s3cret }',
    ].join('\n'),
  });
  t.after(() => nats.stop());
  const flags = {
    'nats-user': 'kpx',
    'nats-password-file': f('password'),
    'nats-tls-ca': f('ca.pem'),
    'nats-tls-cert': f('client.pem'),
    'nats-tls-key': f('client.key'),
  };
  const nc = await connect({ servers: nats.url, ...(await natsConnectionOptions(await natsAuthFromFlags(flags, {}))) });
  try {
    const info = await (await jetstreamManager(nc)).getAccountInfo();
    assert.ok(info.limits !== undefined);
  } finally {
    await nc.close();
  }
  // Without the client certificate, or with a wrong password, the server refuses.
  const { 'nats-tls-cert': _c, 'nats-tls-key': _k, ...noCert } = flags;
  await assert.rejects(
    connect({
      servers: nats.url,
      timeout: 2000,
      ...(await natsConnectionOptions(await natsAuthFromFlags(noCert, {}))),
    }),
  );
  await writeFile(f('password'), 'wrong\n');
  await assert.rejects(
    connect({ servers: nats.url, timeout: 2000, ...(await natsConnectionOptions(await natsAuthFromFlags(flags, {}))) }),
    /auth/i,
  );
});
