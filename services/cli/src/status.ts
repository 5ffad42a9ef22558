// kpx status: every node as the controller sees it — desired and acked generation, digest match, lag, errors.
import { stringify } from 'yaml';
import type { NodeStatus, StatusResponse } from '@kpx/proto';
import { ControllerClient, type TlsMaterial } from '@kpx/transport';
import { OutputFlag, OutputFormat, outputFormat, parseFlags, required } from './flags.js';
import { formatTable, shortDigest } from './format.js';
import type { Io } from './io.js';
import { CLIENT_TLS_USAGE, clientTls, clientTlsOptions } from './tls-flags.js';

export const STATUS_USAGE = `usage: kpx status --controller HOST:PORT [--node NAME] [-o table|json|yaml]
                  [--tls-cert-file FILE --tls-private-key-file FILE --ca-file FILE]

Asks the controller (gRPC NodeSync.Status) and prints every node and IP family: the generation and digest it
should have, the generation and digest its executor acked, whether they match, how long it has lagged, what the
kernel read back, drift repaired, and the last error. IN-SYNC is "yes" only when the executor acked the desired
state, it is in JetStream, and the executor acked recently; else "pending" (the controller holds changes for the
node that JetStream has not acknowledged: NATS down, publishes failing), "stale" (no ack for longer than the
controller's --stale-after) or "no". Exit status 0 when every node is in sync, 3 when not.

${CLIENT_TLS_USAGE}`;

/** The stable JSON shape of one node and family. */
export interface NodeStatusJson {
  node: string;
  mode: string;
  ipFamily: string;
  desiredGeneration: number;
  desiredDigest: string;
  ackedGeneration: number;
  ackedDigest: string;
  actualDigest: string;
  inSync: boolean;
  /** Changes compiled for the node that JetStream has not acknowledged yet. */
  pending: boolean;
  /** No ack from the node's executor for longer than the controller's staleness bound. */
  stale: boolean;
  publishedGeneration: number;
  lagSeconds: number;
  drift: string[];
  driftTotal: number;
  driftRepairs: number;
  rejectedMessages: number;
  lastRejection: string;
  lastError: string;
}

export function statusJson(res: StatusResponse): {
  generation: number;
  standby: boolean;
  leaderIdentity: string;
  leaderEpoch: number;
  nodes: NodeStatusJson[];
} {
  return {
    generation: res.generation,
    standby: res.standby,
    leaderIdentity: res.leaderIdentity,
    leaderEpoch: res.leaderEpoch,
    nodes: res.nodes.map((n: NodeStatus) => ({
      node: n.node,
      mode: n.mode,
      ipFamily: n.ipFamily,
      desiredGeneration: n.desiredGeneration,
      desiredDigest: n.desiredDigest,
      ackedGeneration: n.ackedGeneration,
      ackedDigest: n.ackedDigest,
      actualDigest: n.actualDigest,
      inSync: n.inSync,
      pending: n.pending,
      stale: n.stale,
      publishedGeneration: n.publishedGeneration,
      lagSeconds: Math.round(n.lagSeconds * 1000) / 1000,
      drift: n.lastDrift,
      driftTotal: Math.max(n.lastDriftTotal, n.lastDrift.length),
      driftRepairs: n.driftRepairs,
      rejectedMessages: n.rejectedMessages,
      lastRejection: n.lastRejection,
      lastError: n.lastError,
    })),
  };
}

export function statusTable(res: StatusResponse): string {
  const rows = [
    ['NODE', 'FAMILY', 'DESIRED', 'ACKED', 'DIGEST', 'IN-SYNC', 'LAG', 'KERNEL', 'DRIFT-REPAIRS', 'LAST-ERROR'],
  ];
  for (const n of res.nodes) {
    const kernel =
      n.actualDigest === ''
        ? '-'
        : n.actualDigest === n.ackedDigest
          ? 'matches'
          : `differs ${shortDigest(n.actualDigest)}`;
    rows.push([
      n.node,
      n.ipFamily,
      String(n.desiredGeneration),
      String(n.ackedGeneration),
      shortDigest(n.desiredDigest),
      syncWord(n),
      n.inSync ? '-' : `${n.lagSeconds.toFixed(1)}s`,
      kernel,
      String(n.driftRepairs),
      n.lastError || '-',
    ]);
  }
  // A standby knows no nodes: say so rather than print an empty table that looks like a converged cluster.
  const who = res.leaderIdentity ? ` (leader ${res.leaderIdentity}, epoch ${res.leaderEpoch})` : '';
  if (res.standby) return `generation ${res.generation}\nthis controller is a standby${who}: ask the leader\n`;
  return `generation ${res.generation}${who}\n${formatTable(rows)}`;
}

/** yes; else why not: pending (not in JetStream yet), stale (no recent ack) or no. */
function syncWord(n: NodeStatus): string {
  if (n.inSync) return 'yes';
  if (n.pending) return 'pending';
  if (n.stale) return 'stale';
  return 'no';
}

/** Status of thousands of nodes exceeds grpc-js's default 4 MiB receive limit. */
export const MaxStatusBytes = 256 * 1024 * 1024;

export async function fetchStatus(address: string, node = '', tls?: TlsMaterial): Promise<StatusResponse> {
  const client = new ControllerClient(address, { maxReceiveBytes: MaxStatusBytes, ...(tls ? { tls } : {}) });
  try {
    return await client.status(node);
  } finally {
    client.close();
  }
}

export async function statusCommand(argv: readonly string[], io: Io): Promise<number> {
  const values = parseFlags(
    argv,
    { controller: { type: 'string' }, node: { type: 'string', default: '' }, ...OutputFlag, ...clientTlsOptions },
    STATUS_USAGE,
    io,
  );
  if (!values) return 0;
  const controller = required(values.controller, 'controller', STATUS_USAGE);
  const format = outputFormat(values.output, [OutputFormat.Table, OutputFormat.Json, OutputFormat.Yaml]);
  const res = await fetchStatus(controller, values.node, clientTls(values, io));
  if (format === OutputFormat.Table) io.stdout(statusTable(res));
  else if (format === OutputFormat.Json) io.stdout(`${JSON.stringify(statusJson(res), null, 2)}\n`);
  else io.stdout(stringify(statusJson(res)));
  return !res.standby && res.nodes.every((n) => n.inSync) ? 0 : 3;
}
