// A throwaway PKI for mTLS tests, made with openssl in a temporary directory: a CA, a server certificate for
// 127.0.0.1/localhost, and client certificates with the subjects the test asks for. Keys are EC P-256, mode 0600.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface TestPki {
  readonly dir: string;
  /** The CA certificate (signs the server's and every client's). */
  readonly caFile: string;
  /** The server's certificate: SAN IP 127.0.0.1, DNS localhost. */
  readonly server: CertFiles;
  /** A client certificate per name given, with that subject. */
  readonly clients: Readonly<Record<string, CertFiles>>;
  remove(): void;
}

/** A client subject: CN and optional O (organizations, i.e. Kubernetes groups). */
export interface Subject {
  readonly cn: string;
  readonly o?: readonly string[];
}

const openssl = (dir: string, args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};

function issue(dir: string, name: string, subject: string, ext: string): CertFiles {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  openssl(dir, [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    `${name}.csr`,
    '-subj',
    subject,
  ]);
  chmodSync(keyFile, 0o600);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    certFile,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  ]);
  return { certFile, keyFile };
}

/**
 * Makes the PKI (a few hundred ms of openssl); call remove() when done. `options.dir`: an existing directory to
 * write into (the demo's secrets directory) instead of a new temporary one; remove() deletes it either way.
 */
export function createTestPki(
  clients: Readonly<Record<string, Subject>>,
  options: { readonly dir?: string } = {},
): TestPki {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'kpx-pki-'));
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=kpx-test-ca',
  ]);
  chmodSync(join(dir, 'ca.key'), 0o600);
  const server = issue(
    dir,
    'server',
    '/CN=kpx-controller',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  const out: Record<string, CertFiles> = {};
  for (const [name, s] of Object.entries(clients)) {
    const subject = `${(s.o ?? []).map((o) => `/O=${o}`).join('')}/CN=${s.cn}`;
    out[name] = issue(dir, `client-${name}`, subject, 'extendedKeyUsage=clientAuth\n');
  }
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    server,
    clients: out,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
