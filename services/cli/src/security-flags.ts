// The security flags of the commands that talk to NATS (issue #15): credentials and TLS (shared with every
// command, parsed by @kpx/transport), the controller's signing key and the verify keys of executors and replay.
import { readFile } from 'node:fs/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  inboxPrefix,
  NatsAuthError,
  natsAuthFromFlags,
  natsConnectionOptions,
  NatsRole,
  SignatureError,
  signerFromPem,
  verifierFromPem,
  type NatsAuth,
  type NatsAuthFlagValues,
  type Signer,
  type Verifier,
} from '@kpx/transport';
import { UsageError } from './errors.js';

export { NatsAuthFlags, NatsAuthUsage } from '@kpx/transport';

/** The parseArgs options of --verify-keys (executor, replay, audit). */
export const VerifyFlags = { 'verify-keys': { type: 'string', multiple: true } } as const;

export const VerifyUsage = `  --verify-keys FILE        the controller's Ed25519 public keys (PEM; several blocks or repeated flags: key
                            rotation): deltas and snapshots that do not verify are not used
`;

/** NatsAuth of the parsed flags; flags that do not go together are a usage error. */
export async function natsAuthOf(values: NatsAuthFlagValues): Promise<NatsAuth> {
  try {
    return await natsAuthFromFlags(values);
  } catch (err) {
    if (err instanceof NatsAuthError) throw new UsageError(err.message);
    throw err;
  }
}

/** A short-lived operator connection (replay, audit) with the flags' credentials. */
export async function connectOperator(
  servers: string,
  values: NatsAuthFlagValues,
  name: string,
): Promise<NatsConnection> {
  return connect({
    servers,
    name,
    inboxPrefix: inboxPrefix(NatsRole.Operator),
    ...(await natsConnectionOptions(await natsAuthOf(values))),
  });
}

/** The signer of --signing-key FILE. */
export async function loadSigner(file: string): Promise<Signer> {
  return keyFile(file, '--signing-key', signerFromPem);
}

/** The verifier of every key in the --verify-keys files; undefined without any. */
export async function loadVerifier(files: readonly string[] | undefined): Promise<Verifier | undefined> {
  if (files === undefined || files.length === 0) return undefined;
  const texts = await Promise.all(files.map((f) => keyFile(f, '--verify-keys', (t) => t)));
  return keyFile(files.join(', '), '--verify-keys', () => verifierFromPem(texts.join('\n')));
}

async function keyFile<T>(file: string, flag: string, parse: (text: string) => T): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag} ${file}: ${(err as Error).message}`);
  }
  try {
    return parse(text);
  } catch (err) {
    if (err instanceof SignatureError) throw new UsageError(`${flag} ${file}: ${err.message}`);
    throw err;
  }
}
