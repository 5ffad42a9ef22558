// A generated cluster that exercises every path the compiler's fast paths touch (dual-stack, several slices per
// service with the same address twice, terminating endpoints, zone and node hints, every service type and
// policy), and digests of what the compiler makes of it. The expected digests in scale.test.ts were computed by
// the compiler before its performance work (commit c3304aa): same input, byte-identical output (of the iptables
// objects: the node duties, healthcheck.service and conntrack.port objects, came later).
import { createHash } from 'node:crypto';
import { IPFamily, LocalMode, type ClusterState, type KubeObject, type ManifestObject } from '@kpx/model';
import { RuleKind, type IptablesOptions, type NodeRuleSet, type RestoreFormat } from '../src/index.js';
import { nodePortAddresses } from './helpers.js';

/** The functions digested, passed in so that another build of them (an older one) can be digested too. */
export interface CompilerApi {
  readonly loadClusterState: (objects: readonly ManifestObject[]) => { state: ClusterState };
  readonly compileIptables: (input: { state: ClusterState; nodeName: string; options: IptablesOptions }) => NodeRuleSet;
  readonly renderRestore: (rs: NodeRuleSet, format?: RestoreFormat) => string;
  readonly defaultIptablesOptions: (family: IPFamily) => IptablesOptions;
}

/** mulberry32: deterministic, no Math.random. */
function rng(seed: number): { int: (n: number) => number; chance: (p: number) => boolean } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { int: (n) => Math.floor(next() * n), chance: (p) => next() < p };
}

const ZONES = ['a', 'b', 'c'];
export const NODES = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5'];

/** `services` services with about `services * 9` endpoints over six dual-stack nodes, in a shuffled order. */
export function scaleCluster(services: number, seed: number): KubeObject[] {
  const r = rng(seed);
  const out: KubeObject[] = NODES.map((name, i) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'topology.kubernetes.io/zone': ZONES[i % 3] ?? 'a' } },
    spec: { podCIDR: `10.244.${i}.0/24`, podCIDRs: [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`] },
    status: {
      addresses: [
        { type: 'InternalIP', address: `172.18.0.${i + 2}` },
        { type: 'InternalIP', address: `fc00:f853:ccd:e793::${i + 2}` },
      ],
    },
  }));
  let nodePort = 30000;
  for (let j = 0; j < services; j++) {
    const namespace = `ns${j % 3}`;
    const name = `s${j}`;
    const type = ['ClusterIP', 'ClusterIP', 'NodePort', 'LoadBalancer'][r.int(4)] ?? 'ClusterIP';
    const stack = r.int(4); // 0, 1: IPv4; 2: dual-stack; 3: IPv6
    const families = stack === 3 ? ['IPv6'] : stack === 2 ? ['IPv4', 'IPv6'] : ['IPv4'];
    const clusterIPs = families.map((f) =>
      f === 'IPv4' ? `10.96.${j >> 8}.${j & 255}` : `fd00:10:96::${j.toString(16)}`,
    );
    const protocols = ['TCP', 'TCP', 'UDP', 'SCTP'];
    const nPorts = 1 + (r.chance(0.2) ? 1 + r.int(2) : 0);
    const ports = Array.from({ length: nPorts }, (_, k) => ({
      ...(nPorts > 1 || r.chance(0.5) ? { name: `p${k}` } : {}),
      port: 80 + k * 1000 + r.int(3),
      targetPort: 8080 + k,
      protocol: protocols[r.int(4)] ?? 'TCP',
      ...(type !== 'ClusterIP' ? { nodePort: nodePort++ } : {}),
    }));
    const local = type !== 'ClusterIP' && r.chance(0.3);
    const spec: Record<string, unknown> = {
      type,
      clusterIP: clusterIPs[0],
      clusterIPs,
      ipFamilies: families,
      ports,
      internalTrafficPolicy: r.chance(0.15) ? 'Local' : 'Cluster',
      sessionAffinity: r.chance(0.15) ? 'ClientIP' : 'None',
    };
    if (spec.sessionAffinity === 'ClientIP' && r.chance(0.5))
      spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 + r.int(600) } };
    if (type !== 'ClusterIP') spec.externalTrafficPolicy = local ? 'Local' : 'Cluster';
    if (type === 'LoadBalancer' && local) spec.healthCheckNodePort = nodePort++;
    if (r.chance(0.1)) spec.externalIPs = [`198.18.${j >> 8}.${j & 255}`, `2001:db8:e::${j.toString(16)}`];
    const status: Record<string, unknown> = {};
    if (type === 'LoadBalancer') {
      status.loadBalancer = {
        ingress: [
          { ip: `100.64.${j >> 8}.${j & 255}` },
          { ip: `2001:db8:1b::${j.toString(16)}` },
          ...(r.chance(0.2) ? [{ ip: `100.65.0.${j & 255}`, ipMode: 'Proxy' }] : []),
        ],
      };
      if (r.chance(0.5))
        spec.loadBalancerSourceRanges = r.chance(0.5)
          ? ['203.0.113.0/24', '172.18.0.0/16', '2001:db8:5::/48']
          : ['198.51.100.0/24'];
    }
    out.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace, resourceVersion: String(j) },
      spec,
      status,
    } as KubeObject);
    if (r.chance(0.05)) continue; // no endpoints at all
    const zoneHints = r.chance(0.15);
    const nodeHints = r.chance(0.1);
    for (const family of families) {
      const v6 = family === 'IPv6';
      const addresses = Array.from({ length: 3 + r.int(12) }, () => {
        const n = r.int(NODES.length);
        const host = 2 + r.int(250);
        return { ip: v6 ? `fd00:10:244:${n}::${host.toString(16)}` : `10.244.${n}.${host}`, node: n };
      });
      const nSlices = 1 + (r.chance(0.3) ? 1 + r.int(2) : 0);
      for (let s = 0; s < nSlices; s++) {
        // Each slice holds a random part of the addresses: some addresses end up in two slices.
        const endpoints = addresses
          .filter(() => nSlices === 1 || r.chance(0.6))
          .map(({ ip, node }) => {
            const terminating = r.chance(0.1);
            const zone = ZONES[node % 3] ?? 'a';
            return {
              addresses: [ip],
              conditions: { ready: !terminating && r.chance(0.9), serving: !terminating || r.chance(0.5), terminating },
              ...(r.chance(0.95) ? { nodeName: NODES[node] } : {}),
              zone,
              ...(zoneHints || nodeHints
                ? {
                    hints: {
                      ...(zoneHints ? { forZones: [{ name: zone }] } : {}),
                      ...(nodeHints ? { forNodes: [{ name: NODES[node] }] } : {}),
                    },
                  }
                : {}),
            };
          });
        out.push({
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSlice',
          metadata: {
            name: `${name}-${family.toLowerCase()}-${'xyz'[s] ?? 's'}`,
            namespace,
            labels: { 'kubernetes.io/service-name': name },
          },
          addressType: family,
          ports: ports.map((p, k) => ({
            ...('name' in p ? { name: p.name } : {}),
            port: p.targetPort + (r.chance(0.05) ? 1 : 0) + k,
            protocol: p.protocol,
          })),
          endpoints,
        } as KubeObject);
      }
    }
  }
  // Shuffle (Fisher-Yates), so that nothing depends on the order objects arrive in.
  for (let i = out.length - 1; i > 0; i--) {
    const k = r.int(i + 1);
    [out[i], out[k]] = [out[k] as KubeObject, out[i] as KubeObject];
  }
  return out;
}

export const CONFIGS: readonly [string, (o: IptablesOptions) => IptablesOptions][] = [
  ['defaults', (o) => o],
  [
    'masqueradeAll, no node hints, not liberal',
    (o) => ({ ...o, masqueradeAll: true, topology: { preferSameNodeHints: false }, conntrackTCPLiberal: false }),
  ],
  [
    'NodeCIDR, primary node port address',
    (o) => ({
      ...o,
      detectLocalMode: LocalMode.NodeCIDR,
      nodePortAddresses: nodePortAddresses('primary'),
      localhostNodePorts: false,
    }),
  ],
  [
    'interface prefix, node port CIDRs',
    (o) => ({
      ...o,
      detectLocalMode: LocalMode.InterfaceNamePrefix,
      interfaceNamePrefix: 'veth',
      nodePortAddresses: nodePortAddresses('172.18.0.0/16', 'fc00:f853:ccd:e793::/64'),
      conntrackTCPLiberal: true,
    }),
  ],
];

const sha = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 16);

/** `family/config` -> digest of every node's rule set (JSON, full and chains text) and of the merged endpoints. */
export function digests(api: CompilerApi, objects: readonly KubeObject[]): Record<string, string> {
  const { state } = api.loadClusterState(objects.map((object, i) => ({ object, source: `gen#${i}` })));
  const out: Record<string, string> = {};
  for (const family of [IPFamily.IPv4, IPFamily.IPv6]) {
    out[`${family}/endpoints`] = sha(
      JSON.stringify(state.servicePorts(family).map((p) => [p.name, p.protocol, state.endpoints(p)])),
    );
    for (const [name, configure] of CONFIGS) {
      const options = configure(api.defaultIptablesOptions(family));
      const parts = NODES.map((nodeName) => {
        const rs = api.compileIptables({ state, nodeName, options });
        // The iptables objects: what the compiler of c3304aa made (node duties came later).
        const iptables = {
          ...rs,
          objects: rs.objects.filter(
            (o) => o.kind !== RuleKind.HealthCheckService && o.kind !== RuleKind.ConntrackPort,
          ),
        };
        return JSON.stringify(iptables) + api.renderRestore(rs) + api.renderRestore(rs, 'chains');
      });
      out[`${family}/${name}`] = sha(parts.join('\n'));
    }
  }
  return out;
}
