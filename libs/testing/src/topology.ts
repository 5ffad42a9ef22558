// A cluster-shaped network built from network namespaces, for real-packet tests of proxy rules.
//
//                 ┌──────────── <prefix>lan: bridge br0 (10.0.0.0/24, fd00::/64) ────────────┐
//                 │                     │                     │                         │
//   <prefix>n1 (eth0 10.0.0.11)  <prefix>n2 (.12)      <prefix>n3 (.13)        <prefix>ext (eth0 10.0.0.100)
//     │ veth per pod, routed           │                     │                  routes: LAN only, plus
//   <prefix>p1a (eth0 10.244.1.10/32)  …                     …                  LB / external IPs via a node
//
// - Every namespace is created with `ip netns add` and linked only to other namespaces of this topology; the root
//   namespace is never touched (no links, addresses, routes, rules or sysctls).
// - Nodes and the external client plug into the "lan" namespace's bridge with a veth pair (eth0 on their side).
// - Pods are routed, not bridged: a pod has its /32 and /128 on eth0, a default route via 169.254.1.1 (IPv4, the
//   address sits on the node's lo with scope link, so the node answers ARP for it on every pod veth) and via
//   fe80::1 (IPv6, configured on the node side of every pod veth). The node side of a pod veth has no IPv4
//   address, so traffic the node masquerades towards a pod leaves with the node's LAN address.
// - A node has a /32 (/128) host route to each local pod and routes to the other nodes' pod CIDRs via their LAN
//   addresses. Its default routes (v4 and v6) point into "up0" (a veth whose peer stays down, ARP off), standing
//   in for a real node's uplink: a packet for an unknown address (a service IP nothing captured) is forwarded, so
//   it passes the filter FORWARD chain where kube-proxy REJECTs and DROPs, and is then silently lost.
// - NodeSpec.localAddresses go on the node's lo with scope host (so MASQUERADE never picks them).
// - Sysctls, set only inside these namespaces: accept_dad=0 and ICMP rate limits off everywhere (so REJECTs are
//   answered every time); in nodes ip_forward=1, IPv6 forwarding=1, route_localnet=1 (as kube-proxy sets them),
//   rp_filter=0 and send_redirects=0.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { isIPv6 } from 'node:net';
import { fileURLToPath } from 'node:url';
import { CommandError, RulesLoadError, ServerStartError, TopologyError } from './errors.js';
import { ipBatch, run, runIn, type RunResult } from './exec.js';
import { makeRunPrefix, MaxNameLength, sweepNamespaces } from './netns.js';

export const IpFamily = { IPv4: 'ipv4', IPv6: 'ipv6' } as const;
export type IpFamily = (typeof IpFamily)[keyof typeof IpFamily];

export interface NodeSpec {
  /** Node name, also the name of its namespace (after the prefix) and of its port on the LAN bridge. */
  name: string;
  lanIPv4: string;
  lanIPv6: string;
  /** Pod CIDRs of this node; other nodes route them via this node's LAN addresses. */
  podCIDRv4: string;
  podCIDRv6: string;
  /** Extra addresses put on the node's lo (e.g. an IP a host-network listener answers on). */
  localAddresses?: string[];
}

export interface PodSpec {
  /** Pod name: the pod's namespace (after the prefix) and the node-side veth name. */
  name: string;
  node: string;
  ipv4: string;
  ipv6: string;
}

export interface ClientRoute {
  /** An address or CIDR (IPv4 or IPv6) the external client reaches through a node, as a cloud LB would. */
  destination: string;
  /** The node (by name) the traffic is routed to. */
  via: string;
}

export interface TopologySpec {
  nodes: NodeSpec[];
  pods: PodSpec[];
  /** The external client on the LAN. Defaults: 10.0.0.100 and fd00::100, no extra routes. */
  client?: { ipv4?: string; ipv6?: string; routes?: ClientRoute[] };
  /** Prefix lengths of the LAN. Defaults 24 and 64. */
  lanPrefixV4?: number;
  lanPrefixV6?: number;
  /** Namespace name prefix; default: a fresh one per run (makeRunPrefix()). */
  prefix?: string;
}

export interface ServerOptions {
  tcp?: number[];
  udp?: number[];
}

export interface ProbeRequest {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  /** Connections (TCP) or datagrams (UDP) to make one after another. Default 1. */
  count?: number;
  /** How long to wait for each answer. Default 2000 ms. */
  timeoutMs?: number;
  /** TCP only: lines to exchange over each connection (one reply each). Default 1. */
  messages?: number;
  /** Skip the rest of `count` after the first outcome that is not a reply (keeps failing tests fast). */
  stopOnFailure?: boolean;
}

export type ProbeResult =
  | { kind: 'reply'; pod: string; clientIP: string; replies: number }
  | { kind: 'refused' }
  | { kind: 'timeout' }
  | { kind: 'unreachable'; code: string }
  | { kind: 'error'; code: string };

/** The special namespaces of a topology, next to node and pod names. */
export const Role = { Lan: 'lan', Client: 'ext' } as const;

export interface Topology {
  /** The namespace name prefix of this run. */
  readonly prefix: string;
  readonly spec: Readonly<TopologySpec>;
  /** The external client's addresses. */
  readonly clientIPv4: string;
  readonly clientIPv6: string;
  /** The namespace of a node, a pod, Role.Client ("ext") or Role.Lan ("lan"). */
  namespaceOf(name: string): string;
  /** Pipes `text` into iptables-restore (ipv4) or ip6tables-restore (ipv6) in the node's namespace. */
  loadRules(node: string, text: string, family: IpFamily): Promise<void>;
  /** iptables-save / ip6tables-save of a node, for failure reports. */
  dumpRules(node: string, family: IpFamily): Promise<string>;
  /** Starts the pod server in a pod (or in a node: a host-network listener) and resolves once it listens. */
  startServer(pod: string, options: ServerOptions): Promise<void>;
  /** Runs the probe client in a namespace (node, pod or client): one result list per request. */
  probe(from: string, requests: readonly ProbeRequest[]): Promise<ProbeResult[][]>;
  /** Runs a command inside one of the topology's namespaces. */
  exec(name: string, command: string, args: readonly string[]): Promise<RunResult>;
  /** Kills every process started and deletes every namespace made. Safe to call more than once. */
  cleanup(): Promise<void>;
}

const assetPath = (file: string): string => fileURLToPath(new URL(`../../assets/${file}`, import.meta.url));
export const PodServerScript = assetPath('pod-server.mjs');
export const ProbeClientScript = assetPath('probe-client.mjs');

const PodGatewayV4 = '169.254.1.1';
const PodGatewayV6 = 'fe80::1';
/**
 * The interface holding a node's default routes: a veth whose peer stays down (the kernel may lack the dummy
 * driver) and without ARP/NDP, so whatever is sent there is dropped silently, after FORWARD and POSTROUTING.
 */
const UplinkName = 'up0';
const ServerReadyTimeoutMs = 10_000;

const CommonSysctls = [
  'net.ipv6.conf.all.accept_dad=0',
  'net.ipv6.conf.default.accept_dad=0',
  'net.ipv4.icmp_ratelimit=0',
  'net.ipv6.icmp.ratelimit=0',
];
const NodeSysctls = [
  ...CommonSysctls,
  'net.ipv4.ip_forward=1',
  'net.ipv6.conf.all.forwarding=1',
  'net.ipv6.conf.default.forwarding=1',
  'net.ipv4.conf.all.route_localnet=1',
  'net.ipv4.conf.all.rp_filter=0',
  'net.ipv4.conf.default.rp_filter=0',
  'net.ipv4.conf.all.send_redirects=0',
  'net.ipv4.conf.default.send_redirects=0',
];

const ValidName = /^[a-z0-9][a-z0-9-]*$/;

function validate(spec: TopologySpec, prefix: string): void {
  const seen = new Set<string>([Role.Lan, Role.Client]);
  const nodes = new Set(spec.nodes.map((n) => n.name));
  for (const name of [...spec.nodes.map((n) => n.name), ...spec.pods.map((p) => p.name)]) {
    if (!ValidName.test(name)) throw new TopologyError(`invalid node/pod name "${name}"`);
    if (seen.has(name)) throw new TopologyError(`duplicate or reserved node/pod name "${name}"`);
    if ((prefix + name).length > MaxNameLength) {
      throw new TopologyError(`namespace name "${prefix + name}" is longer than ${MaxNameLength} characters`);
    }
    seen.add(name);
  }
  for (const pod of spec.pods) {
    if (!nodes.has(pod.node)) throw new TopologyError(`pod ${pod.name} is on unknown node ${pod.node}`);
  }
  for (const route of spec.client?.routes ?? []) {
    if (!nodes.has(route.via)) throw new TopologyError(`client route via unknown node ${route.via}`);
  }
}

function hostRoute(address: string): string {
  if (address.includes('/')) return address;
  return isIPv6(address) ? `${address}/128` : `${address}/32`;
}

class NetnsTopology implements Topology {
  readonly prefix: string;
  readonly spec: Readonly<TopologySpec>;
  readonly clientIPv4: string;
  readonly clientIPv6: string;
  private readonly created: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private cleaning: Promise<void> | undefined;
  private readonly onExit = (): void => this.cleanupSync();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.cleanupSync();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };

  constructor(spec: TopologySpec, prefix: string) {
    this.spec = spec;
    this.prefix = prefix;
    this.clientIPv4 = spec.client?.ipv4 ?? '10.0.0.100';
    this.clientIPv6 = spec.client?.ipv6 ?? 'fd00::100';
    process.on('exit', this.onExit);
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
  }

  namespaceOf(name: string): string {
    const known =
      name === Role.Lan ||
      name === Role.Client ||
      this.spec.nodes.some((n) => n.name === name) ||
      this.spec.pods.some((p) => p.name === name);
    if (!known) throw new TopologyError(`no namespace named "${name}" in this topology`);
    return this.prefix + name;
  }

  private node(name: string): NodeSpec {
    const node = this.spec.nodes.find((n) => n.name === name);
    if (node === undefined) throw new TopologyError(`unknown node "${name}"`);
    return node;
  }

  async build(): Promise<void> {
    const { nodes, pods } = this.spec;
    const lanV4 = this.spec.lanPrefixV4 ?? 24;
    const lanV6 = this.spec.lanPrefixV6 ?? 64;
    const all = [Role.Lan, Role.Client, ...nodes.map((n) => n.name), ...pods.map((p) => p.name)];

    // 1. Namespaces. Recorded first so a failure later still deletes them.
    for (const name of all) this.created.push(this.prefix + name);
    await ipBatch(
      undefined,
      all.map((name) => `netns add ${this.prefix + name}`),
    );

    // 2. Sysctls (before any interface exists, so new interfaces inherit the defaults).
    await Promise.all(
      all.map((name) => {
        const isNode = nodes.some((n) => n.name === name);
        const values = isNode ? NodeSysctls : CommonSysctls;
        return runIn(this.prefix + name, 'sysctl', ['-q', '-w', ...values]);
      }),
    );

    // 3. The LAN: a bridge, and one veth per node and for the client (eth0 on their side).
    const lanPorts = [...nodes.map((n) => n.name), Role.Client];
    await ipBatch(this.prefix + Role.Lan, [
      'link set lo up',
      'link add br0 type bridge mcast_snooping 0',
      'link set br0 up',
      ...lanPorts.flatMap((port) => [
        `link add ${port} type veth peer name eth0 netns ${this.prefix + port}`,
        `link set ${port} master br0`,
        `link set ${port} up`,
      ]),
    ]);

    // 4. Nodes: LAN addresses, the pod gateway address, one veth per local pod.
    await Promise.all(
      nodes.map((node) =>
        ipBatch(this.prefix + node.name, [
          'link set lo up',
          `addr add ${PodGatewayV4}/32 dev lo scope link`,
          `link add ${UplinkName} type veth peer name ${UplinkName}peer`,
          `link set ${UplinkName} arp off`,
          `link set ${UplinkName} up`,
          `route add default dev ${UplinkName}`,
          `route add ::/0 dev ${UplinkName}`,
          `addr add ${node.lanIPv4}/${lanV4} dev eth0`,
          `addr add ${node.lanIPv6}/${lanV6} dev eth0 nodad`,
          'link set eth0 up',
          ...(node.localAddresses ?? []).map((address) => `addr add ${hostRoute(address)} dev lo scope host`),
          ...pods
            .filter((p) => p.node === node.name)
            .flatMap((pod) => [
              `link add ${pod.name} type veth peer name eth0 netns ${this.prefix + pod.name}`,
              `addr add ${PodGatewayV6}/64 dev ${pod.name} nodad`,
              `link set ${pod.name} up`,
            ]),
        ]),
      ),
    );

    // 5. Pods and the client.
    const client = this.spec.client;
    await Promise.all([
      ...pods.map((pod) =>
        ipBatch(this.prefix + pod.name, [
          'link set lo up',
          `addr add ${pod.ipv4}/32 dev eth0`,
          `addr add ${pod.ipv6}/128 dev eth0 nodad`,
          'link set eth0 up',
          `route add default via ${PodGatewayV4} dev eth0 onlink`,
          `route add default via ${PodGatewayV6} dev eth0`,
        ]),
      ),
      ipBatch(this.prefix + Role.Client, [
        'link set lo up',
        `addr add ${this.clientIPv4}/${lanV4} dev eth0`,
        `addr add ${this.clientIPv6}/${lanV6} dev eth0 nodad`,
        'link set eth0 up',
        ...(client?.routes ?? []).map((route) => {
          const via = this.node(route.via);
          const v6 = isIPv6(route.destination.split('/')[0] ?? '');
          return `route add ${hostRoute(route.destination)} via ${v6 ? via.lanIPv6 : via.lanIPv4}`;
        }),
      ]),
    ]);

    // 6. Node routes: host routes to local pods, pod CIDRs of the other nodes via their LAN addresses.
    await Promise.all(
      nodes.map((node) =>
        ipBatch(this.prefix + node.name, [
          ...pods
            .filter((p) => p.node === node.name)
            .flatMap((pod) => [
              `route add ${pod.ipv4}/32 dev ${pod.name}`,
              `route add ${pod.ipv6}/128 dev ${pod.name}`,
            ]),
          ...nodes
            .filter((other) => other.name !== node.name)
            .flatMap((other) => [
              `route add ${other.podCIDRv4} via ${other.lanIPv4}`,
              `route add ${other.podCIDRv6} via ${other.lanIPv6}`,
            ]),
        ]),
      ),
    );
  }

  async loadRules(node: string, text: string, family: IpFamily): Promise<void> {
    this.node(node);
    const tool = family === IpFamily.IPv6 ? 'ip6tables-restore' : 'iptables-restore';
    try {
      await runIn(this.namespaceOf(node), tool, [], { input: text });
    } catch (cause) {
      const stderr = cause instanceof CommandError ? cause.stderr : String(cause);
      throw new RulesLoadError({ node, family, stderr, cause });
    }
  }

  async dumpRules(node: string, family: IpFamily): Promise<string> {
    this.node(node);
    const tool = family === IpFamily.IPv6 ? 'ip6tables-save' : 'iptables-save';
    const { stdout } = await runIn(this.namespaceOf(node), tool, []);
    return stdout;
  }

  startServer(pod: string, options: ServerOptions): Promise<void> {
    const ns = this.namespaceOf(pod);
    const args = ['netns', 'exec', ns, process.execPath, PodServerScript, '--name', pod];
    for (const port of options.tcp ?? []) args.push('--tcp', String(port));
    for (const port of options.udp ?? []) args.push('--udp', String(port));
    // `ip netns exec` execs the command, so the child's PID is the server's own.
    const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return new Promise((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      const fail = (why: string): void => {
        clearTimeout(timer);
        reject(new ServerStartError(`pod server in ${pod} ${why}: ${stderr.trim()}`));
      };
      const timer = setTimeout(() => fail(`not READY after ${ServerReadyTimeoutMs} ms`), ServerReadyTimeoutMs);
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('utf8');
        if (stdout.includes('READY\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('error', (cause) => fail(`could not start (${String(cause)})`));
      child.on('exit', (code) => fail(`exited with ${String(code)}`));
    });
  }

  async probe(from: string, requests: readonly ProbeRequest[]): Promise<ProbeResult[][]> {
    const ns = this.namespaceOf(from);
    const worst = requests.reduce((sum, r) => sum + (r.count ?? 1) * (r.timeoutMs ?? 2000), 0);
    const { stdout } = await runIn(ns, process.execPath, [ProbeClientScript, JSON.stringify(requests)], {
      timeoutMs: worst + 10_000,
    });
    return JSON.parse(stdout) as ProbeResult[][];
  }

  exec(name: string, command: string, args: readonly string[]): Promise<RunResult> {
    return runIn(this.namespaceOf(name), command, args);
  }

  cleanup(): Promise<void> {
    this.cleaning ??= this.doCleanup();
    return this.cleaning;
  }

  private async doCleanup(): Promise<void> {
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    await Promise.all(
      [...this.children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) {
              resolve();
              return;
            }
            child.once('exit', () => resolve());
            if (child.pid !== undefined) {
              try {
                process.kill(child.pid, 'SIGKILL');
              } catch {
                resolve(); // already gone
              }
            }
          }),
      ),
    );
    this.children.clear();
    try {
      await run('ip', ['-force', '-batch', '-'], {
        input: `${this.created.map((ns) => `netns del ${ns}`).join('\n')}\n`,
      });
    } catch {
      // Some were never created or are already gone; the sweep below catches the rest.
    }
    await sweepNamespaces(this.prefix);
  }

  /** Last-resort cleanup when the process exits without cleanup() having run. */
  private cleanupSync(): void {
    if (this.cleaning !== undefined) return;
    for (const child of this.children) {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const ns of this.created) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Builds the topology described by `spec`. On failure everything already made is removed before the error is
 * rethrown (as TopologyError).
 */
export async function createTopology(spec: TopologySpec): Promise<Topology> {
  const prefix = spec.prefix ?? makeRunPrefix();
  validate(spec, prefix);
  const topology = new NetnsTopology(spec, prefix);
  try {
    await topology.build();
  } catch (cause) {
    await topology.cleanup();
    throw new TopologyError(`building the netns topology failed: ${String(cause)}`, { cause });
  }
  return topology;
}
