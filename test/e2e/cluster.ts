// The e2e cluster: the netns topology matching the manifests in fixtures/cluster, the rules of every node
// rendered by the real `kpx render` and loaded with plain iptables-restore / ip6tables-restore.
//
//                       lan (bridge br0: 10.0.0.0/24, fd00::/64)
//        ┌──────────────────┬──────────────────┬──────────────────┐
//   n1 10.0.0.11        n2 10.0.0.12        n3 10.0.0.13        ext 10.0.0.100 (external client)
//   zone a              zone a              zone b              routes only: LAN, 192.0.2.50/.52/.53/.54 via n1,
//   p1a .1.10           p2a .2.10           p3a .3.10                        192.0.2.51 and 203.0.113.10 via n2
//   p1b .1.11           p2b .2.11           p3b .3.11
//   p1c .1.12
//   (pods 10.244.<node>.<h> / fd00:10:244:<node>::<h>, routed; every pod serves TCP 8080 and UDP 8053.
//    Host-network listeners answer with the node's name for traffic that no rule captured or rejected:
//    n1 holds 192.0.2.54 and serves TCP 80; n2 serves the NodePorts of the endpoint-less service "empty",
//    TCP 30080 and UDP 30081, so only kube-proxy's REJECT can make those refused.)
import { fileURLToPath } from 'node:url';
import {
  createTopology,
  IpFamily,
  run,
  standardNode,
  standardPod,
  type ProbeRequest,
  type ProbeResult,
  type ServerOptions,
  type Topology,
} from '@kpx/testing';

export const RepoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const ManifestsDir = `${RepoRoot}test/e2e/fixtures/cluster`;
export const ConfigFile = {
  standard: `${RepoRoot}test/e2e/fixtures/config/kube-proxy.yaml`,
  masqueradeAll: `${RepoRoot}test/e2e/fixtures/config/kube-proxy-masquerade-all.yaml`,
} as const;
const KpxBin = `${RepoRoot}services/cli/bin/kpx.js`;

/** Ports every pod server listens on (the services' targetPorts). */
export const PodTcpPort = 8080;
export const PodUdpPort = 8053;
/** The IP n1 holds itself (see lb-proxy: an ingress IP with ipMode Proxy). */
export const N1OwnIP = '192.0.2.54';
/** Host-network listeners in node namespaces (they answer with the node's name). */
const HostListeners: Readonly<Record<string, ServerOptions>> = {
  n1: { tcp: [80] },
  n2: { tcp: [30080], udp: [30081] },
};

const n1 = { ...standardNode('n1', 1), localAddresses: [N1OwnIP] };
const n2 = standardNode('n2', 2);
const n3 = standardNode('n3', 3);
export const Nodes = { n1, n2, n3 } as const;
export type NodeName = keyof typeof Nodes;

export const Pods = {
  p1a: standardPod('p1a', n1, 10),
  p1b: standardPod('p1b', n1, 11),
  p1c: standardPod('p1c', n1, 12),
  p2a: standardPod('p2a', n2, 10),
  p2b: standardPod('p2b', n2, 11),
  p3a: standardPod('p3a', n3, 10),
  p3b: standardPod('p3b', n3, 11),
} as const;
export type PodName = keyof typeof Pods;

export const Client = { name: 'ext', ipv4: '10.0.0.100', ipv6: 'fd00::100' } as const;

/** Service addresses, as in fixtures/cluster (keep in sync). */
export const Svc = {
  web: '10.96.0.10',
  np: '10.96.0.20',
  local: '10.96.0.30',
  itp: '10.96.0.40',
  lb: '10.96.0.50',
  lbIngress: '192.0.2.50',
  lbAllowIngress: '192.0.2.51',
  lbDenyIngress: '192.0.2.52',
  lbProxyVipIngress: '192.0.2.53',
  lbProxyProxyIngress: N1OwnIP,
  ext: '10.96.0.60',
  extExternalIP: '203.0.113.10',
  sticky: '10.96.0.70',
  empty: '10.96.0.80',
  unready: '10.96.0.81',
  term: '10.96.0.90',
  termMixed: '10.96.0.91',
  topo: '10.96.0.100',
  hairpin: '10.96.0.110',
  web6: 'fd00:96::10',
  dualV4: '10.96.0.120',
  dualV6: 'fd00:96::120',
} as const;

export const NodePort = {
  np: 30020,
  local: 30030,
  lbDeny: 30052,
  emptyTcp: 30080,
  emptyUdp: 30081,
  term: 30090,
  termMixed: 30091,
  web6: 30110,
} as const;

/** Where the external client's routes for LB ingress IPs and externalIPs lead (as a cloud LB would). */
export const ClientRoutes = [
  { destination: Svc.lbIngress, via: 'n1' },
  { destination: Svc.lbAllowIngress, via: 'n2' },
  { destination: Svc.lbDenyIngress, via: 'n1' },
  { destination: Svc.lbProxyVipIngress, via: 'n1' },
  { destination: Svc.lbProxyProxyIngress, via: 'n1' },
  { destination: Svc.extExternalIP, via: 'n2' },
] as const;

export interface Cluster {
  readonly topo: Topology;
  /** The rendered rules, by `${node}/${family}`. */
  readonly rules: ReadonlyMap<string, string>;
  /** What `kpx render` printed on stderr, by `${node}/${family}`. */
  readonly renderStderr: ReadonlyMap<string, string>;
  /** Sends one probe request from a namespace (pod, node or "ext"), returns one outcome per connection. */
  probe(from: string, request: ProbeRequest): Promise<ProbeResult[]>;
  cleanup(): Promise<void>;
}

/** `kpx render` for one node and family; throws with kpx's stderr if it fails. */
export async function renderRules(options: {
  node: string;
  family: IpFamily;
  config: string;
}): Promise<{ rules: string; stderr: string }> {
  const { stdout, stderr } = await run(process.execPath, [
    KpxBin,
    'render',
    '--manifests',
    ManifestsDir,
    '--node',
    options.node,
    '--config',
    options.config,
    '--ip-family',
    options.family,
  ]);
  return { rules: stdout, stderr };
}

/**
 * Builds the topology, renders and loads every node's IPv4 and IPv6 rules with `config`, starts every server.
 * Fails (throws) if any step fails; whatever was built is removed first.
 */
export async function startCluster(config: string): Promise<Cluster> {
  const topo = await createTopology({
    nodes: Object.values(Nodes),
    pods: Object.values(Pods),
    client: { ipv4: Client.ipv4, ipv6: Client.ipv6, routes: [...ClientRoutes] },
  });
  const rules = new Map<string, string>();
  const renderStderr = new Map<string, string>();
  try {
    const jobs = Object.keys(Nodes).flatMap((node) =>
      [IpFamily.IPv4, IpFamily.IPv6].map(async (family) => {
        const rendered = await renderRules({ node, family, config });
        rules.set(`${node}/${family}`, rendered.rules);
        renderStderr.set(`${node}/${family}`, rendered.stderr);
        await topo.loadRules(node, rendered.rules, family);
      }),
    );
    const settled = await Promise.allSettled([
      ...jobs,
      ...Object.keys(Pods).map((pod) => topo.startServer(pod, { tcp: [PodTcpPort], udp: [PodUdpPort] })),
      ...Object.entries(HostListeners).map(([node, ports]) => topo.startServer(node, ports)),
    ]);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  } catch (err) {
    await topo.cleanup();
    throw err;
  }
  return {
    topo,
    rules,
    renderStderr,
    async probe(from, request) {
      const [outcomes] = await topo.probe(from, [request]);
      return outcomes ?? [];
    },
    cleanup: () => topo.cleanup(),
  };
}
