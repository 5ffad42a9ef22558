// NATS credentials and TLS for every kpx process that connects (issue #15): one set of flags, parsed here, and the
// nats.js connection options they give. Secrets are read from files (or $KPX_NATS_PASSWORD), never from argv.
import { readFile } from 'node:fs/promises';
import { credsAuthenticator, nkeyAuthenticator, type Authenticator } from '@nats-io/nats-core';
import type { NodeConnectionOptions } from '@nats-io/transport-node';
import { NatsAuthError } from './errors.js';

/** How a process authenticates to NATS and checks the server. Every field optional: none means today's plain connection. */
export interface NatsAuth {
  /** A NATS creds file (user JWT + nkey seed) or a file holding an nkey user seed (`SU…`). */
  readonly credsFile?: string | undefined;
  readonly user?: string | undefined;
  /** The user's password (from --nats-password-file or $KPX_NATS_PASSWORD). */
  readonly password?: string | undefined;
  /** CA bundle the server's certificate must chain to; setting any TLS file makes the connection TLS. */
  readonly tlsCa?: string | undefined;
  /** Client certificate and key, for a server that verifies clients. */
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
}

/** The flags, as node:util parseArgs options: spread them into a command's options. */
export const NatsAuthFlags = {
  'nats-creds': { type: 'string' },
  'nats-user': { type: 'string' },
  'nats-password-file': { type: 'string' },
  'nats-tls-ca': { type: 'string' },
  'nats-tls-cert': { type: 'string' },
  'nats-tls-key': { type: 'string' },
} as const;

export type NatsAuthFlagValues = { readonly [K in keyof typeof NatsAuthFlags]?: string | undefined };

/** The flags' lines of a command's usage. */
export const NatsAuthUsage = `NATS credentials and TLS:
  --nats-creds FILE         a NATS creds file (user JWT + nkey seed) or an nkey seed file (kpx nats-config)
  --nats-user NAME          user and password authentication; the password from --nats-password-file FILE,
  --nats-password-file FILE   else $KPX_NATS_PASSWORD
  --nats-tls-ca FILE        connect over TLS, checking the server against this CA bundle
  --nats-tls-cert FILE      client certificate and key, for a server that verifies clients
  --nats-tls-key FILE
`;

/** NatsAuth of parsed flags; reads the password file. Throws NatsAuthError for flags that do not go together. */
export async function natsAuthFromFlags(
  values: NatsAuthFlagValues,
  env: NodeJS.ProcessEnv = process.env,
): Promise<NatsAuth> {
  const creds = values['nats-creds'];
  const user = values['nats-user'];
  const passwordFile = values['nats-password-file'];
  if (creds !== undefined && user !== undefined) throw new NatsAuthError('give --nats-creds or --nats-user, not both');
  if (passwordFile !== undefined && user === undefined)
    throw new NatsAuthError('--nats-password-file needs --nats-user');
  let password: string | undefined;
  if (user !== undefined) {
    password =
      passwordFile !== undefined
        ? (await readSecret(passwordFile, '--nats-password-file')).trim()
        : env['KPX_NATS_PASSWORD'];
    if (password === undefined || password === '')
      throw new NatsAuthError('--nats-user needs a password: --nats-password-file FILE or $KPX_NATS_PASSWORD');
  }
  const cert = values['nats-tls-cert'];
  const key = values['nats-tls-key'];
  if ((cert === undefined) !== (key === undefined))
    throw new NatsAuthError('--nats-tls-cert and --nats-tls-key go together');
  return { credsFile: creds, user, password, tlsCa: values['nats-tls-ca'], tlsCert: cert, tlsKey: key };
}

/** The nats.js options of `auth` (reads the creds file): spread them into the options of connect/connectWithRetry. */
export async function natsConnectionOptions(
  auth: NatsAuth,
): Promise<Pick<NodeConnectionOptions, 'authenticator' | 'user' | 'pass' | 'tls'>> {
  const out: Pick<NodeConnectionOptions, 'authenticator' | 'user' | 'pass' | 'tls'> = {};
  if (auth.credsFile !== undefined)
    out.authenticator = credsOrSeed(await readSecret(auth.credsFile, '--nats-creds'), auth.credsFile);
  if (auth.user !== undefined) {
    out.user = auth.user;
    if (auth.password !== undefined) out.pass = auth.password;
  }
  if (auth.tlsCa !== undefined || auth.tlsCert !== undefined) {
    out.tls = {
      ...(auth.tlsCa !== undefined ? { caFile: auth.tlsCa } : {}),
      ...(auth.tlsCert !== undefined ? { certFile: auth.tlsCert } : {}),
      ...(auth.tlsKey !== undefined ? { keyFile: auth.tlsKey } : {}),
    };
  }
  return out;
}

function credsOrSeed(text: string, file: string): Authenticator {
  const encoder = new TextEncoder();
  if (text.includes('-----BEGIN NATS USER JWT-----')) return credsAuthenticator(encoder.encode(text));
  const seed = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => /^SU[A-Z2-7]{50,}$/.test(l));
  if (seed === undefined) throw new NatsAuthError(`${file} is neither a NATS creds file nor an nkey user seed (SU…)`);
  return nkeyAuthenticator(encoder.encode(seed));
}

async function readSecret(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new NatsAuthError(`${flag} ${file}: ${(cause as Error).message}`, { cause });
  }
}
