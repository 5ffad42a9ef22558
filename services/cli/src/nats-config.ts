// kpx nats-config: the nats-server authorization block giving each kpx role the least NATS privilege (issue #15),
// with one nkey per user; the seeds (the secrets) are written to a directory, the public keys go in the block.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  isValidNodeName,
  natsServerAuthConfig,
  NatsRole,
  newNkeyUser,
  nkeyPublicKey,
  type NatsUserSpec,
} from '@kpx/transport';
import { UsageError } from './errors.js';
import { parseFlags, required } from './flags.js';
import type { Io } from './io.js';

export const NATS_CONFIG_USAGE = `usage: kpx nats-config --nkeys-dir DIR --node NAME [--node NAME ...]

Prints the authorization block of nats-server's configuration (include it, or paste it in) with one nkey user per
kpx role and least privilege for each:
  controller   the JetStream API, publishes deltas, snapshots, audit records, the KPX_STATE/KPX_LEADER buckets
  node NAME    its own subject's deltas only (consumers filtered to kpx.delta.NAME, direct get of its last
               message), snapshots read-only (the object store cannot be scoped per node), publishes nothing
  operator     kpx replay and kpx audit log: every node's deltas, the snapshots and the audit log, read-only
The seeds go to DIR (mode 0600): controller.nk, operator.nk, node-NAME.nk; each process gets its file with
--nats-creds. A seed already in DIR is kept (run it again to add nodes).
`;

export async function natsConfigCommand(argv: readonly string[], io: Io): Promise<number> {
  const values = parseFlags(
    argv,
    { 'nkeys-dir': { type: 'string' }, node: { type: 'string', multiple: true } },
    NATS_CONFIG_USAGE,
    io,
  );
  if (!values) return 0;
  const dir = required(values['nkeys-dir'], 'nkeys-dir', NATS_CONFIG_USAGE);
  const nodes = values.node ?? [];
  for (const n of nodes)
    if (!isValidNodeName(n)) throw new UsageError(`--node ${JSON.stringify(n)} is not a Kubernetes node name`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const users: NatsUserSpec[] = [
    { role: NatsRole.Controller, nkey: await seedFile(path.join(dir, 'controller.nk')) },
    { role: NatsRole.Operator, nkey: await seedFile(path.join(dir, 'operator.nk')) },
  ];
  for (const node of nodes)
    users.push({ role: NatsRole.Node, node, nkey: await seedFile(path.join(dir, `node-${node}.nk`)) });
  io.stdout(`# kpx nats-config: seeds in ${dir}\n${natsServerAuthConfig(users)}`);
  return 0;
}

/** The public key of the seed in `file`, written there first when there is none. */
async function seedFile(file: string): Promise<string> {
  try {
    return nkeyPublicKey(await readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const user = newNkeyUser();
  await writeFile(file, `${user.seed}\n`, { mode: 0o600, flag: 'wx' });
  return user.publicKey;
}
