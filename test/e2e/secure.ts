// The secured system the e2e suites run (issue #15's "Done when"): gRPC mTLS with node and operator identities,
// NATS users per role from `kpx nats-config`, and an Ed25519 signing key for deltas and snapshots. One setup per
// suite, in a temporary directory: the suites take their flags and options from here instead of copying them.
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '@kpx/cli';
import { createTestPki, type TestPki } from '@kpx/testing';
import { signerFromPem, type NatsAuth, type Signer, type TlsFiles } from '@kpx/transport';

export interface SecureSetup {
  readonly dir: string;
  /** The `authorization` block `kpx nats-config` printed: startNatsServer's extraConfig. */
  readonly natsConfig: string;
  readonly pki: TestPki;
  /** runController's security options: its NATS seed, the signing key, mTLS with the client CA. */
  readonly controller: { readonly natsAuth: NatsAuth; readonly signer: Signer; readonly grpcTls: TlsFiles };
  /** `kpx controller` flags of the same (for a controller in its own process). */
  readonly controllerArgs: readonly string[];
  /** `kpx executor` flags of `node`: its NATS seed, the verify key, its client certificate. */
  executorArgs(node: string): string[];
  /** `kpx status` / `kpx audit` flags of the operator's certificate. */
  readonly operatorTlsArgs: readonly string[];
  /** `kpx replay` / `kpx audit log` flags of the operator's NATS seed and the verify key. */
  readonly operatorNatsArgs: readonly string[];
  remove(): Promise<void>;
}

/** The address a client dials for a controller on `grpcAddress`: a name of its certificate (DNS:localhost). */
export function dialAddress(grpcAddress: string): string {
  return grpcAddress.replace(/^127\.0\.0\.1:/, 'localhost:');
}

/** Makes every secret for a system of `nodes` (openssl and `kpx nats-config`: about a second). */
export async function createSecureSetup(nodes: readonly string[]): Promise<SecureSetup> {
  const dir = await mkdtemp(join(tmpdir(), 'kpx-e2e-secure-'));
  try {
    const nkeys = join(dir, 'nkeys');
    let natsConfig = '';
    let err = '';
    const code = await main(['nats-config', '--nkeys-dir', nkeys, ...nodes.flatMap((n) => ['--node', n])], {
      stdout: (t) => (natsConfig += typeof t === 'string' ? t : Buffer.from(t).toString()),
      stderr: (t) => (err += t),
    });
    if (code !== 0) throw new Error(`kpx nats-config exited ${code}: ${err}`);
    const keys = generateKeyPairSync('ed25519');
    const signingPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const signingKey = join(dir, 'signing.pem');
    const verifyKeys = join(dir, 'verify.pem');
    await writeFile(signingKey, signingPem, { mode: 0o600 });
    await writeFile(verifyKeys, keys.publicKey.export({ type: 'spki', format: 'pem' }));
    await mkdir(join(dir, 'pki'), { mode: 0o700 });
    const pki = createTestPki(
      {
        operator: { cn: 'kpx-e2e-operator' },
        ...Object.fromEntries(nodes.map((n) => [`node-${n}`, { cn: `system:node:${n}`, o: ['system:nodes'] }])),
      },
      { dir: join(dir, 'pki') },
    );
    const clientTls = (name: string): string[] => {
      const c = pki.clients[name];
      if (c === undefined) throw new Error(`no certificate for ${name} in the e2e PKI`);
      return ['--tls-cert-file', c.certFile, '--tls-private-key-file', c.keyFile, '--ca-file', pki.caFile];
    };
    const seed = (name: string): string => join(nkeys, `${name}.nk`);
    const grpcTls = { certFile: pki.server.certFile, keyFile: pki.server.keyFile, caFile: pki.caFile };
    return {
      dir,
      natsConfig,
      pki,
      controller: { natsAuth: { credsFile: seed('controller') }, signer: signerFromPem(signingPem), grpcTls },
      controllerArgs: [
        '--nats-creds',
        seed('controller'),
        '--signing-key',
        signingKey,
        '--tls-cert-file',
        grpcTls.certFile,
        '--tls-private-key-file',
        grpcTls.keyFile,
        '--client-ca-file',
        grpcTls.caFile,
      ],
      executorArgs: (node) => [
        '--nats-creds',
        seed(`node-${node}`),
        '--verify-keys',
        verifyKeys,
        ...clientTls(`node-${node}`),
      ],
      operatorTlsArgs: clientTls('operator'),
      operatorNatsArgs: ['--nats-creds', seed('operator'), '--verify-keys', verifyKeys],
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
