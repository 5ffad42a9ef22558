// Shared helpers of the transport tests: connections to a test nats-server and synthetic kpx messages.
import { type Delta, type NodeRuleSet, RuleKind, type RuleObject } from '@kpx/proto';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';

export interface Client {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

export async function connectTo(url: string): Promise<Client> {
  const nc = await connect({ servers: url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
}

/** An iptables chain object whose rules total roughly `ruleBytes` bytes. */
export function chainObject(name: string, rules: number, ruleBytes = 100): RuleObject {
  const lines: string[] = [];
  for (let i = 0; i < rules; i++) {
    const prefix = `-m comment --comment "ns/${name}:${i}" -m statistic --mode random --probability 0.5 -j KUBE-SEP-`;
    lines.push(`${prefix}${String(i).padStart(Math.max(1, ruleBytes - prefix.length), 'X')}`);
  }
  return {
    kind: RuleKind.IptablesChain,
    key: `nat/${name}`,
    payload: { $case: 'iptablesChain', value: { table: 'nat', name, rules: lines } },
  };
}

export function makeDelta(node: string, generation: number, options: Partial<Delta> = {}): Delta {
  return {
    node,
    generation,
    prevGeneration: generation - 1,
    upserts: [chainObject(`KUBE-SVC-G${generation}`, 2)],
    deletes: [],
    digest: `digest-${generation}`,
    cause: [],
    triggerTime: undefined,
    mode: 'iptables',
    ipFamily: 'IPv4',
    snapshot: false,
    ...options,
  };
}

/** A synthetic rule set of `services` chains with 5 rules of ~100 bytes each (≈ 5 MB at 10,000 services). */
export function bigRuleSet(node: string, generation: number, services: number, ipFamily = 'IPv4'): NodeRuleSet {
  const objects: RuleObject[] = [];
  for (let i = 0; i < services; i++) objects.push(chainObject(`KUBE-SVC-${String(i).padStart(8, '0')}`, 5));
  return { node, mode: 'iptables', ipFamily, generation, objects, digest: `d${generation}` };
}

/** Returns true when a process with this PID exists. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
